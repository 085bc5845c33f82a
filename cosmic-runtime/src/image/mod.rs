//! The checkpoint image: a header that says what the state is and who wrote it, the state's
//! encoding, and checksums over both. `docs/format.md` documents it byte by byte. The registry
//! of the `Migratable` types linked into the program decodes an image knowing only the type
//! name in its header.

mod checksum;
mod error;
mod examine;
mod format;
mod header;
mod isa;
mod limits;
mod native_guard;
mod reader;
mod registry;
mod schema_mismatch;
mod writer;

pub use error::{CaptureError, RestoreError};
pub use examine::{examine, examine_reader, BodyCheck, Examination, ExamineError};
pub use format::{Encoding, FORMAT_VERSION, MAGIC};
pub use header::ImageHeader;
pub use isa::{Arch, Endian, Isa};
pub use limits::DecodeLimits;
pub use native_guard::{check_native, NativeMismatch};
pub use reader::{inspect, restore, restore_any, restore_with_limits, RestoredState};
pub use registry::{lookup_type, registered_types, Registration};
pub use writer::{capture, capture_native, ImageWriter};

pub(crate) use reader::{check_offer, header_only};
