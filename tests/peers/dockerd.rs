//! A private dockerd (Debian's docker.io) for tests and benches, and the docker CLI pointed at
//! it: its own data root, exec root, pidfile, empty config file and unix socket in a temporary
//! directory, its own cgroup parent, and no bridge or iptables rules. Dropping it stops it by pid
//! and removes what it made, also when the test panics.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Daemon;

/// The daemon, from Debian's docker.io.
pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// The CLI of the same package (20.10, API 1.41). It is asked rather than the docker 28 CLI in
/// /usr/local/bin so that client and daemon agree, and so that `DOCKER_BUILDKIT=0` still picks
/// the legacy builder.
pub const DOCKER: &str = "/usr/bin/docker";

/// How long dockerd may take to answer `docker version`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a [`Dockerd`] is started with beyond its private directories; from [`Dockerd::options`].
#[derive(Debug, Default)]
#[must_use = "nothing starts until `start`"]
pub struct DockerdOptions {
    runtimes: Vec<(String, PathBuf)>,
    args: Vec<OsString>,
}

impl DockerdOptions {
    /// `--add-runtime NAME=BINARY`: containers run with `--runtime NAME` use `binary`.
    pub fn runtime(mut self, name: &str, binary: &Path) -> Self {
        self.runtimes.push((name.to_owned(), binary.to_path_buf()));
        self
    }

    /// One more dockerd argument, such as `--insecure-registry=127.0.0.1:5000` (which dockerd
    /// implies for loopback registries) or `--registry-mirror=…`. It comes after the defaults,
    /// and dockerd takes the last value of a flag, so `--bridge=…` or `--iptables=true` here
    /// replace them for a caller whose containers need a network.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Starts dockerd and waits until it answers `docker version`.
    ///
    /// Panics with dockerd's log when it exits or does not answer within a minute; what it
    /// started is cleaned up by then.
    pub fn start(self) -> Dockerd {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::Builder::new()
            .prefix("refeng-dockerd-")
            .tempdir_in("/tmp")
            .expect("create dockerd dir")
            // The guard below removes it, after unmounting what dockerd left there.
            .keep();
        let cgroup_parent = format!(
            "/refeng-dockerd-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        // An empty config file: nothing of the host's /etc/docker/daemon.json applies.
        fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
        let log = fs::File::create(dir.join("dockerd.log")).expect("create dockerd.log");
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            // cgroupfs names the parent as a path on every host (the systemd driver, dockerd's
            // default on cgroup v2 under systemd, would want a slice name).
            .arg("--exec-opt=native.cgroupdriver=cgroupfs")
            .arg(format!("--cgroup-parent={cgroup_parent}"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ]);
        for (name, binary) in &self.runtimes {
            cmd.arg(format!("--add-runtime={name}={}", binary.display()));
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup dockerd.log"))
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(child) => Some(child),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                panic!("cannot start {DOCKERD} (apt-get install docker.io): {e}");
            }
        };
        let mut dockerd = Dockerd {
            daemon: Daemon {
                child,
                dir,
                cgroup_parent: Some(cgroup_parent),
            },
        };
        dockerd.wait_until_up();
        dockerd
    }
}

/// A running private dockerd; dropping it stops it by pid (TERM, then KILL), ends the shims of
/// its containers, detaches every mount below its directory and removes that directory and its
/// cgroup parent.
#[derive(Debug)]
pub struct Dockerd {
    daemon: Daemon,
}

impl Dockerd {
    /// The defaults: no added runtime, no extra argument.
    pub fn options() -> DockerdOptions {
        DockerdOptions::default()
    }

    /// Starts a dockerd with the defaults (see [`DockerdOptions::start`]).
    pub fn start() -> Dockerd {
        Self::options().start()
    }

    /// The temporary directory that holds all of this daemon's state.
    pub fn dir(&self) -> &Path {
        &self.daemon.dir
    }

    /// The `--cgroup-parent` its containers run below.
    pub fn cgroup_parent(&self) -> &str {
        self.daemon
            .cgroup_parent
            .as_deref()
            .expect("set when started")
    }

    /// Its API address, as `-H`/`DOCKER_HOST` take it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir().join("docker.sock").display())
    }

    /// The docker CLI with `args`, against this daemon, for a caller that checks the outcome
    /// itself. The CLI gets a config directory of its own and the legacy builder
    /// (`DOCKER_BUILDKIT=0`), which builds `COPY` layers without running a container.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("--host")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.dir().join("cli"))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `docker args` against this daemon and returns its stdout; panics with the CLI's
    /// output and the end of dockerd's log unless it succeeds.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"));
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}\ndockerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answered = self
                .command(&["version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return;
            }
            let exited = self
                .daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("dockerd exited ({status}):\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                panic!(
                    "dockerd did not answer in {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of dockerd's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
