//! The daemons the containerd tests drive with the real `ctr`: refeng-containerd, and for the
//! differential tests a private real containerd (temporary root, state and socket; the CRI
//! plugin off), both started per test and killed by pid when the test ends, also on failure.

#![allow(dead_code)]

pub mod archive;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const REFENG_CONTAINERD: &str = env!("CARGO_BIN_EXE_refeng-containerd");

/// Which daemon answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Refeng,
    Containerd,
}

/// Fails the test when a prerequisite is missing: CI installs them all (.ci/setup), and a test
/// that passes without running would hide a broken install.
pub fn require(peer: Peer) {
    assert!(nix::unistd::geteuid().is_root(), "cannot run: not root");
    let mut needed = vec!["/usr/bin/ctr"];
    if peer == Peer::Containerd {
        needed.push("/usr/bin/containerd");
    }
    for p in needed {
        assert!(
            Path::new(p).exists(),
            "cannot run: {p} is missing (apt-get install containerd)"
        );
    }
}

/// A running daemon with its own directories; dropping it kills it and removes them.
pub struct Daemon {
    pub peer: Peer,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(peer: Peer) -> Daemon {
        require(peer);
        let dir = tempfile::Builder::new()
            .prefix(match peer {
                Peer::Refeng => "rctd",
                Peer::Containerd => "ctd",
            })
            .tempdir_in("/tmp")
            .unwrap();
        let mut d = Daemon {
            peer,
            dir,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("c.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let d = self.path().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("daemon.log"))
            .unwrap();
        let mut cmd = match self.peer {
            Peer::Refeng => {
                let mut c = Command::new(REFENG_CONTAINERD);
                c.arg("--address")
                    .arg(d.join("c.sock"))
                    .arg("--root")
                    .arg(d.join("root"))
                    .arg("--state")
                    .arg(d.join("state"))
                    .args(["--log-level", "debug"]);
                c
            }
            Peer::Containerd => {
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
                let mut c = Command::new("containerd");
                c.arg("--config").arg(d.join("config.toml"));
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.ctr(&["version"]);
            if out.status.success() {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{:?} exited at start: {status}\n{}", self.peer, self.log());
            }
            assert!(Instant::now() < deadline, "{:?} did not come up", self.peer);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill -9 and start again on the same directories.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs ctr and returns its stdout; fails the test with ctr's output and the daemon's log
    /// when it fails.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "{:?}: ctr {args:?} failed: {}{}\n--- daemon log ---\n{}",
            self.peer,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs ctr expecting failure; returns stderr.
    pub fn ctr_err(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            !out.status.success(),
            "{:?}: ctr {args:?} succeeded: {}",
            self.peer,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // Snapshots may still be mounted below the root (overlayfs views); unmount before the
        // directory goes. Only mounts under our own temporary directory are touched.
        let prefix = self.path().to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut ours: Vec<String> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .map(str::to_string)
                .collect();
            ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in ours {
                let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Replaces what differs between two runs of the same script: timestamps (RFC 3339 and Go's
/// `2006-01-02 15:04:05.999 +0000 UTC`), UUIDs, and the column padding that follows from them.
pub fn normalise(s: &str) -> String {
    let time = regex::Regex::new(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?( ?[+-]\d{2}:?\d{2}( [A-Z]+)?|Z)?",
    )
    .unwrap();
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    // ctr's AGE column (go-units HumanDuration).
    let age =
        regex::Regex::new(r"Less than a second|About a minute|\d+ (seconds?|minutes?)").unwrap();
    let mut out = String::new();
    for line in s.lines() {
        let line = time.replace_all(line, "<time>");
        let line = age.replace_all(&line, "<age>");
        let line = uuid.replace_all(&line, "<uuid>");
        // Label lists (`a=b,c=d`) come from Go maps, in random order.
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| {
                if w.contains('=') && w.contains(',') {
                    let mut parts: Vec<&str> = w.split(',').collect();
                    parts.sort_unstable();
                    parts.join(",")
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// Runs each ctr command and records what a user sees: the command, stdout, stderr and the
/// exit status, normalised.
pub fn transcript(d: &Daemon, script: &[&[&str]]) -> String {
    let mut out = String::new();
    for args in script {
        let o = d.ctr(args);
        out.push_str(&format!("$ ctr {}\n", args.join(" ")));
        out.push_str(&normalise(&String::from_utf8_lossy(&o.stdout)));
        out.push_str(&normalise(&String::from_utf8_lossy(&o.stderr)));
        out.push_str(&format!("exit {}\n", o.status.code().unwrap_or(-1)));
    }
    out
}

/// The topic of the events that tell a `ctr events` has subscribed.
const PROBE_TOPIC: &str = "/refeng-test/probe";

/// A `ctr events` running in the background; dropping it kills it (by pid).
pub struct Events {
    child: Child,
    out: PathBuf,
}

impl Events {
    pub fn start(d: &Daemon, filters: &[&str]) -> Events {
        let out = d.path().join(format!("events-{}.out", std::process::id()));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("ctr")
            .arg("--address")
            .arg(d.socket())
            .arg("events")
            .args(filters)
            // Filters are alternatives: the probes get through whatever the test filters.
            .args((!filters.is_empty()).then(|| format!("topic==\"{PROBE_TOPIC}\"")))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        // ctr prints nothing once it has subscribed: publish probe events until one shows,
        // so that the script's first event is never missed (and no sleep guesses how long
        // ctr takes to start).
        let ev = Events { child, out };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        rt.block_on(async {
            let mut c =
                containerd_client::services::v1::events_client::EventsClient::new(channel(d).await);
            loop {
                c.publish(req(
                    "default",
                    containerd_client::services::v1::PublishRequest {
                        topic: PROBE_TOPIC.into(),
                        event: Some(prost_types::Any {
                            type_url: "containerd.events.ContentDelete".into(),
                            value: Vec::new(),
                        }),
                    },
                ))
                .await
                .unwrap();
                if std::fs::read_to_string(&ev.out)
                    .unwrap_or_default()
                    .contains(PROBE_TOPIC)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "ctr events never showed a probe event"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        ev
    }

    /// Waits until `n` lines arrived (or 10 s) and returns them, normalised, without the
    /// probes.
    pub fn lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = normalise(&text)
                .lines()
                .filter(|l| !l.contains(PROBE_TOPIC))
                .map(str::to_string)
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gRPC channel to the daemon, as Go's containerd client opens one.
pub async fn channel(d: &Daemon) -> tonic::transport::Channel {
    containerd_client::connect(d.socket()).await.unwrap()
}

/// A request in namespace `ns`.
pub fn req<T>(ns: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    r
}
