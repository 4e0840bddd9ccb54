//! The guest agent, PID 1 after `/init` switched to the host's root: mounts what a host has
//! (proc, sys, dev, tmpfs, cgroups in the asked layout), runs the suites while reaping every
//! orphan (container processes reparent to PID 1), reports through isa-debug-exit.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::plan::{exit, CgroupMode, Outcome, Plan, SuiteOutcome};

/// Controllers every v2 guest must enable in the root's `cgroup.subtree_control`.
const REQUIRED_V2: &[&str] = &["cpu", "memory", "pids", "io", "cpuset"];

/// v1 controllers that systemd mounts together, as on the hybrid host.
const V1_COMOUNTS: &[&[&str]] = &[&["cpu", "cpuacct"], &["net_cls", "net_prio"]];

/// Runs the plan at `plan_path` and powers the guest off with the result. Never returns.
pub fn main(plan_path: &Path) -> ! {
    let value = match run(plan_path) {
        Ok(true) => exit::PASSED,
        Ok(false) => exit::FAILED,
        Err(e) => {
            eprintln!("vm-tests guest: setup failed: {e:#}");
            exit::SETUP_FAILED
        }
    };
    nix::unistd::sync();
    report(value)
}

fn report(value: u8) -> ! {
    let written = fs::OpenOptions::new()
        .write(true)
        .open("/dev/port")
        .and_then(|port| port.write_at(&[value], 0xf4));
    if let Err(e) = written {
        eprintln!("vm-tests guest: cannot write isa-debug-exit: {e}");
    }
    // Only reached without isa-debug-exit: QEMU then exits 0, which the host reads as "no report".
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::park();
    }
}

fn run(plan_path: &Path) -> Result<bool> {
    mount_basics()?;
    let plan: Plan = serde_json::from_slice(
        &fs::read(plan_path).with_context(|| format!("read plan {}", plan_path.display()))?,
    )
    .context("parse plan")?;
    let controllers = match plan.cgroup {
        CgroupMode::V2 => mount_cgroup_v2()?,
        CgroupMode::V1 => mount_cgroup_v1()?,
    };
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    println!(
        "vm-tests guest: kernel {kernel}, cgroup {}, controllers {}",
        plan.cgroup.name(),
        controllers.join(" ")
    );
    let _ = nix::unistd::sethostname("vm-tests");
    lo_up();

    let mut outcome = Outcome {
        kernel,
        controllers,
        suites: Vec::new(),
    };
    for suite in &plan.suites {
        println!(
            "vm-tests guest: ===== {} {} =====",
            suite.name,
            suite.args.join(" ")
        );
        let started = Instant::now();
        let mut child = Command::new(&suite.path)
            .args(&suite.args)
            .current_dir(&plan.project)
            .env_clear()
            .envs(suite_env(&plan))
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", suite.path.display()))?;
        let stdout = child.stdout.take().context("suite stdout")?;
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        // Copy to the console while counting libtest's `test result:` lines.
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut totals = (0, 0, 0);
            let mut out = std::io::stdout();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(out, "{line}");
                if let Some((p, f, i)) = parse_result_line(&line) {
                    totals = (totals.0 + p, totals.1 + f, totals.2 + i);
                }
            }
            let _ = done_tx.send(totals);
        });
        let status = reap_until(pid)?;
        // A process the suite left behind may hold its stdout open: do not wait for it forever.
        let (passed, failed, ignored) = done_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                println!(
                    "vm-tests guest: {} left a process holding its output; its counts are lost",
                    suite.name
                );
                (0, 0, 0)
            });
        let exit_code = status.code();
        if !status.success() {
            println!(
                "vm-tests guest: {} ended with {}",
                suite.name,
                describe(status)
            );
        }
        outcome.suites.push(SuiteOutcome {
            name: suite.name.clone(),
            exit_code,
            passed,
            failed,
            ignored,
            seconds: started.elapsed().as_secs_f64(),
        });
        // After every suite, so a guest that dies later still tells the host how far it got.
        fs::write(&plan.outcome, serde_json::to_vec_pretty(&outcome)?)
            .with_context(|| format!("write {}", plan.outcome.display()))?;
    }
    fs::write(&plan.outcome, serde_json::to_vec_pretty(&outcome)?)
        .with_context(|| format!("write {}", plan.outcome.display()))?;
    Ok(outcome.suites.iter().all(|s| s.exit_code == Some(0)))
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{status}"),
    }
}

fn suite_env(plan: &Plan) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("HOME", "/root".to_owned()),
        ("TMPDIR", "/tmp".to_owned()),
        ("RUST_BACKTRACE", "1".to_owned()),
        ("REFENG_RUNTIME", plan.runtime.display().to_string()),
        ("REFENG_VM_GUEST", "1".to_owned()),
        ("REFENG_VM_CGROUP", plan.cgroup.name().to_owned()),
        // Never let a snapshot test write into the project from the guest.
        ("INSTA_UPDATE", "no".to_owned()),
        ("CI", "true".to_owned()),
        // TCG runs ~20x slower than the host, where the property tests run at full size.
        ("PROPTEST_CASES", "4".to_owned()),
    ])
}

/// Waits for `pid`, reaping every other child on the way: as PID 1 we inherit each orphaned
/// container process, and an unreaped zombie would still look alive to the runtime.
fn reap_until(pid: Pid) -> Result<ExitStatus> {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => {
                return Ok(ExitStatus::from_raw((code & 0xff) << 8))
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                return Ok(ExitStatus::from_raw(sig as i32))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("waitpid: {e}"),
        }
    }
}

/// `test result: ok. 92 passed; 0 failed; 3 ignored; ...` → (92, 0, 3).
fn parse_result_line(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (mut passed, mut failed, mut ignored) = (None, None, None);
    for part in rest.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        if let [.., n, what] = words[..] {
            let n = n.parse().ok();
            match what {
                "passed" => passed = n,
                "failed" => failed = n,
                "ignored" => ignored = n,
                _ => {}
            }
        }
    }
    Some((passed?, failed?, ignored.unwrap_or(0)))
}

/// `vmtests_project=PATH` from the kernel command line (where the project share is mounted).
fn project_from_cmdline() -> Option<PathBuf> {
    let cmdline = fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("vmtests_project="))
        .map(PathBuf::from)
}

fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    fs::create_dir_all(target).ok();
    mount(Some(fstype), target, Some(fstype), flags, data)
        .with_context(|| format!("mount {fstype} at {target}"))
}

/// The mounts a booted host has; the 9p root is read-only, so every writable place is a tmpfs.
fn mount_basics() -> Result<()> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", nosuid, None)?;
    mount_fs("sysfs", "/sys", nosuid, None)?;
    mount_fs("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    mount_fs(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    mount_fs(
        "tmpfs",
        "/dev/shm",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    // The project share sits at its host path, which may be below one of these (a checkout in
    // /tmp): move it aside while the tmpfs goes on, then back onto the new, empty path.
    let project = project_from_cmdline();
    let hold = Path::new("/dev/.vmtests-project");
    for dir in ["/tmp", "/run", "/var/tmp"] {
        let hidden = project.as_deref().filter(|p| p.starts_with(dir));
        if let Some(p) = hidden {
            fs::create_dir_all(hold).ok();
            mount(Some(p), hold, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .with_context(|| format!("move the project share {} aside", p.display()))?;
        }
        mount_fs(
            "tmpfs",
            dir,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        )?;
        if let Some(p) = hidden {
            fs::create_dir_all(p).with_context(|| format!("re-create {}", p.display()))?;
            mount(Some(hold), p, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .with_context(|| format!("move the project share back to {}", p.display()))?;
        }
    }
    // Container roots are made in /tmp; mount propagation must be private-capable like a host's.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .context("make / shared")?;
    Ok(())
}

/// cgroup v2 at /sys/fs/cgroup with every available controller enabled for children.
fn mount_cgroup_v2() -> Result<Vec<String>> {
    let root = Path::new("/sys/fs/cgroup");
    mount_fs(
        "cgroup2",
        "/sys/fs/cgroup",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("nsdelegate"),
    )?;
    let available = fs::read_to_string(root.join("cgroup.controllers"))?;
    let available: Vec<String> = available.split_whitespace().map(str::to_owned).collect();
    for required in REQUIRED_V2 {
        ensure!(
            available.iter().any(|c| c == required),
            "cgroup2 lacks the {required} controller (has: {})",
            available.join(" ")
        );
    }
    for controller in &available {
        fs::write(
            root.join("cgroup.subtree_control"),
            format!("+{controller}"),
        )
        .with_context(|| format!("enable +{controller} in the root's subtree_control"))?;
    }
    let enabled = fs::read_to_string(root.join("cgroup.subtree_control"))?;
    Ok(enabled.split_whitespace().map(str::to_owned).collect())
}

/// The hybrid layout: a tmpfs at /sys/fs/cgroup, one v1 hierarchy per controller (co-mounted as
/// systemd does, with its links), and an empty cgroup2 at `unified`.
fn mount_cgroup_v1() -> Result<Vec<String>> {
    let base = "/sys/fs/cgroup";
    mount_fs(
        "tmpfs",
        base,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )?;
    let enabled: Vec<String> = fs::read_to_string("/proc/cgroups")?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[3] == "1").then(|| f[0].to_owned())
        })
        .collect();
    ensure!(
        !enabled.is_empty(),
        "no v1 controllers (booted with cgroup_no_v1?)"
    );
    let mut groups: Vec<Vec<String>> = Vec::new();
    for c in &enabled {
        if groups.iter().any(|g| g.contains(c)) {
            continue;
        }
        let group = V1_COMOUNTS
            .iter()
            .find(|g| g.contains(&c.as_str()))
            .map_or_else(
                || vec![c.clone()],
                |g| {
                    g.iter()
                        .map(|s| (*s).to_owned())
                        .filter(|s| enabled.contains(s))
                        .collect()
                },
            );
        groups.push(group);
    }
    for group in &groups {
        let name = group.join(",");
        let dir = format!("{base}/{name}");
        fs::create_dir_all(&dir)?;
        mount(
            Some("cgroup"),
            dir.as_str(),
            Some("cgroup"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(name.as_str()),
        )
        .with_context(|| format!("mount cgroup v1 {name}"))?;
        if group.len() > 1 {
            for member in group {
                std::os::unix::fs::symlink(&name, format!("{base}/{member}"))?;
            }
        }
    }
    mount_fs(
        "cgroup2",
        &format!("{base}/unified"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("nsdelegate"),
    )?;
    Ok(enabled)
}

/// Brings up loopback with the host's busybox; tests that need it fail loudly on their own.
fn lo_up() {
    let up = Command::new("/usr/bin/busybox")
        .args(["ip", "link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    if !up {
        eprintln!("vm-tests guest: could not bring up lo");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 92 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.14s"
            ),
            Some((92, 0, 3))
        );
        assert_eq!(
            parse_result_line("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured"),
            Some((1, 2, 0))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}
