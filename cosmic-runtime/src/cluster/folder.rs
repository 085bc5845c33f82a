//! [`FolderCoordinator`]: the embedded [`Coordinator`] of hosts on one machine, agreeing
//! through a folder they all reach. The files, and why each change is atomic, are described on
//! the type.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, Lease, Member,
    MemberRecord, Owner, TaskEntry, Token,
};
use crate::task::TaskId;
use crate::transport::{NodeName, PublicKey};

/// The first byte of every record: the version of its layout.
const RECORD_FORMAT: u8 = 1;

/// The content of `<folder>/format`.
const FOLDER_FORMAT: &str = "cosmic folder coordinator 1\n";

/// What is left in `tmp/` longer than this was left by a process that died: collected.
const TEMP_MAX_AGE: Duration = Duration::from_secs(60);

/// How many threads commit the checkpoints of a batch.
const FLUSH_THREADS: usize = 32;

/// How many times a read starts over when the files it reads change under it.
const READ_ATTEMPTS: usize = 16;

type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

/// The embedded coordinator: hosts on one machine agreeing through a folder they all reach.
/// No server, nothing to install. Cheap to clone; clones share the folder, as do other
/// processes that open it.
///
/// # The files
///
/// ```text
/// <folder>/format                          "cosmic folder coordinator 1": what this folder is
/// <folder>/tmp/                            files and folders being written, renamed into place
/// <folder>/members/<host>/<incarnation>    a lease: the member record, when it was last
///                                          renewed (wall clock, ms) and its time to live
/// <folder>/members/<host>/<incarnation>.ended   the lease was ended (left, or renewed too late)
/// <folder>/trusted/<host>                  the public key trusted for <host> (hex)
/// <folder>/tasks/<task>/meta               type name and output type
/// <folder>/tasks/<task>/<token>/change     the owner from this token on (a host's incarnation,
///                                          nobody, or the outcome) and the checkpoint the
///                                          change made current, if it set one
/// <folder>/tasks/<task>/<token>/open/current    the newest checkpoint committed under <token>
/// <folder>/tasks/<task>/<token>/sealed/         `open/` once a newer token exists
/// <folder>/tasks/<task>/<token>/base       the checkpoint carried over from the token before
/// ```
///
/// Numbers are written with 20 digits (`00000000000000000007`) so names sort as numbers;
/// records are one format byte then [postcard](https://docs.rs/postcard). Folders are mode
/// 0700 and files 0600: the folder is the trust boundary, and [`FolderCoordinator::open`]
/// refuses one that the group or other users may enter.
///
/// # Why every change is atomic
///
/// Nothing is ever edited in place. A record is written whole to a file in `tmp/`, flushed to
/// disk, and then moved into place by one system call the kernel performs atomically:
/// - a **rename** replaces a file (a renewal, a trusted key, a commit): readers see the old
///   record or the new one, never a mix;
/// - a **hard link** creates a file only if the name is free (a new incarnation): of two
///   hosts joining under one name at once, exactly one link succeeds;
/// - a **rename of a folder** onto a name that holds a non-empty folder fails, so it creates a
///   folder whole and only if the name is free: a new task (`tasks/<task>/`), and every change
///   of owner (`tasks/<task>/<token + 1>/`). That is the compare-and-set on the token: of any
///   number of hosts changing a task at token `t` (moving, taking over, releasing, finishing
///   it), the one whose rename creates `<t + 1>/` wins and all others are refused.
///
/// A checkpoint is committed under token `t` by renaming it to `<t>/open/current`, which
/// works only while the folder `<t>/open` exists. Whoever creates `<t + 1>/` then renames
/// `<t>/open` to `<t>/sealed` (and so does any host that finds `<t + 1>/` while `<t>/open` is
/// still there: a host killed between the two leaves nothing half done). From then on a
/// commit under `t` fails: it is [`Fenced`], and its checkpoint is nowhere a reader looks. A
/// commit that landed before the seal was current under `t`, and a takeover or a release
/// carries it over to `t + 1` (written once to `<t + 1>/base`), so a checkpoint reported
/// committed is never lost and one reported fenced never becomes current.
///
/// A process killed at any point leaves whole records or none: what it left in `tmp/` is
/// collected a minute later by the next [`open`](FolderCoordinator::open) or join, and a
/// change it claimed but did not finish (sealing, carrying over) is finished by the next
/// host that reads the task.
///
/// # One machine, one clock
///
/// A lease is live while `renewed_at + ttl` is later than the wall clock now; every host reads
/// the same clock, so they agree on when a lease ends. A host that judges leases reads the
/// clock *before* reading the lease, and a renewal reads it *after* writing, and refuses (and
/// ends the lease) if it wrote after the lease had run out: so a lease some host saw expire is
/// never renewed, and what was decided on its expiry (a takeover, a rejoin) stands. A host
/// acting under its own lease is checked the other way round (the clock read after the
/// lease), and a takeover checks it again once its claim is in place: a claim held up by a
/// slow disk past the end of its taker's lease is refused. Hosts on
/// several machines, or a wall clock set back by more than a time to live, break this: use
/// the etcd coordinator across machines.
///
/// All file work runs on tokio's blocking threads ([`tokio::task::spawn_blocking`]): every
/// method does several system calls, most of them flushes to disk, so none is small enough to
/// run on the runtime's threads. [`commit_checkpoints`](Coordinator::commit_checkpoints)
/// spreads a batch's tasks over up to 32 threads of its own, so that their flushes overlap.
///
/// # Example
///
/// ```rust
/// use std::time::Duration;
/// use cosmic_runtime::cluster::{
///     CheckpointCommit, CheckpointRef, Coordinator, FolderCoordinator, HostLoad, MemberRecord,
///     Owner,
/// };
/// use cosmic_runtime::task::TaskId;
/// use cosmic_runtime::transport::PublicKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let folder = std::env::temp_dir().join(format!("cosmic-folder-doc-{}", std::process::id()));
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// runtime.block_on(async {
///     let coordinator = FolderCoordinator::open(&folder)?;
///     let member = |name: &str| MemberRecord {
///         name: name.into(),
///         addr: format!("127.0.0.1:{}", 7000 + name.len()),
///         public_key: PublicKey::from_bytes([name.len() as u8; 32]),
///         load: HostLoad::default(),
///         types: vec!["Counter".into()],
///         draining: false,
///     };
///     let checkpoint = |seq: u64| CheckpointRef {
///         key: format!("cluster/tasks/demo/alpha/1/ckpt-{seq}"),
///         steps: seq * 100,
///     };
///
///     // alpha joins with a short lease, starts a task and commits a checkpoint of it.
///     let alpha = coordinator.join(&member("alpha"), Duration::from_millis(200)).await?;
///     let task = TaskId::from_raw(7);
///     let token = coordinator.create(&alpha, task, "Counter", "u64", checkpoint(0)).await?;
///     let commit = CheckpointCommit { task, token, checkpoint: checkpoint(1) };
///     let verdicts = coordinator.commit_checkpoints(&alpha, &[commit]).await?;
///     assert_eq!(verdicts, vec![Ok(())]);
///
///     // alpha stops renewing its lease: once it ends, its task is orphaned...
///     let beta = coordinator.join(&member("beta"), Duration::from_secs(30)).await?;
///     tokio::time::sleep(Duration::from_millis(300)).await;
///     let entry = coordinator.task(task).await?.expect("the task is known");
///     assert_eq!(entry.owner, Owner::Orphaned);
///
///     // ...and beta takes it over, resuming from the checkpoint alpha committed.
///     let (new_token, resume_from) = coordinator.take_over(&beta, task, entry.token).await?;
///     assert!(new_token > token);
///     assert_eq!(resume_from, checkpoint(1));
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// std::fs::remove_dir_all(&folder)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FolderCoordinator {
    inner: Arc<Folder>,
}

impl FolderCoordinator {
    /// Opens the coordinator folder at `path`, creating it (mode 0700) if needed.
    ///
    /// Refused with [`CoordinatorError::Invalid`] if the folder's mode lets the group or other
    /// users in (`mode & 0o077 != 0`; `chmod 700` it), or if it is a non-empty folder that is
    /// not a coordinator folder.
    pub fn open(path: impl AsRef<Path>) -> Result<FolderCoordinator> {
        let folder = Folder::open(path.as_ref())?;
        Ok(FolderCoordinator {
            inner: Arc::new(folder),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Runs `work` on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Folder) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        #[cfg(feature = "fault-injection")]
        if let Some(error) = cut_off(what) {
            return Err(error);
        }
        let folder = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&folder))
            .await
            .map_err(|error| CoordinatorError::Unavailable {
                what: what.to_owned(),
                source: Box::new(error),
            })?
    }
}

/// The variable that names the flag file of [`cut_off`].
#[cfg(feature = "fault-injection")]
const FAULT_CUT_VAR: &str = "COSMIC_FAULT_COORDINATOR_CUT";

/// Fault injection for the partition tests (`tests/cluster_processes.rs`): a folder has no
/// network link to cut, so while the file named by `COSMIC_FAULT_COORDINATOR_CUT` exists,
/// every call of this process fails with [`CoordinatorError::Unavailable`] before touching the
/// folder, as if the coordinator could not be reached. The host goes on running otherwise.
/// Compiled only with the `fault-injection` feature (see `runtime/migrate/fault.rs`).
#[cfg(feature = "fault-injection")]
fn cut_off(what: &str) -> Option<CoordinatorError> {
    let flag = std::env::var_os(FAULT_CUT_VAR)?;
    Path::new(&flag)
        .exists()
        .then(|| CoordinatorError::Unavailable {
            what: what.to_owned(),
            source: format!(
                "cut off from the coordinator by fault injection ({FAULT_CUT_VAR}={})",
                Path::new(&flag).display()
            )
            .into(),
        })
}

#[async_trait]
impl Coordinator for FolderCoordinator {
    async fn join(&self, record: &MemberRecord, ttl: Duration) -> Result<Lease> {
        let record = record.clone();
        self.run("join", move |folder| folder.join(record, ttl))
            .await
    }

    async fn keep_alive(&self, lease: &Lease, record: &MemberRecord) -> Result<()> {
        let (lease, record) = (lease.clone(), record.clone());
        self.run("renew a lease", move |folder| {
            folder.keep_alive(&lease, record)
        })
        .await
    }

    async fn leave(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.run("leave", move |folder| folder.leave(&lease)).await
    }

    async fn members(&self) -> Result<Vec<Member>> {
        self.run("list members", |folder| folder.members()).await
    }

    async fn trust(&self, name: &str, key: PublicKey) -> Result<()> {
        let name = name.to_owned();
        self.run("trust a key", move |folder| folder.trust(&name, key))
            .await
    }

    async fn trusted(&self) -> Result<Vec<(String, PublicKey)>> {
        self.run("list trusted keys", |folder| folder.trusted())
            .await
    }

    async fn create(
        &self,
        lease: &Lease,
        task: TaskId,
        type_name: &str,
        output_type: &str,
        first: CheckpointRef,
    ) -> Result<Token> {
        let lease = lease.clone();
        let meta = Meta {
            type_name: type_name.to_owned(),
            output_type: output_type.to_owned(),
        };
        self.run("create a task", move |folder| {
            folder.create(&lease, task, meta, first)
        })
        .await
    }

    async fn task(&self, task: TaskId) -> Result<Option<TaskEntry>> {
        self.run("read a task", move |folder| {
            let members = folder.live_members()?;
            folder.read_task(task, &members)
        })
        .await
    }

    async fn tasks(&self) -> Result<Vec<TaskEntry>> {
        self.run("list tasks", |folder| folder.tasks()).await
    }

    async fn commit_checkpoints(
        &self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Vec<Result<(), Fenced>>> {
        let (lease, commits) = (lease.clone(), commits.to_vec());
        self.run("commit checkpoints", move |folder| {
            folder.commit_checkpoints(&lease, &commits)
        })
        .await
    }

    async fn transfer(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        to: &str,
        checkpoint: CheckpointRef,
    ) -> Result<Token> {
        let (lease, to) = (lease.clone(), to.to_owned());
        self.run("transfer a task", move |folder| {
            folder.transfer(&lease, task, token, &to, checkpoint)
        })
        .await
    }

    async fn take_over(
        &self,
        lease: &Lease,
        task: TaskId,
        seen: Token,
    ) -> Result<(Token, CheckpointRef)> {
        let lease = lease.clone();
        self.run("take over a task", move |folder| {
            folder.take_over(&lease, task, seen)
        })
        .await
    }

    async fn release(&self, lease: &Lease, task: TaskId, token: Token) -> Result<Token> {
        let lease = lease.clone();
        self.run("release a task", move |folder| {
            folder.release(&lease, task, token)
        })
        .await
    }

    async fn finish(&self, lease: &Lease, task: TaskId, token: Token, outcome: &str) -> Result<()> {
        let (lease, outcome) = (lease.clone(), outcome.to_owned());
        self.run("finish a task", move |folder| {
            folder.finish(&lease, task, token, outcome)
        })
        .await
    }

    async fn forget(&self, task: TaskId) -> Result<()> {
        self.run("forget a task", move |folder| folder.forget(task))
            .await
    }
}

// --- records ---

/// `members/<host>/<incarnation>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberFile {
    record: MemberRecord,
    /// Wall clock, milliseconds since the Unix epoch.
    renewed_at_ms: u64,
    ttl_ms: u64,
}

impl MemberFile {
    fn deadline_ms(&self) -> u64 {
        self.renewed_at_ms.saturating_add(self.ttl_ms)
    }
}

/// `tasks/<task>/meta`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    type_name: String,
    output_type: String,
}

/// `tasks/<task>/<token>/change`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    owner: Owner,
    /// The checkpoint this change made current; None: the one current before carries over.
    checkpoint: Option<CheckpointRef>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![RECORD_FORMAT]).map_err(|error| CoordinatorError::Invalid {
        what: "record",
        reason: format!("cannot be serialized: {error}"),
    })
}

fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let damaged = |detail: String| CoordinatorError::Damaged {
        what: path.display().to_string(),
        detail,
    };
    match bytes.split_first() {
        None => Err(damaged("the file is empty".into())),
        Some((&RECORD_FORMAT, body)) => match postcard::take_from_bytes(body) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(damaged(format!("{} bytes after the record", rest.len()))),
            Err(error) => Err(damaged(error.to_string())),
        },
        Some((format, _)) => Err(damaged(format!(
            "record format {format}, this version reads format {RECORD_FORMAT}"
        ))),
    }
}

// --- the folder ---

#[derive(Debug)]
struct Folder {
    root: PathBuf,
    tmp: PathBuf,
    members: PathBuf,
    trusted: PathBuf,
    tasks: PathBuf,
    /// Tests only: runs in [`Folder::claim`] between writing a new token folder and renaming
    /// it into place, where a stalled disk holds a claim up (its flushes).
    #[cfg(test)]
    before_claim: ClaimHook,
}

#[cfg(test)]
#[derive(Default)]
struct ClaimHook(std::sync::Mutex<Option<ClaimHookFn>>);

#[cfg(test)]
type ClaimHookFn = Box<dyn Fn(&Folder) + Send + Sync>;

#[cfg(test)]
impl std::fmt::Debug for ClaimHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimHook")
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CoordinatorError {
    let path = path.to_owned();
    move |source| CoordinatorError::Io {
        operation,
        path,
        source,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().try_into().unwrap_or(u64::MAX))
}

fn number_name(n: u64) -> String {
    format!("{n:020}")
}

/// A name of 20 digits, as a number.
fn parse_number(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn check_name(name: &str) -> Result<()> {
    NodeName::new(name)
        .map(drop)
        .map_err(|error| CoordinatorError::Invalid {
            what: "host name",
            reason: error.to_string(),
        })
}

fn mkdir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

fn mkdir_if_missing(path: &Path) -> Result<()> {
    match mkdir(path) {
        Err(error) if error.kind() != ErrorKind::AlreadyExists => {
            Err(io_error("create the folder", path)(error))
        }
        _ => Ok(()),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("flush the folder", path))
}

/// Writes a new file (mode 0600) whole and flushes it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    write_new_unflushed(path, bytes)?
        .sync_all()
        .map_err(io_error("flush", path))
}

/// Writes a new file (mode 0600) whole, leaving it to the page cache.
fn write_new_unflushed(path: &Path, bytes: &[u8]) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error("create", path))?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    Ok(file)
}

/// Runs `work` on every item, on up to [`FLUSH_THREADS`] threads: flushes to disk issued
/// together are written together (the file system's journal commits them as one), and a
/// thread waiting for the disk does not hold up the others.
fn in_parallel<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    if items.len() <= 1 {
        return items.iter().try_for_each(work);
    }
    let chunk = items.len().div_ceil(FLUSH_THREADS);
    std::thread::scope(|scope| {
        let work = &work;
        let threads: Vec<_> = items
            .chunks(chunk)
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(work)))
            .collect();
        threads.into_iter().try_for_each(|thread| {
            thread.join().unwrap_or_else(|_| {
                Err(CoordinatorError::Invalid {
                    what: "flush",
                    reason: "a flushing thread panicked".into(),
                })
            })
        })
    })
}

/// A file's bytes, or None if it does not exist.
fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(io_error("read", path)(error)),
    }
}

fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    read_opt(path)?
        .map(|bytes| decode(path, &bytes))
        .transpose()
}

/// Not found, or a path through something that is no longer a folder.
fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// The names in a folder (None if it does not exist).
fn list(path: &Path) -> Result<Option<Vec<String>>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if is_missing(&error) => return Ok(None),
        Err(error) => return Err(io_error("list", path)(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
            Err(error) if is_missing(&error) => return Ok(None),
            Err(error) => return Err(io_error("list", path)(error)),
        }
    }
    Ok(Some(names))
}

/// A fresh name for something in `tmp/`, unique across processes.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        TaskId::random().0
    )
}

/// Whether a rename of a folder failed because the target name is taken.
fn is_taken(error: &io::Error) -> bool {
    error.kind() == ErrorKind::AlreadyExists
        || error.raw_os_error() == Some(libc::ENOTEMPTY)
        || error.raw_os_error() == Some(libc::EEXIST)
}

/// The live incarnation of each member's name.
type LiveMembers = HashMap<String, u64>;

/// What the folder of one name says about its leases.
#[derive(Debug)]
struct NameState {
    /// The newest incarnation (of a record or an end marker).
    newest: u64,
    /// The newest incarnation's record, if it is there.
    record: Option<MemberFile>,
    /// The newest incarnation was ended.
    ended: bool,
}

impl NameState {
    /// The live incarnation and its record (`now_ms` read before the state was).
    fn live(&self, now_ms: u64) -> Option<(u64, &MemberFile)> {
        match &self.record {
            Some(file) if !self.ended && file.deadline_ms() > now_ms => Some((self.newest, file)),
            _ => None,
        }
    }
}

/// Whether a change of owner was claimed.
enum Claim {
    Won,
    Lost,
}

impl Folder {
    fn open(root: &Path) -> Result<Folder> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(root)
            .map_err(io_error("create the coordinator folder", root))?;
        let metadata = fs::metadata(root).map_err(io_error("inspect", root))?;
        if !metadata.is_dir() {
            return Err(CoordinatorError::Invalid {
                what: "coordinator folder",
                reason: format!("{} is not a folder", root.display()),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CoordinatorError::Invalid {
                    what: "coordinator folder",
                    reason: format!(
                        "{} has mode {mode:03o}: other users may read or change the cluster's \
                         records; restrict it to its owner with `chmod 700 {}`",
                        root.display(),
                        root.display()
                    ),
                });
            }
        }
        let folder = Folder {
            root: root.to_owned(),
            tmp: root.join("tmp"),
            members: root.join("members"),
            trusted: root.join("trusted"),
            tasks: root.join("tasks"),
            #[cfg(test)]
            before_claim: ClaimHook::default(),
        };
        folder.check_format()?;
        for dir in [&folder.tmp, &folder.members, &folder.trusted, &folder.tasks] {
            mkdir_if_missing(dir)?;
        }
        folder.collect_temp();
        Ok(folder)
    }

    /// Writes `format` in a new folder, checks it in an existing one.
    fn check_format(&self) -> Result<()> {
        let path = self.root.join("format");
        if read_opt(&path)?.is_none() {
            let entries = list(&self.root)?.unwrap_or_default();
            if entries.iter().any(|name| !name.starts_with(".format-")) {
                return Err(CoordinatorError::Invalid {
                    what: "coordinator folder",
                    reason: format!(
                        "{} holds files but no `format` file: it is not a coordinator folder",
                        self.root.display()
                    ),
                });
            }
            let temp = self.root.join(format!(".format-{}", temp_name()));
            write_new(&temp, FOLDER_FORMAT.as_bytes())?;
            let linked = fs::hard_link(&temp, &path);
            let _ = fs::remove_file(&temp);
            match linked {
                Err(error) if error.kind() != ErrorKind::AlreadyExists => {
                    return Err(io_error("create", &path)(error))
                }
                _ => sync_dir(&self.root)?,
            }
        }
        let bytes = read_opt(&path)?.unwrap_or_default();
        if bytes != FOLDER_FORMAT.as_bytes() {
            return Err(CoordinatorError::Damaged {
                what: path.display().to_string(),
                detail: format!(
                    "expected {:?}, found {:?}",
                    FOLDER_FORMAT.trim_end(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
                ),
            });
        }
        Ok(())
    }

    /// Removes what dead processes left in `tmp/` (best effort: a failure is not an error).
    fn collect_temp(&self) {
        let Ok(entries) = fs::read_dir(&self.tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let old = metadata
                .modified()
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age > TEMP_MAX_AGE);
            if old {
                let path = entry.path();
                let _ = if metadata.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }

    /// Writes `bytes` to a new file in `tmp/`.
    fn temp_file(&self, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.tmp.join(temp_name());
        write_new(&path, bytes)?;
        Ok(path)
    }

    /// Replaces (or creates) the file at `path` with `bytes`, atomically.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let temp = self.temp_file(bytes)?;
        if let Err(error) = fs::rename(&temp, path) {
            let _ = fs::remove_file(&temp);
            return Err(io_error("write", path)(error));
        }
        sync_dir(path.parent().unwrap_or(path))
    }

    /// Replaces (or creates) the file at `path` with `bytes`, atomically for every reader, but
    /// without waiting for the disk: for records whose loss in a crash of the machine is
    /// harmless, and that must not wait behind other writers' flushes.
    fn replace_unflushed(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let temp = self.tmp.join(temp_name());
        drop(write_new_unflushed(&temp, bytes)?);
        fs::rename(&temp, path).map_err(|error| {
            let _ = fs::remove_file(&temp);
            io_error("write", path)(error)
        })
    }

    /// Creates the file at `path` with `bytes` if the name is free; false if it is taken.
    fn create_exclusive(&self, path: &Path, bytes: &[u8]) -> Result<bool> {
        let temp = self.temp_file(bytes)?;
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(path.parent().unwrap_or(path))?;
                Ok(true)
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(io_error("create", path)(error)),
        }
    }

    /// A new folder in `tmp/`, to be filled and renamed into place.
    fn temp_dir(&self) -> Result<PathBuf> {
        let path = self.tmp.join(temp_name());
        mkdir(&path).map_err(io_error("create the folder", &path))?;
        Ok(path)
    }

    // --- membership ---

    fn name_dir(&self, name: &str) -> PathBuf {
        self.members.join(name)
    }

    /// The leases of `name` (None if it never joined). Read the clock before calling this.
    fn name_state(&self, name: &str) -> Result<Option<NameState>> {
        let dir = self.name_dir(name);
        let Some(names) = list(&dir)? else {
            return Ok(None);
        };
        let mut newest = None;
        let mut ended = Vec::new();
        for entry in &names {
            if let Some(n) = parse_number(entry) {
                newest = newest.max(Some(n));
            } else if let Some(n) = entry.strip_suffix(".ended").and_then(parse_number) {
                newest = newest.max(Some(n));
                ended.push(n);
            }
        }
        let Some(newest) = newest else {
            return Ok(None);
        };
        // Renewals are not flushed (see `keep_alive`): after a crash of the machine the newest
        // record may be torn (empty or cut short), and then its lease has ended. A record of
        // another format is still an error: it may be a newer host's live lease.
        let path = dir.join(number_name(newest));
        let record = match read_opt(&path)? {
            Some(bytes) if bytes.first().is_none_or(|&format| format == RECORD_FORMAT) => {
                decode(&path, &bytes).ok()
            }
            Some(bytes) => Some(decode(&path, &bytes)?),
            None => None,
        };
        // A lease ended after the listing is ended too: look again for its marker.
        let ended =
            ended.contains(&newest) || dir.join(format!("{}.ended", number_name(newest))).exists();
        Ok(Some(NameState {
            newest,
            record,
            ended,
        }))
    }

    /// The record of `lease` if it is live, else `LeaseEnded`.
    ///
    /// The clock is read *after* the lease: a host judging its own lease must not use a time
    /// read before a read that stalled (a slow disk), or a lease that ran out meanwhile would
    /// still pass. (Judging others' leases is the opposite: the clock is read first.)
    fn check_lease(&self, lease: &Lease) -> Result<MemberFile> {
        let ended = || CoordinatorError::LeaseEnded {
            host: lease.host.clone(),
            incarnation: lease.incarnation,
        };
        check_name(&lease.host).map_err(|_| ended())?;
        let state = self.name_state(&lease.host)?.ok_or_else(ended)?;
        let now = now_ms();
        match state.live(now) {
            Some((incarnation, file)) if incarnation == lease.incarnation => Ok(file.clone()),
            _ => Err(ended()),
        }
    }

    fn end_marker(&self, name: &str, incarnation: u64) -> PathBuf {
        self.name_dir(name)
            .join(format!("{}.ended", number_name(incarnation)))
    }

    /// Ends a lease for good.
    fn mark_ended(&self, name: &str, incarnation: u64) -> Result<()> {
        self.create_exclusive(&self.end_marker(name, incarnation), &[])
            .map(drop)
    }

    fn join(&self, record: MemberRecord, ttl: Duration) -> Result<Lease> {
        check_name(&record.name)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 || ttl_ms > u64::MAX / 4 {
            return Err(CoordinatorError::Invalid {
                what: "time to live",
                reason: format!("{ttl:?}: a lease lasts at least a millisecond"),
            });
        }
        let name = record.name.clone();
        let dir = self.name_dir(&name);
        mkdir_if_missing(&dir)?;
        let in_use = |state: &NameState, now: u64| {
            state
                .live(now)
                .map(|(incarnation, file)| CoordinatorError::NameInUse {
                    host: name.clone(),
                    incarnation,
                    expires_in: Duration::from_millis(file.deadline_ms().saturating_sub(now)),
                })
        };
        let now = now_ms();
        let state = self.name_state(&name)?;
        if let Some(error) = state.as_ref().and_then(|state| in_use(state, now)) {
            return Err(error);
        }
        let incarnation = state.map_or(1, |state| state.newest.saturating_add(1));
        let file = MemberFile {
            record,
            renewed_at_ms: now_ms(),
            ttl_ms,
        };
        if !self.create_exclusive(&dir.join(number_name(incarnation)), &encode(&file)?)? {
            // Another host joined under this name at the same moment, and won.
            let now = now_ms();
            let state = self.name_state(&name)?;
            return Err(state
                .as_ref()
                .and_then(|state| in_use(state, now))
                .unwrap_or(CoordinatorError::NameInUse {
                    host: name,
                    incarnation,
                    expires_in: ttl,
                }));
        }
        // Earlier incarnations are over: collect their files (best effort).
        for entry in list(&dir)?.unwrap_or_default() {
            let number = entry.strip_suffix(".ended").unwrap_or(&entry);
            if parse_number(number).is_some_and(|n| n < incarnation) {
                let _ = fs::remove_file(dir.join(&entry));
            }
        }
        self.collect_temp();
        Ok(Lease {
            host: name,
            incarnation,
            ttl,
        })
    }

    fn keep_alive(&self, lease: &Lease, record: MemberRecord) -> Result<()> {
        if record.name != lease.host {
            return Err(CoordinatorError::Invalid {
                what: "member record",
                reason: format!(
                    "it names `{}`, but the lease is `{}`'s",
                    record.name, lease.host
                ),
            });
        }
        let now = now_ms();
        let old = self.check_lease(lease)?;
        let renewed = MemberFile {
            record,
            renewed_at_ms: now,
            ttl_ms: old.ttl_ms,
        };
        let path = self
            .name_dir(&lease.host)
            .join(number_name(lease.incarnation));
        // A renewal is not flushed: it only has to be seen by the other hosts, which read the
        // same page cache (or, on a network file system, the server's copy once it is closed).
        // If the machine crashes the renewal may be lost or torn, and the lease then reads as
        // older or as ended: what a crashed holder's lease should be anyway. Flushing made
        // renewals wait behind every checkpoint's flush, and leases ran out on busy disks.
        self.replace_unflushed(&path, &encode(&renewed)?)?;
        let ended = CoordinatorError::LeaseEnded {
            host: lease.host.clone(),
            incarnation: lease.incarnation,
        };
        // Written after the lease ran out: someone may have seen it end, so it stays ended.
        if now_ms() >= old.deadline_ms() {
            self.mark_ended(&lease.host, lease.incarnation)?;
            return Err(ended);
        }
        // Ended (left, or a newer incarnation joined) while this renewal was written.
        match self.name_state(&lease.host)? {
            Some(state) if state.newest == lease.incarnation && !state.ended => Ok(()),
            _ => Err(ended),
        }
    }

    fn leave(&self, lease: &Lease) -> Result<()> {
        check_name(&lease.host)?;
        let record = self
            .name_dir(&lease.host)
            .join(number_name(lease.incarnation));
        if record.exists() {
            return self.mark_ended(&lease.host, lease.incarnation);
        }
        match self.name_state(&lease.host)? {
            // Already ended: a newer incarnation replaced it.
            Some(state) if state.newest > lease.incarnation => Ok(()),
            _ => Err(CoordinatorError::LeaseEnded {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            }),
        }
    }

    /// The names that ever joined.
    fn member_names(&self) -> Result<Vec<String>> {
        let mut names = list(&self.members)?.unwrap_or_default();
        names.retain(|name| NodeName::new(name.as_str()).is_ok());
        names.sort();
        Ok(names)
    }

    fn members(&self) -> Result<Vec<Member>> {
        let now = now_ms();
        let mut members = Vec::new();
        for name in self.member_names()? {
            if let Some(state) = self.name_state(&name)? {
                if let Some((incarnation, file)) = state.live(now) {
                    members.push(Member {
                        record: file.record.clone(),
                        incarnation,
                    });
                }
            }
        }
        Ok(members)
    }

    fn live_members(&self) -> Result<LiveMembers> {
        Ok(self
            .members()?
            .into_iter()
            .map(|member| (member.record.name, member.incarnation))
            .collect())
    }

    /// Whether `host`'s `incarnation` is live now.
    fn is_live(&self, host: &str, incarnation: u64) -> Result<bool> {
        let now = now_ms();
        Ok(self
            .name_state(host)?
            .and_then(|state| state.live(now).map(|(live, _)| live == incarnation))
            .unwrap_or(false))
    }

    // --- trust ---

    fn trust(&self, name: &str, key: PublicKey) -> Result<()> {
        check_name(name)?;
        self.replace(&self.trusted.join(name), format!("{key}\n").as_bytes())
    }

    fn trusted(&self) -> Result<Vec<(String, PublicKey)>> {
        let mut names = list(&self.trusted)?.unwrap_or_default();
        names.retain(|name| NodeName::new(name.as_str()).is_ok());
        names.sort();
        let mut trusted = Vec::new();
        for name in names {
            let path = self.trusted.join(&name);
            let Some(bytes) = read_opt(&path)? else {
                continue;
            };
            let key = std::str::from_utf8(&bytes)
                .map_err(|error| error.to_string())
                .and_then(|text| text.parse::<PublicKey>().map_err(|error| error.to_string()))
                .map_err(|detail| CoordinatorError::Damaged {
                    what: path.display().to_string(),
                    detail,
                })?;
            trusted.push((name, key));
        }
        Ok(trusted)
    }

    // --- tasks ---

    fn task_dir(&self, task: TaskId) -> PathBuf {
        self.tasks.join(task.to_string())
    }

    fn token_dir(&self, task: TaskId, token: u64) -> PathBuf {
        self.task_dir(task).join(number_name(token))
    }

    fn change_at(&self, task: TaskId, token: u64) -> Result<Option<Change>> {
        read_record(&self.token_dir(task, token).join("change"))
    }

    /// The newest token of `task` (None if the task is unknown).
    fn newest(&self, task: TaskId) -> Result<Option<u64>> {
        let dir = self.task_dir(task);
        let Some(names) = list(&dir)? else {
            return Ok(None);
        };
        match names.iter().filter_map(|name| parse_number(name)).max() {
            Some(newest) => Ok(Some(newest)),
            None => Err(CoordinatorError::Damaged {
                what: dir.display().to_string(),
                detail: "a task folder without any change of owner".into(),
            }),
        }
    }

    /// Stops commits under `token`: renames `<token>/open` to `<token>/sealed`.
    fn seal(&self, task: TaskId, token: u64) -> Result<()> {
        let dir = self.token_dir(task, token);
        match fs::rename(dir.join("open"), dir.join("sealed")) {
            Ok(()) => sync_dir(&dir),
            // Already sealed, or the whole token collected.
            Err(error) if is_missing(&error) => Ok(()),
            Err(error) => Err(io_error("seal", &dir)(error)),
        }
    }

    /// The checkpoint current under `token`; None if its files went away meanwhile (the
    /// caller starts over). For a token that is not the newest, seals it first so that what
    /// it returns is final.
    fn current_at(&self, task: TaskId, token: u64, newest: bool) -> Result<Option<CheckpointRef>> {
        let dir = self.token_dir(task, token);
        if !newest {
            self.seal(task, token)?;
        }
        for path in [
            dir.join("open").join("current"),
            dir.join("sealed").join("current"),
            dir.join("base"),
        ] {
            if let Some(checkpoint) = read_record(&path)? {
                return Ok(Some(checkpoint));
            }
        }
        let Some(change) = self.change_at(task, token)? else {
            return Ok(None);
        };
        if let Some(checkpoint) = change.checkpoint {
            return Ok(Some(checkpoint));
        }
        if token <= 1 {
            return Err(CoordinatorError::Damaged {
                what: dir.join("change").display().to_string(),
                detail: "the first change of owner sets no checkpoint".into(),
            });
        }
        // Carried over from the token before: settle it once, in `base`.
        let Some(carried) = self.current_at(task, token - 1, false)? else {
            return Ok(None);
        };
        let base = dir.join("base");
        match self.create_exclusive(&base, &encode(&carried)?) {
            Ok(_) => Ok(Some(carried)),
            Err(CoordinatorError::Io { source, .. }) if is_missing(&source) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The owner as it reads now: a host whose lease ended owns nothing.
    fn effective(owner: Owner, live: &LiveMembers) -> Owner {
        match owner {
            Owner::Host { host, incarnation } if live.get(&host) != Some(&incarnation) => {
                Owner::Orphaned
            }
            owner => owner,
        }
    }

    fn read_task(&self, task: TaskId, live: &LiveMembers) -> Result<Option<TaskEntry>> {
        for _ in 0..READ_ATTEMPTS {
            let Some(newest) = self.newest(task)? else {
                return Ok(None);
            };
            let meta_path = self.task_dir(task).join("meta");
            let Some(meta) = read_record::<Meta>(&meta_path)? else {
                continue;
            };
            let Some(change) = self.change_at(task, newest)? else {
                continue;
            };
            let Some(current) = self.current_at(task, newest, true)? else {
                continue;
            };
            return Ok(Some(TaskEntry {
                task,
                type_name: meta.type_name,
                output_type: meta.output_type,
                owner: Folder::effective(change.owner, live),
                token: Token(newest),
                current,
            }));
        }
        Err(self.kept_changing(task))
    }

    fn kept_changing(&self, task: TaskId) -> CoordinatorError {
        CoordinatorError::Unavailable {
            what: format!("read task {task}"),
            source: format!("its records kept changing over {READ_ATTEMPTS} reads").into(),
        }
    }

    fn tasks(&self) -> Result<Vec<TaskEntry>> {
        let live = self.live_members()?;
        let mut ids: Vec<TaskId> = list(&self.tasks)?
            .unwrap_or_default()
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        ids.sort();
        let mut entries = Vec::new();
        for task in ids {
            if let Some(entry) = self.read_task(task, &live)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Why a change at `token` is refused: the newest token and its owner now.
    fn fenced(&self, task: TaskId) -> Result<Fenced> {
        for _ in 0..READ_ATTEMPTS {
            let Some(newest) = self.newest(task)? else {
                return Err(CoordinatorError::NoSuchTask { task });
            };
            let Some(change) = self.change_at(task, newest)? else {
                continue;
            };
            let owner = match change.owner {
                Owner::Host { host, incarnation } if !self.is_live(&host, incarnation)? => {
                    Owner::Orphaned
                }
                owner => owner,
            };
            return Ok(Fenced {
                task,
                token: Token(newest),
                owner,
            });
        }
        Err(self.kept_changing(task))
    }

    fn create(
        &self,
        lease: &Lease,
        task: TaskId,
        meta: Meta,
        first: CheckpointRef,
    ) -> Result<Token> {
        self.check_lease(lease)?;
        if meta.type_name.is_empty() {
            return Err(CoordinatorError::Invalid {
                what: "task type name",
                reason: "it is empty".into(),
            });
        }
        let temp = self.temp_dir()?;
        let built = (|| {
            write_new(&temp.join("meta"), &encode(&meta)?)?;
            let token = temp.join(number_name(1));
            let change = Change {
                owner: Owner::Host {
                    host: lease.host.clone(),
                    incarnation: lease.incarnation,
                },
                checkpoint: Some(first),
            };
            self.fill_token_dir(&token, &change)?;
            sync_dir(&temp)
        })();
        if let Err(error) = built {
            let _ = fs::remove_dir_all(&temp);
            return Err(error);
        }
        let target = self.task_dir(task);
        match fs::rename(&temp, &target) {
            Ok(()) => {
                sync_dir(&self.tasks)?;
                Ok(Token(1))
            }
            Err(error) => {
                let _ = fs::remove_dir_all(&temp);
                if is_taken(&error) {
                    Err(CoordinatorError::TaskExists { task })
                } else {
                    Err(io_error("create", &target)(error))
                }
            }
        }
    }

    /// Fills a new token folder: its change record and an open commit slot.
    fn fill_token_dir(&self, dir: &Path, change: &Change) -> Result<()> {
        mkdir(dir).map_err(io_error("create the folder", dir))?;
        write_new(&dir.join("change"), &encode(change)?)?;
        let open = dir.join("open");
        mkdir(&open).map_err(io_error("create the folder", &open))?;
        sync_dir(dir)
    }

    /// The compare-and-set: creates token `from + 1` of `task` with `change`, if free. Then
    /// seals `from`, settles the current checkpoint of the new token, and collects tokens
    /// older than `from`.
    fn claim(&self, task: TaskId, from: u64, change: &Change) -> Result<Claim> {
        let next = from.saturating_add(1);
        let temp = self.tmp.join(temp_name());
        if let Err(error) = self.fill_token_dir(&temp, change) {
            let _ = fs::remove_dir_all(&temp);
            return Err(error);
        }
        #[cfg(test)]
        if let Some(hook) = &*self
            .before_claim
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            hook(self);
        }
        let target = self.token_dir(task, next);
        if let Err(error) = fs::rename(&temp, &target) {
            let _ = fs::remove_dir_all(&temp);
            return if is_taken(&error) {
                Ok(Claim::Lost)
            } else if is_missing(&error) {
                Err(CoordinatorError::NoSuchTask { task })
            } else {
                Err(io_error("create", &target)(error))
            };
        }
        sync_dir(&self.task_dir(task))?;
        self.seal(task, from)?;
        // Settle the carried-over checkpoint now; a reader would otherwise do it.
        self.current_at(task, next, true)?;
        for entry in list(&self.task_dir(task))?.unwrap_or_default() {
            if parse_number(&entry).is_some_and(|token| token < from) {
                let _ = fs::remove_dir_all(self.task_dir(task).join(entry));
            }
        }
        Ok(Claim::Won)
    }

    /// Checks that `lease` holds `token` of `task`: it is the newest, and the lease owns it.
    fn check_holds(&self, lease: &Lease, task: TaskId, token: Token) -> Result<()> {
        let holds = match self.change_at(task, token.0)? {
            Some(Change {
                owner: Owner::Host { host, incarnation },
                ..
            }) => host == lease.host && incarnation == lease.incarnation,
            _ => false,
        };
        if holds && !self.token_dir(task, token.0.saturating_add(1)).exists() {
            return Ok(());
        }
        Err(self.fenced(task)?.into())
    }

    /// Commits a batch in four passes, so that its flushes to disk go out together rather
    /// than one after the other: check each entry's token and write its checkpoint to a file
    /// in `tmp/`; flush those files (in parallel); rename each, in order, into its token's
    /// slot (a sealed slot is a fenced entry); flush the slot folders (in parallel).
    /// Commits a batch with its tasks in parallel (each task's entries in order, on one
    /// thread): the file creations and flushes to disk of different tasks then overlap
    /// instead of waiting for each other, which is most of the time a commit takes.
    fn commit_checkpoints(
        &self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Vec<Result<(), Fenced>>> {
        self.check_lease(lease)?;
        // Unknown tasks are refused before anything is written.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<TaskId, usize> = HashMap::new();
        for (n, commit) in commits.iter().enumerate() {
            if !self.task_dir(commit.task).exists() {
                return Err(CoordinatorError::NoSuchTask { task: commit.task });
            }
            let group = *group_of.entry(commit.task).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(n);
        }
        let verdicts = std::sync::Mutex::new(vec![None; commits.len()]);
        in_parallel(&groups, |group| {
            for &n in group {
                let verdict = self.commit_one(lease, &commits[n])?;
                verdicts.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(verdict);
            }
            Ok(())
        })?;
        let verdicts = verdicts.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(verdicts.into_iter().flatten().collect())
    }

    fn commit_one(&self, lease: &Lease, commit: &CheckpointCommit) -> Result<Result<(), Fenced>> {
        let (task, token) = (commit.task, commit.token);
        match self.check_holds(lease, task, token) {
            Ok(()) => {}
            Err(CoordinatorError::Fenced(fenced)) => {
                // Finish what a host killed between a change and its seal left undone.
                self.seal(task, token.0)?;
                return Ok(Err(fenced));
            }
            Err(error) => return Err(error),
        }
        let open = self.token_dir(task, token.0).join("open");
        let temp = self.temp_file(&encode(&commit.checkpoint)?)?;
        match fs::rename(&temp, open.join("current")) {
            Ok(()) => {
                sync_dir(&open)?;
                Ok(Ok(()))
            }
            Err(error) => {
                let _ = fs::remove_file(&temp);
                if is_missing(&error) {
                    // Sealed: a newer token exists.
                    Ok(Err(self.fenced(task)?))
                } else {
                    Err(io_error("commit a checkpoint to", &open)(error))
                }
            }
        }
    }

    fn transfer(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        to: &str,
        checkpoint: CheckpointRef,
    ) -> Result<Token> {
        self.check_lease(lease)?;
        check_name(to)?;
        let now = now_ms();
        let target = self
            .name_state(to)?
            .and_then(|state| {
                state
                    .live(now)
                    .filter(|(_, file)| !file.record.draining)
                    .map(|(incarnation, _)| incarnation)
            })
            .ok_or_else(|| CoordinatorError::NoSuchMember {
                host: to.to_owned(),
            })?;
        self.check_holds(lease, task, token)?;
        let change = Change {
            owner: Owner::Host {
                host: to.to_owned(),
                incarnation: target,
            },
            checkpoint: Some(checkpoint),
        };
        match self.claim(task, token.0, &change)? {
            Claim::Won => Ok(Token(token.0.saturating_add(1))),
            Claim::Lost => Err(self.fenced(task)?.into()),
        }
    }

    fn take_over(
        &self,
        lease: &Lease,
        task: TaskId,
        seen: Token,
    ) -> Result<(Token, CheckpointRef)> {
        self.check_lease(lease)?;
        let newest = self
            .newest(task)?
            .ok_or(CoordinatorError::NoSuchTask { task })?;
        if newest != seen.0 {
            return Err(self.fenced(task)?.into());
        }
        let change = self
            .change_at(task, newest)?
            .ok_or_else(|| self.fenced(task).map_or_else(|e| e, Into::into))?;
        match &change.owner {
            Owner::Orphaned => {}
            Owner::Host { host, incarnation } if !self.is_live(host, *incarnation)? => {}
            owner => {
                return Err(CoordinatorError::NotOrphaned {
                    task,
                    owner: owner.clone(),
                })
            }
        }
        let change = Change {
            owner: Owner::Host {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            },
            checkpoint: None,
        };
        match self.claim(task, seen.0, &change)? {
            Claim::Won => {}
            Claim::Lost => return Err(self.fenced(task)?.into()),
        }
        // The lease was checked before the claim, whose flushes may have stalled past its
        // end: a takeover is the taker's only if its lease still held once the claim was in
        // place. If it did not, the new token names an incarnation that is over, which every
        // reader takes for an orphan: refusing here leaves the task to the next takeover
        // instead of letting this host run it beside whoever takes it over next.
        self.check_lease(lease)?;
        let next = seen.0.saturating_add(1);
        // Ours: nobody else commits under it, so this is what the claim settled.
        let current = self
            .current_at(task, next, true)?
            .ok_or_else(|| self.kept_changing(task))?;
        Ok((Token(next), current))
    }

    fn release(&self, lease: &Lease, task: TaskId, token: Token) -> Result<Token> {
        self.check_lease(lease)?;
        self.check_holds(lease, task, token)?;
        let change = Change {
            owner: Owner::Orphaned,
            checkpoint: None,
        };
        match self.claim(task, token.0, &change)? {
            Claim::Won => Ok(Token(token.0.saturating_add(1))),
            Claim::Lost => Err(self.fenced(task)?.into()),
        }
    }

    fn finish(&self, lease: &Lease, task: TaskId, token: Token, outcome: String) -> Result<()> {
        self.check_lease(lease)?;
        let finished = Owner::Finished { outcome };
        let repeated = |folder: &Folder| -> Result<bool> {
            Ok(folder
                .change_at(task, token.0.saturating_add(1))?
                .is_some_and(|change| change.owner == finished))
        };
        if let Err(error) = self.check_holds(lease, task, token) {
            return if repeated(self)? { Ok(()) } else { Err(error) };
        }
        let change = Change {
            owner: finished.clone(),
            checkpoint: None,
        };
        match self.claim(task, token.0, &change)? {
            Claim::Won => Ok(()),
            Claim::Lost if repeated(self)? => Ok(()),
            Claim::Lost => Err(self.fenced(task)?.into()),
        }
    }

    fn forget(&self, task: TaskId) -> Result<()> {
        let fenced = self.fenced(task)?;
        if !matches!(fenced.owner, Owner::Finished { .. }) {
            return Err(CoordinatorError::Invalid {
                what: "forget",
                reason: format!(
                    "task {task} is not finished (owner: {:?}); only finished tasks are forgotten",
                    fenced.owner
                ),
            });
        }
        // One rename takes the whole task away; removing the files is then nobody's concern.
        let dir = self.task_dir(task);
        let gone = self.tmp.join(format!("forgotten-{}", temp_name()));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(error) if is_missing(&error) => return Err(CoordinatorError::NoSuchTask { task }),
            Err(error) => return Err(io_error("forget", &dir)(error)),
        }
        sync_dir(&self.tasks)?;
        let _ = fs::remove_dir_all(&gone);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::conformance;

    /// A fresh folder under the system's temporary folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "cosmic-folder-{name}-{}-{:016x}",
                std::process::id(),
                TaskId::random().0
            ));
            Scratch(path)
        }

        fn open(&self) -> FolderCoordinator {
            FolderCoordinator::open(&self.0).expect("open the coordinator folder")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    macro_rules! conformance {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $case() {
                    let scratch = Scratch::new(stringify!($case));
                    conformance::$case(scratch.open()).await;
                }
            )*
        };
    }

    conformance!(
        membership,
        name_in_use_until_the_lease_ends,
        expired_lease_is_never_renewed,
        members_lists_only_live_ones,
        trust,
        create_and_read_tasks,
        commit_checkpoints,
        commit_many_checkpoints,
        token_is_held_only_by_its_owner,
        stale_commit_never_becomes_current,
        transfer,
        take_over,
        take_over_race,
        release_then_take_over,
        finish_and_forget,
        tokens_strictly_grow,
        ended_lease_is_refused,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_on_clones_of_one_folder_each() {
        let scratch = Scratch::new("run-all");
        let root = scratch.0.clone();
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            let path = root.join(format!("case-{n}"));
            async move { FolderCoordinator::open(path).expect("open") }
        })
        .await;
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_may_enter_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("mode");
        scratch.open();
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o750)).unwrap();
        let error = FolderCoordinator::open(&scratch.0).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, CoordinatorError::Invalid { .. }),
            "{error:?}"
        );
        assert!(message.contains("mode 750"), "{message}");
        assert!(
            message.contains(&format!("chmod 700 {}", scratch.0.display())),
            "{message}"
        );
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o700)).unwrap();
        scratch.open();
    }

    #[test]
    fn a_folder_of_other_files_is_refused() {
        let scratch = Scratch::new("foreign");
        mkdir(&scratch.0).unwrap();
        fs::write(scratch.0.join("notes.txt"), "mine").unwrap();
        let error = FolderCoordinator::open(&scratch.0).unwrap_err();
        assert!(
            error.to_string().contains("not a coordinator folder"),
            "{error}"
        );
    }

    fn lease_record(name: &str) -> MemberRecord {
        conformance::record(name)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_private_and_records_whole() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("private");
        let c = scratch.open();
        let lease = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        let task = TaskId(5);
        let token = c
            .create(
                &lease,
                task,
                "T",
                "u64",
                conformance::checkpoint(task, &lease, 0),
            )
            .await
            .unwrap();
        let commit = CheckpointCommit {
            task,
            token,
            checkpoint: conformance::checkpoint(task, &lease, 1),
        };
        c.commit_checkpoints(&lease, &[commit]).await.unwrap();
        c.trust("alpha", PublicKey::from_bytes([9; 32]))
            .await
            .unwrap();
        let mut stack = vec![scratch.0.clone()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                if entry.file_type().unwrap().is_dir() {
                    assert_eq!(mode, 0o700, "{}", entry.path().display());
                    stack.push(entry.path());
                } else {
                    assert_eq!(mode, 0o600, "{}", entry.path().display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 6, "{seen} files");
        assert_eq!(
            fs::read_to_string(scratch.0.join("trusted/alpha")).unwrap(),
            format!("{}\n", PublicKey::from_bytes([9; 32]))
        );
        let leftovers = list(&scratch.0.join("tmp")).unwrap().unwrap();
        assert!(leftovers.is_empty(), "tmp/ holds {leftovers:?}");
    }

    #[tokio::test]
    async fn a_damaged_record_is_named() {
        let scratch = Scratch::new("damaged");
        let c = scratch.open();
        let lease = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        let task = TaskId(6);
        c.create(
            &lease,
            task,
            "T",
            "u64",
            conformance::checkpoint(task, &lease, 0),
        )
        .await
        .unwrap();
        let change = c
            .path()
            .join(format!("tasks/{task}/{}/change", number_name(1)));
        fs::write(&change, [RECORD_FORMAT, 0xff, 0xff]).unwrap();
        let error = c.task(task).await.unwrap_err();
        assert!(
            matches!(&error, CoordinatorError::Damaged { what, .. } if what == &change.display().to_string()),
            "{error:?}"
        );
        fs::write(&change, [7u8, 1, 2]).unwrap();
        let error = c.tasks().await.unwrap_err();
        assert!(error.to_string().contains("record format 7"), "{error}");

        let member = c
            .path()
            .join(format!("members/alpha/{}", number_name(lease.incarnation)));
        fs::write(&member, [9u8, 1, 2]).unwrap();
        let error = c.members().await.unwrap_err();
        assert!(error.to_string().contains("record format 9"), "{error}");
        let key = c.path().join("trusted/beta");
        fs::write(&key, b"not a key").unwrap();
        let error = c.trusted().await.unwrap_err();
        assert!(error.to_string().contains("trusted/beta"), "{error}");
    }

    #[tokio::test]
    async fn leftovers_of_a_killed_process_are_ignored_and_finished() {
        let scratch = Scratch::new("killed");
        let c = scratch.open();
        let a = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        let b = c
            .join(&lease_record("beta"), Duration::from_secs(60))
            .await
            .unwrap();
        let task = TaskId(7);
        let token = c
            .create(&a, task, "T", "u64", conformance::checkpoint(task, &a, 0))
            .await
            .unwrap();
        let one = CheckpointCommit {
            task,
            token,
            checkpoint: conformance::checkpoint(task, &a, 1),
        };
        assert_eq!(c.commit_checkpoints(&a, &[one]).await.unwrap(), [Ok(())]);

        // A half-written temp file, and an old one: ignored, and the old one collected.
        let tmp = c.path().join("tmp");
        fs::write(tmp.join("123-0-half"), [RECORD_FORMAT]).unwrap();
        let old = tmp.join("123-1-old");
        fs::write(&old, b"x").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * TEMP_MAX_AGE)
            .unwrap();

        // A release claimed by a process killed before it sealed the slot: commits under the
        // old token are fenced and the checkpoint carries over.
        let folder = &c.inner;
        let dir = folder.tmp.join("claimed");
        let change = Change {
            owner: Owner::Orphaned,
            checkpoint: None,
        };
        folder.fill_token_dir(&dir, &change).unwrap();
        fs::rename(&dir, folder.token_dir(task, 2)).unwrap();

        let two = CheckpointCommit {
            task,
            token,
            checkpoint: conformance::checkpoint(task, &a, 2),
        };
        let verdicts = c.commit_checkpoints(&a, &[two]).await.unwrap();
        assert!(
            matches!(
                &verdicts[..],
                [Err(Fenced {
                    token: Token(2),
                    owner: Owner::Orphaned,
                    ..
                })]
            ),
            "{verdicts:?}"
        );
        let entry = c.task(task).await.unwrap().unwrap();
        assert_eq!(entry.owner, Owner::Orphaned);
        assert_eq!(entry.current, conformance::checkpoint(task, &a, 1));
        let (taken, from) = c.take_over(&b, task, Token(2)).await.unwrap();
        assert_eq!(
            (taken, from),
            (Token(3), conformance::checkpoint(task, &a, 1))
        );

        FolderCoordinator::open(c.path()).unwrap();
        assert!(!old.exists(), "an old temp file is collected");
        assert!(tmp.join("123-0-half").exists(), "a fresh one may be in use");
    }

    #[tokio::test]
    async fn a_heartbeat_torn_by_a_crash_reads_as_an_ended_lease() {
        let scratch = Scratch::new("torn");
        let c = scratch.open();
        let lease = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        c.keep_alive(&lease, &lease_record("alpha")).await.unwrap();
        // What an unflushed renewal may leave after the machine crashed: an empty file, or
        // one cut short.
        let path = c
            .inner
            .name_dir("alpha")
            .join(number_name(lease.incarnation));
        let whole = fs::read(&path).unwrap();
        fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        assert!(c.members().await.unwrap().is_empty(), "no live member");
        fs::write(&path, b"").unwrap();
        assert!(c.members().await.unwrap().is_empty(), "no live member");
        let error = c
            .keep_alive(&lease, &lease_record("alpha"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CoordinatorError::LeaseEnded { .. }),
            "{error:?}"
        );
        let again = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(again.incarnation > lease.incarnation, "the host joins anew");
        assert_eq!(c.members().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_renewal_written_after_the_lease_ran_out_ends_it() {
        let scratch = Scratch::new("late");
        let c = scratch.open();
        let lease = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        // As if the renewal had been checked just before the deadline and written after it.
        let folder = &c.inner;
        let path = folder
            .name_dir("alpha")
            .join(number_name(lease.incarnation));
        let mut file: MemberFile = read_record(&path).unwrap().unwrap();
        file.renewed_at_ms = now_ms() - 59_999;
        folder.replace(&path, &encode(&file).unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let old = file.clone();
        let renewed = MemberFile {
            renewed_at_ms: now_ms(),
            ..file
        };
        folder.replace(&path, &encode(&renewed).unwrap()).unwrap();
        assert!(now_ms() >= old.deadline_ms());
        folder.mark_ended("alpha", lease.incarnation).unwrap();
        assert!(
            c.members().await.unwrap().is_empty(),
            "an end marker ends a fresh lease"
        );
        let error = c
            .keep_alive(&lease, &lease_record("alpha"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CoordinatorError::LeaseEnded { .. }),
            "{error:?}"
        );
        let again = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(again.incarnation, lease.incarnation + 1);
        let names = list(&folder.name_dir("alpha")).unwrap().unwrap();
        assert_eq!(
            names,
            [number_name(again.incarnation)],
            "old incarnations collected"
        );
    }

    /// The churn process test's double run: a takeover checked the taker's lease, then its
    /// claim stalled on the disk past the end of that lease (which the taker's own renewal,
    /// stalled too, could not extend). The claim landed under the ended incarnation, and the
    /// host ran the task under its next one, while another host rightly took it over again
    /// from the same checkpoint: both ran the same steps.
    #[tokio::test]
    async fn a_takeover_whose_lease_ran_out_during_its_claim_is_refused() {
        let scratch = Scratch::new("stalled-claim");
        let c = scratch.open();
        let owner = c
            .join(&lease_record("alpha"), Duration::from_secs(60))
            .await
            .unwrap();
        let task = TaskId(8);
        c.create(
            &owner,
            task,
            "T",
            "u64",
            conformance::checkpoint(task, &owner, 0),
        )
        .await
        .unwrap();
        c.leave(&owner).await.unwrap();
        let taker = c
            .join(&lease_record("delta"), Duration::from_secs(60))
            .await
            .unwrap();
        let other = c
            .join(&lease_record("beta"), Duration::from_secs(60))
            .await
            .unwrap();
        // While the claim's files are flushed, the taker's lease runs out.
        let expired = taker.clone();
        *c.inner.before_claim.0.lock().unwrap() = Some(Box::new(move |folder: &Folder| {
            let path = folder
                .name_dir(&expired.host)
                .join(number_name(expired.incarnation));
            let Ok(Some(mut file)) = read_record::<MemberFile>(&path) else {
                return;
            };
            if file.record.name == expired.host {
                file.renewed_at_ms = now_ms() - file.ttl_ms - 1;
                folder.replace(&path, &encode(&file).unwrap()).unwrap();
            }
        }));
        let taken = c.take_over(&taker, task, Token(1)).await;
        *c.inner.before_claim.0.lock().unwrap() = None;
        assert!(
            matches!(taken, Err(CoordinatorError::LeaseEnded { .. })),
            "a takeover claimed after the taker's lease ended is not the taker's: {taken:?}"
        );
        // The task is an orphan again, and another host takes it over.
        let entry = c.task(task).await.unwrap().unwrap();
        assert_eq!(entry.owner, Owner::Orphaned);
        let (token, _) = c.take_over(&other, task, entry.token).await.unwrap();
        assert_eq!(token, Token(entry.token.0 + 1));
    }

    #[tokio::test]
    async fn ten_thousand_commits() {
        const TASKS: u64 = 100;
        const ROUNDS: u64 = 100;
        let scratch = Scratch::new("throughput");
        let c = scratch.open();
        let lease = c
            .join(&lease_record("alpha"), Duration::from_secs(600))
            .await
            .unwrap();
        let mut tokens = Vec::new();
        for n in 0..TASKS {
            let task = TaskId(0x10_000 + n);
            let first = conformance::checkpoint(task, &lease, 0);
            tokens.push((
                task,
                c.create(&lease, task, "T", "u64", first).await.unwrap(),
            ));
        }
        let start = std::time::Instant::now();
        for round in 1..=ROUNDS {
            let batch: Vec<_> = tokens
                .iter()
                .map(|&(task, token)| CheckpointCommit {
                    task,
                    token,
                    checkpoint: conformance::checkpoint(task, &lease, round),
                })
                .collect();
            let verdicts = c.commit_checkpoints(&lease, &batch).await.unwrap();
            assert!(verdicts.iter().all(Result::is_ok));
        }
        let elapsed = start.elapsed();
        println!(
            "10,000 checkpoint commits ({ROUNDS} batches of {TASKS}) in {elapsed:?}: {:?} each",
            elapsed / (TASKS * ROUNDS) as u32
        );
        let (task, _) = tokens[3];
        assert_eq!(
            c.task(task).await.unwrap().unwrap().current,
            conformance::checkpoint(task, &lease, ROUNDS)
        );
    }
}

/// Processes, not threads: takers in separate processes, through the folder alone.
#[cfg(test)]
mod processes {
    use super::*;
    use crate::cluster::conformance;

    const FOLDER: &str = "COSMIC_FOLDER_TAKER_FOLDER";
    const NAME: &str = "COSMIC_FOLDER_TAKER_NAME";
    const TAKERS: usize = 8;
    const TASK: TaskId = TaskId(0x7a5c);

    /// A taker when run by `only_one_process_wins` (with its variables set); else nothing.
    #[tokio::test]
    async fn taker_process() {
        let (Ok(folder), Ok(name)) = (std::env::var(FOLDER), std::env::var(NAME)) else {
            return;
        };
        let c = FolderCoordinator::open(folder).expect("open");
        let lease = c
            .join(&conformance::record(&name), Duration::from_secs(60))
            .await
            .expect("join");
        // Start together: wait for the go file.
        let go = c.path().join("go");
        while !go.exists() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match c.take_over(&lease, TASK, Token(1)).await {
            Ok((token, _)) => println!("TAKER-RESULT won {token}"),
            Err(error) => println!("TAKER-RESULT lost {error}"),
        }
    }

    #[tokio::test]
    async fn only_one_process_wins() {
        let scratch = std::env::temp_dir().join(format!(
            "cosmic-folder-processes-{}-{:016x}",
            std::process::id(),
            TaskId::random().0
        ));
        let c = FolderCoordinator::open(&scratch).expect("open");
        let owner = c
            .join(&conformance::record("owner"), Duration::from_secs(60))
            .await
            .unwrap();
        let first = conformance::checkpoint(TASK, &owner, 0);
        c.create(&owner, TASK, "T", "u64", first).await.unwrap();
        c.leave(&owner).await.unwrap();
        let children: Vec<_> = (0..TAKERS)
            .map(|n| {
                crate::test_process::this_test_binary()
                    .args([
                        "--exact",
                        "cluster::folder::processes::taker_process",
                        "--nocapture",
                    ])
                    .env(FOLDER, &scratch)
                    .env(NAME, format!("taker-{n}"))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("start a taker process")
            })
            .collect();
        // Let them join, then start them all at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while c.members().await.unwrap().len() < TAKERS && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fs::write(scratch.join("go"), b"").unwrap();
        let mut results = Vec::new();
        for child in children {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success(), "a taker process failed: {stdout}");
            results.extend(
                stdout
                    .lines()
                    .filter_map(|line| line.strip_prefix("TAKER-RESULT "))
                    .map(str::to_owned),
            );
        }
        let _ = fs::remove_dir_all(&scratch);
        assert_eq!(results.len(), TAKERS, "every taker reported: {results:?}");
        let winners = results.iter().filter(|r| r.starts_with("won")).count();
        assert_eq!(
            winners, 1,
            "exactly one process takes the task over: {results:?}"
        );
    }
}

/// The partition hook ([`cut_off`]), in a child process: its variable would cut off the other
/// tests of this process.
#[cfg(all(test, feature = "fault-injection"))]
mod cut {
    use super::*;
    use crate::cluster::conformance;

    const FOLDER: &str = "COSMIC_FOLDER_CUT_TEST_FOLDER";

    /// The cut-off host when run by the test below (with its variables set); else nothing.
    #[tokio::test]
    async fn cut_process() {
        let Ok(folder) = std::env::var(FOLDER) else {
            return;
        };
        let flag = std::env::var(FAULT_CUT_VAR).expect("the flag variable");
        let c = FolderCoordinator::open(folder).expect("open");
        let record = conformance::record("alpha");
        let lease = c
            .join(&record, Duration::from_secs(60))
            .await
            .expect("joins while there is no flag file");
        fs::write(&flag, b"").unwrap();
        let error = c.keep_alive(&lease, &record).await.unwrap_err();
        assert!(
            matches!(error, CoordinatorError::Unavailable { .. }),
            "{error:?}"
        );
        let error = c.members().await.unwrap_err();
        assert!(
            matches!(error, CoordinatorError::Unavailable { .. }),
            "{error:?}"
        );
        fs::remove_file(&flag).unwrap();
        c.keep_alive(&lease, &record)
            .await
            .expect("renewed once the flag file is gone");
        println!("CUT-RESULT ok");
    }

    #[test]
    fn while_the_flag_file_exists_every_call_fails_as_unavailable() {
        let scratch = std::env::temp_dir().join(format!(
            "cosmic-folder-cut-{}-{:016x}",
            std::process::id(),
            TaskId::random().0
        ));
        let output = crate::test_process::this_test_binary()
            .args([
                "--exact",
                "cluster::folder::cut::cut_process",
                "--nocapture",
            ])
            .env(FOLDER, scratch.join("coordinator"))
            .env(FAULT_CUT_VAR, scratch.join("cut"))
            .output()
            .expect("start the child");
        let _ = fs::remove_dir_all(&scratch);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("CUT-RESULT ok"),
            "the cut-off child failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
