//! The `Coordinator` conformance suite (`cosmic_runtime::cluster::conformance`) against
//! `EtcdCoordinator` on a real etcd: one server per case, each case under a fresh prefix.
//! Skipped (printing `SKIPPED: ...`) if etcd is not installed, unless `COSMIC_REQUIRE_ETCD=1`.

use cosmic_runtime::cluster::conformance;
use cosmic_runtime::cluster::{EtcdConfig, EtcdCoordinator};
use cosmic_tests::etcd::Etcd;

async fn coordinator(etcd: &Etcd, case: &str) -> EtcdCoordinator {
    EtcdCoordinator::connect(
        EtcdConfig::new([etcd.endpoint()]).with_prefix(format!("/conformance/{case}/")),
    )
    .await
    .unwrap_or_else(|error| panic!("connect to {}: {error}", etcd.endpoint()))
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some(etcd) = Etcd::start() else {
                return;
            };
            conformance::$case(coordinator(&etcd, stringify!($case)).await).await;
        }
    )*};
}

cases!(
    membership,
    name_in_use_until_the_lease_ends,
    expired_lease_is_never_renewed,
    members_lists_only_live_ones,
    trust,
    create_and_read_tasks,
    commit_checkpoints,
    commit_many_checkpoints,
    token_is_held_only_by_its_owner,
    stale_commit_never_becomes_current,
    transfer,
    take_over,
    take_over_race,
    release_then_take_over,
    finish_and_forget,
    tokens_strictly_grow,
    ended_lease_is_refused,
);
