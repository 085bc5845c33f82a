//! Checking an image without knowing its type: the header, the lengths and both checksums,
//! never the body's meaning. What a tool (`cosmic inspect`) shows of a file, including an image
//! whose body is damaged or cut short, since the header has a checksum of its own.

use std::io::{self, Read};

use super::checksum::{crc32c, Crc32c};
use super::format::CHECKSUM_LEN;
use super::header::{self, ImageHeader};
use super::{DecodeLimits, RestoreError};

/// The verdict on an image's body: whether it is all there and matches its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// The body is whole, nothing follows it, and it matches its checksum.
    Ok,
    /// The body's checksum does not match its bytes.
    Mismatch {
        /// The CRC-32C in the image.
        stored: u32,
        /// The CRC-32C of the bytes.
        computed: u32,
    },
    /// The input ends before the body and its checksum do.
    Truncated {
        /// Bytes the body and its checksum need after the header.
        needed: u64,
        /// Bytes there are after the header.
        available: u64,
    },
    /// Bytes follow the end of the image (its checksum is then not checked).
    TrailingBytes {
        /// How many.
        extra: u64,
    },
}

impl BodyCheck {
    /// Whether the body is sound.
    pub fn is_ok(&self) -> bool {
        *self == BodyCheck::Ok
    }

    /// The error [`restore`](super::restore) reports for this verdict, if it is not `Ok`.
    pub fn error(&self) -> Option<RestoreError> {
        match *self {
            BodyCheck::Ok => None,
            BodyCheck::Mismatch { stored, computed } => {
                Some(RestoreError::BodyChecksum { stored, computed })
            }
            BodyCheck::Truncated { needed, available } => Some(RestoreError::Truncated {
                part: "body",
                needed,
                available,
            }),
            BodyCheck::TrailingBytes { extra } => Some(RestoreError::TrailingBytes { extra }),
        }
    }
}

/// An image's verified header and the verdict on its body, from [`examine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examination {
    /// The header (its own checksum verified).
    pub header: ImageHeader,
    /// What is right or wrong with the body.
    pub body: BodyCheck,
}

impl Examination {
    /// The header if the body is sound, else the error [`restore`](super::restore) reports.
    pub fn into_result(self) -> Result<ImageHeader, RestoreError> {
        match self.body.error() {
            None => Ok(self.header),
            Some(error) => Err(error),
        }
    }
}

/// Error returned by [`examine_reader`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExamineError {
    /// The header is missing, damaged or malformed: nothing in the input can be believed.
    #[error(transparent)]
    Image(#[from] RestoreError),
    /// The input could not be read.
    #[error("failed to read the image")]
    Read(#[source] io::Error),
}

/// Checks an image in memory without knowing its type: parses and verifies the header (an
/// error if it is missing, damaged or malformed), then judges the body: its length and its
/// checksum. Nothing is decoded, and the encoding is not judged (a native image examines too).
pub fn examine(bytes: &[u8]) -> Result<Examination, RestoreError> {
    examine_with_limits(bytes, &DecodeLimits::DEFAULT)
}

pub(crate) fn examine_with_limits(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<Examination, RestoreError> {
    let header = header::parse(bytes, limits)?;
    let total = header.image_len();
    let available = bytes.len() as u64;
    let after_header = header.header_len as u64;
    let body = if available < total {
        BodyCheck::Truncated {
            needed: total - after_header,
            available: available - after_header,
        }
    } else if available > total {
        BodyCheck::TrailingBytes {
            extra: available - total,
        }
    } else {
        let body_end = bytes.len() - CHECKSUM_LEN;
        let mut stored = [0; CHECKSUM_LEN];
        stored.copy_from_slice(&bytes[body_end..]);
        let stored = u32::from_le_bytes(stored);
        let computed = crc32c(&bytes[header.header_len..body_end]);
        if stored == computed {
            BodyCheck::Ok
        } else {
            BodyCheck::Mismatch { stored, computed }
        }
    };
    Ok(Examination { header, body })
}

/// Like [`examine`], reading the image from `source` (a file, say) in blocks, so that an image
/// of any size is checked without holding it in memory. `progress` is called after each block
/// with the number of bytes read so far. Reads `source` to its end.
pub fn examine_reader<R: Read>(
    mut source: R,
    mut progress: impl FnMut(u64),
) -> Result<Examination, ExamineError> {
    let limits = DecodeLimits::DEFAULT;
    // A header is at most `max_header_bytes` long, so this much of the input holds all of it
    // (or all the input there is).
    let mut block = vec![0u8; (limits.max_header_bytes as usize).max(1 << 20)];
    let mut first = fill(&mut source, &mut block[..limits.max_header_bytes as usize])?;
    let header = header::parse(&block[..first], &limits)?;
    // The rest of the first block may hold body bytes already.
    let mut scan = BodyScan::new(&header);
    scan.feed(&block[header.header_len..first]);
    let mut read = first as u64;
    progress(read);
    loop {
        first = fill(&mut source, &mut block)?;
        if first == 0 {
            break;
        }
        scan.feed(&block[..first]);
        read += first as u64;
        progress(read);
    }
    Ok(Examination {
        body: scan.finish(),
        header,
    })
}

/// Reads into `buf` until it is full or the input ends; returns how much was read.
fn fill(source: &mut impl Read, buf: &mut [u8]) -> Result<usize, ExamineError> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ExamineError::Read(error)),
        }
    }
    Ok(filled)
}

/// The bytes after a header, seen in pieces: the body into the checksum, then the stored
/// checksum, then whatever follows.
struct BodyScan {
    body_len: u64,
    seen: u64,
    crc: Crc32c,
    stored: [u8; CHECKSUM_LEN],
}

impl BodyScan {
    fn new(header: &ImageHeader) -> Self {
        BodyScan {
            body_len: header.body_len,
            seen: 0,
            crc: Crc32c::new(),
            stored: [0; CHECKSUM_LEN],
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        if self.seen < self.body_len {
            let take = (self.body_len - self.seen).min(bytes.len() as u64) as usize;
            self.crc.update(&bytes[..take]);
            self.seen += take as u64;
            bytes = &bytes[take..];
        }
        let end = self.body_len + CHECKSUM_LEN as u64;
        if self.seen < end && !bytes.is_empty() {
            let at = (self.seen - self.body_len) as usize;
            let take = (CHECKSUM_LEN - at).min(bytes.len());
            self.stored[at..at + take].copy_from_slice(&bytes[..take]);
            self.seen += take as u64;
            bytes = &bytes[take..];
        }
        self.seen += bytes.len() as u64;
    }

    fn finish(self) -> BodyCheck {
        let needed = self.body_len + CHECKSUM_LEN as u64;
        if self.seen < needed {
            return BodyCheck::Truncated {
                needed,
                available: self.seen,
            };
        }
        if self.seen > needed {
            return BodyCheck::TrailingBytes {
                extra: self.seen - needed,
            };
        }
        let stored = u32::from_le_bytes(self.stored);
        let computed = self.crc.finish();
        if stored == computed {
            BodyCheck::Ok
        } else {
            BodyCheck::Mismatch { stored, computed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::capture;

    /// A reader that hands out at most `step` bytes per call, to cut the input at every place.
    struct Dribble<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn both(bytes: &[u8]) -> Result<Examination, String> {
        let in_memory = examine(bytes).map_err(|e| e.to_string());
        for step in [1, 3, 7, 4096, usize::MAX] {
            let mut calls = 0;
            let streamed =
                examine_reader(Dribble { bytes, step }, |_| calls += 1).map_err(|e| e.to_string());
            assert_eq!(streamed, in_memory, "step {step}");
            assert!(
                calls > 0 || bytes.is_empty() || in_memory.is_err(),
                "step {step}"
            );
        }
        in_memory
    }

    #[test]
    fn a_sound_image_examines_ok_in_memory_and_streamed() {
        let bytes = capture(&(String::from("hello"), vec![1u64, 2, 3])).unwrap();
        let found = both(&bytes).unwrap();
        assert_eq!(found.body, BodyCheck::Ok);
        assert_eq!(found.header.image_len(), bytes.len() as u64);
        assert_eq!(
            found.into_result().unwrap(),
            crate::image::inspect(&bytes).unwrap()
        );
        // An empty body (the unit type) has only its checksum after the header.
        assert_eq!(both(&capture(&()).unwrap()).unwrap().body, BodyCheck::Ok);
    }

    #[test]
    fn damage_to_the_body_keeps_the_header_and_names_the_damage() {
        let bytes = capture(&vec![7u32; 100]).unwrap();
        let header_len = examine(&bytes).unwrap().header.header_len;

        let mut flipped = bytes.clone();
        flipped[header_len + 10] ^= 0x40;
        let found = both(&flipped).unwrap();
        assert!(
            matches!(found.body, BodyCheck::Mismatch { .. }),
            "{found:?}"
        );
        assert!(matches!(
            found.into_result(),
            Err(RestoreError::BodyChecksum { .. })
        ));

        for cut in [header_len, header_len + 1, bytes.len() - 4, bytes.len() - 1] {
            let found = both(&bytes[..cut]).unwrap();
            assert_eq!(
                found.body,
                BodyCheck::Truncated {
                    needed: (bytes.len() - header_len) as u64,
                    available: (cut - header_len) as u64,
                },
                "cut at {cut}"
            );
        }

        let mut longer = bytes.clone();
        longer.extend_from_slice(b"junk");
        assert_eq!(
            both(&longer).unwrap().body,
            BodyCheck::TrailingBytes { extra: 4 }
        );
    }

    #[test]
    fn a_damaged_header_is_an_error() {
        let bytes = capture(&5u64).unwrap();
        let mut broken = bytes.clone();
        broken[20] ^= 1;
        assert!(both(&broken).unwrap_err().contains("header checksum"));
        assert!(both(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .contains("not a cosmic image"));
        assert!(both(&bytes[..12]).unwrap_err().contains("truncated"));
        assert!(both(b"").unwrap_err().contains("truncated"));
    }
}
