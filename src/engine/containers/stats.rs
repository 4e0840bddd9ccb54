//! `GET /containers/{id}/stats`: the task's cgroup metrics (containerd's Tasks.Metrics, cgroup
//! v1 or v2) and the container's interface counters, in dockerd's JSON with the previous
//! sample as `precpu_stats`; one-shot, one sample after a second, or a stream of one per second.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use protobuf::Message;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::super::error::ApiError;
use super::super::Engine;
use super::io::now_rfc3339;
use refeng_spec::engine::Status;

/// How often dockerd's collector samples.
const INTERVAL: Duration = Duration::from_secs(1);

/// Go's zero time, which dockerd prints for a sample not taken.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The blkio lists dockerd prints, by their JSON names (note `io_queue_recursive`).
const BLKIO_KEYS: [&str; 8] = [
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queue_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "io_time_recursive",
    "sectors_recursive",
];

fn zero_cpu() -> Value {
    json!({
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// dockerd's zero `StatsJSON` for `name` and `id`: what a container that does not run reports.
#[must_use]
pub fn zero(name: &str, id: &str) -> Value {
    let blkio: Map<String, Value> = BLKIO_KEYS
        .iter()
        .map(|k| ((*k).to_string(), Value::Null))
        .collect();
    json!({
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": zero_cpu(),
        "precpu_stats": zero_cpu(),
        "memory_stats": {},
        "name": format!("/{name}"),
        "id": id,
    })
}

/// Inserts `key: value` unless `value` is 0 (Go's `omitempty`).
fn put_nonzero(m: &mut Value, key: &str, value: u64) {
    if value != 0 {
        m[key] = json!(value);
    }
}

fn blkio_v1(entries: &[v1::BlkIOEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect(),
    )
}

/// Caps a limit at the machine's memory, as dockerd does for a container without one.
fn cap_limit(limit: u64, machine_memory: u64) -> u64 {
    if limit > machine_memory && machine_memory > 0 {
        machine_memory
    } else {
        limit
    }
}

/// Fills `s` (a [`zero`] sample) from containerd's metrics message: its type URL names cgroup
/// v1's or v2's `Metrics`, converted field by field as dockerd converts them.
///
/// # Errors
/// Another type, or bytes that do not decode as the type.
pub fn fill(
    s: &mut Value,
    type_url: &str,
    bytes: &[u8],
    machine_memory: u64,
) -> Result<(), String> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match name {
        "io.containerd.cgroups.v1.Metrics" => {
            let m = v1::Metrics::parse_from_bytes(bytes)
                .map_err(|e| format!("decoding cgroup v1 metrics: {e}"))?;
            fill_v1(s, &m, machine_memory);
        }
        "io.containerd.cgroups.v2.Metrics" => {
            let m = v2::Metrics::parse_from_bytes(bytes)
                .map_err(|e| format!("decoding cgroup v2 metrics: {e}"))?;
            fill_v2(s, &m, machine_memory);
        }
        other => return Err(format!("unexpected type of metrics {other:?}")),
    }
    Ok(())
}

fn fill_v1(s: &mut Value, m: &v1::Metrics, machine_memory: u64) {
    if let Some(b) = m.blkio.as_ref() {
        let lists = [
            &b.io_service_bytes_recursive,
            &b.io_serviced_recursive,
            &b.io_queued_recursive,
            &b.io_service_time_recursive,
            &b.io_wait_time_recursive,
            &b.io_merged_recursive,
            &b.io_time_recursive,
            &b.sectors_recursive,
        ];
        for (key, list) in BLKIO_KEYS.iter().zip(lists) {
            s["blkio_stats"][*key] = blkio_v1(list);
        }
    }
    if let Some(c) = m.cpu.as_ref() {
        let u = c.usage.clone().unwrap_or_default();
        let t = c.throttling.clone().unwrap_or_default();
        let mut usage = json!({
            "total_usage": u.total,
            "usage_in_kernelmode": u.kernel,
            "usage_in_usermode": u.user,
        });
        if !u.per_cpu.is_empty() {
            usage["percpu_usage"] = json!(u.per_cpu);
        }
        s["cpu_stats"] = json!({
            "cpu_usage": usage,
            "throttling_data": {
                "periods": t.periods,
                "throttled_periods": t.throttled_periods,
                "throttled_time": t.throttled_time,
            },
        });
    }
    if let Some(mem) = m.memory.as_ref() {
        let raw = json!({
            "cache": mem.cache,
            "rss": mem.rss,
            "rss_huge": mem.rss_huge,
            "mapped_file": mem.mapped_file,
            "dirty": mem.dirty,
            "writeback": mem.writeback,
            "pgpgin": mem.pg_pg_in,
            "pgpgout": mem.pg_pg_out,
            "pgfault": mem.pg_fault,
            "pgmajfault": mem.pg_maj_fault,
            "inactive_anon": mem.inactive_anon,
            "active_anon": mem.active_anon,
            "inactive_file": mem.inactive_file,
            "active_file": mem.active_file,
            "unevictable": mem.unevictable,
            "hierarchical_memory_limit": mem.hierarchical_memory_limit,
            "hierarchical_memsw_limit": mem.hierarchical_swap_limit,
            "total_cache": mem.total_cache,
            "total_rss": mem.total_rss,
            "total_rss_huge": mem.total_rss_huge,
            "total_mapped_file": mem.total_mapped_file,
            "total_dirty": mem.total_dirty,
            "total_writeback": mem.total_writeback,
            "total_pgpgin": mem.total_pg_pg_in,
            "total_pgpgout": mem.total_pg_pg_out,
            "total_pgfault": mem.total_pg_fault,
            "total_pgmajfault": mem.total_pg_maj_fault,
            "total_inactive_anon": mem.total_inactive_anon,
            "total_active_anon": mem.total_active_anon,
            "total_inactive_file": mem.total_inactive_file,
            "total_active_file": mem.total_active_file,
            "total_unevictable": mem.total_unevictable,
        });
        let mut out = json!({ "stats": raw });
        if let Some(u) = mem.usage.as_ref() {
            put_nonzero(&mut out, "usage", u.usage);
            put_nonzero(&mut out, "max_usage", u.max);
            put_nonzero(&mut out, "failcnt", u.failcnt);
            put_nonzero(&mut out, "limit", cap_limit(u.limit, machine_memory));
        }
        s["memory_stats"] = out;
    }
    if let Some(p) = m.pids.as_ref() {
        put_nonzero(&mut s["pids_stats"], "current", p.current);
        put_nonzero(&mut s["pids_stats"], "limit", p.limit);
    }
}

fn fill_v2(s: &mut Value, m: &v2::Metrics, machine_memory: u64) {
    if let Some(io) = m.io.as_ref() {
        let mut isbr = Vec::new();
        for e in &io.usage {
            isbr.push(json!({"major": e.major, "minor": e.minor, "op": "read", "value": e.rbytes}));
            isbr.push(
                json!({"major": e.major, "minor": e.minor, "op": "write", "value": e.wbytes}),
            );
        }
        if !isbr.is_empty() {
            s["blkio_stats"]["io_service_bytes_recursive"] = Value::Array(isbr);
        }
    }
    if let Some(c) = m.cpu.as_ref() {
        s["cpu_stats"] = json!({
            "cpu_usage": {
                "total_usage": c.usage_usec * 1000,
                "usage_in_kernelmode": c.system_usec * 1000,
                "usage_in_usermode": c.user_usec * 1000,
            },
            "throttling_data": {
                "periods": c.nr_periods,
                "throttled_periods": c.nr_throttled,
                "throttled_time": c.throttled_usec * 1000,
            },
        });
    }
    if let Some(mem) = m.memory.as_ref() {
        let raw = json!({
            "anon": mem.anon,
            "file": mem.file,
            "kernel_stack": mem.kernel_stack,
            "slab": mem.slab,
            "sock": mem.sock,
            "shmem": mem.shmem,
            "file_mapped": mem.file_mapped,
            "file_dirty": mem.file_dirty,
            "file_writeback": mem.file_writeback,
            "anon_thp": mem.anon_thp,
            "inactive_anon": mem.inactive_anon,
            "active_anon": mem.active_anon,
            "inactive_file": mem.inactive_file,
            "active_file": mem.active_file,
            "unevictable": mem.unevictable,
            "slab_reclaimable": mem.slab_reclaimable,
            "slab_unreclaimable": mem.slab_unreclaimable,
            "pgfault": mem.pgfault,
            "pgmajfault": mem.pgmajfault,
            "workingset_refault": mem.workingset_refault,
            "workingset_activate": mem.workingset_activate,
            "workingset_nodereclaim": mem.workingset_nodereclaim,
            "pgrefill": mem.pgrefill,
            "pgscan": mem.pgscan,
            "pgsteal": mem.pgsteal,
            "pgactivate": mem.pgactivate,
            "pgdeactivate": mem.pgdeactivate,
            "pglazyfree": mem.pglazyfree,
            "pglazyfreed": mem.pglazyfreed,
            "thp_fault_alloc": mem.thp_fault_alloc,
            "thp_collapse_alloc": mem.thp_collapse_alloc,
        });
        let mut out = json!({ "stats": raw });
        put_nonzero(&mut out, "usage", mem.usage);
        put_nonzero(
            &mut out,
            "limit",
            cap_limit(mem.usage_limit, machine_memory),
        );
        if let Some(ev) = m.memory_events.as_ref() {
            put_nonzero(&mut out, "failcnt", ev.oom);
        }
        s["memory_stats"] = out;
    }
    if let Some(p) = m.pids.as_ref() {
        put_nonzero(&mut s["pids_stats"], "current", p.current);
        put_nonzero(&mut s["pids_stats"], "limit", p.limit);
    }
}

/// The host's CPU time in nanoseconds, from the first line of `/proc/stat` (user, nice,
/// system, idle, iowait, irq, softirq), as dockerd's `system_cpu_usage`.
fn system_cpu_usage(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let mut ticks = 0u64;
    for word in line.split_whitespace().skip(1).take(7) {
        ticks = ticks.checked_add(word.parse::<u64>().ok()?)?;
    }
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100);
    Some(ticks.saturating_mul(1_000_000_000 / hz))
}

fn online_cpus() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(1)
}

/// The interface counters of `/proc/PID/net/dev` (the container's network namespace), loopback
/// left out as dockerd's sandbox statistics leave it.
#[must_use]
pub fn net_dev(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let n: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if name == "lo" || n.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
            }),
        );
    }
    out
}

impl Engine {
    /// One sample of `id`, or its zero sample when it does not run (or stops meanwhile).
    async fn stats_sample(&self, id: &str) -> Result<Value, ApiError> {
        let (name, running, pid, host_network) = {
            let map = self.containers.lock();
            let e = map
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))?;
            (
                e.name().to_string(),
                matches!(e.lc.status(), Status::Running | Status::Paused),
                e.stored.state.pid,
                e.stored.host.network_mode == "host",
            )
        };
        let mut s = zero(&name, id);
        if !running {
            return Ok(s);
        }
        let Some(any) = self.containers.ctd.metrics(id).await? else {
            return Ok(zero(&name, id));
        };
        fill(
            &mut s,
            &any.type_url,
            &any.value,
            super::super::system::mem_total(),
        )
        .map_err(ApiError::Internal)?;
        s["read"] = json!(now_rfc3339());
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        if let Some(u) = system_cpu_usage(&stat) {
            s["cpu_stats"]["system_cpu_usage"] = json!(u);
        }
        s["cpu_stats"]["online_cpus"] = json!(online_cpus());
        if !host_network && pid != 0 {
            let nets = net_dev(
                &std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default(),
            );
            if !nets.is_empty() {
                s["networks"] = Value::Object(nets);
            }
        }
        Ok(s)
    }

    /// `GET /containers/{id}/stats`: `stream` sends a sample a second, each with the one
    /// before as `precpu_stats`; otherwise one sample, after a second so that it carries a
    /// previous one, or at once with `one_shot`.
    ///
    /// # Errors
    /// No such container; `one-shot` with `stream`.
    pub async fn container_stats(
        self: &Arc<Self>,
        name: &str,
        stream: bool,
        one_shot: bool,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        if stream && one_shot {
            return Err(ApiError::BadRequest(
                "cannot have stream=true and one-shot=true".into(),
            ));
        }
        let id = self.containers.find(name)?;
        let first = self.stats_sample(&id).await?;
        let (tx, rx) = mpsc::channel(4);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let send = |v: &Value| {
                let mut b = serde_json::to_vec(v).unwrap_or_default();
                b.push(b'\n');
                Bytes::from(b)
            };
            let runs = first["read"] != json!(ZERO_TIME);
            if !stream && (one_shot || !runs) {
                let _ = tx.send(send(&first)).await;
                return;
            }
            let mut prev = first;
            if stream && tx.send(send(&prev)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep(INTERVAL) => {}
                    () = tx.closed() => return,
                }
                let Ok(mut next) = engine.stats_sample(&id).await else {
                    return;
                };
                if next["read"] != json!(ZERO_TIME) {
                    next["preread"] = prev["read"].clone();
                    next["precpu_stats"] = prev["cpu_stats"].clone();
                }
                if tx.send(send(&next)).await.is_err() || !stream {
                    return;
                }
                prev = next;
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sample_is_dockerds() {
        let z = zero("web", "abc");
        assert_eq!(z["name"], "/web");
        assert_eq!(z["read"], ZERO_TIME);
        assert!(z["blkio_stats"]["io_queue_recursive"].is_null());
        assert_eq!(z["memory_stats"], json!({}));
        assert_eq!(z["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    }

    #[test]
    fn v1_metrics_convert_as_dockerd() {
        let mut m = v1::Metrics::new();
        m.cpu = protobuf::MessageField::some(v1::CPUStat {
            usage: protobuf::MessageField::some(v1::CPUUsage {
                total: 30,
                kernel: 10,
                user: 20,
                per_cpu: vec![12, 18],
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut mem = v1::MemoryStat::new();
        mem.total_inactive_file = 7;
        mem.pg_pg_in = 3;
        mem.usage = protobuf::MessageField::some(v1::MemoryEntry {
            usage: 100,
            limit: u64::MAX / 2,
            max: 200,
            ..Default::default()
        });
        m.memory = protobuf::MessageField::some(mem);
        let mut s = zero("a", "b");
        fill(
            &mut s,
            "io.containerd.cgroups.v1.Metrics",
            &m.write_to_bytes().unwrap(),
            1 << 30,
        )
        .unwrap();
        assert_eq!(s["cpu_stats"]["cpu_usage"]["percpu_usage"], json!([12, 18]));
        assert_eq!(s["cpu_stats"]["cpu_usage"]["usage_in_usermode"], 20);
        assert_eq!(s["memory_stats"]["limit"], 1u64 << 30);
        assert_eq!(s["memory_stats"]["max_usage"], 200);
        assert_eq!(s["memory_stats"]["stats"]["total_inactive_file"], 7);
        assert_eq!(s["memory_stats"]["stats"]["pgpgin"], 3);
        assert!(s["memory_stats"].get("failcnt").is_none());
    }

    #[test]
    fn v2_metrics_convert_as_dockerd() {
        let mut m = v2::Metrics::new();
        m.cpu = protobuf::MessageField::some(v2::CPUStat {
            usage_usec: 5,
            system_usec: 2,
            user_usec: 3,
            throttled_usec: 1,
            ..Default::default()
        });
        let mut io = v2::IOStat::new();
        io.usage.push(v2::IOEntry {
            major: 8,
            rbytes: 4096,
            wbytes: 512,
            ..Default::default()
        });
        m.io = protobuf::MessageField::some(io);
        let mut mem = v2::MemoryStat::new();
        mem.usage = 10;
        mem.usage_limit = 20;
        mem.inactive_file = 4;
        m.memory = protobuf::MessageField::some(mem);
        let mut s = zero("a", "b");
        fill(
            &mut s,
            "io.containerd.cgroups.v2.Metrics",
            &m.write_to_bytes().unwrap(),
            1 << 30,
        )
        .unwrap();
        assert_eq!(s["cpu_stats"]["cpu_usage"]["total_usage"], 5000);
        assert!(s["cpu_stats"]["cpu_usage"].get("percpu_usage").is_none());
        assert_eq!(s["cpu_stats"]["throttling_data"]["throttled_time"], 1000);
        assert_eq!(
            s["blkio_stats"]["io_service_bytes_recursive"],
            json!([{"major": 8, "minor": 0, "op": "read", "value": 4096},
                   {"major": 8, "minor": 0, "op": "write", "value": 512}])
        );
        assert_eq!(s["memory_stats"]["limit"], 20);
        assert_eq!(s["memory_stats"]["stats"]["inactive_file"], 4);
        assert!(fill(&mut s, "io.containerd.cgroups.v2.Metrics", b"\xff\xff", 0).is_err());
        assert!(fill(&mut s, "x.Metrics", b"", 0).is_err());
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 100 3 1 2 0 0 0 0 200 4 5 6 0 0 0 0\n";
        let n = net_dev(text);
        assert_eq!(n.len(), 1);
        assert_eq!(n["eth0"]["rx_bytes"], 100);
        assert_eq!(n["eth0"]["tx_dropped"], 6);
    }

    #[test]
    fn system_cpu_usage_sums_seven_fields() {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
        let u = system_cpu_usage("cpu  1 1 1 1 1 1 1 50 0 0\ncpu0 1\n").unwrap();
        assert_eq!(u, 7 * (1_000_000_000 / hz));
        assert!(system_cpu_usage("intr 1\n").is_none());
    }
}
