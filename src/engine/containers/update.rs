//! `POST /containers/{id}/update` (`docker update`): new resource limits and restart policy,
//! merged into the HostConfig as dockerd merges them (a zero field keeps the old value), checked
//! as at create, applied to the running task through containerd's Tasks.Update and kept in the
//! container's spec for its next start.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::super::error::ApiError;
use super::super::Engine;
use super::body::{is_zero, HostConfig, RestartPolicyBody};
use super::{create, spec};
use refeng_spec::engine::{RestartPolicy, Status};

/// The fields of the update body refengd applies; every other field the API defines
/// (`BlkioWeight`, `CpusetMems`, `MemoryReservation`, `KernelMemory`, device limits, ...) is
/// refused by name unless it is zero, as are names the API does not define.
const APPLIED: &[&str] = &[
    "CpuShares",
    "Memory",
    "NanoCpus",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "MemorySwap",
    "PidsLimit",
    "RestartPolicy",
];

/// The update body's applied fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UpdateBody {
    cpu_shares: i64,
    memory: i64,
    nano_cpus: i64,
    cpu_period: i64,
    cpu_quota: i64,
    cpuset_cpus: String,
    memory_swap: i64,
    pids_limit: Option<i64>,
    restart_policy: RestartPolicyBody,
}

/// Parses the body and refuses, by name, a field that would change something refengd does
/// not apply.
pub(crate) fn parse(body: &[u8]) -> Result<UpdateBody, ApiError> {
    let map: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    for (k, v) in &map {
        if !APPLIED.contains(&k.as_str()) && !is_zero(v) {
            return Err(ApiError::BadRequest(format!(
                "{k} cannot be updated by refengd (got {v})"
            )));
        }
    }
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("invalid update body: {e}")))
}

/// Merges `u` into `h` with dockerd's rules: the NanoCpus/CFS conflicts, and a memory limit
/// above the memory+swap limit in force only together with a new swap limit.
///
/// # Errors
/// dockerd's message for each conflict.
fn merge(h: &mut HostConfig, u: &UpdateBody) -> Result<(), String> {
    if u.nano_cpus > 0 && h.cpu_period > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
                .into(),
        );
    }
    if u.nano_cpus > 0 && h.cpu_quota > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
                .into(),
        );
    }
    if u.cpu_period > 0 && h.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    if u.cpu_quota > 0 && h.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    if u.cpu_shares != 0 {
        h.cpu_shares = u.cpu_shares;
    }
    if u.nano_cpus != 0 {
        h.nano_cpus = u.nano_cpus;
    }
    if u.cpu_period != 0 {
        h.cpu_period = u.cpu_period;
    }
    if u.cpu_quota != 0 {
        h.cpu_quota = u.cpu_quota;
    }
    if !u.cpuset_cpus.is_empty() {
        h.cpuset_cpus.clone_from(&u.cpuset_cpus);
    }
    if u.memory != 0 {
        if u.memory > h.memory_swap && u.memory_swap == 0 {
            return Err(
                "Memory limit should be smaller than already set memoryswap limit, \
                        update the memoryswap at the same time"
                    .into(),
            );
        }
        h.memory = u.memory;
    }
    if u.memory_swap != 0 {
        h.memory_swap = u.memory_swap;
    }
    if let Some(p) = u.pids_limit {
        h.pids_limit = Some(p);
    }
    Ok(())
}

impl Engine {
    /// `POST /containers/{id}/update`.
    ///
    /// # Errors
    /// 400 for a field refengd does not apply or a value create refuses too; 404; 500 with
    /// "Cannot update container ID: ..." for dockerd's conflicts and a failed Tasks.Update.
    pub async fn container_update(&self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        let u = parse(body)?;
        let id = self.containers.find(name)?;
        let lock = self.op_lock(&id)?;
        let _held = lock.lock().await;
        let cannot = |e: String| ApiError::Internal(format!("Cannot update container {id}: {e}"));
        let (mut host, status, auto_remove, mut spec_doc) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            (
                e.stored.host.clone(),
                e.lc.status(),
                e.stored.host.auto_remove,
                e.stored.spec.clone(),
            )
        };
        if matches!(status, Status::Removing | Status::Dead) {
            return Err(cannot(
                "container is marked for removal and cannot be \"update\"".into(),
            ));
        }
        let policy = if u.restart_policy.name.is_empty() {
            None
        } else {
            let p = create::restart_policy(&u.restart_policy)?;
            if auto_remove && p != RestartPolicy::No {
                return Err(cannot(
                    "Restart policy cannot be updated because AutoRemove is enabled for the \
                     container"
                        .into(),
                ));
            }
            Some(p)
        };
        merge(&mut host, &u).map_err(cannot)?;
        if policy.is_some() {
            host.restart_policy = u.restart_policy.clone();
        }
        let ncpu = std::thread::available_parallelism().map_or(1, usize::from);
        let mut resources = spec::resources(&host, ncpu, host.privileged)?;
        if host.pids_limit.is_some_and(|p| p <= 0) {
            // An explicit "unlimited" must lift a limit set before.
            resources["pids"] = json!({"limit": -1});
        }
        if matches!(status, Status::Running | Status::Paused) {
            self.containers
                .ctd
                .update_task(&id, &resources)
                .await
                .map_err(|e| cannot(e.to_string()))?;
        }
        spec_doc["linux"]["resources"] = resources;
        self.containers.ctd.update_spec(&id, &spec_doc).await?;
        self.update(&id, |e| {
            e.stored.host = host;
            e.stored.spec = spec_doc;
            if let Some(p) = policy {
                e.lc.set_policy(p);
            }
        })?;
        self.container_event(&id, "update", BTreeMap::new());
        Ok(json!({ "Warnings": null }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> UpdateBody {
        parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn zero_fields_pass_and_others_are_named() {
        let u = body(
            r#"{"BlkioWeight":0,"CpusetMems":"","Memory":104857600,"PidsLimit":null,
                "RestartPolicy":{"Name":"","MaximumRetryCount":0},"Ulimits":null}"#,
        );
        assert_eq!(u.memory, 100 << 20);
        let e = parse(br#"{"CpusetMems":"0"}"#).unwrap_err();
        assert!(e.to_string().contains("CpusetMems"), "{e}");
        let e = parse(br#"{"Nope":1}"#).unwrap_err();
        assert!(e.to_string().contains("Nope"), "{e}");
        assert!(parse(b"[").is_err());
    }

    #[test]
    fn merge_keeps_old_values_and_refuses_dockerds_conflicts() {
        let mut h = HostConfig {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            cpu_shares: 512,
            nano_cpus: 500_000_000,
            ..HostConfig::default()
        };
        merge(&mut h, &body(r#"{"Memory":100000000}"#)).unwrap();
        assert_eq!((h.memory, h.cpu_shares), (100_000_000, 512));
        let e = merge(&mut h, &body(r#"{"Memory":200000000}"#)).unwrap_err();
        assert!(e.starts_with("Memory limit should be smaller"), "{e}");
        merge(&mut h, &body(r#"{"Memory":200000000,"MemorySwap":-1}"#)).unwrap();
        assert_eq!(h.memory_swap, -1);
        let e = merge(&mut h, &body(r#"{"CpuQuota":50000}"#)).unwrap_err();
        assert!(e.contains("CPU Quota cannot be updated as NanoCPUs"), "{e}");
        let mut h = HostConfig {
            cpu_period: 100_000,
            ..HostConfig::default()
        };
        let e = merge(&mut h, &body(r#"{"NanoCpus":1000000000}"#)).unwrap_err();
        assert!(
            e.contains("Nano CPUs cannot be updated as CPU Period"),
            "{e}"
        );
    }
}
