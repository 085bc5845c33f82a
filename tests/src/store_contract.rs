//! The `CheckpointStore` contract, written once and run against every store (`MemoryStore`
//! and `FileStore` in `tests/store_conformance.rs`, `S3Store` in `tests/store_s3.rs`), so that
//! the stores cannot drift apart in what they promise.

use std::sync::Arc;

use bytes::Bytes;
use cosmic::checkpoint::{PutMode, StoreError};
use cosmic::CheckpointStore;

/// What a store promises beyond the common contract.
#[derive(Debug, Clone, Copy)]
pub struct Promises {
    /// Concurrent [`PutMode::Create`] puts of one key have exactly one winner. True of
    /// `MemoryStore` and `FileStore` (a lock; a hard link); not of `S3Store`, whose Create is a
    /// check then a put (S3-compatible services do not all honour conditional writes).
    pub exclusive_create: bool,
}

fn value(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

async fn text(store: &dyn CheckpointStore, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
}

async fn list(store: &dyn CheckpointStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"))
}

async fn put(store: &dyn CheckpointStore, key: &str, text: &'static str) {
    store
        .put(key, value(text), PutMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Keys every store refuses, with `InvalidKey` naming the key, from every operation.
pub const INVALID_KEYS: &[&str] = &[
    "",
    "/a",
    "a/",
    "a//b",
    ".",
    "..",
    "../escape",
    "a/../b",
    "a/./b",
    ".hidden",
    "a/.one.tmp-0000000000000000",
    "a b",
    "a\\b",
    "a:b",
    "a?b",
    "a%2Fb",
    "caf\u{e9}",
    "nul\0",
];

/// Runs the whole contract on `store`, which must be empty.
pub async fn conformance(store: Arc<dyn CheckpointStore>, promises: Promises) {
    let s = &*store;

    // An empty store.
    assert!(list(s, "").await.is_empty(), "the store is not empty");
    assert_eq!(text(s, "a/one").await, None);
    s.delete("a/one").await.unwrap();

    // Put, get, overwrite.
    put(s, "a/one", "1").await;
    assert_eq!(text(s, "a/one").await.as_deref(), Some("1"));
    put(s, "a/one", "one").await;
    assert_eq!(text(s, "a/one").await.as_deref(), Some("one"));

    // Create refuses an existing key and leaves its value alone (one writer: every store).
    match s.put("a/one", value("other"), PutMode::Create).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "a/one"),
        other => panic!("create over an existing key: {other:?}"),
    }
    assert_eq!(text(s, "a/one").await.as_deref(), Some("one"));
    s.put("a/two", value("2"), PutMode::Create).await.unwrap();
    match s.put("a/two", value("two"), PutMode::Create).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "a/two"),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(text(s, "a/two").await.as_deref(), Some("2"));

    // Nested keys, and keys that share a prefix with others but not a folder.
    for (key, v) in [
        ("b/c/three", "3"),
        ("b/c/d/e/f/deep", "deep"),
        ("a.b", "dot"),
        ("ab/x", "x"),
        ("a-b_c.D9/Z", "z"),
        ("tasks/00ff/ckpt/0000000000000001", "i1"),
        ("tasks/00ff/ckpt/0000000000000002", "i2"),
        ("tasks/00ff0/ckpt/0000000000000001", "other task"),
    ] {
        put(s, key, v).await;
    }
    assert_eq!(text(s, "b/c/d/e/f/deep").await.as_deref(), Some("deep"));

    // Listing: every key that starts with the prefix (any prefix, not only whole segments),
    // full keys, sorted bytewise.
    let all = [
        "a-b_c.D9/Z",
        "a.b",
        "a/one",
        "a/two",
        "ab/x",
        "b/c/d/e/f/deep",
        "b/c/three",
        "tasks/00ff/ckpt/0000000000000001",
        "tasks/00ff/ckpt/0000000000000002",
        "tasks/00ff0/ckpt/0000000000000001",
    ];
    assert_eq!(list(s, "").await, all);
    assert_eq!(list(s, "a/").await, ["a/one", "a/two"]);
    assert_eq!(
        list(s, "a").await,
        ["a-b_c.D9/Z", "a.b", "a/one", "a/two", "ab/x"]
    );
    assert_eq!(list(s, "a/t").await, ["a/two"]);
    assert_eq!(list(s, "b/").await, ["b/c/d/e/f/deep", "b/c/three"]);
    assert_eq!(list(s, "b/c/d").await, ["b/c/d/e/f/deep"]);
    assert_eq!(list(s, "b/c/three").await, ["b/c/three"]);
    assert_eq!(
        list(s, "tasks/00ff/").await,
        [
            "tasks/00ff/ckpt/0000000000000001",
            "tasks/00ff/ckpt/0000000000000002"
        ]
    );
    assert_eq!(list(s, "tasks/00ff").await, all[7..]);
    assert!(list(s, "zz/").await.is_empty());
    assert!(list(s, "b/d/").await.is_empty());
    assert!(list(s, "a/one/").await.is_empty());
    // A prefix whose folder part is no key: refused, or nothing, never keys from elsewhere.
    for prefix in ["../", "a/../", "/", "a//"] {
        match s.list(prefix).await {
            Ok(keys) => assert!(keys.is_empty(), "{prefix:?} listed {keys:?}"),
            Err(StoreError::InvalidKey { .. }) => {}
            Err(other) => panic!("list {prefix:?}: {other}"),
        }
    }

    // Delete: idempotent, and frees the key for a Create.
    s.delete("a/one").await.unwrap();
    assert_eq!(text(s, "a/one").await, None);
    assert_eq!(list(s, "a/").await, ["a/two"]);
    s.delete("a/one").await.unwrap();
    s.delete("never/was").await.unwrap();
    s.put("a/one", value("again"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(text(s, "a/one").await.as_deref(), Some("again"));
    // Deleting a key leaves the keys below its folder's siblings alone.
    s.delete("b/c/d/e/f/deep").await.unwrap();
    assert_eq!(list(s, "b/").await, ["b/c/three"]);

    // Values are bytes, any bytes, of any length.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.put("bin/value", Bytes::from(binary.clone()), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(s.get("bin/value").await.unwrap().unwrap(), binary);
    s.put("bin/empty", Bytes::new(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(s.get("bin/empty").await.unwrap().unwrap().len(), 0);
    assert_eq!(list(s, "bin/").await, ["bin/empty", "bin/value"]);

    // Keys outside the rules are refused by every operation, before touching anything.
    let long = "k".repeat(1025);
    for key in INVALID_KEYS.iter().copied().chain([long.as_str()]) {
        let results = [
            s.put(key, value("x"), PutMode::Overwrite).await.err(),
            s.put(key, value("x"), PutMode::Create).await.err(),
            s.get(key).await.err(),
            s.delete(key).await.err(),
        ];
        for result in results {
            match result {
                Some(StoreError::InvalidKey { key: refused, .. }) => assert_eq!(refused, key),
                other => panic!("key {key:?} was not refused as invalid: {other:?}"),
            }
        }
    }
    let after = list(s, "").await;
    assert!(
        after.iter().all(|key| !key.contains(['?', ' ', ':', '%'])),
        "an invalid key was stored: {after:?}"
    );
    assert_eq!(after.len(), all.len() - 1 + 2, "{after:?}");

    race_creates(&store, promises).await;
}

/// Many Create puts of one key at once. Where Create is exclusive, exactly one wins and its
/// value stays. Where it is not (`S3Store`), at least one wins, the others fail with
/// `AlreadyExists` or win too, and the value is one of the winners': a check then a put can
/// let several through, which is why the cluster layout never relies on it.
async fn race_creates(store: &Arc<dyn CheckpointStore>, promises: Promises) {
    let mut racers = Vec::new();
    for i in 0..8u8 {
        let store = Arc::clone(store);
        racers.push(tokio::spawn(async move {
            store
                .put("race/key", Bytes::from(vec![i]), PutMode::Create)
                .await
        }));
    }
    let mut winners = Vec::new();
    for (i, racer) in racers.into_iter().enumerate() {
        match racer.await.unwrap() {
            Ok(()) => winners.push(i as u8),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("racer {i}: {other}"),
        }
    }
    let stored = store.get("race/key").await.unwrap().unwrap();
    assert_eq!(stored.len(), 1);
    if promises.exclusive_create {
        assert_eq!(winners, [stored[0]], "winners: {winners:?}");
    } else {
        assert!(!winners.is_empty(), "nobody won");
        assert!(winners.contains(&stored[0]), "{winners:?} {stored:?}");
    }
}
