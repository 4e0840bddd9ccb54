//! The real dockerd (Debian's docker.io) runs containers on refeng-runc: dockerd is started in a
//! private root with `--add-runtime refeng=<refeng-runc>`, and `docker run --runtime refeng`
//! is checked for output and exit codes, detach + logs, exec, stop, kill, pause/unpause,
//! enforced --memory and --pids-limit, top, stats, update and a pty.

mod peers;
mod rootfs;

use std::time::Duration;

use peers::dockerd::Dockerd;
use peers::{run, runtime_bin};

const IMAGE: &str = "refeng-busybox:test";

/// `docker run --rm --runtime refeng --network none IMAGE ARGS`: (exit code, stdout + stderr).
fn run_refeng(dockerd: &Dockerd, extra: &[&str], args: &[&str]) -> (i32, String) {
    let mut all = vec!["run", "--rm", "--runtime", "refeng", "--network", "none"];
    all.extend_from_slice(extra);
    all.push(IMAGE);
    all.extend_from_slice(args);
    let out = run(&mut dockerd.command(&all));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn dockerd_runs_containers_on_refeng_runc() {
    let dockerd = Dockerd::options().runtime("refeng", &runtime_bin()).start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    rootfs::busybox(&root);
    let tar = work.path().join("busybox.tar");
    rootfs::tar(&root, &tar);
    dockerd.docker(&["import", tar.to_str().unwrap(), IMAGE]);

    // Output and exit codes.
    let (code, out) = run_refeng(&dockerd, &[], &["echo", "hello from refeng"]);
    assert_eq!((code, out.trim()), (0, "hello from refeng"));
    assert_eq!(run_refeng(&dockerd, &[], &["sh", "-c", "exit 3"]).0, 3);

    // Detached, logs, exec, top, stats, pause/unpause, update, stop.
    let id = dockerd
        .docker(&[
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
    assert!(dockerd.docker(&["logs", &id]).contains("started"));
    assert_eq!(
        dockerd
            .docker(&["exec", &id, "sh", "-c", "echo $((6*7))"])
            .trim(),
        "42"
    );
    assert!(dockerd.docker(&["top", &id]).contains("while true"));
    let stats = dockerd.docker(&["stats", "--no-stream", "--format", "{{.PIDs}}", &id]);
    assert!(
        stats.trim().parse::<u32>().is_ok_and(|n| n >= 1),
        "stats: {stats}"
    );
    dockerd.docker(&["pause", &id]);
    assert_eq!(
        dockerd
            .docker(&["inspect", "-f", "{{.State.Status}}", &id])
            .trim(),
        "paused"
    );
    dockerd.docker(&["unpause", &id]);
    dockerd.docker(&[
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
        dockerd
            .docker(&[
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
    dockerd.docker(&["stop", "-t", "10", &id]);
    assert_eq!(
        dockerd
            .docker(&["inspect", "-f", "{{.State.ExitCode}}", &id])
            .trim(),
        "0"
    );
    assert!(dockerd.docker(&["logs", &id]).contains("got-term"));
    dockerd.docker(&["rm", &id]);

    // kill: SIGKILL gives 137.
    let id = dockerd
        .docker(&[
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
    // A paused one too: dockerd passes the kill through containerd to the runtime, which
    // thaws the cgroup after SIGKILL as runc does (the v1 freezer would keep it pending).
    dockerd.docker(&["pause", &id]);
    dockerd.docker(&["kill", &id]);
    dockerd.docker(&["wait", &id]);
    assert_eq!(
        dockerd
            .docker(&["inspect", "-f", "{{.State.ExitCode}}", &id])
            .trim(),
        "137"
    );
    dockerd.docker(&["rm", &id]);

    // --memory is enforced: a hog is OOM-killed.
    let (code, _) = run_refeng(
        &dockerd,
        &["--memory", "32m", "--memory-swap", "32m"],
        &["sh", "-c", "x=a; while true; do x=$x$x; done"],
    );
    assert_eq!(code, 137);
    // --pids-limit is enforced: forks beyond it fail.
    let (_, out) = run_refeng(
        &dockerd,
        &["--pids-limit", "10"],
        &[
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 5 & done; echo forked",
        ],
    );
    assert!(out.contains("can't fork"), "{out}");

    // -t gives the process a pty.
    let (code, out) = run_refeng(&dockerd, &["-t"], &["sh", "-c", "tty"]);
    assert_eq!(code, 0);
    assert!(out.trim().starts_with("/dev/pts/"), "{out}");
}
