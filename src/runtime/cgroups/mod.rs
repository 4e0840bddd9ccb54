//! Container cgroups: driver detection (v1 on hybrid hosts, v2 on unified hosts), creation,
//! resource limits, membership, freezing and removal, with runc's cgroupfs semantics.
//!
//! The [`Cgroup`] value is what the container state persists: a driver and one path below every
//! hierarchy's root. Everything else (which hierarchies are mounted where) is discovered from
//! `/proc/self/mountinfo` on each call, so a later `refeng-runc` process acts on the same
//! directories the creating one made.

mod devices;
mod devices_bpf;
mod fs;
#[cfg(test)]
mod host_tests;
mod path;
pub mod stats;
mod sub;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

pub use sub::SubCgroups;

use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::kernel_files::KernelFileError;

/// Where cgroup hierarchies are mounted on a standard host.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// the cgroup root cannot be inspected
    #[error("cannot statfs the cgroup root {path}")]
    Statfs {
        /// The cgroup root.
        path: PathBuf,
        /// What statfs(2) said.
        #[source]
        source: nix::Error,
    },
    /// a proc file (the process's cgroups, the mount table) or a cgroup statistics file cannot
    /// be read or does not parse
    #[error(transparent)]
    KernelFile(#[from] KernelFileError),
    /// no cgroup v1 controller hierarchy is mounted
    #[error("no cgroup v1 controller hierarchy is mounted (looked in {mountinfo})")]
    NoHierarchy {
        /// The mount table that was searched.
        mountinfo: PathBuf,
    },
    /// the cgroups path or container id cannot name a cgroup
    #[error("cgroup path {path:?} is not usable: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// the calling process's own cgroup is not listed for a hierarchy
    #[error("own cgroup for the {controller} hierarchy is not listed in {proc_cgroup}")]
    OwnCgroupMissing {
        /// The controller (v1) or `unified` (v2).
        controller: String,
        /// The proc file that was read.
        proc_cgroup: PathBuf,
    },
    /// an `exec --cgroup` argument cannot be used
    #[error("invalid --cgroup {arg:?}: {reason}")]
    SubCgroup {
        /// The argument (or the part of it that is refused).
        arg: String,
        /// Why.
        reason: String,
    },
    /// an `exec --cgroup` sub-cgroup does not exist
    #[error("sub-cgroup {path} does not exist (exec --cgroup joins existing cgroups only)")]
    SubCgroupMissing {
        /// The directory that was looked for.
        path: PathBuf,
    },
    /// a cgroup directory cannot be created
    #[error("cannot create cgroup directory {path}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// a cgroup file cannot be written
    #[error("cannot write {value:?} to {path}")]
    Write {
        /// The cgroup file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// a cgroup file cannot be read
    #[error("cannot read {path}")]
    Read {
        /// The cgroup file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// a resource is set but the controller it needs is not available
    #[error("{field} is set but the {controller} controller is not available")]
    MissingController {
        /// The runtime-spec field (`linux.resources.memory.limit`).
        field: String,
        /// The controller it needs.
        controller: String,
    },
    /// a resource is set but this host or driver cannot apply it
    #[error("{field} is not supported: {reason}")]
    Unsupported {
        /// The runtime-spec field.
        field: String,
        /// Why (missing file, wrong driver).
        reason: String,
    },
    /// a resource has a value the kernel interface cannot take
    #[error("{field} has invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The runtime-spec field.
        field: String,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// a device cgroup rule cannot be expressed
    #[error("device rule {rule} is invalid: {reason}")]
    InvalidDeviceRule {
        /// The rule, rendered like devices.allow.
        rule: String,
        /// Why.
        reason: &'static str,
    },
    /// the eBPF device filter cannot be loaded or attached
    #[error("cannot {op} the device filter on {path}")]
    DeviceFilter {
        /// `load`, `attach`, `query` or `detach`.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The bpf(2) error (with the verifier log on load).
        #[source]
        source: io::Error,
    },
    /// a cgroup directory cannot be removed
    #[error("cannot remove cgroup directory {path} (after {attempts} attempts)")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// How many times rmdir was tried.
        attempts: u32,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// the freezer did not settle
    #[error("cgroup {path} did not become {wanted} in time (last state {last:?})")]
    FreezeTimeout {
        /// The freezer file watched.
        path: PathBuf,
        /// `FROZEN`/`THAWED` (v1) or `frozen 1`/`frozen 0` (v2).
        wanted: &'static str,
        /// The last state read.
        last: String,
    },
}

/// Which cgroup hierarchy layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// One hierarchy per controller under /sys/fs/cgroup/<controller> (hybrid or legacy hosts).
    V1,
    /// The unified hierarchy mounted at /sys/fs/cgroup.
    V2,
}

impl Driver {
    /// Detects the host's driver: v2 when `/sys/fs/cgroup` itself is a cgroup2 mount, else v1
    /// (hybrid hosts keep an empty cgroup2 at `/sys/fs/cgroup/unified` and count as v1, as in runc).
    ///
    /// # Errors
    /// Fails if `/sys/fs/cgroup` cannot be inspected.
    pub fn detect() -> Result<Self, CgroupError> {
        let root = Path::new(CGROUP_ROOT);
        let stat = nix::sys::statfs::statfs(root).map_err(|source| CgroupError::Statfs {
            path: root.to_path_buf(),
            source,
        })?;
        if stat.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            Ok(Self::V2)
        } else {
            Ok(Self::V1)
        }
    }
}

/// A container's cgroup: where it lives and under which driver. Persisted in the container state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Driver in use.
    pub driver: Driver,
    /// Path below the hierarchy's root, always absolute (`/refeng/abc`): v2's one hierarchy.
    /// Under v1, the path most hierarchies share (all of them for an absolute `cgroupsPath`);
    /// where the container is in each one is [`Cgroup::hierarchies`].
    pub path: PathBuf,
    /// v1 only: the path in each hierarchy the container is in, keyed by the hierarchy's
    /// controllers as `/proc/<pid>/cgroup` lists them (`cpu,cpuacct`, `name=systemd`; empty for
    /// the cgroup2 hierarchy of a hybrid host). A relative `cgroupsPath` goes below the caller's
    /// own cgroup in each hierarchy, and a caller may sit in different cgroups per hierarchy
    /// (runc resolves it the same way). Empty in state files written before it existed: then
    /// every controller and named hierarchy holds `path`, and the cgroup2 one nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hierarchies: BTreeMap<String, PathBuf>,
}

/// The mounted hierarchies a driver acts on, discovered per call.
#[derive(Debug)]
enum Backend {
    V1(v1::Hierarchies),
    V2(v2::Unified),
}

impl Backend {
    fn discover(driver: Driver) -> Result<Self, CgroupError> {
        match driver {
            Driver::V1 => Ok(Self::V1(v1::Hierarchies::discover()?)),
            Driver::V2 => Ok(Self::V2(v2::Unified::new(CGROUP_ROOT))),
        }
    }
}

impl Cgroup {
    /// Resolves the container's cgroup from `linux.cgroupsPath` (absolute: below the hierarchy root;
    /// relative: below the calling process's own cgroup in each hierarchy; absent: `/<id>` like
    /// runc) and detects the driver.
    ///
    /// # Errors
    /// Fails if no cgroup hierarchy is mounted, `/proc/self/cgroup` cannot be read (for a
    /// relative path), or the path is not usable: it escapes the hierarchy root with `..` or
    /// names the root itself.
    #[tracing::instrument(level = "debug")]
    pub fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<Self, CgroupError> {
        let driver = Driver::detect()?;
        let own = match cgroups_path {
            Some(p) if p.is_relative() => Some(ProcCgroup::read(None)?),
            _ => None,
        };
        let cgroup = match driver {
            Driver::V1 => {
                let found = v1::Hierarchies::discover()?;
                let paths =
                    path::resolve(cgroups_path, id, own.as_ref(), &found.own_cgroup_sources())?;
                let path = most_common(&paths)
                    .ok_or_else(|| CgroupError::NoHierarchy {
                        mountinfo: PathBuf::from("/proc/self/mountinfo"),
                    })?
                    .clone();
                Self {
                    driver,
                    path,
                    hierarchies: found
                        .list()
                        .iter()
                        .map(v1::Hierarchy::key)
                        .zip(paths)
                        .collect(),
                }
            }
            Driver::V2 => {
                let mut paths = path::resolve(
                    cgroups_path,
                    id,
                    own.as_ref(),
                    &[path::OwnSource::unified()],
                )?;
                Self {
                    driver,
                    path: paths.remove(0),
                    hierarchies: BTreeMap::new(),
                }
            }
        };
        tracing::debug!(?driver, path = %cgroup.path.display(), hierarchies = ?cgroup.hierarchies, "resolved cgroup");
        Ok(cgroup)
    }

    /// The container's cgroup in the v1 hierarchy that carries any of `controllers` (as a
    /// mount's super options or a `/proc/<pid>/cgroup` line list them), or [`Cgroup::path`]
    /// when the state records no per-hierarchy paths; `None` when the container is not in that
    /// hierarchy.
    #[must_use]
    pub fn path_in(&self, controllers: &[String]) -> Option<&Path> {
        if self.hierarchies.is_empty() {
            return Some(&self.path);
        }
        self.hierarchies
            .iter()
            .find(|(key, _)| {
                key.split(',')
                    .any(|c| !c.is_empty() && controllers.iter().any(|x| x == c))
            })
            .map(|(_, path)| path.as_path())
    }

    /// Where the cgroup is in each v1 hierarchy, checked.
    fn placement(&self) -> Result<v1::Placement<'_>, CgroupError> {
        if self.hierarchies.is_empty() {
            return Ok(v1::Placement::Uniform(path::checked(&self.path)?));
        }
        let map = self
            .hierarchies
            .iter()
            .map(|(key, p)| Ok((key.as_str(), path::checked(p)?)))
            .collect::<Result<_, CgroupError>>()?;
        Ok(v1::Placement::PerHierarchy(map))
    }

    /// The cgroup in v2's one hierarchy, checked.
    fn unified_path(&self) -> Result<&Path, CgroupError> {
        if !self.hierarchies.is_empty() {
            return Err(CgroupError::InvalidPath {
                path: self.path.clone(),
                reason: "per-hierarchy paths are for cgroup v1 only",
            });
        }
        path::checked(&self.path)
    }

    /// Creates the cgroup and applies `resources`; `extra_device_allows` are appended after the
    /// spec's device rules (the default devices the runtime itself creates). Unsupported settings
    /// are refused with an error naming them.
    ///
    /// # Errors
    /// Fails if a directory cannot be made, a set field needs a controller or file this host
    /// lacks, a value is out of range, or a limit cannot be written. A leaf directory this call
    /// made is removed again on failure.
    #[tracing::instrument(level = "debug", skip(resources, extra_device_allows), fields(path = %self.path.display()))]
    pub fn create(
        &self,
        resources: Option<&LinuxResources>,
        extra_device_allows: &[LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let resources = resources.map(unset_zeros);
        let resources = resources.as_ref();
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.create(&self.placement()?, resources, extra_device_allows),
            Backend::V2(u) => u.create(self.unified_path()?, resources, extra_device_allows),
        }
    }

    /// Applies `resources` to the existing cgroup, with the same rules as [`Cgroup::create`];
    /// fields left unset keep their current value.
    ///
    /// # Errors
    /// As [`Cgroup::create`], and fails if the cgroup does not exist.
    #[tracing::instrument(level = "debug", skip(resources), fields(path = %self.path.display()))]
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let resources = &unset_zeros(resources);
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.update(&self.placement()?, resources),
            Backend::V2(u) => u.update(self.unified_path()?, resources),
        }
    }

    /// Whether the cgroup's directory exists (under v1, in any hierarchy): a container that
    /// joins a cgroup made by someone else must not remove it on delete.
    ///
    /// # Errors
    /// Fails if the hierarchies cannot be discovered or the path is not usable.
    pub fn exists(&self) -> Result<bool, CgroupError> {
        Ok(match Backend::discover(self.driver)? {
            Backend::V1(h) => {
                let at = self.placement()?;
                h.list()
                    .iter()
                    .any(|x| at.rel(x).is_some_and(|rel| x.mountpoint.join(rel).is_dir()))
            }
            Backend::V2(u) => u.dir(self.unified_path()?).is_dir(),
        })
    }

    /// Moves `pid` into the cgroup (every hierarchy under v1).
    ///
    /// # Errors
    /// Fails if cgroup.procs cannot be written.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.add_process(&self.placement()?, pid),
            Backend::V2(u) => u.add_process(self.unified_path()?, pid),
        }
    }

    /// What a process needs to fork a child that is born in this cgroup, opened now (in the
    /// runtime's mount namespace): see [`Entry`].
    ///
    /// # Errors
    /// Fails if the hierarchies cannot be discovered or a file of the cgroup cannot be opened.
    pub fn entry(&self) -> Result<Entry, CgroupError> {
        let (v1_dirs, unified) = match Backend::discover(self.driver)? {
            Backend::V1(h) => h.entry_dirs(&self.placement()?),
            Backend::V2(u) => (Vec::new(), Some(u.dir(self.unified_path()?))),
        };
        let open = |path: PathBuf| -> Result<(PathBuf, std::fs::File), CgroupError> {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map(|f| (path.clone(), f))
                .map_err(|source| CgroupError::Write {
                    path,
                    value: "0".into(),
                    source,
                })
        };
        let tasks = v1_dirs
            .into_iter()
            .map(|d| open(d.join("tasks")))
            .collect::<Result<_, _>>()?;
        let unified = match unified {
            Some(dir) => {
                let fd = nix::fcntl::open(
                    &dir,
                    nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| CgroupError::Read {
                    path: dir.clone(),
                    source: e.into(),
                })?;
                let procs = open(dir.join("cgroup.procs"))?;
                Some(UnifiedEntry { dir: fd, procs })
            }
            None => None,
        };
        Ok(Entry { tasks, unified })
    }

    /// The pids currently in the cgroup (under v1, in any of its hierarchies), sorted.
    ///
    /// # Errors
    /// Fails if cgroup.procs cannot be read.
    pub fn procs(&self) -> Result<Vec<Pid>, CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.procs(&self.placement()?),
            Backend::V2(u) => u.procs(self.unified_path()?),
        }
    }

    /// Freezes (`true`) or thaws (`false`) every process in the cgroup and waits until the
    /// kernel reports the new state (v1 `freezer.state`, v2 `cgroup.events`).
    ///
    /// # Errors
    /// Fails if the freezer is not available (v1 without the freezer controller), cannot be
    /// written, or does not settle within a few seconds.
    #[tracing::instrument(level = "debug", fields(path = %self.path.display()))]
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.freeze(&self.placement()?, frozen),
            Backend::V2(u) => u.freeze(self.unified_path()?, frozen),
        }
    }

    /// Whether the cgroup is frozen (fully, not merely freezing).
    ///
    /// # Errors
    /// Fails if the freezer state cannot be read.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.is_frozen(&self.placement()?),
            Backend::V2(u) => u.is_frozen(self.unified_path()?),
        }
    }

    /// Removes the cgroup directories; a cgroup that is already gone is not an error. Only the
    /// container's leaf (and sub-cgroups the container made below it) is removed, never parents.
    ///
    /// # Errors
    /// Fails if a directory stays busy after retries.
    #[tracing::instrument(level = "debug", fields(path = %self.path.display()))]
    pub fn destroy(&self) -> Result<(), CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => h.destroy(&self.placement()?),
            Backend::V2(u) => u.destroy(self.unified_path()?),
        }
    }
}

/// How a forked process is born inside the container's cgroup, instead of being moved there
/// once it runs.
///
/// Moving a process (its pid written to `cgroup.procs`) takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing, and taking that waits for an RCU grace period: 5 to
/// 20 ms on this project's 2-core machine, the largest single cost of a container start
/// (benches/README.md). The kernel skips that lock for a move that cannot race with the moved
/// process forking or exiting: a single thread moving itself (`0` written to a v1 `tasks` file,
/// kernel/cgroup/cgroup.c `cgroup_procs_write_start`), and a child created inside its cgroup
/// (`clone3(2)` with CLONE_INTO_CGROUP, which takes the lock only for reading). So the
/// single-threaded process that forks the container's process first moves itself into every v1
/// hierarchy ([`Entry::join_v1`], before it joins any namespace: a joined user namespace would
/// not be allowed to write the files), then forks the child into the cgroup2 one
/// ([`Entry::fork`]). Where clone3 is refused (a kernel before 5.7, a seccomp filter without
/// clone3, a joined namespace without the right to the directory) it moves itself into the
/// cgroup2 directory through the `cgroup.procs` opened beforehand in the runtime's namespaces,
/// paying the lock, and forks normally: the child is in the cgroup either way.
///
/// The forking process is in the cgroup while it forks, so it counts against a `pids` limit
/// until it exits: with a limit of 1, callers move the child from outside instead
/// ([`Cgroup::add_process`]).
#[derive(Debug)]
pub struct Entry {
    /// The `tasks` file of the container's cgroup in each v1 hierarchy.
    tasks: Vec<(PathBuf, std::fs::File)>,
    /// The container's cgroup in the cgroup2 hierarchy (v2, or a hybrid host's unified one).
    unified: Option<UnifiedEntry>,
}

#[derive(Debug)]
struct UnifiedEntry {
    /// The directory, for CLONE_INTO_CGROUP.
    dir: std::os::fd::OwnedFd,
    /// Its `cgroup.procs`, for the fallback move.
    procs: (PathBuf, std::fs::File),
}

/// Why [`Entry::fork`] did not fork a child inside the cgroup.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// a cgroup file could not be written
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// the fork failed
    #[error(transparent)]
    Fork(#[from] crate::sys::process::ForkError),
}

/// Writes `0` (the calling thread, or with `cgroup.procs` its process) to an open cgroup file.
fn write_self(path: &Path, mut file: &std::fs::File) -> Result<(), CgroupError> {
    use std::io::Write;
    file.write_all(b"0").map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: "0".into(),
        source,
    })
}

impl Entry {
    /// Moves the calling thread, which must be its process's only one, into the container's
    /// cgroup in every v1 hierarchy.
    ///
    /// # Errors
    /// Fails if a `tasks` file cannot be written.
    pub fn join_v1(&self) -> Result<(), CgroupError> {
        for (path, file) in &self.tasks {
            write_self(path, file)?;
        }
        Ok(())
    }

    /// Forks (with namespace `flags`, as [`crate::sys::process::clone_fork`]) a child born in
    /// the container's cgroup2 directory; after [`Entry::join_v1`], the child is in the
    /// container's cgroup everywhere.
    ///
    /// # Errors
    /// The fork's error, or the fallback move's.
    pub fn fork(
        &self,
        flags: nix::sched::CloneFlags,
    ) -> Result<crate::sys::process::Forked, EntryError> {
        use crate::sys::process::{clone_fork, clone_fork_into, ForkError};
        use std::os::fd::AsFd;
        let Some(unified) = &self.unified else {
            return Ok(clone_fork(flags)?);
        };
        match clone_fork_into(flags, unified.dir.as_fd()) {
            Err(ForkError::Clone(errno)) => {
                tracing::debug!(%errno, "clone3 into the cgroup refused; moving the forking process instead");
                let (path, file) = &unified.procs;
                write_self(path, file)?;
                Ok(clone_fork(flags)?)
            }
            other => Ok(other?),
        }
    }
}

/// The value that occurs most often, the first of them on a tie; `None` for no values.
fn most_common<T: PartialEq>(values: &[T]) -> Option<&T> {
    // max_by_key keeps the last of equal maxima: walk backwards to keep the first.
    values
        .iter()
        .rev()
        .max_by_key(|v| values.iter().filter(|w| w == v).count())
}

/// runc reads zero cpu shares, quota and period, zero blkio weights and zero kernel memory,
/// kernel TCP memory and reservation as "not set", and dockerd and containerd send zeros for
/// them when the user set none: make them absent before either driver sees them.
fn unset_zeros(resources: &LinuxResources) -> LinuxResources {
    let mut r = resources.clone();
    if let Some(cpu) = r.cpu_mut() {
        if cpu.shares() == Some(0) {
            cpu.set_shares(None);
        }
        if cpu.quota() == Some(0) {
            cpu.set_quota(None);
        }
        if cpu.period() == Some(0) {
            cpu.set_period(None);
        }
    }
    if let Some(mem) = r.memory_mut() {
        if mem.kernel() == Some(0) {
            mem.set_kernel(None);
        }
        if mem.kernel_tcp() == Some(0) {
            mem.set_kernel_tcp(None);
        }
        if mem.reservation() == Some(0) {
            mem.set_reservation(None);
        }
    }
    if let Some(bio) = r.block_io_mut() {
        if bio.weight() == Some(0) {
            bio.set_weight(None);
        }
        if bio.leaf_weight() == Some(0) {
            bio.set_leaf_weight(None);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_without_per_hierarchy_paths_still_load() {
        let old: Cgroup = serde_json::from_str(r#"{"driver":"v1","path":"/refeng/a"}"#).unwrap();
        assert!(old.hierarchies.is_empty());
        assert_eq!(
            old.placement().unwrap(),
            v1::Placement::Uniform(Path::new("refeng/a"))
        );
        assert_eq!(
            old.path_in(&["memory".to_owned()]),
            Some(Path::new("/refeng/a"))
        );
        let written = serde_json::to_value(&old).unwrap();
        assert!(written.get("hierarchies").is_none(), "{written}");
    }

    #[test]
    fn per_hierarchy_paths_round_trip_and_are_checked() {
        let cg = Cgroup {
            driver: Driver::V1,
            path: PathBuf::from("/c"),
            hierarchies: BTreeMap::from([
                ("cpu,cpuacct".to_owned(), PathBuf::from("/c")),
                ("memory".to_owned(), PathBuf::from("/sandbox/x/c")),
                (String::new(), PathBuf::from("/c")),
            ]),
        };
        let again: Cgroup = serde_json::from_str(&serde_json::to_string(&cg).unwrap()).unwrap();
        assert_eq!(again, cg);
        assert_eq!(
            cg.path_in(&["memory".to_owned()]),
            Some(Path::new("/sandbox/x/c"))
        );
        assert_eq!(cg.path_in(&["cpuacct".to_owned()]), Some(Path::new("/c")));
        assert_eq!(cg.path_in(&["pids".to_owned()]), None);
        assert_eq!(
            cg.path_in(&[]),
            None,
            "the cgroup2 key matches no controller"
        );
        let mut bad = cg.clone();
        bad.hierarchies
            .insert("pids".to_owned(), PathBuf::from("/a/../b"));
        assert!(matches!(
            bad.placement(),
            Err(CgroupError::InvalidPath { .. })
        ));
        let v2 = Cgroup {
            driver: Driver::V2,
            ..cg
        };
        assert!(matches!(
            v2.unified_path(),
            Err(CgroupError::InvalidPath { .. })
        ));
    }

    #[test]
    fn the_shared_path_is_the_most_common_then_the_first() {
        assert_eq!(most_common(&["/a", "/m/a", "/a"]), Some(&"/a"));
        assert_eq!(most_common(&["/m/a", "/a"]), Some(&"/m/a"));
        assert_eq!(most_common::<&str>(&[]), None);
    }

    #[test]
    fn zero_cpu_values_mean_unset_as_in_runc() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"shares":0,"quota":0,"period":0,"cpus":"0"},"blockIO":{"weight":0}}"#,
        )
        .unwrap();
        assert_eq!(unset_zeros(&r).block_io().clone().unwrap().weight(), None);
        let m: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"kernel":0,"kernelTCP":0,"reservation":0}}"#,
        )
        .unwrap();
        let mem = unset_zeros(&m).memory().unwrap();
        assert_eq!(mem.limit(), Some(1048576));
        assert_eq!(
            (mem.kernel(), mem.kernel_tcp(), mem.reservation()),
            (None, None, None)
        );
        let cpu = unset_zeros(&r).cpu().clone().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (None, None, None)
        );
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        let r: LinuxResources =
            serde_json::from_str(r#"{"cpu":{"shares":512,"quota":1000}}"#).unwrap();
        let cpu = unset_zeros(&r).cpu().clone().unwrap();
        assert_eq!((cpu.shares(), cpu.quota()), (Some(512), Some(1000)));
    }
}
