//! `cosmic`: the command-line tool of cosmic.
//!
//! It makes key files (`keygen`), shows what an image file holds and whether it is intact
//! (`inspect`), lists what a checkpoint store holds (`store ls`), and operates a cluster: what
//! its coordinator says (`status`), trusting a host's key (`host add`), running a member
//! (`host run --config FILE`), moving a task (`migrate TASK HOST`) and emptying a member
//! (`drain HOST`). Every subcommand takes `--json` to print its result as JSON on stdout, for
//! scripts. Logs go to stderr, filtered by `RUST_LOG` (default `warn`; `info` for `host run`).
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
    /// The cluster as its coordinator sees it: live hosts (trusted or not, load, draining)
    /// and every task (owner, token, current checkpoint and, with `--store`, its age).
    Status(commands::status::Args),
    /// Trust a host's key (`host add`), or run a member host from a config file (`host run`).
    #[command(subcommand)]
    Host(commands::host::Command),
    /// Move a task to another member: its owner is asked to move it.
    Migrate(commands::operate::MigrateArgs),
    /// Empty a member: it moves every task away and takes no new ones, staying a member.
    Drain(commands::operate::DrainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A host logs what it does; the other commands only what goes wrong.
    init_logging(match cli.command {
        Command::Host(commands::host::Command::Run(_)) => LevelFilter::INFO,
        _ => LevelFilter::WARN,
    });
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen::run(args, format),
        Command::Inspect(args) => commands::inspect::run(args, format),
        Command::Store(command) => commands::store::run(command, format),
        Command::Status(args) => commands::status::run(args, format),
        Command::Host(command) => commands::host::run(command, format),
        Command::Migrate(args) => commands::operate::migrate(args, format),
        Command::Drain(args) => commands::operate::drain(args, format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::report_failure(&failure, format);
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (`default` when it is unset; directives that do
/// not parse are ignored).
fn init_logging(default: LevelFilter) {
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
