//! Host identity over real TCP on 127.0.0.1: names are proven by each host's own key pair, not
//! claimed. An honest pair connects and each side learns the other's proven name and key; a
//! holder of the cluster key posing as another host with its own key pair is refused, and so is
//! a host nobody trusted, on both sides of the handshake, with errors that name the host, the
//! keys and what to do; a host with an address but no trusted key cannot be reached; a host key
//! file others can read is refused. (Replaying a signature on another channel, and reflecting
//! it, are refused in the unit tests of `transport/handshake.rs`.)

use std::time::Duration;

use cosmic::runtime::MigrateError;
use cosmic::{MemoryStore, Policy, Runtime};
use cosmic_runtime::transport::{
    AcceptError, ChannelConfig, ChannelError, ClusterKey, Credentials, HandshakeError, HostKey,
    HostKeyError, NodeName, PeerInfo, SecureChannel, TrustedPeers,
};
use cosmic_tests::counter::{Counter, TempDir};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const KEY: &[u8] = b"the cluster key of the host identity tests";

fn cluster_key() -> ClusterKey {
    ClusterKey::from_bytes(KEY).unwrap()
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

/// Bounds every wait, so that a broken test fails instead of hanging.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the test took too long")
}

/// Alpha and beta, each with its own key pair, each trusting the other.
struct Pair {
    alpha: HostKey,
    beta: HostKey,
    trusted: TrustedPeers,
}

impl Pair {
    fn new() -> Pair {
        let (alpha, beta) = (HostKey::generate().unwrap(), HostKey::generate().unwrap());
        let trusted = TrustedPeers::new();
        trusted.trust(node("alpha"), alpha.public_key());
        trusted.trust(node("beta"), beta.public_key());
        Pair {
            alpha,
            beta,
            trusted,
        }
    }

    fn credentials(&self, key: &HostKey) -> Credentials {
        Credentials::new(cluster_key(), key.clone(), self.trusted.clone())
    }
}

/// Accepts one connection as `name` and runs the responder's handshake on it.
async fn accept_one(
    credentials: Credentials,
    name: &str,
) -> (
    std::net::SocketAddr,
    JoinHandle<Result<(SecureChannel, PeerInfo), AcceptError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = node(name);
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        SecureChannel::accept(stream, &credentials, &name, &ChannelConfig::default()).await
    });
    (addr, server)
}

#[tokio::test]
async fn an_honest_pair_connects_and_each_side_learns_the_proven_name_and_key() {
    let pair = Pair::new();
    let (addr, server) = accept_one(pair.credentials(&pair.beta), "beta").await;
    let (mut client, beta_seen) = within(SecureChannel::connect(
        addr,
        &pair.credentials(&pair.alpha),
        &node("alpha"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap();
    let (mut server, alpha_seen) = within(server).await.unwrap().unwrap();
    assert_eq!(beta_seen.node.as_str(), "beta");
    assert_eq!(beta_seen.public_key, pair.beta.public_key());
    assert_eq!(alpha_seen.node.as_str(), "alpha");
    assert_eq!(alpha_seen.public_key, pair.alpha.public_key());
    assert_eq!(client.peer(), &beta_seen);
    assert_eq!(server.peer(), &alpha_seen);
    client.send("hello").await.unwrap();
    let hello: String = server.recv().await.unwrap();
    assert_eq!(hello, "hello");
    println!(
        "checked: alpha sees beta as {} with key {}; beta sees alpha as {} with key {}",
        beta_seen.node, beta_seen.public_key, alpha_seen.node, alpha_seen.public_key
    );
}

#[tokio::test]
async fn a_cluster_member_posing_as_another_host_is_refused_naming_the_host_and_both_keys() {
    let pair = Pair::new();
    let (addr, server) = accept_one(pair.credentials(&pair.beta), "beta").await;
    // Mallory holds the cluster key and a key pair of its own, and says it is alpha.
    let mallory = HostKey::generate().unwrap();
    let refused = within(SecureChannel::connect(
        addr,
        &pair.credentials(&mallory),
        &node("alpha"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap_err();
    let accept_error = within(server).await.unwrap().unwrap_err();

    // Beta's side: the typed error, naming alpha, the key presented and the key trusted.
    let beta_side = accept_error.handshake_error().unwrap();
    match beta_side {
        HandshakeError::WrongHostKey {
            node,
            presented,
            trusted,
        } => {
            assert_eq!(node.as_str(), "alpha");
            assert_eq!(*presented, mallory.public_key());
            assert_eq!(*trusted, pair.alpha.public_key());
        }
        other => panic!("beta refused for another reason: {other:?}"),
    }
    let message = beta_side.to_string();
    assert!(message.contains("host `alpha`"), "{message}");
    assert!(
        message.contains(&mallory.public_key().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&pair.alpha.public_key().to_string()),
        "{message}"
    );
    assert!(message.contains("trust"), "{message}");

    // Mallory's side: beta said why in its hello.
    let mallory_side = refused.handshake_error().unwrap();
    assert!(
        matches!(mallory_side, HandshakeError::RefusedByPeer { reason } if reason.contains("host `alpha`")),
        "{mallory_side:?}"
    );
    println!("checked: beta refused a forged alpha: {message}");
    println!("checked: the forger was told: {mallory_side}");
}

#[tokio::test]
async fn a_host_nobody_trusted_is_refused_with_what_to_do() {
    let pair = Pair::new();
    let (addr, server) = accept_one(pair.credentials(&pair.beta), "beta").await;
    let gamma = HostKey::generate().unwrap();
    // Gamma trusts beta, but beta has never been told about gamma.
    let refused = within(SecureChannel::connect(
        addr,
        &pair.credentials(&gamma),
        &node("gamma"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap_err();
    let accept_error = within(server).await.unwrap().unwrap_err();
    let beta_side = accept_error.handshake_error().unwrap();
    assert!(
        matches!(beta_side, HandshakeError::UntrustedHost { node, key } if node.as_str() == "gamma" && *key == gamma.public_key()),
        "{beta_side:?}"
    );
    let message = beta_side.to_string();
    assert!(message.contains("host `gamma`"), "{message}");
    assert!(
        message.contains(&gamma.public_key().to_string()),
        "{message}"
    );
    assert!(message.contains("trust_peer"), "{message}");
    assert!(
        matches!(
            refused.handshake_error(),
            Some(HandshakeError::RefusedByPeer { .. })
        ),
        "{refused:?}"
    );
    println!("checked: beta refused an unknown host: {message}");
}

#[tokio::test]
async fn the_initiator_refuses_a_responder_posing_as_the_host_it_trusts() {
    let pair = Pair::new();
    // Mallory listens as beta, with its own key pair, and trusts alpha.
    let mallory = HostKey::generate().unwrap();
    let (addr, server) = accept_one(pair.credentials(&mallory), "beta").await;
    let refused = within(SecureChannel::connect(
        addr,
        &pair.credentials(&pair.alpha),
        &node("alpha"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap_err();
    let alpha_side = refused.handshake_error().unwrap();
    assert!(
        matches!(alpha_side, HandshakeError::WrongHostKey { node, presented, trusted }
            if node.as_str() == "beta" && *presented == mallory.public_key() && *trusted == pair.beta.public_key()),
        "{alpha_side:?}"
    );
    // The responder finished its side (it speaks last), then learns from alpha why it left.
    let (mut fake, _) = within(server).await.unwrap().unwrap();
    let closed = fake.recv::<String>().await.unwrap_err();
    assert!(
        matches!(&closed, ChannelError::Closed { reason: Some(reason) } if reason.contains("host `beta`")),
        "{closed:?}"
    );
    println!("checked: alpha refused a forged beta: {alpha_side}");
    println!("checked: the forger was told: {closed}");
}

#[cfg(unix)]
#[test]
fn a_host_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "host-key-mode");
    let path = dir.path().join("alpha.key");
    let key = HostKey::load_or_create(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = HostKey::from_file(&path).unwrap_err();
    assert!(
        matches!(error, HostKeyError::SharedFile { mode: 0o644, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("chmod 600 {}", path.display())),
        "{message}"
    );
    // load_or_create does not overwrite a key it cannot use.
    assert!(HostKey::load_or_create(&path).is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        HostKey::from_file(&path).unwrap().public_key(),
        key.public_key()
    );
    println!("checked: a host key file of mode 644 is refused: {message}");
}

async fn host(
    name: &str,
    key: &HostKey,
    configure: impl FnOnce(cosmic::Builder) -> cosmic::Builder,
) -> Runtime {
    let builder = Runtime::builder()
        .host(name)
        .store(MemoryStore::new())
        .checkpoint(Policy::every_steps(10))
        .listen("127.0.0.1:0")
        .cluster_key(cluster_key())
        .host_key(key.clone())
        .migration_timeout(Duration::from_secs(5))
        .register::<Counter>();
    configure(builder).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_an_address_but_no_trusted_key_cannot_be_reached_until_trusted() {
    let (alpha_key, beta_key) = (HostKey::generate().unwrap(), HostKey::generate().unwrap());
    let beta = host("beta", &beta_key, |b| {
        b.trust_peer("alpha", alpha_key.public_key())
    })
    .await;
    // Alpha knows where beta is, but nobody told it beta's key.
    let alpha = host("alpha", &alpha_key, |b| {
        b.peer("beta", beta.local_addr().unwrap().to_string())
    })
    .await;
    assert_eq!(alpha.public_key(), Some(alpha_key.public_key()));
    let handle = alpha.spawn(Counter::new(1_000_000, "", 1)).await.unwrap();
    let error = handle.migrate_to("beta").await.unwrap_err();
    let MigrateError::Connect { source, .. } = &error else {
        panic!("not a connect error: {error:?}");
    };
    assert!(
        matches!(source.handshake_error(), Some(HandshakeError::UntrustedHost { node, key }) if node.as_str() == "beta" && *key == beta_key.public_key()),
        "{source:?}"
    );
    let message = source.handshake_error().unwrap().to_string();
    assert!(message.contains("is not trusted here"), "{message}");
    assert!(beta.tasks().is_empty());
    println!("checked: alpha refused to move a task to an untrusted beta: {message}");

    // The operator trusts beta's key: the same move goes through.
    alpha
        .trust_peer(node("beta"), beta.public_key().unwrap())
        .unwrap();
    handle.migrate_to("beta").await.unwrap();
    assert_eq!(beta.tasks().len(), 1);
    println!("checked: once trusted, the task moved to beta");
}
