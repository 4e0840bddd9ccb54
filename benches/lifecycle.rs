//! Times one container lifecycle with the runtime binary: `create` + `start` + wait for the
//! process (`/bin/true`) to exit + `delete`, on a busybox bundle. Runs refeng-runc unless
//! `REFENG_RUNTIME` names another runtime (e.g. `/usr/sbin/runc`) for comparison.
//!
//! `cargo bench --bench lifecycle` (as root; skipped with a message otherwise).
// The skip message is this bench's only output outside criterion's.
#![allow(clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{runtime_bin, Bundle, Container};
use criterion::{criterion_group, Criterion};

/// Runs the runtime; panics (failing the bench) if it fails. Its stderr goes to a file, not a
/// pipe: the container inherits it, and a pipe would stay open until the container is gone.
fn runtime(c: &Container, args: &[&str]) {
    let err_path = c.bundle().tmp().join("bench.err");
    let err = fs::File::create(&err_path).expect("create stderr file");
    let status = c
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .expect("spawn runtime");
    assert!(
        status.success(),
        "{args:?}: {}",
        fs::read_to_string(&err_path).unwrap_or_default()
    );
}

/// Whether `pid` has exited: gone, or a zombie waiting for whoever adopted it.
fn exited(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        }
    }
}

fn one_lifecycle(c: &Container, id: &str, bundle: &str, pid_file: &Path) {
    let pid_arg = pid_file.to_str().expect("utf-8 path");
    runtime(
        c,
        &["create", "--bundle", bundle, "--pid-file", pid_arg, id],
    );
    let pid = fs::read_to_string(pid_file).expect("pid file");
    runtime(c, &["start", id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(pid.trim()) {
        assert!(Instant::now() < deadline, "{id} did not exit");
        std::thread::sleep(Duration::from_micros(200));
    }
    runtime(c, &["delete", id]);
}

fn lifecycle(crit: &mut Criterion) {
    let c = Bundle::new("bench").args(&["/bin/true"]).container();
    let bundle = c.bundle().dir();
    let bundle = bundle.to_str().expect("utf-8 path");
    let pid_file = c.bundle().tmp().join("bench.pid");
    let name = runtime_bin()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut group = crit.benchmark_group("lifecycle");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    let mut n = 0u64;
    group.bench_function(format!("{name}: create+start+wait+delete /bin/true"), |b| {
        b.iter(|| {
            n += 1;
            // Ids never repeat, so a leftover from a failed iteration cannot collide.
            let id = format!("{}-{n}", c.id());
            one_lifecycle(&c, black_box(&id), bundle, &pid_file);
        })
    });
    group.finish();
}

criterion_group!(benches, lifecycle);

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("lifecycle bench skipped: it builds real containers and needs root");
        return;
    }
    if !Path::new(common::rootfs::BUSYBOX).exists() {
        eprintln!(
            "lifecycle bench skipped: {} is missing (apt-get install busybox-static)",
            common::rootfs::BUSYBOX
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
