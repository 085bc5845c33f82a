//! A real etcd server for the coordinator tests, and a TCP proxy to cut a host off from it.
//!
//! [`Etcd::start`] runs the `etcd` binary (`$COSMIC_ETCD_BIN`, else `etcd` on the `PATH`, else
//! `/usr/bin/etcd`) on free loopback ports with a fresh data directory, waits until it answers
//! its health check, and kills it and removes the directory when dropped. It keeps etcd's
//! fsync: the failover tests count on a lease's time to live as a real server keeps it.
//!
//! Without the binary, a test calls [`Etcd::start`], gets `None` and returns after printing
//! `SKIPPED: etcd not installed (apt-get install etcd-server)`; with `COSMIC_REQUIRE_ETCD=1`
//! (CI) a missing binary fails the test instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The line a test prints when it cannot run.
pub const SKIPPED: &str = "SKIPPED: etcd not installed (apt-get install etcd-server)";

/// How long etcd may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary to run, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("COSMIC_ETCD_BIN") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let fallback = Path::new("/usr/bin/etcd");
        fallback.is_file().then(|| fallback.to_owned())
    })
}

/// Whether a missing etcd fails the test (`COSMIC_REQUIRE_ETCD=1`) rather than skips it.
pub fn required() -> bool {
    std::env::var("COSMIC_REQUIRE_ETCD").is_ok_and(|value| value == "1")
}

/// A free loopback port (free when asked; etcd binds it right after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// A running etcd server; killed, and its data removed, on drop.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
}

impl Etcd {
    /// Starts etcd, or returns None (having printed [`SKIPPED`]) if it is not installed.
    /// Panics if it is required and missing, or if it does not come up.
    pub fn start() -> Option<Etcd> {
        let Some(binary) = binary() else {
            assert!(
                !required(),
                "COSMIC_REQUIRE_ETCD=1 but no etcd binary: set COSMIC_ETCD_BIN or \
                 apt-get install etcd-server"
            );
            println!("{SKIPPED}");
            return None;
        };
        // Ports taken between the probe and etcd's bind make it exit: try a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Etcd::try_start(&binary) {
                Ok(etcd) => return Some(etcd),
                Err(error) => last_error = error,
            }
        }
        panic!("etcd ({}) did not start: {last_error}", binary.display());
    }

    fn try_start(binary: &Path) -> Result<Etcd, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cosmic-etcd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join("etcd.log"))
            .map_err(|e| format!("create the log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("--name")
            .arg("cosmic-test")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("cosmic-test={peer}")])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut etcd = Etcd {
            child: Some(child),
            dir,
            client_port,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = etcd.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log =
                        std::fs::read_to_string(etcd.dir.join("etcd.log")).unwrap_or_default();
                    return Err(format!("exited with {status}: {log}"));
                }
            }
            if healthy(client_port) {
                return Ok(etcd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no healthy answer within {START_TIMEOUT:?}"))
    }

    /// Its client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Its client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// Kills the server now (the data stays until drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether etcd on `port` answers `/health` with healthy.
fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// A TCP proxy from a loopback port to another: a host connects through it, and a test cuts
/// the link ([`Proxy::cut`]: every connection closed, new ones closed at once) and restores
/// it. Needs a tokio runtime; stops when dropped.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a new loopback port to `target_port` on loopback.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy's port");
        let port = listener.local_addr().expect("its address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (Arc::clone(&cut), Arc::clone(&links));
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                    let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
                    links.retain(|link| !link.is_finished());
                    links.push(link.abort_handle());
                }
            }
        });
        Proxy {
            port,
            cut,
            links,
            accept,
        }
    }

    /// The URL to reach the target through the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts the link: every connection through the proxy is closed, and new ones are closed
    /// as soon as they are accepted.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let links = std::mem::take(&mut *self.links.lock().unwrap_or_else(|p| p.into_inner()));
        for link in links {
            link.abort();
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
