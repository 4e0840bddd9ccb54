//! The calls that change a container: start, stop, kill, restart, wait, remove, pause,
//! unpause, rename; the exit path (containerd's `/tasks/exit`), restart policies with dockerd's
//! back-off, AutoRemove; and exec instances. Each call holds the container's operation lock,
//! asks the lifecycle model whether it is legal (on a clone), makes its effect through
//! containerd, and only then makes the transition and persists it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::error::ApiError;
use super::super::lifecycle::{AnyContainer, Outcome, Unchanged};
use super::super::Engine;
use super::ctd::TaskState;
use super::io::{self, Chunk, ProcessIo, Sink};
use super::{create, WaitState};
use refeng_spec::engine::Status;

/// dockerd's default stop timeout.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;
/// The first restart delay of a policy (dockerd's `backoffMultiplier` start).
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long resets the delay.
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// How long an exit waits for the process's output to be read to its end (dockerd's 2 s).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// An exec instance.
#[derive(Debug, Clone)]
pub struct Exec {
    /// Its id.
    pub id: String,
    /// The container's id.
    pub container: String,
    /// The OCI process.
    pub process: Value,
    /// The command as given.
    pub cmd: Vec<String>,
    /// AttachStdin and friends, Tty, DetachKeys, User, Privileged, WorkingDir, Env.
    pub config: Value,
    /// Running.
    pub running: bool,
    /// Its pid while running.
    pub pid: u32,
    /// Its exit code once done.
    pub exit_code: Option<i32>,
    /// Its stdio while it runs.
    pub io: Option<Arc<ProcessIo>>,
    /// Its output.
    pub hub: tokio::sync::broadcast::Sender<Chunk>,
    /// Ended.
    pub done: tokio::sync::watch::Sender<bool>,
    /// Why its start must fail, found at create (dockerd resolves the user at the start, so
    /// a create with an unknown user succeeds and its start fails).
    pub refusal: Option<String>,
}

/// Maps the model's answer to the API's.
fn refused(u: Unchanged, name: &str, id: &str) -> ApiError {
    match u {
        Unchanged::NotModified => ApiError::NotModified,
        Unchanged::Refused(r) => ApiError::from_refusal(r, name, id),
    }
}

/// Asks the model about `call` on a clone of the container.
fn check(
    lc: &AnyContainer,
    call: impl FnOnce(AnyContainer) -> Outcome,
    name: &str,
    id: &str,
) -> Result<(), ApiError> {
    match call(lc.clone()) {
        Ok(_) => Ok(()),
        Err((_, u)) => Err(refused(u, name, id)),
    }
}

impl Engine {
    pub(super) fn op_lock(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, ApiError> {
        self.containers
            .lock()
            .get(id)
            .map(|e| e.op.clone())
            .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))
    }

    /// Applies `f` to the entry `id` and persists it.
    pub(super) fn update<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut super::Entry) -> R,
    ) -> Result<R, ApiError> {
        let mut map = self.containers.lock();
        let e = map
            .get_mut(id)
            .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))?;
        let r = f(e);
        let ws = e.wait_state();
        e.wait.send_replace(ws);
        self.containers.persist(e)?;
        Ok(r)
    }

    fn transition(
        &self,
        id: &str,
        call: impl FnOnce(AnyContainer) -> Outcome,
    ) -> Result<(), ApiError> {
        self.update(id, |e| {
            let lc = e.lc.clone();
            match call(lc) {
                Ok(next) => {
                    e.lc = next;
                    Ok(())
                }
                Err((same, u)) => {
                    let (name, id) = (same.record().name.clone(), same.record().id.clone());
                    e.lc = same;
                    Err(refused(u, &name, &id))
                }
            }
        })?
    }

    /// `POST /containers/{id}/start`.
    ///
    /// # Errors
    /// 304 when running, 409 as the model says, containerd's failures.
    #[tracing::instrument(skip(self))]
    pub async fn container_start(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let lc = self.containers.lock().get(&id).map(|e| e.lc.clone());
        let Some(lc) = lc else {
            return Err(ApiError::NotFound(format!("No such container: {name}")));
        };
        check(&lc, AnyContainer::start, name, &id)?;
        if let Err(e) = self.start_task(&id).await {
            // As dockerd: a --rm container that cannot start is removed (its waiter, the CLI,
            // would wait for a removal that never comes).
            let auto_remove = self
                .containers
                .lock()
                .get(&id)
                .is_some_and(|e| e.stored.host.auto_remove);
            if auto_remove {
                let me = self.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let _ = me.container_remove(&id, true, true).await;
                });
            }
            return Err(e);
        }
        self.transition(&id, AnyContainer::start)?;
        self.container_event(&id, "start", BTreeMap::new());
        Ok(())
    }

    /// Creates and starts the task of `id` (the caller holds its operation lock) and records
    /// the pid and start time; the caller makes the transition.
    async fn start_task(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let mounts = self
            .containers
            .lock()
            .get(id)
            .map(|e| e.stored.mounts.clone())
            .unwrap_or_default();
        // A volume with options (a tmpfs, a bind) is mounted before the container binds it;
        // the exit gives it back (`finish_exit`).
        self.acquire_volumes(id, &mounts)?;
        let r = self.start_task_with_volumes(id).await;
        if r.is_err() {
            self.release_volumes(id, &mounts);
        }
        r
    }

    async fn start_task_with_volumes(self: &Arc<Self>, id: &str) -> Result<(), ApiError> {
        let (stored, hub) = {
            let map = self.containers.lock();
            let e = map
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))?;
            (e.stored.clone(), e.hub.clone())
        };
        let ctd = &self.containers.ctd;
        let netns = match stored.network.strip_prefix("container:") {
            Some(other) => {
                let pid = {
                    let map = self.containers.lock();
                    map.get(other)
                        .filter(|o| o.lc.status() == Status::Running)
                        .map(|o| o.stored.state.pid)
                };
                let Some(pid) = pid.filter(|p| *p > 0) else {
                    return Err(ApiError::Conflict(format!(
                        "cannot join network of a non running container: {other}"
                    )));
                };
                Some(format!("/proc/{pid}/ns/net"))
            }
            None => None,
        };
        // Volumes mounted from a subpath: each is resolved inside its volume now and bound at
        // a private place the runtime binds from; the places go once the task exists (the
        // container keeps its mounts).
        let staged = stored
            .mounts
            .iter()
            .filter(|m| m.kind == super::mounts::MountKind::Volume && !m.subpath.is_empty())
            .enumerate()
            .map(|(i, m)| {
                let at = self
                    .containers
                    .run_dir
                    .join(id)
                    .join("subpaths")
                    .join(i.to_string());
                super::mounts::stage_subpath(m, &at)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The spec is copied only when this start changes it.
        if netns.is_some() || !staged.is_empty() {
            let mut spec = stored.spec.clone();
            let mut changed = super::mounts::set_subpath_sources(&mut spec, &staged);
            if let Some(path) = &netns {
                changed |= spec::set_netns(&mut spec, path);
            }
            if changed {
                ctd.update_spec(id, &spec).await?;
            }
        }
        self.network_attach(&stored).await?;
        let log = match stored.log {
            Some(rot) => Some(Arc::new(std::sync::Mutex::new(
                io::LogFile::open(&self.containers.log_path(id), rot)
                    .map_err(|e| ApiError::internal("opening the container log", e))?,
            ))),
            None => None,
        };
        let pio = io::open(
            &self.containers.run_dir.join(id),
            "init",
            stored.config.open_stdin,
            stored.config.tty,
            Sink { log, hub },
        )?;
        let started = async {
            let mounts = ctd.mounts(id).await?;
            let created = ctd.create_task(id, mounts, &pio.stdio).await;
            drop(staged);
            created?;
            match ctd.start(id, "").await {
                Ok(pid) => Ok(pid),
                Err(e) => {
                    let _ = ctd.delete_task(id).await;
                    Err(e)
                }
            }
        }
        .await;
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                pio.abandon();
                self.network_detach(id).await;
                let msg = e.to_string();
                let _ = self.update(id, |en| en.stored.state.error = msg);
                // dockerd answers a start whose process cannot run with 400 and its message.
                return Err(match e {
                    ApiError::Internal(m)
                    | ApiError::Unavailable(m)
                    | ApiError::NotImplemented(m) => ApiError::BadRequest(m),
                    other => other,
                });
            }
        };
        if stored.config.tty {
            if let Some([h, w]) = stored
                .host
                .console_size
                .as_deref()
                .and_then(|c| (c.len() == 2).then(|| [c[0], c[1]]))
            {
                if h > 0 && w > 0 {
                    let _ = ctd.resize(id, "", w, h).await;
                }
            }
        }
        self.update(id, |e| {
            e.io = Some(Arc::new(pio));
            e.stored.state.pid = pid;
            e.stored.state.started_at = Some(io::now_rfc3339());
            e.stored.state.error.clear();
            e.stored.state.oom_killed = false;
            e.stored.state.has_been_started = true;
            super::health::mark_started(&e.stored.config, &mut e.stored.state, true);
        })?;
        self.health_monitor_spawn(id);
        Ok(())
    }

    /// Ends the bookkeeping of a process that exited with `code` (the caller holds the lock):
    /// the task is deleted, stdin closed, the exit recorded; `by_hand` stops go to exited,
    /// others are judged by the restart policy. Emits `die`.
    async fn finish_exit(
        self: &Arc<Self>,
        id: &str,
        code: i32,
        by_hand: bool,
    ) -> Result<(), ApiError> {
        let deleted = self.containers.ctd.delete_task(id).await.ok().flatten();
        // The exit becomes visible (wait, inspect, the end of `logs -f`, AutoRemove) only
        // once the output is drained; the task's deletion closed the shim's ends of the FIFOs.
        let pio = self.containers.lock().get(id).and_then(|e| e.io.clone());
        if let Some(pio) = pio {
            if !pio.drained(OUTPUT_DRAIN).await {
                tracing::warn!(%id, "output not drained when the exit was recorded");
            }
        }
        self.network_detach(id).await;
        let mounts = self
            .containers
            .lock()
            .get(id)
            .map(|e| e.stored.mounts.clone())
            .unwrap_or_default();
        self.release_volumes(id, &mounts);
        let code = if code < 0 {
            deleted.map_or(255, |c| c as i32)
        } else {
            code
        };
        let (oom, started) = {
            let map = self.containers.lock();
            map.get(id)
                .map(|e| (e.stored.state.oom_killed, e.stored.state.started_at.clone()))
                .unwrap_or_default()
        };
        let next = self.update(id, |e| {
            if let Some(pio) = e.io.take() {
                pio.close_stdin();
            }
            e.stored.state.pid = 0;
            if let Some(h) = e.stored.state.health.as_mut() {
                h.health = h.health.stopped();
            }
            e.stored.state.finished_at = Some(io::now_rfc3339());
            e.stored.state.exits += 1;
            let lc = e.lc.clone();
            let mut next = if by_hand {
                match lc.stop() {
                    Ok(n) => n,
                    Err((same, _)) => same,
                }
            } else {
                lc.exited(code)
            };
            next.set_exit_code(code);
            e.lc = next;
            (e.lc.status(), e.stored.host.auto_remove)
        })?;
        let mut attrs = BTreeMap::new();
        attrs.insert("exitCode".to_string(), code.to_string());
        if oom {
            self.container_event(id, "oom", BTreeMap::new());
        }
        self.container_event(id, "die", attrs);
        match next {
            (Status::Restarting, _) => {
                let ran = started
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                    .map(|t| chrono::Utc::now().signed_duration_since(t))
                    .and_then(|d| d.to_std().ok())
                    .unwrap_or_default();
                self.schedule_restart(id, ran);
            }
            (Status::Exited, true) => {
                let me = self.clone();
                let id = id.to_string();
                tokio::spawn(me.auto_remove(id));
            }
            _ => {}
        }
        Ok(())
    }

    /// AutoRemove after an exit. Boxed: removal ends in the exit path, which spawns this.
    fn auto_remove(
        self: Arc<Self>,
        id: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(e) = self.container_remove(&id, true, true).await {
                tracing::warn!(%id, error = %e, "auto-remove failed");
            }
        })
    }

    fn schedule_restart(self: &Arc<Self>, id: &str, ran: Duration) {
        let delay = {
            let mut map = self.containers.lock();
            let Some(e) = map.get_mut(id) else { return };
            let d = &mut e.stored.state;
            let _ = d;
            let count = e.lc.record().restart_count;
            if ran >= BACKOFF_RESET {
                BACKOFF_START
            } else {
                BACKOFF_START
                    .saturating_mul(2u32.saturating_pow(count.min(16)))
                    .min(BACKOFF_MAX)
            }
        };
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Ok(lock) = me.op_lock(&id) else { return };
            let _g = lock.lock().await;
            let restarting = me
                .containers
                .lock()
                .get(&id)
                .is_some_and(|e| e.lc.status() == Status::Restarting);
            if !restarting {
                return;
            }
            match me.start_task(&id).await {
                Ok(()) => {
                    let _ = me.update(&id, |e| {
                        let lc = e.lc.clone();
                        e.lc = lc.restart_due();
                    });
                    me.container_event(&id, "start", BTreeMap::new());
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "restart by policy failed");
                    let _ = me.update(&id, |en| {
                        let lc = en.lc.clone();
                        en.lc = match lc.stop() {
                            Ok(n) => n,
                            Err((same, _)) => same,
                        };
                    });
                }
            }
        });
    }

    /// The exit of a task's process, from containerd's `/tasks/exit` (`exec` is the exec id,
    /// or the container id for its init process; `pid` its pid, 0 when unknown).
    pub async fn on_task_exit(self: &Arc<Self>, container: &str, exec: &str, pid: u32, code: u32) {
        if exec != container {
            self.on_exec_exit(exec, code).await;
            return;
        }
        let Ok(lock) = self.op_lock(container) else {
            return;
        };
        let _g = lock.lock().await;
        let (status, current) = match self.containers.lock().get(container) {
            Some(e) => (e.lc.status(), e.stored.state.pid),
            None => return,
        };
        if !matches!(status, Status::Running | Status::Paused) {
            return;
        }
        // A stop or restart records the exit it waited for itself; the event of that process
        // can come after the next process started, and must not end that one.
        if pid != 0 && current != 0 && pid != current {
            tracing::debug!(%container, pid, current, "exit of an earlier process ignored");
            return;
        }
        let by_hand = status == Status::Paused;
        if let Err(e) = self.finish_exit(container, code as i32, by_hand).await {
            tracing::warn!(%container, error = %e, "recording an exit");
        }
    }

    /// The kernel's OOM killer hit container `id`.
    pub fn on_task_oom(&self, id: &str) {
        let _ = self.update(id, |e| e.stored.state.oom_killed = true);
    }

    /// Signals the process and waits up to `timeout` for it to end (None: no wait).
    async fn signal_and_wait(
        &self,
        id: &str,
        signal: i32,
        timeout: Option<Duration>,
    ) -> Option<i32> {
        let ctd = &self.containers.ctd;
        let paused = self
            .containers
            .lock()
            .get(id)
            .is_some_and(|e| e.lc.status() == Status::Paused);
        // A frozen process is thawed first: refeng-runc (as the runtime-spec's kill) refuses
        // to signal a paused container, and a signal to a frozen one waits for the thaw anyway.
        if paused {
            let _ = ctd.resume(id).await;
        }
        let _ = ctd.kill(id, "", signal as u32, false).await;
        let timeout = timeout?;
        match tokio::time::timeout(timeout, ctd.wait(id, "")).await {
            Ok(Ok(code)) => Some(code as i32),
            _ => None,
        }
    }

    /// Stops `id` (the caller holds the lock and checked legality): the stop signal, then
    /// KILL after `timeout` seconds (negative: wait for ever).
    async fn stop_inner(
        self: &Arc<Self>,
        id: &str,
        timeout: i64,
        signal: Option<i32>,
    ) -> Result<(), ApiError> {
        let (status, stop_signal) = {
            let map = self.containers.lock();
            let e = map
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))?;
            (e.lc.status(), e.stored.config.stop_signal.clone())
        };
        if status == Status::Restarting {
            self.transition(id, AnyContainer::stop)?;
            return Ok(());
        }
        let sig = match signal {
            Some(s) => s,
            None if stop_signal.is_empty() => 15,
            None => create::signal_number(&stop_signal)?,
        };
        let mut attrs = BTreeMap::new();
        attrs.insert("signal".to_string(), sig.to_string());
        self.container_event(id, "kill", attrs);
        let wait = if timeout < 0 {
            Duration::from_secs(u64::MAX / 4)
        } else {
            Duration::from_secs(timeout as u64)
        };
        let code = match self.signal_and_wait(id, sig, Some(wait)).await {
            Some(c) => c,
            None => {
                let mut attrs = BTreeMap::new();
                attrs.insert("signal".to_string(), "9".to_string());
                self.container_event(id, "kill", attrs);
                let _ = self.containers.ctd.kill(id, "", 9, true).await;
                match tokio::time::timeout(
                    Duration::from_secs(30),
                    self.containers.ctd.wait(id, ""),
                )
                .await
                {
                    Ok(Ok(c)) => c as i32,
                    _ => 137,
                }
            }
        };
        self.finish_exit(id, code, true).await
    }

    /// `POST /containers/{id}/stop?t=&signal=`.
    ///
    /// # Errors
    /// 304 when not running, 404, containerd's failures.
    #[tracing::instrument(skip(self))]
    pub async fn container_stop(
        self: &Arc<Self>,
        name: &str,
        t: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let sig = signal
            .filter(|s| !s.is_empty())
            .map(create::signal_number)
            .transpose()?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let (lc, timeout) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            (
                e.lc.clone(),
                t.or(e.stored.config.stop_timeout)
                    .unwrap_or(DEFAULT_STOP_TIMEOUT),
            )
        };
        check(&lc, AnyContainer::stop, name, &id)?;
        self.stop_inner(&id, timeout, sig).await?;
        self.container_event(&id, "stop", BTreeMap::new());
        Ok(())
    }

    /// `POST /containers/{id}/kill?signal=`.
    ///
    /// # Errors
    /// 409 when not running, 400 for a bad signal, 404.
    #[tracing::instrument(skip(self))]
    pub async fn container_kill(
        self: &Arc<Self>,
        name: &str,
        signal: Option<&str>,
    ) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => create::signal_number(s)?,
            None => 9,
        };
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let lc = self.containers.lock().get(&id).map(|e| e.lc.clone());
        let Some(lc) = lc else {
            return Err(ApiError::NotFound(format!("No such container: {name}")));
        };
        // dockerd names the container in front of why it cannot be killed.
        check(&lc, AnyContainer::kill, name, &id).map_err(|e| match e {
            ApiError::Conflict(m) => {
                ApiError::Conflict(format!("Cannot kill container: {name}: {m}"))
            }
            other => other,
        })?;
        let mut attrs = BTreeMap::new();
        attrs.insert("signal".to_string(), sig.to_string());
        if lc.status() == Status::Restarting {
            self.transition(&id, AnyContainer::kill)?;
            self.container_event(&id, "kill", attrs);
            return Ok(());
        }
        self.container_event(&id, "kill", attrs);
        if sig == 9 {
            let code = self
                .signal_and_wait(&id, 9, Some(Duration::from_secs(30)))
                .await
                .unwrap_or(137);
            self.finish_exit(&id, code, true).await?;
        } else {
            // Any other signal may or may not end it; if it does, the exit is a stop by hand.
            self.update(&id, |e| e.lc.mark_stopped_by_hand())?;
            self.signal_and_wait(&id, sig, None).await;
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart?t=&signal=`.
    ///
    /// # Errors
    /// 409 as the model says, 404, containerd's failures.
    #[tracing::instrument(skip(self))]
    pub async fn container_restart(
        self: &Arc<Self>,
        name: &str,
        t: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let sig = signal
            .filter(|s| !s.is_empty())
            .map(create::signal_number)
            .transpose()?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let (lc, timeout) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            (
                e.lc.clone(),
                t.or(e.stored.config.stop_timeout)
                    .unwrap_or(DEFAULT_STOP_TIMEOUT),
            )
        };
        check(&lc, AnyContainer::restart, name, &id)?;
        if lc.status().is_running() {
            self.stop_inner(&id, timeout, sig).await?;
            self.container_event(&id, "stop", BTreeMap::new());
        }
        self.start_task(&id).await?;
        self.transition(&id, AnyContainer::start)?;
        self.container_event(&id, "start", BTreeMap::new());
        self.container_event(&id, "restart", BTreeMap::new());
        Ok(())
    }

    /// `POST /containers/{id}/pause` and `unpause`.
    ///
    /// # Errors
    /// 409 as the model says, 404, containerd's failures.
    pub async fn container_pause(
        self: &Arc<Self>,
        name: &str,
        pause: bool,
    ) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let lc = self.containers.lock().get(&id).map(|e| e.lc.clone());
        let Some(lc) = lc else {
            return Err(ApiError::NotFound(format!("No such container: {name}")));
        };
        if pause {
            check(&lc, AnyContainer::pause, name, &id)?;
            self.containers.ctd.pause(&id).await?;
            self.transition(&id, AnyContainer::pause)?;
            self.container_event(&id, "pause", BTreeMap::new());
        } else {
            check(&lc, AnyContainer::unpause, name, &id)?;
            self.containers.ctd.resume(&id).await?;
            self.transition(&id, AnyContainer::unpause)?;
            self.container_event(&id, "unpause", BTreeMap::new());
        }
        Ok(())
    }

    /// `DELETE /containers/{id}?force=&v=`.
    ///
    /// # Errors
    /// 409 as the model says, 404, containerd's failures (the container is then dead).
    #[tracing::instrument(skip(self))]
    pub async fn container_remove(
        self: &Arc<Self>,
        name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let lc = self.containers.lock().get(&id).map(|e| e.lc.clone());
        let Some(lc) = lc else {
            return Err(ApiError::NotFound(format!("No such container: {name}")));
        };
        if let Err((_, u)) = lc.clone().remove(force) {
            return Err(refused(u, name, &id));
        }
        if lc.status().is_running() {
            if lc.status() == Status::Restarting {
                self.transition(&id, AnyContainer::stop)?;
            } else {
                let mut attrs = BTreeMap::new();
                attrs.insert("signal".to_string(), "9".to_string());
                self.container_event(&id, "kill", attrs);
                let _ = self.containers.ctd.kill(&id, "", 9, true).await;
                if let Some(code) = self
                    .signal_and_wait(&id, 9, Some(Duration::from_secs(30)))
                    .await
                {
                    self.finish_exit(&id, code, true).await?;
                } else {
                    self.finish_exit(&id, 137, true).await?;
                }
            }
        }
        self.network_detach(&id).await;
        let ctd = &self.containers.ctd;
        let cleaned = async {
            ctd.delete_task(&id).await?;
            ctd.delete_container(&id).await?;
            ctd.remove_snapshot(&id).await
        }
        .await;
        if let Err(e) = cleaned {
            let _ = self.update(&id, |en| {
                let lc = en.lc.clone();
                if let Ok(r) = lc.remove(true) {
                    en.lc = AnyContainer::Dead(r.failed());
                }
            });
            return Err(e);
        }
        let execs: Vec<String> = self
            .containers
            .lock()
            .get(&id)
            .map(|e| e.execs.clone())
            .unwrap_or_default();
        {
            let mut ex = self
                .containers
                .execs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for x in execs {
                ex.remove(&x);
            }
        }
        self.container_event(&id, "destroy", BTreeMap::new());
        let removed = self.containers.lock().remove(&id);
        if let Some(e) = removed {
            // `rm -v` and `--rm`: the anonymous volumes it made go with it (named ones stay).
            if volumes {
                self.remove_anonymous_volumes(&e.stored.mounts);
            }
            let mut ws = e.wait_state();
            ws.removed = true;
            ws.running = false;
            e.wait.send_replace(ws);
        }
        let _ = std::fs::remove_dir_all(self.containers.dir_of(&id));
        let _ = std::fs::remove_dir_all(self.containers.run_dir.join(&id));
        Ok(())
    }

    /// `POST /containers/{id}/rename?name=`.
    ///
    /// # Errors
    /// 400 for a bad or unchanged name, 409 when taken, 404.
    pub async fn container_rename(self: &Arc<Self>, name: &str, new: &str) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let new = super::names::validate(new)?;
        let old = {
            let map = self.containers.lock();
            if let Some(other) = map.values().find(|e| e.name() == new) {
                if other.stored.id == id {
                    return Err(ApiError::BadRequest(
                        "Renaming a container with the same name as its current name".into(),
                    ));
                }
                // dockerd's rename says which step failed in front of the conflict.
                let in_use = ApiError::from_refusal(
                    refeng_spec::engine::Refusal::NameInUse,
                    &new,
                    &other.stored.id,
                );
                return Err(ApiError::Conflict(format!(
                    "Error when allocating new name: {in_use}"
                )));
            }
            map.get(&id)
                .map(|e| e.name().to_string())
                .unwrap_or_default()
        };
        self.update(&id, |e| e.lc.rename(&new))?;
        self.network_rename(&id, &new).await?;
        let mut attrs = BTreeMap::new();
        attrs.insert("oldName".to_string(), format!("/{old}"));
        self.container_event(&id, "rename", attrs);
        Ok(())
    }

    /// `POST /containers/{id}/wait?condition=`: a receiver that yields the answer.
    ///
    /// # Errors
    /// 400 for an unknown condition, 404.
    pub fn container_wait(
        &self,
        name: &str,
        condition: &str,
    ) -> Result<tokio::sync::oneshot::Receiver<Value>, ApiError> {
        #[derive(PartialEq)]
        enum Cond {
            NotRunning,
            NextExit,
            Removed,
        }
        let cond = match condition {
            "" | "not-running" => Cond::NotRunning,
            "next-exit" => Cond::NextExit,
            "removed" => Cond::Removed,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "invalid condition: \"{other}\""
                )))
            }
        };
        let id = self.containers.find(name)?;
        let mut rx = {
            let map = self.containers.lock();
            map.get(&id)
                .map(|e| e.wait.subscribe())
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?
        };
        let start = *rx.borrow();
        let (tx, out) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let answer = |code: i32| json!({"Error": null, "StatusCode": code});
            loop {
                let s: WaitState = *rx.borrow_and_update();
                let done = match cond {
                    Cond::NotRunning => !s.running || s.removed,
                    Cond::NextExit => s.exits > start.exits || s.removed,
                    Cond::Removed => s.removed,
                };
                if done {
                    let _ = tx.send(answer(s.exit_code));
                    return;
                }
                if rx.changed().await.is_err() {
                    let s = *rx.borrow();
                    let _ = tx.send(answer(s.exit_code));
                    return;
                }
            }
        });
        Ok(out)
    }

    /// `POST /containers/{id}/resize?h=&w=`.
    ///
    /// # Errors
    /// 409 when not running, 404, containerd's failures.
    pub async fn container_resize(&self, name: &str, h: u32, w: u32) -> Result<(), ApiError> {
        let id = self.containers.find(name)?;
        let running = self
            .containers
            .lock()
            .get(&id)
            .is_some_and(|e| e.lc.status().is_running());
        if !running {
            return Err(ApiError::Conflict(format!("Container {id} is not running")));
        }
        self.containers.ctd.resize(&id, "", w, h).await
    }

    /// `GET /containers/{id}/top`: the container's processes as `ps -ef` columns would show.
    ///
    /// # Errors
    /// 409 when not running, 404, containerd's failures.
    pub async fn container_top(&self, name: &str, ps_args: &str) -> Result<Value, ApiError> {
        if !ps_args.is_empty() && ps_args != "-ef" {
            return Err(ApiError::BadRequest(format!(
                "ps_args {ps_args:?} is not supported by refengd (only -ef)"
            )));
        }
        let id = self.containers.find(name)?;
        let running = self
            .containers
            .lock()
            .get(&id)
            .is_some_and(|e| e.lc.status().is_running());
        if !running {
            return Err(ApiError::Conflict(format!("Container {id} is not running")));
        }
        let pids = self.containers.ctd.pids(&id).await?;
        let mut rows = Vec::new();
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .unwrap_or("0")
                .to_string();
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1).map(String::from))
                })
                .unwrap_or_default();
            let user =
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid.parse().unwrap_or(0)))
                    .ok()
                    .flatten()
                    .map_or(uid.clone(), |u| u.name);
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|p| !p.is_empty())
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            rows.push(json!([user, pid.to_string(), ppid, "0", "", "?", "", cmd]));
        }
        Ok(
            json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}),
        )
    }

    /// `POST /containers/{id}/exec`.
    ///
    /// # Errors
    /// 409 when not running or paused, 400 for a bad body, 404.
    pub async fn exec_create(&self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("the exec config must be a JSON object".into()))?;
        const KNOWN: &[&str] = &[
            "AttachStdin",
            "AttachStdout",
            "AttachStderr",
            "Tty",
            "Cmd",
            "Env",
            "WorkingDir",
            "User",
            "DetachKeys",
            "ConsoleSize",
            "Privileged",
            // The CLI sends it with `exec -d`; as for dockerd, what counts is the start's.
            "Detach",
            // Sent by docker-py (and so compose v1); dockerd takes the container from the path.
            // Here it must name that same container.
            "Container",
        ];
        for (k, val) in obj {
            if !KNOWN.contains(&k.as_str()) && !super::body::is_zero(val) {
                return Err(ApiError::BadRequest(format!(
                    "exec config field {k} is not supported by refengd"
                )));
            }
        }
        let cmd: Vec<String> = obj
            .get("Cmd")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if cmd.is_empty() {
            return Err(ApiError::BadRequest("No exec command specified".into()));
        }
        let id = self.containers.find(name)?;
        if let Some(other) = obj.get("Container").and_then(Value::as_str) {
            if !other.is_empty() && self.containers.find(other).ok().as_ref() != Some(&id) {
                return Err(ApiError::BadRequest(format!(
                    "exec config field Container ({other}) names another container than the \
                     path ({name})"
                )));
            }
        }
        let (status, spec, pid) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            (e.lc.status(), e.stored.spec.clone(), e.stored.state.pid)
        };
        match status {
            Status::Running => {}
            Status::Paused => {
                return Err(ApiError::Conflict(format!(
                    "Container {id} is paused, unpause the container before exec"
                )))
            }
            Status::Restarting => {
                return Err(ApiError::Conflict(format!(
                    "Container {id} is restarting, wait until the container is running"
                )))
            }
            _ => return Err(ApiError::Conflict(format!("Container {id} is not running"))),
        }
        let b = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut refusal = None;
        let mut process = spec["process"].clone();
        process["args"] = json!(cmd);
        process["terminal"] = json!(b("Tty"));
        if let Some(obj) = process.as_object_mut() {
            obj.remove("consoleSize");
        }
        // The terminal gets its size before the process runs (a resize after the start
        // would race with a process that reads it at once), as dockerd's exec does.
        if let Some([h, w]) = obj
            .get("ConsoleSize")
            .and_then(Value::as_array)
            .map(|a| [a.first(), a.get(1)].map(|x| x.and_then(Value::as_u64).unwrap_or(0)))
        {
            if b("Tty") && h > 0 && w > 0 {
                process["consoleSize"] = json!({"height": h, "width": w});
            }
        }
        if let Some(env) = obj.get("Env").and_then(Value::as_array) {
            let mut base: Vec<String> = process["env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for e in env.iter().filter_map(Value::as_str) {
                let key = e.split('=').next().unwrap_or("");
                match base
                    .iter_mut()
                    .find(|x| x.split('=').next().unwrap_or("") == key)
                {
                    Some(slot) => *slot = e.to_string(),
                    None => base.push(e.to_string()),
                }
            }
            process["env"] = json!(base);
        }
        if let Some(w) = obj
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
        {
            process["cwd"] = json!(w);
        }
        if let Some(u) = obj
            .get("User")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        {
            let root = format!("/proc/{pid}/root");
            let passwd = std::fs::read_to_string(format!("{root}/etc/passwd")).unwrap_or_default();
            let group = std::fs::read_to_string(format!("{root}/etc/group")).unwrap_or_default();
            match super::etc::resolve_user(u, &passwd, &group, &[]) {
                Ok(user) => {
                    process["user"] = json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
                }
                Err(e) => refusal = Some(e.to_string()),
            }
        }
        if b("Privileged") {
            let all: Vec<String> = caps::runtime::procfs_all_supported(None)
                .unwrap_or_else(|_| caps::all())
                .iter()
                .map(ToString::to_string)
                .collect();
            process["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
        }
        let exec_id = super::names::new_id()?;
        let (hub, _) = tokio::sync::broadcast::channel(256);
        let (done, _) = tokio::sync::watch::channel(false);
        let exec = Exec {
            id: exec_id.clone(),
            container: id.clone(),
            process,
            cmd,
            config: v.clone(),
            running: false,
            pid: 0,
            exit_code: None,
            io: None,
            hub,
            done,
            refusal,
        };
        self.containers
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(exec_id.clone(), exec);
        let _ = self.update(&id, |e| e.execs.push(exec_id.clone()));
        let mut attrs = BTreeMap::new();
        attrs.insert("execID".to_string(), exec_id.clone());
        self.container_event(
            &id,
            &format!(
                "exec_create: {}",
                v["Cmd"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default()
            ),
            attrs,
        );
        Ok(json!({"Id": exec_id}))
    }

    /// The exec `id`.
    ///
    /// # Errors
    /// 404 "No such exec instance".
    pub fn exec_get(&self, id: &str) -> Result<Exec, ApiError> {
        self.containers
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("No such exec instance: {id}")))
    }

    /// The exec `id` when it may start now: 409 when it ran or runs already, or when its
    /// container is not running.
    ///
    /// # Errors
    /// 404 for an unknown exec, 409 as above.
    pub fn exec_startable(&self, id: &str) -> Result<Exec, ApiError> {
        let ex = self.exec_get(id)?;
        if ex.running || ex.exit_code.is_some() {
            return Err(ApiError::Conflict(format!(
                "Error: Exec command {id} is already running"
            )));
        }
        let running = self
            .containers
            .lock()
            .get(&ex.container)
            .is_some_and(|e| e.lc.status() == Status::Running);
        if !running {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                ex.container
            )));
        }
        Ok(ex)
    }

    /// Starts exec `id`: its FIFOs, Tasks.Exec, Tasks.Start. Returns its output hub's receiver
    /// (subscribed before the start, so nothing is missed) and its stdio.
    ///
    /// # Errors
    /// 409 when already started or the container stopped; containerd's failures.
    pub async fn exec_start(
        &self,
        id: &str,
    ) -> Result<
        (
            tokio::sync::broadcast::Receiver<Chunk>,
            Arc<ProcessIo>,
            bool,
        ),
        ApiError,
    > {
        let ex = self.exec_startable(id)?;
        if let Some(why) = &ex.refusal {
            self.exec_failed(id);
            return Err(ApiError::Internal(why.clone()));
        }
        let tty = ex.process["terminal"].as_bool().unwrap_or(false);
        let stdin = ex.config["AttachStdin"].as_bool().unwrap_or(false);
        let rx = ex.hub.subscribe();
        let pio = Arc::new(io::open(
            &self.containers.run_dir.join(&ex.container),
            &format!("exec-{}", &id[..12]),
            stdin,
            tty,
            Sink {
                log: None,
                hub: ex.hub.clone(),
            },
        )?);
        let ctd = &self.containers.ctd;
        let r = async {
            ctd.exec(&ex.container, id, &ex.process, &pio.stdio).await?;
            ctd.start(&ex.container, id).await
        }
        .await;
        let pid = match r {
            Ok(pid) => pid,
            Err(e) => {
                pio.abandon();
                let _ = ctd.delete_exec(&ex.container, id).await;
                self.exec_failed(id);
                return Err(e);
            }
        };
        if let Some(cs) = ex.config.get("ConsoleSize").and_then(Value::as_array) {
            if let (Some(h), Some(w)) = (
                cs.first().and_then(Value::as_u64),
                cs.get(1).and_then(Value::as_u64),
            ) {
                if tty && h > 0 && w > 0 {
                    let _ = ctd.resize(&ex.container, id, w as u32, h as u32).await;
                }
            }
        }
        {
            let mut m = self
                .containers
                .execs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(x) = m.get_mut(id) {
                x.running = true;
                x.pid = pid;
                x.io = Some(pio.clone());
            }
        }
        let mut attrs = BTreeMap::new();
        attrs.insert("execID".to_string(), id.to_string());
        self.container_event(
            &ex.container,
            &format!("exec_start: {}", ex.cmd.join(" ")),
            attrs,
        );
        Ok((rx, pio, tty))
    }

    /// Records that exec `id` could not start: done, with dockerd's exit code 126 for it.
    fn exec_failed(&self, id: &str) {
        let mut m = self
            .containers
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(x) = m.get_mut(id) {
            x.running = false;
            x.exit_code = Some(126);
            x.done.send_replace(true);
        }
    }

    async fn on_exec_exit(self: &Arc<Self>, id: &str, code: u32) {
        let ex = {
            let mut m = self
                .containers
                .execs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(x) = m.get_mut(id) else { return };
            x.running = false;
            x.pid = 0;
            x.exit_code = Some(code as i32);
            if let Some(p) = x.io.take() {
                p.close_stdin();
            }
            x.clone()
        };
        let _ = self.containers.ctd.delete_exec(&ex.container, id).await;
        ex.done.send_replace(true);
        let mut attrs = BTreeMap::new();
        attrs.insert("execID".to_string(), id.to_string());
        attrs.insert("exitCode".to_string(), code.to_string());
        self.container_event(&ex.container, "exec_die", attrs);
    }

    /// `GET /exec/{id}/json`.
    ///
    /// # Errors
    /// 404.
    pub fn exec_inspect(&self, id: &str) -> Result<Value, ApiError> {
        let ex = self.exec_get(id)?;
        let c = &ex.config;
        let b = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(json!({
            "ID": ex.id,
            "Running": ex.running,
            "ExitCode": ex.exit_code,
            "ProcessConfig": {
                "tty": b("Tty"),
                "entrypoint": ex.cmd.first(),
                "arguments": ex.cmd.get(1..).unwrap_or(&[]),
                "privileged": b("Privileged"),
                "user": c.get("User").and_then(Value::as_str).unwrap_or(""),
            },
            "OpenStdin": b("AttachStdin"),
            "OpenStderr": b("AttachStderr"),
            "OpenStdout": b("AttachStdout"),
            "CanRemove": false,
            "ContainerID": ex.container,
            "DetachKeys": c.get("DetachKeys").and_then(Value::as_str).unwrap_or(""),
            "Pid": ex.pid,
        }))
    }

    /// `POST /exec/{id}/resize`.
    ///
    /// # Errors
    /// 404, 409 when not running.
    pub async fn exec_resize(&self, id: &str, h: u32, w: u32) -> Result<(), ApiError> {
        let ex = self.exec_get(id)?;
        if !ex.running {
            return Err(ApiError::Conflict(format!("Exec {id} is not running")));
        }
        self.containers.ctd.resize(&ex.container, id, w, h).await
    }

    /// Live restore: loads every record, reconciles it with its task in containerd, re-opens
    /// the output of running ones, records exits that happened while refengd was away and
    /// applies restart policies as dockerd does at its start.
    pub async fn restore_containers(self: &Arc<Self>) {
        use super::super::lifecycle::Observed;
        let ctd = self.containers.ctd.clone();
        for (stored, record) in self.containers.read_all() {
            let id = stored.id.clone();
            let task = ctd.state(&id, "").await.unwrap_or(TaskState::Absent);
            let observed = match task {
                TaskState::Running(_) => Observed::Running,
                TaskState::Paused(_) => Observed::Paused,
                TaskState::Stopped(code) => Observed::Stopped(Some(code as i32)),
                TaskState::Absent | TaskState::Created => Observed::Stopped(None),
            };
            let was_running = record.status.is_running() && record.status != Status::Restarting;
            let lc = AnyContainer::load(record, observed);
            let (hub, _) = tokio::sync::broadcast::channel(256);
            let (wait, _) = tokio::sync::watch::channel(WaitState {
                exits: stored.state.exits,
                exit_code: lc.record().exit_code,
                running: lc.status().is_running(),
                removed: false,
            });
            let mut entry = super::Entry {
                stored,
                lc,
                op: Arc::new(tokio::sync::Mutex::new(())),
                hub: hub.clone(),
                io: None,
                wait,
                execs: Vec::new(),
            };
            let status = entry.lc.status();
            if matches!(status, Status::Running | Status::Paused) {
                // Its volumes stay mounted for it; its exit gives them back.
                for m in &entry.stored.mounts {
                    if m.kind == super::mounts::MountKind::Volume {
                        self.volumes.adopt(&m.name);
                    }
                }
                // The shim still holds the FIFOs' write ends: read them again.
                let log = entry
                    .stored
                    .log
                    .and_then(|rot| io::LogFile::open(&self.containers.log_path(&id), rot).ok())
                    .map(|l| Arc::new(std::sync::Mutex::new(l)));
                match io::reopen(
                    &self.containers.run_dir.join(&id),
                    "init",
                    entry.stored.config.tty,
                    Sink { log, hub },
                ) {
                    Ok(p) => entry.io = Some(Arc::new(p)),
                    Err(e) => tracing::warn!(%id, error = %e, "output not re-attached"),
                }
            } else if was_running {
                let _ = ctd.delete_task(&id).await;
                entry.stored.state.pid = 0;
                entry.stored.state.finished_at = Some(io::now_rfc3339());
                entry.stored.state.exits += 1;
            }
            if matches!(status, Status::Running | Status::Paused) {
                super::health::mark_started(&entry.stored.config, &mut entry.stored.state, false);
            }
            let _ = self.containers.persist(&entry);
            self.containers.lock().insert(id.clone(), entry);
            if matches!(status, Status::Running | Status::Paused) {
                self.health_monitor_spawn(&id);
            }
            if !matches!(status, Status::Running | Status::Paused) {
                // An exit while refengd was away leaves endpoints behind.
                self.network_detach(&id).await;
            }
            if was_running && !matches!(status, Status::Running | Status::Paused) {
                let code = self
                    .containers
                    .lock()
                    .get(&id)
                    .map_or(0, |e| e.lc.record().exit_code);
                let mut attrs = BTreeMap::new();
                attrs.insert("exitCode".to_string(), code.to_string());
                self.container_event(&id, "die", attrs);
            }
            // dockerd's own start: always (and unless-stopped not stopped by hand) start again.
            let (after, before) = {
                let map = self.containers.lock();
                let e = &map[&id];
                (e.lc.clone().after_daemon_start().status(), e.lc.status())
            };
            if after == Status::Running && before != Status::Running && before != Status::Paused {
                let me = self.clone();
                let id2 = id.clone();
                tokio::spawn(async move {
                    let Ok(lock) = me.op_lock(&id2) else { return };
                    let _g = lock.lock().await;
                    match me.start_task(&id2).await {
                        Ok(()) => {
                            let _ = me.update(&id2, |e| {
                                let lc = e.lc.clone();
                                e.lc = lc.after_daemon_start();
                            });
                            me.container_event(&id2, "start", BTreeMap::new());
                        }
                        Err(e) => {
                            tracing::warn!(id = %id2, error = %e, "restart at daemon start failed")
                        }
                    }
                });
            } else if before == Status::Exited
                && self
                    .containers
                    .lock()
                    .get(&id)
                    .is_some_and(|e| e.stored.host.auto_remove)
            {
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.container_remove(&id, true, true).await;
                });
            }
        }
        // A task whose exit event was missed while this loop ran is caught by its state.
        let running: Vec<String> = self
            .containers
            .lock()
            .iter()
            .filter(|(_, e)| e.lc.status() == Status::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for id in running {
            if let Ok(TaskState::Stopped(code)) = ctd.state(&id, "").await {
                // The state answers for the task of now: no pid to check.
                self.on_task_exit(&id, &id, 0, code).await;
            }
        }
    }
}

use super::spec;
