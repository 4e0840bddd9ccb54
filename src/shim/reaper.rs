//! Child reaping for a subreaper: one thread collects every exit with `waitpid(-1)` and hands it
//! either to whoever waits for that pid (a runtime command) or to the exit handler of the
//! container processes the shim watches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How many exits of pids nobody asked for are kept (orphans reparented to the shim).
const UNCLAIMED_LIMIT: usize = 256;

/// What the reaper calls for a watched process: pid, exit status (128+signal when killed) and
/// when it was reaped.
pub type ExitHandler = Box<dyn Fn(u32, u32, SystemTime) + Send + Sync>;

/// The exits of one shim process.
pub struct Reaper {
    inner: Mutex<Exits>,
    reaped: Condvar,
    handler: OnceLock<ExitHandler>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Exits {
    unclaimed: HashMap<u32, (u32, SystemTime)>,
    watched: HashSet<u32>,
}

/// Why the reaper could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// cannot block SIGCHLD for the reaper
    #[error("cannot block SIGCHLD for the reaper")]
    Mask(#[source] Errno),
    /// cannot spawn the reaper thread
    #[error("cannot spawn the reaper thread")]
    Spawn(#[source] std::io::Error),
}

impl Reaper {
    /// Blocks `SIGCHLD` in the calling thread (so every thread started afterwards inherits the
    /// mask and only the reaper receives it) and starts the reaper thread. Call before any other
    /// thread exists.
    ///
    /// # Errors
    /// [`ReaperError`] when the mask cannot be set or the thread cannot be spawned.
    pub fn start() -> Result<Arc<Self>, ReaperError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(ReaperError::Mask)?;
        let reaper = Arc::new(Self {
            inner: Mutex::new(Exits::default()),
            reaped: Condvar::new(),
            handler: OnceLock::new(),
        });
        let for_thread = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || for_thread.run(mask))
            .map_err(ReaperError::Spawn)?;
        Ok(reaper)
    }

    /// Sets the handler for watched processes (once; later calls are ignored).
    pub fn set_handler(&self, handler: ExitHandler) {
        let _ = self.handler.set(handler);
    }

    fn run(&self, mask: SigSet) {
        loop {
            if let Err(e) = mask.wait() {
                tracing::warn!(error = %e, "sigwait failed");
            }
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => self.reaped(pid, code as u32),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => self.reaped(pid, 128 + sig as u32),
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                    Ok(_) => continue,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "waitpid failed");
                        break;
                    }
                }
            }
        }
    }

    fn reaped(&self, pid: Pid, status: u32) {
        let pid = pid.as_raw() as u32;
        let at = SystemTime::now();
        tracing::debug!(pid, status, "reaped");
        let watched = {
            let mut exits = self.lock();
            if exits.watched.remove(&pid) {
                true
            } else {
                if exits.unclaimed.len() >= UNCLAIMED_LIMIT {
                    let oldest = exits
                        .unclaimed
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(p, _)| *p);
                    if let Some(oldest) = oldest {
                        exits.unclaimed.remove(&oldest);
                    }
                }
                exits.unclaimed.insert(pid, (status, at));
                self.reaped.notify_all();
                false
            }
        };
        if watched {
            if let Some(handler) = self.handler.get() {
                handler(pid, status, at);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Exits> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the exit of `pid`, a child that nobody watches (a runtime command).
    pub fn wait_for(&self, pid: u32) -> u32 {
        let mut exits = self.lock();
        loop {
            if let Some((status, _)) = exits.unclaimed.remove(&pid) {
                return status;
            }
            exits = self.reaped.wait(exits).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Hands future exits of `pid` to the handler; returns the exit if it was already reaped.
    pub fn watch(&self, pid: u32) -> Option<(u32, SystemTime)> {
        let mut exits = self.lock();
        match exits.unclaimed.remove(&pid) {
            Some(exit) => Some(exit),
            None => {
                exits.watched.insert(pid);
                None
            }
        }
    }
}
