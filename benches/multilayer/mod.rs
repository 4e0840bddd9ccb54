//! The multi-layer image both image benches measure: a busybox base imported into dockerd and
//! six `COPY` layers of ~6 MiB each (300 small patterned files and 5 MiB of incompressible
//! bytes), built by dockerd itself so that it is an image as docker makes them.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::peers::dockerd::Dockerd;
use crate::rootfs;

/// Layers on top of the base.
pub const LAYERS: usize = 6;

/// The build context of layer `n`.
fn context(dir: &Path, n: usize) {
    fs::create_dir_all(dir.join(format!("l{n}"))).unwrap();
    for i in 0..300 {
        let data: Vec<u8> = (0..4096u32)
            .map(|j| (j.wrapping_mul(31).wrapping_add((i * 7 + n) as u32) % 251) as u8)
            .collect();
        fs::write(dir.join(format!("l{n}/f{i}")), data).unwrap();
    }
    // xorshift: incompressible, so registries and archives carry ~5 MiB per layer.
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

/// Builds the image as `tag` in `dockerd`, using `work` for the rootfs and the context.
pub fn build(dockerd: &Dockerd, work: &Path, tag: &str) {
    let base = work.join("rootfs");
    rootfs::busybox(&base);
    let tar = work.join("rootfs.tar");
    rootfs::tar(&base, &tar);
    let ctx = work.join("ctx");
    let mut dockerfile = String::from("FROM bench/base:1\n");
    for n in 0..LAYERS {
        context(&ctx, n);
        dockerfile.push_str(&format!("COPY l{n} /data/l{n}\n"));
    }
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    dockerd.docker(&["import", &tar.display().to_string(), "bench/base:1"]);
    dockerd.docker(&["build", "-q", "-t", tag, &ctx.display().to_string()]);
    dockerd.docker(&["rmi", "bench/base:1"]);
}

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
