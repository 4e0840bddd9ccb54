//! Pull of a multi-layer image from Debian's docker-registry on loopback, into a fresh content
//! store with every layer unpacked into overlay snapshots, against `docker pull` of the same
//! image by a real dockerd (overlay2), in one run: `cargo bench --bench registry_pull`. Prints
//! the median of each and the ratio refeng/dockerd.
//!
//! The image is built by dockerd itself (a busybox base and six layers of files, ~6 MiB each, 5 MiB of it incompressible)
//! and pushed with `docker push`, so both pull what a real registry serves. Each round starts
//! empty: refeng into new directories, dockerd after `docker rmi` removed every layer.
//!
//! Measured 2026-11-29 on the 2-core dev machine (load average ~1): 7 layers, 31.1 MiB
//! compressed, refeng 1003 ms vs docker pull 1733 ms, ratio 0.58 (three downloads at once on
//! both sides; dockerd's default).
//!
//! Needs root, dockerd (docker.io), docker-registry and busybox-static; without them it says so
//! and exits 0. The registry and dockerd are the tests' private ones, stopped by pid.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench reports on stdout

#[path = "../tests/peers/mod.rs"]
mod peers;
#[path = "../tests/registry_support/mod.rs"]
mod registry_support;
#[path = "../tests/rootfs/mod.rs"]
mod rootfs;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use refeng::image::content::{ContentStore, Limits};
use refeng::image::layer::ApplyOptions;
use refeng::image::registry::{Client, ClientConfig, NoProgress, Reference};
use refeng::image::snapshot::{Backend, Snapshotter};

use peers::dockerd::{Dockerd, DOCKER, DOCKERD};
use registry_support::{RegistryServer, REGISTRY_BIN};

/// Rounds under `cargo bench`; `cargo test --all-targets` runs the bench once, as a check.
const ROUNDS: usize = 5;
const LAYERS: usize = 6;

/// A build context for layer `n`: many small files and one larger one, ~6 MiB per layer.
fn context(dir: &Path, n: usize) {
    fs::create_dir_all(dir.join(format!("l{n}"))).unwrap();
    for i in 0..300 {
        let data: Vec<u8> = (0..4096u32)
            .map(|j| (j.wrapping_mul(31).wrapping_add((i * 7 + n) as u32) % 251) as u8)
            .collect();
        fs::write(dir.join(format!("l{n}/f{i}")), data).unwrap();
    }
    // Incompressible, so the registry serves ~5 MiB per layer, not a few KiB of gzip.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ n as u64;
    let big: Vec<u8> = (0..(5usize << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join(format!("l{n}/big")), big).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if ![DOCKER, DOCKERD, REGISTRY_BIN, rootfs::BUSYBOX]
        .iter()
        .all(|p| Path::new(p).exists())
    {
        println!("registry_pull: SKIPPED (needs docker.io, docker-registry and busybox-static)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = |s: &str| work.path().join(s).display().to_string();
    let base = work.path().join("rootfs");
    rootfs::busybox(&base);
    rootfs::tar(&base, Path::new(&w("rootfs.tar")));
    let ctx = work.path().join("ctx");
    let mut dockerfile = String::from("FROM bench/base:1\n");
    for n in 0..LAYERS {
        context(&ctx, n);
        dockerfile.push_str(&format!("COPY l{n} /data/l{n}\n"));
    }
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();

    let registry = RegistryServer::plain();
    let image = format!("{}/bench/multi:1", registry.host());
    let dockerd = Dockerd::start();
    dockerd.docker(&["import", &w("rootfs.tar"), "bench/base:1"]);
    dockerd.docker(&["build", "-q", "-t", &image, &ctx.display().to_string()]);
    dockerd.docker(&["rmi", "bench/base:1"]);
    dockerd.docker(&["push", &image]);
    dockerd.docker(&["rmi", &image]);
    let client = Client::new(ClientConfig::default());
    let reference = Reference::parse(&image).unwrap();

    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        1
    };
    let mut refeng_t = Vec::new();
    let mut docker_t = Vec::new();
    let mut layers = 0;
    let mut bytes = 0;
    for _ in 0..rounds {
        let store_dir = tempfile::Builder::new()
            .prefix("refeng-bench-store")
            .tempdir_in("/tmp")
            .unwrap();
        let start = Instant::now();
        let content = ContentStore::open(store_dir.path().join("c"), Limits::default()).unwrap();
        let snaps = Snapshotter::open(store_dir.path().join("s"), Backend::Overlay).unwrap();
        let pulled = client
            .pull(
                &reference,
                &content,
                Some((&snaps, &ApplyOptions::default())),
                &NoProgress,
            )
            .unwrap();
        refeng_t.push(start.elapsed());
        layers = pulled.resolved.layers.len();
        bytes = pulled
            .resolved
            .layers
            .iter()
            .map(|l| content.info(l).unwrap().size)
            .sum::<u64>();
        drop(store_dir);

        let start = Instant::now();
        dockerd.docker(&["pull", "-q", &image]);
        docker_t.push(start.elapsed());
        dockerd.docker(&["rmi", &image]);
    }
    println!(
        "registry_pull: {layers} layers, {:.1} MiB compressed, {rounds} rounds each",
        bytes as f64 / f64::from(1 << 20)
    );
    let (r, d) = (median(refeng_t), median(docker_t));
    println!(
        "refeng pull+unpack:   median {:>8.1} ms",
        r.as_secs_f64() * 1e3
    );
    println!(
        "docker pull (dockerd): median {:>8.1} ms",
        d.as_secs_f64() * 1e3
    );
    println!(
        "ratio refeng/docker: {:.2}",
        r.as_secs_f64() / d.as_secs_f64()
    );
}
