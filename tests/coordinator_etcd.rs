//! `EtcdCoordinator` against a real etcd server (`cosmic_tests::etcd` starts one per test on
//! free loopback ports; every test prints `SKIPPED: ...` and passes if etcd is not installed,
//! unless `COSMIC_REQUIRE_ETCD=1`).
//!
//! The properties of the `Coordinator` contract: membership by lease (a name held while its
//! lease lives, taken again once it ran out), fencing by token (per-entry verdicts of a batch,
//! a stale token refused), moves, exactly one winner among concurrent takers, releases and
//! ends that make the token grow, forgetting; then the failure cases a real network brings: a
//! host cut off from etcd loses its lease and its tasks are taken over, and an etcd that is
//! down gives a clear error in time instead of a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic_runtime::cluster::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, EtcdConfig, EtcdCoordinator,
    HostLoad, Lease, MemberRecord, Owner, Token,
};
use cosmic_runtime::task::TaskId;
use cosmic_runtime::transport::PublicKey;
use cosmic_tests::etcd::{Etcd, Proxy};

/// The shortest lease etcd grants with its default election timeout: 2 s.
const TTL: Duration = Duration::from_secs(2);

fn record(name: &str) -> MemberRecord {
    MemberRecord {
        name: name.into(),
        addr: format!("127.0.0.1:7{:03}", name.len()),
        public_key: PublicKey::from_bytes([name.len() as u8; 32]),
        load: HostLoad::default(),
        types: vec!["counter".into()],
        draining: false,
    }
}

fn ckpt(task: TaskId, host: &str, seq: u64) -> CheckpointRef {
    CheckpointRef {
        key: cosmic_runtime::cluster::layout::checkpoint_key(task, host, 1, seq, seq * 10),
        steps: seq * 10,
    }
}

/// A coordinator on `endpoint` under a prefix of its own.
async fn connect(endpoint: &str, prefix: &str) -> EtcdCoordinator {
    EtcdCoordinator::connect(EtcdConfig::new([endpoint]).with_prefix(format!("/t/{prefix}/")))
        .await
        .unwrap_or_else(|error| panic!("connect to {endpoint}: {error}"))
}

async fn setup(prefix: &str) -> Option<(Etcd, EtcdCoordinator)> {
    let etcd = Etcd::start()?;
    let coordinator = connect(&etcd.endpoint(), prefix).await;
    Some((etcd, coordinator))
}

async fn join(c: &EtcdCoordinator, name: &str) -> Lease {
    c.join(&record(name), TTL)
        .await
        .unwrap_or_else(|error| panic!("join {name}: {error}"))
}

fn fenced_token(error: CoordinatorError) -> (Token, Owner) {
    match error {
        CoordinatorError::Fenced(fenced) => (fenced.token, fenced.owner),
        other => panic!("expected Fenced, got {other:?}"),
    }
}

/// Waits until `task` has no owner (its owner's lease ran out), at most `limit`.
async fn until_orphaned(c: &EtcdCoordinator, task: TaskId, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let entry = c.task(task).await.expect("read").expect("known");
        if entry.owner == Owner::Orphaned {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "task still owned by {:?} after {limit:?}",
            entry.owner
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_held_while_its_lease_lives_and_free_once_it_ran_out() {
    let Some((_etcd, c)) = setup("names").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    assert_eq!(alpha.host, "alpha");
    assert!(alpha.ttl >= TTL, "granted {:?}", alpha.ttl);
    match c.join(&record("alpha"), TTL).await {
        Err(CoordinatorError::NameInUse {
            host,
            incarnation,
            expires_in,
        }) => {
            assert_eq!(host, "alpha");
            assert_eq!(incarnation, alpha.incarnation);
            assert!(expires_in <= alpha.ttl, "{expires_in:?}");
        }
        other => panic!("expected NameInUse, got {other:?}"),
    }
    // A time to live below a second is rounded up, never down to nothing.
    let short = join(&c, "short").await;
    assert!(short.ttl >= Duration::from_secs(1));
    let members = c.members().await.expect("members");
    let names: Vec<&str> = members.iter().map(|m| m.record.name.as_str()).collect();
    assert_eq!(names, ["alpha", "short"]);
    assert_eq!(members[0].incarnation, alpha.incarnation);
    assert_eq!(members[0].record, record("alpha"));

    // No renewal: the lease runs out, the name is free, a new incarnation takes it.
    tokio::time::sleep(alpha.ttl + Duration::from_millis(1500)).await;
    assert!(c.members().await.expect("members").is_empty());
    let again = join(&c, "alpha").await;
    assert_ne!(again.incarnation, alpha.incarnation);
    match c.keep_alive(&alpha, &record("alpha")).await {
        Err(CoordinatorError::LeaseEnded { host, incarnation }) => {
            assert_eq!((host.as_str(), incarnation), ("alpha", alpha.incarnation));
        }
        other => panic!("expected LeaseEnded, got {other:?}"),
    }
    assert!(matches!(
        c.join(&record(""), TTL).await,
        Err(CoordinatorError::Invalid { .. })
    ));
    assert!(matches!(
        c.join(&record("a/b"), TTL).await,
        Err(CoordinatorError::Invalid { .. })
    ));
    assert!(matches!(
        c.join(&record("zero"), Duration::ZERO).await,
        Err(CoordinatorError::Invalid { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_renews_and_publishes_and_leave_orphans_at_once() {
    let Some((_etcd, c)) = setup("renew").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let task = TaskId::from_raw(1);
    c.create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
        .await
        .expect("create");
    // Renewed past several times its time to live: still a member, still the owner.
    let mut published = record("alpha");
    for round in 0..8u32 {
        published.load.runnable = round;
        c.keep_alive(&alpha, &published).await.expect("renew");
        tokio::time::sleep(alpha.ttl / 3).await;
    }
    let members = c.members().await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].record.load.runnable, 7,
        "the last load published"
    );
    assert!(matches!(
        c.task(task).await.expect("read").expect("known").owner,
        Owner::Host { .. }
    ));
    assert!(matches!(
        c.keep_alive(&alpha, &record("beta")).await,
        Err(CoordinatorError::Invalid { .. })
    ));

    c.leave(&alpha).await.expect("leave");
    assert_eq!(
        c.task(task).await.expect("read").expect("known").owner,
        Owner::Orphaned,
        "orphaned at once, without waiting for the lease to run out"
    );
    assert!(c.members().await.expect("members").is_empty());
    assert!(matches!(
        c.keep_alive(&alpha, &record("alpha")).await,
        Err(CoordinatorError::LeaseEnded { .. })
    ));
    // Everything that changes a task refuses an ended lease.
    let entry = c.task(task).await.expect("read").expect("known");
    assert!(matches!(
        c.take_over(&alpha, task, entry.token).await,
        Err(CoordinatorError::LeaseEnded { .. })
    ));
    assert!(matches!(
        c.create(
            &alpha,
            TaskId::from_raw(2),
            "counter",
            "u64",
            ckpt(TaskId::from_raw(2), "alpha", 0)
        )
        .await,
        Err(CoordinatorError::LeaseEnded { .. })
    ));
    let commit = CheckpointCommit {
        task,
        token: entry.token,
        checkpoint: ckpt(task, "alpha", 1),
    };
    assert!(matches!(
        c.commit_checkpoints(&alpha, &[commit]).await,
        Err(CoordinatorError::LeaseEnded { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_is_kept_per_name_and_replaced() {
    let Some((_etcd, c)) = setup("trust").await else {
        return;
    };
    assert!(c.trusted().await.expect("trusted").is_empty());
    c.trust("beta", PublicKey::from_bytes([2; 32]))
        .await
        .expect("trust");
    c.trust("alpha", PublicKey::from_bytes([1; 32]))
        .await
        .expect("trust");
    c.trust("beta", PublicKey::from_bytes([3; 32]))
        .await
        .expect("trust");
    assert_eq!(
        c.trusted().await.expect("trusted"),
        vec![
            ("alpha".to_owned(), PublicKey::from_bytes([1; 32])),
            ("beta".to_owned(), PublicKey::from_bytes([3; 32])),
        ]
    );
    assert!(matches!(
        c.trust("", PublicKey::from_bytes([1; 32])).await,
        Err(CoordinatorError::Invalid { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_created_once_and_listed() {
    let Some((_etcd, c)) = setup("create").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let (one, two) = (TaskId::from_raw(0xa1), TaskId::from_raw(0xb2));
    let t1 = c
        .create(&alpha, one, "counter", "u64", ckpt(one, "alpha", 0))
        .await
        .expect("create");
    let t2 = c
        .create(&alpha, two, "summer", "String", ckpt(two, "alpha", 0))
        .await
        .expect("create");
    assert!(t2 > t1);
    assert!(matches!(
        c.create(&alpha, one, "counter", "u64", ckpt(one, "alpha", 9)).await,
        Err(CoordinatorError::TaskExists { task }) if task == one
    ));
    let entry = c.task(one).await.expect("read").expect("known");
    assert_eq!(entry.type_name, "counter");
    assert_eq!(entry.output_type, "u64");
    assert_eq!(entry.token, t1);
    assert_eq!(entry.current, ckpt(one, "alpha", 0));
    assert_eq!(
        entry.owner,
        Owner::Host {
            host: "alpha".into(),
            incarnation: alpha.incarnation
        }
    );
    assert_eq!(c.task(TaskId::from_raw(0xdead)).await.expect("read"), None);
    let all = c.tasks().await.expect("tasks");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], entry);
    assert_eq!(all[1].type_name, "summer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_commits_gets_one_verdict_per_entry() {
    let Some((_etcd, c)) = setup("commit").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let beta = join(&c, "beta").await;
    let tasks: Vec<TaskId> = (1..=5).map(TaskId::from_raw).collect();
    let mut tokens = Vec::new();
    for &task in &tasks {
        tokens.push(
            c.create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
                .await
                .expect("create"),
        );
    }
    // Task 3 moves to beta: alpha's token of it is stale.
    let moved = c
        .transfer(
            &alpha,
            tasks[2],
            tokens[2],
            "beta",
            ckpt(tasks[2], "alpha", 1),
        )
        .await
        .expect("transfer");
    let commits: Vec<CheckpointCommit> = tasks
        .iter()
        .zip(&tokens)
        .map(|(&task, &token)| CheckpointCommit {
            task,
            token,
            checkpoint: ckpt(task, "alpha", 2),
        })
        .collect();
    let verdicts = c
        .commit_checkpoints(&alpha, &commits)
        .await
        .expect("commit");
    assert_eq!(verdicts.len(), 5);
    for (i, verdict) in verdicts.iter().enumerate() {
        if i == 2 {
            let fenced = verdict.as_ref().expect_err("stale token");
            assert_eq!(fenced.task, tasks[2]);
            assert_eq!(fenced.token, moved);
            assert_eq!(
                fenced.owner,
                Owner::Host {
                    host: "beta".into(),
                    incarnation: beta.incarnation
                }
            );
        } else {
            assert_eq!(verdict, &Ok(()), "entry {i}");
        }
    }
    for (i, &task) in tasks.iter().enumerate() {
        let entry = c.task(task).await.expect("read").expect("known");
        let expected = if i == 2 {
            ckpt(task, "alpha", 1)
        } else {
            ckpt(task, "alpha", 2)
        };
        assert_eq!(entry.current, expected, "task {i}");
        // Commits do not change the owner: the token stays.
        assert_eq!(entry.token, if i == 2 { moved } else { tokens[i] });
    }
    // One task twice in a batch: both succeed, in order; an unknown task is fenced.
    let twice = [
        CheckpointCommit {
            task: tasks[0],
            token: tokens[0],
            checkpoint: ckpt(tasks[0], "alpha", 3),
        },
        CheckpointCommit {
            task: TaskId::from_raw(0xdead),
            token: tokens[0],
            checkpoint: ckpt(TaskId::from_raw(0xdead), "alpha", 3),
        },
        CheckpointCommit {
            task: tasks[0],
            token: tokens[0],
            checkpoint: ckpt(tasks[0], "alpha", 4),
        },
    ];
    let verdicts = c.commit_checkpoints(&alpha, &twice).await.expect("commit");
    assert_eq!(verdicts[0], Ok(()));
    assert!(verdicts[1].is_err());
    assert_eq!(verdicts[2], Ok(()));
    let entry = c.task(tasks[0]).await.expect("read").expect("known");
    assert_eq!(entry.current, ckpt(tasks[0], "alpha", 4));
    assert_eq!(c.commit_checkpoints(&alpha, &[]).await.expect("empty"), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_moves_the_task_to_a_live_member_only() {
    let Some((_etcd, c)) = setup("transfer").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let beta = join(&c, "beta").await;
    let mut draining = record("gamma");
    draining.draining = true;
    c.join(&draining, TTL).await.expect("join gamma");
    let task = TaskId::from_raw(7);
    let token = c
        .create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
        .await
        .expect("create");
    for to in ["nobody", "gamma"] {
        assert!(
            matches!(
                c.transfer(&alpha, task, token, to, ckpt(task, "alpha", 1)).await,
                Err(CoordinatorError::NoSuchMember { host }) if host == to
            ),
            "to {to}"
        );
    }
    let moved = c
        .transfer(&alpha, task, token, "beta", ckpt(task, "alpha", 1))
        .await
        .expect("transfer");
    assert!(moved > token);
    let entry = c.task(task).await.expect("read").expect("known");
    assert_eq!(entry.token, moved);
    assert_eq!(entry.current, ckpt(task, "alpha", 1));
    assert_eq!(
        entry.owner,
        Owner::Host {
            host: "beta".into(),
            incarnation: beta.incarnation
        }
    );
    // The old owner is fenced everywhere; the new one acts with the new token.
    let (now, _) = fenced_token(
        c.transfer(&alpha, task, token, "beta", ckpt(task, "alpha", 2))
            .await
            .expect_err("stale"),
    );
    assert_eq!(now, moved);
    fenced_token(c.release(&alpha, task, token).await.expect_err("stale"));
    fenced_token(
        c.finish(&alpha, task, token, "out")
            .await
            .expect_err("stale"),
    );
    let commit = CheckpointCommit {
        task,
        token: moved,
        checkpoint: ckpt(task, "beta", 1),
    };
    assert_eq!(
        c.commit_checkpoints(&beta, &[commit])
            .await
            .expect("commit"),
        [Ok(())]
    );
    // The new owner's lease carries the task: when beta leaves, it is orphaned.
    c.leave(&beta).await.expect("leave");
    assert_eq!(
        c.task(task).await.expect("read").expect("known").owner,
        Owner::Orphaned
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_concurrent_takers_exactly_one_wins() {
    let Some((etcd, c)) = setup("takeover").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let task = TaskId::from_raw(0x16);
    c.create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 3))
        .await
        .expect("create");
    c.leave(&alpha).await.expect("leave");
    let orphan = c.task(task).await.expect("read").expect("known");
    assert_eq!(orphan.owner, Owner::Orphaned);

    let mut takers = Vec::new();
    for i in 0..16 {
        // Each taker its own connection, as separate hosts would have.
        let c = Arc::new(connect(&etcd.endpoint(), "takeover").await);
        let lease = join(&c, &format!("taker-{i:02}")).await;
        takers.push((c, lease));
    }
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut running = Vec::new();
    for (c, lease) in takers {
        let start = Arc::clone(&start);
        running.push(tokio::spawn(async move {
            start.wait().await;
            (
                lease.host.clone(),
                c.take_over(&lease, task, orphan.token).await,
            )
        }));
    }
    let mut winners = Vec::new();
    for run in running {
        let (host, result) = run.await.expect("taker");
        match result {
            Ok((token, current)) => {
                assert!(token > orphan.token);
                assert_eq!(current, ckpt(task, "alpha", 3));
                winners.push((host, token));
            }
            Err(CoordinatorError::NotOrphaned { owner, .. }) => {
                assert!(matches!(owner, Owner::Host { .. }), "{owner:?}");
            }
            Err(other) => panic!("{host}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let entry = c.task(task).await.expect("read").expect("known");
    assert_eq!(entry.token, winners[0].1);
    assert!(matches!(&entry.owner, Owner::Host { host, .. } if *host == winners[0].0));
    // Unknown task: said so.
    let late = join(&c, "late").await;
    assert!(matches!(
        c.take_over(&late, TaskId::from_raw(0xdead), Token(1)).await,
        Err(CoordinatorError::NoSuchTask { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_finish_and_forget_and_the_token_grows_at_every_change_of_owner() {
    let Some((_etcd, c)) = setup("lifecycle").await else {
        return;
    };
    let alpha = join(&c, "alpha").await;
    let beta = join(&c, "beta").await;
    let task = TaskId::from_raw(0x42);
    let mut tokens = vec![c
        .create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
        .await
        .expect("create")];
    let moved = c
        .transfer(&alpha, task, tokens[0], "beta", ckpt(task, "alpha", 1))
        .await
        .expect("transfer");
    tokens.push(moved);
    let released = c.release(&beta, task, moved).await.expect("release");
    tokens.push(released);
    let entry = c.task(task).await.expect("read").expect("known");
    assert_eq!(entry.owner, Owner::Orphaned);
    assert_eq!(entry.token, released);
    // The releaser's token is stale now, for it and for anyone who saw it.
    fenced_token(
        c.finish(&beta, task, moved, "out")
            .await
            .expect_err("stale"),
    );
    let (now, owner) = fenced_token(
        c.take_over(&alpha, task, moved)
            .await
            .expect_err("stale seen"),
    );
    assert_eq!((now, owner), (released, Owner::Orphaned));
    let (taken, current) = c
        .take_over(&alpha, task, released)
        .await
        .expect("take over");
    assert_eq!(current, ckpt(task, "alpha", 1));
    tokens.push(taken);
    assert!(matches!(
        c.take_over(&beta, task, taken).await,
        Err(CoordinatorError::NotOrphaned { .. })
    ));
    assert!(matches!(
        c.forget(task).await,
        Err(CoordinatorError::Invalid { .. })
    ));

    let outcome = cosmic_runtime::cluster::layout::outcome_key(task, "alpha", alpha.incarnation);
    c.finish(&alpha, task, taken, &outcome)
        .await
        .expect("finish");
    c.finish(&alpha, task, taken, &outcome)
        .await
        .expect("the same finish again is Ok");
    let entry = c.task(task).await.expect("read").expect("known");
    assert_eq!(
        entry.owner,
        Owner::Finished {
            outcome: outcome.clone()
        }
    );
    tokens.push(entry.token);
    // Finished is final: another outcome, a takeover, a commit are all refused.
    let (_, owner) = fenced_token(
        c.finish(&alpha, task, taken, "another")
            .await
            .expect_err("final"),
    );
    assert_eq!(owner, Owner::Finished { outcome });
    assert!(matches!(
        c.take_over(&beta, task, entry.token).await,
        Err(CoordinatorError::NotOrphaned { .. })
    ));
    let commit = CheckpointCommit {
        task,
        token: taken,
        checkpoint: ckpt(task, "alpha", 9),
    };
    assert!(c
        .commit_checkpoints(&alpha, &[commit])
        .await
        .expect("commit")[0]
        .is_err());

    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens grow strictly: {tokens:?}"
    );
    c.forget(task).await.expect("forget");
    assert_eq!(c.task(task).await.expect("read"), None);
    assert!(c.tasks().await.expect("tasks").is_empty());
    assert!(matches!(
        c.forget(task).await,
        Err(CoordinatorError::NoSuchTask { .. })
    ));
}

/// A host cut off from etcd (its link through a proxy closed) stops being able to renew: its
/// lease runs out within its time to live, its tasks are orphaned and another host takes them
/// over; its own calls fail as unavailable while cut, and as ended once the link is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_from_etcd_loses_its_lease_and_its_tasks() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let proxy = Proxy::start(etcd.port()).await;
    let cut_off = connect(&proxy.endpoint(), "cut").await;
    let other = connect(&etcd.endpoint(), "cut").await;
    let alpha = join(&cut_off, "alpha").await;
    let beta = join(&other, "beta").await;
    let task = TaskId::from_raw(0xc07);
    let token = cut_off
        .create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
        .await
        .expect("create");
    cut_off
        .keep_alive(&alpha, &record("alpha"))
        .await
        .expect("renew");

    proxy.cut();
    let cut_at = Instant::now();
    let started = Instant::now();
    match cut_off.keep_alive(&alpha, &record("alpha")).await {
        Err(CoordinatorError::Unavailable { what, .. }) => {
            assert!(
                what.contains(&proxy.endpoint()),
                "names the endpoint: {what}"
            );
        }
        other => panic!("expected Unavailable while cut off, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4), "no hang");
    // The other host keeps renewing; alpha's lease runs out on etcd's clock.
    let waited = {
        let until = until_orphaned(&other, task, alpha.ttl + Duration::from_secs(4));
        tokio::pin!(until);
        loop {
            tokio::select! {
                waited = &mut until => break waited,
                () = tokio::time::sleep(beta.ttl / 3) => {
                    other.keep_alive(&beta, &record("beta")).await.expect("beta renews");
                }
            }
        }
    };
    println!(
        "orphaned {:?} after the cut (time to live {:?})",
        cut_at.elapsed(),
        alpha.ttl
    );
    assert!(waited <= alpha.ttl + Duration::from_secs(4));
    let entry = other.task(task).await.expect("read").expect("known");
    let (taken, current) = other
        .take_over(&beta, task, entry.token)
        .await
        .expect("beta takes over");
    assert!(taken > token);
    assert_eq!(current, ckpt(task, "alpha", 0));

    proxy.restore();
    // Back on the network, alpha learns its lease has ended and cannot change the task.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cut_off.keep_alive(&alpha, &record("alpha")).await {
            Err(CoordinatorError::LeaseEnded { incarnation, .. }) => {
                assert_eq!(incarnation, alpha.incarnation);
                break;
            }
            Err(CoordinatorError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("expected LeaseEnded after the restore, got {other:?}"),
        }
    }
    let commit = CheckpointCommit {
        task,
        token,
        checkpoint: ckpt(task, "alpha", 1),
    };
    assert!(matches!(
        cut_off.commit_checkpoints(&alpha, &[commit]).await,
        Err(CoordinatorError::LeaseEnded { .. })
    ));
    // And it may join again, as a new incarnation.
    let again = join(&cut_off, "alpha").await;
    assert_ne!(again.incarnation, alpha.incarnation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_that_is_down_gives_a_clear_error_in_time() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let endpoint = etcd.endpoint();
    let c = connect(&endpoint, "down").await;
    let alpha = join(&c, "alpha").await;
    etcd.kill();
    for what in ["keep_alive", "members", "tasks"] {
        let started = Instant::now();
        let result = match what {
            "keep_alive" => c.keep_alive(&alpha, &record("alpha")).await,
            "members" => c.members().await.map(drop),
            _ => c.tasks().await.map(drop),
        };
        let took = started.elapsed();
        match result {
            Err(CoordinatorError::Unavailable { what: done, source }) => {
                assert!(
                    done.contains(&endpoint),
                    "{what}: names the endpoint: {done}"
                );
                println!("{what}: {done}: {source} (after {took:?})");
            }
            other => panic!("{what}: expected Unavailable, got {other:?}"),
        }
        assert!(took < Duration::from_secs(4), "{what} took {took:?}");
    }
    // Connecting to nothing: the same, within the connect timeout.
    let started = Instant::now();
    let result = EtcdCoordinator::connect(
        EtcdConfig::new([endpoint.as_str()])
            .with_timeouts(Duration::from_secs(1), Duration::from_secs(1)),
    )
    .await;
    assert!(matches!(result, Err(CoordinatorError::Unavailable { .. })));
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// 10,000 tasks: their checkpoints commit in a few round trips (timed, printed, not
/// asserted: the machine decides), and the listing pages through all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commits_in_a_few_round_trips() {
    let Some((_etcd, c)) = setup("many").await else {
        return;
    };
    const N: u64 = 10_000;
    let alpha = join(&c, "alpha").await;
    let c = Arc::new(c);
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(N as usize);
    // Creating is one transaction per task; 8 at once.
    for wave in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut running = Vec::new();
        for lane in wave.chunks(wave.len().div_ceil(8)) {
            let (c, alpha, lane) = (Arc::clone(&c), alpha.clone(), lane.to_vec());
            running.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in lane {
                    let task = TaskId::from_raw(i);
                    let token = c
                        .create(&alpha, task, "counter", "u64", ckpt(task, "alpha", 0))
                        .await
                        .expect("create");
                    out.push((task, token));
                }
                out
            }));
        }
        for run in running {
            tokens.extend(run.await.expect("creator"));
        }
        c.keep_alive(&alpha, &record("alpha")).await.expect("renew");
    }
    println!("created {N} tasks in {:?}", started.elapsed());
    let commits: Vec<CheckpointCommit> = tokens
        .iter()
        .map(|&(task, token)| CheckpointCommit {
            task,
            token,
            checkpoint: ckpt(task, "alpha", 1),
        })
        .collect();
    let started = Instant::now();
    let verdicts = c
        .commit_checkpoints(&alpha, &commits)
        .await
        .expect("commit");
    let took = started.elapsed();
    println!("committed {N} checkpoints in one batch in {took:?}");
    assert!(verdicts.iter().all(Result::is_ok));
    let started = Instant::now();
    let all = c.tasks().await.expect("tasks");
    println!("listed {} tasks in {:?}", all.len(), started.elapsed());
    assert_eq!(all.len(), N as usize);
    assert!(all
        .iter()
        .all(|entry| entry.current == ckpt(entry.task, "alpha", 1)));
}
