//! The runtime of cosmic: portable task state, checkpoint images, tasks, checkpoint stores and
//! the runtime that drives tasks.
//!
//! Users depend on the `cosmic` facade, which re-exports what is public here; this crate is
//! split out so that the derive macro's generated code has one stable place to point at.
#![warn(missing_docs, unreachable_pub)]

pub mod checkpoint;
pub mod cluster;
mod error_chain;
// Internal: public for the integration tests and benches only, hidden from the docs.
#[doc(hidden)]
pub mod handoff;
pub mod image;
mod log_limit;
mod memory;
pub mod runtime;
pub mod state;
pub mod task;
#[cfg(test)]
mod test_process;
pub mod transport;

pub use error_chain::{messages as error_messages, ErrorChain};
