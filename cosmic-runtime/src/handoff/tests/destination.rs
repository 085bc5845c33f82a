//! The receiving side: judging offers, taking the copy, the decision, and settling doubt.

use super::*;

fn offer_answer(host: &mut Host, from: &str, handoff: HandoffId, epoch: u64) -> Vec<Command> {
    must(host, offer(from, handoff, epoch))
}

fn refusal(to: &str, handoff: HandoffId, refusal: Refusal) -> Vec<Command> {
    vec![send(to, handoff, Body::Refuse(refusal))]
}

fn accepted(to: &str, handoff: HandoffId) -> Vec<Command> {
    vec![
        send(to, handoff, Body::Accept),
        arm(TimerKind::Image, handoff, STEP),
    ]
}

fn asked(after_ms: u64) -> Vec<Command> {
    vec![
        send(SOURCE, HANDOFF, Body::Resolve),
        arm(TimerKind::Resolve, HANDOFF, Duration::from_millis(after_ms)),
    ]
}

fn backoff(host: &Host) -> u64 {
    match host.phase(TASK) {
        Some(Phase::Arriving(a)) => a.backoff_ms,
        other => panic!("not arriving: {other:?}"),
    }
}

#[test]
fn an_offer_of_an_unknown_task_is_accepted() {
    let mut host = dest_empty(Config::default());
    assert_eq!(
        offer_answer(&mut host, SOURCE, HANDOFF, 7),
        accepted(SOURCE, HANDOFF)
    );
    let Some(Phase::Arriving(arriving)) = host.phase(TASK) else {
        panic!("not arriving: {}", phase(&host));
    };
    assert_eq!(
        (
            arriving.step,
            arriving.epoch,
            &arriving.from,
            &arriving.prior
        ),
        (ArriveStep::Receiving, 7, &SOURCE.to_owned(), &None)
    );
    assert_eq!((host.occupied(), host.arriving()), (1, (1, SIZE)));
}

#[test]
fn an_offer_of_a_task_running_or_leaving_here_is_refused_as_stale() {
    let mut host = dest_running();
    let stale = Refusal::StaleEpoch {
        offered: 2,
        known: 1,
    };
    assert_eq!(
        offer_answer(&mut host, OTHER, NEWER, 2),
        refusal(OTHER, NEWER, stale)
    );
    assert_eq!(phase(&host), "Running");
    let mut host = source_offered();
    let stale = Refusal::StaleEpoch {
        offered: 5,
        known: 0,
    };
    assert_eq!(
        offer_answer(&mut host, OTHER, NEWER, 5),
        refusal(OTHER, NEWER, stale)
    );
    assert_eq!(phase(&host), "Leaving/Offered");
}

#[test]
fn an_offer_not_newer_than_the_move_is_refused_as_stale() {
    let mut host = source_moved();
    let stale = Refusal::StaleEpoch {
        offered: 1,
        known: 1,
    };
    assert_eq!(
        offer_answer(&mut host, DEST, NEWER, 1),
        refusal(DEST, NEWER, stale)
    );
    assert_eq!(phase(&host), "Moved");
}

#[test]
fn an_offer_newer_than_the_move_is_accepted_and_an_abort_restores_the_move() {
    let mut host = source_moved();
    assert_eq!(
        offer_answer(&mut host, DEST, NEWER, 2),
        accepted(DEST, NEWER)
    );
    assert_eq!(
        (phase(&host), host.epoch(TASK)),
        ("Arriving/Receiving".into(), Some(1))
    );
    assert_eq!(must(&mut host, recv(DEST, NEWER, Body::Abort)), []);
    let moved = Phase::Moved {
        to: DEST.into(),
        handoff: HANDOFF,
    };
    assert_eq!(
        (host.phase(TASK), host.epoch(TASK)),
        (Some(&moved), Some(1))
    );
    let out = must(&mut host, recv(DEST, HANDOFF, Body::Resolve));
    assert_eq!(
        out,
        [send(DEST, HANDOFF, Body::Resolution(Resolution::Committed))]
    );
}

#[test]
fn an_offer_of_a_finished_task_is_refused_as_finished() {
    let out = offer_answer(&mut source_finished(), DEST, NEWER, 9);
    assert_eq!(out, refusal(DEST, NEWER, Refusal::Finished));
}

#[test]
fn an_offer_while_another_host_s_copy_arrives_is_unavailable() {
    for mut host in [dest_receiving(), dest_prepared(), dest_in_doubt()] {
        let before = host.clone();
        let out = offer_answer(&mut host, OTHER, NEWER, 1);
        assert!(
            matches!(&out[..], [Command::Send { to, envelope }]
                if to == OTHER && matches!(envelope.body, Body::Refuse(Refusal::Unavailable { .. }))),
            "{out:?}"
        );
        assert_eq!(host, before);
    }
}

#[test]
fn an_offer_from_the_same_host_while_its_copy_is_in_doubt_is_settling() {
    for mut host in [dest_prepared(), dest_in_doubt()] {
        let settling = Refusal::Settling { handoff: HANDOFF };
        let out = offer_answer(&mut host, SOURCE, NEWER, 1);
        assert_eq!(out, refusal(SOURCE, NEWER, settling));
    }
}

#[test]
fn an_offer_from_the_same_host_while_its_copy_is_not_prepared_is_unavailable() {
    for mut host in [
        dest_receiving(),
        dest_recording(),
        dest_committing(),
        dest_commit_retry(),
    ] {
        let out = offer_answer(&mut host, SOURCE, NEWER, 1);
        assert!(
            matches!(&out[..], [Command::Send { envelope, .. }]
                if matches!(envelope.body, Body::Refuse(Refusal::Unavailable { .. }))),
            "{out:?}"
        );
    }
}

#[test]
fn a_repeated_offer_is_refused() {
    let error = refused(&mut dest_receiving(), offer(SOURCE, HANDOFF, 1));
    assert!(
        matches!(error, StepError::NotApplicable { .. }),
        "{error:?}"
    );
}

#[test]
fn an_offer_from_this_very_host_is_unavailable() {
    let mut host = dest_empty(Config::default());
    let out = offer_answer(&mut host, DEST, HANDOFF, 1);
    assert!(
        matches!(&out[..], [Command::Send { envelope, .. }]
            if matches!(envelope.body, Body::Refuse(Refusal::Unavailable { .. }))),
        "{out:?}"
    );
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn an_offer_beyond_max_tasks_is_refused_for_capacity() {
    let config = Config {
        max_tasks: 1,
        ..Config::default()
    };
    let mut host = dest_empty(config);
    must(&mut host, Event::Spawned { task: TaskId(2) });
    let out = offer_answer(&mut host, SOURCE, HANDOFF, 1);
    assert_eq!(
        out,
        refusal(SOURCE, HANDOFF, Refusal::NoCapacity { running: 1 })
    );
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn an_offer_beyond_the_arrivals_bound_is_refused_as_busy() {
    let other = |host: &mut Host| {
        let envelope = Envelope {
            task: TaskId(2),
            handoff: NEWER,
            body: Body::Offer {
                epoch: 1,
                size: SIZE,
            },
        };
        let from = OTHER.into();
        must(host, Event::Received { from, envelope });
    };
    let by_count = Config {
        max_arriving: 1,
        ..Config::default()
    };
    let by_bytes = Config {
        max_arriving_bytes: 2 * SIZE - 1,
        ..Config::default()
    };
    for config in [by_count, by_bytes] {
        let mut host = dest_empty(config);
        other(&mut host);
        let busy = Refusal::Busy {
            arriving: 1,
            bytes: SIZE,
        };
        assert_eq!(
            offer_answer(&mut host, SOURCE, HANDOFF, 1),
            refusal(SOURCE, HANDOFF, busy)
        );
    }
}

#[test]
fn an_image_that_does_not_check_is_rejected_and_forgotten() {
    let mut host = dest_receiving();
    let out = must(
        &mut host,
        image_checked(HANDOFF, Err("bad checksum".into())),
    );
    assert_eq!(
        out,
        [send(
            SOURCE,
            HANDOFF,
            Body::PrepareFailed("bad checksum".into())
        )]
    );
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn an_image_checked_twice_is_refused() {
    let error = refused(&mut dest_recording(), image_checked(HANDOFF, Ok(())));
    assert!(
        matches!(error, StepError::NotApplicable { .. }),
        "{error:?}"
    );
}

#[test]
fn an_image_message_is_for_the_driver_not_the_machine() {
    refused(&mut dest_receiving(), recv(SOURCE, HANDOFF, Body::Image));
}

#[test]
fn a_prepared_write_that_failed_discards_the_copy_and_tells_the_source() {
    let mut host = dest_recording();
    let out = must(
        &mut host,
        wrote(prepared_record(1, HANDOFF, SOURCE), WriteResult::Failed),
    );
    let failed = Body::PrepareFailed("could not record the copy".into());
    assert_eq!(out, [discard(1, HANDOFF), send(SOURCE, HANDOFF, failed)]);
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn a_prepared_write_that_lands_after_an_abort_is_discarded() {
    let mut host = dest_recording();
    assert_eq!(must(&mut host, recv(SOURCE, HANDOFF, Body::Abort)), []);
    assert_eq!(host.phase(TASK), None);
    let late = wrote(prepared_record(1, HANDOFF, SOURCE), WriteResult::Durable);
    assert_eq!(must(&mut host, late), [discard(1, HANDOFF)]);
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn a_commit_of_a_prepared_or_doubted_copy_writes_the_owner_record() {
    for mut host in [dest_prepared(), dest_in_doubt()] {
        let out = must(&mut host, recv(SOURCE, HANDOFF, Body::Commit));
        assert_eq!(out, [write(owner_record(1, HANDOFF))]);
        assert_eq!(phase(&host), "Arriving/Committing");
    }
}

#[test]
fn a_commit_before_the_copy_is_prepared_is_refused() {
    for mut host in [dest_receiving(), dest_recording()] {
        let error = refused(&mut host, recv(SOURCE, HANDOFF, Body::Commit));
        assert!(
            matches!(error, StepError::NotApplicable { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn an_abort_of_a_prepared_or_doubted_copy_discards_it() {
    for mut host in [dest_prepared(), dest_in_doubt()] {
        let out = must(&mut host, recv(SOURCE, HANDOFF, Body::Abort));
        assert_eq!(out, [discard(1, HANDOFF)]);
        assert_eq!(host.phase(TASK), None);
    }
}

#[test]
fn an_abort_while_receiving_forgets_the_offer() {
    let mut host = dest_receiving();
    assert_eq!(must(&mut host, recv(SOURCE, HANDOFF, Body::Abort)), []);
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn an_abort_after_the_commit_is_refused() {
    for mut host in [dest_committing(), dest_commit_retry()] {
        let error = refused(&mut host, recv(SOURCE, HANDOFF, Body::Abort));
        assert!(
            matches!(error, StepError::NotApplicable { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn a_decision_from_a_host_that_is_not_the_source_is_refused() {
    for body in [
        Body::Commit,
        Body::Abort,
        Body::Resolution(Resolution::Committed),
    ] {
        let error = refused(&mut dest_in_doubt(), recv(OTHER, HANDOFF, body.clone()));
        assert!(matches!(error, StepError::WrongPeer { .. }), "{error:?}");
        let error = refused(&mut dest_in_doubt(), recv(SOURCE, STALE, body));
        assert!(matches!(error, StepError::StaleHandoff { .. }), "{error:?}");
    }
}

#[test]
fn a_resolution_settles_a_prepared_or_doubted_copy() {
    for host in [dest_prepared(), dest_in_doubt()] {
        let resolution = |answer| recv(SOURCE, HANDOFF, Body::Resolution(answer));
        let mut committed = host.clone();
        let out = must(&mut committed, resolution(Resolution::Committed));
        assert_eq!(out, [write(owner_record(1, HANDOFF))]);
        let mut aborted = host.clone();
        let out = must(&mut aborted, resolution(Resolution::Aborted));
        assert_eq!(out, [discard(1, HANDOFF)]);
        assert_eq!(aborted.phase(TASK), None);
        let mut pending = host.clone();
        assert_eq!(must(&mut pending, resolution(Resolution::Pending)), []);
        assert_eq!(pending, host);
    }
}

#[test]
fn a_resolution_outside_doubt_is_refused() {
    for mut host in [
        dest_receiving(),
        dest_recording(),
        dest_committing(),
        dest_commit_retry(),
    ] {
        let answer = Body::Resolution(Resolution::Committed);
        let error = refused(&mut host, recv(SOURCE, HANDOFF, answer));
        assert!(
            matches!(error, StepError::NotApplicable { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn losing_the_source_of_a_prepared_copy_puts_it_in_doubt_and_asks() {
    let mut host = dest_prepared();
    assert_eq!(must(&mut host, peer_lost(SOURCE, HANDOFF)), asked(20));
    assert_eq!(
        (phase(&host), backoff(&host)),
        ("Arriving/InDoubt".into(), 40)
    );
}

#[test]
fn the_decision_timer_of_a_prepared_copy_puts_it_in_doubt_and_asks() {
    let mut host = dest_prepared();
    assert_eq!(
        must(&mut host, fired(TimerKind::Decision, HANDOFF)),
        asked(20)
    );
    assert_eq!(phase(&host), "Arriving/InDoubt");
}

#[test]
fn a_copy_in_doubt_asks_again_doubling_the_delay_up_to_resolve_max() {
    let config = Config {
        resolve_min: Duration::from_millis(20),
        resolve_max: Duration::from_millis(100),
        ..Config::default()
    };
    let mut host = dest_empty(config);
    must(&mut host, offer(SOURCE, HANDOFF, 1));
    must(&mut host, image_checked(HANDOFF, Ok(())));
    must(
        &mut host,
        wrote(prepared_record(1, HANDOFF, SOURCE), WriteResult::Durable),
    );
    assert_eq!(must(&mut host, peer_lost(SOURCE, HANDOFF)), asked(20));
    for delay in [40, 80, 100, 100] {
        assert_eq!(
            must(&mut host, fired(TimerKind::Resolve, HANDOFF)),
            asked(delay)
        );
    }
    assert_eq!(phase(&host), "Arriving/InDoubt");
}

#[test]
fn losing_the_source_while_receiving_forgets_the_offer() {
    let mut host = dest_receiving();
    assert_eq!(must(&mut host, peer_lost(SOURCE, HANDOFF)), []);
    assert_eq!(host.phase(TASK), None);
    let mut host = dest_receiving();
    assert_eq!(must(&mut host, fired(TimerKind::Image, HANDOFF)), []);
    assert_eq!(host.phase(TASK), None);
}

#[test]
fn losing_the_source_while_writing_or_in_doubt_changes_nothing() {
    for mut host in [
        dest_recording(),
        dest_in_doubt(),
        dest_committing(),
        dest_commit_retry(),
    ] {
        let before = host.clone();
        assert_eq!(must(&mut host, peer_lost(SOURCE, HANDOFF)), []);
        assert_eq!(host, before);
    }
}

#[test]
fn timers_of_another_step_are_stale() {
    let cases = [
        (dest_recording(), TimerKind::Image),
        (dest_prepared(), TimerKind::Resolve),
        (dest_prepared(), TimerKind::Image),
        (dest_in_doubt(), TimerKind::Decision),
        (dest_committing(), TimerKind::OwnerRetry),
    ];
    for (mut host, kind) in cases {
        let error = refused(&mut host, fired(kind, HANDOFF));
        assert!(
            matches!(error, StepError::NotApplicable { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn an_owner_record_that_failed_defers_and_retries() {
    let mut host = dest_committing();
    let out = must(
        &mut host,
        wrote(owner_record(1, HANDOFF), WriteResult::Failed),
    );
    let retry = arm(TimerKind::OwnerRetry, HANDOFF, Duration::from_millis(50));
    assert_eq!(out, [send(SOURCE, HANDOFF, Body::Deferred), retry]);
    assert_eq!(phase(&host), "Arriving/CommitRetry");
    let out = must(&mut host, fired(TimerKind::OwnerRetry, HANDOFF));
    assert_eq!(out, [write(owner_record(1, HANDOFF))]);
    // A second failure waits twice as long.
    let out = must(
        &mut host,
        wrote(owner_record(1, HANDOFF), WriteResult::Failed),
    );
    let retry = arm(TimerKind::OwnerRetry, HANDOFF, Duration::from_millis(100));
    assert_eq!(out, [send(SOURCE, HANDOFF, Body::Deferred), retry]);
    let out = must(&mut host, fired(TimerKind::OwnerRetry, HANDOFF));
    assert_eq!(out, [write(owner_record(1, HANDOFF))]);
    let out = must(
        &mut host,
        wrote(owner_record(1, HANDOFF), WriteResult::Durable),
    );
    let start = Command::StartTask {
        task: TASK,
        handoff: HANDOFF,
        epoch: 1,
    };
    assert_eq!(out, [start, send(SOURCE, HANDOFF, Body::Started)]);
    assert_eq!(
        (phase(&host), host.epoch(TASK)),
        ("Running".into(), Some(1))
    );
}

/// Bug (reported, not fixed): the `Arrival` timer armed with the `Accept` (for the image,
/// `deadline_for(size)`) and the one armed with `Prepared` (for the decision,
/// `step_timeout`) are the same `Timer`. Unless the driver replaces a re-armed timer, the
/// first fires while the copy is prepared and puts it in doubt before the source had its
/// `step_timeout` to decide: recv Offer (arm Arrival) → ImageChecked ok → Wrote prepared
/// Durable (arm Arrival) → TimerFired(Arrival) of the Accept → InDoubt, send Resolve.
#[test]
fn the_image_arrival_timer_does_not_put_a_prepared_copy_in_doubt() {
    let mut host = dest_empty(Config::default());
    let accepted = must(&mut host, offer(SOURCE, HANDOFF, 1));
    must(&mut host, image_checked(HANDOFF, Ok(())));
    let prepared = must(
        &mut host,
        wrote(prepared_record(1, HANDOFF, SOURCE), WriteResult::Durable),
    );
    let timer_of = |commands: &[Command]| {
        commands.iter().find_map(|c| match c {
            Command::ArmTimer { timer, .. } => Some(*timer),
            _ => None,
        })
    };
    assert_ne!(timer_of(&accepted), timer_of(&prepared));
}
