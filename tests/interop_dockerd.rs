//! The real dockerd (Debian's docker.io) runs containers on refeng-runc: dockerd is started in a
//! private root with `--add-runtime refeng=<refeng-runc>`, and `docker run --runtime refeng`
//! is checked for output and exit codes, detach + logs, exec, stop, kill, pause/unpause,
//! enforced --memory and --pids-limit, top, stats, update and a pty.

mod peers;
mod rootfs;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use peers::{ok, require, run, runtime_bin, scratch, wait_for_path, Daemon};

const IMAGE: &str = "refeng-busybox:test";

struct Docker<'a> {
    socket: &'a Path,
}

impl Docker<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(require("docker"));
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        ok(&mut self.cmd(args))
    }
    /// `docker run --rm --runtime refeng --network none IMAGE ARGS`: (exit code, stdout).
    fn run(&self, extra: &[&str], args: &[&str]) -> (i32, String) {
        let mut all = vec!["run", "--rm", "--runtime", "refeng", "--network", "none"];
        all.extend_from_slice(extra);
        all.push(IMAGE);
        all.extend_from_slice(args);
        let out = run(&mut self.cmd(&all));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

#[test]
fn dockerd_runs_containers_on_refeng_runc() {
    let dockerd = require("dockerd");
    let dir = scratch("dockerd");
    let cgroup_parent = format!("/refeng-test-docker-{}", std::process::id());
    let socket = dir.join("docker.sock");
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    let child = Command::new(dockerd)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
        .arg(format!("--cgroup-parent={cgroup_parent}"))
        .arg(format!("--add-runtime=refeng={}", runtime_bin().display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd");
    let _daemon = Daemon {
        child: Some(child),
        dir: dir.clone(),
        cgroup_parent: Some(cgroup_parent),
    };
    wait_for_path(&socket, Duration::from_secs(60));
    let docker = Docker { socket: &socket };
    // The daemon answers once its API is up.
    for _ in 0..100 {
        if run(&mut docker.cmd(&["version"])).status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let rootfs = dir.join("rootfs");
    rootfs::busybox(&rootfs);
    let tar = dir.join("busybox.tar");
    rootfs::tar(&rootfs, &tar);
    docker.ok(&["import", tar.to_str().unwrap(), IMAGE]);

    // Output and exit codes.
    let (code, out) = docker.run(&[], &["echo", "hello from refeng"]);
    assert_eq!((code, out.trim()), (0, "hello from refeng"));
    assert_eq!(docker.run(&[], &["sh", "-c", "exit 3"]).0, 3);

    // Detached, logs, exec, top, stats, pause/unpause, update, stop.
    let id = docker
        .ok(&[
            "run",
            "-d",
            "--runtime",
            "refeng",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "echo started; trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert!(docker.ok(&["logs", &id]).contains("started"));
    assert_eq!(
        docker
            .ok(&["exec", &id, "sh", "-c", "echo $((6*7))"])
            .trim(),
        "42"
    );
    assert!(docker.ok(&["top", &id]).contains("while true"));
    let stats = docker.ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", &id]);
    assert!(
        stats.trim().parse::<u32>().is_ok_and(|n| n >= 1),
        "stats: {stats}"
    );
    docker.ok(&["pause", &id]);
    assert_eq!(
        docker
            .ok(&["inspect", "-f", "{{.State.Status}}", &id])
            .trim(),
        "paused"
    );
    docker.ok(&["unpause", &id]);
    docker.ok(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "50",
        &id,
    ]);
    assert_eq!(
        docker
            .ok(&[
                "exec",
                &id,
                "cat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/pids/pids.max"
            ])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["67108864", "50"]
    );
    docker.ok(&["stop", "-t", "10", &id]);
    assert_eq!(
        docker
            .ok(&["inspect", "-f", "{{.State.ExitCode}}", &id])
            .trim(),
        "0"
    );
    assert!(docker.ok(&["logs", &id]).contains("got-term"));
    docker.ok(&["rm", &id]);

    // kill: SIGKILL gives 137.
    let id = docker
        .ok(&[
            "run",
            "-d",
            "--runtime",
            "refeng",
            "--network",
            "none",
            IMAGE,
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    docker.ok(&["kill", &id]);
    docker.ok(&["wait", &id]);
    assert_eq!(
        docker
            .ok(&["inspect", "-f", "{{.State.ExitCode}}", &id])
            .trim(),
        "137"
    );
    docker.ok(&["rm", &id]);

    // --memory is enforced: a hog is OOM-killed.
    let (code, _) = docker.run(
        &["--memory", "32m", "--memory-swap", "32m"],
        &["sh", "-c", "x=a; while true; do x=$x$x; done"],
    );
    assert_eq!(code, 137);
    // --pids-limit is enforced: forks beyond it fail.
    let (_, out) = docker.run(
        &["--pids-limit", "10"],
        &[
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 5 & done; echo forked",
        ],
    );
    assert!(out.contains("can't fork"), "{out}");

    // -t gives the process a pty.
    let (code, out) = docker.run(&["-t"], &["sh", "-c", "tty"]);
    assert_eq!(code, 0);
    assert!(out.trim().starts_with("/dev/pts/"), "{out}");
}
