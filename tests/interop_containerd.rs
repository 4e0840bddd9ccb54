//! The real containerd (Debian's 1.6) runs containers with refeng-runc as the runc binary of its
//! own runc shim (`ctr run --runc-binary`): run with output, detached run, exec, kill, delete, and
//! a containerd restart while the container runs (the shim keeps it; exec still works after).

mod peers;
mod rootfs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use peers::{ok, require, run, runtime_bin, scratch, wait_for_path, Daemon};

fn start_containerd(dir: &Path) -> Child {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("containerd.sock"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .unwrap();
    let child = Command::new(require("containerd"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd");
    wait_for_path(&dir.join("containerd.sock"), Duration::from_secs(30));
    child
}

struct Ctr {
    socket: PathBuf,
}

impl Ctr {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(require("ctr"));
        c.arg("-a").arg(&self.socket).args(args);
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        ok(&mut self.cmd(args))
    }
    fn task_status(&self, id: &str) -> Option<String> {
        self.ok(&["task", "ls"]).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    }
}

#[test]
fn containerd_runs_containers_with_refeng_runc_as_its_runc() {
    let dir = scratch("containerd");
    let mut daemon = Daemon {
        child: Some(start_containerd(&dir)),
        dir: dir.clone(),
        cgroup_parent: Some(format!("/refeng-test-ctr-{}", std::process::id())),
    };
    let ctr = Ctr {
        socket: dir.join("containerd.sock"),
    };
    let rootfs = dir.join("rootfs");
    rootfs::busybox(&rootfs);
    let runc = runtime_bin();
    let (runc, rootfs) = (runc.to_str().unwrap(), rootfs.to_str().unwrap());
    // ctr creates cgroups below /<namespace>/<id> by default: keep them ours.
    let cgroup = |id: &str| format!("/refeng-test-ctr-{}/{id}", std::process::id());

    let out = ctr.ok(&[
        "run",
        "--rm",
        "--runc-binary",
        runc,
        "--cgroup",
        &cgroup("c1"),
        "--rootfs",
        rootfs,
        "c1",
        "sh",
        "-c",
        "echo hello from refeng; exit 0",
    ]);
    assert_eq!(out.trim(), "hello from refeng");

    ctr.ok(&[
        "run",
        "-d",
        "--runc-binary",
        runc,
        "--cgroup",
        &cgroup("c2"),
        "--rootfs",
        rootfs,
        "c2",
        "sh",
        "-c",
        "while true; do sleep 0.1; done",
    ]);
    assert_eq!(ctr.task_status("c2").as_deref(), Some("RUNNING"));
    let out = ctr.ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo $((6*7))",
    ]);
    assert_eq!(out.trim(), "42");

    // containerd goes away and comes back: the shim and the container stay.
    daemon.stop();
    daemon.child = Some(start_containerd(&dir));
    assert_eq!(ctr.task_status("c2").as_deref(), Some("RUNNING"));
    let out = ctr.ok(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "c2",
        "echo",
        "after restart",
    ]);
    assert_eq!(out.trim(), "after restart");

    ctr.ok(&["task", "kill", "-s", "KILL", "c2"]);
    for _ in 0..100 {
        if ctr.task_status("c2").as_deref() == Some("STOPPED") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ctr.task_status("c2").as_deref(), Some("STOPPED"));
    ctr.ok(&["task", "delete", "c2"]);
    ctr.ok(&["container", "delete", "c2"]);
    assert_eq!(ctr.task_status("c2"), None);
    let leftovers = run(&mut ctr.cmd(&["container", "ls", "-q"]));
    assert!(String::from_utf8_lossy(&leftovers.stdout).trim().is_empty());
}
