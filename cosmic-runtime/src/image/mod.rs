//! The checkpoint image: a header that says what the state is and who wrote it, the state's
//! encoding, and checksums over both. `docs/format.md` documents it byte by byte.

mod checksum;
mod error;
mod examine;
mod format;
mod header;
mod isa;
mod limits;
mod reader;
mod schema_mismatch;
mod writer;

pub use error::{CaptureError, RestoreError};
pub use examine::{examine, examine_reader, BodyCheck, Examination, ExamineError};
pub use format::{Encoding, FORMAT_VERSION, MAGIC};
pub use header::ImageHeader;
pub use isa::{Arch, Endian, Isa};
pub use limits::DecodeLimits;
pub use reader::{inspect, restore, restore_any, restore_with_limits, RestoredState};
pub use writer::{capture, ImageWriter};

pub(crate) use reader::decode_body as reader_decode_body;
pub(crate) use reader::{check_schema, header_only};
