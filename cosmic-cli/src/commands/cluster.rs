//! What the cluster's commands share: the coordinator they read (`--coordinator`,
//! `COSMIC_COORDINATOR`), a snapshot of it, and the operator's channel to a member host
//! (cluster key and operator key from files, never from the command line).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cosmic::cluster::{Coordinator, CoordinatorSpec, Member, TaskEntry};
use cosmic::transport::{
    ChannelConfig, ClusterKey, Credentials, HostKey, NodeName, PublicKey, SecureChannel,
    TrustedPeers,
};

use crate::output::{self, Failure};

/// Where the cluster's coordinator is.
#[derive(Debug, clap::Args)]
pub(crate) struct CoordinatorArgs {
    /// The cluster's coordinator: `folder:PATH` (hosts on one machine), or
    /// `etcd:http://HOST:PORT[,...]` in a build with etcd support.
    #[arg(long, env = "COSMIC_COORDINATOR", value_name = "SPEC")]
    coordinator: String,
}

impl CoordinatorArgs {
    /// Opens the coordinator; a folder must exist already (a mistyped path is an error, not a
    /// new empty cluster).
    pub(crate) async fn open(&self) -> Result<Arc<dyn Coordinator>, Failure> {
        let spec: CoordinatorSpec = self
            .coordinator
            .parse()
            .map_err(|error| Failure::new(output::chain(&error)))?;
        if let CoordinatorSpec::Folder(path) = &spec {
            if !path.is_dir() {
                return Err(Failure::new(format!(
                    "no coordinator folder at {} (a member creates it when it first runs)",
                    path.display()
                )));
            }
        }
        spec.open()
            .await
            .map_err(|error| Failure::new(output::chain(&error)))
    }
}

/// A tokio runtime for one command.
pub(crate) fn tokio() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::because("cannot start the async runtime", &error))
}

/// What the coordinator says, read at one moment.
pub(crate) struct Snapshot {
    pub(crate) members: Vec<Member>,
    pub(crate) trusted: Vec<(String, PublicKey)>,
    pub(crate) tasks: Vec<TaskEntry>,
}

impl Snapshot {
    pub(crate) async fn read(coordinator: &dyn Coordinator) -> Result<Snapshot, Failure> {
        let failed =
            |error: &dyn std::error::Error| Failure::because("reading the coordinator", error);
        let mut members = coordinator.members().await.map_err(|e| failed(&e))?;
        let mut trusted = coordinator.trusted().await.map_err(|e| failed(&e))?;
        let mut tasks = coordinator.tasks().await.map_err(|e| failed(&e))?;
        members.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        trusted.sort();
        tasks.sort_by_key(|t| t.task);
        Ok(Snapshot {
            members,
            trusted,
            tasks,
        })
    }

    /// The key an operator trusted for `name`.
    pub(crate) fn trusted_key(&self, name: &str) -> Option<PublicKey> {
        self.trusted
            .iter()
            .find(|(trusted, _)| trusted == name)
            .map(|(_, key)| *key)
    }

    /// Whether `member` publishes the key an operator trusted for its name.
    pub(crate) fn is_trusted(&self, member: &Member) -> bool {
        self.trusted_key(&member.record.name) == Some(member.record.public_key)
    }

    /// The live member `name`, trusted: what an operator can talk to and move tasks to.
    pub(crate) fn trusted_member(&self, name: &str) -> Result<&Member, Failure> {
        let member = self
            .members
            .iter()
            .find(|m| m.record.name == name)
            .ok_or_else(|| {
                Failure::new(format!(
                    "unknown host `{name}`: not a live member of the cluster (`cosmic status` lists them)"
                ))
            })?;
        if !self.is_trusted(member) {
            return Err(Failure::new(format!(
                "host `{name}` is not trusted: its published key {} is not the one trusted for it \
                 (trust it with `cosmic host add {name} KEY`)",
                member.record.public_key
            )));
        }
        Ok(member)
    }
}

/// How the operator reaches member hosts.
#[derive(Debug, clap::Args)]
pub(crate) struct OperatorArgs {
    #[command(flatten)]
    pub(crate) coordinator: CoordinatorArgs,

    /// The file holding the cluster key.
    #[arg(long, env = "COSMIC_CLUSTER_KEY_FILE", value_name = "PATH")]
    cluster_key_file: PathBuf,

    /// The operator's host key file (`cosmic keygen --host-key PATH`); the hosts must trust
    /// its public key under `--as` (`cosmic host add operator KEY`).
    #[arg(long, env = "COSMIC_HOST_KEY_FILE", value_name = "PATH")]
    host_key: PathBuf,

    /// The name the operator's key is trusted under.
    #[arg(long = "as", value_name = "NAME", default_value = "operator")]
    name: String,

    /// How long to wait for the host's answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) timeout: u64,
}

/// The operator's credentials, loaded.
pub(crate) struct Operator {
    name: NodeName,
    cluster_key: ClusterKey,
    host_key: HostKey,
    pub(crate) timeout: Duration,
}

impl OperatorArgs {
    /// Reads the keys (before anything else happens, so a missing file fails fast).
    pub(crate) fn load(&self) -> Result<Operator, Failure> {
        let name = NodeName::new(self.name.as_str())
            .map_err(|error| Failure::because(format!("invalid --as `{}`", self.name), &error))?;
        let cluster_key = ClusterKey::from_file(&self.cluster_key_file)
            .map_err(|error| Failure::new(output::chain(&error)))?;
        let host_key = HostKey::from_file(&self.host_key)
            .map_err(|error| Failure::new(output::chain(&error)))?;
        Ok(Operator {
            name,
            cluster_key,
            host_key,
            timeout: Duration::from_secs(self.timeout.max(1)),
        })
    }
}

impl Operator {
    /// Checks that the hosts trust this operator (by the coordinator's list, which they follow).
    pub(crate) fn check_trusted(&self, snapshot: &Snapshot) -> Result<(), Failure> {
        let mine = self.host_key.public_key();
        match snapshot.trusted_key(self.name.as_str()) {
            Some(key) if key == mine => Ok(()),
            Some(key) => Err(Failure::new(format!(
                "the hosts trust another key for `{}` ({key}), not this one ({mine}): \
                 `cosmic host add {} {mine}` replaces it",
                self.name, self.name
            ))),
            None => Err(Failure::new(format!(
                "the hosts do not trust `{}`: run `cosmic host add {} {mine}` first",
                self.name, self.name
            ))),
        }
    }

    /// A channel to `member` (which must be trusted: its key is checked in the handshake).
    pub(crate) async fn connect(
        &self,
        snapshot: &Snapshot,
        member: &Member,
    ) -> Result<SecureChannel, Failure> {
        let record = &member.record;
        let key = snapshot
            .trusted_key(&record.name)
            .ok_or_else(|| Failure::new(format!("host `{}` is not trusted", record.name)))?;
        let peer = NodeName::new(record.name.as_str())
            .map_err(|error| Failure::because(format!("member name `{}`", record.name), &error))?;
        let addr: SocketAddr = record.addr.parse().map_err(|_| {
            Failure::new(format!(
                "host `{}` publishes an address that does not parse: `{}`",
                record.name, record.addr
            ))
        })?;
        let trusted = TrustedPeers::new();
        trusted.trust(peer, key);
        let credentials =
            Credentials::new(self.cluster_key.clone(), self.host_key.clone(), trusted);
        let (channel, _) =
            SecureChannel::connect(addr, &credentials, &self.name, &ChannelConfig::default())
                .await
                .map_err(|error| {
                    Failure::because(
                        format!(
                            "cannot reach `{}` at {addr} (hosts learn a newly trusted operator key at their next scan)",
                            record.name
                        ),
                        &error,
                    )
                })?;
        Ok(channel)
    }
}
