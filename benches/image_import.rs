//! Import + unpack of a multi-layer `docker save` archive into refeng's content store and
//! overlay snapshots, against `docker load` of the same archive on a real dockerd (overlay2), in
//! one run: `cargo bench --bench image_import`. Prints the median of each and the ratio.
//!
//! Measured 2026-11-29 on the 2-core dev machine (load average ~1.5): 7 layers, 40.0 MiB,
//! refeng 896 ms vs docker load 1336 ms, ratio 0.67 (an earlier run on a machine loaded to ~9
//! gave 1.11). refeng writes each layer twice (the blob into the content store, then the
//! unpacked snapshot) where dockerd keeps only the unpacked layer.
//!
//! Needs root, dockerd (Debian: docker.io) and /usr/bin/busybox (busybox-static); without them
//! it says so and exits 0. The dockerd it starts is the tests' private one (tests/peers/dockerd.rs):
//! temporary directories, stopped by pid and cleaned up, also when the bench panics.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench reports on stdout

mod multilayer;
#[path = "../tests/peers/mod.rs"]
mod peers;
#[path = "../tests/rootfs/mod.rs"]
mod rootfs;

use std::fs;
use std::path::Path;
use std::time::Instant;

use refeng::image::content::{ContentStore, Limits};
use refeng::image::format::PlatformWanted;
use refeng::image::layer::ApplyOptions;
use refeng::image::snapshot::{Backend, Snapshotter};
use refeng::image::{archive, unpack};

use peers::dockerd::{Dockerd, DOCKER, DOCKERD};

const ROUNDS: usize = 5;

fn main() {
    if ![DOCKER, DOCKERD, rootfs::BUSYBOX]
        .iter()
        .all(|p| Path::new(p).exists())
    {
        println!("image_import: SKIPPED (needs docker.io and busybox-static)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = |s: &str| work.path().join(s).display().to_string();
    let dockerd = Dockerd::start();
    multilayer::build(&dockerd, work.path(), "bench/multi:1");
    dockerd.docker(&["save", "-o", &w("save.tar"), "bench/multi:1"]);
    let size = fs::metadata(w("save.tar")).unwrap().len();
    println!(
        "image_import: {} layers, archive {:.1} MiB, {ROUNDS} rounds each",
        multilayer::LAYERS + 1,
        size as f64 / f64::from(1 << 20)
    );

    let mut refeng_t = Vec::new();
    let mut docker_t = Vec::new();
    for _ in 0..ROUNDS {
        let store_dir = tempfile::Builder::new()
            .prefix("refeng-bench-store")
            .tempdir_in("/tmp")
            .unwrap();
        let start = Instant::now();
        let content = ContentStore::open(store_dir.path().join("c"), Limits::default()).unwrap();
        let snaps = Snapshotter::open(store_dir.path().join("s"), Backend::Overlay).unwrap();
        let imported =
            archive::import_tar(&content, fs::File::open(w("save.tar")).unwrap()).unwrap();
        let r = unpack::resolve(&content, &imported[0].target, &PlatformWanted::host()).unwrap();
        unpack::unpack(&content, &snaps, &r, &ApplyOptions::default()).unwrap();
        refeng_t.push(start.elapsed());
        drop(store_dir);

        dockerd.docker(&["rmi", "bench/multi:1"]);
        let start = Instant::now();
        dockerd.docker(&["load", "-q", "-i", &w("save.tar")]);
        docker_t.push(start.elapsed());
    }
    let (r, d) = (multilayer::median(refeng_t), multilayer::median(docker_t));
    println!(
        "refeng import+unpack: median {:>8.1} ms",
        r.as_secs_f64() * 1e3
    );
    println!(
        "docker load (dockerd): median {:>8.1} ms",
        d.as_secs_f64() * 1e3
    );
    println!(
        "ratio refeng/docker: {:.2}",
        r.as_secs_f64() / d.as_secs_f64()
    );
}
