//! Tests against the real kernel (root needed): v1 limits, membership, freezer and removal on
//! the host's v1 hierarchies, and the v2 device filter and freezer on whatever cgroup2 mount the
//! host has (on a hybrid host the controller-less `/sys/fs/cgroup/unified`). Every test works
//! in its own uniquely named cgroup and cleans up through [`Guard`], also when it fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

use super::v1::{Hierarchies, Placement};
use super::v2::Unified;
use super::{Cgroup, CgroupError, Driver};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "refeng-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The cgroup a test acts on: the host's driver through the public API, or a v2 hierarchy at
/// an explicit root.
enum Target {
    Host(Cgroup),
    Unified(Unified, PathBuf),
}

impl Target {
    fn create(
        &self,
        r: Option<&LinuxResources>,
        extra: &[LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        match self {
            Self::Host(c) => c.create(r, extra),
            Self::Unified(u, rel) => u.create(rel, r, extra),
        }
    }
    fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        match self {
            Self::Host(c) => c.update(r),
            Self::Unified(u, rel) => u.update(rel, r),
        }
    }
    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        match self {
            Self::Host(c) => c.add_process(pid),
            Self::Unified(u, rel) => u.add_process(rel, pid),
        }
    }
    fn procs(&self) -> Result<Vec<Pid>, CgroupError> {
        match self {
            Self::Host(c) => c.procs(),
            Self::Unified(u, rel) => u.procs(rel),
        }
    }
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match self {
            Self::Host(c) => c.freeze(frozen),
            Self::Unified(u, rel) => u.freeze(rel, frozen),
        }
    }
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self {
            Self::Host(c) => c.is_frozen(),
            Self::Unified(u, rel) => u.is_frozen(rel),
        }
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        match self {
            Self::Host(c) => c.destroy(),
            Self::Unified(u, rel) => u.destroy(rel),
        }
    }
}

/// Owns a test's cgroup and children: on drop it thaws (a v1-frozen task cannot die), kills and
/// reaps the children, removes the cgroup and any extra directories the test made.
struct Guard {
    target: Target,
    children: Vec<Child>,
    extra_dirs: Vec<PathBuf>,
}

impl Guard {
    fn new(target: Target) -> Self {
        Self {
            target,
            children: Vec::new(),
            extra_dirs: Vec::new(),
        }
    }

    /// Spawns `sh -c script` waiting on stdin, so the test can move it into the cgroup first.
    fn spawn_gated(&mut self, script: &str) -> Pid {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        self.children.push(child);
        pid
    }

    /// Lets the last gated child run and returns its stdout once it exits.
    fn release_and_collect(&mut self) -> String {
        let child = self.children.last_mut().expect("a child");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child.wait().unwrap();
        out
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.target.freeze(false);
        for child in &mut self.children {
            // std does not signal a child it has already reaped, so no stray pid gets killed.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.target.destroy() {
            tracing::warn!(error = %e, "test cleanup could not remove the cgroup");
        }
        for dir in self.extra_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A v1 test needs the host's v1 hierarchies; on a unified host there is nothing to test.
fn v1_host() -> Option<Hierarchies> {
    (Driver::detect().ok()? == Driver::V1).then(|| Hierarchies::discover().expect("v1 hierarchies"))
}

fn v1_cgroup(name: &str) -> Cgroup {
    Cgroup {
        driver: Driver::V1,
        path: PathBuf::from("/").join(name),
        hierarchies: BTreeMap::new(),
    }
}

fn v1_read(h: &Hierarchies, controller: &str, cg: &Cgroup, file: &str) -> String {
    let dir = h.dir(controller, &cg.placement().unwrap()).unwrap();
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

/// The cgroup2 mount to test the v2 driver on: the hybrid host's `unified`, or the root itself.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p.as_path())
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
}

fn dev(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().unwrap()
}

/// Probes /dev/null writes and reads and /dev/zero reads from inside the cgroup.
const DEVICE_PROBE: &str =
    "if echo x >/dev/null; then echo null-w-ok; else echo null-w-denied; fi; \
     if cat /dev/null; then echo null-r-ok; else echo null-r-denied; fi; \
     if head -c1 /dev/zero >/dev/zero; then echo zero-ok; else echo zero-denied; fi";

// ---------------------------------------------------------------- v1

#[test]
fn v1_create_writes_limits_and_destroy_removes_every_hierarchy() {
    let Some(h) = v1_host() else { return };
    let cg = v1_cgroup(&unique_name());
    let guard = Guard::new(Target::Host(cg.clone()));
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .reservation(32i64 << 20)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16).build().unwrap())
        .devices(vec![
            dev(false, LinuxDeviceType::A, None, None, "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ])
        .build()
        .unwrap();
    let mut res = res;
    // The weight needs CFQ's or BFQ's file; a host whose disks use neither (mq-deadline, as on
    // this host without the BFQ module) has none, and then the weight must be refused by name, with
    // nothing made.
    let blkio_root = h
        .list()
        .iter()
        .find(|x| x.controllers.iter().any(|c| c == "blkio"));
    // The kernel shows the weight files only below the root cgroup, so look in a probe child.
    let weighable = blkio_root.is_some_and(|b| {
        let probe = b.mountpoint.join(format!("{}-probe", unique_name()));
        std::fs::create_dir(&probe).unwrap();
        let found = ["blkio.weight", "blkio.bfq.weight"]
            .iter()
            .any(|f| probe.join(f).exists());
        std::fs::remove_dir(&probe).unwrap();
        found
    });
    res.set_block_io(Some(
        LinuxBlockIoBuilder::default()
            .weight(500u16)
            .build()
            .unwrap(),
    ));
    let extra = [dev(true, LinuxDeviceType::C, Some(1), Some(5), "r")];
    if !weighable {
        match guard.target.create(Some(&res), &extra) {
            Err(CgroupError::Unsupported { field, .. }) => {
                assert_eq!(field, "linux.resources.blockIO.weight");
            }
            other => panic!("a weight without a weight file: {other:?}"),
        }
        assert!(!cg.exists().unwrap(), "a refused create left its cgroup");
        res.set_block_io(None);
    }
    guard.target.create(Some(&res), &extra).unwrap();

    assert_eq!(
        v1_read(&h, "memory", &cg, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        v1_read(&h, "memory", &cg, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(v1_read(&h, "memory", &cg, "memory.swappiness"), "10");
    assert_eq!(v1_read(&h, "cpu", &cg, "cpu.shares"), "512");
    assert_eq!(v1_read(&h, "cpu", &cg, "cpu.cfs_quota_us"), "50000");
    assert_eq!(v1_read(&h, "cpu", &cg, "cpu.cfs_period_us"), "100000");
    assert_eq!(v1_read(&h, "cpuset", &cg, "cpuset.cpus"), "0");
    assert!(
        !v1_read(&h, "cpuset", &cg, "cpuset.mems").is_empty(),
        "mems inherited from the parent"
    );
    assert_eq!(v1_read(&h, "pids", &cg, "pids.max"), "16");
    if weighable {
        let blkio = h.dir("blkio", &cg.placement().unwrap()).unwrap();
        let weight_file = ["blkio.weight", "blkio.bfq.weight"]
            .into_iter()
            .find(|f| blkio.join(f).exists())
            .unwrap();
        assert_eq!(v1_read(&h, "blkio", &cg, weight_file), "500");
    }
    let list = v1_read(&h, "devices", &cg, "devices.list");
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["c 1:3 rwm", "c 1:5 r"]);

    let dirs: Vec<PathBuf> = ["memory", "cpu", "cpuset", "pids", "devices", "freezer"]
        .iter()
        .map(|c| h.dir(c, &cg.placement().unwrap()).unwrap())
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    cg.destroy().unwrap();
    assert!(dirs.iter().all(|d| !d.exists()), "leaf left behind");
    cg.destroy().unwrap();
}

#[test]
fn v1_child_joins_every_hierarchy_and_freezes() {
    let Some(h) = v1_host() else { return };
    let cg = v1_cgroup(&unique_name());
    let mut guard = Guard::new(Target::Host(cg.clone()));
    guard.target.create(None, &[]).unwrap();
    let pid = guard.spawn_gated("sleep 1000");
    guard.target.add_process(pid).unwrap();
    assert_eq!(guard.target.procs().unwrap(), [pid]);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let expected = format!(":{}", cg.path.display());
    for controller in ["memory", "pids", "freezer", "devices"] {
        assert!(
            own.lines()
                .any(|l| l.contains(controller) && l.ends_with(&expected)),
            "{controller} missing in {own}"
        );
    }
    assert!(!guard.target.is_frozen().unwrap());
    guard.target.freeze(true).unwrap();
    assert!(guard.target.is_frozen().unwrap());
    assert_eq!(v1_read(&h, "freezer", &cg, "freezer.state"), "FROZEN");
    guard.target.freeze(false).unwrap();
    assert!(!guard.target.is_frozen().unwrap());
    assert_eq!(v1_read(&h, "freezer", &cg, "freezer.state"), "THAWED");
}

#[test]
fn v1_pids_limit_stops_forks() {
    if v1_host().is_none() {
        return;
    }
    let script = "if /bin/true; then echo forked; else echo fork-failed; fi";
    let run = |limit: i64| {
        let mut guard = Guard::new(Target::Host(v1_cgroup(&unique_name())));
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
            .build()
            .unwrap();
        guard.target.create(Some(&res), &[]).unwrap();
        let pid = guard.spawn_gated(script);
        guard.target.add_process(pid).unwrap();
        guard.release_and_collect()
    };
    assert_eq!(
        run(8).trim(),
        "forked",
        "control: a roomy limit lets sh fork"
    );
    assert_ne!(run(1).trim(), "forked", "pids.max 1 must refuse the fork");
}

#[test]
fn v1_device_rules_deny_null_write() {
    if v1_host().is_none() {
        return;
    }
    let mut guard = Guard::new(Target::Host(v1_cgroup(&unique_name())));
    let res = LinuxResourcesBuilder::default()
        .devices(vec![dev(false, LinuxDeviceType::C, Some(1), Some(3), "w")])
        .build()
        .unwrap();
    guard.target.create(Some(&res), &[]).unwrap();
    let pid = guard.spawn_gated(DEVICE_PROBE);
    guard.target.add_process(pid).unwrap();
    assert_eq!(
        guard.release_and_collect(),
        "null-w-denied\nnull-r-ok\nzero-ok\n"
    );
}

#[test]
fn v1_update_changes_limits() {
    let Some(h) = v1_host() else { return };
    let cg = v1_cgroup(&unique_name());
    let guard = Guard::new(Target::Host(cg.clone()));
    let pids = |n| {
        LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(n).build().unwrap())
            .build()
            .unwrap()
    };
    guard.target.create(Some(&pids(16)), &[]).unwrap();
    guard.target.update(&pids(-1)).unwrap();
    assert_eq!(v1_read(&h, "pids", &cg, "pids.max"), "max");
    let memory = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32i64 << 20)
                .swap(64i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    guard.target.update(&memory).unwrap();
    assert_eq!(
        v1_read(&h, "memory", &cg, "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        v1_read(&h, "memory", &cg, "memory.memsw.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    // Shrinking both needs the limit written before memsw; the reverse order fails.
    let smaller = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16i64 << 20)
                .swap(16i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    guard.target.update(&smaller).unwrap();
    assert_eq!(
        v1_read(&h, "memory", &cg, "memory.memsw.limit_in_bytes"),
        (16u64 << 20).to_string()
    );
}

#[test]
fn v1_unavailable_settings_are_refused_and_rolled_back() {
    let Some(h) = v1_host() else { return };
    let cg = v1_cgroup(&unique_name());
    let guard = Guard::new(Target::Host(cg.clone()));
    let at = cg.placement().unwrap();
    if h.dir("hugetlb", &at).is_none() {
        let res = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1i64 << 21)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let err = guard.target.create(Some(&res), &[]).unwrap_err();
        assert!(
            matches!(err, CgroupError::MissingController { ref controller, .. } if controller == "hugetlb"),
            "{err}"
        );
    }
    // CFQ's leaf weights are gone from current kernels; the failure comes after the
    // directories exist, so it also shows the rollback.
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .leaf_weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let pids_dir = h.dir("pids", &at).unwrap();
    match guard.target.create(Some(&res), &[]) {
        Err(CgroupError::Unsupported { field, .. }) => {
            assert_eq!(field, "linux.resources.blockIO.leafWeight");
            assert!(
                !pids_dir.exists(),
                "a failed create must not leave its leaf"
            );
        }
        Ok(()) => {
            let blkio = h.dir("blkio", &at).unwrap();
            assert_eq!(
                std::fs::read_to_string(blkio.join("blkio.leaf_weight"))
                    .unwrap()
                    .trim(),
                "500"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn v1_kernel_memory_limit_is_applied_or_refused() {
    let Some(h) = v1_host() else { return };
    let cg = v1_cgroup(&unique_name());
    let guard = Guard::new(Target::Host(cg.clone()));
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .kernel(1i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Linux 5.16+ keeps memory.kmem.limit_in_bytes but ignores writes to it.
    match guard.target.create(Some(&res), &[]) {
        Ok(()) => assert_eq!(
            v1_read(&h, "memory", &cg, "memory.kmem.limit_in_bytes"),
            (1u64 << 20).to_string()
        ),
        Err(CgroupError::Unsupported { field, .. }) => {
            assert_eq!(field, "linux.resources.memory.kernel")
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn v1_destroy_removes_the_leaf_and_its_sub_cgroups_but_not_the_parent() {
    let Some(h) = v1_host() else { return };
    let parent = unique_name();
    let cg = Cgroup {
        driver: Driver::V1,
        path: PathBuf::from(format!("/{parent}/leaf")),
        hierarchies: BTreeMap::new(),
    };
    let mut guard = Guard::new(Target::Host(cg.clone()));
    let at = cg.placement().unwrap();
    // Every hierarchy the driver joins, named ones (name=systemd) included.
    for hierarchy in h.list() {
        guard.extra_dirs.push(hierarchy.mountpoint.join(&parent));
    }
    guard.target.create(None, &[]).unwrap();
    let sub = h.dir("memory", &at).unwrap().join("inner");
    std::fs::create_dir(&sub).unwrap();
    guard.target.destroy().unwrap();
    assert!(!sub.exists() && !h.dir("memory", &at).unwrap().exists());
    assert!(
        h.dir("memory", &Placement::Uniform(Path::new(&parent)))
            .unwrap()
            .is_dir(),
        "parent must stay"
    );
}

// ---------------------------------------------------------------- v2

fn v2_target() -> Option<(Unified, PathBuf)> {
    let root = v2_root()?;
    Some((Unified::new(root), PathBuf::from(unique_name())))
}

#[test]
fn v2_device_filter_denies_null_write_only() {
    let Some((u, rel)) = v2_target() else { return };
    let mut guard = Guard::new(Target::Unified(u, rel));
    let res = LinuxResourcesBuilder::default()
        .devices(vec![
            dev(false, LinuxDeviceType::A, None, None, "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            dev(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        ])
        .build()
        .unwrap();
    // The shell needs its pipes and /dev/null read; everything else is denied by default.
    guard.target.create(Some(&res), &[]).unwrap();
    let pid = guard.spawn_gated(DEVICE_PROBE);
    guard.target.add_process(pid).unwrap();
    assert_eq!(
        guard.release_and_collect(),
        "null-w-denied\nnull-r-ok\nzero-ok\n"
    );
}

#[test]
fn v2_device_filter_update_replaces_the_old_filter() {
    let Some((u, rel)) = v2_target() else { return };
    let mut guard = Guard::new(Target::Unified(u, rel));
    let deny_null_write = LinuxResourcesBuilder::default()
        .devices(vec![dev(false, LinuxDeviceType::C, Some(1), Some(3), "w")])
        .build()
        .unwrap();
    guard.target.create(Some(&deny_null_write), &[]).unwrap();
    let allow_all_but_zero = LinuxResourcesBuilder::default()
        .devices(vec![dev(
            false,
            LinuxDeviceType::C,
            Some(1),
            Some(5),
            "rwm",
        )])
        .build()
        .unwrap();
    guard.target.update(&allow_all_but_zero).unwrap();
    let pid = guard.spawn_gated(DEVICE_PROBE);
    guard.target.add_process(pid).unwrap();
    // A stacked old filter would still deny the /dev/null write.
    assert_eq!(
        guard.release_and_collect(),
        "null-w-ok\nnull-r-ok\nzero-denied\n"
    );
}

#[test]
fn v2_freeze_and_thaw_a_member() {
    let Some((u, rel)) = v2_target() else { return };
    let mut guard = Guard::new(Target::Unified(u, rel));
    guard.target.create(None, &[]).unwrap();
    let pid = guard.spawn_gated("sleep 1000");
    guard.target.add_process(pid).unwrap();
    assert_eq!(guard.target.procs().unwrap(), [pid]);
    assert!(!guard.target.is_frozen().unwrap());
    guard.target.freeze(true).unwrap();
    assert!(guard.target.is_frozen().unwrap());
    guard.target.freeze(false).unwrap();
    assert!(!guard.target.is_frozen().unwrap());
}

#[test]
fn v2_destroy_removes_nested_leaf_only() {
    let Some((u, rel)) = v2_target() else { return };
    let root = v2_root().unwrap();
    let leaf = rel.join("leaf");
    let mut guard = Guard::new(Target::Unified(u, leaf.clone()));
    guard.extra_dirs.push(root.join(&rel));
    guard.target.create(None, &[]).unwrap();
    std::fs::create_dir(root.join(&leaf).join("inner")).unwrap();
    guard.target.destroy().unwrap();
    assert!(!root.join(&leaf).exists());
    assert!(root.join(&rel).is_dir(), "parent must stay");
}
