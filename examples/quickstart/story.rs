//! The quickstart's scenario, told as it happens: starts the hosts, watches the coordinator,
//! kills and stops hosts, checks the results and prints the summary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosmic::cluster::{ClusterView, Owner};
use cosmic::{HostKey, TaskId};
use cosmic_examples::primes::{PrimeSum, PrimeTotal};

use crate::{Setup, KEY_FILE_VAR};

/// A host process and what it said.
struct HostProcess {
    child: Child,
    checkpoints: u64,
}

/// What the story knows of one task.
struct TaskStory {
    limit: u64,
    /// Each owner in turn: (when, host, token), from the coordinator.
    owners: Vec<(Duration, String, u64)>,
    /// Why it moved, from the hosts' events: (when, text).
    moves: Vec<(Duration, String)>,
    result: Option<PrimeTotal>,
}

struct Story {
    started: Instant,
    tokio: tokio::runtime::Runtime,
    view: ClusterView,
    lines: Receiver<(String, String)>,
    sender: Sender<(String, String)>,
    dir: PathBuf,
    hosts: BTreeMap<String, HostProcess>,
    tasks: BTreeMap<TaskId, TaskStory>,
    timeline: Vec<(Duration, String)>,
    failures: Vec<String>,
}

pub(crate) fn run(dir: &Path) -> Result<(), String> {
    let mut story = Story::new(dir)?;
    story.say(format!(
        "3 hosts on 127.0.0.1; {}; lease {:?}",
        crate::backend::describe(dir),
        Setup::LEASE
    ));
    story.start("beta", &[])?;
    story.start("gamma", &[])?;
    story.wait_ready(&["beta", "gamma"])?;
    let limits: Vec<String> = Setup::limits().iter().map(u64::to_string).collect();
    story.start("alpha", &limits)?;
    story.wait_ready(&["alpha"])?;
    story.say(format!(
        "alpha spawned {} tasks; the balancer spreads them",
        Setup::TASKS
    ));
    story.wait(
        "the tasks spread over the three hosts",
        Duration::from_secs(30),
        |s| {
            let owned = s.owned_by();
            ["alpha", "beta", "gamma"]
                .iter()
                .all(|h| owned.get(*h).copied().unwrap_or(0) >= 3)
        },
    );

    // A crash: SIGKILL, no warning.
    let victims = story.tasks_of("beta");
    story.kill("beta", libc::SIGKILL);
    let killed = story.started.elapsed();
    story.say(format!("SIGKILL beta, which ran {} tasks", victims.len()));
    story.wait(
        "beta's tasks run again elsewhere",
        Duration::from_secs(20),
        |s| victims.iter().all(|t| s.off_host_or_finished(*t, "beta")),
    );
    let mut downtimes = Vec::new();
    for task in &victims {
        if let Some((at, host, _)) = story.tasks[task]
            .owners
            .iter()
            .find(|(at, host, _)| *at > killed && host != "beta" && !host.starts_with('('))
        {
            downtimes.push(*at - killed);
            story.say(format!(
                "task {task} resumed on {host} from its last checkpoint, {:.1} s after the kill",
                (*at - killed).as_secs_f64()
            ));
        }
    }

    // A stop with notice: SIGTERM, the host leaves.
    let leaving = story.tasks_of("gamma");
    story.kill("gamma", libc::SIGTERM);
    story.say(format!("SIGTERM gamma, which ran {} tasks", leaving.len()));
    story.wait_exit("gamma", Duration::from_secs(20));
    story.wait(
        "gamma's tasks run elsewhere",
        Duration::from_secs(20),
        |s| leaving.iter().all(|t| s.off_host_or_finished(*t, "gamma")),
    );

    // A host that comes back gets work without anyone asking.
    story.start("beta", &[])?;
    story.wait_ready(&["beta"])?;
    story.say("beta is back (a new incarnation of its lease)".into());
    story.wait(
        "the balancer gives beta work",
        Duration::from_secs(20),
        |s| s.owned_by().get("beta").copied().unwrap_or(0) > 0 || s.all_done(),
    );

    story.wait(
        "every task finished",
        Duration::from_secs(120),
        Story::all_done,
    );
    story.collect_results();
    for name in ["alpha", "beta"] {
        story.kill(name, libc::SIGTERM);
        story.wait_exit(name, Duration::from_secs(20));
    }
    // The same computations, run here without the runtime (two at a time, one per core):
    // what a run that never moved gives.
    let started = Instant::now();
    let references = run_unmoved();
    story.say(format!(
        "ran the {} computations again without moving them, in {:.1} s",
        references.len(),
        started.elapsed().as_secs_f64()
    ));
    story.summary(&references, &downtimes);
    if story.failures.is_empty() {
        println!("\nall checks held");
        Ok(())
    } else {
        Err(format!(
            "{} checks failed:\n  {}",
            story.failures.len(),
            story.failures.join("\n  ")
        ))
    }
}

fn run_unmoved() -> BTreeMap<u64, PrimeTotal> {
    let limits = Setup::limits();
    let (left, right) = limits.split_at(limits.len() / 2);
    std::thread::scope(|scope| {
        let run = |limits: &[u64]| {
            limits
                .iter()
                .map(|limit| (*limit, PrimeSum::reference(*limit, Setup::SEGMENT)))
                .collect::<Vec<_>>()
        };
        let other = scope.spawn(move || run(right));
        let mut all = run(left);
        all.extend(other.join().unwrap_or_default());
        all.into_iter().collect()
    })
}

impl Story {
    fn new(dir: &Path) -> Result<Story, String> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys)
            .map_err(|e| format!("cannot create {}: {e}", keys.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for folder in [dir, keys.as_path()] {
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot chmod {}: {e}", folder.display()))?;
            }
        }
        cosmic_examples::keys::write_cluster_key(dir)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start tokio: {}", cosmic::ErrorChain(&e)))?;
        let coordinator = tokio.block_on(crate::backend::coordinator(dir))?;
        // The operator's act: each host's public key is trusted by name before it starts
        // (`cosmic host add NAME KEY` does the same). Joining alone trusts nobody.
        for name in ["alpha", "beta", "gamma"] {
            let key = HostKey::load_or_create(keys.join(format!("{name}.key")))
                .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
            tokio
                .block_on(coordinator.trust(name, key.public_key()))
                .map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        }
        let store = crate::backend::store(dir)?;
        let view = ClusterView::new(Arc::clone(&coordinator), store);
        let (sender, lines) = mpsc::channel();
        Ok(Story {
            started: Instant::now(),
            tokio,
            view,
            lines,
            sender,
            dir: dir.to_owned(),
            hosts: BTreeMap::new(),
            tasks: BTreeMap::new(),
            timeline: Vec::new(),
            failures: Vec::new(),
        })
    }

    fn say(&mut self, what: String) {
        let at = self.started.elapsed();
        println!("{:6.1}s  {what}", at.as_secs_f64());
        self.timeline.push((at, what));
    }

    fn fail(&mut self, what: String) {
        println!("        FAILED: {what}");
        self.failures.push(what);
    }

    fn start(&mut self, name: &str, limits: &[String]) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| cosmic::ErrorChain(&e).to_string())?;
        let mut child = Command::new(exe)
            .arg("host")
            .arg(name)
            .arg(&self.dir)
            .args(limits)
            .env(KEY_FILE_VAR, self.dir.join("cluster.key"))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start host {name}: {}", cosmic::ErrorChain(&e)))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let sender = self.sender.clone();
        let host = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((host.clone(), line)).is_err() {
                    return;
                }
            }
        });
        self.hosts.insert(
            name.to_owned(),
            HostProcess {
                child,
                checkpoints: self.hosts.get(name).map_or(0, |h| h.checkpoints),
            },
        );
        Ok(())
    }

    fn wait_ready(&mut self, names: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ready = 0;
        while ready < names.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (host, line) = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("hosts {names:?} did not start in 30 s"))?;
            if line.starts_with("READY") {
                ready += 1;
                let addr = line.split_whitespace().nth(2).unwrap_or("-").to_owned();
                self.say(format!("{host} is up at {addr}"));
            } else {
                self.handle(&host, &line);
            }
        }
        Ok(())
    }

    fn kill(&mut self, name: &str, signal: i32) {
        if let Some(host) = self.hosts.get(name) {
            // SAFETY: `kill` on our own child's pid.
            unsafe { libc::kill(host.child.id() as i32, signal) };
        }
    }

    fn wait_exit(&mut self, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.drain_lines();
            let status = self
                .hosts
                .get_mut(name)
                .and_then(|h| h.child.try_wait().ok().flatten());
            if let Some(status) = status {
                if status.success() {
                    self.say(format!("{name} exited 0"));
                } else {
                    self.fail(format!("{name} exited with {status}"));
                }
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format!("{name} did not exit within {within:?}"));
                self.kill(name, libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Watches until `done` holds, or fails the check after `within`.
    fn wait(&mut self, what: &str, within: Duration, done: impl Fn(&Story) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            self.drain_lines();
            self.poll();
            if done(self) {
                self.say(format!("ok: {what}"));
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format!("{what}: not within {within:?}"));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain_lines(&mut self) {
        while let Ok((host, line)) = self.lines.try_recv() {
            self.handle(&host, &line);
        }
    }

    fn handle(&mut self, host: &str, line: &str) {
        let at = self.started.elapsed();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("SPAWNED") => {
                let task = words.next().and_then(|t| t.parse().ok());
                let limit = words.next().and_then(|l| l.parse().ok());
                if let (Some(task), Some(limit)) = (task, limit) {
                    self.tasks.insert(
                        task,
                        TaskStory {
                            limit,
                            owners: vec![(at, host.to_owned(), 0)],
                            moves: Vec::new(),
                            result: None,
                        },
                    );
                }
            }
            Some("EVENT") => {
                let _ms = words.next();
                let task: Option<TaskId> = words.next().and_then(|t| t.parse().ok());
                let what = words.next().unwrap_or("");
                let rest: Vec<&str> = words.collect();
                let text = match what {
                    "balanced" => format!(
                        "{host} -> {} (balancer: {})",
                        rest.first().unwrap_or(&"?"),
                        rest.get(1..).map(|r| r.join(" ")).unwrap_or_default()
                    ),
                    "drained" => format!(
                        "{host} -> {} ({host} was leaving)",
                        rest.first().unwrap_or(&"?")
                    ),
                    "took-over" => format!(
                        "taken over by {host} (its owner was gone), resumed from its checkpoint at step {}",
                        rest.get(1).unwrap_or(&"?")
                    ),
                    "fenced" => format!("fenced on {host} (a newer owner exists)"),
                    "released" => format!("{host} gave it up: {}", rest.join(" ")),
                    _ => return,
                };
                if let Some(story) = task.and_then(|t| self.tasks.get_mut(&t)) {
                    story.moves.push((at, text));
                }
            }
            Some("STATS") => {
                if let (Some(h), Some(n)) = (
                    self.hosts.get_mut(host),
                    words.next().and_then(|n| n.parse().ok()),
                ) {
                    h.checkpoints = h.checkpoints.max(n);
                }
            }
            Some("LEFT") => {
                let moved = words.next().unwrap_or("?").to_owned();
                let behind = words.next().unwrap_or("?").to_owned();
                let ms = words.next().unwrap_or("?").to_owned();
                self.say(format!("{host} left: moved {moved} tasks away, {behind} left to be taken over, in {ms} ms"));
            }
            _ => {}
        }
    }

    /// Reads the coordinator: who owns each task now.
    fn poll(&mut self) {
        let at = self.started.elapsed();
        let Ok(entries) = self.tokio.block_on(self.view.tasks()) else {
            return;
        };
        for entry in entries {
            let Some(story) = self.tasks.get_mut(&entry.task) else {
                continue;
            };
            let owner = match &entry.owner {
                Owner::Host { host, .. } => host.clone(),
                Owner::Orphaned => "(orphaned)".to_owned(),
                Owner::Finished { .. } => "(finished)".to_owned(),
            };
            if story
                .owners
                .last()
                .is_none_or(|(_, h, t)| *h != owner || *t != entry.token.0)
            {
                story.owners.push((at, owner, entry.token.0));
            }
        }
    }

    fn owner(&self, task: TaskId) -> Option<&str> {
        self.tasks[&task]
            .owners
            .last()
            .map(|(_, h, _)| h.as_str())
            .filter(|h| !h.starts_with('('))
    }

    /// The task runs on a host other than `host`, or it has finished (a task may end on a
    /// host just as that host leaves: then there is nothing left to move).
    fn off_host_or_finished(&self, task: TaskId, host: &str) -> bool {
        let last = self.tasks[&task].owners.last().map(|(_, h, _)| h.as_str());
        last == Some("(finished)") || self.owner(task).is_some_and(|h| h != host)
    }

    fn tasks_of(&self, host: &str) -> Vec<TaskId> {
        self.tasks
            .keys()
            .copied()
            .filter(|t| self.owner(*t) == Some(host))
            .collect()
    }

    fn owned_by(&self) -> BTreeMap<String, usize> {
        let mut owned = BTreeMap::new();
        for task in self.tasks.keys() {
            if let Some(host) = self.owner(*task) {
                *owned.entry(host.to_owned()).or_default() += 1;
            }
        }
        owned
    }

    fn all_done(&self) -> bool {
        self.tasks.len() == Setup::TASKS
            && self
                .tasks
                .values()
                .all(|t| t.owners.last().is_some_and(|(_, h, _)| h == "(finished)"))
    }

    fn collect_results(&mut self) {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for task in ids {
            match self.tokio.block_on(self.view.output::<PrimeTotal>(task)) {
                Ok(Some(total)) => self.tasks.get_mut(&task).expect("known").result = Some(total),
                Ok(None) => self.fail(format!("task {task} has no recorded result")),
                Err(error) => self.fail(format!("task {task}: {}", cosmic::ErrorChain(&error))),
            }
        }
    }

    fn summary(&mut self, references: &BTreeMap<u64, PrimeTotal>, downtimes: &[Duration]) {
        println!("\n== where each task ran (owners in turn, from the coordinator)");
        let mut mismatches = Vec::new();
        for (task, story) in &self.tasks {
            let mut path: Vec<&str> = Vec::new();
            for (_, host, _) in &story.owners {
                if !host.starts_with('(') && path.last() != Some(&host.as_str()) {
                    path.push(host);
                }
            }
            let expected = references.get(&story.limit);
            let verdict = match (story.result, expected) {
                (Some(got), Some(want)) if got == *want => "ok".to_owned(),
                (got, want) => {
                    mismatches.push(*task);
                    format!("MISMATCH: got {got:?}, a run that never moved gives {want:?}")
                }
            };
            println!(
                "task {task}  primes below {:>11}: {:<28} {}",
                story.limit,
                path.join(" -> "),
                verdict
            );
            for (at, text) in &story.moves {
                println!("    {:6.1}s  {text}", at.as_secs_f64());
            }
        }
        for task in mismatches {
            self.fail(format!(
                "task {task}'s result differs from a run that never moved"
            ));
        }
        println!("\n== checkpoints written");
        for (name, host) in &self.hosts {
            println!("  {name}: {}", host.checkpoints);
        }
        println!("\n== time lost to the crash of beta");
        if downtimes.is_empty() {
            println!("  (beta ran no task when it was killed)");
        } else {
            let min = downtimes.iter().min().copied().unwrap_or_default();
            let max = downtimes.iter().max().copied().unwrap_or_default();
            println!(
                "  {} tasks stopped for {:.1} to {:.1} s (lease {:?}, then a scan, then restore), each resuming at its last checkpoint (at most {:?} of work redone)",
                downtimes.len(),
                min.as_secs_f64(),
                max.as_secs_f64(),
                Setup::LEASE,
                Setup::CHECKPOINT_EVERY
            );
        }
        let moves: usize = self.tasks.values().map(|t| t.moves.len()).sum();
        println!(
            "\n{} tasks, {moves} moves and takeovers, {} results checked against a run that never moved",
            self.tasks.len(),
            self.tasks.values().filter(|t| t.result.is_some()).count()
        );
    }
}

impl Drop for Story {
    fn drop(&mut self) {
        for host in self.hosts.values_mut() {
            let _ = host.child.kill();
            let _ = host.child.wait();
        }
    }
}
