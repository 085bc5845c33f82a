//! [`SecureChannel`]: typed messages and byte streams of any size, encrypted and authenticated,
//! between two nodes that hold the same cluster key.

use std::fmt;
use std::net::SocketAddr;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::ChannelConfig;
use super::error::{AcceptError, ChannelError, ConnectError, HandshakeError};
use super::frame::MAX_NOISE_MESSAGE;
use super::handshake;
use super::identity::Credentials;
use super::key::ClusterKey;
use super::node::{NodeName, PeerInfo};
use super::noise::{MAX_PLAINTEXT, TAG_LEN};
use super::record::{self, Record, MAX_INLINE};
use super::sealed::SealedStream;
use super::warnings::{self, Side};

/// An encrypted, authenticated, ordered channel to a peer holding the same
/// [`ClusterKey`](super::ClusterKey), over one TCP connection, whose name is proven by its
/// [`HostKey`](super::HostKey) and checked against the [`TrustedPeers`](super::TrustedPeers)
/// of the [`Credentials`] given.
///
/// Open one with [`connect`](Self::connect), or from an accepted TCP connection with
/// [`accept`](Self::accept) (a [`SecureListener`](super::SecureListener) does the accepting
/// for you). Then exchange typed messages ([`send`](Self::send) / [`recv`](Self::recv), encoded
/// with postcard) or raw bytes ([`send_bytes`](Self::send_bytes) /
/// [`recv_bytes`](Self::recv_bytes)), or stream a large payload without holding it
/// ([`send_from`](Self::send_from) / [`recv_into`](Self::recv_into)). A message of any size
/// travels in Noise messages of at most 64 KiB; the receiver checks the announced size against
/// [`ChannelConfig::max_message_size`] before allocating anything.
///
/// Any change to the bytes on the way (a flipped bit, a dropped, replayed, reordered or cut
/// frame) fails the receive with an error naming what happened, and the channel is then
/// unusable. Close it with [`close`](Self::close), so that the peer can tell a clean end from a
/// cut connection.
///
/// Receiving is cancel-safe until a message begins to arrive (so `recv` can sit in a
/// `select!`); cancelling a send, or a receive in the middle of a message, leaves the channel
/// unusable.
///
/// ```
/// # use cosmic_runtime::transport::*;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster_key = ClusterKey::from_bytes(b"an example key of at least 32 bytes long")?;
/// // Each host has a key pair of its own; each trusts the other's public key by name.
/// let (alpha_key, beta_key) = (HostKey::generate()?, HostKey::generate()?);
/// let trusted = TrustedPeers::new();
/// trusted.trust("alpha".parse()?, alpha_key.public_key());
/// trusted.trust("beta".parse()?, beta_key.public_key());
/// let alpha = Credentials::new(cluster_key.clone(), alpha_key.clone(), trusted.clone());
/// let beta = Credentials::new(cluster_key, beta_key.clone(), trusted);
/// let config = ChannelConfig::default();
/// let mut listener =
///     SecureListener::bind("127.0.0.1:0".parse()?, &beta, &"beta".parse()?, &config).await?;
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(async move {
///     let (mut channel, peer) = listener.accept().await?;
///     let question: String = channel.recv().await?;
///     channel.send(&format!("{question}? hello {}", peer.node)).await?;
///     channel.close().await?;
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
/// });
///
/// let (mut channel, peer) =
///     SecureChannel::connect(addr, &alpha, &"alpha".parse()?, &config).await?;
/// assert_eq!(peer.node.as_str(), "beta");
/// assert_eq!(peer.public_key, beta_key.public_key());
/// channel.send("ping").await?;
/// let answer: String = channel.recv().await?;
/// assert_eq!(answer, "ping? hello alpha");
/// server.await?.map_err(|e| e.to_string())?;
/// # Ok(())
/// # }
/// ```
pub struct SecureChannel {
    sealed: SealedStream,
    peer: PeerInfo,
    local: NodeName,
    max_message_size: u64,
    /// Plaintext of the record being built or read: one Noise message.
    plain: Box<[u8]>,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// Between messages.
    Ready,
    /// In the middle of a message; still so after a cancelled operation.
    Busy,
    /// The peer closed the channel.
    Closed(Option<String>),
    /// An operation failed, or we closed the channel.
    Broken,
}

/// What the first record of an incoming message said.
enum Incoming {
    /// The whole message, at this range of `plain`.
    Inline(std::ops::Range<usize>),
    /// A message of this length, in the data frames that follow.
    Stream(u64),
}

impl SecureChannel {
    /// Connects to `addr`, runs the handshake, and returns the channel and what the peer told
    /// about itself. The connect and the handshake together are bounded by
    /// [`ChannelConfig::handshake_timeout`]. A failure is also logged (`warn`), with the
    /// peer's address; repeated failures to reach the same address are counted into one line
    /// every 10 seconds.
    pub async fn connect(
        addr: SocketAddr,
        credentials: &Credentials,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> Result<(SecureChannel, PeerInfo), ConnectError> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| ConnectError::Tcp { addr, source })?;
            handshake::initiate(stream, addr, credentials, local, config)
                .await
                .map_err(|source| ConnectError::Handshake { addr, source })
        };
        let outcome = tokio::time::timeout(config.handshake_timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::Handshake {
                    addr,
                    source: HandshakeError::Timeout {
                        after: config.handshake_timeout,
                    },
                })
            });
        match outcome {
            Ok((sealed, peer)) => {
                tracing::debug!(peer = %addr, node = %peer.node, key = %peer.public_key, local_node = %local, "secure channel open");
                Ok((SecureChannel::new(sealed, &peer, local, config), peer))
            }
            Err(error) => {
                let reason = error_chain(&error);
                match &error {
                    ConnectError::Handshake { source, .. } => {
                        warnings::channel_failed(Side::Connect, local, addr, source, &reason);
                    }
                    // The caller gets the error and says what it means to it (a move that
                    // failed, a source asked again later with back-off): a warning per try
                    // here would repeat it forever for a host that is gone.
                    ConnectError::Tcp { .. } => tracing::debug!(
                        peer = %addr,
                        local_node = %local,
                        %reason,
                        "failed to open a secure channel"
                    ),
                }
                Err(error)
            }
        }
    }

    /// Runs the responder's side of the handshake on a connection accepted from a TCP
    /// listener, bounded by [`ChannelConfig::handshake_timeout`] (and the first message by
    /// [`ChannelConfig::first_message_timeout`]). A peer without the key, with another
    /// protocol version, or sending anything but a handshake is refused: the error is
    /// returned, logged (`warn`, with the peer's address; repeated refusals from one address
    /// are counted into one line every 10 seconds), and the connection dropped, the peer
    /// having received nothing but, at most, our half of the handshake.
    pub async fn accept(
        stream: TcpStream,
        credentials: &Credentials,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> Result<(SecureChannel, PeerInfo), AcceptError> {
        let addr = stream.peer_addr().map_err(AcceptError::PeerAddress)?;
        let deadline = Instant::now() + config.handshake_timeout;
        let outcome = async {
            let proven = await_proof(stream, addr, &credentials.cluster_key, config).await?;
            finish_accept(proven, credentials, local, config, deadline).await
        }
        .await;
        match outcome {
            Ok(opened) => Ok(opened),
            Err(source) => {
                let error = AcceptError::Handshake { addr, source };
                if let Some(source) = error.handshake_error() {
                    let reason = error_chain(&error);
                    warnings::channel_failed(Side::Accept, local, addr, source, &reason);
                }
                Err(error)
            }
        }
    }

    fn new(
        sealed: SealedStream,
        peer: &PeerInfo,
        local: &NodeName,
        config: &ChannelConfig,
    ) -> SecureChannel {
        SecureChannel {
            sealed,
            peer: peer.clone(),
            local: local.clone(),
            max_message_size: config.max_message_size,
            plain: vec![0u8; MAX_NOISE_MESSAGE].into_boxed_slice(),
            state: State::Ready,
        }
    }

    /// The peer, as the handshake told it.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// This node's name.
    pub fn local_node(&self) -> &NodeName {
        &self.local
    }

    /// Our address on the connection.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sealed.framed.get_ref().local_addr()
    }

    /// Sends a value, encoded with postcard.
    pub async fn send<M: Serialize + ?Sized>(&mut self, message: &M) -> Result<(), ChannelError> {
        self.ensure_ready()?;
        let bytes = postcard::to_stdvec(message).map_err(|source| ChannelError::Encode {
            type_name: std::any::type_name::<M>(),
            source,
        })?;
        self.send_bytes(&bytes).await
    }

    /// Receives a value sent with [`send`](Self::send). A message that does not decode as `M`
    /// is an error that leaves the channel usable (the whole message was read).
    pub async fn recv<M: DeserializeOwned>(&mut self) -> Result<M, ChannelError> {
        let bytes = self.recv_bytes().await?;
        decode_message(&bytes)
    }

    /// Like [`recv`](Self::recv), but refuses (before allocating) a message longer than
    /// `limit` bytes, or than the channel's own limit if that is lower: for small control
    /// messages on a channel that also carries large ones.
    pub async fn recv_within<M: DeserializeOwned>(
        &mut self,
        limit: u64,
    ) -> Result<M, ChannelError> {
        self.ensure_ready()?;
        let result = self.read_bytes(limit.min(self.max_message_size)).await;
        let bytes = self.settle(result).await?;
        decode_message(&bytes)
    }

    /// Sends `payload` as one message, in frames of at most 64 KiB encrypted straight from it.
    pub async fn send_bytes(&mut self, payload: &[u8]) -> Result<(), ChannelError> {
        self.ensure_ready()?;
        self.state = State::Busy;
        let result = self.write_bytes(payload).await;
        self.settle(result).await
    }

    async fn write_bytes(&mut self, payload: &[u8]) -> Result<(), ChannelError> {
        if payload.len() <= MAX_INLINE {
            let len = record::inline(payload, &mut self.plain);
            self.sealed.feed(&self.plain[..len]).await?;
        } else {
            self.sealed
                .feed(&record::start(payload.len() as u64))
                .await?;
            for chunk in payload.chunks(MAX_PLAINTEXT) {
                self.sealed.feed(chunk).await?;
            }
        }
        self.sealed.flush().await
    }

    /// Sends one message of exactly `length` bytes read from `reader`, holding at most one
    /// 64 KiB chunk of it at a time. If the reader fails or ends early, the error is returned
    /// and the peer sees a truncated message.
    pub async fn send_from<R: AsyncRead + Unpin>(
        &mut self,
        length: u64,
        mut reader: R,
    ) -> Result<(), ChannelError> {
        self.ensure_ready()?;
        self.state = State::Busy;
        let result = async {
            self.sealed.feed(&record::start(length)).await?;
            let mut sent = 0u64;
            while sent < length {
                let len = record::data_frame_len(length, sent);
                reader
                    .read_exact(&mut self.plain[..len])
                    .await
                    .map_err(|source| ChannelError::Source {
                        read: sent,
                        expected: length,
                        source,
                    })?;
                self.sealed.feed(&self.plain[..len]).await?;
                sent += len as u64;
            }
            self.sealed.flush().await
        }
        .await;
        self.settle(result).await
    }

    /// Receives one message into memory. Its announced size is checked against
    /// [`ChannelConfig::max_message_size`] before anything is allocated; the frames are then
    /// decrypted straight into the returned buffer.
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.ensure_ready()?;
        let result = self.read_bytes(self.max_message_size).await;
        self.settle(result).await
    }

    async fn read_bytes(&mut self, limit: u64) -> Result<Vec<u8>, ChannelError> {
        let length = match self.begin_receive(limit).await? {
            Incoming::Inline(range) => return Ok(self.plain[range].to_vec()),
            Incoming::Stream(length) => length,
        };
        // Within max_message_size, checked by begin_receive; the check here is for 32-bit hosts.
        let capacity = usize::try_from(length).map_err(|_| ChannelError::MessageTooLarge {
            announced: length,
            limit: usize::MAX as u64,
        })?;
        let mut out = Vec::with_capacity(capacity);
        let mut received = 0u64;
        while received < length {
            let due = record::data_frame_len(length, received);
            let frame = self.next_data_frame(length, received).await?;
            if frame.len() != due + TAG_LEN {
                return Err(self.misfit(&frame, due));
            }
            let start = out.len();
            out.resize(start + due, 0);
            self.sealed.open(&frame, &mut out[start..])?;
            received += due as u64;
        }
        Ok(out)
    }

    /// Receives one message and writes it to `writer` as it arrives, holding at most one
    /// 64 KiB chunk of it; returns its length. The announced size is checked against
    /// [`ChannelConfig::max_message_size`] first. The writer is flushed at the end.
    pub async fn recv_into<W: AsyncWrite + Unpin>(
        &mut self,
        mut writer: W,
    ) -> Result<u64, ChannelError> {
        self.ensure_ready()?;
        let result = async {
            let mut written = 0u64;
            let sink_error = |written, source| ChannelError::Sink { written, source };
            match self.begin_receive(self.max_message_size).await? {
                Incoming::Inline(range) => {
                    written = range.len() as u64;
                    writer
                        .write_all(&self.plain[range])
                        .await
                        .map_err(|source| sink_error(0, source))?;
                }
                Incoming::Stream(length) => {
                    while written < length {
                        let due = record::data_frame_len(length, written);
                        let frame = self.next_data_frame(length, written).await?;
                        if frame.len() != due + TAG_LEN {
                            return Err(self.misfit(&frame, due));
                        }
                        self.sealed.open(&frame, &mut self.plain)?;
                        writer
                            .write_all(&self.plain[..due])
                            .await
                            .map_err(|source| sink_error(written, source))?;
                        written += due as u64;
                    }
                }
            }
            writer
                .flush()
                .await
                .map_err(|source| sink_error(written, source))?;
            Ok(written)
        }
        .await;
        self.settle(result).await
    }

    /// Closes the channel cleanly: tells the peer (its next receive fails with
    /// [`ChannelError::Closed`]) and ends our direction of the connection.
    pub async fn close(mut self) -> Result<(), ChannelError> {
        let result = match self.state {
            State::Ready => {
                self.state = State::Busy;
                self.send_close(None).await
            }
            // The peer is gone already, or the stream is out of step: nothing more to say.
            State::Closed(_) | State::Busy | State::Broken => Ok(()),
        };
        self.state = State::Broken;
        self.sealed.shutdown().await;
        result
    }

    /// Reads the first record of the next message, refusing one longer than `limit`.
    /// Cancel-safe until a frame has arrived.
    async fn begin_receive(&mut self, limit: u64) -> Result<Incoming, ChannelError> {
        let frame = self.sealed.next_frame().await;
        self.state = State::Busy;
        let frame = frame?.ok_or(ChannelError::UnexpectedEof)?;
        let len = self.sealed.open(&frame, &mut self.plain)?;
        let announced = match record::parse(&self.plain[..len])? {
            Record::Close(reason) => return Err(ChannelError::Closed { reason }),
            Record::Inline(range) if range.len() as u64 <= limit => {
                return Ok(Incoming::Inline(range))
            }
            Record::Start(length) if length <= limit => return Ok(Incoming::Stream(length)),
            Record::Inline(range) => range.len() as u64,
            Record::Start(length) => length,
        };
        tracing::warn!(
            peer = %self.peer.addr,
            node = %self.peer.node,
            announced,
            limit,
            "refused a message over the size limit; closing the channel"
        );
        let reason = format!("a message of {announced} bytes is over the limit of {limit} bytes");
        // Best effort: the channel is being dropped either way.
        let _ = self.send_close(Some(&reason)).await;
        Err(ChannelError::MessageTooLarge { announced, limit })
    }

    async fn next_data_frame(
        &mut self,
        length: u64,
        received: u64,
    ) -> Result<BytesMut, ChannelError> {
        self.sealed
            .next_frame()
            .await?
            .ok_or(ChannelError::TruncatedMessage {
                received,
                expected: length,
            })
    }

    /// The error for a data frame of the wrong size: what authentication says about it, or a
    /// malformed message if it is genuine.
    fn misfit(&mut self, frame: &[u8], due: usize) -> ChannelError {
        match self.sealed.open(frame, &mut self.plain) {
            Err(error) => error,
            Ok(len) => ChannelError::Malformed {
                reason: format!("a data frame of {len} bytes where {due} were due"),
            },
        }
    }

    async fn send_close(&mut self, reason: Option<&str>) -> Result<(), ChannelError> {
        self.sealed.feed(&record::close(reason)).await?;
        self.sealed.flush().await
    }

    fn ensure_ready(&self) -> Result<(), ChannelError> {
        match &self.state {
            State::Ready => Ok(()),
            State::Closed(reason) => Err(ChannelError::Closed {
                reason: reason.clone(),
            }),
            State::Busy | State::Broken => Err(ChannelError::Unusable),
        }
    }

    /// Records what an operation's outcome means for the channel; a channel that can no
    /// longer be trusted to be in step is shut.
    async fn settle<T>(&mut self, result: Result<T, ChannelError>) -> Result<T, ChannelError> {
        self.state = match &result {
            Ok(_) | Err(ChannelError::Encode { .. } | ChannelError::Decode { .. }) => State::Ready,
            Err(ChannelError::Closed { reason }) => State::Closed(reason.clone()),
            Err(_) => State::Broken,
        };
        if matches!(self.state, State::Broken) {
            self.sealed.shutdown().await;
        }
        result
    }
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The first half of accepting: waits, at most [`ChannelConfig::first_message_timeout`]
/// (and never beyond the whole handshake's deadline), for the peer to prove the key.
pub(crate) async fn await_proof(
    stream: TcpStream,
    addr: SocketAddr,
    key: &ClusterKey,
    config: &ChannelConfig,
) -> Result<handshake::ProvenConnection, HandshakeError> {
    let limit = config.first_message_timeout.min(config.handshake_timeout);
    tokio::time::timeout(limit, handshake::await_proof(stream, addr, key))
        .await
        .unwrap_or(Err(HandshakeError::FirstMessageTimeout { after: limit }))
}

/// The second half of accepting, by `deadline` (the whole handshake's, counted from the
/// connection's arrival): our Noise message and the hellos.
pub(crate) async fn finish_accept(
    proven: handshake::ProvenConnection,
    credentials: &Credentials,
    local: &NodeName,
    config: &ChannelConfig,
    deadline: Instant,
) -> Result<(SecureChannel, PeerInfo), HandshakeError> {
    let addr = proven.addr();
    let (sealed, peer) = tokio::time::timeout_at(
        deadline,
        handshake::respond(proven, credentials, local, config),
    )
    .await
    .unwrap_or(Err(HandshakeError::Timeout {
        after: config.handshake_timeout,
    }))?;
    tracing::debug!(peer = %addr, node = %peer.node, key = %peer.public_key, local_node = %local, "secure channel accepted");
    Ok((SecureChannel::new(sealed, &peer, local, config), peer))
}

/// An error and its sources, joined with ": ", for one log line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    crate::ErrorChain(error).to_string()
}

/// Decodes a whole message as `M`; a message that does not decode (or has bytes left over)
/// is an error that leaves the channel usable.
fn decode_message<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, ChannelError> {
    let decode_error = |source| ChannelError::Decode {
        type_name: std::any::type_name::<M>(),
        length: bytes.len(),
        source,
    };
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, _)) => Err(decode_error(None)),
        Err(error) => Err(decode_error(Some(error))),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;
    use tracing::field::{Field, Visit};
    use tracing::span;

    use super::*;
    use crate::transport::{HostKey, TrustedPeers};

    /// Records every event as one line: level, then `name=value` fields.
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Line<'a>(&'a mut String);

    impl Visit for Line<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut line = event.metadata().level().to_string();
            event.record(&mut Line(&mut line));
            self.0.lock().unwrap().push(line);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    const KEY: &str = "the right cluster key, 32 bytes or more";
    const WRONG_KEY: &str = "the wrong cluster key, 32 bytes or more";

    #[test]
    fn refusals_are_logged_with_the_peer_address_and_no_secret() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Capture(Arc::clone(&lines));
        let (client_addr, server_addr) = tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let server_addr = listener.local_addr().unwrap();
                let config = ChannelConfig::default();
                let server = tokio::spawn(async move {
                    let (stream, client_addr) = listener.accept().await.unwrap();
                    let key = Credentials::new(
                        ClusterKey::from_bytes(KEY.as_bytes()).unwrap(),
                        HostKey::generate().unwrap(),
                        TrustedPeers::new(),
                    );
                    // A name no other test uses: refusals are counted per local node and
                    // source, process-wide, and only the first is logged.
                    let refused =
                        SecureChannel::accept(stream, &key, &"beta-logs".parse().unwrap(), &config)
                            .await;
                    assert!(refused.is_err());
                    client_addr
                });
                let wrong = Credentials::new(
                    ClusterKey::from_bytes(WRONG_KEY.as_bytes()).unwrap(),
                    HostKey::generate().unwrap(),
                    TrustedPeers::new(),
                );
                let connect = SecureChannel::connect(
                    server_addr,
                    &wrong,
                    &"mallory".parse().unwrap(),
                    &ChannelConfig::default(),
                )
                .await;
                assert!(connect.is_err());
                (server.await.unwrap(), server_addr)
            })
        });
        let lines = lines.lock().unwrap();
        let refusal = lines
            .iter()
            .find(|line| line.contains("refused an incoming connection"))
            .unwrap_or_else(|| panic!("no refusal logged: {lines:#?}"));
        assert!(refusal.starts_with("WARN"), "{refusal}");
        assert!(
            refusal.contains(&format!("peer={client_addr}")),
            "{refusal}"
        );
        assert!(
            refusal.contains("does not hold this cluster key"),
            "{refusal}"
        );
        let failure = lines
            .iter()
            .find(|line| line.contains("failed to open a secure channel"))
            .unwrap_or_else(|| panic!("no connect failure logged: {lines:#?}"));
        assert!(
            failure.contains(&format!("peer={server_addr}")),
            "{failure}"
        );
        for line in lines.iter() {
            assert!(!line.contains("cluster key,"), "a key was logged: {line}");
        }
    }
}
