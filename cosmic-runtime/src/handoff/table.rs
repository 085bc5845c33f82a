//! The state table of the hand-off machine, generated from the machine itself: every phase is
//! reached through real events (from [`Host::new`] or [`Host::recover`]), then each event that
//! can arrive in it is fed to a clone, and what the machine did is written down. The table in
//! `docs/architecture.md` is [`markdown`]; a test keeps the two equal
//! (`COSMIC_BLESS=1 cargo test -p cosmic-runtime handoff::table` rewrites the docs).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{
    Body, Command, Config, Envelope, Event, HandoffId, Host, MoveOutcome, ReadBack, StepError,
    StoredRecord, StoredTask, Timer, TimerKind, Write, WriteResult,
};
use crate::task::TaskId;
use crate::transport::protocol::{Refusal, Resolution};

/// One transition: in `state`, `event` leads to `next` and the machine asks for `commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Which part of the protocol the row belongs to.
    pub side: Side,
    /// The task's phase before the event ([`Phase::name`](super::Phase::name), or `Unknown`).
    pub state: String,
    /// The event, in short.
    pub event: String,
    /// The phase after it, or `(refused: <StepError kind>)` (then nothing changed).
    pub next: String,
    /// The commands, in short, joined with `, ` (`—` when none).
    pub commands: String,
}

/// The parts of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source: host `a` moves the task to `b`.
    Giving,
    /// The destination: host `b` takes the task from `a` (`c` is a third host).
    Receiving,
    /// Host `b` restarted with these records.
    Recovery,
}

impl Side {
    fn title(self) -> &'static str {
        match self {
            Side::Giving => "Giving side: host `a` moves the task to `b`.",
            Side::Receiving => {
                "Receiving side: host `b` takes the task from `a` (`c` is a third host)."
            }
            Side::Recovery => {
                "After a restart: host `b` rebuilds its machine from its records, then goes on."
            }
        }
    }
}

// The actors of the table (and of the unit tests).
pub(crate) const SOURCE: &str = "a";
pub(crate) const DEST: &str = "b";
pub(crate) const OTHER: &str = "c";
pub(crate) const TASK: TaskId = TaskId(1);
/// The hand-off the table follows.
pub(crate) const HANDOFF: HandoffId = 0x11;
/// A newer hand-off of the same task.
pub(crate) const NEWER: HandoffId = 0x22;
/// An older hand-off of the task (one that moved it elsewhere before).
pub(crate) const OLDER: HandoffId = 0x33;
/// A hand-off nobody is working on.
pub(crate) const STALE: HandoffId = 0x99;
/// The image's size.
pub(crate) const SIZE: u64 = 4096;

pub(crate) fn recv(from: &str, handoff: HandoffId, body: Body) -> Event {
    Event::Received {
        from: from.into(),
        envelope: Envelope {
            task: TASK,
            handoff,
            body,
        },
    }
}

pub(crate) fn offer(from: &str, handoff: HandoffId, epoch: u64) -> Event {
    recv(from, handoff, Body::Offer { epoch, size: SIZE })
}

pub(crate) fn move_to(to: &str, handoff: HandoffId) -> Event {
    Event::MoveRequested {
        task: TASK,
        handoff,
        to: to.into(),
        size: SIZE,
    }
}

pub(crate) fn timer(kind: TimerKind, handoff: HandoffId) -> Timer {
    Timer {
        task: TASK,
        handoff,
        kind,
    }
}

pub(crate) fn fired(kind: TimerKind, handoff: HandoffId) -> Event {
    Event::TimerFired(timer(kind, handoff))
}

pub(crate) fn peer_lost(peer: &str, handoff: HandoffId) -> Event {
    Event::PeerLost {
        peer: peer.into(),
        task: TASK,
        handoff,
    }
}

pub(crate) fn image_checked(handoff: HandoffId, result: Result<(), String>) -> Event {
    Event::ImageChecked {
        task: TASK,
        handoff,
        result,
    }
}

pub(crate) fn wrote(write: Write, result: WriteResult) -> Event {
    Event::Wrote {
        task: TASK,
        write,
        result,
    }
}

pub(crate) fn moved_record(epoch: u64, handoff: HandoffId, to: &str) -> Write {
    Write::Moved {
        epoch,
        handoff,
        to: to.into(),
    }
}

pub(crate) fn prepared_record(epoch: u64, handoff: HandoffId, from: &str) -> Write {
    Write::Prepared {
        epoch,
        handoff,
        from: from.into(),
    }
}

pub(crate) fn owner_record(epoch: u64, handoff: HandoffId) -> Write {
    Write::Owner { epoch, handoff }
}

pub(crate) fn read_back(handoff: HandoffId, result: ReadBack) -> Event {
    Event::ReadBack {
        task: TASK,
        handoff,
        result,
    }
}

/// Steps a machine that must take the event.
pub(crate) fn must(host: &mut Host, event: Event) -> Vec<Command> {
    let shown = format!("{event:?}");
    host.step(event)
        .unwrap_or_else(|e| panic!("{} refused {shown}: {e}", host.name()))
}

/// `a` runs the task.
pub(crate) fn source_running() -> Host {
    let mut host = Host::new(SOURCE, Config::default());
    must(&mut host, Event::Spawned { task: TASK });
    host
}

/// `a` offered the task to `b` (epoch 1).
pub(crate) fn source_offered() -> Host {
    let mut host = source_running();
    must(&mut host, move_to(DEST, HANDOFF));
    host
}

pub(crate) fn source_transferring() -> Host {
    let mut host = source_offered();
    must(&mut host, recv(DEST, HANDOFF, Body::Accept));
    host
}

pub(crate) fn source_committing() -> Host {
    let mut host = source_transferring();
    must(&mut host, recv(DEST, HANDOFF, Body::Prepared));
    host
}

pub(crate) fn source_checking_commit() -> Host {
    let mut host = source_committing();
    let write = moved_record(1, HANDOFF, DEST);
    must(&mut host, wrote(write, WriteResult::Failed));
    host
}

pub(crate) fn source_moved() -> Host {
    let mut host = source_committing();
    let write = moved_record(1, HANDOFF, DEST);
    must(&mut host, wrote(write, WriteResult::Durable));
    host
}

pub(crate) fn source_finished() -> Host {
    let mut host = source_running();
    must(&mut host, Event::Finished { task: TASK });
    host
}

/// `b`, which knows nothing of the task yet.
pub(crate) fn dest_empty(config: Config) -> Host {
    Host::new(DEST, config)
}

/// `b` accepted the offer of `a` (epoch 1).
pub(crate) fn dest_receiving() -> Host {
    let mut host = dest_empty(Config::default());
    must(&mut host, offer(SOURCE, HANDOFF, 1));
    host
}

pub(crate) fn dest_recording() -> Host {
    let mut host = dest_receiving();
    must(&mut host, image_checked(HANDOFF, Ok(())));
    host
}

pub(crate) fn dest_prepared() -> Host {
    let mut host = dest_recording();
    let write = prepared_record(1, HANDOFF, SOURCE);
    must(&mut host, wrote(write, WriteResult::Durable));
    host
}

pub(crate) fn dest_in_doubt() -> Host {
    let mut host = dest_prepared();
    must(&mut host, peer_lost(SOURCE, HANDOFF));
    host
}

pub(crate) fn dest_committing() -> Host {
    let mut host = dest_prepared();
    must(&mut host, recv(SOURCE, HANDOFF, Body::Commit));
    host
}

pub(crate) fn dest_commit_retry() -> Host {
    let mut host = dest_committing();
    must(
        &mut host,
        wrote(owner_record(1, HANDOFF), WriteResult::Failed),
    );
    host
}

pub(crate) fn dest_running() -> Host {
    let mut host = dest_committing();
    must(
        &mut host,
        wrote(owner_record(1, HANDOFF), WriteResult::Durable),
    );
    host
}

/// `b` restarted with the task's `records` (epoch, record).
pub(crate) fn recovered(records: Records, finished: bool) -> Host {
    let stored = StoredTask {
        task: TASK,
        records,
        finished,
    };
    Host::recover(DEST, Config::default(), [stored]).0
}

/// `b` restarted and could not read the task's records.
pub(crate) fn quarantined() -> Host {
    let (mut host, _, _) = Host::recover(DEST, Config::default(), []);
    host.quarantine(TASK);
    host
}

/// A `prepared` record at epoch 3 of hand-off [`HANDOFF`] from `a`.
pub(crate) fn prepared_at_3() -> (u64, StoredRecord) {
    let record = StoredRecord::Prepared {
        handoff: HANDOFF,
        from: SOURCE.into(),
        size: SIZE,
    };
    (3, record)
}

/// A `moved` record at epoch 2 of hand-off [`OLDER`] to `c`.
pub(crate) fn moved_at_2() -> (u64, StoredRecord) {
    let record = StoredRecord::Moved {
        handoff: OLDER,
        to: OTHER.into(),
    };
    (2, record)
}

/// One phase of the table and the events worth showing in it.
pub(crate) struct Case {
    pub(crate) side: Side,
    pub(crate) host: Host,
    pub(crate) events: Vec<(String, Event)>,
}

fn case(side: Side, host: Host, events: Vec<(&str, Event)>) -> Case {
    let events = events
        .into_iter()
        .map(|(label, event)| (label.to_owned(), event))
        .collect();
    Case { side, host, events }
}

/// Every phase the table shows, each with the events that can arrive in it.
pub(crate) fn cases() -> Vec<Case> {
    use Body::{
        Abort, Accept, Commit, Deferred, Image, Offer, PrepareFailed, Prepared, Refuse, Resolve,
        Started,
    };
    use Side::*;
    use TimerKind as K;
    use WriteResult::{Durable, Failed};
    let h = HANDOFF;
    let settling = Refuse(Refusal::Settling { handoff: OLDER });
    let stale_epoch = Refuse(Refusal::StaleEpoch {
        offered: 1,
        known: 1,
    });
    let moved = |result| wrote(moved_record(1, h, DEST), result);
    let prepared = |result| wrote(prepared_record(1, h, SOURCE), result);
    let owner = |result| wrote(owner_record(1, h), result);
    let resolution = |answer| recv(SOURCE, h, Body::Resolution(answer));
    let failed = || PrepareFailed("the image does not decode".into());
    let busy_dest = {
        let config = Config {
            max_arriving: 1,
            ..Config::default()
        };
        let mut host = dest_empty(config);
        let other_task = Envelope {
            task: TaskId(2),
            handoff: NEWER,
            body: Offer {
                epoch: 1,
                size: SIZE,
            },
        };
        let from = SOURCE.into();
        must(
            &mut host,
            Event::Received {
                from,
                envelope: other_task,
            },
        );
        host
    };
    let full_dest = {
        let config = Config {
            max_tasks: 1,
            ..Config::default()
        };
        let mut host = dest_empty(config);
        must(&mut host, Event::Spawned { task: TaskId(2) });
        host
    };
    let settled_thrice = {
        let mut host = source_offered();
        for _ in 0..3 {
            must(&mut host, recv(DEST, h, settling.clone()));
        }
        host
    };
    let aborted_while_recording = {
        let mut host = dest_recording();
        must(&mut host, recv(SOURCE, h, Abort));
        host
    };
    let in_doubt_over_moved = recovered(vec![moved_at_2(), prepared_at_3()], false);
    let in_doubt = recovered(vec![prepared_at_3()], false);
    let moved_record_2 = recovered(vec![moved_at_2()], false);
    vec![
        case(
            Giving,
            source_running(),
            vec![
                ("MoveRequested", move_to(DEST, h)),
                ("MoveRequested (to itself)", move_to(SOURCE, h)),
                ("Finished", Event::Finished { task: TASK }),
                ("Spawned", Event::Spawned { task: TASK }),
                ("recv Resolve", recv(DEST, h, Resolve)),
            ],
        ),
        case(
            Giving,
            source_offered(),
            vec![
                ("recv Accept", recv(DEST, h, Accept)),
                ("recv Refuse(StaleEpoch)", recv(DEST, h, stale_epoch)),
                ("recv Refuse(Settling)", recv(DEST, h, settling.clone())),
                (
                    "recv Refuse(Settling) (of this very hand-off)",
                    recv(DEST, h, Refuse(Refusal::Settling { handoff: h })),
                ),
                ("recv PrepareFailed", recv(DEST, h, failed())),
                ("recv Prepared", recv(DEST, h, Prepared)),
                ("recv Accept (wrong peer)", recv(OTHER, h, Accept)),
                ("recv Accept (stale hand-off)", recv(DEST, STALE, Accept)),
                ("PeerLost", peer_lost(DEST, h)),
                ("timer Offer", fired(K::Offer, h)),
                ("recv Resolve", recv(DEST, h, Resolve)),
                ("recv Resolve (from another host)", recv(OTHER, h, Resolve)),
                ("MoveRequested", move_to(DEST, NEWER)),
            ],
        ),
        case(
            Giving,
            settled_thrice,
            vec![(
                "recv Refuse(Settling) (a 4th time)",
                recv(DEST, h, settling.clone()),
            )],
        ),
        case(
            Giving,
            source_transferring(),
            vec![
                ("recv Prepared", recv(DEST, h, Prepared)),
                ("recv PrepareFailed", recv(DEST, h, failed())),
                ("recv Accept", recv(DEST, h, Accept)),
                ("recv Prepared (wrong peer)", recv(OTHER, h, Prepared)),
                ("PeerLost", peer_lost(DEST, h)),
                ("timer Transfer", fired(K::Transfer, h)),
                ("timer Offer (armed for the offer)", fired(K::Offer, h)),
                ("recv Resolve", recv(DEST, h, Resolve)),
            ],
        ),
        case(
            Giving,
            source_committing(),
            vec![
                ("Wrote moved: Durable", moved(Durable)),
                ("Wrote moved: Failed", moved(Failed)),
                ("recv Prepared", recv(DEST, h, Prepared)),
                ("PeerLost", peer_lost(DEST, h)),
                ("timer Transfer", fired(K::Transfer, h)),
                ("recv Resolve", recv(DEST, h, Resolve)),
            ],
        ),
        case(
            Giving,
            source_checking_commit(),
            vec![
                ("ReadBack: Landed", read_back(h, ReadBack::Landed)),
                ("ReadBack: Absent", read_back(h, ReadBack::Absent)),
                ("ReadBack: Failed", read_back(h, ReadBack::Failed)),
                ("timer ReadBack", fired(K::ReadBack, h)),
                ("PeerLost", peer_lost(DEST, h)),
                ("recv Resolve", recv(DEST, h, Resolve)),
            ],
        ),
        case(
            Giving,
            source_moved(),
            vec![
                ("recv Started", recv(DEST, h, Started)),
                ("recv Deferred", recv(DEST, h, Deferred)),
                ("recv Started (stale hand-off)", recv(DEST, STALE, Started)),
                ("recv Resolve", recv(DEST, h, Resolve)),
                ("recv Resolve (from another host)", recv(OTHER, h, Resolve)),
                ("recv Resolve (stale hand-off)", recv(DEST, STALE, Resolve)),
                ("MoveRequested", move_to(OTHER, NEWER)),
            ],
        ),
        case(
            Giving,
            source_finished(),
            vec![
                ("MoveRequested", move_to(DEST, h)),
                ("recv Offer", offer(DEST, NEWER, 2)),
                ("recv Resolve", recv(DEST, h, Resolve)),
            ],
        ),
        case(
            Receiving,
            dest_empty(Config::default()),
            vec![
                ("recv Offer", offer(SOURCE, h, 1)),
                ("recv Offer (from itself)", offer(DEST, h, 1)),
                ("recv Commit", recv(SOURCE, h, Commit)),
            ],
        ),
        case(
            Receiving,
            full_dest,
            vec![("recv Offer (max_tasks reached)", offer(SOURCE, h, 1))],
        ),
        case(
            Receiving,
            busy_dest,
            vec![("recv Offer (max_arriving reached)", offer(SOURCE, h, 1))],
        ),
        case(
            Receiving,
            dest_receiving(),
            vec![
                ("ImageChecked: ok", image_checked(h, Ok(()))),
                (
                    "ImageChecked: err",
                    image_checked(h, Err("bad checksum".into())),
                ),
                ("recv Abort", recv(SOURCE, h, Abort)),
                ("recv Commit", recv(SOURCE, h, Commit)),
                ("recv Image", recv(SOURCE, h, Image)),
                ("recv Abort (wrong peer)", recv(OTHER, h, Abort)),
                ("PeerLost", peer_lost(SOURCE, h)),
                ("timer Image", fired(K::Image, h)),
                ("recv Offer (the same hand-off again)", offer(SOURCE, h, 1)),
                (
                    "recv Offer (a newer hand-off, same source)",
                    offer(SOURCE, NEWER, 1),
                ),
                ("recv Offer (from another host)", offer(OTHER, NEWER, 1)),
            ],
        ),
        case(
            Receiving,
            dest_recording(),
            vec![
                ("Wrote prepared: Durable", prepared(Durable)),
                ("Wrote prepared: Failed", prepared(Failed)),
                ("recv Abort", recv(SOURCE, h, Abort)),
                ("recv Commit", recv(SOURCE, h, Commit)),
                ("PeerLost", peer_lost(SOURCE, h)),
                ("timer Image", fired(K::Image, h)),
            ],
        ),
        case(
            Receiving,
            aborted_while_recording,
            vec![(
                "Wrote prepared: Durable (of the aborted hand-off)",
                prepared(Durable),
            )],
        ),
        case(
            Receiving,
            dest_prepared(),
            vec![
                ("recv Commit", recv(SOURCE, h, Commit)),
                ("recv Abort", recv(SOURCE, h, Abort)),
                (
                    "recv Resolution(Committed)",
                    resolution(Resolution::Committed),
                ),
                ("recv Resolution(Aborted)", resolution(Resolution::Aborted)),
                ("recv Resolution(Pending)", resolution(Resolution::Pending)),
                ("recv Commit (wrong peer)", recv(OTHER, h, Commit)),
                ("recv Commit (stale hand-off)", recv(SOURCE, STALE, Commit)),
                ("PeerLost", peer_lost(SOURCE, h)),
                ("timer Decision", fired(K::Decision, h)),
                ("timer Image (armed for the image)", fired(K::Image, h)),
                ("timer Resolve", fired(K::Resolve, h)),
                (
                    "recv Offer (a newer hand-off, same source)",
                    offer(SOURCE, NEWER, 1),
                ),
                ("recv Offer (from another host)", offer(OTHER, NEWER, 1)),
            ],
        ),
        case(
            Receiving,
            dest_in_doubt(),
            vec![
                ("recv Commit", recv(SOURCE, h, Commit)),
                ("recv Abort", recv(SOURCE, h, Abort)),
                (
                    "recv Resolution(Committed)",
                    resolution(Resolution::Committed),
                ),
                ("recv Resolution(Aborted)", resolution(Resolution::Aborted)),
                ("recv Resolution(Pending)", resolution(Resolution::Pending)),
                ("timer Resolve", fired(K::Resolve, h)),
                ("timer Decision", fired(K::Decision, h)),
                ("PeerLost", peer_lost(SOURCE, h)),
                (
                    "recv Offer (a newer hand-off, same source)",
                    offer(SOURCE, NEWER, 1),
                ),
            ],
        ),
        case(
            Receiving,
            dest_committing(),
            vec![
                ("Wrote owner: Durable", owner(Durable)),
                ("Wrote owner: Failed", owner(Failed)),
                ("recv Abort", recv(SOURCE, h, Abort)),
                ("PeerLost", peer_lost(SOURCE, h)),
                (
                    "recv Offer (a newer hand-off, same source)",
                    offer(SOURCE, NEWER, 1),
                ),
            ],
        ),
        case(
            Receiving,
            dest_commit_retry(),
            vec![
                ("timer OwnerRetry", fired(K::OwnerRetry, h)),
                ("recv Abort", recv(SOURCE, h, Abort)),
                ("PeerLost", peer_lost(SOURCE, h)),
            ],
        ),
        case(
            Receiving,
            dest_running(),
            vec![("recv Offer", offer(OTHER, NEWER, 2))],
        ),
        case(
            Receiving,
            source_moved(),
            vec![
                ("recv Offer (epoch newer)", offer(DEST, NEWER, 2)),
                ("recv Offer (epoch not newer)", offer(DEST, NEWER, 1)),
            ],
        ),
        case(
            Recovery,
            in_doubt,
            vec![
                (
                    "recv Resolution(Committed)",
                    resolution(Resolution::Committed),
                ),
                ("recv Resolution(Aborted)", resolution(Resolution::Aborted)),
                ("recv Resolution(Pending)", resolution(Resolution::Pending)),
                ("timer Resolve", fired(K::Resolve, h)),
                (
                    "recv Offer (a newer hand-off, same source)",
                    offer(SOURCE, NEWER, 4),
                ),
            ],
        ),
        case(
            Recovery,
            in_doubt_over_moved,
            vec![(
                "recv Resolution(Aborted) (moved at epoch 2 before)",
                resolution(Resolution::Aborted),
            )],
        ),
        case(Recovery, quarantined(), {
            vec![
                ("recv Resolve", recv(SOURCE, h, Resolve)),
                ("recv Offer", offer(SOURCE, h, 1)),
                ("MoveRequested", move_to(DEST, NEWER)),
            ]
        }),
        case(
            Recovery,
            moved_record_2,
            vec![
                (
                    "recv Resolve (from `c`, its destination)",
                    Event::Received {
                        from: OTHER.into(),
                        envelope: Envelope {
                            task: TASK,
                            handoff: OLDER,
                            body: Resolve,
                        },
                    },
                ),
                ("recv Offer (epoch newer)", offer(OTHER, NEWER, 3)),
            ],
        ),
    ]
}

/// A task's epoch records, `(epoch, record)`.
type Records = Vec<(u64, StoredRecord)>;

/// The restarts the table shows: what the records make of the task.
fn restarts() -> Vec<(&'static str, Records, bool)> {
    let owner = |epoch| (epoch, StoredRecord::Owner { handoff: OLDER });
    vec![
        ("records: none (spawned here)", vec![], false),
        ("records: owner@2", vec![owner(2)], false),
        ("records: moved@2", vec![moved_at_2()], false),
        ("records: prepared@3", vec![prepared_at_3()], false),
        (
            "records: prepared@3, moved@2 (any order)",
            vec![prepared_at_3(), moved_at_2()],
            false,
        ),
        (
            "records: prepared@2, owner@2",
            vec![owner(2), (2, prepared_at_3().1)],
            false,
        ),
        ("records: moved@2 + outcome", vec![moved_at_2()], true),
    ]
}

/// Every row of the table, in order.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for Case { side, host, events } in cases() {
        let state = host.phase_name(TASK);
        let mut refused_kinds = BTreeSet::new();
        for (event, input) in events {
            let mut next_host = host.clone();
            let (next, commands) = match next_host.step(input) {
                Ok(commands) => (next_host.phase_name(TASK), short_commands(&commands)),
                Err(error) => {
                    if !refused_kinds.insert(kind(&event)) {
                        continue;
                    }
                    (format!("(refused: {})", error_kind(&error)), "—".into())
                }
            };
            rows.push(Row {
                side,
                state: state.clone(),
                event,
                next,
                commands,
            });
        }
    }
    for (event, records, finished) in restarts() {
        let stored = StoredTask {
            task: TASK,
            records,
            finished,
        };
        let (host, _, commands) = Host::recover(DEST, Config::default(), [stored]);
        rows.push(Row {
            side: Side::Recovery,
            state: "(restart)".into(),
            event: event.into(),
            next: host.phase_name(TASK),
            commands: short_commands(&commands),
        });
    }
    rows
}

/// The table as markdown: one table per side.
pub fn markdown() -> String {
    let rows = rows();
    let mut out = String::new();
    for (i, side) in [Side::Giving, Side::Receiving, Side::Recovery]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{}\n", side.title());
        out.push_str("| state | event | next state | commands |\n");
        out.push_str("|---|---|---|---|\n");
        let mut restarts = rows
            .iter()
            .filter(|r| r.side == side)
            .partition::<Vec<_>, _>(|r| r.state == "(restart)");
        // On the recovery side, the restarts come first: they make the phases below.
        restarts.0.append(&mut restarts.1);
        for row in restarts.0 {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.state, row.event, row.next, row.commands
            );
        }
    }
    out
}

/// What an event is, for keeping one refusal of each: a wrong peer or a stale hand-off are
/// their own kinds; otherwise the label up to its first detail.
fn kind(label: &str) -> String {
    if label.contains("(wrong peer)") {
        return "wrong peer".into();
    }
    if label.contains("(stale hand-off)") {
        return "stale hand-off".into();
    }
    let end = label.find(['(', ':']).unwrap_or(label.len());
    label[..end].trim().to_owned()
}

fn error_kind(error: &StepError) -> &'static str {
    match error {
        StepError::UnknownTask { .. } => "UnknownTask",
        StepError::NotApplicable { .. } => "NotApplicable",
        StepError::WrongPeer { .. } => "WrongPeer",
        StepError::StaleHandoff { .. } => "StaleHandoff",
        StepError::NotAllowed { .. } => "NotAllowed",
    }
}

fn short_commands(commands: &[Command]) -> String {
    if commands.is_empty() {
        return "—".into();
    }
    commands
        .iter()
        .map(short_command)
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_command(command: &Command) -> String {
    match command {
        Command::Send { envelope, .. } => format!("send {}", short_body(&envelope.body)),
        Command::Write { write, .. } => match write {
            Write::Prepared { .. } => "write prepared".into(),
            Write::Owner { .. } => "write owner".into(),
            Write::Moved { .. } => "write moved".into(),
        },
        Command::ReadMoved { .. } => "read moved".into(),
        Command::DiscardCopy { .. } => "discard copy".into(),
        Command::StartTask { .. } => "start task".into(),
        Command::ResumeTask { .. } => "resume task".into(),
        Command::HandOver { .. } => "hand over".into(),
        Command::Answer { outcome, .. } => format!("answer {}", short_outcome(outcome)),
        Command::ArmTimer { timer, .. } => format!("arm {:?}", timer.kind),
    }
}

fn short_body(body: &Body) -> String {
    match body {
        Body::Offer { .. } => "Offer".into(),
        Body::Refuse(refusal) => format!("Refuse({})", refusal_kind(refusal)),
        Body::PrepareFailed(_) => "PrepareFailed".into(),
        Body::Resolution(answer) => format!("Resolution({answer:?})"),
        Body::Accept
        | Body::Image
        | Body::Prepared
        | Body::Commit
        | Body::Abort
        | Body::Started
        | Body::Deferred
        | Body::Resolve => format!("{body:?}"),
    }
}

fn short_outcome(outcome: &MoveOutcome) -> String {
    match outcome {
        MoveOutcome::Moved => "Moved".into(),
        MoveOutcome::Refused(refusal) => format!("Refused({})", refusal_kind(refusal)),
        MoveOutcome::Rejected(_) => "Rejected".into(),
        MoveOutcome::Failed(_) => "Failed".into(),
        MoveOutcome::NotRecorded => "NotRecorded".into(),
    }
}

fn refusal_kind(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::UnknownType { .. } => "UnknownType",
        Refusal::VersionTooNew { .. } => "VersionTooNew",
        Refusal::SchemaMismatch { .. } => "SchemaMismatch",
        Refusal::UnsupportedEncoding { .. } => "UnsupportedEncoding",
        Refusal::TooLarge { .. } => "TooLarge",
        Refusal::NoCapacity { .. } => "NoCapacity",
        Refusal::StaleEpoch { .. } => "StaleEpoch",
        Refusal::Unavailable { .. } => "Unavailable",
        Refusal::Settling { .. } => "Settling",
        Refusal::Finished => "Finished",
        Refusal::Busy { .. } => "Busy",
        Refusal::NativeMismatch { .. } => "NativeMismatch",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- state-table:begin -->\n";
    const END: &str = "<!-- state-table:end -->";

    #[test]
    fn the_docs_show_the_state_table_of_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md");
        let docs = std::fs::read_to_string(path).expect("docs/architecture.md");
        let start = docs
            .find(BEGIN)
            .expect("the begin marker in docs/architecture.md")
            + BEGIN.len();
        let end = start
            + docs[start..]
                .find(END)
                .expect("the end marker in docs/architecture.md");
        let table = markdown();
        if docs[start..end] == table {
            return;
        }
        if std::env::var_os("COSMIC_BLESS").is_some_and(|v| v == "1") {
            let blessed = format!("{}{table}{}", &docs[..start], &docs[end..]);
            std::fs::write(path, blessed).expect("rewrite docs/architecture.md");
            return;
        }
        panic!(
            "the state table in docs/architecture.md differs from the machine's; rerun with \
             `COSMIC_BLESS=1 cargo test -p cosmic-runtime handoff::table` to rewrite it, and \
             read the diff:\n{table}"
        );
    }

    #[test]
    fn the_table_reaches_every_phase() {
        let rows = rows();
        let states: BTreeSet<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        for phase in [
            "Running",
            "Leaving/Offered",
            "Leaving/Transferring",
            "Leaving/Committing",
            "Leaving/CheckingCommit",
            "Moved",
            "Arriving/Receiving",
            "Arriving/Recording",
            "Arriving/Prepared",
            "Arriving/InDoubt",
            "Arriving/Committing",
            "Arriving/CommitRetry",
            "Finished",
            "Quarantined",
            "Unknown",
        ] {
            assert!(states.contains(phase), "no row starts in {phase}");
        }
        assert!((60..=130).contains(&rows.len()), "{} rows", rows.len());
        for row in &rows {
            for cell in [&row.state, &row.event, &row.next, &row.commands] {
                assert!(!cell.contains('|'), "a cell breaks the table: {cell}");
            }
        }
    }
}
