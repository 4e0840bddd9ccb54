//! OOM notifications for a task: a thread that blocks on the memory cgroup of init (cgroup v1:
//! an eventfd registered on `memory.oom_control`; cgroup v2: inotify on `memory.events`, counting
//! `oom_kill`) and reports each OOM kill until the cgroup is removed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::kernel_files::{self, cgroup_file};

/// Why OOM notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OomError {
    /// cannot find the memory cgroup of pid {0}
    #[error("cannot find the memory cgroup of pid {0}")]
    NoCgroup(u32),
    /// cannot watch {path}
    #[error("cannot watch {path}")]
    Watch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The memory cgroup directory of `pid` and whether it is cgroup v2.
fn memory_cgroup(pid: u32, root: &Path) -> Option<(PathBuf, bool)> {
    let own = ProcCgroup::read(Some(pid)).ok()?;
    let rel = |path: &Path| path.strip_prefix("/").unwrap_or(path).to_path_buf();
    if let Some(memory) = own.v1("memory") {
        return Some((root.join("memory").join(rel(&memory.path)), false));
    }
    let unified = root.join(rel(own.unified()?));
    unified
        .join("memory.events")
        .exists()
        .then_some((unified, true))
}

/// The `oom_kill` count of v2 `memory.events`; 0 when it cannot be read (the cgroup is going
/// away, and the watcher with it).
fn oom_kills(dir: &Path) -> u64 {
    match kernel_files::read_parsed(&dir.join("memory.events"), cgroup_file::flat_keyed) {
        Ok(events) => events.get("oom_kill").copied().unwrap_or(0),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read memory.events");
            0
        }
    }
}

/// Starts watching the memory cgroup of `pid`; `on_oom` runs on the watcher thread for every OOM
/// kill. The thread ends when the cgroup is removed.
///
/// # Errors
/// [`OomError`] when the cgroup cannot be found or watched.
pub fn watch(
    pid: u32,
    cgroup_root: &Path,
    on_oom: impl Fn() + Send + 'static,
) -> Result<(), OomError> {
    let (dir, v2) = memory_cgroup(pid, cgroup_root).ok_or(OomError::NoCgroup(pid))?;
    let watch_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Errno| OomError::Watch {
            path,
            source: e.into(),
        }
    };
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(64 * 1024)
            .spawn(f)
            .map(drop)
            .map_err(|source| OomError::Watch {
                path: dir.clone(),
                source,
            })
    };
    if v2 {
        let events = dir.join("memory.events");
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(watch_err(&events))?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(watch_err(&events))?;
        let mut seen = oom_kills(&dir);
        let dir2 = dir.clone();
        spawn(Box::new(move || loop {
            match inotify.read_events() {
                Ok(events) => {
                    if events
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                    {
                        return;
                    }
                    let now = oom_kills(&dir2);
                    if now > seen {
                        on_oom();
                    }
                    seen = now;
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }))
    } else {
        let control = dir.join("memory.oom_control");
        let oom_control = File::open(&control).map_err(|source| OomError::Watch {
            path: control.clone(),
            source,
        })?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(watch_err(&control))?;
        let register = dir.join("cgroup.event_control");
        std::fs::write(
            &register,
            format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()),
        )
        .map_err(|source| OomError::Watch {
            path: register.clone(),
            source,
        })?;
        let dir2 = dir.clone();
        spawn(Box::new(move || {
            let _keep = oom_control;
            loop {
                match efd.read() {
                    // cgroup v1 also signals the eventfd when the cgroup is removed.
                    Ok(_) if !dir2.exists() => return,
                    Ok(_) => on_oom(),
                    Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        }))
    }
}
