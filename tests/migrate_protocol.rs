//! A host facing a misbehaving peer that holds the cluster key: it speaks the migration
//! protocol by hand over a `SecureChannel` and sends what a correct source never would (huge
//! sizes, garbage, images longer than offered, damaged or foreign images, questions about
//! unknown tasks). The host must answer with a refusal that names the problem, or close that
//! connection, and never allocate what was announced, hold a task, or stop serving others.

use std::time::Duration;

use cosmic::checkpoint::MemoryStore;
use cosmic::image;
use cosmic::transport::protocol::{
    Offer, OfferAnswer, PrepareAnswer, Refusal, Request, Resolution, Whereabouts,
};
use cosmic::transport::{ChannelConfig, ChannelError, ClusterKey, NodeName, SecureChannel};
use cosmic::{Policy, Runtime, TaskId};
use cosmic_tests::counter::{expected_digest, Counter};
use cosmic_tests::identity;

const KEY: &[u8] = b"migrate-protocol test cluster key, 32+ bytes";

async fn beta() -> Runtime {
    Runtime::builder()
        .host("beta")
        .store(MemoryStore::new())
        .checkpoint(Policy::every_steps(10))
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(KEY).unwrap())
        // Mallory holds the cluster key and a key pair beta trusts: a member of the cluster
        // that sends what no honest peer would.
        .host_key(identity::host_key("beta"))
        .trust_peer("mallory", identity::host_key("mallory").public_key())
        .trust_peer("alpha", identity::host_key("alpha").public_key())
        .max_image_size(1 << 20)
        .migration_timeout(Duration::from_secs(2))
        .register::<Counter>()
        .build()
        .await
        .unwrap()
}

async fn connect(beta: &Runtime) -> SecureChannel {
    let (channel, _) = SecureChannel::connect(
        beta.local_addr().unwrap(),
        &identity::credentials(ClusterKey::from_bytes(KEY).unwrap(), "mallory"),
        &NodeName::new("mallory").unwrap(),
        &ChannelConfig::default(),
    )
    .await
    .unwrap();
    channel
}

/// An honest offer of `image`.
fn offer_of(image: &[u8], task: TaskId) -> Offer {
    let header = image::inspect(image).unwrap();
    Offer {
        task,
        handoff: 1,
        epoch: 1,
        type_name: header.type_name.clone(),
        output_type: "u64".into(),
        version: header.type_version,
        versions: header.versions.into_iter().collect(),
        fingerprint: header.fingerprint.0,
        encoding: 0,
        size: image.len() as u64,
        steps: 0,
        source_addr: "127.0.0.1:9".into(),
        inline_image: Vec::new(),
        tries: 0,
        writer: header.isa,
        layout: 0,
    }
}

fn counter_image() -> Vec<u8> {
    image::capture(&Counter::new(10, "", 0)).unwrap()
}

/// The host still takes an honest task after the abuse, and runs it.
async fn still_serves(beta: &Runtime) {
    assert!(beta.tasks().is_empty(), "{:?}", beta.tasks());
    let alpha = Runtime::builder()
        .host("alpha")
        .listen("127.0.0.1:0")
        .cluster_key(ClusterKey::from_bytes(KEY).unwrap())
        .host_key(identity::host_key("alpha"))
        .trust_peer("beta", beta.public_key().unwrap())
        .build()
        .await
        .unwrap();
    alpha.add_peer("beta", beta.local_addr().unwrap()).unwrap();
    let handle = alpha.spawn(Counter::new(40, "", 1)).await.unwrap();
    handle.migrate_to("beta").await.unwrap();
    assert_eq!(handle.join().await.unwrap(), expected_digest(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_judged_before_any_byte_of_the_image_moves() {
    let beta = beta().await;
    let mut channel = connect(&beta).await;
    let image = counter_image();

    let mut huge = offer_of(&image, TaskId::from_raw(1));
    huge.size = 1 << 60;
    channel.send(&Request::Offer(huge)).await.unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert_eq!(
        answer,
        OfferAnswer::Refuse(Refusal::TooLarge {
            size: 1 << 60,
            limit: 1 << 20
        })
    );

    let mut unknown = offer_of(&image, TaskId::from_raw(2));
    unknown.type_name = "nobody::Knows".into();
    channel.send(&Request::Offer(unknown)).await.unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert!(
        matches!(answer, OfferAnswer::Refuse(Refusal::UnknownType { .. })),
        "{answer:?}"
    );

    let mut unknown_encoding = offer_of(&image, TaskId::from_raw(3));
    unknown_encoding.encoding = 9;
    channel
        .send(&Request::Offer(unknown_encoding))
        .await
        .unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert_eq!(
        answer,
        OfferAnswer::Refuse(Refusal::UnsupportedEncoding { encoding: 9 })
    );

    // Native offers are judged by the guard, before any byte moves: another kind of machine,
    // or a layout other than this build's.
    let mut foreign = offer_of(&image, TaskId::from_raw(3));
    foreign.encoding = 1;
    foreign.writer.arch = if foreign.writer.arch == image::Arch::S390x {
        image::Arch::X86_64
    } else {
        image::Arch::S390x
    };
    channel.send(&Request::Offer(foreign)).await.unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert!(
        matches!(&answer, OfferAnswer::Refuse(Refusal::NativeMismatch { reason }) if reason.contains("it was written on")),
        "{answer:?}"
    );
    let mut other_layout = offer_of(&image, TaskId::from_raw(3));
    other_layout.encoding = 1;
    other_layout.layout ^= 1;
    channel.send(&Request::Offer(other_layout)).await.unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert!(
        matches!(&answer, OfferAnswer::Refuse(Refusal::NativeMismatch { reason }) if reason.contains("layout fingerprint")),
        "{answer:?}"
    );

    let mut forged = offer_of(&image, TaskId::from_raw(4));
    forged.fingerprint ^= 1;
    channel.send(&Request::Offer(forged)).await.unwrap();
    let answer: OfferAnswer = channel.recv().await.unwrap();
    assert!(
        matches!(answer, OfferAnswer::Refuse(Refusal::SchemaMismatch { .. })),
        "{answer:?}"
    );

    // Questions about tasks nobody moved.
    channel
        .send(&Request::Resolve {
            task: TaskId::from_raw(5),
            handoff: 77,
        })
        .await
        .unwrap();
    assert_eq!(
        channel.recv::<Resolution>().await.unwrap(),
        Resolution::Aborted
    );
    channel
        .send(&Request::Locate {
            task: TaskId::from_raw(5),
        })
        .await
        .unwrap();
    assert_eq!(
        channel.recv::<Whereabouts>().await.unwrap(),
        Whereabouts::Unknown
    );
    still_serves(&beta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_foreign_images_are_refused_after_the_transfer() {
    let beta = beta().await;
    let mut channel = connect(&beta).await;
    let image = counter_image();

    // A flipped bit in the body: the checksum catches it.
    channel
        .send(&Request::Offer(offer_of(&image, TaskId::from_raw(10))))
        .await
        .unwrap();
    assert_eq!(
        channel.recv::<OfferAnswer>().await.unwrap(),
        OfferAnswer::Accept
    );
    let mut damaged = image.clone();
    let last = damaged.len() - 6;
    damaged[last] ^= 0x01;
    channel.send_bytes(&damaged).await.unwrap();
    match channel.recv::<PrepareAnswer>().await.unwrap() {
        PrepareAnswer::Failed(reason) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // An image of another type under a Counter offer of the same length.
    let other = image::capture(&(0u64, "x".repeat(image.len()))).unwrap();
    let mut lying = offer_of(&image, TaskId::from_raw(11));
    lying.size = other.len() as u64;
    channel.send(&Request::Offer(lying)).await.unwrap();
    assert_eq!(
        channel.recv::<OfferAnswer>().await.unwrap(),
        OfferAnswer::Accept
    );
    channel.send_bytes(&other).await.unwrap();
    assert!(matches!(
        channel.recv::<PrepareAnswer>().await.unwrap(),
        PrepareAnswer::Failed(_)
    ));
    still_serves(&beta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_longer_than_offered_or_garbage_ends_the_connection() {
    let beta = beta().await;
    let image = counter_image();

    let mut channel = connect(&beta).await;
    channel
        .send(&Request::Offer(offer_of(&image, TaskId::from_raw(20))))
        .await
        .unwrap();
    assert_eq!(
        channel.recv::<OfferAnswer>().await.unwrap(),
        OfferAnswer::Accept
    );
    // The host stops reading at the offered length and hangs up: the send itself may fail.
    if channel.send_bytes(&vec![0u8; 512 << 10]).await.is_ok() {
        let error = channel.recv::<PrepareAnswer>().await.unwrap_err();
        assert!(
            matches!(
                error,
                ChannelError::UnexpectedEof | ChannelError::Closed { .. } | ChannelError::Io { .. }
            ),
            "{error}"
        );
    }

    let mut channel = connect(&beta).await;
    channel.send_bytes(&[0xff; 40]).await.unwrap();
    let error = channel.recv::<Whereabouts>().await.unwrap_err();
    assert!(
        matches!(
            error,
            ChannelError::UnexpectedEof | ChannelError::Closed { .. } | ChannelError::Io { .. }
        ),
        "{error}"
    );
    still_serves(&beta).await;
}
