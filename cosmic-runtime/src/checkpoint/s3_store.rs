//! [`S3Store`]: checkpoints on S3-compatible object storage, through the `object_store` crate
//! (only with the `s3` cargo feature).
//!
//! Configuration comes from the environment ([`S3Config::from_env`]) or from code, with the
//! secret from the environment or from a file only its owner can read
//! ([`S3Credentials::from_file`]); never from a command line. Nothing here prints the secret.

use std::error::Error as StdError;
use std::ffi::OsString;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore as _, ObjectStoreExt as _,
    PutPayload, RetryConfig,
};
use zeroize::Zeroizing;

use super::store::validate_key;
use super::{CheckpointStore, PutMode, RemoteProblem, StoreError};

/// The smallest part S3 accepts in a multipart upload (all parts but the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one multipart upload sent at once.
const PARTS_IN_FLIGHT: usize = 4;
/// The longest credentials file read (a few lines).
const MAX_CREDENTIALS_FILE: u64 = 64 * 1024;

/// An access key for an S3-compatible service. Its [`Debug`](fmt::Debug) shows the access key
/// id (a name, not a secret) and never the secret access key.
#[derive(Clone)]
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
}

impl S3Credentials {
    /// Credentials from their two parts.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
        }
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// Credentials read from a file of `name = value` lines (`#` comments and a `[default]`
    /// header allowed, as in AWS's credentials file), naming `aws_access_key_id` (or
    /// `access_key_id`) and `aws_secret_access_key` (or `secret_access_key`).
    ///
    /// On Unix, a file whose mode gives the group or other users any access
    /// (`mode & 0o077 != 0`) is refused with [`S3ConfigError::SharedCredentialsFile`]: make it
    /// `chmod 600`, like the cluster key file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<S3Credentials, S3ConfigError> {
        let path = path.as_ref();
        let read_error = |source| S3ConfigError::CredentialsFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file opened, not of the path (which could be swapped meanwhile).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(S3ConfigError::SharedCredentialsFile {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_CREDENTIALS_FILE + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        let bad = |line: usize, reason: &'static str| S3ConfigError::BadCredentialsFile {
            path: path.to_owned(),
            line,
            reason,
        };
        if text.len() as u64 > MAX_CREDENTIALS_FILE {
            return Err(bad(0, "the file is longer than 64 KiB"));
        }
        let mut id = None;
        let mut secret = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line == "[default]" {
                continue;
            }
            if line.starts_with('[') {
                return Err(bad(number, "only a `[default]` section is supported"));
            }
            // Never quote the line: it may hold the secret.
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| bad(number, "expected `name = value`"))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(number, "the value is empty"));
            }
            let slot = match name.trim() {
                "aws_access_key_id" | "access_key_id" => &mut id,
                "aws_secret_access_key" | "secret_access_key" => &mut secret,
                _ => {
                    return Err(bad(
                        number,
                        "unknown name (expected aws_access_key_id or aws_secret_access_key)",
                    ))
                }
            };
            if slot.is_some() {
                return Err(bad(number, "this name was already given"));
            }
            *slot = Some(Zeroizing::new(value.to_owned()));
        }
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(S3Credentials {
                access_key_id: id.to_string(),
                secret_access_key: secret,
            }),
            (None, _) => Err(bad(0, "no aws_access_key_id")),
            (_, None) => Err(bad(0, "no aws_secret_access_key")),
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where an [`S3Store`] keeps its objects, and how it reaches them.
///
/// Build one with [`S3Config::new`] and its setters, or from the environment with
/// [`S3Config::from_env`]. Its [`Debug`](fmt::Debug) never shows the secret.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct S3Config {
    /// The service's URL (`https://s3.example.net`, `http://127.0.0.1:9000`); `None` for AWS
    /// itself, by region. Requests are path-style (`endpoint/bucket/key`).
    pub endpoint: Option<String>,
    /// The region requests are signed for (default `us-east-1`).
    pub region: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// A key prefix inside the bucket (`""` for none): the store's keys are
    /// `prefix/key`, and [`CheckpointStore::list`] returns them without it. Several runtimes
    /// or clusters can share one bucket under different prefixes.
    pub prefix: String,
    /// Whether an `http://` endpoint is allowed. Images travel unencrypted over plain HTTP, so
    /// a non-loopback `http://` endpoint without this is refused.
    pub allow_http: bool,
    /// The access key; `None` is refused by [`S3Store::new`].
    pub credentials: Option<S3Credentials>,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
    /// How long one request may take, from sending it to the end of the answer (default 60
    /// s; a large value is sent in parts of `part_size` bytes, each its own request).
    pub request_timeout: Duration,
    /// How many times a failed request is retried (default 3); timeouts, refused connections
    /// and server errors are retried, refusals (403, 404) are not.
    pub max_retries: usize,
    /// No retry starts later than this after the first try (default 30 s).
    pub retry_timeout: Duration,
    /// Values longer than this are uploaded in parts of this size, a few at a time (default 8
    /// MiB; at least 5 MiB, S3's minimum).
    pub part_size: usize,
}

impl S3Config {
    /// A configuration for `bucket` on AWS in `us-east-1`, with no credentials yet and the
    /// default timeouts.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            endpoint: None,
            region: "us-east-1".to_owned(),
            bucket: bucket.into(),
            prefix: String::new(),
            allow_http: false,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            part_size: 8 * 1024 * 1024,
        }
    }

    /// Sets the endpoint (see [`S3Config::endpoint`](S3Config#structfield.endpoint)).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the key prefix inside the bucket.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Allows (or not) a plain `http://` endpoint.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Sets the credentials.
    pub fn credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the credentials from a file only its owner can read (see
    /// [`S3Credentials::from_file`]).
    pub fn credentials_file(self, path: impl AsRef<Path>) -> Result<Self, S3ConfigError> {
        Ok(self.credentials(S3Credentials::from_file(path)?))
    }

    /// Sets the connect and request timeouts.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// Sets how many times, and for how long, failed requests are retried.
    pub fn retries(mut self, max_retries: usize, retry_timeout: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_timeout = retry_timeout;
        self
    }

    /// Sets the part size of multipart uploads.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// A configuration from environment variables:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `COSMIC_S3_BUCKET` | the bucket (required) |
    /// | `COSMIC_S3_ENDPOINT` | the service's URL (default: AWS) |
    /// | `COSMIC_S3_REGION` | the region (default `us-east-1`) |
    /// | `COSMIC_S3_PREFIX` | the key prefix inside the bucket (default none) |
    /// | `COSMIC_S3_ALLOW_HTTP` | `1` or `true` to allow a non-loopback `http://` endpoint |
    /// | `COSMIC_S3_CREDENTIALS_FILE` | a credentials file (see [`S3Credentials::from_file`]) |
    /// | `COSMIC_S3_ACCESS_KEY_ID`, `COSMIC_S3_SECRET_ACCESS_KEY` | the access key |
    /// | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | the access key, if none of the above |
    ///
    /// An `http://` endpoint on a loopback address (`127.0.0.1`, `[::1]`, `localhost`) is
    /// allowed without `COSMIC_S3_ALLOW_HTTP`.
    pub fn from_env() -> Result<S3Config, S3ConfigError> {
        S3Config::from_vars(|name| std::env::var_os(name))
    }

    /// [`S3Config::from_env`] with variables looked up by `lookup`.
    fn from_vars(lookup: impl Fn(&str) -> Option<OsString>) -> Result<S3Config, S3ConfigError> {
        let var = |name: &'static str| -> Result<Option<Zeroizing<String>>, S3ConfigError> {
            match lookup(name) {
                None => Ok(None),
                Some(value) => match value.into_string() {
                    Ok(text) if text.is_empty() => Ok(None),
                    Ok(text) => Ok(Some(Zeroizing::new(text))),
                    Err(_) => Err(S3ConfigError::EnvNotUnicode { var: name }),
                },
            }
        };
        let bucket = var("COSMIC_S3_BUCKET")?.ok_or(S3ConfigError::EnvMissing {
            var: "COSMIC_S3_BUCKET",
        })?;
        let mut config = S3Config::new(bucket.as_str());
        if let Some(endpoint) = var("COSMIC_S3_ENDPOINT")? {
            config.allow_http = is_loopback_http(&endpoint);
            config.endpoint = Some(endpoint.to_string());
        }
        if let Some(region) = var("COSMIC_S3_REGION")? {
            config.region = region.to_string();
        }
        if let Some(prefix) = var("COSMIC_S3_PREFIX")? {
            config.prefix = prefix.to_string();
        }
        if let Some(allow) = var("COSMIC_S3_ALLOW_HTTP")? {
            config.allow_http |= match allow.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(S3ConfigError::EnvInvalid {
                        var: "COSMIC_S3_ALLOW_HTTP",
                        expected: "`1`, `true`, `0` or `false`",
                    })
                }
            };
        }
        let pair =
            |id_var: &'static str, secret_var: &'static str| match (var(id_var)?, var(secret_var)?)
            {
                (Some(id), Some(secret)) => Ok(Some(S3Credentials {
                    access_key_id: id.to_string(),
                    secret_access_key: secret,
                })),
                (None, None) => Ok(None),
                (Some(_), None) => Err(S3ConfigError::EnvMissing { var: secret_var }),
                (None, Some(_)) => Err(S3ConfigError::EnvMissing { var: id_var }),
            };
        config.credentials = if let Some(path) = lookup("COSMIC_S3_CREDENTIALS_FILE") {
            Some(S3Credentials::from_file(PathBuf::from(path))?)
        } else if let Some(credentials) =
            pair("COSMIC_S3_ACCESS_KEY_ID", "COSMIC_S3_SECRET_ACCESS_KEY")?
        {
            Some(credentials)
        } else if let Some(credentials) = pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")? {
            Some(credentials)
        } else {
            return Err(S3ConfigError::NoCredentials);
        };
        Ok(config)
    }

    /// Where the store is, for messages: `bucket `b` at <endpoint>`.
    fn location(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("bucket `{}` at {endpoint}", self.bucket),
            None => format!("bucket `{}` on AWS ({})", self.bucket, self.region),
        }
    }
}

/// Whether `endpoint` is plain HTTP to this machine.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why an [`S3Config`] could not be made, or an [`S3Store`] not opened on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3ConfigError {
    /// A required environment variable is not set (or is empty).
    #[error("environment variable `{var}` is not set")]
    EnvMissing {
        /// The variable.
        var: &'static str,
    },
    /// An environment variable is not valid Unicode.
    #[error("environment variable `{var}` is not valid Unicode")]
    EnvNotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// An environment variable has a value it cannot have.
    #[error("environment variable `{var}` must be {expected}")]
    EnvInvalid {
        /// The variable.
        var: &'static str,
        /// What it may be.
        expected: &'static str,
    },
    /// No access key was given.
    #[error(
        "no S3 credentials: set COSMIC_S3_ACCESS_KEY_ID and COSMIC_S3_SECRET_ACCESS_KEY (or \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or COSMIC_S3_CREDENTIALS_FILE to a file \
         only its owner can read"
    )]
    NoCredentials,
    /// The credentials file could not be read.
    #[error("cannot read the S3 credentials file {}", path.display())]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file may be read or written by other users.
    #[error(
        "the S3 credentials file {} has mode {mode:o}: other users may read or change it; \
         make it readable by its owner only (chmod 600)",
        path.display()
    )]
    SharedCredentialsFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The credentials file is not in the expected form (the message never quotes it).
    #[error("the S3 credentials file {} is malformed{}: {reason}", path.display(),
        if *line == 0 { String::new() } else { format!(" at line {line}") })]
    BadCredentialsFile {
        /// The file.
        path: PathBuf,
        /// The line (1-based; 0 for the file as a whole).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A setting that cannot be used.
    #[error("invalid S3 {setting} `{value}`: {reason}")]
    Invalid {
        /// Which setting: "endpoint", "bucket", "prefix", "region", "part size".
        setting: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A plain-HTTP endpoint that is not on this machine, without `allow_http`.
    #[error(
        "the S3 endpoint {endpoint} is plain HTTP, which would send checkpoint images \
         unencrypted: use https://, or allow it explicitly (S3Config::allow_http, \
         COSMIC_S3_ALLOW_HTTP=1)"
    )]
    PlainHttp {
        /// The endpoint.
        endpoint: String,
    },
    /// The S3 client refused the configuration.
    #[error("cannot configure the S3 client for {location}")]
    Client {
        /// Where.
        location: String,
        /// The client's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// A [`CheckpointStore`] in a bucket of an S3-compatible object store (AWS S3, MinIO, Ceph,
/// Garage, s3s-fs...), one object per key.
///
/// A put is one `PutObject` (atomic: readers see the old value or the new one), or above
/// [`S3Config::part_size`] a multipart upload completed at once and aborted if any part fails,
/// so that no partial object is left behind. A put returns once the service has acknowledged
/// the object, which is what durability means here. Missing keys read as `None`, deleting one
/// is not an error, and `list` pages through the whole listing.
///
/// # `PutMode::Create` is not a fence
///
/// [`PutMode::Create`] checks that the key is absent, then puts: two writers racing on one key
/// can both succeed, the last one's value staying. It does not rely on S3's conditional
/// writes (`If-None-Match: *`) because S3-compatible services do not all honour them: against
/// s3s-fs, 32 concurrent conditional creates of one key had several winners. So an `S3Store`
/// keeps the write-once records of a single runtime as well as the other stores, but it must
/// not be what decides between two hosts: a cluster on object storage writes its checkpoints
/// to immutable keys that are never reused, and a coordinator decides which one is current.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use cosmic_runtime::checkpoint::{S3Config, S3Store};
///
/// // COSMIC_S3_ENDPOINT, COSMIC_S3_BUCKET, COSMIC_S3_ACCESS_KEY_ID, ... (see `from_env`)
/// let store = S3Store::new(S3Config::from_env()?)?;
/// let runtime = cosmic_runtime::runtime::Runtime::builder()
///     .host("alpha")
///     .store(store)
///     .build()
///     .await?;
/// # drop(runtime);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<AmazonS3>,
    /// `prefix/`, or empty.
    base: Arc<str>,
    location: Arc<str>,
    part_size: usize,
}

impl S3Store {
    /// A store on the bucket `config` names. This checks the configuration but does not
    /// contact the service: a wrong endpoint, bucket or key shows at the first operation, as a
    /// [`StoreError::Remote`] saying which.
    pub fn new(config: S3Config) -> Result<S3Store, S3ConfigError> {
        let invalid = |setting, value: &str, reason| S3ConfigError::Invalid {
            setting,
            value: value.to_owned(),
            reason,
        };
        validate_bucket(&config.bucket)
            .map_err(|reason| invalid("bucket", &config.bucket, reason))?;
        if config.region.is_empty()
            || !config
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "region",
                &config.region,
                "regions are ASCII letters, digits and `-`",
            ));
        }
        if !config.prefix.is_empty() {
            validate_key(&config.prefix).map_err(|error| match error {
                StoreError::InvalidKey { reason, .. } => invalid("prefix", &config.prefix, reason),
                _ => invalid("prefix", &config.prefix, "not a valid key"),
            })?;
        }
        if config.part_size < MIN_PART_SIZE {
            return Err(invalid(
                "part size",
                &config.part_size.to_string(),
                "parts are at least 5 MiB (5242880 bytes)",
            ));
        }
        let credentials = config
            .credentials
            .as_ref()
            .ok_or(S3ConfigError::NoCredentials)?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key.as_str())
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(config.connect_timeout)
                    .with_timeout(config.request_timeout),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: config.max_retries,
                retry_timeout: config.retry_timeout,
            });
        if let Some(endpoint) = &config.endpoint {
            let scheme_ok = endpoint.starts_with("https://") || endpoint.starts_with("http://");
            let host = endpoint.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.starts_with('/') {
                return Err(invalid(
                    "endpoint",
                    endpoint,
                    "expected a URL such as https://s3.example.net or http://127.0.0.1:9000",
                ));
            }
            if endpoint.starts_with("http://") {
                if !config.allow_http && !is_loopback_http(endpoint) {
                    return Err(S3ConfigError::PlainHttp {
                        endpoint: endpoint.clone(),
                    });
                }
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let location = config.location();
        let inner = builder.build().map_err(|source| S3ConfigError::Client {
            location: location.clone(),
            source: Box::new(source),
        })?;
        let base = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix)
        };
        Ok(S3Store {
            inner: Arc::new(inner),
            base: base.into(),
            location: location.into(),
            part_size: config.part_size,
        })
    }

    /// The object path of a valid key.
    fn path_of(&self, key: &str) -> Result<ObjectPath, StoreError> {
        validate_key(key)?;
        ObjectPath::parse(format!("{}{key}", self.base)).map_err(|_| StoreError::InvalidKey {
            key: key.to_owned(),
            reason: "not a valid object path",
        })
    }

    fn remote(&self, operation: &'static str, key: &str, error: object_store::Error) -> StoreError {
        StoreError::Remote {
            operation,
            key: key.to_owned(),
            location: self.location.to_string(),
            problem: classify(&error),
            source: Box::new(error),
        }
    }

    /// A not-found answer is "no such key", unless it was "no such bucket".
    fn not_found(
        &self,
        operation: &'static str,
        key: &str,
        error: object_store::Error,
    ) -> Result<(), StoreError> {
        if mentions_no_such_bucket(&error) {
            Err(self.remote(operation, key, error))
        } else {
            Ok(())
        }
    }

    async fn put_in_parts(
        &self,
        key: &str,
        path: &ObjectPath,
        value: Bytes,
    ) -> Result<(), StoreError> {
        let upload = self
            .inner
            .put_multipart(path)
            .await
            .map_err(|error| self.remote("start an upload of", key, error))?;
        let mut upload = AbortOnDrop(Some(upload));
        let result = match upload.0.as_mut() {
            Some(handle) => send_parts(handle.as_mut(), &value, self.part_size).await,
            None => unreachable!("the upload is there until finished"),
        };
        let mut handle = upload.0.take().expect("the upload is there until finished");
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                if let Err(abort) = handle.abort().await {
                    tracing::warn!(
                        key,
                        location = %self.location,
                        error = %abort,
                        "could not abort a failed multipart upload: its parts stay in the \
                         bucket until a lifecycle rule removes them"
                    );
                }
                Err(self.remote("write", key, error))
            }
        }
    }
}

/// Sends `value` in parts of `part_size` bytes, a few at a time, then completes the upload.
/// After a failure no part starts, and the parts in flight are let finish rather than
/// dropped, so that the caller's abort comes after them: a part the service finished writing
/// after the abort would stay in the bucket.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    value: &Bytes,
    part_size: usize,
) -> object_store::Result<()> {
    let mut starts = (0..value.len()).step_by(part_size);
    let mut running = FuturesUnordered::new();
    let mut failure = None;
    loop {
        while failure.is_none() && running.len() < PARTS_IN_FLIGHT {
            let Some(start) = starts.next() else { break };
            let end = value.len().min(start + part_size);
            running.push(upload.put_part(PutPayload::from_bytes(value.slice(start..end))));
        }
        match running.next().await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                failure.get_or_insert(error);
            }
            None => break,
        }
    }
    match failure {
        Some(error) => Err(error),
        None => upload.complete().await.map(drop),
    }
}

/// Aborts a multipart upload whose put was dropped before it finished (its caller gave up),
/// so that its parts do not stay in the bucket.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its configuration holds the credentials.
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("prefix", &self.base.trim_end_matches('/'))
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CheckpointStore for S3Store {
    async fn put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        if mode == PutMode::Create {
            // Best effort, not a fence: see the type's docs.
            match self.inner.head(&path).await {
                Ok(_) => {
                    return Err(StoreError::AlreadyExists {
                        key: key.to_owned(),
                    })
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.remote("check for", key, error)),
            }
        }
        if value.len() > self.part_size {
            return self.put_in_parts(key, &path, value).await;
        }
        self.inner
            .put(&path, PutPayload::from_bytes(value))
            .await
            .map(drop)
            .map_err(|error| self.remote("write", key, error))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(key)?;
        let found = match self.inner.get(&path).await {
            Ok(found) => found,
            Err(error @ object_store::Error::NotFound { .. }) => {
                return self.not_found("read", key, error).map(|()| None)
            }
            Err(error) => return Err(self.remote("read", key, error)),
        };
        found
            .bytes()
            .await
            .map(Some)
            .map_err(|error| self.remote("read", key, error))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // List only below the folder the prefix names (its whole segments), then keep the keys
        // that start with the whole prefix, as `FileStore` does.
        let folder = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        if !folder.is_empty() {
            validate_key(folder)?;
        }
        let below = format!("{}{folder}", self.base);
        let below = below.trim_end_matches('/');
        let below = if below.is_empty() {
            None
        } else {
            Some(
                ObjectPath::parse(below).map_err(|_| StoreError::InvalidKey {
                    key: prefix.to_owned(),
                    reason: "not a valid object path",
                })?,
            )
        };
        let mut listing = self.inner.list(below.as_ref());
        let mut keys = Vec::new();
        loop {
            let meta = match listing.try_next().await {
                Ok(Some(meta)) => meta,
                Ok(None) => break,
                Err(error) => return Err(self.remote("list", prefix, error)),
            };
            let Some(key) = meta.location.as_ref().strip_prefix(&*self.base) else {
                continue;
            };
            // Objects other tools put in the bucket under names that are not store keys are
            // not the store's: they could not be read through it either.
            if key.starts_with(prefix) && validate_key(key).is_ok() {
                keys.push(key.to_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(error @ object_store::Error::NotFound { .. }) => {
                self.not_found("delete", key, error)
            }
            Err(error) => Err(self.remote("delete", key, error)),
        }
    }
}

/// S3's bucket naming rules, as far as they matter here.
fn validate_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("bucket names are 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("bucket names are lowercase ASCII letters, digits, `.` and `-`");
    }
    Ok(())
}

/// What went wrong, from an `object_store` error. `object_store` maps the status of some
/// answers to variants (403 on a get is `PermissionDenied`) but not of all (a refused list is
/// `Generic`), so the error's messages are read too: the status line and S3's error code.
fn classify(error: &object_store::Error) -> RemoteProblem {
    if matches!(
        error,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) {
        return RemoteProblem::Denied;
    }
    let mut text = String::new();
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            match http.kind() {
                HttpErrorKind::Connect => return RemoteProblem::Unreachable,
                HttpErrorKind::Timeout => return RemoteProblem::TimedOut,
                _ => {}
            }
        }
        text.push_str(&current.to_string());
        text.push('\n');
        cause = current.source();
    }
    const DENIED_CODES: &[&str] = &[
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NotSignedUp",
        "ExpiredToken",
        "InvalidToken",
    ];
    if text.contains("<Code>NoSuchBucket</Code>") {
        return RemoteProblem::NoSuchBucket;
    }
    if DENIED_CODES
        .iter()
        .any(|code| text.contains(&format!("<Code>{code}</Code>")))
    {
        return RemoteProblem::Denied;
    }
    match status_in(&text) {
        Some(401 | 403) => RemoteProblem::Denied,
        Some(500..=599) => RemoteProblem::ServerError,
        _ => RemoteProblem::Other,
    }
}

/// The HTTP status `object_store` reports in its messages ("status code: 403 Forbidden").
fn status_in(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

fn mentions_no_such_bucket(error: &object_store::Error) -> bool {
    classify(error) == RemoteProblem::NoSuchBucket
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn config_from_env_reads_every_variable() {
        let config = S3Config::from_vars(vars(&[
            ("COSMIC_S3_BUCKET", "checkpoints"),
            ("COSMIC_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("COSMIC_S3_REGION", "eu-west-3"),
            ("COSMIC_S3_PREFIX", "cluster/a"),
            ("COSMIC_S3_ACCESS_KEY_ID", "id"),
            ("COSMIC_S3_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_ACCESS_KEY_ID", "other"),
            ("AWS_SECRET_ACCESS_KEY", "other-secret"),
        ]))
        .unwrap();
        assert_eq!(config.bucket, "checkpoints");
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.region, "eu-west-3");
        assert_eq!(config.prefix, "cluster/a");
        assert!(config.allow_http, "loopback http is allowed");
        let credentials = config.credentials.as_ref().unwrap();
        assert_eq!(credentials.access_key_id(), "id");
        assert_eq!(credentials.secret_access_key.as_str(), "very-secret");
        // Neither the config's Debug nor the store's shows the secret.
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        let store = S3Store::new(config).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(
            shown.contains("bucket `checkpoints` at http://127.0.0.1:9000"),
            "{shown}"
        );
    }

    #[test]
    fn config_from_env_falls_back_to_aws_variables() {
        let config = S3Config::from_vars(vars(&[
            ("COSMIC_S3_BUCKET", "b-1"),
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ]))
        .unwrap();
        assert_eq!(config.credentials.unwrap().access_key_id(), "aws-id");
        assert_eq!(config.endpoint, None);
        assert_eq!(config.region, "us-east-1");
        assert!(!config.allow_http);
    }

    #[test]
    fn config_from_env_names_what_is_missing() {
        let error = S3Config::from_vars(vars(&[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable `COSMIC_S3_BUCKET` is not set"
        );
        let error = S3Config::from_vars(vars(&[("COSMIC_S3_BUCKET", "bbb")])).unwrap_err();
        assert!(matches!(error, S3ConfigError::NoCredentials), "{error}");
        let error = S3Config::from_vars(vars(&[
            ("COSMIC_S3_BUCKET", "bbb"),
            ("COSMIC_S3_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                error,
                S3ConfigError::EnvMissing {
                    var: "COSMIC_S3_SECRET_ACCESS_KEY"
                }
            ),
            "{error}"
        );
        let error = S3Config::from_vars(vars(&[
            ("COSMIC_S3_BUCKET", "bbb"),
            ("COSMIC_S3_ALLOW_HTTP", "yes"),
        ]))
        .unwrap_err();
        assert!(matches!(error, S3ConfigError::EnvInvalid { .. }), "{error}");
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let credentials = S3Credentials::new("id", "secret");
        let open = |config: S3Config| S3Store::new(config.credentials(credentials.clone()));
        for (config, setting) in [
            (S3Config::new("B"), "bucket"),
            (S3Config::new("ab"), "bucket"),
            (S3Config::new("bucket").prefix("a//b"), "prefix"),
            (S3Config::new("bucket").prefix("../up"), "prefix"),
            (S3Config::new("bucket").region("eu west"), "region"),
            (
                S3Config::new("bucket").endpoint("s3.example.net"),
                "endpoint",
            ),
            (S3Config::new("bucket").endpoint("https://"), "endpoint"),
            (S3Config::new("bucket").part_size(1024), "part size"),
        ] {
            match open(config) {
                Err(S3ConfigError::Invalid { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
        let error = open(S3Config::new("bucket").endpoint("http://s3.example.net")).unwrap_err();
        assert!(matches!(error, S3ConfigError::PlainHttp { .. }), "{error}");
        assert!(open(
            S3Config::new("bucket")
                .endpoint("http://s3.example.net")
                .allow_http(true)
        )
        .is_ok());
        for loopback in [
            "http://127.0.0.1:1",
            "http://[::1]:9000/",
            "http://localhost",
        ] {
            assert!(
                open(S3Config::new("bucket").endpoint(loopback)).is_ok(),
                "{loopback}"
            );
        }
        let error = S3Store::new(S3Config::new("bucket")).unwrap_err();
        assert!(matches!(error, S3ConfigError::NoCredentials), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn credentials_file_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("cosmic-s3-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "# test\n[default]\naws_access_key_id = id\naws_secret_access_key=s3cr3t-value\n",
            0o600,
        );
        let credentials = S3Credentials::from_file(&path).unwrap();
        assert_eq!(credentials.access_key_id(), "id");
        assert_eq!(credentials.secret_access_key.as_str(), "s3cr3t-value");
        assert!(!format!("{credentials:?}").contains("s3cr3t"));

        write(
            "aws_access_key_id = id\naws_secret_access_key = s3cr3t-value\n",
            0o640,
        );
        let error = S3Credentials::from_file(&path).unwrap_err();
        assert!(
            matches!(
                error,
                S3ConfigError::SharedCredentialsFile { mode: 0o640, .. }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");

        for (text, line) in [
            ("aws_access_key_id = id\n", 0),
            ("aws_secret_access_key = s3cr3t-value\n", 0),
            (
                "aws_access_key_id id\naws_secret_access_key = s3cr3t-value\n",
                1,
            ),
            ("aws_access_key_id = id\ns3cr3t-value\n", 2),
            ("[prod]\naws_access_key_id = id\n", 1),
            ("aws_access_key_id = id\nsecret = s3cr3t-value\n", 2),
        ] {
            write(text, 0o600);
            let error = S3Credentials::from_file(&path).unwrap_err();
            match &error {
                S3ConfigError::BadCredentialsFile { line: l, .. } => assert_eq!(*l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
        let missing = S3Credentials::from_file(dir.join("absent")).unwrap_err();
        assert!(
            matches!(missing, S3ConfigError::CredentialsFile { .. }),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_are_classified_from_the_error_and_its_messages() {
        let boxed = |text: &str| -> Box<dyn StdError + Send + Sync> { text.to_owned().into() };
        let not_found = |body: &str| object_store::Error::NotFound {
            path: "k".into(),
            source: boxed(body),
        };
        let generic = |body: &str| object_store::Error::Generic {
            store: "S3",
            source: boxed(body),
        };
        // S3 answers a get from a missing bucket with 404 NoSuchBucket: not a missing key.
        let bucket = not_found(
            "Server returned non-2xx status code: 404 Not Found: \
             <Error><Code>NoSuchBucket</Code></Error>",
        );
        assert!(mentions_no_such_bucket(&bucket));
        assert_eq!(classify(&bucket), RemoteProblem::NoSuchBucket);
        let key = not_found(
            "Server returned non-2xx status code: 404 Not Found: \
             <Error><Code>NoSuchKey</Code></Error>",
        );
        assert!(!mentions_no_such_bucket(&key));
        for (body, problem) in [
            (
                "Server returned non-2xx status code: 403 Forbidden: ",
                RemoteProblem::Denied,
            ),
            (
                "<Error><Code>SignatureDoesNotMatch</Code></Error>",
                RemoteProblem::Denied,
            ),
            (
                "Server returned non-2xx status code: 503 Slow Down",
                RemoteProblem::ServerError,
            ),
            (
                "Server returned non-2xx status code: 400 Bad Request",
                RemoteProblem::Other,
            ),
            ("something else", RemoteProblem::Other),
        ] {
            assert_eq!(classify(&generic(body)), problem, "{body}");
        }
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: boxed(""),
        };
        assert_eq!(classify(&denied), RemoteProblem::Denied);
    }

    #[test]
    fn loopback_detection() {
        for yes in [
            "http://127.0.0.1:9000",
            "http://localhost:1/x",
            "http://[::1]",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "https://127.0.0.1",
            "http://10.0.0.1",
            "http://localhost.example.net",
            "http://[::2]",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }
}
