//! [`EtcdCoordinator`]: the [`Coordinator`] on an etcd server (v3 API, etcd 3.4 or later),
//! behind the `etcd` feature.
//!
//! # The keys
//!
//! Under a prefix (default `/cosmic/`, see [`EtcdConfig::with_prefix`]), every value JSON so
//! that `etcdctl get --prefix /cosmic/` reads as it is:
//!
//! ```text
//! members/<name>        the MemberRecord, attached to the host's lease
//! trust/<name>          the trusted public key, 64 hex digits
//! tasks/<id>/meta       {type_name, output_type}, written once at create
//! tasks/<id>/owner      {host, incarnation}, attached to the OWNER's lease: it vanishes with it
//! tasks/<id>/current    the current CheckpointRef
//! tasks/<id>/finished   {token, outcome}: the finisher's token and the outcome key
//! tasks/<id>/token      empty; rewritten by every change of owner
//! ```
//!
//! # Leases
//!
//! A host's [`Lease`] is an etcd lease: [`Lease::incarnation`] is its id (etcd never reuses
//! one), [`Lease::ttl`] the time to live etcd granted. etcd counts in whole seconds and
//! grants at least its own minimum (about 1.5 election timeouts, 2 s with the default
//! settings), so the requested time to live is rounded **up** to whole seconds and the lease
//! reports what was granted: a host then never believes its lease lasts longer than etcd
//! keeps it. Members are put with their lease, and so is every `owner` key: when a host's
//! lease ends (it ran out, or [`Coordinator::leave`] revoked it) etcd deletes all of them in
//! one step, which is what orphans its tasks. [`Coordinator::keep_alive`] is one lease
//! keep-alive request, then a put of the member record if it differs from the one last
//! published by this coordinator.
//!
//! # Tokens
//!
//! A task's token is the **mod revision of its `token` key**. Every change of owner (create,
//! transfer, take over, release, finish) rewrites that key in the same transaction as the
//! change, so the token is the etcd revision of the last change of owner; etcd's revisions are
//! global and only grow, so every change gives a strictly greater token, including a release
//! (the owner key is deleted, the token key rewritten). While a host owns the task, its
//! `owner` key was written in that same transaction, so the owner key's mod revision equals
//! the token: every fenced change compares the owner key's mod revision with the caller's
//! token (and its lease with the caller's), which fails once the owner key is gone.
//!
//! When a lease runs out, etcd deletes the owner key but nothing can rewrite the token key in
//! that step: an orphaned task keeps the token of its last change of owner. That token is
//! still fenced (the owner key it denoted is gone, and a takeover puts a new one at a newer
//! revision), and a takeover compares it (`seen`): of several hosts that saw the same
//! orphan, exactly one takes it over.
//!
//! # Batches
//!
//! [`Coordinator::commit_checkpoints`] commits up to 64 entries per transaction (two compares
//! and one put each, under etcd's default limit of 128 operations per transaction part),
//! several transactions in flight at once. A transaction whose compare fails reads back the
//! owner keys of its entries in the same step, so the fenced entries are known at once; the
//! rest are committed again without them.
//!
//! # Failures
//!
//! Every request has a deadline ([`EtcdConfig::with_timeouts`], 2 s by default): an etcd that
//! is down or cut off gives [`CoordinatorError::Unavailable`] naming the endpoints, never a
//! hang.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, Lease, Member,
    MemberRecord, Owner, TaskEntry, Token,
};
use crate::task::TaskId;
use crate::transport::PublicKey;

/// The prefix of every key when none is configured.
pub const DEFAULT_PREFIX: &str = "/cosmic/";
/// How long connecting, and each request, may take when not configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries of a checkpoint batch per transaction: two compares and one put each, under etcd's
/// default `--max-txn-ops` of 128 (which bounds the compares, the success and the failure
/// operations separately; the failure branch reads each entry's owner key and the caller's
/// member key: 65).
const COMMITS_PER_TXN: usize = 64;
/// Transactions of one checkpoint batch in flight at once.
const TXNS_IN_FLIGHT: usize = 8;
/// Keys per page when listing every task.
const PAGE: i64 = 2000;
/// Attempts of a transfer whose destination's member record changes (each renewal that
/// publishes a new load rewrites it) between the read and the transaction.
const TRANSFER_ATTEMPTS: usize = 16;

/// The environment variable naming the etcd user.
pub const ENV_USER: &str = "COSMIC_ETCD_USER";
/// The environment variable holding the etcd password.
pub const ENV_PASSWORD: &str = "COSMIC_ETCD_PASSWORD";
/// The environment variable naming a file that holds the etcd password.
pub const ENV_PASSWORD_FILE: &str = "COSMIC_ETCD_PASSWORD_FILE";

/// TLS to etcd: the CA that signed its certificate, and a client certificate if it asks for
/// one. Read from files when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA certificate(s) to trust.
    pub ca: PathBuf,
    /// PEM files of the client certificate and its private key, if etcd wants client
    /// certificates.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// How to reach etcd. Secrets come from files or the environment, never from a command line,
/// and `Debug` never shows the password.
#[derive(Clone)]
pub struct EtcdConfig {
    endpoints: Vec<String>,
    prefix: String,
    user: Option<(String, Zeroizing<String>)>,
    tls: Option<EtcdTls>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("password", &self.user.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdConfig {
    /// etcd at `endpoints` (`http://host:port`, `https://host:port`, or `host:port`), the
    /// default prefix and timeouts, no credentials, no TLS.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            user: None,
            tls: None,
            connect_timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Every key under `prefix` (which must end with `/`): clusters sharing one etcd use
    /// different prefixes.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> EtcdConfig {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting and each request may take before the coordinator is said to be
    /// unavailable.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> EtcdConfig {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// TLS with these files.
    pub fn with_tls(mut self, tls: EtcdTls) -> EtcdConfig {
        self.tls = Some(tls);
        self
    }

    /// Authenticates as `user` with the password held in `password_file` (one line; a final
    /// newline is not part of it).
    pub fn with_password_file(
        mut self,
        user: &str,
        password_file: &Path,
    ) -> Result<EtcdConfig, CoordinatorError> {
        let password = read_password(password_file)?;
        self.user = Some((checked_user(user)?, password));
        Ok(self)
    }

    /// Authenticates as `$COSMIC_ETCD_USER` with `$COSMIC_ETCD_PASSWORD` or the contents of
    /// the file `$COSMIC_ETCD_PASSWORD_FILE`, if the user is set; unchanged if none is set.
    pub fn with_credentials_from_env(mut self) -> Result<EtcdConfig, CoordinatorError> {
        let var = |name: &'static str| -> Result<Option<String>, CoordinatorError> {
            match std::env::var(name) {
                Ok(value) => Ok(Some(value)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(CoordinatorError::Invalid {
                    what: "etcd credentials",
                    reason: format!("${name} is not UTF-8"),
                }),
            }
        };
        let user = var(ENV_USER)?;
        let password = var(ENV_PASSWORD)?.map(Zeroizing::new);
        let password_file = var(ENV_PASSWORD_FILE)?;
        let invalid = |reason: String| CoordinatorError::Invalid {
            what: "etcd credentials",
            reason,
        };
        match (user, password, password_file) {
            (None, None, None) => Ok(self),
            (None, _, _) => Err(invalid(format!(
                "${ENV_PASSWORD} or ${ENV_PASSWORD_FILE} is set but ${ENV_USER} is not"
            ))),
            (Some(_), Some(_), Some(_)) => Err(invalid(format!(
                "both ${ENV_PASSWORD} and ${ENV_PASSWORD_FILE} are set: set one"
            ))),
            (Some(_), None, None) => Err(invalid(format!(
                "${ENV_USER} is set but neither ${ENV_PASSWORD} nor ${ENV_PASSWORD_FILE}"
            ))),
            (Some(user), Some(password), None) => {
                self.user = Some((checked_user(&user)?, password));
                Ok(self)
            }
            (Some(user), None, Some(file)) => self.with_password_file(&user, Path::new(&file)),
        }
    }

    fn check(&self) -> Result<(), CoordinatorError> {
        if self.endpoints.is_empty() {
            return Err(CoordinatorError::Invalid {
                what: "etcd endpoints",
                reason: "none given".into(),
            });
        }
        if let Some(bad) = self.endpoints.iter().find(|e| e.trim().is_empty()) {
            return Err(CoordinatorError::Invalid {
                what: "etcd endpoints",
                reason: format!("empty endpoint `{bad}`"),
            });
        }
        if !self.prefix.ends_with('/') {
            return Err(CoordinatorError::Invalid {
                what: "etcd key prefix",
                reason: format!("`{}` does not end with `/`", self.prefix),
            });
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(CoordinatorError::Invalid {
                what: "etcd timeouts",
                reason: "a timeout of zero".into(),
            });
        }
        Ok(())
    }
}

fn checked_user(user: &str) -> Result<String, CoordinatorError> {
    if user.is_empty() {
        return Err(CoordinatorError::Invalid {
            what: "etcd user",
            reason: "empty".into(),
        });
    }
    Ok(user.to_owned())
}

fn read_password(path: &Path) -> Result<Zeroizing<String>, CoordinatorError> {
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| CoordinatorError::Io {
                operation: "read the etcd password file",
                path: path.to_owned(),
                source,
            })?,
        );
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(CoordinatorError::Invalid {
            what: "etcd password file",
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(Zeroizing::new(password.to_owned()))
}

fn read_file(path: &Path, operation: &'static str) -> Result<Vec<u8>, CoordinatorError> {
    std::fs::read(path).map_err(|source| CoordinatorError::Io {
        operation,
        path: path.to_owned(),
        source,
    })
}

/// The [`Coordinator`] on etcd. See the module docs for the keys and the tokens.
pub struct EtcdCoordinator {
    client: Client,
    prefix: String,
    endpoints: String,
    timeout: Duration,
    /// The member record last published per lease (by this coordinator), so that a renewal
    /// writes the record only when it changed.
    published: Mutex<HashMap<i64, Vec<u8>>>,
}

impl fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A request that got no answer in time.
#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Why a request failed, before the caller knows what it means.
enum Failure {
    /// A put named a lease etcd no longer has.
    LeaseNotFound,
    /// Anything else.
    Other(CoordinatorError),
}

impl Failure {
    /// The failure of a request that used the caller's `lease`.
    fn with_lease(self, lease: &Lease) -> CoordinatorError {
        match self {
            Failure::LeaseNotFound => lease_ended(lease),
            Failure::Other(error) => error,
        }
    }

    /// The failure of a request that used no lease.
    fn plain(self, what: &str) -> CoordinatorError {
        match self {
            Failure::LeaseNotFound => CoordinatorError::Unavailable {
                what: what.to_owned(),
                source: "etcd: requested lease not found".into(),
            },
            Failure::Other(error) => error,
        }
    }
}

fn lease_ended(lease: &Lease) -> CoordinatorError {
    CoordinatorError::LeaseEnded {
        host: lease.host.clone(),
        incarnation: lease.incarnation,
    }
}

fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        // etcd: `rpctypes.ErrGRPCLeaseNotFound`, "etcdserver: requested lease not found".
        etcd_client::Error::GRpcStatus(status) => status.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

/// The records of the task keys.
#[derive(Debug, Serialize, Deserialize)]
struct MetaRecord {
    type_name: String,
    output_type: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OwnerRecord {
    host: String,
    incarnation: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FinishedRecord {
    /// The token of the owner that finished it (a repeated finish is recognised by it).
    token: u64,
    outcome: String,
}

const META: &str = "meta";
const OWNER: &str = "owner";
const CURRENT: &str = "current";
const FINISHED: &str = "finished";
const TOKEN: &str = "token";

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, CoordinatorError> {
    serde_json::to_vec(value).map_err(|error| CoordinatorError::Invalid {
        what: "record",
        reason: format!("{what} does not serialize: {error}"),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(kv: &KeyValue) -> Result<T, CoordinatorError> {
    serde_json::from_slice(kv.value()).map_err(|error| CoordinatorError::Damaged {
        what: String::from_utf8_lossy(kv.key()).into_owned(),
        detail: error.to_string(),
    })
}

fn check_name(what: &'static str, name: &str) -> Result<(), CoordinatorError> {
    let reason = if name.is_empty() {
        "empty".to_owned()
    } else if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        format!("`{name}` contains {c:?}")
    } else {
        return Ok(());
    };
    Err(CoordinatorError::Invalid { what, reason })
}

fn lease_id(lease: &Lease) -> Result<i64, CoordinatorError> {
    i64::try_from(lease.incarnation)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| CoordinatorError::Invalid {
            what: "lease",
            reason: format!("incarnation {} is not an etcd lease id", lease.incarnation),
        })
}

/// The revision a token denotes; a token no revision can have is `None` (it never matches).
fn revision(token: Token) -> Option<i64> {
    i64::try_from(token.0).ok()
}

fn revision_or_impossible(token: Token) -> i64 {
    // A token beyond i64 was never handed out: compare against a revision no key has.
    revision(token).unwrap_or(-1)
}

impl EtcdCoordinator {
    /// Connects to etcd as `config` says. Fails with `Unavailable` if it does not answer
    /// within the connect timeout.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdCoordinator, CoordinatorError> {
        config.check()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_timeout(config.request_timeout)
            // A link that stops carrying anything is noticed by HTTP/2 pings.
            .with_keep_alive(config.request_timeout, config.request_timeout)
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &config.user {
            options = options.with_user(user.clone(), password.as_str());
        }
        if let Some(tls) = &config.tls {
            let mut tls_options = TlsOptions::new().ca_certificate(Certificate::from_pem(
                read_file(&tls.ca, "read the etcd CA certificate")?,
            ));
            if let Some((cert, key)) = &tls.client {
                tls_options = tls_options.identity(Identity::from_pem(
                    read_file(cert, "read the etcd client certificate")?,
                    Zeroizing::new(read_file(key, "read the etcd client key")?).as_slice(),
                ));
            }
            options = options.with_tls(tls_options);
        }
        let endpoints = config.endpoints.join(",");
        let what = format!("connecting to etcd at {endpoints}");
        let client = match tokio::time::timeout(
            config.connect_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(CoordinatorError::Unavailable {
                    what,
                    source: Box::new(error),
                })
            }
            Err(_) => {
                return Err(CoordinatorError::Unavailable {
                    what,
                    source: Box::new(TimedOut(config.connect_timeout)),
                })
            }
        };
        let coordinator = EtcdCoordinator {
            client,
            prefix: config.prefix,
            endpoints,
            timeout: config.request_timeout,
            published: Mutex::new(HashMap::new()),
        };
        // The connection is made lazily: a first request tells whether etcd answers (and
        // whether the credentials are good).
        let mut kv = coordinator.client.kv_client();
        let probe = coordinator.prefix.clone();
        coordinator
            .call("connect", async move {
                kv.get(probe, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await
            .map_err(|failure| failure.plain("connect"))?;
        Ok(coordinator)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs one request under the deadline; a failure names the operation and the endpoints.
    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        let describe = || format!("{what} at etcd {}", self.endpoints);
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if is_lease_not_found(&error) => Err(Failure::LeaseNotFound),
            Ok(Err(error)) => Err(Failure::Other(CoordinatorError::Unavailable {
                what: describe(),
                source: Box::new(error),
            })),
            Err(_) => Err(Failure::Other(CoordinatorError::Unavailable {
                what: describe(),
                source: Box::new(TimedOut(self.timeout)),
            })),
        }
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, Failure> {
        let mut kv = self.client.kv_client();
        self.call(what, async move { kv.txn(txn).await }).await
    }

    async fn get(
        &self,
        what: &str,
        key: String,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, CoordinatorError> {
        let mut kv = self.client.kv_client();
        self.call(what, async move { kv.get(key, options).await })
            .await
            .map_err(|failure| failure.plain(what))
    }

    fn member_key(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }

    fn trust_key(&self, name: &str) -> String {
        format!("{}trust/{name}", self.prefix)
    }

    fn tasks_prefix(&self) -> String {
        format!("{}tasks/", self.prefix)
    }

    fn task_dir(&self, task: TaskId) -> String {
        format!("{}tasks/{task}/", self.prefix)
    }

    fn task_key(&self, task: TaskId, part: &str) -> String {
        format!("{}tasks/{task}/{part}", self.prefix)
    }

    /// The caller's lease is live (its member key is attached to it).
    fn member_is(&self, lease: &Lease, id: i64) -> Compare {
        Compare::lease(self.member_key(&lease.host), CompareOp::Equal, id)
    }

    /// The caller owns the task under `token`.
    fn owns(&self, task: TaskId, token: Token, id: i64) -> [Compare; 2] {
        let owner = self.task_key(task, OWNER);
        [
            Compare::mod_revision(
                owner.clone(),
                CompareOp::Equal,
                revision_or_impossible(token),
            ),
            Compare::lease(owner, CompareOp::Equal, id),
        ]
    }

    fn bump_token(&self, task: TaskId) -> TxnOp {
        TxnOp::put(self.task_key(task, TOKEN), Vec::new(), None)
    }

    /// Why a change of `task` under the caller's lease was refused, given the caller's member
    /// key as read in the refused transaction: its lease ended, or it does not hold the
    /// newest token (or the task is unknown).
    async fn refusal(
        &self,
        lease: &Lease,
        id: i64,
        task: TaskId,
        member: Option<&KeyValue>,
    ) -> CoordinatorError {
        if member.map(KeyValue::lease) != Some(id) {
            return lease_ended(lease);
        }
        match self.task(task).await {
            Ok(Some(entry)) => CoordinatorError::Fenced(Fenced {
                task,
                token: entry.token,
                owner: entry.owner,
            }),
            Ok(None) => CoordinatorError::NoSuchTask { task },
            Err(error) => error,
        }
    }

    /// The task from the keys of its folder (None if it has none).
    fn entry(
        &self,
        task: TaskId,
        kvs: &[&KeyValue],
    ) -> Result<Option<TaskEntry>, CoordinatorError> {
        if kvs.is_empty() {
            return Ok(None);
        }
        let dir = self.task_dir(task);
        let mut meta = None;
        let mut owner = None;
        let mut current = None;
        let mut finished = None;
        let mut token = None;
        for kv in kvs {
            let part = kv.key().strip_prefix(dir.as_bytes()).unwrap_or_default();
            match part {
                b"meta" => meta = Some(parse::<MetaRecord>(kv)?),
                b"owner" => owner = Some(parse::<OwnerRecord>(kv)?),
                b"current" => current = Some(parse::<CheckpointRef>(kv)?),
                b"finished" => finished = Some(parse::<FinishedRecord>(kv)?),
                b"token" => token = Some(kv.mod_revision()),
                _ => {}
            }
        }
        let missing = |part: &str| CoordinatorError::Damaged {
            what: format!("{dir}{part}"),
            detail: "missing while other keys of the task exist".into(),
        };
        let meta = meta.ok_or_else(|| missing(META))?;
        let current = current.ok_or_else(|| missing(CURRENT))?;
        let token = token.ok_or_else(|| missing(TOKEN))?;
        let owner = match (finished, owner) {
            (Some(finished), _) => Owner::Finished {
                outcome: finished.outcome,
            },
            (None, Some(owner)) => Owner::Host {
                host: owner.host,
                incarnation: owner.incarnation,
            },
            (None, None) => Owner::Orphaned,
        };
        Ok(Some(TaskEntry {
            task,
            type_name: meta.type_name,
            output_type: meta.output_type,
            owner,
            token: Token(u64::try_from(token).unwrap_or_default()),
            current,
        }))
    }

    /// The task id of a key under `tasks/`.
    fn task_of(&self, key: &[u8]) -> Result<TaskId, CoordinatorError> {
        let damaged = || CoordinatorError::Damaged {
            what: String::from_utf8_lossy(key).into_owned(),
            detail: "not a key of the form tasks/<16 hex digits>/<part>".into(),
        };
        let rest = key
            .strip_prefix(self.tasks_prefix().as_bytes())
            .ok_or_else(damaged)?;
        let id = rest.split(|b| *b == b'/').next().ok_or_else(damaged)?;
        let id = std::str::from_utf8(id).map_err(|_| damaged())?;
        if id.len() != 16 {
            return Err(damaged());
        }
        u64::from_str_radix(id, 16)
            .map(TaskId)
            .map_err(|_| damaged())
    }

    /// One batch of at most [`COMMITS_PER_TXN`] commits of distinct tasks: a verdict each,
    /// `None` for a fenced one (its details are read afterwards).
    async fn commit_chunk(
        self: Arc<Self>,
        lease: Lease,
        id: i64,
        chunk: Vec<CheckpointCommit>,
    ) -> Result<Vec<bool>, CoordinatorError> {
        let mut verdicts = vec![true; chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut values = Vec::with_capacity(chunk.len());
        for commit in &chunk {
            values.push(to_json(&commit.checkpoint, "a checkpoint reference")?);
        }
        while !pending.is_empty() {
            let mut compares = Vec::with_capacity(pending.len() * 2);
            let mut puts = Vec::with_capacity(pending.len());
            let mut reads = Vec::with_capacity(pending.len() + 1);
            for &i in &pending {
                let commit = &chunk[i];
                compares.extend(self.owns(commit.task, commit.token, id));
                puts.push(TxnOp::put(
                    self.task_key(commit.task, CURRENT),
                    values[i].clone(),
                    None,
                ));
                reads.push(TxnOp::get(self.task_key(commit.task, OWNER), None));
            }
            reads.push(TxnOp::get(self.member_key(&lease.host), None));
            let txn = Txn::new().when(compares).and_then(puts).or_else(reads);
            let response = self
                .txn("commit checkpoints", txn)
                .await
                .map_err(|failure| failure.with_lease(&lease))?;
            if response.succeeded() {
                break;
            }
            let read = gets(&response);
            let member = read.last().and_then(|kvs| kvs.first());
            if member.map(KeyValue::lease) != Some(id) {
                return Err(lease_ended(&lease));
            }
            let before = pending.len();
            let mut still = Vec::with_capacity(pending.len());
            for (slot, &i) in pending.iter().enumerate() {
                let commit = &chunk[i];
                let holds = read
                    .get(slot)
                    .and_then(|kvs| kvs.first())
                    .is_some_and(|kv| {
                        Some(kv.mod_revision()) == revision(commit.token) && kv.lease() == id
                    });
                if holds {
                    still.push(i);
                } else {
                    verdicts[i] = false;
                }
            }
            if still.len() == before {
                return Err(CoordinatorError::Unavailable {
                    what: format!("commit checkpoints at etcd {}", self.endpoints),
                    source: "etcd refused the transaction although every compare held".into(),
                });
            }
            pending = still;
        }
        Ok(verdicts)
    }
}

/// The key-values read by each operation of a transaction's response (empty for writes).
fn gets(response: &TxnResponse) -> Vec<Vec<KeyValue>> {
    response
        .op_responses()
        .into_iter()
        .map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs(),
            _ => Vec::new(),
        })
        .collect()
}

fn header_revision(response: &TxnResponse) -> Token {
    Token(
        response
            .header()
            .map(|header| header.revision())
            .and_then(|revision| u64::try_from(revision).ok())
            .unwrap_or_default(),
    )
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    async fn join(&self, record: &MemberRecord, ttl: Duration) -> Result<Lease, CoordinatorError> {
        check_name("host name", &record.name)?;
        if ttl.is_zero() {
            return Err(CoordinatorError::Invalid {
                what: "time to live",
                reason: "zero".into(),
            });
        }
        // etcd counts whole seconds: round up, never down.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs).map_err(|_| CoordinatorError::Invalid {
            what: "time to live",
            reason: format!("{ttl:?} is too long"),
        })?;
        let value = to_json(record, "the member record")?;
        let mut leases = self.client.lease_client();
        let granted = self
            .call(
                "grant a lease",
                async move { leases.grant(secs, None).await },
            )
            .await
            .map_err(|failure| failure.plain("grant a lease"))?;
        let id = granted.id();
        let lease = Lease {
            host: record.name.clone(),
            incarnation: u64::try_from(id).unwrap_or_default(),
            ttl: Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or_default()),
        };
        let key = self.member_key(&record.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(id)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = match self.txn("join", txn).await {
            Ok(response) => response,
            Err(failure) => {
                self.revoke_quietly(id).await;
                return Err(failure.plain("join"));
            }
        };
        if response.succeeded() {
            self.published_set(id, Some(value));
            return Ok(lease);
        }
        self.revoke_quietly(id).await;
        let holder = gets(&response).into_iter().flatten().next();
        let Some(holder) = holder else {
            // The holder's lease ended between the compare and now: the caller may retry.
            return Err(CoordinatorError::NameInUse {
                host: record.name.clone(),
                incarnation: 0,
                expires_in: Duration::ZERO,
            });
        };
        let holder_id = holder.lease();
        let mut leases = self.client.lease_client();
        let remaining = self
            .call("read the lease holding the name", async move {
                leases.time_to_live(holder_id, None).await
            })
            .await
            .map_err(|failure| failure.plain("read the lease holding the name"))?;
        Err(CoordinatorError::NameInUse {
            host: record.name.clone(),
            incarnation: u64::try_from(holder_id).unwrap_or_default(),
            expires_in: Duration::from_secs(u64::try_from(remaining.ttl()).unwrap_or_default()),
        })
    }

    async fn keep_alive(
        &self,
        lease: &Lease,
        record: &MemberRecord,
    ) -> Result<(), CoordinatorError> {
        let id = lease_id(lease)?;
        if record.name != lease.host {
            return Err(CoordinatorError::Invalid {
                what: "member record",
                reason: format!(
                    "it names `{}`, the lease is `{}`'s",
                    record.name, lease.host
                ),
            });
        }
        let mut leases = self.client.lease_client();
        // One keep-alive request; the client reads its answer and fails on a time to live of
        // zero (the lease is gone).
        self.call("renew the lease", async move {
            leases.keep_alive(id).await.map(drop)
        })
        .await
        .map_err(|failure| failure.with_lease(lease))?;
        let value = to_json(record, "the member record")?;
        if self.published_get(id).as_deref() == Some(value.as_slice()) {
            return Ok(());
        }
        let key = self.member_key(&lease.host);
        let put = TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(id)),
        );
        // The member key is ours (attached to our lease), or absent (deleted by hand while the
        // lease lived: published again); held by another lease, the name is not ours.
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, id)])
            .and_then([put.clone()])
            .or_else([TxnOp::txn(
                Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([put]),
            )]);
        let response = self
            .txn("publish the member record", txn)
            .await
            .map_err(|failure| failure.with_lease(lease))?;
        let published = response.succeeded()
            || response.op_responses().into_iter().any(|op| match op {
                TxnOpResponse::Txn(inner) => inner.succeeded(),
                _ => false,
            });
        if !published {
            return Err(lease_ended(lease));
        }
        self.published_set(id, Some(value));
        Ok(())
    }

    async fn leave(&self, lease: &Lease) -> Result<(), CoordinatorError> {
        let id = lease_id(lease)?;
        let mut leases = self.client.lease_client();
        let result = self
            .call("revoke the lease", async move { leases.revoke(id).await })
            .await;
        self.published_set(id, None);
        match result {
            // Already ended: what leaving asks for holds.
            Ok(_) | Err(Failure::LeaseNotFound) => Ok(()),
            Err(failure) => Err(failure.plain("revoke the lease")),
        }
    }

    async fn members(&self) -> Result<Vec<Member>, CoordinatorError> {
        let prefix = format!("{}members/", self.prefix);
        let mut response = self
            .get(
                "list the members",
                prefix.clone(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut members = Vec::new();
        for kv in response.take_kvs() {
            let record: MemberRecord = parse(&kv)?;
            if kv.key() != format!("{prefix}{}", record.name).as_bytes() {
                return Err(CoordinatorError::Damaged {
                    what: String::from_utf8_lossy(kv.key()).into_owned(),
                    detail: format!("the record names `{}`", record.name),
                });
            }
            members.push(Member {
                record,
                incarnation: u64::try_from(kv.lease()).unwrap_or_default(),
            });
        }
        Ok(members)
    }

    async fn trust(&self, name: &str, key: PublicKey) -> Result<(), CoordinatorError> {
        check_name("host name", name)?;
        let mut kv = self.client.kv_client();
        let (k, v) = (self.trust_key(name), key.to_string());
        self.call("trust a host", async move { kv.put(k, v, None).await })
            .await
            .map_err(|failure| failure.plain("trust a host"))?;
        Ok(())
    }

    async fn trusted(&self) -> Result<Vec<(String, PublicKey)>, CoordinatorError> {
        let prefix = format!("{}trust/", self.prefix);
        let mut response = self
            .get(
                "list the trusted hosts",
                prefix.clone(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut trusted = Vec::new();
        for kv in response.take_kvs() {
            let damaged = |detail: String| CoordinatorError::Damaged {
                what: String::from_utf8_lossy(kv.key()).into_owned(),
                detail,
            };
            let name = kv
                .key()
                .strip_prefix(prefix.as_bytes())
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or_else(|| damaged("not a UTF-8 host name".into()))?
                .to_owned();
            let key = std::str::from_utf8(kv.value())
                .map_err(|_| damaged("the key is not UTF-8".into()))?
                .trim()
                .parse::<PublicKey>()
                .map_err(|error| damaged(error.to_string()))?;
            trusted.push((name, key));
        }
        Ok(trusted)
    }

    async fn create(
        &self,
        lease: &Lease,
        task: TaskId,
        type_name: &str,
        output_type: &str,
        first: CheckpointRef,
    ) -> Result<Token, CoordinatorError> {
        let id = lease_id(lease)?;
        if type_name.is_empty() {
            return Err(CoordinatorError::Invalid {
                what: "task type name",
                reason: "empty".into(),
            });
        }
        let meta = to_json(
            &MetaRecord {
                type_name: type_name.to_owned(),
                output_type: output_type.to_owned(),
            },
            "the task's types",
        )?;
        let owner = to_json(
            &OwnerRecord {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            },
            "the owner",
        )?;
        let current = to_json(&first, "a checkpoint reference")?;
        let meta_key = self.task_key(task, META);
        let member = self.member_key(&lease.host);
        let txn = Txn::new()
            .when([
                Compare::create_revision(meta_key.clone(), CompareOp::Equal, 0),
                self.member_is(lease, id),
            ])
            .and_then([
                TxnOp::put(meta_key.clone(), meta, None),
                TxnOp::put(
                    self.task_key(task, OWNER),
                    owner,
                    Some(PutOptions::new().with_lease(id)),
                ),
                TxnOp::put(self.task_key(task, CURRENT), current, None),
                self.bump_token(task),
            ])
            .or_else([TxnOp::get(meta_key, None), TxnOp::get(member, None)]);
        let response = self
            .txn("create a task", txn)
            .await
            .map_err(|failure| failure.with_lease(lease))?;
        if response.succeeded() {
            return Ok(header_revision(&response));
        }
        let read = gets(&response);
        if read.get(1).and_then(|kvs| kvs.first()).map(KeyValue::lease) != Some(id) {
            return Err(lease_ended(lease));
        }
        Err(CoordinatorError::TaskExists { task })
    }

    async fn task(&self, task: TaskId) -> Result<Option<TaskEntry>, CoordinatorError> {
        let response = self
            .get(
                "read a task",
                self.task_dir(task),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let kvs: Vec<&KeyValue> = response.kvs().iter().collect();
        self.entry(task, &kvs)
    }

    async fn tasks(&self) -> Result<Vec<TaskEntry>, CoordinatorError> {
        let prefix = self.tasks_prefix();
        // The end of the prefix range: the prefix with its last byte incremented ('/' + 1).
        let mut end = prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut start = prefix.into_bytes();
        let mut at_revision = 0;
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if at_revision > 0 {
                // Every page as of the first one's revision: one consistent view.
                options = options.with_revision(at_revision);
            }
            let mut kv = self.client.kv_client();
            let key = start.clone();
            let mut response = self
                .call(
                    "list the tasks",
                    async move { kv.get(key, Some(options)).await },
                )
                .await
                .map_err(|failure| failure.plain("list the tasks"))?;
            if at_revision == 0 {
                at_revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let page = response.take_kvs();
            match page.last() {
                Some(last) if more => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => {
                    kvs.extend(page);
                    break;
                }
            }
            kvs.extend(page);
        }
        let mut entries = Vec::new();
        let mut group: Vec<&KeyValue> = Vec::new();
        let mut group_task = None;
        for kv in &kvs {
            let task = self.task_of(kv.key())?;
            if group_task != Some(task) {
                if let Some(previous) = group_task {
                    entries.extend(self.entry(previous, &group)?);
                }
                group.clear();
                group_task = Some(task);
            }
            group.push(kv);
        }
        if let Some(previous) = group_task {
            entries.extend(self.entry(previous, &group)?);
        }
        Ok(entries)
    }

    async fn commit_checkpoints(
        &self,
        lease: &Lease,
        commits: &[CheckpointCommit],
    ) -> Result<Vec<Result<(), Fenced>>, CoordinatorError> {
        let id = lease_id(lease)?;
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        // Chunks of distinct tasks (etcd refuses a transaction that puts one key twice); a
        // task committed twice in one batch lands in a later chunk, after its first commit.
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut chunk_tasks: Vec<HashSet<TaskId>> = Vec::new();
        let mut waves: Vec<usize> = Vec::new();
        {
            // The chunk a task was last put in: its next commit goes into a later chunk of a
            // later wave (waves run one after the other, the chunks of a wave at once).
            let mut last_wave: HashMap<TaskId, usize> = HashMap::new();
            let mut open: HashMap<usize, usize> = HashMap::new(); // wave -> its open chunk
            for (i, commit) in commits.iter().enumerate() {
                let wave = last_wave.get(&commit.task).map_or(0, |w| w + 1);
                let chunk = match open.get(&wave) {
                    Some(&c) if chunks[c].len() < COMMITS_PER_TXN => c,
                    _ => {
                        chunks.push(Vec::new());
                        chunk_tasks.push(HashSet::new());
                        waves.push(wave);
                        open.insert(wave, chunks.len() - 1);
                        chunks.len() - 1
                    }
                };
                chunks[chunk].push(i);
                chunk_tasks[chunk].insert(commit.task);
                last_wave.insert(commit.task, wave);
            }
        }
        let this = Arc::new(self.clone_handle());
        let mut verdicts = vec![true; commits.len()];
        let last = waves.iter().copied().max().unwrap_or(0);
        for wave in 0..=last {
            let mut wave_chunks: Vec<usize> =
                (0..chunks.len()).filter(|c| waves[*c] == wave).collect();
            while !wave_chunks.is_empty() {
                let take = wave_chunks.len().min(TXNS_IN_FLIGHT);
                let batch: Vec<usize> = wave_chunks.drain(..take).collect();
                let mut running = tokio::task::JoinSet::new();
                for c in batch {
                    let entries: Vec<CheckpointCommit> =
                        chunks[c].iter().map(|&i| commits[i].clone()).collect();
                    let this = Arc::clone(&this);
                    let lease = lease.clone();
                    running.spawn(async move { (c, this.commit_chunk(lease, id, entries).await) });
                }
                while let Some(joined) = running.join_next().await {
                    let (c, result) = joined.map_err(|error| CoordinatorError::Unavailable {
                        what: "commit checkpoints".into(),
                        source: Box::new(error),
                    })?;
                    for (slot, ok) in result?.into_iter().enumerate() {
                        if !ok {
                            verdicts[chunks[c][slot]] = false;
                        }
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(commits.len());
        for (commit, ok) in commits.iter().zip(verdicts) {
            if ok {
                out.push(Ok(()));
                continue;
            }
            // Fenced: say by whom (rare; one read each).
            let fenced = match self.task(commit.task).await? {
                Some(entry) => Fenced {
                    task: commit.task,
                    token: entry.token,
                    owner: entry.owner,
                },
                // Unknown (or forgotten): no token, nobody's.
                None => Fenced {
                    task: commit.task,
                    token: Token(0),
                    owner: Owner::Orphaned,
                },
            };
            out.push(Err(fenced));
        }
        Ok(out)
    }

    async fn transfer(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        to: &str,
        checkpoint: CheckpointRef,
    ) -> Result<Token, CoordinatorError> {
        let id = lease_id(lease)?;
        check_name("destination host", to)?;
        let current = to_json(&checkpoint, "a checkpoint reference")?;
        let to_key = self.member_key(to);
        let no_member = || CoordinatorError::NoSuchMember {
            host: to.to_owned(),
        };
        for _ in 0..TRANSFER_ATTEMPTS {
            let mut read = self
                .get("read the destination member", to_key.clone(), None)
                .await?;
            let Some(dest) = read.take_kvs().into_iter().next() else {
                return Err(no_member());
            };
            let record: MemberRecord = parse(&dest)?;
            if record.draining || dest.lease() == 0 {
                return Err(no_member());
            }
            let owner = to_json(
                &OwnerRecord {
                    host: to.to_owned(),
                    incarnation: u64::try_from(dest.lease()).unwrap_or_default(),
                },
                "the owner",
            )?;
            let [a, b] = self.owns(task, token, id);
            let txn = Txn::new()
                .when([
                    a,
                    b,
                    Compare::mod_revision(to_key.clone(), CompareOp::Equal, dest.mod_revision()),
                ])
                .and_then([
                    TxnOp::put(
                        self.task_key(task, OWNER),
                        owner,
                        Some(PutOptions::new().with_lease(dest.lease())),
                    ),
                    TxnOp::put(self.task_key(task, CURRENT), current.clone(), None),
                    self.bump_token(task),
                ])
                .or_else([
                    TxnOp::get(self.task_key(task, OWNER), None),
                    TxnOp::get(self.member_key(&lease.host), None),
                ]);
            let response = match self.txn("transfer a task", txn).await {
                Ok(response) => response,
                // The destination's lease ended since the read: the next read says so.
                Err(Failure::LeaseNotFound) => continue,
                Err(Failure::Other(error)) => return Err(error),
            };
            if response.succeeded() {
                return Ok(header_revision(&response));
            }
            let read = gets(&response);
            let holds = read
                .first()
                .and_then(|kvs| kvs.first())
                .is_some_and(|kv| Some(kv.mod_revision()) == revision(token) && kv.lease() == id);
            if !holds {
                let member = read.get(1).and_then(|kvs| kvs.first());
                return Err(self.refusal(lease, id, task, member).await);
            }
            // Only the destination's record changed (a renewal, or it started draining).
        }
        Err(CoordinatorError::Unavailable {
            what: format!("transfer a task at etcd {}", self.endpoints),
            source: format!(
                "the member record of `{to}` changed at each of {TRANSFER_ATTEMPTS} attempts"
            )
            .into(),
        })
    }

    async fn take_over(
        &self,
        lease: &Lease,
        task: TaskId,
        seen: Token,
    ) -> Result<(Token, CheckpointRef), CoordinatorError> {
        let id = lease_id(lease)?;
        let owner = to_json(
            &OwnerRecord {
                host: lease.host.clone(),
                incarnation: lease.incarnation,
            },
            "the owner",
        )?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.task_key(task, META), CompareOp::Greater, 0),
                Compare::create_revision(self.task_key(task, OWNER), CompareOp::Equal, 0),
                Compare::create_revision(self.task_key(task, FINISHED), CompareOp::Equal, 0),
                Compare::mod_revision(
                    self.task_key(task, TOKEN),
                    CompareOp::Equal,
                    revision_or_impossible(seen),
                ),
                self.member_is(lease, id),
            ])
            .and_then([
                TxnOp::put(
                    self.task_key(task, OWNER),
                    owner,
                    Some(PutOptions::new().with_lease(id)),
                ),
                self.bump_token(task),
                TxnOp::get(self.task_key(task, CURRENT), None),
            ])
            .or_else([
                TxnOp::get(self.task_dir(task), Some(GetOptions::new().with_prefix())),
                TxnOp::get(self.member_key(&lease.host), None),
            ]);
        let response = self
            .txn("take over a task", txn)
            .await
            .map_err(|failure| failure.with_lease(lease))?;
        let read = gets(&response);
        if response.succeeded() {
            let current = read.get(2).and_then(|kvs| kvs.first()).ok_or_else(|| {
                CoordinatorError::Damaged {
                    what: self.task_key(task, CURRENT),
                    detail: "missing while the task exists".into(),
                }
            })?;
            return Ok((header_revision(&response), parse(current)?));
        }
        if read.get(1).and_then(|kvs| kvs.first()).map(KeyValue::lease) != Some(id) {
            return Err(lease_ended(lease));
        }
        let kvs: Vec<&KeyValue> = read
            .first()
            .map(|kvs| kvs.iter().collect())
            .unwrap_or_default();
        match self.entry(task, &kvs)? {
            None => Err(CoordinatorError::NoSuchTask { task }),
            Some(entry) if entry.owner != Owner::Orphaned => Err(CoordinatorError::NotOrphaned {
                task,
                owner: entry.owner,
            }),
            Some(entry) => Err(CoordinatorError::Fenced(Fenced {
                task,
                token: entry.token,
                owner: entry.owner,
            })),
        }
    }

    async fn release(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
    ) -> Result<Token, CoordinatorError> {
        let id = lease_id(lease)?;
        let txn = Txn::new()
            .when(self.owns(task, token, id))
            .and_then([
                TxnOp::delete(self.task_key(task, OWNER), None),
                self.bump_token(task),
            ])
            .or_else([TxnOp::get(self.member_key(&lease.host), None)]);
        let response = self
            .txn("release a task", txn)
            .await
            .map_err(|failure| failure.with_lease(lease))?;
        if response.succeeded() {
            return Ok(header_revision(&response));
        }
        let read = gets(&response);
        Err(self
            .refusal(lease, id, task, read.first().and_then(|kvs| kvs.first()))
            .await)
    }

    async fn finish(
        &self,
        lease: &Lease,
        task: TaskId,
        token: Token,
        outcome: &str,
    ) -> Result<(), CoordinatorError> {
        let id = lease_id(lease)?;
        if outcome.is_empty() {
            return Err(CoordinatorError::Invalid {
                what: "outcome key",
                reason: "empty".into(),
            });
        }
        let record = to_json(
            &FinishedRecord {
                token: token.0,
                outcome: outcome.to_owned(),
            },
            "the outcome",
        )?;
        let finished_key = self.task_key(task, FINISHED);
        let [a, b] = self.owns(task, token, id);
        let txn = Txn::new()
            .when([
                a,
                b,
                Compare::create_revision(finished_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(finished_key.clone(), record, None),
                TxnOp::delete(self.task_key(task, OWNER), None),
                self.bump_token(task),
            ])
            .or_else([
                TxnOp::get(finished_key, None),
                TxnOp::get(self.member_key(&lease.host), None),
            ]);
        let response = self
            .txn("finish a task", txn)
            .await
            .map_err(|failure| failure.with_lease(lease))?;
        if response.succeeded() {
            return Ok(());
        }
        let read = gets(&response);
        if let Some(kv) = read.first().and_then(|kvs| kvs.first()) {
            let done: FinishedRecord = parse(kv)?;
            if done.token == token.0 && done.outcome == outcome {
                // The same call again, after it succeeded.
                return Ok(());
            }
        }
        Err(self
            .refusal(lease, id, task, read.get(1).and_then(|kvs| kvs.first()))
            .await)
    }

    async fn forget(&self, task: TaskId) -> Result<(), CoordinatorError> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.task_key(task, FINISHED),
                CompareOp::Greater,
                0,
            )])
            .and_then([TxnOp::delete(
                self.task_dir(task),
                Some(DeleteOptions::new().with_prefix()),
            )])
            .or_else([TxnOp::get(
                self.task_dir(task),
                Some(GetOptions::new().with_prefix()),
            )]);
        let response = self
            .txn("forget a task", txn)
            .await
            .map_err(|failure| failure.plain("forget a task"))?;
        if response.succeeded() {
            return Ok(());
        }
        let read = gets(&response);
        let kvs: Vec<&KeyValue> = read
            .first()
            .map(|kvs| kvs.iter().collect())
            .unwrap_or_default();
        match self.entry(task, &kvs)? {
            None => Err(CoordinatorError::NoSuchTask { task }),
            Some(entry) => Err(CoordinatorError::Invalid {
                what: "forget",
                reason: format!("task {task} has not finished (owner: {:?})", entry.owner),
            }),
        }
    }
}

impl EtcdCoordinator {
    /// A second handle on the same connection and cache (for the batch's concurrent
    /// transactions, which must own what they use).
    fn clone_handle(&self) -> EtcdCoordinator {
        EtcdCoordinator {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            endpoints: self.endpoints.clone(),
            timeout: self.timeout,
            published: Mutex::new(HashMap::new()),
        }
    }

    async fn revoke_quietly(&self, id: i64) {
        let mut leases = self.client.lease_client();
        // Best effort: a lease not revoked runs out on its own.
        let _ = self
            .call("revoke a lease", async move { leases.revoke(id).await })
            .await;
    }

    fn published_get(&self, id: i64) -> Option<Vec<u8>> {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }

    fn published_set(&self, id: i64, value: Option<Vec<u8>>) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match value {
            Some(value) => published.insert(id, value),
            None => published.remove(&id),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let dir = std::env::temp_dir().join(format!("cosmic-etcd-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("password");
        std::fs::write(&file, "s3cret-Pa55\n").expect("write");
        let config = EtcdConfig::new(["127.0.0.1:2379"])
            .with_password_file("cosmic", &file)
            .expect("read the password");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("cosmic") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(
            config.user.as_ref().map(|(_, p)| p.as_str()),
            Some("s3cret-Pa55"),
            "the final newline is not part of the password"
        );
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            EtcdConfig::new(["x"]).with_password_file("cosmic", &file),
            Err(CoordinatorError::Invalid { .. })
        ));
        let missing = dir.join("missing");
        assert!(matches!(
            EtcdConfig::new(["x"]).with_password_file("cosmic", &missing),
            Err(CoordinatorError::Io { path, .. }) if path == missing
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_configurations_are_named() {
        let cases = [
            (EtcdConfig::new(Vec::<String>::new()), "etcd endpoints"),
            (EtcdConfig::new([" "]), "etcd endpoints"),
            (
                EtcdConfig::new(["x"]).with_prefix("/no-slash"),
                "etcd key prefix",
            ),
            (
                EtcdConfig::new(["x"]).with_timeouts(Duration::ZERO, DEFAULT_TIMEOUT),
                "etcd timeouts",
            ),
        ];
        for (config, expected) in cases {
            match config.check() {
                Err(CoordinatorError::Invalid { what, .. }) => assert_eq!(what, expected),
                other => panic!("{config:?}: {other:?}"),
            }
        }
        assert!(EtcdConfig::new(["x"]).check().is_ok());
    }

    #[test]
    fn names_with_separators_are_refused() {
        for bad in ["", "a/b", "a b", "a\nb"] {
            assert!(check_name("host name", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("host name", "alpha-1.example").is_ok());
    }
}
