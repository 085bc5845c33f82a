//! [`HostConfig`]: a cluster member's settings in a TOML file, for `cosmic host run` and for
//! users' own host binaries, which add their task types to the [`Builder`] it returns. And
//! [`CoordinatorSpec`], how a coordinator is named in it and on the command line
//! (`folder:PATH`, `etcd:URL[,URL...]`).
//!
//! ```toml
//! name = "alpha"
//! listen = "127.0.0.1:7001"
//! # advertise = "192.0.2.10:7001"     # what peers dial, when listening on 0.0.0.0
//! store = "store"                     # a FileStore folder every member shares
//! coordinator = "folder:coordinator"  # or "etcd:http://10.0.0.1:2379,http://10.0.0.2:2379"
//! cluster_key_file = "keys/cluster.key"
//! host_key_file = "keys/alpha.key"
//! lease_ttl = "5s"
//! scan_interval = "1s"                # default: a fifth of the lease
//! capacity = 4                        # default: one slot per CPU
//! checkpoint_interval = "1s"
//! keep_checkpoints = 3
//! leave_deadline = "10s"              # how long a SIGTERM'd host may take to move its tasks
//!
//! [balance]
//! enabled = true
//! start_above = 0.25
//! stop_above = 0.05
//! max_in_flight = 8
//! cooldown = "10s"
//! ```
//!
//! Relative paths are relative to the file's folder. Keys are only named (files), never
//! written in the file. Durations are a number and a unit (`ms`, `s`, `m`, `h`), or a number
//! of seconds. Unknown keys are refused, so a misspelt setting never passes silently for its
//! default.
//!
//! Why TOML through the `toml` crate: it is the format Rust users already write
//! (`Cargo.toml`), with errors that name the line; with only its parser and serde features it
//! adds two small crates (`toml_parser`, `winnow`) that were already in the workspace's lock
//! file, so a hand-written `key = value` parser would have saved nothing worth its bugs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::balance::BalanceConfig;
use super::config::ClusterConfig;
use super::coordinator::{Coordinator, CoordinatorError};
use super::folder::FolderCoordinator;
use crate::checkpoint::{FileStore, Policy, StoreError};
use crate::runtime::{Builder, Runtime};
use crate::transport::{ClusterKey, HostKey, HostKeyError, KeyError, NodeName, NodeNameError};

/// A cluster member's settings, read from a TOML file (see the module docs for every key).
///
/// ```no_run
/// # use cosmic_runtime::cluster::HostConfig;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = HostConfig::from_file("/etc/cosmic/alpha.toml")?;
/// let runtime = config
///     .builder()
///     .await?
///     // .register::<MyTask>()   // the task types this host runs
///     .build()
///     .await?;
/// // ... until SIGTERM:
/// runtime.leave(config.leave_deadline()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HostConfig {
    /// The host's name (a [`NodeName`]): what the others trust and reach it by.
    pub name: String,
    /// The address it listens on for peers (`"127.0.0.1:7001"`; port 0 picks a free one).
    pub listen: String,
    /// The address peers are told to reach it at (default: the listening address).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The shared checkpoint store: a [`FileStore`] folder every member reaches.
    pub store: PathBuf,
    /// The coordinator, as a [`CoordinatorSpec`]: `folder:PATH` or `etcd:URL[,URL...]`.
    pub coordinator: String,
    /// The file holding the cluster key (every member's shared secret).
    pub cluster_key_file: PathBuf,
    /// The file holding this host's key pair (mode 0600; `cosmic keygen --host-key`).
    pub host_key_file: PathBuf,
    /// The lease's time to live (default 5 s).
    #[serde(default, deserialize_with = "some_duration")]
    pub lease_ttl: Option<Duration>,
    /// How often the host reads the coordinator (default: a fifth of the lease).
    #[serde(default, deserialize_with = "some_duration")]
    pub scan_interval: Option<Duration>,
    /// Tasks it runs at full speed at once (default: one per CPU).
    #[serde(default)]
    pub capacity: Option<u32>,
    /// How often each task is checkpointed (default 1 s).
    #[serde(default, deserialize_with = "some_duration")]
    pub checkpoint_interval: Option<Duration>,
    /// Checkpoints kept per task (default 3).
    #[serde(default)]
    pub keep_checkpoints: Option<usize>,
    /// How long a host told to stop may take to move its tasks away (default 10 s).
    #[serde(default, deserialize_with = "some_duration")]
    pub leave_deadline: Option<Duration>,
    /// The balancer.
    #[serde(default)]
    pub balance: BalanceSettings,
    /// The folder relative paths are relative to (the file's folder), not read from the file.
    #[serde(skip)]
    base: PathBuf,
}

/// The `[balance]` table of a [`HostConfig`]: each key left out keeps
/// [`BalanceConfig::default`]'s value.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BalanceSettings {
    /// Balancing on or off (failover works either way).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// See [`BalanceConfig::start_above`].
    #[serde(default)]
    pub start_above: Option<f64>,
    /// See [`BalanceConfig::stop_above`].
    #[serde(default)]
    pub stop_above: Option<f64>,
    /// See [`BalanceConfig::max_in_flight`].
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// See [`BalanceConfig::cooldown`].
    #[serde(default, deserialize_with = "some_duration")]
    pub cooldown: Option<Duration>,
}

impl BalanceSettings {
    /// The balancer's configuration: these settings over the defaults.
    pub fn config(&self) -> BalanceConfig {
        let default = BalanceConfig::default();
        BalanceConfig {
            enabled: self.enabled.unwrap_or(default.enabled),
            start_above: self.start_above.unwrap_or(default.start_above),
            stop_above: self.stop_above.unwrap_or(default.stop_above),
            max_in_flight: self.max_in_flight.unwrap_or(default.max_in_flight),
            cooldown: self.cooldown.unwrap_or(default.cooldown),
        }
    }
}

/// What is wrong with a host's configuration, or with what it names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostConfigError {
    /// The file could not be read.
    #[error("cannot read the host configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or not a host configuration (the message names the line).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file (`<text>` for [`HostConfig::from_toml`]).
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// A setting has a value that cannot be right.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The host's name is not a valid node name.
    #[error("invalid `name`")]
    Name(#[source] NodeNameError),
    /// The coordinator named is of a kind this build cannot reach.
    #[error("coordinator `{spec}`: built without {kind} support (enable the `{kind}` cargo feature of cosmic-runtime)")]
    Unsupported {
        /// The coordinator as written.
        spec: String,
        /// Its kind (`etcd`).
        kind: &'static str,
    },
    /// The coordinator could not be opened.
    #[error("cannot open the coordinator `{spec}`")]
    Coordinator {
        /// The coordinator as written.
        spec: String,
        /// Why.
        #[source]
        source: CoordinatorError,
    },
    /// The cluster key file could not be read.
    #[error("cannot read the cluster key (`cluster_key_file`)")]
    ClusterKey(#[source] KeyError),
    /// The host key file could not be read.
    #[error("cannot read the host key (`host_key_file`)")]
    HostKey(#[source] HostKeyError),
    /// The store could not be opened.
    #[error("cannot open the store {}", path.display())]
    Store {
        /// Its folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
}

impl HostConfig {
    /// Reads the configuration from the TOML file at `path`; relative paths in it are taken
    /// relative to the file's folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<HostConfig, HostConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| HostConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = parse(&text, path)?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    /// Reads the configuration from TOML text; relative paths stay relative to the current
    /// folder.
    pub fn from_toml(text: &str) -> Result<HostConfig, HostConfigError> {
        parse(text, Path::new("<text>"))
    }

    /// How long a host told to stop may take to move its tasks away (default 10 s): what to
    /// give [`Runtime::leave`].
    pub fn leave_deadline(&self) -> Duration {
        self.leave_deadline.unwrap_or(Duration::from_secs(10))
    }

    /// A path of the configuration, resolved against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }

    /// The coordinator, parsed, with a folder's path resolved against the file's folder.
    pub fn coordinator_spec(&self) -> Result<CoordinatorSpec, HostConfigError> {
        Ok(match self.coordinator.parse()? {
            CoordinatorSpec::Folder(path) => CoordinatorSpec::Folder(self.resolve(&path)),
            spec => spec,
        })
    }

    /// Checks every setting that needs no file or service: the name, the addresses, the
    /// durations and numbers, the coordinator's form.
    pub fn validate(&self) -> Result<(), HostConfigError> {
        NodeName::new(self.name.as_str()).map_err(HostConfigError::Name)?;
        check_addr("listen", &self.listen)?;
        if let Some(advertise) = &self.advertise {
            check_addr("advertise", advertise)?;
        }
        let positive = |field, value: Option<Duration>| match value {
            Some(value) if value.is_zero() => Err(HostConfigError::Invalid {
                field,
                reason: "must be more than zero".to_owned(),
            }),
            _ => Ok(()),
        };
        positive("lease_ttl", self.lease_ttl)?;
        positive("scan_interval", self.scan_interval)?;
        positive("checkpoint_interval", self.checkpoint_interval)?;
        if self.capacity == Some(0) {
            return Err(HostConfigError::Invalid {
                field: "capacity",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.keep_checkpoints == Some(0) {
            return Err(HostConfigError::Invalid {
                field: "keep_checkpoints",
                reason: "must be at least 1".to_owned(),
            });
        }
        let balance = self.balance.config();
        if !(balance.stop_above >= 0.0 && balance.stop_above <= balance.start_above) {
            return Err(HostConfigError::Invalid {
                field: "balance",
                reason: format!(
                    "needs 0 <= stop_above <= start_above (they are {} and {})",
                    balance.stop_above, balance.start_above
                ),
            });
        }
        self.coordinator_spec().map(drop)
    }

    /// A [`Runtime::builder`] set up from this configuration: name, addresses, keys (read
    /// from their files now), the shared store, the checkpoint policy and the cluster (the
    /// coordinator opened now). Add the task types this host runs
    /// ([`Builder::register`]), then build it.
    pub async fn builder(&self) -> Result<Builder, HostConfigError> {
        self.validate()?;
        let cluster_key = ClusterKey::from_file(self.resolve(&self.cluster_key_file))
            .map_err(HostConfigError::ClusterKey)?;
        let host_key = HostKey::from_file(self.resolve(&self.host_key_file))
            .map_err(HostConfigError::HostKey)?;
        let store_path = self.resolve(&self.store);
        let store =
            FileStore::open_shared(&store_path).map_err(|source| HostConfigError::Store {
                path: store_path,
                source,
            })?;
        let coordinator = self.coordinator_spec()?.open().await?;
        let mut cluster = ClusterConfig::shared(coordinator).balance(self.balance.config());
        if let Some(ttl) = self.lease_ttl {
            cluster = cluster.lease_ttl(ttl);
        }
        if let Some(interval) = self.scan_interval {
            cluster = cluster.scan_every(interval);
        }
        if let Some(capacity) = self.capacity {
            cluster = cluster.capacity(capacity);
        }
        let mut builder = Runtime::builder()
            .host(self.name.as_str())
            .listen(self.listen.as_str())
            .cluster_key(cluster_key)
            .host_key(host_key)
            .store(store)
            .checkpoint(Policy::every(
                self.checkpoint_interval.unwrap_or(Duration::from_secs(1)),
            ))
            .keep_checkpoints(self.keep_checkpoints.unwrap_or(3))
            .cluster(cluster);
        if let Some(advertise) = &self.advertise {
            builder = builder.advertise(advertise.as_str());
        }
        Ok(builder)
    }
}

fn parse(text: &str, path: &Path) -> Result<HostConfig, HostConfigError> {
    toml::from_str(text).map_err(|error| HostConfigError::Parse {
        path: path.to_owned(),
        // toml's message spans lines (the line quoted, a caret): one line here.
        message: error
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('|') && *line != "^")
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn check_addr(field: &'static str, addr: &str) -> Result<(), HostConfigError> {
    addr.parse::<std::net::SocketAddr>()
        .map(drop)
        .map_err(|_| HostConfigError::Invalid {
            field,
            reason: format!("`{addr}` is not an address and port (like 127.0.0.1:7001)"),
        })
}

/// Why a configured duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("`{0}` is not a duration (like 500ms, 5s, 2m)")]
    NotANumber(String),
    #[error("unknown unit `{unit}` in `{text}` (ms, s, m or h)")]
    UnknownUnit { unit: String, text: String },
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

/// A duration as the configuration writes it: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`,
/// or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_owned()))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            })
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| DurationError::OutOfRange(text.to_owned()))
}

/// A duration written as a string (see [`parse_duration`]) or a number of seconds.
fn some_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Seconds(f64),
    }
    let seconds = match Written::deserialize(deserializer)? {
        Written::Text(text) => {
            return parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
        Written::Seconds(seconds) => seconds,
    };
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{seconds} is not a duration in seconds")))
}

/// How a coordinator is named: in a [`HostConfig`] (`coordinator = "..."`) and on the command
/// line (`cosmic --coordinator ...`, `COSMIC_COORDINATOR`).
///
/// ```
/// # use cosmic_runtime::cluster::CoordinatorSpec;
/// let spec: CoordinatorSpec = "folder:/var/lib/cosmic/coordinator".parse()?;
/// assert_eq!(spec, CoordinatorSpec::Folder("/var/lib/cosmic/coordinator".into()));
/// let spec: CoordinatorSpec = "etcd:http://10.0.0.1:2379,http://10.0.0.2:2379".parse()?;
/// assert!(matches!(spec, CoordinatorSpec::Etcd(endpoints) if endpoints.len() == 2));
/// assert!("zookeeper:x".parse::<CoordinatorSpec>().is_err());
/// # Ok::<(), cosmic_runtime::cluster::HostConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordinatorSpec {
    /// `folder:PATH`: a [`FolderCoordinator`] (hosts on one machine).
    Folder(PathBuf),
    /// `etcd:URL[,URL...]`: an etcd cluster's endpoints (`http://host:port`), with the `etcd`
    /// feature.
    Etcd(Vec<String>),
}

impl FromStr for CoordinatorSpec {
    type Err = HostConfigError;

    fn from_str(spec: &str) -> Result<CoordinatorSpec, HostConfigError> {
        let invalid = |reason: String| HostConfigError::Invalid {
            field: "coordinator",
            reason,
        };
        match spec.split_once(':') {
            Some(("folder", path)) if !path.is_empty() => Ok(CoordinatorSpec::Folder(path.into())),
            Some(("folder", _)) => Err(invalid("`folder:` needs a path: folder:PATH".to_owned())),
            Some(("etcd", endpoints)) => {
                let endpoints: Vec<String> = endpoints
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect();
                if endpoints.is_empty() {
                    return Err(invalid(
                        "`etcd:` needs endpoints: etcd:http://host:port[,...]".to_owned(),
                    ));
                }
                if let Some(bad) = endpoints
                    .iter()
                    .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
                {
                    return Err(invalid(format!(
                        "etcd endpoint `{bad}` is not an http:// or https:// URL"
                    )));
                }
                Ok(CoordinatorSpec::Etcd(endpoints))
            }
            _ => Err(invalid(format!(
                "`{spec}` is neither folder:PATH nor etcd:http://host:port[,...]"
            ))),
        }
    }
}

impl std::fmt::Display for CoordinatorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoordinatorSpec::Folder(path) => write!(f, "folder:{}", path.display()),
            CoordinatorSpec::Etcd(endpoints) => write!(f, "etcd:{}", endpoints.join(",")),
        }
    }
}

impl CoordinatorSpec {
    /// Opens the coordinator (a folder is created if it does not exist).
    pub async fn open(&self) -> Result<Arc<dyn Coordinator>, HostConfigError> {
        match self {
            CoordinatorSpec::Folder(path) => FolderCoordinator::open(path)
                .map(|c| Arc::new(c) as Arc<dyn Coordinator>)
                .map_err(|source| HostConfigError::Coordinator {
                    spec: self.to_string(),
                    source,
                }),
            // Credentials (and nothing else) come from the environment: never a config value
            // that might be committed or printed.
            #[cfg(feature = "etcd")]
            CoordinatorSpec::Etcd(endpoints) => {
                let coordinator = async {
                    let config =
                        super::EtcdConfig::new(endpoints.clone()).with_credentials_from_env()?;
                    super::EtcdCoordinator::connect(config).await
                };
                coordinator
                    .await
                    .map(|c| Arc::new(c) as Arc<dyn Coordinator>)
                    .map_err(|source| HostConfigError::Coordinator {
                        spec: self.to_string(),
                        source,
                    })
            }
            #[cfg(not(feature = "etcd"))]
            CoordinatorSpec::Etcd(_) => Err(HostConfigError::Unsupported {
                spec: self.to_string(),
                kind: "etcd",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        name = "alpha"
        listen = "127.0.0.1:0"
        advertise = "127.0.0.1:7001"
        store = "store"
        coordinator = "folder:coord"
        cluster_key_file = "keys/cluster.key"
        host_key_file = "/etc/alpha.key"
        lease_ttl = "2s"
        scan_interval = "250ms"
        capacity = 2
        checkpoint_interval = 0.5
        keep_checkpoints = 2
        leave_deadline = "1m"

        [balance]
        enabled = false
        cooldown = "3s"
    "#;

    #[test]
    fn a_full_file_reads_and_resolves_its_paths() {
        let mut config = HostConfig::from_toml(FULL).unwrap();
        config.base = PathBuf::from("/srv/cosmic");
        config.validate().unwrap();
        assert_eq!(config.lease_ttl, Some(Duration::from_secs(2)));
        assert_eq!(config.scan_interval, Some(Duration::from_millis(250)));
        assert_eq!(config.checkpoint_interval, Some(Duration::from_millis(500)));
        assert_eq!(config.leave_deadline(), Duration::from_secs(60));
        let balance = config.balance.config();
        assert!(!balance.enabled);
        assert_eq!(balance.cooldown, Duration::from_secs(3));
        assert_eq!(balance.start_above, BalanceConfig::default().start_above);
        assert_eq!(
            config.resolve(&config.store),
            PathBuf::from("/srv/cosmic/store")
        );
        assert_eq!(
            config.resolve(&config.host_key_file),
            PathBuf::from("/etc/alpha.key")
        );
        assert_eq!(
            config.coordinator_spec().unwrap(),
            CoordinatorSpec::Folder("/srv/cosmic/coord".into())
        );
    }

    #[test]
    fn mistakes_are_named() {
        let error = HostConfig::from_toml(&FULL.replace("capacity", "capacityy")).unwrap_err();
        assert!(error.to_string().contains("capacityy"), "{error}");
        let error = HostConfig::from_toml(&FULL.replace("\"2s\"", "\"2 parsecs\"")).unwrap_err();
        assert!(error.to_string().contains("parsecs"), "{error}");
        let config = HostConfig::from_toml(&FULL.replace("\"alpha\"", "\"al pha\"")).unwrap();
        assert!(matches!(config.validate(), Err(HostConfigError::Name(_))));
        let config = HostConfig::from_toml(&FULL.replace("127.0.0.1:0", "localhost")).unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("`listen`"), "{error}");
        let config = HostConfig::from_toml(&FULL.replace("folder:coord", "zk:x")).unwrap();
        assert!(config.validate().is_err());
        let error = HostConfig::from_toml("name = 3").unwrap_err();
        assert!(!error.to_string().contains('\n'), "{error}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("5 weeks"),
            Err(DurationError::UnknownUnit {
                unit: "weeks".to_owned(),
                text: "5 weeks".to_owned()
            })
        );
        assert!(parse_duration("-1s").is_err());
    }

    #[cfg(not(feature = "etcd"))]
    #[tokio::test]
    async fn etcd_is_refused_plainly_without_its_feature() {
        let spec: CoordinatorSpec = "etcd:http://127.0.0.1:2379".parse().unwrap();
        let error = spec.open().await.unwrap_err();
        assert!(
            error.to_string().contains("built without etcd support"),
            "{error}"
        );
        assert!("etcd:".parse::<CoordinatorSpec>().is_err());
        assert!("etcd:127.0.0.1:2379".parse::<CoordinatorSpec>().is_err());
    }
}
