//! The registry of `Migratable` types linked into this program, so that a receiving host can
//! decode an image knowing only the type name in its header.
//!
//! `#[derive(Migratable)]` submits a [`Registration`] for every non-generic type through
//! `inventory`. inventory registers through link-time constructors: a type in a crate the
//! final binary never references is not registered, so a host should check at start-up that it
//! knows every type it may be sent ([`lookup_type`]).

use std::any::Any;

use super::{DecodeLimits, ImageHeader, RestoreError};
use crate::state::{Fingerprint, Migratable};

/// One registered `Migratable` type.
#[derive(Debug)]
pub struct Registration {
    /// The wire name.
    pub type_name: &'static str,
    /// The newest version this build knows.
    pub version: u32,
    /// Computes the type's current fingerprint.
    pub fingerprint: fn() -> Fingerprint,
    /// Decodes a verified image body of this type.
    #[allow(clippy::type_complexity)]
    pub decode: fn(&ImageHeader, &[u8]) -> Result<Box<dyn Any + Send>, RestoreError>,
}

impl Registration {
    /// The registration of `T` under its wire name; used by the derive's generated code.
    pub const fn of<T: Migratable>(type_name: &'static str) -> Registration {
        Registration {
            type_name,
            version: T::VERSION,
            fingerprint: current_fingerprint::<T>,
            decode: decode_boxed::<T>,
        }
    }
}

fn current_fingerprint<T: Migratable>() -> Fingerprint {
    Fingerprint::current::<T>().0
}

fn decode_boxed<T: Migratable>(
    header: &ImageHeader,
    body: &[u8],
) -> Result<Box<dyn Any + Send>, RestoreError> {
    super::reader::decode_body::<T>(header, body, &DecodeLimits::DEFAULT)
        .map(|state| Box::new(state) as _)
}

inventory::collect!(Registration);

/// Every registered type.
pub fn registered_types() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// The registered type of this wire name. Older layouts kept for `upgrade_from` may share
/// the name; the newest version wins.
pub fn lookup_type(type_name: &str) -> Option<&'static Registration> {
    registered_types()
        .filter(|registration| registration.type_name == type_name)
        .max_by_key(|registration| registration.version)
}
