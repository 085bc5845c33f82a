//! `cosmic inspect FILE`: an image's header and the verdict on its checksums, like CRIU's
//! `crit show`, without the image's Rust type. Files of a store's layout
//! (`tasks/<id>/...`) are named for what they are, and records show what they say.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cosmic::checkpoint::{CatalogEntry, EpochRecord, Outcome, TaskRecord};
use cosmic::image::{self, BodyCheck, Encoding, Endian, Examination, ExamineError};
use serde::Serialize;

use crate::output::{self, Failure, Format, Report};

/// Images at least this large get a progress bar while their checksum is computed.
const PROGRESS_FROM: u64 = 64 << 20;

/// Arguments of `cosmic inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The image file: a checkpoint, or a record of a store (task, outcome, epoch).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// What `cosmic inspect` found.
#[derive(Debug, Serialize)]
struct Inspection {
    file: PathBuf,
    /// What the file is in a store's layout, if its path says.
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<Entry>,
    encoding: &'static str,
    type_name: String,
    type_version: u32,
    /// 16 hex digits.
    fingerprint: String,
    writer: Writer,
    /// Every named type in the state, with the version it was written at.
    versions: BTreeMap<String, u32>,
    header_bytes: u64,
    body_bytes: u64,
    /// Header, body and the body's 4-byte checksum.
    image_bytes: u64,
    file_bytes: u64,
    checksum: Checksum,
    /// What a record says (records of a store only, when the body is sound).
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Record>,
}

#[derive(Debug, Serialize)]
struct Writer {
    arch: String,
    byte_order: &'static str,
    pointer_width: u8,
    /// 16 hex digits; zeros when the writer could not read its executable.
    build_id: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    TaskRecord {
        task: String,
    },
    Checkpoint {
        task: String,
        seq: u64,
        steps: u64,
    },
    Outcome {
        task: String,
    },
    EpochRecord {
        task: String,
        epoch: u64,
        record: String,
    },
    Other {
        key: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum Checksum {
    Ok,
    Mismatch { stored: String, computed: String },
    Truncated { needed: u64, available: u64 },
    TrailingBytes { extra: u64 },
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Task {
        type_name: String,
        output_type: String,
    },
    Outcome(OutcomeRecord),
    Epoch(EpochDetails),
    /// The file is where a record belongs, its image is sound, but it is not that record.
    Invalid {
        error: String,
    },
}

/// How a task ended, as `store ls` shows it too.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum OutcomeRecord {
    Completed {
        /// The output's type, from its image's header.
        output_type: String,
        output_bytes: u64,
    },
    Failed {
        message: String,
    },
    Cancelled,
}

impl OutcomeRecord {
    pub(crate) fn of(outcome: &Outcome) -> OutcomeRecord {
        match outcome {
            Outcome::Completed(output) => OutcomeRecord::Completed {
                output_type: match image::examine(output) {
                    Ok(found) => found.header.type_name,
                    Err(error) => format!("(unreadable: {error})"),
                },
                output_bytes: output.len() as u64,
            },
            Outcome::Failed(message) => OutcomeRecord::Failed {
                message: message.clone(),
            },
            Outcome::Cancelled => OutcomeRecord::Cancelled,
        }
    }
}

impl std::fmt::Display for OutcomeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutcomeRecord::Completed {
                output_type,
                output_bytes,
            } => write!(
                f,
                "completed, output `{output_type}` ({})",
                output::size(*output_bytes)
            ),
            OutcomeRecord::Failed { message } => write!(f, "failed: {message}"),
            OutcomeRecord::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// An epoch record, as `store ls` shows it too.
#[derive(Debug, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub(crate) enum EpochDetails {
    /// This host holds a copy offered by `from`, waiting for its decision.
    Prepared {
        from: String,
        from_addr: String,
        handoff: u64,
        type_name: String,
        output_type: String,
        checkpoint_seq: u64,
        checkpoint_steps: u64,
    },
    /// This host owns the task from this epoch on.
    Owner { handoff: u64 },
    /// This host gave the task to `to`.
    Moved {
        to: String,
        to_addr: String,
        handoff: u64,
    },
}

impl EpochDetails {
    pub(crate) fn of(record: &EpochRecord) -> EpochDetails {
        match record.clone() {
            EpochRecord::Prepared {
                from,
                from_addr,
                handoff,
                type_name,
                output_type,
                checkpoint,
            } => EpochDetails::Prepared {
                from,
                from_addr,
                handoff,
                type_name,
                output_type,
                checkpoint_seq: checkpoint.seq,
                checkpoint_steps: checkpoint.steps,
            },
            EpochRecord::Owner { handoff } => EpochDetails::Owner { handoff },
            EpochRecord::Moved {
                to,
                to_addr,
                handoff,
            } => EpochDetails::Moved {
                to,
                to_addr,
                handoff,
            },
        }
    }
}

impl std::fmt::Display for EpochDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpochDetails::Prepared {
                from,
                from_addr,
                handoff,
                checkpoint_seq,
                checkpoint_steps,
                ..
            } => write!(
                f,
                "prepared: holds a copy from {from} ({from_addr}), checkpoint #{checkpoint_seq} \
                 at {checkpoint_steps} steps, hand-off {handoff:016x}, awaiting its decision"
            ),
            EpochDetails::Owner { handoff } => {
                write!(f, "owner: runs here since hand-off {handoff:016x}")
            }
            EpochDetails::Moved {
                to,
                to_addr,
                handoff,
            } => write!(f, "moved to {to} ({to_addr}), hand-off {handoff:016x}"),
        }
    }
}

impl Report for Inspection {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "file:          {}", self.file.display())?;
        if let Some(entry) = &self.entry {
            let what = match entry {
                Entry::TaskRecord { task } => format!("task record of task {task}"),
                Entry::Checkpoint { task, seq, steps } => {
                    format!("checkpoint #{seq} of task {task}, after {steps} steps")
                }
                Entry::Outcome { task } => format!("outcome record of task {task}"),
                Entry::EpochRecord {
                    task,
                    epoch,
                    record,
                } => format!("epoch {epoch} record ({record}) of task {task}"),
                Entry::Other { key } => format!("`{key}`"),
            };
            writeln!(out, "store entry:   {what}")?;
        }
        writeln!(out, "encoding:      {}", self.encoding)?;
        writeln!(out, "type:          {}", self.type_name)?;
        writeln!(out, "type version:  {}", self.type_version)?;
        writeln!(out, "fingerprint:   {}", self.fingerprint)?;
        let w = &self.writer;
        writeln!(
            out,
            "writer:        {}, {} endian, {}-bit pointers, build {}",
            w.arch, w.byte_order, w.pointer_width, w.build_id
        )?;
        writeln!(out, "header size:   {} bytes", self.header_bytes)?;
        writeln!(out, "body size:     {} bytes", self.body_bytes)?;
        writeln!(
            out,
            "total size:    {} bytes (file: {} bytes)",
            self.image_bytes, self.file_bytes
        )?;
        let verdict = match &self.checksum {
            Checksum::Ok => "ok".to_owned(),
            Checksum::Mismatch { stored, computed } => {
                format!("MISMATCH (stored {stored}, computed {computed})")
            }
            Checksum::Truncated { needed, available } => format!(
                "TRUNCATED (the body and its checksum need {needed} bytes, {available} remain)"
            ),
            Checksum::TrailingBytes { extra } => {
                format!("TRAILING BYTES ({extra} after the end of the image; not checked)")
            }
        };
        writeln!(out, "checksum:      {verdict}")?;
        writeln!(out, "versions:")?;
        for (name, version) in &self.versions {
            writeln!(out, "  {name} v{version}")?;
        }
        match &self.record {
            None => {}
            Some(Record::Task {
                type_name,
                output_type,
            }) => writeln!(
                out,
                "record:        task of type `{type_name}`, output `{output_type}`"
            )?,
            Some(Record::Outcome(outcome)) => writeln!(out, "record:        {outcome}")?,
            Some(Record::Epoch(details)) => writeln!(out, "record:        {details}")?,
            Some(Record::Invalid { error }) => writeln!(out, "record:        INVALID: {error}")?,
        }
        Ok(())
    }
}

pub(crate) fn run(args: Args, format: Format) -> Result<(), Failure> {
    let path = &args.file;
    let name = path.display();
    let file = File::open(path).map_err(|error| Failure::because(&name, &error))?;
    let metadata = file
        .metadata()
        .map_err(|error| Failure::because(&name, &error))?;
    if metadata.is_dir() {
        return Err(Failure::new(format!(
            "{name} is a folder, not an image (for a store's folder, try `cosmic store ls {name}`)"
        )));
    }
    let file_bytes = metadata.len();
    let bar = if file_bytes >= PROGRESS_FROM {
        output::progress_bar(
            file_bytes,
            format,
            "checking {bytes}/{total_bytes} {wide_bar} {eta}",
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let examined = image::examine_reader(file, |read| bar.set_position(read));
    bar.finish_and_clear();
    let Examination { header, body } = examined.map_err(|error| match error {
        ExamineError::Image(error) => Failure::new(format!("{name}: {}", output::chain(&error))),
        error => Failure::because(&name, &error),
    })?;

    let entry = store_entry(path);
    let record = match (&entry, body.is_ok()) {
        (Some(entry), true) => read_record(path, entry)?,
        _ => None,
    };
    let inspection = Inspection {
        file: path.clone(),
        entry: entry.as_ref().map(describe_entry),
        encoding: match header.encoding {
            Encoding::Portable => "portable",
            Encoding::Native => "native",
            _ => "unknown",
        },
        type_name: header.type_name.clone(),
        type_version: header.type_version,
        fingerprint: header.fingerprint.to_string(),
        writer: Writer {
            arch: header.isa.arch.to_string(),
            byte_order: match header.isa.endian {
                Endian::Little => "little",
                Endian::Big => "big",
            },
            pointer_width: header.isa.pointer_width,
            build_id: format!("{:016x}", header.isa.build_id),
        },
        versions: header.versions.clone(),
        header_bytes: header.header_len as u64,
        body_bytes: header.body_len,
        image_bytes: header.image_len(),
        file_bytes,
        checksum: match body {
            BodyCheck::Ok => Checksum::Ok,
            BodyCheck::Mismatch { stored, computed } => Checksum::Mismatch {
                stored: format!("{stored:08x}"),
                computed: format!("{computed:08x}"),
            },
            BodyCheck::Truncated { needed, available } => Checksum::Truncated { needed, available },
            BodyCheck::TrailingBytes { extra } => Checksum::TrailingBytes { extra },
        },
        record,
    };
    output::print(&inspection, format)?;
    if let Some(error) = body.error() {
        return Err(Failure::new(format!("{name}: {}", output::chain(&error))).after_report());
    }
    if let Some(Record::Invalid { error }) = &inspection.record {
        return Err(Failure::new(format!("{name}: {error}")).after_report());
    }
    Ok(())
}

/// What the file is in a store's layout: the last components of its path from a `tasks`
/// folder on (`.../tasks/<id>/ckpt/<seq>-<steps>`), if they name an entry.
fn store_entry(path: &Path) -> Option<CatalogEntry> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<String> = path
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    let start = parts.iter().rposition(|part| part == "tasks")?;
    CatalogEntry::parse(&parts[start..].join("/"))
}

fn describe_entry(entry: &CatalogEntry) -> Entry {
    let task = entry.task().to_string();
    match *entry {
        CatalogEntry::TaskRecord { .. } => Entry::TaskRecord { task },
        CatalogEntry::Checkpoint { key, .. } => Entry::Checkpoint {
            task,
            seq: key.seq,
            steps: key.steps,
        },
        CatalogEntry::Outcome { .. } => Entry::Outcome { task },
        CatalogEntry::Epoch { epoch, kind, .. } => Entry::EpochRecord {
            task,
            epoch,
            record: kind.to_owned(),
        },
        // Kinds of entries newer than this tool show as their key.
        _ => Entry::Other { key: entry.key() },
    }
}

/// Decodes a record file (checkpoints are the tasks' own types: not decoded).
fn read_record(path: &Path, entry: &CatalogEntry) -> Result<Option<Record>, Failure> {
    if matches!(entry, CatalogEntry::Checkpoint { .. }) {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|error| Failure::because(path.display(), &error))?;
    let invalid = |what: &str, error: &dyn std::error::Error| Record::Invalid {
        error: format!("not a valid {what}: {}", output::chain(error)),
    };
    Ok(Some(match entry {
        CatalogEntry::TaskRecord { .. } => match TaskRecord::decode(&bytes) {
            Ok(record) => Record::Task {
                type_name: record.type_name,
                output_type: record.output_type,
            },
            Err(error) => invalid("task record", &error),
        },
        CatalogEntry::Outcome { .. } => match Outcome::decode(&bytes) {
            Ok(outcome) => Record::Outcome(OutcomeRecord::of(&outcome)),
            Err(error) => invalid("outcome record", &error),
        },
        CatalogEntry::Epoch { kind, .. } => match EpochRecord::decode(&bytes) {
            Ok(record) if record.kind() != *kind => Record::Invalid {
                error: format!(
                    "the file is named as a `{kind}` record but holds a `{}` record",
                    record.kind()
                ),
            },
            Ok(record) => Record::Epoch(EpochDetails::of(&record)),
            Err(error) => invalid("epoch record", &error),
        },
        _ => return Ok(None),
    }))
}
