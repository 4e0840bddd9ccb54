//! The oracle's file-system side: the busybox-static rootfs with the checker in it (shared by
//! every case, read-only in spirit), one directory per case with its bundle and its `/conformance`
//! exchange directory, the base `config.json`, and the cleanup of cgroups and mounts a runtime
//! may leave behind.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::conformance::checker::{CHECKS_ANNOTATION, HOST_NS_ANNOTATION, NAMESPACES};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::kernel_files::{self, cgroup_file, mountinfo};

/// Where the checker lives inside the rootfs.
pub const CHECKER_IN_ROOTFS: &str = "/bin/refeng-conformance-checker";
/// The busybox applets the cases' programs and hooks use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "touch", "cat", "echo", "test", "true", "false", "ls", "mkdir", "env", "id",
    "printf", "kill",
];

/// Why the oracle could not lay out its files.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// {action} {path}: {source}
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// What the file system reported.
        #[source]
        source: std::io::Error,
    },
    /// cannot list the shared libraries of {path} with ldd: {detail}
    #[error("cannot list the shared libraries of {path} with ldd: {detail}")]
    Ldd {
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BundleError {
    let path = path.to_owned();
    move |source| BundleError::Io {
        action,
        path,
        source,
    }
}

/// Writes `bytes` to `path`.
///
/// # Errors
///
/// [`BundleError::Io`] with the path.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), BundleError> {
    fs::write(path, bytes).map_err(io("cannot write", path))
}

/// Creates `path` and its parents with `mode` on the last one.
///
/// # Errors
///
/// [`BundleError::Io`] with the path.
pub fn make_dir(path: &Path, mode: u32) -> Result<(), BundleError> {
    fs::create_dir_all(path).map_err(io("cannot create", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("cannot chmod", path))
}

/// The shared rootfs: busybox-static, its applets, and the checker.
///
/// The checker is a normal (dynamically linked) binary of this package, so its loader and
/// libraries are copied in at the paths `ldd` reports: one `cargo build`, no second target or
/// toolchain, and a statically linked checker (no libraries) works unchanged.
///
/// # Errors
///
/// [`BundleError`] when a file cannot be copied or `ldd` fails.
pub fn build_rootfs(rootfs: &Path, busybox: &Path, checker: &Path) -> Result<(), BundleError> {
    for (dir, mode) in [
        ("bin", 0o755),
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("etc", 0o755),
        ("conformance", 0o755),
        ("root", 0o700),
    ] {
        make_dir(&rootfs.join(dir), mode)?;
    }
    let bin = rootfs.join("bin");
    fs::copy(busybox, bin.join("busybox")).map_err(io("cannot copy busybox to", &bin))?;
    for applet in APPLETS {
        let link = bin.join(applet);
        if fs::symlink_metadata(&link).is_err() {
            symlink("busybox", &link).map_err(io("cannot link", &link))?;
        }
    }
    let target = rootfs.join(CHECKER_IN_ROOTFS.trim_start_matches('/'));
    fs::copy(checker, &target).map_err(io("cannot copy the checker to", &target))?;
    for library in shared_libraries(checker)? {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        if let Some(parent) = inside.parent() {
            make_dir(parent, 0o755)?;
        }
        fs::copy(&library, &inside).map_err(io("cannot copy library", &library))?;
    }
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    write(&rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")
}

/// The absolute paths of the loader and libraries `binary` needs; empty for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| BundleError::Ldd {
            path: binary.to_owned(),
            detail: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "not a dynamic executable": a static checker needs nothing.
        return Ok(Vec::new());
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// The inode of each of the oracle's own namespaces, which the runtime it spawns inherits.
#[must_use]
pub fn host_namespaces() -> Vec<(&'static str, u64)> {
    NAMESPACES
        .iter()
        .filter_map(|(kind, entry)| {
            fs::metadata(format!("/proc/self/ns/{entry}"))
                .ok()
                .map(|meta| (*kind, meta.ino()))
        })
        .collect()
}

/// The config every case starts from: `runc spec`'s defaults with the checker as the program, no
/// terminal, the shared rootfs, the case's exchange directory on `/conformance`, and its cgroup.
#[must_use]
pub fn base_config(rootfs: &Path, exchange: &Path, cgroups_path: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    for (kind, inode) in host_namespaces() {
        annotations.insert(
            format!("{HOST_NS_ANNOTATION}{kind}"),
            Value::String(inode.to_string()),
        );
    }
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [CHECKER_IN_ROOTFS],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "refeng-conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/conformance", "type": "bind", "source": exchange,
             "options": ["rbind", "rw"]},
        ],
        "annotations": annotations,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

/// Restricts the checker to `groups` (see `checker::GROUPS`).
pub fn only_checks(config: &mut Value, groups: &[&str]) {
    config["annotations"][CHECKS_ANNOTATION] = Value::String(groups.join(","));
}

/// Every cgroup hierarchy directory of the host: the v1 controllers, and the v2 root.
#[must_use]
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        found.push(base.to_owned());
        return found;
    }
    if let Ok(entries) = fs::read_dir(base) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The cgroup directories of the cgroupsPath `path` that exist in any hierarchy: an absolute path
/// below each hierarchy's root, a relative one below this process's own cgroup in each
/// hierarchy (see [`below_own_cgroups`]).
#[must_use]
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = if path.starts_with('/') {
        let relative = path.trim_start_matches('/');
        cgroup_hierarchies()
            .into_iter()
            .map(|hierarchy| hierarchy.join(relative))
            .collect()
    } else {
        below_own_cgroups(path)
            .into_iter()
            .map(|(_, dir)| dir)
            .collect()
    };
    dirs.into_iter().filter(|dir| dir.is_dir()).collect()
}

/// A relative cgroupsPath `relative` as runc resolves it: below this process's own cgroup in
/// each hierarchy (the caller's, as the runtime is this process's child); see [`cgroups_below`].
/// Empty when the files cannot be read.
#[must_use]
pub fn below_own_cgroups(relative: &str) -> Vec<(String, PathBuf)> {
    ProcCgroup::read(None).map_or_else(|_| Vec::new(), |own| cgroups_below(&own, relative))
}

/// For each line of a `/proc/<pid>/cgroup` whose hierarchy is mounted here, the cgroup
/// `relative` below the one listed: the line a process in it shows in its own
/// `/proc/<pid>/cgroup`, and its directory on the host. Empty when mountinfo cannot be read.
#[must_use]
pub fn cgroups_below(memberships: &ProcCgroup, relative: &str) -> Vec<(String, PathBuf)> {
    let Ok(mounts) = mountinfo::read(None) else {
        return Vec::new();
    };
    memberships
        .memberships
        .iter()
        .filter_map(|m| {
            let path = if relative.is_empty() {
                m.path.clone()
            } else {
                m.path.join(relative)
            };
            let line = format!(
                "{}:{}:{}",
                m.hierarchy_id,
                m.controllers.join(","),
                path.display()
            );
            let mount = mounts.iter().find(|mount| {
                if m.is_unified() {
                    mount.fs_type == "cgroup2"
                } else {
                    mount.fs_type == "cgroup"
                        && m.controllers
                            .iter()
                            .all(|c| mount.super_options.contains(c))
                }
            })?;
            let inside = path.strip_prefix(&mount.root).ok()?;
            Some((line, mount.mount_point.join(inside)))
        })
        .collect()
}

/// Kills whatever still runs in the cgroups of the cgroupsPath `path` and removes them, leaves
/// first. Best effort: a runtime under test may leave anything behind.
pub fn remove_cgroups(path: &str) {
    for dir in cgroup_dirs(path) {
        remove_cgroup_tree(&dir);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    for _ in 0..50 {
        // A frozen cgroup's processes cannot die; thaw it first (v1 freezer, v2 cgroup.freeze).
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        let _ = fs::write(dir.join("cgroup.freeze"), "0");
        let procs = kernel_files::read_parsed(&dir.join("cgroup.procs"), cgroup_file::list::<i32>)
            .unwrap_or_default();
        for pid in procs {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Detaches every mount at or below `dir` in the oracle's mount namespace, deepest first.
pub fn unmount_below(dir: &Path) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| point.replace("\\040", " "))
        .filter(|point| point == &prefix || point.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
