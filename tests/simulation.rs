//! Deterministic simulation of the hand-off machine (`cosmic_runtime::handoff`): 3 to 5
//! hosts' machines over a simulated network (loss, delay, duplication, reordering,
//! partitions), simulated stores (writes lost before they are durable, writes that land but
//! report an error, torn temporary files), crashes and restarts at any event, and a simulated
//! clock, all decided by one seed. After every event it checks the invariants; at the end it
//! heals everything and checks that every hand-off settled.
//!
//! Run: `cargo test --release -p cosmic-tests --test simulation -- --nocapture`
//! - `COSMIC_SIM_SCHEDULES=N` sets the number of schedules (default 20,000 in release, a
//!   100-schedule smoke run in a debug build such as `cargo test --workspace`);
//! - `COSMIC_SIM_SEED=S` replays one schedule (a failure prints the command);
//! - `COSMIC_SIM_BASE_SEED=B` fixes where the seeds start (default: from the clock, printed);
//! - `COSMIC_SIM_COUNT_FAILURES=1` runs every schedule and counts the failing ones;
//! - a soak: `COSMIC_SIM_SCHEDULES=10000000 cargo test --release -p cosmic-tests --test
//!   simulation -- --nocapture` (about 4 hours here; every run explores new seeds).
//!
//! `scripts/sim-mutants.sh` shows it bites: it runs the simulation against deliberately broken
//! transitions (`cosmic_runtime::handoff::mutants`) and fails unless each one is caught.
//!
//! The simulation drives the same machine the runtime's drivers do; the drivers themselves
//! (sockets, files) are exercised by the real-TCP and SIGKILL tests (`migrate_*.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use cosmic_runtime::handoff::{
    Body, Command, Config, Envelope, Event, Host, Phase, ReadBack, Recovered, StoredRecord,
    StoredTask, Timer, Write, WriteResult,
};
use cosmic_runtime::task::TaskId;

use cosmic_tests::sim_rng::SimRng as Rng;

/// What a host's store holds durably.
#[derive(Debug, Clone, Default)]
struct Store {
    /// Task records (written at spawn, and with the `owner` record on arrival).
    known: BTreeSet<TaskId>,
    records: BTreeMap<TaskId, Vec<(u64, StoredRecord)>>,
    outcomes: BTreeSet<TaskId>,
    /// Temporary files a crash tore (never renamed into place; recovery must ignore them).
    torn: u32,
}

impl Store {
    /// Applies a write that lands. `Ok(false)`: a write-once record of another content is
    /// there (the store refuses it).
    fn apply(&mut self, task: TaskId, write: &Write, size: u64) -> bool {
        let records = self.records.entry(task).or_default();
        match write {
            Write::Prepared {
                epoch,
                handoff,
                from,
            } => {
                records
                    .retain(|(e, r)| !(*e == *epoch && matches!(r, StoredRecord::Prepared { .. })));
                records.push((
                    *epoch,
                    StoredRecord::Prepared {
                        handoff: *handoff,
                        from: from.clone(),
                        size,
                    },
                ));
                true
            }
            Write::Owner { epoch, handoff } => {
                let record = StoredRecord::Owner { handoff: *handoff };
                let ok = write_once(records, *epoch, record);
                if ok {
                    self.known.insert(task);
                }
                ok
            }
            Write::Moved { epoch, handoff, to } => {
                let record = StoredRecord::Moved {
                    handoff: *handoff,
                    to: to.clone(),
                };
                write_once(records, *epoch, record)
            }
        }
    }

    fn has_moved(&self, task: TaskId, epoch: u64, handoff: u64) -> bool {
        self.records.get(&task).is_some_and(|records| {
            records.iter().any(|(e, r)| {
                *e == epoch && matches!(r, StoredRecord::Moved { handoff: h, .. } if *h == handoff)
            })
        })
    }

    fn discard(&mut self, task: TaskId, epoch: u64, handoff: u64) {
        if let Some(records) = self.records.get_mut(&task) {
            records.retain(|(e, r)| {
                !(*e == epoch
                    && matches!(r, StoredRecord::Prepared { handoff: h, .. } if *h == handoff))
            });
        }
    }

    /// What a restarting host reads (a task with nothing but leftovers is skipped, as the
    /// runtime removes an unfinished spawn's leftovers).
    fn stored(&self) -> Vec<StoredTask> {
        let ids: BTreeSet<TaskId> = self
            .known
            .iter()
            .chain(self.records.keys())
            .chain(self.outcomes.iter())
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|task| {
                let records = self.records.get(&task).cloned().unwrap_or_default();
                if records.is_empty()
                    && !self.known.contains(&task)
                    && !self.outcomes.contains(&task)
                {
                    return None;
                }
                Some(StoredTask {
                    task,
                    records,
                    finished: self.outcomes.contains(&task),
                })
            })
            .collect()
    }

    /// What this store alone says of `task` after a restart: whether it would run here.
    fn would_run(&self, task: TaskId) -> bool {
        if self.outcomes.contains(&task) {
            return false;
        }
        let mut records = self.records.get(&task).cloned().unwrap_or_default();
        records.sort_by_key(|(e, r)| (*e, !matches!(r, StoredRecord::Prepared { .. })));
        match records.last() {
            None => self.known.contains(&task),
            Some((_, StoredRecord::Owner { .. })) => true,
            _ => false,
        }
    }
}

fn write_once(records: &mut Vec<(u64, StoredRecord)>, epoch: u64, record: StoredRecord) -> bool {
    let same_kind = |r: &StoredRecord| std::mem::discriminant(r) == std::mem::discriminant(&record);
    match records.iter().find(|(e, r)| *e == epoch && same_kind(r)) {
        Some((_, existing)) => *existing == record,
        None => {
            records.push((epoch, record));
            true
        }
    }
}

struct SimHost {
    name: String,
    /// `None` while crashed.
    machine: Option<Host>,
    /// Bumped at every crash: events meant for an older incarnation are dropped.
    incarnation: u32,
    store: Store,
}

#[derive(Debug, Clone)]
enum Action {
    Deliver {
        from: usize,
        to: usize,
        envelope: Envelope,
    },
    Timer {
        host: usize,
        incarnation: u32,
        timer: Timer,
        /// Which arming this is (a later one replaces it).
        armed: u64,
    },
    WriteDone {
        host: usize,
        incarnation: u32,
        task: TaskId,
        write: Write,
        size: u64,
    },
    ReadDone {
        host: usize,
        incarnation: u32,
        task: TaskId,
        epoch: u64,
        handoff: u64,
    },
    PeerLost {
        host: usize,
        incarnation: u32,
        peer: String,
        task: TaskId,
        handoff: u64,
    },
    /// The world: ask a random running task to move, finish one, crash or restart a host,
    /// cut or heal the network.
    World,
    Restart {
        host: usize,
    },
    Heal {
        a: usize,
        b: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    loss: u64,
    duplicate: u64,
    write_fails: u64,
    crash: u64,
    partition: u64,
}

const CALM: Faults = Faults {
    loss: 0,
    duplicate: 0,
    write_fails: 0,
    crash: 0,
    partition: 0,
};

struct Sim {
    #[allow(dead_code)]
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    actions: Vec<Option<Action>>,
    hosts: Vec<SimHost>,
    tasks: Vec<TaskId>,
    /// Cut links, both directions.
    cut: BTreeSet<(usize, usize)>,
    faults: Faults,
    world_until: u64,
    /// The highest epoch each host has settled for each task.
    epochs: BTreeMap<(usize, TaskId), u64>,
    /// How many outcomes each task recorded.
    outcomes: BTreeMap<TaskId, u32>,
    /// The latest arming of each timer: arming one again replaces it (the machine's contract).
    armed: BTreeMap<(usize, Timer), u64>,
    trace: VecDeque<String>,
    events: u64,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    moves_asked: u64,
    moves_committed: u64,
    crashes: u64,
    events: u64,
}

const TRACE_LINES: usize = 80;

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let host_count = 3 + rng.below(3) as usize;
        let config = Config {
            step_timeout: Duration::from_millis(200 + rng.below(300)),
            max_tasks: 2 + rng.below(4) as usize,
            max_arriving: 1 + rng.below(3) as usize,
            max_arriving_bytes: 1 << 20,
            resolve_min: Duration::from_millis(5),
            resolve_max: Duration::from_millis(200),
        };
        let hosts = (0..host_count)
            .map(|i| SimHost {
                name: format!("h{i}"),
                machine: Some(Host::new(format!("h{i}"), config.clone())),
                incarnation: 0,
                store: Store::default(),
            })
            .collect();
        let faults = Faults {
            loss: rng.below(15),
            duplicate: rng.below(10),
            write_fails: rng.below(15),
            crash: rng.below(6),
            partition: rng.below(6),
        };
        let mut sim = Sim {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            actions: Vec::new(),
            hosts,
            tasks: Vec::new(),
            cut: BTreeSet::new(),
            faults,
            world_until: 3_000 + seed % 4_000,
            epochs: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            armed: BTreeMap::new(),
            trace: VecDeque::new(),
            events: 0,
            stats: Stats::default(),
        };
        let task_count = 1 + sim.rng.below(4);
        for t in 0..task_count {
            let host = sim.rng.below(host_count as u64) as usize;
            let task = TaskId::from_raw(0x100 + t);
            sim.tasks.push(task);
            sim.hosts[host].store.known.insert(task);
            let machine = sim.hosts[host].machine.as_mut().expect("up");
            machine.step(Event::Spawned { task }).expect("spawn");
            sim.epochs.insert((host, task), 0);
        }
        sim.schedule(1, Action::World);
        sim
    }

    fn schedule(&mut self, after: u64, action: Action) {
        self.seq += 1;
        self.actions.push(Some(action));
        let index = self.actions.len() - 1;
        self.queue
            .push(Reverse((self.now + after, self.seq, index)));
    }

    fn note(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("t={:>6} {line}", self.now));
    }

    /// Whether `host` is up and still the incarnation an event was meant for (events of an
    /// incarnation that crashed are dropped, as its process would have been).
    fn is_current(&self, host: usize, incarnation: u32) -> bool {
        self.hosts[host].incarnation == incarnation && self.hosts[host].machine.is_some()
    }

    fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Runs the schedule; `Err` describes the first broken invariant.
    fn run(&mut self) -> Result<(), String> {
        // Phase 1: the world acts, with faults.
        while let Some(Reverse((at, _, index))) = self.queue.pop() {
            self.now = at;
            let Some(action) = self.actions[index].take() else {
                continue;
            };
            self.perform(action)?;
            self.check()?;
            self.events += 1;
            if self.events > 200_000 {
                return Err("more than 200,000 events: a loop that never settles".into());
            }
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::World => self.world(),
            Action::Restart { host } => {
                self.restart(host);
                Ok(())
            }
            Action::Heal { a, b } => {
                self.cut.remove(&(a, b));
                self.cut.remove(&(b, a));
                self.note(format!("heal h{a}-h{b}"));
                Ok(())
            }
            Action::Deliver { from, to, envelope } => {
                if self.hosts[to].machine.is_none() || self.cut.contains(&(from, to)) {
                    self.note(format!("lost h{from}->h{to} {envelope:?}"));
                    self.connection_broke(from, to, &envelope);
                    return Ok(());
                }
                let from_name = self.hosts[from].name.clone();
                let event = if envelope.body == Body::Image {
                    Event::ImageChecked {
                        task: envelope.task,
                        handoff: envelope.handoff,
                        result: Ok(()),
                    }
                } else {
                    Event::Received {
                        from: from_name,
                        envelope,
                    }
                };
                self.feed(to, event)
            }
            Action::Timer {
                host,
                incarnation,
                timer,
                armed,
            } => {
                if !self.is_current(host, incarnation) {
                    return Ok(());
                }
                if self.armed.get(&(host, timer)) != Some(&armed) {
                    return Ok(()); // replaced by a later arming
                }
                self.feed(host, Event::TimerFired(timer))
            }
            Action::WriteDone {
                host,
                incarnation,
                task,
                write,
                size,
            } => {
                if !self.is_current(host, incarnation) {
                    return Ok(());
                }
                let roll = self.rng.below(100);
                let fails = self.faults.write_fails;
                let (lands, result) = if roll < fails / 3 {
                    (true, WriteResult::Failed) // landed, but the store reported an error
                } else if roll < 2 * fails / 3 {
                    (false, WriteResult::Failed) // lost before it was durable
                } else if roll < fails {
                    self.hosts[host].store.torn += 1; // a torn temporary file
                    (false, WriteResult::Failed)
                } else {
                    (true, WriteResult::Durable)
                };
                let result = if lands && !self.hosts[host].store.apply(task, &write, size) {
                    WriteResult::Failed
                } else {
                    result
                };
                self.note(format!("h{host} wrote {write:?} landed={lands} {result:?}"));
                self.feed(
                    host,
                    Event::Wrote {
                        task,
                        write,
                        result,
                    },
                )
            }
            Action::ReadDone {
                host,
                incarnation,
                task,
                epoch,
                handoff,
            } => {
                if !self.is_current(host, incarnation) {
                    return Ok(());
                }
                let result = if self.rng.chance(self.faults.write_fails) {
                    ReadBack::Failed
                } else if self.hosts[host].store.has_moved(task, epoch, handoff) {
                    ReadBack::Landed
                } else {
                    ReadBack::Absent
                };
                self.feed(
                    host,
                    Event::ReadBack {
                        task,
                        handoff,
                        result,
                    },
                )
            }
            Action::PeerLost {
                host,
                incarnation,
                peer,
                task,
                handoff,
            } => {
                if !self.is_current(host, incarnation) {
                    return Ok(());
                }
                self.feed(
                    host,
                    Event::PeerLost {
                        peer,
                        task,
                        handoff,
                    },
                )
            }
        }
    }

    /// A message was lost: the connection it travelled on broke, and either end may notice.
    fn connection_broke(&mut self, from: usize, to: usize, envelope: &Envelope) {
        for (host, peer) in [(from, to), (to, from)] {
            if self.hosts[host].machine.is_some() && self.rng.chance(50) {
                let action = Action::PeerLost {
                    host,
                    incarnation: self.hosts[host].incarnation,
                    peer: self.hosts[peer].name.clone(),
                    task: envelope.task,
                    handoff: envelope.handoff,
                };
                let after = 1 + self.rng.below(30);
                self.schedule(after, action);
            }
        }
    }

    fn world(&mut self) -> Result<(), String> {
        if self.now >= self.world_until {
            return self.heal_all();
        }
        let roll = self.rng.below(100);
        let up: Vec<usize> = (0..self.hosts.len())
            .filter(|&h| self.hosts[h].machine.is_some())
            .collect();
        if roll < self.faults.crash {
            if let Some(host) = self.rng.pick(&up) {
                self.crash(host);
            }
        } else if roll < self.faults.crash + self.faults.partition {
            let a = self.rng.below(self.hosts.len() as u64) as usize;
            let b = self.rng.below(self.hosts.len() as u64) as usize;
            if a != b {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
                self.note(format!("cut h{a}-h{b}"));
                let after = 50 + self.rng.below(1_500);
                self.schedule(after, Action::Heal { a, b });
            }
        } else if roll < 97 {
            // Ask a running task to move.
            let mut running = Vec::new();
            for &h in &up {
                let machine = self.hosts[h].machine.as_ref().expect("up");
                for (task, phase, _) in machine.tasks() {
                    if *phase == Phase::Running {
                        running.push((h, task));
                    }
                }
            }
            if let Some((host, task)) = self.rng.pick(&running) {
                let to = self.rng.below(self.hosts.len() as u64) as usize;
                if to != host {
                    let handoff = self.rng.next();
                    let size = 1 + self.rng.below(1 << 16);
                    self.stats.moves_asked += 1;
                    let to = self.hosts[to].name.clone();
                    self.feed(
                        host,
                        Event::MoveRequested {
                            task,
                            handoff,
                            to,
                            size,
                        },
                    )?;
                }
            }
        } else {
            // Finish a running task: its outcome is durable, then the machine hears of it.
            let mut running = Vec::new();
            for &h in &up {
                let machine = self.hosts[h].machine.as_ref().expect("up");
                for (task, phase, _) in machine.tasks() {
                    if *phase == Phase::Running {
                        running.push((h, task));
                    }
                }
            }
            if let Some((host, task)) = self.rng.pick(&running) {
                *self.outcomes.entry(task).or_default() += 1;
                self.hosts[host].store.outcomes.insert(task);
                self.note(format!("h{host} finished {task:?}"));
                if self.outcomes[&task] > 1 {
                    return Err(format!("task {task:?} recorded its outcome twice"));
                }
                self.feed(host, Event::Finished { task })?;
            }
        }
        let after = 5 + self.rng.below(60);
        self.schedule(after, Action::World);
        Ok(())
    }

    /// The end of the faults: the network heals, every host comes back, stores stop failing;
    /// whatever is in flight must now settle.
    fn heal_all(&mut self) -> Result<(), String> {
        self.note("heal everything".into());
        self.faults = CALM;
        self.cut.clear();
        for host in 0..self.hosts.len() {
            if self.hosts[host].machine.is_none() {
                self.restart(host);
            }
        }
        Ok(())
    }

    fn crash(&mut self, host: usize) {
        self.stats.crashes += 1;
        self.note(format!("CRASH h{host}"));
        // Writes in flight land or not, whole (a store writes a temporary file and renames it).
        let pending: Vec<(TaskId, Write, u64)> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Some(Action::WriteDone {
                    host: h,
                    incarnation,
                    task,
                    write,
                    size,
                }) if *h == host && *incarnation == self.hosts[host].incarnation => {
                    Some((*task, write.clone(), *size))
                }
                _ => None,
            })
            .collect();
        for (task, write, size) in pending {
            if self.rng.chance(50) {
                self.hosts[host].store.apply(task, &write, size);
            } else {
                self.hosts[host].store.torn += 1;
            }
        }
        self.hosts[host].machine = None;
        self.hosts[host].incarnation += 1;
        let after = 20 + self.rng.below(800);
        self.schedule(after, Action::Restart { host });
    }

    fn restart(&mut self, host: usize) {
        if self.hosts[host].machine.is_some() {
            return;
        }
        let config = self.config();
        let (machine, recovered, commands) = Host::recover(
            self.hosts[host].name.clone(),
            config,
            self.hosts[host].store.stored(),
        );
        self.note(format!("RESTART h{host}: {recovered:?}"));
        for (task, verdict) in &recovered {
            if let Recovered::Run { .. } = verdict {
                let _ = task;
            }
        }
        self.hosts[host].machine = Some(machine);
        self.carry_out(host, commands);
    }

    fn config(&self) -> Config {
        self.hosts
            .iter()
            .find_map(|h| h.machine.as_ref().map(|m| m.config().clone()))
            .unwrap_or_else(|| Config {
                step_timeout: Duration::from_millis(300),
                max_tasks: 4,
                max_arriving: 2,
                max_arriving_bytes: 1 << 20,
                resolve_min: Duration::from_millis(5),
                resolve_max: Duration::from_millis(200),
            })
    }

    fn feed(&mut self, host: usize, event: Event) -> Result<(), String> {
        self.stats.events += 1;
        let machine = self.hosts[host].machine.as_mut().expect("fed only when up");
        let before = machine.clone();
        let described = format!("{event:?}");
        match machine.step(event) {
            Ok(commands) => {
                self.note(format!("h{host} <- {described} => {commands:?}"));
                self.carry_out(host, commands);
                Ok(())
            }
            Err(error) => {
                self.note(format!("h{host} <- {described} => Err({error})"));
                if *self.hosts[host].machine.as_ref().expect("up") != before {
                    return Err(format!(
                        "h{host}: a refused event changed the machine ({error})"
                    ));
                }
                Ok(())
            }
        }
    }

    fn carry_out(&mut self, host: usize, commands: Vec<Command>) {
        let incarnation = self.hosts[host].incarnation;
        for command in commands {
            match command {
                Command::Send { to, envelope } => {
                    let Some(to) = self.host_index(&to) else {
                        continue;
                    };
                    if self.rng.chance(self.faults.loss) {
                        self.note(format!("drop h{host}->h{to} {envelope:?}"));
                        self.connection_broke(host, to, &envelope);
                        continue;
                    }
                    let copies = if self.rng.chance(self.faults.duplicate) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let delay = 1 + self.rng.below(40);
                        self.schedule(
                            delay,
                            Action::Deliver {
                                from: host,
                                to,
                                envelope: envelope.clone(),
                            },
                        );
                    }
                }
                Command::Write { task, write } => {
                    let size = match self.hosts[host]
                        .machine
                        .as_ref()
                        .and_then(|m| m.phase(task))
                    {
                        Some(Phase::Arriving(a)) => a.size,
                        _ => 0,
                    };
                    let delay = 1 + self.rng.below(20);
                    self.schedule(
                        delay,
                        Action::WriteDone {
                            host,
                            incarnation,
                            task,
                            write,
                            size,
                        },
                    );
                }
                Command::ReadMoved {
                    task,
                    epoch,
                    handoff,
                } => {
                    let delay = 1 + self.rng.below(10);
                    self.schedule(
                        delay,
                        Action::ReadDone {
                            host,
                            incarnation,
                            task,
                            epoch,
                            handoff,
                        },
                    );
                }
                Command::DiscardCopy {
                    task,
                    epoch,
                    handoff,
                } => self.hosts[host].store.discard(task, epoch, handoff),
                Command::ArmTimer { timer, after } => {
                    let after = after.as_millis() as u64;
                    let armed = self.seq + 1;
                    self.armed.insert((host, timer), armed);
                    self.schedule(
                        after.max(1),
                        Action::Timer {
                            host,
                            incarnation,
                            timer,
                            armed,
                        },
                    );
                }
                Command::Answer { outcome, .. } => {
                    if outcome == cosmic_runtime::handoff::MoveOutcome::Moved {
                        self.stats.moves_committed += 1;
                    }
                }
                Command::StartTask { .. }
                | Command::ResumeTask { .. }
                | Command::HandOver { .. } => {}
            }
        }
    }

    /// The invariants, after every event.
    fn check(&mut self) -> Result<(), String> {
        for &task in &self.tasks {
            // A task's live state is on at most one host.
            let live: Vec<usize> = (0..self.hosts.len())
                .filter(|&h| {
                    self.hosts[h]
                        .machine
                        .as_ref()
                        .and_then(|m| m.phase(task))
                        .is_some_and(Phase::holds_live_state)
                })
                .collect();
            if live.len() > 1 {
                return Err(format!("task {task:?} is live on hosts {live:?}"));
            }
            // And the stores agree: at most one would run it after a restart of everyone.
            let durable: Vec<usize> = (0..self.hosts.len())
                .filter(|&h| self.hosts[h].store.would_run(task))
                .collect();
            if durable.len() > 1 {
                return Err(format!(
                    "task {task:?} would run on hosts {durable:?} after a restart"
                ));
            }
            // A finished task never runs again.
            if self.outcomes.contains_key(&task) && !live.is_empty() {
                return Err(format!("finished task {task:?} is live on h{}", live[0]));
            }
            // A committed move is never lost: the destination of every durable `moved`
            // record holds a durable copy of that hand-off, or has moved on.
            for (h, host) in self.hosts.iter().enumerate() {
                for (epoch, record) in host.store.records.get(&task).into_iter().flatten() {
                    let StoredRecord::Moved { handoff, to } = record else {
                        continue;
                    };
                    let Some(d) = self.host_index(to) else {
                        return Err(format!("h{h} moved {task:?} to unknown host {to}"));
                    };
                    let dest = &self.hosts[d].store;
                    let held = dest.outcomes.contains(&task)
                        || dest.records.get(&task).into_iter().flatten().any(|(e, r)| {
                            *e > *epoch
                                || (*e == *epoch
                                    && matches!(r, StoredRecord::Prepared { handoff: x, .. } | StoredRecord::Owner { handoff: x } if x == handoff))
                        });
                    if !held {
                        return Err(format!(
                            "task {task:?}: h{h} committed hand-off {handoff:x} to {to} at epoch {epoch}, which holds no copy of it"
                        ));
                    }
                }
            }
        }
        // Epochs never go back.
        for (h, host) in self.hosts.iter().enumerate() {
            let Some(machine) = &host.machine else {
                continue;
            };
            for (task, _, epoch) in machine.tasks() {
                let seen = self.epochs.entry((h, task)).or_insert(epoch);
                if epoch < *seen {
                    return Err(format!(
                        "h{h}: task {task:?} went back from epoch {seen} to {epoch}"
                    ));
                }
                *seen = epoch;
            }
        }
        Ok(())
    }

    /// After the queue drained (the world stopped, everything healed): every hand-off settled.
    fn check_settled(&self) -> Result<(), String> {
        for &task in &self.tasks {
            let mut running = Vec::new();
            for (h, host) in self.hosts.iter().enumerate() {
                let machine = host.machine.as_ref().ok_or(format!("h{h} is still down"))?;
                match machine.phase(task) {
                    Some(Phase::Leaving(_)) | Some(Phase::Arriving(_)) => {
                        return Err(format!(
                            "task {task:?} did not settle on h{h}: {}",
                            machine.phase(task).map(Phase::name).unwrap_or_default()
                        ))
                    }
                    Some(Phase::Running) => running.push(h),
                    _ => {}
                }
            }
            let finished = self.outcomes.contains_key(&task);
            if !finished && running.len() != 1 {
                return Err(format!(
                    "task {task:?} runs on hosts {running:?} once settled (lost)"
                ));
            }
        }
        Ok(())
    }
}

fn run_one(seed: u64) -> Result<Stats, (String, Vec<String>)> {
    let mut sim = Sim::new(seed);
    let result = sim.run().and_then(|()| sim.check_settled());
    match result {
        Ok(()) => Ok(sim.stats),
        Err(error) => Err((
            format!(
                "{error} (faults {:?}, {} hosts, tasks {:?})",
                sim.faults,
                sim.hosts.len(),
                sim.tasks
            ),
            sim.trace.iter().cloned().collect(),
        )),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.replace('_', "").parse().ok(),
    }
}

/// With the `sim-mutants` feature, `COSMIC_SIM_MUTANT=<name>` breaks one transition on purpose.
#[cfg(feature = "sim-mutants")]
fn pick_mutant() {
    use cosmic_runtime::handoff::mutants::{self, Mutant};
    let Ok(name) = std::env::var("COSMIC_SIM_MUTANT") else {
        return;
    };
    let (_, mutant) = Mutant::ALL
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no mutant `{name}`; there are {:?}", Mutant::ALL));
    println!("simulation: mutant={name}");
    mutants::set(mutant);
}

#[test]
fn hand_offs_keep_their_promises_under_every_schedule() {
    #[cfg(feature = "sim-mutants")]
    pick_mutant();
    if let Some(seed) = env_u64("COSMIC_SIM_SEED") {
        match run_one(seed) {
            Ok(stats) => println!("simulation: seed={seed} passed ({stats:?})"),
            Err((error, trace)) => {
                for line in trace {
                    println!("{line}");
                }
                panic!("seed {seed}: {error}");
            }
        }
        return;
    }
    // A debug build is far slower: it runs a smoke test unless told otherwise.
    let default = if cfg!(debug_assertions) { 100 } else { 20_000 };
    let schedules = env_u64("COSMIC_SIM_SCHEDULES").unwrap_or(default);
    let base = env_u64("COSMIC_SIM_BASE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    // `COSMIC_SIM_COUNT_FAILURES=1` runs every schedule and counts the failing ones instead
    // of stopping at the first (to measure how often a deliberately broken machine is caught).
    let count_failures = std::env::var_os("COSMIC_SIM_COUNT_FAILURES").is_some();
    let mut failures = 0u64;
    let mut first_failure = None;
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for i in 0..schedules {
        let seed = base.wrapping_add(i);
        match run_one(seed) {
            Ok(stats) => {
                total.moves_asked += stats.moves_asked;
                total.moves_committed += stats.moves_committed;
                total.crashes += stats.crashes;
                total.events += stats.events;
            }
            Err((error, _)) if count_failures => {
                failures += 1;
                first_failure.get_or_insert((seed, error));
            }
            Err((error, trace)) => {
                for line in trace {
                    println!("{line}");
                }
                panic!(
                    "schedule {i} of {schedules} failed: {error}\nreplay it with:\n  COSMIC_SIM_SEED={seed} cargo test --release -p cosmic-tests --test simulation -- --nocapture"
                );
            }
        }
    }
    println!(
        "simulation: schedules={schedules} base_seed={base} events={} moves_asked={} moves_committed={} crashes={} in {:.1?}",
        total.events,
        total.moves_asked,
        total.moves_committed,
        total.crashes,
        started.elapsed()
    );
    if count_failures {
        println!(
            "simulation: failed_schedules={failures} of {schedules}; first: {first_failure:?}"
        );
        assert_eq!(failures, 0, "{failures} schedules failed");
    }
}
