//! Host side of the suites: builds refeng's test binaries and `refeng-runc` with cargo and picks
//! the ones to run in the guest.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::plan::Suite;

/// Test targets whose name ends so hold `#[ignore]`d tests that only make sense in the guest; the
/// guest runs them with `--include-ignored`.
pub const GUEST_ONLY_SUFFIX: &str = "_guest";

/// The suites a guest runs unless `--suite` names others: the runtime's real-container tests,
/// whose behaviour depends on the cgroup driver and the kernel. The rest (image store, shim
/// under containerd, dockerd/containerd interop, the conformance gate that also runs runc) does
/// not touch cgroup layouts beyond what these cover, and under TCG each would cost minutes.
pub const DEFAULT_SUITES: &[&str] = &[
    "refeng",
    "runtime_container",
    "lifecycle_model",
    "seccomp",
    "hardening",
    "cgroup_guest",
];

/// What the build produced.
#[derive(Debug)]
pub struct Built {
    pub runtime: PathBuf,
    pub suites: Vec<Suite>,
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Profile {
    test: bool,
}

/// Runs `cargo test -p refeng --no-run` in `project` and returns the test binaries (those named
/// in `only`, or the [`DEFAULT_SUITES`]) with the libtest arguments the guest passes them.
///
/// # Errors
/// When cargo fails, or a suite named in `only` was not built.
pub fn build(project: &Path, only: &[String], libtest_args: &[String]) -> Result<Built> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "test",
            "-p",
            "refeng",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(project)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut runtime = None;
    let mut suites = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().context("cargo stdout")?).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Message>(&line) else {
            continue;
        };
        let (Some(target), Some(profile), Some(exe)) = (msg.target, msg.profile, msg.executable)
        else {
            continue;
        };
        if msg.reason != "compiler-artifact" {
            continue;
        }
        let kind = |k: &str| target.kind.iter().any(|x| x == k);
        if !profile.test && kind("bin") && target.name == "refeng-runc" {
            runtime = Some(exe);
        } else if profile.test && (kind("lib") || kind("test")) {
            let mut args = vec!["--test-threads=1".to_owned()];
            if target.name.ends_with(GUEST_ONLY_SUFFIX) {
                args.push("--include-ignored".to_owned());
            }
            args.extend(libtest_args.iter().cloned());
            suites.push(Suite {
                name: target.name,
                path: exe,
                args,
            });
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo test --no-run failed: {status}");
    let runtime = runtime.context("cargo built no refeng-runc binary")?;
    if !only.is_empty() {
        for name in only {
            if !suites.iter().any(|s| &s.name == name) {
                let have: Vec<_> = suites.iter().map(|s| s.name.as_str()).collect();
                bail!("no test target {name:?}; there are {have:?}");
            }
        }
        suites.retain(|s| only.contains(&s.name));
    } else {
        for name in DEFAULT_SUITES {
            ensure!(
                suites.iter().any(|s| &s.name == name),
                "the default suite {name:?} was not built"
            );
        }
        suites.retain(|s| DEFAULT_SUITES.contains(&s.name.as_str()));
    }
    suites.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Built { runtime, suites })
}
