//! `vm-tests`: runs refeng's real-container test suites inside QEMU guests, one booted cgroup-v2
//! only (`cgroup_no_v1=all`) and one with the v1 controllers, so both cgroup drivers are tested
//! on a host that has only one of them. `vm-tests guest PLAN` is the same binary as the guest's
//! PID 1.

mod guest;
mod initramfs;
mod kernel;
mod plan;
mod qemu;
mod suites;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use plan::{exit, CgroupMode, Outcome, Plan};
use qemu::{Accel, Ended};

#[derive(Parser, Debug)]
#[command(about = "Run refeng's test suites inside cgroup v2 and v1 QEMU guests")]
struct Cli {
    #[command(subcommand)]
    guest: Option<GuestCommand>,

    /// The cgroup layouts to boot, in order.
    #[arg(long = "cgroup", value_enum, default_values_t = [CgroupMode::V2, CgroupMode::V1])]
    cgroups: Vec<CgroupMode>,

    /// Only these test targets (cargo target names, e.g. `refeng`, `cgroup_guest`); default:
    /// the runtime's suites (`suites::DEFAULT_SUITES`).
    #[arg(long = "suite")]
    suites: Vec<String>,

    /// A script to run in the guest with bash, after the suites, from the project root: the
    /// path and its arguments in one value (`--script 'benches/side_by_side.sh 30'`). Its output
    /// goes to the console; a non-zero exit fails the run. Given without `--suite`, the guest
    /// runs the scripts only. Repeatable.
    #[arg(long = "script")]
    scripts: Vec<String>,

    /// Extra environment for the suites, e.g. `PROPTEST_CASES=8`.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,

    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,

    /// Seconds one guest may run before its QEMU is killed.
    #[arg(long, default_value_t = 900)]
    timeout: u64,

    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory: u32,

    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,

    /// The project to test (default: the folder above vm-tests/).
    #[arg(long)]
    project: Option<PathBuf>,

    /// busybox-static, copied into the initramfs.
    #[arg(long, default_value = "/usr/bin/busybox")]
    busybox: PathBuf,

    /// Arguments passed on to every suite's libtest (a test name filter, `--nocapture`, ...).
    #[arg(last = true)]
    libtest_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum GuestCommand {
    /// Internal: the guest's PID 1.
    #[command(hide = true)]
    Guest { plan: PathBuf },
}

/// Exit codes: 0 every suite passed in every guest, 1 a test failed, 2 the VM could not run.
fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(GuestCommand::Guest { plan }) = &cli.guest {
        guest::main(plan);
    }
    match host(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("vm-tests: error: {e:#}");
            eprintln!("vm-tests: the VM suite did NOT run");
            ExitCode::from(2)
        }
    }
}

fn host(cli: &Cli) -> Result<bool> {
    let started = Instant::now();
    ensure_root()?;
    let vm_tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = match &cli.project {
        Some(p) => p.canonicalize()?,
        None => vm_tests_dir
            .parent()
            .context("vm-tests/ has no parent")?
            .to_owned(),
    };
    let cache = vm_tests_dir.join("cache");
    fs::create_dir_all(&cache)?;
    let qemu_version = qemu::check_installed()?;

    let kernel = kernel::ensure(&cache)?;
    let initramfs = initramfs::build(&cache, &kernel, &cli.busybox)?;
    let mut built = suites::build(&project, &cli.suites, &cli.libtest_args)?;
    if !cli.scripts.is_empty() && cli.suites.is_empty() {
        built.suites.clear();
    }
    let agent = std::env::current_exe()?.canonicalize()?;
    for path in built
        .suites
        .iter()
        .map(|s| &s.path)
        .chain([&built.runtime, &agent])
    {
        anyhow::ensure!(
            path.starts_with(&project),
            "{} is outside the shared project {} (is CARGO_TARGET_DIR elsewhere?)",
            path.display(),
            project.display()
        );
    }
    for script in &cli.scripts {
        let mut words = script.split_whitespace().map(str::to_owned);
        let path = words.next().context("--script needs a path")?;
        anyhow::ensure!(
            project.join(&path).is_file(),
            "--script {path}: no such file in {}",
            project.display()
        );
        built.suites.push(plan::Suite {
            name: format!("script {path}"),
            path: PathBuf::from("/bin/bash"),
            args: std::iter::once(path).chain(words).collect(),
        });
    }
    let accel = qemu::choose_accel(
        cli.accel,
        &cache,
        &format!("{qemu_version}|{}", kernel.id),
        &kernel.vmlinux,
        &initramfs,
        &project,
    )?;
    eprintln!(
        "vm-tests: {} with {}, {:?}; suites: {}",
        kernel.id,
        qemu_version,
        accel,
        built
            .suites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut all_passed = true;
    let mut totals = (0, 0, 0);
    let mut lines = Vec::new();
    for &mode in &cli.cgroups {
        let guest = Guest {
            mode,
            dir: qemu::run_dir(vm_tests_dir, mode.name()),
            project: &project,
            agent: &agent,
            kernel: &kernel,
            initramfs: &initramfs,
            accel,
        };
        let (verdict, outcome, seconds) = guest.run(cli, &built)?;
        all_passed &= verdict.is_none();
        for s in outcome.iter().flat_map(|o| &o.suites) {
            totals = (
                totals.0 + s.passed,
                totals.1 + s.failed,
                totals.2 + s.ignored,
            );
            lines.push(format!(
                "vm-tests:   [{}] {:<22} {:>4} passed {:>3} failed {:>3} ignored  {:>6.1}s  {}",
                mode.name(),
                s.name,
                s.passed,
                s.failed,
                s.ignored,
                s.seconds,
                match s.exit_code {
                    Some(0) => "ok".to_owned(),
                    Some(c) => format!("exit {c}"),
                    None => "killed by a signal".to_owned(),
                }
            ));
        }
        if verdict.is_some()
            && outcome
                .as_ref()
                .is_none_or(|o| o.suites.iter().all(|s| s.failed == 0))
        {
            // A guest that failed without a failing test (a crash, a timeout) still counts once.
            totals.1 += 1;
        }
        lines.push(format!(
            "vm-tests: cgroup {} guest {} in {seconds:.1}s (console: {})",
            mode.name(),
            verdict.as_deref().unwrap_or("passed"),
            guest.dir.join("console.log").display()
        ));
    }
    for line in &lines {
        eprintln!("{line}");
    }
    eprintln!(
        "vm-tests: wall time {:.1}s ({:?})",
        started.elapsed().as_secs_f64(),
        accel
    );
    // The plain closing line CI reads.
    println!(
        "vm-tests: {} passed, {} failed, {} skipped",
        totals.0, totals.1, totals.2
    );
    Ok(all_passed)
}

/// One guest configuration to boot.
struct Guest<'a> {
    mode: CgroupMode,
    /// Its run dir: plan, outcome and console log.
    dir: PathBuf,
    project: &'a Path,
    agent: &'a Path,
    kernel: &'a kernel::Kernel,
    initramfs: &'a Path,
    accel: Accel,
}

impl Guest<'_> {
    /// Boots the guest and returns why it failed (`None`: every suite passed), what the agent
    /// reported if anything, and the guest's wall time in seconds.
    fn run(
        &self,
        cli: &Cli,
        built: &suites::Built,
    ) -> Result<(Option<String>, Option<Outcome>, f64)> {
        let started = Instant::now();
        let _ = fs::remove_dir_all(&self.dir);
        fs::create_dir_all(&self.dir)?;
        let plan = Plan {
            cgroup: self.mode,
            project: self.project.to_owned(),
            runtime: built.runtime.clone(),
            outcome: self.dir.join("outcome.json"),
            env: cli.env.clone(),
            suites: built.suites.clone(),
        };
        let plan_path = self.dir.join("plan.json");
        fs::write(&plan_path, serde_json::to_vec_pretty(&plan)?)?;
        let mut cmdline = vec![
            "console=ttyS0".to_owned(),
            "quiet".to_owned(),
            "loglevel=4".to_owned(),
            "panic=-1".to_owned(),
            format!("vmtests_project={}", self.project.display()),
            format!("vmtests_agent={}", self.agent.display()),
            format!("vmtests_plan={}", plan_path.display()),
        ];
        if self.mode == CgroupMode::V2 {
            cmdline.push("cgroup_no_v1=all".to_owned());
        }
        let log = self.dir.join("console.log");
        eprintln!("vm-tests: booting the cgroup {} guest", self.mode.name());
        let ended = qemu::run(&qemu::Boot {
            vmlinux: &self.kernel.vmlinux,
            initramfs: self.initramfs,
            accel: self.accel,
            cmdline: cmdline.join(" "),
            project: self.project,
            memory_mb: cli.memory,
            cpus: cli.cpus,
            timeout: Duration::from_secs(cli.timeout),
            log: Some(&log),
            echo: true,
        })?;
        let seconds = started.elapsed().as_secs_f64();
        // The agent rewrites it after every suite, so a guest that dies still tells how far it got.
        let outcome: Option<Outcome> = fs::read(&plan.outcome)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let failure = match (ended, &outcome) {
            (Ended::Reported(exit::PASSED), Some(o)) if o.suites.len() == plan.suites.len() => None,
            (Ended::Reported(exit::PASSED | exit::FAILED), Some(_)) => Some("FAILED".to_owned()),
            (Ended::Reported(exit::SETUP_FAILED), _) => {
                Some("FAILED: the guest's setup failed (see its console)".to_owned())
            }
            (Ended::Reported(_), _) => {
                Some("FAILED: the guest reported without an outcome".to_owned())
            }
            (Ended::InitFailed, _) => Some("FAILED: /init could not start the agent".to_owned()),
            (Ended::NoReport(code), _) => Some(format!(
                "FAILED: QEMU exited ({code:?}) without a report (kernel panic or QEMU error)"
            )),
            (Ended::TimedOut, _) => Some(format!(
                "FAILED: timed out after {}s, QEMU killed",
                cli.timeout
            )),
        };
        Ok((failure, outcome, seconds))
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn ensure_root() -> Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "vm-tests must run as root: QEMU shares the host root with the owners and modes the tests need"
    );
    Ok(())
}
