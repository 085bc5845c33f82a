//! The secure channel between hosts, over real TCP on 127.0.0.1: typed messages both ways, a
//! 64 MiB payload, refusal of peers without the key, of garbage, of another protocol version
//! and of oversized messages, and a man in the middle that flips, drops, replays, reorders or
//! cuts frames after the handshake.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cosmic_runtime::transport::{
    AcceptError, ChannelConfig, ChannelError, ClusterKey, ConnectError, Credentials,
    HandshakeError, HandshakeStep, NodeName, PeerInfo, SecureChannel, SecureListener, CHUNK_SIZE,
};
use cosmic_tests::identity;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const KEY: &[u8] = b"the cluster key of the transport integration tests";
const OTHER_KEY: &[u8] = b"another cluster key, of another cluster entirely";

/// A bound on every wait, so that a broken test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(600);

/// What test host `name` holds: the cluster key, its own key pair, and the trust of the
/// other test hosts.
fn key(name: &str) -> Credentials {
    identity::credentials(ClusterKey::from_bytes(KEY).unwrap(), name)
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("the test took too long")
}

async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection on `listener` and runs the responder's handshake on it.
fn accept_one(
    listener: TcpListener,
    key: Credentials,
    config: ChannelConfig,
) -> JoinHandle<Result<(SecureChannel, PeerInfo), AcceptError>> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        SecureChannel::accept(stream, &key, &node("beta"), &config).await
    })
}

async fn connected_pair(config: &ChannelConfig) -> (SecureChannel, SecureChannel) {
    let (listener, addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), config.clone());
    let (client, _) = within(SecureChannel::connect(
        addr,
        &key("alpha"),
        &node("alpha"),
        config,
    ))
    .await
    .unwrap();
    let (server, _) = within(server).await.unwrap().unwrap();
    (client, server)
}

/// Deterministic bytes that no two offsets share by accident.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Message {
    Offer {
        task: u64,
        type_name: String,
        size: u64,
    },
    Accept {
        task: u64,
    },
    Refuse {
        task: u64,
        reason: String,
    },
    Chunk(Vec<u8>),
}

#[tokio::test]
async fn typed_messages_round_trip_both_ways() {
    let config = ChannelConfig::default();
    let mut listener = SecureListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &key("beta"),
        &node("beta"),
        &config,
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut channel, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.node.as_str(), "alpha");
        assert_eq!(peer.public_key, identity::host_key("alpha").public_key());
        assert_eq!(channel.peer(), &peer);
        // Echo each message back, then answer the offer.
        for _ in 0..3 {
            let message: Message = channel.recv().await.unwrap();
            channel.send(&message).await.unwrap();
        }
        channel.send(&Message::Accept { task: 7 }).await.unwrap();
        channel.close().await.unwrap();
    });

    let (mut channel, peer) = within(SecureChannel::connect(
        addr,
        &key("alpha"),
        &node("alpha"),
        &config,
    ))
    .await
    .unwrap();
    assert_eq!(peer.node.as_str(), "beta");
    assert_eq!(peer.public_key, identity::host_key("beta").public_key());
    assert_eq!(peer.addr, addr);
    assert_eq!(peer.protocol_version, config.protocol_version);
    let messages = [
        Message::Offer {
            task: 7,
            type_name: "demo::Simulation".to_owned(),
            size: 1 << 30,
        },
        Message::Refuse {
            task: 8,
            reason: "type unknown".to_owned(),
        },
        // Over one Noise message: travels in several.
        Message::Chunk(pattern(3 * CHUNK_SIZE + 17, 1)),
    ];
    for message in &messages {
        channel.send(message).await.unwrap();
        let echoed: Message = within(channel.recv()).await.unwrap();
        assert_eq!(&echoed, message);
    }
    let answer: Message = within(channel.recv()).await.unwrap();
    assert_eq!(answer, Message::Accept { task: 7 });
    // The server closed cleanly: a clean close, not a cut.
    let closed = within(channel.recv::<Message>()).await.unwrap_err();
    assert!(
        matches!(closed, ChannelError::Closed { reason: None }),
        "{closed:?}"
    );
    within(server).await.unwrap();
}

#[tokio::test]
async fn messages_of_every_size_around_the_chunk_boundaries_arrive_intact() {
    let (mut client, mut server) = connected_pair(&ChannelConfig::default()).await;
    let sizes = [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        2 * CHUNK_SIZE,
        2 * CHUNK_SIZE + 1,
    ];
    let sender = tokio::spawn(async move {
        for (i, size) in sizes.iter().enumerate() {
            client.send_bytes(&pattern(*size, i as u64)).await.unwrap();
        }
        client
    });
    for (i, size) in sizes.iter().enumerate() {
        let received = within(server.recv_bytes()).await.unwrap();
        assert_eq!(received.len(), *size);
        assert!(
            received == pattern(*size, i as u64),
            "message {i} of {size} bytes differs"
        );
    }
    within(sender).await.unwrap();
}

#[tokio::test]
async fn a_64_mib_payload_arrives_intact() {
    const SIZE: usize = 64 << 20;
    let (mut client, mut server) = connected_pair(&ChannelConfig::default()).await;
    let payload = Arc::new(pattern(SIZE, 64));
    let sent = Arc::clone(&payload);
    let sender = tokio::spawn(async move {
        client.send_bytes(&sent).await.unwrap();
        client
    });
    let received = within(server.recv_bytes()).await.unwrap();
    assert_eq!(received.len(), SIZE);
    assert!(received == *payload, "the 64 MiB payload differs");
    within(sender).await.unwrap();
}

#[tokio::test]
async fn a_stream_goes_from_a_reader_to_a_writer_one_chunk_at_a_time() {
    // Smaller than the test above: the crypto crates run unoptimized in test builds.
    const SIZE: usize = 8 << 20;
    let (mut client, mut server) = connected_pair(&ChannelConfig::default()).await;
    let payload = Arc::new(pattern(SIZE, 8));
    let sent = Arc::clone(&payload);
    let sender = tokio::spawn(async move {
        server.send_from(SIZE as u64, &sent[..]).await.unwrap();
        // A short reader: the error says so, and the channel is done with.
        let short = server.send_from(10, &[1u8, 2, 3][..]).await.unwrap_err();
        assert!(
            matches!(
                short,
                ChannelError::Source {
                    read: 0,
                    expected: 10,
                    ..
                }
            ),
            "{short:?}"
        );
        assert!(matches!(
            server.send(&1u8).await,
            Err(ChannelError::Unusable)
        ));
    });
    let mut received = Vec::new();
    let length = within(client.recv_into(&mut received)).await.unwrap();
    assert_eq!(length, SIZE as u64);
    assert!(received == *payload, "the streamed payload differs");
    within(sender).await.unwrap();
    // The short message never completes: the connection is cut in its middle.
    let cut = within(client.recv_bytes()).await.unwrap_err();
    assert!(
        matches!(
            cut,
            ChannelError::TruncatedMessage {
                received: 0,
                expected: 10
            }
        ),
        "{cut:?}"
    );
}

#[tokio::test]
async fn a_peer_with_a_wrong_key_is_refused_on_both_sides_and_receives_nothing() {
    let (listener, server_addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), ChannelConfig::default());
    let proxy = Proxy::start(server_addr, Fault::None).await;

    let wrong = identity::credentials(ClusterKey::from_bytes(OTHER_KEY).unwrap(), "mallory");
    let refused = within(SecureChannel::connect(
        proxy.addr,
        &wrong,
        &node("mallory"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused.handshake_error(),
            Some(HandshakeError::PeerClosed {
                step: HandshakeStep::NoiseResponse
            })
        ),
        "{refused:?}"
    );
    assert!(matches!(refused, ConnectError::Handshake { .. }));

    let error = within(server).await.unwrap().unwrap_err();
    assert!(
        matches!(
            error.handshake_error(),
            Some(HandshakeError::AuthenticationFailed {
                step: HandshakeStep::NoiseInitiation
            })
        ),
        "{error:?}"
    );
    let message = format!("{error}: {}", error.handshake_error().unwrap());
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(
        message.contains("does not hold this cluster key"),
        "{message}"
    );

    // The server sent not one byte to the peer without the key.
    proxy.finished().await;
    assert_eq!(proxy.to_client().len(), 0);
    assert_eq!(
        proxy.to_server().len(),
        2 + 48,
        "one handshake message, nothing else"
    );
}

#[tokio::test]
async fn a_plain_tcp_client_sending_garbage_is_refused_and_the_listener_lives_on() {
    let config = ChannelConfig::default();
    let mut listener = SecureListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &key("beta"),
        &node("beta"),
        &config,
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (opened, mut opened_rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((_, peer)) => opened.send(peer).unwrap(),
                Err(error) => panic!("the listener failed: {error}"),
            }
        }
    });

    let garbage: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: beta\r\n\r\n",
        // A well-formed frame of the right size, not made with the key.
        &[&[0u8, 48][..], &[0x5a; 48][..]].concat(),
        // A frame too short to be a handshake message.
        &[0, 3, 1, 2, 3],
        // Half a frame, then the end.
        &[0, 48, 1, 2],
        b"",
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may hang up before all of it is written.
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        // The server closes the connection having sent nothing (a reset is fine too).
        let _ = within(stream.read_to_end(&mut answer)).await;
        assert!(
            answer.is_empty(),
            "garbage {bytes:?} got an answer: {answer:?}"
        );
    }

    // A real peer still gets through.
    let (mut channel, _) = within(SecureChannel::connect(
        addr,
        &key("alpha"),
        &node("alpha"),
        &config,
    ))
    .await
    .unwrap();
    let peer = within(opened_rx.recv()).await.unwrap();
    assert_eq!(peer.node.as_str(), "alpha");
    assert!(
        opened_rx.try_recv().is_err(),
        "no garbage client was let through"
    );
    channel.send(&1u8).await.unwrap();
    server.abort();
}

#[tokio::test]
async fn garbage_is_refused_with_a_typed_error() {
    for (bytes, expected_step) in [
        (
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            HandshakeStep::NoiseInitiation,
        ),
        (&[0u8, 3, 1, 2, 3][..], HandshakeStep::NoiseInitiation),
    ] {
        let (listener, addr) = loopback_listener().await;
        let server = accept_one(listener, key("beta"), ChannelConfig::default());
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let error = within(server).await.unwrap().unwrap_err();
        match error.handshake_error() {
            Some(HandshakeError::NotAHandshake { step, .. }) => assert_eq!(*step, expected_step),
            _ => panic!("expected NotAHandshake for {bytes:?}, got {error:?}"),
        }
    }
}

#[tokio::test]
async fn a_peer_that_stalls_in_the_handshake_times_out() {
    let mut config = ChannelConfig::default();
    config.handshake_timeout = Duration::from_millis(200);
    let (listener, addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), config);
    let _silent = TcpStream::connect(addr).await.unwrap();
    let error = within(server).await.unwrap().unwrap_err();
    // Silent from the start: it never proved the key, under the shorter of both deadlines.
    assert!(
        matches!(
            error.handshake_error(),
            Some(HandshakeError::FirstMessageTimeout { after }) if *after == Duration::from_millis(200)
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_protocol_version_mismatch_is_refused_naming_both_versions() {
    let mut old = ChannelConfig::default();
    old.protocol_version = 1;
    let mut new = ChannelConfig::default();
    new.protocol_version = 2;
    let (listener, addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), old);
    let refused = within(SecureChannel::connect(
        addr,
        &key("alpha"),
        &node("alpha"),
        &new,
    ))
    .await
    .unwrap_err();
    match refused.handshake_error() {
        Some(error @ HandshakeError::VersionMismatch { local: 2, peer: 1 }) => {
            let message = error.to_string();
            assert!(
                message.contains("version 2") && message.contains("version 1"),
                "{message}"
            );
        }
        _ => panic!("expected a version mismatch, got {refused:?}"),
    }
    let error = within(server).await.unwrap().unwrap_err();
    assert!(
        matches!(
            error.handshake_error(),
            Some(HandshakeError::VersionMismatch { local: 1, peer: 2 })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_anything_is_allocated() {
    let mut small = ChannelConfig::default();
    small.max_message_size = 1 << 20;
    let (listener, addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), small.clone());
    let (mut client, _) = within(SecureChannel::connect(
        addr,
        &key("alpha"),
        &node("alpha"),
        &small,
    ))
    .await
    .unwrap();
    let (mut server, _) = within(server).await.unwrap().unwrap();

    // Announce 2^60 bytes: were the receiver to allocate before checking, the process
    // would abort here.
    let announced = 1u64 << 60;
    let sender =
        tokio::spawn(async move { client.send_from(announced, tokio::io::repeat(0)).await });
    let refused = within(server.recv_bytes()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            ChannelError::MessageTooLarge { announced: a, limit: l } if a == announced && l == 1 << 20
        ),
        "{refused:?}"
    );
    assert!(matches!(
        server.recv_bytes().await,
        Err(ChannelError::Unusable)
    ));
    drop(server);
    // The sender's stream breaks off once the receiver is gone.
    let sent = within(sender).await.unwrap();
    assert!(matches!(sent, Err(ChannelError::Io { .. })), "{sent:?}");
}

#[tokio::test]
async fn the_sender_of_an_oversized_message_learns_why_it_was_refused() {
    let mut small = ChannelConfig::default();
    small.max_message_size = 1000;
    let (mut client, mut server) = connected_pair(&small).await;
    client.send_bytes(&[7u8; 5000]).await.unwrap();
    let refused = within(server.recv_bytes()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            ChannelError::MessageTooLarge {
                announced: 5000,
                limit: 1000
            }
        ),
        "{refused:?}"
    );
    match within(client.recv_bytes()).await {
        Err(ChannelError::Closed {
            reason: Some(reason),
        }) => {
            assert!(
                reason.contains("5000") && reason.contains("1000"),
                "{reason}"
            )
        }
        other => panic!("expected the refusal's reason, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_readable_crosses_the_wire() {
    let (listener, server_addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), ChannelConfig::default());
    let proxy = Proxy::start(server_addr, Fault::None).await;
    let (mut client, _) = within(SecureChannel::connect(
        proxy.addr,
        &key("alpha"),
        &node("alpha"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap();
    let (mut server, _) = within(server).await.unwrap().unwrap();
    let secret = "TOP-SECRET-TASK-STATE".repeat(10);
    client.send(&secret).await.unwrap();
    let received: String = within(server.recv()).await.unwrap();
    assert_eq!(received, secret);
    server.send(&secret).await.unwrap();
    let _: String = within(client.recv()).await.unwrap();
    client.close().await.unwrap();
    assert!(matches!(
        within(server.recv::<String>()).await,
        Err(ChannelError::Closed { .. })
    ));
    drop(server);
    proxy.finished().await;

    for (direction, bytes) in [
        ("to the server", proxy.to_server()),
        ("to the client", proxy.to_client()),
    ] {
        for needle in [KEY, b"TOP-SECRET", b"alpha", b"beta"] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "{:?} readable on the wire {direction}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[tokio::test]
async fn a_cancelled_receive_between_messages_leaves_the_channel_usable() {
    let (mut client, mut server) = connected_pair(&ChannelConfig::default()).await;
    let waited = tokio::time::timeout(Duration::from_millis(50), server.recv::<u32>()).await;
    assert!(waited.is_err(), "nothing was sent yet");
    client.send(&42u32).await.unwrap();
    assert_eq!(within(server.recv::<u32>()).await.unwrap(), 42);
}

#[tokio::test]
async fn a_message_of_another_type_is_a_decode_error_that_keeps_the_channel() {
    let (mut client, mut server) = connected_pair(&ChannelConfig::default()).await;
    client.send(&Message::Accept { task: 3 }).await.unwrap();
    client.send(&5u32).await.unwrap();
    let error = within(server.recv::<(String, String)>()).await.unwrap_err();
    assert!(matches!(error, ChannelError::Decode { .. }), "{error:?}");
    assert_eq!(within(server.recv::<u32>()).await.unwrap(), 5);
}

// --- A man in the middle ---------------------------------------------------------------------

/// What the man in the middle does to one frame from the client to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Forwards everything (and records it).
    None,
    /// Flips one bit in the middle of frame `n`.
    FlipBit(usize),
    /// Drops frame `n`.
    Drop(usize),
    /// Sends frame `n` twice.
    Replay(usize),
    /// Sends frame `n + 1` before frame `n`.
    Swap(usize),
    /// Cuts the last 10 bytes of frame `n` and rewrites its length to match.
    CutShort(usize),
    /// Sends half of frame `n`, then closes the connection.
    CloseMidFrame(usize),
    /// Closes the connection instead of sending frame `n`.
    CloseBefore(usize),
}

/// A TCP proxy for one connection that records both directions and applies a fault to the
/// frames from the client to the server (frame 0 is the first Noise message, 1 the hello).
struct Proxy {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
    done: JoinHandle<()>,
}

impl Proxy {
    async fn start(server: SocketAddr, fault: Fault) -> Proxy {
        let (listener, addr) = loopback_listener().await;
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up_log, down_log) = (Arc::clone(&to_server), Arc::clone(&to_client));
        let done = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let upstream = TcpStream::connect(server).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            let downstream = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            down_log.lock().unwrap().extend_from_slice(&buf[..n]);
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client_write.shutdown().await;
            });
            let mut held: Option<Vec<u8>> = None;
            let mut index = 0;
            while let Some(frame) = read_frame(&mut client_read).await {
                let mut out: Vec<Vec<u8>> = Vec::new();
                let mut close = false;
                match fault {
                    Fault::FlipBit(n) if n == index => {
                        let mut frame = frame;
                        let middle = 2 + (frame.len() - 2) / 2;
                        frame[middle] ^= 0x08;
                        out.push(frame);
                    }
                    Fault::Drop(n) if n == index => {}
                    Fault::Replay(n) if n == index => {
                        out.push(frame.clone());
                        out.push(frame);
                    }
                    Fault::Swap(n) if n == index => held = Some(frame),
                    Fault::Swap(n) if n + 1 == index => {
                        out.push(frame);
                        out.extend(held.take());
                    }
                    Fault::CutShort(n) if n == index => {
                        let len = frame.len() - 2 - 10;
                        let mut cut = (len as u16).to_be_bytes().to_vec();
                        cut.extend_from_slice(&frame[2..2 + len]);
                        out.push(cut);
                    }
                    Fault::CloseMidFrame(n) if n == index => {
                        out.push(frame[..frame.len() / 2].to_vec());
                        close = true;
                    }
                    Fault::CloseBefore(n) if n == index => close = true,
                    _ => out.push(frame),
                }
                for bytes in out {
                    up_log.lock().unwrap().extend_from_slice(&bytes);
                    if server_write.write_all(&bytes).await.is_err() {
                        close = true;
                    }
                }
                if close {
                    break;
                }
                index += 1;
            }
            let _ = server_write.shutdown().await;
            drop(server_write);
            let _ = downstream.await;
        });
        Proxy {
            addr,
            to_server,
            to_client,
            done,
        }
    }

    async fn finished(&self) {
        while !self.done.is_finished() {
            within(tokio::time::sleep(Duration::from_millis(5))).await;
        }
    }

    fn to_server(&self) -> Vec<u8> {
        self.to_server.lock().unwrap().clone()
    }

    fn to_client(&self) -> Vec<u8> {
        self.to_client.lock().unwrap().clone()
    }
}

/// One frame with its 2-byte length, or `None` at the end of the stream.
async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Vec<u8>> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let mut frame = head.to_vec();
    frame.resize(2 + usize::from(u16::from_be_bytes(head)), 0);
    stream.read_exact(&mut frame[2..]).await.ok()?;
    Some(frame)
}

/// Runs a server behind a proxy with `fault`; the client sends `messages` typed messages
/// (one frame each, frames 2 onwards) or one message of `large` bytes. Returns what the
/// server received before its receive failed, and the failure.
async fn through_the_man_in_the_middle(
    fault: Fault,
    large: Option<usize>,
) -> (Vec<u32>, ChannelError) {
    let (listener, server_addr) = loopback_listener().await;
    let server = accept_one(listener, key("beta"), ChannelConfig::default());
    let proxy = Proxy::start(server_addr, fault).await;
    let (mut client, _) = within(SecureChannel::connect(
        proxy.addr,
        &key("alpha"),
        &node("alpha"),
        &ChannelConfig::default(),
    ))
    .await
    .unwrap();
    let (mut server, _) = within(server).await.unwrap().unwrap();
    let client = tokio::spawn(async move {
        match large {
            Some(size) => {
                let _ = client.send_bytes(&pattern(size, 9)).await;
            }
            None => {
                for i in 0..6u32 {
                    if client.send(&i).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Wait for the server to hang up.
        let _ = client.recv_bytes().await;
    });
    let mut received = Vec::new();
    let error = loop {
        let outcome = if large.is_some() {
            within(server.recv_bytes())
                .await
                .map(|bytes| bytes.len() as u32)
        } else {
            within(server.recv::<u32>()).await
        };
        match outcome {
            Ok(value) => received.push(value),
            Err(error) => break error,
        }
    };
    // Whatever failed, the channel is done with.
    assert!(matches!(
        server.recv_bytes().await,
        Err(ChannelError::Unusable)
    ));
    drop(server);
    within(client).await.unwrap();
    (received, error)
}

// Client-to-server frames: 0 the Noise message, 1 the hello (sequence 0 of the encrypted
// frames), then message i in frame 2 + i (sequence 1 + i). Faults hit frame 4: message 2.

#[tokio::test]
async fn a_flipped_bit_is_detected_as_tampering() {
    let (received, error) = through_the_man_in_the_middle(Fault::FlipBit(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(
        matches!(error, ChannelError::Tampered { sequence: 3 }),
        "{error:?}"
    );
    assert!(error.is_integrity_failure());
}

#[tokio::test]
async fn a_dropped_frame_is_detected_as_out_of_sequence() {
    let (received, error) = through_the_man_in_the_middle(Fault::Drop(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(
        matches!(
            error,
            ChannelError::OutOfSequence {
                expected: 3,
                received: 4
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_replayed_frame_is_detected_as_a_replay() {
    let (received, error) = through_the_man_in_the_middle(Fault::Replay(4), None).await;
    assert_eq!(received, [0, 1, 2]);
    assert!(
        matches!(
            error,
            ChannelError::Replayed {
                expected: 4,
                received: 3
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn reordered_frames_are_detected_as_out_of_sequence() {
    let (received, error) = through_the_man_in_the_middle(Fault::Swap(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(
        matches!(
            error,
            ChannelError::OutOfSequence {
                expected: 3,
                received: 4
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_frame_cut_short_fails_authentication() {
    let (received, error) = through_the_man_in_the_middle(Fault::CutShort(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(
        matches!(error, ChannelError::Tampered { sequence: 3 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_frame_is_truncation() {
    let (received, error) = through_the_man_in_the_middle(Fault::CloseMidFrame(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(
        matches!(error, ChannelError::TruncatedFrame { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_connection_cut_between_messages_is_not_a_clean_close() {
    let (received, error) = through_the_man_in_the_middle(Fault::CloseBefore(4), None).await;
    assert_eq!(received, [0, 1]);
    assert!(matches!(error, ChannelError::UnexpectedEof), "{error:?}");
}

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_large_message_is_truncation() {
    const SIZE: usize = 1 << 20;
    // Frame 2 announces the message, data frames follow from frame 3: let 7 of them through.
    let (received, error) = through_the_man_in_the_middle(Fault::CloseBefore(10), Some(SIZE)).await;
    assert!(received.is_empty());
    let expected_received = 7 * CHUNK_SIZE as u64;
    assert!(
        matches!(
            error,
            ChannelError::TruncatedMessage { received, expected }
                if received == expected_received && expected == SIZE as u64
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_tampered_chunk_of_a_large_message_is_detected() {
    let (received, error) = through_the_man_in_the_middle(Fault::FlipBit(9), Some(1 << 20)).await;
    assert!(received.is_empty());
    // Frame 9 has sequence 8 (the hello is 0, the start record 1, the data frames 2 on).
    assert!(
        matches!(error, ChannelError::Tampered { sequence: 8 }),
        "{error:?}"
    );
}
