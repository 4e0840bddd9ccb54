//! The root filesystem every test container and test image is made of: busybox-static with all
//! of its applets and a minimal /etc, laid out in one place so that the suites and the benches
//! agree on what a container finds, and its tarball for the image tests.
// Each test crate uses a different subset of this module.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// busybox-static, where Debian's busybox-static installs it.
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// Lays out a root filesystem in `dir` (made if missing):
/// - `/bin/busybox` and a link to it for every applet it has;
/// - the mount points a container expects (`/proc`, `/sys`, `/dev`, `/run`), `/tmp` (mode 1777),
///   `/root` and `/home/user` (owned by 1000:1000);
/// - `/etc/passwd` and `/etc/group` with `root` and `user` (uid and gid 1000).
///
/// Panics when busybox-static is missing or the directory cannot be written.
pub fn busybox(dir: &Path) {
    for sub in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "run",
    ] {
        fs::create_dir_all(dir.join(sub)).expect("create rootfs dir");
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    std::os::unix::fs::chown(dir.join("home/user"), Some(1000), Some(1000)).expect("chown home");
    let bin = dir.join("bin");
    // Copy in a child process: a copy made here would hold a write descriptor that forks by
    // other test threads inherit until they exec, and executing the file meanwhile fails with
    // ETXTBSY.
    let copied = Command::new("cp")
        .arg(BUSYBOX)
        .arg(bin.join("busybox"))
        .stdin(Stdio::null())
        .status()
        .expect("run cp");
    assert!(
        copied.success(),
        "cannot copy {BUSYBOX} (apt-get install busybox-static)"
    );
    for applet in applets() {
        symlink("busybox", bin.join(applet)).expect("link applet");
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("write passwd");
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nwheel:x:10:root\ntty:x:5:\nuser:x:1000:\n",
    )
    .expect("write group");
}

/// Packs the root filesystem `dir` into the tarball `archive`, paths relative to its root: the
/// form `docker import` and refeng's rootfs import read. Made by GNU tar, not by the code under
/// test.
pub fn tar(dir: &Path, archive: &Path) {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(archive)
        .arg(".")
        .stdin(Stdio::null())
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar of {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The applets busybox-static has, asked once per test process (of the original: executing a
/// fresh copy could race with another thread's fork, as above).
fn applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let list = Command::new(BUSYBOX)
            .arg("--list")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {BUSYBOX} (apt-get install busybox-static): {e}")
            });
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|applet| *applet != "busybox")
            .map(str::to_owned)
            .collect()
    })
}
