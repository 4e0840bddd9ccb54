//! The README's first command, `.ci/demo`, end to end: it installs refeng's programs into a
//! prefix (here the debug builds cargo made for this test, by `.ci/install --from`), starts
//! refengd, loads the busybox image it makes from busybox-static, runs `refeng run --rm busybox
//! echo hello` and shows `refeng ps -a` and `refeng images`. The test checks what it prints and
//! that it leaves nothing behind: no daemon, no mount and no directory of its own.

use std::path::Path;
use std::process::Command;

const REFENG: &str = env!("CARGO_BIN_EXE_refeng");

fn mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_demo_runs_hello_in_busybox_and_leaves_nothing_behind() {
    let built = Path::new(REFENG).parent().unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("refeng-main-job-")
        .tempdir_in("/tmp")
        .unwrap();
    let prefix = scratch.path().join("prefix");
    let root = scratch.path().join("demo");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    let out = Command::new("bash")
        .arg(repo.join(".ci/demo"))
        .env("REFENG_PREFIX", &prefix)
        .env("REFENG_INSTALL_ARGS", format!("--from {}", built.display()))
        .env("REFENG_DEMO_ROOT", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let both = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "the demo failed ({}):\n{both}",
        out.status
    );

    // Installed beside each other, where refengd and refeng-containerd look for one another.
    for program in [
        "refeng",
        "refengd",
        "refeng-containerd",
        "refeng-runc",
        "containerd-shim-refeng-v2",
        "refeng-shim",
    ] {
        assert!(
            prefix.join("bin").join(program).is_file(),
            "{program} not installed:\n{both}"
        );
    }

    let lines: Vec<&str> = stdout.lines().collect();
    let after = |cmd: &str| {
        let at = lines
            .iter()
            .position(|l| *l == format!("$ refeng {cmd}"))
            .unwrap_or_else(|| panic!("`refeng {cmd}` not shown:\n{both}"));
        &lines[at + 1..]
    };
    let load = lines
        .iter()
        .position(|l| l.starts_with("$ refeng load -i "))
        .unwrap_or_else(|| panic!("`refeng load` not shown:\n{both}"));
    assert_eq!(lines[load + 1], "Loaded image: busybox:latest", "{both}");
    assert_eq!(after("run --rm busybox echo hello")[0], "hello", "{both}");
    // `ps -a` after the --rm container is gone: the header alone.
    let ps = after("ps -a");
    assert!(ps[0].starts_with("CONTAINER ID   IMAGE"), "{both}");
    assert!(
        ps[1].starts_with("$ refeng images"),
        "the removed container is listed:\n{both}"
    );
    let images = after("images");
    assert!(images[0].starts_with("REPOSITORY   TAG"), "{both}");
    let busybox: Vec<&str> = images[1].split_whitespace().collect();
    assert_eq!(&busybox[..2], ["busybox", "latest"], "{both}");
    assert_eq!(lines.last(), Some(&"demo: done"), "{both}");

    // Nothing of the demo's is left: its directory, its mounts, its daemons.
    assert!(!root.exists(), "the demo left {}:\n{both}", root.display());
    assert!(
        mounts_below(&root).is_empty(),
        "mounts left: {:?}",
        mounts_below(&root)
    );
    let mentions: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&*root.to_string_lossy()))
        .collect();
    assert!(mentions.is_empty(), "processes left: {mentions:?}");
}
