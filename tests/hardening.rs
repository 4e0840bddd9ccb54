//! Regression tests for the container-escape classes runc has had CVEs for; each fails on a
//! runtime that is vulnerable:
//! - CVE-2019-5736: overwriting the runtime binary through /proc/<pid>/exe;
//! - CVE-2024-21626: a leaked host descriptor, and a cwd reaching the host through /proc/self/fd;
//! - CVE-2019-16884 / CVE-2019-19921: mount targets, /proc and masked paths that are symlinks;
//! - a memory hog is OOM-killed and `events` reports it, while the host stays up.

mod peers;
mod rootfs;

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use peers::{runtime_bin, scratch};

/// A bundle in a scratch directory with its own state root and cgroup, removed on drop.
struct Bundle {
    dir: PathBuf,
    runtime: PathBuf,
    ids: Vec<String>,
    cgroup: String,
}

impl Bundle {
    fn new(name: &str) -> Self {
        Self::with_runtime(name, runtime_bin())
    }

    fn with_runtime(name: &str, runtime: PathBuf) -> Self {
        let dir = scratch(&format!("hardening-{name}"));
        rootfs::busybox(&dir.join("rootfs"));
        let cgroup = format!("/refeng-test-hardening-{}-{name}", std::process::id());
        let b = Self {
            dir,
            runtime,
            ids: Vec::new(),
            cgroup,
        };
        let out = b.runtime(&["spec", "--bundle", b.dir.to_str().unwrap()]);
        assert!(out.status.success(), "spec: {out:?}");
        b.edit(|c| {
            c["process"]["terminal"] = false.into();
            c["linux"]["cgroupsPath"] = b.cgroup.clone().into();
        });
        b
    }

    fn edit(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let path = self.dir.join("config.json");
        let mut c: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        f(&mut c);
        fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Runs the runtime with stdout and stderr going to files: a container inherits them, and
    /// a pipe would stay open for as long as the container lives.
    fn runtime(&self, args: &[&str]) -> Output {
        let (out_path, err_path) = (self.dir.join("out.txt"), self.dir.join("err.txt"));
        let status = Command::new(&self.runtime)
            .arg("--root")
            .arg(self.dir.join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr: fs::read(&err_path).unwrap_or_default(),
        }
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    fn run(&mut self, id: &str) -> (i32, String, String) {
        self.ids.push(id.to_string());
        let out = self.runtime(&["run", "--bundle", self.dir.to_str().unwrap(), id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn args(&self, args: &[&str]) {
        let args: Vec<serde_json::Value> = args.iter().map(|a| (*a).into()).collect();
        self.edit(|c| c["process"]["args"] = args.into());
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.runtime(&["delete", "--force", id]);
        }
        // Only this bundle's cgroup: the parent is shared with tests running in parallel.
        peers::remove_cgroups(&self.cgroup);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn sha(path: &Path) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    all
}

/// CVE-2019-5736: a process exec'd into a created container sees init, still the runtime
/// image; reopening /proc/1/exe for writing must not reach the host's binary.
#[test]
fn runtime_binary_cannot_be_overwritten_through_proc_exe() {
    // Work on a copy: a vulnerable runtime would be corrupted by this test.
    let scratch_bin = scratch("hardening-exe-bin");
    let copy = scratch_bin.join("refeng-runc");
    peers::ok(Command::new("cp").arg(runtime_bin()).arg(&copy));
    let before = sha(&copy);
    let mut b = Bundle::with_runtime("exe", copy.clone());
    b.args(&["sleep", "30"]);
    b.ids.push("exe".into());
    let out = b.runtime(&["create", "--bundle", b.dir.to_str().unwrap(), "exe"]);
    assert!(out.status.success(), "create: {out:?}");
    let out = b.runtime(&[
        "exec",
        "exe",
        "sh",
        "-c",
        "readlink /proc/1/exe; echo overwritten >> /proc/1/exe && echo WROTE",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("WROTE"),
        "the container wrote through /proc/1/exe: {text}"
    );
    assert!(
        !text.contains(copy.to_str().unwrap()),
        "init's exe is the host binary: {text}"
    );
    drop(b);
    assert!(sha(&copy) == before, "the runtime binary changed");
    let _ = fs::remove_dir_all(scratch_bin);
}

/// CVE-2019-5736 as the published exploit runs it: a process in the container opens init's
/// exe while init is still the runtime, keeps the descriptor past `start` (when init becomes
/// the container's program and the runtime has exited), then reopens it for writing through
/// /proc/self/fd. The runtime is invoked with global flags before the command, as containerd
/// does, so the re-execution from the sealed copy (decided from the raw arguments, before they
/// are parsed) must recognise `create` there too.
#[test]
fn runtime_binary_cannot_be_overwritten_through_a_descriptor_kept_past_start() {
    let scratch_bin = scratch("hardening-exe-fd-bin");
    let copy = scratch_bin.join("refeng-runc");
    peers::ok(Command::new("cp").arg(runtime_bin()).arg(&copy));
    let before = sha(&copy);
    let mut b = Bundle::with_runtime("exefd", copy.clone());
    b.args(&["sleep", "30"]);
    // The exec'd process reports through a file in the rootfs.
    b.edit(|c| c["root"]["readonly"] = false.into());
    b.ids.push("exefd".into());
    let dir = b.dir.to_str().unwrap().to_owned();
    let out = b.runtime(&["--log-format", "json", "create", "--bundle", &dir, "exefd"]);
    assert!(out.status.success(), "create: {out:?}");
    // Detached: it waits for init to become `sleep`, then writes; its report lands in the
    // rootfs, where the test reads it.
    let script = "exec 3</proc/1/exe || { echo NOOPEN > /tmp/report; exit; }; \
                  readlink /proc/1/exe > /tmp/init-exe; \
                  i=0; while [ \"$(readlink /proc/1/exe)\" != /bin/busybox ] && [ $i -lt 200 ]; do \
                  sleep 0.05; i=$((i+1)); done; \
                  if echo overwritten >> /proc/self/fd/3; then echo WROTE; else echo REFUSED; fi > /tmp/report";
    let out = b.runtime(&[
        "--log-format",
        "json",
        "exec",
        "-d",
        "exefd",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "exec: {out:?}");
    let init_exe = b.rootfs().join("tmp/init-exe");
    let report = b.rootfs().join("tmp/report");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !init_exe.exists() && !report.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec'd process never opened init's exe"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = b.runtime(&["start", "exefd"]);
    assert!(out.status.success(), "start: {out:?}");
    while !report.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no report from the exec'd process"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let seen = fs::read_to_string(&init_exe).unwrap_or_default();
    let text = fs::read_to_string(&report).unwrap_or_default();
    assert!(
        !seen.contains(copy.to_str().unwrap()),
        "init's exe was the host binary: {seen}"
    );
    assert_ne!(
        text.trim(),
        "WROTE",
        "the container wrote through init's exe ({seen:?})"
    );
    // refeng-runc's init can be opened (it is the sealed copy), so the write itself is what
    // must be refused; a peer may refuse the open already.
    let refeng = runtime_bin()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("refeng"));
    let expected: &[&str] = if refeng {
        &["REFUSED"]
    } else {
        &["REFUSED", "NOOPEN"]
    };
    assert!(
        expected.contains(&text.trim()),
        "report {text:?}, init's exe was {seen:?}"
    );
    drop(b);
    assert!(sha(&copy) == before, "the runtime binary changed");
    let _ = fs::remove_dir_all(scratch_bin);
}

/// CVE-2024-21626: no descriptor of the runtime reaches the container, and a cwd naming one
/// through /proc/self/fd is refused rather than landing on the host.
#[test]
fn no_host_descriptor_leaks_and_fd_cwd_is_refused() {
    let mut b = Bundle::new("fds");
    b.args(&["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"]);
    // A descriptor the caller leaves open without close-on-exec must not get through unless
    // --preserve-fds says so.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::empty()).unwrap();
    let (code, out, err) = b.run("fds");
    drop((r, w));
    assert_eq!(code, 0, "{err}");
    // 0, 1, 2 and the descriptor ls opens for the directory it lists.
    assert_eq!(
        out.split_whitespace().count(),
        4,
        "descriptors in the container: {out}"
    );

    for fd in 3..10 {
        b.edit(|c| c["process"]["cwd"] = format!("/proc/self/fd/{fd}").into());
        b.args(&["sh", "-c", "pwd; ls"]);
        let (code, out, _) = b.run(&format!("cwd{fd}"));
        assert!(
            code != 0 || !out.contains("refeng-runc"),
            "cwd /proc/self/fd/{fd} reached the host: {out}"
        );
    }
}

/// CVE-2019-16884 class: a mount destination that is a symlink out of the rootfs lands inside
/// the rootfs.
#[test]
fn mount_destination_symlink_stays_inside_the_rootfs() {
    let mut b = Bundle::new("mnt");
    let host_dir = b.dir.join("host-target");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("marker"), "host").unwrap();
    symlink(&host_dir, b.rootfs().join("evil")).unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}
        ))
    });
    let inside = host_dir
        .strip_prefix("/")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    b.args(&[
        "sh",
        "-c",
        &format!("stat -f -c %T /{inside}; ls /{inside}"),
    ]);
    let (code, out, err) = b.run("mnt");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tmpfs"),
        "the tmpfs is not at the symlink's in-root target: {out}"
    );
    assert!(
        !out.contains("marker"),
        "the host directory is visible: {out}"
    );
    assert_eq!(fs::read_to_string(host_dir.join("marker")).unwrap(), "host");
}

/// CVE-2019-19921 class: /proc replaced by a symlink to a host-controlled place is refused or
/// contained: procfs never gets mounted outside the rootfs.
#[test]
fn proc_as_a_symlink_is_refused() {
    let mut b = Bundle::new("proc");
    let host_dir = b.dir.join("fake-proc");
    fs::create_dir_all(&host_dir).unwrap();
    let proc_path = b.rootfs().join("proc");
    let _ = fs::remove_dir(&proc_path);
    symlink(&host_dir, &proc_path).unwrap();
    b.args(&["true"]);
    let (code, _, err) = b.run("proc");
    assert_ne!(code, 0, "a symlinked /proc was accepted");
    assert!(
        err.contains("/proc"),
        "the error does not name /proc: {err}"
    );
    assert_eq!(fs::read_dir(&host_dir).unwrap().count(), 0);
}

/// A masked path that is a symlink is not followed: its target stays readable.
#[test]
fn masked_path_symlink_is_not_followed() {
    let mut b = Bundle::new("mask");
    symlink("/etc/passwd", b.rootfs().join("evil")).unwrap();
    b.edit(|c| c["linux"]["maskedPaths"] = serde_json::json!(["/evil", "/proc/kcore"]));
    b.args(&["cat", "/etc/passwd"]);
    let (code, out, err) = b.run("mask");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("root:x:0:0"),
        "the symlink's target was masked: {out}"
    );
}

/// A memory hog is OOM-killed (exit 137), `events --stats` counts the kill, and the host goes
/// on.
#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let mut b = Bundle::new("oom");
    b.edit(|c| {
        c["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 33554432u64, "swap": 33554432u64})
    });
    b.args(&["sh", "-c", "x=a; while true; do x=$x$x; done"]);
    b.ids.push("oom".into());
    let out = b.runtime(&["run", "--keep", "--bundle", b.dir.to_str().unwrap(), "oom"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    // The container is stopped but kept: its cgroup still holds the counters, which the
    // runtime's own stats read the same way on v1 and v2.
    let cgroup =
        refeng::runtime::cgroups::Cgroup::resolve(Some(Path::new(&b.cgroup)), "oom").unwrap();
    let stats = cgroup.stats().unwrap();
    assert!(
        stats.memory.oom_kills >= 1,
        "no oom_kill counted: {:?}",
        stats.memory
    );
}

/// `events` sees an OOM kill while it watches a running container.
#[test]
fn events_report_an_oom_kill() {
    let b = Bundle::new("events");
    b.edit(|c| {
        c["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 33554432u64, "swap": 33554432u64})
    });
    // A child of init hogs memory; init stays, so the container keeps running.
    b.args(&[
        "sh",
        "-c",
        "sleep 1; (x=a; while true; do x=$x$x; done); sleep 30",
    ]);
    let mut b = b;
    b.ids.push("events".into());
    let out = b.runtime(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "events"]);
    assert!(out.status.success(), "{out:?}");
    let mut events = Command::new(&b.runtime)
        .arg("--root")
        .arg(b.dir.join("state"))
        .args(["events", "--interval", "60s", "events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = events.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(r#""type":"oom""#) && std::time::Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(seen.contains(r#""type":"oom""#), "events printed: {seen}");
    assert!(seen.contains(r#""type":"stats""#), "no stats event: {seen}");
}
