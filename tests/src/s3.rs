//! A real S3 server for the tests: `s3s-fs` (crates.io, 0.14.x), an S3 service on a folder,
//! started on a free loopback port with a fresh folder and access key, killed on drop.
//!
//! The binary is `$COSMIC_S3S_FS` or `s3s-fs` on the `PATH`. Without it, [`S3Server::start`]
//! prints `SKIPPED: ...` and returns `None` (the test then returns), unless
//! `COSMIC_REQUIRE_S3=1`, when it panics: CI sets it so that a missing server fails the run
//! instead of passing it silently.
//!
//! s3s-fs keeps bucket `b` in the folder `<root>/b`, so making the folder makes the bucket
//! (the `object_store` client has no call that creates one). It keeps multipart uploads in
//! progress as `<root>/.upload_id-*` files, which [`S3Server::upload_leftovers`] counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cosmic::checkpoint::{S3Config, S3Credentials, S3Store};

/// How to install the server, for the skip message.
pub const INSTALL: &str = "cargo install s3s-fs --version '~0.14' --locked --features binary";

/// The bucket every server starts with.
pub const BUCKET: &str = "cosmic-test";

/// A running s3s-fs, killed (and its folder removed) on drop.
pub struct S3Server {
    child: Child,
    root: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The access key id it accepts.
    pub access_key_id: String,
    /// The secret it accepts.
    pub secret_access_key: String,
}

/// The s3s-fs binary: `$COSMIC_S3S_FS` (which must exist when set) or `s3s-fs` on the PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("COSMIC_S3S_FS") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "COSMIC_S3S_FS is {} which is not a file",
            path.display()
        );
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|folder| folder.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}

/// Says plainly on the terminal (not through the test harness's capture) that `test` was
/// skipped, or panics if `COSMIC_REQUIRE_S3=1`.
fn skip(test: &str) {
    if std::env::var_os("COSMIC_REQUIRE_S3").is_some_and(|v| v == "1") {
        panic!("{test}: s3s-fs not installed and COSMIC_REQUIRE_S3=1 ({INSTALL}, or set COSMIC_S3S_FS)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: s3s-fs not installed ({INSTALL}); {test} did not run"
    );
}

impl S3Server {
    /// Starts a server for `test` with an empty bucket [`BUCKET`], or says it is skipped and
    /// returns `None` (see the module docs).
    pub fn start(test: &str) -> Option<S3Server> {
        let Some(binary) = binary() else {
            skip(test);
            return None;
        };
        Some(S3Server::start_with(&binary))
    }

    fn start_with(binary: &Path) -> S3Server {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "cosmic-s3s-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let access_key_id = format!("cosmic-test-{}", std::process::id());
        // Test credentials for a throwaway server, so a command line is fine here.
        let secret_access_key = format!("secret-{:016x}", random());
        // Port 0: the server picks a free port and logs it, so no other process can take it
        // between our choosing it and the server binding it.
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", &access_key_id])
            .args(["--secret-key", &secret_access_key])
            .arg(&root)
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let (found, address) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        for output in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let found = found.clone();
            let log = Arc::clone(&log);
            // Read the output to its end, so that the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("server is running at http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = found.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    if log.len() < 200 {
                        log.push(line);
                    }
                }
            });
        }
        let addr = match address.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "s3s-fs did not say where it listens within 20 s ({status:?}); output: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("s3s-fs listens at {addr:?}, not an address: {e}"));
        // It logs once bound; check that it answers all the same.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("s3s-fs at {addr} does not answer: {e}"));
        S3Server {
            child,
            root,
            endpoint: format!("http://{addr}"),
            addr,
            access_key_id,
            secret_access_key,
        }
    }

    /// The server's folder (bucket `b` is `root/b`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The right credentials.
    pub fn credentials(&self) -> S3Credentials {
        S3Credentials::new(&self.access_key_id, &self.secret_access_key)
    }

    /// A configuration of the store on [`BUCKET`] with the right credentials, short timeouts
    /// and few retries (a failing test fails in seconds).
    pub fn config(&self) -> S3Config {
        S3Config::new(BUCKET)
            .endpoint(&self.endpoint)
            .credentials(self.credentials())
            .timeouts(Duration::from_secs(2), Duration::from_secs(30))
            .retries(2, Duration::from_secs(10))
    }

    /// A store on [`BUCKET`] under `prefix` (`""` for none).
    pub fn store(&self, prefix: &str) -> S3Store {
        S3Store::new(self.config().prefix(prefix)).unwrap()
    }

    /// What uploads left in the server's folder: multipart uploads neither completed nor
    /// aborted (their record and parts), and partial writes of requests cut short (s3s-fs
    /// removes those only when it starts).
    pub fn upload_leftovers(&self) -> usize {
        std::fs::read_dir(&self.root)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload_id-")
                    || name.contains(".upload-")
                    || name.starts_with(".tmp.")
            })
            .count()
    }

    /// Makes another bucket.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir(self.root.join(bucket)).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A loopback HTTP/1.1 proxy in front of a server that refuses, with `400 Bad Request`, every
/// request whose request line contains a given text (after reading it whole), and forwards the
/// others, one request per connection. For failures a real server would not produce on cue:
/// a part of a multipart upload refused.
pub struct RefusingProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    refused: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RefusingProxy {
    /// A proxy to `upstream` that refuses requests whose first line contains `refuse`.
    pub fn start(upstream: SocketAddr, refuse: &str) -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let refused = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (Arc::clone(&refused), Arc::clone(&requests));
        let refuse = refuse.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let refuse = refuse.clone();
                let (counter, seen) = (Arc::clone(&counter), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let _ = serve_one(client, upstream, &refuse, &counter, &seen);
                });
            }
        });
        RefusingProxy {
            endpoint,
            refused,
            requests,
        }
    }

    /// The request lines it has seen (`PUT /bucket/key?partNumber=1&uploadId=... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests it refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn serve_one(
    client: TcpStream,
    upstream: SocketAddr,
    refuse: &str,
    refused: &AtomicU64,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if first.is_empty() {
            first = line.clone();
            seen.lock().unwrap().push(line.trim_end().to_owned());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        // One request per connection: the proxy decides request by request.
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut client = client;
    if first.contains(refuse) {
        refused.fetch_add(1, Ordering::Relaxed);
        client.write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&head)?;
    server.write_all(&body)?;
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

/// A listener that accepts connections and never answers: a service that hangs.
pub struct SilentServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl SilentServer {
    /// Starts one.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        SilentServer { endpoint }
    }
}

/// An endpoint where nothing listens (a port bound, then released).
pub fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
