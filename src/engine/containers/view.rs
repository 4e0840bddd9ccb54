//! What the API shows of containers: inspect (`GET /containers/{id}/json`) in dockerd's
//! shape, and the list (`GET /containers/json`) with `all`, `limit`, `size` and docker's
//! filters (id, name, label, status, exited, ancestor, before, since).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::error::ApiError;
use super::super::filters::Filters;
use super::super::Engine;
use super::Entry;
use refeng_spec::engine::Status;
use refeng_spec::health::HealthStatus;

/// The zero time as Go prints it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "before", "since", "network", "health",
];

/// go-units' `HumanDuration`, as `docker ps` prints ages.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let m = s / 60;
    let h = (s as f64 / 3600.0).round() as i64;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if m == 1 {
        "About a minute".into()
    } else if m < 60 {
        format!("{m} minutes")
    } else if h == 1 {
        "About an hour".into()
    } else if h < 48 {
        format!("{h} hours")
    } else if h < 24 * 7 * 2 {
        format!("{} days", h / 24)
    } else if h < 24 * 30 * 2 {
        format!("{} weeks", h / 24 / 7)
    } else if h < 24 * 365 * 2 {
        format!("{} months", h / 24 / 30)
    } else {
        format!("{} years", h / 24 / 365)
    }
}

fn since(t: Option<&str>) -> i64 {
    t.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(0, |t| {
            chrono::Utc::now().signed_duration_since(t).num_seconds()
        })
}

fn unix(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).map_or(0, |t| t.timestamp())
}

/// `State.String()` of dockerd: "Up 3 seconds", "Exited (0) 2 minutes ago", ...
fn status_text(e: &Entry) -> String {
    let st = &e.stored.state;
    let code = e.lc.record().exit_code;
    match e.lc.status() {
        Status::Running => format!(
            "Up {}{}",
            human_duration(since(st.started_at.as_deref())),
            match st.health.as_ref().map(|h| h.health.status) {
                None => "",
                Some(HealthStatus::Starting) => " (health: starting)",
                Some(HealthStatus::Healthy) => " (healthy)",
                Some(HealthStatus::Unhealthy) => " (unhealthy)",
            }
        ),
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(since(st.started_at.as_deref()))
        ),
        Status::Restarting => format!(
            "Restarting ({code}) {} ago",
            human_duration(since(st.finished_at.as_deref()))
        ),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Exited => match st.finished_at.as_deref() {
            Some(f) => format!("Exited ({code}) {} ago", human_duration(since(Some(f)))),
            None => format!("Exited ({code})"),
        },
    }
}

fn mounts(e: &Entry) -> Vec<Value> {
    if e.stored.mounts.is_empty() {
        // A record from before mounts were kept: its binds, as they were parsed then.
        return e
            .stored
            .host
            .binds
            .iter()
            .flatten()
            .filter_map(|b| super::mounts::parse_bind(b).ok())
            .map(|m| m.api())
            .collect();
    }
    e.stored
        .mounts
        .iter()
        .filter(|m| m.listed)
        .map(super::mounts::MountPoint::api)
        .collect()
}

/// The endpoint shape inspect shows for a network mode without addresses.
fn empty_endpoint() -> Value {
    json!({"IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
           "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
           "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null})
}

/// `default` and `bridge` are run without a network (no networks exist yet): inspect shows no
/// network rather than pretending a bridge endpoint.
fn networks(e: &Entry) -> Value {
    match e.stored.host.network_mode.as_str() {
        "none" | "host" => json!({ e.stored.host.network_mode.clone(): empty_endpoint() }),
        _ => json!({}),
    }
}

fn config_json(e: &Entry) -> Value {
    let c = &e.stored.config;
    let mut v = json!({
        "Hostname": c.hostname, "Domainname": c.domainname, "User": c.user,
        "AttachStdin": c.attach_stdin, "AttachStdout": c.attach_stdout, "AttachStderr": c.attach_stderr,
        "Tty": c.tty, "OpenStdin": c.open_stdin, "StdinOnce": c.stdin_once,
        "Env": c.env, "Cmd": c.cmd, "Image": c.image,
        "Volumes": c.volumes.as_ref().filter(|v| !v.is_empty()),
        "WorkingDir": c.working_dir, "Entrypoint": c.entrypoint, "OnBuild": c.on_build,
        "Labels": c.labels.clone().unwrap_or_default(),
    });
    if let Some(p) = c.exposed_ports.as_ref().filter(|p| !p.is_empty()) {
        v["ExposedPorts"] = json!(p);
    }
    if c.network_disabled {
        v["NetworkDisabled"] = json!(true);
    }
    if !c.stop_signal.is_empty() {
        v["StopSignal"] = json!(c.stop_signal);
    }
    if let Some(t) = c.stop_timeout {
        v["StopTimeout"] = json!(t);
    }
    if let Some(s) = &c.shell {
        v["Shell"] = json!(s);
    }
    if let Some(h) = &c.healthcheck {
        v["Healthcheck"] = json!(h);
    }
    v
}

/// HostConfig as dockerd shows it: every field, the ones refengd does not implement at their
/// defaults (a create that set them was refused).
fn host_json(e: &Entry) -> Value {
    let h = &e.stored.host;
    let privileged = h.privileged;
    let mut a = json!({
        "Binds": h.binds, "ContainerIDFile": "",
        "LogConfig": {"Type": h.log_config.kind, "Config": h.log_config.config.clone().unwrap_or_default()},
        "NetworkMode": h.network_mode,
        "PortBindings": h.port_bindings.clone().filter(|p| !p.is_null()).unwrap_or_else(|| json!({})),
        "RestartPolicy": {"Name": if h.restart_policy.name.is_empty() { "no" } else { h.restart_policy.name.as_str() },
                          "MaximumRetryCount": h.restart_policy.maximum_retry_count},
        "AutoRemove": h.auto_remove, "VolumeDriver": "", "VolumesFrom": h.volumes_from,
        "ConsoleSize": h.console_size.clone().unwrap_or_else(|| vec![0, 0]),
        "CapAdd": h.cap_add, "CapDrop": h.cap_drop,
        "CgroupnsMode": if h.cgroupns_mode.is_empty() {
            if super::super::system::cgroup_version() == "2" { "private" } else { "host" }
        } else { h.cgroupns_mode.as_str() },
        "Dns": h.dns.clone().unwrap_or_default(), "DnsOptions": h.dns_options.clone().unwrap_or_default(),
        "DnsSearch": h.dns_search.clone().unwrap_or_default(), "ExtraHosts": h.extra_hosts,
        "GroupAdd": h.group_add, "IpcMode": if h.ipc_mode.is_empty() { "private" } else { h.ipc_mode.as_str() },
        "Cgroup": "", "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": privileged,
        "PublishAllPorts": h.publish_all_ports, "ReadonlyRootfs": h.readonly_rootfs, "SecurityOpt": h.security_opt,
        "UTSMode": "", "UsernsMode": "", "ShmSize": h.shm_size, "Runtime": h.runtime,
    });
    let b = json!({
        "Isolation": "", "CpuShares": h.cpu_shares, "Memory": h.memory, "NanoCpus": h.nano_cpus,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": h.cpu_period, "CpuQuota": h.cpu_quota, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": h.cpuset_cpus, "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0,
        "MemorySwap": h.memory_swap, "MemorySwappiness": h.memory_swappiness.filter(|s| *s >= 0),
        "OomKillDisable": h.oom_kill_disable, "PidsLimit": h.pids_limit.filter(|p| *p > 0),
        "Ulimits": h.ulimits.clone().unwrap_or_default(), "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Annotations": h.annotations,
        "MaskedPaths": if privileged { None } else { Some(super::spec::MASKED_PATHS) },
        "ReadonlyPaths": if privileged { None } else { Some(super::spec::READONLY_PATHS) },
    });
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    // dockerd leaves these out unless set (`omitempty` on a pointer and a map).
    if let Some(init) = h.init {
        a["Init"] = json!(init);
    }
    if h.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        a["Sysctls"] = json!(h.sysctls);
    }
    if h.mounts.as_ref().is_some_and(|m| !m.is_empty()) {
        a["Mounts"] = json!(h.mounts);
    }
    if h.tmpfs.as_ref().is_some_and(|t| !t.is_empty()) {
        a["Tmpfs"] = json!(h.tmpfs);
    }
    a
}

/// The inspect JSON of an entry.
pub fn inspect_json(e: &Entry, log_path: &str, files_dir: &str) -> Value {
    let st = &e.stored.state;
    let status = e.lc.status();
    let r = e.lc.record();
    let mut v = json!({
        "Id": e.stored.id,
        "Created": e.stored.created,
        "Path": e.stored.path,
        "Args": e.stored.args,
        "State": {
            "Status": status.as_str(),
            "Running": matches!(status, Status::Running | Status::Paused),
            "Paused": status == Status::Paused,
            "Restarting": status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": status == Status::Dead,
            "Pid": if matches!(status, Status::Running | Status::Paused) { st.pid } else { 0 },
            "ExitCode": r.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        },
        "Image": e.stored.image_id,
        "ResolvConfPath": format!("{files_dir}/resolv.conf"),
        "HostnamePath": format!("{files_dir}/hostname"),
        "HostsPath": format!("{files_dir}/hosts"),
        "LogPath": if e.stored.log.is_some() { log_path } else { "" },
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": super::super::store::SNAPSHOTTER,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if e.execs.is_empty() { None } else { Some(&e.execs) },
        "HostConfig": host_json(e),
        "GraphDriver": {"Data": null, "Name": super::super::store::SNAPSHOTTER},
        "Mounts": mounts(e),
        "Config": config_json(e),
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
            "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks(e),
        },
    });
    if let Some(h) = st.health.as_ref() {
        v["State"]["Health"] = h.to_json();
    }
    v
}

impl Engine {
    /// `GET /containers/{id}/json?size=`.
    ///
    /// # Errors
    /// 404.
    pub async fn container_inspect(&self, name: &str, size: bool) -> Result<Value, ApiError> {
        let id = self.containers.find(name)?;
        let mut v = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            let mut v = inspect_json(
                e,
                &self.containers.log_path(&id).to_string_lossy(),
                &self.containers.dir_of(&id).to_string_lossy(),
            );
            if super::net::bridged(&e.stored) {
                v["NetworkSettings"] = self.network_settings(e);
            }
            v
        };
        if size {
            let (rw, rootfs) = self.sizes(&id).await;
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rootfs);
        }
        Ok(v)
    }

    async fn sizes(&self, id: &str) -> (i64, i64) {
        let store = super::super::store::Store::new(self.backend.clone());
        let rw = store.usage(id).await.unwrap_or(0);
        let image = self
            .containers
            .lock()
            .get(id)
            .map(|e| e.stored.image_ref.clone());
        let mut base = 0;
        if let Some(name) = image {
            if let Ok(Some(img)) = store.image(&name).await {
                if let Some(t) = img.target {
                    if let Ok(r) = self.resolve(&t).await {
                        for c in &r.chain_ids {
                            base += store.usage(c).await.unwrap_or(0);
                        }
                    }
                }
            }
        }
        (rw, rw + base)
    }

    /// `GET /containers/json`.
    ///
    /// # Errors
    /// 400 for bad filters.
    pub async fn containers_json(
        &self,
        all: bool,
        limit: i64,
        size: bool,
        filters: &Filters,
    ) -> Result<Value, ApiError> {
        filters.validate(LIST_FILTERS)?;
        for s in filters.get("status") {
            if Status::from_name(s).is_none() {
                return Err(ApiError::BadRequest(format!("invalid filter 'status={s}'")));
            }
        }
        let mut exited = Vec::new();
        for s in filters.get("health") {
            if !matches!(s, "starting" | "healthy" | "unhealthy" | "none") {
                return Err(ApiError::BadRequest(format!(
                    "Unrecognised filter value for health: {s}"
                )));
            }
        }
        for s in filters.get("exited") {
            exited.push(
                s.parse::<i32>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid filter 'exited={s}'")))?,
            );
        }
        // ancestor: image names resolve to ids; an id (prefix) matches too.
        let mut ancestors: Vec<String> = Vec::new();
        for a in filters.get("ancestor") {
            ancestors.push(a.to_string());
            if let Ok((_, r)) = self.image_for_ancestor(a).await {
                ancestors.push(r);
            }
        }
        let mut rows: Vec<(String, Value, String)> = Vec::new();
        {
            let map = self.containers.lock();
            let created_of = |n: &str| -> Result<String, ApiError> {
                let id = super::find_in(&map, n)?;
                Ok(map[&id].stored.created.clone())
            };
            let before = filters.get("before").next().map(created_of).transpose()?;
            let since_c = filters.get("since").next().map(created_of).transpose()?;
            let mut entries: Vec<&Entry> = map.values().collect();
            entries.sort_by(|a, b| b.stored.created.cmp(&a.stored.created));
            let all = all || limit > 0 || filters.contains("status") || filters.contains("exited");
            for e in entries {
                let status = e.lc.status();
                let name = e.name();
                if !all && !status.is_running() {
                    continue;
                }
                if filters.contains("id") && !filters.get("id").any(|p| e.stored.id.starts_with(p))
                {
                    continue;
                }
                if filters.contains("name")
                    && !filters.get("name").any(|p| {
                        let p = p.strip_prefix('/').unwrap_or(p);
                        regex::Regex::new(p).map_or(name.contains(p), |r| r.is_match(name))
                    })
                {
                    continue;
                }
                let labels: BTreeMap<String, String> =
                    e.stored.config.labels.clone().unwrap_or_default();
                if !filters.match_labels("label", &labels) {
                    continue;
                }
                if filters.contains("network") && !self.on_network(e, filters) {
                    continue;
                }
                if filters.contains("status")
                    && !filters.get("status").any(|s| s == status.as_str())
                {
                    continue;
                }
                if filters.contains("health") {
                    let h = e
                        .stored
                        .state
                        .health
                        .as_ref()
                        .map_or("none", |h| h.health.status.as_str());
                    if !filters.get("health").any(|s| s == h) {
                        continue;
                    }
                }
                if !exited.is_empty()
                    && (status != Status::Exited || !exited.contains(&e.lc.record().exit_code))
                {
                    continue;
                }
                if !ancestors.is_empty()
                    && !ancestors.iter().any(|a| {
                        *a == e.stored.config.image
                            || *a == e.stored.image_id
                            || (a.len() >= 4
                                && e.stored
                                    .image_id
                                    .trim_start_matches("sha256:")
                                    .starts_with(a.trim_start_matches("sha256:")))
                    })
                {
                    continue;
                }
                if before.as_ref().is_some_and(|b| e.stored.created >= *b) {
                    continue;
                }
                if since_c.as_ref().is_some_and(|s| e.stored.created <= *s) {
                    continue;
                }
                let command = list_command(&e.stored.path, &e.stored.args);
                let v = json!({
                    "Id": e.stored.id,
                    "Names": [format!("/{name}")],
                    "Image": e.stored.config.image,
                    "ImageID": e.stored.image_id,
                    "Command": command,
                    "Created": unix(&e.stored.created),
                    "Ports": self.list_ports(e),
                    "Labels": labels,
                    "State": status.as_str(),
                    "Status": status_text(e),
                    "HostConfig": {"NetworkMode": e.stored.host.network_mode},
                    "NetworkSettings": {"Networks": if !super::net::bridged(&e.stored) {
                        networks(e)
                    } else {
                        self.network_settings(e)["Networks"].take()
                    }},
                    "Mounts": mounts(e),
                });
                rows.push((e.stored.id.clone(), v, String::new()));
                if limit > 0 && rows.len() as i64 >= limit {
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for (id, mut v, _) in rows {
            if size {
                // The list's sizes are `omitempty` in dockerd's type: a zero is left out.
                let (rw, rootfs) = self.sizes(&id).await;
                if rw != 0 {
                    v["SizeRw"] = json!(rw);
                }
                if rootfs != 0 {
                    v["SizeRootFs"] = json!(rootfs);
                }
            }
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    async fn image_for_ancestor(&self, name: &str) -> Result<(String, String), ApiError> {
        let store = super::super::store::Store::new(self.backend.clone());
        let r = crate::image::registry::Reference::parse(name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let img = store
            .image(&r.to_string())
            .await?
            .ok_or_else(|| ApiError::NotFound(name.into()))?;
        let t = img.target.ok_or_else(|| ApiError::NotFound(name.into()))?;
        Ok((img.name, self.resolve(&t).await?.id))
    }
}

/// The `Command` of a list entry as dockerd writes it: the path, then the arguments with
/// those that hold a space in single quotes (`sh -c 'exit 3'`).
fn list_command(path: &str, args: &[String]) -> String {
    let mut command = path.to_string();
    for a in args {
        command.push(' ');
        if a.contains(' ') {
            command.push('\'');
            command.push_str(a);
            command.push('\'');
        } else {
            command.push_str(a);
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker_ps() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(72 * 3600), "3 days");
    }

    #[test]
    fn list_commands_quote_arguments_with_spaces() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            list_command("sh", &args(&["-c", "exit 3"])),
            "sh -c 'exit 3'"
        );
        assert_eq!(list_command("sleep", &args(&["300"])), "sleep 300");
        assert_eq!(list_command("true", &[]), "true");
    }
}
