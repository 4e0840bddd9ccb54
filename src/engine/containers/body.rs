//! The body of `POST /containers/create` (Config + HostConfig + NetworkingConfig): parsed into
//! the fields refengd implements, and checked so that every other field the API defines is
//! refused by name when it carries anything but its zero or documented default (the docker
//! CLI sends many zero-valued fields; those pass).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::error::ApiError;

/// The largest create body read (dockerd has no limit; a bound keeps a client from making
/// refengd hold an arbitrary amount of memory).
pub const MAX_BODY: usize = 4 << 20;

/// `Config` fields refengd implements (beside `HostConfig` and `NetworkingConfig`).
const CONFIG_FIELDS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    // Published with `-P`, shown in inspect and the list.
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Image",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "ArgsEscaped",
    "Healthcheck",
    // `-v /path` and the image's VOLUME: anonymous volumes.
    "Volumes",
];

/// `HostConfig` fields refengd implements.
const HOST_FIELDS: &[&str] = &[
    "Binds",
    "Mounts",
    "Tmpfs",
    "VolumesFrom",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "PublishAllPorts",
    "RestartPolicy",
    "AutoRemove",
    "ConsoleSize",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Privileged",
    "ReadonlyRootfs",
    "SecurityOpt",
    "ShmSize",
    "Isolation",
    "Runtime",
    "CpuShares",
    "Memory",
    "NanoCpus",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "MemorySwap",
    "MemorySwappiness",
    "OomKillDisable",
    "PidsLimit",
    "Ulimits",
    "Sysctls",
    "Init",
    "Annotations",
];

/// A `Config` or `HostConfig` field whose value refengd cannot honour is refused with this
/// error, naming it.
fn unsupported(section: &str, key: &str, value: &Value) -> ApiError {
    ApiError::BadRequest(format!(
        "{section}.{key} is not supported by refengd (got {value})"
    ))
}

/// Whether a JSON value is the zero value a Go client sends for an unset field: null, false,
/// 0, "", and arrays or objects made only of such values (`{}` members excepted).
pub fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_zero),
        // A key whose value is `{}` is a set member (`Volumes`, `ExposedPorts`): not zero.
        Value::Object(o) => o
            .values()
            .all(|v| is_zero(v) && v.as_object().is_none_or(|m| !m.is_empty())),
    }
}

/// A field's documented default that is not its zero value (and means the same as unset).
fn is_default(key: &str, v: &Value) -> bool {
    match key {
        // -1: "use the kernel's default" (what `docker run` sends).
        "MemorySwappiness" => v.as_i64() == Some(-1),
        // The only volume driver refengd has.
        "VolumeDriver" => v.as_str() == Some("local"),
        _ => false,
    }
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicyBody {
    /// "", no, always, unless-stopped, on-failure.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// For on-failure.
    #[serde(rename = "MaximumRetryCount", default)]
    pub maximum_retry_count: i64,
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfigBody {
    /// json-file or none ("" is the daemon's default).
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// max-size, max-file.
    #[serde(rename = "Config", default)]
    pub config: Option<BTreeMap<String, String>>,
}

/// One `HostConfig.Ulimits` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// nofile, nproc, ...
    #[serde(rename = "Name")]
    pub name: String,
    /// Soft limit.
    #[serde(rename = "Soft")]
    pub soft: i64,
    /// Hard limit.
    #[serde(rename = "Hard")]
    pub hard: i64,
}

/// The `HostConfig` fields refengd implements (nulls read as absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `host-path:container-path[:options]` or `volume:container-path[:options]`.
    pub binds: Option<Vec<String>>,
    /// `--mount` objects (read by [`super::mounts::parse_mount`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Value>>,
    /// `--tmpfs`: path → options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// `--volumes-from`: `container[:ro|rw]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes_from: Option<Vec<String>>,
    /// Which log driver.
    pub log_config: LogConfigBody,
    /// default, bridge, a network's name or id, none, host, container:X.
    pub network_mode: String,
    /// `-p`: `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}` (read by the network layer).
    pub port_bindings: Option<Value>,
    /// `-P`: every exposed port on a random host port.
    pub publish_all_ports: bool,
    /// The restart policy.
    pub restart_policy: RestartPolicyBody,
    /// Remove once it exits.
    pub auto_remove: bool,
    /// The initial tty size (height, width).
    pub console_size: Option<Vec<u32>>,
    /// Capabilities added.
    pub cap_add: Option<Vec<String>>,
    /// Capabilities dropped.
    pub cap_drop: Option<Vec<String>>,
    /// "", private, host.
    pub cgroupns_mode: String,
    /// resolv.conf nameservers.
    pub dns: Option<Vec<String>>,
    /// resolv.conf options.
    pub dns_options: Option<Vec<String>>,
    /// resolv.conf search domains.
    pub dns_search: Option<Vec<String>>,
    /// `host:ip` lines for /etc/hosts.
    pub extra_hosts: Option<Vec<String>>,
    /// More groups for the process.
    pub group_add: Option<Vec<String>>,
    /// "", private, shareable.
    pub ipc_mode: String,
    /// Every capability and device.
    pub privileged: bool,
    /// The root filesystem read-only.
    pub readonly_rootfs: bool,
    /// seccomp=…, no-new-privileges.
    pub security_opt: Option<Vec<String>>,
    /// /dev/shm size in bytes (0: 64 MiB).
    pub shm_size: i64,
    /// "" or default.
    pub isolation: String,
    /// "" or runc.
    pub runtime: String,
    /// cpu.shares.
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    pub memory: i64,
    /// CPUs in 1e-9 units.
    pub nano_cpus: i64,
    /// CFS period.
    pub cpu_period: i64,
    /// CFS quota.
    pub cpu_quota: i64,
    /// cpuset.cpus.
    pub cpuset_cpus: String,
    /// Memory + swap limit.
    pub memory_swap: i64,
    /// -1 or null: the kernel's default.
    pub memory_swappiness: Option<i64>,
    /// Disable the OOM killer.
    pub oom_kill_disable: bool,
    /// pids.max (0, -1 or null: unlimited).
    pub pids_limit: Option<i64>,
    /// rlimits.
    pub ulimits: Option<Vec<Ulimit>>,
    /// Namespaced sysctls.
    pub sysctls: Option<BTreeMap<String, String>>,
    /// Run an init as pid 1.
    pub init: Option<bool>,
    /// OCI annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `Config.Healthcheck`: the probe and its timing (durations in nanoseconds, 0 for "the
/// image's, else dockerd's default").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` off, `["CMD", args...]`, `["CMD-SHELL", command]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Between probes.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub interval: i64,
    /// A probe's longest run.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timeout: i64,
    /// Failures in this time after a start do not count while starting.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub start_period: i64,
    /// Between probes during the start period.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub start_interval: i64,
    /// Failures in a row that make it unhealthy.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub retries: i64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// The Config fields refengd implements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    /// The container's hostname.
    pub hostname: String,
    /// Its domain name.
    pub domainname: String,
    /// user[:group], names or ids.
    pub user: String,
    /// Attach stdin (metadata for the client).
    pub attach_stdin: bool,
    /// Attach stdout.
    pub attach_stdout: bool,
    /// Attach stderr.
    pub attach_stderr: bool,
    /// Exposed ports (metadata).
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// A tty for the process.
    pub tty: bool,
    /// Keep stdin open.
    pub open_stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// KEY=VALUE.
    pub env: Option<Vec<String>>,
    /// The command.
    pub cmd: Option<Vec<String>>,
    /// The image as the client named it.
    pub image: String,
    /// The working directory.
    pub working_dir: String,
    /// The entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// No network at all.
    pub network_disabled: bool,
    /// ONBUILD triggers (metadata).
    pub on_build: Option<Vec<String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// The stop signal.
    pub stop_signal: String,
    /// Seconds between the stop signal and KILL.
    pub stop_timeout: Option<i64>,
    /// The shell (metadata).
    pub shell: Option<Vec<String>>,
    /// Windows only (metadata).
    pub args_escaped: bool,
    /// Anonymous volume paths (`{"/data": {}}`), merged with the image's at create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// The health check (merged with the image's at create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
}

/// A parsed create body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateBody {
    /// The container's Config.
    pub config: Config,
    /// Its HostConfig.
    pub host: HostConfig,
    /// NetworkingConfig.EndpointsConfig, by network name or id as given.
    pub endpoints: BTreeMap<String, crate::engine::network::containers::EndpointRequest>,
}

fn object<'a>(v: &'a Value, what: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => Ok(Some(o)),
        _ => Err(ApiError::BadRequest(format!(
            "{what} must be a JSON object"
        ))),
    }
}

fn check_section(
    section: &str,
    obj: &Map<String, Value>,
    supported: &[&str],
    skip: &[&str],
) -> Result<(), ApiError> {
    for (k, v) in obj {
        if supported.contains(&k.as_str()) || skip.contains(&k.as_str()) {
            continue;
        }
        if !is_zero(v) && !is_default(k, v) {
            return Err(unsupported(section, k, v));
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    obj: Option<&Map<String, Value>>,
) -> Result<T, ApiError> {
    let Some(obj) = obj else {
        return Ok(T::default());
    };
    // Nulls mean "unset": drop them so that every field takes its default.
    let cleaned: Map<String, Value> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::from_value(Value::Object(cleaned))
        .map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}

/// Parses and checks a create body.
///
/// # Errors
/// `BadRequest` for malformed JSON, for a field refengd does not implement set to a
/// non-default value (named), and for a NetworkingConfig that asks for more than the
/// container's network mode.
pub fn parse(bytes: &[u8]) -> Result<CreateBody, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::BadRequest(format!(
            "the create body is larger than {MAX_BODY} bytes"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "invalid JSON: the request body is empty".into(),
        ));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let Some(top) = object(&v, "the body")? else {
        return Err(ApiError::BadRequest(
            "config cannot be empty in order to create a container".into(),
        ));
    };
    check_section(
        "Config",
        top,
        CONFIG_FIELDS,
        &["HostConfig", "NetworkingConfig"],
    )?;
    let host_obj = match top.get("HostConfig") {
        Some(h) => object(h, "HostConfig")?,
        None => None,
    };
    if let Some(h) = host_obj {
        check_section("HostConfig", h, HOST_FIELDS, &[])?;
    }
    let config: Config = decode("Config", Some(top))?;
    let host: HostConfig = decode("HostConfig", host_obj)?;
    let endpoints = match top.get("NetworkingConfig") {
        Some(n) => networking(n)?,
        None => BTreeMap::new(),
    };
    Ok(CreateBody {
        config,
        host,
        endpoints,
    })
}

/// NetworkingConfig: its EndpointsConfig, each endpoint read by the network layer; any
/// other key set is refused by name. Which networks exist is judged at create.
fn networking(
    v: &Value,
) -> Result<BTreeMap<String, crate::engine::network::containers::EndpointRequest>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(obj) = object(v, "NetworkingConfig")? else {
        return Ok(out);
    };
    for (k, val) in obj {
        if k != "EndpointsConfig" {
            if !is_zero(val) {
                return Err(unsupported("NetworkingConfig", k, val));
            }
            continue;
        }
        let Some(eps) = object(val, "NetworkingConfig.EndpointsConfig")? else {
            continue;
        };
        for (net, ep) in eps {
            out.insert(
                net.clone(),
                crate::engine::network::containers::parse_endpoint(
                    &format!("NetworkingConfig.EndpointsConfig.{net}"),
                    ep,
                )?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the docker CLI 28 sends for `docker run --rm busybox echo hi` (captured).
    pub(crate) const CLI_RUN: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["echo","hi"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}"#;

    #[test]
    fn the_docker_clis_zero_valued_fields_pass() {
        let b = parse(CLI_RUN.as_bytes()).unwrap();
        assert_eq!(b.config.cmd, Some(vec!["echo".into(), "hi".into()]));
        assert!(b.host.auto_remove);
        assert_eq!(b.host.network_mode, "default");
        assert_eq!(b.host.memory_swappiness, Some(-1));
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        for (body, name) in [
            (
                r#"{"Image":"a","HostConfig":{"PidMode":"host"}}"#,
                "HostConfig.PidMode",
            ),
            (
                r#"{"Image":"a","HostConfig":{"Devices":[{"PathOnHost":"/dev/x"}]}}"#,
                "HostConfig.Devices",
            ),
            (
                r#"{"Image":"a","HostConfig":{"VolumeDriver":"nfs"}}"#,
                "HostConfig.VolumeDriver",
            ),
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{body}");
            assert!(e.to_string().starts_with(name), "{body}: {e}");
        }
        for ok in [
            r#"{"Image":"a","Healthcheck":{"Test":["NONE"]}}"#,
            r#"{"Image":"a","Volumes":{"/data":{}},"HostConfig":{"VolumeDriver":"local","Tmpfs":{"/t":""}}}"#,
            r#"{"Image":"a","Healthcheck":{"Test":["CMD","true"],"Interval":1000000000}}"#,
        ] {
            assert!(parse(ok.as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn endpoints_are_read_and_their_unsupported_fields_named() {
        let body = r#"{"Image":"a","HostConfig":{"NetworkMode":"mynet"},
            "NetworkingConfig":{"EndpointsConfig":{"mynet":{"Aliases":["db"]}}}}"#;
        // Whether the network exists is judged where the container is made.
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.endpoints["mynet"].aliases, vec!["db".to_string()]);
        let body = r#"{"Image":"a","NetworkingConfig":{"EndpointsConfig":{"n":{"Links":["x"]}}}}"#;
        let e = parse(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("EndpointsConfig.n.Links"), "{e}");
    }

    #[test]
    fn malformed_bodies_are_400() {
        for b in ["", "[", "[]", "{\"Cmd\":3}", "{\"HostConfig\":[]}"] {
            let e = parse(b.as_bytes()).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{b}");
        }
    }
}
