//! refengd's containers on networks, driven by the docker CLI 28, docker-py and Debian's
//! docker-compose 1.29: published ports, user networks with names and aliases, connect and
//! disconnect, `container:X`, the DNS and hosts options, and what removal and a killed daemon
//! leave behind.
//!
//! The whole binary re-runs itself inside `unshare --net --mount`: refengd, its
//! refeng-containerd and every container live in a network namespace the test made, so nothing
//! touches the host's interfaces, routes or packet filter, and all traffic stays in there.

mod engine_support;
mod peers;
mod rootfs;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine_support::{Options, Refengd};
use serde_json::Value;

const INNER: &str = "REFENG_NETWORKING_TEST_INNER";

/// What the whole binary shares.
struct World {
    refengd: Refengd,
    /// The packet filter once the daemon made its default bridge (nothing else published).
    baseline_rules: String,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn opts() -> Options {
    Options {
        bridge: true,
        ..Options::default()
    }
}

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let refengd = Refengd::start_with(opts());
        let dir = refengd.dir().join("rootfs");
        rootfs::busybox(&dir);
        let tar = refengd.dir().join("busybox.tar");
        rootfs::tar(&dir, &tar);
        let _ = std::fs::remove_dir_all(&dir);
        refengd.docker(&[
            "import",
            "-c",
            "ENV PATH=/bin",
            "-c",
            "EXPOSE 80",
            &tar.to_string_lossy(),
            "busybox:latest",
        ]);
        World {
            baseline_rules: rules(),
            refengd,
        }
    })
}

fn d() -> &'static Refengd {
    &world().refengd
}

/// `docker args`, which must fail; returns its stderr.
#[track_caller]
fn docker_fails(args: &[&str]) -> String {
    let out = d().docker_cmd(args).output().expect("run docker");
    assert!(
        !out.status.success(),
        "docker {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The packet filter's rules, without counters and comments.
fn rules() -> String {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("REFENG"))
        .map(|l| match l.split_once(" [") {
            Some((chain, _)) if l.starts_with(':') => chain.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The namespace's network interfaces.
fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// `GET path` from `port` on the namespace's loopback (busybox httpd answers HTTP/1.0),
/// retried for a few seconds while the server starts; the body.
fn fetch(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            match text.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                    Ok(body.to_string())
                }
                _ => Err(std::io::Error::other(format!("answer: {text:?}"))),
            }
        })();
        match tried {
            Ok(b) => return b,
            Err(e) if Instant::now() > deadline => panic!("GET 127.0.0.1:{port}{path}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn inspect(name: &str) -> Value {
    let v: Value = serde_json::from_str(&d().docker(&["inspect", name])).unwrap();
    v[0].clone()
}

/// A detached busybox httpd serving /etc on port 80, with `args` before the image.
fn httpd(name: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--name", name];
    all.extend(args);
    all.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    d().docker(&all).trim().to_string()
}

/// Removes what a test made when it ends, also when it fails (containers, then networks).
struct Made(&'static [&'static str], &'static [&'static str]);

impl Drop for Made {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.0);
        let _ = d().docker_cmd(&args).output();
        for n in self.1 {
            let _ = d().docker_cmd(&["network", "rm", n]).output();
        }
    }
}

/// Now, as `docker events --since` reads it (seconds.nanoseconds).
fn chrono_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// The pid of a running container's init, from the engine.
fn pid_of(id: &str) -> i64 {
    inspect(id)["State"]["Pid"].as_i64().unwrap()
}

fn rm(names: &[&str]) {
    let mut all = vec!["rm", "-f"];
    all.extend(names);
    d().docker(&all);
}

fn published_ports_reach_the_container() {
    let _made = Made(&["web", "clash", "local", "any", "range", "hostp"], &[]);
    let id = httpd("web", &["-p", "18080:80"]);
    assert_eq!(fetch(18080, "/hostname"), format!("{}\n", &id[..12]));
    assert_eq!(d().docker(&["port", "web"]), "80/tcp -> 0.0.0.0:18080\n");
    assert_eq!(d().docker(&["port", "web", "80"]), "0.0.0.0:18080\n");
    let ps = d().docker(&["ps", "--filter", "name=web", "--format", "{{.Ports}}"]);
    assert_eq!(ps.trim(), "0.0.0.0:18080->80/tcp");
    let v = inspect("web");
    assert_eq!(
        v["HostConfig"]["PortBindings"],
        serde_json::json!({"80/tcp": [{"HostIp": "", "HostPort": "18080"}]})
    );
    assert_eq!(
        v["NetworkSettings"]["Ports"],
        serde_json::json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]})
    );
    let ip = v["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("172.17.0."), "{v}");
    assert_eq!(v["NetworkSettings"]["IPAddress"], ip.as_str());
    // A taken host port is refused with dockerd's words; the container leaves nothing behind.
    let e = docker_fails(&[
        "run", "-d", "--name", "clash", "-p", "18080:80", "busybox", "sleep", "60",
    ]);
    assert!(e.contains("address already in use"), "{e}");
    rm(&["clash"]);
    // With --rm, the container that could not start is removed (the CLI waits for that).
    let e = docker_fails(&["run", "--rm", "-p", "18080:80", "busybox", "true"]);
    assert!(e.contains("address already in use"), "{e}");
    assert!(!e.contains("error waiting for container"), "{e}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d()
        .docker(&["ps", "-aq", "--filter", "status=created"])
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the --rm container stayed");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Host mode keeps the bindings and warns, as dockerd; container:X refuses them.
    let out = d()
        .docker_cmd(&[
            "create",
            "--name",
            "hostp",
            "--network",
            "host",
            "-p",
            "1:1",
            "busybox",
            "true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Published ports are discarded when using host network mode"),
        "{out:?}"
    );
    rm(&["hostp"]);
    let e = docker_fails(&[
        "create",
        "--network",
        "container:web",
        "-p",
        "1:1",
        "busybox",
        "true",
    ]);
    assert!(e.contains("conflicting options: port publishing"), "{e}");
    // An address, -P with the image's EXPOSE, and a range.
    httpd("local", &["-p", "127.0.0.1:18081:80"]);
    assert_eq!(
        d().docker(&["port", "local"]),
        "80/tcp -> 127.0.0.1:18081\n"
    );
    fetch(18081, "/hostname");
    httpd("any", &["-P"]);
    let line = d().docker(&["port", "any", "80/tcp"]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 1024, "{line}");
    fetch(port, "/hostname");
    httpd("range", &["-p", "18090-18091:80-81/tcp"]);
    assert_eq!(
        d().docker(&["port", "range"]),
        "80/tcp -> 0.0.0.0:18090\n81/tcp -> 0.0.0.0:18091\n"
    );
    fetch(18090, "/hostname");
    // Stopped: no ports; started again: the same ones.
    d().docker(&["stop", "-t", "1", "web"]);
    assert_eq!(
        inspect("web")["NetworkSettings"]["Ports"],
        serde_json::json!({})
    );
    assert!(TcpStream::connect(("127.0.0.1", 18080)).is_err());
    d().docker(&["start", "web"]);
    fetch(18080, "/hostname");
    rm(&["web", "local", "any", "range"]);
    assert!(TcpStream::connect(("127.0.0.1", 18080)).is_err());
}

fn user_networks_resolve_names_and_aliases() {
    let _made = Made(&["a1", "web2", "pinned", "pinned2"], &["app", "fixed"]);
    d().docker(&["network", "create", "app"]);
    let a1 = httpd("a1", &["--network", "app", "--network-alias", "db"]);
    let got = d().docker(&[
        "run", "--rm", "--network", "app", "busybox", "sh", "-c",
        "wget -qO- http://a1/hostname && wget -qO- http://db/hostname && wget -qO- http://db.app/hostname",
    ]);
    assert_eq!(got, format!("{0}\n{0}\n{0}\n", &a1[..12]));
    // nc over the bridge, to the container's address.
    let ip = inspect("a1")["NetworkSettings"]["Networks"]["app"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "sh",
        "-c",
        &format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {ip} 80 | tail -n 1"),
    ]);
    assert_eq!(got.trim(), &a1[..12]);
    let n: Value = serde_json::from_str(&d().docker(&["network", "inspect", "app"])).unwrap();
    assert_eq!(n[0]["Containers"][&a1]["Name"], "a1");
    assert_eq!(
        n[0]["Containers"][&a1]["IPv4Address"],
        format!(
            "{ip}/{}",
            inspect("a1")["NetworkSettings"]["Networks"]["app"]["IPPrefixLen"]
        )
    );
    // A rename is what the names answer to.
    d().docker(&["rename", "a1", "a1new"]);
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "wget",
        "-qO-",
        "http://a1new/hostname",
    ]);
    assert_eq!(got, format!("{}\n", &a1[..12]));
    d().docker(&["rename", "a1new", "a1"]);
    let ps = d().docker(&["ps", "--filter", "network=app", "--format", "{{.Names}}"]);
    assert_eq!(ps, "a1\n");
    let e = docker_fails(&["network", "rm", "app"]);
    assert!(e.contains("has active endpoints"), "{e}");
    let ls = d().docker(&[
        "network",
        "ls",
        "--filter",
        "name=app",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(ls, "app\n");

    // Connect a running container of the default bridge, with an alias; then disconnect it.
    let web = httpd("web2", &[]);
    d().docker(&["network", "connect", "--alias", "w2", "app", "web2"]);
    let v = inspect("web2");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["app"]["Aliases"],
        serde_json::json!(["w2", &web[..12]])
    );
    assert_eq!(
        v["NetworkSettings"]["Networks"]["app"]["DNSNames"],
        serde_json::json!(["web2", &web[..12], "w2"])
    );
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "wget",
        "-qO-",
        "http://w2/hostname",
    ]);
    assert_eq!(got, format!("{}\n", &web[..12]));
    let e = docker_fails(&["network", "connect", "app", "web2"]);
    assert!(e.contains("already exists in network app"), "{e}");
    d().docker(&["network", "disconnect", "app", "web2"]);
    assert!(inspect("web2")["NetworkSettings"]["Networks"]["app"].is_null());
    let out = d()
        .docker_cmd(&[
            "run",
            "--rm",
            "--network",
            "app",
            "busybox",
            "wget",
            "-qO-",
            "-T",
            "2",
            "http://w2/hostname",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "w2 still resolves after disconnect");

    // container:X shares X's namespace (and its loopback).
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "container:a1",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1/hostname && wget -qO- http://db/hostname && grep -m 1 nameserver /etc/resolv.conf",
    ]);
    assert_eq!(got, format!("{0}\n{0}\nnameserver 127.0.0.11\n", &a1[..12]));

    // A fixed address on a network with a given subnet.
    d().docker(&["network", "create", "--subnet", "10.123.0.0/24", "fixed"]);
    d().docker(&[
        "run",
        "-d",
        "--name",
        "pinned",
        "--network",
        "fixed",
        "--ip",
        "10.123.0.50",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        inspect("pinned")["NetworkSettings"]["Networks"]["fixed"]["IPAddress"],
        "10.123.0.50"
    );
    let e = docker_fails(&[
        "run",
        "-d",
        "--name",
        "pinned2",
        "--network",
        "fixed",
        "--ip",
        "10.123.0.50",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(e.contains("Address already in use"), "{e}");
    // A running container connected with a fixed address; one run on two networks.
    let t0 = chrono_now();
    d().docker(&["network", "connect", "--ip", "10.123.0.60", "fixed", "web2"]);
    assert_eq!(
        inspect("web2")["NetworkSettings"]["Networks"]["fixed"]["IPAddress"],
        "10.123.0.60"
    );
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "fixed",
        "busybox",
        "wget",
        "-qO-",
        "http://10.123.0.60/hostname",
    ]);
    assert_eq!(got, format!("{}\n", &web[..12]));
    d().docker(&["network", "disconnect", "fixed", "web2"]);
    let events = d().docker(&[
        "events",
        "--since",
        &t0,
        "--until",
        &chrono_now(),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}",
    ]);
    let events: Vec<&str> = events.lines().collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], format!("connect fixed {web}"));
    assert_eq!(events[3], format!("disconnect fixed {web}"));
    assert!(events[1].starts_with("connect fixed ") && events[2].starts_with("disconnect fixed "));
    // A start joins and an exit leaves, as dockerd tells them.
    let t1 = chrono_now();
    d().docker(&["run", "--rm", "--network", "fixed", "busybox", "true"]);
    let events = d().docker(&[
        "events",
        "--since",
        &t1,
        "--until",
        &chrono_now(),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(events, "connect fixed\ndisconnect fixed\n");
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--network",
        "fixed",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show | awk '{print $2}' | sort | tr '\\n' ' '",
    ]);
    assert_eq!(got, "eth0 eth1 lo ");
    let e = docker_fails(&["run", "--rm", "--ip", "172.17.0.77", "busybox", "true"]);
    assert!(e.contains("user defined networks only"), "{e}");
    let e = docker_fails(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert!(e.contains("network nosuch not found"), "{e}");
    let e = docker_fails(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--mac-address",
        "02:42:0a:00:00:09",
        "busybox",
        "true",
    ]);
    assert!(e.contains("MacAddress"), "{e}");
    rm(&["a1", "web2", "pinned", "pinned2"]);
    d().docker(&["network", "rm", "app", "fixed"]);
    let e = docker_fails(&["network", "rm", "bridge"]);
    assert!(e.contains("pre-defined network"), "{e}");
}

fn dns_and_host_options_reach_the_files() {
    let _made = Made(&[], &["dnsnet"]);
    let args = [
        "--dns",
        "10.0.0.9",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "h1:10.1.2.3",
        "--hostname",
        "box",
        "--domainname",
        "example.org",
    ];
    let mut all = vec!["run", "--rm"];
    all.extend(args);
    all.extend([
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
    ]);
    let out = d().docker(&all);
    assert!(
        out.starts_with("search example.org\nnameserver 10.0.0.9\noptions ndots:2\n"),
        "{out}"
    );
    assert!(out.contains("10.1.2.3\th1\n"), "{out}");
    assert!(out.contains("\tbox.example.org box\n"), "{out}");
    assert!(out.contains("172.17.0."), "{out}");
    assert!(out.ends_with("\nbox\n"), "{out}");
    d().docker(&["network", "create", "dnsnet"]);
    let mut all = vec!["run", "--rm", "--network", "dnsnet"];
    all.extend(args);
    all.extend(["busybox", "cat", "/etc/resolv.conf"]);
    let out = d().docker(&all);
    assert_eq!(
        out,
        "search example.org\nnameserver 127.0.0.11\noptions ndots:2\n"
    );
    d().docker(&["network", "rm", "dnsnet"]);
}

fn docker_py_creates_networks_and_runs_on_them() {
    let _made = Made(&["pyweb"], &["pynet"]);
    let out = d().python(
        r#"
import docker
c = docker.from_env()
n = c.networks.create("pynet", labels={"a": "b"})
web = c.containers.run("busybox", "httpd -f -p 80 -h /etc", network="pynet", detach=True, name="pyweb")
# Not run(remove=True): its logs read right after the exit may miss the output still in the
# FIFO (a containers-side race, reported); poll the log instead.
cl = c.containers.run("busybox", ["sh", "-c", "until wget -qO- http://pyweb/hostname 2>/dev/null; do sleep 0.1; done"], network="pynet", detach=True)
print(cl.wait()["StatusCode"])
import time
got = b""
for _ in range(100):
    got = cl.logs()
    if got:
        break
    time.sleep(0.05)
cl.remove()
print(got.decode().strip() == web.id[:12] or (got, web.id))
n.reload()
print(list(n.attrs["Containers"].keys()) == [web.id], n.attrs["Labels"])
print([x.name for x in c.networks.list(filters={"label": "a=b"})])
web.remove(force=True)
n.remove()
print([x.name for x in c.networks.list(names=["pynet"])])
"#,
    );
    assert_eq!(out, "0\nTrue\nTrue {'a': 'b'}\n['pynet']\n[]\n");
}

fn compose_up_and_down_leave_nothing() {
    let _made = Made(&["proj_web_1", "proj_client_1"], &["proj_appnet"]);
    let dir = d().dir().join("compose/proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "3.7"
services:
  web:
    image: busybox
    command: httpd -f -p 80 -h /etc
    ports:
      - "18100:80"
    networks: [appnet]
  client:
    image: busybox
    command: sh -c 'until wget -qO /tmp/out http://web/hostname; do sleep 0.2; done; cat /tmp/out; exec sleep 600'
    networks: [appnet]
networks:
  appnet: {}
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| -> String {
        let out = Command::new("docker-compose")
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", d().host())
            .env("DOCKER_CONFIG", d().dir().join("cli"))
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .output()
            .expect("run docker-compose (apt-get install docker-compose)");
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}\n--- refengd ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            engine_support::tail(&d().log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    compose(&["up", "-d"]);
    let web = inspect("proj_web_1");
    let web_id = web["Id"].as_str().unwrap().to_string();
    let short = &web_id[..12];
    assert_eq!(fetch(18100, "/hostname"), format!("{short}\n"));
    let ps = compose(&["ps"]);
    for service in ["proj_web_1", "proj_client_1"] {
        assert!(
            ps.lines()
                .any(|l| l.starts_with(service) && l.contains(" Up ")),
            "{service} not up in:\n{ps}"
        );
    }
    assert!(ps.contains("0.0.0.0:18100->80/tcp"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = compose(&["logs", "--no-color", "client"]);
        if logs.lines().any(|l| l.ends_with(&format!("| {short}"))) {
            break;
        }
        assert!(Instant::now() < deadline, "client logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // exec reaches the other service by its service name on the named network.
    let got = compose(&[
        "exec",
        "-T",
        "client",
        "wget",
        "-qO-",
        "http://web/hostname",
    ]);
    assert_eq!(got, format!("{short}\n"));
    let nets = d().docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(nets.lines().any(|l| l == "proj_appnet"), "{nets}");
    compose(&["down", "-t", "1"]);
    let nets = d().docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.lines().any(|l| l == "proj_appnet"), "{nets}");
    assert_eq!(d().docker(&["ps", "-aq"]), "");
    assert_eq!(links(), vec!["lo".to_string(), "refeng0".to_string()]);
    assert_eq!(rules(), world().baseline_rules);
}

/// Bad input through the CLI: dockerd's error, and nothing half made (no network, container,
/// veth or rule that the failed call added).
fn bad_input_leaves_nothing_half_made() {
    let _made = Made(&["bad_web", "bad_taken", "bad_alone"], &["badnet"]);
    let networks = || d().docker(&["network", "ls", "-q"]);
    let before = networks();
    let e = docker_fails(&["network", "create", "--subnet", "10.0.0.0/33", "bad1"]);
    assert!(e.contains("invalid CIDR address: 10.0.0.0/33"), "{e}");
    d().docker(&["network", "create", "--subnet", "10.213.0.0/24", "badnet"]);
    let with_badnet = networks();
    let e = docker_fails(&["network", "create", "--subnet", "10.213.0.128/25", "bad2"]);
    assert!(e.contains("Pool overlaps"), "{e}");
    assert_eq!(networks(), with_badnet);
    assert_ne!(with_badnet, before);

    // A host port already taken: the second container gets no veth and no rule.
    httpd("bad_web", &["-p", "18120:80"]);
    let (links_before, rules_before) = (links(), rules());
    let e = docker_fails(&[
        "run",
        "--name",
        "bad_taken",
        "-p",
        "18120:80",
        "busybox",
        "true",
    ]);
    assert!(e.contains("address already in use"), "{e}");
    assert_eq!(links(), links_before);
    assert_eq!(rules(), rules_before);
    assert_eq!(
        fetch(18120, "/hostname").len(),
        13,
        "the first keeps its port"
    );

    // An unknown network: no container is made.
    let containers = d().docker(&["ps", "-aq"]);
    let e = docker_fails(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert!(e.contains("network nosuch not found"), "{e}");
    assert_eq!(d().docker(&["ps", "-aq"]), containers);

    // Disconnecting a container that is not connected.
    d().docker(&[
        "run",
        "-d",
        "--name",
        "bad_alone",
        "busybox",
        "sleep",
        "600",
    ]);
    let e = docker_fails(&["network", "disconnect", "badnet", "bad_alone"]);
    assert!(e.contains("is not connected to network badnet"), "{e}");
    let alone = inspect("bad_alone");
    let nets: Vec<&String> = alone["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(nets, ["bridge"]);

    // dockerd keeps a container whose start failed (as created); either way it goes now.
    let _ = d().docker_cmd(&["rm", "-f", "bad_taken"]).output();
    rm(&["bad_web", "bad_alone"]);
    d().docker(&["network", "rm", "badnet"]);
    assert_eq!(networks(), before);
    assert_eq!(links(), vec!["lo".to_string(), "refeng0".to_string()]);
    assert_eq!(rules(), world().baseline_rules);
}

/// A stop (TERM) takes refengd's chains along when no container is wired, keeps them for the
/// containers that keep running (live restore); the next start restores them.
fn a_stopped_daemon_takes_its_rules_along_unless_containers_run() {
    let _made = Made(&["s1"], &[]);
    assert_eq!(d().docker(&["ps", "-aq"]), "");
    d().stop();
    assert_eq!(
        rules(),
        "",
        "refengd's chains outlived a stop with nothing running"
    );
    d().restart(&opts());
    assert_eq!(rules(), world().baseline_rules);
    httpd("s1", &["-p", "18130:80"]);
    fetch(18130, "/hostname");
    let with = rules();
    d().stop();
    assert_eq!(
        rules(),
        with,
        "a running container lost its rules at the stop"
    );
    d().restart(&opts());
    assert_eq!(fetch(18130, "/hostname").len(), 13);
    rm(&["s1"]);
    assert_eq!(rules(), world().baseline_rules);
}

/// A restart policy's restarts unwire and wire the container again: same name, same port.
fn restarts_rewire_the_container() {
    let _made = Made(&["again"], &["rnet"]);
    d().docker(&["network", "create", "rnet"]);
    d().docker(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        "--network",
        "rnet",
        "-p",
        "18130:80",
        "busybox",
        "sh",
        "-c",
        "httpd -p 80 -h /etc; sleep 1; exit 3",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while inspect("again")["RestartCount"].as_i64().unwrap_or(0) < 2 {
        assert!(
            Instant::now() < deadline,
            "no restart: {}",
            inspect("again")["State"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = inspect("again")["Id"].as_str().unwrap().to_string();
    assert_eq!(fetch(18130, "/hostname"), format!("{}\n", &id[..12]));
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "rnet",
        "busybox",
        "sh",
        "-c",
        "until wget -qO- http://again/hostname 2>/dev/null; do sleep 0.1; done",
    ]);
    assert_eq!(got, format!("{}\n", &id[..12]));
    rm(&["again"]);
    d().docker(&["network", "rm", "rnet"]);
    assert_eq!(rules(), world().baseline_rules);
}

/// Every netns file, veth, bridge and rule a container or network made is gone once they are.
fn removal_leaves_nothing_stale() {
    let _made = Made(&["g1", "g2", "g3"], &["gone"]);
    d().docker(&["network", "create", "gone"]);
    httpd("g1", &["--network", "gone", "-p", "18110:80"]);
    httpd("g2", &["-p", "18111:80"]);
    d().docker(&["network", "connect", "gone", "g2"]);
    d().docker(&[
        "run",
        "-d",
        "--name",
        "g3",
        "--network",
        "container:g1",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(links().iter().any(|l| l.starts_with("veth")));
    rm(&["g3", "g1", "g2"]);
    d().docker(&["network", "rm", "gone"]);
    assert_eq!(d().docker(&["ps", "-aq"]), "");
    assert_eq!(links(), vec!["lo".to_string(), "refeng0".to_string()]);
    assert_eq!(rules(), world().baseline_rules);
    let netns = d().dir().join("exec/netns");
    let left: Vec<PathBuf> = std::fs::read_dir(&netns)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let state: Value = serde_json::from_slice(
        &std::fs::read(d().dir().join("data/network/networks.json")).unwrap(),
    )
    .unwrap();
    for n in state["networks"].as_object().unwrap().values() {
        assert_eq!(n["endpoints"], serde_json::json!({}), "{n}");
    }
    let bridge: Value =
        serde_json::from_str(&d().docker(&["network", "inspect", "bridge"])).unwrap();
    assert_eq!(bridge[0]["Containers"], serde_json::json!({}));
}

/// `kill -9` of refengd and a restart: running containers keep their published ports and
/// names, and the packet filter gets no duplicate.
fn a_killed_daemon_restarts_without_duplicate_rules() {
    let _made = Made(&["k1", "k2"], &["keep"]);
    d().docker(&["network", "create", "keep"]);
    let id = httpd(
        "k1",
        &[
            "--network",
            "keep",
            "--network-alias",
            "kk",
            "-p",
            "18120:80",
        ],
    );
    fetch(18120, "/hostname");
    let before = rules();
    // One that exits while the daemon is away: unwired when the daemon comes back.
    let short = d()
        .docker(&[
            "run",
            "-d",
            "--name",
            "k2",
            "--network",
            "keep",
            "-p",
            "18121:80",
            "busybox",
            "sleep",
            "2",
        ])
        .trim()
        .to_string();
    let pid = pid_of(&short);
    d().crash();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "k2 did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    d().restart(&opts());
    assert_eq!(inspect("k2")["State"]["Status"], "exited");
    assert_eq!(
        inspect("k2")["NetworkSettings"]["Networks"]["keep"]["IPAddress"],
        ""
    );
    let n: Value = serde_json::from_str(&d().docker(&["network", "inspect", "keep"])).unwrap();
    assert_eq!(
        n[0]["Containers"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![&id]
    );
    assert!(TcpStream::connect(("127.0.0.1", 18121)).is_err());
    rm(&["k2"]);
    assert_eq!(rules(), before, "the restart changed the rules");
    let mut seen = BTreeMap::new();
    for l in before.lines().filter(|l| l.starts_with("-A")) {
        *seen.entry(l).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "duplicate rules: {seen:?}");
    assert_eq!(fetch(18120, "/hostname"), format!("{}\n", &id[..12]));
    assert_eq!(d().docker(&["port", "k1"]), "80/tcp -> 0.0.0.0:18120\n");
    let got = d().docker(&[
        "run",
        "--rm",
        "--network",
        "keep",
        "busybox",
        "wget",
        "-qO-",
        "http://kk/hostname",
    ]);
    assert_eq!(got, format!("{}\n", &id[..12]));
    rm(&["k1"]);
    d().docker(&["network", "rm", "keep"]);
    assert_eq!(rules(), world().baseline_rules);
    assert_eq!(links(), vec!["lo".to_string(), "refeng0".to_string()]);
}

/// A value with the fields that differ by nature (ids, addresses, times, ports picked) blanked,
/// the short container id among the aliases replaced by `*`, and IPv6 port bindings dropped
/// (refengd publishes IPv4 only).
fn normalised(v: &Value, short_id: &str) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let blank = matches!(
                    k.as_str(),
                    "SandboxID"
                        | "SandboxKey"
                        | "EndpointID"
                        | "NetworkID"
                        | "Gateway"
                        | "IPAddress"
                        | "MacAddress"
                        | "HostPort"
                        | "Id"
                        | "Created"
                        | "IPv4Address"
                        | "Subnet"
                ) && x.is_string()
                    && x != "";
                match k.as_str() {
                    _ if blank => {
                        out.insert(k.clone(), Value::String("*".into()));
                    }
                    "Aliases" => {
                        let kept: Vec<Value> = x
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                if a.as_str() == Some(short_id) {
                                    Value::String("*".into())
                                } else {
                                    a.clone()
                                }
                            })
                            .collect();
                        out.insert(
                            k.clone(),
                            if x.is_null() {
                                Value::Null
                            } else {
                                Value::Array(kept)
                            },
                        );
                    }
                    _ => {
                        out.insert(k.clone(), normalised(x, short_id));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| x.get("HostIp").and_then(Value::as_str) != Some("::"))
                .map(|x| normalised(x, short_id))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A GET on a daemon's socket at API 1.41 (dockerd 20.10's).
fn api_get(sock: &std::path::Path, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(sock)
        .arg(format!("http://docker/v1.41{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path} on {}", sock.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Container inspect's NetworkSettings, network inspect with a container connected, and
/// `docker port` against a private dockerd 20.10 in the same namespace (its bridge on
/// another subnet).
fn inspect_and_port_match_a_private_dockerd() {
    let _made = Made(&["dweb"], &["dapp"]);
    let dockerd = peers::dockerd::Dockerd::options()
        .arg("--bridge=")
        .arg("--bip=10.66.0.1/24")
        .start();
    let tar = d().dir().join("busybox.tar");
    dockerd.docker(&[
        "import",
        "-c",
        "ENV PATH=/bin",
        "-c",
        "EXPOSE 80",
        &tar.to_string_lossy(),
        "busybox:latest",
    ]);
    let theirs_cli = |args: &[&str]| {
        let out = Command::new(engine_support::DOCKER_CLI)
            .args(args)
            .env("DOCKER_HOST", dockerd.host())
            .env("DOCKER_CONFIG", d().dir().join("cli-dockerd"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = |cli: &dyn Fn(&[&str]) -> String, subnet: &str, port: &str| {
        cli(&[
            "network", "create", "--subnet", subnet, "--label", "tier=web", "dapp",
        ]);
        let id = cli(&[
            "run",
            "-d",
            "--name",
            "dweb",
            "--network",
            "dapp",
            "--network-alias",
            "db",
            "-p",
            &format!("{port}:80"),
            "-p",
            "127.0.0.1::80/udp",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        id.trim().to_string()
    };
    let ours_cli = |args: &[&str]| d().docker(args);
    let our_id = run(&ours_cli, "10.202.0.0/24", "18200");
    let their_id = run(&theirs_cli, "10.201.0.0/24", "18201");
    let ours = api_get(&d().socket(), "/containers/dweb/json");
    let theirs = api_get(&dockerd.dir().join("docker.sock"), "/containers/dweb/json");
    assert_eq!(
        normalised(&ours["NetworkSettings"], &our_id[..12]),
        normalised(&theirs["NetworkSettings"], &their_id[..12]),
        "container inspect NetworkSettings"
    );
    assert_eq!(
        normalised(&ours["HostConfig"]["PortBindings"], ""),
        normalised(&theirs["HostConfig"]["PortBindings"], "")
    );
    let mut ours = api_get(&d().socket(), "/networks/dapp");
    let mut theirs = api_get(&dockerd.dir().join("docker.sock"), "/networks/dapp");
    // Keyed by container id: compare the one entry.
    let oc = ours["Containers"][&our_id].take();
    let tc = theirs["Containers"][&their_id].take();
    assert!(oc.is_object() && tc.is_object(), "{ours} / {theirs}");
    assert_eq!(
        normalised(&oc, ""),
        normalised(&tc, ""),
        "network inspect Containers entry"
    );
    ours["Containers"] = Value::Null;
    theirs["Containers"] = Value::Null;
    assert_eq!(
        normalised(&ours, ""),
        normalised(&theirs, ""),
        "network inspect"
    );
    let port = |out: String| -> Vec<String> {
        out.lines()
            .filter(|l| !l.contains("[::]"))
            .map(|l| l.rsplit_once(':').map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    assert_eq!(
        port(d().docker(&["port", "dweb"])),
        port(theirs_cli(&["port", "dweb"]))
    );
    theirs_cli(&["rm", "-f", "dweb"]);
    theirs_cli(&["network", "rm", "dapp"]);
}

/// `docker stats` and `GET /containers/{id}/stats`: dockerd's JSON with cgroup numbers (CPU,
/// memory against the limit, pids) and the container's eth0 counters, one-shot, with a
/// previous sample, streamed, and zero for a stopped container.
fn stats_report_cpu_memory_pids_and_network() {
    let _made = Made(&["st", "st-stopped"], &[]);
    httpd(
        "st",
        &["-p", "18095:80", "--memory", "64m", "--pids-limit", "50"],
    );
    for _ in 0..5 {
        fetch(18095, "/hostname");
    }
    let r = d().request("GET", "/containers/st/stats?stream=false", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["name"], "/st", "{s}");
    assert_ne!(s["read"], "0001-01-01T00:00:00Z", "{s}");
    assert_ne!(
        s["preread"], "0001-01-01T00:00:00Z",
        "a second sample carries the first: {s}"
    );
    assert!(
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(
        s["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
            > 0,
        "{s}"
    );
    assert!(
        s["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(s["cpu_stats"]["online_cpus"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["memory_stats"]["usage"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["memory_stats"]["limit"], 64 << 20, "{s}");
    assert!(
        s["memory_stats"]["stats"].as_object().unwrap().len() > 10,
        "{s}"
    );
    assert_eq!(s["pids_stats"]["current"], 1, "{s}");
    assert_eq!(s["pids_stats"]["limit"], 50, "{s}");
    let eth0 = &s["networks"]["eth0"];
    assert!(
        eth0["rx_bytes"].as_u64().unwrap() > 500,
        "five requests came in: {s}"
    );
    assert!(eth0["tx_packets"].as_u64().unwrap() >= 5, "{s}");
    assert!(s["networks"].get("lo").is_none(), "{s}");

    let one = d()
        .request(
            "GET",
            "/containers/st/stats?stream=false&one-shot=true",
            None,
        )
        .json();
    assert_eq!(one["preread"], "0001-01-01T00:00:00Z", "{one}");
    assert_eq!(one["precpu_stats"]["cpu_usage"]["total_usage"], 0, "{one}");
    let bad = d().request(
        "GET",
        "/containers/st/stats?stream=true&one-shot=true",
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());

    // The docker CLI reads the stream and prints its own numbers from it.
    let line = d().docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}} {{.NetIO}}",
        "st",
    ]);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "st", "{line}");
    assert_eq!(words[3], "64MiB", "{line}");
    assert_eq!(words[4], "1", "{line}");
    assert_ne!(words[5], "0B", "{line}");

    d().docker(&["create", "--name", "st-stopped", "busybox", "true"]);
    let z = d()
        .request("GET", "/containers/st-stopped/stats?stream=false", None)
        .json();
    assert_eq!(z["read"], "0001-01-01T00:00:00Z", "{z}");
    assert_eq!(z["name"], "/st-stopped", "{z}");
    assert_eq!(z["memory_stats"], serde_json::json!({}), "{z}");
    assert_eq!(
        d().request("GET", "/containers/nosuch/stats", None).status,
        404
    );
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    engine_support::in_private_namespaces(INNER);
    engine_support::run(
        &[
            (
                "published_ports_reach_the_container",
                &published_ports_reach_the_container,
            ),
            (
                "stats_report_cpu_memory_pids_and_network",
                &stats_report_cpu_memory_pids_and_network,
            ),
            (
                "user_networks_resolve_names_and_aliases",
                &user_networks_resolve_names_and_aliases,
            ),
            (
                "dns_and_host_options_reach_the_files",
                &dns_and_host_options_reach_the_files,
            ),
            (
                "docker_py_creates_networks_and_runs_on_them",
                &docker_py_creates_networks_and_runs_on_them,
            ),
            (
                "compose_up_and_down_leave_nothing",
                &compose_up_and_down_leave_nothing,
            ),
            (
                "bad_input_leaves_nothing_half_made",
                &bad_input_leaves_nothing_half_made,
            ),
            (
                "a_stopped_daemon_takes_its_rules_along_unless_containers_run",
                &a_stopped_daemon_takes_its_rules_along_unless_containers_run,
            ),
            (
                "restarts_rewire_the_container",
                &restarts_rewire_the_container,
            ),
            (
                "removal_leaves_nothing_stale",
                &removal_leaves_nothing_stale,
            ),
            (
                "a_killed_daemon_restarts_without_duplicate_rules",
                &a_killed_daemon_restarts_without_duplicate_rules,
            ),
            (
                "inspect_and_port_match_a_private_dockerd",
                &inspect_and_port_match_a_private_dockerd,
            ),
        ],
        || {
            if let Some(w) = WORLD.get() {
                // Containers would outlive the daemon (live restore): remove them first.
                let ids = w.refengd.docker_cmd(&["ps", "-aq"]).output();
                if let Ok(o) = ids {
                    let ids = String::from_utf8_lossy(&o.stdout).into_owned();
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids.split_whitespace());
                    if args.len() > 2 {
                        let _ = w.refengd.docker_cmd(&args).output();
                    }
                }
                let _ = w.refengd.docker_cmd(&["network", "prune", "-f"]).output();
                w.refengd.shutdown();
            }
        },
    );
}
