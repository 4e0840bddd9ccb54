//! refeng-shim under the real containerd: a private containerd (temporary root, state and
//! sockets) runs busybox containers from a directory rootfs through
//! `--runtime io.containerd.refeng.v2`, driven with `ctr` like a user would. Needs root and
//! Debian's `containerd` and `busybox-static` (runc for the runc-driven tests), which .ci/setup
//! installs; without them the tests fail and name the package. `REFENG_TEST_SHIM=PATH` runs them against another build of the
//! shim (the static musl one benches/shim_rss.sh builds, as installed); the file must be named
//! `containerd-shim-refeng-v2`, the name the tests find the serving shims by.

mod rootfs;
mod shims;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNTIME: &str = "io.containerd.refeng.v2";
const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-refeng-v2");
/// Runs the suite against another build of the shim, e.g. the static musl one that
/// benches/shim_rss.sh measures and that is meant to be installed.
const SHIM_ENV: &str = "REFENG_TEST_SHIM";
const REFENG_RUNC: &str = env!("CARGO_BIN_EXE_refeng-runc");
const RUNC: &str = "/usr/sbin/runc";

fn missing_prerequisite(needs_runc: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    let mut needed = vec!["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/busybox"];
    if needs_runc {
        needed.push(RUNC);
    }
    needed
        .into_iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is missing (apt-get install containerd busybox-static runc)"))
}

/// Fails the test when a prerequisite is missing: CI installs them all (.ci/setup), and a test
/// that passes without running would hide a broken install.
macro_rules! require {
    ($needs_runc:expr) => {
        if let Some(why) = missing_prerequisite($needs_runc) {
            panic!("cannot run: {why}");
        }
    };
}

/// Which OCI runtime the shim drives.
#[derive(Clone, Copy)]
enum Oci {
    Refeng,
    Runc,
}

/// A private containerd and everything the test made; dropping it removes all of it.
struct Env {
    dir: tempfile::TempDir,
    containerd: Option<std::process::Child>,
    rootfs: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shim")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let shim = std::env::var_os(SHIM_ENV).map_or_else(|| PathBuf::from(SHIM), PathBuf::from);
        symlink(shim, d.join("bin/containerd-shim-refeng-v2")).unwrap();
        symlink(REFENG_RUNC, d.join("bin/refeng-runc")).unwrap();
        let rootfs = d.join("rootfs");
        rootfs::busybox(&rootfs);
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n",
                d.display()
            ),
        )
        .unwrap();
        for (name, binary) in [("refeng.toml", "refeng-runc"), ("runc.toml", RUNC)] {
            std::fs::write(
                d.join(name),
                format!(
                    "BinaryName = \"{binary}\"\nRoot = \"{}/runtime-{name}\"\n",
                    d.display()
                ),
            )
            .unwrap();
        }
        let mut env = Self {
            dir,
            containerd: None,
            rootfs,
        };
        env.start_containerd();
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn start_containerd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("containerd.log"))
            .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.path().join("config.toml"))
            .env("PATH", self.path_var())
            .env("REFENG_SHIM_SOCKET_DIR", self.path().join("s"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.containerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    fn kill_containerd(&mut self) {
        if let Some(mut child) = self.containerd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.path().join("c.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn config(&self, oci: Oci) -> String {
        let name = match oci {
            Oci::Refeng => "refeng.toml",
            Oci::Runc => "runc.toml",
        };
        self.path().join(name).to_string_lossy().into_owned()
    }

    /// `ctr run` with the shim, the busybox rootfs and `PATH=/bin`.
    fn run(&self, oci: Oci, extra: &[&str], id: &str, cmd: &[&str]) -> Output {
        let config = self.config(oci);
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "--runtime",
            RUNTIME,
            "--runtime-config-path",
            &config,
            "--env",
            "PATH=/bin",
        ];
        args.extend_from_slice(extra);
        args.extend(["--rootfs", &rootfs, id]);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    fn task_status(&self, id: &str) -> Option<String> {
        self.ctr_ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.task_status(id);
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{id} is {got:?}, not {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The shims serving this containerd (their command line names its socket).
    fn shim_pids(&self) -> Vec<i32> {
        let address = self.path().join("c.sock").to_string_lossy().into_owned();
        shims::serving(&address, "containerd-shim-refeng-v2")
    }

    /// Removes one task and container the way a user would.
    fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.task_status(id).is_some_and(|s| s != "STOPPED") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.ctr_ok(&["task", "rm", id]);
        self.ctr_ok(&["container", "rm", id]);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Containers first (they outlive everything else), then the shims we caused, then
        // containerd; all by pid or by the runtime's own state under our temp dir.
        for (binary, name) in [(REFENG_RUNC, "refeng.toml"), (RUNC, "runc.toml")] {
            let root = self.path().join(format!("runtime-{name}"));
            if let Ok(entries) = std::fs::read_dir(&root) {
                for entry in entries.flatten() {
                    let _ = Command::new(binary)
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "--force"])
                        .arg(entry.file_name())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.kill_containerd();
        // The runtimes remove each container's cgroup; the namespace's parent (`/default`, from
        // ctr's cgroupsPath) is left, as with runc. rmdir only succeeds while it is empty, so a
        // cgroup still in use by anyone else is never touched.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join("default"));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/default");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_rm_prints_output_and_returns_the_exit_code() {
    require!(false);
    let env = Env::new();
    let out = env.run(
        Oci::Refeng,
        &["--rm"],
        "out1",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(env.task_status("out1"), None);
    assert!(env.ctr_ok(&["container", "ls", "-q"]).trim().is_empty());
    assert!(env.shim_pids().is_empty(), "the shim exits after delete");
}

#[test]
fn detached_task_metrics_kill_and_delete() {
    require!(false);
    let env = Env::new();
    let out = env.run(Oci::Refeng, &["-d"], "det1", &["sleep", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_status("det1", "RUNNING");
    assert_eq!(env.shim_pids().len(), 1);
    let metrics = env.ctr_ok(&["task", "metrics", "det1"]);
    assert!(metrics.contains("pids.current"), "{metrics}");
    env.ctr_ok(&["task", "kill", "-s", "KILL", "det1"]);
    env.wait_status("det1", "STOPPED");
    env.ctr_ok(&["task", "rm", "det1"]);
    env.ctr_ok(&["container", "rm", "det1"]);
    assert_eq!(env.task_status("det1"), None);
    assert!(env.shim_pids().is_empty());
}

/// exec, pause/resume, ps and update, with refeng-runc as the shim's runtime.
#[test]
fn exec_pause_resume_ps_update() {
    exec_pause_resume_ps_update_with(Oci::Refeng);
}

/// The same shim drives runc (runtime option BinaryName) through the same calls.
#[test]
fn exec_pause_resume_ps_update_with_runc_as_binary_name() {
    exec_pause_resume_ps_update_with(Oci::Runc);
}

fn exec_pause_resume_ps_update_with(oci: Oci) {
    require!(matches!(oci, Oci::Runc));
    // ctr puts a task's cgroup at /default/<id>: the two runtimes' tests run in parallel, so
    // each needs an id of its own.
    let id = match oci {
        Oci::Refeng => "ex-refeng",
        Oci::Runc => "ex-runc",
    };
    let env = Env::new();
    let out = env.run(oci, &["-d"], id, &["sleep", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_status(id, "RUNNING");
    let exec = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(stdout(&exec), "from-exec\n", "{exec:?}");
    assert_eq!(exec.status.code(), Some(5));
    env.ctr_ok(&["task", "pause", id]);
    assert_eq!(env.task_status(id).as_deref(), Some("PAUSED"));
    env.ctr_ok(&["task", "resume", id]);
    assert_eq!(env.task_status(id).as_deref(), Some("RUNNING"));
    let ps = env.ctr_ok(&["task", "ps", id]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    // ctr 1.6 has no `task update`: call the shim's Update over its ttrpc socket, as containerd
    // would, with runtime-spec LinuxResources JSON (containerd's typeurl for non-proto types).
    let address = std::fs::read_to_string(env.path().join(format!(
        "state/io.containerd.runtime.v2.task/default/{id}/address"
    )))
    .unwrap();
    let client = containerd_shim_protos::TaskClient::new(
        containerd_shim_protos::ttrpc::Client::connect(address.trim()).unwrap(),
    );
    let req = containerd_shim_protos::api::UpdateTaskRequest {
        id: id.into(),
        resources: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: br#"{"memory":{"limit":67108864}}"#.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .update(
            containerd_shim_protos::ttrpc::context::with_timeout(10_000_000_000),
            &req,
        )
        .unwrap();
    let metrics = env.ctr_ok(&["task", "metrics", id]);
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("limit") && l.contains("67108864")),
        "{metrics}"
    );
    env.remove(id);
    assert!(env.shim_pids().is_empty());
}

/// A terminal process gets a pty from the console socket. The pty's name is checked through a
/// file in the rootfs: what `script(1)` relays of the output raced in one of ~10 parallel runs
/// (not reproduced in 48 sequential runs; see the report), so it is not what this test asserts.
#[test]
fn terminal_task_gets_a_pty() {
    require!(false);
    // script(1) is util-linux's, in Debian's essential bsdutils: missing means a broken install.
    assert!(
        Path::new("/usr/bin/script").exists(),
        "/usr/bin/script is missing: apt-get install bsdutils"
    );
    let env = Env::new();
    let ctr = format!(
        "ctr -a {}/c.sock run --rm -t --runtime {RUNTIME} --runtime-config-path {} --env PATH=/bin --rootfs {} tty1 sh -c 'tty > /tmp/ttyname; tty'",
        env.path().display(),
        env.config(Oci::Refeng),
        env.rootfs.display()
    );
    let out = Command::new("script")
        .args(["-qec", &ctr, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let name = std::fs::read_to_string(env.rootfs.join("tmp/ttyname")).unwrap();
    assert!(name.starts_with("/dev/pts/"), "{name:?} {out:?}");
    assert!(env.shim_pids().is_empty());
}

/// containerd is killed while a container runs; the shim keeps it, containerd re-attaches on
/// restart, and exec still works. The exit that happens while containerd is away reaches it.
#[test]
fn containerd_restart_keeps_running_task() {
    require!(true);
    let mut env = Env::new();
    for (id, oci) in [("keep1", Oci::Runc), ("gone1", Oci::Refeng)] {
        let out = env.run(oci, &["-d"], id, &["sleep", "1000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.wait_status(id, "RUNNING");
    }
    let shims = env.shim_pids();
    assert_eq!(shims.len(), 2);
    env.kill_containerd();
    // While containerd is away, one container's process dies.
    let pid: i32 = std::fs::read_to_string(
        env.path()
            .join("state/io.containerd.runtime.v2.task/default/gone1/init.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.start_containerd();
    assert_eq!(env.task_status("keep1").as_deref(), Some("RUNNING"));
    env.wait_status("gone1", "STOPPED");
    assert_eq!(
        env.shim_pids(),
        shims,
        "the same shims serve after the restart"
    );
    let exec = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        "keep1",
        "echo",
        "again",
    ]);
    assert_eq!(stdout(&exec), "again\n", "{exec:?}");
    assert_eq!(exec.status.code(), Some(0));
    env.remove("keep1");
    env.remove("gone1");
    assert!(env.shim_pids().is_empty());
}

/// A container that outgrows its memory limit is OOM-killed, and the shim publishes /tasks/oom.
#[test]
fn oom_kill_is_published() {
    require!(false);
    let env = Env::new();
    let events_file = env.path().join("events.txt");
    let mut events = Command::new("ctr")
        .arg("-a")
        .arg(env.path().join("c.sock"))
        .arg("events")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&events_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = env.run(
        Oci::Refeng,
        &["--rm", "--memory-limit", "33554432"],
        "oom1",
        &["sh", "-c", "x=0123456789; while :; do x=$x$x; done"],
    );
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(&events_file).unwrap_or_default();
        if seen.contains("/tasks/oom") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(seen.contains("/tasks/oom"), "{seen}");
    assert!(seen.contains(r#""container_id":"oom1""#), "{seen}");
}
