//! Any sequence of events, however forged, reordered or repeated, is taken or refused: the
//! machine never panics (peers choose the messages it is fed), a refused event leaves it
//! unchanged, and a task's settled epoch never goes back.

use proptest::prelude::*;

use super::*;

const HOSTS: [&str; 3] = [SOURCE, DEST, OTHER];
const HANDOFFS: [HandoffId; 3] = [HANDOFF, NEWER, OLDER];
const TASKS: [TaskId; 2] = [TASK, TaskId(2)];

fn refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        Just(Refusal::Finished),
        Just(Refusal::NoCapacity { running: 1 }),
        (0..3usize).prop_map(|h| Refusal::Settling {
            handoff: HANDOFFS[h]
        }),
        (0..4u64).prop_map(|e| Refusal::StaleEpoch {
            offered: e,
            known: e
        }),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (0..4u64, 0..(1u64 << 31)).prop_map(|(epoch, size)| Body::Offer { epoch, size }),
        Just(Body::Accept),
        refusal().prop_map(Body::Refuse),
        Just(Body::Image),
        Just(Body::Prepared),
        Just(Body::PrepareFailed("no".into())),
        Just(Body::Commit),
        Just(Body::Abort),
        Just(Body::Started),
        Just(Body::Deferred),
        Just(Body::Resolve),
        prop_oneof![
            Just(Resolution::Committed),
            Just(Resolution::Aborted),
            Just(Resolution::Pending)
        ]
        .prop_map(Body::Resolution),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    (0..3usize, 0..4u64, 0..3usize).prop_flat_map(|(h, epoch, peer)| {
        let handoff = HANDOFFS[h];
        let peer = HOSTS[peer].to_owned();
        prop_oneof![
            Just(Write::Prepared {
                epoch,
                handoff,
                from: peer.clone()
            }),
            Just(Write::Owner { epoch, handoff }),
            Just(Write::Moved {
                epoch,
                handoff,
                to: peer
            }),
        ]
    })
}

fn event() -> impl Strategy<Value = Event> {
    let task = (0..2usize).prop_map(|t| TASKS[t]);
    let handoff = (0..3usize).prop_map(|h| HANDOFFS[h]);
    let host = (0..3usize).prop_map(|h| HOSTS[h].to_owned());
    let kind = prop_oneof![
        Just(TimerKind::Offer),
        Just(TimerKind::Transfer),
        Just(TimerKind::ReadBack),
        Just(TimerKind::Image),
        Just(TimerKind::Decision),
        Just(TimerKind::Resolve),
        Just(TimerKind::OwnerRetry),
    ];
    prop_oneof![
        task.clone().prop_map(|task| Event::Spawned { task }),
        task.clone().prop_map(|task| Event::Finished { task }),
        (task.clone(), handoff.clone(), host.clone(), 0..(1u64 << 20)).prop_map(
            |(task, handoff, to, size)| Event::MoveRequested {
                task,
                handoff,
                to,
                size
            }
        ),
        (host.clone(), task.clone(), handoff.clone(), body()).prop_map(
            |(from, task, handoff, body)| Event::Received {
                from,
                envelope: Envelope {
                    task,
                    handoff,
                    body
                }
            }
        ),
        (host, task.clone(), handoff.clone()).prop_map(|(peer, task, handoff)| Event::PeerLost {
            peer,
            task,
            handoff
        }),
        (task.clone(), handoff.clone(), any::<bool>()).prop_map(|(task, handoff, ok)| {
            Event::ImageChecked {
                task,
                handoff,
                result: if ok { Ok(()) } else { Err("bad".into()) },
            }
        }),
        (task.clone(), write(), any::<bool>()).prop_map(|(task, write, ok)| Event::Wrote {
            task,
            write,
            result: if ok {
                WriteResult::Durable
            } else {
                WriteResult::Failed
            },
        }),
        (task.clone(), handoff.clone(), 0..3u8).prop_map(|(task, handoff, r)| {
            Event::ReadBack {
                task,
                handoff,
                result: [ReadBack::Landed, ReadBack::Absent, ReadBack::Failed][r as usize],
            }
        }),
        (task, handoff, kind).prop_map(|(task, handoff, kind)| Event::TimerFired(Timer {
            task,
            handoff,
            kind
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_sequence_of_events_is_taken_or_refused_without_a_panic(
        events in prop::collection::vec(event(), 1..60),
        start in 0..4usize,
    ) {
        let mut host = match start {
            0 => source_running(),
            1 => dest_prepared(),
            2 => dest_in_doubt(),
            _ => source_transferring(),
        };
        for event in events {
            let before = host.clone();
            match host.step(event) {
                Ok(_) => {
                    for (task, _, epoch) in host.tasks() {
                        if let Some(old) = before.epoch(task) {
                            prop_assert!(epoch >= old, "task {task:?} went back from {old} to {epoch}");
                        }
                    }
                }
                Err(_) => prop_assert_eq!(&host, &before),
            }
            // The load kept as phases change is the load counted from scratch.
            prop_assert_eq!((host.occupied(), host.arriving()), {
                let mut fresh = host.clone();
                fresh.set_load(fresh.recount());
                (fresh.occupied(), fresh.arriving())
            });
        }
    }
}
