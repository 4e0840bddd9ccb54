//! The network layer's costs, inside a network and mount namespace of the bench's own (it
//! re-executes itself under `unshare --net --mount`, as tests/engine_network.rs does, so the
//! host's network is never touched):
//!
//! - `network/connect_disconnect`: a namespace made, connected to a user bridge (address, veth
//!   pair, addresses, route, resolver), disconnected and removed: the network part of a
//!   container's start and removal;
//! - `network/dns_name`: one A query for a container name to the embedded resolver, from
//!   inside a container's namespace;
//! - `network/tcp_direct` and `network/tcp_loopback_proxy`: a 64 KiB request-response
//!   exchange with a server inside a container, directly over the bridge and through the
//!   published port's loopback proxy.
//!
//! `cargo bench --bench network` (as root).
#![allow(clippy::print_stderr)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use criterion::Criterion;
use refeng::engine::network::dns::{self, rtype};
use refeng::engine::network::ports::{PortRequest, Protocol};
use refeng::engine::network::{
    netlink, EndpointOptions, IpamConfig, IpamRequest, NetworkConfig, NetworkController,
    NetworkCreate,
};

const INNER: &str = "REFENG_NETWORK_BENCH_INNER";
const PAYLOAD: usize = 64 * 1024;

fn endpoint(id: &str, name: &str) -> EndpointOptions {
    EndpointOptions {
        container_id: format!("{id:0<64}"),
        container_name: name.into(),
        ..EndpointOptions::default()
    }
}

/// A server inside the namespace: reads PAYLOAD bytes, answers with them.
fn echo_server(netns: &std::path::Path, port: u16) {
    let netns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netlink::enter(&netns).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; PAYLOAD];
                while c.read_exact(&mut buf).is_ok() {
                    if c.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv().unwrap();
}

fn exchange(c: &mut TcpStream, buf: &mut [u8]) {
    c.write_all(buf).unwrap();
    c.read_exact(buf).unwrap();
}

fn inner() {
    assert!(Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resolv.conf"), "nameserver 10.77.0.53\n").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = NetworkConfig::new(
        &dir.path().join("data"),
        &dir.path().join("exec"),
        Some("10.66.0.1/24".parse().unwrap()),
        None,
    );
    cfg.host_resolv_conf = dir.path().join("resolv.conf");
    let net = NetworkController::open(cfg, rt.handle().clone()).unwrap();
    net.create_network(&NetworkCreate {
        name: "bench".into(),
        ipam: Some(IpamRequest {
            config: Some(vec![IpamConfig {
                subnet: Some("10.124.0.0/16".into()),
                ..IpamConfig::default()
            }]),
            ..IpamRequest::default()
        }),
        ..NetworkCreate::default()
    })
    .unwrap();
    let server = net.netns_path("server");
    net.create_netns(&server).unwrap();
    let mut sopts = endpoint("server", "server");
    sopts.ports = vec![PortRequest {
        protocol: Protocol::Tcp,
        container_port: 9000,
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_ports: (0, 0),
    }];
    let se = net.connect(&server, "bench", &sopts).unwrap();
    echo_server(&server, 9000);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("network");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("connect_disconnect", |b| {
        let ns = net.netns_path("client");
        b.iter(|| {
            net.create_netns(&ns).unwrap();
            black_box(
                net.connect(&ns, "bench", &endpoint("client", "client"))
                    .unwrap(),
            );
            net.disconnect(&format!("{:0<64}", "client"), "bench")
                .unwrap();
            net.remove_netns(&ns).unwrap();
        })
    });
    g.bench_function("dns_name", |b| {
        let ns = server.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The querying socket lives in the container's namespace.
        std::thread::spawn(move || {
            netlink::enter(&ns).unwrap();
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect("127.0.0.11:53").unwrap();
            let q = dns::query(1, "server", rtype::A);
            let mut buf = [0u8; 512];
            while rx.recv().is_ok() {
                s.send(&q).unwrap();
                s.recv(&mut buf).unwrap();
                done_tx.send(()).unwrap();
            }
        });
        b.iter(|| {
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
        })
    });
    let mut buf = vec![7u8; PAYLOAD];
    g.bench_function("tcp_direct", |b| {
        let mut c = TcpStream::connect((se.ip, 9000)).unwrap();
        b.iter(|| exchange(&mut c, &mut buf))
    });
    g.bench_function("tcp_loopback_proxy", |b| {
        let mut c = TcpStream::connect(("127.0.0.1", se.ports[0].host_port)).unwrap();
        b.iter(|| exchange(&mut c, &mut buf))
    });
    g.finish();
    c.final_summary();
    net.disconnect(&format!("{:0<64}", "server"), "bench")
        .unwrap();
    net.remove_netns(&server).unwrap();
    net.remove_network("bench").unwrap();
    net.teardown().unwrap();
}

fn main() {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("network bench: needs root (network namespaces); skipped");
        return;
    }
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(INNER, "1")
        .status()
        .expect("run unshare");
    assert!(status.success(), "the bench failed inside its namespace");
}
