//! `refeng` against the docker CLI 28: for each command, `docker X` and `refeng X` are run
//! against the same daemon, first a private refengd, then a private real dockerd 20.10, and
//! must print the same output and exit with the same code once ids, names made for each CLI
//! and ages are normalised. Commands that change state run on objects made for each CLI
//! (names with a per-CLI part that the comparison folds back).
//!
//! One refengd (bridge `none`) and one dockerd (no bridge, no iptables) serve the binary; the
//! runner stops both by pid at the end, also after failures, and removes what they left.
//! The whole binary re-runs itself inside `unshare --net --mount`, so the user networks the
//! network cases make (a bridge each) touch no host interface or route.

#[path = "containerd_support/mod.rs"]
mod containerd_support;
mod engine_support;
mod peers;
mod registry_support;
use containerd_support::archive::rootfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set in the copy of the binary that runs inside the private namespaces.
const INNER: &str = "REFENG_CLI_DOCKER_TEST_INNER";
use std::sync::{Mutex, OnceLock};

use engine_support::{Refengd, DOCKER_CLI};
use peers::dockerd::Dockerd;
use registry_support::RegistryServer;

const REFENG: &str = env!("CARGO_BIN_EXE_refeng");

struct World {
    refengd: Refengd,
    dockerd: Mutex<Option<Dockerd>>,
    /// The dockerd's address (kept apart so the lock is not held while commands run).
    dockerd_host: String,
    dir: PathBuf,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let refengd = Refengd::start();
        let dockerd = Dockerd::start();
        let dir = refengd.dir().join("files");
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("rootfs");
        rootfs::busybox(&root);
        rootfs::tar(&root, &dir.join("busybox.tar"));
        let _ = std::fs::remove_dir_all(&root);
        let archives = containerd_support::archive::archives();
        std::fs::copy(&archives.docker, dir.join("other.tar")).unwrap();
        std::fs::write(
            dir.join("env.list"),
            "# a comment\nFROM_FILE=1\n\nPASSED\nB=x=y\n",
        )
        .unwrap();
        let w = World {
            dockerd_host: dockerd.host(),
            refengd,
            dockerd: Mutex::new(Some(dockerd)),
            dir,
        };
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let tar = w.dir.join("busybox.tar");
            d.docker_ok(
                &w,
                &[
                    "import",
                    "-c",
                    "ENV PATH=/bin",
                    &tar.to_string_lossy(),
                    "busybox:latest",
                ],
            );
            let o = run(
                &w,
                d,
                Client::Docker,
                &[
                    "run",
                    "--name",
                    "cli-exited",
                    "-l",
                    "a=1",
                    "busybox",
                    "sh",
                    "-c",
                    "exit 3",
                ],
                None,
            );
            assert_eq!(o.code, 3, "{o:?}");
            d.docker_ok(
                &w,
                &[
                    "run",
                    "-d",
                    "--name",
                    "cli-running",
                    "busybox",
                    "sleep",
                    "1000",
                ],
            );
        }
        w
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Refengd,
    Dockerd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Docker,
    Refeng,
}

impl Daemon {
    fn host(self, w: &World) -> String {
        match self {
            Daemon::Refengd => w.refengd.host(),
            Daemon::Dockerd => w.dockerd_host.clone(),
        }
    }

    fn docker_ok(self, w: &World, args: &[&str]) -> String {
        let o = run(w, self, Client::Docker, args, None);
        assert_eq!(o.code, 0, "docker {args:?} on {self:?}: {o:?}");
        o.stdout
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs one CLI against one daemon, bounded in time so that a hang fails the test.
fn run(w: &World, d: Daemon, c: Client, args: &[&str], stdin: Option<&Path>) -> Outcome {
    let out = cli(w, d, c, args, stdin).output().expect("run the CLI");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The command line of one CLI against one daemon, bounded in time.
fn cli(w: &World, d: Daemon, c: Client, args: &[&str], stdin: Option<&Path>) -> Command {
    cli_bounded(w, d, c, args, stdin, &["-k", "5", "90"])
}

/// As [`cli`], with the `timeout` arguments given.
fn cli_bounded(
    w: &World,
    d: Daemon,
    c: Client,
    args: &[&str],
    stdin: Option<&Path>,
    bound: &[&str],
) -> Command {
    let program = match c {
        Client::Docker => DOCKER_CLI,
        Client::Refeng => REFENG,
    };
    let mut cmd = Command::new("timeout");
    cmd.args(bound)
        .arg(program)
        .args(args)
        .env("DOCKER_HOST", d.host(w))
        .env("DOCKER_CONFIG", w.dir.join(format!("config-{c:?}")))
        .env("PASSED", "from-env")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env("TZ", "UTC");
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    cmd
}

/// Ids (12 or 64 hex digits) replaced by `<id>`, each CLI's name for itself and for its
/// objects folded into one, and ages made one.
fn norm(s: &str, c: Client) -> String {
    let me = match c {
        Client::Docker => "docker",
        Client::Refeng => "refeng",
    };
    let s = s
        .replace(&format!("{me}: "), "CLI: ")
        .replace(&format!("'{me} "), "'CLI ")
        .replace("-docker-", "-CLI-")
        .replace("-refeng-", "-CLI-");
    // docker's flag errors print a usage line between the error and the help hint.
    let s: String = s
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("Usage:") && !l.trim().is_empty())
        .collect();
    let cut =
        |ch: char| ch.is_whitespace() || matches!(ch, '"' | '/' | ':' | '.' | ',' | '[' | ']');
    let mut out = String::new();
    for w in s.split_inclusive(cut) {
        let core = w.trim_end_matches(cut);
        if (core.len() == 12 || core.len() == 64) && core.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
            out.push_str(&w[core.len()..]);
        } else {
            out.push_str(w);
        }
    }
    ages(&out)
}

/// "Less than a second ago", "3 seconds ago", "Up 2 seconds": the CLIs ask a moment apart.
fn ages(s: &str) -> String {
    let re =
        regex::Regex::new(r"(Less than a second|About a minute|\d+ seconds?|\d+ minutes?)( ago)?")
            .unwrap();
    let s = re.replace_all(s, "<age>$2");
    // RFC 3339 times (a runtime's log line, info's system time).
    let time =
        regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap();
    time.replace_all(&s, "<time>").into_owned()
}

/// Table padding follows the widest cell, which an age can change: runs of spaces made one.
fn squeeze(s: &str) -> String {
    let re = regex::Regex::new(r" {2,}").unwrap();
    s.lines()
        .map(|l| re.replace_all(l.trim_end(), " | ").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `args` with both CLIs on `d`; `@` in an argument becomes a name of each CLI's own.
fn both(d: Daemon, args: &[&str], stdin: Option<&Path>) -> (Outcome, Outcome) {
    (
        one(d, Client::Docker, args, stdin),
        one(d, Client::Refeng, args, stdin),
    )
}

/// Runs `args` with client `c` on `d`, `@` in an argument made a name of that CLI's own, its
/// output normalised.
fn one(d: Daemon, c: Client, args: &[&str], stdin: Option<&Path>) -> Outcome {
    let me = match c {
        Client::Docker => "docker",
        Client::Refeng => "refeng",
    };
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace('@', &format!("cli-{me}-x")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(world(), d, c, &args, stdin);
    Outcome {
        code: o.code,
        stdout: norm(&o.stdout, c),
        stderr: norm(&o.stderr, c),
    }
}

/// Both CLIs fail with the same code, nothing on stdout and an error that starts with
/// `prefix`: for errors whose detail is worded by the parser underneath (Go's template
/// package, docker's reference library).
#[track_caller]
fn same_failure(args: &[&str], prefix: &str) {
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        let (theirs, ours) = both(d, args, None);
        assert_ne!(theirs.code, 0, "{theirs:?}");
        assert_eq!(
            (ours.code, &ours.stdout),
            (theirs.code, &theirs.stdout),
            "{ours:?}"
        );
        for o in [&ours, &theirs] {
            assert!(o.stderr.starts_with(prefix), "{args:?} on {d:?}: {o:?}");
        }
    }
}

/// Both CLIs print the same and exit the same on both daemons.
#[track_caller]
fn same(args: &[&str]) {
    same_with(args, None, false);
}

/// As [`same`], with table padding made one (for outputs with ages).
#[track_caller]
fn same_table(args: &[&str]) {
    same_with(args, None, true);
}

#[track_caller]
fn same_with(args: &[&str], stdin: Option<&Path>, table: bool) {
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        let (mut theirs, mut ours) = both(d, args, stdin);
        if table {
            for o in [&mut theirs, &mut ours] {
                o.stdout = squeeze(&o.stdout);
            }
        }
        assert_eq!(
            ours, theirs,
            "refeng (left) and docker (right) differ for {args:?} on {d:?}"
        );
    }
}

fn file(name: &str) -> String {
    world().dir.join(name).to_string_lossy().into_owned()
}

/// Removes the containers a test made for each CLI (`@` names), on both daemons.
fn clean(names: &[&str]) {
    let w = world();
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        for me in ["docker", "refeng"] {
            for n in names {
                let n = n.replace('@', &format!("cli-{me}-x"));
                let _ = run(w, d, Client::Docker, &["rm", "-f", "-v", &n], None);
            }
        }
    }
}

/// Runs `f`, then `clean(names)` also when it panicked.
fn with_cleanup(names: &[&str], f: impl FnOnce()) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    clean(names);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

fn version_and_info() {
    let w = world();
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        let server = |s: &str| -> String {
            s.split_once("\nServer:")
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default()
        };
        let theirs = run(w, d, Client::Docker, &["version"], None);
        let ours = run(w, d, Client::Refeng, &["version"], None);
        assert_eq!(ours.code, 0, "{ours:?}");
        assert!(!server(&theirs.stdout).is_empty(), "{theirs:?}");
        assert_eq!(
            server(&ours.stdout),
            server(&theirs.stdout),
            "version on {d:?}"
        );
        // The negotiated version is the daemon's when older: dockerd 20.10 speaks 1.41.
        let api = |o: &Outcome| {
            o.stdout
                .lines()
                .find(|l| l.contains("API version"))
                .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_owned())
        };
        let want = if d == Daemon::Dockerd { "1.41" } else { "1.44" };
        assert_eq!(api(&ours).as_deref(), Some(want), "{}", ours.stdout);
        let theirs = run(w, d, Client::Docker, &["info"], None);
        let ours = run(w, d, Client::Refeng, &["info"], None);
        assert_eq!(ours.code, 0, "{ours:?}");
        // docker lists the runtimes in Go's map order, which changes from run to run.
        let runtimes_sorted = |s: String| -> String {
            s.lines()
                .map(|l| match l.strip_prefix(" Runtimes: ") {
                    Some(r) => {
                        let mut v: Vec<&str> = r.split(' ').collect();
                        v.sort_unstable();
                        format!(" Runtimes: {}", v.join(" "))
                    }
                    None => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            runtimes_sorted(norm(&server(&ours.stdout), Client::Refeng)),
            runtimes_sorted(norm(&server(&theirs.stdout), Client::Docker)),
            "info on {d:?}"
        );
    }
    same(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.Os}} {{.Server.Arch}}",
    ]);
    same(&[
        "info",
        "--format",
        "{{.Containers}} {{.Images}} {{.Driver}} {{json .Plugins.Log}}",
    ]);
}

/// A container with labels given out of key order: Go's templates walk and print a map in key
/// order, and refeng's must too (it once walked them in hash order).
fn labels_in_key_order() {
    let w = world();
    with_cleanup(&["cli-labels"], || {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            d.docker_ok(
                w,
                &[
                    "create",
                    "--name",
                    "cli-labels",
                    "-l",
                    "zeta=6",
                    "-l",
                    "b=2",
                    "-l",
                    "B=0",
                    "-l",
                    "c.d=3",
                    "-l",
                    "a=1",
                    "-l",
                    "mid=x=4",
                    "busybox",
                    "true",
                ],
            );
        }
        same(&[
            "inspect",
            "--format",
            "{{range $k,$v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
            "cli-labels",
        ]);
        same(&[
            "inspect",
            "--format",
            "{{.Config.Labels}} {{range .Config.Labels}}{{.}},{{end}} {{json .Config.Labels}} \
             {{index .Config.Labels \"mid\"}} {{.Config.Cmd}}",
            "cli-labels",
        ]);
        // `json` of a struct: its fields in their order, as docker's CLI encodes them again.
        same(&[
            "inspect",
            "--format",
            "{{json .State}} {{json .Config}} {{json .HostConfig.RestartPolicy}}",
            "cli-labels",
        ]);
        // `{{.Labels}}` of a list row is docker's own string, joined in Go's map order, which
        // Go makes random on every run: the same labels, in an order not to compare.
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let args = [
                "ps",
                "-a",
                "--filter",
                "name=cli-labels",
                "--format",
                "{{.Labels}}",
            ];
            let (theirs, ours) = both(d, &args, None);
            let items = |o: &Outcome| (o.code, sorted_parts(&o.stdout, ','));
            assert_eq!(items(&theirs).1.len(), 6, "{theirs:?}");
            assert_eq!(items(&ours), items(&theirs), "{args:?} on {d:?}");
        }
        // Go's parser refuses a function it does not know, even with no row to call it on.
        same(&[
            "images",
            "--filter",
            "reference=cli-no-such",
            "--format",
            "{{.ID | nope}}",
        ]);
    });
}

fn images_list() {
    same_table(&["images"]);
    same_table(&["images", "-a"]);
    same_table(&["images", "--no-trunc"]);
    same(&["images", "-q"]);
    same(&["images", "-q", "--no-trunc"]);
    same(&["images", "busybox"]);
    same(&[
        "images",
        "--filter",
        "reference=busy*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    same(&["images", "--filter", "dangling=true", "-q"]);
    same(&["images", "--filter", "bogus"]);
    same(&["images", "--format", "{{.ID}}\t{{.Size}}\t{{.VirtualSize}}"]);
    same(&[
        "images",
        "--format",
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}",
    ]);
    same(&[
        "images",
        "--format",
        "{{json .Repository}} {{.Containers}} {{.Digest}}",
    ]);
    same_failure(
        &["images", "--format", "{{.Nope"],
        "template parsing error: ",
    );
}

fn inspect_images_and_containers() {
    same(&["image", "inspect", "busybox"]);
    same(&["inspect", "busybox"]);
    same(&["inspect", "cli-exited"]);
    same(&["container", "inspect", "cli-exited", "cli-running"]);
    same(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}} {{json .Config.Labels}} {{index .Config.Labels \"a\"}}",
        "cli-exited",
    ]);
    same(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}[{{.}}]{{end}} {{json .Config.Cmd}}",
        "busybox",
    ]);
    same(&["inspect", "--format", "{{.Name}}", "cli-exited", "nope"]);
    same(&["inspect", "nope"]);
    same(&["image", "inspect", "nope"]);
    same(&[
        "inspect", "--type", "image", "--format", "{{.Id}}", "busybox",
    ]);
}

fn load_and_import() {
    let other = file("other.tar");
    same(&["load", "-i", &other]);
    same(&["load", "-q", "-i", &other]);
    same_with(&["load"], Some(Path::new(&other)), false);
    same(&["load", "-i", "/nonexistent.tar"]);
    same(&["image", "inspect", "--format", "{{.RepoTags}}", "other:1"]);
    let tar = file("busybox.tar");
    with_cleanup(&[], || {
        same(&[
            "import",
            "-c",
            "ENV PATH=/bin",
            "-m",
            "hello",
            &tar,
            "imported-@:v1",
        ]);
        same_with(
            &["import", "-", "imported-@:v2"],
            Some(Path::new(&tar)),
            false,
        );
        same(&[
            "inspect",
            "--format",
            "{{.Comment}} {{.Config.Env}} {{.RepoTags}}",
            "imported-@:v1",
        ]);
        same_failure(&["import", &tar, "Bad:Name"], "invalid reference format");
        same(&["rmi", "imported-@:v1", "imported-@:v2"]);
        same(&["rmi", "imported-@:v1"]);
    });
}

fn run_foreground() {
    with_cleanup(&["@"], || {
        same(&["run", "--rm", "busybox", "echo", "hello", "world"]);
        same(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ]);
        same(&[
            "run",
            "--rm",
            "-e",
            "A=1",
            "-e",
            "PASSED",
            "--env-file",
            &file("env.list"),
            "busybox",
            "sh",
            "-c",
            "env | grep -v HOSTNAME | sort",
        ]);
        same(&[
            "run",
            "--rm",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "busybox",
            "sh",
            "-c",
            "pwd; id",
        ]);
        same(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "busybox",
            "via",
            "entrypoint",
        ]);
        same(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
        same(&[
            "run",
            "--rm",
            "--tmpfs",
            "/t:size=1m",
            "busybox",
            "sh",
            "-c",
            "touch /t/x && echo ok",
        ]);
        same(&[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,dst=/m",
            "busybox",
            "sh",
            "-c",
            "touch /m/x && echo ok",
        ]);
        same(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/files:ro", world().dir.display()),
            "busybox",
            "cat",
            "/files/env.list",
        ]);
        same(&[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            "busybox",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ]);
        same(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ]);
        same(&[
            "run",
            "--name",
            "@",
            "-l",
            "x=y",
            "--restart",
            "no",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "busybox",
            "true",
        ]);
        same(&["inspect", "--format", "{{.Config.Labels}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}", "@"]);
        same(&["run", "--name", "@", "busybox", "true"]);
        same(&["run", "--rm", "-p", "notaport", "busybox", "true"]);
        same(&[
            "run",
            "--rm",
            "--mount",
            "type=bind,target=/x",
            "busybox",
            "true",
        ]);
    });
}

fn run_failures_exit_codes() {
    let w = world();
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        for (args, code) in [
            (&["run", "--rm", "busybox", "no-such-cmd"][..], 127),
            (&["run", "--rm", "busybox", "/etc/passwd"][..], 126),
            (&["run", "--rm", "busybox", "sh", "-c", "exit 42"][..], 42),
        ] {
            let theirs = run(w, d, Client::Docker, args, None);
            let ours = run(w, d, Client::Refeng, args, None);
            assert_eq!(theirs.code, code, "docker {args:?} on {d:?}: {theirs:?}");
            assert_eq!(ours.code, code, "refeng {args:?} on {d:?}: {ours:?}");
        }
        // Flags refengd has no equivalent for are refused by name, before anything is sent.
        let ours = run(
            w,
            d,
            Client::Refeng,
            &["run", "--rm", "--pid", "host", "busybox", "true"],
            None,
        );
        assert_eq!(ours.code, 125, "{ours:?}");
        assert!(ours.stderr.contains("--pid is not supported"), "{ours:?}");
    }
}

fn run_detached_ps_rm() {
    with_cleanup(&["@"], || {
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for (c, me) in [(Client::Docker, "docker"), (Client::Refeng, "refeng")] {
                let name = format!("cli-{me}-x");
                let o = run(
                    w,
                    d,
                    c,
                    &[
                        "run", "-d", "--name", &name, "-l", "role=ps", "busybox", "sleep", "1000",
                    ],
                    None,
                );
                assert_eq!(o.code, 0, "{o:?}");
                assert_eq!(
                    o.stdout.trim().len(),
                    64,
                    "run -d prints the full id: {o:?}"
                );
            }
        }
        same_table(&["ps"]);
        same_table(&["ps", "-a"]);
        same_table(&["ps", "-a", "--no-trunc"]);
        same_table(&["ps", "-a", "-s"]);
        same(&["ps", "-q"]);
        same(&["ps", "-aq", "--no-trunc"]);
        same(&[
            "ps",
            "-a",
            "--filter",
            "name=cli-exited",
            "--format",
            "{{.Names}} {{.Status}} {{.State}} {{.Command}}",
        ]);
        same(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--filter",
            "label=a=1",
            "--format",
            "{{.Names}}\t{{.Labels}}",
        ]);
        same(&[
            "ps",
            "--filter",
            "label=role=ps",
            "--format",
            "table {{.Names}}\t{{.Image}}\t{{.Networks}}\t{{.Mounts}}",
        ]);
        same(&[
            "ps",
            "-a",
            "--format",
            "{{json .Names}} {{.LocalVolumes}}",
            "--filter",
            "name=cli-running",
        ]);
        same(&["ps", "-n", "1", "--format", "{{.Names}}"]);
        same(&["ps", "-l", "-q"]);
        same(&["ps", "--filter", "nope"]);
        same(&["rm", "@"]);
        same(&["rm", "-f", "@"]);
        same(&["rm", "@"]);
        same(&["rm", "nope1", "nope2"]);
    });
}

fn lifecycle_verbs() {
    with_cleanup(&["@"], || {
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for (c, me) in [(Client::Docker, "docker"), (Client::Refeng, "refeng")] {
                let name = format!("cli-{me}-x");
                let o = run(
                    w,
                    d,
                    c,
                    &[
                        "create",
                        "--name",
                        &name,
                        "busybox",
                        "sh",
                        "-c",
                        "echo started; sleep 1000",
                    ],
                    None,
                );
                assert_eq!(o.code, 0, "{o:?}");
                assert_eq!(o.stdout.trim().len(), 64, "{o:?}");
            }
        }
        same(&["start", "@"]);
        same(&["pause", "@"]);
        same(&["ps", "--filter", "name=@", "--format", "{{.Status}}"]);
        same(&["unpause", "@"]);
        same(&["exec", "@", "sh", "-c", "echo in; echo err >&2; exit 5"]);
        same(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "1000",
            "@",
            "sh",
            "-c",
            "echo $X; pwd; id -u",
        ]);
        same(&["exec", "-d", "@", "true"]);
        same(&["logs", "@"]);
        same(&["logs", "--tail", "1", "@"]);
        same(&["kill", "-s", "KILL", "@"]);
        same(&["wait", "@"]);
        same(&["start", "@"]);
        same(&["stop", "-t", "1", "@"]);
        same(&["restart", "-t", "0", "@"]);
        same(&["stop", "-t", "0", "@"]);
        same(&["rename", "@", "@-renamed"]);
        same(&["rename", "@-renamed", "@"]);
        same(&["wait", "nope"]);
        same(&["kill", "nope"]);
    });
}

/// top, port, diff, export, commit, update, stats and container prune on a container of each
/// CLI's own. Each container writes its own content, so that the committed layers differ
/// (dockerd shares a layer between identical commits, and `rmi` then deletes it only once).
fn container_inspection_verbs() {
    with_cleanup(&["@", "@-p1", "@-p2"], || {
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for (c, me) in [(Client::Docker, "docker"), (Client::Refeng, "refeng")] {
                let name = format!("cli-{me}-x");
                let o = run(
                    w,
                    d,
                    c,
                    &[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "busybox",
                        "sh",
                        "-c",
                        &format!("echo {name} > /new; exec sleep 1000"),
                    ],
                    None,
                );
                assert_eq!(o.code, 0, "{o:?}");
                for p in ["p1", "p2"] {
                    let o = run(
                        w,
                        d,
                        c,
                        &[
                            "run",
                            "--name",
                            &format!("{name}-{p}"),
                            "-l",
                            &format!("prune={name}"),
                            "busybox",
                            "true",
                        ],
                        None,
                    );
                    assert_eq!(o.code, 0, "{o:?}");
                }
            }
        }
        // The processes' ids and start times differ between the two containers.
        let digits = regex::Regex::new(r"[0-9]+(:[0-9]+)*").unwrap();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let (theirs, ours) = both(d, &["top", "@"], None);
            let strip = |s: &str| squeeze(&digits.replace_all(s, "N"));
            assert_eq!(
                (ours.code, strip(&ours.stdout)),
                (theirs.code, strip(&theirs.stdout)),
                "top on {d:?}"
            );
        }
        same(&["diff", "@"]);
        same(&["port", "@"]);
        same(&["port", "@", "80"]);
        same(&["port", "nope"]);
        let tar = world().dir.join("export.tar");
        same(&["export", "-o", &tar.to_string_lossy(), "@"]);
        let listing = Command::new("tar").arg("tf").arg(&tar).output().unwrap();
        assert!(
            String::from_utf8_lossy(&listing.stdout)
                .lines()
                .any(|l| l == "new"),
            "{listing:?}"
        );
        same(&["export", "-o", "/nonexistent/dir/x.tar", "@"]);
        same(&[
            "commit",
            "-m",
            "a message",
            "-c",
            "ENV COMMITTED=1",
            "@",
            "cli-@-img:1",
        ]);
        same(&[
            "inspect",
            "--format",
            "{{.Comment}} {{.Config.Env}} {{.RepoTags}}",
            "cli-@-img:1",
        ]);
        same(&["rmi", "cli-@-img:1"]);
        same(&[
            "update",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--restart",
            "on-failure:2",
            "@",
        ]);
        same(&["inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "@"]);
        same(&["update", "--memory", "lots", "@"]);
        same(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "@",
        ]);
        same(&[
            "stats",
            "--no-stream",
            "--format",
            "table {{.Name}}\t{{.PIDs}}",
            "@",
        ]);
        same(&["stats", "--no-stream", "nope"]);
        same(&["container", "prune", "-f", "--filter", "label=prune=@"]);
        same(&["ps", "-a", "--filter", "label=prune", "-q"]);
    });
}

/// history, save, tag, image prune and pull (its failure: no registry but loopback here).
fn image_verbs() {
    with_cleanup(&[], || {
        same_table(&["history", "busybox"]);
        same(&["history", "--no-trunc", "-H=false", "busybox"]);
        same(&["history", "-q", "busybox"]);
        same(&[
            "history",
            "--format",
            "{{.ID}}: {{.CreatedBy}} {{.Size}} {{.Comment}}",
            "busybox",
        ]);
        same(&["history", "nope"]);
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let theirs_tar = w.dir.join("saved-docker.tar");
            let ours_tar = w.dir.join("saved-refeng.tar");
            let t = run(
                w,
                d,
                Client::Docker,
                &["save", "-o", &theirs_tar.to_string_lossy(), "busybox"],
                None,
            );
            let o = run(
                w,
                d,
                Client::Refeng,
                &["save", "-o", &ours_tar.to_string_lossy(), "busybox"],
                None,
            );
            assert_eq!((o.code, t.code), (0, 0), "{o:?} {t:?}");
            assert_eq!(
                std::fs::read(&ours_tar).unwrap(),
                std::fs::read(&theirs_tar).unwrap(),
                "save on {d:?}: the same archive"
            );
        }
        same(&["save", "-o", "/nonexistent/dir/x.tar", "busybox"]);
        same(&["save", "-o", &file("never.tar"), "nope"]);
        same(&["tag", "busybox", "cli-@-tag:2"]);
        // One image with several tags: docker orders its rows by Go's map order, which
        // changes from run to run, so the lines are compared sorted.
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let args = [
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "cli-@-tag",
            ];
            let (theirs, ours) = both(d, &args, None);
            let sorted = |o: &Outcome| (o.code, sorted_parts(&o.stdout, '\n'), o.stderr.clone());
            assert_eq!(
                sorted(&ours),
                sorted(&theirs),
                "images by reference on {d:?}"
            );
        }
        same(&["rmi", "cli-@-tag:2"]);
        same(&["tag", "nope", "cli-@-tag:2"]);
        same(&["image", "prune", "-f", "--filter", "label=nothing=here"]);
        same(&["pull", "127.0.0.1:1/cli/none"]);
        // --all-tags: the name alone (no tag) in the request, refusals of a tag or digest.
        same(&["pull", "-a", "127.0.0.1:1/cli/none"]);
        same(&["image", "pull", "--all-tags", "127.0.0.1:1/cli/none:v1"]);
        same(&[
            "pull",
            "-a",
            "-q",
            "127.0.0.1:1/cli/none@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ]);
        same(&["pull", "-q", "127.0.0.1:1/cli/none:v1"]);
    });
}

/// volume ls/create/inspect/rm/prune and network ls/inspect of the networks every daemon has.
fn volumes_and_networks() {
    let w = world();
    let cleanup = || {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for me in ["docker", "refeng"] {
                let _ = run(
                    w,
                    d,
                    Client::Docker,
                    &["volume", "rm", "-f", &format!("cli-{me}-vol")],
                    None,
                );
            }
        }
    };
    with_cleanup(&[], || {
        same(&["volume", "create", "--label", "made=@", "cli-@-vol"]);
        same(&[
            "volume",
            "ls",
            "--filter",
            "label=made",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
        ]);
        same_table(&["volume", "ls", "--filter", "label=made"]);
        same(&["volume", "ls", "-q", "--filter", "label=made=@"]);
        same(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
            "cli-@-vol",
        ]);
        same(&["volume", "inspect", "nope"]);
        same(&["volume", "rm", "cli-@-vol", "nope"]);
        same(&["volume", "prune", "-f", "--filter", "label=nothing=here"]);
        same(&[
            "network",
            "ls",
            "--filter",
            "name=none",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ]);
        same(&[
            "network",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}}",
            "none",
            "host",
        ]);
        same(&["network", "inspect", "nope"]);
    });
    cleanup();
}

/// `events` and `system events` bounded by `--since`/`--until`, so the stream ends: the
/// daemon's record of a container made and removed for this test, in each layout.
fn events_since_until() {
    let w = world();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    with_cleanup(&["cli-events"], || {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let since = now().to_string();
            d.docker_ok(w, &["create", "--name", "cli-events", "busybox", "true"]);
            d.docker_ok(w, &["rm", "cli-events"]);
            let until = now() + 1;
            // Past `--until` the daemon replays its log and ends the stream at once.
            while now() <= until {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let until = until.to_string();
            let bounded = ["--since", since.as_str(), "--until", until.as_str()];
            for args in [
                &["events", "--filter", "container=cli-events"][..],
                &["system", "events", "--filter", "type=container"][..],
                &[
                    "events",
                    "-f",
                    "container=cli-events",
                    "--format",
                    "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Status}} {{.Scope}}",
                ][..],
                &["events", "--filter", "event=destroy", "--format", "json"][..],
            ] {
                let args: Vec<&str> = args.iter().chain(&bounded).copied().collect();
                let (theirs, ours) = both(d, &args, None);
                assert_eq!(theirs.code, 0, "{theirs:?}");
                assert!(theirs.stdout.contains("destroy"), "{args:?}: {theirs:?}");
                assert_eq!(
                    ours, theirs,
                    "refeng (left) and docker (right) differ for {args:?} on {d:?}"
                );
            }
        }
    });
    same_failure(&["events", "--format", "{{.Nope"], "Error parsing format: ");
    // docker runs the template once on an empty message first: `slice` fails on its empty ID,
    // `index` on a number for a map's key (a value error, not a parse error), and with
    // `--until` in the past, a CLI that skipped the run would end at once with no event.
    for format in ["{{slice .ID 0 12}}", "{{index .Actor.Attributes 1}}"] {
        same_failure(
            &["events", "--until", "1", "--format", format],
            "Error parsing format: ",
        );
    }
}

/// `system df` and `system df -v` over the test's images, containers and volumes.
fn system_df() {
    same_table(&["system", "df"]);
    same_table(&["system", "df", "-v"]);
    same(&[
        "system",
        "df",
        "--format",
        "{{.Type}}: {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}",
    ]);
    same(&["system", "df", "--format", "raw"]);
    same(&["system", "df", "--format", "json"]);
}

/// `system prune` limited by a label to containers made for each CLI, so the shared fixtures
/// stay: each CLI's exited container is removed and named in its output.
fn system_prune() {
    let w = world();
    with_cleanup(&["@-prune"], || {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for me in ["docker", "refeng"] {
                let name = format!("cli-{me}-x-prune");
                let label = format!("made=cli-{me}-x");
                d.docker_ok(
                    w,
                    &["create", "--name", &name, "-l", &label, "busybox", "true"],
                );
            }
            let (theirs, ours) = both(
                d,
                &["system", "prune", "-f", "--filter", "label=made=@"],
                None,
            );
            assert!(
                theirs.stdout.starts_with("Deleted Containers:\n<id>\n"),
                "{theirs:?}"
            );
            assert_eq!(ours, theirs, "system prune on {d:?}");
            let gone = run(
                w,
                d,
                Client::Docker,
                &["ps", "-aq", "--filter", "label=made"],
                None,
            );
            assert_eq!(gone.stdout, "", "{gone:?}");
        }
    });
    same(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]);
    same(&["system", "prune", "--filter", "label=nothing=here"]);
}

/// The network verbs on paths that make no bridge: `create` where the CLI refuses the
/// addresses before asking, and `rm`, `connect`, `disconnect` and `prune` on what exists. A
/// network that is made is compared in [`network_lifecycle`].
fn network_verbs() {
    same(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/16",
        "--gateway",
        "10.98.0.1",
        "@-net",
    ]);
    same(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/16",
        "--subnet",
        "10.100.0.0/16",
        "--ip-range",
        "10.99.1.0/24",
        "--ip-range",
        "10.99.2.0/24",
        "@-net",
    ]);
    same(&[
        "network",
        "create",
        "--subnet",
        "nope",
        "--gateway",
        "10.1.0.1",
        "@-net",
    ]);
    same(&["network", "rm", "nope"]);
    same(&["network", "rm", "-f", "nope"]);
    same(&["network", "connect", "nope", "cli-running"]);
    same(&["network", "disconnect", "nope", "cli-running"]);
    same(&["network", "connect", "none", "nope"]);
    same(&["network", "prune", "-f", "--filter", "label=nothing=here"]);
    same(&["network", "ls", "-q", "--filter", "name=cli-"]);
}

/// A user bridge network's life with a running container: `network create` (with a subnet of
/// the test's, so both CLIs get the same addresses), `ls`, `inspect -f`, `run --network`,
/// `connect` with an address and an alias, a second `connect`, `disconnect`, an `rm` refused
/// while an endpoint is left, and `rm`. Each CLI's networks are gone before the other's are
/// made, so both get the same subnet.
fn network_lifecycle() {
    let w = world();
    let cleanup = || {
        clean(&["@-netc"]);
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for me in ["docker", "refeng"] {
                for net in ["net", "net2"] {
                    let n = format!("cli-{me}-x-{net}");
                    let _ = run(w, d, Client::Docker, &["network", "rm", &n], None);
                }
            }
        }
    };
    let steps: &[&[&str]] = &[
        &["network", "create", "--subnet", "10.231.1.0/24", "@-net"],
        &[
            "network",
            "create",
            "--subnet",
            "10.231.2.0/24",
            "--label",
            "made=@",
            "@-net2",
        ],
        &[
            "network",
            "ls",
            "--filter",
            "name=@-net",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Labels}}",
        ],
        &["network", "ls", "--filter", "name=@-net"],
        &["network", "ls", "-q", "--filter", "label=made=@"],
        &[
            "run",
            "-d",
            "--name",
            "@-netc",
            "--network",
            "@-net",
            "busybox",
            "sleep",
            "1000",
        ],
        &[
            "network",
            "connect",
            "--ip",
            "10.231.2.5",
            "--alias",
            "other",
            "@-net2",
            "@-netc",
        ],
        &[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} \
             {{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}} {{.Labels}}",
            "@-net",
            "@-net2",
        ],
        &[
            "inspect",
            "-f",
            "{{len .NetworkSettings.Networks}} {{range $n, $e := .NetworkSettings.Networks}}\
             {{$n}} {{$e.IPAddress}} {{$e.Aliases}};{{end}} \
             {{with index .NetworkSettings.Networks \"@-net2\"}}{{.IPAMConfig.IPv4Address}}{{end}}",
            "@-netc",
        ],
        // Interface indexes count every link made in the namespace: left out.
        &[
            "exec",
            "@-netc",
            "sh",
            "-c",
            "ip -4 -o addr show | sed 's/^[0-9]*: //'",
        ],
        &["network", "connect", "@-net2", "@-netc"],
        &["network", "disconnect", "@-net2", "@-netc"],
        &["network", "inspect", "-f", "{{len .Containers}}", "@-net2"],
        &["network", "rm", "@-net"],
        &["rm", "-f", "@-netc"],
        &["network", "rm", "@-net", "@-net2"],
        &["network", "ls", "-q", "--filter", "name=@-net"],
    ];
    with_cleanup(&[], || {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let [theirs, ours] = [Client::Docker, Client::Refeng].map(|c| {
                steps
                    .iter()
                    .map(|args| one(d, c, args, None))
                    .collect::<Vec<_>>()
            });
            assert!(theirs[0].stdout.starts_with("<id>"), "{theirs:?}");
            assert!(theirs[9].stdout.contains("10.231.2.5/24"), "{theirs:?}");
            assert_ne!(theirs[10].code, 0, "{theirs:?}");
            assert_ne!(theirs[13].code, 0, "{theirs:?}");
            assert_eq!(
                theirs[16],
                Outcome {
                    code: 0,
                    stdout: String::new(),
                    stderr: String::new()
                }
            );
            for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(
                    o, t,
                    "refeng (left) and docker (right) differ for {:?} on {d:?}",
                    steps[i]
                );
            }
        }
    });
    cleanup();
}

/// `push` where no registry is reached: a name the daemon has no image for, and the CLI's own
/// refusals. A push that reaches a registry is compared in [`push_pull_registry`].
fn push_refusals() {
    same(&["push", "cli-none/nothing-here:1"]);
    same(&["push", "-q", "127.0.0.1:9/nothing-here"]);
    same(&["push", "-a", "busybox:latest"]);
    same_failure(&["image", "push", "Bad-Name"], "invalid reference format");
}

/// Runs `steps` with one CLI on `d` against `reg`: in an argument `REG` becomes the registry's
/// host and `@` a name of the CLI's own. Outputs are normalised as by [`both`], with the
/// registry's host (its port differs per CLI) and the CLI's config folder folded into one.
fn against_registry(
    d: Daemon,
    c: Client,
    reg: &RegistryServer,
    steps: &[(&[&str], Option<&Path>)],
) -> Vec<Outcome> {
    let w = world();
    let me = match c {
        Client::Docker => "docker",
        Client::Refeng => "refeng",
    };
    let config = w.dir.join(format!("config-{c:?}"));
    let fold = |s: &str| {
        let s = s
            .replace(&reg.host(), "REG")
            .replace(&config.to_string_lossy().into_owned(), "CONFIG");
        norm(&s, c)
    };
    steps
        .iter()
        .map(|(args, stdin)| {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    a.replace("REG", &reg.host())
                        .replace('@', &format!("cli-{me}-x"))
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = run(w, d, c, &args, *stdin);
            Outcome {
                code: o.code,
                stdout: fold(&o.stdout),
                stderr: fold(&o.stderr),
            }
        })
        .collect()
}

/// Asserts the two CLIs' outcomes alike step by step, naming the first step that differs.
#[track_caller]
fn steps_alike(ours: &[Outcome], theirs: &[Outcome], d: Daemon) {
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            o, t,
            "refeng (left) and docker (right) differ at step {i} on {d:?}"
        );
    }
}

/// Removes the tags a registry case recorded in `made`, on both daemons, then raises the
/// case's panic if it had one.
fn remove_tags_then(made: &Mutex<Vec<String>>, r: std::thread::Result<()>) {
    let w = world();
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        for tag in made.lock().unwrap().iter() {
            let _ = run(w, d, Client::Docker, &["rmi", tag], None);
        }
    }
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// `tag`, `push` to a loopback registry, `rmi` and `pull` back: each CLI on each daemon pushes
/// to a registry of its own, so neither finds the other's layers there (or mounts them from
/// the other's repository) and both print the lines of a first push. `pull -a` pulls the
/// repository's one tag, and fails for a repository the registry does not have.
fn push_pull_registry() {
    let made = Mutex::new(Vec::<String>::new());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let [theirs, ours] = [Client::Docker, Client::Refeng].map(|c| {
                let reg = RegistryServer::plain();
                let me = match c {
                    Client::Docker => "docker",
                    Client::Refeng => "refeng",
                };
                made.lock()
                    .unwrap()
                    .push(format!("{}/cli-{me}-x:1", reg.host()));
                let steps: &[(&[&str], Option<&Path>)] = &[
                    (&["tag", "busybox:latest", "REG/@:1"], None),
                    (&["push", "REG/@:1"], None),
                    (&["rmi", "REG/@:1"], None),
                    (&["pull", "REG/@:1"], None),
                    (
                        &[
                            "image",
                            "inspect",
                            "-f",
                            "{{.RepoTags}} {{.RepoDigests}}",
                            "REG/@:1",
                        ],
                        None,
                    ),
                    (&["push", "-q", "REG/@:1"], None),
                    (&["rmi", "REG/@:1"], None),
                    (&["pull", "-q", "REG/@:1"], None),
                    (&["pull", "REG/@:2"], None),
                    (&["rmi", "REG/@:1"], None),
                    // Every tag (the registry has one), then a repository it does not have.
                    (&["pull", "-a", "REG/@"], None),
                    (&["rmi", "REG/@:1"], None),
                    (&["pull", "-a", "REG/@-none"], None),
                ];
                against_registry(d, c, &reg, steps)
            });
            assert!(
                theirs[1].stdout.contains("1: digest: sha256:<id> size: "),
                "{theirs:?}"
            );
            assert!(
                theirs[3]
                    .stdout
                    .contains("Status: Downloaded newer image for REG/cli-CLI-x:1"),
                "{theirs:?}"
            );
            assert_ne!(theirs[8].code, 0, "{theirs:?}");
            assert!(
                theirs[10].stdout.starts_with("1: Pulling from cli-CLI-x\n")
                    && theirs[10].stdout.ends_with(
                        "Status: Downloaded newer image for REG/cli-CLI-x\nREG/cli-CLI-x\n"
                    ),
                "{theirs:?}"
            );
            assert!(
                theirs[12].code != 0 && theirs[12].stderr.contains("not found"),
                "{theirs:?}"
            );
            steps_alike(&ours, &theirs, d);
        }
    }));
    remove_tags_then(&made, r);
}

/// `push` and `pull` on a terminal (tmux): the screen each CLI leaves once done, with its
/// per-layer lines redrawn in place, is the same for refeng and docker. Each CLI has a registry
/// of its own, so both push and pull every layer.
fn push_pull_on_a_terminal() {
    let w = world();
    let made = Mutex::new(Vec::<(Daemon, String)>::new());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let [theirs, ours] = ["docker", "refeng"].map(|me| {
                let reg = RegistryServer::plain();
                let name = format!("{}/cli-{me}-tty:1", reg.host());
                made.lock().unwrap().push((d, name.clone()));
                d.docker_ok(w, &["tag", "busybox:latest", &name]);
                let fold = |s: String| {
                    norm(
                        &s.replace(&reg.host(), "REG")
                            .replace(&format!("cli-{me}-tty"), "@"),
                        Client::Docker,
                    )
                };
                let on_terminal = |verb: &str| {
                    let t = Tmux::start(
                        w,
                        d,
                        &format!("{me} {verb} {name}; r=$?; printf '\\nEXIT=%s\\n' $r; sleep 60"),
                    );
                    t.wait_line("EXIT=0");
                    fold(t.screen())
                };
                let pushed = on_terminal("push");
                d.docker_ok(w, &["rmi", &name]);
                let pulled = on_terminal("pull");
                (pushed, pulled)
            });
            assert!(theirs.0.contains(": Pushed"), "{}", theirs.0);
            assert!(
                theirs
                    .1
                    .contains("Status: Downloaded newer image for REG/@:1"),
                "{}",
                theirs.1
            );
            assert_eq!(ours.0, theirs.0, "push on a terminal, on {d:?}");
            assert_eq!(ours.1, theirs.1, "pull on a terminal, on {d:?}");
        }
    }));
    for (d, name) in made.lock().unwrap().iter() {
        let _ = run(w, *d, Client::Docker, &["rmi", name], None);
    }
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// `load` on a terminal: the per-layer progress lines as docker draws them (the last frame of
/// the screen), then `Loaded image:`, compared with the docker CLI's on each daemon.
fn load_on_a_terminal() {
    let w = world();
    let other = file("other.tar");
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        let [theirs, ours] = ["docker", "refeng"].map(|me| {
            // Absent first, so that every layer is loaded (and drawn).
            let _ = run(w, d, Client::Docker, &["rmi", "other:1"], None);
            let t = Tmux::start(
                w,
                d,
                &format!("{me} load -i {other}; r=$?; printf '\\nEXIT=%s\\n' $r; sleep 60"),
            );
            t.wait_line("EXIT=0");
            norm(&t.screen(), Client::Docker)
        });
        assert!(theirs.contains("Loaded image: other:1"), "{theirs}");
        assert_eq!(ours, theirs, "load on a terminal, on {d:?}");
    }
}

/// `login` against a registry with htpasswd auth (a wrong password, then the right one), the
/// entry each CLI stores in its own config.json, a `push` that needs it, and `logout`, after
/// which the entry is gone and the push is refused.
fn login_logout_registry() {
    let w = world();
    let right = w.dir.join("right-password");
    let wrong = w.dir.join("wrong-password");
    std::fs::write(&right, "s3cret\n").unwrap();
    std::fs::write(&wrong, "wrong\n").unwrap();
    let made = Mutex::new(Vec::<String>::new());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let [theirs, ours] = [Client::Docker, Client::Refeng].map(|c| {
                let reg = RegistryServer::basic(&[("alice", "s3cret")]);
                let me = match c {
                    Client::Docker => "docker",
                    Client::Refeng => "refeng",
                };
                made.lock()
                    .unwrap()
                    .push(format!("{}/cli-{me}-x:1", reg.host()));
                let login = ["login", "-u", "alice", "--password-stdin", "REG"];
                let stored = || {
                    let config = w.dir.join(format!("config-{c:?}")).join("config.json");
                    let v: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
                    v["auths"][reg.host()].clone()
                };
                let mut out = against_registry(
                    d,
                    c,
                    &reg,
                    &[
                        (&login, Some(&wrong)),
                        (&login, Some(&right)),
                        (&["tag", "busybox:latest", "REG/@:1"], None),
                        (&["push", "-q", "REG/@:1"], None),
                    ],
                );
                let entry = stored();
                out.extend(against_registry(
                    d,
                    c,
                    &reg,
                    &[
                        (&["logout", "REG"], None),
                        (&["logout", "REG"], None),
                        (&["push", "-q", "REG/@:1"], None),
                        (&["rmi", "REG/@:1"], None),
                    ],
                ));
                (out, entry, stored())
            });
            let (theirs, entry, after) = theirs;
            assert_ne!(theirs[0].code, 0, "{theirs:?}");
            assert!(theirs[1].stdout.contains("Login Succeeded"), "{theirs:?}");
            assert_eq!(theirs[3].code, 0, "{theirs:?}");
            assert_ne!(theirs[6].code, 0, "{theirs:?}");
            use base64::Engine as _;
            let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
            assert_eq!(
                entry,
                serde_json::json!({ "auth": auth }),
                "docker on {d:?}"
            );
            assert_eq!(after, serde_json::Value::Null, "docker on {d:?}");
            let (ours, our_entry, our_after) = ours;
            assert_eq!(our_entry, entry, "refeng's config.json entry on {d:?}");
            assert_eq!(
                our_after, after,
                "refeng's config.json after logout on {d:?}"
            );
            steps_alike(&ours, &theirs, d);
        }
    }));
    remove_tags_then(&made, r);
}

/// `login` where the daemon reaches no registry (its error, through `POST /auth`), the CLI's
/// own refusals, and `logout`, which only edits config.json. A login that succeeds is compared in
/// [`login_logout_registry`]; storing credentials is also covered by
/// the unit tests of `cli::login`.
fn login_logout() {
    let pw = world().dir.join("password");
    std::fs::write(&pw, "secret\n").unwrap();
    same_with(
        &["login", "-u", "someone", "--password-stdin", "127.0.0.1:9"],
        Some(&pw),
        false,
    );
    same(&["login", "--password-stdin", "127.0.0.1:9"]);
    same(&["login", "127.0.0.1:9"]);
    same(&["logout", "127.0.0.1:9"]);
    same(&["logout", "http://127.0.0.1:9/v2/"]);
    // On a terminal: the prompts (the password unseen), and the refusals of empty answers.
    let w = world();
    for d in [Daemon::Refengd, Daemon::Dockerd] {
        let [theirs, ours] = ["docker", "refeng"].map(|me| {
            let t = Tmux::start(
                w,
                d,
                &format!(
                    "{me} login 127.0.0.1:9; echo A=$?; {me} login -u bob 127.0.0.1:9; \
                     echo B=$?; {me} login 127.0.0.1:9; echo C=$?; \
                     {me} login -u bob 127.0.0.1:9; echo D=$?; sleep 60"
                ),
            );
            // Waits until `text` shows `n` times: a prompt is typed into only once it is up
            // (with its echo off).
            let shown = |text: &str, n: usize| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while t.screen().matches(text).count() < n {
                    assert!(std::time::Instant::now() < deadline, "{}", t.screen());
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            };
            shown("Username:", 1);
            t.keys(&["me", "Enter"]);
            shown("Password:", 1);
            t.keys(&["secret", "Enter"]);
            t.wait_line("A=1");
            shown("Password:", 2);
            t.keys(&["secret", "Enter"]);
            t.wait_line("B=1");
            shown("Username:", 2);
            t.keys(&["Enter"]);
            t.wait_line("C=1");
            shown("Password:", 3);
            t.keys(&["Enter"]);
            t.wait_line("D=1");
            std::thread::sleep(std::time::Duration::from_millis(300));
            t.screen()
        });
        assert_eq!(ours, theirs, "login prompts on {d:?}");
        assert!(!theirs.contains("secret"), "{theirs}");
    }
}

/// `-H`, `DOCKER_HOST`, contexts and the messages when nothing answers.
fn addresses_and_contexts() {
    let w = world();
    let host = w.refengd.host();
    let refeng = |args: &[&str], env: &[(&str, &str)]| -> Outcome {
        let mut cmd = Command::new(REFENG);
        cmd.args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CONFIG", w.dir.join("ctx-config"))
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let o = refeng(&["-H", &host, "version", "--format", "{{.Server.Os}}"], &[]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "linux\n"), "{o:?}");
    let o = refeng(&["ps", "-q"], &[("DOCKER_HOST", &host)]);
    assert_eq!(o.code, 0, "{o:?}");
    // A context made by the docker CLI itself, then used by refeng.
    let ctx_cfg = w.dir.join("ctx-config");
    let made = Command::new(DOCKER_CLI)
        .args([
            "context",
            "create",
            "private",
            "--docker",
            &format!("host={host}"),
        ])
        .env("DOCKER_CONFIG", &ctx_cfg)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let o = refeng(
        &["--context", "private", "info", "--format", "{{.OSType}}"],
        &[],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "linux\n"), "{o:?}");
    let o = refeng(
        &["info", "--format", "{{.OSType}}"],
        &[("DOCKER_CONTEXT", "private")],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "linux\n"), "{o:?}");
    let o = refeng(&["--context", "nope", "ps"], &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("context \"nope\" does not exist"),
        "{o:?}"
    );
    let o = refeng(&["-H", "unix:///nonexistent/refeng.sock", "ps"], &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains("cannot connect to the daemon at unix:///nonexistent/refeng.sock"),
        "{o:?}"
    );
    let o = refeng(&["-H", "unix:///run/refeng/refeng.sock", "ps"], &[]);
    if !Path::new("/run/refeng/refeng.sock").exists() {
        assert!(o.stderr.contains("start it with `refengd`"), "{o:?}");
    }
    let o = refeng(&["-H", "ssh://me@host", "ps"], &[]);
    assert!(
        o.stderr.contains("ssh:// and npipe:// are not supported"),
        "{o:?}"
    );
    // Flag errors exit 125, as docker's do.
    let o = refeng(&["ps", "--bogus"], &[("DOCKER_HOST", &host)]);
    assert_eq!(o.code, 125, "{o:?}");
}

/// One local tree as `path kind mode uid:gid size target-or-content` lines, sorted.
fn tree(root: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
        let p = root.join(rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let (kind, what) = if ft.is_symlink() {
            ("l", std::fs::read_link(&p).unwrap().display().to_string())
        } else if ft.is_dir() {
            ("d", String::new())
        } else if ft.is_file() {
            (
                "f",
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
            )
        } else {
            ("o", String::new())
        };
        out.push(format!(
            "{} {kind} {:o} {}:{} {what:?}",
            rel.display(),
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        ));
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                walk(root, &rel.join(e.unwrap().file_name()), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new("."), &mut out);
    out.sort();
    out.join("\n")
}

/// `cp` with both CLIs on `d`, compared as [`same`] does; docker's own error lines from its tar
/// goroutine (`level=error msg="Can't add file ..."`, printed or not as the race goes) left out.
#[track_caller]
fn same_cp(d: Daemon, args: &[&str], stdin: Option<&Path>) {
    let (mut theirs, ours) = both(d, args, stdin);
    theirs.stderr = theirs
        .stderr
        .lines()
        .filter(|l| !l.contains("level=error"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        ours, theirs,
        "refeng (left) and docker (right) differ for {args:?} on {d:?}"
    );
}

/// What `cp SRC -` wrote, listed by GNU tar (dates left out: each CLI reads its own container).
fn cp_listing(w: &World, d: Daemon, c: Client, args: &[&str]) -> (i32, String) {
    let out = cli(w, d, c, args, None).output().unwrap();
    let mut tar = Command::new("tar")
        .args(["-tvf", "-", "--numeric-owner"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &out.stdout).unwrap();
    let listed = tar.wait_with_output().unwrap();
    let date = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d").unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    (
        out.status.code().unwrap_or(-1),
        date.replace_all(&text, "<date>").into_owned(),
    )
}

/// `cp` both ways on containers of each CLI's own (a running one, a stopped one, one running
/// as `user`): files, directories, `dir/.`, missing destinations, symlinks with and without
/// `-L`, `-a`, tar archives on stdout and stdin, and the refusals (a missing path, a directory
/// onto a file on either side, a file onto a missing directory, a conflict inside the tree),
/// compared by output, exit code, and the trees made on both sides.
fn cp_both_ways() {
    let names = ["@-cp", "@-cp-stopped", "@-cp-user"];
    let w = world();
    let src = w.dir.join("cp-src");
    let out_root = w.dir.join("cp-out");
    let small_tar = w.dir.join("cp-small.tar");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("dir/sub")).unwrap();
        std::fs::write(src.join("file"), "local\n").unwrap();
        std::os::unix::fs::chown(src.join("file"), Some(1234), Some(5678)).unwrap();
        std::fs::write(src.join("dir/sub/b"), "b\n").unwrap();
        std::os::unix::fs::symlink("file", src.join("lnk")).unwrap();
        std::os::unix::fs::symlink("dir", src.join("dirlnk")).unwrap();
        let made = Command::new("tar")
            .arg("-C")
            .arg(src.join("dir"))
            .arg("-cf")
            .arg(&small_tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let s = |p: &str| src.join(p).to_string_lossy().into_owned();
        let out = out_root.join("@").to_string_lossy().into_owned();
        let o = |p: &str| format!("{out}/{p}");
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            let _ = std::fs::remove_dir_all(&out_root);
            for me in ["docker", "refeng"] {
                let name = format!("cli-{me}-x");
                std::fs::create_dir_all(out_root.join(&name)).unwrap();
                // A file where an archive brings a directory.
                std::fs::write(out_root.join(&name).join("d"), "in the way\n").unwrap();
                d.docker_ok(
                    w,
                    &[
                        "run",
                        "-d",
                        "--name",
                        &format!("{name}-cp"),
                        "busybox",
                        "sh",
                        "-c",
                        "mkdir -p /d/sub && echo hello > /d/f && echo x > /d/sub/g && \
                         ln -s /d/f /d/link && ln -s f /d/rel && ln -s /d /dl && \
                         echo file > /dir && sleep 1000",
                    ],
                );
                d.docker_ok(
                    w,
                    &[
                        "run",
                        "--name",
                        &format!("{name}-cp-stopped"),
                        "busybox",
                        "sh",
                        "-c",
                        "mkdir /s && echo stopped > /s/f",
                    ],
                );
                d.docker_ok(
                    w,
                    &[
                        "run",
                        "-d",
                        "-u",
                        "user",
                        "--name",
                        &format!("{name}-cp-user"),
                        "busybox",
                        "sleep",
                        "1000",
                    ],
                );
            }
            // Wait for the running container's files.
            for me in ["docker", "refeng"] {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let c = format!("cli-{me}-x-cp");
                while run(
                    w,
                    d,
                    Client::Docker,
                    &["exec", &c, "test", "-f", "/dir"],
                    None,
                )
                .code
                    != 0
                {
                    assert!(std::time::Instant::now() < deadline, "{c} never set up");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            // Out of a container.
            for args in [
                vec!["cp", "@-cp:/d/f", &o("")],
                vec!["cp", "@-cp:/d", &o("d1")],
                vec!["cp", "@-cp:/d/.", &o("d2")],
                vec!["cp", "@-cp:/d/", &o("d3")],
                vec!["cp", "@-cp:/d/f", &o("d1/")],
                vec!["cp", "@-cp:/d/f", &o("newfile")],
                vec!["cp", "@-cp:/d/link", &o("l1")],
                vec!["cp", "-L", "@-cp:/d/link", &o("l2")],
                vec!["cp", "--follow-link", "@-cp:/d/rel", &o("l3")],
                vec!["cp", "@-cp:/d/rel", &o("")],
                vec!["container", "cp", "-q", "@-cp:/dl/", &o("dl")],
                vec!["cp", "@-cp-stopped:/s", &o("stopped")],
                vec!["cp", "@-cp:/d/f", &o("nodir/x")],
                vec!["cp", "@-cp:/d/f", &o("missing/")],
                vec!["cp", "@-cp:/d", &o("newfile")],
                vec!["cp", "@-cp:/d", &o("")],
                vec!["cp", "@-cp:/nope", &o("")],
                vec!["cp", "@-cp:/d/f", "/dev/null"],
                vec!["cp", "nope-nothing:/d", &o("")],
                vec!["cp", &o("a"), &o("b")],
                vec!["cp", "@-cp:/a", "@-cp:/b"],
                vec!["cp", "", "@-cp:/"],
            ] {
                same_cp(d, &args, None);
            }
            let trees: Vec<String> = ["docker", "refeng"]
                .iter()
                .map(|me| tree(&out_root.join(format!("cli-{me}-x"))))
                .collect();
            assert_eq!(trees[1], trees[0], "local trees (refeng, docker) on {d:?}");
            assert!(trees[0].contains("./l2 f"), "{}", trees[0]);
            // Archives on stdout.
            for args in [
                &["cp", "@-cp:/d", "-"][..],
                &["cp", "@-cp:/d/.", "-"],
                &["cp", "@-cp:/d/f", "-"],
                &["cp", "-L", "@-cp:/d/link", "-"],
                &["cp", "@-cp-stopped:/s/", "-"],
            ] {
                let [theirs, ours] = ["docker", "refeng"].map(|me| {
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| a.replace('@', &format!("cli-{me}-x")))
                        .collect();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let c = if me == "docker" {
                        Client::Docker
                    } else {
                        Client::Refeng
                    };
                    cp_listing(w, d, c, &args)
                });
                assert_eq!(ours, theirs, "{args:?} on {d:?}");
                assert_eq!(theirs.0, 0, "{args:?} on {d:?}");
            }
            // Into a container.
            for args in [
                vec!["cp", &s("file"), "@-cp:/t1"],
                vec!["cp", &s("dir"), "@-cp:/t2"],
                vec!["cp", &s("dir/."), "@-cp:/t3"],
                vec!["cp", &s("dir"), "@-cp:/d"],
                vec!["cp", &s("file"), "@-cp:/d/"],
                vec!["cp", &s("lnk"), "@-cp:/t4"],
                vec!["cp", "-L", &s("lnk"), "@-cp:/t5"],
                vec!["cp", &s("dirlnk/"), "@-cp:/t6"],
                vec!["cp", &s("dirlnk"), "@-cp:/t7"],
                vec!["cp", &s("file"), "@-cp:/dl"],
                vec!["cp", &s("file"), "@-cp:/d/link"],
                vec!["cp", &s("file"), "@-cp-stopped:/s/new"],
                vec!["cp", "-a", &s("file"), "@-cp-user:/tmp/a"],
                vec!["cp", &s("file"), "@-cp-user:/tmp/b"],
                vec!["cp", &s("dir"), "@-cp:/d/f"],
                vec!["cp", &s("file"), "@-cp:/nodir/x"],
                vec!["cp", &s("file"), "@-cp:/newdir/"],
                vec!["cp", &s("nope"), "@-cp:/"],
                vec!["cp", &s("file/"), "@-cp:/t9"],
                vec!["cp", "-", "@-cp:/t10"],
                vec!["cp", "-", "@-cp:/d/f"],
                vec!["cp", &s("file"), "nope-nothing:/x"],
            ] {
                same_cp(d, &args, None);
            }
            same_cp(d, &["cp", "-", "@-cp:/d"], Some(&small_tar));
            same_cp(d, &["cp", "-", "@-cp:/d/sub"], Some(&small_tar));
            // A directory where the container has a file: the daemon's refusal.
            same_cp(d, &["cp", &s("dir"), "@-cp:/"], None);
            same_cp(d, &["cp", "@-cp-stopped:/s/new", &o("from-stopped")], None);
            let listing = "find /t1 /t2 /t3 /t4 /t5 /t6 /t7 /d /dl /tmp/a /tmp/b 2>/dev/null | \
                           sort | xargs stat -c '%n %F %a %u:%g %s %N'";
            for c in ["@-cp", "@-cp-user"] {
                let [theirs, ours] = ["docker", "refeng"].map(|me| {
                    let c = c.replace('@', &format!("cli-{me}-x"));
                    run(
                        w,
                        d,
                        Client::Docker,
                        &["exec", &c, "sh", "-c", listing],
                        None,
                    )
                    .stdout
                });
                assert_eq!(ours, theirs, "{c} on {d:?}");
                assert!(!theirs.is_empty(), "{c} on {d:?}");
            }
            let trees: Vec<String> = ["docker", "refeng"]
                .iter()
                .map(|me| tree(&out_root.join(format!("cli-{me}-x"))))
                .collect();
            assert_eq!(trees[1], trees[0], "local trees (refeng, docker) on {d:?}");
            assert!(
                trees[0].contains("./from-stopped f 644 0:0 \"local\\n\""),
                "{}",
                trees[0]
            );
            // On a terminal: the summary on stderr, with what went over the connection.
            let [theirs, ours] = ["docker", "refeng"].map(|me| {
                let name = format!("cli-{me}-x");
                let t = Tmux::start(
                    w,
                    d,
                    &format!(
                        "{me} cp {name}-cp:/d {out}/tty-d; {me} cp {name}-cp:/d/f {out}/; \
                         {me} cp {file} {name}-cp:/tty; echo EXIT=$?; sleep 60",
                        out = out_root.join(&name).display(),
                        file = s("file"),
                    ),
                );
                t.wait_line("EXIT=0");
                t.screen().replace(&name, "@")
            });
            assert_eq!(ours, theirs, "on a terminal, on {d:?}");
            assert!(theirs.contains("Successfully copied"), "{theirs}");
            clean(&names);
        }
    }));
    clean(&names);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&out_root);
    let _ = std::fs::remove_file(&small_tar);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// What a CLI writes in its first `seconds` (then killed: docker's live `stats` does not end on
/// SIGTERM), normalised.
fn first_seconds(w: &World, d: Daemon, c: Client, args: &[&str], seconds: u64) -> String {
    let out = cli_bounded(w, d, c, args, None, &["-s", "KILL", &seconds.to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    norm(&String::from_utf8_lossy(&out.stdout), c)
}

/// Live `stats` (without `--no-stream`) with both CLIs on both daemons: on a pipe, the bytes of
/// a tick (the table from the top left, then again with each line erased to its end, then the
/// rest of the screen erased) for `--format` and table formats, the default table's shape; a
/// missing container's error; on a terminal (tmux), the redrawn table, whose line turns to
/// `--` once the container is removed.
fn stats_streaming() {
    with_cleanup(&["@-stats"], || {
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for me in ["docker", "refeng"] {
                d.docker_ok(
                    w,
                    &[
                        "run",
                        "-d",
                        "--name",
                        &format!("cli-{me}-x-stats"),
                        "busybox",
                        "sleep",
                        "1000",
                    ],
                );
            }
            let both_first = |args: &[&str]| -> [String; 2] {
                [(Client::Docker, "docker"), (Client::Refeng, "refeng")].map(|(c, me)| {
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| a.replace('@', &format!("cli-{me}-x")))
                        .collect();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    first_seconds(w, d, c, &args, 3)
                })
            };
            let tick = |s: &str| -> String {
                let end = s.find("\x1b[J").map_or(s.len(), |i| i + 3);
                s[..end].to_owned()
            };
            for format in [
                "{{.Name}} {{.PIDs}} {{.Container}}",
                "table {{.Name}}\t{{.PIDs}}",
            ] {
                let [theirs, ours] = both_first(&["stats", "--format", format, "@-stats"]);
                assert_eq!(tick(&ours), tick(&theirs), "{format} on {d:?}");
                assert!(theirs.contains("\x1b[H"), "{theirs:?}");
                assert!(theirs.contains("cli-CLI-x-stats"), "{theirs:?}");
                // More than one tick in three seconds.
                for o in [&ours, &theirs] {
                    assert!(o.matches("\x1b[J").count() >= 2, "{format} on {d:?}: {o:?}");
                }
            }
            let [theirs, ours] = both_first(&["container", "stats", "@-stats"]);
            let shape = |s: &str| -> (usize, String) {
                let t = tick(s);
                let header = t.lines().next().unwrap_or("").split_whitespace().collect();
                (t.lines().count(), header)
            };
            assert_eq!(shape(&ours), shape(&theirs), "{ours:?}\n{theirs:?}");
            let [theirs, ours] = both_first(&["stats", "-a", "--format", "{{.Name}}"]);
            let names = |s: &str| -> Vec<String> {
                let mut v: Vec<String> = tick(s)
                    .lines()
                    .map(|l| l.replace("\x1b[H", ""))
                    .filter(|l| !l.is_empty() && !l.contains('\x1b'))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(names(&ours), names(&theirs), "stats -a on {d:?}");
            assert!(
                names(&theirs).iter().any(|n| n == "cli-exited"),
                "{theirs:?}"
            );
            let (theirs, ours) = both(d, &["stats", "nope-nothing"], None);
            assert_eq!(ours, theirs, "stats nope-nothing on {d:?}");
            assert_eq!(theirs.code, 1, "{theirs:?}");

            let screens = ["docker", "refeng"].map(|me| {
                let name = format!("cli-{me}-x-stats");
                let t = Tmux::start(
                    w,
                    d,
                    &format!("{me} stats --format 'table {{{{.Name}}}}\\t{{{{.PIDs}}}}' {name}"),
                );
                t.wait_line(&format!("{name}   1"));
                let running = t.screen().replace(&name, "@");
                d.docker_ok(w, &["rm", "-f", &name]);
                t.wait_line(&format!("{name}   --"));
                (running, t.screen().replace(&name, "@"))
            });
            assert_eq!(screens[1], screens[0], "on a terminal, on {d:?}");
        }
    });
}

/// A private tmux server (its own socket) running one command in a 100x30 window; dropping it
/// ends that server.
struct Tmux {
    socket: String,
    /// The command, for failure messages.
    label: String,
}

impl Tmux {
    fn start(w: &World, d: Daemon, command: &str) -> Tmux {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "refeng-cli-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let t = Tmux {
            socket,
            label: format!("{command:?} on {d:?}"),
        };
        let out = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "30",
                command,
            ])
            .env("DOCKER_HOST", d.host(w))
            .env("DOCKER_CONFIG", w.dir.join("config-tmux"))
            .env_remove("DOCKER_CONTEXT")
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin",
                    Path::new(REFENG).parent().unwrap().display()
                ),
            )
            .output()
            .expect("run tmux (apt-get install tmux)");
        assert!(out.status.success(), "tmux: {out:?}");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"])
            .stdin(Stdio::null());
        c
    }

    fn keys(&self, keys: &[&str]) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-t", "t", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until a line of the screen is `line` (after trailing spaces), for up to 20 s.
    #[track_caller]
    fn wait_line(&self, line: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let screen = self.screen();
            // An exit line may follow the prompt the detach or exit left: `/ # EXIT=0`.
            if screen.lines().any(|l| {
                l.trim_end() == line
                    || (line.starts_with("EXIT=") && l.trim_end().ends_with(&format!(" {line}")))
            }) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no line {line:?} on the screen:\n{screen}",
                self.label
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    #[track_caller]
    fn wait_prompt(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.screen().contains("/ #") {
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt:\n{}",
                self.screen()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// `run -it`, `exec -it` and a foreground `run` through a terminal (tmux), with both CLIs on
/// both daemons: the window size reaches the container and follows a resize, ctrl-c reaches
/// the shell, the detach keys (ctrl-p ctrl-q) leave the container running and exit 0, `exit 3`
/// in an exec session is the CLI's exit code, and ctrl-c on a CLI without a terminal is
/// proxied to the container as SIGINT.
fn interactive_sessions() {
    with_cleanup(&["@", "@-exec"], || {
        let w = world();
        for d in [Daemon::Refengd, Daemon::Dockerd] {
            for (c, me) in [(Client::Docker, "docker"), (Client::Refeng, "refeng")] {
                let name = format!("cli-{me}-x");
                let t = Tmux::start(
                    w,
                    d,
                    &format!("{me} run -it --rm --name {name} busybox sh; echo EXIT=$?; sleep 60"),
                );
                t.wait_prompt();
                t.keys(&["stty size", "Enter"]);
                t.wait_line("30 100");
                let out = t
                    .cmd()
                    .args(["resize-window", "-t", "t", "-x", "120", "-y", "40"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                std::thread::sleep(std::time::Duration::from_millis(500));
                t.keys(&["stty size", "Enter"]);
                t.wait_line("40 120");
                t.keys(&["sleep 100", "Enter"]);
                std::thread::sleep(std::time::Duration::from_millis(500));
                t.keys(&["C-c"]);
                t.keys(&["echo after-ctrl-c", "Enter"]);
                t.wait_line("after-ctrl-c");
                t.keys(&["C-p", "C-q"]);
                t.wait_line("EXIT=0");
                let o = run(
                    w,
                    d,
                    Client::Docker,
                    &["inspect", "-f", "{{.State.Running}}", &name],
                    None,
                );
                assert_eq!(
                    o.stdout, "true\n",
                    "{me} on {d:?}: detached, still running: {o:?}"
                );
                drop(t);

                let exec_name = format!("cli-{me}-x-exec");
                let o = run(
                    w,
                    d,
                    Client::Docker,
                    &[
                        "run", "-d", "--name", &exec_name, "busybox", "sleep", "1000",
                    ],
                    None,
                );
                assert_eq!(o.code, 0, "{o:?}");
                let t = Tmux::start(
                    w,
                    d,
                    &format!("{me} exec -it {exec_name} sh; echo EXIT=$?; sleep 60"),
                );
                t.wait_prompt();
                t.keys(&["stty size", "Enter"]);
                t.wait_line("30 100");
                t.keys(&["exit 3", "Enter"]);
                t.wait_line("EXIT=3");
                drop(t);

                let t = Tmux::start(
                    w,
                    d,
                    &format!(
                        "{me} run --rm busybox sh -c 'trap \"echo got-int; exit 9\" INT; echo ready; sleep 100 & wait'; echo EXIT=$?; sleep 60"
                    ),
                );
                t.wait_line("ready");
                t.keys(&["C-c"]);
                // The terminal echoes the ^C before the container's answer.
                t.wait_line("EXIT=9");
                assert!(t.screen().contains("^Cgot-int\n"), "{}", t.screen());
                let _ = c;
            }
        }
    });
}

/// `text` without its trailing whitespace, split at `sep` and sorted: docker output whose
/// order is Go's map order, which changes from run to run.
fn sorted_parts(text: &str, sep: char) -> Vec<String> {
    let mut parts: Vec<String> = text.trim_end().split(sep).map(str::to_owned).collect();
    parts.sort();
    parts
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CLI tests run as root (they start daemons)"
    );
    engine_support::in_private_namespaces(INNER);
    let tests: &[(&str, &dyn Fn())] = &[
        ("version_and_info", &version_and_info),
        ("images_list", &images_list),
        (
            "inspect_images_and_containers",
            &inspect_images_and_containers,
        ),
        ("labels_in_key_order", &labels_in_key_order),
        ("load_and_import", &load_and_import),
        ("run_foreground", &run_foreground),
        ("run_failures_exit_codes", &run_failures_exit_codes),
        ("run_detached_ps_rm", &run_detached_ps_rm),
        ("lifecycle_verbs", &lifecycle_verbs),
        ("addresses_and_contexts", &addresses_and_contexts),
        ("interactive_sessions", &interactive_sessions),
        ("container_inspection_verbs", &container_inspection_verbs),
        ("image_verbs", &image_verbs),
        ("volumes_and_networks", &volumes_and_networks),
        ("events_since_until", &events_since_until),
        ("system_df", &system_df),
        ("system_prune", &system_prune),
        ("network_verbs", &network_verbs),
        ("network_lifecycle", &network_lifecycle),
        ("push_refusals", &push_refusals),
        ("login_logout", &login_logout),
        ("push_pull_registry", &push_pull_registry),
        ("push_pull_on_a_terminal", &push_pull_on_a_terminal),
        ("load_on_a_terminal", &load_on_a_terminal),
        ("login_logout_registry", &login_logout_registry),
        ("cp_both_ways", &cp_both_ways),
        ("stats_streaming", &stats_streaming),
    ];
    engine_support::run(tests, || {
        if let Some(w) = WORLD.get() {
            w.refengd.shutdown();
            // Dropping the dockerd stops it by pid and removes what it made.
            drop(w.dockerd.lock().unwrap().take());
        }
    });
}
