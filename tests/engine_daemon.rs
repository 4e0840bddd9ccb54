//! refengd as a daemon: its socket, `/_ping`, API versions, `/version`, `/info`, `/events`,
//! daemon.json, the refeng-containerd it supervises, `--containerd` over the real containerd
//! 1.6, and the same requests answered by a private dockerd. Clients: raw HTTP, the docker CLI
//! 28 and docker-py 7. One refengd serves the whole binary; tests that need their own start it.

#[path = "containerd_support/mod.rs"]
mod containerd_support;
mod engine_support;
mod peers;

use containerd_support::archive::rootfs;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine_support::{Options, Refengd};
use nix::sys::signal::{kill, Signal};
use serde_json::{json, Value};

static DAEMON: OnceLock<Refengd> = OnceLock::new();

fn daemon() -> &'static Refengd {
    DAEMON.get_or_init(Refengd::start)
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    engine_support::run(
        &[
            ("ping_answers_get_and_head_with_dockerds_headers", &ping),
            ("api_versions_are_negotiated_and_bounded", &api_versions),
            ("socket_is_0660_root_refeng", &socket_mode),
            (
                "docker_cli_28_negotiates_and_reads_version_and_info",
                &docker_cli,
            ),
            ("docker_py_7_works_with_auto_and_1_41", &docker_py),
            ("events_replay_since_until_and_filter", &events_window),
            ("docker_events_streams_live_events", &docker_events_live),
            (
                "daemon_json_refuses_unknown_keys_by_name",
                &daemon_json_refused,
            ),
            (
                "tcp_is_served_only_to_client_certificates",
                &tcp_with_client_certificates,
            ),
            (
                "supervised_containerd_is_restarted_when_it_dies",
                &containerd_restarted,
            ),
            (
                "a_crashed_refengd_adopts_its_running_containerd",
                &adopts_containerd,
            ),
            (
                "drives_the_real_containerd_with_dash_dash_containerd",
                &real_containerd,
            ),
            ("answers_like_dockerd_for_the_same_requests", &differential),
        ],
        || {
            if let Some(d) = DAEMON.get() {
                d.shutdown();
            }
        },
    )
}

fn ping() {
    let d = daemon();
    let r = d.request("GET", "/_ping", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "OK");
    assert_eq!(r.header("Api-Version"), Some("1.44"));
    assert_eq!(r.header("Ostype"), Some("linux"));
    assert_eq!(r.header("Docker-Experimental"), Some("false"));
    assert_eq!(r.header("Builder-Version"), Some("1"));
    assert_eq!(r.header("Pragma"), Some("no-cache"));
    let r = d.request("HEAD", "/v1.41/_ping", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!(r.header("Api-Version"), Some("1.44"));
}

fn api_versions() {
    let d = daemon();
    for path in [
        "/version",
        "/v1.24/version",
        "/v1.41/version",
        "/v1.44/version",
    ] {
        let r = d.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["ApiVersion"], "1.44");
        assert_eq!(v["MinAPIVersion"], "1.24");
    }
    let r = d.request("GET", "/v1.45/info", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "client version 1.45 is too new. Maximum supported API version is 1.44"
    );
    let r = d.request("GET", "/v1.23/info", None);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("client version 1.23 is too old. Minimum supported API version is 1.24"));
    for (m, p) in [
        ("GET", "/nope"),
        ("POST", "/_ping"),
        ("DELETE", "/v1.41/info"),
    ] {
        let r = d.request(m, p, None);
        assert_eq!(r.status, 404, "{m} {p}");
        assert_eq!(r.json(), serde_json::json!({"message": "page not found"}));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
}

fn socket_mode() {
    let d = daemon();
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .unwrap()
        .expect("the socket's group exists");
    assert_eq!(group.name, "refeng");
}

fn docker_cli() {
    let d = daemon();
    let out = d.docker(&[
        "version",
        "--format",
        "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(out.trim(), "1.44 1.44 1.24 linux");
    let components = d.docker(&["version", "--format", "{{json .Server.Components}}"]);
    let components: Value = serde_json::from_str(&components).unwrap();
    let ctd = components
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == "containerd")
        .expect("containerd component");
    assert!(ctd["Version"].as_str().unwrap().contains("refeng"), "{ctd}");
    let info: Value = serde_json::from_str(&d.docker(&["info", "--format", "{{json .}}"])).unwrap();
    assert_eq!(info["ServerErrors"], Value::Null, "{info}");
    assert_eq!(
        info["DockerRootDir"],
        d.dir().join("data").to_str().unwrap()
    );
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["LiveRestoreEnabled"], true);
    assert_eq!(
        info["NCPU"],
        std::thread::available_parallelism().unwrap().get()
    );
    let id = info["ID"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(d.dir().join("data/engine-id"))
            .unwrap()
            .trim(),
        id
    );
    assert_eq!(info["Containers"], 0);
    let mem: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(info["MemTotal"], mem * 1024);
}

fn docker_py() {
    let d = daemon();
    let out = d.python(
        r#"
import docker, json
import os
for v in ["auto", "1.41"]:
    c = docker.from_env(version=v)
    assert c.ping() is True
    ver = c.version()
    info = c.info()
    print(json.dumps([v, c.api.api_version, ver["ApiVersion"], info["DockerRootDir"], info["ID"]]))
try:
    docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="1.99").info()
    print("no error")
except docker.errors.APIError as e:
    print(json.dumps([e.status_code, e.explanation]))
"#,
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let root = d.dir().join("data");
    assert_eq!(lines[0][0], "auto");
    assert_eq!(lines[0][1], "1.44");
    assert_eq!(lines[1][1], "1.41");
    for l in &lines[..2] {
        assert_eq!(l[2], "1.44");
        assert_eq!(l[3], root.to_str().unwrap());
        assert_eq!(l[4], lines[0][4]);
    }
    assert_eq!(lines[2][0], 400, "{out}");
    assert!(lines[2][1].as_str().unwrap().contains("too new"), "{out}");
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Writes daemon.json and sends HUP; waits until the reload shows in the log.
fn reload(d: &Refengd, json: &str) {
    std::fs::write(d.dir().join("daemon.json"), json).unwrap();
    let before = d.log().matches("configuration reloaded").count();
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.log().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn events_window() {
    let d = daemon();
    let t0 = now_secs() - 1.0;
    reload(d, r#"{"labels":["tier=test"]}"#);
    reload(d, r#"{"labels":["tier=two"],"debug":true}"#);
    let t1 = now_secs() + 0.5;
    std::thread::sleep(Duration::from_millis(600));
    // A past window: replayed from the log, and the stream ends at `until`.
    let r = d.request("GET", &format!("/events?since={t0:.3}&until={t1:.3}"), None);
    assert_eq!(r.status, 200);
    let evs = r.json_lines();
    let reloads: Vec<&Value> = evs.iter().filter(|e| e["Action"] == "reload").collect();
    assert_eq!(reloads.len(), 2, "{evs:?}");
    assert_eq!(reloads[0]["Type"], "daemon");
    assert_eq!(reloads[0]["Actor"]["Attributes"]["labels"], "[tier=test]");
    assert_eq!(reloads[1]["Actor"]["Attributes"]["labels"], "[tier=two]");
    assert_eq!(reloads[1]["Actor"]["Attributes"]["debug"], "true");
    assert_eq!(reloads[0]["scope"], "local");
    assert!(reloads[0].get("status").is_none());
    let info = d.request("GET", "/info", None).json();
    assert_eq!(info["Labels"], serde_json::json!(["tier=two"]));
    assert_eq!(info["Debug"], true);
    assert_eq!(reloads[0]["Actor"]["ID"], info["ID"]);
    // Filters select; unknown ones and bad windows are a 400.
    let f = |json: &str| {
        let q: String = form_urlencoded::byte_serialize(json.as_bytes()).collect();
        d.request(
            "GET",
            &format!("/events?since={t0:.3}&until={t1:.3}&filters={q}"),
            None,
        )
    };
    assert_eq!(f(r#"{"type":["container"]}"#).json_lines().len(), 0);
    assert_eq!(
        f(r#"{"type":["daemon"],"event":["reload"]}"#)
            .json_lines()
            .len(),
        2
    );
    let r = f(r#"{"bogus":["x"]}"#);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, "invalid filter 'bogus'".into())
    );
    assert_eq!(f("{").status, 400);
    let r = d.request("GET", "/events?since=10&until=5", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "`since` time (10) cannot be after `until` time (5)"
    );
    assert_eq!(d.request("GET", "/events?since=soon", None).status, 400);
    // Relative forms, as the CLI's `--since 1m`.
    let r = d.request("GET", "/events?since=1m&until=0s", None);
    assert!(r.status == 200 || r.status == 400, "{}", r.text());
    reload(d, "{}");
}

fn docker_events_live() {
    let d = daemon();
    let mut child = d
        .docker_cmd(&[
            "events",
            "--filter",
            "type=daemon",
            "--format",
            "{{json .}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The CLI is subscribed once the daemon counts a listener.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.request("GET", "/info", None).json()["NEventsListener"] == 0 {
        assert!(Instant::now() < deadline, "docker events did not subscribe");
        std::thread::sleep(Duration::from_millis(20));
    }
    reload(d, r#"{"labels":["live=1"]}"#);
    let line = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("an event line").unwrap();
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["Action"], "reload");
    assert_eq!(ev["Actor"]["Attributes"]["labels"], "[live=1]");
    reload(d, "{}");
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate it signs in `dir`
/// (openssl, P-256 keys), as `prefix`-ca.pem, `prefix`-cert.pem, `prefix`-key.pem and
/// `prefix`-client-{cert,key}.pem.
fn make_certs(dir: &std::path::Path, prefix: &str) {
    let sh = format!(
        "set -e; cd {dir}; p={prefix}
         key() {{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 2>/dev/null; }}
         key $p-ca-key.pem
         openssl req -x509 -new -key $p-ca-key.pem -out $p-ca.pem -days 2 -subj /CN=$p-ca
         key $p-key.pem
         openssl req -new -key $p-key.pem -out $p.csr -subj /CN=127.0.0.1
         printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > $p.ext
         openssl x509 -req -in $p.csr -CA $p-ca.pem -CAkey $p-ca-key.pem -CAcreateserial \
           -out $p-cert.pem -days 2 -extfile $p.ext 2>/dev/null
         key $p-client-key.pem
         openssl req -new -key $p-client-key.pem -out $p-client.csr -subj /CN=client
         printf 'extendedKeyUsage=clientAuth\n' > $p-client.ext
         openssl x509 -req -in $p-client.csr -CA $p-ca.pem -CAkey $p-ca-key.pem -CAcreateserial \
           -out $p-client-cert.pem -days 2 -extfile $p-client.ext 2>/dev/null",
        dir = dir.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(sh)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {out:?}");
}

/// `-H tcp://` is served only with `--tlsverify`: the docker CLI 28 and refeng with a client
/// certificate the CA signed get answers; without one, with one another CA signed, or in plain
/// HTTP, they get none.
fn tcp_with_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    make_certs(dir, "good");
    make_certs(dir, "rogue");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let d = Refengd::start_with(Options {
        args: vec![
            "-H".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--tlsverify".into(),
            "--tlscacert".into(),
            f("good-ca.pem"),
            "--tlscert".into(),
            f("good-cert.pem"),
            "--tlskey".into(),
            f("good-key.pem"),
        ],
        ..Options::default()
    });
    let host = format!("tcp://127.0.0.1:{port}");
    let client = |program: &str, cert: Option<&str>| {
        let mut cmd = std::process::Command::new(program);
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CERT_PATH")
            .env("DOCKER_CONFIG", dir.join("cli"))
            .args(["-H", &host]);
        if let Some(who) = cert {
            cmd.args(["--tlsverify", "--tlscacert", &f("good-ca.pem")])
                .args(["--tlscert", &f(&format!("{who}-client-cert.pem"))])
                .args(["--tlskey", &f(&format!("{who}-client-key.pem"))]);
        }
        cmd.args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for program in [engine_support::DOCKER_CLI, env!("CARGO_BIN_EXE_refeng")] {
        let out = client(program, Some("good"));
        assert!(
            out.status.success(),
            "{program} with a good certificate: {out:?}\n{}",
            d.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            env!("CARGO_PKG_VERSION")
        );
        let out = client(program, Some("rogue"));
        assert!(
            !out.status.success(),
            "{program} with another CA's certificate: {out:?}"
        );
        let out = client(program, None);
        assert!(!out.status.success(), "{program} in plain HTTP: {out:?}");
    }
    // A TLS client without a certificate never gets an answer (TLS 1.3 refuses it after the
    // client's Finished, so the request is sent and must go unanswered).
    let mut s_client = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-CAfile", &f("good-ca.pem")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = s_client.stdin.take().unwrap();
        let _ = stdin.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = s_client.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !said.contains("HTTP/1.1"),
        "a client without a certificate was answered: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate required"),
        "{out:?}"
    );
    d.shutdown();
    // And without --tlsverify a tcp:// host is refused at start, by name.
    let out = std::process::Command::new(engine_support::REFENGD)
        .args([
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--config-file",
            "/dev/null",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tlsverify"),
        "{err}"
    );
}

fn daemon_json_refused() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let json = dir.path().join("daemon.json");
    let run = |text: &str| {
        std::fs::write(&json, text).unwrap();
        // Other directories, so nothing of the shared daemon is touched.
        let out = std::process::Command::new(engine_support::REFENGD)
            .args(["-H", &format!("unix://{}/x.sock", dir.path().display())])
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--config-file")
            .arg(&json)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(r#"{"storage-driver":"overlay2","registry-mirrors":[]}"#);
    assert!(!ok);
    assert!(
        err.contains("the following directives don't match any configuration option")
            && err.contains("storage-driver")
            && err.contains("registry-mirrors"),
        "{err}"
    );
    let (ok, err) = run(r#"{"log-driver":"syslog"}"#);
    assert!(!ok && err.contains("syslog"), "{err}");
    assert!(!dir.path().join("x.sock").exists());
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn containerd_restarted() {
    let d = daemon();
    let old = d.containerd_pid().expect("supervised containerd pid");
    kill(old, Signal::SIGKILL).unwrap();
    wait_until("a new refeng-containerd", Duration::from_secs(20), || {
        d.containerd_pid().is_some_and(|p| p != old)
    });
    wait_until(
        "/version through the new one",
        Duration::from_secs(20),
        || d.request("GET", "/version", None).status == 200,
    );
    let r = d.request("GET", "/info", None);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn adopts_containerd() {
    let d = Refengd::start();
    let before = d.containerd_pid().unwrap();
    d.restart(&Options::default());
    assert_eq!(d.containerd_pid(), Some(before), "{}", d.log());
    assert!(d.log().contains("adopting the running refeng-containerd"));
    assert_eq!(d.request("GET", "/version", None).status, 200);
    // A TERM stops refengd and its containerd, and removes the pidfiles and socket.
    d.signal(Signal::SIGTERM);
    wait_until("refeng-containerd to stop", Duration::from_secs(20), || {
        kill(before, None).is_err()
            || std::fs::read_to_string(format!("/proc/{before}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("refengd exits on TERM");
    assert!(status.success(), "{status}");
    assert!(!d.socket().exists());
    assert!(!d.dir().join("exec/refengd.pid").exists());
    assert!(!d.dir().join("exec/containerd/containerd.pid").exists());
}

fn real_containerd() {
    use containerd_support::{Daemon, Peer};
    let ctd = Daemon::start(Peer::Containerd);
    let d = Refengd::start_with(Options {
        containerd: Some(ctd.socket()),
        ..Options::default()
    });
    assert!(d.containerd_pid().is_none(), "nothing is supervised");
    let v = d.request("GET", "/version", None).json();
    let c = v["Components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == "containerd")
        .unwrap()
        .clone();
    assert!(c["Version"].as_str().unwrap().starts_with("1.6"), "{c}");
    let out = d.docker(&["info", "--format", "{{.Images}} {{.ContainerdCommit.ID}}"]);
    assert!(out.starts_with("0 "), "{out}");
    let py =
        d.python("import docker; print(docker.from_env(version='auto').version()['ApiVersion'])");
    assert_eq!(py.trim(), "1.44");
    // Containers over the real containerd and its runc shim: run, logs, exec, stats, stop,
    // restart, commit, rm.
    let dir = d.dir().join("rc-rootfs");
    containerd_support::archive::rootfs::busybox(&dir);
    let tar = d.dir().join("rc-busybox.tar");
    containerd_support::archive::rootfs::tar(&dir, &tar);
    let _ = std::fs::remove_dir_all(&dir);
    d.docker(&[
        "import",
        "-c",
        "ENV PATH=/bin",
        &tar.to_string_lossy(),
        "rcbox",
    ]);
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "rcbox",
        "echo",
        "over containerd",
    ]);
    assert_eq!(out, "over containerd\n");
    let id = d.docker(&[
        "run",
        "-d",
        "--name",
        "rc",
        "--network",
        "none",
        "rcbox",
        "sh",
        "-c",
        "echo started; trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(
        d.docker(&["exec", "rc", "cat", "/proc/1/cmdline"])
            .split('\0')
            .next(),
        Some("sh")
    );
    let stats = d
        .request(
            "GET",
            "/containers/rc/stats?stream=false&one-shot=true",
            None,
        )
        .json();
    assert!(
        stats["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
    d.docker(&["stop", "rc"]);
    let code = d.docker(&["inspect", "-f", "{{.State.ExitCode}}", "rc"]);
    assert_eq!(code.trim(), "7");
    d.docker(&["start", "rc"]);
    // `start` returns once the process runs; its first line comes after. Both runs' lines
    // must be in the log, the first run's kept across the restart.
    let mut logs = String::new();
    for _ in 0..100 {
        logs = d.docker(&["logs", "rc"]);
        if logs.starts_with("started\nstarted") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logs.starts_with("started\nstarted"), "{logs}");
    d.docker(&["commit", "rc", "rc-committed"]);
    d.docker(&["rm", "-f", id.trim()]);
    d.docker(&["rmi", "rc-committed", "rcbox"]);
    d.shutdown();
}

/// The same requests to a private dockerd (20.10: API 1.41) and to refengd: status codes,
/// error bodies and the ping headers must agree. Known differences are asserted as such.
fn differential() {
    let dockerd = peers::dockerd::Dockerd::start();
    let d = daemon();
    let sock = dockerd.dir().join("docker.sock");
    let cases: &[(&str, &str)] = &[
        ("GET", "/_ping"),
        ("HEAD", "/_ping"),
        ("GET", "/v1.41/_ping"),
        ("POST", "/_ping"),
        ("GET", "/nope"),
        ("DELETE", "/v1.41/info"),
        ("GET", "/vx/info"),
        ("GET", "/v1.41/version"),
        ("GET", "/v1.41/info"),
        ("GET", "/v1.41/events?since=10&until=5"),
        ("GET", "/v1.41/events?since=1&until=2"),
    ];
    for (m, p) in cases {
        let want = engine_support::try_request(&sock, m, p, &[], None).unwrap();
        let got = d.request(m, p, None);
        assert_eq!(
            got.status,
            want.status,
            "{m} {p}: {} vs dockerd {}",
            got.text(),
            want.text()
        );
        if want.status >= 400 {
            assert_eq!(got.json(), want.json(), "{m} {p}");
        }
        for h in [
            "Content-Type",
            "Cache-Control",
            "Pragma",
            "Ostype",
            "Docker-Experimental",
        ] {
            assert_eq!(got.header(h), want.header(h), "{m} {p}: header {h}");
        }
        if *p == "/_ping" && *m == "GET" {
            assert_eq!(got.body, want.body);
        }
        if p.ends_with("/info") && want.status == 200 {
            let (g, w) = (got.json(), want.json());
            for k in [
                "NCPU",
                "MemTotal",
                "OSType",
                "Architecture",
                "KernelVersion",
                "OperatingSystem",
                "OSVersion",
                "CgroupVersion",
                "CgroupDriver",
                "IndexServerAddress",
                "Name",
                "MemoryLimit",
                "SwapLimit",
                "CpuCfsQuota",
                "CPUShares",
                "CPUSet",
                "PidsLimit",
                "Containers",
                "Images",
            ] {
                assert_eq!(g[k], w[k], "/info {k}");
            }
        }
    }
    // Too-new versions: the same 400 and wording, with each daemon's own maximum.
    let want = engine_support::try_request(&sock, "GET", "/v1.99/info", &[], None).unwrap();
    let got = d.request("GET", "/v1.99/info", None);
    assert_eq!((got.status, want.status), (400, 400));
    assert_eq!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .replace("1.44", "MAX"),
        want.json()["message"]
            .as_str()
            .unwrap()
            .replace("1.41", "MAX")
    );
    stats_shape(d, &dockerd);
}

/// The keys of a JSON document as dotted paths (memory_stats.stats's keys included).
fn key_paths(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    if let Some(m) = v.as_object() {
        for (k, x) in m {
            let p = format!("{prefix}.{k}");
            out.insert(p.clone());
            key_paths(x, &p, out);
        }
    }
}

/// `GET /containers/{id}/stats?stream=false` of the same container on both daemons (busybox,
/// no network, a memory and pids limit): the same keys, limits and pids; and the same zero
/// sample for a container that does not run.
fn stats_shape(d: &Refengd, dockerd: &peers::dockerd::Dockerd) {
    let dir = d.dir().join("stats-rootfs");
    rootfs::busybox(&dir);
    let tar = d.dir().join("stats-busybox.tar");
    rootfs::tar(&dir, &tar);
    let _ = std::fs::remove_dir_all(&dir);
    let tar = tar.to_string_lossy().into_owned();
    let run = [
        "run",
        "-d",
        "--name",
        "st",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "stbox",
        "sleep",
        "1000",
    ];
    let create = ["create", "--name", "st-off", "stbox", "true"];
    for docker in [
        &(|a: &[&str]| d.docker(a)) as &dyn Fn(&[&str]) -> String,
        &|a: &[&str]| dockerd.docker(a),
    ] {
        docker(&["import", "-c", "ENV PATH=/bin", &tar, "stbox"]);
        docker(&run);
        docker(&create);
    }
    let sock = dockerd.dir().join("docker.sock");
    let get = |path: &str| {
        let want = engine_support::try_request(&sock, "GET", path, &[], None).unwrap();
        let got = d.request("GET", path, None);
        assert_eq!(
            (got.status, want.status),
            (200, 200),
            "{path}: {}",
            got.text()
        );
        (got.json(), want.json())
    };
    let (got, want) = get("/v1.41/containers/st/stats?stream=false");
    let (mut g, mut w) = (Default::default(), Default::default());
    key_paths(&got, "", &mut g);
    key_paths(&want, "", &mut w);
    assert_eq!(g, w, "stats keys: refengd {got}\ndockerd {want}");
    assert_eq!(got["memory_stats"]["limit"], want["memory_stats"]["limit"]);
    assert_eq!(got["pids_stats"], want["pids_stats"]);
    assert_eq!(
        got["cpu_stats"]["online_cpus"],
        want["cpu_stats"]["online_cpus"]
    );
    let (mut got, mut want) = get("/v1.41/containers/st-off/stats?stream=false");
    got["id"] = Value::Null;
    want["id"] = Value::Null;
    assert_eq!(got, want, "the zero sample");
    // system df: the containers with their sizes, and each image's count of containers.
    let (got, want) = get("/v1.41/system/df");
    let ours_only = |v: &Value| -> Vec<(String, bool)> {
        let mut l: Vec<(String, bool)> = v["Containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["Names"][0] == "/st" || c["Names"][0] == "/st-off")
            .map(|c| {
                (
                    c["Names"][0].as_str().unwrap().to_string(),
                    c["SizeRootFs"].as_i64().is_some_and(|s| s > 0),
                )
            })
            .collect();
        l.sort();
        l
    };
    assert_eq!(ours_only(&got), ours_only(&want), "df Containers");
    assert_eq!(ours_only(&got).len(), 2, "{got}");
    let count = |v: &Value| {
        v["Images"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["RepoTags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "stbox:latest"))
            })
            .map(|i| i["Containers"].clone())
    };
    assert_eq!(count(&got), count(&want), "an image's containers in df");
    assert_eq!(count(&got), Some(json!(2)));
    update_as_dockerd(d, dockerd);
    health_as_dockerd(d, dockerd);
    files_as_dockerd(d, dockerd);
    for docker in [
        &(|a: &[&str]| d.docker(a)) as &dyn Fn(&[&str]) -> String,
        &|a: &[&str]| dockerd.docker(a),
    ] {
        docker(&["rm", "-f", "st", "st-off"]);
        docker(&["rmi", "stbox"]);
    }
}

/// `docker update` on both daemons, step by step: the same success or the same error text,
/// then the same HostConfig and the same limits in the container's cgroup.
fn update_as_dockerd(d: &Refengd, dockerd: &peers::dockerd::Dockerd) {
    let run = |cmd: std::process::Command| {
        let mut cmd = cmd;
        let out = cmd.output().expect("run docker");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let both = |args: &[&str]| {
        let got = run(d.docker_cmd(args));
        let want = run(dockerd.command(args));
        (got, want)
    };
    let ids = |name: &str| {
        (
            d.docker(&["inspect", "-f", "{{.Id}}", name])
                .trim()
                .to_string(),
            dockerd
                .docker(&["inspect", "-f", "{{.Id}}", name])
                .trim()
                .to_string(),
        )
    };
    let start = [
        "run",
        "-d",
        "--name",
        "up",
        "--network",
        "none",
        "-m",
        "64m",
        "stbox",
        "sleep",
        "1000",
    ];
    let (got, want) = both(&start);
    assert_eq!((got.0, want.0), (Some(0), Some(0)), "{got:?} {want:?}");
    let (rid, did) = ids("up");
    let steps: &[&[&str]] = &[
        &["update", "-m", "100m", "up"],
        &["update", "-m", "300m", "up"],
        &["update", "-m", "300m", "--memory-swap", "600m", "up"],
        &["update", "-m", "1m", "up"],
        &["update", "--cpus", "0.5", "up"],
        &["update", "--cpu-quota", "50000", "up"],
        &["update", "--cpu-shares", "512", "--pids-limit", "30", "up"],
        &["update", "--restart", "on-failure:3", "up"],
        &["update", "-m", "100m", "nosuch"],
    ];
    for step in steps {
        let (got, want) = both(step);
        assert_eq!(got.0, want.0, "{step:?}: refengd {got:?} dockerd {want:?}");
        assert_eq!(got.1, want.1, "{step:?}");
        assert_eq!(
            got.2.replace(&rid, "ID"),
            want.2.replace(&did, "ID"),
            "{step:?}"
        );
    }
    // The one wording that differs: refengd answers API 1.44 with dockerd 25's message for an
    // unknown policy, 20.10 has an older one.
    let (got, want) = both(&["update", "--restart", "bogus", "up"]);
    assert_eq!((got.0, want.0), (Some(1), Some(1)));
    assert!(
        got.2
            .contains("invalid restart policy: unknown policy 'bogus'"),
        "{got:?}"
    );
    let fields = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} \
                  {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy}}";
    let (got, want) = both(&["inspect", "-f", fields, "up"]);
    assert_eq!(got, want, "HostConfig after the updates");
    let cat =
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
               /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max";
    let (got, want) = both(&["exec", "up", "sh", "-c", cat]);
    assert_eq!(got, want, "the cgroup after the updates");
    assert_eq!(got.1.lines().next(), Some("314572800"), "{got:?}");
    // A field refengd does not apply is refused by name (dockerd drops an unsupported blkio
    // weight with a warning).
    let (code, _, err) = run(d.docker_cmd(&["update", "--blkio-weight", "300", "up"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("BlkioWeight"), "{err}");
    // A policy given by update governs the next exit: exit 3 twice more, then it stays exited.
    let script = "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 3";
    let (got, want) = both(&[
        "run",
        "-d",
        "--name",
        "rp",
        "--network",
        "none",
        "stbox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!((got.0, want.0), (Some(0), Some(0)), "{got:?} {want:?}");
    let (got, want) = both(&["update", "--restart", "on-failure:2", "rp"]);
    assert_eq!((got.0, want.0), (Some(0), Some(0)), "{got:?} {want:?}");
    let (got, want) = both(&["exec", "rp", "touch", "/tmp/go"]);
    assert_eq!((got.0, want.0), (Some(0), Some(0)), "{got:?} {want:?}");
    let settled = |inspect: &dyn Fn() -> String| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = inspect();
            if s.starts_with("2 false") || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let f = [
        "inspect",
        "-f",
        "{{.RestartCount}} {{.State.Running}} {{.State.ExitCode}}",
        "rp",
    ];
    let got = settled(&|| d.docker(&f));
    let want = settled(&|| dockerd.docker(&f));
    assert_eq!(got.trim(), "2 false 3");
    assert_eq!(got, want);
    let _ = both(&["rm", "-f", "up", "rp"]);
}

/// Health checks on both daemons: starting, unhealthy after the retries, healthy once the
/// probe passes, a probe cut at its timeout, `ps` and its `health` filter, inspect's
/// `Config.Healthcheck` and `State.Health`, and what a stop leaves.
fn health_as_dockerd(d: &Refengd, dockerd: &peers::dockerd::Dockerd) {
    let both = |args: &[&str]| (d.docker(args), dockerd.docker(args));
    both(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "stbox",
        "sleep",
        "1000",
    ]);
    both(&[
        "run",
        "-d",
        "--name",
        "hc-slow",
        "--network",
        "none",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "stbox",
        "sleep",
        "1000",
    ]);
    let status = |docker: &dyn Fn(&[&str]) -> String, name: &str| {
        docker(&["inspect", "-f", "{{.State.Health.Status}}", name])
            .trim()
            .to_string()
    };
    let until = |docker: &dyn Fn(&[&str]) -> String, name: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = status(docker, name);
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "{name}: still {s}, want {want}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let rd = |a: &[&str]| d.docker(a);
    let dd = |a: &[&str]| dockerd.docker(a);
    for docker in [&rd as &dyn Fn(&[&str]) -> String, &dd] {
        until(docker, "hc", "unhealthy");
        let streak = docker(&["inspect", "-f", "{{.State.Health.FailingStreak}}", "hc"]);
        assert!(streak.trim().parse::<u32>().unwrap() >= 2, "{streak}");
        docker(&["exec", "hc", "touch", "/tmp/ok"]);
        until(docker, "hc", "healthy");
        until(docker, "hc-slow", "unhealthy");
    }
    let (got, want) = both(&["inspect", "-f", "{{json .Config.Healthcheck}}", "hc"]);
    assert_eq!(got, want);
    let log = |docker: &dyn Fn(&[&str]) -> String, name: &str| -> Value {
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .State.Health}}", name])).unwrap()
    };
    let (got, want) = (log(&rd, "hc"), log(&dd, "hc"));
    let last = |v: &Value| v["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last(&got)["ExitCode"].clone(), last(&got)["Output"].clone()),
        (
            last(&want)["ExitCode"].clone(),
            last(&want)["Output"].clone()
        )
    );
    assert!(got["Log"].as_array().unwrap().len() <= 5, "{got}");
    let (got, want) = (log(&rd, "hc-slow"), log(&dd, "hc-slow"));
    assert_eq!(last(&got)["ExitCode"], -1, "{got}");
    assert_eq!(last(&got)["Output"], last(&want)["Output"], "{got} {want}");
    let ps = [
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ];
    let (got, want) = both(&ps);
    let strip = |s: &str| {
        s.split(" Up ").next().unwrap_or("").to_string()
            + if s.ends_with("(healthy)") {
                " (healthy)"
            } else {
                ""
            }
    };
    assert_eq!(strip(got.trim()), "hc (healthy)", "{got}");
    assert_eq!(strip(got.trim()), strip(want.trim()));
    let (got, want) = both(&[
        "ps",
        "--filter",
        "health=unhealthy",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!((got.trim(), want.trim()), ("hc-slow", "hc-slow"));
    // A stop keeps the last status (20.10), and a start begins at starting again.
    both(&["stop", "-t", "0", "hc"]);
    let (got, want) = (status(&rd, "hc"), status(&dd, "hc"));
    assert_eq!(got, want, "after a stop");
    both(&["start", "hc"]);
    let (got, want) = (status(&rd, "hc"), status(&dd, "hc"));
    assert_eq!((got.as_str(), want.as_str()), ("starting", "starting"));
    both(&["rm", "-f", "hc", "hc-slow"]);
}

/// `docker diff` and `docker export` of the same container on both daemons: the same changes
/// (additions, changes, deletions, an opaque directory; the runtime's mount points left out),
/// and an export that lists the same paths with the container's new content.
fn files_as_dockerd(d: &Refengd, dockerd: &peers::dockerd::Dockerd) {
    let script = "mkdir -p /data/sub && echo a > /data/sub/f && echo b >> /etc/passwd \
                  && rm /etc/group && rm -rf /home && mkdir /home && touch /home/new \
                  && sleep 1000";
    let both = |args: &[&str]| (d.docker(args), dockerd.docker(args));
    both(&[
        "run",
        "-d",
        "--name",
        "fx",
        "--network",
        "none",
        "stbox",
        "sh",
        "-c",
        script,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.docker(&["diff", "fx"]).contains("/home/new")
        || !dockerd.docker(&["diff", "fx"]).contains("/home/new")
    {
        assert!(Instant::now() < deadline, "the script did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    // dockerd's naive differ lists a directory's entries in Go's map order (it varies from call
    // to call); refengd sorts by path. The same lines either way.
    let (got, want) = both(&["diff", "fx"]);
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(sorted(&got), sorted(&want), "docker diff");
    assert!(
        got.contains("A /data/sub/f") && got.contains("D /etc/group"),
        "{got}"
    );
    let list = |docker: &dyn Fn(&[&str]) -> std::process::Command| -> Vec<String> {
        let out = docker(&["export", "fx"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("fx.tar");
        std::fs::write(&tar, &out.stdout).unwrap();
        let t = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&tar)
            .output()
            .unwrap();
        assert!(t.status.success(), "{t:?}");
        let mut names: Vec<String> = String::from_utf8_lossy(&t.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty() && l != ".")
            .collect();
        names.sort();
        names
    };
    // Both init layers (`.dockerenv`, `etc/mtab`, the mount points) are in the export.
    let got = list(&|a| d.docker_cmd(a));
    let want = list(&|a| dockerd.command(a));
    assert_eq!(got, want, "docker export's paths");
    assert!(got.iter().any(|n| n == "data/sub/f") && !got.iter().any(|n| n == "etc/group"));
    // docker commit: the changes become a layer; the config takes the changes given.
    let commit = [
        "commit",
        "-a",
        "me",
        "-m",
        "msg",
        "-c",
        "ENV X=1",
        "-c",
        "CMD [\"cat\", \"/data/sub/f\"]",
        "fx",
        "committed:v1",
    ];
    both(&commit);
    let (got, want) = both(&["run", "--rm", "--network", "none", "committed:v1"]);
    assert_eq!((got.as_str(), want.as_str()), ("a\n", "a\n"));
    let f = "{{json .Config.Cmd}} {{json .Config.Env}} {{json .Config.Entrypoint}} \
             {{.Config.WorkingDir}} {{len .RootFS.Layers}} {{.Author}} {{.Comment}}";
    let (got, want) = both(&["image", "inspect", "-f", f, "committed:v1"]);
    assert_eq!(got, want, "the committed image");
    // The deletion is in the layer too.
    let gone = |c: std::process::Command| {
        let mut c = c;
        c.output().unwrap().status.success()
    };
    let cat = [
        "run",
        "--rm",
        "--network",
        "none",
        "committed:v1",
        "cat",
        "/etc/group",
    ];
    assert_eq!(
        (gone(d.docker_cmd(&cat)), gone(dockerd.command(&cat))),
        (false, false)
    );
    let (got, want) = both(&[
        "history",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "committed:v1",
    ]);
    assert_eq!(
        got.lines().next(),
        want.lines().next(),
        "the commit's history entry"
    );
    let (got, want) = both(&["rm", "-f", "fx"]);
    assert_eq!(got, want);
    both(&["rmi", "committed:v1"]);
}
