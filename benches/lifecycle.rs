//! Container lifecycle latency of refeng-runc next to crun and runc, on one busybox bundle:
//!
//! - `lifecycle/<runtime>`: `create` + `start` + wait for the process (`/bin/true`) to exit +
//!   `delete`;
//! - `exec/<runtime>`: `exec <id> /bin/true` into a running container, waiting for its exit.
//!
//! refeng-runc is the installed build (`target/x86_64-unknown-linux-musl/runtime/refeng-runc`,
//! made by `benches/build_runtime.sh`; benches/README.md says why) when it exists, else this
//! bench's own build; `REFENG_RUNTIME` names another binary to time in its place. crun and runc
//! come from `PATH` and are left out with a message when missing.
//!
//! crun 1.8 refuses a hybrid cgroup host while cgroup2 is mounted at `/sys/fs/cgroup/unified`.
//! On such a host the bench therefore first moves itself into a mount namespace of its own with
//! that mount removed (what benches/side_by_side.sh does for crun alone), so that every runtime
//! runs in the same view: all three then use the v1 hierarchies only.
//!
//! `cargo bench --bench lifecycle` (as root; skipped with a message otherwise).
// The skip messages are this bench's only output outside criterion's.
#![allow(clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{runtime_bin, Bundle, Container};
use criterion::{criterion_group, Criterion};

/// One runtime under test: its name in the report, binary and state root.
struct Runtime {
    name: String,
    bin: PathBuf,
    root: PathBuf,
}

impl Runtime {
    /// Runs the runtime; panics (failing the bench) if it fails. Its stderr goes to a file, not
    /// a pipe: the container inherits it, and a pipe would stay open until the container is gone.
    fn run(&self, c: &Container, args: &[&str]) {
        let err_path = c.bundle().tmp().join(format!("{}.err", self.name));
        let err = fs::File::create(&err_path).expect("create stderr file");
        let status = Command::new(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .expect("spawn runtime");
        assert!(
            status.success(),
            "{} {args:?}: {}",
            self.name,
            fs::read_to_string(&err_path).unwrap_or_default()
        );
    }
}

/// The refeng-runc binary to time: see the module documentation.
fn refeng_bin() -> PathBuf {
    if std::env::var_os("REFENG_RUNTIME").is_some_and(|v| !v.is_empty()) {
        return runtime_bin();
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/runtime/refeng-runc");
    if installed.exists() {
        installed
    } else {
        eprintln!(
            "lifecycle bench: {} is missing (bash benches/build_runtime.sh); timing the bench's own build",
            installed.display()
        );
        runtime_bin()
    }
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

fn one_lifecycle(rt: &Runtime, c: &Container, id: &str, bundle: &str, pid_file: &Path) {
    let pid_arg = pid_file.to_str().expect("utf-8 path");
    rt.run(
        c,
        &["create", "--bundle", bundle, "--pid-file", pid_arg, id],
    );
    let pid = fs::read_to_string(pid_file).expect("pid file");
    rt.run(c, &["start", id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(pid.trim()) {
        assert!(Instant::now() < deadline, "{id} did not exit");
        std::thread::sleep(Duration::from_micros(200));
    }
    rt.run(c, &["delete", id]);
}

fn runtimes(c: &Container) -> Vec<Runtime> {
    let mut list = vec![("refeng-runc".to_owned(), refeng_bin())];
    for peer in ["crun", "runc"] {
        match which(peer) {
            Some(bin) => list.push((peer.to_owned(), bin)),
            None => eprintln!("lifecycle bench: {peer} not found, left out (bash .ci/setup)"),
        }
    }
    list.into_iter()
        .map(|(name, bin)| {
            let root = c.bundle().tmp().join(format!("state-{name}"));
            Runtime { name, bin, root }
        })
        .collect()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn lifecycle(crit: &mut Criterion) {
    let c = Bundle::new("bench").args(&["/bin/true"]).container();
    let bundle = c.bundle().dir();
    let bundle = bundle.to_str().expect("utf-8 path");
    let pid_file = c.bundle().tmp().join("bench.pid");
    let mut group = crit.benchmark_group("lifecycle");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    let mut n = 0u64;
    for rt in runtimes(&c) {
        group.bench_function(&rt.name, |b| {
            b.iter(|| {
                n += 1;
                // Ids never repeat, so a leftover from a failed iteration cannot collide.
                let id = format!("{}-{n}", c.id());
                one_lifecycle(&rt, &c, black_box(&id), bundle, &pid_file);
            })
        });
    }
    group.finish();
}

/// Deletes the long-running container of the exec bench, also when the bench fails.
struct Running<'a> {
    rt: &'a Runtime,
    id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.rt.bin)
            .arg("--root")
            .arg(&self.rt.root)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn exec(crit: &mut Criterion) {
    let c = Bundle::new("bench-exec")
        .args(&["/bin/sleep", "100000"])
        .container();
    let bundle = c.bundle().dir();
    let bundle = bundle.to_str().expect("utf-8 path");
    let mut group = crit.benchmark_group("exec");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    for rt in runtimes(&c) {
        let running = Running {
            rt: &rt,
            id: format!("{}-{}", c.id(), rt.name),
        };
        rt.run(&c, &["create", "--bundle", bundle, &running.id]);
        rt.run(&c, &["start", &running.id]);
        group.bench_function(&rt.name, |b| {
            b.iter(|| rt.run(&c, &["exec", black_box(&running.id), "/bin/true"]))
        });
    }
    group.finish();
}

/// On a hybrid host, a mount namespace of the bench's own without the cgroup2 mount that crun
/// refuses (see the module documentation). Runs first thing in `main`, while the bench is the
/// only thread (unshare(CLONE_NEWNS) requires that the file system context is not shared).
fn hide_hybrid_unified() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let unified = Path::new("/sys/fs/cgroup/unified");
    let is_cgroup2 = nix::sys::statfs::statfs(unified)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !is_cgroup2 {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    // Slave: nothing the bench's runtimes mount or unmount reaches the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .expect("make / a slave mount");
    umount2(unified, MntFlags::MNT_DETACH).expect("unmount /sys/fs/cgroup/unified");
}

criterion_group!(benches, lifecycle, exec);

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
    hide_hybrid_unified();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
