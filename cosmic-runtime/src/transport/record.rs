//! Records: how messages of any size travel in Noise messages of at most 64 KiB.
//!
//! After the hellos, the plaintext of every frame is one of:
//! - `INLINE`: kind byte, then a whole message (up to [`MAX_INLINE`] bytes);
//! - `START`: kind byte, then the message's length as a little-endian `u64`; the message
//!   follows in *data frames* that carry nothing but its bytes, [`MAX_PLAINTEXT`] each except
//!   the last. Their count and sizes follow from the length, so they need no header, and the
//!   sender encrypts straight from the caller's buffer and the receiver decrypts straight into
//!   its destination;
//! - `CLOSE`: kind byte, then an optional UTF-8 reason: the peer is done. A connection that
//!   ends without it was cut, which the receiver reports as such.
//!
//! Every record is authenticated by the Noise layer, so a malformed one means a buggy peer,
//! never an attacker.

use super::error::ChannelError;
use super::noise::MAX_PLAINTEXT;

const INLINE: u8 = 1;
const START: u8 = 2;
const CLOSE: u8 = 3;

/// The largest message sent in one `INLINE` record.
pub(crate) const MAX_INLINE: usize = MAX_PLAINTEXT - 1;

/// The longest close reason sent; longer ones are cut (at a character boundary).
const MAX_CLOSE_REASON: usize = 1024;

/// A parsed record (data frames are not parsed: the receiver knows when they come).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A whole message, at this range of the plaintext.
    Inline(std::ops::Range<usize>),
    /// A message of this many bytes follows in data frames.
    Start(u64),
    /// The peer closed the channel.
    Close(Option<String>),
}

/// Reads the record in a frame's plaintext.
pub(crate) fn parse(plaintext: &[u8]) -> Result<Record, ChannelError> {
    let malformed = |reason: String| Err(ChannelError::Malformed { reason });
    match plaintext.split_first() {
        None => malformed("empty record".to_owned()),
        Some((&INLINE, _)) => Ok(Record::Inline(1..plaintext.len())),
        Some((&START, rest)) => match <[u8; 8]>::try_from(rest) {
            Ok(length) => Ok(Record::Start(u64::from_le_bytes(length))),
            Err(_) => malformed(format!("start record of {} bytes", plaintext.len())),
        },
        Some((&CLOSE, [])) => Ok(Record::Close(None)),
        Some((&CLOSE, reason)) => Ok(Record::Close(Some(
            String::from_utf8_lossy(reason).into_owned(),
        ))),
        Some((kind, _)) => malformed(format!("unknown record kind {kind}")),
    }
}

/// Writes an `INLINE` record holding `payload` into `out`; returns its length.
pub(crate) fn inline(payload: &[u8], out: &mut [u8]) -> usize {
    debug_assert!(payload.len() <= MAX_INLINE);
    out[0] = INLINE;
    out[1..=payload.len()].copy_from_slice(payload);
    payload.len() + 1
}

/// A `START` record for a message of `length` bytes.
pub(crate) fn start(length: u64) -> [u8; 9] {
    let mut record = [START; 9];
    record[1..].copy_from_slice(&length.to_le_bytes());
    record
}

/// A `CLOSE` record.
pub(crate) fn close(reason: Option<&str>) -> Vec<u8> {
    let mut record = vec![CLOSE];
    if let Some(reason) = reason {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        record.extend_from_slice(&reason.as_bytes()[..end]);
    }
    record
}

/// The size of the next data frame of a message of `length` bytes of which `received` arrived.
pub(crate) fn data_frame_len(length: u64, received: u64) -> usize {
    // At most MAX_PLAINTEXT, so the conversion cannot fail.
    usize::try_from((length - received).min(MAX_PLAINTEXT as u64)).unwrap_or(MAX_PLAINTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut out = vec![0u8; MAX_PLAINTEXT];
        let n = inline(b"abc", &mut out);
        assert_eq!(parse(&out[..n]).unwrap(), Record::Inline(1..4));
        assert_eq!(parse(&start(1 << 40)).unwrap(), Record::Start(1 << 40));
        assert_eq!(parse(&close(None)).unwrap(), Record::Close(None));
        assert_eq!(
            parse(&close(Some("bye"))).unwrap(),
            Record::Close(Some("bye".to_owned()))
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for bad in [&[][..], &[0][..], &[9, 1][..], &[START, 1, 2][..]] {
            assert!(
                matches!(parse(bad), Err(ChannelError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn close_reasons_are_bounded_at_a_character_boundary() {
        let reason = "é".repeat(MAX_CLOSE_REASON);
        let record = close(Some(&reason));
        assert!(record.len() <= MAX_CLOSE_REASON + 1);
        assert!(std::str::from_utf8(&record[1..]).is_ok());
    }

    #[test]
    fn data_frames_are_full_but_the_last() {
        let length = MAX_PLAINTEXT as u64 * 2 + 5;
        assert_eq!(data_frame_len(length, 0), MAX_PLAINTEXT);
        assert_eq!(data_frame_len(length, MAX_PLAINTEXT as u64), MAX_PLAINTEXT);
        assert_eq!(data_frame_len(length, MAX_PLAINTEXT as u64 * 2), 5);
    }
}
