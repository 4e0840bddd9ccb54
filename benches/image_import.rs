//! Import + unpack of a multi-layer `docker save` archive into refeng's content store and
//! overlay snapshots, against `docker load` of the same archive on a real dockerd (overlay2), in
//! one run: `cargo bench --bench image_import`. Prints the median of each and the ratio.
//!
//! Measured 2026-11-29 on the 2-core shared dev machine (load average ~9): 7 layers, 39.8 MiB,
//! refeng 2158 ms vs docker load 1943 ms, ratio 1.11. refeng writes each layer twice (the blob
//! into the content store, then the unpacked snapshot) where dockerd keeps only the unpacked
//! layer.
//!
//! Needs root, dockerd (Debian: docker.io) and /usr/bin/busybox (busybox-static); without them
//! it says so and exits 0. The dockerd it starts is the tests' private one (tests/peers/dockerd.rs):
//! temporary directories, stopped by pid and cleaned up, also when the bench panics.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench reports on stdout

#[path = "../tests/peers/mod.rs"]
mod peers;
#[path = "../tests/rootfs/mod.rs"]
mod rootfs;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use refeng::image::content::{ContentStore, Limits};
use refeng::image::format::PlatformWanted;
use refeng::image::layer::ApplyOptions;
use refeng::image::snapshot::{Backend, Snapshotter};
use refeng::image::{archive, unpack};

use peers::dockerd::{Dockerd, DOCKER, DOCKERD};

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
    let big: Vec<u8> = (0..(5u32 << 20))
        .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(n as u32) >> 24) as u8)
        .collect();
    fs::write(dir.join(format!("l{n}/big")), big).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

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
    // base layer: busybox rootfs
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

    let dockerd = Dockerd::start();
    dockerd.docker(&["import", &w("rootfs.tar"), "bench/base:1"]);
    dockerd.docker(&[
        "build",
        "-q",
        "-t",
        "bench/multi:1",
        &ctx.display().to_string(),
    ]);
    dockerd.docker(&["rmi", "bench/base:1"]);
    dockerd.docker(&["save", "-o", &w("save.tar"), "bench/multi:1"]);
    let size = fs::metadata(w("save.tar")).unwrap().len();
    println!(
        "image_import: {} layers, archive {:.1} MiB, {ROUNDS} rounds each",
        LAYERS + 1,
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
    let (r, d) = (median(refeng_t), median(docker_t));
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
