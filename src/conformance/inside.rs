//! Cases that look from inside: each edits the base config, runs the checker as the container's
//! program and judges its report (see `checker`); a few also look at the container from the host
//! (its cgroup files), where the spec's effect is visible only there.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::conformance::bundle::{self, only_checks};
use crate::conformance::checker::{CheckReport, PATH_NS_ANNOTATION};
use crate::conformance::driver::{Observed, Ran, STOP_TIMEOUT};
use crate::conformance::{wait_for, Case, CaseError, Draft, Env, Verdict};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::kernel_files::{self, cgroup_file};

/// A helper process a case keeps alive (a namespace holder), killed when the case ends.
#[derive(Debug)]
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        // Our own child, by pid.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What preparing a case yields: go ahead (keeping a helper alive), or skip with a reason.
type Prepared = Result<Option<Held>, String>;
/// Edits the draft for one case.
type Edit = fn(&mut Draft) -> Result<Prepared, CaseError>;
/// Checks the created container from the host, given its draft, its pid and what `create`
/// reported; returns problems.
type HostCheck = fn(&Draft, i64, &Ran) -> Vec<String>;

fn ready() -> Result<Prepared, CaseError> {
    Ok(Ok(None))
}

struct Spec {
    name: &'static str,
    statements: &'static [&'static str],
    groups: &'static [&'static str],
    edit: Edit,
    host: Option<HostCheck>,
}

fn specs() -> Vec<Spec> {
    vec![
        Spec {
            name: "inside/defaults",
            statements: &[
                "op-create-apply",
                "lifecycle-create-env",
                "root-path",
                "linux-filesystems",
                "mounts-options",
                "default-devices",
                "linux-dev-symlinks",
                "masked-paths",
                "readonly-paths",
                "process-capabilities",
                "process-rlimits",
                "process-no-new-privileges",
                "hostname",
                "ns-new",
                "ns-inherit",
                "process-user",
                "process-cwd",
                "process-env",
                "process-args",
                "cgroups-path-absolute",
                "linux-fds",
            ],
            // Everything but the cgroup mount tree, which has its own case.
            groups: &[
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
            ],
            edit: |_| ready(),
            host: None,
        },
        Spec {
            name: "inside/cgroup-mount-readonly",
            statements: &["mounts-options"],
            groups: &["cgroup_mount"],
            edit: |_| ready(),
            host: None,
        },
        Spec {
            name: "inside/process-args-env-cwd",
            statements: &["process-args", "process-env", "process-cwd"],
            groups: &["args", "env", "cwd"],
            edit: |draft| {
                let process = &mut draft.config["process"];
                process["args"] = json!([
                    crate::conformance::bundle::CHECKER_IN_ROOTFS,
                    "two words",
                    "key=value",
                    "ünïcode"
                ]);
                if let Some(env) = process["env"].as_array_mut() {
                    env.push(json!("REFENG_PLAIN=1"));
                    env.push(json!("REFENG_EQUALS=a=b"));
                    env.push(json!("REFENG_SPACES=with spaces"));
                }
                process["cwd"] = json!("/tmp");
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/user-groups-umask",
            statements: &["process-user"],
            groups: &["user", "umask"],
            edit: |draft| {
                draft.config["process"]["user"] =
                    json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000], "umask": 0o027});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/user-groups-repeated",
            statements: &["process-user"],
            groups: &["user"],
            edit: |draft| {
                draft.config["process"]["user"] =
                    json!({"uid": 0, "gid": 0, "additionalGids": [5, 6, 5]});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/capabilities-root",
            statements: &["process-capabilities"],
            groups: &["capabilities"],
            edit: |draft| {
                let set = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]);
                draft.config["process"]["capabilities"] = json!({
                    "bounding": set, "effective": set, "permitted": set,
                    "inheritable": ["CAP_KILL"],
                });
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/capabilities-ambient-non-root",
            statements: &["process-capabilities"],
            groups: &["capabilities"],
            edit: |draft| {
                let set = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]);
                draft.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
                draft.config["process"]["capabilities"] = json!({
                    "bounding": set, "effective": set, "permitted": set,
                    "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
                    "ambient": ["CAP_KILL", "CAP_NET_RAW"],
                });
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/rlimits",
            statements: &["process-rlimits"],
            groups: &["rlimits"],
            edit: |draft| {
                draft.config["process"]["rlimits"] = json!([
                    {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                    {"type": "RLIMIT_CORE", "soft": 1024, "hard": 4096},
                    {"type": "RLIMIT_MSGQUEUE", "soft": 8192, "hard": 16384},
                ]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/duplicate-rlimit",
            statements: &["process-rlimits-invalid"],
            groups: &[],
            edit: |draft| {
                draft.config["process"]["rlimits"] = json!([
                    {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                    {"type": "RLIMIT_NOFILE", "soft": 256, "hard": 1024},
                ]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/no-new-privileges-off",
            statements: &["process-no-new-privileges"],
            groups: &["no_new_privileges"],
            edit: |draft| {
                draft.config["process"]["noNewPrivileges"] = json!(false);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/oom-score-adj",
            statements: &["process-oom-score-adj"],
            groups: &["oom_score_adj"],
            edit: |draft| {
                draft.config["process"]["oomScoreAdj"] = json!(500);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/hostname-domainname",
            statements: &["hostname"],
            groups: &["hostname"],
            edit: |draft| {
                draft.config["hostname"] = json!("conformance-host");
                draft.config["domainname"] = json!("conformance.example");
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/namespaces-inherited",
            statements: &["ns-inherit", "ns-new"],
            groups: &["namespaces"],
            edit: |draft| {
                draft.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}]);
                if let Some(config) = draft.config.as_object_mut() {
                    config.remove("hostname");
                }
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/namespace-cgroup",
            statements: &["ns-new", "ns-types"],
            groups: &["namespaces", "cgroups_path"],
            edit: |draft| {
                if !Path::new("/proc/self/ns/cgroup").exists() {
                    return Ok(Err("the kernel has no cgroup namespaces".into()));
                }
                push_namespace(draft, json!({"type": "cgroup"}));
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/namespace-user",
            statements: &["ns-new", "ns-types", "user-mappings"],
            groups: &["namespaces", "id_mappings"],
            edit: |draft| {
                let max =
                    fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
                if max.trim() == "0" {
                    return Ok(Err("user namespaces are disabled on the host".into()));
                }
                push_namespace(draft, json!({"type": "user"}));
                let identity = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
                draft.config["linux"]["uidMappings"] = identity.clone();
                draft.config["linux"]["gidMappings"] = identity;
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/namespace-path",
            statements: &["ns-path"],
            groups: &["namespaces"],
            edit: namespace_path,
            host: None,
        },
        Spec {
            name: "inside/hostname-joined-uts",
            statements: &["hostname", "ns-path"],
            groups: &["hostname", "namespaces"],
            edit: hostname_in_joined_uts,
            host: None,
        },
        Spec {
            name: "errors/namespace-path-wrong-type",
            statements: &["ns-path-wrong-type", "errors-no-effect"],
            groups: &[],
            edit: |draft| {
                // The runtime's own uts namespace offered as the network namespace.
                set_namespace(
                    draft,
                    json!({"type": "network", "path": "/proc/self/ns/uts"}),
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/readonly-rootfs",
            statements: &["root-readonly"],
            groups: &["root"],
            edit: |draft| {
                draft.config["root"]["readonly"] = json!(true);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/mounts-options-and-order",
            statements: &[
                "mounts-options",
                "mounts-order",
                "mounts-relative-destination",
            ],
            groups: &["mounts"],
            edit: |draft| {
                let source = draft.exchange.join("bind-source");
                bundle::make_dir(&source, 0o755)?;
                push_mounts(
                    draft,
                    &[
                        json!({"destination": "/mnt/tmpfs", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]}),
                        json!({"destination": "/mnt/tmpfs/nested", "type": "tmpfs",
                               "source": "tmpfs", "options": ["ro"]}),
                        json!({"destination": "/mnt/bind-ro", "type": "bind", "source": source,
                               "options": ["rbind", "ro"]}),
                        json!({"destination": "/mnt/bind-rw", "type": "none", "source": source,
                               "options": ["bind", "rw", "nosuid"]}),
                    ],
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/mount-propagation-options",
            statements: &["mounts-propagation-options"],
            groups: &["mounts"],
            edit: |draft| {
                let source = draft.exchange.join("propagation-source");
                bundle::make_dir(&source, 0o755)?;
                push_mounts(
                    draft,
                    &[
                        json!({"destination": "/mnt/rprivate", "type": "bind", "source": source,
                               "options": ["rbind", "rprivate"]}),
                        json!({"destination": "/mnt/rshared", "type": "bind", "source": source,
                               "options": ["rbind", "rshared"]}),
                    ],
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/rootfs-propagation-private",
            statements: &["rootfs-propagation"],
            groups: &["propagation"],
            edit: |draft| {
                draft.config["linux"]["rootfsPropagation"] = json!("private");
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/rootfs-propagation-slave",
            statements: &["rootfs-propagation"],
            groups: &["propagation"],
            edit: |draft| {
                if let Err(reason) = shared_rootfs(draft) {
                    return Ok(Err(reason));
                }
                draft.config["linux"]["rootfsPropagation"] = json!("slave");
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/rootfs-propagation-shared",
            statements: &["rootfs-propagation"],
            groups: &["propagation"],
            edit: |draft| {
                draft.config["linux"]["rootfsPropagation"] = json!("shared");
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/masked-and-readonly-paths",
            statements: &["masked-paths", "readonly-paths"],
            groups: &["masked_paths", "readonly_paths"],
            edit: |draft| {
                bundle::write(&draft.exchange.join("secret"), "secret")?;
                bundle::make_dir(&draft.exchange.join("secret-dir/inner"), 0o755)?;
                bundle::make_dir(&draft.exchange.join("ro-dir"), 0o777)?;
                let linux = &mut draft.config["linux"];
                linux["maskedPaths"] = json!([
                    "/conformance/secret",
                    "/conformance/secret-dir",
                    "/proc/kcore",
                    "/no/such/path",
                ]);
                linux["readonlyPaths"] = json!(["/conformance/ro-dir", "/proc/sys"]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/devices",
            statements: &["devices-available"],
            groups: &["devices"],
            edit: |draft| {
                draft.config["linux"]["devices"] = json!([
                    {"path": "/dev/conformance-null", "type": "c", "major": 1, "minor": 3,
                     "fileMode": 0o640, "uid": 0, "gid": 0},
                    {"path": "/dev/conformance-loop-allowed", "type": "b", "major": 7,
                     "minor": 1, "fileMode": 0o600},
                    {"path": "/dev/conformance-fifo", "type": "p", "fileMode": 0o644},
                ]);
                if let Some(rules) = draft.config["linux"]["resources"]["devices"].as_array_mut() {
                    rules.push(json!({"allow": true, "type": "b", "major": 7, "minor": 1,
                                      "access": "rwm"}));
                    rules.push(json!({"allow": true, "type": "c", "major": 1, "minor": 3,
                                      "access": "rwm"}));
                }
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/sysctl",
            statements: &["sysctl"],
            groups: &["sysctl"],
            edit: |draft| {
                draft.config["linux"]["sysctl"] = json!({
                    "net.ipv4.ip_forward": "1",
                    "kernel.shm_rmid_forced": "1",
                });
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/cgroup-limits",
            statements: &[
                "cgroups-resources",
                "cgroups-path-absolute",
                "cgroups-path-consistent",
            ],
            groups: &["cgroups_path"],
            edit: |draft| {
                draft.config["linux"]["resources"]["memory"] = json!({"limit": 67_108_864});
                draft.config["linux"]["resources"]["pids"] = json!({"limit": 100});
                draft.config["linux"]["resources"]["cpu"] = json!({"shares": 512});
                ready()
            },
            host: Some(cgroup_limits),
        },
        Spec {
            name: "inside/cgroups-path-relative",
            statements: &["cgroups-path-relative"],
            // The checker's cgroups_path group compares with an absolute path; the host check
            // judges this case.
            groups: &["args"],
            edit: |draft| {
                let relative = draft.cgroups_path.trim_start_matches('/').to_owned();
                draft.config["linux"]["cgroupsPath"] = json!(relative);
                draft.cgroups_path = relative;
                ready()
            },
            host: Some(relative_cgroups),
        },
        Spec {
            name: "inside/mount-relative-destination",
            statements: &["mounts-relative-destination"],
            groups: &["mounts"],
            edit: |draft| {
                push_mounts(
                    draft,
                    &[json!({"destination": "mnt/relative", "type": "tmpfs",
                             "source": "tmpfs", "options": ["nodev"]})],
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/device-allowlist-deny",
            statements: &["cgroups-device-allowlist"],
            groups: &["devices"],
            edit: |draft| {
                // Listed in linux.devices but denied by the allowlist (its first rule denies
                // everything): the node exists, opening it is EPERM.
                draft.config["linux"]["devices"] = json!([
                    {"path": "/dev/conformance-loop-denied", "type": "b", "major": 7,
                     "minor": 0, "fileMode": 0o600},
                ]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/mount-recursive-readonly",
            statements: &["mounts-recursive-options"],
            groups: &["mounts"],
            edit: |draft| {
                // A bind source with a mount below it: `rro` must make both read-only.
                let source = draft.exchange.join("rro-source");
                let sub = source.join("sub");
                bundle::make_dir(&sub, 0o755)?;
                if let Err(e) = nix::mount::mount(
                    Some("tmpfs"),
                    &sub,
                    Some("tmpfs"),
                    nix::mount::MsFlags::empty(),
                    Some("size=1m"),
                ) {
                    return Ok(Err(format!(
                        "cannot mount a tmpfs below the bind source: {e}"
                    )));
                }
                push_mounts(
                    draft,
                    &[
                        json!({"destination": "/mnt/rro", "type": "bind", "source": source,
                             "options": ["rbind", "rro"]}),
                    ],
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/mount-recursive-access-time",
            statements: &["mounts-recursive-options", "mounts-options"],
            groups: &["mounts"],
            edit: |draft| {
                // `rnorelatime` clears MOUNT_ATTR_RELATIME, which is 0: whatever the mount had
                // (relatime for a new tmpfs, strictatime, noatime from `rnoatime`) stays.
                let source = draft.exchange.join("atime-source");
                bundle::make_dir(&source, 0o755)?;
                push_mounts(
                    draft,
                    &[
                        json!({"destination": "/mnt/atime-default", "type": "tmpfs",
                               "source": "tmpfs", "options": ["rnorelatime"]}),
                        json!({"destination": "/mnt/atime-strict", "type": "tmpfs",
                               "source": "tmpfs", "options": ["strictatime", "rnorelatime"]}),
                        json!({"destination": "/mnt/atime-noatime", "type": "bind",
                               "source": source,
                               "options": ["rbind", "rnoatime", "rnorelatime"]}),
                    ],
                );
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/unknown-capability-warns",
            statements: &["process-capabilities-warn", "warnings-continue"],
            groups: &["capabilities"],
            edit: |draft| {
                let caps = &mut draft.config["process"]["capabilities"];
                for set in ["bounding", "effective", "permitted"] {
                    if let Some(list) = caps[set].as_array_mut() {
                        list.push(json!("CAP_REFENG_NO_SUCH_CAPABILITY"));
                    }
                }
                ready()
            },
            host: Some(|_, _, created| {
                // The level, not the wording: logrus-style `"level":"warning"` or `level=warning`.
                let text = created.errors.to_lowercase();
                if text.contains("warn") {
                    Vec::new()
                } else {
                    vec![format!(
                        "no warning logged for an unknown capability: {}",
                        created.summary()
                    )]
                }
            }),
        },
        Spec {
            name: "inside/scheduler",
            statements: &["process-scheduler"],
            groups: &["scheduler"],
            edit: |draft| {
                draft.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/time-offsets",
            statements: &["time-offsets", "ns-types"],
            groups: &["namespaces", "time_offsets"],
            edit: |draft| {
                if !Path::new("/proc/self/ns/time").exists() {
                    return Ok(Err("the kernel has no time namespaces".into()));
                }
                push_namespace(draft, json!({"type": "time"}));
                draft.config["linux"]["timeOffsets"] = json!({
                    "monotonic": {"secs": 86400, "nanosecs": 0},
                    "boottime": {"secs": 3600, "nanosecs": 0},
                });
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/unified-unknown-controller",
            statements: &["cgroups-missing-controller", "errors-no-effect"],
            groups: &[],
            edit: |draft| {
                draft.config["linux"]["resources"]["unified"] =
                    json!({"refengnosuchcontroller.max": "1"});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/personality",
            statements: &["personality"],
            groups: &["personality"],
            edit: |draft| {
                draft.config["linux"]["personality"] = json!({"domain": "LINUX32"});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/unknown-properties-ignored",
            statements: &["extensibility-unknown", "annotations-unknown"],
            groups: &["args"],
            edit: |draft| {
                draft.config["org.refeng.conformance.unknown"] = json!({"nested": [1, 2]});
                draft.config["linux"]["orgRefengUnknown"] = json!(true);
                draft.config["process"]["orgRefengUnknown"] = json!("x");
                draft.config["annotations"]["com.example.unknown"] = json!("value");
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/invalid-namespace-type",
            statements: &["invalid-values", "errors-no-effect"],
            groups: &[],
            edit: |draft| {
                push_namespace(draft, json!({"type": "no-such-namespace"}));
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/invalid-rlimit-type",
            statements: &["process-rlimits-invalid", "invalid-values"],
            groups: &[],
            edit: |draft| {
                draft.config["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NO_SUCH_LIMIT", "soft": 1, "hard": 1}]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/device-path-conflict",
            statements: &["devices-conflict", "errors-no-effect"],
            groups: &[],
            edit: |draft| {
                bundle::write(&draft.exchange.join("not-a-device"), "a regular file")?;
                draft.config["linux"]["devices"] = json!([
                    {"path": "/conformance/not-a-device", "type": "c", "major": 1, "minor": 3},
                ]);
                ready()
            },
            host: None,
        },
        Spec {
            name: "errors/seccomp-errno-on-kill",
            statements: &["seccomp-errno-unsupported", "invalid-values"],
            groups: &[],
            edit: |draft| {
                draft.config["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL",
                                  "errnoRet": 42}],
                });
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/seccomp-older-profile-early",
            statements: &["seccomp", "process-no-new-privileges", "linux-fds"],
            groups: &["seccomp", "no_new_privileges", "user", "fds"],
            edit: |draft| {
                // Without noNewPrivileges the filter is loaded while the runtime is still root,
                // so its own last steps (user switch, capabilities, startContainer hooks, closing
                // descriptors, execve) run under it. Docker 19.03's profile refuses close_range
                // and clone3 with EPERM; runtimes of that time never needed them.
                draft.config["process"]["noNewPrivileges"] = json!(false);
                draft.config["process"]["user"] =
                    json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
                draft.config["linux"]["seccomp"] =
                    crate::conformance::seccomp_profiles::docker_19_03();
                draft.config["hooks"] = json!({"startContainer": [
                    {"path": "/bin/sh", "args": ["sh", "-c", "true"]}
                ]});
                ready()
            },
            host: None,
        },
        Spec {
            name: "inside/seccomp-errno",
            statements: &["seccomp"],
            groups: &["seccomp"],
            edit: |draft| {
                draft.config["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": 42}],
                });
                ready()
            },
            host: None,
        },
    ]
}

/// Puts the rootfs on a shared mount of its own (a bind mount in the case's bundle directory,
/// removed with the case), so that a slave rootfs has a master to follow even on a host whose
/// mounts are all private.
fn shared_rootfs(draft: &mut Draft) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let rootfs = PathBuf::from(draft.config["root"]["path"].as_str().unwrap_or("/"));
    let shared = draft.dir.join("rootfs-shared");
    bundle::make_dir(&shared, 0o755).map_err(|e| e.to_string())?;
    mount(
        Some(&rootfs),
        &shared,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("cannot bind-mount the rootfs to share it: {e}"))?;
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the rootfs mount shared: {e}"))?;
    draft.config["root"]["path"] = json!(shared);
    Ok(())
}

fn push_namespace(draft: &mut Draft, namespace: Value) {
    if let Some(list) = draft.config["linux"]["namespaces"].as_array_mut() {
        list.push(namespace);
    }
}

/// Replaces the namespace of the same type.
fn set_namespace(draft: &mut Draft, namespace: Value) {
    if let Some(list) = draft.config["linux"]["namespaces"].as_array_mut() {
        list.retain(|ns| ns["type"] != namespace["type"]);
        list.push(namespace);
    }
}

fn push_mounts(draft: &mut Draft, mounts: &[Value]) {
    if let Some(list) = draft.config["mounts"].as_array_mut() {
        list.extend(mounts.iter().cloned());
    }
}

fn namespace_path(draft: &mut Draft) -> Result<Prepared, CaseError> {
    join_held_namespace(draft, "network", "net")
}

/// config.md "Hostname": the name is set in the container's UTS namespace, also when that one is
/// joined by path (runc sets it there; only a config without any uts entry is refused).
fn hostname_in_joined_uts(draft: &mut Draft) -> Result<Prepared, CaseError> {
    let held = join_held_namespace(draft, "uts", "uts")?;
    draft.config["hostname"] = json!("conformance-joined");
    Ok(held)
}

/// Starts `unshare --<entry> sleep` (a namespace holder of this case's own, killed when the case
/// ends) and puts its namespace into the config by path, with the inode for the checker.
fn join_held_namespace(draft: &mut Draft, kind: &str, entry: &str) -> Result<Prepared, CaseError> {
    let own = fs::metadata(format!("/proc/self/ns/{entry}"))
        .map(|meta| meta.ino())
        .ok();
    let child = Command::new("unshare")
        .args([format!("--{entry}").as_str(), "--", "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return Ok(Err(format!(
            "cannot run unshare(1) to hold a {kind} namespace"
        )));
    };
    let held = Held(child);
    let path = PathBuf::from(format!("/proc/{}/ns/{entry}", held.0.id()));
    let inode = || fs::metadata(&path).map(|meta| meta.ino()).ok();
    if !wait_for(STOP_TIMEOUT, || inode().is_some() && inode() != own) {
        return Ok(Err(format!(
            "unshare(1) did not enter a new {kind} namespace"
        )));
    }
    set_namespace(draft, json!({"type": kind, "path": path}));
    draft.config["annotations"][format!("{PATH_NS_ANNOTATION}{kind}")] =
        json!(inode().unwrap_or(0).to_string());
    Ok(Ok(Some(held)))
}

/// The host-side view: the container's cgroup in each hierarchy must be the cgroupsPath and hold
/// the configured limits (runtime-spec: config-linux.md "cgroupsPath", "Memory", "PIDs", "CPU").
fn cgroup_limits(draft: &Draft, pid: i64, _created: &Ran) -> Vec<String> {
    let mut problems = Vec::new();
    let own = match u32::try_from(pid).map(|pid| ProcCgroup::read(Some(pid))) {
        Ok(Ok(own)) => own,
        Ok(Err(e)) => return vec![format!("{}", crate::runtime::init::error_chain(&e))],
        Err(_) => return vec![format!("pid {pid} is not a process id")],
    };
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut checks: Vec<(PathBuf, &str)> = Vec::new();
    for membership in &own.memberships {
        let controllers = membership.controllers.join(",");
        let controllers = controllers.as_str();
        let path = membership.path.to_string_lossy();
        let relative = path.trim_start_matches('/');
        let base = if unified && membership.is_unified() {
            PathBuf::from("/sys/fs/cgroup")
        } else if controllers.is_empty() || controllers.starts_with("name=") {
            continue;
        } else {
            PathBuf::from("/sys/fs/cgroup").join(controllers)
        };
        let dir = base.join(relative);
        let wanted: &[(&str, &str)] = if unified {
            &[("memory.max", "67108864"), ("pids.max", "100")]
        } else {
            match controllers {
                "memory" => &[("memory.limit_in_bytes", "67108864")],
                "pids" => &[("pids.max", "100")],
                "cpu" | "cpu,cpuacct" => &[("cpu.shares", "512")],
                _ => &[],
            }
        };
        if !wanted.is_empty() && path != draft.cgroups_path {
            problems.push(format!(
                "{controllers}: the container is in {path:?}, cgroupsPath is {:?}",
                draft.cgroups_path
            ));
        }
        for (file, value) in wanted {
            checks.push((dir.join(file), value));
        }
    }
    if checks.is_empty() {
        problems.push(format!(
            "no cgroup of the container found in /proc/{pid}/cgroup"
        ));
    }
    for (file, want) in checks {
        match kernel_files::read_parsed(&file, cgroup_file::single_u64) {
            Ok(got) if got.to_string() == want => {}
            Ok(got) => problems.push(format!("{}: want {want}, found {got}", file.display())),
            Err(e) => problems.push(crate::runtime::init::error_chain(&e)),
        }
    }
    problems
}

/// A relative cgroupsPath: runc puts the container below the caller's own cgroup in each
/// hierarchy, even where the caller sits in different cgroups per hierarchy (runtime-spec:
/// config-linux.md "cgroupsPath" leaves relative paths to the runtime).
fn relative_cgroups(draft: &Draft, pid: i64, _created: &Ran) -> Vec<String> {
    let want: Vec<String> = bundle::below_own_cgroups(&draft.cgroups_path)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    if want.is_empty() {
        return vec!["cannot read the oracle's own cgroups".into()];
    }
    let got = match u32::try_from(pid).map(|pid| ProcCgroup::read(Some(pid))) {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => return vec![crate::runtime::init::error_chain(&e)],
        Err(_) => return vec![format!("pid {pid} is not a process id")],
    };
    let got: Vec<String> = got
        .memberships
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}",
                m.hierarchy_id,
                m.controllers.join(","),
                m.path.display()
            )
        })
        .collect();
    if got == want {
        Vec::new()
    } else {
        vec![format!(
            "/proc/{pid}/cgroup is {got:?}, runc's placement is {want:?}"
        )]
    }
}

/// `process.terminal`: create with `--console-socket`, receive the pty master, and read the
/// checker's report from it (runtime-spec: config.md "terminal"; runc's console-socket contract).
fn terminal(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["process"]["terminal"] = json!(true);
    only_checks(&mut draft.config, &["terminal", "default_devices"]);
    env.write_bundle(&draft)?;
    let socket = draft.exchange.join("console.sock");
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            return Ok(Verdict::Skip(format!(
                "cannot listen on {}: {e}",
                socket.display()
            )))
        }
    };
    let _ = listener.set_nonblocking(true);
    let socket_text = socket.to_string_lossy().into_owned();
    let created = env.create_with(&id, &draft, &["--console-socket", &socket_text])?;
    if !created.ok() {
        return Ok(Verdict::Fail(created.summary()));
    }
    let mut stream = None;
    wait_for(STOP_TIMEOUT, || {
        stream = listener.accept().ok().map(|(stream, _)| stream);
        stream.is_some()
    });
    let Some(stream) = stream else {
        return Ok(Verdict::Fail(
            "the runtime never connected to --console-socket".into(),
        ));
    };
    let _ = stream.set_nonblocking(false);
    let mut name = [0u8; 256];
    let master = match crate::sys::scm_rights::recv_with_fds(stream.as_fd(), &mut name) {
        Ok((_, fds)) => fds.into_iter().next(),
        Err(e) => return Ok(Verdict::Fail(format!("receiving the pty master: {e}"))),
    };
    let Some(master) = master else {
        return Ok(Verdict::Fail(
            "the console socket carried no descriptor".into(),
        ));
    };
    // Read the pty until the slave side closes (EIO), in a thread so a runtime that keeps the
    // slave open cannot hang the case.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = fs::File::from(master);
        let mut output = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(read) = file.read(&mut chunk) {
            if read == 0 {
                break;
            }
            output.extend_from_slice(&chunk[..read]);
        }
        let _ = sender.send(output);
    });
    let started = env.cmd(&["start", &id])?;
    if !started.ok() {
        return Ok(Verdict::Fail(started.summary()));
    }
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let output = receiver.recv_timeout(STOP_TIMEOUT).unwrap_or_default();
    let text = String::from_utf8_lossy(&output);
    let report = text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<CheckReport>(line.trim_end_matches('\r')).ok());
    let Some(report) = report else {
        return Ok(Verdict::Fail(format!(
            "no report on the terminal: {:?}",
            text.chars().take(300).collect::<String>()
        )));
    };
    let failures: Vec<String> = report
        .failures()
        .iter()
        .map(|check| format!("{}: {}", check.group, check.detail))
        .collect();
    if failures.is_empty() {
        Ok(Verdict::Pass(format!(
            "{} checks held on the terminal",
            report.checks.len()
        )))
    } else {
        Ok(Verdict::Fail(failures.join("; ")))
    }
}

pub fn cases() -> Vec<Case> {
    let terminal_case = Case::new(
        "inside/terminal",
        &["process-terminal", "default-devices"],
        terminal,
    );
    specs()
        .into_iter()
        .map(|spec| {
            let Spec {
                name,
                statements,
                groups,
                edit,
                host,
            } = spec;
            if name.starts_with("errors/") {
                Case::new(name, statements, move |env| refused(env, edit))
            } else {
                Case::new(name, statements, move |env| {
                    checked(env, edit, groups, host)
                })
            }
        })
        .chain(std::iter::once(terminal_case))
        .collect()
}

/// A config the runtime must refuse at create, leaving nothing behind.
fn refused(env: &mut Env<'_>, edit: Edit) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    let _held = match edit(&mut draft)? {
        Ok(held) => held,
        Err(reason) => return Ok(Verdict::Skip(reason)),
    };
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    if ran.ok() {
        return Ok(Verdict::Fail("create accepted the config".into()));
    }
    // runtime-spec: Errors, the environment as if create had never been attempted.
    if let Observed::Present(document) = env.runtime().state(&id)? {
        return Ok(Verdict::Fail(format!(
            "create failed but the container exists: {:?}",
            document.status
        )));
    }
    let left = bundle::cgroup_dirs(&draft.cgroups_path);
    if !left.is_empty() {
        return Ok(Verdict::Fail(format!(
            "create failed but left its cgroups: {left:?}"
        )));
    }
    Ok(Verdict::Pass(format!("refused: {}", ran.summary())))
}

/// Runs the checker in a container made from the edited config and judges its report.
fn checked(
    env: &mut Env<'_>,
    edit: Edit,
    groups: &[&str],
    host: Option<HostCheck>,
) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    let _held = match edit(&mut draft)? {
        Ok(held) => held,
        Err(reason) => return Ok(Verdict::Skip(reason)),
    };
    if !groups.is_empty() {
        only_checks(&mut draft.config, groups);
    }
    env.write_bundle(&draft)?;
    let created = env.create(&id, &draft)?;
    if !created.ok() {
        return Ok(Verdict::Fail(created.summary()));
    }
    let mut problems = Vec::new();
    if let Some(host) = host {
        match env.runtime().state(&id)? {
            Observed::Present(document) => match document.pid {
                Some(pid) => problems.extend(host(&draft, pid, &created)),
                None => problems.push("state has no pid".into()),
            },
            other => problems.push(format!("state: {:?}", other.status())),
        }
    }
    let started = env.cmd(&["start", &id])?;
    if !started.ok() {
        return Ok(Verdict::Fail(started.summary()));
    }
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    Ok(judge_report(&created, problems))
}

/// The verdict on the checker's report (in the output of the `create` that started it), with
/// the `problems` the case found itself.
pub(super) fn judge_report(created: &Ran, mut problems: Vec<String>) -> Verdict {
    let stdout = fs::read_to_string(&created.stdout_path).unwrap_or_default();
    let stderr =
        fs::read_to_string(created.stdout_path.with_extension("stderr")).unwrap_or_default();
    let report = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<CheckReport>(line).ok());
    let Some(report) = report else {
        return Verdict::Fail(format!(
            "the checker printed no report; stdout {:?}, stderr {:?}",
            stdout.chars().take(300).collect::<String>(),
            stderr.chars().take(300).collect::<String>()
        ));
    };
    problems.extend(
        report
            .failures()
            .iter()
            .map(|check| format!("{}: {}", check.group, check.detail)),
    );
    if report.checks.is_empty() && problems.is_empty() {
        return Verdict::Fail("the checker ran no checks".into());
    }
    if problems.is_empty() {
        Verdict::Pass(format!("{} checks held", report.checks.len()))
    } else {
        Verdict::Fail(problems.join("; "))
    }
}
