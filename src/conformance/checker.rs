//! The in-container checker: run as the container's program, it reads the bundle's config (bind-
//! mounted at [`CONFIG_PATH`]) and reports, as one JSON document on stdout, whether the process's
//! view of the world matches it (runtime-spec: config.md and config-linux.md).
//!
//! Everything is read through the kernel's own reports (`/proc/self/status`, `/proc/self/limits`,
//! `/proc/self/mountinfo`, `/proc/sys`, `stat`), never through the runtime, and nothing here
//! needs `unsafe`. The host-side facts the checker cannot see from inside (the runtime's own
//! namespace inodes) arrive as annotations the oracle writes into the config.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sys::kernel_files::mountinfo::{self, MountInfo};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;

/// Where the oracle bind-mounts the bundle's `config.json` inside the container.
pub const CONFIG_PATH: &str = "/conformance/config.json";
/// Annotation: comma-separated check groups to run (all when absent).
pub const CHECKS_ANNOTATION: &str = "org.refeng.conformance.checks";
/// Annotation prefix: `<prefix><ns type>` holds the runtime's own namespace inode of that type.
pub const HOST_NS_ANNOTATION: &str = "org.refeng.conformance.host-ns.";
/// Annotation prefix: `<prefix><ns type>` holds the inode of the namespace at the config's path.
pub const PATH_NS_ANNOTATION: &str = "org.refeng.conformance.path-ns.";
/// Annotation: the errno the oracle's seccomp agent answers every notification with.
pub const NOTIFY_ERRNO_ANNOTATION: &str = "org.refeng.conformance.seccomp-notify-errno";

/// Every check group, in report order.
pub const GROUPS: &[&str] = &[
    "args",
    "env",
    "cwd",
    "user",
    "umask",
    "capabilities",
    "rlimits",
    "no_new_privileges",
    "oom_score_adj",
    "hostname",
    "namespaces",
    "id_mappings",
    "root",
    "mounts",
    "cgroup_mount",
    "propagation",
    "masked_paths",
    "readonly_paths",
    "devices",
    "default_devices",
    "sysctl",
    "cgroups_path",
    "seccomp",
    "fds",
    "personality",
    "terminal",
    "scheduler",
    "time_offsets",
];

/// The result of one check: which group, whether it held, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The check group (one of [`GROUPS`]).
    pub group: String,
    /// Whether the container's view matched the config.
    pub ok: bool,
    /// What was expected and what was found.
    pub detail: String,
}

/// The checker's whole report, printed as one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Every check that ran.
    pub checks: Vec<Check>,
}

impl CheckReport {
    fn push(&mut self, group: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            group: group.to_owned(),
            ok,
            detail: detail.into(),
        });
    }

    /// The checks that failed.
    #[must_use]
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|check| !check.ok).collect()
    }
}

/// Runs the checker against the config at `config_path` and returns its report.
///
/// # Errors
///
/// Never for a mismatch (that is a failed [`Check`]); only when the config itself cannot be read
/// or parsed, as the message.
pub fn check(config_path: &Path) -> Result<CheckReport, String> {
    let text = fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", config_path.display()))?;
    let wanted: BTreeSet<String> = config["annotations"][CHECKS_ANNOTATION]
        .as_str()
        .map_or_else(
            || GROUPS.iter().map(|group| (*group).to_owned()).collect(),
            |list| list.split(',').map(str::to_owned).collect(),
        );
    let status = ProcStatus::read();
    let mountinfo = Mountinfo::read();
    let mut report = CheckReport::default();
    for group in GROUPS {
        if !wanted.contains(*group) {
            continue;
        }
        let r = &mut report;
        match *group {
            "args" => check_args(&config, r),
            "env" => check_env(&config, r),
            "cwd" => check_cwd(&config, r),
            "user" => check_user(&config, &status, r),
            "umask" => check_umask(&config, &status, r),
            "capabilities" => check_capabilities(&config, &status, r),
            "rlimits" => check_rlimits(&config, r),
            "no_new_privileges" => check_no_new_privileges(&config, &status, r),
            "oom_score_adj" => check_oom_score_adj(&config, r),
            "hostname" => check_hostname(&config, r),
            "namespaces" => check_namespaces(&config, r),
            "id_mappings" => check_id_mappings(&config, r),
            "root" => check_root(&config, &mountinfo, r),
            "mounts" => check_mounts(&config, &mountinfo, r),
            "cgroup_mount" => check_cgroup_mount(&config, &mountinfo, r),
            "propagation" => check_propagation(&config, &mountinfo, r),
            "masked_paths" => check_masked_paths(&config, r),
            "readonly_paths" => check_readonly_paths(&config, &mountinfo, r),
            "devices" => check_devices(&config, r),
            "default_devices" => check_default_devices(&config, r),
            "sysctl" => check_sysctl(&config, r),
            "cgroups_path" => check_cgroups_path(&config, r),
            "seccomp" => check_seccomp(&config, &status, r),
            "fds" => check_fds(&config, r),
            "terminal" => check_terminal(&config, r),
            "scheduler" => check_scheduler(&config, r),
            "time_offsets" => check_time_offsets(&config, r),
            "personality" => check_personality(&config, r),
            other => r.push(other, false, "unknown check group"),
        }
    }
    Ok(report)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn check_args(config: &Value, r: &mut CheckReport) {
    let want = strings(&config["process"]["args"]);
    let got: Vec<String> = fs::read("/proc/self/cmdline")
        .map(|bytes| {
            bytes
                .split(|byte| *byte == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default();
    // argv[0] is what the runtime passed; the program path may be resolved through PATH.
    let ok = want.len() == got.len() && want.iter().skip(1).eq(got.iter().skip(1));
    r.push("args", ok, format!("config {want:?}, process {got:?}"));
}

fn check_env(config: &Value, r: &mut CheckReport) {
    let got: BTreeMap<String, String> = std::env::vars().collect();
    for entry in strings(&config["process"]["env"]) {
        let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        let seen = got.get(key);
        r.push(
            "env",
            seen.map(String::as_str) == Some(value),
            format!("{key}: config {value:?}, process {seen:?}"),
        );
    }
}

fn check_cwd(config: &Value, r: &mut CheckReport) {
    let want = config["process"]["cwd"].as_str().unwrap_or("/");
    let got = std::env::current_dir().map(|path| path.display().to_string());
    r.push(
        "cwd",
        got.as_deref().ok() == Some(want),
        format!("config {want:?}, process {got:?}"),
    );
}

/// The fields of `/proc/self/status` the checks need.
#[derive(Debug, Default)]
struct ProcStatus {
    fields: BTreeMap<String, String>,
}

impl ProcStatus {
    fn read() -> Self {
        let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let fields = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
            .collect();
        Self { fields }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn words(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|value| value.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn mask(&self, key: &str) -> Option<u64> {
        self.get(key)
            .and_then(|value| u64::from_str_radix(value, 16).ok())
    }
}

fn check_user(config: &Value, status: &ProcStatus, r: &mut CheckReport) {
    let user = &config["process"]["user"];
    let uid = user["uid"].as_u64().unwrap_or(0).to_string();
    let gid = user["gid"].as_u64().unwrap_or(0).to_string();
    let uids = status.words("Uid");
    let gids = status.words("Gid");
    r.push(
        "user",
        !uids.is_empty() && uids.iter().all(|seen| *seen == uid),
        format!("uid: config {uid}, process real/effective/saved/fs {uids:?}"),
    );
    r.push(
        "user",
        !gids.is_empty() && gids.iter().all(|seen| *seen == gid),
        format!("gid: config {gid}, process real/effective/saved/fs {gids:?}"),
    );
    let want: BTreeSet<String> = user["additionalGids"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_u64)
                .map(|g| g.to_string())
                .collect()
        })
        .unwrap_or_default();
    let listed = status.words("Groups");
    let got: BTreeSet<String> = listed.iter().cloned().collect();
    // runtime-spec: additionalGids are the supplementary groups; the primary gid may appear too.
    let extra: BTreeSet<&String> = got.iter().filter(|g| **g != gid).collect();
    let want_ref: BTreeSet<&String> = want.iter().filter(|g| **g != gid).collect();
    r.push(
        "user",
        extra == want_ref,
        format!("additionalGids: config {want:?}, process groups {got:?}"),
    );
    // A group is a membership: the kernel lists what setgroups(2) was given, so a gid the
    // config repeats must still be given (and listed) once.
    r.push(
        "user",
        listed.len() == got.len(),
        format!("each supplementary group once: process groups {listed:?}"),
    );
}

fn check_umask(config: &Value, status: &ProcStatus, r: &mut CheckReport) {
    let Some(want) = config["process"]["user"]["umask"].as_u64() else {
        return;
    };
    let got = status
        .get("Umask")
        .and_then(|value| u64::from_str_radix(value, 8).ok());
    r.push(
        "umask",
        got == Some(want),
        format!(
            "config {want:o}, process {got:?} (octal {:o})",
            got.unwrap_or(0)
        ),
    );
}

/// Linux capability numbers (linux/capability.h), by runtime-spec name.
const CAPABILITIES: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

fn cap_mask(value: &Value) -> u64 {
    strings(value)
        .iter()
        .filter_map(|name| CAPABILITIES.iter().find(|(known, _)| known == name))
        .fold(0, |mask, (_, bit)| mask | (1 << bit))
}

fn cap_names(mask: u64) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .filter(|(_, bit)| mask & (1 << bit) != 0)
        .map(|(name, _)| *name)
        .collect()
}

/// The sets the kernel leaves after `execve` of a file without capabilities, given the sets the
/// runtime set up (capabilities(7), "Transformation of capabilities during execve()"): root gets
/// `inheritable | bounding` as permitted and effective; anyone else keeps only the ambient set.
fn check_capabilities(config: &Value, status: &ProcStatus, r: &mut CheckReport) {
    let caps = &config["process"]["capabilities"];
    if caps.is_null() {
        return;
    }
    let bounding = cap_mask(&caps["bounding"]);
    let inheritable = cap_mask(&caps["inheritable"]);
    let permitted = cap_mask(&caps["permitted"]);
    let ambient = cap_mask(&caps["ambient"]) & permitted & inheritable;
    let root = config["process"]["user"]["uid"].as_u64().unwrap_or(0) == 0;
    let (want_permitted, want_effective, want_ambient) = if root {
        (bounding | inheritable, bounding | inheritable, None)
    } else {
        (ambient, ambient, Some(ambient))
    };
    let mut compare = |set: &str, want: Option<u64>| {
        let Some(want) = want else { return };
        let got = status.mask(set);
        r.push(
            "capabilities",
            got == Some(want),
            format!(
                "{set}: want {:?}, process {:?}",
                cap_names(want),
                got.map(cap_names)
            ),
        );
    };
    compare("CapBnd", Some(bounding));
    compare("CapInh", Some(inheritable));
    compare("CapPrm", Some(want_permitted));
    compare("CapEff", Some(want_effective));
    compare("CapAmb", want_ambient);
}

/// `/proc/self/limits` row labels, by runtime-spec rlimit type.
const RLIMITS: &[(&str, &str)] = &[
    ("RLIMIT_CPU", "Max cpu time"),
    ("RLIMIT_FSIZE", "Max file size"),
    ("RLIMIT_DATA", "Max data size"),
    ("RLIMIT_STACK", "Max stack size"),
    ("RLIMIT_CORE", "Max core file size"),
    ("RLIMIT_RSS", "Max resident set"),
    ("RLIMIT_NPROC", "Max processes"),
    ("RLIMIT_NOFILE", "Max open files"),
    ("RLIMIT_MEMLOCK", "Max locked memory"),
    ("RLIMIT_AS", "Max address space"),
    ("RLIMIT_LOCKS", "Max file locks"),
    ("RLIMIT_SIGPENDING", "Max pending signals"),
    ("RLIMIT_MSGQUEUE", "Max msgqueue size"),
    ("RLIMIT_NICE", "Max nice priority"),
    ("RLIMIT_RTPRIO", "Max realtime priority"),
    ("RLIMIT_RTTIME", "Max realtime timeout"),
];

fn parse_limit(word: &str) -> Option<u64> {
    if word == "unlimited" {
        Some(u64::MAX)
    } else {
        word.parse().ok()
    }
}

fn check_rlimits(config: &Value, r: &mut CheckReport) {
    let text = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let rows: BTreeMap<String, (Option<u64>, Option<u64>)> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let label = line.get(..26)?.trim().to_owned();
            let mut words = line.get(26..)?.split_whitespace();
            let soft = words.next().and_then(parse_limit);
            let hard = words.next().and_then(parse_limit);
            Some((label, (soft, hard)))
        })
        .collect();
    for limit in config["process"]["rlimits"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kind = limit["type"].as_str().unwrap_or("");
        let want = (limit["soft"].as_u64(), limit["hard"].as_u64());
        let got = RLIMITS
            .iter()
            .find(|(name, _)| *name == kind)
            .and_then(|(_, label)| rows.get(*label));
        r.push(
            "rlimits",
            got == Some(&want),
            format!("{kind}: config soft/hard {want:?}, process {got:?}"),
        );
    }
}

fn check_no_new_privileges(config: &Value, status: &ProcStatus, r: &mut CheckReport) {
    let want = if config["process"]["noNewPrivileges"].as_bool() == Some(true) {
        "1"
    } else {
        "0"
    };
    let got = status.get("NoNewPrivs");
    r.push(
        "no_new_privileges",
        got == Some(want),
        format!("config {want}, process NoNewPrivs {got:?}"),
    );
}

fn check_oom_score_adj(config: &Value, r: &mut CheckReport) {
    let Some(want) = config["process"]["oomScoreAdj"].as_i64() else {
        return;
    };
    let got = fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok());
    r.push(
        "oom_score_adj",
        got == Some(want),
        format!("config {want}, process {got:?}"),
    );
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim_end_matches('\n').to_owned())
}

fn check_hostname(config: &Value, r: &mut CheckReport) {
    for (field, file) in [
        ("hostname", "/proc/sys/kernel/hostname"),
        ("domainname", "/proc/sys/kernel/domainname"),
    ] {
        if let Some(want) = config[field].as_str() {
            let got = read_trimmed(file);
            r.push(
                "hostname",
                got.as_deref() == Some(want),
                format!("{field}: config {want:?}, container {got:?}"),
            );
        }
    }
}

/// runtime-spec namespace type → `/proc/self/ns` entry.
pub const NAMESPACES: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
];

fn check_namespaces(config: &Value, r: &mut CheckReport) {
    let listed: BTreeMap<String, Option<String>> = config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ns| {
            let kind = ns["type"].as_str()?.to_owned();
            Some((kind, ns["path"].as_str().map(str::to_owned)))
        })
        .collect();
    let annotations = &config["annotations"];
    for (kind, entry) in NAMESPACES {
        // pid_for_children is what a new pid namespace is seen through from pid 1's parent side;
        // for the process itself `pid` is right.
        let got = fs::metadata(format!("/proc/self/ns/{entry}")).map(|m| m.ino());
        let Ok(got) = got else {
            continue; // the kernel lacks this namespace type
        };
        let host = annotations[format!("{HOST_NS_ANNOTATION}{kind}")]
            .as_str()
            .and_then(|text| text.parse::<u64>().ok());
        match listed.get(*kind) {
            None => r.push(
                "namespaces",
                host == Some(got),
                format!("{kind}: not in config, must be the runtime's ({host:?}); container {got}"),
            ),
            Some(None) => r.push(
                "namespaces",
                host.is_some_and(|host| host != got),
                format!("{kind}: new in config, must differ from the runtime's ({host:?}); container {got}"),
            ),
            Some(Some(path)) => {
                let want = annotations[format!("{PATH_NS_ANNOTATION}{kind}")]
                    .as_str()
                    .and_then(|text| text.parse::<u64>().ok());
                r.push(
                    "namespaces",
                    want == Some(got),
                    format!("{kind}: path {path} (inode {want:?}); container {got}"),
                );
            }
        }
    }
}

fn check_id_mappings(config: &Value, r: &mut CheckReport) {
    for (field, file) in [
        ("uidMappings", "/proc/self/uid_map"),
        ("gidMappings", "/proc/self/gid_map"),
    ] {
        let Some(mappings) = config["linux"][field].as_array() else {
            continue;
        };
        let want: BTreeSet<(u64, u64, u64)> = mappings
            .iter()
            .filter_map(|m| {
                Some((
                    m["containerID"].as_u64()?,
                    m["hostID"].as_u64()?,
                    m["size"].as_u64()?,
                ))
            })
            .collect();
        let got: BTreeSet<(u64, u64, u64)> = fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace().map(|w| w.parse::<u64>().ok());
                Some((words.next()??, words.next()??, words.next()??))
            })
            .collect();
        r.push(
            "id_mappings",
            want == got,
            format!("{field}: config {want:?}, {file} {got:?}"),
        );
    }
}

/// `/proc/self/mountinfo`, in mount order (empty when it cannot be read: every mount check then
/// fails with "no mount there").
#[derive(Debug, Default)]
struct Mountinfo {
    entries: Vec<MountInfo>,
}

impl Mountinfo {
    fn read() -> Self {
        Self {
            entries: mountinfo::read(None).unwrap_or_default(),
        }
    }

    /// The mount visible at exactly `path` (the last one stacked there).
    fn at(&self, path: &str) -> Option<&MountInfo> {
        mountinfo::at(&self.entries, Path::new(path))
    }

    /// The mount `path` lives on: the last mount whose mount point is `path` or a parent of it.
    fn covering(&self, path: &str) -> Option<&MountInfo> {
        mountinfo::covering(&self.entries, Path::new(path))
    }

    /// The mounts at `path` and below it.
    fn tree<'m>(&'m self, path: &'m str) -> impl Iterator<Item = &'m MountInfo> + 'm {
        self.entries
            .iter()
            .filter(move |e| e.mount_point.starts_with(path))
    }
}

fn clean_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn check_root(config: &Value, mountinfo: &Mountinfo, r: &mut CheckReport) {
    let readonly = config["root"]["readonly"].as_bool() == Some(true);
    let root = mountinfo.at("/");
    let flagged = root.is_some_and(|entry| entry.has_mount_option("ro"));
    r.push(
        "root",
        root.is_some() && flagged == readonly,
        format!(
            "root.readonly {readonly}; mount of / has options {:?}",
            root.map(|entry| &entry.mount_options)
        ),
    );
    if readonly {
        let probe = fs::write("/.refeng-conformance-probe", b"");
        r.push(
            "root",
            probe
                .as_ref()
                .err()
                .is_some_and(|e| e.raw_os_error() == Some(libc::EROFS)),
            format!("writing to / of a readonly root: {probe:?}"),
        );
    }
}

fn check_mounts(config: &Value, mountinfo: &Mountinfo, r: &mut CheckReport) {
    for mount in config["mounts"].as_array().into_iter().flatten() {
        let destination = clean_path(mount["destination"].as_str().unwrap_or(""));
        let options = strings(&mount["options"]);
        let kind = mount["type"].as_str().unwrap_or("");
        let bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let Some(entry) = mountinfo.at(&destination) else {
            r.push(
                "mounts",
                false,
                format!("{destination}: no mount there (config type {kind:?})"),
            );
            continue;
        };
        // On cgroup v1 runtimes mount a tmpfs at a `cgroup` destination and the hierarchies
        // below it, so only the other types must match as written.
        if !bind && kind != "cgroup" && !kind.is_empty() {
            r.push(
                "mounts",
                entry.fs_type == kind,
                format!(
                    "{destination}: type config {kind:?}, mounted {:?}",
                    entry.fs_type
                ),
            );
        }
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            // A `cgroup` mount's `ro` is judged by `check_cgroup_mount`, over the whole tree.
            if flag == "ro" && kind == "cgroup" {
                continue;
            }
            if options.iter().any(|o| o == flag) {
                r.push(
                    "mounts",
                    entry.has_mount_option(flag),
                    format!(
                        "{destination}: option {flag} in config, mount options {:?}",
                        entry.mount_options
                    ),
                );
            }
        }
        if options.iter().any(|o| o == "rw")
            || (bind && !options.iter().any(|o| o == "ro" || o == "rro"))
        {
            r.push(
                "mounts",
                entry.has_mount_option("rw"),
                format!(
                    "{destination}: rw in config, mount options {:?}",
                    entry.mount_options
                ),
            );
        }
        if kind != "cgroup" {
            if let Some(want) = access_time(&options, bind) {
                let got = if entry.has_mount_option("noatime") {
                    "noatime"
                } else if entry.has_mount_option("relatime") {
                    "relatime"
                } else {
                    "strictatime"
                };
                r.push(
                    "mounts",
                    got == want,
                    format!(
                        "{destination}: options {options:?} mean {want}, mount options {:?}",
                        entry.mount_options
                    ),
                );
            }
        }
        if options.iter().any(|o| o == "rro") {
            for sub in mountinfo.tree(&destination) {
                r.push(
                    "mounts",
                    sub.has_mount_option("ro"),
                    format!(
                        "{}: below {destination} (rro), options {:?}",
                        sub.mount_point.display(),
                        sub.mount_options
                    ),
                );
            }
        }
        for (option, want) in [
            ("private", "private"),
            ("rprivate", "private"),
            ("shared", "shared"),
            ("rshared", "shared"),
            ("slave", "master"),
            ("rslave", "master"),
        ] {
            if options.iter().any(|o| o == option) {
                r.push(
                    "mounts",
                    entry.propagation() == want,
                    format!(
                        "{destination}: option {option}, propagation fields {:?}",
                        entry.optional
                    ),
                );
            }
        }
    }
}

/// The access-time mode (`relatime`, `noatime` or `strictatime`, as mountinfo tells them apart)
/// a mount's options ask for, when they ask for one that can be judged from inside.
///
/// The fstab options are mount(2) flags (mount(8)): without MS_NOATIME or MS_STRICTATIME a new
/// mount gets relatime, the kernel's default since Linux 2.6.30, so `norelatime` alone still
/// means relatime. A bind mount starts from its source's mode, which the checker cannot see, so
/// only recursive options decide there. The recursive ones are mount_setattr(2) attributes
/// (config.md "Mounts"): `rrelatime`, `rnoatime` and `rstrictatime` set the mode, and
/// `rnorelatime` clears MOUNT_ATTR_RELATIME, whose value is 0: it changes nothing.
/// `ratime` and `rnostrictatime` clear only part of the access-time field, which the kernel
/// refuses, so no mode is judged for them.
fn access_time(options: &[String], bind: bool) -> Option<&'static str> {
    let (mut noatime, mut strict, mut asked) = (false, false, false);
    for option in options {
        match option.as_str() {
            "noatime" => noatime = true,
            "atime" => noatime = false,
            "strictatime" => strict = true,
            "nostrictatime" => strict = false,
            "relatime" | "norelatime" => {}
            _ => continue,
        }
        asked = true;
    }
    // MS_STRICTATIME wins over MS_NOATIME, and neither means relatime.
    let mut mode = match (bind, strict, noatime) {
        (true, _, _) => None,
        (false, true, _) => Some("strictatime"),
        (false, false, true) => Some("noatime"),
        (false, false, false) => Some("relatime"),
    };
    for option in options {
        match option.as_str() {
            "rrelatime" => mode = Some("relatime"),
            "rnoatime" => mode = Some("noatime"),
            "rstrictatime" => mode = Some("strictatime"),
            "rnorelatime" => {}
            "ratime" | "rnostrictatime" => return None,
            _ => continue,
        }
        asked = true;
    }
    mode.filter(|_| asked)
}

/// A `cgroup` mount with `ro`: on cgroup v1 runtimes build it from a tmpfs and one mount per
/// hierarchy; the whole tree must be read-only, or a process could write below it.
fn check_cgroup_mount(config: &Value, mountinfo: &Mountinfo, r: &mut CheckReport) {
    for mount in config["mounts"].as_array().into_iter().flatten() {
        if mount["type"].as_str() != Some("cgroup") {
            continue;
        }
        if !strings(&mount["options"]).iter().any(|o| o == "ro") {
            continue;
        }
        let destination = clean_path(mount["destination"].as_str().unwrap_or(""));
        let tree: Vec<&MountInfo> = mountinfo.tree(&destination).collect();
        if tree.is_empty() {
            r.push(
                "cgroup_mount",
                false,
                format!("{destination}: no mount there"),
            );
        }
        for entry in tree {
            r.push(
                "cgroup_mount",
                entry.has_mount_option("ro"),
                format!(
                    "{} ({}, below the ro cgroup mount {destination}): options {:?}",
                    entry.mount_point.display(),
                    entry.fs_type,
                    entry.mount_options
                ),
            );
        }
    }
}

/// The propagation (`shared`, `master`, `unbindable`, `private`) of the mount `path` lives on,
/// in the calling process's mount namespace.
#[must_use]
pub fn propagation_of_path(path: &str) -> Option<&'static str> {
    Mountinfo::read()
        .covering(&clean_path(path))
        .map(MountInfo::propagation)
}

fn check_propagation(config: &Value, mountinfo: &Mountinfo, r: &mut CheckReport) {
    let Some(want) = config["linux"]["rootfsPropagation"].as_str() else {
        return;
    };
    let Some(root) = mountinfo.at("/") else {
        r.push("propagation", false, "no mount at /");
        return;
    };
    let got = root.propagation();
    let ok = match want {
        "shared" | "rshared" => got == "shared",
        "slave" | "rslave" => got == "master",
        "private" | "rprivate" => got == "private",
        "unbindable" | "runbindable" => got == "unbindable",
        _ => false,
    };
    r.push(
        "propagation",
        ok,
        format!(
            "rootfsPropagation {want:?}; / has propagation fields {:?}",
            root.optional
        ),
    );
}

fn check_masked_paths(config: &Value, r: &mut CheckReport) {
    for path in strings(&config["linux"]["maskedPaths"]) {
        let (ok, detail) = match fs::metadata(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => (true, "absent".to_owned()),
            Err(e) => (true, format!("unreadable: {e}")),
            Ok(meta) if meta.is_dir() => match fs::read_dir(&path) {
                Ok(entries) => {
                    let count = entries.count();
                    (count == 0, format!("directory with {count} entries"))
                }
                Err(e) => (true, format!("directory unreadable: {e}")),
            },
            Ok(_) => match fs::read(&path) {
                Ok(bytes) => (
                    bytes.is_empty(),
                    format!("file reads {} bytes", bytes.len()),
                ),
                Err(e) => (true, format!("file unreadable: {e}")),
            },
        };
        r.push("masked_paths", ok, format!("{path}: {detail}"));
    }
}

fn check_readonly_paths(config: &Value, mountinfo: &Mountinfo, r: &mut CheckReport) {
    for path in strings(&config["linux"]["readonlyPaths"]) {
        if fs::symlink_metadata(&path).is_err() {
            r.push("readonly_paths", true, format!("{path}: absent"));
            continue;
        }
        let entry = mountinfo.covering(&clean_path(&path));
        r.push(
            "readonly_paths",
            entry.is_some_and(|entry| entry.has_mount_option("ro")),
            format!(
                "{path}: on mount {:?} with options {:?}",
                entry.map(|e| &e.mount_point),
                entry.map(|e| &e.mount_options)
            ),
        );
    }
}

fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// Whether the `linux.resources.devices` rules allow reading the device: the last matching rule
/// decides (runtime-spec: config-linux.md "Device allowlist"); `None` when no rule matches.
fn cgroup_allows_read(config: &Value, kind: &str, dev_major: u64, dev_minor: u64) -> Option<bool> {
    let mut decision = None;
    for rule in config["linux"]["resources"]["devices"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule_kind = rule["type"].as_str().unwrap_or("a");
        let kind_matches = rule_kind == "a" || rule_kind == kind;
        let major_matches = rule["major"].as_u64().is_none_or(|m| m == dev_major);
        let minor_matches = rule["minor"].as_u64().is_none_or(|m| m == dev_minor);
        let access = rule["access"].as_str().unwrap_or("rwm");
        if kind_matches && major_matches && minor_matches && access.contains('r') {
            decision = rule["allow"].as_bool();
        }
    }
    decision
}

fn check_devices(config: &Value, r: &mut CheckReport) {
    for device in config["linux"]["devices"].as_array().into_iter().flatten() {
        let path = device["path"].as_str().unwrap_or("");
        let kind = device["type"].as_str().unwrap_or("");
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                r.push("devices", false, format!("{path}: missing ({e})"));
                continue;
            }
        };
        let file_type = meta.file_type();
        let type_ok = match kind {
            "c" | "u" => file_type.is_char_device(),
            "b" => file_type.is_block_device(),
            "p" => file_type.is_fifo(),
            _ => false,
        };
        r.push(
            "devices",
            type_ok,
            format!("{path}: type {kind:?}, file type {file_type:?}"),
        );
        if kind != "p" {
            let want = (device["major"].as_u64(), device["minor"].as_u64());
            let got = (Some(major(meta.rdev())), Some(minor(meta.rdev())));
            r.push(
                "devices",
                want == got,
                format!("{path}: major:minor config {want:?}, node {got:?}"),
            );
        }
        if let Some(mode) = device["fileMode"].as_u64() {
            let got = u64::from(meta.permissions().mode() & 0o777);
            r.push(
                "devices",
                got == mode & 0o777,
                format!("{path}: fileMode config {mode:o}, node {got:o}"),
            );
        }
        for (field, got) in [("uid", meta.uid()), ("gid", meta.gid())] {
            if let Some(want) = device[field].as_u64() {
                r.push(
                    "devices",
                    u64::from(got) == want,
                    format!("{path}: {field} config {want}, node {got}"),
                );
            }
        }
        if kind == "c" || kind == "b" {
            let allowed = cgroup_allows_read(
                config,
                kind,
                device["major"].as_u64().unwrap_or(0),
                device["minor"].as_u64().unwrap_or(0),
            );
            let opened = fs::File::open(path);
            let denied = opened
                .as_ref()
                .err()
                .is_some_and(|e| e.raw_os_error() == Some(libc::EPERM));
            match allowed {
                Some(true) => r.push(
                    "devices",
                    !denied,
                    format!(
                        "{path}: allowed by linux.resources.devices, open: {:?}",
                        opened.map(|_| ())
                    ),
                ),
                Some(false) => r.push(
                    "devices",
                    denied,
                    format!(
                        "{path}: denied by linux.resources.devices, open: {:?}",
                        opened.map(|_| ())
                    ),
                ),
                None => {}
            }
        }
    }
}

fn check_default_devices(config: &Value, r: &mut CheckReport) {
    // runtime-spec: config-linux.md "Default Devices": the runtime MUST supply these.
    for (path, dev_major, dev_minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        let got = fs::metadata(path).map(|meta| {
            (
                meta.file_type().is_char_device(),
                major(meta.rdev()),
                minor(meta.rdev()),
            )
        });
        r.push(
            "default_devices",
            matches!(got, Ok((true, a, b)) if a == dev_major && b == dev_minor),
            format!("{path}: want c {dev_major}:{dev_minor}, found {got:?}"),
        );
    }
    // runtime-spec: config-linux.md "Default Devices", /dev/ptmx is a bind mount or symlink
    // for the container's /dev/pts/ptmx; and the standard fd symlinks.
    let ptmx = fs::symlink_metadata("/dev/ptmx");
    r.push(
        "default_devices",
        ptmx.is_ok(),
        format!("/dev/ptmx: {:?}", ptmx.map(|meta| meta.file_type())),
    );
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let got = fs::read_link(link);
        r.push(
            "default_devices",
            got.as_ref().is_ok_and(|path| path == Path::new(target)),
            format!("{link}: want symlink to {target}, found {got:?}"),
        );
    }
    if config["process"]["terminal"].as_bool() != Some(true) {
        return;
    }
    let console = fs::metadata("/dev/console");
    r.push(
        "default_devices",
        console.is_ok(),
        format!("/dev/console with a terminal: {:?}", console.map(|_| ())),
    );
}

fn check_sysctl(config: &Value, r: &mut CheckReport) {
    let Some(sysctl) = config["linux"]["sysctl"].as_object() else {
        return;
    };
    for (key, want) in sysctl {
        let want = want.as_str().unwrap_or("");
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let got = read_trimmed(&path);
        r.push(
            "sysctl",
            got.as_deref().map(str::trim) == Some(want.trim()),
            format!("{key}: config {want:?}, container {got:?}"),
        );
    }
}

fn check_cgroups_path(config: &Value, r: &mut CheckReport) {
    let Some(want) = config["linux"]["cgroupsPath"].as_str() else {
        return;
    };
    let own_ns = config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|ns| ns["type"] == "cgroup");
    let own = match ProcCgroup::read(None) {
        Ok(own) => own,
        Err(e) => {
            r.push("cgroups_path", false, crate::runtime::init::error_chain(&e));
            return;
        }
    };
    for membership in &own.memberships {
        let controllers = membership.controllers.join(",");
        let path = membership.path.to_string_lossy();
        // Only the v1 hierarchies that runtimes populate; the named systemd one and the empty
        // unified hierarchy of a hybrid host are the runtime's choice.
        if !["memory", "pids", "cpu,cpuacct", "devices", "freezer"].contains(&controllers.as_str())
        {
            continue;
        }
        let ok = if own_ns { path == "/" } else { path == want };
        r.push(
            "cgroups_path",
            ok,
            format!("{controllers}: cgroupsPath {want:?}, process in {path:?}"),
        );
    }
}

fn check_seccomp(config: &Value, status: &ProcStatus, r: &mut CheckReport) {
    let seccomp = &config["linux"]["seccomp"];
    let got = status.get("Seccomp");
    if seccomp.is_null() {
        return;
    }
    r.push(
        "seccomp",
        got == Some("2"),
        format!("a filter is configured; process Seccomp mode {got:?}"),
    );
    // The checker knows how to provoke mkdir/mkdirat: a rule returning an errno for them must
    // show as that errno; a notify rule shows as the errno the oracle's agent answers with.
    let agent_errno = config["annotations"][NOTIFY_ERRNO_ANNOTATION]
        .as_str()
        .and_then(|text| text.parse::<i32>().ok());
    for rule in seccomp["syscalls"].as_array().into_iter().flatten() {
        let names = strings(&rule["names"]);
        if !names.iter().any(|n| n == "mkdir" || n == "mkdirat") {
            continue;
        }
        let want = match (rule["action"].as_str(), agent_errno) {
            (Some("SCMP_ACT_ERRNO"), _) => rule["errnoRet"]
                .as_i64()
                .and_then(|errno| i32::try_from(errno).ok())
                .unwrap_or(libc::EPERM),
            (Some("SCMP_ACT_NOTIFY"), Some(errno)) => errno,
            _ => continue,
        };
        let got = fs::create_dir("/tmp/refeng-conformance-seccomp-probe");
        r.push(
            "seccomp",
            got.as_ref().err().and_then(std::io::Error::raw_os_error) == Some(want),
            format!(
                "mkdir under {}({want}): {got:?}",
                rule["action"].as_str().unwrap_or_default()
            ),
        );
    }
}

/// runtime-linux.md "File descriptors": only 0, 1 and 2 stay open by default.
fn check_fds(config: &Value, r: &mut CheckReport) {
    if config["process"]["terminal"].as_bool() == Some(true) {
        return; // the terminal case judges the descriptors
    }
    let mut open = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc/self/fd") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = fs::read_link(entry.path()).unwrap_or_default();
            // The directory being listed is open too; it is the checker's own.
            if target.to_string_lossy().ends_with("/fd") {
                continue;
            }
            if !["0", "1", "2"].contains(&name.as_str()) {
                open.push(format!("{name} → {}", target.display()));
            }
        }
    }
    r.push(
        "fds",
        open.is_empty(),
        format!("descriptors open beyond 0, 1, 2: {open:?}"),
    );
}

/// config.md `terminal`: stdin, stdout and stderr are one pseudoterminal (and the default
/// devices check `/dev/console`).
fn check_terminal(config: &Value, r: &mut CheckReport) {
    if config["process"]["terminal"].as_bool() != Some(true) {
        return;
    }
    let targets: Vec<String> = (0..3)
        .map(|fd| {
            fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|path| path.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let first = &targets[0];
    let is_pty = first.starts_with("/dev/pts/") || first == "/dev/console";
    r.push(
        "terminal",
        is_pty && targets.iter().all(|target| target == first),
        format!("stdin, stdout, stderr: {targets:?}"),
    );
}

/// config.md `scheduler`: the policy and nice value, from `/proc/self/stat` (fields 41 and 19).
fn check_scheduler(config: &Value, r: &mut CheckReport) {
    let scheduler = &config["process"]["scheduler"];
    let Some(policy) = scheduler["policy"].as_str() else {
        return;
    };
    let want = match policy {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        _ => return,
    };
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the parenthesised command start at field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let got_policy = fields.get(41 - 3).and_then(|f| f.parse::<i64>().ok());
    r.push(
        "scheduler",
        got_policy == Some(want),
        format!("policy {policy} ({want}): process {got_policy:?}"),
    );
    let want_nice = scheduler["nice"].as_i64().unwrap_or(0);
    let got_nice = fields.get(19 - 3).and_then(|f| f.parse::<i64>().ok());
    r.push(
        "scheduler",
        got_nice == Some(want_nice),
        format!("nice {want_nice}: process {got_nice:?}"),
    );
}

/// config-linux.md `timeOffsets`: the time namespace's clock offsets.
fn check_time_offsets(config: &Value, r: &mut CheckReport) {
    let Some(offsets) = config["linux"]["timeOffsets"].as_object() else {
        return;
    };
    let text = fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    for (clock, offset) in offsets {
        let want = (
            offset["secs"].as_i64().unwrap_or(0),
            offset["nanosecs"].as_i64().unwrap_or(0),
        );
        let got = text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == clock).then_some(())?;
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        });
        r.push(
            "time_offsets",
            got == Some(want),
            format!("{clock}: config {want:?}, /proc/self/timens_offsets {got:?}"),
        );
    }
}

/// config-linux.md "Personality": the execution domain, as /proc/self/personality shows it.
fn check_personality(config: &Value, r: &mut CheckReport) {
    let Some(domain) = config["linux"]["personality"]["domain"].as_str() else {
        return;
    };
    let want = match domain {
        "LINUX" => 0,
        "LINUX32" => 8,
        _ => return,
    };
    let got = fs::read_to_string("/proc/self/personality")
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim(), 16).ok());
    r.push(
        "personality",
        got.map(|p| p & 0xff) == Some(want),
        format!("domain {domain}: /proc/self/personality {got:?}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_numbers_split_like_the_kernel() {
        // makedev(1, 7) and makedev(259, 65536)
        assert_eq!((major(0x107), minor(0x107)), (1, 7));
        let big = (259u64 << 8) | ((65536u64 & !0xff) << 12);
        assert_eq!((major(big), minor(big)), (259, 65536));
    }

    #[test]
    fn the_last_matching_device_rule_decides() {
        let config = json!({"linux": {"resources": {"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "access": "w"},
        ]}}});
        assert_eq!(cgroup_allows_read(&config, "c", 1, 3), Some(true));
        assert_eq!(cgroup_allows_read(&config, "c", 1, 7), Some(false));
        assert_eq!(cgroup_allows_read(&json!({}), "c", 1, 7), None);
    }

    #[test]
    fn access_time_follows_mount_flags_then_recursive_attributes() {
        let mode = |options: &[&str], bind| {
            let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
            access_time(&options, bind)
        };
        // Nothing asked: not judged (a proc or sysfs mount may be a bind fallback).
        assert_eq!(mode(&["nosuid", "mode=755"], false), None);
        assert_eq!(mode(&["norelatime"], false), Some("relatime"));
        assert_eq!(
            mode(&["relatime", "strictatime"], false),
            Some("strictatime")
        );
        assert_eq!(
            mode(&["noatime", "strictatime"], false),
            Some("strictatime")
        );
        assert_eq!(mode(&["noatime", "atime"], false), Some("relatime"));
        // rnorelatime clears a zero bit: the mode stays what it was.
        assert_eq!(mode(&["rnorelatime"], false), Some("relatime"));
        assert_eq!(
            mode(&["strictatime", "rnorelatime"], false),
            Some("strictatime")
        );
        assert_eq!(
            mode(&["rbind", "rnoatime", "rnorelatime"], true),
            Some("noatime")
        );
        assert_eq!(mode(&["rbind", "rnorelatime"], true), None);
        assert_eq!(mode(&["rbind", "rstrictatime"], true), Some("strictatime"));
        assert_eq!(mode(&["rnoatime", "rrelatime"], false), Some("relatime"));
        assert_eq!(mode(&["rbind", "ratime"], true), None);
    }

    #[test]
    fn mountinfo_covering_mounts_and_trees() {
        let info = Mountinfo {
            entries: mountinfo::parse(
                b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
                  2 1 0:5 / /proc/sys ro master:3 - proc proc rw\n\
                  3 1 0:6 / /proc/system rw - tmpfs tmpfs rw\n",
            )
            .unwrap(),
        };
        assert_eq!(
            info.covering("/proc/sys/kernel").map(|e| e.mount_id),
            Some(2)
        );
        assert_eq!(info.covering("/proc/sy").map(|e| e.mount_id), Some(1));
        let tree: Vec<u32> = info.tree("/proc/sys").map(|e| e.mount_id).collect();
        assert_eq!(tree, [2], "/proc/system is not below /proc/sys");
        assert_eq!(
            info.at("/proc/sys").map(MountInfo::propagation),
            Some("master")
        );
        assert_eq!(clean_path("//dev/./shm/"), "/dev/shm");
    }

    #[test]
    fn capability_names_map_to_bits() {
        let mask = cap_mask(&json!(["CAP_CHOWN", "CAP_KILL", "CAP_NOPE"]));
        assert_eq!(mask, 0b10_0001);
        assert_eq!(cap_names(mask), ["CAP_CHOWN", "CAP_KILL"]);
    }
}
