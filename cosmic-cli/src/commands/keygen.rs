//! `cosmic keygen`: new key files, readable only by their owner from the moment they exist.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cosmic::transport::{HostKeyError, KeyError};
use cosmic::{ClusterKey, HostKey};
use serde::Serialize;

use crate::output::{self, Failure, Format, Report};

/// Arguments of `cosmic keygen`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("keys").required(true).multiple(true))]
pub(crate) struct Args {
    /// Write a new cluster key (the secret every host of the cluster shares) to this file.
    #[arg(long, value_name = "PATH", group = "keys")]
    cluster_key: Option<PathBuf>,

    /// Write a new host key pair (this host's own identity) to this file, and print its
    /// public key: what `cosmic host add NAME KEY` takes on the other hosts.
    #[arg(long, value_name = "PATH", group = "keys")]
    host_key: Option<PathBuf>,

    /// Replace files that exist (atomically). Without it, an existing file is an error and
    /// nothing is written.
    #[arg(long)]
    force: bool,
}

/// What `cosmic keygen` wrote.
#[derive(Debug, Serialize)]
struct Written {
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_key: Option<KeyFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_key: Option<KeyFile>,
}

#[derive(Debug, Serialize)]
struct KeyFile {
    path: PathBuf,
    /// Whether a file was there before (and was replaced, with `--force`).
    replaced: bool,
    /// The host's public key, 64 hex digits (host keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

impl Report for Written {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let line = |out: &mut dyn Write, what: &str, file: &KeyFile| {
            let replaced = if file.replaced {
                ", replaced the old one"
            } else {
                ""
            };
            writeln!(out, "{what} {} (mode 0600{replaced})", file.path.display())
        };
        if let Some(file) = &self.cluster_key {
            line(out, "wrote cluster key", file)?;
        }
        if let Some(file) = &self.host_key {
            line(out, "wrote host key   ", file)?;
            if let Some(public) = &file.public_key {
                writeln!(out, "public key: {public}")?;
            }
        }
        Ok(())
    }
}

pub(crate) fn run(args: Args, format: Format) -> Result<(), Failure> {
    if args.cluster_key.is_some() && args.cluster_key == args.host_key {
        return Err(Failure::new(
            "--cluster-key and --host-key name the same file; each key needs a file of its own",
        ));
    }
    // Refuse before writing anything, so a refusal never leaves one key new and one old.
    let mut existed = Vec::new();
    for path in args.cluster_key.iter().chain(&args.host_key) {
        let exists = exists(path)?;
        if exists && !args.force {
            return Err(exists_failure(path));
        }
        existed.push(exists);
    }
    let mut existed = existed.into_iter();
    let mut written = Written {
        cluster_key: None,
        host_key: None,
    };
    if let Some(path) = &args.cluster_key {
        match ClusterKey::create(path, args.force) {
            Ok(_) => {}
            Err(KeyError::Exists { .. }) => return Err(exists_failure(path)),
            Err(error) => return Err(Failure::new(output::chain(&error))),
        }
        written.cluster_key = Some(KeyFile {
            path: path.clone(),
            replaced: existed.next().unwrap_or(false),
            public_key: None,
        });
    }
    if let Some(path) = &args.host_key {
        let key = match HostKey::create(path, args.force) {
            Ok(key) => key,
            Err(HostKeyError::Exists { .. }) => return Err(exists_failure(path)),
            Err(error) => return Err(Failure::new(output::chain(&error))),
        };
        written.host_key = Some(KeyFile {
            path: path.clone(),
            replaced: existed.next().unwrap_or(false),
            public_key: Some(key.public_key().to_string()),
        });
    }
    output::print(&written, format)
}

/// Whether something (a file, a folder, a link, even a dangling one) is at `path`.
fn exists(path: &Path) -> Result<bool, Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Failure::because(
            format!("cannot look at {}", path.display()),
            &error,
        )),
    }
}

fn exists_failure(path: &Path) -> Failure {
    Failure::new(format!(
        "{} already exists; pass --force to replace it",
        path.display()
    ))
}
