//! The OCI runtime spec refengd generates for a container, as dockerd 20.10 generates it
//! (`daemon/oci_linux.go` and `oci/defaults.go`): docker's default capabilities, masked and
//! read-only paths, the standard mounts, namespaces by network mode, the device cgroup rules,
//! and each supported HostConfig field mapped where dockerd maps it. Pure: every input comes
//! in [`SpecInput`]; the result is checked by parsing it as an `oci_spec` `Spec`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::error::ApiError;
use super::body::HostConfig;
use super::etc::ExecUser;
use super::seccomp::{self, Profile, Target};

/// Docker's default capability set (`oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths dockerd masks in an unprivileged container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths dockerd makes read-only in an unprivileged container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// dockerd's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// Where the init binary is mounted in the container (dockerd's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// How the container's network namespace is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new, empty network namespace (`none`).
    None,
    /// The namespace file refengd makes and wires to bridge networks at start.
    Bridged {
        /// Its path (`<exec-root>/netns/<short id>`).
        netns: String,
    },
    /// The host's.
    Host,
    /// Another container's (`container:X`), by the path of its namespace once known.
    Container {
        /// The other container's id.
        id: String,
        /// `/proc/<pid>/ns/net` of its running task, at start.
        path: Option<String>,
    },
}

/// Everything the spec is made of.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container id.
    pub id: &'a str,
    /// The hostname.
    pub hostname: &'a str,
    /// Its domain name.
    pub domainname: &'a str,
    /// argv (entrypoint + cmd).
    pub args: Vec<String>,
    /// The merged environment (image's then the request's).
    pub env: &'a [String],
    /// The working directory ("" is `/`).
    pub cwd: &'a str,
    /// The resolved user.
    pub user: &'a ExecUser,
    /// A tty.
    pub tty: bool,
    /// HostConfig.
    pub host: &'a HostConfig,
    /// The network namespace.
    pub network: NetworkMode,
    /// The container's directory holding hosts, hostname and resolv.conf.
    pub files_dir: &'a std::path::Path,
    /// Its binds, volumes (sources known) and tmpfs mounts.
    pub mounts: &'a [super::mounts::MountPoint],
    /// The init binary on the host when `Init` is set.
    pub init_binary: Option<&'a std::path::Path>,
    /// The cgroup parent (`/refeng`).
    pub cgroup_parent: &'a str,
    /// Whether the host runs cgroup v2 only (the default cgroup namespace mode differs).
    pub cgroup_v2: bool,
    /// The capabilities the kernel knows, for `ALL` and `Privileged`.
    pub all_caps: &'a [String],
    /// The host's devices, for `Privileged`.
    pub host_devices: &'a [Value],
    /// The number of CPUs, to bound `NanoCpus`.
    pub ncpu: usize,
    /// The host architecture by Go's name (`amd64`), for the seccomp profile.
    pub go_arch: &'a str,
    /// The running kernel (major, minor), for the seccomp profile's `minKernel` conditions.
    pub kernel: Option<(u32, u32)>,
    /// The daemon's profile for a container that names none (daemon.json `seccomp-profile`).
    pub daemon_seccomp: &'a SeccompChoice,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// `chown` or `CAP_CHOWN` or `ALL` to dockerd's canonical `CAP_CHOWN` form.
fn canonical_cap(name: &str) -> String {
    let up = name.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set from the defaults, `CapAdd`, `CapDrop` and `Privileged`, by dockerd's
/// `caps.TweakCapabilities`.
///
/// # Errors
/// `BadRequest` naming an unknown capability.
pub fn capabilities(host: &HostConfig, all: &[String]) -> Result<Vec<String>, ApiError> {
    if host.privileged {
        return Ok(all.to_vec());
    }
    let adds: Vec<String> = host
        .cap_add
        .iter()
        .flatten()
        .map(|c| canonical_cap(c))
        .collect();
    let drops: Vec<String> = host
        .cap_drop
        .iter()
        .flatten()
        .map(|c| canonical_cap(c))
        .collect();
    for c in adds.iter().chain(&drops) {
        if c != "CAP_ALL" && c != "ALL" && !all.contains(c) {
            return Err(bad(format!("unknown capability: {c:?}")));
        }
    }
    let is_all = |c: &String| c == "ALL" || c == "CAP_ALL";
    let mut caps: Vec<String> = if adds.iter().any(is_all) {
        all.to_vec()
    } else if drops.iter().any(is_all) {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if !drops.iter().any(is_all) {
        caps.retain(|c| !drops.contains(c));
    }
    for a in adds.iter().filter(|c| !is_all(c)) {
        if !caps.contains(a) && (!drops.contains(a) || drops.iter().any(is_all)) {
            caps.push(a.clone());
        }
    }
    Ok(caps)
}

/// Whether a sysctl is namespaced and so may be set per container (dockerd's
/// `opts.ValidateSysctl`); `net.*` only with a network namespace of the container's own.
fn sysctl_allowed(key: &str, own_netns: bool) -> bool {
    const EXACT: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    EXACT.contains(&key) || key.starts_with("fs.mqueue.") || (own_netns && key.starts_with("net."))
}

/// The rlimit type of a ulimit name (`nofile` -> `RLIMIT_NOFILE`).
fn rlimit_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "as" => "RLIMIT_AS",
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        _ => return None,
    })
}

/// What `SecurityOpt` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOpts {
    /// `no-new-privileges[:true]`.
    pub no_new_privileges: bool,
    /// Which seccomp profile.
    pub seccomp: SeccompChoice,
}

/// The seccomp profile a container asks for with `SecurityOpt` (the last `seccomp=` wins, as
/// in dockerd).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SeccompChoice {
    /// None named: the daemon's default (Docker's built-in profile unless daemon.json
    /// `seccomp-profile` names another).
    #[default]
    Builtin,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=<profile JSON>` (the CLI sends the file's content).
    Custom(Profile),
}

/// Parses `SecurityOpt`.
///
/// # Errors
/// `BadRequest` naming an option refengd does not implement (apparmor, label, systempaths) or
/// a profile that does not convert.
pub fn security_opts(opts: &[String]) -> Result<SecurityOpts, ApiError> {
    let mut out = SecurityOpts::default();
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            ("seccomp", Some("unconfined")) => out.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(profile)) => {
                out.seccomp =
                    SeccompChoice::Custom(seccomp::parse(profile).map_err(|e| bad(e.to_string()))?);
            }
            _ => {
                return Err(bad(format!(
                    "SecurityOpt {o:?} is not supported by refengd (only seccomp=<profile>, \
                     seccomp=unconfined and no-new-privileges)"
                )))
            }
        }
    }
    Ok(out)
}

/// The device cgroup rules of an unprivileged container (dockerd 20.10's).
fn default_device_rules() -> Vec<Value> {
    let allow = |major: i64, minor: i64| json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"});
    vec![
        json!({"allow": false, "access": "rwm"}),
        allow(1, 5),
        allow(1, 3),
        allow(1, 9),
        allow(1, 8),
        allow(5, 0),
        allow(5, 1),
        json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
    ]
}

/// The resources section (memory, cpu, pids, devices) from HostConfig, with dockerd's checks.
/// `linux.resources` for `h`, checked as dockerd checks the limits at create and update.
///
/// # Errors
/// `BadRequest` with dockerd's message for a limit out of range or a conflict.
pub fn resources(h: &HostConfig, ncpu: usize, privileged: bool) -> Result<Value, ApiError> {
    let mut memory = json!({"disableOOMKiller": h.oom_kill_disable});
    if h.memory != 0 && h.memory < 6 * 1024 * 1024 {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    if h.memory > 0 {
        memory["limit"] = json!(h.memory);
        // dockerd: no swap limit given means swap equal to the memory limit (limit * 2 in all).
        let swap = if h.memory_swap == 0 {
            h.memory * 2
        } else {
            h.memory_swap
        };
        if h.memory_swap > 0 && h.memory_swap < h.memory {
            return Err(bad(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        memory["swap"] = json!(swap);
    } else if h.memory_swap > 0 {
        return Err(bad(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    match h.memory_swappiness {
        None | Some(-1) => {}
        Some(s @ 0..=100) => memory["swappiness"] = json!(s),
        Some(s) => {
            return Err(bad(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )))
        }
    }
    let mut cpu = json!({"shares": h.cpu_shares});
    if h.cpu_shares < 0 {
        return Err(bad("CpuShares must not be negative"));
    }
    if h.nano_cpus != 0 {
        if h.cpu_period != 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if h.cpu_quota != 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let max = i64::try_from(ncpu).unwrap_or(1) * 1_000_000_000;
        if h.nano_cpus < 0 || h.nano_cpus > max {
            return Err(bad(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
        cpu["period"] = json!(100_000);
        cpu["quota"] = json!(h.nano_cpus * 100_000 / 1_000_000_000);
    }
    if h.cpu_period != 0 {
        if !(1000..=1_000_000).contains(&h.cpu_period) {
            return Err(bad(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ));
        }
        cpu["period"] = json!(h.cpu_period);
    }
    if h.cpu_quota != 0 {
        if h.cpu_quota > 0 && h.cpu_quota < 1000 {
            return Err(bad("CPU cfs quota can not be less than 1ms (i.e. 1000)"));
        }
        cpu["quota"] = json!(h.cpu_quota);
    }
    if !h.cpuset_cpus.is_empty() {
        let valid = h.cpuset_cpus.split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().and_then(|x| x.parse::<usize>().ok());
            let b = it.next().map(|x| x.parse::<usize>().ok());
            match (a, b) {
                (Some(a), None) => a < ncpu,
                (Some(a), Some(Some(b))) => a <= b && b < ncpu,
                _ => false,
            }
        });
        if !valid {
            return Err(bad(format!(
                "Requested CPUs are not available - requested {}, available: 0-{}",
                h.cpuset_cpus,
                ncpu.saturating_sub(1)
            )));
        }
        cpu["cpus"] = json!(h.cpuset_cpus);
    }
    let mut r = json!({
        "devices": if privileged {
            vec![json!({"allow": true, "access": "rwm"})]
        } else {
            default_device_rules()
        },
        "memory": memory,
        "cpu": cpu,
    });
    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        r["pids"] = json!({"limit": p});
    }
    Ok(r)
}

/// The spec, as JSON in runtime-spec's field names.
///
/// # Errors
/// `BadRequest` for a HostConfig value dockerd refuses too (limits out of range, unknown
/// capabilities, sysctls that are not namespaced).
pub fn generate(i: &SpecInput<'_>) -> Result<Value, ApiError> {
    let h = i.host;
    let caps = capabilities(h, i.all_caps)?;
    let sec = security_opts(h.security_opt.as_deref().unwrap_or(&[]))?;
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={}", i.hostname),
    ];
    if i.tty {
        env.push("TERM=xterm".into());
    }
    for e in i.env {
        let key = e.split('=').next().unwrap_or("");
        match env
            .iter_mut()
            .find(|x| x.split('=').next().unwrap_or("") == key)
        {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    let mut args = i.args.clone();
    if i.init_binary.is_some() {
        let mut a = vec![INIT_PATH.to_string(), "--".to_string()];
        a.append(&mut args);
        args = a;
    }
    let mut rlimits = Vec::new();
    for u in h.ulimits.iter().flatten() {
        let Some(t) = rlimit_type(&u.name) else {
            return Err(bad(format!("invalid ulimit type: {}", u.name)));
        };
        if u.soft > u.hard {
            return Err(bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        rlimits.push(json!({"type": t, "hard": u.hard, "soft": u.soft}));
    }
    let mut process = json!({
        "user": {"uid": i.user.uid, "gid": i.user.gid, "additionalGids": i.user.additional_gids},
        "args": args,
        "env": env,
        "cwd": if i.cwd.is_empty() { "/" } else { i.cwd },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "oomScoreAdj": 0,
    });
    if i.tty {
        process["terminal"] = json!(true);
        if let Some([height, width]) = h
            .console_size
            .as_deref()
            .and_then(|c| c.get(..2))
            .map(|c| [c[0], c[1]])
        {
            if height > 0 && width > 0 {
                process["consoleSize"] = json!({"height": height, "width": width});
            }
        }
    }
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    if sec.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    let shm = if h.shm_size < 0 {
        return Err(bad("SHM size can not be less than 0"));
    } else if h.shm_size == 0 {
        DEFAULT_SHM_SIZE
    } else {
        h.shm_size
    };
    let sys_opts = if h.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let cgroup_opts = if h.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["ro", "nosuid", "noexec", "nodev"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_opts}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    let mut binds: Vec<Value> = i
        .mounts
        .iter()
        .map(super::mounts::MountPoint::oci)
        .collect();
    // dockerd sorts the user's mounts so that a parent is mounted before what is below it.
    binds.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| d.trim_end_matches('/').matches('/').count())
    });
    let overridden = |dst: &str| binds.iter().any(|m| m["destination"] == dst);
    mounts.extend(binds.iter().cloned());
    for f in ["resolv.conf", "hostname", "hosts"] {
        let dst = format!("/etc/{f}");
        if overridden(&dst) {
            continue;
        }
        mounts.push(json!({
            "destination": dst,
            "type": "bind",
            "source": i.files_dir.join(f).to_string_lossy(),
            "options": ["rbind", "rprivate"],
        }));
    }
    if let Some(init) = i.init_binary {
        mounts.push(json!({
            "destination": INIT_PATH,
            "type": "bind",
            "source": init.to_string_lossy(),
            "options": ["bind", "ro"],
        }));
    }
    let mut namespaces = vec![json!({"type": "mount"})];
    let own_netns = match &i.network {
        NetworkMode::None => {
            namespaces.push(json!({"type": "network"}));
            true
        }
        NetworkMode::Bridged { netns } => {
            namespaces.push(json!({"type": "network", "path": netns}));
            true
        }
        NetworkMode::Host => false,
        NetworkMode::Container { path, .. } => {
            if let Some(p) = path {
                namespaces.push(json!({"type": "network", "path": p}));
            }
            false
        }
    };
    if i.network != NetworkMode::Host {
        namespaces.push(json!({"type": "uts"}));
    }
    namespaces.push(json!({"type": "pid"}));
    match h.ipc_mode.as_str() {
        "" | "private" | "shareable" => namespaces.push(json!({"type": "ipc"})),
        other => {
            return Err(bad(format!(
            "HostConfig.IpcMode {other:?} is not supported by refengd (only private and shareable)"
        )))
        }
    }
    let cgroupns_private = match h.cgroupns_mode.as_str() {
        "" => i.cgroup_v2,
        "private" => true,
        "host" => false,
        other => return Err(bad(format!("invalid cgroup namespace mode: {other:?}"))),
    };
    if cgroupns_private {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut sysctl: BTreeMap<String, String> = BTreeMap::new();
    if own_netns {
        sysctl.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        sysctl.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    }
    for (k, v) in h.sysctls.iter().flatten() {
        if !sysctl_allowed(k, own_netns) {
            return Err(bad(if k.starts_with("net.") {
                format!("sysctl {k:?} is not allowed in the host network namespace")
            } else {
                format!("sysctl {k:?} is not allowed")
            }));
        }
        sysctl.insert(k.clone(), v.clone());
    }
    let mut linux = json!({
        "sysctl": sysctl,
        "resources": resources(h, i.ncpu, h.privileged)?,
        "cgroupsPath": format!("{}/{}", i.cgroup_parent.trim_end_matches('/'), i.id),
        "namespaces": namespaces,
    });
    if h.privileged {
        linux["devices"] = json!(i.host_devices);
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    // dockerd's `WithSeccomp`: nothing for a privileged container or `seccomp=unconfined`;
    // otherwise the named or the default profile, fitted to this container's capabilities.
    if !h.privileged {
        let target = Target {
            caps: &caps,
            go_arch: i.go_arch,
            kernel: i.kernel,
        };
        let choice = match &sec.seccomp {
            SeccompChoice::Builtin => i.daemon_seccomp,
            named => named,
        };
        match choice {
            SeccompChoice::Unconfined => {}
            SeccompChoice::Builtin => {
                linux["seccomp"] = seccomp::render(&seccomp::builtin(), &target);
            }
            SeccompChoice::Custom(p) => linux["seccomp"] = seccomp::render(p, &target),
        }
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs"},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if h.readonly_rootfs {
        spec["root"]["readonly"] = json!(true);
    }
    if !i.domainname.is_empty() {
        spec["domainname"] = json!(i.domainname);
    }
    if let Some(a) = h.annotations.as_ref().filter(|a| !a.is_empty()) {
        spec["annotations"] = json!(a);
    }
    // The runtime-spec types are the check that what was generated is a spec.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| ApiError::internal("the generated OCI spec does not parse", e))?;
    Ok(spec)
}

/// Points the spec's network namespace at `path` (`container:X` at start); returns whether
/// the spec changed.
pub fn set_netns(spec: &mut Value, path: &str) -> bool {
    let Some(ns) = spec["linux"]["namespaces"].as_array_mut() else {
        return false;
    };
    let want = json!({"type": "network", "path": path});
    if let Some(n) = ns.iter_mut().find(|n| n["type"] == "network") {
        if *n == want {
            return false;
        }
        *n = want;
    } else {
        ns.insert(1, want);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        caps::all().iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn capabilities_follow_tweak_capabilities() {
        let mut h = HostConfig::default();
        assert_eq!(capabilities(&h, &all()).unwrap(), DEFAULT_CAPS);
        h.cap_add = Some(vec!["sys_admin".into()]);
        h.cap_drop = Some(vec!["CAP_NET_RAW".into(), "chown".into()]);
        let c = capabilities(&h, &all()).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".into()));
        assert!(!c.contains(&"CAP_NET_RAW".into()) && !c.contains(&"CAP_CHOWN".into()));
        h.cap_add = Some(vec!["kill".into()]);
        h.cap_drop = Some(vec!["ALL".into()]);
        assert_eq!(capabilities(&h, &all()).unwrap(), vec!["CAP_KILL"]);
        h.cap_add = Some(vec!["NOPE".into()]);
        assert_eq!(
            capabilities(&h, &all()).unwrap_err().to_string(),
            "unknown capability: \"CAP_NOPE\""
        );
    }

    #[test]
    fn security_opts_are_parsed_or_refused_by_name() {
        let s = security_opts(&["no-new-privileges".into(), "seccomp=unconfined".into()]).unwrap();
        assert!(s.no_new_privileges && s.seccomp == SeccompChoice::Unconfined);
        let e = security_opts(&["apparmor=x".into()]).unwrap_err();
        assert!(e.to_string().contains("apparmor=x"), "{e}");
        let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                        {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_PTRACE"]}}]}"#;
        let s = security_opts(&[format!("seccomp={profile}")]).unwrap();
        let SeccompChoice::Custom(p) = s.seccomp else {
            panic!("a custom profile: {:?}", s.seccomp)
        };
        let defaults: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        let target = Target {
            caps: &defaults,
            go_arch: "amd64",
            kernel: Some((6, 1)),
        };
        let r = seccomp::render(&p, &target);
        assert_eq!(r["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            r["syscalls"],
            json!([{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}])
        );
        assert_eq!(
            r["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
    }

    #[test]
    fn resources_map_as_dockerd_maps_them() {
        let h = HostConfig {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            cpu_shares: 512,
            pids_limit: Some(100),
            cpuset_cpus: "0".into(),
            ..HostConfig::default()
        };
        let r = resources(&h, 2, false).unwrap();
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 128 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["cpu"]["cpus"], "0");
        assert_eq!(r["pids"]["limit"], 100);
        let small = HostConfig {
            memory: 1 << 20,
            ..HostConfig::default()
        };
        assert_eq!(
            resources(&small, 2, false).unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        let both = HostConfig {
            nano_cpus: 1,
            cpu_quota: 5000,
            ..HostConfig::default()
        };
        assert!(resources(&both, 2, false).is_err());
        let many = HostConfig {
            nano_cpus: 3_000_000_000,
            ..HostConfig::default()
        };
        assert!(resources(&many, 2, false)
            .unwrap_err()
            .to_string()
            .starts_with("Range of CPUs"));
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        assert!(sysctl_allowed("kernel.shmmax", false));
        assert!(sysctl_allowed("net.ipv4.ip_forward", true));
        assert!(!sysctl_allowed("net.ipv4.ip_forward", false));
        assert!(!sysctl_allowed("vm.swappiness", true));
    }
}
