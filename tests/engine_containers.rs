//! refengd's container endpoints as the docker CLI 28 and docker-py 7 drive them: the
//! lifecycle verbs, `ps` filters and formats, logs, exec and attach, wait conditions, restart
//! policies, `--rm` with its output, the resource and security options seen from inside the
//! container; then the same scenarios against a private dockerd 20.10, comparing the shape of
//! inspect, `ps` lines, the CLI's error texts and exit codes, and `wait`'s answers.
//!
//! One refengd (bridge `none`: nothing touches the host's network) and one dockerd (started by
//! the first differential test) serve the whole binary. The last test runs the binary again
//! with refengd over a private real containerd 1.6 (`--containerd`), every scenario but the
//! comparison with dockerd.

#[path = "containerd_support/mod.rs"]
mod containerd_support;
mod engine_support;
mod peers;
use containerd_support::archive::rootfs;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine_support::Refengd;
use peers::dockerd::Dockerd;
use serde_json::Value;

/// What the whole binary shares.
struct World {
    refengd: Refengd,
    /// The real containerd under refengd, in the second pass.
    containerd: std::sync::Mutex<Option<containerd_support::Daemon>>,
    /// busybox's root filesystem as a tarball, imported into both engines.
    tar: std::path::PathBuf,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn import(cli: &Cli, tar: &std::path::Path) {
    cli.ok(&[
        "import",
        "-c",
        "ENV PATH=/bin",
        "-c",
        "EXPOSE 80",
        &tar.to_string_lossy(),
        "busybox:latest",
    ]);
}

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let containerd = over_real_containerd()
            .then(|| containerd_support::Daemon::start(containerd_support::Peer::Containerd));
        let refengd = Refengd::start_with(engine_support::Options {
            containerd: containerd.as_ref().map(containerd_support::Daemon::socket),
            ..engine_support::Options::default()
        });
        let dir = refengd.dir().join("rootfs");
        rootfs::busybox(&dir);
        let tar = refengd.dir().join("busybox.tar");
        rootfs::tar(&dir, &tar);
        let _ = std::fs::remove_dir_all(&dir);
        let w = World {
            refengd,
            containerd: std::sync::Mutex::new(containerd),
            tar,
        };
        import(&Cli::Ours(&w.refengd), &w.tar);
        w
    })
}

/// Set in the second pass, which runs over the real containerd.
const OVER_CONTAINERD: &str = "REFENG_CONTAINERS_OVER_CONTAINERD";

fn over_real_containerd() -> bool {
    std::env::var_os(OVER_CONTAINERD).is_some()
}

/// The scenarios again with refengd over a private real containerd 1.6 and its runc shim:
/// this binary run once more, its output shown when it fails.
fn the_scenarios_pass_over_the_real_containerd() {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(OVER_CONTAINERD, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the second pass");
    assert!(
        out.status.success(),
        "over the real containerd:\n{}{}",
        engine_support::tail(&String::from_utf8_lossy(&out.stdout), 80),
        engine_support::tail(&String::from_utf8_lossy(&out.stderr), 120)
    );
}

fn d() -> &'static Refengd {
    &world().refengd
}

/// The docker CLI 28 against one of the two engines.
enum Cli<'a> {
    Ours(&'a Refengd),
    Theirs(&'a Dockerd),
}

/// What a CLI run gave.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli<'_> {
    fn name(&self) -> &'static str {
        match self {
            Cli::Ours(_) => "refengd",
            Cli::Theirs(_) => "dockerd",
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let (host, config) = match self {
            Cli::Ours(r) => (r.host(), r.dir().join("cli")),
            Cli::Theirs(t) => (t.host(), t.dir().join("cli28")),
        };
        // Bounded, so that a hang fails its test (exit 124) instead of the whole binary.
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "90", engine_support::DOCKER_CLI])
            .args(args)
            .env("DOCKER_HOST", host)
            .env("DOCKER_CONFIG", config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let out = self.cmd(args).output().expect("run docker");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `docker args` with `input` on stdin.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Outcome {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.code,
            0,
            "{}: docker {args:?}: {}{}{}",
            self.name(),
            o.stdout,
            o.stderr,
            self.log_tail()
        );
        o.stdout
    }

    fn log_tail(&self) -> String {
        match self {
            Cli::Ours(r) => format!(
                "\n--- refengd log ---\n{}",
                engine_support::tail(&r.log(), 30)
            ),
            Cli::Theirs(_) => String::new(),
        }
    }
}

fn ours() -> Cli<'static> {
    Cli::Ours(d())
}

/// Removes containers when a test ends, also when it fails.
struct Made<'a>(&'a Cli<'a>, &'a [&'a str]);

impl Drop for Made<'_> {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.1);
        let _ = self.0.run(&args);
    }
}

fn inspect(cli: &Cli, name: &str) -> Value {
    let v: Value = serde_json::from_str(&cli.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

/// Polls `f` until it holds, for up to 20 s.
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(cli: &Cli, name: &str) -> String {
    cli.ok(&["inspect", "-f", "{{.State.Status}}", name])
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Scenarios on refengd

fn lifecycle_verbs_and_ps() {
    let c = ours();
    let _m = Made(&c, &["lc1", "lc2", "lc3", "lc-new"]);
    let id = c
        .ok(&[
            "create", "--name", "lc1", "--label", "tier=a", "busybox", "sleep", "300",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(status(&c, "lc1"), "created");
    c.ok(&["start", "lc1"]);
    assert_eq!(status(&c, "lc1"), "running");
    c.ok(&[
        "run", "-d", "--name", "lc2", "busybox", "sh", "-c", "exit 3",
    ]);
    eventually("lc2 to exit", || status(&c, "lc2") == "exited");
    c.ok(&["create", "--name", "lc3", "busybox", "true"]);

    let ps = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend(args);
        let mut v: Vec<String> = c.ok(&all).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(ps(&[]), ["lc1"]);
    assert_eq!(ps(&["-a"]), ["lc1", "lc2", "lc3"]);
    assert_eq!(ps(&["-a", "--filter", "status=exited"]), ["lc2"]);
    assert_eq!(ps(&["-a", "--filter", "status=created"]), ["lc3"]);
    assert_eq!(ps(&["-a", "--filter", "exited=3"]), ["lc2"]);
    assert_eq!(ps(&["-a", "--filter", "label=tier=a"]), ["lc1"]);
    assert_eq!(ps(&["-a", "--filter", "name=lc2"]), ["lc2"]);
    assert_eq!(
        ps(&["-a", "--filter", "ancestor=busybox"]),
        ["lc1", "lc2", "lc3"]
    );
    let q = c.ok(&["ps", "-q"]);
    assert_eq!(q.trim(), &id[..12]);
    let fmt = c.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=lc2",
        "--format",
        "{{.Image}}|{{.Command}}|{{.Status}}",
    ]);
    assert!(
        fmt.starts_with("busybox|\"sh -c 'exit 3'\"|Exited (3) "),
        "{fmt}"
    );

    // top, rename, pause/unpause, stop, restart, kill.
    let top = c.ok(&["top", "lc1"]);
    assert!(top.contains("sleep 300"), "{top}");
    c.ok(&["rename", "lc1", "lc-new"]);
    assert_eq!(ps(&[]), ["lc-new"]);
    c.ok(&["pause", "lc-new"]);
    assert_eq!(status(&c, "lc-new"), "paused");
    let freeze = c.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(freeze.contains("(Paused)"), "{freeze}");
    c.ok(&["unpause", "lc-new"]);
    assert_eq!(status(&c, "lc-new"), "running");
    let pid1 = inspect(&c, "lc-new")["State"]["Pid"].as_i64().unwrap();
    c.ok(&["restart", "-t", "1", "lc-new"]);
    let pid2 = inspect(&c, "lc-new")["State"]["Pid"].as_i64().unwrap();
    assert_ne!(pid1, pid2);
    assert_eq!(status(&c, "lc-new"), "running");
    // `sleep` as pid 1 has no handler for TERM: the kernel ignores it, and stop kills.
    c.ok(&["kill", "-s", "USR1", "lc-new"]);
    assert_eq!(status(&c, "lc-new"), "running");
    c.ok(&["kill", "lc-new"]);
    let w = c.ok(&["wait", "lc-new"]);
    assert_eq!(w.trim(), "137");
    c.ok(&["start", "lc-new"]);
    c.ok(&["stop", "-t", "1", "lc-new"]);
    let st = inspect(&c, "lc-new")["State"].clone();
    assert_eq!(st["Status"], "exited");
    assert_eq!(st["ExitCode"], 137);
    c.ok(&["rm", "lc-new", "lc2", "lc3"]);
    assert_eq!(ps(&["-a", "--filter", "name=lc"]), Vec::<String>::new());
}

fn run_exit_codes_and_errors() {
    let c = ours();
    let _m = Made(&c, &["e1"]);
    let o = c.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (7, "out\n", "err\n")
    );
    let o = c.run(&["run", "--rm", "busybox", "no-such-cmd"]);
    assert_eq!(o.code, 127, "{o:?}");
    let o = c.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.code, 126, "{o:?}");
    let o = c.run(&["start", "nope"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container: nope"), "{o:?}");
    c.ok(&["run", "-d", "--name", "e1", "busybox", "sleep", "300"]);
    let o = c.run(&["run", "-d", "--name", "e1", "busybox", "true"]);
    assert_eq!(o.code, 125, "{o:?}");
    assert!(o.stderr.contains("is already in use"), "{o:?}");
    let o = c.run(&["rm", "e1"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("You cannot remove a running container"),
        "{o:?}"
    );
    // The statuses behind those texts.
    let r = d().request("DELETE", "/containers/e1", None);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = d().request(
        "POST",
        "/containers/create?name=e1",
        Some(br#"{"Image":"busybox","Cmd":["true"]}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("is already in use"));
    let r = d().request("GET", "/containers/nope/json", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such container: nope");
    c.ok(&["rm", "-f", "e1"]);
    let o = c.run(&["inspect", "e1"]);
    assert_eq!(o.code, 1, "{o:?}");
}

fn logs_tail_since_follow_timestamps() {
    let c = ours();
    let _m = Made(&c, &["lg"]);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.3; echo oops >&2; sleep 2; echo late",
    ]);
    // stdout and stderr are read apart: the pause keeps their order in the log.
    eventually("the first lines", || {
        c.run(&["logs", "lg"]).stderr == "oops\n"
    });
    let tail = c.ok(&["logs", "--tail", "2", "lg"]);
    assert_eq!(tail, "line5\n", "stdout of --tail 2 (the other is stderr)");
    let o = c.run(&["logs", "lg"]);
    assert_eq!(o.stderr, "oops\n");
    let ts = c.ok(&["logs", "-t", "lg"]);
    let first = ts.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert_eq!(text, "line1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{first}"
    );
    // -f ends when the container does, with everything.
    let f = c.ok(&["logs", "-f", "lg"]);
    assert_eq!(f, "line1\nline2\nline3\nline4\nline5\nlate\n");
    let later = c.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "lg"]);
    assert_eq!(later, "");
    let since = c.ok(&["logs", "--since", "2000-01-01T00:00:00Z", "lg"]);
    assert!(since.ends_with("late\n"), "{since}");
}

fn exec_options_and_attach() {
    let c = ours();
    let _m = Made(&c, &["ex"]);
    c.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "300"]);
    assert_eq!(c.ok(&["exec", "ex", "echo", "hi"]), "hi\n");
    assert_eq!(c.ok(&["exec", "-u", "1000", "ex", "id", "-u"]), "1000\n");
    assert_eq!(c.ok(&["exec", "-u", "user", "ex", "id", "-un"]), "user\n");
    assert_eq!(c.ok(&["exec", "-w", "/etc", "ex", "pwd"]), "/etc\n");
    assert_eq!(
        c.ok(&["exec", "-e", "FOO=bar", "ex", "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    let o = c.run_with_input(&["exec", "-i", "ex", "cat"], b"from stdin\n");
    assert_eq!(o.stdout, "from stdin\n", "{o:?}");
    let o = c.run(&["exec", "ex", "sh", "-c", "exit 5"]);
    assert_eq!(o.code, 5);
    let tty = c.ok(&["exec", "-t", "ex", "tty"]);
    assert!(tty.starts_with("/dev/pts/"), "{tty:?}");
    c.ok(&["exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d"]);
    eventually("the detached exec", || {
        c.run(&["exec", "ex", "cat", "/tmp/d"]).stdout == "detached\n"
    });
    let o = c.run(&["exec", "nope", "true"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container: nope"), "{o:?}");

    // attach: the output of a running container, and its exit code.
    let _m2 = Made(&c, &["at"]);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "at",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo attached; exit 4",
    ]);
    let o = c.run(&["attach", "at"]);
    assert_eq!((o.code, o.stdout.as_str()), (4, "attached\n"), "{o:?}");
    // -i with stdin kept open: the input reaches the process.
    let _m3 = Made(&c, &["ati"]);
    let o = c.run_with_input(
        &[
            "run",
            "-i",
            "--name",
            "ati",
            "busybox",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        b"word\n",
    );
    assert_eq!(o.stdout, "got word\n", "{o:?}");
}

fn port_and_ps_format() {
    let c = ours();
    let _m = Made(&c, &["pt"]);
    // Publishing needs a bridge (tests/engine_networking.rs): here, a container without.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "pt",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let o = c.run(&["port", "pt"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{o:?}");
    let o = c.run(&["port", "pt", "80"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("No public port '80' published for pt"),
        "{o:?}"
    );
    let f = c.ok(&[
        "ps",
        "--filter",
        "name=pt",
        "--format",
        "{{.Names}} {{.Ports}} {{.Networks}}",
    ]);
    assert_eq!(f, "pt  none\n");
}

fn wait_conditions() {
    let c = ours();
    let _m = Made(&c, &["w1", "w2"]);
    c.ok(&["create", "--name", "w1", "busybox", "sh", "-c", "exit 9"]);
    // not-running answers at once for a created container.
    let r = d().request("POST", "/containers/w1/wait?condition=not-running", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["StatusCode"], 0);
    // next-exit waits for the coming exit.
    let sock = d().socket();
    let waiter = std::thread::spawn(move || {
        engine_support::try_request(
            &sock,
            "POST",
            "/containers/w1/wait?condition=next-exit",
            &[],
            None,
        )
        .unwrap()
        .json()
    });
    std::thread::sleep(Duration::from_millis(300));
    c.ok(&["start", "w1"]);
    let v = waiter.join().unwrap();
    assert_eq!(v["StatusCode"], 9, "{v}");
    // removed waits for the removal.
    let sock = d().socket();
    let waiter = std::thread::spawn(move || {
        engine_support::try_request(
            &sock,
            "POST",
            "/containers/w1/wait?condition=removed",
            &[],
            None,
        )
        .unwrap()
        .json()
    });
    std::thread::sleep(Duration::from_millis(300));
    c.ok(&["rm", "w1"]);
    let v = waiter.join().unwrap();
    assert_eq!(v["StatusCode"], 9, "{v}");
    let r = d().request("POST", "/containers/w1/wait", None);
    assert_eq!(r.status, 404);
    let r = d().request("POST", "/containers/w2/wait?condition=bogus", None);
    assert_eq!(r.status, 400, "{}", r.text());
}

fn restart_policies() {
    let c = ours();
    let _m = Made(&c, &["rp1", "rp2"]);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "rp1",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    eventually("on-failure:2 to give up", || {
        let v = inspect(&c, "rp1");
        v["State"]["Status"] == "exited" && v["RestartCount"] == 2
    });
    let v = inspect(&c, "rp1");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "rp2",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "exit 0",
    ]);
    eventually("always to restart", || {
        inspect(&c, "rp2")["RestartCount"].as_i64() >= Some(1)
    });
    c.ok(&["stop", "-t", "1", "rp2"]);
    let n = inspect(&c, "rp2")["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    let v = inspect(&c, "rp2");
    assert_eq!(
        v["State"]["Status"], "exited",
        "a stopped container stays stopped"
    );
    assert_eq!(v["RestartCount"], n);
}

/// `docker run --rm` gets all of its output, then the container is gone; many times over, as
/// the race between the exit and the last output would show only now and then.
fn run_rm_delivers_all_output() {
    let c = ours();
    let want: String = (1..=300).map(|i| format!("{i}\n")).collect();
    for round in 0..15 {
        let o = c.run(&["run", "--rm", "busybox", "seq", "1", "300"]);
        assert_eq!(o.code, 0, "round {round}: {o:?}");
        assert!(
            o.stdout == want,
            "round {round}: {} bytes of {}",
            o.stdout.len(),
            want.len()
        );
        let o = c.run(&["run", "--rm", "busybox", "echo", "one"]);
        assert_eq!(o.stdout, "one\n", "round {round}");
    }
    assert_eq!(c.ok(&["ps", "-aq"]), "", "--rm left containers");
}

/// `ctr -n moby ARGS` against the containerd refengd drives (its own, or the real one of the
/// second pass); fails the test when ctr fails; returns its stdout.
fn ctr_moby(args: &[&str]) -> String {
    let sock = world()
        .containerd
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or_else(
            || d().dir().join("exec/containerd/containerd.sock"),
            containerd_support::Daemon::socket,
        );
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&sock)
        .args(["-n", "moby"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The snapshots containerd holds for refengd (namespace `moby`), by key.
fn snapshot_keys() -> BTreeSet<String> {
    ctr_moby(&["snapshots", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// The layers of `image`.
fn layers_of(c: &Cli, image: &str) -> Vec<String> {
    serde_json::from_str(&c.ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", image]))
        .unwrap()
}

/// What a commit of a container that only ran `true` gives: its `docker diff`, the number of
/// layers the commit added, and the size `docker history` gives its step.
fn unchanged_commit(c: &Cli, name: &str) -> (String, usize, String) {
    c.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        name,
        "busybox",
        "true",
    ]);
    let diff = c.ok(&["diff", name]);
    let image = format!("{name}-img:1");
    c.ok(&["commit", name, &image]);
    let added = layers_of(c, &image).len() - layers_of(c, "busybox").len();
    let size = c.ok(&["history", "--format", "{{.Size}}", &image]);
    c.ok(&["rm", name]);
    c.ok(&["rmi", &image]);
    (
        diff,
        added,
        size.lines().next().unwrap_or_default().to_string(),
    )
}

/// The mount points the runtime needs (/etc/hosts, /etc/hostname, /etc/resolv.conf, ...) live
/// in an init layer below the container's writable layer, as dockerd keeps them: a commit of a
/// container that only ran `true` adds no layer. The init layer is one per image, shared by its
/// containers: `run --rm` leaves no snapshot behind, and removing an image (its containers
/// first) removes its init layer too.
fn commits_leave_the_mount_points_out() {
    let c = ours();
    let _m = Made(&c, &["il", "il-a", "il-b"]);
    // The first container of busybox may make its init layer; it stays for the next ones.
    c.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    let before = snapshot_keys();
    let inits = |keys: &BTreeSet<String>| keys.iter().filter(|k| k.ends_with("-init")).count();
    assert!(inits(&before) >= 1, "busybox's init layer: {before:?}");
    c.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    assert_eq!(snapshot_keys(), before, "run --rm left snapshots");
    for n in ["il-a", "il-b"] {
        c.ok(&[
            "create",
            "--network",
            "none",
            "--name",
            n,
            "busybox",
            "true",
        ]);
    }
    let two = snapshot_keys();
    assert_eq!(
        two.len(),
        before.len() + 2,
        "two containers share one: {two:?}"
    );
    assert_eq!(inits(&two), inits(&before), "{two:?}");
    c.ok(&["rm", "il-a", "il-b"]);
    assert_eq!(
        unchanged_commit(&c, "il"),
        (String::new(), 0, "0B".to_string())
    );
    eventually(
        "the snapshots to go with the container and the image",
        || snapshot_keys() == before,
    );
    // The mount points are there for the runtime all the same, and a change is a layer.
    c.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "il",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts > /copy",
    ]);
    c.ok(&["commit", "il", "il-img:2"]);
    let copy = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "il-img:2",
        "cat",
        "/copy",
    ]);
    assert!(copy.contains("localhost"), "{copy}");
    assert_eq!(
        layers_of(&c, "il-img:2").len(),
        layers_of(&c, "busybox").len() + 1
    );
    // il-img:2's container made it an init layer of its own, which goes with the image.
    assert_eq!(inits(&snapshot_keys()), inits(&before) + 1);
    c.ok(&["rm", "il"]);
    c.ok(&["rmi", "il-img:2"]);
    eventually("the snapshots to go with the image", || {
        snapshot_keys() == before
    });
}

/// `wait` answers once the output is in the log: `logs` right after it has every line, even
/// of a process that wrote much just before it exited.
fn wait_answers_after_the_output_is_logged() {
    let c = ours();
    let _m = Made(&c, &["big"]);
    let want: usize = (1..=60000).map(|i: u32| i.to_string().len() + 1).sum();
    for round in 0..4 {
        c.ok(&["run", "-d", "--name", "big", "busybox", "seq", "1", "60000"]);
        assert_eq!(c.ok(&["wait", "big"]), "0\n");
        let got = c.ok(&["logs", "big"]).len();
        assert_eq!(
            got, want,
            "round {round}: bytes in the log right after wait"
        );
        c.ok(&["rm", "big"]);
    }
}

fn docker_py_run_remove_returns_output() {
    let out = d().python(
        r#"
import docker
c = docker.from_env()
# Much output written just before the exit: its last lines are still being logged when
# the exit is known, which is when the follow behind run() used to stop.
want = "".join(f"{i}\n" for i in range(1, 60001)).encode()
for i in range(4):
    out = c.containers.run("busybox", ["seq", "1", "60000"], remove=True)
    assert out == want, (i, len(out), len(want))
    out = c.containers.run("busybox", ["sh", "-c", "echo a; echo b"], remove=True)
    assert out == b"a\nb\n", (i, out)
print(len(c.containers.list(all=True)))
"#,
    );
    assert_eq!(out, "0\n");
}

fn docker_py_containers() {
    let out = d().python(
        r#"
import docker
c = docker.from_env()
k = c.containers.run("busybox", ["sh", "-c", "echo hello; sleep 300"], detach=True,
                     name="py1", labels={"app": "py"})
try:
    import time
    for _ in range(100):
        if b"hello" in k.logs(): break
        time.sleep(0.05)
    print(k.logs().decode().strip())
    r = k.exec_run(["sh", "-c", "echo $X; exit 3"], environment={"X": "y"})
    print(r.exit_code, r.output.decode().strip())
    r = k.exec_run("pwd", workdir="/tmp", user="1000")
    print(r.exit_code, r.output.decode().strip())
    print([x.name for x in c.containers.list(filters={"label": "app=py"})])
    print([x.name for x in c.containers.list(filters={"status": "exited"})])
    k.stop(timeout=1)
    print(k.wait()["StatusCode"])
    k.reload()
    print(k.status)
    print([x.name for x in c.containers.list(all=True, filters={"status": "exited", "name": "py1"})])
finally:
    k.remove(force=True)
try:
    c.containers.get("py1")
    print("still there")
except docker.errors.NotFound as e:
    print("gone")
try:
    c.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 2"])
except docker.errors.ContainerError as e:
    print("error", e.exit_status, e.stderr.decode().strip())
"#,
    );
    assert_eq!(
        out,
        "hello\n3 y\n0 /tmp\n['py1']\n[]\n137\nexited\n['py1']\ngone\nerror 2 bad\n"
    );
    let _ = d().docker_cmd(&["container", "prune", "-f"]).output();
}

/// What the container sees of the options: user, workdir, env, labels, init, read-only root,
/// ulimits, capabilities and the cgroup limits.
fn options_reach_the_container() {
    let c = ours();
    let _m = Made(&c, &["opt"]);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "opt",
        "--user",
        "1000:1000",
        "--workdir",
        "/tmp",
        "--env",
        "A=1",
        "--label",
        "k=v",
        "--init",
        "--read-only",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--ulimit",
        "nofile=512:1024",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "3",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "busybox",
        "sleep",
        "300",
    ]);
    let x = |cmd: &str| c.ok(&["exec", "opt", "sh", "-c", cmd]);
    assert_eq!(x("id -u; id -g; pwd; echo $A"), "1000\n1000\n/tmp\n1\n");
    assert_eq!(x("ulimit -n; ulimit -Hn"), "512\n1024\n");
    let o = c.run(&["exec", "opt", "touch", "/x"]);
    assert_ne!(o.code, 0, "read-only root: {o:?}");
    // --init: pid 1 is the init, the command its child.
    let one = x("cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(!one.starts_with("sleep"), "pid 1 is {one:?}");
    let cap = x("grep CapEff /proc/self/status");
    // As root inside (exec -u 0): NET_RAW (13) alone.
    let _ = cap;
    let root_cap = c.ok(&[
        "exec",
        "-u",
        "0",
        "opt",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(
        root_cap.split_whitespace().nth(1),
        Some("0000000000002000"),
        "{root_cap}"
    );
    let v = inspect(&c, "opt");
    let h = &v["HostConfig"];
    assert_eq!(h["Memory"], 64 << 20);
    assert_eq!(h["NanoCpus"], 500_000_000);
    assert_eq!(h["PidsLimit"], 50);
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["Init"], true);
    // The CLI sends capability names with their prefix.
    assert_eq!(h["CapAdd"], serde_json::json!(["CAP_NET_RAW"]));
    assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 512, "Hard": 1024}])
    );
    assert_eq!(v["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(v["Config"]["StopTimeout"], 3);
    assert_eq!(v["Config"]["Labels"]["k"], "v");
    assert_eq!(v["Config"]["User"], "1000:1000");
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    // The cgroup, read from the host through the init's pid (v2, or v1 controllers on a
    // hybrid host).
    let pid = v["State"]["Pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = |controller: &str| {
        cg.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            list.split(',').any(|c| c == controller).then(|| {
                std::path::Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(path.trim_start_matches('/'))
            })
        })
    };
    let read = |dir: &std::path::Path, f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
            .trim()
            .to_string()
    };
    match (v1("memory"), v1("pids"), v1("cpu")) {
        (Some(mem), Some(pids), Some(cpu)) => {
            assert_eq!(
                read(&mem, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(read(&pids, "pids.max"), "50");
            assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        }
        _ => {
            let rel = cg
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("cgroup v2");
            let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
            assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
            assert_eq!(read(&dir, "pids.max"), "50");
            assert_eq!(read(&dir, "cpu.max"), "50000 100000");
        }
    }
    // --stop-signal: USR1 ends `sleep` (the init forwards it), within the stop timeout.
    let t = Instant::now();
    c.ok(&["stop", "opt"]);
    assert_eq!(inspect(&c, "opt")["State"]["ExitCode"], 138);
    let _ = t;
}

/// `-t` gives the process a terminal of the client's size (ConsoleSize).
/// Opens a hijacked attach to `name` with stdin and returns the stream after the 101.
fn attach_stream(name: &str) -> std::os::unix::net::UnixStream {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d().socket()).unwrap();
    write!(
        s,
        "POST /containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: refengd\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "attach answered {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Writes `line` and reads until `want` comes back (up to 20 s); false if it never does.
fn says(s: &mut std::os::unix::net::UnixStream, line: &str, want: &str) -> bool {
    use std::io::{Read, Write};
    s.write_all(line.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&seen).contains(want) {
            return true;
        }
    }
    false
}

/// `docker run -it` sets StdinOnce; the CLI detaches (ctrl-p ctrl-q, read by the CLI itself)
/// by closing its connection. On a tty that does not close the shell's stdin, as in dockerd:
/// `docker attach` afterwards still reaches it.
fn tty_stdin_survives_a_detach() {
    let c = ours();
    let _m = Made(&c, &["td"]);
    let r = d().request(
        "POST",
        "/containers/create?name=td",
        Some(br#"{"Image":"busybox","Cmd":["sh"],"Tty":true,"OpenStdin":true,"StdinOnce":true,"AttachStdin":true,"AttachStdout":true,"AttachStderr":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut first = attach_stream("td");
    c.ok(&["start", "td"]);
    assert!(
        says(&mut first, "echo fi''rst\n", "first"),
        "the first attach"
    );
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&c, "td"), "running");
    let mut again = attach_stream("td");
    assert!(
        says(&mut again, "echo sec''ond\n", "second"),
        "stdin was closed by the first client's detach"
    );
}

fn tty_console_size() {
    let c = ours();
    let _m = Made(&c, &["tt"]);
    let r = d().request(
        "POST",
        "/containers/create?name=tt",
        Some(br#"{"Image":"busybox","Cmd":["sleep","300"],"Tty":true,"HostConfig":{"ConsoleSize":[31,97]}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    c.ok(&["start", "tt"]);
    assert_eq!(
        c.ok(&["exec", "tt", "stty", "size", "-F", "/dev/console"])
            .trim(),
        "31 97"
    );
    let r = d().request(
        "POST",
        "/containers/tt/exec",
        Some(br#"{"Cmd":["stty","size"],"Tty":true,"AttachStdout":true,"ConsoleSize":[12,34]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    let r = d().request(
        "POST",
        &format!("/exec/{id}/start"),
        Some(br#"{"Detach":false,"Tty":true,"ConsoleSize":[12,34]}"#),
    );
    assert_eq!(r.text().trim(), "12 34");
}

/// A stopped task of the container left in containerd (made here with `ctr`, behind refengd's
/// back, as one a crash could leave) does not stop `docker start`: it is deleted and the task
/// made again.
fn start_replaces_a_stale_task() {
    let c = ours();
    let _m = Made(&c, &["stale"]);
    c.ok(&["create", "--name", "stale", "busybox", "sh", "-c", "exit 3"]);
    let id = c
        .ok(&["inspect", "-f", "{{.Id}}", "stale"])
        .trim()
        .to_string();
    ctr_moby(&["tasks", "start", "-d", &id]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctr_moby(&["tasks", "ls"])
        .lines()
        .any(|l| l.starts_with(id.as_str()) && l.contains("STOPPED"))
    {
        assert!(
            Instant::now() < deadline,
            "no stopped task: {}",
            ctr_moby(&["tasks", "ls"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ok(&["start", "stale"]);
    assert_eq!(c.ok(&["wait", "stale"]).trim(), "3");
    assert_eq!(
        c.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stale"])
            .trim(),
        "3"
    );
}

// ---------------------------------------------------------------------------------------
// Differential: the same scenario on both engines.

/// The keys of a JSON value, recursively, as `a.b.c` paths (arrays by their first element).
fn shape(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                shape(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.first() {
                shape(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// Keys one engine has and the other not, with the reason the difference stays.
const INSPECT_SHAPE_ALLOWED: &[(&str, &str)] = &[
    (
        "HostConfig.Annotations",
        "API 1.43 added it; refengd serves API 1.44, dockerd 20.10 serves 1.41",
    ),
    (
        "HostConfig.KernelMemory",
        "API 1.44 removed it (refengd's version); dockerd 20.10 still shows it",
    ),
    (
        "HostConfig.KernelMemoryTCP",
        "API 1.44 removed it (refengd's version); dockerd 20.10 still shows it",
    ),
];

/// The parts of inspect whose values are compared, without what differs by nature (ids,
/// times, pids, paths of the engine's own directories).
fn comparable_state(v: &Value) -> Value {
    let mut st = v["State"].clone();
    for k in ["Pid", "StartedAt", "FinishedAt"] {
        if let Some(x) = st.get_mut(k) {
            *x = Value::String("*".into());
        }
    }
    serde_json::json!({
        "State": st,
        "Path": v["Path"],
        "Args": v["Args"],
        "Name": v["Name"],
        "RestartCount": v["RestartCount"],
        "Config.Cmd": v["Config"]["Cmd"],
        "Config.Env": v["Config"]["Env"],
        "Config.Labels": v["Config"]["Labels"],
        "Config.StopSignal": v["Config"]["StopSignal"],
        "Config.StopTimeout": v["Config"]["StopTimeout"],
        "HostConfig.RestartPolicy": v["HostConfig"]["RestartPolicy"],
        "HostConfig.Memory": v["HostConfig"]["Memory"],
        "HostConfig.Ulimits": v["HostConfig"]["Ulimits"],
        "HostConfig.Init": v["HostConfig"]["Init"],
        "HostConfig.NetworkMode": v["HostConfig"]["NetworkMode"],
        "HostConfig.AutoRemove": v["HostConfig"]["AutoRemove"],
    })
}

fn inspect_shapes_match_dockerd(o: &Cli, t: &Cli) {
    let mut shapes = Vec::new();
    let mut values = Vec::new();
    for c in [o, t] {
        let _m = Made(c, &["sh1", "sh2", "sh3"]);
        c.ok(&[
            "run",
            "-d",
            "--name",
            "sh1",
            "--network",
            "none",
            "--label",
            "a=b",
            "-e",
            "X=1",
            "--restart",
            "on-failure:3",
            "--memory",
            "32m",
            "--ulimit",
            "nofile=100:200",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "3",
            "--init",
            "busybox",
            "sleep",
            "300",
        ]);
        c.ok(&[
            "create",
            "--name",
            "sh2",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        let r = c.run(&[
            "run",
            "--name",
            "sh3",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 5",
        ]);
        assert_eq!(r.code, 5, "{}: {r:?}", c.name());
        let mut keys = BTreeSet::new();
        let mut vals = Vec::new();
        for n in ["sh1", "sh2", "sh3"] {
            let v = inspect(c, n);
            for part in ["State", "Config", "HostConfig"] {
                shape(&v[part], part, &mut keys);
            }
            if let Value::Object(m) = &v {
                keys.extend(m.keys().map(|k| format!("<top>.{k}")));
            }
            vals.push(comparable_state(&v));
        }
        shapes.push(keys);
        values.push(vals);
    }
    let allowed: BTreeSet<&str> = INSPECT_SHAPE_ALLOWED.iter().map(|(k, _)| *k).collect();
    let only_ours: Vec<&String> = shapes[0]
        .difference(&shapes[1])
        .filter(|k| !allowed.contains(k.as_str()))
        .collect();
    let only_theirs: Vec<&String> = shapes[1]
        .difference(&shapes[0])
        .filter(|k| !allowed.contains(k.as_str()))
        .collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "inspect keys only refengd has: {only_ours:#?}\nonly dockerd has: {only_theirs:#?}"
    );
    for (ours, theirs) in values[0].iter().zip(&values[1]) {
        assert_eq!(ours, theirs, "inspect values (refengd left, dockerd right)");
    }
}

/// An error text with the ids of one engine replaced.
fn norm(s: &str) -> String {
    let cut = |c: char| c.is_whitespace() || matches!(c, '"' | '/' | ':' | '.');
    let mut out = String::new();
    for w in s.split_inclusive(cut) {
        let core = w.trim_end_matches(cut);
        if core.len() >= 12 && core.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
            out.push_str(&w[core.len()..]);
        } else {
            out.push_str(w);
        }
    }
    out
}

/// `docker ps`'s table with ids replaced, its ages ("Less than a second ago", "2 seconds
/// ago": the two engines are asked a moment apart) made one, and the padding, which follows
/// the widest cell, made one space.
fn norm_table(s: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in norm(s).lines() {
        words.clear();
        for w in line.split_whitespace() {
            words.push(w.to_string());
            let n = words.len();
            let age = n >= 3
                && words[n - 1] == "ago"
                && (words[n - 2].starts_with("second") || words[n - 2].starts_with("minute"));
            if age {
                words.truncate(n - 1);
                while words.last().is_some_and(|w| {
                    w.chars().all(|c| c.is_ascii_digit())
                        || ["Less", "than", "a", "About", "second", "seconds"].contains(&w.as_str())
                }) {
                    words.pop();
                }
                words.push("<age>".into());
            }
        }
        out.push(words.join(" "));
    }
    out.join("\n")
}

/// A failing CLI call compared on both engines; with `Some((phrase, reason))` the exit codes
/// must match and both texts hold `phrase`, the rest of the wording differing for `reason`.
type Failure = (
    &'static [&'static str],
    Option<(&'static str, &'static str)>,
);

/// dockerd's chain (containerd, its runc shim, runc) words a runtime failure its own way, and
/// refeng-runc's error log line reaches the container's stderr; the CLI's exit code comes
/// from the runtime's phrase, which both carry.
const RUNTIME_WORDING: &str =
    "the layers between the engine and the runtime word the failure each their own way";

const FAILURES: &[Failure] = &[
    (&["start", "nope"], None),
    (&["stop", "nope"], None),
    (&["rm", "nope"], None),
    (&["inspect", "nope"], None),
    (&["logs", "nope"], None),
    (&["exec", "nope", "true"], None),
    (&["top", "nope"], None),
    (&["port", "nope"], None),
    (
        &["run", "--rm", "busybox", "no-such-cmd"],
        Some((
            r#"exec: "no-such-cmd": executable file not found in $PATH"#,
            RUNTIME_WORDING,
        )),
    ),
    (
        &["run", "--rm", "busybox", "/etc/passwd"],
        Some((r#"exec: "/etc/passwd": permission denied"#, RUNTIME_WORDING)),
    ),
    (&["run", "--rm", "busybox", "sh", "-c", "exit 42"], None),
    (&["run", "-d", "--name", "f1", "busybox", "true"], None),
    (&["create", "--name", "f2", "busybox", "true"], None),
    (&["rm", "f2"], None),
    (&["exec", "f3", "true"], None),
    (&["pause", "f3"], None),
    (&["unpause", "f2"], None),
    (&["rename", "f2", "f1"], None),
    (&["rename", "f2", "f2"], None),
    (&["wait", "nope"], None),
    (&["kill", "f3"], None),
    (&["start", "f2"], None),
    (&["exec", "f2", "no-such-cmd"], None),
    (&["exec", "-u", "nobody-here", "f2", "true"], None),
];

fn cli_failures_match_dockerd(o: &Cli, t: &Cli) {
    let mut got = Vec::new();
    for c in [o, t] {
        let _m = Made(c, &["f1", "f2", "f3"]);
        c.ok(&["create", "--name", "f1", "busybox", "true"]);
        c.ok(&["run", "-d", "--name", "f2", "busybox", "sleep", "300"]);
        c.ok(&["create", "--name", "f3", "busybox", "true"]);
        got.push(
            FAILURES
                .iter()
                .map(|(args, _)| {
                    let r = c.run(args);
                    (r.code, norm(r.stderr.trim()))
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut diffs = Vec::new();
    for (((args, allowed), ours), theirs) in FAILURES.iter().zip(&got[0]).zip(&got[1]) {
        let same = match allowed {
            None => ours == theirs,
            Some((phrase, _)) => {
                ours.0 == theirs.0 && ours.1.contains(phrase) && theirs.1.contains(phrase)
            }
        };
        if !same {
            diffs.push(format!(
                "docker {}:\n  refengd: {} {}\n  dockerd: {} {}",
                args.join(" "),
                ours.0,
                ours.1,
                theirs.0,
                theirs.1
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

fn ps_lines_and_wait_match_dockerd(o: &Cli, t: &Cli) {
    let mut got = Vec::new();
    for c in [o, t] {
        let _m = Made(c, &["p1", "p2", "p3"]);
        c.ok(&[
            "run",
            "-d",
            "--name",
            "p1",
            "--network",
            "none",
            "--label",
            "x=y",
            "busybox",
            "sleep",
            "300",
        ]);
        c.ok(&[
            "run",
            "-d",
            "--name",
            "p2",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ]);
        c.ok(&[
            "create",
            "--name",
            "p3",
            "--network",
            "none",
            "busybox",
            "echo",
            "a b",
        ]);
        let w = c.ok(&["wait", "p2"]);
        let mut lines = vec![format!("wait p2: {w}")];
        for filter in [
            "status=running",
            "status=exited",
            "status=created",
            "label=x",
            "name=p",
            "exited=3",
            "ancestor=busybox",
        ] {
            let ps = c.ok(&[
                "ps", "-a", "--no-trunc", "--filter", filter, "--filter", "name=p", "--format",
                "{{.Names}}|{{.Image}}|{{.Command}}|{{.Labels}}|{{.Ports}}|{{.Mounts}}|{{.Networks}}|{{.State}}",
            ]);
            let mut v: Vec<&str> = ps.lines().collect();
            v.sort();
            lines.push(format!("ps {filter}: {v:?}"));
        }
        let table = c.ok(&["ps", "-a", "--filter", "name=p3"]);
        lines.push(norm_table(&table));
        let sock = match c {
            Cli::Ours(r) => r.socket(),
            Cli::Theirs(t) => t.dir().join("docker.sock"),
        };
        for (path, label) in [
            ("/containers/p2/wait", "wait exited"),
            ("/containers/p3/wait?condition=not-running", "wait created"),
            ("/containers/nope/wait", "wait missing"),
            ("/containers/p2/wait?condition=bogus", "wait bad condition"),
        ] {
            let r = engine_support::try_request(&sock, "POST", &format!("/v1.41{path}"), &[], None)
                .unwrap();
            lines.push(format!("{label}: {} {}", r.status, r.text().trim()));
        }
        got.push(lines);
    }
    let diffs: Vec<String> = got[0]
        .iter()
        .zip(&got[1])
        .filter(|(a, b)| a != b)
        .filter(|(a, _)| !WAIT_ALLOWED.iter().any(|(label, _)| a.starts_with(label)))
        .map(|(a, b)| format!("refengd: {a}\ndockerd: {b}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// Lines of the comparison above that differ, with the reason.
const WAIT_ALLOWED: &[(&str, &str)] = &[(
    "wait bad condition:",
    "dockerd 20.10 waits for not-running on an unknown condition; later engines, and refengd, \
     refuse it with 400 'invalid condition' (checked on refengd in wait_conditions)",
)];

/// A comparison of one scenario on refengd (first) and dockerd.
type Comparison = fn(&Cli, &Cli);

/// One private dockerd for the comparisons below; each comparison reports on its own, and
/// dockerd is stopped (and its state removed) when they are done, also after failures.
/// A commit of a container that changed nothing adds no layer in either engine, only a step
/// in the history, and `docker diff` lists the same nothing: the runtime's mount points are no
/// change.
fn unchanged_commits_match_dockerd(o: &Cli, t: &Cli) {
    let got: Vec<_> = [o, t]
        .into_iter()
        .map(|c| {
            let _m = Made(c, &["ilc"]);
            unchanged_commit(c, "ilc")
        })
        .collect();
    assert_eq!(got[0], got[1], "refengd's, then dockerd's");
}

fn differential_against_dockerd() {
    let dockerd = Dockerd::start();
    let t = Cli::Theirs(&dockerd);
    import(&t, &world().tar);
    let o = ours();
    let mut failed = Vec::new();
    let parts: [(&str, Comparison); 4] = [
        ("inspect shapes", inspect_shapes_match_dockerd),
        ("unchanged commits", unchanged_commits_match_dockerd),
        ("cli failures", cli_failures_match_dockerd),
        ("ps lines and wait", ps_lines_and_wait_match_dockerd),
    ];
    for (name, f) in parts {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&o, &t))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    drop(dockerd);
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    let tests: &[(&str, &dyn Fn())] = &[
        ("lifecycle_verbs_and_ps", &lifecycle_verbs_and_ps),
        ("run_exit_codes_and_errors", &run_exit_codes_and_errors),
        (
            "logs_tail_since_follow_timestamps",
            &logs_tail_since_follow_timestamps,
        ),
        ("exec_options_and_attach", &exec_options_and_attach),
        ("port_and_ps_format", &port_and_ps_format),
        ("wait_conditions", &wait_conditions),
        ("restart_policies", &restart_policies),
        ("run_rm_delivers_all_output", &run_rm_delivers_all_output),
        (
            "commits_leave_the_mount_points_out",
            &commits_leave_the_mount_points_out,
        ),
        (
            "wait_answers_after_the_output_is_logged",
            &wait_answers_after_the_output_is_logged,
        ),
        (
            "docker_py_run_remove_returns_output",
            &docker_py_run_remove_returns_output,
        ),
        ("docker_py_containers", &docker_py_containers),
        ("options_reach_the_container", &options_reach_the_container),
        ("tty_console_size", &tty_console_size),
        ("start_replaces_a_stale_task", &start_replaces_a_stale_task),
        ("tty_stdin_survives_a_detach", &tty_stdin_survives_a_detach),
        (
            "differential_against_dockerd",
            &differential_against_dockerd,
        ),
        (
            "the_scenarios_pass_over_the_real_containerd",
            &the_scenarios_pass_over_the_real_containerd,
        ),
    ];
    let over = over_real_containerd();
    let tests: Vec<(&str, &dyn Fn())> = tests
        .iter()
        .filter(|(name, _)| {
            !over
                || !matches!(
                    *name,
                    "differential_against_dockerd" | "the_scenarios_pass_over_the_real_containerd"
                )
        })
        .copied()
        .collect();
    engine_support::run(&tests, || {
        if let Some(w) = WORLD.get() {
            w.refengd.shutdown();
            drop(
                w.containerd
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
            );
        }
    });
}
