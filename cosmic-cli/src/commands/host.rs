//! `cosmic host ...`: trusting a host's key (`host add`, the operator's act that lets a member
//! take part), and running a member host from a configuration file (`host run`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cosmic::cluster::HostConfig;
use cosmic::transport::{NodeName, PublicKey};
use cosmic::{HostKey, Migratable};
use cosmic_examples::heat::HeatPlate;
use cosmic_examples::primes::PrimeSum;
use serde::Serialize;

use super::cluster::{self, CoordinatorArgs};
use crate::output::{self, Failure, Format, Report};

/// `cosmic host` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Trust a host's public key under its name: members exchange tasks only with hosts an
    /// operator trusted, and accept an operator's requests only from a trusted name. Members
    /// learn it at their next scan.
    Add(AddArgs),
    /// Run a member host from a configuration file (TOML; see the README). It runs the
    /// example task types (PrimeSum, HeatPlate); a real deployment runs its own binary with
    /// `cosmic::cluster::HostConfig` and its own types. SIGTERM or SIGINT: it moves its tasks
    /// away, ends its lease and exits 0.
    Run(RunArgs),
}

/// Arguments of `cosmic host add`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The host's name (or the operator's: `operator`, as `cosmic migrate --as` uses).
    #[arg(value_name = "NAME")]
    name: String,

    /// Its public key: 64 hex digits (what `cosmic keygen --host-key` prints; a public key is
    /// not a secret), a file holding them, or the host key file itself.
    #[arg(value_name = "KEY-FILE-OR-HEX")]
    key: String,

    #[command(flatten)]
    coordinator: CoordinatorArgs,
}

/// Arguments of `cosmic host run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The host's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub(crate) fn run(command: Command, format: Format) -> Result<(), Failure> {
    match command {
        Command::Add(args) => add(args, format),
        Command::Run(args) => run_host(args, format),
    }
}

/// What `cosmic host add` did.
#[derive(Debug, Serialize)]
struct Trusted {
    name: String,
    public_key: String,
    /// The key trusted for the name before, if another one.
    replaced: Option<String>,
    /// The same key was trusted already.
    unchanged: bool,
}

impl Report for Trusted {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.unchanged {
            return writeln!(
                out,
                "`{}` was already trusted with public key {}",
                self.name, self.public_key
            );
        }
        writeln!(
            out,
            "trusted `{}` with public key {}",
            self.name, self.public_key
        )?;
        if let Some(old) = &self.replaced {
            writeln!(out, "(it replaces the key trusted before: {old})")?;
        }
        writeln!(out, "members learn it at their next scan")
    }
}

fn add(args: AddArgs, format: Format) -> Result<(), Failure> {
    let name = NodeName::new(args.name.as_str())
        .map_err(|error| Failure::because(format!("invalid host name `{}`", args.name), &error))?;
    let key = public_key(&args.key)?;
    let trusted = cluster::tokio()?.block_on(async {
        let coordinator = args.coordinator.open().await?;
        let before = coordinator
            .trusted()
            .await
            .map_err(|error| Failure::because("reading the coordinator", &error))?
            .into_iter()
            .find(|(trusted, _)| trusted == name.as_str())
            .map(|(_, key)| key);
        coordinator
            .trust(name.as_str(), key)
            .await
            .map_err(|error| Failure::because("trusting the key", &error))?;
        Ok::<_, Failure>(Trusted {
            name: name.to_string(),
            public_key: key.to_string(),
            replaced: before.filter(|old| *old != key).map(|old| old.to_string()),
            unchanged: before == Some(key),
        })
    })?;
    output::print(&trusted, format)
}

/// A public key from 64 hex digits, a file holding them, or a host key file.
fn public_key(text: &str) -> Result<PublicKey, Failure> {
    let path = Path::new(text);
    // Hex digits, or something of a key's length, that names no file: a key, maybe mistyped.
    let looks_hex = !text.is_empty() && text.trim().chars().all(|c| c.is_ascii_hexdigit());
    let key_length = text.trim().len() == 2 * cosmic::transport::PUBLIC_KEY_LEN;
    if (looks_hex || key_length) && !path.exists() {
        return text
            .parse()
            .map_err(|error| Failure::because(format!("malformed public key `{text}`"), &error));
    }
    let metadata = std::fs::metadata(path).map_err(|error| {
        if error.kind() == io::ErrorKind::NotFound {
            Failure::new(format!(
                "no key file {text} (give a public key as 64 hex digits, a file holding them, or a host key file)"
            ))
        } else {
            Failure::because(format!("cannot read the key file {text}"), &error)
        }
    })?;
    if !metadata.is_file() || metadata.len() > 4096 {
        return Err(Failure::new(format!(
            "{text} is not a key file (a public key file holds 64 hex digits)"
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::because(format!("cannot read the key file {text}"), &error))?;
    if let Ok(hex) = std::str::from_utf8(&bytes) {
        match hex.parse::<PublicKey>() {
            Ok(key) => return Ok(key),
            // Text that is not a key: say what is wrong with it.
            Err(error) if !hex.trim().is_empty() && hex.is_ascii() => {
                return Err(Failure::because(
                    format!("{text} does not hold a public key"),
                    &error,
                ))
            }
            Err(_) => {}
        }
    }
    // Not text: the host key file itself (PKCS#8), whose public half is what is trusted.
    HostKey::from_file(path)
        .map(|key| key.public_key())
        .map_err(|error| {
            Failure::because(
                format!("{text} holds neither a public key (64 hex digits) nor a host key"),
                &error,
            )
        })
}

/// What `cosmic host run` prints when the host is up, and when it has left.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum HostEvent {
    Ready {
        name: String,
        addr: String,
        public_key: String,
        types: Vec<String>,
    },
    Left {
        moved: usize,
        left_behind: usize,
        elapsed_secs: f64,
    },
}

/// One line per event: a sentence, or with `--json` one JSON document per line.
fn print_event(event: &HostEvent, format: Format) {
    let line = match (format, event) {
        (Format::Json, event) => serde_json::to_string(event).unwrap_or_default(),
        (
            Format::Human,
            HostEvent::Ready {
                name,
                addr,
                public_key,
                types,
            },
        ) => format!(
            "host `{name}` is a member, listening at {addr}, public key {public_key}; runs {}",
            types.join(", ")
        ),
        (
            Format::Human,
            HostEvent::Left {
                moved,
                left_behind,
                elapsed_secs,
            },
        ) => format!(
            "left the cluster in {elapsed_secs:.1}s: {moved} tasks moved, {left_behind} checkpointed for the others to take over"
        ),
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run_host(args: RunArgs, format: Format) -> Result<(), Failure> {
    let config =
        HostConfig::from_file(&args.config).map_err(|error| Failure::new(output::chain(&error)))?;
    config
        .validate()
        .map_err(|error| Failure::because(args.config.display(), &error))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::because("cannot start the async runtime", &error))?;
    tokio.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind| {
            signal(kind).map_err(|error| Failure::because("cannot watch for signals", &error))
        };
        let mut terminate = watch(SignalKind::terminate())?;
        let mut interrupt = watch(SignalKind::interrupt())?;
        let builder = config
            .builder()
            .await
            .map_err(|error| Failure::because(args.config.display(), &error))?;
        let runtime = builder
            .register::<PrimeSum>()
            .register::<HeatPlate>()
            .build()
            .await
            .map_err(|error| {
                Failure::because(format!("cannot start host `{}`", config.name), &error)
            })?;
        let types = [PrimeSum::type_name(), HeatPlate::type_name()];
        print_event(
            &HostEvent::Ready {
                name: config.name.clone(),
                addr: runtime
                    .local_addr()
                    .map_or_else(|| "-".to_owned(), |addr| addr.to_string()),
                public_key: runtime
                    .public_key()
                    .map_or_else(|| "-".to_owned(), |key| key.to_string()),
                types: types.iter().map(|name| name.to_string()).collect(),
            },
            format,
        );
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(host = %config.name, %signal, deadline = ?config.leave_deadline(), "leaving the cluster");
        let report = runtime
            .leave(config.leave_deadline())
            .await
            .map_err(|error| Failure::because("leaving the cluster", &error))?;
        print_event(
            &HostEvent::Left {
                moved: report.moved.len(),
                left_behind: report.left_behind.len(),
                elapsed_secs: report.elapsed.as_secs_f64(),
            },
            format,
        );
        Ok(())
    })
}
