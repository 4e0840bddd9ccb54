//! `update`: changes the cgroup limits of a live container, from a runtime-spec resources JSON
//! (`--resources FILE|-`) and runc's individual flags, and records them in the container's state
//! so that `state`/hooks see the current config.

use std::io::Read;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources};

use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::{Container, Live};
use crate::runtime::state::StateError;

/// runc's `update` flags; every one that is set overrides the same field of `--resources`.
#[derive(Debug, Clone, Default)]
pub struct UpdateFlags {
    /// `--resources FILE` (`-` for stdin).
    pub resources: Option<PathBuf>,
    /// `--memory`.
    pub memory: Option<String>,
    /// `--memory-reservation`.
    pub memory_reservation: Option<String>,
    /// `--memory-swap`.
    pub memory_swap: Option<String>,
    /// `--kernel-memory`.
    pub kernel_memory: Option<String>,
    /// `--kernel-memory-tcp`.
    pub kernel_memory_tcp: Option<String>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpu-quota`.
    pub cpu_quota: Option<i64>,
    /// `--cpu-period`.
    pub cpu_period: Option<u64>,
    /// `--cpu-rt-runtime`.
    pub cpu_rt_runtime: Option<i64>,
    /// `--cpu-rt-period`.
    pub cpu_rt_period: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`.
    pub blkio_weight: Option<u16>,
}

/// Errors of `update`.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// the resources file could not be read or parsed
    #[error("resources {path}: {reason}")]
    Resources {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// a size flag did not parse
    #[error("{flag}: {value:?} is not a size (bytes, or a number with k, m, g, t)")]
    Size {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// the cgroup refused a value
    #[error("container {id}: cannot update its cgroup")]
    Cgroup {
        /// Container id.
        id: String,
        /// The cgroup error.
        #[source]
        source: Box<CgroupError>,
    },
    /// the new config could not be recorded
    #[error(transparent)]
    State(#[from] StateError),
}

/// Parses runc's sizes: plain bytes, `-1` for unlimited, or a number with a binary suffix.
fn parse_size(flag: &'static str, value: &str) -> Result<i64, UpdateError> {
    let err = || UpdateError::Size {
        flag,
        value: value.to_string(),
    };
    let lower = value.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let trimmed = lower.trim_end_matches('b');
    let (digits, shift) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let n: i64 = digits.trim().parse().map_err(|_| err())?;
    if n < 0 {
        return Err(err());
    }
    n.checked_mul(1i64 << shift).ok_or_else(err)
}

/// The resources to apply: `--resources` first, then each flag on top.
///
/// # Errors
/// An unreadable file or a bad size.
pub fn resources_from(flags: &UpdateFlags) -> Result<LinuxResources, UpdateError> {
    let mut r = match &flags.resources {
        Some(path) => {
            let mut bytes = Vec::new();
            let read = if path.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut bytes).map(drop)
            } else {
                std::fs::read(path).map(|b| bytes = b)
            };
            read.map_err(|e| UpdateError::Resources {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            serde_json::from_slice(&bytes).map_err(|e| UpdateError::Resources {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
        None => LinuxResources::default(),
    };
    let mut memory = r.memory().unwrap_or_default();
    let mut memory_set = r.memory().is_some();
    for (flag, value, set) in [
        ("--memory", &flags.memory, 0),
        ("--memory-reservation", &flags.memory_reservation, 1),
        ("--memory-swap", &flags.memory_swap, 2),
        ("--kernel-memory", &flags.kernel_memory, 3),
        ("--kernel-memory-tcp", &flags.kernel_memory_tcp, 4),
    ] {
        if let Some(v) = value {
            let bytes = parse_size(flag, v)?;
            match set {
                0 => memory.set_limit(Some(bytes)),
                1 => memory.set_reservation(Some(bytes)),
                2 => memory.set_swap(Some(bytes)),
                3 => memory.set_kernel(Some(bytes)),
                _ => memory.set_kernel_tcp(Some(bytes)),
            };
            memory_set = true;
        }
    }
    if memory_set {
        r.set_memory(Some(memory));
    }
    let mut cpu = r.cpu().clone().unwrap_or_else(LinuxCpu::default);
    let before = cpu.clone();
    if let Some(v) = flags.cpu_shares {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = flags.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = flags.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = flags.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = flags.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = &flags.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &flags.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if r.cpu().is_some() || cpu != before {
        r.set_cpu(Some(cpu));
    }
    if let Some(limit) = flags.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }
    if let Some(weight) = flags.blkio_weight {
        let mut blkio = r.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(weight));
        r.set_block_io(Some(blkio));
    }
    Ok(r)
}

impl<S: Live> Container<S> {
    /// Applies `resources` to the cgroup and records them in the state's config.
    ///
    /// # Errors
    /// A value the cgroup refuses (nothing is recorded then), or a state write error.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn update(&mut self, resources: &LinuxResources) -> Result<(), UpdateError> {
        self.state
            .cgroup
            .update(resources)
            .map_err(|source| UpdateError::Cgroup {
                id: self.id().to_string(),
                source: Box::new(source),
            })?;
        if let Some(linux) = self.state.config.linux_mut() {
            let mut merged = linux.resources().clone().unwrap_or_default();
            merge(&mut merged, resources);
            linux.set_resources(Some(merged));
        }
        self.dir.write(&self.state)?;
        Ok(())
    }
}

/// Overlays every section `new` sets onto `base`.
fn merge(base: &mut LinuxResources, new: &LinuxResources) {
    if new.memory().is_some() {
        base.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        base.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        base.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        base.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        base.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.devices().is_some() {
        base.set_devices(new.devices().clone());
    }
    if new.network().is_some() {
        base.set_network(new.network().clone());
    }
    if new.rdma().is_some() {
        base.set_rdma(new.rdma().clone());
    }
    if new.unified().is_some() {
        base.set_unified(new.unified().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_size("--memory", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("--memory", "2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("--memory", "512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("--memory-swap", "-1").unwrap(), -1);
        assert!(parse_size("--memory", "lots").is_err());
        assert!(parse_size("--memory", "-5").is_err());
        assert!(parse_size("--memory", "99999999999999t").is_err());
    }

    #[test]
    fn flags_override_the_resources_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        std::fs::write(&file, r#"{"memory":{"limit":1000},"pids":{"limit":5}}"#).unwrap();
        let flags = UpdateFlags {
            resources: Some(file),
            pids_limit: Some(9),
            cpu_quota: Some(5000),
            ..Default::default()
        };
        let r = resources_from(&flags).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 9);
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(5000));
    }
}
