//! `S3Store` against a real S3 server: s3s-fs on loopback (`src/s3.rs`), one per test.
//!
//! Without s3s-fs every test prints `SKIPPED: ...` and returns, unless `COSMIC_REQUIRE_S3=1`
//! (CI), when they fail. Run them with:
//!
//! ```text
//! cargo install s3s-fs --version '~0.14' --locked --features binary
//! cargo test -p cosmic-tests --features s3 --test store_s3
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cosmic::checkpoint::{PutMode, RemoteProblem, S3Config, S3Store, StoreError};
use cosmic::prelude::*;
use cosmic::runtime::JoinError;
use cosmic::{CheckpointStore, TaskStatus};
use cosmic_tests::counter::{expected_digest, Counter};
use cosmic_tests::s3::{dead_endpoint, RefusingProxy, S3Server, SilentServer, BUCKET};
use cosmic_tests::store_contract::{conformance, Promises};

/// `S3Store`'s Create is a check then a put, not a conditional write, so the suite does not
/// ask it for one winner among concurrent creates: S3-compatible services do not all honour
/// `If-None-Match: *` (s3s-fs let several through), and the cluster layout never relies on it.
const S3_PROMISES: Promises = Promises {
    exclusive_create: false,
};

/// `len` bytes of a xorshift sequence: no runs a bug could hide in.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The remote error inside `result`, or a panic saying what came instead.
fn remote<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (StoreError, RemoteProblem) {
    match result {
        Err(error @ StoreError::Remote { .. }) => {
            let StoreError::Remote { problem, .. } = &error else {
                unreachable!()
            };
            let problem = *problem;
            (error, problem)
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms() {
    let Some(server) = S3Server::start("s3_store_conforms") else {
        return;
    };
    conformance(Arc::new(server.store("")), S3_PROMISES).await;
    // One object per key, at the key's path in the bucket.
    let on_disk = server.root().join(BUCKET).join("a/one");
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms_under_a_prefix_and_stays_inside_it() {
    let Some(server) = S3Server::start("s3_store_conforms_under_a_prefix") else {
        return;
    };
    let outside = server.store("");
    outside
        .put(
            "cluster/alphabet",
            Bytes::from_static(b"not alpha's"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    outside
        .put("loose", Bytes::from_static(b"x"), PutMode::Overwrite)
        .await
        .unwrap();
    conformance(Arc::new(server.store("cluster/alpha")), S3_PROMISES).await;

    let alpha = server.store("cluster/alpha");
    assert_eq!(alpha.list("a/").await.unwrap(), ["a/one", "a/two"]);
    assert_eq!(alpha.get("loose").await.unwrap(), None);
    // Another prefix on the same bucket sees none of alpha's keys.
    let beta = server.store("cluster/beta");
    assert!(beta.list("").await.unwrap().is_empty());
    assert_eq!(beta.get("a/one").await.unwrap(), None);
    // Seen from the bucket's root, alpha's keys are below its prefix.
    let all = outside.list("cluster/alpha/a/").await.unwrap();
    assert_eq!(all, ["cluster/alpha/a/one", "cluster/alpha/a/two"]);
    assert_eq!(
        outside.list("cluster/alpha").await.unwrap().len(),
        alpha.list("").await.unwrap().len() + 1, // and `cluster/alphabet`
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_more_than_a_thousand_keys() {
    let Some(server) = S3Server::start("listing_pages_through_more_than_a_thousand_keys") else {
        return;
    };
    // s3s-fs answers at most 1000 keys a page, as S3 does.
    let store = Arc::new(server.store("paged"));
    let keys: Vec<String> = (0..1100)
        .map(|i| format!("p/{:02}/k{i:04}", i % 7))
        .collect();
    for batch in keys.chunks(50) {
        let mut puts = tokio::task::JoinSet::new();
        for key in batch {
            let (store, key) = (Arc::clone(&store), key.clone());
            puts.spawn(async move {
                store
                    .put(
                        &key,
                        Bytes::from(key.clone().into_bytes()),
                        PutMode::Overwrite,
                    )
                    .await
            });
        }
        while let Some(done) = puts.join_next().await {
            done.unwrap().unwrap();
        }
    }
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(store.list("").await.unwrap(), expected);
    assert_eq!(store.list("p/").await.unwrap(), expected);
    let sixes: Vec<String> = expected
        .iter()
        .filter(|k| k.starts_with("p/06/"))
        .cloned()
        .collect();
    assert_eq!(store.list("p/06/").await.unwrap(), sixes);
    let prefixed = store.list("p/06/k00").await.unwrap();
    assert_eq!(
        prefixed,
        [
            "p/06/k0006",
            "p/06/k0013",
            "p/06/k0020",
            "p/06/k0027",
            "p/06/k0034",
            "p/06/k0041",
            "p/06/k0048",
            "p/06/k0055",
            "p/06/k0062",
            "p/06/k0069",
            "p/06/k0076",
            "p/06/k0083",
            "p/06/k0090",
            "p/06/k0097"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_image_goes_up_in_parts_and_reads_back_bit_exact() {
    let Some(server) = S3Server::start("a_64_mib_image_goes_up_in_parts") else {
        return;
    };
    // Through a proxy that refuses nothing, to see the requests.
    let proxy = RefusingProxy::start(server.addr, "never refused");
    let store = S3Store::new(server.config().endpoint(&proxy.endpoint)).unwrap();
    let image = noise(64 << 20, 0x5eed);
    let started = Instant::now();
    store
        .put(
            "tasks/big/image",
            Bytes::from(image.clone()),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    let put_time = started.elapsed();
    let back = store.get("tasks/big/image").await.unwrap().unwrap();
    assert!(
        back.len() == image.len() && back[..] == image[..],
        "not bit-exact"
    );
    let requests = proxy.requests();
    let parts = requests
        .iter()
        .filter(|r| r.contains("partNumber="))
        .count();
    assert_eq!(parts, 8, "8 MiB parts of 64 MiB: {requests:#?}");
    assert_eq!(server.upload_leftovers(), 0);
    assert_eq!(
        std::fs::metadata(server.root().join(BUCKET).join("tasks/big/image"))
            .unwrap()
            .len(),
        64 << 20
    );
    eprintln!("64 MiB put in {put_time:?}");

    // Overwritten by a small value, it reads back as the small value.
    store
        .put(
            "tasks/big/image",
            Bytes::from_static(b"small"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("tasks/big/image").await.unwrap().unwrap(),
        &b"small"[..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_part_aborts_the_upload_and_leaves_no_object() {
    let Some(server) = S3Server::start("a_refused_part_aborts_the_upload") else {
        return;
    };
    let proxy = RefusingProxy::start(server.addr, "partNumber=3&");
    let store = S3Store::new(server.config().endpoint(&proxy.endpoint)).unwrap();
    let image = noise(30 << 20, 7);
    let (error, _) = remote(
        store
            .put("tasks/t/image", Bytes::from(image), PutMode::Overwrite)
            .await,
    );
    let message = error.to_string();
    assert!(
        message.contains("failed to write `tasks/t/image` in bucket `cosmic-test` at http://"),
        "{message}"
    );
    assert!(proxy.refused() >= 1);
    // The upload was aborted: no object, no parts kept by the server.
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("DELETE ") && r.contains("uploadId=")),
        "no abort: {requests:#?}"
    );
    assert_eq!(server.upload_leftovers(), 0, "parts left behind");
    assert_eq!(store.get("tasks/t/image").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());

    // The same image goes up once the parts are accepted.
    let direct = server.store("");
    let image = noise(30 << 20, 8);
    direct
        .put(
            "tasks/t/image",
            Bytes::from(image.clone()),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(direct.get("tasks/t/image").await.unwrap().unwrap(), image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_read_as_none_and_a_missing_bucket_is_an_error() {
    let Some(server) = S3Server::start("missing_keys_and_buckets") else {
        return;
    };
    let store = server.store("");
    assert_eq!(store.get("tasks/none/image").await.unwrap(), None);
    store.delete("tasks/none/image").await.unwrap();
    assert!(store.list("tasks/").await.unwrap().is_empty());

    // A bucket that does not exist is not an empty store: listing it (as a runtime does when
    // it starts) says so. (s3s-fs answers a get from a missing bucket with NoSuchKey, where S3
    // says NoSuchBucket, which `S3Store` also reports as an error; and it makes the bucket's
    // folder on a put, where S3 refuses. So only the list is checked here.)
    let mut config = server.config();
    config.bucket = "no-such-bucket".into();
    let absent = S3Store::new(config).unwrap();
    let (error, problem) = remote(absent.list("tasks/").await);
    assert_eq!(problem, RemoteProblem::NoSuchBucket, "{error}");
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "failed to list `tasks/` in bucket `no-such-bucket` at {}: the bucket does not exist",
            server.endpoint
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_that_never_shows_the_secret() {
    let Some(server) = S3Server::start("wrong_credentials") else {
        return;
    };
    let wrong_secret = "wrong-secret-0123456789";
    for (id, secret) in [
        (server.access_key_id.as_str(), wrong_secret),
        ("no-such-key-id", wrong_secret),
    ] {
        let config = server
            .config()
            .credentials(cosmic::checkpoint::S3Credentials::new(id, secret));
        let store = S3Store::new(config).unwrap();
        assert!(!format!("{store:?}").contains(secret));
        for result in [
            store
                .put("a/key", Bytes::from_static(b"v"), PutMode::Overwrite)
                .await,
            store.get("a/key").await.map(drop),
            store.list("a/").await.map(drop),
        ] {
            let (error, problem) = remote(result);
            assert_eq!(problem, RemoteProblem::Denied, "{error}");
            let message = error.to_string();
            assert!(
                message.contains(&format!("bucket `{BUCKET}` at {}", server.endpoint))
                    && message.contains("access denied (check the access key id and secret"),
                "{message}"
            );
            let everything = format!("{error:?} {}", chain(&error));
            assert!(
                !everything.contains(secret),
                "the secret leaked: {everything}"
            );
            assert!(!everything.contains(&server.secret_access_key));
        }
    }
    // Nothing was written.
    assert!(server.store("").list("").await.unwrap().is_empty());
}

/// Every message in an error's source chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_private_file_reach_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let Some(server) = S3Server::start("credentials_from_a_private_file") else {
        return;
    };
    let path = server.root().join("credentials");
    std::fs::write(
        &path,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key_id, server.secret_access_key
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = S3Config::new(BUCKET).credentials_file(&path).unwrap_err();
    assert!(refused.to_string().contains("chmod 600"), "{refused}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = S3Config::new(BUCKET)
        .endpoint(&server.endpoint)
        .credentials_file(&path)
        .unwrap();
    let store = S3Store::new(config).unwrap();
    store
        .put("k", Bytes::from_static(b"v"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap(), &b"v"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_or_silent_is_a_clear_error_without_a_hang() {
    // This one needs no s3s-fs.
    let deadline = Duration::from_secs(20);

    // Nothing listening: refused connections, retried twice, then an error.
    let store = S3Store::new(
        S3Config::new(BUCKET)
            .endpoint(dead_endpoint())
            .credentials(cosmic::checkpoint::S3Credentials::new("id", "secret"))
            .timeouts(Duration::from_secs(2), Duration::from_secs(5))
            .retries(2, Duration::from_secs(5)),
    )
    .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(deadline, store.get("a/key"))
        .await
        .expect("a get from a dead server hung");
    let (error, problem) = remote(result);
    assert_eq!(problem, RemoteProblem::Unreachable, "{}", chain(&error));
    let message = error.to_string();
    assert!(
        message.contains("failed to read `a/key`") && message.contains("cannot connect"),
        "{message}"
    );
    let result = tokio::time::timeout(
        deadline,
        store.put("a/key", Bytes::from_static(b"v"), PutMode::Overwrite),
    )
    .await
    .expect("a put to a dead server hung");
    assert_eq!(remote(result).1, RemoteProblem::Unreachable);
    eprintln!("dead server: errors in {:?}", started.elapsed());

    // A server that accepts and never answers: the request timeout ends it.
    let silent = SilentServer::start();
    let store = S3Store::new(
        S3Config::new(BUCKET)
            .endpoint(&silent.endpoint)
            .credentials(cosmic::checkpoint::S3Credentials::new("id", "secret"))
            .timeouts(Duration::from_secs(1), Duration::from_secs(1))
            .retries(1, Duration::from_secs(3)),
    )
    .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(deadline, store.list("a/"))
        .await
        .expect("a list from a silent server hung");
    let (error, problem) = remote(result);
    assert_eq!(problem, RemoteProblem::TimedOut, "{}", chain(&error));
    assert!(
        error.to_string().contains("did not answer in time"),
        "{error}"
    );
    eprintln!("silent server: error in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_checkpointed_on_s3_resumes_in_another_runtime() {
    let Some(server) = S3Server::start("a_task_checkpointed_on_s3_resumes") else {
        return;
    };
    let runtime = |host: &'static str| {
        let store = server.store("cluster/e2e");
        async move {
            Runtime::builder()
                .host(host)
                .store(store)
                .checkpoint(Policy::OnDemand)
                .register::<Counter>()
                .build()
                .await
                .unwrap()
        }
    };
    let total = 400;
    let mut counter = Counter::new(total, "", 3);
    // Images above the 8 MiB part size: checkpoints go up in parts.
    counter.ballast = noise(12 << 20, 3);
    let first = runtime("s3-first").await;
    let handle = first.spawn(counter).await.unwrap();
    let id = handle.id();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.checkpoint_now().await.unwrap();
    }
    first.shutdown().await;
    assert!(matches!(
        handle.join().await,
        Err(JoinError::ShutDown { .. })
    ));
    let keys = server.store("cluster/e2e").list("").await.unwrap();
    assert!(
        keys.iter().any(|k| k.contains(&id.to_string())),
        "no checkpoint of {id} on S3: {keys:?}"
    );
    assert_eq!(server.upload_leftovers(), 0);

    // A second runtime on the same bucket and prefix resumes the task and finishes it.
    let second = runtime("s3-second").await;
    let recovery = second.recovery();
    assert_eq!(recovery.resumed.len(), 1, "{recovery:?}");
    assert_eq!(recovery.resumed[0].0, id);
    let resumed_at = recovery.resumed[0].1.steps;
    assert!(resumed_at > 0 && resumed_at < total, "{recovery:?}");
    let handle = second.handle::<u64>(id).unwrap();
    assert_eq!(handle.join().await.unwrap(), expected_digest(total));
    assert!(matches!(handle.status(), TaskStatus::Completed));
    second.shutdown().await;
}
