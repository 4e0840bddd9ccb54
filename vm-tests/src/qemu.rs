//! Runs QEMU: picks KVM when it really boots a kernel here and TCG otherwise, shares the host root
//! (read-only) and the project (read-write) over 9p, streams the serial console, enforces the
//! timeout on the one QEMU process it started, and decodes isa-debug-exit.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::initramfs::{PROJECT_TAG, ROOT_TAG};
use crate::plan::exit;

pub const QEMU: &str = "qemu-system-x86_64";

/// How long a KVM guest may take to print its first line from `/init`; a working KVM needs
/// well under a second, a broken one spins forever in the firmware.
const PROBE_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when a probe boot succeeds (the result is cached), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// One guest boot.
#[derive(Debug)]
pub struct Boot<'a> {
    pub vmlinux: &'a Path,
    pub initramfs: &'a Path,
    pub accel: Accel,
    pub cmdline: String,
    pub project: &'a Path,
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// Where the console is copied besides our stdout.
    pub log: Option<&'a Path>,
    /// Forward console lines to stdout.
    pub echo: bool,
}

/// How a boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The guest wrote this value to isa-debug-exit.
    Reported(u8),
    /// The `/init` script could not reach the agent.
    InitFailed,
    /// QEMU exited without a report (guest panic or power-off): QEMU's own status.
    NoReport(Option<i32>),
    /// We killed QEMU.
    TimedOut,
}

/// Checks that QEMU is installed and says how to get it when not.
///
/// # Errors
/// When `qemu-system-x86_64` cannot be run.
pub fn check_installed() -> Result<String> {
    let out = Command::new(QEMU)
        .arg("--version")
        .output()
        .with_context(|| {
            format!("QEMU cannot run: `{QEMU}` not found (apt-get install qemu-system-x86)")
        })?;
    if !out.status.success() {
        bail!("QEMU cannot run: `{QEMU} --version` failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Decides between KVM and TCG. KVM is tried only when `/dev/kvm` opens; then a probe boot (the
/// initramfs answers at once with `vmtests_probe=1`) must report within [`PROBE_DEADLINE`]. The
/// answer is cached under `cache` per host kernel, QEMU and guest kernel.
///
/// # Errors
/// When `--accel kvm` was asked for and KVM does not work.
pub fn choose_accel(
    asked: Accel,
    cache: &Path,
    key: &str,
    vmlinux: &Path,
    initramfs: &Path,
    project: &Path,
) -> Result<Accel> {
    if asked == Accel::Tcg {
        return Ok(Accel::Tcg);
    }
    let kvm_opens = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !kvm_opens {
        if asked == Accel::Kvm {
            bail!("KVM asked for, but /dev/kvm cannot be opened read-write");
        }
        eprintln!("vm-tests: /dev/kvm is not usable; using TCG (slower, still a real kernel)");
        return Ok(Accel::Tcg);
    }
    let host_release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("{}|{key}", host_release.trim());
    let cached = cache.join("accel-probe");
    if asked == Accel::Auto {
        if let Ok(text) = fs::read_to_string(&cached) {
            if let Some((k, verdict)) = text.rsplit_once('\n').map(|(k, v)| (k, v.trim())) {
                if k == key {
                    return Ok(if verdict == "kvm" {
                        Accel::Kvm
                    } else {
                        eprintln!("vm-tests: KVM does not boot a kernel on this host (cached probe); using TCG");
                        Accel::Tcg
                    });
                }
            }
        }
    }
    eprintln!("vm-tests: probing whether KVM boots the guest kernel");
    let probe = Boot {
        vmlinux,
        initramfs,
        accel: Accel::Kvm,
        cmdline: "console=ttyS0 quiet panic=-1 vmtests_probe=1".to_owned(),
        project,
        memory_mb: 256,
        cpus: 1,
        timeout: PROBE_DEADLINE,
        log: None,
        echo: false,
    };
    let works = matches!(run(&probe)?, Ended::Reported(exit::PASSED));
    let _ = fs::write(
        &cached,
        format!("{key}\n{}", if works { "kvm" } else { "tcg" }),
    );
    if works {
        Ok(Accel::Kvm)
    } else if asked == Accel::Kvm {
        bail!("KVM asked for, but a KVM guest did not boot within {PROBE_DEADLINE:?}")
    } else {
        eprintln!(
            "vm-tests: KVM is present but a KVM guest did not boot within {PROBE_DEADLINE:?}; using TCG"
        );
        Ok(Accel::Tcg)
    }
}

fn command(boot: &Boot<'_>) -> Command {
    let mut cmd = Command::new(QEMU);
    match boot.accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        // `max` gives the guest every feature TCG emulates, as close to a real CPU as it gets.
        Accel::Tcg | Accel::Auto => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    let share = |id: &str, path: &Path, readonly: bool| {
        format!(
            "local,id={id},path={},security_model=passthrough,multidevs=remap{}",
            path.display(),
            if readonly { ",readonly=on" } else { "" }
        )
    };
    cmd.args(["-M", "pc", "-nodefaults", "-no-user-config", "-no-reboot"])
        .args(["-display", "none", "-serial", "stdio"])
        .args(["-m", &boot.memory_mb.to_string()])
        .args(["-smp", &boot.cpus.to_string()])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(boot.vmlinux)
        .arg("-initrd")
        .arg(boot.initramfs)
        .args(["-append", &boot.cmdline])
        // The host root read-only: the dynamically linked test binaries find their libraries
        // (libseccomp, glibc) and /usr/bin/busybox at the paths they were built for.
        .args(["-fsdev", &share(ROOT_TAG, Path::new("/"), true)])
        .args([
            "-device",
            &format!("virtio-9p-pci,fsdev={ROOT_TAG},mount_tag={ROOT_TAG}"),
        ])
        .args(["-fsdev", &share(PROJECT_TAG, boot.project, false)])
        .args([
            "-device",
            &format!("virtio-9p-pci,fsdev={PROJECT_TAG},mount_tag={PROJECT_TAG}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Boots the guest, streams its console and waits for it, killing QEMU (only the process this
/// call started) at the timeout.
///
/// # Errors
/// When QEMU cannot be started or the log cannot be written.
pub fn run(boot: &Boot<'_>) -> Result<Ended> {
    let mut child = command(boot)
        .spawn()
        .with_context(|| format!("QEMU cannot run: cannot start {QEMU}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers = [
        forward(child.stdout.take().context("qemu stdout")?, tx.clone()),
        forward(child.stderr.take().context("qemu stderr")?, tx),
    ];
    let mut log = match boot.log {
        Some(path) => {
            Some(fs::File::create(path).with_context(|| format!("create {}", path.display()))?)
        }
        None => None,
    };
    let started = Instant::now();
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            emit(boot, &mut log, &line)?;
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > boot.timeout {
            kill(&mut child);
            break None;
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            emit(boot, &mut log, &line)?;
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    while let Ok(line) = rx.try_recv() {
        emit(boot, &mut log, &line)?;
    }
    Ok(status.map_or(Ended::TimedOut, decode))
}

fn emit(boot: &Boot<'_>, log: &mut Option<fs::File>, line: &str) -> Result<()> {
    if boot.echo {
        // Prefixed so that the guest's own "test result:" lines are not read as the host's:
        // the harness prints the guests' totals itself.
        let mut out = std::io::stdout().lock();
        writeln!(out, "guest| {line}")?;
        out.flush()?;
    }
    if let Some(file) = log {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// Kills our QEMU by its pid (`Child::kill` signals exactly that process) and reaps it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends every console line, without the serial port's carriage returns, to `tx`.
fn forward(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
            if tx.send(line).is_err() {
                break;
            }
            buf.clear();
        }
    })
}

/// isa-debug-exit makes QEMU exit with `value << 1 | 1`; any other status is QEMU's own.
fn decode(status: ExitStatus) -> Ended {
    let value = status
        .code()
        .filter(|code| code % 2 == 1)
        .and_then(|code| u8::try_from(code >> 1).ok());
    match value {
        Some(exit::INIT_FAILED) => Ended::InitFailed,
        Some(v @ (exit::PASSED | exit::FAILED | exit::SETUP_FAILED)) => Ended::Reported(v),
        _ => Ended::NoReport(status.code()),
    }
}

/// The run directory of one configuration, below the harness's own target folder.
pub fn run_dir(vm_tests_dir: &Path, config: &str) -> PathBuf {
    vm_tests_dir.join("target").join("vm-run").join(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn debug_exit_values_decode() {
        let st = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(decode(st(33)), Ended::Reported(exit::PASSED));
        assert_eq!(decode(st(35)), Ended::Reported(exit::FAILED));
        assert_eq!(decode(st(39)), Ended::InitFailed);
        // QEMU's own error exit must not read as a report.
        assert_eq!(decode(st(1)), Ended::NoReport(Some(1)));
        assert_eq!(decode(st(0)), Ended::NoReport(Some(0)));
        assert_eq!(decode(ExitStatus::from_raw(9)), Ended::NoReport(None));
    }
}
