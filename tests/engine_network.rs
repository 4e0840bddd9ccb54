//! refengd's network layer driven directly (the API endpoints come with the containers code):
//! two "containers" (network namespaces the layer makes) on a user bridge ping each other and
//! resolve each other through the embedded DNS; a published port reaches a server inside a
//! container from the host's loopback and through DNAT; a restart keeps the allocations and
//! the rules without duplicates; removal leaves no device, chain or mount.
//!
//! Every test re-runs itself inside `unshare --net --mount` (a network namespace and a private
//! mount namespace of its own), so nothing is added to the host's interfaces, routes, firewall
//! or mounts, and whatever a failure leaves behind vanishes with the process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use refeng::engine::filters::Filters;
use refeng::engine::network::dns::{self, rtype, Message};
use refeng::engine::network::ipam::{IpamError, Subnet};
use refeng::engine::network::ports::{PortRequest, Protocol};
use refeng::engine::network::{
    api, netlink, EndpointOptions, IpamConfig, IpamRequest, NetworkConfig, NetworkController,
    NetworkCreate, NetworkError,
};

mod peers;
mod rootfs;

const INNER: &str = "REFENG_NETWORK_TEST_INNER";

/// Runs `body` in a fresh network and mount namespace: re-executes this test binary for just
/// `name` under `unshare`, and fails with the inner run's output when it fails.
fn in_private_netns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(INNER).is_some() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INNER, "1")
        .output()
        .expect("run unshare");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inner run failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
}

struct Fixture {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("refeng-net-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 10.77.0.53\n").unwrap();
        Fixture {
            dir,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn config(&self) -> NetworkConfig {
        let mut c = NetworkConfig::new(
            &self.dir.path().join("data"),
            &self.dir.path().join("exec"),
            Some("10.66.0.1/24".parse().unwrap()),
            None,
        );
        c.host_resolv_conf = self.dir.path().join("resolv.conf");
        c
    }

    fn open(&self) -> NetworkController {
        NetworkController::open(self.config(), self.rt.handle().clone()).expect("open")
    }
}

fn user_network(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ipam: Some(IpamRequest {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.into()),
                ..IpamConfig::default()
            }]),
            ..IpamRequest::default()
        }),
        ..NetworkCreate::default()
    }
}

fn endpoint(id: &str, name: &str, aliases: &[&str]) -> EndpointOptions {
    EndpointOptions {
        container_id: format!("{id:0<64}"),
        container_name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..EndpointOptions::default()
    }
}

/// `busybox ping` from inside a namespace.
fn ping(netns: &Path, ip: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "ping", "-c", "1", "-W", "2"])
        .arg(ip.to_string())
        .output()
        .unwrap()
        .status
        .success()
}

/// A DNS query sent from inside `netns` to the embedded server.
fn lookup(netns: &Path, name: &str, qtype: u16) -> Message {
    let netns = netns.to_path_buf();
    let name = name.to_string();
    std::thread::spawn(move || {
        netlink::enter(&netns).unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&dns::query(42, &name, qtype), "127.0.0.11:53")
            .unwrap();
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf).expect("an answer from 127.0.0.11");
        Message::parse(&buf[..n]).unwrap()
    })
    .join()
    .unwrap()
}

/// The same over TCP (two-byte length prefix).
fn lookup_tcp(netns: &Path, name: &str) -> Message {
    let netns = netns.to_path_buf();
    let name = name.to_string();
    std::thread::spawn(move || {
        netlink::enter(&netns).unwrap();
        let mut s = TcpStream::connect("127.0.0.11:53").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = dns::query(43, &name, rtype::A);
        s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).unwrap();
        Message::parse(&buf).unwrap()
    })
    .join()
    .unwrap()
}

/// A stand-in upstream DNS server on `ip` (added to this namespace's loopback) answering every
/// A query with 192.0.2.99, over UDP and TCP.
fn fake_upstream(ip: Ipv4Addr) {
    let added = Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .status()
        .unwrap();
    assert!(added.success());
    let answer = |q: &[u8]| {
        let m = Message::parse(q).unwrap();
        dns::answer_a(q, &m, &[Ipv4Addr::new(192, 0, 2, 99)], 60)
    };
    let udp = UdpSocket::bind((ip, 53)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&answer(&buf[..n]), from);
        }
    });
    let tcp = TcpListener::bind((ip, 53)).unwrap();
    std::thread::spawn(move || {
        for c in tcp.incoming() {
            let Ok(mut c) = c else { continue };
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if c.read_exact(&mut q).is_err() {
                continue;
            }
            let r = answer(&q);
            let _ = c.write_all(&(r.len() as u16).to_be_bytes());
            let _ = c.write_all(&r);
        }
    });
}

/// A UDP echo server inside `netns`.
fn udp_echo_in(netns: &Path, port: u16) {
    let netns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netlink::enter(&netns).unwrap();
        let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    rx.recv().unwrap();
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .records
        .iter()
        .filter(|r| r.rtype == rtype::A)
        .map(|r| Ipv4Addr::new(r.data[0], r.data[1], r.data[2], r.data[3]))
        .collect();
    v.sort();
    v
}

/// A TCP server inside `netns` on `port` that answers each connection with `greeting`.
fn serve_in(netns: &Path, port: u16, greeting: &'static str) {
    let netns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netlink::enter(&netns).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.write_all(greeting.as_bytes());
        }
    });
    rx.recv().unwrap();
}

fn fetch(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

fn iptables_save() -> String {
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packets that hit the DNAT rule of `port` (the proxy listens too: this tells them apart).
fn dnat_hits(port: u16) -> u64 {
    let out = Command::new("iptables")
        .args(["-t", "nat", "-nvx", "-L", "REFENG"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dpt:{port} ")) && l.contains("DNAT"))
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

#[test]
fn containers_on_a_user_bridge_talk_resolve_publish_and_survive_a_restart() {
    in_private_netns(
        "containers_on_a_user_bridge_talk_resolve_publish_and_survive_a_restart",
        || {
            let f = Fixture::new();
            let net = f.open();
            let id = net
                .create_network(&user_network("app", "10.123.0.0/24"))
                .unwrap();
            let rec = net.get("app").unwrap();
            assert_eq!(rec.bridge, format!("br-{}", &id[..12]));
            assert!(netlink::links(None).unwrap().contains(&rec.bridge));
            assert!(netlink::links(None)
                .unwrap()
                .contains(&"refeng0".to_string()));

            let a = net.netns_path("aaaa");
            let b = net.netns_path("bbbb");
            net.create_netns(&a).unwrap();
            net.create_netns(&b).unwrap();
            let ea = net
                .connect(&a, "app", &endpoint("aaaa", "alpha", &["svc"]))
                .unwrap();
            let mut bopts = endpoint("bbbb", "beta", &["svc"]);
            bopts.ports = vec![
                PortRequest {
                    protocol: Protocol::Tcp,
                    container_port: 8080,
                    host_ip: None,
                    host_ports: (18080, 18080),
                },
                PortRequest {
                    protocol: Protocol::Tcp,
                    container_port: 8080,
                    host_ip: None,
                    host_ports: (0, 0),
                },
                PortRequest {
                    protocol: Protocol::Udp,
                    container_port: 5353,
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_ports: (15353, 15360),
                },
            ];
            let eb = net.connect(&b, "app", &bopts).unwrap();
            assert_eq!(ea.ip, Ipv4Addr::new(10, 123, 0, 2));
            assert_eq!(eb.ip, Ipv4Addr::new(10, 123, 0, 3));
            assert_eq!(ea.gateway, Some(Ipv4Addr::new(10, 123, 0, 1)));
            assert_eq!(ea.mac, "02:42:0a:7b:00:02");
            assert_eq!(
                netlink::links(Some(&a))
                    .unwrap()
                    .iter()
                    .filter(|l| *l == "eth0")
                    .count(),
                1
            );

            // By IP both ways, over the bridge.
            assert!(ping(&a, eb.ip), "alpha cannot ping beta");
            assert!(ping(&b, ea.ip), "beta cannot ping alpha");
            // By name, alias (every matching container), name.network; AAAA is empty.
            assert_eq!(a_records(&lookup(&a, "beta", rtype::A)), vec![eb.ip]);
            assert_eq!(a_records(&lookup(&a, "BETA.app", rtype::A)), vec![eb.ip]);
            assert_eq!(a_records(&lookup(&b, "svc", rtype::A)), vec![ea.ip, eb.ip]);
            assert!(lookup(&a, "beta", rtype::AAAA).records.is_empty());
            let ptr = lookup(&a, "3.0.123.10.in-addr.arpa", rtype::PTR);
            assert_eq!(ptr.records[0].data, b"\x04beta\x03app\x00".to_vec());
            // Unknown names go to the upstream of the fixture's resolv.conf (a stand-in server
            // on this namespace's loopback), over UDP and TCP.
            fake_upstream(Ipv4Addr::new(10, 77, 0, 53));
            let fwd = lookup(&a, "elsewhere.example", rtype::A);
            assert_eq!(a_records(&fwd), vec![Ipv4Addr::new(192, 0, 2, 99)]);
            assert_eq!(fwd.header.id, 42);
            let fwd = lookup_tcp(&a, "elsewhere.example");
            assert_eq!(a_records(&fwd), vec![Ipv4Addr::new(192, 0, 2, 99)]);

            // Published: from the host's loopback (proxy) and its bridge address (DNAT).
            serve_in(&b, 8080, "hello from beta");
            assert_eq!(fetch("127.0.0.1:18080".parse().unwrap()), "hello from beta");
            assert_eq!(dnat_hits(18080), 0);
            assert_eq!(
                fetch("10.123.0.1:18080".parse().unwrap()),
                "hello from beta"
            );
            assert!(
                dnat_hits(18080) > 0,
                "a local non-loopback address goes through DNAT"
            );
            // UDP: a datagram echo inside beta, reached through the loopback proxy.
            udp_echo_in(&b, 5353);
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(eb.ports[2].host_port, 15353);
            u.send_to(b"marco", ("127.0.0.1", eb.ports[2].host_port))
                .unwrap();
            let mut buf = [0u8; 16];
            let n = u.recv(&mut buf).expect("an echo through the UDP proxy");
            assert_eq!(&buf[..n], b"marco");
            let random = eb.ports[1].host_port;
            assert_ne!(random, 0);
            assert_eq!(
                fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, random))),
                "hello from beta"
            );
            // A port already taken: dockerd's error, and no veth or address left behind.
            let links_before = netlink::links(None).unwrap();
            let c = net.netns_path("cccc");
            net.create_netns(&c).unwrap();
            let mut taken = endpoint("cccc", "gamma", &[]);
            taken.ports = vec![PortRequest {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_ip: None,
                host_ports: (18080, 18080),
            }];
            let err = net.connect(&c, "app", &taken).unwrap_err();
            assert!(err.to_string().contains("address already in use"), "{err}");
            assert_eq!(netlink::links(None).unwrap(), links_before);
            assert!(!net
                .get("app")
                .unwrap()
                .pool
                .allocated
                .contains(&Ipv4Addr::new(10, 123, 0, 4)));

            // Restart: drop the live parts, rebuild from the data root.
            let rules_before = iptables_save();
            net.shutdown();
            drop(net);
            let net = f.open();
            assert_eq!(
                iptables_save().matches("DNAT").count(),
                rules_before.matches("DNAT").count()
            );
            assert_eq!(
                iptables_save().matches("-j REFENG\n").count(),
                2,
                "{}",
                iptables_save()
            );
            assert_eq!(fetch("127.0.0.1:18080".parse().unwrap()), "hello from beta");
            assert_eq!(a_records(&lookup(&a, "beta", rtype::A)), vec![eb.ip]);
            let ec = net
                .connect(&c, "app", &endpoint("cccc", "gamma", &[]))
                .unwrap();
            assert_eq!(
                ec.ip,
                Ipv4Addr::new(10, 123, 0, 4),
                "a restart must not hand out .2 or .3 again"
            );
            // A fixed address that is taken, and one that is free.
            let d = net.netns_path("dddd");
            net.create_netns(&d).unwrap();
            let mut fixed = endpoint("dddd", "delta", &[]);
            fixed.ip = Some(Ipv4Addr::new(10, 123, 0, 3));
            assert!(matches!(
                net.connect(&d, "app", &fixed),
                Err(NetworkError::Ipam(IpamError::InUse))
            ));
            fixed.ip = Some(Ipv4Addr::new(10, 123, 0, 200));
            assert_eq!(
                net.connect(&d, "app", &fixed).unwrap().ip,
                fixed.ip.unwrap()
            );

            // Removal.
            assert!(matches!(
                net.remove_network("app"),
                Err(NetworkError::InUse { .. })
            ));
            assert!(matches!(
                net.disconnect("nope", "app"),
                Err(NetworkError::NotConnected { .. })
            ));
            for (id, ns) in [("aaaa", &a), ("bbbb", &b), ("cccc", &c), ("dddd", &d)] {
                net.disconnect(&format!("{id:0<64}"), "app").unwrap();
                net.remove_netns(ns).unwrap();
            }
            assert!(
                TcpStream::connect("127.0.0.1:18080").is_err(),
                "the proxy is gone"
            );
            net.remove_network("app").unwrap();
            net.teardown().unwrap();
            assert_eq!(netlink::links(None).unwrap(), vec!["lo".to_string()]);
            let rules = iptables_save();
            assert!(!rules.contains("REFENG"), "{rules}");
            assert!(
                mounts_under(f.dir.path()).is_empty(),
                "{:?}",
                mounts_under(f.dir.path())
            );
        },
    );
}

#[test]
fn bad_networks_are_refused_with_dockerds_errors() {
    in_private_netns("bad_networks_are_refused_with_dockerds_errors", || {
        let f = Fixture::new();
        let net = f.open();
        let bridge = net.get("bridge").unwrap();
        assert_eq!(
            bridge.pool.subnet,
            "10.66.0.0/24".parse::<Subnet>().unwrap(),
            "bip"
        );
        assert_eq!(bridge.pool.gateway, Ipv4Addr::new(10, 66, 0, 1));
        assert!(matches!(
            net.remove_network("bridge"),
            Err(NetworkError::Predefined(_))
        ));
        for name in ["host", "none"] {
            assert!(matches!(
                net.remove_network(name),
                Err(NetworkError::Predefined(_))
            ));
            let err = net
                .connect(&net.netns_path("x"), name, &endpoint("x", "x", &[]))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("connected to {name} network")),
                "{err}"
            );
        }
        assert!(matches!(
            net.create_network(&user_network("host", "10.49.0.0/16")),
            Err(NetworkError::NameTaken(_))
        ));
        let err = net
            .create_network(&user_network("x", "10.0.0.0/33"))
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid CIDR address: 10.0.0.0/33");
        net.create_network(&user_network("one", "10.50.0.0/16"))
            .unwrap();
        let err = net
            .create_network(&user_network("two", "10.50.1.0/24"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Pool overlaps with other one on this address space"
        );
        assert!(matches!(
            net.create_network(&user_network("one", "10.51.0.0/16")),
            Err(NetworkError::NameTaken(_))
        ));
        let mut ipv6 = user_network("v6", "10.52.0.0/16");
        ipv6.enable_ipv6 = true;
        assert!(net
            .create_network(&ipv6)
            .unwrap_err()
            .to_string()
            .contains("EnableIPv6"));
        let mut opt = user_network("opt", "10.53.0.0/16");
        opt.options = Some([("com.example.unknown".to_string(), "1".to_string())].into());
        assert!(net
            .create_network(&opt)
            .unwrap_err()
            .to_string()
            .contains("com.example.unknown"));
        // An automatic subnet avoids the routes of this namespace (10.66.0.0/24 is refeng0's,
        // the first default pool is free here) and the other networks.
        let auto = net
            .create_network(&NetworkCreate {
                name: "auto".into(),
                ..NetworkCreate::default()
            })
            .unwrap();
        assert_eq!(
            net.get(&auto).unwrap().pool.subnet,
            "172.17.0.0/16".parse::<Subnet>().unwrap()
        );
        let internal = net
            .create_network(&NetworkCreate {
                name: "int".into(),
                internal: true,
                options: Some(
                    [(
                        "com.docker.network.bridge.name".to_string(),
                        "refeng-int".to_string(),
                    )]
                    .into(),
                ),
                ..NetworkCreate::default()
            })
            .unwrap();
        assert_eq!(
            net.get(&internal).unwrap().pool.subnet,
            "172.18.0.0/16".parse::<Subnet>().unwrap()
        );
        // The internal network's container has no default route.
        let ns = net.netns_path("iiii");
        net.create_netns(&ns).unwrap();
        let e = net
            .connect(&ns, "int", &endpoint("iiii", "lonely", &[]))
            .unwrap();
        assert_eq!(e.gateway, None);
        let routes = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["ip", "route"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(!routes.contains("default"), "{routes}");
        // Nothing leaves an internal network, not even a forwarded query.
        assert_eq!(
            lookup(&ns, "elsewhere.example", rtype::A).header.rcode(),
            dns::rcode::SERVFAIL
        );
        assert_eq!(a_records(&lookup(&ns, "lonely", rtype::A)), vec![e.ip]);
        assert!(iptables_save().contains("-A REFENG-FORWARD -i refeng-int ! -o refeng-int -j DROP"));
        net.disconnect(&format!("{:0<64}", "iiii"), "int").unwrap();
        net.remove_netns(&ns).unwrap();
        assert_eq!(net.prune().unwrap(), vec!["auto", "int", "one"]);
        net.teardown().unwrap();
        assert_eq!(netlink::links(None).unwrap(), vec!["lo".to_string()]);
    });
}

/// `cat` of the three files inside a dockerd container run with `args`, split.
fn dockerd_files(dockerd: &peers::dockerd::Dockerd, args: &[&str]) -> [String; 3] {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        DIFF_IMAGE,
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo '@@'; cat /etc/hosts; echo '@@'; cat /etc/hostname",
    ]);
    let out = dockerd.docker(&all);
    let parts: Vec<&str> = out.split("@@\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    [
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
    ]
}

const DIFF_IMAGE: &str = "refeng-busybox:net";

/// Compares the shape of two JSON values: the same keys at every level and the same kind of
/// value; `paths` lists where the values must be equal too.
fn same_shape(ours: &serde_json::Value, theirs: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            // Containers and Options/Labels maps are keyed by data, not by schema.
            if !at.ends_with("Containers") && !at.ends_with("Labels") {
                assert_eq!(ka, kb, "keys at {at}");
            }
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    same_shape(v, w, &format!("{at}.{k}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "length at {at}");
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                same_shape(v, w, &format!("{at}[{i}]"));
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "kind at {at}: ours {a}, dockerd's {b}"
        ),
    }
}

fn api_get(dockerd: &peers::dockerd::Dockerd, path: &str) -> serde_json::Value {
    api(dockerd, "GET", path, None)
}

/// A request to dockerd's socket, with `filters` (JSON) URL-encoded when given.
fn api(
    dockerd: &peers::dockerd::Dockerd,
    method: &str,
    path: &str,
    filters: Option<&str>,
) -> serde_json::Value {
    let sock = dockerd.dir().join("docker.sock");
    let mut url = format!("http://docker/v1.41{path}");
    if let Some(f) = filters {
        url.push_str("?filters=");
        url.push_str(&form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>());
    }
    let out = Command::new("curl")
        .args(["-sf", "-X", method, "--unix-socket"])
        .arg(&sock)
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{method} {url}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The names in a network list, sorted.
fn names(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// List filters both daemons are asked with (the `app` network is in use by then).
const LIST_CASES: &[&str] = &[
    r#"{"type":["custom"]}"#,
    r#"{"type":["builtin"]}"#,
    r#"{"name":["ap"]}"#,
    r#"{"name":["^b"]}"#,
    r#"{"label":["tier=web"]}"#,
    r#"{"label":["tier"]}"#,
    r#"{"driver":["bridge"]}"#,
    r#"{"driver":["null"]}"#,
    r#"{"dangling":["true"]}"#,
    r#"{"dangling":["false"]}"#,
    r#"{"scope":["local"]}"#,
];

#[test]
fn files_and_inspect_match_a_private_dockerd() {
    use refeng::engine::network::files::{self, DnsOptions, FileMode};
    in_private_netns("files_and_inspect_match_a_private_dockerd", || {
        // dockerd first, with its default bridge and iptables, in this namespace only.
        let dockerd = peers::dockerd::Dockerd::options()
            .arg("--bridge=")
            .arg("--iptables=true")
            .arg("--ip-masq=true")
            .arg("--bip=10.66.0.1/24")
            .start();
        let work = tempfile::tempdir().unwrap();
        rootfs::busybox(&work.path().join("rootfs"));
        let tar = work.path().join("busybox.tar");
        rootfs::tar(&work.path().join("rootfs"), &tar);
        dockerd.docker(&["import", tar.to_str().unwrap(), DIFF_IMAGE]);
        dockerd.docker(&[
            "network",
            "create",
            "--subnet",
            "10.91.0.0/24",
            "--label",
            "tier=web",
            "app",
        ]);
        dockerd.docker(&[
            "network",
            "create",
            "--subnet",
            "10.92.0.0/16",
            "--ip-range",
            "10.92.5.0/24",
            "--gateway",
            "10.92.0.254",
            "--internal",
            "-o",
            "com.docker.network.bridge.name=brint",
            "int",
        ]);
        let embedded = dockerd_files(
            &dockerd,
            &[
                "--network",
                "app",
                "--ip",
                "10.91.0.7",
                "--hostname",
                "web",
                "--domainname",
                "example.org",
                "--add-host",
                "db:10.1.1.1",
                "--dns-search",
                "corp.example",
                "--dns-option",
                "timeout:2",
            ],
        );
        let plain = dockerd_files(
            &dockerd,
            &[
                "--network",
                "app",
                "--ip",
                "10.91.0.8",
                "--hostname",
                "plain",
            ],
        );
        let bridge = dockerd_files(
            &dockerd,
            &[
                "--network",
                "bridge",
                "--hostname",
                "b",
                "--dns",
                "1.1.1.1",
                "--dns-option",
                "ndots:2",
            ],
        );
        let bridge_default =
            dockerd_files(&dockerd, &["--network", "bridge", "--hostname", "bd.lan"]);
        let none = dockerd_files(
            &dockerd,
            &[
                "--network",
                "none",
                "--hostname",
                "n",
                "--add-host",
                "h:10.2.2.2",
            ],
        );
        let host = dockerd_files(&dockerd, &["--network", "host"]);
        // Network JSON: a user network with a container, an internal one, the default bridge.
        dockerd.docker(&[
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "app",
            "--ip",
            "10.91.0.7",
            DIFF_IMAGE,
            "sleep",
            "60",
        ]);
        let theirs_app = api_get(&dockerd, "/networks/app");
        let theirs_int = api_get(&dockerd, "/networks/int");
        let theirs_bridge = api_get(&dockerd, "/networks/bridge");
        let theirs_list = api_get(&dockerd, "/networks");
        let theirs_host = api_get(&dockerd, "/networks/host");
        let theirs_none = api_get(&dockerd, "/networks/none");
        let theirs_filtered: Vec<Vec<String>> = LIST_CASES
            .iter()
            .map(|f| names(&api(&dockerd, "GET", "/networks", Some(f))))
            .collect();
        let theirs_prune_none = api(
            &dockerd,
            "POST",
            "/networks/prune",
            Some(r#"{"label":["tier=nothing"]}"#),
        );
        dockerd.docker(&["rm", "-f", "c1"]);
        let theirs_prune = api(
            &dockerd,
            "POST",
            "/networks/prune",
            Some(r#"{"label!":["tier=web"]}"#),
        );
        drop(dockerd);

        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap();
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        let dns = |servers: &[&str], search: &[&str], options: &[&str]| DnsOptions {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        let extra = [files::parse_extra_host("db:10.1.1.1", None).unwrap()];
        assert_eq!(
            files::resolv_conf(
                &host_resolv,
                FileMode::Embedded,
                &dns(&[], &["corp.example"], &["timeout:2"])
            )
            .text,
            embedded[0]
        );
        assert_eq!(
            files::hosts_file(
                FileMode::Embedded,
                "",
                ip("10.91.0.7"),
                "web",
                "example.org",
                &extra
            ),
            embedded[1]
        );
        assert_eq!(files::hostname_file("web"), embedded[2]);
        assert_eq!(
            files::resolv_conf(&host_resolv, FileMode::Embedded, &DnsOptions::default()).text,
            plain[0]
        );
        assert_eq!(
            files::hosts_file(FileMode::Embedded, "", ip("10.91.0.8"), "plain", "", &[]),
            plain[1]
        );
        assert_eq!(
            files::resolv_conf(
                &host_resolv,
                FileMode::Private,
                &dns(&["1.1.1.1"], &[], &["ndots:2"])
            )
            .text,
            bridge[0]
        );
        assert_eq!(
            files::hosts_file(FileMode::Private, "", ip("10.66.0.2"), "b", "", &[]),
            bridge[1]
        );
        assert_eq!(
            files::resolv_conf(&host_resolv, FileMode::Private, &DnsOptions::default()).text,
            bridge_default[0]
        );
        assert_eq!(
            files::hosts_file(FileMode::Private, "", ip("10.66.0.2"), "bd.lan", "", &[]),
            bridge_default[1]
        );
        assert_eq!(files::hostname_file("bd.lan"), bridge_default[2]);
        let extra_none = [files::parse_extra_host("h:10.2.2.2", None).unwrap()];
        assert_eq!(
            files::resolv_conf(&host_resolv, FileMode::Private, &DnsOptions::default()).text,
            none[0]
        );
        assert_eq!(
            files::hosts_file(FileMode::Private, "", None, "n", "", &extra_none),
            none[1]
        );
        assert_eq!(
            files::resolv_conf(&host_resolv, FileMode::Host, &DnsOptions::default()).text,
            host[0]
        );
        assert_eq!(
            files::hosts_file(FileMode::Host, &host_hosts, None, "", "", &[]),
            host[1]
        );

        // The same networks here.
        let f = Fixture::new();
        let net = f.open();
        let mut app = user_network("app", "10.91.0.0/24");
        app.labels = Some([("tier".to_string(), "web".to_string())].into());
        net.create_network(&app).unwrap();
        net.create_network(&NetworkCreate {
            name: "int".into(),
            internal: true,
            ipam: Some(IpamRequest {
                config: Some(vec![IpamConfig {
                    subnet: Some("10.92.0.0/16".into()),
                    ip_range: Some("10.92.5.0/24".into()),
                    gateway: Some("10.92.0.254".into()),
                    ..IpamConfig::default()
                }]),
                ..IpamRequest::default()
            }),
            options: Some(
                [(
                    "com.docker.network.bridge.name".to_string(),
                    "brint".to_string(),
                )]
                .into(),
            ),
            ..NetworkCreate::default()
        })
        .unwrap();
        let ns = net.netns_path("c1");
        net.create_netns(&ns).unwrap();
        let mut c1 = endpoint("c1", "c1", &[]);
        c1.ip = ip("10.91.0.7");
        net.connect(&ns, "app", &c1).unwrap();
        let ours_app = net.inspect("app").unwrap();
        let ours_int = net.inspect("int").unwrap();
        let ours_bridge = net.inspect("bridge").unwrap();
        let ours_list = serde_json::Value::Array(net.list());
        let ours_host = net.inspect("host").unwrap();
        let ours_none = net.inspect("none").unwrap();
        let ours_filtered: Vec<Vec<String>> = LIST_CASES
            .iter()
            .map(|f| names(&api::list(&net, &Filters::parse(f).unwrap()).unwrap()))
            .collect();
        let ours_prune_none = api::prune(
            &net,
            &Filters::parse(r#"{"label":["tier=nothing"]}"#).unwrap(),
        )
        .unwrap();
        net.disconnect(&format!("{:0<64}", "c1"), "app").unwrap();
        net.remove_netns(&ns).unwrap();
        let ours_prune =
            api::prune(&net, &Filters::parse(r#"{"label!":["tier=web"]}"#).unwrap()).unwrap();
        net.remove_network("app").unwrap();
        net.teardown().unwrap();

        for (i, f) in LIST_CASES.iter().enumerate() {
            assert_eq!(
                ours_filtered[i], theirs_filtered[i],
                "GET /networks?filters={f}"
            );
        }
        assert_eq!(ours_prune_none, theirs_prune_none);
        assert_eq!(ours_prune, theirs_prune);
        assert_eq!(ours_prune, serde_json::json!({"NetworksDeleted": ["int"]}));
        for (ours, theirs, name) in [
            (&ours_host, &theirs_host, "host"),
            (&ours_none, &theirs_none, "none"),
        ] {
            same_shape(ours, theirs, name);
            let mut a = ours.clone();
            let mut b = theirs.clone();
            for k in ["Id", "Created"] {
                a[k] = serde_json::Value::Null;
                b[k] = serde_json::Value::Null;
            }
            assert_eq!(a, b, "{name}");
        }

        same_shape(&ours_app, &theirs_app, "app");
        same_shape(&ours_int, &theirs_int, "int");
        same_shape(&ours_bridge, &theirs_bridge, "bridge");
        for k in [
            "Scope",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigFrom",
            "ConfigOnly",
            "Options",
            "Labels",
        ] {
            assert_eq!(ours_app[k], theirs_app[k], "app {k}");
            assert_eq!(ours_int[k], theirs_int[k], "int {k}");
        }
        let member = |v: &serde_json::Value| {
            v["Containers"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .cloned()
                .unwrap()
        };
        let (ours_c, theirs_c) = (member(&ours_app), member(&theirs_app));
        for k in ["Name", "MacAddress", "IPv4Address", "IPv6Address"] {
            assert_eq!(ours_c[k], theirs_c[k], "container {k}");
        }
        let mut bridge_opts = theirs_bridge["Options"].clone();
        bridge_opts["com.docker.network.bridge.name"] = "refeng0".into();
        assert_eq!(ours_bridge["Options"], bridge_opts);
        let shape_of = |list: &serde_json::Value, name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|n| n["Name"] == name)
                .cloned()
                .unwrap()
        };
        same_shape(
            &shape_of(&ours_list, "app"),
            &shape_of(&theirs_list, "app"),
            "list.app",
        );
        assert_eq!(
            shape_of(&ours_list, "app")["Containers"],
            shape_of(&theirs_list, "app")["Containers"]
        );
    });
}
