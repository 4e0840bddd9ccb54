//! `refeng build` against `docker build` (the docker CLI 28, `DOCKER_BUILDKIT=0`): each case
//! is built by both clients against the same private refengd and against the same private
//! dockerd 20.10, always with `--no-cache` so neither client's build feeds the other's. The
//! outputs (stdout, stderr, exit code) must be the same once ids are normalised, and the
//! images' configs the same. The Dockerfiles print what reached the builder (`RUN find`), so
//! the context's `.dockerignore` handling is in the compared output too. Client-side errors
//! (a missing path or Dockerfile, stdin twice) are compared with the docker CLI's.
//!
//! One refengd and one dockerd serve the binary; both are stopped by pid at the end, also after
//! a failure; each case removes its images (also when it fails, through a guard).

mod busybox_pair;
mod engine_support;
mod peers;
mod rootfs;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use engine_support::DOCKER_CLI;
use serde_json::Value;

const REFENG: &str = env!("CARGO_BIN_EXE_refeng");

use busybox_pair::BusyboxPair as World;

static W: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    W.get_or_init(|| World::start(|_| {}))
}

/// The two daemons, by name, with their `DOCKER_HOST`.
fn daemons() -> Vec<(&'static str, String)> {
    let dd = world().dockerd.lock().unwrap_or_else(|e| e.into_inner());
    vec![
        ("refengd", world().refengd.host()),
        ("dockerd", dd.as_ref().expect("dockerd running").host()),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Docker,
    Refeng,
}

/// A client against `host`, with a private config directory, in `cwd`.
fn client(c: Client, host: &str, args: &[&str], cwd: &Path) -> Command {
    let program = match c {
        Client::Docker => DOCKER_CLI,
        Client::Refeng => REFENG,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", world().work.path().join("cli"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_DEFAULT_PLATFORM")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    if stdin.is_none() {
        return cmd.output().unwrap();
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.unwrap().to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// Ids out, and the docker CLI 28's note about the legacy builder (refeng has no other).
fn normalise(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut text = text.into_owned();
    if let Some(at) = text.find("DEPRECATED: The legacy builder is deprecated") {
        let end = text[at..].find("\n\n").map_or(text.len(), |e| at + e + 2);
        text.replace_range(at..end, "");
    }
    // Each build has a tag of its own, named after its client.
    let text = text
        .replace("-refeng\n", "-<client>\n")
        .replace("-docker\n", "-<client>\n");
    let long = regex::Regex::new("sha256:[0-9a-f]{64}").unwrap();
    let short = regex::Regex::new("\\b[0-9a-f]{12}\\b").unwrap();
    let text = long.replace_all(&text, "sha256:<id>");
    // Intermediate updates of the progress lines depend on timing: keep the last one.
    let sending =
        regex::Regex::new(
            "(Sending build context to Docker daemon +[^\\r]*\\r)+|(Downloading build context from remote url: [^\\r]*\\r)+",
        )
        .unwrap();
    let text = sending.replace_all(&text, |c: &regex::Captures| {
        let all = c.get(0).unwrap().as_str();
        let last = all.trim_end_matches('\r').rsplit('\r').next().unwrap_or("");
        format!("{last}\r")
    });
    short.replace_all(&text, "<id>").into_owned()
}

/// One case: a context, the flags, what stdin gets.
struct Case<'a> {
    name: &'a str,
    context: PathBuf,
    /// The context argument (defaults to the context directory).
    arg: Option<&'a str>,
    flags: Vec<String>,
    stdin: Option<Vec<u8>>,
    env: Vec<(&'a str, &'a str)>,
    /// The context's size on the sending line is not compared: the docker CLI's tar is cut (a
    /// Dockerfile from stdin or from outside the context: its tar writer is closed after the
    /// pipe it writes to, so the last padding and the end-of-archive blocks are lost), or
    /// compressed by another gzip (`--compress`).
    sizes_differ: bool,
}

/// Removes the images a case tagged, also when it fails.
struct Tags(Vec<(String, String)>);

impl Drop for Tags {
    fn drop(&mut self) {
        for (host, tag) in &self.0 {
            let _ = client(Client::Docker, host, &["rmi", "-f", tag], Path::new("/"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn config_of(host: &str, tag: &str) -> Value {
    let out = client(
        Client::Docker,
        host,
        &["image", "inspect", "--format", "{{json .Config}}", tag],
        Path::new("/"),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "inspect {tag}: {out:?}");
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The parent's id is the only field that names an image.
    if let Some(o) = v.as_object_mut() {
        o.remove("Image");
    }
    v
}

/// The config fields two daemons must agree on (absent, null and empty alike).
fn fields(v: &Value) -> Vec<(String, Value)> {
    [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
    ]
    .iter()
    .map(|f| {
        let x = v.get(*f).cloned().unwrap_or(Value::Null);
        let x = match &x {
            Value::String(s) if s.is_empty() => Value::Null,
            Value::Array(a) if a.is_empty() => Value::Null,
            Value::Object(o) if o.is_empty() => Value::Null,
            _ => x,
        };
        ((*f).to_owned(), x)
    })
    .collect()
}

/// Builds `case` with both clients on both daemons; checks the outputs and configs; returns
/// refeng's outputs by daemon.
fn compare(case: &Case<'_>) -> Vec<Output> {
    let mut tags = Tags(Vec::new());
    let mut ours = Vec::new();
    let mut built: Vec<Value> = Vec::new();
    let mut failures = Vec::new();
    let sizes = regex::Regex::new("(Sending build context to Docker daemon) +[^\\r]*").unwrap();
    for (daemon, host) in daemons() {
        let mut outs = Vec::new();
        for c in [Client::Docker, Client::Refeng] {
            let tag = format!("clibuild-{}:{}-{:?}", case.name, daemon, c).to_lowercase();
            tags.0.push((host.clone(), tag.clone()));
            let mut args: Vec<String> = vec!["build".into(), "--no-cache".into()];
            args.extend(["--network".into(), "none".into(), "-t".into(), tag.clone()]);
            args.extend(case.flags.iter().cloned());
            args.push(case.arg.map_or_else(
                || case.context.to_string_lossy().into_owned(),
                str::to_owned,
            ));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = client(c, &host, &args, world().work.path());
            for (k, v) in &case.env {
                cmd.env(k, v);
            }
            let out = run(cmd, case.stdin.as_deref());
            outs.push((tag, out));
        }
        let (dtag, docker) = &outs[0];
        let (rtag, refeng) = &outs[1];
        let what = format!(
            "{} on {daemon}\n--- docker ---\n{}{}\n--- refeng ---\n{}{}",
            case.name,
            String::from_utf8_lossy(&docker.stdout),
            String::from_utf8_lossy(&docker.stderr),
            String::from_utf8_lossy(&refeng.stdout),
            String::from_utf8_lossy(&refeng.stderr),
        );
        let normalise = |b: &[u8]| {
            let t = normalise(b);
            if case.sizes_differ {
                sizes.replace_all(&t, "$1 <size>").into_owned()
            } else {
                t
            }
        };
        let same = normalise(&refeng.stdout) == normalise(&docker.stdout)
            && normalise(&refeng.stderr) == normalise(&docker.stderr)
            && refeng.status.code() == docker.status.code();
        if !same {
            failures.push(format!(
                "{what}\nstdout:\n  refeng {:?}\n  docker {:?}\nstderr:\n  refeng {:?}\n  docker {:?}\nstatus: refeng {:?}, docker {:?}",
                normalise(&refeng.stdout),
                normalise(&docker.stdout),
                normalise(&refeng.stderr),
                normalise(&docker.stderr),
                refeng.status.code(),
                docker.status.code()
            ));
        }
        if docker.status.success() {
            let theirs = config_of(&host, dtag);
            let mine = config_of(&host, rtag);
            assert_eq!(mine, theirs, "config: {what}");
            built.push(mine);
        }
        ours.push(outs.pop().unwrap().1);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if let [a, b] = built.as_slice() {
        assert_eq!(fields(a), fields(b), "{}: refengd and dockerd", case.name);
    }
    ours
}

/// A context directory: `(path, content)`; a path ending in `/` is a directory.
fn context(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = world().work.path().join("ctx").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (path, content) in files {
        let p = dir.join(path.trim_end_matches('/'));
        fs::create_dir_all(if path.ends_with('/') {
            &p
        } else {
            p.parent().unwrap()
        })
        .unwrap();
        if !path.ends_with('/') {
            fs::write(&p, content).unwrap();
        }
    }
    dir
}

fn case<'a>(name: &'a str, context: PathBuf, flags: &[&str]) -> Case<'a> {
    Case {
        name,
        context,
        arg: None,
        flags: flags.iter().map(|s| (*s).to_owned()).collect(),
        stdin: None,
        env: Vec::new(),
        sizes_differ: false,
    }
}

const LIST: &str = "RUN find /app | sort && cat /app/a.txt";

fn copy_with_dockerignore() {
    let dir = context(
        "ignore",
        &[
            (
                "Dockerfile",
                &format!("FROM bb:base\nCOPY . /app\n{LIST}\nCMD [\"cat\", \"/app/a.txt\"]\n"),
            ),
            (
                ".dockerignore",
                "*.log\nnode_modules\nDockerfile\n.dockerignore\n!keep/*.log\n",
            ),
            ("a.txt", "hello\n"),
            ("b.log", "no\n"),
            ("keep/x.log", "kept\n"),
            ("keep/y.txt", "y\n"),
            ("node_modules/big/index.js", "x\n"),
            ("sub/deep/c.log", "no\n"),
            ("sub/deep/d", "d\n"),
            ("empty/", ""),
        ],
    );
    let outs = compare(&case("ignore", dir.clone(), &[]));
    let text = String::from_utf8_lossy(&outs[0].stdout);
    assert!(text.contains("/app/keep/x.log\n"), "{text}");
    assert!(
        !text.contains("node_modules") && !text.contains("b.log"),
        "{text}"
    );
    assert!(
        text.contains("Successfully tagged clibuild-ignore:refengd-refeng"),
        "{text}"
    );
    let mut c = case("compress", dir, &["--compress"]);
    c.sizes_differ = true;
    let outs = compare(&c);
    assert!(String::from_utf8_lossy(&outs[0].stdout).contains("/app/keep/x.log\n"));
    // The CLI decides a path with its directory's results (MatchesUsingParentResults): the
    // exception `!keep.log` was never tried on the directory, so it does not bring back
    // `keep.log/c.txt`, though `Matches` alone would keep that file.
    let dir = context(
        "ignore-parent",
        &[
            (
                "Dockerfile",
                &format!("FROM bb:base\nCOPY . /app\n{LIST}\n"),
            ),
            (".dockerignore", "**/c.txt\n!keep.log\n"),
            ("a.txt", "a\n"),
            ("c.txt", "no\n"),
            ("keep.log/c.txt", "no\n"),
            ("keep.log/d.txt", "d\n"),
        ],
    );
    let outs = compare(&case("ignore-parent", dir, &[]));
    let text = String::from_utf8_lossy(&outs[0].stdout);
    assert!(text.contains("/app/keep.log/d.txt\n"), "{text}");
    assert!(!text.contains("c.txt"), "{text}");
}

fn args_target_labels() {
    let dir = context(
        "args",
        &[(
            "Dockerfile",
            "FROM bb:base AS one\nARG A\nARG B=default\nARG C\nRUN echo \"A=$A B=$B C=$C\" > /f && cat /f\n\
             FROM one AS two\nLABEL from=file\nENV E=$B\nRUN cat /f\n\
             FROM bb:base AS three\nRUN exit 7\n",
        )],
    );
    let mut c = case(
        "args",
        dir,
        &[
            "--target",
            "two",
            "--build-arg",
            "A=1",
            "--build-arg",
            "C",
            "--build-arg",
            "UNUSED=x",
            "--label",
            "l1=v1",
            "--label",
            "l2",
            "--rm=false",
        ],
    );
    c.env.push(("C", "from-env"));
    let outs = compare(&c);
    let text = String::from_utf8_lossy(&outs[0].stdout);
    assert!(text.contains("A=1 B=default C=from-env"), "{text}");
    assert!(text.contains("[UNUSED] were not consumed"), "{text}");
}

fn dockerfile_outside_the_context() {
    let dir = context(
        "outside",
        &[
            ("a.txt", "outside\n"),
            (".dockerignore", "*.log\n"),
            ("x.log", "no\n"),
            (
                "Dockerfile",
                "FROM bb:base\nRUN echo the wrong Dockerfile\n",
            ),
        ],
    );
    let df = world().work.path().join("outside.Dockerfile");
    fs::write(&df, format!("FROM bb:base\nCOPY . /app\n{LIST}\n")).unwrap();
    let mut c = case("outside", dir.clone(), &["-f", df.to_str().unwrap()]);
    c.sizes_differ = true;
    let outs = compare(&c);
    let text = String::from_utf8_lossy(&outs[0].stdout);
    assert!(
        !text.contains("wrong") && !text.contains(".dockerfile."),
        "{text}"
    );
    assert!(
        text.contains("/app/Dockerfile\n") && !text.contains("x.log"),
        "{text}"
    );
    // Inside the context under another name, relative to the working directory.
    fs::write(
        dir.join("Other"),
        format!("FROM bb:base\nCOPY . /app\n{LIST}\n"),
    )
    .unwrap();
    let rel = "ctx/outside/Other";
    compare(&case("inside", dir, &["-f", rel]));
}

fn dockerfiles_on_stdin() {
    let dir = context(
        "stdin",
        &[
            ("a.txt", "from stdin\n"),
            ("Dockerfile", "FROM bb:base\nRUN echo wrong\n"),
        ],
    );
    let mut c = case("stdinfile", dir, &["-f", "-"]);
    c.sizes_differ = true;
    c.stdin = Some(format!("FROM bb:base\nCOPY . /app\n{LIST}\nLABEL s=1\n").into_bytes());
    let outs = compare(&c);
    assert!(!String::from_utf8_lossy(&outs[0].stdout).contains("wrong"));
    // The context itself on stdin: a Dockerfile, a tar, a gzip tar.
    let mut c = case("stdinctx", PathBuf::new(), &[]);
    c.arg = Some("-");
    c.stdin = Some(b"FROM bb:base\nRUN echo only a Dockerfile\nENV X=1\n".to_vec());
    compare(&c);
    let tar_dir = context(
        "tarctx",
        &[
            ("a.txt", "in a tar\n"),
            (
                "Dockerfile",
                &format!("FROM bb:base\nCOPY . /app\n{LIST}\n"),
            ),
        ],
    );
    let tar = Command::new("tar")
        .args(["-C", tar_dir.to_str().unwrap(), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut c = case("stdintar", PathBuf::new(), &[]);
    c.arg = Some("-");
    c.stdin = Some(tar.stdout.clone());
    compare(&c);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.stdout).unwrap();
    let mut c = case("stdingz", PathBuf::new(), &[]);
    c.arg = Some("-");
    c.stdin = Some(gz.finish().unwrap());
    compare(&c);
}

fn failing_run() {
    let dir = context(
        "fail",
        &[(
            "Dockerfile",
            "FROM bb:base\nRUN echo before\nRUN echo out; sleep 0.3; echo err >&2; exit 3\nRUN echo never\n",
        )],
    );
    let outs = compare(&case("fail", dir.clone(), &[]));
    // The failed RUN's status is the exit code, on both daemons.
    for out in &outs {
        assert_eq!(out.status.code(), Some(3), "{out:?}");
    }
    assert!(
        String::from_utf8_lossy(&outs[0].stderr).contains("returned a non-zero code: 3"),
        "{:?}",
        outs[0]
    );
    // Quiet: nothing on stdout, the buffered output and the error on stderr.
    compare(&case("failq", dir.clone(), &["-q"]));
    compare(&case("failforcerm", dir, &["--force-rm"]));
    let dir = context("badfrom", &[("Dockerfile", "FROM bb:nosuchtag\n")]);
    compare(&case("badfrom", dir, &[]));
}

fn quiet_and_iidfile() {
    let dir = context(
        "quiet",
        &[
            ("a.txt", "q\n"),
            ("Dockerfile", "FROM bb:base\nCOPY a.txt /\nRUN cat /a.txt\n"),
        ],
    );
    let outs = compare(&case("quiet", dir.clone(), &["-q"]));
    let id = String::from_utf8_lossy(&outs[0].stdout).trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    let iid = world().work.path().join("iid");
    let mut tags = Tags(Vec::new());
    for (_, host) in daemons() {
        for c in [Client::Docker, Client::Refeng] {
            fs::write(&iid, "stale").unwrap();
            let tag = format!("clibuild-iid:{c:?}").to_lowercase();
            tags.0.push((host.clone(), tag.clone()));
            let out = client(
                c,
                &host,
                &[
                    "build",
                    "--network",
                    "none",
                    "-t",
                    &tag,
                    "--iidfile",
                    iid.to_str().unwrap(),
                    dir.to_str().unwrap(),
                ],
                Path::new("/"),
            )
            .output()
            .unwrap();
            assert!(out.status.success(), "{out:?}");
            let written = fs::read_to_string(&iid).unwrap();
            let inspect = client(
                c,
                &host,
                &["image", "inspect", "--format", "{{.Id}}", &tag],
                Path::new("/"),
            )
            .output()
            .unwrap();
            assert_eq!(
                written,
                String::from_utf8_lossy(&inspect.stdout).trim(),
                "{c:?}"
            );
            // A failed build leaves no stale id behind.
            let bad = context("iidbad", &[("Dockerfile", "FROM bb:base\nRUN exit 1\n")]);
            fs::write(&iid, "stale").unwrap();
            let out = client(
                c,
                &host,
                &[
                    "build",
                    "--network",
                    "none",
                    "--iidfile",
                    iid.to_str().unwrap(),
                    bad.to_str().unwrap(),
                ],
                Path::new("/"),
            )
            .output()
            .unwrap();
            assert!(!out.status.success());
            assert!(!iid.exists(), "{c:?} left the iidfile");
        }
    }
}

fn client_side_errors() {
    let dir = context("errors", &[("Dockerfile", "FROM bb:base\n")]);
    let missing = world().work.path().join("nope");
    let unreadable = world().work.path().join("unreadable-dir");
    fs::create_dir_all(&unreadable).unwrap();
    let cases: Vec<(Vec<String>, Option<&[u8]>)> = vec![
        (vec![missing.to_string_lossy().into_owned()], None),
        (
            vec![
                "-f".into(),
                missing.to_string_lossy().into_owned(),
                dir.to_string_lossy().into_owned(),
            ],
            None,
        ),
        (
            vec![
                "-f".into(),
                unreadable.to_string_lossy().into_owned(),
                dir.to_string_lossy().into_owned(),
            ],
            None,
        ),
        (vec![unreadable.to_string_lossy().into_owned()], None),
        (
            vec!["-f".into(), "-".into(), "-".into()],
            Some(b"FROM bb:base\n"),
        ),
        (
            vec!["-f".into(), "Dockerfile".into(), "-".into()],
            Some(b"FROM bb:base\n"),
        ),
        (
            vec![
                "--platform".into(),
                "windows/amd64".into(),
                dir.to_string_lossy().into_owned(),
            ],
            None,
        ),
    ];
    let host = world().refengd.host();
    for (args, stdin) in cases {
        let mut all = vec!["build".to_owned()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let docker = run(client(Client::Docker, &host, &all, Path::new("/")), stdin);
        let refeng = run(client(Client::Refeng, &host, &all, Path::new("/")), stdin);
        let what = format!("{all:?}\ndocker: {docker:?}\nrefeng: {refeng:?}");
        assert_eq!(refeng.status.code(), docker.status.code(), "{what}");
        assert!(!refeng.status.success(), "{what}");
        assert_eq!(
            normalise(&refeng.stderr),
            normalise(&docker.stderr),
            "{what}"
        );
    }
    // A daemon's refusal: docker's CLI 28 loses it to the broken pipe of its upload (refengd
    // answers before reading the context); refeng reads the answer. Exit 1 in both.
    let out = run(
        client(
            Client::Refeng,
            &host,
            &[
                "build",
                "--platform",
                "windows/amd64",
                dir.to_str().unwrap(),
            ],
            Path::new("/"),
        ),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("Error response from daemon: platform \"windows/amd64\" is not supported"),
        "{out:?}"
    );
    // What refengd lacks is refused by name, before anything is sent.
    let out = run(
        client(
            Client::Refeng,
            &host,
            &["build", "--squash", dir.to_str().unwrap()],
            Path::new("/"),
        ),
        None,
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--squash"),
        "{out:?}"
    );
}

/// Serves `files` (path, body) over HTTP/1.0 on a loopback port, for as long as the test
/// binary runs; returns the base URL.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).map_or(true, |n| n == 0) || l.trim().is_empty() {
                    break;
                }
            }
            let path = first.split(' ').nth(1).unwrap_or("");
            let mut conn = r.into_inner();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(body);
                }
                None => {
                    let _ = conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    base
}

fn url_contexts() {
    let dir = context(
        "urlctx",
        &[
            ("a.txt", "from a URL\n"),
            (
                "Dockerfile",
                &format!("FROM bb:base\nCOPY . /app\n{LIST}\n"),
            ),
        ],
    );
    let tar = Command::new("tar")
        .args(["-C", dir.to_str().unwrap(), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let base = serve(vec![
        ("/ctx.tar", tar.stdout),
        (
            "/Dockerfile",
            b"FROM bb:base\nRUN echo from a URL Dockerfile\n".to_vec(),
        ),
    ]);
    for (name, path) in [("urltar", "/ctx.tar"), ("urldf", "/Dockerfile")] {
        let url = format!("{base}{path}");
        let mut c = case(name, PathBuf::new(), &[]);
        c.arg = Some(&url);
        let outs = compare(&c);
        for out in &outs {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.starts_with(&format!("Downloading build context from remote url: {url}")),
                "{text}"
            );
            assert!(text.contains("from a URL"), "{text}");
        }
    }
    // A URL that is not there: docker's message, exit 1.
    let url = format!("{base}/nope");
    let host = world().refengd.host();
    let out = run(
        client(Client::Refeng, &host, &["build", &url], Path::new("/")),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "unable to prepare context: unable to download remote context {url}"
        )),
        "{err}"
    );
}

/// A `git daemon` on a loopback port, ended by pid when dropped.
struct GitDaemon(std::process::Child);

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_contexts() {
    let base = world().work.path().join("git");
    let repo = base.join("repo");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(repo.join("sub")).unwrap();
    fs::write(
        repo.join("sub/Dockerfile"),
        "FROM bb:base\nCOPY a.txt /a.txt\nRUN cat /a.txt\n",
    )
    .unwrap();
    fs::write(repo.join("sub/a.txt"), "from git\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "ctx"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // git-daemon itself, not `git daemon`: git runs it as a child that SIGKILL on git would
    // leave running.
    let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_owned();
    let _daemon = GitDaemon(
        Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("git://127.0.0.1:{port}/repo#main:sub");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut c = case("git", PathBuf::new(), &[]);
    c.arg = Some(&url);
    let outs = compare(&c);
    for out in &outs {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("from git"),
            "{out:?}"
        );
    }
}

fn main() {
    engine_support::run(
        &[
            ("copy_with_dockerignore", &copy_with_dockerignore),
            ("args_target_labels", &args_target_labels),
            (
                "dockerfile_outside_the_context",
                &dockerfile_outside_the_context,
            ),
            ("dockerfiles_on_stdin", &dockerfiles_on_stdin),
            ("failing_run", &failing_run),
            ("quiet_and_iidfile", &quiet_and_iidfile),
            ("client_side_errors", &client_side_errors),
            ("url_contexts", &url_contexts),
            ("git_contexts", &git_contexts),
        ],
        || {
            if let Some(w) = W.get() {
                w.dockerd.lock().unwrap_or_else(|e| e.into_inner()).take();
                w.refengd.shutdown();
                let _ = fs::remove_dir_all(w.work.path());
            }
        },
    );
}
