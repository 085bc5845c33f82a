//! Logging for the example programs: to stderr, filtered by `RUST_LOG`.
//!
//! Without `RUST_LOG`, warnings and errors still show: a refused move, a checkpoint that could
//! not be read, a task type that was not registered are things the user must see.

use tracing_subscriber::EnvFilter;

/// Installs a subscriber that writes to stderr; `RUST_LOG` (e.g. `info`, `cosmic=debug`)
/// chooses what, `warn` when it is unset or does not parse. Does nothing if one is installed.
pub fn init() {
    let filter = EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
