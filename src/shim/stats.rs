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
        let mut mem = v1_memory_stat(&read_keyed(&memory.join("memory.stat"))?);
        let entry = |prefix: &str| -> Result<cgroups::MemoryEntry, StatsError> {
            Ok(cgroups::MemoryEntry {
                usage: read_u64(&memory.join(format!("{prefix}usage_in_bytes")))?,
                limit: read_u64(&memory.join(format!("{prefix}limit_in_bytes")))?,
                max: read_u64(&memory.join(format!("{prefix}max_usage_in_bytes")))?,
                failcnt: read_u64(&memory.join(format!("{prefix}failcnt")))?,
                ..Default::default()
            })
        };
        mem.usage = MessageField::some(entry("memory.")?);
        mem.swap = MessageField::some(entry("memory.memsw.")?);
        mem.kernel = MessageField::some(entry("memory.kmem.")?);
        mem.kernel_tcp = MessageField::some(entry("memory.kmem.tcp.")?);
        m.memory = MessageField::some(mem);
        let oom = read_keyed(&memory.join("memory.oom_control"))?;
        m.memory_oom_control = MessageField::some(cgroups::MemoryOomControl {
            oom_kill_disable: key(&oom, "oom_kill_disable"),
            under_oom: key(&oom, "under_oom"),
            oom_kill: key(&oom, "oom_kill"),
            ..Default::default()
        });
        let mut cpu_stat = cgroups::CPUStat::new();
        if let Some(cpu) = dir("cpuacct") {
            cpu_stat.usage = MessageField::some(cgroups::CPUUsage {
                total: read_u64(&cpu.join("cpuacct.usage"))?,
                user: read_u64(&cpu.join("cpuacct.usage_user"))?,
                kernel: read_u64(&cpu.join("cpuacct.usage_sys"))?,
                per_cpu: kernel_files::read_optional(
                    &cpu.join("cpuacct.usage_percpu"),
                    cgroup_file::list::<u64>,
                )?
                .unwrap_or_default(),
                ..Default::default()
            });
        }
        if let Some(cpu) = dir("cpu") {
            let t = read_keyed(&cpu.join("cpu.stat"))?;
            cpu_stat.throttling = MessageField::some(cgroups::Throttle {
                periods: key(&t, "nr_periods"),
                throttled_periods: key(&t, "nr_throttled"),
                throttled_time: key(&t, "throttled_time"),
                ..Default::default()
            });
        }
        m.cpu = MessageField::some(cpu_stat);
        if let Some(pids) = dir("pids") {
            m.pids = MessageField::some(cgroups::PidsStat {
                current: read_u64(&pids.join("pids.current"))?,
                limit: read_u64(&pids.join("pids.max"))?,
                ..Default::default()
            });
        }
        if let Some(blkio) = dir("blkio") {
            m.blkio = MessageField::some(v1_blkio(&blkio)?);
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
        nr_periods: key(&cpu, "nr_periods"),
        nr_throttled: key(&cpu, "nr_throttled"),
        throttled_usec: key(&cpu, "throttled_usec"),
        ..Default::default()
    });
    let mut mem = v2_memory_stat(&read_keyed(&dir.join("memory.stat"))?);
    mem.usage = read_u64(&dir.join("memory.current"))?;
    mem.usage_limit = read_u64(&dir.join("memory.max"))?;
    mem.swap_usage = read_u64(&dir.join("memory.swap.current"))?;
    mem.swap_limit = read_u64(&dir.join("memory.swap.max"))?;
    m.memory = MessageField::some(mem);
    let events = read_keyed(&dir.join("memory.events"))?;
    m.memory_events = MessageField::some(cgroups_v2::MemoryEvents {
        low: key(&events, "low"),
        high: key(&events, "high"),
        max: key(&events, "max"),
        oom: key(&events, "oom"),
        oom_kill: key(&events, "oom_kill"),
        ..Default::default()
    });
    let mut io = cgroups_v2::IOStat::new();
    let io_stat = dir.join("io.stat");
    if let Some(lines) = kernel_files::read_optional(&io_stat, cgroup_file::nested_keyed)? {
        for l in lines {
            let Some((major, minor)) = l
                .key
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            else {
                continue;
            };
            let n = |k: &str| -> Result<u64, StatsError> {
                Ok(l.get_u64(k)
                    .map_err(|source| KernelFileError::Malformed {
                        path: io_stat.clone(),
                        source,
                    })?
                    .unwrap_or(0))
            };
            io.usage.push(cgroups_v2::IOEntry {
                major,
                minor,
                rbytes: n("rbytes")?,
                wbytes: n("wbytes")?,
                rios: n("rios")?,
                wios: n("wios")?,
                ..Default::default()
            });
        }
    }
    m.io = MessageField::some(io);
    Ok(pack(V2_METRICS, &m))
}

/// cgroup v1 `memory.stat`, by containerd's field names.
fn v1_memory_stat(stat: &BTreeMap<String, u64>) -> cgroups::MemoryStat {
    let k = |name: &str| key(stat, name);
    cgroups::MemoryStat {
        cache: k("cache"),
        rss: k("rss"),
        rss_huge: k("rss_huge"),
        mapped_file: k("mapped_file"),
        dirty: k("dirty"),
        writeback: k("writeback"),
        pg_pg_in: k("pgpgin"),
        pg_pg_out: k("pgpgout"),
        pg_fault: k("pgfault"),
        pg_maj_fault: k("pgmajfault"),
        inactive_anon: k("inactive_anon"),
        active_anon: k("active_anon"),
        inactive_file: k("inactive_file"),
        active_file: k("active_file"),
        unevictable: k("unevictable"),
        hierarchical_memory_limit: k("hierarchical_memory_limit"),
        hierarchical_swap_limit: k("hierarchical_memsw_limit"),
        total_cache: k("total_cache"),
        total_rss: k("total_rss"),
        total_rss_huge: k("total_rss_huge"),
        total_mapped_file: k("total_mapped_file"),
        total_dirty: k("total_dirty"),
        total_writeback: k("total_writeback"),
        total_pg_pg_in: k("total_pgpgin"),
        total_pg_pg_out: k("total_pgpgout"),
        total_pg_fault: k("total_pgfault"),
        total_pg_maj_fault: k("total_pgmajfault"),
        total_inactive_anon: k("total_inactive_anon"),
        total_active_anon: k("total_active_anon"),
        total_inactive_file: k("total_inactive_file"),
        total_active_file: k("total_active_file"),
        total_unevictable: k("total_unevictable"),
        ..Default::default()
    }
}

/// cgroup v2 `memory.stat`, by containerd's field names (the same as the kernel's).
fn v2_memory_stat(stat: &BTreeMap<String, u64>) -> cgroups_v2::MemoryStat {
    let k = |name: &str| key(stat, name);
    cgroups_v2::MemoryStat {
        anon: k("anon"),
        file: k("file"),
        kernel_stack: k("kernel_stack"),
        slab: k("slab"),
        sock: k("sock"),
        shmem: k("shmem"),
        file_mapped: k("file_mapped"),
        file_dirty: k("file_dirty"),
        file_writeback: k("file_writeback"),
        anon_thp: k("anon_thp"),
        inactive_anon: k("inactive_anon"),
        active_anon: k("active_anon"),
        inactive_file: k("inactive_file"),
        active_file: k("active_file"),
        unevictable: k("unevictable"),
        slab_reclaimable: k("slab_reclaimable"),
        slab_unreclaimable: k("slab_unreclaimable"),
        pgfault: k("pgfault"),
        pgmajfault: k("pgmajfault"),
        workingset_refault: k("workingset_refault"),
        workingset_activate: k("workingset_activate"),
        workingset_nodereclaim: k("workingset_nodereclaim"),
        pgrefill: k("pgrefill"),
        pgscan: k("pgscan"),
        pgsteal: k("pgsteal"),
        pgactivate: k("pgactivate"),
        pgdeactivate: k("pgdeactivate"),
        pglazyfree: k("pglazyfree"),
        pglazyfreed: k("pglazyfreed"),
        thp_fault_alloc: k("thp_fault_alloc"),
        thp_collapse_alloc: k("thp_collapse_alloc"),
        ..Default::default()
    }
}

/// cgroup v1 blkio counters: the CFQ files when the kernel keeps them, else the throttle
/// layer's, which every kernel has (as containerd's cgroups library falls back).
fn v1_blkio(dir: &Path) -> Result<cgroups::BlkIOStat, StatsError> {
    let read = |name: &str| -> Result<Vec<cgroups::BlkIOEntry>, StatsError> {
        Ok(
            kernel_files::read_optional(&dir.join(name), cgroup_file::blkio_v1_counters)?
                .unwrap_or_default()
                .into_iter()
                .map(|c| cgroups::BlkIOEntry {
                    op: c.op,
                    major: c.major,
                    minor: c.minor,
                    value: c.value,
                    ..Default::default()
                })
                .collect(),
        )
    };
    let mut b = cgroups::BlkIOStat::new();
    b.io_service_bytes_recursive = read("blkio.io_service_bytes_recursive")?;
    if b.io_service_bytes_recursive.is_empty() {
        b.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive")?;
        b.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive")?;
        return Ok(b);
    }
    b.io_serviced_recursive = read("blkio.io_serviced_recursive")?;
    b.io_queued_recursive = read("blkio.io_queued_recursive")?;
    b.io_service_time_recursive = read("blkio.io_service_time_recursive")?;
    b.io_wait_time_recursive = read("blkio.io_wait_time_recursive")?;
    b.io_merged_recursive = read("blkio.io_merged_recursive")?;
    b.io_time_recursive = read("blkio.io_time_recursive")?;
    b.sectors_recursive = read("blkio.sectors_recursive")?;
    Ok(b)
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
