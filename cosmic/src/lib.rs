//! placeholder
pub use cosmic_runtime::*;
