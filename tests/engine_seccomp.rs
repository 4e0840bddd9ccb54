//! refengd's seccomp filter against dockerd 20.10's: the same containers (defaults, CapAdd
//! SYS_ADMIN, CapAdd SYS_PTRACE, CapDrop ALL, privileged, seccomp=unconfined) on a private
//! dockerd and on refengd, and the `linux.seccomp` each engine wrote into the container's
//! config.json compared rule by rule; `/info`'s SecurityOptions; and the filter at work: a
//! syscall the profile refuses fails with EPERM in a refengd container and succeeds with
//! `seccomp=unconfined` or the capability that opens it, as under dockerd.
//!
//! refengd carries moby's current profile, dockerd 20.10 an older one. The comparison demands
//! that everything dockerd allows under a condition refengd allows under the same condition with
//! the same action, except what moby took out since (listed below), and that what refengd adds
//! is exactly the listed syscalls moby added since.

mod engine_support;
mod peers;
mod rootfs;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use engine_support::Refengd;
use peers::dockerd::Dockerd;
use serde_json::{json, Value};

/// Syscalls moby's default profile allows to every container and dockerd 20.10's did not (or,
/// for name_to_handle_at, only with CAP_SYS_ADMIN; for process_vm_readv/writev, only with
/// CAP_SYS_PTRACE), found by running both engines.
const ADDED_AFTER_20_10: &[&str] = &[
    "cachestat",
    "fchmodat2",
    "futex_requeue",
    "futex_wait",
    "futex_wake",
    "getxattrat",
    "listmount",
    "listxattrat",
    "map_shadow_stack",
    "mseal",
    "name_to_handle_at",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_vm_readv",
    "process_vm_writev",
    "removexattrat",
    "riscv_hwprobe",
    "setxattrat",
    "statmount",
    "uretprobe",
];

/// Syscalls moby's profile allows with CAP_SYS_ADMIN since 20.10 (Linux 6.8's LSM calls).
const ADDED_WITH_SYS_ADMIN: &[&str] =
    &["lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr"];

/// What dockerd 20.10 allows and moby's profile no longer does: io_uring (taken out for its
/// record of kernel vulnerabilities) and socket(2) for every family (now all but AF_ALG and
/// AF_VSOCK, by the three rules of [`socket_rules`]).
const REMOVED_AFTER_20_10: &[&str] = &[
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "socket",
];

/// The rules that replace the unconditional socket(2) of 20.10.
fn socket_rules() -> Vec<Value> {
    vec![
        json!({"action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]}),
        json!({"action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 39, "op": "SCMP_CMP_EQ"}]}),
        json!({"action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_GT"}]}),
    ]
}

/// The cases: docker run options, whether CAP_SYS_ADMIN is among the container's capabilities.
const CASES: &[(&str, &[&str], bool)] = &[
    ("defaults", &[], false),
    ("cap_add_sys_admin", &["--cap-add", "SYS_ADMIN"], true),
    ("cap_add_sys_ptrace", &["--cap-add", "SYS_PTRACE"], false),
    ("cap_drop_all", &["--cap-drop", "ALL"], false),
    ("privileged", &["--privileged"], true),
    (
        "unconfined",
        &["--security-opt", "seccomp=unconfined"],
        false,
    ),
];

struct World {
    refengd: Refengd,
    /// Where the spy runtime leaves dockerd's config.json files.
    spied: PathBuf,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// dockerd is dropped (stopped and cleaned) at the end of the run.
static DOCKERD: Mutex<Option<Dockerd>> = Mutex::new(None);

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let refengd = Refengd::start();
        let dir = refengd.dir().join("rootfs");
        rootfs::busybox(&dir);
        let tar = refengd.dir().join("busybox.tar");
        rootfs::tar(&dir, &tar);
        let _ = fs::remove_dir_all(&dir);
        let tar = tar.to_string_lossy().into_owned();
        refengd.docker(&["import", &tar, "busybox:latest"]);
        // dockerd runs a privileged container's runtime only after writing its bundle, and
        // runc cannot start one on a host whose bounding set lacks a capability (as here): a
        // runtime that keeps a copy of each bundle's config.json and then runs runc shows
        // dockerd's spec whether or not the container starts.
        let spied = refengd.dir().join("dockerd-specs");
        fs::create_dir_all(&spied).unwrap();
        let spy = refengd.dir().join("spy-runtime");
        fs::write(
            &spy,
            format!(
                "#!/bin/sh\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --bundle ]; then \
                 cp \"$a/config.json\" \"{}/$(basename \"$a\").json\"; fi\n  prev=$a\ndone\n\
                 exec runc \"$@\"\n",
                spied.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&spy, fs::Permissions::from_mode(0o755)).unwrap();
        let dockerd = Dockerd::options().runtime("spy", &spy).start();
        dockerd.docker(&["import", &tar, "busybox:latest"]);
        *DOCKERD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dockerd);
        World { refengd, spied }
    })
}

fn with_dockerd<T>(f: impl FnOnce(&Dockerd) -> T) -> T {
    world();
    let guard = DOCKERD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.as_ref().expect("dockerd is up"))
}

/// Every directory below `dir` (a few levels deep) named `name`.
fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            return Some(p);
        }
        if depth > 0 {
            if let Some(found) = find_dir(&p, name, depth - 1) {
                return Some(found);
            }
        }
    }
    None
}

fn seccomp_of(config: &Value) -> Option<Value> {
    config["linux"].get("seccomp").cloned()
}

/// dockerd's `linux.seccomp` for a container run with `opts`; `None` when it wrote none. Its
/// bundle (and config.json) is `<exec-root>/containerd/daemon/io.containerd.runtime.v2.task/
/// moby/<id>/` while the container exists; the spy runtime's copy outlives a failed start.
fn dockerd_seccomp(opts: &[&str]) -> Option<Value> {
    let w = world();
    with_dockerd(|dockerd| {
        let mut args = vec!["run", "-d", "--runtime", "spy"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "sleep", "1000"]);
        let out = dockerd.command(&args).output().unwrap();
        let id = if !out.status.success() {
            // A start that failed: the last container is the one.
            dockerd
                .docker(&["ps", "-alq", "--no-trunc"])
                .trim()
                .to_owned()
        } else {
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let bundle = dockerd
                .dir()
                .join("exec/containerd/daemon/io.containerd.runtime.v2.task/moby")
                .join(&id)
                .join("config.json");
            assert!(
                bundle.exists(),
                "dockerd's bundle is at {}",
                bundle.display()
            );
            id
        };
        let text = fs::read_to_string(w.spied.join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("dockerd's config.json of {id}: {e}"));
        dockerd.docker(&["rm", "-f", &id]);
        seccomp_of(&serde_json::from_str(&text).unwrap())
    })
}

/// refengd's `linux.seccomp` for a container run with `opts`: from the config.json of its
/// bundle (below refengd's exec root) when it starts; from the spec refengd gave
/// refeng-containerd (`ctr containers info`) when the runtime cannot start it on this host.
fn refengd_seccomp(opts: &[&str]) -> Option<Value> {
    let d = &world().refengd;
    let mut args = vec!["create"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    let id = d.docker(&args).trim().to_owned();
    let started = d
        .docker_cmd(&["start", &id])
        .output()
        .unwrap()
        .status
        .success();
    let config: Value = if started {
        let bundle = find_dir(&d.dir().join("exec"), &id, 4)
            .unwrap_or_else(|| panic!("refengd's bundle of {id}"));
        serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap()
    } else {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(d.dir().join("exec/containerd/containerd.sock"))
            .args(["-n", "moby", "containers", "info", &id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        info["Spec"].clone()
    };
    d.docker(&["rm", "-f", &id]);
    seccomp_of(&config)
}

/// A rule's fields but its names, with object keys in order, as one comparable string.
fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: std::collections::BTreeMap<_, _> =
                    m.iter().map(|(k, v)| (k.clone(), sort(v))).collect();
                json!(sorted)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// One entry per (syscall name, rule without its names).
fn entries(seccomp: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rule in seccomp["syscalls"].as_array().into_iter().flatten() {
        let mut rest = rule.clone();
        rest.as_object_mut().unwrap().remove("names");
        for n in rule["names"].as_array().into_iter().flatten() {
            out.insert((n.as_str().unwrap().to_owned(), canonical(&rest)));
        }
    }
    out
}

fn compare(case: &str, opts: &[&str], sys_admin: bool) {
    let want = dockerd_seccomp(opts);
    let got = refengd_seccomp(opts);
    let (want, got) = match (want, got) {
        (None, None) => return,
        (Some(w), Some(g)) => (w, g),
        (w, g) => panic!("{case}: dockerd wrote {w:?}, refengd {g:?}"),
    };
    assert_eq!(got["defaultAction"], want["defaultAction"], "{case}");
    assert_eq!(got["architectures"], want["architectures"], "{case}");
    // 20.10 leaves the errno of the default to the runtime, whose default is EPERM; refengd
    // says it, as moby's profile does now.
    assert_eq!(got["defaultErrnoRet"], 1, "{case}");
    assert!(
        want.get("defaultErrnoRet").is_none() || want["defaultErrnoRet"] == 1,
        "{case}"
    );
    let (w, g) = (entries(&want), entries(&got));
    let allow = canonical(&json!({"action": "SCMP_ACT_ALLOW"}));
    let missing: BTreeSet<_> = w.difference(&g).cloned().collect();
    let expect_missing: BTreeSet<_> = REMOVED_AFTER_20_10
        .iter()
        .map(|n| ((*n).to_owned(), allow.clone()))
        .collect();
    assert_eq!(
        missing, expect_missing,
        "{case}: dockerd allows, refengd does not"
    );
    let extra: BTreeSet<_> = g.difference(&w).cloned().collect();
    let mut expect_extra: BTreeSet<_> = ADDED_AFTER_20_10
        .iter()
        .chain(if sys_admin { ADDED_WITH_SYS_ADMIN } else { &[] })
        .map(|n| ((*n).to_owned(), allow.clone()))
        .filter(|e| !w.contains(e))
        .collect();
    expect_extra.extend(
        socket_rules()
            .iter()
            .map(|r| ("socket".to_owned(), canonical(r))),
    );
    assert_eq!(
        extra, expect_extra,
        "{case}: refengd allows, dockerd does not"
    );
}

fn differential(case: &str) {
    let (_, opts, sys_admin) = CASES.iter().find(|c| c.0 == case).unwrap();
    compare(case, opts, *sys_admin);
}

fn info_lists_seccomp() {
    let got = world().refengd.request("GET", "/v1.41/info", None).json();
    let want = with_dockerd(|d| {
        serde_json::from_str::<Value>(&d.docker(&["info", "--format", "{{json .}}"])).unwrap()
    });
    let seccomp = |v: &Value| -> Vec<Value> {
        v["SecurityOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o.as_str().is_some_and(|s| s.starts_with("name=seccomp")))
            .cloned()
            .collect()
    };
    assert_eq!(seccomp(&got), vec![json!("name=seccomp,profile=default")]);
    assert_eq!(seccomp(&got), seccomp(&want));
}

/// `unshare -r` (a user namespace) in a container: refused by the profile without
/// CAP_SYS_ADMIN, with EPERM; allowed with the capability or without the profile. The same
/// outcome under dockerd.
fn refused_syscalls_fail_with_eperm() {
    let d = &world().refengd;
    for (opts, ok) in [
        (&[][..], false),
        (&["--security-opt", "seccomp=unconfined"][..], true),
        (&["--cap-add", "SYS_ADMIN"][..], true),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "unshare", "-r", "true"]);
        let got = d.docker_cmd(&args).output().unwrap();
        let want = with_dockerd(|dd| dd.command(&args).output().unwrap());
        let err = String::from_utf8_lossy(&got.stderr);
        assert_eq!(got.status.success(), ok, "{opts:?}: {err}");
        assert_eq!(got.status.code(), want.status.code(), "{opts:?}");
        if !ok {
            assert!(err.contains("Operation not permitted"), "{opts:?}: {err}");
            assert_eq!(err, String::from_utf8_lossy(&want.stderr), "{opts:?}");
        }
    }
    // An exec'd process runs under the container's filter.
    let id = d
        .docker(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    let exec = d
        .docker_cmd(&["exec", &id, "unshare", "-r", "true"])
        .output()
        .unwrap();
    d.docker(&["rm", "-f", &id]);
    assert!(!exec.status.success());
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    // A custom profile is fitted to the container's capabilities too: a rule for
    // CAP_SYS_ADMIN applies only to a container that has it.
    let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["unshare"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
    // The CLI reads the profile from a file and sends its text.
    let file = d.dir().join("unshare-profile.json");
    fs::write(&file, profile).unwrap();
    let sec = format!("seccomp={}", file.display());
    for (cap, ok) in [(&[][..], false), (&["--cap-add", "SYS_ADMIN"][..], true)] {
        let mut args = vec!["run", "--rm", "--security-opt", &sec];
        args.extend_from_slice(cap);
        args.extend_from_slice(&["busybox", "unshare", "-r", "true"]);
        let got = d.docker_cmd(&args).output().unwrap();
        assert_eq!(
            got.status.success(),
            ok,
            "{cap:?}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
    }
}

/// A build's `RUN` steps run under the default profile on both engines (dockerd's classic
/// builder runs them as ordinary containers): the filter is on, and unshare is refused.
fn build_steps_run_under_the_profile() {
    let d = &world().refengd;
    let dir = d.dir().join("build-context");
    fs::create_dir_all(&dir).unwrap();
    let ctx = dir.to_string_lossy().into_owned();
    for (run, ok) in [
        // Seccomp mode 2: a filter is loaded.
        ("grep -q '^Seccomp:[[:space:]]*2' /proc/self/status", true),
        ("unshare -r true", false),
    ] {
        fs::write(dir.join("Dockerfile"), format!("FROM busybox\nRUN {run}\n")).unwrap();
        let args = [
            "build",
            "--network",
            "none",
            "--no-cache",
            "-t",
            "seccomp-step",
            &ctx,
        ];
        let got = d
            .docker_cmd(&args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        let want = with_dockerd(|dd| dd.command(&args).output().unwrap());
        let (g, w) = (
            String::from_utf8_lossy(&got.stdout).into_owned()
                + &String::from_utf8_lossy(&got.stderr),
            String::from_utf8_lossy(&want.stdout).into_owned()
                + &String::from_utf8_lossy(&want.stderr),
        );
        assert_eq!(got.status.success(), ok, "{run}: {g}");
        assert_eq!(want.status.success(), ok, "dockerd, {run}: {w}");
        if !ok {
            assert!(g.contains("Operation not permitted"), "{run}: {g}");
            assert!(w.contains("Operation not permitted"), "dockerd, {run}: {w}");
        }
    }
    let _ = d.docker_cmd(&["rmi", "seccomp-step"]).output();
    with_dockerd(|dd| {
        let _ = dd.command(&["rmi", "seccomp-step"]).output();
    });
}

/// daemon.json `seccomp-profile` names the profile of containers that name none: `/info`
/// shows its path, and a container that names `seccomp=unconfined` still gets none.
fn daemon_json_seccomp_profile_is_the_default() {
    let dir = tempfile::Builder::new()
        .prefix("refeng-seccomp-")
        .tempdir_in("/tmp")
        .unwrap();
    let profile = dir.path().join("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["unshare"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let d = Refengd::start_with(engine_support::Options {
        daemon_json: Some(json!({"seccomp-profile": profile}).to_string()),
        ..engine_support::Options::default()
    });
    let tar = world().refengd.dir().join("busybox.tar");
    d.docker(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    let info = d.request("GET", "/v1.41/info", None).json();
    assert_eq!(
        info["SecurityOptions"],
        json!([format!("name=seccomp,profile={}", profile.display())])
    );
    let run = |opts: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "unshare -r true && grep Seccomp: /proc/self/status",
        ]);
        d.docker_cmd(&args).output().unwrap()
    };
    let refused = run(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let free = run(&["--security-opt", "seccomp=unconfined"]);
    assert!(
        free.status.success(),
        "{}",
        String::from_utf8_lossy(&free.stderr)
    );
    let status = String::from_utf8_lossy(&free.stdout).into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "0"]),
        "{status}"
    );
    d.shutdown();
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    engine_support::run(
        &[
            ("differential_defaults", &|| differential("defaults")),
            ("differential_cap_add_sys_admin", &|| {
                differential("cap_add_sys_admin");
            }),
            ("differential_cap_add_sys_ptrace", &|| {
                differential("cap_add_sys_ptrace");
            }),
            ("differential_cap_drop_all", &|| {
                differential("cap_drop_all")
            }),
            ("differential_privileged", &|| differential("privileged")),
            ("differential_unconfined", &|| differential("unconfined")),
            ("info_lists_seccomp_as_dockerd", &info_lists_seccomp),
            (
                "refused_syscalls_fail_with_eperm_unless_unconfined_or_capable",
                &refused_syscalls_fail_with_eperm,
            ),
            (
                "build_steps_run_under_the_profile",
                &build_steps_run_under_the_profile,
            ),
            (
                "daemon_json_seccomp_profile_is_the_default",
                &daemon_json_seccomp_profile_is_the_default,
            ),
        ],
        || {
            drop(
                DOCKERD
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
            );
            if let Some(w) = WORLD.get() {
                w.refengd.shutdown();
            }
        },
    );
}
