//! The loop that runs one task: a step, then a safe point where control requests, scheduled
//! checkpoints and test-mode round trips are served, then the next step.
//!
//! Serving requests at the task's own safe points is what keeps CPU-heavy steps from starving
//! control work: a request waits for at most the step in flight, whatever the other tasks do.
//! The loop also yields to tokio after every step so other tasks on the worker get a turn.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::error::ControlError;
use super::migrate::{source, MigrateError};
use super::shared::{Control, Forward, TaskShared};
use super::step_guard::{self, Panicked, PANIC_PREFIX};
use super::RuntimeInner;
use crate::checkpoint::{
    CheckpointKey, Outcome, PersistRequest, PersistTarget, Persister, Policy, Schedule,
};
use crate::cluster::{MoveResult, OwnedTask};
use crate::image::{self, Encoding, ImageWriter};
use crate::state::Migratable;
use crate::task::{Step, StepContext, Task, TaskId, TaskStatus};
use crate::transport::protocol::Refusal;

/// Starts driving `task`, resumed from (or first captured at) checkpoint `from`; its next
/// checkpoint gets sequence number `next_seq` (after every image in the store, even damaged
/// ones, so that the newest image is always the one with the highest number). `from_native`:
/// that checkpoint is a native image, so a portable one is written at the first safe point.
pub(crate) fn start<T: Task>(
    runtime: &Arc<RuntimeInner>,
    id: TaskId,
    task: T,
    from: CheckpointKey,
    next_seq: u64,
    epoch: u64,
    from_native: bool,
) -> Arc<TaskShared> {
    let (shared, control) =
        TaskShared::running(id, T::Output::type_name().into_owned(), from.steps, epoch);
    runtime.tasks().insert(id, Arc::clone(&shared));
    runtime.running().insert(id);
    let cluster_task = runtime
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.owned_task(id));
    let persister = start_persister(runtime, id, cluster_task.as_ref());
    let driver = Driver {
        runtime: Arc::clone(runtime),
        shared: Arc::clone(&shared),
        control,
        persister,
        schedule: Schedule::new(runtime.policy, runtime.clock.now())
            .sharing(Arc::clone(&runtime.stats.store_meter)),
        writer: ImageWriter::new(),
        steps: from.steps,
        next_seq,
        paused: false,
        held: None,
        retry_at: None,
        cluster_task,
        // Only where checkpoints are taken without being asked for.
        portable_due: from_native && !matches!(runtime.policy, Policy::Never | Policy::OnDemand),
    };
    let span =
        tracing::info_span!("task", task = %id, host = %runtime.host, r#type = %T::type_name());
    tokio::spawn(driver.run(task).instrument(span));
    shared
}

/// The writer of a task's checkpoints: to the cluster's store, or this host's, or none.
fn start_persister(
    runtime: &Arc<RuntimeInner>,
    id: TaskId,
    cluster_task: Option<&Arc<OwnedTask>>,
) -> Option<Arc<Persister>> {
    let target = match (&runtime.cluster, cluster_task, &runtime.catalog) {
        (Some(cluster), Some(owned), _) => Some(PersistTarget::Cluster(
            Arc::clone(cluster),
            Arc::clone(owned),
        )),
        (None, _, Some(catalog)) => Some(PersistTarget::Catalog(catalog.clone())),
        _ => None,
    };
    target.map(|target| {
        let stats = Arc::clone(&runtime.stats);
        Persister::start(
            id,
            target,
            Arc::new(move |_, _, size, result| match result {
                Ok(_) => stats.written(size),
                Err(_) => stats.write_failed(),
            }),
            Arc::clone(&runtime.stats.store_meter),
        )
    })
}

struct Driver {
    runtime: Arc<RuntimeInner>,
    shared: Arc<TaskShared>,
    control: mpsc::UnboundedReceiver<Control>,
    persister: Option<Arc<Persister>>,
    schedule: Schedule,
    writer: ImageWriter,
    steps: u64,
    next_seq: u64,
    paused: bool,
    /// A control request that arrived while the task waited to be tried again, served at the
    /// next safe point.
    held: Option<Control>,
    /// When the next try after a panic may start.
    retry_at: Option<tokio::time::Instant>,
    /// In a cluster: the task's token and fence, checked at every safe point.
    cluster_task: Option<Arc<OwnedTask>>,
    /// The newest checkpoint is native (readable by this build on this kind of machine only):
    /// a portable one is due at the next safe point, whatever the schedule says.
    portable_due: bool,
}

/// Removes the task from the runtime's running set when its driver ends, however it ends. A
/// driver that unwinds (a panic outside the task's steps, which are guarded) still leaves a
/// final status, so that nobody waits on the task forever; that end is not recorded in the
/// store, and the task resumes from its checkpoint at the next start.
struct RunningEntry {
    runtime: Arc<RuntimeInner>,
    shared: Arc<TaskShared>,
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        self.runtime.running().remove(&self.shared.id);
        if std::thread::panicking() && !self.shared.status().is_finished() {
            self.shared.finish(Outcome::Failed(
                "the runtime's driver of the task panicked (see the log)".to_owned(),
            ));
        }
    }
}

/// What the safe point decided.
enum Next {
    Step,
    Cancel(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    Migrate(String, oneshot::Sender<Result<(), MigrateError>>),
}

impl Driver {
    async fn run<T: Task>(mut self, mut task: T) {
        let id = self.shared.id;
        let _running = RunningEntry {
            runtime: Arc::clone(&self.runtime),
            shared: Arc::clone(&self.shared),
        };
        // Why the move the last step asked for failed, for the next step to see.
        let mut move_failed = None;
        loop {
            if !self.may_go_on().await {
                self.lost().await;
                return;
            }
            match self.safe_point(&mut task).await {
                Next::Step => {}
                Next::Cancel(done) => {
                    self.finish(Outcome::Cancelled).await;
                    let _ = done.send(());
                    return;
                }
                Next::Shutdown(done) => {
                    self.stop(&task).await;
                    let _ = done.send(());
                    return;
                }
                Next::Migrate(to, reply) => {
                    if self.migrate(&mut task, &to, Some(reply)).await {
                        return;
                    }
                    // Failed: the task stays; serve the safe point again (it may be paused).
                    continue;
                }
            }
            if self.wait_to_retry().await {
                // A control request came first: serve it at the safe point.
                continue;
            }
            let mut cx = StepContext::new(id, self.runtime.host.clone(), self.steps);
            cx.move_failed = move_failed.take();
            let watch = step_guard::Watch {
                task: id,
                slow_after: self.runtime.slow_step,
                stats: &self.runtime.stats,
            };
            let result = match step_guard::run(task.step(&mut cx), watch).await {
                Ok(result) => result,
                Err(panicked) => {
                    // The state the step touched is suspect: it is never captured; the task
                    // fails, or is tried again from its last durable checkpoint.
                    if self.panicked(&mut task, panicked).await {
                        continue;
                    }
                    return;
                }
            };
            match result {
                Ok(Step::Continue) => {}
                Ok(Step::Done(output)) => {
                    let outcome = match image::capture(&output) {
                        Ok(bytes) => Outcome::Completed(Bytes::from(bytes)),
                        Err(error) => {
                            Outcome::Failed(format!("failed to capture the output: {error}"))
                        }
                    };
                    self.steps += 1;
                    self.shared.set_steps(self.steps);
                    self.runtime.step_done();
                    self.finish(outcome).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "step failed");
                    self.finish(Outcome::Failed(error.to_string())).await;
                    return;
                }
            }
            self.steps += 1;
            self.shared.set_steps(self.steps);
            self.runtime.step_done();
            self.schedule.step_done();
            if cx.checkpoint_requested {
                self.checkpoint(&task, Vec::new());
            }
            if let Some(to) = cx.move_requested.take() {
                // Answered through a channel so that the next step learns why it failed.
                let (reply, answer) = oneshot::channel();
                if self.migrate(&mut task, &to, Some(reply)).await {
                    return;
                }
                move_failed = step_move_failed(answer);
            }
            if let Some(every) = self.runtime.verify_every {
                if self.steps % every == 0 {
                    if let Err(message) = round_trip(&mut task) {
                        self.finish(Outcome::Failed(message)).await;
                        return;
                    }
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// In a cluster, whether the task may take its next step: not if another host holds a
    /// newer token (fenced). While the lease does not hold from this host's point of view (a
    /// renewal is late), the task waits here: it goes on if the lease is renewed, and stops
    /// if it ends.
    async fn may_go_on(&self) -> bool {
        let (Some(cluster), Some(owned)) = (&self.runtime.cluster, &self.cluster_task) else {
            return true;
        };
        let mut waited = false;
        loop {
            if owned.is_fenced() {
                return false;
            }
            if cluster.may_run(owned) {
                if waited {
                    tracing::info!("the lease holds again; going on");
                }
                return true;
            }
            if self.runtime.is_shutting_down() {
                return false;
            }
            if !waited {
                tracing::warn!("the lease does not hold: waiting at this safe point");
                waited = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The task is no longer this host's (fenced, or the lease ended): stop without recording
    /// anything; its owner runs it from the current checkpoint.
    async fn lost(&mut self) {
        if let Some(persister) = self.persister.take() {
            persister.close().await;
        }
        if let Some(cluster) = &self.runtime.cluster {
            cluster.disown(self.shared.id);
        }
        tracing::warn!(
            steps = self.steps,
            "stopped here: the task is no longer this host's"
        );
        self.shared.set_status(TaskStatus::Stopped);
    }

    /// Serves control requests and scheduled checkpoints; waits here while paused.
    async fn safe_point<T: Task>(&mut self, task: &mut T) -> Next {
        loop {
            let control = if let Some(held) = self.held.take() {
                held
            } else if self.paused {
                match self.control.recv().await {
                    Some(control) => control,
                    // Every handle and the runtime are gone: nobody can resume it. Stay
                    // checkpointed rather than running unobserved.
                    None => return Next::Shutdown(oneshot::channel().0),
                }
            } else {
                match self.control.try_recv() {
                    Ok(control) => control,
                    Err(_) => break,
                }
            };
            match control {
                Control::Pause(reply) => {
                    self.paused = true;
                    self.shared.set_status(TaskStatus::Paused);
                    let _ = reply.send(());
                }
                Control::Resume(reply) => {
                    self.paused = false;
                    self.shared.set_status(TaskStatus::Running);
                    let _ = reply.send(());
                }
                // Answered once the cancellation is recorded.
                Control::Cancel(reply) => return Next::Cancel(reply),
                Control::Checkpoint(reply) => {
                    self.checkpoint(task, vec![reply]);
                }
                Control::Shutdown(done) => return Next::Shutdown(done),
                Control::Migrate { to, reply } => return Next::Migrate(to, reply),
            }
        }
        if self.portable_due || self.schedule.is_due(self.runtime.clock.now()) {
            self.portable_due = false;
            self.checkpoint(task, Vec::new());
        }
        Next::Step
    }

    /// Captures the state now and hands the image to the persister; `replies` are answered
    /// once it is durable.
    fn checkpoint<T: Task>(
        &mut self,
        task: &T,
        replies: Vec<oneshot::Sender<Result<CheckpointKey, ControlError>>>,
    ) {
        let id = self.shared.id;
        let Some(persister) = &self.persister else {
            for reply in replies {
                let _ = reply.send(Err(ControlError::CheckpointsDisabled {
                    task: id,
                    reason: "the runtime has no checkpoint store",
                }));
            }
            return;
        };
        if self.runtime.policy == Policy::Never {
            for reply in replies {
                let _ = reply.send(Err(ControlError::CheckpointsDisabled {
                    task: id,
                    reason: "the checkpoint policy is `Never`",
                }));
            }
            return;
        }
        if let Some(buffer) = persister.take_spare() {
            self.writer.recycle(buffer);
        }
        let started = Instant::now();
        let captured = self.writer.capture(task).map(drop);
        let captured = captured.map(|()| self.writer.take());
        let cost = started.elapsed();
        self.runtime.stats.captured(cost);
        self.schedule.checkpointed(self.runtime.clock.now(), cost);
        let image = match captured {
            Ok(image) => image,
            Err(error) => {
                tracing::error!(%error, "capture failed");
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(ControlError::Capture {
                        task: id,
                        source: Arc::clone(&error),
                    }));
                }
                return;
            }
        };
        let key = CheckpointKey {
            seq: self.next_seq,
            steps: self.steps,
        };
        self.next_seq += 1;
        // Bridge the persister's answers to the handles' error type.
        let waiters = replies
            .into_iter()
            .map(|reply| {
                let (sender, receiver) = oneshot::channel();
                tokio::spawn(async move {
                    let answer = match receiver.await {
                        Ok(Ok(key)) => Ok(key),
                        Ok(Err(source)) => Err(ControlError::Store { task: id, source }),
                        Err(_) => Err(ControlError::Finished { task: id }),
                    };
                    let _ = reply.send(answer);
                });
                sender
            })
            .collect();
        persister.submit(PersistRequest {
            key,
            image,
            waiters,
        });
    }

    /// Moves the task to `to` (see `migrate/source.rs`) and answers `reply` as soon as the
    /// move is decided. Returns whether it moved: then the task is the destination's, the
    /// handle has become a forwarding entry, local checkpoints are retired, and the driver
    /// must end. A failed move the step asked for (no `reply`) is logged.
    async fn migrate<T: Task>(
        &mut self,
        task: &mut T,
        to: &str,
        reply: Option<oneshot::Sender<Result<(), MigrateError>>>,
    ) -> bool {
        let answer = |result: Result<(), MigrateError>| match (reply, result) {
            (Some(reply), result) => {
                let _ = reply.send(result);
            }
            (None, Err(error)) => {
                tracing::warn!(%error, "the move the step asked for failed; running on here");
            }
            (None, Ok(())) => {}
        };
        let id = self.shared.id;
        if self.runtime.is_shutting_down() {
            answer(Err(MigrateError::ShuttingDown));
            return false;
        }
        if let Some(buffer) = self.persister.as_ref().and_then(|p| p.take_spare()) {
            self.writer.recycle(buffer);
        }
        // Native between hosts of one kind and build, portable otherwise. Cluster moves stay
        // portable: the image is the task's current checkpoint in the shared store, which any
        // member (of any kind) may have to resume from.
        let mut encoding = match (&self.runtime.cluster, &self.runtime.node) {
            (None, Some(node)) => match node.peer_addr(to) {
                Some(addr) => node.encoding_for(addr).await,
                None => Encoding::Portable,
            },
            _ => Encoding::Portable,
        };
        if let Err(source) = self.writer.capture_with(&*task, encoding) {
            answer(Err(MigrateError::Capture {
                task: id,
                source: Arc::new(source),
            }));
            return false;
        }
        let mut image = self.writer.take();
        if let (Some(cluster), Some(owned)) = (&self.runtime.cluster, &self.cluster_task) {
            let owned = Arc::clone(owned);
            let result = cluster
                .transfer(
                    &self.runtime,
                    id,
                    &owned,
                    to,
                    Bytes::from(image),
                    self.steps,
                )
                .await;
            let error = |source| MigrateError::Coordinator {
                task: id,
                host: to.to_owned(),
                source: Arc::new(source),
            };
            return match result {
                MoveResult::Moved { to, addr } => {
                    tracing::info!(%to, steps = self.steps, "task moved");
                    self.shared.set_moved(Forward {
                        host: to,
                        addr,
                        epoch: 0,
                        handoff: 0,
                    });
                    answer(Ok(()));
                    if let Some(persister) = self.persister.take() {
                        persister.close().await;
                    }
                    cluster.disown(id);
                    true
                }
                MoveResult::Failed(source) => {
                    tracing::warn!(error = %source, "move failed; the task stays here");
                    answer(Err(error(source)));
                    false
                }
                MoveResult::Lost(source) => {
                    answer(Err(error(source)));
                    self.lost().await;
                    true
                }
            };
        }
        // The count of tries after panics goes with the task (one small read, only for a
        // task that may have one).
        let tries = match &self.runtime.catalog {
            Some(catalog) if self.runtime.has_attempts_mark(id) => match catalog.attempts(id).await
            {
                Ok(attempts) => attempts.tries,
                Err(error) => {
                    tracing::warn!(%error, "the attempts record is unreadable; the move carries no count of tries");
                    0
                }
            },
            _ => 0,
        };
        let moving = source::Moving {
            task: id,
            output_type: &self.shared.output_type,
            steps: self.steps,
            tries,
            image: &mut image,
        };
        let mut result = source::hand_off(&self.runtime, to, moving).await;
        if encoding == Encoding::Native {
            if let Err(MigrateError::Refused {
                reason: Refusal::NativeMismatch { reason },
                ..
            }) = &result
            {
                // Its hello said one thing, its check another: this move goes portable.
                tracing::warn!(%to, %reason, "the destination refused a native image; moving the task as a portable one");
                result = match self.writer.capture(&*task) {
                    Ok(_) => {
                        image = self.writer.take();
                        encoding = Encoding::Portable;
                        let moving = source::Moving {
                            task: id,
                            output_type: &self.shared.output_type,
                            steps: self.steps,
                            tries,
                            image: &mut image,
                        };
                        source::hand_off(&self.runtime, to, moving).await
                    }
                    Err(source) => Err(MigrateError::Capture {
                        task: id,
                        source: Arc::new(source),
                    }),
                };
            }
        }
        match result {
            Ok(forward) => {
                drop(image);
                self.runtime.stats.moved(encoding);
                tracing::info!(to = %forward.host, epoch = forward.epoch, steps = self.steps, ?encoding, "task moved");
                // The move is durable (the commit record): answer now, tidy up after.
                self.shared.set_moved(forward);
                answer(Ok(()));
                // No checkpoint write of ours may land after the retirement.
                if let Some(persister) = self.persister.take() {
                    persister.close().await;
                }
                if let Some(catalog) = &self.runtime.catalog {
                    if let Err(error) = catalog.retire_checkpoints(id).await {
                        tracing::warn!(%error, "failed to retire the checkpoints of a moved task");
                    }
                }
                true
            }
            Err(error) => {
                tracing::warn!(%error, "move failed; the task stays here");
                self.writer.recycle(image);
                answer(Err(error));
                false
            }
        }
    }

    /// Records the outcome durably, then retires the checkpoints and announces the end.
    async fn finish(&mut self, outcome: Outcome) {
        let id = self.shared.id;
        if let Some(persister) = self.persister.take() {
            persister.close().await;
        }
        if let (Some(cluster), Some(owned)) = (&self.runtime.cluster, &self.cluster_task) {
            let recorded = cluster.finish(id, owned, &outcome).await;
            cluster.disown(id);
            if !recorded {
                tracing::warn!(
                    steps = self.steps,
                    "ended here, but the task is another host's now: its end is not recorded here"
                );
                self.shared.set_status(TaskStatus::Stopped);
                return;
            }
        }
        if let Some(catalog) = &self.runtime.catalog {
            if self.runtime.policy != Policy::Never {
                // Without a durable outcome a restart would run the task again; keep trying
                // rather than report an end that is not recorded.
                let mut delay = std::time::Duration::from_millis(10);
                while let Err(error) = catalog.put_outcome(id, &outcome).await {
                    tracing::error!(%error, "failed to record the outcome; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                if let Err(error) = catalog.retire_checkpoints(id).await {
                    tracing::warn!(%error, "failed to retire checkpoints of a finished task");
                }
                // Counts of tries and resumes mean nothing once the task has ended.
                if self.runtime.take_attempts_mark(id) {
                    if let Err(error) = catalog.clear_attempts(id).await {
                        tracing::warn!(%error, "failed to remove the attempts record of a finished task");
                    }
                }
                super::retention::finished(&self.runtime, catalog, id).await;
            }
        }
        tracing::info!(status = ?outcome_status(&outcome), steps = self.steps, "task ended");
        if let Some(node) = &self.runtime.node {
            // A tombstone: an offer of this task is refused from now on.
            node.step(crate::handoff::Event::Finished { task: id });
        }
        self.shared.finish(outcome);
    }

    /// A step panicked. Returns whether the task is tried again (from its last durable
    /// checkpoint, once the policy's pause has passed); if not, it has failed with the panic's
    /// message, recorded like any other end.
    async fn panicked<T: Task>(&mut self, task: &mut T, panicked: Panicked) -> bool {
        let id = self.shared.id;
        self.runtime.stats.step_panicked();
        let message = panicked.message;
        tracing::error!(task = %id, steps = self.steps, panic = %message, "a step panicked");
        let failure = |detail: String| Outcome::Failed(format!("{PANIC_PREFIX}{message}{detail}"));
        let policy = self.runtime.retry;
        // A try starts from a durable checkpoint: none without a store, or under `Never`.
        let catalog = match (&self.runtime.catalog, &self.runtime.cluster) {
            (Some(catalog), None)
                if policy.max_tries > 1 && self.runtime.policy != Policy::Never =>
            {
                catalog.clone()
            }
            _ => {
                self.finish(failure(String::new())).await;
                return false;
            }
        };
        // The count lives in the store, so that it survives restarts and moves.
        let mut attempts = match catalog.attempts(id).await {
            Ok(attempts) => attempts,
            Err(error) => {
                tracing::warn!(task = %id, %error, "the attempts record is unreadable; counting from here");
                crate::checkpoint::Attempts::default()
            }
        };
        let next = attempts.tries.max(1).saturating_add(1);
        if !policy.allows(next) {
            let tried = next - 1;
            self.finish(failure(format!(" (after {tried} tries)")))
                .await;
            return false;
        }
        // Writes of earlier, sound state may still be in flight: let them land first.
        if let Some(persister) = self.persister.take() {
            persister.close().await;
        }
        attempts.tries = next;
        self.runtime.mark_attempts(id);
        if let Err(error) = catalog.put_attempts(id, &attempts).await {
            tracing::error!(task = %id, %error, "failed to record the try; failing the task instead");
            self.finish(failure(" (the try could not be recorded)".to_owned()))
                .await;
            return false;
        }
        match self.restore_newest(&catalog).await {
            Ok((restored, key)) => {
                *task = restored;
                self.steps = key.steps;
                self.shared.set_steps(self.steps);
                self.persister = start_persister(&self.runtime, id, self.cluster_task.as_ref());
                let pause = policy.delay_before(next);
                tracing::warn!(task = %id, try_number = next, from_steps = key.steps, ?pause, "trying the task again from its last checkpoint");
                self.retry_at = Some(tokio::time::Instant::now() + pause);
                true
            }
            Err(reason) => {
                let reason = crate::ErrorChain(&reason).to_string();
                self.finish(failure(format!(" (no try from a checkpoint: {reason})")))
                    .await;
                false
            }
        }
    }

    /// The newest durable checkpoint of the task that decodes.
    async fn restore_newest<T: Task>(
        &self,
        catalog: &crate::checkpoint::Catalog,
    ) -> Result<(T, CheckpointKey), super::RecoveryError> {
        use super::{CheckpointUnusable, RecoveryError};
        let id = self.shared.id;
        let keys = catalog
            .checkpoints(id)
            .await
            .map_err(|error| RecoveryError::CheckpointsUnlisted(Arc::new(error)))?;
        let mut problems = Vec::new();
        for key in keys.into_iter().rev() {
            let seq = key.seq;
            match catalog.checkpoint(id, key).await {
                Ok(Some(bytes)) => match image::restore::<T>(&bytes) {
                    Ok(task) => return Ok((task, key)),
                    Err(source) => problems.push(CheckpointUnusable::Restore {
                        seq,
                        source: Arc::new(source),
                    }),
                },
                Ok(None) => problems.push(CheckpointUnusable::Removed { seq }),
                Err(source) => problems.push(CheckpointUnusable::Unreadable {
                    seq,
                    source: Arc::new(source),
                }),
            }
        }
        Err(RecoveryError::no_checkpoint(problems))
    }

    /// Waits out the pause before a try after a panic. Returns true if a control request
    /// arrived first (it is held for the safe point; the pause goes on after it).
    async fn wait_to_retry(&mut self) -> bool {
        let Some(at) = self.retry_at else {
            return false;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                self.retry_at = None;
                false
            }
            control = self.control.recv() => match control {
                Some(control) => {
                    self.held = Some(control);
                    true
                }
                None => {
                    tokio::time::sleep_until(at).await;
                    self.retry_at = None;
                    false
                }
            },
        }
    }

    /// Stops for a shutdown: a last checkpoint, made durable.
    async fn stop<T: Task>(&mut self, task: &T) {
        if self.steps > 0 || self.next_seq > 1 {
            self.checkpoint(task, Vec::new());
        }
        if let Some(persister) = self.persister.take() {
            persister.close().await;
        }
        self.shared.set_status(TaskStatus::Stopped);
    }
}

fn outcome_status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed(_) => "completed",
        Outcome::Failed(_) => "failed",
        Outcome::Cancelled => "cancelled",
    }
}

/// Test mode: replaces the task with its image's restoration, as a move would.
fn round_trip<T: Task>(task: &mut T) -> Result<(), String> {
    let bytes = image::capture(&*task)
        .map_err(|error| format!("test mode: capture for a round trip failed: {error}"))?;
    *task = image::restore(&bytes)
        .map_err(|error| format!("test mode: restore for a round trip failed: {error}"))?;
    Ok(())
}

/// The failure of a move a step asked for, logged, from its answer channel.
fn step_move_failed(
    mut answer: oneshot::Receiver<Result<(), MigrateError>>,
) -> Option<MigrateError> {
    let error = answer.try_recv().ok()?.err()?;
    tracing::warn!(error = %crate::ErrorChain(&error), "the move the step asked for failed; running on here");
    Some(error)
}
