//! Test support for the integration suites: which runtime is under test, busybox bundles in
//! temporary folders, and a container guard that leaves no process, mount, cgroup or state behind,
//! also when the test fails.
//!
//! Every container gets a unique id (`<name>-<test pid>-<counter>`), its own `--root` state folder
//! and its own cgroup (`/refeng-test/<id>`), so tests run in parallel without seeing each other.
// Each test crate uses a different subset of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../rootfs/mod.rs"]
pub mod rootfs;

/// runc's `runc spec` output (runc 1.1), the default every bundle starts from. Embedded rather
/// than generated with the runtime's `spec` so that the bundle does not depend on the code under test.
pub const DEFAULT_SPEC: &str = include_str!("runc-default-spec.json");

/// How long one runtime command may take before the test kills it and fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime binary under test: `$REFENG_RUNTIME` if set (e.g. `/usr/sbin/runc` to check the
/// tests themselves against a reference runtime), else the `refeng-runc` built by cargo.
pub fn runtime_bin() -> PathBuf {
    std::env::var_os("REFENG_RUNTIME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_refeng-runc")))
}

/// Whether the runtime under test is refeng-runc (its error wording is asserted only then).
pub fn is_refeng() -> bool {
    runtime_bin()
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.starts_with("refeng"))
}

/// Ends the calling test early because it does not apply to the runtime under test, and says
/// so: `skipped <test>: <reason>` on the test binary's stderr, visible in every run. libtest has
/// no run-time skip, and it captures `eprintln!` of a passing test, so the line is written to the
/// process's stderr directly (only the print macros are captured).
///
/// Only for what the setup decides (`REFENG_RUNTIME` naming another runtime); a missing tool
/// that .ci/setup installs is a failure, never a skip.
#[allow(unused_macros)]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::common::report_skip(&format!($($reason)+));
        return;
    }};
}
#[allow(unused_imports)]
pub(crate) use skip;

/// The line [`skip!`] writes.
pub fn report_skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

/// Ends the calling test through [`skip!`] unless the runtime under test is refeng-runc.
#[allow(unused_macros)]
macro_rules! require_refeng {
    ($why:expr) => {
        if !$crate::common::is_refeng() {
            $crate::common::skip!(
                "{} is not refeng-runc: {}",
                $crate::common::runtime_bin().display(),
                $why
            );
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_refeng;

/// Fails the test early and clearly when not root: every test here builds real containers.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the runtime integration tests build real containers and must run as root"
    );
}

/// A name unique within this test run and across parallel test processes.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until `cond` holds, polling every 20ms; false when `timeout` passed first.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a finished command left: exit code (128+N when killed by signal N), stdout and stderr.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit code; 128+N when the process was killed by signal N.
    pub code: i32,
    /// Everything written to stdout (the container's too, for a foreground `run`).
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl CmdOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the full output unless the command exited 0; returns self for chaining.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed: {self:#?}");
        self
    }

    /// Panics unless the command failed; returns self so the caller can check the message.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self:#?}");
        self
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// A child process this test started, with its output going to files (not pipes: a container
/// inherits the runtime's stdio and may keep a pipe open long after the runtime has exited).
/// Dropping it kills that one process, by pid, if it still runs.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    what: String,
}

impl Spawned {
    /// Starts `cmd` with stdin from /dev/null and stdout/stderr into files under `dir`.
    pub fn start(mut cmd: Command, dir: &Path) -> Self {
        let n = unique("cmd");
        let out = dir.join(format!("{n}.out"));
        let err = dir.join(format!("{n}.err"));
        let what = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("create stdout file"))
            .stderr(fs::File::create(&err).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        Spawned {
            child,
            out,
            err,
            what,
        }
    }

    /// The pid of the started process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process; on timeout kills it (only it, by pid) and fails the test.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> CmdOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait().expect("wait for child") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} timed out after {timeout:?}; stdout: {:?}; stderr: {:?}",
                        self.what,
                        fs::read_to_string(&self.out).unwrap_or_default(),
                        fs::read_to_string(&self.err).unwrap_or_default()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        CmdOutput {
            code: exit_code(status),
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A busybox bundle in a temporary folder, built up with the setters below and turned into a
/// [`Container`] by [`Bundle::container`].
///
/// Layout of the temporary folder: `bundle/` (config.json, rootfs/), `state/` (the runtime's
/// `--root`), `shared/` (bind-mounted at `/shared` in the container by [`Bundle::share`]) and
/// `out/` (the runtime's stdout/stderr files).
#[derive(Debug)]
pub struct Bundle {
    tmp: tempfile::TempDir,
    id: String,
    spec: Value,
    state_root: PathBuf,
}

impl Bundle {
    /// A bundle with a busybox rootfs and runc's default spec, changed to: no terminal, args
    /// `true`, hostname `refeng-test`, and cgroupsPath `/refeng-test/<id>`.
    pub fn new(name: &str) -> Self {
        require_root();
        let id = unique(name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("refeng-test-{id}-"))
            .tempdir()
            .expect("create temp dir");
        for dir in ["bundle", "state", "shared", "out"] {
            fs::create_dir_all(tmp.path().join(dir)).expect("create bundle dirs");
        }
        // The container's users (uid 1000) write here too.
        fs::set_permissions(tmp.path().join("shared"), fs::Permissions::from_mode(0o777))
            .expect("chmod shared");
        let rootfs = tmp.path().join("bundle/rootfs");
        rootfs::busybox(&rootfs);
        fs::create_dir(rootfs.join("shared")).expect("create /shared mount point");
        let mut spec: Value = serde_json::from_str(DEFAULT_SPEC).expect("default spec parses");
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["true"]);
        spec["hostname"] = json!("refeng-test");
        spec["linux"]["cgroupsPath"] = json!(format!("/refeng-test/{id}"));
        let state_root = tmp.path().join("state");
        Bundle {
            tmp,
            id,
            spec,
            state_root,
        }
    }

    /// The container id this bundle will be created under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The temporary folder holding everything of this test.
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// The bundle directory (config.json and rootfs/).
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }

    /// The root filesystem on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }

    /// The host side of `/shared` (see [`Bundle::share`]).
    pub fn shared(&self) -> PathBuf {
        self.tmp.path().join("shared")
    }

    /// The runtime's `--root` for this container.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// The container's cgroup path below each hierarchy's root.
    pub fn cgroup_path(&self) -> String {
        format!("/refeng-test/{}", self.id)
    }

    /// The spec as JSON, for changes no setter covers.
    pub fn spec_mut(&mut self) -> &mut Value {
        &mut self.spec
    }

    /// The spec as JSON.
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// Uses another `--root` (to put several containers in one state folder for `list`).
    pub fn with_state_root(mut self, root: &Path) -> Self {
        self.state_root = root.to_path_buf();
        self
    }

    /// Sets `process.args`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.spec["process"]["args"] = json!(args);
        self
    }

    /// Runs `script` with the container's `/bin/sh -c`.
    pub fn sh(self, script: &str) -> Self {
        self.args(&["sh", "-c", script])
    }

    /// Appends to `process.env`.
    pub fn env(mut self, vars: &[&str]) -> Self {
        let env = self.spec["process"]["env"]
            .as_array_mut()
            .expect("process.env is an array");
        env.extend(vars.iter().map(|v| json!(v)));
        self
    }

    /// Sets `process.cwd`.
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.spec["process"]["cwd"] = json!(cwd);
        self
    }

    /// Sets `hostname`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.spec["hostname"] = json!(name);
        self
    }

    /// Sets `domainname`.
    pub fn domainname(mut self, name: &str) -> Self {
        self.spec["domainname"] = json!(name);
        self
    }

    /// Sets `process.user`.
    pub fn user(mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> Self {
        let mut user = json!({ "uid": uid, "gid": gid });
        if !additional_gids.is_empty() {
            user["additionalGids"] = json!(additional_gids);
        }
        self.spec["process"]["user"] = user;
        self
    }

    /// Sets `process.user.umask`.
    pub fn umask(mut self, umask: u32) -> Self {
        self.spec["process"]["user"]["umask"] = json!(umask);
        self
    }

    /// Sets (replacing one of the same type) an entry of `process.rlimits`.
    pub fn rlimit(mut self, kind: &str, soft: u64, hard: u64) -> Self {
        let rlimits = self.spec["process"]["rlimits"]
            .as_array_mut()
            .expect("process.rlimits is an array");
        rlimits.retain(|r| r["type"] != kind);
        rlimits.push(json!({ "type": kind, "soft": soft, "hard": hard }));
        self
    }

    /// Sets all five capability sets of `process.capabilities`.
    pub fn caps(mut self, sets: &CapSets) -> Self {
        self.spec["process"]["capabilities"] = json!({
            "bounding": sets.bounding,
            "effective": sets.effective,
            "permitted": sets.permitted,
            "inheritable": sets.inheritable,
            "ambient": sets.ambient,
        });
        self
    }

    /// Sets `process.noNewPrivileges`.
    pub fn no_new_privileges(mut self, on: bool) -> Self {
        self.spec["process"]["noNewPrivileges"] = json!(on);
        self
    }

    /// Sets `process.oomScoreAdj`.
    pub fn oom_score_adj(mut self, adj: i32) -> Self {
        self.spec["process"]["oomScoreAdj"] = json!(adj);
        self
    }

    /// Sets `process.terminal`.
    pub fn terminal(mut self, on: bool) -> Self {
        self.spec["process"]["terminal"] = json!(on);
        self
    }

    /// Sets `root.readonly`.
    pub fn readonly_root(mut self, on: bool) -> Self {
        self.spec["root"]["readonly"] = json!(on);
        self
    }

    /// Appends a `mounts` entry; its destination is created in the rootfs first.
    pub fn mount(mut self, mount: Value) -> Self {
        if let Some(dest) = mount["destination"].as_str() {
            let _ = fs::create_dir_all(self.rootfs().join(dest.trim_start_matches('/')));
        }
        self.spec["mounts"]
            .as_array_mut()
            .expect("mounts is an array")
            .push(mount);
        self
    }

    /// Bind-mounts the host folder [`Bundle::shared`] read-write at `/shared`: how a test reads
    /// files the container (or an in-container hook) wrote, and how the container says "ready".
    pub fn share(self) -> Self {
        let source = self.shared().to_string_lossy().into_owned();
        self.mount(json!({
            "destination": "/shared",
            "type": "bind",
            "source": source,
            "options": ["rbind", "rw"],
        }))
    }

    /// Merges `resources` (an object) into `linux.resources`.
    pub fn resources(mut self, resources: Value) -> Self {
        let target = self.spec["linux"]["resources"]
            .as_object_mut()
            .expect("linux.resources is an object");
        for (k, v) in resources.as_object().expect("resources is an object") {
            target.insert(k.clone(), v.clone());
        }
        self
    }

    /// Sets `hooks`.
    pub fn hooks(mut self, hooks: Value) -> Self {
        self.spec["hooks"] = hooks;
        self
    }

    /// Replaces `linux.namespaces` with one namespace of each given type.
    pub fn namespaces(mut self, types: &[&str]) -> Self {
        self.spec["linux"]["namespaces"] = types.iter().map(|t| json!({ "type": t })).collect();
        self
    }

    /// Appends a namespace entry (with `path` or mappings if the caller needs them).
    pub fn add_namespace(mut self, ns: Value) -> Self {
        self.spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces is an array")
            .push(ns);
        self
    }

    /// Sets `linux.uidMappings` and `linux.gidMappings` to one range each.
    pub fn id_mappings(mut self, container_id: u32, host_id: u32, size: u32) -> Self {
        let m = json!([{ "containerID": container_id, "hostID": host_id, "size": size }]);
        self.spec["linux"]["uidMappings"] = m.clone();
        self.spec["linux"]["gidMappings"] = m;
        self
    }

    /// Sets one `linux.sysctl` key.
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        if !self.spec["linux"]["sysctl"].is_object() {
            self.spec["linux"]["sysctl"] = json!({});
        }
        self.spec["linux"]["sysctl"][key] = json!(value);
        self
    }

    /// Appends a `linux.devices` entry.
    pub fn device(mut self, device: Value) -> Self {
        if !self.spec["linux"]["devices"].is_array() {
            self.spec["linux"]["devices"] = json!([]);
        }
        self.spec["linux"]["devices"]
            .as_array_mut()
            .expect("linux.devices is an array")
            .push(device);
        self
    }

    /// Writes config.json (checked against oci-spec's types first, so a typo in a test fails
    /// here and not as a confusing runtime error) and hands the bundle to a [`Container`] guard.
    #[track_caller]
    pub fn container(self) -> Container {
        let text = serde_json::to_string_pretty(&self.spec).expect("serialize spec");
        if let Err(e) = serde_json::from_str::<oci_spec::runtime::Spec>(&text) {
            panic!("the test's config.json is not a valid runtime spec: {e}\n{text}");
        }
        fs::write(self.dir().join("config.json"), text).expect("write config.json");
        Container { bundle: self }
    }
}

/// The five capability sets of a process, by name (`CAP_KILL`).
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    /// `bounding`
    pub bounding: Vec<&'static str>,
    /// `effective`
    pub effective: Vec<&'static str>,
    /// `permitted`
    pub permitted: Vec<&'static str>,
    /// `inheritable`
    pub inheritable: Vec<&'static str>,
    /// `ambient`
    pub ambient: Vec<&'static str>,
}

/// The kernel's bitmask (as in /proc/<pid>/status) of the named capabilities.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |mask, name| {
        let cap: caps::Capability = name
            .parse()
            .unwrap_or_else(|_| panic!("unknown capability {name}"));
        mask | (1u64 << cap.index())
    })
}

/// The value of `key:` in a /proc/<pid>/status text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// A container of a bundle. Dropping it runs `delete --force`, removes its cgroup directories,
/// detaches any mount left below its temporary folder and removes that folder.
#[derive(Debug)]
pub struct Container {
    bundle: Bundle,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    /// The bundle this container was made from.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// A `Command` for the runtime with this container's `--root`, arguments after it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(runtime_bin());
        cmd.arg("--root").arg(self.bundle.state_root()).args(args);
        cmd
    }

    /// Starts the runtime with `args` in the background.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned::start(self.command(args), &self.bundle.tmp().join("out"))
    }

    /// Runs the runtime with `args` and waits (at most [`DEFAULT_TIMEOUT`]).
    #[track_caller]
    pub fn runtime(&self, args: &[&str]) -> CmdOutput {
        self.spawn(args).wait(DEFAULT_TIMEOUT)
    }

    /// `create <id> --bundle <dir>` plus `extra` flags.
    #[track_caller]
    pub fn create_with(&self, extra: &[&str]) -> CmdOutput {
        let dir = self.bundle.dir();
        let mut args = vec![
            "create",
            self.id(),
            "--bundle",
            dir.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra);
        self.runtime(&args)
    }

    /// `create`, which must succeed.
    #[track_caller]
    pub fn create(&self) -> CmdOutput {
        self.create_with(&[]).ok()
    }

    /// `start`, which must succeed.
    #[track_caller]
    pub fn start(&self) -> CmdOutput {
        self.runtime(&["start", self.id()]).ok()
    }

    /// `state` as JSON, which must succeed.
    #[track_caller]
    pub fn state(&self) -> Value {
        let out = self.runtime(&["state", self.id()]).ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}): {out:?}"))
    }

    /// The `status` field of `state`.
    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("status is a string")
            .to_owned()
    }

    /// Waits until `state` reports `status`; fails the test after `timeout`.
    #[track_caller]
    pub fn wait_for_status(&self, status: &str, timeout: Duration) {
        let mut last = String::new();
        let reached = wait_until(timeout, || {
            last = self.status();
            last == status
        });
        assert!(
            reached,
            "{} did not become {status} in {timeout:?}; last: {last}",
            self.id()
        );
    }

    /// `kill <id> <signal>`.
    #[track_caller]
    pub fn kill(&self, signal: &str) -> CmdOutput {
        self.runtime(&["kill", self.id(), signal])
    }

    /// `delete <id>`.
    #[track_caller]
    pub fn delete(&self) -> CmdOutput {
        self.runtime(&["delete", self.id()])
    }

    /// `run <id> --bundle <dir>` plus `extra` flags, started in the background.
    pub fn spawn_run(&self, extra: &[&str]) -> Spawned {
        let dir = self.bundle.dir();
        let mut args = vec![
            "run",
            self.id(),
            "--bundle",
            dir.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra);
        self.spawn(&args)
    }

    /// Foreground `run` with `timeout`: the container's exit code, stdout and stderr.
    #[track_caller]
    pub fn run_with_timeout(&self, timeout: Duration) -> (i32, String, String) {
        let out = self.spawn_run(&[]).wait(timeout);
        (out.code, out.stdout, out.stderr)
    }

    /// Foreground `run`: the container's exit code, stdout and stderr.
    #[track_caller]
    pub fn run(&self) -> (i32, String, String) {
        self.run_with_timeout(DEFAULT_TIMEOUT)
    }

    /// Waits until the container created `name` in `/shared` (see [`Bundle::share`]).
    #[track_caller]
    pub fn wait_for_shared_file(&self, name: &str, timeout: Duration) {
        let path = self.bundle.shared().join(name);
        assert!(
            wait_until(timeout, || path.exists()),
            "{} did not appear in {timeout:?}",
            path.display()
        );
    }

    fn cleanup_cgroups(&self) {
        let rel = Path::new("refeng-test").join(self.id());
        // v2-only host: /sys/fs/cgroup itself is the hierarchy; v1/hybrid: one folder per controller.
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path()));
        }
        for root in roots {
            let dir = root.join(&rel);
            for _ in 0..50 {
                if !dir.is_dir() {
                    break;
                }
                // Whatever is still in this test's own cgroup was started by this test's container.
                if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                if fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The shared parent `refeng-test` stays: removing it here races with a parallel test
            // whose runtime has just made it and is about to make its own child. `.ci/run`
            // removes it once the suites are done.
        }
    }

    fn cleanup_mounts(&self) {
        let tmp = self.bundle.tmp();
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut targets: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape_mountinfo(p)))
            .filter(|p| p.starts_with(tmp))
            .collect();
        targets.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for target in targets {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Undoes the octal escapes (`\040` for space) of /proc/self/mountinfo paths.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .spawn(&["delete", "--force", self.id()])
            .wait_quietly(DEFAULT_TIMEOUT);
        self.cleanup_cgroups();
        self.cleanup_mounts();
        // The TempDir field removes the folder after this.
    }
}

impl Spawned {
    /// Like [`Spawned::wait`] but never panics (for use in `Drop`): None on timeout.
    fn wait_quietly(mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(exit_code(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None, // Drop kills it.
            }
        }
    }
}

/// Foreground `run` of `bundle`: the container's exit code, stdout and stderr. The container
/// is deleted and everything it left is cleaned up before this returns.
#[track_caller]
pub fn run(bundle: Bundle) -> (i32, String, String) {
    bundle.container().run()
}

/// Appends `line` to `path` (for tests that keep their own logs).
pub fn append_line(path: &Path, line: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    writeln!(f, "{line}").expect("append");
}
