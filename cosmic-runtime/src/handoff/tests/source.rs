//! The giving side, and a whole hand-off between two machines.

use super::*;

fn resolve_answer(host: &mut Host, from: &str, handoff: HandoffId) -> Vec<Command> {
    must(host, recv(from, handoff, Body::Resolve))
}

fn resolution(to: &str, handoff: HandoffId, answer: Resolution) -> Vec<Command> {
    vec![send(to, handoff, Body::Resolution(answer))]
}

fn kept(tell: Option<&str>, outcome: MoveOutcome) -> Vec<Command> {
    let mut commands = Vec::new();
    if let Some(to) = tell {
        commands.push(send(to, HANDOFF, Body::Abort));
    }
    commands.push(Command::ResumeTask { task: TASK });
    commands.push(answer(HANDOFF, outcome));
    commands
}

fn committed(to: &str, epoch: u64) -> Vec<Command> {
    vec![
        Command::HandOver {
            task: TASK,
            to: to.into(),
            epoch,
            handoff: HANDOFF,
        },
        answer(HANDOFF, MoveOutcome::Moved),
        send(to, HANDOFF, Body::Commit),
    ]
}

#[test]
fn a_whole_hand_off_moves_the_task_and_its_epoch() {
    let (h, mut a, mut b) = (HANDOFF, source_running(), dest_empty(Config::default()));
    let offer_body = Body::Offer {
        epoch: 1,
        size: SIZE,
    };
    let out = must(&mut a, move_to(DEST, h));
    assert_eq!(
        out,
        [
            send(DEST, h, offer_body.clone()),
            arm(TimerKind::Offer, h, STEP)
        ]
    );
    let out = must(&mut b, recv(SOURCE, h, offer_body));
    assert_eq!(
        out,
        [
            send(SOURCE, h, Body::Accept),
            arm(TimerKind::Image, h, STEP)
        ]
    );
    let out = must(&mut a, recv(DEST, h, Body::Accept));
    assert_eq!(
        out,
        [
            send(DEST, h, Body::Image),
            arm(TimerKind::Transfer, h, STEP)
        ]
    );
    // The driver receives the image, checks it and tells its machine.
    let out = must(&mut b, image_checked(h, Ok(())));
    assert_eq!(out, [write(prepared_record(1, h, SOURCE))]);
    let out = must(
        &mut b,
        wrote(prepared_record(1, h, SOURCE), WriteResult::Durable),
    );
    assert_eq!(
        out,
        [
            send(SOURCE, h, Body::Prepared),
            arm(TimerKind::Decision, h, STEP)
        ]
    );
    let out = must(&mut a, recv(DEST, h, Body::Prepared));
    assert_eq!(out, [write(moved_record(1, h, DEST))]);
    assert_eq!(a.epoch(TASK), Some(0), "not moved before the commit record");
    let out = must(
        &mut a,
        wrote(moved_record(1, h, DEST), WriteResult::Durable),
    );
    assert_eq!(out, committed(DEST, 1));
    assert_eq!(
        a.phase(TASK),
        Some(&Phase::Moved {
            to: DEST.into(),
            handoff: h
        })
    );
    assert_eq!(a.epoch(TASK), Some(1));
    let out = must(&mut b, recv(SOURCE, h, Body::Commit));
    assert_eq!(out, [write(owner_record(1, h))]);
    let out = must(&mut b, wrote(owner_record(1, h), WriteResult::Durable));
    let start = Command::StartTask {
        task: TASK,
        handoff: h,
        epoch: 1,
    };
    assert_eq!(out, [start, send(SOURCE, h, Body::Started)]);
    assert_eq!((phase(&b), b.epoch(TASK)), ("Running".into(), Some(1)));
    assert_eq!(must(&mut a, recv(DEST, h, Body::Started)), []);
    assert_eq!(phase(&a), "Moved");
}

#[test]
fn an_image_step_deadline_grows_with_the_image() {
    let mut host = source_running();
    let size = 100 << 20;
    let event = Event::MoveRequested {
        task: TASK,
        handoff: HANDOFF,
        to: DEST.into(),
        size,
    };
    must(&mut host, event);
    let out = must(&mut host, recv(DEST, HANDOFF, Body::Accept));
    let deadline = STEP + Duration::from_millis(100 * 20);
    assert_eq!(out[1], arm(TimerKind::Transfer, HANDOFF, deadline));
}

#[test]
fn a_refused_offer_leaves_the_task_running_here() {
    let mut host = source_offered();
    let refusal = Refusal::StaleEpoch {
        offered: 1,
        known: 3,
    };
    let out = must(
        &mut host,
        recv(DEST, HANDOFF, Body::Refuse(refusal.clone())),
    );
    assert_eq!(out, kept(None, MoveOutcome::Refused(refusal)));
    assert_eq!(
        (phase(&host), host.epoch(TASK)),
        ("Running".into(), Some(0))
    );
}

#[test]
fn a_failed_prepare_leaves_the_task_running_here() {
    for mut host in [source_offered(), source_transferring()] {
        let why = "the image does not decode".to_owned();
        let out = must(
            &mut host,
            recv(DEST, HANDOFF, Body::PrepareFailed(why.clone())),
        );
        assert_eq!(out, kept(None, MoveOutcome::Rejected(why)));
        assert_eq!(phase(&host), "Running");
    }
}

#[test]
fn losing_the_destination_before_the_commit_record_keeps_the_task() {
    for mut host in [source_offered(), source_transferring()] {
        let out = must(&mut host, peer_lost(DEST, HANDOFF));
        let why = "lost the connection to `b`".to_owned();
        assert_eq!(out, kept(Some(DEST), MoveOutcome::Failed(why)));
        assert_eq!(phase(&host), "Running");
    }
}

#[test]
fn losing_the_destination_after_the_commit_record_is_asked_for_changes_nothing() {
    for mut host in [source_committing(), source_checking_commit()] {
        let before = host.clone();
        assert_eq!(must(&mut host, peer_lost(DEST, HANDOFF)), []);
        assert_eq!(host, before);
    }
}

#[test]
fn losing_another_host_is_refused_as_a_wrong_peer() {
    let error = refused(&mut source_offered(), peer_lost(OTHER, HANDOFF));
    assert!(matches!(error, StepError::WrongPeer { .. }), "{error:?}");
}

#[test]
fn a_step_timer_before_the_commit_record_keeps_the_task() {
    for (mut host, kind, what) in [
        (source_offered(), TimerKind::Offer, "the offer"),
        (source_transferring(), TimerKind::Transfer, "the copy"),
    ] {
        let out = must(&mut host, fired(kind, HANDOFF));
        let why = format!("`b` did not answer {what} in time");
        assert_eq!(out, kept(Some(DEST), MoveOutcome::Failed(why)));
        assert_eq!(phase(&host), "Running");
    }
}

#[test]
fn a_step_timer_while_the_commit_record_is_written_is_stale() {
    for mut host in [source_committing(), source_checking_commit()] {
        let error = refused(&mut host, fired(TimerKind::Transfer, HANDOFF));
        assert!(
            matches!(error, StepError::NotApplicable { .. }),
            "{error:?}"
        );
    }
    let error = refused(&mut source_moved(), fired(TimerKind::Transfer, HANDOFF));
    assert!(matches!(error, StepError::StaleHandoff { .. }), "{error:?}");
}

#[test]
fn a_commit_record_that_failed_is_read_back() {
    let mut host = source_committing();
    let out = must(
        &mut host,
        wrote(moved_record(1, HANDOFF, DEST), WriteResult::Failed),
    );
    let read = Command::ReadMoved {
        task: TASK,
        epoch: 1,
        handoff: HANDOFF,
    };
    assert_eq!(out, [read]);
    assert_eq!(phase(&host), "Leaving/CheckingCommit");
}

#[test]
fn a_commit_record_that_failed_but_landed_commits() {
    let mut host = source_checking_commit();
    let out = must(&mut host, read_back(HANDOFF, ReadBack::Landed));
    assert_eq!(out, committed(DEST, 1));
    assert_eq!((phase(&host), host.epoch(TASK)), ("Moved".into(), Some(1)));
    let out = resolve_answer(&mut host, DEST, HANDOFF);
    assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Committed));
}

#[test]
fn a_commit_record_that_failed_and_is_absent_keeps_the_task() {
    let mut host = source_checking_commit();
    let out = must(&mut host, read_back(HANDOFF, ReadBack::Absent));
    assert_eq!(out, kept(Some(DEST), MoveOutcome::NotRecorded));
    assert_eq!(
        (phase(&host), host.epoch(TASK)),
        ("Running".into(), Some(0))
    );
    let out = resolve_answer(&mut host, DEST, HANDOFF);
    assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Aborted));
}

#[test]
fn a_read_back_that_failed_is_retried_until_the_store_answers() {
    let mut host = source_checking_commit();
    let out = must(&mut host, read_back(HANDOFF, ReadBack::Failed));
    let retry = Duration::from_millis(10);
    assert_eq!(out, [arm(TimerKind::ReadBack, HANDOFF, retry)]);
    assert_eq!(phase(&host), "Leaving/CheckingCommit");
    let out = must(&mut host, fired(TimerKind::ReadBack, HANDOFF));
    let read = Command::ReadMoved {
        task: TASK,
        epoch: 1,
        handoff: HANDOFF,
    };
    assert_eq!(out, std::slice::from_ref(&read));
    // Each failed read waits twice as long as the one before, up to 5 s.
    for expected in [20, 40, 80] {
        let out = must(&mut host, read_back(HANDOFF, ReadBack::Failed));
        let retry = Duration::from_millis(expected);
        assert_eq!(out, [arm(TimerKind::ReadBack, HANDOFF, retry)]);
        assert_eq!(
            must(&mut host, fired(TimerKind::ReadBack, HANDOFF)),
            std::slice::from_ref(&read)
        );
    }
    let out = must(&mut host, read_back(HANDOFF, ReadBack::Landed));
    assert_eq!(out, committed(DEST, 1));
}

#[test]
fn a_read_back_outside_checking_the_commit_is_refused() {
    for mut host in [source_committing(), source_transferring()] {
        refused(&mut host, read_back(HANDOFF, ReadBack::Landed));
        refused(&mut host, fired(TimerKind::ReadBack, HANDOFF));
    }
}

#[test]
fn only_a_running_task_moves_and_never_to_its_own_host() {
    let error = refused(&mut source_running(), move_to(SOURCE, HANDOFF));
    assert!(matches!(error, StepError::NotAllowed { .. }), "{error:?}");
    for mut host in [source_offered(), source_moved(), source_finished()] {
        let error = refused(&mut host, move_to(DEST, NEWER));
        assert!(matches!(error, StepError::NotAllowed { .. }), "{error:?}");
    }
    let error = refused(&mut dest_empty(Config::default()), move_to(DEST, NEWER));
    assert!(matches!(error, StepError::UnknownTask { .. }), "{error:?}");
}

#[test]
fn messages_of_another_hand_off_or_from_another_host_are_refused() {
    let mut host = source_transferring();
    let error = refused(&mut host, recv(DEST, STALE, Body::Prepared));
    assert!(matches!(error, StepError::StaleHandoff { .. }), "{error:?}");
    let error = refused(&mut host, recv(OTHER, HANDOFF, Body::Prepared));
    assert!(matches!(error, StepError::WrongPeer { .. }), "{error:?}");
    let error = refused(&mut host, recv(DEST, HANDOFF, Body::Accept));
    assert!(
        matches!(error, StepError::NotApplicable { .. }),
        "{error:?}"
    );
    let error = refused(&mut source_moved(), recv(OTHER, HANDOFF, Body::Started));
    assert!(matches!(error, StepError::StaleHandoff { .. }), "{error:?}");
}

#[test]
fn started_or_deferred_after_the_commit_changes_nothing() {
    for body in [Body::Started, Body::Deferred] {
        let mut host = source_moved();
        let before = host.clone();
        assert_eq!(must(&mut host, recv(DEST, HANDOFF, body)), []);
        assert_eq!(host, before);
    }
}

#[test]
fn a_source_answers_pending_while_the_hand_off_is_leaving() {
    for mut host in [
        source_offered(),
        source_transferring(),
        source_committing(),
        source_checking_commit(),
    ] {
        let out = resolve_answer(&mut host, DEST, HANDOFF);
        assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Pending));
    }
}

#[test]
fn a_source_answers_committed_after_the_commit() {
    let out = resolve_answer(&mut source_moved(), DEST, HANDOFF);
    assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Committed));
}

#[test]
fn a_source_answers_aborted_otherwise() {
    let mut timed_out = source_transferring();
    must(&mut timed_out, fired(TimerKind::Transfer, HANDOFF));
    for mut host in [timed_out, source_running(), source_finished()] {
        let out = resolve_answer(&mut host, DEST, HANDOFF);
        assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Aborted));
    }
    let out = resolve_answer(&mut source_moved(), DEST, STALE);
    assert_eq!(out, resolution(DEST, STALE, Resolution::Aborted));
    let out = resolve_answer(&mut dest_empty(Config::default()), SOURCE, STALE);
    assert_eq!(out, resolution(SOURCE, STALE, Resolution::Aborted));
}

#[test]
fn a_source_answers_aborted_to_a_host_that_was_not_the_destination() {
    for mut host in [source_offered(), source_committing(), source_moved()] {
        let out = resolve_answer(&mut host, OTHER, HANDOFF);
        assert_eq!(out, resolution(OTHER, HANDOFF, Resolution::Aborted));
    }
}

#[test]
fn a_settling_refusal_settles_the_older_copy_then_offers_again() {
    let mut host = source_offered();
    let settling = Body::Refuse(Refusal::Settling { handoff: OLDER });
    let out = must(&mut host, recv(DEST, HANDOFF, settling));
    let offer_body = Body::Offer {
        epoch: 1,
        size: SIZE,
    };
    assert_eq!(
        out,
        [
            send(DEST, OLDER, Body::Resolution(Resolution::Aborted)),
            send(DEST, HANDOFF, offer_body),
            arm(TimerKind::Offer, HANDOFF, STEP),
        ]
    );
    let Some(Phase::Leaving(leaving)) = host.phase(TASK) else {
        panic!("not leaving: {}", phase(&host));
    };
    assert_eq!(
        (leaving.step, leaving.settle_tries),
        (LeaveStep::Offered, 1)
    );
}

#[test]
fn settling_refusals_are_bounded_by_three_tries() {
    let mut host = source_offered();
    let settling = Refusal::Settling { handoff: OLDER };
    for _ in 0..3 {
        let out = must(
            &mut host,
            recv(DEST, HANDOFF, Body::Refuse(settling.clone())),
        );
        assert_eq!(out.len(), 3, "{out:?}");
    }
    let out = must(
        &mut host,
        recv(DEST, HANDOFF, Body::Refuse(settling.clone())),
    );
    assert_eq!(out, kept(None, MoveOutcome::Refused(settling)));
    assert_eq!(phase(&host), "Running");
}

#[test]
fn a_settling_refusal_naming_this_very_hand_off_gives_up() {
    let mut host = source_offered();
    let settling = Refusal::Settling { handoff: HANDOFF };
    let out = must(
        &mut host,
        recv(DEST, HANDOFF, Body::Refuse(settling.clone())),
    );
    assert_eq!(out, kept(None, MoveOutcome::Refused(settling)));
}

#[test]
fn an_older_copy_in_doubt_is_settled_before_a_newer_offer_is_taken() {
    // `b` holds a prepared copy of hand-off OLDER that `a` gave up (its abort was lost).
    let mut b = dest_empty(Config::default());
    must(&mut b, offer(SOURCE, OLDER, 1));
    must(&mut b, image_checked(OLDER, Ok(())));
    must(
        &mut b,
        wrote(prepared_record(1, OLDER, SOURCE), WriteResult::Durable),
    );
    must(&mut b, peer_lost(SOURCE, OLDER));
    assert_eq!(phase(&b), "Arriving/InDoubt");
    let mut a = source_offered();
    let offer_body = Body::Offer {
        epoch: 1,
        size: SIZE,
    };
    let out = must(&mut b, recv(SOURCE, HANDOFF, offer_body.clone()));
    let settling = Refusal::Settling { handoff: OLDER };
    assert_eq!(out, [send(SOURCE, HANDOFF, Body::Refuse(settling.clone()))]);
    let out = must(&mut a, recv(DEST, HANDOFF, Body::Refuse(settling)));
    let unasked = Body::Resolution(Resolution::Aborted);
    assert_eq!(
        out[..2],
        [
            send(DEST, OLDER, unasked.clone()),
            send(DEST, HANDOFF, offer_body.clone())
        ]
    );
    assert_eq!(
        must(&mut b, recv(SOURCE, OLDER, unasked)),
        [discard(1, OLDER)]
    );
    assert_eq!(phase(&b), "Unknown");
    let out = must(&mut b, recv(SOURCE, HANDOFF, offer_body));
    assert_eq!(out[0], send(SOURCE, HANDOFF, Body::Accept));
    must(&mut a, recv(DEST, HANDOFF, Body::Accept));
    assert_eq!(phase(&a), "Leaving/Transferring");
}

/// Bug (reported, not fixed): the `Step` timer armed with the offer and the one armed with
/// the image are the same `Timer` (task, hand-off, `Step`). Unless the driver replaces a
/// timer re-armed with the same identity (the simulation does not), the offer's timer fires
/// `step_timeout` after the offer while the image is still within its own, longer deadline
/// (`deadline_for(size)`), and the machine aborts the transfer: MoveRequested (arm Step
/// 10 s) → recv Accept (arm Step 10 s + 20 ms/MiB) → TimerFired(Step) at 10 s → send Abort,
/// resume task, answer Failed("`b` did not answer the copy in time").
#[test]
fn the_offer_step_timer_does_not_cut_the_image_deadline_short() {
    let mut host = source_running();
    let event = Event::MoveRequested {
        task: TASK,
        handoff: HANDOFF,
        to: DEST.into(),
        size: 1 << 30,
    };
    let offered = must(&mut host, event);
    let transferring = must(&mut host, recv(DEST, HANDOFF, Body::Accept));
    let timer_of = |commands: &[Command]| {
        commands.iter().find_map(|c| match c {
            Command::ArmTimer { timer, .. } => Some(*timer),
            _ => None,
        })
    };
    assert_ne!(timer_of(&offered), timer_of(&transferring));
}

#[test]
fn a_moved_task_learned_finished_is_a_tombstone_that_still_answers_its_commit() {
    let mut host = source_moved();
    host.learned_finished(TASK);
    assert_eq!(phase(&host), "Finished");
    assert_eq!(host.occupied(), 0);
    let out = must(&mut host, offer(DEST, NEWER, 5));
    assert_eq!(out, [send(DEST, NEWER, Body::Refuse(Refusal::Finished))]);
    let out = resolve_answer(&mut host, DEST, HANDOFF);
    assert_eq!(out, resolution(DEST, HANDOFF, Resolution::Committed));
    // Only a forwarding entry is turned into a tombstone.
    let running = source_offered();
    let mut still = running.clone();
    still.learned_finished(TASK);
    assert_eq!(still, running);
}
