//! Task metrics read from the cgroup of the init process: cgroup v1 controllers or the cgroup v2
//! unified hierarchy, reported as containerd's `io.containerd.cgroups.v1.Metrics` or
//! `io.containerd.cgroups.v2.Metrics`, the types `ctr task metrics` decodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as cgroups;
use containerd_shim_protos::cgroups_v2::metrics as cgroups_v2;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::kernel_files::{self, cgroup_file, KernelFileError};

/// Why metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// cannot read the cgroups of pid {pid}
    #[error("cannot read the cgroups of pid {pid}")]
    ProcCgroup {
        pid: u32,
        #[source]
        source: KernelFileError,
    },
    /// a cgroup statistics file cannot be read or does not parse
    #[error(transparent)]
    File(#[from] KernelFileError),
}

/// A single-value file; 0 when the kernel does not provide it. cgroup v2's `max` reads as
/// `u64::MAX`, as containerd's cgroups library reports it.
fn read_u64(path: &Path) -> Result<u64, StatsError> {
    Ok(kernel_files::read_optional(path, cgroup_file::single_u64)?.unwrap_or(0))
}

/// A flat-keyed file; empty when the kernel does not provide it.
fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, StatsError> {
    Ok(kernel_files::read_optional(path, cgroup_file::flat_keyed)?.unwrap_or_default())
}

fn key(map: &BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
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
/// [`StatsError::ProcCgroup`] when `/proc/<pid>/cgroup` cannot be read (the process is gone),
/// [`StatsError::File`] when a statistics file cannot be read or does not parse.
pub fn metrics(pid: u32, root: &Path) -> Result<Any, StatsError> {
    let own =
        ProcCgroup::read(Some(pid)).map_err(|source| StatsError::ProcCgroup { pid, source })?;
    let rel = |path: &Path| -> PathBuf { path.strip_prefix("/").unwrap_or(path).to_path_buf() };
    let dir = |name: &str| own.v1(name).map(|m| root.join(name).join(rel(&m.path)));
    if let Some(memory) = dir("memory") {
        let mut m = cgroups::Metrics::new();
        let mut mem = cgroups::MemoryStat::new();
        mem.usage = MessageField::some(cgroups::MemoryEntry {
            usage: read_u64(&memory.join("memory.usage_in_bytes"))?,
            limit: read_u64(&memory.join("memory.limit_in_bytes"))?,
            max: read_u64(&memory.join("memory.max_usage_in_bytes"))?,
            failcnt: read_u64(&memory.join("memory.failcnt"))?,
            ..Default::default()
        });
        let stat = read_keyed(&memory.join("memory.stat"))?;
        mem.cache = key(&stat, "cache");
        mem.rss = key(&stat, "rss");
        mem.total_cache = key(&stat, "total_cache");
        mem.total_rss = key(&stat, "total_rss");
        m.memory = MessageField::some(mem);
        if let Some(cpu) = dir("cpuacct") {
            m.cpu = MessageField::some(cgroups::CPUStat {
                usage: MessageField::some(cgroups::CPUUsage {
                    total: read_u64(&cpu.join("cpuacct.usage"))?,
                    user: read_u64(&cpu.join("cpuacct.usage_user"))?,
                    kernel: read_u64(&cpu.join("cpuacct.usage_sys"))?,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if let Some(pids) = dir("pids") {
            m.pids = MessageField::some(cgroups::PidsStat {
                current: read_u64(&pids.join("pids.current"))?,
                limit: read_u64(&pids.join("pids.max"))?,
                ..Default::default()
            });
        }
        return Ok(pack(V1_METRICS, &m));
    }
    let dir = match own.unified() {
        Some(path) => root.join(rel(path)),
        None => root.to_path_buf(),
    };
    let mut m = cgroups_v2::Metrics::new();
    m.pids = MessageField::some(cgroups_v2::PidsStat {
        current: read_u64(&dir.join("pids.current"))?,
        limit: read_u64(&dir.join("pids.max"))?,
        ..Default::default()
    });
    let cpu = read_keyed(&dir.join("cpu.stat"))?;
    m.cpu = MessageField::some(cgroups_v2::CPUStat {
        usage_usec: key(&cpu, "usage_usec"),
        user_usec: key(&cpu, "user_usec"),
        system_usec: key(&cpu, "system_usec"),
        ..Default::default()
    });
    let mut mem = cgroups_v2::MemoryStat::new();
    mem.usage = read_u64(&dir.join("memory.current"))?;
    mem.usage_limit = read_u64(&dir.join("memory.max"))?;
    let stat = read_keyed(&dir.join("memory.stat"))?;
    mem.anon = key(&stat, "anon");
    mem.file = key(&stat, "file");
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
