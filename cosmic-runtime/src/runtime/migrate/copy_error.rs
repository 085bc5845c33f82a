//! Why an arriving copy cannot be used here, and why a transfer was cut off: typed, so that
//! drivers and tests can tell the cases apart; their text is what the source is told.

use std::sync::Arc;

use crate::checkpoint::CatalogError;
use crate::image::RestoreError;
use crate::transport::ChannelError;

/// Why a copy of a task that arrived (or was recovered in doubt) cannot run here.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Its type is not registered with this runtime.
    #[error("arriving task type `{type_name}` is not registered (Builder::register)")]
    UnknownType {
        /// The type.
        type_name: String,
    },
    /// Its prepared record names an image the store does not have.
    #[error("its prepared copy is missing from the store")]
    Missing,
    /// The store could not give its image.
    #[error("its prepared copy could not be read")]
    Unreadable(#[source] Arc<CatalogError>),
    /// Its image does not verify or decode.
    #[error("the image does not restore")]
    Undecodable(#[source] Arc<RestoreError>),
    /// Its image is another task's than the offer said, or another size.
    #[error("the image does not match the offer")]
    NotAsOffered,
    /// The image that came inside the offer is not the announced size.
    #[error("inline image of {received} bytes, {announced} announced")]
    WrongLength {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        announced: u64,
    },
    /// The decoder's thread ended without an answer.
    #[error("decoding the image failed on the blocking pool")]
    DecodeAborted,
    /// Its driver was started already.
    #[error("the copy was started already")]
    Started,
}

/// Why the source of a copy in doubt could not be asked how its hand-off ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// Neither the offer nor the configuration gives an address for the source.
    #[error("no address known for `{source_host}`")]
    NoAddress {
        /// The source.
        source_host: String,
    },
    /// The host at the address proved another name.
    #[error("the host there is `{found}`, not the source `{expected}`")]
    WrongHost {
        /// Who answered.
        found: String,
        /// Who was asked for.
        expected: String,
    },
    /// No channel could be opened.
    #[error("could not open a channel")]
    Connect(#[source] crate::transport::ConnectError),
    /// The conversation failed.
    #[error("the conversation failed")]
    Channel(#[source] ChannelError),
    /// No answer within the step's deadline.
    #[error("no answer in time")]
    TimedOut,
    /// Every address failed; the last failure.
    #[error("{attempts} addresses failed; the last: {last}")]
    Every {
        /// How many were tried.
        attempts: usize,
        /// The last failure.
        last: Box<AskError>,
    },
}
