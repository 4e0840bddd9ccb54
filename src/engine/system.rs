//! The system endpoints: `/_ping`, `/version` and `/info`, with values read from this host,
//! from refeng-containerd (its version, the image count) and from the engine's own state.

use std::path::Path;

use serde_json::{json, Value};

use super::error::ApiError;
use super::Engine;

/// The API version refengd speaks and advertises.
pub const API_VERSION: &str = "1.44";
/// The oldest API version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// refengd's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Go's name of this architecture, as dockerd reports `Arch`.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// `SecurityOptions` of `/info`: dockerd 20.10 lists `seccomp` with the profile its containers
/// get by default (`default` for the built-in one, else daemon.json's `seccomp-profile`) when the
/// kernel filters syscalls.
fn security_options(config: &super::Config) -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        let profile = config.seccomp_profile.as_deref().unwrap_or("default");
        vec![format!("name=seccomp,profile={profile}")]
    } else {
        Vec::new()
    }
}

/// The host's name.
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let name = field("PRETTY_NAME");
    (
        if name.is_empty() {
            "Linux".into()
        } else {
            name
        },
        field("VERSION_ID"),
    )
}

pub(crate) fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Which cgroup version the host runs containers under (`2` only on a unified hierarchy).
pub fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// What the cgroup hierarchy lets containers be limited by.
fn cgroup_features() -> Value {
    let v2 = cgroup_version() == "2";
    let controllers = read_trimmed("/sys/fs/cgroup/cgroup.controllers");
    let has = |v1: &str, v2name: &str| {
        if v2 {
            controllers.split_whitespace().any(|c| c == v2name)
        } else {
            Path::new("/sys/fs/cgroup").join(v1).exists()
        }
    };
    let memory = has("memory/memory.limit_in_bytes", "memory");
    let swap = if v2 {
        memory
    } else {
        Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    };
    let cfs = has("cpu/cpu.cfs_quota_us", "cpu");
    json!({
        "MemoryLimit": memory,
        "SwapLimit": swap,
        "CpuCfsPeriod": cfs,
        "CpuCfsQuota": cfs,
        "CPUShares": has("cpu/cpu.shares", "cpu"),
        "CPUSet": has("cpuset/cpuset.cpus", "cpuset"),
        // pids.max exists only below the v1 root: the mounted controller is what counts.
        "PidsLimit": has("pids/cgroup.procs", "pids"),
        "OomKillDisable": !v2 && memory,
        "KernelMemoryTCP": false,
    })
}

impl Engine {
    /// `GET /version`.
    ///
    /// # Errors
    /// `Unavailable` when containerd does not answer.
    pub async fn version_json(&self) -> Result<Value, ApiError> {
        let ctd = self.backend.version().await?;
        let kernel = kernel_version();
        let config = self.config();
        Ok(json!({
            "Platform": {"Name": "refeng"},
            "Components": [
                {
                    "Name": "Engine",
                    "Version": VERSION,
                    "Details": {
                        "ApiVersion": API_VERSION,
                        "MinAPIVersion": MIN_API_VERSION,
                        "Arch": go_arch(),
                        "Os": "linux",
                        "KernelVersion": kernel,
                        "Experimental": config.experimental.to_string(),
                        "GitCommit": "",
                        "BuildTime": "",
                    }
                },
                {
                    "Name": "containerd",
                    "Version": ctd.version,
                    "Details": {"GitCommit": ctd.revision}
                }
            ],
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel,
            "Experimental": config.experimental,
            "BuildTime": "",
        }))
    }

    /// `GET /info`.
    ///
    /// # Errors
    /// `Unavailable` when containerd does not answer.
    pub async fn info_json(&self) -> Result<Value, ApiError> {
        let ctd = self.backend.version().await?;
        let images = self.backend.image_count().await?;
        let (os, os_version) = os_release();
        let config = self.config();
        let ncpu = std::thread::available_parallelism().map_or(1, usize::from);
        let mut insecure: Vec<String> = vec!["127.0.0.0/8".into()];
        let mut index = serde_json::Map::new();
        index.insert(
            "docker.io".into(),
            json!({"Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true}),
        );
        for r in &config.insecure_registries {
            if r.contains('/') {
                insecure.push(r.clone());
            } else {
                index.insert(
                    r.clone(),
                    json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
                );
            }
        }
        let labels = &config.labels;
        let env = |k: &str| {
            std::env::var(k)
                .or_else(|_| std::env::var(k.to_lowercase()))
                .unwrap_or_default()
        };
        let mut info = json!({
            "ID": self.id,
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": images,
            "Driver": "overlayfs",
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "Plugins": {
                "Volume": [],
                "Network": [],
                "Authorization": null,
                "Log": ["json-file", "none"],
            },
            "IPv4Forwarding": read_trimmed("/proc/sys/net/ipv4/ip_forward") == "1",
            "Debug": matches!(config.log_level.as_str(), "debug" | "trace"),
            "NFd": open_fds(),
            "NGoroutines": threads(),
            "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            "LoggingDriver": config.log_driver.name(),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "NEventsListener": self.events.listeners(),
        });
        let host = json!({
            "KernelVersion": kernel_version(),
            "OperatingSystem": os,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": insecure,
                "IndexConfigs": index,
                "Mirrors": [],
            },
        });
        let engine = json!({
            "NCPU": ncpu,
            "MemTotal": mem_total(),
            "GenericResources": null,
            "DockerRootDir": config.data_root,
            "HttpProxy": env("HTTP_PROXY"),
            "HttpsProxy": env("HTTPS_PROXY"),
            "NoProxy": env("NO_PROXY"),
            "Name": hostname(),
            "Labels": labels,
            "ExperimentalBuild": config.experimental,
            "ServerVersion": VERSION,
            "Runtimes": {},
            "DefaultRuntime": "",
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": false,
                "Error": "",
                "RemoteManagers": null,
            },
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ctd.revision},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "SecurityOptions": security_options(&config),
            "Warnings": [],
        });
        for part in [host, engine, cgroup_features()] {
            if let (Value::Object(m), Value::Object(p)) = (&mut info, part) {
                m.extend(p);
            }
        }
        Ok(info)
    }
}
