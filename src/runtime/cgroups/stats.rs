//! Resource usage read from a container's cgroup, in the shape of runc's `events --stats`
//! (`libcontainer/types.Stats`): cpu, memory, pids, blkio and hugetlb, from the v1 controller
//! files or the v2 unified ones. A controller that is not mounted leaves its section empty.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Backend, Cgroup, CgroupError};
use crate::sys::kernel_files::{self, cgroup_file, KernelFileError, Malformed};

/// CPU usage, nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    /// Total CPU time.
    pub total: u64,
    /// Per-CPU time (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Time in kernel mode.
    pub kernel: u64,
    /// Time in user mode.
    pub user: u64,
}

/// CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    /// Enforcement periods.
    pub periods: u64,
    /// Periods in which the group was throttled.
    pub throttled_periods: u64,
    /// Total throttled time, nanoseconds.
    pub throttled_time: u64,
}

/// CPU section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
}

/// One memory counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    /// Current limit (u64::MAX when unlimited).
    pub limit: u64,
    /// Current usage.
    pub usage: u64,
    /// Peak usage, where the kernel records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Times the limit was hit (v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failcnt: Option<u64>,
}

/// Memory section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Page cache.
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Swap (v1: memory+swap; v2: swap alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<MemoryEntry>,
    /// OOM kills in the cgroup so far.
    pub oom_kills: u64,
    /// memory.stat as read.
    pub raw: BTreeMap<String, u64>,
}

/// Pids section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    /// Current number of tasks.
    pub current: u64,
    /// Limit (0 for none).
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    /// Device major.
    pub major: u64,
    /// Device minor.
    pub minor: u64,
    /// `Read`, `Write`, ...
    pub op: String,
    /// The value.
    pub value: u64,
}

/// Block I/O section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Blkio {
    /// Bytes per device and operation.
    #[serde(rename = "ioServiceBytesRecursive")]
    pub service_bytes: Vec<BlkioEntry>,
    /// Operations per device and operation.
    #[serde(rename = "ioServicedRecursive")]
    pub serviced: Vec<BlkioEntry>,
}

/// One huge page size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    /// Usage.
    pub usage: u64,
    /// Peak usage (v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Everything `events --stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// CPU.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Pids.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge pages by size (`2MB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// A single-value file; `None` when the kernel does not provide it.
fn read_u64(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    Ok(kernel_files::read_optional(
        &dir.join(file),
        cgroup_file::single_u64,
    )?)
}

/// A flat-keyed file; empty when the kernel does not provide it.
fn read_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(kernel_files::read_optional(&dir.join(file), cgroup_file::flat_keyed)?.unwrap_or_default())
}

/// v1 blkio counters (`8:0 Read 4096`); empty when the kernel does not provide the file.
fn read_blkio_v1(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    let counters = kernel_files::read_optional(&dir.join(file), cgroup_file::blkio_v1_counters)?;
    Ok(counters
        .unwrap_or_default()
        .into_iter()
        .map(|c| BlkioEntry {
            major: c.major,
            minor: c.minor,
            op: c.op,
            value: c.value,
        })
        .collect())
}

/// v2 `io.stat` (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`) as runc reports it: bytes and
/// operations per device, read and write; empty when the kernel does not provide the file.
fn read_io_stat(dir: &Path) -> Result<Blkio, CgroupError> {
    let path = dir.join("io.stat");
    let malformed = |source| KernelFileError::Malformed {
        path: path.clone(),
        source,
    };
    let entries = kernel_files::read_optional(&path, cgroup_file::nested_keyed)?;
    let mut out = Blkio::default();
    for entry in entries.iter().flatten() {
        let (major, minor) = entry
            .key
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| {
                malformed(Malformed::new(
                    entry.line,
                    entry.key.as_bytes(),
                    "the device is not MAJOR:MINOR",
                ))
            })?;
        for (key, bytes, op) in [
            ("rbytes", true, "Read"),
            ("wbytes", true, "Write"),
            ("rios", false, "Read"),
            ("wios", false, "Write"),
        ] {
            if let Some(value) = entry.get_u64(key).map_err(malformed)? {
                let list = if bytes {
                    &mut out.service_bytes
                } else {
                    &mut out.serviced
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// Huge page size as runc names it from a file suffix: `2048kB` → `2MB`, `1GB` stays.
fn page_size_name(raw: &str) -> String {
    match raw.strip_suffix("kB").and_then(|n| n.parse::<u64>().ok()) {
        Some(kb) if kb >= 1024 && kb % 1024 == 0 => format!("{}MB", kb / 1024),
        Some(kb) => format!("{kb}KB"),
        None => raw.to_string(),
    }
}

fn user_hz() -> u64 {
    // Userspace clock ticks are 100 Hz on every Linux architecture refeng targets.
    100
}

fn v1_stats(
    h: &super::v1::Hierarchies,
    at: &super::v1::Placement<'_>,
) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    if let Some(dir) = h.dir("cpuacct", at) {
        s.cpu.usage.total = read_u64(&dir, "cpuacct.usage")?.unwrap_or(0);
        s.cpu.usage.percpu =
            kernel_files::read_optional(&dir.join("cpuacct.usage_percpu"), cgroup_file::list)?
                .unwrap_or_default();
        let stat = read_keyed(&dir, "cpuacct.stat")?;
        let to_ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / user_hz());
        s.cpu.usage.user = to_ns(stat.get("user").copied().unwrap_or(0));
        s.cpu.usage.kernel = to_ns(stat.get("system").copied().unwrap_or(0));
    }
    if let Some(dir) = h.dir("cpu", at) {
        let stat = read_keyed(&dir, "cpu.stat")?;
        s.cpu.throttling = Throttling {
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: stat.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(dir) = h.dir("memory", at) {
        s.memory.raw = read_keyed(&dir, "memory.stat")?;
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.usage = MemoryEntry {
            limit: read_u64(&dir, "memory.limit_in_bytes")?.unwrap_or(0),
            usage: read_u64(&dir, "memory.usage_in_bytes")?.unwrap_or(0),
            max: read_u64(&dir, "memory.max_usage_in_bytes")?,
            failcnt: read_u64(&dir, "memory.failcnt")?,
        };
        if let Some(usage) = read_u64(&dir, "memory.memsw.usage_in_bytes")? {
            s.memory.swap = Some(MemoryEntry {
                limit: read_u64(&dir, "memory.memsw.limit_in_bytes")?.unwrap_or(0),
                usage,
                max: read_u64(&dir, "memory.memsw.max_usage_in_bytes")?,
                failcnt: read_u64(&dir, "memory.memsw.failcnt")?,
            });
        }
        s.memory.oom_kills = read_keyed(&dir, "memory.oom_control")?
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
    }
    if let Some(dir) = h.dir("pids", at) {
        s.pids.current = read_u64(&dir, "pids.current")?.unwrap_or(0);
        s.pids.limit = read_u64(&dir, "pids.max")?
            .filter(|m| *m != u64::MAX)
            .unwrap_or(0);
    }
    if let Some(dir) = h.dir("blkio", at) {
        s.blkio.service_bytes = read_blkio_v1(&dir, "blkio.throttle.io_service_bytes_recursive")?;
        s.blkio.serviced = read_blkio_v1(&dir, "blkio.throttle.io_serviced_recursive")?;
    }
    if let Some(dir) = h.dir("hugetlb", at) {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(size) = name
                .strip_prefix("hugetlb.")
                .and_then(|n| n.strip_suffix(".usage_in_bytes"))
            {
                s.hugetlb.insert(
                    page_size_name(size),
                    Hugetlb {
                        usage: read_u64(&dir, &name)?.unwrap_or(0),
                        max: read_u64(&dir, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                        failcnt: read_u64(&dir, &format!("hugetlb.{size}.failcnt"))?.unwrap_or(0),
                    },
                );
            }
        }
    }
    Ok(s)
}

fn v2_stats(dir: &Path) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    let cpu = read_keyed(dir, "cpu.stat")?;
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0).saturating_mul(1000);
    s.cpu.usage = CpuUsage {
        total: us("usage_usec"),
        percpu: Vec::new(),
        kernel: us("system_usec"),
        user: us("user_usec"),
    };
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    s.memory.raw = read_keyed(dir, "memory.stat")?;
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.memory.usage = MemoryEntry {
        limit: read_u64(dir, "memory.max")?.unwrap_or(u64::MAX),
        usage: read_u64(dir, "memory.current")?.unwrap_or(0),
        max: read_u64(dir, "memory.peak")?,
        failcnt: None,
    };
    if let Some(usage) = read_u64(dir, "memory.swap.current")? {
        s.memory.swap = Some(MemoryEntry {
            limit: read_u64(dir, "memory.swap.max")?.unwrap_or(u64::MAX),
            usage,
            max: read_u64(dir, "memory.swap.peak")?,
            failcnt: None,
        });
    }
    s.memory.oom_kills = read_keyed(dir, "memory.events")?
        .get("oom_kill")
        .copied()
        .unwrap_or(0);
    s.pids.current = read_u64(dir, "pids.current")?.unwrap_or(0);
    s.pids.limit = read_u64(dir, "pids.max")?
        .filter(|m| *m != u64::MAX)
        .unwrap_or(0);
    s.blkio = read_io_stat(dir)?;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|n| n.strip_suffix(".current"))
        {
            let events = read_keyed(dir, &format!("hugetlb.{size}.events"))?;
            s.hugetlb.insert(
                size.to_string(),
                Hugetlb {
                    usage: read_u64(dir, &name)?.unwrap_or(0),
                    max: None,
                    failcnt: events.get("max").copied().unwrap_or(0),
                },
            );
        }
    }
    Ok(s)
}

impl Cgroup {
    /// Reads the cgroup's resource usage.
    ///
    /// # Errors
    /// Fails if the hierarchies cannot be discovered or a statistics file cannot be read or
    /// does not parse; files of controllers that are not mounted (or counters this kernel does
    /// not keep) leave their fields at zero.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match Backend::discover(self.driver)? {
            Backend::V1(h) => v1_stats(&h, &self.placement()?),
            Backend::V2(u) => v2_stats(&u.dir(self.unified_path()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn io_stat_gives_runc_blkio_entries() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("io.stat"),
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0\n253:0\n",
        )
        .unwrap();
        let io = read_io_stat(tmp.path()).unwrap();
        assert_eq!(io.service_bytes.len(), 2);
        assert_eq!(io.service_bytes[1].op, "Write");
        assert_eq!(io.serviced[1].value, 2);
        std::fs::write(tmp.path().join("io.stat"), "8:0 rbytes=lots\n").unwrap();
        let err = read_io_stat(tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::KernelFile(KernelFileError::Malformed { .. })
            ),
            "{err}"
        );
        assert_eq!(
            read_io_stat(&tmp.path().join("absent")).unwrap(),
            Blkio::default()
        );
    }

    #[test]
    fn malformed_stat_files_are_errors_and_missing_ones_zero() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            v2_stats(tmp.path()).unwrap(),
            Stats {
                memory: Memory {
                    usage: MemoryEntry {
                        limit: u64::MAX,
                        ..MemoryEntry::default()
                    },
                    ..Memory::default()
                },
                ..Stats::default()
            }
        );
        std::fs::write(tmp.path().join("memory.stat"), "anon 1\nfile\n").unwrap();
        let err = v2_stats(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("memory.stat"), "{err}");
    }

    #[test]
    fn page_sizes_are_named_like_runc() {
        assert_eq!(page_size_name("2048kB"), "2MB");
        assert_eq!(page_size_name("1GB"), "1GB");
    }

    #[test]
    fn a_real_cgroup_reports_its_process_and_limits() {
        use std::process::{Command, Stdio};
        let path = PathBuf::from(format!("/refeng-test/stats-{}", std::process::id()));
        let cg = Cgroup::resolve(Some(&path), "stats").unwrap();
        let mut res = oci_spec::runtime::LinuxResources::default();
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(42);
        res.set_pids(Some(pids));
        let mut mem = oci_spec::runtime::LinuxMemory::default();
        mem.set_limit(Some(64 << 20));
        res.set_memory(Some(mem));
        cg.create(Some(&res), &[]).unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let result = (|| {
            cg.add_process(nix::unistd::Pid::from_raw(child.id() as i32))?;
            cg.stats()
        })();
        let _ = child.kill();
        let _ = child.wait();
        cg.destroy().unwrap();
        let stats = result.unwrap();
        assert_eq!(stats.pids.current, 1);
        assert_eq!(stats.pids.limit, 42);
        assert_eq!(stats.memory.usage.limit, 64 << 20);
    }
}
