//! Bounds a reader puts on an image before it believes any length in it.

/// Limits applied while decoding an image; see [`restore_with_limits`](super::restore_with_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest header accepted, in bytes.
    pub max_header_bytes: u32,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: u64,
}

impl DecodeLimits {
    /// The defaults: 64 KiB of header, 64 GiB of body.
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_header_bytes: 64 << 10,
        max_body_bytes: 64 << 30,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}
