//! Bounds a reader puts on an image before it believes any length in it.

/// Limits applied while decoding an image; see [`restore_with_limits`](super::restore_with_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest header accepted, in bytes.
    pub max_header_bytes: u32,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How deeply named types may nest in the state (bounds the decoder's stack use).
    pub max_depth: u32,
}

impl DecodeLimits {
    /// The defaults: 64 KiB of header, 64 GiB of body, 128 levels of nesting.
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_header_bytes: 64 << 10,
        max_body_bytes: 64 << 30,
        max_depth: crate::state::DEFAULT_MAX_DEPTH,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}
