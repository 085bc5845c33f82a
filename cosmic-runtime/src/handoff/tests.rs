//! Unit tests of the hand-off machine: one test per transition, by the names of the
//! behaviours (the giving side in `source.rs`, the receiving side in `destination.rs`,
//! restarts in `recovery.rs`). The machines are driven into each phase by the builders of
//! the state table (`table.rs`), through real events only.

mod arbitrary;
mod destination;
mod recovery;
mod source;

use std::time::Duration;

use super::table::*;
use super::*;
use crate::transport::protocol::{Refusal, Resolution};

/// Steps `host` with an event it must refuse, and checks that the refusal changed nothing.
fn refused(host: &mut Host, event: Event) -> StepError {
    let before = host.clone();
    let shown = format!("{event:?}");
    let error = host
        .step(event)
        .expect_err(&format!("{} took {shown}", host.name()));
    assert_eq!(*host, before, "refusing {shown} changed the machine");
    error
}

fn send(to: &str, handoff: HandoffId, body: Body) -> Command {
    Command::Send {
        to: to.into(),
        envelope: Envelope {
            task: TASK,
            handoff,
            body,
        },
    }
}

fn arm(kind: TimerKind, handoff: HandoffId, after: Duration) -> Command {
    Command::ArmTimer {
        timer: timer(kind, handoff),
        after,
    }
}

fn answer(handoff: HandoffId, outcome: MoveOutcome) -> Command {
    Command::Answer {
        task: TASK,
        handoff,
        outcome,
    }
}

fn write(write: Write) -> Command {
    Command::Write { task: TASK, write }
}

fn discard(epoch: u64, handoff: HandoffId) -> Command {
    Command::DiscardCopy {
        task: TASK,
        epoch,
        handoff,
    }
}

fn phase(host: &Host) -> String {
    host.phase_name(TASK)
}

/// The default step timeout (and the deadline of a step that moves a small image).
const STEP: Duration = Duration::from_secs(10);

/// Every event of every kind, from every host, about the current, a newer and a stale
/// hand-off: what a machine in any phase may be fed.
fn every_event() -> Vec<Event> {
    let mut events = vec![
        Event::Spawned { task: TASK },
        Event::Finished { task: TASK },
        move_to(DEST, NEWER),
        move_to(OTHER, NEWER),
        move_to(SOURCE, NEWER),
    ];
    for handoff in [HANDOFF, NEWER, OLDER, STALE] {
        for peer in [SOURCE, DEST, OTHER] {
            let bodies = [
                Body::Offer {
                    epoch: 1,
                    size: SIZE,
                },
                Body::Offer {
                    epoch: 4,
                    size: SIZE,
                },
                Body::Accept,
                Body::Refuse(Refusal::Settling { handoff: OLDER }),
                Body::Refuse(Refusal::Finished),
                Body::Image,
                Body::Prepared,
                Body::PrepareFailed("no".into()),
                Body::Commit,
                Body::Abort,
                Body::Started,
                Body::Deferred,
                Body::Resolve,
                Body::Resolution(Resolution::Committed),
                Body::Resolution(Resolution::Aborted),
                Body::Resolution(Resolution::Pending),
            ];
            for body in bodies {
                events.push(recv(peer, handoff, body));
            }
            events.push(peer_lost(peer, handoff));
        }
        for epoch in [1, 3] {
            for result in [WriteResult::Durable, WriteResult::Failed] {
                events.push(wrote(moved_record(epoch, handoff, DEST), result));
                events.push(wrote(prepared_record(epoch, handoff, SOURCE), result));
                events.push(wrote(owner_record(epoch, handoff), result));
            }
        }
        for result in [ReadBack::Landed, ReadBack::Absent, ReadBack::Failed] {
            events.push(read_back(handoff, result));
        }
        for kind in [
            TimerKind::Offer,
            TimerKind::Transfer,
            TimerKind::ReadBack,
            TimerKind::Image,
            TimerKind::Decision,
            TimerKind::Resolve,
            TimerKind::OwnerRetry,
        ] {
            events.push(fired(kind, handoff));
        }
        events.push(image_checked(handoff, Ok(())));
        events.push(image_checked(handoff, Err("no".into())));
    }
    events
}

#[test]
fn every_refused_event_leaves_the_machine_unchanged() {
    let mut refusals = 0;
    for case in cases() {
        for event in every_event() {
            let mut host = case.host.clone();
            if host.step(event.clone()).is_err() {
                refusals += 1;
                assert_eq!(
                    host,
                    case.host,
                    "refusing {event:?} in {} changed the machine",
                    phase(&case.host)
                );
            }
        }
    }
    assert!(refusals > 1000, "only {refusals} refusals were tried");
}

#[test]
fn a_finished_task_is_a_tombstone() {
    let mut host = source_finished();
    let commands = must(&mut host, offer(DEST, NEWER, 5));
    assert_eq!(
        commands,
        [send(DEST, NEWER, Body::Refuse(Refusal::Finished))]
    );
    assert_eq!(phase(&host), "Finished");
    refused(&mut host, move_to(DEST, NEWER));
    refused(&mut host, Event::Spawned { task: TASK });
    refused(&mut host, Event::Finished { task: TASK });
    assert_eq!(host.occupied(), 0);
    host.forget(TASK);
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn forgetting_a_task_that_is_not_finished_does_nothing() {
    let mut host = source_offered();
    let before = host.clone();
    host.forget(TASK);
    assert_eq!(host, before);
}
