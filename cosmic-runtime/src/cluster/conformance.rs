//! The conformance suite: what every [`Coordinator`] must do, as async functions that panic
//! naming the property violated. Each case takes a fresh, empty coordinator; run them all with
//! [`run_all`], or each as its own test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn take_over_race() {
//!     cosmic_runtime::cluster::conformance::take_over_race(my_coordinator().await).await;
//! }
//! ```
//!
//! Leases that must run out are asked for [`SHORT_TTL`]; the suite waits for the time to live
//! the coordinator granted ([`Lease::ttl`], which may be longer) plus up to [`GRACE`] for it to
//! notice, polling rather than sleeping a fixed time. Everything else uses [`LONG_TTL`].
//!
//! Compiled always (it needs nothing beyond the crate's own dependencies) so that other
//! crates' tests can call it; hidden from the docs, it is not part of the API.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::coordinator::{
    CheckpointCommit, CheckpointRef, Coordinator, CoordinatorError, Fenced, HostLoad, Lease,
    MemberRecord, Owner, TaskEntry, Token,
};
use super::layout;
use crate::task::TaskId;
use crate::transport::PublicKey;

/// The time to live asked for leases that a case lets run out.
pub const SHORT_TTL: Duration = Duration::from_millis(300);

/// The time to live of leases that must not run out during a case.
pub const LONG_TTL: Duration = Duration::from_secs(120);

/// How long after a lease's time to live the coordinator may take to see that it ended.
pub const GRACE: Duration = Duration::from_secs(5);

/// The task type every case uses.
const TYPE: &str = "conformance::Counter";

/// Runs every case, each on a fresh coordinator from `make`.
pub async fn run_all<C, F, Fut>(mut make: F)
where
    C: Coordinator,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    membership(make().await).await;
    name_in_use_until_the_lease_ends(make().await).await;
    expired_lease_is_never_renewed(make().await).await;
    members_lists_only_live_ones(make().await).await;
    trust(make().await).await;
    create_and_read_tasks(make().await).await;
    commit_checkpoints(make().await).await;
    commit_many_checkpoints(make().await).await;
    token_is_held_only_by_its_owner(make().await).await;
    stale_commit_never_becomes_current(make().await).await;
    transfer(make().await).await;
    take_over(make().await).await;
    take_over_race(make().await).await;
    release_then_take_over(make().await).await;
    finish_and_forget(make().await).await;
    tokens_strictly_grow(make().await).await;
    ended_lease_is_refused(make().await).await;
}

// --- helpers ---

/// A member record for `name`.
pub fn record(name: &str) -> MemberRecord {
    let mut key = [0u8; 32];
    for (byte, source) in key.iter_mut().zip(name.bytes().cycle()) {
        *byte = source;
    }
    MemberRecord {
        name: name.to_owned(),
        addr: format!("{name}.invalid:7000"),
        public_key: PublicKey::from_bytes(key),
        load: HostLoad::default(),
        types: vec![TYPE.to_owned()],
        draining: false,
    }
}

/// The `seq`-th checkpoint of `task` written by `lease`.
pub fn checkpoint(task: TaskId, lease: &Lease, seq: u64) -> CheckpointRef {
    CheckpointRef {
        key: layout::checkpoint_key(task, &lease.host, lease.incarnation, seq, seq * 10),
        steps: seq * 10,
    }
}

fn ok<T>(result: Result<T, CoordinatorError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what} should succeed, but failed: {error:?}"))
}

async fn join<C: Coordinator>(c: &C, name: &str, ttl: Duration) -> Lease {
    let lease = ok(c.join(&record(name), ttl).await, &format!("join `{name}`"));
    assert_eq!(
        lease.host, name,
        "join: the lease names the host that joined"
    );
    assert!(
        lease.ttl >= ttl,
        "join: the lease lasts at least the time to live asked ({ttl:?}), got {:?}",
        lease.ttl
    );
    lease
}

async fn create<C: Coordinator>(c: &C, lease: &Lease, task: TaskId) -> Token {
    ok(
        c.create(lease, task, TYPE, "u64", checkpoint(task, lease, 0))
            .await,
        &format!("create task {task}"),
    )
}

async fn entry<C: Coordinator>(c: &C, task: TaskId) -> TaskEntry {
    ok(c.task(task).await, &format!("read task {task}"))
        .unwrap_or_else(|| panic!("task {task} should be known to the coordinator"))
}

fn host(lease: &Lease) -> Owner {
    Owner::Host {
        host: lease.host.clone(),
        incarnation: lease.incarnation,
    }
}

fn commit(task: TaskId, token: Token, checkpoint: CheckpointRef) -> CheckpointCommit {
    CheckpointCommit {
        task,
        token,
        checkpoint,
    }
}

async fn is_member<C: Coordinator>(c: &C, lease: &Lease) -> bool {
    ok(c.members().await, "list members")
        .iter()
        .any(|m| m.record.name == lease.host && m.incarnation == lease.incarnation)
}

/// Waits until `lease` has run out as the coordinator sees it (it is no longer a member).
async fn wait_until_ended<C: Coordinator>(c: &C, lease: &Lease) {
    let start = Instant::now();
    tokio::time::sleep(lease.ttl).await;
    while is_member(c, lease).await {
        assert!(
            start.elapsed() < lease.ttl + GRACE,
            "a lease not renewed ends within its time to live ({:?}) and a grace of {GRACE:?}: \
             `{}` incarnation {} is still a member after {:?}",
            lease.ttl,
            lease.host,
            lease.incarnation,
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expect_lease_ended<T: std::fmt::Debug>(result: Result<T, CoordinatorError>, what: &str) {
    assert!(
        matches!(result, Err(CoordinatorError::LeaseEnded { .. })),
        "{what} with an ended lease is refused with LeaseEnded, got {result:?}"
    );
}

fn expect_fenced<T: std::fmt::Debug>(result: Result<T, CoordinatorError>, what: &str) -> Fenced {
    match result {
        Err(CoordinatorError::Fenced(fenced)) => fenced,
        other => panic!("{what} is refused as Fenced, got {other:?}"),
    }
}

// --- cases ---

/// Join, keep alive (publishing a new load), leave.
pub async fn membership<C: Coordinator>(c: C) {
    assert!(
        ok(c.members().await, "list members").is_empty(),
        "a new coordinator has no members"
    );
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let members = ok(c.members().await, "list members");
    let mut names: Vec<_> = members.iter().map(|m| m.record.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"], "members lists every live member");
    let alpha = members
        .iter()
        .find(|m| m.record.name == "alpha")
        .expect("alpha listed");
    assert_eq!(
        (&alpha.record, alpha.incarnation),
        (&record("alpha"), a.incarnation),
        "members shows what a member published and its lease's incarnation"
    );

    let mut busier = record("alpha");
    busier.load.runnable = 7;
    busier.load.cpu = 1.5;
    ok(c.keep_alive(&a, &busier).await, "keep_alive a live lease");
    let members = ok(c.members().await, "list members");
    let alpha = members
        .iter()
        .find(|m| m.record.name == "alpha")
        .expect("alpha listed");
    assert_eq!(alpha.record, busier, "keep_alive publishes the new record");
    assert_eq!(
        alpha.incarnation, a.incarnation,
        "keep_alive keeps the incarnation"
    );

    ok(c.leave(&a).await, "leave");
    assert!(
        !is_member(&c, &a).await,
        "a host that left is no longer a member"
    );
    assert!(
        is_member(&c, &b).await,
        "leaving ends only the leaver's lease"
    );
    expect_lease_ended(
        c.keep_alive(&a, &record("alpha")).await,
        "keep_alive after leave",
    );

    // Bad input is refused, not a panic.
    assert!(
        c.join(&record("gamma"), Duration::ZERO).await.is_err(),
        "a zero time to live is refused"
    );
    assert!(
        c.join(&record(""), LONG_TTL).await.is_err(),
        "an empty host name is refused"
    );
    assert!(
        c.join(&record("../etc"), LONG_TTL).await.is_err(),
        "a host name with a path separator is refused"
    );
}

/// A live lease holds its name (NameInUse); once it ran out the name joins again with a
/// newer incarnation, and the old incarnation's tasks are orphaned.
pub async fn name_in_use_until_the_lease_ends<C: Coordinator>(c: C) {
    let old = join(&c, "alpha", SHORT_TTL).await;
    let task = TaskId(0xa1);
    let token = create(&c, &old, task).await;
    match c.join(&record("alpha"), LONG_TTL).await {
        Err(CoordinatorError::NameInUse {
            host,
            incarnation,
            expires_in,
        }) => {
            assert_eq!(host, "alpha", "NameInUse names the host");
            assert_eq!(
                incarnation, old.incarnation,
                "NameInUse names the live incarnation"
            );
            assert!(
                expires_in <= old.ttl,
                "NameInUse: the live lease ends within its time to live, got {expires_in:?}"
            );
        }
        other => panic!("a second join while the lease is live is NameInUse, got {other:?}"),
    }
    wait_until_ended(&c, &old).await;
    let new = join(&c, "alpha", LONG_TTL).await;
    assert!(
        new.incarnation > old.incarnation,
        "a rejoin gets a newer incarnation: {} after {}",
        new.incarnation,
        old.incarnation
    );
    let entry = entry(&c, task).await;
    assert_eq!(
        entry.owner,
        Owner::Orphaned,
        "the tasks of an ended incarnation are orphaned, even after its name joined again"
    );
    assert_eq!(
        entry.token, token,
        "orphaning by lease end is not a change of token"
    );
    expect_lease_ended(
        c.keep_alive(&old, &record("alpha")).await,
        "keep_alive of the old incarnation",
    );
    assert!(is_member(&c, &new).await, "the new incarnation is a member");
    let (_, from) = ok(
        c.take_over(&new, task, entry.token).await,
        "take over a task of one's own previous incarnation",
    );
    assert_eq!(
        from,
        checkpoint(task, &old, 0),
        "take over resumes from the current checkpoint"
    );
}

/// keep_alive after the lease ran out is LeaseEnded, and stays so: the lease never revives.
pub async fn expired_lease_is_never_renewed<C: Coordinator>(c: C) {
    let lease = join(&c, "alpha", SHORT_TTL).await;
    ok(
        c.keep_alive(&lease, &record("alpha")).await,
        "keep_alive a live lease",
    );
    wait_until_ended(&c, &lease).await;
    for attempt in 1..=3 {
        expect_lease_ended(
            c.keep_alive(&lease, &record("alpha")).await,
            &format!("keep_alive after the lease ran out (attempt {attempt})"),
        );
    }
    assert!(
        !is_member(&c, &lease).await,
        "a refused keep_alive does not revive the lease"
    );
    expect_lease_ended(
        c.create(
            &lease,
            TaskId(1),
            TYPE,
            "u64",
            checkpoint(TaskId(1), &lease, 0),
        )
        .await,
        "create",
    );
    join(&c, "alpha", LONG_TTL).await;
}

/// members lists only live leases.
pub async fn members_lists_only_live_ones<C: Coordinator>(c: C) {
    let short = join(&c, "alpha", SHORT_TTL).await;
    let long = join(&c, "beta", LONG_TTL).await;
    assert!(
        is_member(&c, &short).await && is_member(&c, &long).await,
        "both are members"
    );
    wait_until_ended(&c, &short).await;
    let members = ok(c.members().await, "list members");
    assert_eq!(
        members.len(),
        1,
        "only the live member is listed: {members:?}"
    );
    assert_eq!(members[0].record.name, "beta", "the live member is listed");
    ok(c.leave(&long).await, "leave");
    assert!(
        ok(c.members().await, "list members").is_empty(),
        "no members once all left"
    );
}

/// trust and trusted: an operator's act, one key per name, replaced by the next.
pub async fn trust<C: Coordinator>(c: C) {
    assert!(
        ok(c.trusted().await, "list trusted").is_empty(),
        "nothing trusted at first"
    );
    let (k1, k2, k3) = (
        PublicKey::from_bytes([1; 32]),
        PublicKey::from_bytes([2; 32]),
        PublicKey::from_bytes([3; 32]),
    );
    ok(c.trust("alpha", k1).await, "trust");
    ok(c.trust("beta", k2).await, "trust");
    let mut trusted = ok(c.trusted().await, "list trusted");
    trusted.sort();
    assert_eq!(
        trusted,
        [("alpha".to_owned(), k1), ("beta".to_owned(), k2)],
        "trusted lists every trusted host and key"
    );
    ok(c.trust("alpha", k3).await, "trust again");
    let mut trusted = ok(c.trusted().await, "list trusted");
    trusted.sort();
    assert_eq!(
        trusted,
        [("alpha".to_owned(), k3), ("beta".to_owned(), k2)],
        "trusting a new key for a host replaces the old one"
    );
    assert!(
        ok(c.members().await, "list members").is_empty(),
        "trust is not membership"
    );
    assert!(
        c.trust("", k1).await.is_err(),
        "an empty host name is refused"
    );
}

/// create, task, tasks, TaskExists.
pub async fn create_and_read_tasks<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let (t1, t2) = (TaskId(0x11), TaskId(0x12));
    assert_eq!(
        ok(c.task(t1).await, "read a task"),
        None,
        "an unknown task reads as None"
    );
    assert!(
        ok(c.tasks().await, "list tasks").is_empty(),
        "no tasks at first"
    );
    let token = create(&c, &a, t1).await;
    let expected = TaskEntry {
        task: t1,
        type_name: TYPE.into(),
        output_type: "u64".into(),
        owner: host(&a),
        token,
        current: checkpoint(t1, &a, 0),
    };
    assert_eq!(
        entry(&c, t1).await,
        expected,
        "task reads what create recorded"
    );
    ok(
        c.create(
            &a,
            t2,
            "conformance::Other",
            "String",
            checkpoint(t2, &a, 5),
        )
        .await,
        "create a second task",
    );
    let mut tasks = ok(c.tasks().await, "list tasks");
    tasks.sort_by_key(|entry| entry.task);
    assert_eq!(tasks.len(), 2, "tasks lists every task: {tasks:?}");
    assert_eq!(tasks[0], expected, "tasks reads what create recorded");
    assert_eq!(
        (tasks[1].type_name.as_str(), tasks[1].output_type.as_str()),
        ("conformance::Other", "String"),
        "tasks reads each task's types"
    );
    assert_eq!(
        tasks[1].current,
        checkpoint(t2, &a, 5),
        "the first checkpoint is current"
    );
    let again = c.create(&a, t1, TYPE, "u64", checkpoint(t1, &a, 9)).await;
    assert!(
        matches!(again, Err(CoordinatorError::TaskExists { task }) if task == t1),
        "creating a task id twice is TaskExists, got {again:?}"
    );
    assert_eq!(
        entry(&c, t1).await,
        expected,
        "a refused create changes nothing"
    );
}

/// commit_checkpoints: per-entry verdicts in order; the last commit of a task is current; a
/// writer that lost the task is fenced.
pub async fn commit_checkpoints<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let (t1, t2) = (TaskId(0x21), TaskId(0x22));
    let k1 = create(&c, &a, t1).await;
    let k2 = create(&c, &a, t2).await;
    let verdicts = ok(
        c.commit_checkpoints(
            &a,
            &[
                commit(t1, k1, checkpoint(t1, &a, 1)),
                commit(t2, k2, checkpoint(t2, &a, 1)),
                commit(t1, k1, checkpoint(t1, &a, 2)),
            ],
        )
        .await,
        "commit checkpoints",
    );
    assert_eq!(
        verdicts,
        [Ok(()), Ok(()), Ok(())],
        "the owner's commits succeed"
    );
    assert_eq!(
        entry(&c, t1).await.current,
        checkpoint(t1, &a, 2),
        "entries apply in order: the last commit of a task is current"
    );
    assert_eq!(
        entry(&c, t2).await.current,
        checkpoint(t2, &a, 1),
        "each task has its own"
    );
    assert_eq!(
        entry(&c, t1).await.token,
        k1,
        "a commit does not change the token"
    );

    let moved = ok(
        c.transfer(&a, t1, k1, "beta", checkpoint(t1, &a, 3)).await,
        "transfer",
    );
    let verdicts = ok(
        c.commit_checkpoints(
            &a,
            &[
                commit(t1, k1, checkpoint(t1, &a, 4)),
                commit(t2, k2, checkpoint(t2, &a, 2)),
            ],
        )
        .await,
        "commit checkpoints",
    );
    assert_eq!(
        verdicts[0],
        Err(Fenced {
            task: t1,
            token: moved,
            owner: host(&b)
        }),
        "a commit with a token that is no longer the newest is fenced, naming the newest \
         token and owner"
    );
    assert_eq!(
        verdicts[1],
        Ok(()),
        "one fenced entry does not fail the others"
    );
    assert_eq!(
        entry(&c, t1).await.current,
        checkpoint(t1, &a, 3),
        "a fenced checkpoint does not become current"
    );
    let verdicts = ok(
        c.commit_checkpoints(&b, &[commit(t1, moved, checkpoint(t1, &b, 1))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(
        verdicts,
        [Ok(())],
        "the new owner commits with the new token"
    );
    assert_eq!(
        entry(&c, t1).await.current,
        checkpoint(t1, &b, 1),
        "and its commit is current"
    );
    assert_eq!(
        ok(c.commit_checkpoints(&a, &[]).await, "commit nothing"),
        [],
        "an empty batch has no verdicts"
    );
}

/// Hundreds of entries in one batch, each with its verdict.
pub async fn commit_many_checkpoints<C: Coordinator>(c: C) {
    const TASKS: u64 = 300;
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let mut commits = Vec::new();
    for n in 0..TASKS {
        let task = TaskId(0x1000 + n);
        let token = create(&c, &a, task).await;
        commits.push(commit(task, token, checkpoint(task, &a, 1)));
    }
    // Every tenth task moves to beta first: those entries are fenced.
    for entry in commits.iter().step_by(10) {
        let checkpoint = entry.checkpoint.clone();
        ok(
            c.transfer(&a, entry.task, entry.token, "beta", checkpoint)
                .await,
            "transfer",
        );
    }
    let verdicts = ok(
        c.commit_checkpoints(&a, &commits).await,
        "commit a big batch",
    );
    assert_eq!(verdicts.len(), commits.len(), "one verdict per entry");
    for (n, (entry, verdict)) in commits.iter().zip(&verdicts).enumerate() {
        if n % 10 == 0 {
            assert!(
                matches!(verdict, Err(Fenced { owner, .. }) if *owner == host(&b)),
                "entry {n} (a moved task) is fenced, got {verdict:?}"
            );
        } else {
            assert_eq!(verdict, &Ok(()), "entry {n} is committed");
            assert_eq!(
                self::entry(&c, entry.task).await.current,
                entry.checkpoint,
                "entry {n}'s checkpoint is current"
            );
        }
    }
}

/// A token is held by the host it was given to: another host naming the same number is
/// fenced (commit, transfer, release, finish).
pub async fn token_is_held_only_by_its_owner<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0x31);
    let token = create(&c, &a, task).await;
    let verdicts = ok(
        c.commit_checkpoints(&b, &[commit(task, token, checkpoint(task, &b, 1))])
            .await,
        "commit checkpoints",
    );
    assert!(
        matches!(&verdicts[..], [Err(Fenced { owner, .. })] if *owner == host(&a)),
        "a commit by a host that does not own the task is fenced, got {verdicts:?}"
    );
    expect_fenced(
        c.transfer(&b, task, token, "beta", checkpoint(task, &b, 1))
            .await,
        "a transfer by a host that does not own the task",
    );
    expect_fenced(
        c.release(&b, task, token).await,
        "a release by a host that does not own the task",
    );
    expect_fenced(
        c.finish(&b, task, token, "outcome").await,
        "a finish by a host that does not own the task",
    );
    let entry = entry(&c, task).await;
    assert_eq!(
        (entry.owner, entry.token, entry.current),
        (host(&a), token, checkpoint(task, &a, 0)),
        "refused changes change nothing"
    );
}

/// A stale writer's checkpoint never becomes current, even when it commits after a takeover.
pub async fn stale_commit_never_becomes_current<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", SHORT_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0x41);
    let token = create(&c, &a, task).await;
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 1))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(verdicts, [Ok(())], "the owner's commit succeeds");
    wait_until_ended(&c, &a).await;
    let (taken, from) = ok(c.take_over(&b, task, token).await, "take over an orphan");
    assert_eq!(
        from,
        checkpoint(task, &a, 1),
        "the takeover resumes from the last commit"
    );
    // alpha, paused past its lease, wakes and commits: refused either way.
    let late = c
        .commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 2))])
        .await;
    match &late {
        Err(CoordinatorError::LeaseEnded { .. }) => {}
        Ok(verdicts) if verdicts.iter().all(Result::is_err) => {}
        other => panic!("a commit after the takeover by the ended lease is refused, got {other:?}"),
    }
    // alpha restarted (a new, live lease) still holding the old token: fenced.
    let a2 = join(&c, "alpha", LONG_TTL).await;
    let verdicts = ok(
        c.commit_checkpoints(&a2, &[commit(task, token, checkpoint(task, &a2, 1))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(
        verdicts,
        [Err(Fenced {
            task,
            token: taken,
            owner: host(&b)
        })],
        "a commit with the token from before the takeover is fenced"
    );
    let entry = entry(&c, task).await;
    assert_eq!(
        entry.current,
        checkpoint(task, &a, 1),
        "no stale checkpoint became current after the takeover"
    );
    assert_eq!(
        (entry.owner, entry.token),
        (host(&b), taken),
        "beta owns the task"
    );
}

/// transfer: to a live member; not to an unknown, draining or ended one; not with a stale
/// token.
pub async fn transfer<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let mut draining = record("gamma");
    draining.draining = true;
    ok(c.join(&draining, LONG_TTL).await, "join a draining member");
    let short = join(&c, "delta", SHORT_TTL).await;
    let task = TaskId(0x51);
    let token = create(&c, &a, task).await;
    for to in ["nobody", "gamma"] {
        let result = c
            .transfer(&a, task, token, to, checkpoint(task, &a, 1))
            .await;
        assert!(
            matches!(&result, Err(CoordinatorError::NoSuchMember { host }) if host == to),
            "a transfer to `{to}` (unknown or draining) is NoSuchMember, got {result:?}"
        );
    }
    wait_until_ended(&c, &short).await;
    let result = c
        .transfer(&a, task, token, "delta", checkpoint(task, &a, 1))
        .await;
    assert!(
        matches!(result, Err(CoordinatorError::NoSuchMember { .. })),
        "a transfer to a member whose lease ended is NoSuchMember, got {result:?}"
    );
    assert_eq!(
        entry(&c, task).await.token,
        token,
        "refused transfers change nothing"
    );

    let moved = ok(
        c.transfer(&a, task, token, "beta", checkpoint(task, &a, 1))
            .await,
        "transfer to a live member",
    );
    assert!(moved > token, "a transfer gives a newer token");
    let entry = entry(&c, task).await;
    assert_eq!(
        (entry.owner, entry.token, entry.current),
        (host(&b), moved, checkpoint(task, &a, 1)),
        "after a transfer the target owns the task, with the given checkpoint current"
    );
    let fenced = expect_fenced(
        c.transfer(&a, task, token, "beta", checkpoint(task, &a, 2))
            .await,
        "a transfer with a stale token",
    );
    assert_eq!(
        (fenced.token, fenced.owner),
        (moved, host(&b)),
        "Fenced names the newest token and owner"
    );
    let back = ok(
        c.transfer(&b, task, moved, "alpha", checkpoint(task, &b, 1))
            .await,
        "transfer back",
    );
    assert!(back > moved, "every transfer gives a newer token");
    assert_eq!(
        self::entry(&c, task).await.owner,
        host(&a),
        "the task moved back"
    );
}

/// take_over: only an orphan, only with the newest token seen; it returns the current
/// checkpoint.
pub async fn take_over<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0x61);
    let token = create(&c, &a, task).await;
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 1))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(verdicts, [Ok(())], "commit");
    let result = c.take_over(&b, task, token).await;
    assert!(
        matches!(&result, Err(CoordinatorError::NotOrphaned { task: t, owner }) if *t == task && *owner == host(&a)),
        "taking over a task with a live owner is NotOrphaned, got {result:?}"
    );
    ok(c.leave(&a).await, "leave");
    assert_eq!(
        entry(&c, task).await.owner,
        Owner::Orphaned,
        "the tasks of a host that left are orphaned at once"
    );
    for seen in [
        Token(token.0.wrapping_sub(1)),
        Token(token.0 + 1),
        Token(token.0 + 100),
    ] {
        let result = c.take_over(&b, task, seen).await;
        assert!(
            matches!(&result, Err(CoordinatorError::Fenced(f)) if f.token == token),
            "a takeover having seen token {seen} (the newest is {token}) is Fenced, naming the \
             newest, got {result:?}"
        );
    }
    let (taken, from) = ok(c.take_over(&b, task, token).await, "take over an orphan");
    assert!(taken > token, "a takeover gives a newer token");
    assert_eq!(
        from,
        checkpoint(task, &a, 1),
        "a takeover returns the current checkpoint"
    );
    let entry = entry(&c, task).await;
    assert_eq!(
        (entry.owner, entry.token, entry.current),
        (host(&b), taken, checkpoint(task, &a, 1)),
        "after a takeover the taker owns the task and the checkpoint is unchanged"
    );
    let again = c.take_over(&b, task, token).await;
    assert!(
        again.is_err(),
        "a second takeover with the old token is refused, got {again:?}"
    );
    let again = c.take_over(&b, task, taken).await;
    assert!(
        matches!(&again, Err(CoordinatorError::NotOrphaned { owner, .. }) if *owner == host(&b)),
        "taking over one's own live task is NotOrphaned, got {again:?}"
    );
    let unknown = c.take_over(&b, TaskId(0x6f), Token(1)).await;
    assert!(
        unknown.is_err(),
        "taking over an unknown task is refused, got {unknown:?}"
    );
}

/// Of 16 hosts taking over one orphan at once, exactly one wins.
pub async fn take_over_race<C: Coordinator>(c: C) {
    const TAKERS: usize = 16;
    let c = Arc::new(c);
    let a = join(&*c, "alpha", LONG_TTL).await;
    let task = TaskId(0x71);
    let token = create(&*c, &a, task).await;
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 7))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(verdicts, [Ok(())], "commit");
    let mut takers = Vec::new();
    for n in 0..TAKERS {
        takers.push(join(&*c, &format!("taker-{n}"), LONG_TTL).await);
    }
    ok(c.leave(&a).await, "leave");
    let barrier = Arc::new(tokio::sync::Barrier::new(TAKERS));
    let handles: Vec<_> = takers
        .iter()
        .cloned()
        .map(|lease| {
            let (c, barrier) = (c.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result = c.take_over(&lease, task, token).await;
                (lease, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for handle in handles {
        let (lease, result) = handle.await.expect("a taker panicked");
        match result {
            Ok((taken, from)) => winners.push((lease, taken, from)),
            Err(CoordinatorError::Fenced(_) | CoordinatorError::NotOrphaned { .. }) => {}
            Err(other) => panic!("a losing takeover is Fenced or NotOrphaned, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {TAKERS} concurrent takeovers wins, got {}",
        winners.len()
    );
    let (winner, taken, from) = winners.pop().expect("one winner");
    assert_eq!(
        from,
        checkpoint(task, &a, 7),
        "the winner resumes from the current checkpoint"
    );
    let entry = entry(&*c, task).await;
    assert_eq!(
        (entry.owner, entry.token),
        (host(&winner), taken),
        "the winner owns the task at the token it got"
    );
}

/// release orphans a task at once; another host takes it over.
pub async fn release_then_take_over<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0x81);
    let token = create(&c, &a, task).await;
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 1))])
            .await,
        "commit checkpoints",
    );
    assert_eq!(verdicts, [Ok(())], "commit");
    let released = ok(c.release(&a, task, token).await, "release");
    assert!(released > token, "a release gives a newer token");
    let entry = entry(&c, task).await;
    assert_eq!(
        (entry.owner, entry.token, entry.current.clone()),
        (Owner::Orphaned, released, checkpoint(task, &a, 1)),
        "a released task is orphaned, its current checkpoint kept"
    );
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 2))])
            .await,
        "commit checkpoints",
    );
    assert!(
        matches!(&verdicts[..], [Err(Fenced { token: t, owner: Owner::Orphaned, .. })] if *t == released),
        "a commit after releasing is fenced, got {verdicts:?}"
    );
    expect_fenced(
        c.release(&a, task, token).await,
        "a second release with the old token",
    );
    let (taken, from) = ok(
        c.take_over(&b, task, released).await,
        "take over a released task",
    );
    assert!(taken > released, "a takeover gives a newer token");
    assert_eq!(
        from,
        checkpoint(task, &a, 1),
        "the taker resumes from the released checkpoint"
    );
    assert_eq!(
        self::entry(&c, task).await.owner,
        host(&b),
        "the taker owns it"
    );
}

/// finish once, repeat Ok; a stale or different finish is refused; forget only finished.
pub async fn finish_and_forget<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0x91);
    let token = create(&c, &a, task).await;
    let outcome = layout::outcome_key(task, &a.host, a.incarnation);
    let forget = c.forget(task).await;
    assert!(
        forget.is_err(),
        "forgetting an unfinished task is refused, got {forget:?}"
    );
    assert!(
        c.task(task).await.ok().flatten().is_some(),
        "a refused forget keeps the task"
    );

    ok(c.finish(&a, task, token, &outcome).await, "finish");
    let entry = entry(&c, task).await;
    assert_eq!(
        entry.owner,
        Owner::Finished {
            outcome: outcome.clone()
        },
        "a finished task's owner is its outcome"
    );
    assert!(entry.token > token, "finishing is a change: a newer token");
    ok(
        c.finish(&a, task, token, &outcome).await,
        "repeating the same finish after it succeeded",
    );
    assert_eq!(
        self::entry(&c, task).await.token,
        entry.token,
        "a repeated finish changes nothing"
    );
    let other = c.finish(&a, task, token, "another outcome").await;
    assert!(
        other.is_err(),
        "a finish with another outcome is refused, got {other:?}"
    );
    expect_fenced(
        c.finish(&a, task, Token(token.0.wrapping_sub(1)), &outcome)
            .await,
        "a finish with a stale token",
    );
    let verdicts = ok(
        c.commit_checkpoints(&a, &[commit(task, token, checkpoint(task, &a, 1))])
            .await,
        "commit checkpoints",
    );
    assert!(
        verdicts[0].is_err(),
        "a commit to a finished task is fenced, got {verdicts:?}"
    );
    let result = c.take_over(&b, task, entry.token).await;
    assert!(
        matches!(result, Err(CoordinatorError::NotOrphaned { .. })),
        "a finished task cannot be taken over (NotOrphaned), got {result:?}"
    );
    let result = c.release(&a, task, entry.token).await;
    assert!(
        result.is_err(),
        "a finished task cannot be released, got {result:?}"
    );
    assert_eq!(
        self::entry(&c, task).await.owner,
        Owner::Finished { outcome },
        "finished is final"
    );

    ok(c.forget(task).await, "forget a finished task");
    assert_eq!(
        ok(c.task(task).await, "read a task"),
        None,
        "a forgotten task is unknown"
    );
    assert!(
        ok(c.tasks().await, "list tasks")
            .iter()
            .all(|e| e.task != task),
        "a forgotten task is not listed"
    );
}

/// Every change gives a strictly newer token, and task() reads the newest.
pub async fn tokens_strictly_grow<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0xa1);
    let mut tokens = vec![create(&c, &a, task).await];
    let last = |tokens: &Vec<Token>| *tokens.last().expect("a token");
    tokens.push(ok(
        c.transfer(&a, task, last(&tokens), "beta", checkpoint(task, &a, 1))
            .await,
        "transfer",
    ));
    tokens.push(ok(
        c.transfer(&b, task, last(&tokens), "alpha", checkpoint(task, &b, 1))
            .await,
        "transfer",
    ));
    tokens.push(ok(c.release(&a, task, last(&tokens)).await, "release"));
    tokens.push(ok(c.take_over(&b, task, last(&tokens)).await, "take over").0);
    ok(
        c.finish(
            &b,
            task,
            last(&tokens),
            &layout::outcome_key(task, "beta", b.incarnation),
        )
        .await,
        "finish",
    );
    tokens.push(entry(&c, task).await.token);
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens strictly grow across every change: {tokens:?}"
    );
}

/// Every change made with an ended lease is refused with LeaseEnded.
pub async fn ended_lease_is_refused<C: Coordinator>(c: C) {
    let a = join(&c, "alpha", LONG_TTL).await;
    let _b = join(&c, "beta", LONG_TTL).await;
    let task = TaskId(0xb1);
    let orphan = TaskId(0xb2);
    let token = create(&c, &a, task).await;
    let other = join(&c, "gamma", LONG_TTL).await;
    let orphan_token = create(&c, &other, orphan).await;
    ok(c.leave(&other).await, "leave");
    ok(c.leave(&a).await, "leave");
    let ckpt = checkpoint(task, &a, 1);
    expect_lease_ended(
        c.create(&a, TaskId(0xb3), TYPE, "u64", ckpt.clone()).await,
        "create",
    );
    expect_lease_ended(
        c.commit_checkpoints(&a, &[commit(task, token, ckpt.clone())])
            .await,
        "commit_checkpoints",
    );
    expect_lease_ended(
        c.transfer(&a, task, token, "beta", ckpt.clone()).await,
        "transfer",
    );
    expect_lease_ended(c.take_over(&a, orphan, orphan_token).await, "take_over");
    expect_lease_ended(c.release(&a, task, token).await, "release");
    expect_lease_ended(c.finish(&a, task, token, "outcome").await, "finish");
    expect_lease_ended(c.keep_alive(&a, &record("alpha")).await, "keep_alive");
    let entry = entry(&c, task).await;
    assert_eq!(
        (entry.owner, entry.token, entry.current),
        (Owner::Orphaned, token, checkpoint(task, &a, 0)),
        "nothing changed through the ended lease"
    );
    assert_eq!(
        ok(c.task(TaskId(0xb3)).await, "read a task"),
        None,
        "no task was created through the ended lease"
    );
}
