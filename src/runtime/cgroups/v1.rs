//! The cgroup v1 (cgroupfs) driver: one directory per mounted controller hierarchy, found in
//! `/proc/self/mountinfo`, with runc's write order and conventions for every limit.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources, LinuxThrottleDevice};

use super::devices::{self, Rule};
use super::path::OwnSource;
use super::{fs, CgroupError};
use crate::sys::kernel_files::mountinfo::{self, MountInfo};

/// Controllers a v1 hierarchy can carry; other super options (`rw`, `clone_children`) are not
/// controllers. Named hierarchies (`name=systemd`) carry no controller but are joined too, as
/// runc does: the container's cgroup mount shows them, and systemd inside a container needs it.
const KNOWN_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// Where a hybrid host mounts its cgroup2 hierarchy beside the v1 ones. runc's cgroupfs driver
/// puts the container there too (it shows as the `0::` line of `/proc/<pid>/cgroup`), though no
/// controller is attached to it.
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// One mounted hierarchy the v1 driver puts containers in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mountpoint: PathBuf,
    /// The mount's root inside the hierarchy (usually `/`).
    pub root: PathBuf,
    /// Its controllers (`["cpu", "cpuacct"]` when co-mounted, `["name=systemd"]` for a named
    /// one); empty for the cgroup2 hierarchy of a hybrid host.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// The hierarchy's key in [`super::Cgroup::hierarchies`]: its controllers as
    /// `/proc/<pid>/cgroup` lists them (`cpu,cpuacct`), empty for the cgroup2 hierarchy.
    pub fn key(&self) -> String {
        self.controllers.join(",")
    }
}

/// The hierarchies of the host, one entry per distinct controller set, in mount order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchies {
    list: Vec<Hierarchy>,
}

/// Where a container's cgroup is in each hierarchy, relative to the hierarchy roots (already
/// checked by `path::checked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Placement<'a> {
    /// The same path in every controller and named hierarchy, and none in the cgroup2 one: what
    /// state files written before per-hierarchy paths describe.
    Uniform(&'a Path),
    /// The path in each hierarchy the container is in, by [`Hierarchy::key`].
    PerHierarchy(BTreeMap<&'a str, &'a Path>),
}

impl Placement<'_> {
    /// The container's cgroup in `h`, or `None` when it is not in that hierarchy.
    pub fn rel(&self, h: &Hierarchy) -> Option<&Path> {
        match self {
            Self::Uniform(rel) => (!h.controllers.is_empty()).then_some(*rel),
            Self::PerHierarchy(map) => map.get(h.key().as_str()).copied(),
        }
    }
}

impl Hierarchies {
    /// Reads the calling process's mount table.
    pub fn discover() -> Result<Self, CgroupError> {
        let hierarchies = Self::from_mounts(&mountinfo::read_self_cached()?);
        if hierarchies.list.iter().all(|h| h.controllers.is_empty()) {
            return Err(CgroupError::NoHierarchy {
                mountinfo: PathBuf::from("/proc/self/mountinfo"),
            });
        }
        Ok(hierarchies)
    }

    /// The cgroup v1 hierarchies among `mounts` and a hybrid host's cgroup2 one, keeping the
    /// first mount of each controller set.
    pub fn from_mounts(mounts: &[MountInfo]) -> Self {
        let mut list: Vec<Hierarchy> = Vec::new();
        for mount in mounts {
            let controllers: Vec<String> = match mount.fs_type.as_str() {
                "cgroup" => mount
                    .super_options
                    .iter()
                    .filter(|o| KNOWN_CONTROLLERS.contains(&o.as_str()) || o.starts_with("name="))
                    .cloned()
                    .collect(),
                "cgroup2" if mount.mount_point == Path::new(HYBRID_UNIFIED) => Vec::new(),
                _ => continue,
            };
            let v1_without_controller = controllers.is_empty() && mount.fs_type == "cgroup";
            if v1_without_controller || list.iter().any(|h| h.controllers == controllers) {
                continue;
            }
            list.push(Hierarchy {
                mountpoint: mount.mount_point.clone(),
                root: mount.root.clone(),
                controllers,
            });
        }
        Self { list }
    }

    /// How to find the caller's own cgroup in each hierarchy.
    pub fn own_cgroup_sources(&self) -> Vec<OwnSource> {
        self.list
            .iter()
            .map(|h| OwnSource {
                controllers: h.controllers.clone(),
                mount_root: h.root.clone(),
            })
            .collect()
    }

    /// The mounted hierarchies.
    pub fn list(&self) -> &[Hierarchy] {
        &self.list
    }

    /// The container's cgroup directory in the hierarchy carrying `controller`, if that is
    /// mounted and the container is in it.
    pub fn dir(&self, controller: &str, at: &Placement<'_>) -> Option<PathBuf> {
        let h = self
            .list
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))?;
        Some(h.mountpoint.join(at.rel(h)?))
    }

    fn need(
        &self,
        controller: &str,
        at: &Placement<'_>,
        field: &str,
    ) -> Result<PathBuf, CgroupError> {
        self.dir(controller, at)
            .ok_or_else(|| CgroupError::MissingController {
                field: field.to_owned(),
                controller: controller.to_owned(),
            })
    }

    /// The container's cgroup directory in every hierarchy it is in.
    fn dirs<'a>(&'a self, at: &'a Placement<'_>) -> impl Iterator<Item = PathBuf> + 'a {
        self.list
            .iter()
            .filter_map(move |h| Some(h.mountpoint.join(at.rel(h)?)))
    }

    /// Creates the cgroup in every hierarchy and applies the limits; see `Cgroup::create`.
    pub fn create(
        &self,
        at: &Placement<'_>,
        resources: Option<&LinuxResources>,
        extra_device_allows: &[LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let rules = devices::combined(resources, extra_device_allows)?;
        if let Some(r) = resources {
            self.check(at, r)?;
        }
        if !rules.is_empty() {
            self.need("devices", at, "linux.resources.devices")?;
        }
        let mut created = Vec::new();
        let result = self.make_dirs(at, &mut created).and_then(|()| {
            if let Some(r) = resources {
                self.apply(at, r)?;
            }
            self.apply_devices(at, &rules)
        });
        if result.is_err() {
            for dir in created {
                if let Err(e) = fs::remove_tree(&dir) {
                    tracing::warn!(error = %e, "cannot roll back cgroup creation");
                }
            }
        }
        result
    }

    fn make_dirs(&self, at: &Placement<'_>, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        for h in &self.list {
            let Some(rel) = at.rel(h) else { continue };
            let dir = h.mountpoint.join(rel);
            if fs::mkdir_all(&dir)? {
                created.push(dir);
            }
            if h.controllers.iter().any(|c| c == "cpuset") {
                inherit_cpuset(&h.mountpoint, rel)?;
            }
        }
        Ok(())
    }

    /// Applies `resources` to the existing cgroup; see `Cgroup::update`.
    pub fn update(
        &self,
        at: &Placement<'_>,
        resources: &LinuxResources,
    ) -> Result<(), CgroupError> {
        self.check(at, resources)?;
        for dir in self.dirs(at) {
            if !dir.is_dir() {
                return Err(CgroupError::Read {
                    path: dir,
                    source: io::ErrorKind::NotFound.into(),
                });
            }
        }
        self.apply(at, resources)?;
        let rules = devices::combined(Some(resources), &[])?;
        if !rules.is_empty() {
            self.need("devices", at, "linux.resources.devices")?;
        }
        self.apply_devices(at, &rules)
    }

    /// Refuses, before anything is written, fields whose controller is not mounted and fields
    /// v1 cannot express.
    fn check(&self, at: &Placement<'_>, r: &LinuxResources) -> Result<(), CgroupError> {
        if r.memory().is_some() {
            self.need("memory", at, "linux.resources.memory")?;
        }
        if let Some(cpu) = r.cpu() {
            let cfs = cpu.shares().is_some()
                || cpu.quota().is_some()
                || cpu.period().is_some()
                || cpu.burst().is_some()
                || cpu.idle().is_some()
                || cpu.realtime_runtime().is_some()
                || cpu.realtime_period().is_some();
            if cfs {
                self.need("cpu", at, "linux.resources.cpu")?;
            }
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                self.need("cpuset", at, "linux.resources.cpu.cpus/mems")?;
            }
        }
        if r.pids().is_some() {
            self.need("pids", at, "linux.resources.pids")?;
        }
        if r.block_io().is_some() {
            self.need("blkio", at, "linux.resources.blockIO")?;
        }
        if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
            self.need("hugetlb", at, "linux.resources.hugepageLimits")?;
        }
        if let Some(net) = r.network() {
            if net.class_id().is_some() {
                self.need("net_cls", at, "linux.resources.network.classID")?;
            }
            if net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                self.need("net_prio", at, "linux.resources.network.priorities")?;
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            self.need("rdma", at, "linux.resources.rdma")?;
        }
        if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(CgroupError::Unsupported {
                field: "linux.resources.unified".to_owned(),
                reason: "the host uses cgroup v1".to_owned(),
            });
        }
        Ok(())
    }

    fn apply(&self, at: &Placement<'_>, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(mem) = r.memory() {
            let dir = self.need("memory", at, "linux.resources.memory")?;
            apply_memory(&dir, mem)?;
        }
        if let Some(cpu) = r.cpu() {
            if let Some(dir) = self.dir("cpu", at) {
                apply_cpu(&dir, cpu)?;
            }
            if let Some(dir) = self.dir("cpuset", at) {
                if let Some(cpus) = cpu.cpus() {
                    fs::write_setting(&dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
                }
                if let Some(mems) = cpu.mems() {
                    fs::write_setting(&dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
                }
            }
        }
        if let Some(pids) = r.pids() {
            let dir = self.need("pids", at, "linux.resources.pids")?;
            fs::write_setting(
                &dir,
                "pids.max",
                &pids_max(pids.limit()),
                "linux.resources.pids.limit",
            )?;
        }
        if let Some(bio) = r.block_io() {
            let dir = self.need("blkio", at, "linux.resources.blockIO")?;
            apply_blkio(&dir, bio)?;
        }
        for limit in r.hugepage_limits().iter().flatten() {
            let dir = self.need("hugetlb", at, "linux.resources.hugepageLimits")?;
            let size = super::v2::checked_page_size(limit.page_size())?;
            fs::write_setting(
                &dir,
                &format!("hugetlb.{size}.limit_in_bytes"),
                &limit.limit().to_string(),
                &format!("linux.resources.hugepageLimits[{size}]"),
            )?;
        }
        if let Some(net) = r.network() {
            if let Some(id) = net.class_id() {
                let dir = self.need("net_cls", at, "linux.resources.network.classID")?;
                fs::write_setting(
                    &dir,
                    "net_cls.classid",
                    &id.to_string(),
                    "linux.resources.network.classID",
                )?;
            }
            for prio in net.priorities().iter().flatten() {
                let dir = self.need("net_prio", at, "linux.resources.network.priorities")?;
                fs::write_setting(
                    &dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", prio.name(), prio.priority()),
                    "linux.resources.network.priorities",
                )?;
            }
        }
        if let Some(rdma) = r.rdma() {
            for (device, limits) in super::v2::sorted(rdma) {
                let dir = self.need("rdma", at, "linux.resources.rdma")?;
                if let Some(line) = super::v2::rdma_line(device, limits) {
                    fs::write_setting(&dir, "rdma.max", &line, "linux.resources.rdma")?;
                }
            }
        }
        Ok(())
    }

    /// Writes the device rules in order; a leading `a` deny resets the cgroup to deny-all.
    fn apply_devices(&self, at: &Placement<'_>, rules: &[Rule]) -> Result<(), CgroupError> {
        if rules.is_empty() {
            return Ok(());
        }
        let dir = self.need("devices", at, "linux.resources.devices")?;
        for rule in rules {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            fs::write(&dir.join(file), &rule.render())?;
        }
        Ok(())
    }

    /// Writes `pid` to `cgroup.procs` in every hierarchy.
    pub fn add_process(&self, at: &Placement<'_>, pid: Pid) -> Result<(), CgroupError> {
        for dir in self.dirs(at) {
            fs::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The container's cgroup directory in every v1 hierarchy it is in, and apart from them its
    /// directory in a hybrid host's cgroup2 hierarchy (the one without controllers).
    pub fn entry_dirs(&self, at: &Placement<'_>) -> (Vec<PathBuf>, Option<PathBuf>) {
        let mut v1 = Vec::new();
        let mut unified = None;
        for h in &self.list {
            let Some(rel) = at.rel(h) else { continue };
            let dir = h.mountpoint.join(rel);
            if h.controllers.is_empty() {
                unified = Some(dir);
            } else {
                v1.push(dir);
            }
        }
        (v1, unified)
    }

    /// The union of `cgroup.procs` over the hierarchies.
    pub fn procs(&self, at: &Placement<'_>) -> Result<Vec<Pid>, CgroupError> {
        let mut all = BTreeSet::new();
        for dir in self.dirs(at) {
            all.extend(
                fs::read_pids(&dir.join("cgroup.procs"))?
                    .into_iter()
                    .map(Pid::as_raw),
            );
        }
        Ok(all.into_iter().map(Pid::from_raw).collect())
    }

    /// Freezes or thaws through `freezer.state`, waiting until the state settles.
    pub fn freeze(&self, at: &Placement<'_>, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.need("freezer", at, "freeze")?;
        let state = dir.join("freezer.state");
        let wanted = if frozen { "FROZEN" } else { "THAWED" };
        let mut last = String::new();
        let settled = fs::wait_until(|| {
            // Rewritten on every poll: a task forking while the cgroup freezes can leave it in
            // FREEZING until asked again (runc does the same).
            fs::write(&state, wanted)?;
            last = fs::read(&state)?;
            Ok((last == wanted).then_some(()))
        })?;
        if settled.is_none() {
            if frozen {
                if let Err(e) = fs::write(&state, "THAWED") {
                    tracing::warn!(error = %e, "cannot thaw after a failed freeze");
                }
            }
            return Err(CgroupError::FreezeTimeout {
                path: state,
                wanted,
                last,
            });
        }
        Ok(())
    }

    /// Whether `freezer.state` reads `FROZEN`.
    pub fn is_frozen(&self, at: &Placement<'_>) -> Result<bool, CgroupError> {
        let dir = self.need("freezer", at, "freeze")?;
        Ok(fs::read(&dir.join("freezer.state"))? == "FROZEN")
    }

    /// Removes the leaf (and sub-cgroups below it) in every hierarchy, trying them all before
    /// reporting the first failure.
    pub fn destroy(&self, at: &Placement<'_>) -> Result<(), CgroupError> {
        let mut first = None;
        for dir in self.dirs(at) {
            if let Err(e) = fs::remove_tree(&dir) {
                tracing::warn!(error = %e, "cannot remove cgroup");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A new cpuset cgroup starts with empty `cpus`/`mems` and refuses tasks until they are set, so
/// every level down to the leaf copies its parent's values when its own are empty.
fn inherit_cpuset(mountpoint: &Path, rel: &Path) -> Result<(), CgroupError> {
    let mut parent = mountpoint.to_path_buf();
    for component in rel.components() {
        let dir = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(&dir.join(file))?.is_empty() {
                let value = fs::read(&parent.join(file))?;
                fs::write(&dir.join(file), &value)?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// `pids.max` value: a limit of zero or below means no limit (runc).
pub(super) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidValue {
        field: field.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Memory limits with runc's rules: 0 means unset for limit and swap, -1 means unlimited, and
/// limit and memsw are written in the order the kernel accepts (memsw >= limit at every step).
fn apply_memory(dir: &Path, mem: &oci_spec::runtime::LinuxMemory) -> Result<(), CgroupError> {
    const F_LIMIT: &str = "linux.resources.memory.limit";
    const F_SWAP: &str = "linux.resources.memory.swap";
    for (field, value) in [
        (F_LIMIT, mem.limit()),
        (F_SWAP, mem.swap()),
        ("linux.resources.memory.reservation", mem.reservation()),
        ("linux.resources.memory.kernel", mem.kernel()),
        ("linux.resources.memory.kernelTCP", mem.kernel_tcp()),
    ] {
        if let Some(v) = value.filter(|v| *v < -1) {
            return Err(invalid(field, v, "must be -1 (unlimited) or a byte count"));
        }
    }
    let limit = mem.limit().unwrap_or(0);
    let mut swap = mem.swap().unwrap_or(0);
    if mem.check_before_update() == Some(true) && limit > 0 {
        let usage = fs::read(&dir.join("memory.usage_in_bytes"))?;
        if usage.parse::<i64>().is_ok_and(|u| u > limit) {
            return Err(invalid(
                F_LIMIT,
                limit,
                format!("below the current usage of {usage} bytes"),
            ));
        }
    }
    // Unlimited memory with swap left unset means unlimited swap too.
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    let write_limit =
        || fs::write_setting(dir, "memory.limit_in_bytes", &limit.to_string(), F_LIMIT);
    let write_swap = || {
        fs::write_setting(
            dir,
            "memory.memsw.limit_in_bytes",
            &swap.to_string(),
            F_SWAP,
        )
    };
    if limit != 0 && swap != 0 {
        let current: i64 = fs::read(&dir.join("memory.limit_in_bytes"))?
            .parse()
            .unwrap_or(i64::MAX);
        if swap == -1 || current < swap {
            write_swap()?;
            write_limit()?;
        } else {
            write_limit()?;
            write_swap()?;
        }
    } else if limit != 0 {
        write_limit()?;
    } else if swap != 0 {
        write_swap()?;
    }
    if let Some(v) = mem.reservation() {
        fs::write_setting(
            dir,
            "memory.soft_limit_in_bytes",
            &v.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(v) = mem.kernel() {
        write_kmem(
            dir,
            "memory.kmem.limit_in_bytes",
            v,
            "linux.resources.memory.kernel",
        )?;
    }
    if let Some(v) = mem.kernel_tcp() {
        write_kmem(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            v,
            "linux.resources.memory.kernelTCP",
        )?;
    }
    if let Some(v) = mem.swappiness() {
        if v > 100 {
            return Err(invalid(
                "linux.resources.memory.swappiness",
                v,
                "must be 0 to 100",
            ));
        }
        fs::write_setting(
            dir,
            "memory.swappiness",
            &v.to_string(),
            "linux.resources.memory.swappiness",
        )?;
    }
    if let Some(v) = mem.disable_oom_killer() {
        fs::write_setting(
            dir,
            "memory.oom_control",
            if v { "1" } else { "0" },
            "linux.resources.memory.disableOOMKiller",
        )?;
    }
    if let Some(v) = mem.use_hierarchy() {
        fs::write_setting(
            dir,
            "memory.use_hierarchy",
            if v { "1" } else { "0" },
            "linux.resources.memory.useHierarchy",
        )?;
    }
    Ok(())
}

/// Writes a kernel memory limit and checks that it took: since Linux 5.16 the file is still
/// there but the kernel accepts and ignores the write.
fn write_kmem(dir: &Path, file: &str, value: i64, field: &str) -> Result<(), CgroupError> {
    fs::write_setting(dir, file, &value.to_string(), field)?;
    if value == -1 {
        return Ok(());
    }
    let applied = fs::read(&dir.join(file))?;
    // The kernel rounds down to a page (at most 64KiB on any architecture).
    let took = applied
        .parse::<i64>()
        .is_ok_and(|a| a <= value && value - a < 65_536);
    if took {
        Ok(())
    } else {
        Err(CgroupError::Unsupported {
            field: field.to_owned(),
            reason: format!("the kernel ignored the limit ({file} reads {applied})"),
        })
    }
}

fn apply_cpu(dir: &Path, cpu: &oci_spec::runtime::LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares() {
        const F: &str = "linux.resources.cpu.shares";
        fs::write_setting(dir, "cpu.shares", &shares.to_string(), F)?;
        // The kernel clamps silently; report it instead of running with another value.
        let applied = fs::read(&dir.join("cpu.shares"))?;
        if applied != shares.to_string() {
            return Err(invalid(
                F,
                shares,
                format!("the kernel clamped it to {applied}"),
            ));
        }
    }
    let quota = || {
        cpu.quota().map_or(Ok(()), |q| {
            fs::write_setting(
                dir,
                "cpu.cfs_quota_us",
                &q.to_string(),
                "linux.resources.cpu.quota",
            )
        })
    };
    if let Some(period) = cpu.period() {
        const F: &str = "linux.resources.cpu.period";
        match fs::write_setting(dir, "cpu.cfs_period_us", &period.to_string(), F) {
            // A shorter period can be refused while the old quota does not fit it; runc then
            // writes the quota first.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && cpu.quota().is_some() =>
            {
                quota()?;
                fs::write_setting(dir, "cpu.cfs_period_us", &period.to_string(), F)?;
            }
            other => other?,
        }
    }
    quota()?;
    if let Some(burst) = cpu.burst() {
        fs::write_setting(
            dir,
            "cpu.cfs_burst_us",
            &burst.to_string(),
            "linux.resources.cpu.burst",
        )?;
    }
    if let Some(idle) = cpu.idle() {
        fs::write_setting(
            dir,
            "cpu.idle",
            &idle.to_string(),
            "linux.resources.cpu.idle",
        )?;
    }
    // Period before runtime: the runtime must fit the period.
    if let Some(p) = cpu.realtime_period() {
        fs::write_setting(
            dir,
            "cpu.rt_period_us",
            &p.to_string(),
            "linux.resources.cpu.realtimePeriod",
        )?;
    }
    if let Some(r) = cpu.realtime_runtime() {
        fs::write_setting(
            dir,
            "cpu.rt_runtime_us",
            &r.to_string(),
            "linux.resources.cpu.realtimeRuntime",
        )?;
    }
    Ok(())
}

fn throttle_lines(devices: Option<&Vec<LinuxThrottleDevice>>) -> impl Iterator<Item = String> + '_ {
    devices
        .into_iter()
        .flatten()
        .map(|d| format!("{}:{} {}", d.major(), d.minor(), d.rate()))
}

fn apply_blkio(dir: &Path, bio: &oci_spec::runtime::LinuxBlockIo) -> Result<(), CgroupError> {
    // Hosts with the BFQ scheduler but without CFQ only have the blkio.bfq.* weights.
    let weight_file = |name: &str| {
        let plain = format!("blkio.{name}");
        if dir.join(&plain).exists() {
            plain
        } else {
            format!("blkio.bfq.{name}")
        }
    };
    if let Some(w) = bio.weight() {
        fs::write_setting(
            dir,
            &weight_file("weight"),
            &w.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    if let Some(w) = bio.leaf_weight() {
        fs::write_setting(
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
            "linux.resources.blockIO.leafWeight",
        )?;
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let line = format!("{}:{} {w}", d.major(), d.minor());
            fs::write_setting(
                dir,
                &weight_file("weight_device"),
                &line,
                "linux.resources.blockIO.weightDevice",
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            let line = format!("{}:{} {w}", d.major(), d.minor());
            fs::write_setting(
                dir,
                "blkio.leaf_weight_device",
                &line,
                "linux.resources.blockIO.weightDevice.leafWeight",
            )?;
        }
    }
    for (file, field, devices) in [
        (
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
            bio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
            bio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
            bio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
            bio.throttle_write_iops_device(),
        ),
    ] {
        for line in throttle_lines(devices.as_ref()) {
            fs::write_setting(
                dir,
                file,
                &line,
                &format!("linux.resources.blockIO.{field}"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 /docker/x /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";

    fn parse(text: &str) -> Hierarchies {
        Hierarchies::from_mounts(&mountinfo::parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn mountinfo_yields_controller_and_named_hierarchies() {
        let h = parse(MOUNTINFO);
        let summary: Vec<(String, Vec<String>)> = h
            .list
            .iter()
            .map(|h| (h.mountpoint.display().to_string(), h.controllers.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "/sys/fs/cgroup/cpu,cpuacct".to_owned(),
                    vec!["cpu".to_owned(), "cpuacct".to_owned()]
                ),
                (
                    "/sys/fs/cgroup/memory".to_owned(),
                    vec!["memory".to_owned()]
                ),
                (
                    "/sys/fs/cgroup/systemd".to_owned(),
                    vec!["name=systemd".to_owned()]
                ),
                ("/sys/fs/cgroup/unified".to_owned(), vec![]),
                ("/sys/fs/cgroup/pids".to_owned(), vec!["pids".to_owned()]),
            ]
        );
        assert_eq!(h.list[4].root, Path::new("/docker/x"));
        let keys: Vec<String> = h.list.iter().map(Hierarchy::key).collect();
        assert_eq!(keys, ["cpu,cpuacct", "memory", "name=systemd", "", "pids"]);
        let at = Placement::Uniform(Path::new("a/b"));
        assert_eq!(
            h.dir("cpuacct", &at).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/a/b")
        );
        assert!(h.dir("freezer", &at).is_none());
    }

    #[test]
    fn only_a_cgroup2_mount_at_the_hybrid_place_is_joined() {
        let h = parse("41 31 0:38 / /mnt/elsewhere rw - cgroup2 cgroup2 rw\n");
        assert!(h.list.is_empty());
    }

    #[test]
    fn a_placement_gives_each_hierarchy_its_own_path() {
        let h = parse(MOUNTINFO);
        let dirs = |at: &Placement<'_>| -> Vec<PathBuf> { h.dirs(at).collect() };
        // State files from before per-hierarchy paths: every v1 hierarchy, not the cgroup2 one.
        assert_eq!(
            dirs(&Placement::Uniform(Path::new("c"))),
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct/c"),
                Path::new("/sys/fs/cgroup/memory/c"),
                Path::new("/sys/fs/cgroup/systemd/c"),
                Path::new("/sys/fs/cgroup/pids/c"),
            ]
        );
        let at = Placement::PerHierarchy(BTreeMap::from([
            ("memory", Path::new("sandbox/c")),
            ("cpu,cpuacct", Path::new("c")),
            ("", Path::new("c")),
        ]));
        assert_eq!(
            dirs(&at),
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct/c"),
                Path::new("/sys/fs/cgroup/memory/sandbox/c"),
                Path::new("/sys/fs/cgroup/unified/c"),
            ],
            "only the hierarchies the container is in"
        );
        assert_eq!(
            h.dir("memory", &at).unwrap(),
            Path::new("/sys/fs/cgroup/memory/sandbox/c")
        );
        assert!(h.dir("pids", &at).is_none());
    }

    #[test]
    fn pids_limit_zero_or_negative_is_max() {
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(64), "64");
    }

    #[test]
    fn missing_controller_is_named() {
        let h = parse(MOUNTINFO);
        let res = oci_spec::runtime::LinuxResourcesBuilder::default()
            .hugepage_limits(vec![oci_spec::runtime::LinuxHugepageLimitBuilder::default(
            )
            .page_size("2MB")
            .limit(1 << 21)
            .build()
            .unwrap()])
            .build()
            .unwrap();
        let err = h
            .check(&Placement::Uniform(Path::new("x")), &res)
            .unwrap_err();
        assert!(
            matches!(&err, CgroupError::MissingController { field, controller } if field == "linux.resources.hugepageLimits" && controller == "hugetlb"),
            "{err}"
        );
        let res = oci_spec::runtime::LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "memory.high".to_owned(),
                "1M".to_owned(),
            )]))
            .build()
            .unwrap();
        assert!(matches!(
            h.check(&Placement::Uniform(Path::new("x")), &res),
            Err(CgroupError::Unsupported { .. })
        ));
    }
}
