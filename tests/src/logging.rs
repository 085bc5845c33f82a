//! Logging for the test programs (`src/bin`): to stderr, which the tests keep apart from the
//! answers the programs print on stdout.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Installs a subscriber that writes to stderr without colours; `RUST_LOG` chooses what,
/// `default` when it is unset or does not parse.
pub fn init(default: LevelFilter) {
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
