//! Task metrics read from the cgroup of the init process: cgroup v1 controllers or the cgroup v2
//! unified hierarchy, reported as containerd's `io.containerd.cgroups.v1.Metrics` or
//! `io.containerd.cgroups.v2.Metrics`, the types `ctr task metrics` decodes.

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as cgroups;
use containerd_shim_protos::cgroups_v2::metrics as cgroups_v2;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

/// Why metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// cannot read the cgroups of pid {pid}
    #[error("cannot read the cgroups of pid {pid}")]
    ProcCgroup {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A limit file; cgroup v2's `max` reads as `u64::MAX`, as containerd's cgroups library reports it.
fn read_limit(path: &Path) -> u64 {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim() == "max" => u64::MAX,
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

fn keyed(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// containerd's type URLs of the two metrics messages (their protobuf full names; constants so
/// the shim never builds reflection descriptors).
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

fn pack<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.write_to_bytes().unwrap_or_default(),
        ..Default::default()
    }
}

/// The metrics of the cgroup(s) `pid` is in, under the cgroup mount `root` (`/sys/fs/cgroup`).
///
/// # Errors
/// [`StatsError::ProcCgroup`] when `/proc/<pid>/cgroup` cannot be read (the process is gone).
pub fn metrics(pid: u32, root: &Path) -> Result<Any, StatsError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|source| StatsError::ProcCgroup { pid, source })?;
    let mut v1 = Vec::<(String, PathBuf)>::new();
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(root.join(rel));
        } else {
            for c in controllers.split(',') {
                v1.push((c.to_string(), root.join(c).join(rel)));
            }
        }
    }
    let dir = |name: &str| v1.iter().find(|(c, _)| c == name).map(|(_, p)| p.clone());
    if let Some(memory) = dir("memory") {
        let mut m = cgroups::Metrics::new();
        let mut mem = cgroups::MemoryStat::new();
        mem.usage = MessageField::some(cgroups::MemoryEntry {
            usage: read_u64(&memory.join("memory.usage_in_bytes")),
            limit: read_u64(&memory.join("memory.limit_in_bytes")),
            max: read_u64(&memory.join("memory.max_usage_in_bytes")),
            failcnt: read_u64(&memory.join("memory.failcnt")),
            ..Default::default()
        });
        let stat = memory.join("memory.stat");
        mem.cache = keyed(&stat, "cache");
        mem.rss = keyed(&stat, "rss");
        mem.total_cache = keyed(&stat, "total_cache");
        mem.total_rss = keyed(&stat, "total_rss");
        m.memory = MessageField::some(mem);
        if let Some(cpu) = dir("cpuacct") {
            m.cpu = MessageField::some(cgroups::CPUStat {
                usage: MessageField::some(cgroups::CPUUsage {
                    total: read_u64(&cpu.join("cpuacct.usage")),
                    user: read_u64(&cpu.join("cpuacct.usage_user")),
                    kernel: read_u64(&cpu.join("cpuacct.usage_sys")),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if let Some(pids) = dir("pids") {
            m.pids = MessageField::some(cgroups::PidsStat {
                current: read_u64(&pids.join("pids.current")),
                limit: read_limit(&pids.join("pids.max")),
                ..Default::default()
            });
        }
        return Ok(pack(V1_METRICS, &m));
    }
    let dir = unified.unwrap_or_else(|| root.to_path_buf());
    let mut m = cgroups_v2::Metrics::new();
    m.pids = MessageField::some(cgroups_v2::PidsStat {
        current: read_u64(&dir.join("pids.current")),
        limit: read_limit(&dir.join("pids.max")),
        ..Default::default()
    });
    let cpu = dir.join("cpu.stat");
    m.cpu = MessageField::some(cgroups_v2::CPUStat {
        usage_usec: keyed(&cpu, "usage_usec"),
        user_usec: keyed(&cpu, "user_usec"),
        system_usec: keyed(&cpu, "system_usec"),
        ..Default::default()
    });
    let mut mem = cgroups_v2::MemoryStat::new();
    mem.usage = read_u64(&dir.join("memory.current"));
    mem.usage_limit = read_limit(&dir.join("memory.max"));
    mem.anon = keyed(&dir.join("memory.stat"), "anon");
    mem.file = keyed(&dir.join("memory.stat"), "file");
    m.memory = MessageField::some(mem);
    Ok(pack(V2_METRICS, &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_gives_typed_metrics() {
        let any = metrics(std::process::id(), Path::new("/sys/fs/cgroup")).unwrap();
        assert!(
            any.type_url == "io.containerd.cgroups.v1.Metrics"
                || any.type_url == "io.containerd.cgroups.v2.Metrics",
            "{}",
            any.type_url
        );
    }

    #[test]
    fn type_urls_are_the_message_names() {
        use protobuf::MessageFull;
        assert_eq!(V1_METRICS, cgroups::Metrics::descriptor().full_name());
        assert_eq!(V2_METRICS, cgroups_v2::Metrics::descriptor().full_name());
    }

    #[test]
    fn gone_process_is_an_error() {
        assert!(matches!(
            metrics(u32::MAX - 1, Path::new("/sys/fs/cgroup")),
            Err(StatsError::ProcCgroup { .. })
        ));
    }
}
