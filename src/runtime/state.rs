//! Container state on disk under `--root`: one directory per container holding `state.json`
//! (written atomically), the exec fifo while the container is created, and a lock file.
//!
//! The status is never stored: it is derived each time from the recorded pid, its start time (so
//! a reused pid is never mistaken for the container), the exec fifo and the cgroup freezer.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use refeng_spec::oci::OpError;
use serde::{Deserialize, Serialize};

use crate::runtime::cgroups::Cgroup;
use crate::sys::durable::{self, DurableWriteError};

/// Name of the fifo the init process blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = ".lock";

/// Container status: the model's type, so the runtime and `spec/` cannot disagree on names.
pub use refeng_spec::oci::Status;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// the id is not usable as a container id
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.'")]
    InvalidId(String),
    /// the lifecycle refuses: no container with this id, or one exists already (the model's
    /// [`OpError::NotFound`] and [`OpError::AlreadyExists`], so each message exists once)
    #[error(transparent)]
    Lifecycle(#[from] OpError),
    /// an I/O error on a state file
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// state.json or a pid file could not be written durably
    #[error(transparent)]
    Write(#[from] DurableWriteError),
    /// state.json does not parse
    #[error("state file {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What is persisted about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistedState {
    /// Container id.
    pub id: String,
    /// Host pid of the container's init process.
    pub pid: i32,
    /// Start time of that pid in clock ticks since boot (/proc/PID/stat field 22).
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// When `create` finished.
    pub created: DateTime<Utc>,
    /// Owner (user name of the creating uid), as runc reports it.
    pub owner: String,
    /// The container's cgroup.
    pub cgroup: Cgroup,
    /// Whether create made the cgroup (false when it joined an existing one, which delete must
    /// then leave in place: runtime-spec "delete").
    #[serde(default = "owned_by_default")]
    pub cgroup_owned: bool,
    /// Without a mount namespace: the host mount id of the rootfs bind every mount of the
    /// container sits on, which delete unmounts with all below it (`rootfs::release_host_mounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount: Option<u64>,
    /// The config the container was created from (hooks run on start and delete need it).
    pub config: Spec,
}

fn owned_by_default() -> bool {
    true
}

impl PersistedState {
    /// Annotations of the config.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.config
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Liveness of a recorded pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The same process (pid and start time match) and not a zombie.
    Alive,
    /// Gone, a zombie, or the pid now belongs to another process.
    Dead,
}

/// Reads the start time (field 22) and state (field 3) of `pid` from /proc.
pub fn proc_stat(pid: Pid) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the recorded process still lives.
pub fn liveness(pid: i32, start_time: u64) -> Liveness {
    if pid <= 0 {
        return Liveness::Dead;
    }
    match proc_stat(Pid::from_raw(pid)) {
        Some((state, start)) if start == start_time && state != 'Z' && state != 'X' => {
            Liveness::Alive
        }
        _ => Liveness::Dead,
    }
}

/// The `--root` directory holding every container's state.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

/// An exclusive lock on one container's directory, held for the length of an operation.
#[derive(Debug)]
pub struct ContainerDir {
    path: PathBuf,
    _lock: Flock<File>,
}

/// Checks a container id: non-empty, no path separators, not `.` or `..`.
///
/// # Errors
/// [`StateError::InvalidId`].
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

impl StateRoot {
    /// A state root at `root` (created on first use, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn ensure(&self) -> Result<(), StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err("create state root", &self.root))
    }

    /// Makes a new container directory, locked; fails if the id is taken.
    ///
    /// # Errors
    /// [`OpError::AlreadyExists`], [`StateError::InvalidId`], or I/O.
    pub fn create(&self, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        self.ensure()?;
        let path = self.root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(OpError::AlreadyExists { id: id.to_string() }.into())
            }
            Err(e) => return Err(io_err("create", &path)(e)),
        }
        ContainerDir::lock(path)
    }

    /// Locks an existing container directory.
    ///
    /// # Errors
    /// [`OpError::NotFound`] if there is no such container.
    pub fn open(&self, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        let path = self.root.join(id);
        let not_found = || OpError::NotFound { id: id.to_string() };
        if !path.is_dir() {
            return Err(not_found().into());
        }
        let dir = ContainerDir::lock(path)?;
        // A delete may have removed the directory while we waited for its lock.
        if !dir.path.is_dir() {
            return Err(not_found().into());
        }
        Ok(dir)
    }

    /// Reads a container's state without locking (for `state` and `list`); `None` while the
    /// container is still being created.
    ///
    /// # Errors
    /// [`OpError::NotFound`], or a corrupt state file.
    pub fn peek(&self, id: &str) -> Result<Option<PersistedState>, StateError> {
        validate_id(id)?;
        let dir = self.root.join(id);
        if !dir.is_dir() {
            return Err(OpError::NotFound { id: id.to_string() }.into());
        }
        read_state(&dir)
    }

    /// Ids of every container directory, sorted.
    ///
    /// # Errors
    /// I/O errors reading the root (a missing root is an empty list).
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn read_state(dir: &Path) -> Result<Option<PersistedState>, StateError> {
    let path = dir.join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Corrupt { path, source })
}

impl ContainerDir {
    fn lock(path: PathBuf) -> Result<Self, StateError> {
        let lock_path = path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err("open lock", &lock_path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            io_err("lock", &lock_path)(std::io::Error::from_raw_os_error(errno as i32))
        })?;
        Ok(Self { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the exec fifo.
    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    /// Reads state.json (`None` if not written yet).
    ///
    /// # Errors
    /// I/O or a corrupt file.
    pub fn read(&self) -> Result<Option<PersistedState>, StateError> {
        read_state(&self.path)
    }

    /// Writes state.json atomically and durably ([`crate::sys::durable`]), readable by root
    /// only: it holds the whole config.
    ///
    /// # Errors
    /// [`StateError::Write`], or [`StateError::Corrupt`] if the state does not serialize.
    pub fn write(&self, state: &PersistedState) -> Result<(), StateError> {
        let dest = self.path.join(STATE_FILE);
        let bytes = serde_json::to_vec(state).map_err(|source| StateError::Corrupt {
            path: dest.clone(),
            source,
        })?;
        durable::write(&dest, 0o600, &bytes)?;
        Ok(())
    }

    /// Removes the directory and everything in it (the lock goes with it).
    ///
    /// # Errors
    /// I/O errors other than the directory being gone already.
    pub fn remove(self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &self.path)(e)),
        }
    }
}

/// Writes a pid file atomically and durably ([`crate::sys::durable`]): containerd and docker
/// read it as soon as it appears and must never see it half written, and after a crash it must
/// still name the process. Mode 0644, what runc's 0666 gives under the usual umask.
///
/// # Errors
/// [`StateError::Write`].
pub fn write_pid_file(path: &Path, pid: Pid) -> Result<(), StateError> {
    durable::write(path, 0o644, pid.to_string().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two `exec --pid-file P` at once: P always holds one whole pid, neither write fails, and no
    /// temp file is left (the fixed `.P.tmp` this replaced made the second rename fail with
    /// ENOENT or move the first writer's half-written file).
    #[test]
    fn concurrent_pid_file_writes_never_collide_or_tear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exec.pid");
        let pids = [7, 4_194_000, 123_456, 99];
        std::thread::scope(|s| {
            for pid in pids {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..200 {
                        write_pid_file(path, Pid::from_raw(pid)).expect("write pid file");
                    }
                });
            }
            let path = &path;
            s.spawn(move || {
                for _ in 0..400 {
                    match fs::read_to_string(path) {
                        Ok(got) => assert!(
                            pids.iter().any(|p| p.to_string() == got),
                            "torn pid file {got:?}"
                        ),
                        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                    }
                }
            });
        });
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["exec.pid"], "nothing but the pid file is left");
    }

    /// A write that fails (here: the destination is a directory, so the rename is refused)
    /// leaves the old state and no temp file behind, for state.json and for a pid file.
    #[test]
    fn failed_writes_leave_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let dir = root.create("c1").unwrap();
        fs::create_dir(dir.path().join(STATE_FILE)).unwrap();
        fs::write(dir.path().join(STATE_FILE).join("keep"), "x").unwrap();
        let state = PersistedState {
            id: "c1".into(),
            pid: 1,
            pid_start_time: 2,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: Utc::now(),
            owner: String::new(),
            cgroup: Cgroup {
                driver: crate::runtime::cgroups::Driver::V1,
                path: "/c1".into(),
                hierarchies: Default::default(),
            },
            cgroup_owned: true,
            rootfs_mount: None,
            config: Spec::default(),
        };
        assert!(dir.write(&state).is_err());
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [LOCK_FILE, STATE_FILE]);

        let pid_dir = tmp.path().join("pids");
        fs::create_dir_all(pid_dir.join("init.pid/sub")).unwrap();
        assert!(write_pid_file(&pid_dir.join("init.pid"), Pid::from_raw(5)).is_err());
        let names: Vec<_> = fs::read_dir(&pid_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["init.pid"]);
    }

    #[test]
    fn ids_are_checked() {
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "abc-123_x.y+z", "0123456789abcdef"] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = nix::unistd::getpid();
        let (_, start) = proc_stat(me).expect("own stat");
        assert_eq!(liveness(me.as_raw(), start), Liveness::Alive);
        assert_eq!(liveness(me.as_raw(), start + 1), Liveness::Dead);
        assert_eq!(liveness(0, 0), Liveness::Dead);
    }

    #[test]
    fn create_is_exclusive_and_open_finds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let dir = root.create("c1").unwrap();
        let exists = OpError::AlreadyExists { id: "c1".into() };
        assert!(matches!(root.create("c1"), Err(StateError::Lifecycle(e)) if e == exists));
        assert!(dir.read().unwrap().is_none());
        drop(dir);
        assert_eq!(root.ids().unwrap(), vec!["c1".to_string()]);
        let dir = root.open("c1").unwrap();
        dir.remove().unwrap();
        let missing = OpError::NotFound { id: "c1".into() };
        assert!(matches!(root.open("c1"), Err(StateError::Lifecycle(e)) if e == missing));
        assert!(matches!(root.peek("c1"), Err(StateError::Lifecycle(e)) if e == missing));
    }
}

/// The runtime-spec state document ("State"), with runc's extra fields (`rootfs`, `created`,
/// `owner`) that containerd and docker read. This is what `state` prints and hooks get on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    /// Runtime-spec version the state follows.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Derived status.
    pub status: Status,
    /// Host pid of the container process; absent once stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: DateTime<Utc>,
    /// Owner.
    pub owner: String,
    /// Annotations of the config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The runtime-spec version refeng-runc implements.
pub const OCI_VERSION: &str = "1.2.0";

impl StateReport {
    /// The report for `state` in `status`. A pid is reported while the process can still be
    /// addressed (creating, created, running, paused), as the runtime-spec asks.
    pub fn new(state: &PersistedState, status: Status) -> Self {
        Self {
            oci_version: OCI_VERSION.to_string(),
            id: state.id.clone(),
            status,
            pid: (status != Status::Stopped && state.pid > 0).then_some(state.pid),
            bundle: state.bundle.clone(),
            rootfs: state.rootfs.clone(),
            created: state.created,
            owner: state.owner.clone(),
            annotations: state.annotations(),
        }
    }
}
