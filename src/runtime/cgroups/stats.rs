//! Resource usage read from a container's cgroup, in the shape of runc's `events --stats`
//! (`libcontainer/types.Stats`): cpu, memory, pids, blkio and hugetlb, from the v1 controller
//! files or the v2 unified ones. A controller that is not mounted leaves its section empty.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{path, Backend, Cgroup, CgroupError};

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

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let text = read(dir, file)?;
    let text = text.trim();
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events).
fn key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// v1 blkio lines: `8:0 Read 4096`.
fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (major, minor) = it.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: it.next()?.to_string(),
                value: it.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// v2 io.stat lines: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`.
fn io_stat_v2(text: &str) -> Blkio {
    let mut out = Blkio::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut out.service_bytes, "Read"),
                "wbytes" => (&mut out.service_bytes, "Write"),
                "rios" => (&mut out.serviced, "Read"),
                "wios" => (&mut out.serviced, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    out
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

fn v1_stats(h: &super::v1::Hierarchies, rel: &Path) -> Stats {
    let mut s = Stats::default();
    if let Some(dir) = h.dir("cpuacct", rel) {
        s.cpu.usage.total = read_u64(&dir, "cpuacct.usage").unwrap_or(0);
        s.cpu.usage.percpu = read(&dir, "cpuacct.usage_percpu")
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let stat = key_values(&read(&dir, "cpuacct.stat").unwrap_or_default());
        let to_ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / user_hz());
        s.cpu.usage.user = to_ns(stat.get("user").copied().unwrap_or(0));
        s.cpu.usage.kernel = to_ns(stat.get("system").copied().unwrap_or(0));
    }
    if let Some(dir) = h.dir("cpu", rel) {
        let stat = key_values(&read(&dir, "cpu.stat").unwrap_or_default());
        s.cpu.throttling = Throttling {
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: stat.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(dir) = h.dir("memory", rel) {
        s.memory.raw = key_values(&read(&dir, "memory.stat").unwrap_or_default());
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.usage = MemoryEntry {
            limit: read_u64(&dir, "memory.limit_in_bytes").unwrap_or(0),
            usage: read_u64(&dir, "memory.usage_in_bytes").unwrap_or(0),
            max: read_u64(&dir, "memory.max_usage_in_bytes"),
            failcnt: read_u64(&dir, "memory.failcnt"),
        };
        if let Some(usage) = read_u64(&dir, "memory.memsw.usage_in_bytes") {
            s.memory.swap = Some(MemoryEntry {
                limit: read_u64(&dir, "memory.memsw.limit_in_bytes").unwrap_or(0),
                usage,
                max: read_u64(&dir, "memory.memsw.max_usage_in_bytes"),
                failcnt: read_u64(&dir, "memory.memsw.failcnt"),
            });
        }
        s.memory.oom_kills = key_values(&read(&dir, "memory.oom_control").unwrap_or_default())
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
    }
    if let Some(dir) = h.dir("pids", rel) {
        s.pids.current = read_u64(&dir, "pids.current").unwrap_or(0);
        s.pids.limit = read_u64(&dir, "pids.max")
            .filter(|m| *m != u64::MAX)
            .unwrap_or(0);
    }
    if let Some(dir) = h.dir("blkio", rel) {
        s.blkio.service_bytes =
            blkio_v1(&read(&dir, "blkio.throttle.io_service_bytes_recursive").unwrap_or_default());
        s.blkio.serviced =
            blkio_v1(&read(&dir, "blkio.throttle.io_serviced_recursive").unwrap_or_default());
    }
    if let Some(dir) = h.dir("hugetlb", rel) {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(size) = name
                .strip_prefix("hugetlb.")
                .and_then(|n| n.strip_suffix(".usage_in_bytes"))
            {
                s.hugetlb.insert(
                    page_size_name(size),
                    Hugetlb {
                        usage: read_u64(&dir, &name).unwrap_or(0),
                        max: read_u64(&dir, &format!("hugetlb.{size}.max_usage_in_bytes")),
                        failcnt: read_u64(&dir, &format!("hugetlb.{size}.failcnt")).unwrap_or(0),
                    },
                );
            }
        }
    }
    s
}

fn v2_stats(dir: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = key_values(&read(dir, "cpu.stat").unwrap_or_default());
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
    s.memory.raw = key_values(&read(dir, "memory.stat").unwrap_or_default());
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.memory.usage = MemoryEntry {
        limit: read_u64(dir, "memory.max").unwrap_or(u64::MAX),
        usage: read_u64(dir, "memory.current").unwrap_or(0),
        max: read_u64(dir, "memory.peak"),
        failcnt: None,
    };
    if let Some(usage) = read_u64(dir, "memory.swap.current") {
        s.memory.swap = Some(MemoryEntry {
            limit: read_u64(dir, "memory.swap.max").unwrap_or(u64::MAX),
            usage,
            max: read_u64(dir, "memory.swap.peak"),
            failcnt: None,
        });
    }
    s.memory.oom_kills = key_values(&read(dir, "memory.events").unwrap_or_default())
        .get("oom_kill")
        .copied()
        .unwrap_or(0);
    s.pids.current = read_u64(dir, "pids.current").unwrap_or(0);
    s.pids.limit = read_u64(dir, "pids.max")
        .filter(|m| *m != u64::MAX)
        .unwrap_or(0);
    s.blkio = io_stat_v2(&read(dir, "io.stat").unwrap_or_default());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|n| n.strip_suffix(".current"))
        {
            let events =
                key_values(&read(dir, &format!("hugetlb.{size}.events")).unwrap_or_default());
            s.hugetlb.insert(
                size.to_string(),
                Hugetlb {
                    usage: read_u64(dir, &name).unwrap_or(0),
                    max: None,
                    failcnt: events.get("max").copied().unwrap_or(0),
                },
            );
        }
    }
    s
}

impl Cgroup {
    /// Reads the cgroup's resource usage.
    ///
    /// # Errors
    /// Fails if the hierarchies cannot be discovered; files of controllers that are not mounted
    /// leave their section at zero.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let rel = path::checked(&self.path)?;
        Ok(match Backend::discover(self.driver)? {
            Backend::V1(h) => v1_stats(&h, rel),
            Backend::V2(u) => v2_stats(&u.dir(rel)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn parsers_read_kernel_formats() {
        let kv = key_values("cache 4096\nrss 8192\nbad\n");
        assert_eq!(kv.get("cache"), Some(&4096));
        assert_eq!(kv.len(), 2);
        let b = blkio_v1("8:0 Read 4096\n8:0 Write 10\nTotal 4106\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].op, "Write");
        let io = io_stat_v2("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0\n");
        assert_eq!(io.service_bytes.len(), 2);
        assert_eq!(io.serviced[1].value, 2);
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
