//! `cosmic`: the command-line tool of cosmic.
//!
//! It makes key files (`keygen`), shows what an image file holds and whether it is intact
//! (`inspect`), and lists what a checkpoint store holds (`store ls`). Every subcommand takes
//! `--json` to print its result as JSON on stdout, for scripts. Logs go to stderr, filtered by
//! `RUST_LOG` (default `warn`).
//!
//! Exit codes: 0 on success, 1 when something is wrong (a damaged image, a missing file, a
//! key file that exists), 2 for a command line that does not parse.
//!
//! Keys come from files (or, for the commands that will use them, environment variables),
//! never from command-line values, which other users of the machine can read.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::output::Format;

/// Command-line tool of cosmic: cooperative, migratable tasks.
#[derive(Debug, Parser)]
#[command(name = "cosmic", version, propagate_version = true)]
struct Cli {
    /// Print the result as JSON on stdout (for scripts).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new cluster key file and/or a new host key pair (files only their owner can
    /// read), and print the host's public key.
    Keygen(commands::keygen::Args),
    /// Show an image file's header (type, versions, fingerprint, writer, sizes) and check its
    /// checksums, without needing its type. Knows the store's record files too.
    Inspect(commands::inspect::Args),
    /// Look into a checkpoint store.
    #[command(subcommand)]
    Store(commands::store::Command),
    // The cluster's commands come here, each with its file under src/commands/, once the
    // cluster coordinator they talk to exists: `status`, `migrate TASK HOST`, `drain HOST`,
    // `host add NAME KEY`, `host run --config FILE` (a `Host` group like `Store`).
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen::run(args, format),
        Command::Inspect(args) => commands::inspect::run(args, format),
        Command::Store(command) => commands::store::run(command, format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::report_failure(&failure, format);
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (`warn` when it is unset; directives that do not
/// parse are ignored).
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
