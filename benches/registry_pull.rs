//! Pull of a multi-layer image from Debian's docker-registry on loopback, into a fresh content
//! store with every layer unpacked into overlay snapshots, against `docker pull` of the same
//! image by a real dockerd (overlay2), in one run: `cargo bench --bench registry_pull`. Prints
//! the median of each and the ratio refeng/dockerd.
//!
//! The image is built by dockerd itself (a busybox base and six layers of files, ~6 MiB each, 5 MiB of it incompressible)
//! and pushed with `docker push`, so both pull what a real registry serves. Each round starts
//! empty: refeng into new directories, dockerd after `docker rmi` removed every layer.
//!
//! Measured 2026-11-29 on the 2-core dev machine (load average ~1.5): 7 layers, 31.1 MiB
//! compressed, refeng 890 ms vs docker pull 1436 ms, ratio 0.62 (an earlier run: 1003 vs
//! 1733 ms, 0.58); three downloads at once on both sides, dockerd's default.
//!
//! Needs root, dockerd (docker.io), docker-registry and busybox-static; without them it says so
//! and exits 0. The registry and dockerd are the tests' private ones, stopped by pid.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench reports on stdout

mod multilayer;
#[path = "../tests/peers/mod.rs"]
mod peers;
#[path = "../tests/registry_support/mod.rs"]
mod registry_support;
#[path = "../tests/rootfs/mod.rs"]
mod rootfs;

use std::path::Path;
use std::time::Instant;

use refeng::image::content::{ContentStore, Limits};
use refeng::image::layer::ApplyOptions;
use refeng::image::registry::{Client, ClientConfig, NoProgress, Reference};
use refeng::image::snapshot::{Backend, Snapshotter};

use peers::dockerd::{Dockerd, DOCKER, DOCKERD};
use registry_support::{RegistryServer, REGISTRY_BIN};

/// Rounds under `cargo bench`; `cargo test --all-targets` runs the bench once, as a check.
const ROUNDS: usize = 5;

fn main() {
    if ![DOCKER, DOCKERD, REGISTRY_BIN, rootfs::BUSYBOX]
        .iter()
        .all(|p| Path::new(p).exists())
    {
        println!("registry_pull: SKIPPED (needs docker.io, docker-registry and busybox-static)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = RegistryServer::plain();
    let image = format!("{}/bench/multi:1", registry.host());
    let dockerd = Dockerd::start();
    multilayer::build(&dockerd, work.path(), &image);
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
    let (r, d) = (multilayer::median(refeng_t), multilayer::median(docker_t));
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
