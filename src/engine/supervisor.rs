//! The refeng-containerd that refengd starts and watches when no `--containerd` is given, as
//! dockerd does with its containerd: its socket, state and pidfile under the exec root, its
//! persistent root under the data root. A still-running one from an earlier refengd (killed
//! with -9) is adopted rather than replaced, so its shims and containers carry on; one that
//! dies is started again; when refengd stops, it is stopped (TERM, then KILL after 15 s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::config::Config;

/// How long refeng-containerd may take to stop on TERM before it is killed (dockerd: 15 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the supervised daemon lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The refeng-containerd binary.
    pub binary: PathBuf,
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--state`.
    pub state: PathBuf,
    /// Its pid, for adoption after a crash of refengd.
    pub pidfile: PathBuf,
    /// `--log-level`.
    pub log_level: String,
}

impl Layout {
    /// The layout for `config`, with the binary found beside refengd's own executable or on
    /// `PATH`.
    pub fn new(config: &Config) -> Layout {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("refeng-containerd")))
            .filter(|p| p.exists());
        Layout {
            binary: beside.unwrap_or_else(|| PathBuf::from("refeng-containerd")),
            socket: config.supervised_socket(),
            root: config.data_root.join("containerd"),
            state: config.exec_root.join("containerd"),
            pidfile: config.exec_root.join("containerd/containerd.pid"),
            log_level: match config.log_level.as_str() {
                "fatal" => "error".into(),
                l => l.into(),
            },
        }
    }
}

/// A failure to start refeng-containerd.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// starting {binary}: {source}
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// writing {path}: {source}
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running daemon: either our child or an adopted process.
#[derive(Debug)]
enum Running {
    Child(Child),
    Adopted(Pid),
}

impl Running {
    fn pid(&self) -> Pid {
        match self {
            Running::Child(c) => Pid::from_raw(i32::try_from(c.id()).unwrap_or(i32::MAX)),
            Running::Adopted(p) => *p,
        }
    }

    /// Whether it is still alive (reaping it when it is our child).
    fn alive(&mut self) -> bool {
        match self {
            Running::Child(c) => matches!(c.try_wait(), Ok(None)),
            Running::Adopted(p) => kill(*p, None).is_ok() && is_refeng_containerd(*p),
        }
    }
}

fn is_refeng_containerd(pid: Pid) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("refeng-containerd"))
}

fn adoptable(layout: &Layout) -> Option<Pid> {
    let text = std::fs::read_to_string(&layout.pidfile).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    (kill(pid, None).is_ok() && is_refeng_containerd(pid) && layout.socket.exists()).then_some(pid)
}

fn spawn(layout: &Layout) -> Result<Running, SuperviseError> {
    for dir in [&layout.root, &layout.state] {
        std::fs::create_dir_all(dir).map_err(|source| SuperviseError::Write {
            path: dir.clone(),
            source,
        })?;
    }
    let child = Command::new(&layout.binary)
        .arg("--address")
        .arg(&layout.socket)
        .arg("--root")
        .arg(&layout.root)
        .arg("--state")
        .arg(&layout.state)
        .arg("--log-level")
        .arg(&layout.log_level)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| SuperviseError::Spawn {
            binary: layout.binary.clone(),
            source,
        })?;
    write_pidfile(&layout.pidfile, child.id())?;
    tracing::info!(pid = child.id(), socket = %layout.socket.display(), "started refeng-containerd");
    Ok(Running::Child(child))
}

fn write_pidfile(path: &Path, pid: u32) -> Result<(), SuperviseError> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| SuperviseError::Write {
            path: path.into(),
            source,
        })
}

/// The supervisor: started once, it keeps refeng-containerd running until `stop`.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Adopts the refeng-containerd of an earlier refengd, or starts one; then watches it.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn start(layout: Layout) -> Result<Supervisor, SuperviseError> {
        let running = match adoptable(&layout) {
            Some(pid) => {
                tracing::info!(%pid, "adopting the running refeng-containerd");
                Running::Adopted(pid)
            }
            None => spawn(&layout)?,
        };
        let (stop, rx) = watch::channel(false);
        let done = tokio::spawn(watch_over(layout, running, rx));
        Ok(Supervisor { stop, done })
    }

    /// Stops refeng-containerd (TERM, KILL after 15 s) and the watch.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}

async fn watch_over(layout: Layout, mut running: Running, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if !running.alive() {
            tracing::warn!(pid = %running.pid(), "refeng-containerd ended; starting it again");
            match spawn(&layout) {
                Ok(r) => running = r,
                Err(e) => tracing::error!(error = %e, "cannot start refeng-containerd"),
            }
        }
    }
    let pid = running.pid();
    if running.alive() {
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while running.alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if running.alive() {
            tracing::warn!(%pid, "refeng-containerd did not stop on TERM; killing it");
            let _ = kill(pid, Signal::SIGKILL);
            if let Running::Child(c) = &mut running {
                let _ = c.wait();
            }
        }
    }
    let _ = std::fs::remove_file(&layout.pidfile);
    tracing::info!(%pid, "refeng-containerd stopped");
}
