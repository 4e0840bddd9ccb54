//! The cgroup v2 (unified) driver: one directory below the cgroup2 mount, controllers enabled in
//! the ancestors' `cgroup.subtree_control`, runc's v1-to-v2 value conversions, and the device
//! controller as an eBPF filter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxRdma, LinuxResources};

use super::devices::{self, Rule};
use super::{devices_bpf, fs, CgroupError};

/// The cgroup2 hierarchy this driver acts on; the root is a parameter so that tests can use the
/// controller-less cgroup2 mount of a hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unified {
    root: PathBuf,
}

/// A controller a set field needs enabled in every ancestor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Need {
    controller: String,
    field: String,
}

impl Unified {
    /// The hierarchy mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of cgroup `rel`.
    pub fn dir(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates the cgroup and applies the limits; see `Cgroup::create`.
    pub fn create(
        &self,
        rel: &Path,
        resources: Option<&LinuxResources>,
        extra_device_allows: &[LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let rules = devices::combined(resources, extra_device_allows)?;
        let needs = match resources {
            Some(r) => check(r)?,
            None => Vec::new(),
        };
        let leaf = self.root.join(rel);
        let leaf_is_new = !leaf.is_dir();
        let result = self.prepare(rel, &needs, true).and_then(|()| {
            if let Some(r) = resources {
                apply(&leaf, r)?;
            }
            if !rules.is_empty() {
                devices_bpf::apply(&leaf, &rules)?;
            }
            Ok(())
        });
        if result.is_err() && leaf_is_new {
            if let Err(e) = fs::remove_tree(&leaf) {
                tracing::warn!(error = %e, "cannot roll back cgroup creation");
            }
        }
        result
    }

    /// Applies `resources` to the existing cgroup; see `Cgroup::update`.
    pub fn update(&self, rel: &Path, resources: &LinuxResources) -> Result<(), CgroupError> {
        let needs = check(resources)?;
        let leaf = self.root.join(rel);
        if !leaf.is_dir() {
            return Err(CgroupError::Read {
                path: leaf,
                source: io::ErrorKind::NotFound.into(),
            });
        }
        self.prepare(rel, &needs, false)?;
        apply(&leaf, resources)?;
        let rules: Vec<Rule> = devices::combined(Some(resources), &[])?;
        if !rules.is_empty() {
            devices_bpf::apply(&leaf, &rules)?;
        }
        Ok(())
    }

    /// Walks from the root to the leaf's parent enabling the needed controllers in each
    /// `cgroup.subtree_control` (a child only gets the interface files of controllers its parent
    /// enabled), making missing directories when `mkdir` is set.
    fn prepare(&self, rel: &Path, needs: &[Need], mkdir: bool) -> Result<(), CgroupError> {
        let mut dir = self.root.clone();
        for component in rel.components() {
            enable_controllers(&dir, needs)?;
            dir.push(component);
            if mkdir && !dir.is_dir() {
                std::fs::create_dir(&dir).map_err(|source| CgroupError::Mkdir {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Writes `pid` to the leaf's `cgroup.procs`.
    pub fn add_process(&self, rel: &Path, pid: Pid) -> Result<(), CgroupError> {
        fs::write(&self.root.join(rel).join("cgroup.procs"), &pid.to_string())
    }

    /// The leaf's `cgroup.procs`, sorted.
    pub fn procs(&self, rel: &Path) -> Result<Vec<Pid>, CgroupError> {
        let mut pids = fs::read_pids(&self.root.join(rel).join("cgroup.procs"))?;
        pids.sort_by_key(|p| p.as_raw());
        Ok(pids)
    }

    /// Freezes or thaws through `cgroup.freeze`, waiting for `cgroup.events` to agree.
    pub fn freeze(&self, rel: &Path, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.root.join(rel);
        let value = if frozen { "1" } else { "0" };
        fs::write_setting(&dir, "cgroup.freeze", value, "freeze")?;
        let events = dir.join("cgroup.events");
        let wanted = if frozen { "frozen 1" } else { "frozen 0" };
        let mut last = String::new();
        let settled = fs::wait_until(|| {
            last = frozen_line(&fs::read(&events)?);
            Ok((last == wanted).then_some(()))
        })?;
        if settled.is_none() {
            if frozen {
                if let Err(e) = fs::write(&dir.join("cgroup.freeze"), "0") {
                    tracing::warn!(error = %e, "cannot thaw after a failed freeze");
                }
            }
            return Err(CgroupError::FreezeTimeout {
                path: events,
                wanted,
                last,
            });
        }
        Ok(())
    }

    /// Whether `cgroup.events` reports `frozen 1`.
    pub fn is_frozen(&self, rel: &Path) -> Result<bool, CgroupError> {
        Ok(frozen_line(&fs::read(&self.root.join(rel).join("cgroup.events"))?) == "frozen 1")
    }

    /// Removes the leaf and the sub-cgroups below it.
    pub fn destroy(&self, rel: &Path) -> Result<(), CgroupError> {
        fs::remove_tree(&self.root.join(rel))
    }
}

fn frozen_line(events: &str) -> String {
    events
        .lines()
        .find(|l| l.starts_with("frozen "))
        .unwrap_or_default()
        .to_owned()
}

fn enable_controllers(dir: &Path, needs: &[Need]) -> Result<(), CgroupError> {
    if needs.is_empty() {
        return Ok(());
    }
    let enabled = fs::read(&dir.join("cgroup.subtree_control"))?;
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let available = fs::read(&dir.join("cgroup.controllers"))?;
    let available: BTreeSet<&str> = available.split_whitespace().collect();
    let mut add = BTreeSet::new();
    for need in needs {
        if enabled.contains(need.controller.as_str()) {
            continue;
        }
        if !available.contains(need.controller.as_str()) {
            return Err(CgroupError::MissingController {
                field: need.field.clone(),
                controller: need.controller.clone(),
            });
        }
        add.insert(format!("+{}", need.controller));
    }
    if add.is_empty() {
        return Ok(());
    }
    fs::write(
        &dir.join("cgroup.subtree_control"),
        &add.into_iter().collect::<Vec<_>>().join(" "),
    )
}

fn unsupported(field: &str, reason: &str) -> CgroupError {
    CgroupError::Unsupported {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidValue {
        field: field.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Refuses what v2 cannot express and lists the controllers the set fields need, before
/// anything is created.
fn check(r: &LinuxResources) -> Result<Vec<Need>, CgroupError> {
    let mut needs = BTreeSet::new();
    let mut need = |controller: &str, field: &str| {
        needs.insert(Need {
            controller: controller.to_owned(),
            field: field.to_owned(),
        });
    };
    if let Some(mem) = r.memory() {
        if mem.swappiness().is_some() {
            return Err(unsupported(
                "linux.resources.memory.swappiness",
                "cgroup v2 has no per-cgroup swappiness",
            ));
        }
        if mem.kernel().is_some() {
            return Err(unsupported(
                "linux.resources.memory.kernel",
                "cgroup v2 has no kernel memory limit",
            ));
        }
        if mem.kernel_tcp().is_some() {
            return Err(unsupported(
                "linux.resources.memory.kernelTCP",
                "cgroup v2 has no kernel TCP memory limit",
            ));
        }
        if mem.disable_oom_killer() == Some(true) {
            return Err(unsupported(
                "linux.resources.memory.disableOOMKiller",
                "cgroup v2 cannot disable the OOM killer",
            ));
        }
        if mem.use_hierarchy() == Some(false) {
            return Err(unsupported(
                "linux.resources.memory.useHierarchy",
                "cgroup v2 is always hierarchical",
            ));
        }
        if mem.limit().is_some() || mem.swap().is_some() || mem.reservation().is_some() {
            need("memory", "linux.resources.memory");
        }
    }
    if let Some(cpu) = r.cpu() {
        if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
            return Err(unsupported(
                "linux.resources.cpu.realtimeRuntime/realtimePeriod",
                "cgroup v2 has no realtime scheduling limits",
            ));
        }
        if cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.burst().is_some()
            || cpu.idle().is_some()
        {
            need("cpu", "linux.resources.cpu");
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            need("cpuset", "linux.resources.cpu.cpus/mems");
        }
    }
    if r.pids().is_some() {
        need("pids", "linux.resources.pids");
    }
    if let Some(bio) = r.block_io() {
        if bio.leaf_weight().is_some()
            || bio
                .weight_device()
                .iter()
                .flatten()
                .any(|d| d.leaf_weight().is_some())
        {
            return Err(unsupported(
                "linux.resources.blockIO.leafWeight",
                "cgroup v2 has no leaf weights",
            ));
        }
        need("io", "linux.resources.blockIO");
    }
    for limit in r.hugepage_limits().iter().flatten() {
        checked_page_size(limit.page_size())?;
        need("hugetlb", "linux.resources.hugepageLimits");
    }
    if r.network().is_some() {
        return Err(unsupported(
            "linux.resources.network",
            "cgroup v2 has no net_cls/net_prio controllers",
        ));
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        need("rdma", "linux.resources.rdma");
    }
    for key in r.unified().iter().flat_map(HashMap::keys) {
        let controller = checked_unified_key(key)?;
        if controller != "cgroup" {
            need(controller, &format!("linux.resources.unified[{key}]"));
        }
    }
    Ok(needs.into_iter().collect())
}

/// A `unified` key must name a plain file (`memory.high`), never a path; returns its
/// controller prefix.
fn checked_unified_key(key: &str) -> Result<&str, CgroupError> {
    let field = || format!("linux.resources.unified[{key}]");
    if key.contains('/') || key == "." || key == ".." || key.contains('\0') {
        return Err(invalid(&field(), key, "must be a file name, not a path"));
    }
    match key.split_once('.') {
        Some((controller, rest)) if !controller.is_empty() && !rest.is_empty() => Ok(controller),
        _ => Err(invalid(&field(), key, "must look like <controller>.<file>")),
    }
}

/// Validates a hugepage size (`2MB`, `1GB`) for use in a file name.
pub(super) fn checked_page_size(size: &str) -> Result<&str, CgroupError> {
    let ok = !size.is_empty() && size.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(size)
    } else {
        Err(invalid(
            "linux.resources.hugepageLimits.pageSize",
            size,
            "must look like 2MB",
        ))
    }
}

/// Sorts a map by key so writes happen in a stable order.
pub(super) fn sorted<V>(map: &HashMap<String, V>) -> BTreeMap<&str, &V> {
    map.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

/// One `rdma.max` line, or `None` when the entry sets nothing.
pub(super) fn rdma_line(device: &str, limits: &LinuxRdma) -> Option<String> {
    let mut line = device.to_owned();
    if let Some(h) = limits.hca_handles() {
        line.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = limits.hca_objects() {
        line.push_str(&format!(" hca_object={o}"));
    }
    (line.len() > device.len()).then_some(line)
}

/// runc's cpu.shares (2..=262144) to cpu.weight (1..=10000) conversion.
pub(super) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's blkio weight (10..=1000) to io.weight (1..=10000) conversion.
pub(super) fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// runc's conversion of the spec's memory+swap total to `memory.swap.max`: `None` leaves it
/// alone, `Some(-1)` is `max`.
pub(super) fn swap_to_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<i64>, String> {
    let (limit, swap) = (limit.unwrap_or(0), swap.unwrap_or(0));
    // Unlimited memory with swap left unset means unlimited swap too (cgroup v1 compatibility).
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some(-1)),
        _ => {}
    }
    if limit == 0 || limit == -1 {
        return Err("a swap limit needs a memory limit".to_owned());
    }
    if limit < 0 || swap < 0 {
        return Err("must be -1 (unlimited) or a byte count".to_owned());
    }
    if swap < limit {
        return Err(format!(
            "memory+swap must be at least the memory limit {limit}"
        ));
    }
    Ok(Some(swap - limit))
}

fn bytes(v: i64) -> String {
    if v == -1 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

fn apply(dir: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(mem) = r.memory() {
        apply_memory(dir, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        apply_cpu(dir, cpu)?;
    }
    if let Some(pids) = r.pids() {
        fs::write_setting(
            dir,
            "pids.max",
            &super::v1::pids_max(pids.limit()),
            "linux.resources.pids.limit",
        )?;
    }
    if let Some(bio) = r.block_io() {
        apply_io(dir, bio)?;
    }
    for limit in r.hugepage_limits().iter().flatten() {
        let size = checked_page_size(limit.page_size())?;
        fs::write_setting(
            dir,
            &format!("hugetlb.{size}.max"),
            &bytes(limit.limit()),
            &format!("linux.resources.hugepageLimits[{size}]"),
        )?;
    }
    if let Some(rdma) = r.rdma() {
        for (device, limits) in sorted(rdma) {
            if let Some(line) = rdma_line(device, limits) {
                fs::write_setting(dir, "rdma.max", &line, "linux.resources.rdma")?;
            }
        }
    }
    // Last, so that explicit unified values win over converted ones (runc).
    if let Some(unified) = r.unified() {
        for (key, value) in sorted(unified) {
            checked_unified_key(key)?;
            fs::write_setting(dir, key, value, &format!("linux.resources.unified[{key}]"))?;
        }
    }
    Ok(())
}

fn apply_memory(dir: &Path, mem: &oci_spec::runtime::LinuxMemory) -> Result<(), CgroupError> {
    const F_LIMIT: &str = "linux.resources.memory.limit";
    const F_SWAP: &str = "linux.resources.memory.swap";
    for (field, value) in [
        (F_LIMIT, mem.limit()),
        ("linux.resources.memory.reservation", mem.reservation()),
    ] {
        if let Some(v) = value.filter(|v| *v < -1) {
            return Err(invalid(field, v, "must be -1 (unlimited) or a byte count"));
        }
    }
    let swap = swap_to_v2(mem.limit(), mem.swap())
        .map_err(|reason| invalid(F_SWAP, mem.swap().unwrap_or(0), reason))?;
    if mem.check_before_update() == Some(true) {
        if let Some(limit) = mem.limit().filter(|l| *l > 0) {
            let usage = fs::read(&dir.join("memory.current"))?;
            if usage.parse::<i64>().is_ok_and(|u| u > limit) {
                return Err(invalid(
                    F_LIMIT,
                    limit,
                    format!("below the current usage of {usage} bytes"),
                ));
            }
        }
    }
    // Swap first, like runc: memory.max alone never fails on the swap value.
    if let Some(swap) = swap {
        if swap == -1 && !dir.join("memory.swap.max").exists() {
            // Without swap accounting swap is already unlimited: nothing to change.
            tracing::debug!("memory.swap.max absent, unlimited swap needs no write");
        } else {
            fs::write_setting(dir, "memory.swap.max", &bytes(swap), F_SWAP)?;
        }
    }
    // runc: a zero limit means "not set".
    if let Some(limit) = mem.limit().filter(|l| *l != 0) {
        fs::write_setting(dir, "memory.max", &bytes(limit), F_LIMIT)?;
    }
    if let Some(low) = mem.reservation() {
        fs::write_setting(
            dir,
            "memory.low",
            &bytes(low),
            "linux.resources.memory.reservation",
        )?;
    }
    Ok(())
}

fn apply_cpu(dir: &Path, cpu: &oci_spec::runtime::LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares() {
        fs::write_setting(
            dir,
            "cpu.weight",
            &shares_to_weight(shares).to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    if cpu.quota().is_some() || cpu.period().is_some() {
        let quota = match cpu.quota() {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_owned(),
            // Only the period changes: keep the current quota instead of resetting it to max.
            None => fs::read(&dir.join("cpu.max"))?
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_owned(),
        };
        let value = match cpu.period() {
            Some(p) => format!("{quota} {p}"),
            None => quota,
        };
        fs::write_setting(dir, "cpu.max", &value, "linux.resources.cpu.quota/period")?;
    }
    if let Some(burst) = cpu.burst() {
        fs::write_setting(
            dir,
            "cpu.max.burst",
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
    if let Some(cpus) = cpu.cpus() {
        fs::write_setting(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
    }
    if let Some(mems) = cpu.mems() {
        fs::write_setting(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
    }
    Ok(())
}

fn apply_io(dir: &Path, bio: &oci_spec::runtime::LinuxBlockIo) -> Result<(), CgroupError> {
    const F_WEIGHT: &str = "linux.resources.blockIO.weight";
    if let Some(w) = bio.weight() {
        // BFQ takes the blkio scale as is; io.weight needs runc's conversion.
        if dir.join("io.bfq.weight").exists() {
            fs::write_setting(dir, "io.bfq.weight", &w.to_string(), F_WEIGHT)?;
        } else {
            fs::write_setting(
                dir,
                "io.weight",
                &blkio_weight_to_io(w).to_string(),
                F_WEIGHT,
            )?;
        }
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let line = format!("{}:{} {w}", d.major(), d.minor());
            fs::write_setting(
                dir,
                "io.bfq.weight",
                &line,
                "linux.resources.blockIO.weightDevice",
            )?;
        }
    }
    for (key, field, devices) in [
        (
            "rbps",
            "throttleReadBpsDevice",
            bio.throttle_read_bps_device(),
        ),
        (
            "wbps",
            "throttleWriteBpsDevice",
            bio.throttle_write_bps_device(),
        ),
        (
            "riops",
            "throttleReadIOPSDevice",
            bio.throttle_read_iops_device(),
        ),
        (
            "wiops",
            "throttleWriteIOPSDevice",
            bio.throttle_write_iops_device(),
        ),
    ] {
        for d in devices.iter().flatten() {
            // A zero rate removes the limit, as writing 0 does under v1.
            let rate = if d.rate() == 0 {
                "max".to_owned()
            } else {
                d.rate().to_string()
            };
            let line = format!("{}:{} {key}={rate}", d.major(), d.minor());
            fs::write_setting(
                dir,
                "io.max",
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

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1, "clamped instead of underflowing");
        assert_eq!(shares_to_weight(1 << 30), 10_000);
    }

    #[test]
    fn blkio_weight_to_io_matches_runc() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }

    #[test]
    fn swap_conversion_matches_runc() {
        assert_eq!(swap_to_v2(None, None), Ok(None));
        assert_eq!(swap_to_v2(Some(-1), None), Ok(Some(-1)));
        assert_eq!(swap_to_v2(Some(100), None), Ok(None));
        assert_eq!(swap_to_v2(Some(100), Some(-1)), Ok(Some(-1)));
        assert_eq!(swap_to_v2(Some(100), Some(300)), Ok(Some(200)));
        assert_eq!(
            swap_to_v2(Some(100), Some(100)),
            Ok(Some(0)),
            "equal disables swap"
        );
        assert!(swap_to_v2(None, Some(300)).is_err());
        assert!(swap_to_v2(Some(-1), Some(300)).is_err());
        assert!(swap_to_v2(Some(300), Some(100)).is_err());
    }

    #[test]
    fn unified_keys_must_be_plain_files() {
        assert_eq!(checked_unified_key("memory.high").unwrap(), "memory");
        assert_eq!(checked_unified_key("cgroup.max.depth").unwrap(), "cgroup");
        for bad in [
            "../memory.max",
            "memory/x.max",
            "..",
            "nodot",
            ".max",
            "memory.",
        ] {
            assert!(checked_unified_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2_refuses_what_it_cannot_express() {
        use oci_spec::runtime::{
            LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxResourcesBuilder,
        };
        let cases = [
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .swappiness(10u64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .kernel(1i64 << 20)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            LinuxResourcesBuilder::default()
                .cpu(
                    LinuxCpuBuilder::default()
                        .realtime_runtime(1000i64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            LinuxResourcesBuilder::default()
                .network(
                    LinuxNetworkBuilder::default()
                        .class_id(1u32)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        ];
        for r in cases {
            assert!(
                matches!(check(&r), Err(CgroupError::Unsupported { .. })),
                "{r:?}"
            );
        }
    }

    #[test]
    fn needs_follow_the_set_fields() {
        use oci_spec::runtime::{LinuxCpuBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .unified(HashMap::from([("memory.high".to_owned(), "1G".to_owned())]))
            .build()
            .unwrap();
        let controllers: Vec<String> = check(&r)
            .unwrap()
            .into_iter()
            .map(|n| n.controller)
            .collect();
        assert_eq!(controllers, ["cpu", "cpuset", "memory", "pids"]);
    }

    #[test]
    fn rdma_line_lists_only_set_limits() {
        let l = oci_spec::runtime::LinuxRdmaBuilder::default()
            .hca_handles(3u32)
            .build()
            .unwrap();
        assert_eq!(
            rdma_line("mlx5_0", &l).as_deref(),
            Some("mlx5_0 hca_handle=3")
        );
        assert_eq!(rdma_line("mlx5_0", &LinuxRdma::default()), None);
    }

    #[test]
    fn missing_controller_in_parent_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let needs = [Need {
            controller: "memory".to_owned(),
            field: "linux.resources.memory".to_owned(),
        }];
        let err = enable_controllers(tmp.path(), &needs).unwrap_err();
        assert!(
            matches!(err, CgroupError::MissingController { ref controller, .. } if controller == "memory"),
            "{err}"
        );
    }
}
