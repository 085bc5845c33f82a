//! Which version of each type the bytes being decoded were written with.
//!
//! postcard carries no field names or tags, so a reader must know the writer's layout before it
//! reads. The image header carries the version of every named type; while an image body is
//! decoded, that table is installed here and the derived `Deserialize` impls ask it which
//! layout to read. Outside image decoding every type reads its current layout.

use std::cell::{Cell, RefCell};

use super::{Migratable, VersionTable};

thread_local! {
    // The common case (an image written by this version of the code) must cost one flag read
    // per decoded struct, not a map lookup.
    static ALL_CURRENT: Cell<bool> = const { Cell::new(true) };
    static WRITTEN: RefCell<Option<VersionTable>> = const { RefCell::new(None) };
}

/// The version of `T` that the bytes being decoded on this thread were written with.
#[inline]
pub fn written_version<T: Migratable>() -> u32 {
    if ALL_CURRENT.with(Cell::get) {
        return T::VERSION;
    }
    looked_up::<T>()
}

/// An image of older versions: the table's entry for `T`. Out of line, off the common path.
#[inline(never)]
fn looked_up<T: Migratable>() -> u32 {
    WRITTEN.with(|written| {
        written
            .borrow()
            .as_ref()
            .and_then(|table| table.get(T::type_name().as_ref()).copied())
            .unwrap_or(T::VERSION)
    })
}

/// Runs `decode` with `written` as the versions of the bytes it decodes on this thread.
///
/// `all_current` says that every entry equals the reader's current version, which lets the
/// derived impls skip the lookup. The previous table is restored afterwards, even on panic.
pub fn decode_with_versions<R>(
    written: &VersionTable,
    all_current: bool,
    decode: impl FnOnce() -> R,
) -> R {
    struct Restore {
        all_current: bool,
        written: Option<VersionTable>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            ALL_CURRENT.with(|flag| flag.set(self.all_current));
            WRITTEN.with(|table| *table.borrow_mut() = self.written.take());
        }
    }
    let _restore = Restore {
        all_current: ALL_CURRENT.with(|flag| flag.replace(all_current)),
        written: WRITTEN.with(|table| {
            table.borrow_mut().replace(if all_current {
                VersionTable::new()
            } else {
                written.clone()
            })
        }),
    };
    decode()
}
