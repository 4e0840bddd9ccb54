//! refeng-conformance: the runtime-spec conformance oracle for any OCI runtime with runc's command
//! line. Each case lays out a bundle over a busybox-static rootfs, drives the runtime, and checks
//! the lifecycle against `refeng_spec::oci::Model` and the container's view of itself through the
//! in-container checker (see `spec/CONFORMANCE.md` for the statement ↔ case table).

pub mod bundle;
pub mod checker;
pub mod cli;
pub mod driver;
mod hooks;
mod inside;
mod lifecycle;
mod listener;
pub mod report;
pub mod seccomp_profiles;
pub mod statements;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::conformance::bundle::{base_config, BundleError};
use crate::conformance::driver::{DriveError, Ran, Runtime};

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "lowercase")]
pub enum Verdict {
    /// The runtime behaved as the spec (or the model) says.
    Pass(String),
    /// It did not; what was expected and what happened.
    Fail(String),
    /// The host cannot run the case; why.
    Skip(String),
}

impl Verdict {
    /// `pass`, `fail` or `skip`.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pass(_) => "pass",
            Self::Fail(_) => "fail",
            Self::Skip(_) => "skip",
        }
    }

    /// The detail text.
    #[must_use]
    pub fn detail(&self) -> &str {
        match self {
            Self::Pass(detail) | Self::Fail(detail) | Self::Skip(detail) => detail,
        }
    }
}

/// Why a case could not be carried out; reported as a failure of the case, since a runtime that
/// hangs or leaves no output is what makes it happen.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// the runtime could not be driven: {0}
    #[error("the runtime could not be driven: {0}")]
    Drive(#[from] DriveError),
    /// the bundle could not be laid out: {0}
    #[error("the bundle could not be laid out: {0}")]
    Bundle(#[from] BundleError),
}

/// Why the oracle as a whole could not run.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// cannot prepare {path}: {source}
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// What the file system reported.
        #[source]
        source: BundleError,
    },
    /// the checker binary {0} does not exist (build it with `cargo build --bin refeng-conformance-checker`, or pass --checker)
    #[error("the checker binary {0} does not exist (build it with `cargo build --bin refeng-conformance-checker`, or pass --checker)")]
    NoChecker(PathBuf),
    /// the runtime binary {0} does not exist
    #[error("the runtime binary {0} does not exist")]
    NoRuntime(PathBuf),
}

/// What to run, against what.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime binary (or a wrapper script with the same command line).
    pub runtime: PathBuf,
    /// The runtime's `--root`; a fresh directory under `work` when absent.
    pub root: Option<PathBuf>,
    /// Only cases whose name contains this.
    pub filter: Option<String>,
    /// The checker binary to place into the rootfs.
    pub checker: PathBuf,
    /// busybox-static.
    pub busybox: PathBuf,
    /// Where bundles, rootfs and outputs go; removed afterwards unless `keep`.
    pub work: PathBuf,
    /// Keep `work` for inspection.
    pub keep: bool,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case name, `<group>/<what>`.
    pub name: String,
    /// The spec statements (ids in [`statements::ALL`]) or model rules it checks.
    pub statements: Vec<&'static str>,
    /// The verdict and its detail.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Wall time in milliseconds.
    pub millis: u128,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The runtime binary.
    pub runtime: String,
    /// One result per case, in case order.
    pub cases: Vec<CaseResult>,
}

/// What a case runs: a function over its environment.
type CaseFn = Box<dyn Fn(&mut Env<'_>) -> Result<Verdict, CaseError>>;

/// A conformance case: its name, the statements it checks, and what it does.
pub struct Case {
    /// `<group>/<what>`.
    pub name: String,
    /// Ids of [`statements::ALL`] (or `model:` rules) it checks.
    pub statements: Vec<&'static str>,
    run: CaseFn,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("statements", &self.statements)
            .finish_non_exhaustive()
    }
}

impl Case {
    fn new(
        name: impl Into<String>,
        statements: &[&'static str],
        run: impl Fn(&mut Env<'_>) -> Result<Verdict, CaseError> + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            statements: statements.to_vec(),
            run: Box::new(run),
        }
    }
}

/// Every case, in run order.
#[must_use]
pub fn cases() -> Vec<Case> {
    let mut all = lifecycle::cases();
    all.extend(hooks::cases());
    all.extend(inside::cases());
    all.extend(listener::cases());
    all
}

/// The shared state of one run.
#[derive(Debug)]
struct Run {
    runtime: Runtime,
    rootfs: PathBuf,
    cases_dir: PathBuf,
    /// `/refeng-conformance-<tag>`: every cgroup of this run sits below it.
    cgroup_prefix: String,
    /// Unique per run: container ids start with it.
    tag: String,
}

/// A bundle being prepared: its directory, its exchange directory (`/conformance` inside) and
/// its config, which the case edits before [`Env::write_bundle`].
#[derive(Debug, Clone)]
pub struct Draft {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The exchange directory, bind-mounted on `/conformance`.
    pub exchange: PathBuf,
    /// The cgroupsPath it uses.
    pub cgroups_path: String,
    /// The config.
    pub config: Value,
}

/// One case's environment: fresh ids, bundles and cgroups, and the cleanup of all of them.
#[derive(Debug)]
pub struct Env<'a> {
    run: &'a mut Run,
    dir: PathBuf,
    serial: usize,
    bundles: usize,
    ids: Vec<String>,
    cgroups: Vec<String>,
}

impl Env<'_> {
    /// The runtime under test.
    pub fn runtime(&mut self) -> &mut Runtime {
        &mut self.run.runtime
    }

    /// The id of this case's `n`th container.
    #[must_use]
    pub fn id(&self, n: usize) -> String {
        format!("{}-{}-{n}", self.run.tag, self.serial)
    }

    /// A new bundle draft with the base config.
    ///
    /// # Errors
    ///
    /// [`BundleError`] when its directories cannot be made.
    pub fn draft(&mut self) -> Result<Draft, BundleError> {
        self.bundles += 1;
        let dir = self.dir.join(format!("bundle-{}", self.bundles));
        let exchange = self.dir.join(format!("exchange-{}", self.bundles));
        bundle::make_dir(&dir, 0o755)?;
        bundle::make_dir(&exchange, 0o777)?;
        let cgroups_path = format!(
            "{}/{}-{}",
            self.run.cgroup_prefix, self.serial, self.bundles
        );
        self.cgroups.push(cgroups_path.clone());
        let config = base_config(&self.run.rootfs, &exchange, &cgroups_path);
        Ok(Draft {
            dir,
            exchange,
            cgroups_path,
            config,
        })
    }

    /// Writes the draft's config into the bundle and, for the checker, the exchange directory.
    ///
    /// # Errors
    ///
    /// [`BundleError`] when a file cannot be written.
    pub fn write_bundle(&self, draft: &Draft) -> Result<(), BundleError> {
        let text = serde_json::to_string_pretty(&draft.config).unwrap_or_default();
        bundle::write(&draft.dir.join("config.json"), &text)?;
        bundle::write(&draft.exchange.join("config.json"), &text)
    }

    /// `create --bundle <dir> <id>`, remembering the id for cleanup.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn create(&mut self, id: &str, draft: &Draft) -> Result<Ran, DriveError> {
        self.create_with(id, draft, &[])
    }

    /// `create --bundle <dir> <extra...> <id>`, remembering the id for cleanup.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn create_with(
        &mut self,
        id: &str,
        draft: &Draft,
        extra: &[&str],
    ) -> Result<Ran, DriveError> {
        if !self.ids.iter().any(|known| known == id) {
            self.ids.push(id.to_owned());
        }
        let dir = draft.dir.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", dir.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        self.run.runtime.run(&args)
    }

    /// `run --bundle <dir> <id>` (attached), remembering the id for cleanup.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn run_attached(&mut self, id: &str, draft: &Draft) -> Result<Ran, DriveError> {
        if !self.ids.iter().any(|known| known == id) {
            self.ids.push(id.to_owned());
        }
        let dir = draft.dir.to_string_lossy().into_owned();
        self.run.runtime.run(&["run", "--bundle", &dir, id])
    }

    /// Runs the runtime with `args`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn cmd(&mut self, args: &[&str]) -> Result<Ran, DriveError> {
        self.run.runtime.run(args)
    }
}

impl Drop for Env<'_> {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            let _ = self.run.runtime.run(&["kill", &id, "KILL"]);
            let _ = self.run.runtime.run(&["delete", "--force", &id]);
        }
        for path in std::mem::take(&mut self.cgroups) {
            bundle::remove_cgroups(&path);
            // A case may use the same path relative (below the oracle's own cgroups).
            bundle::remove_cgroups(path.trim_start_matches('/'));
        }
        bundle::unmount_below(&self.dir);
    }
}

/// Runs every case matching the filter and returns the report; `on_result` sees each result as
/// it comes (for streaming TAP).
///
/// # Errors
///
/// [`ConformanceError`] when the binaries are missing or the work directory cannot be prepared;
/// a runtime that misbehaves only fails cases.
pub fn run(
    options: &Options,
    mut on_result: impl FnMut(&CaseResult),
) -> Result<Report, ConformanceError> {
    if !options.checker.is_file() {
        return Err(ConformanceError::NoChecker(options.checker.clone()));
    }
    if !options.runtime.is_file() {
        return Err(ConformanceError::NoRuntime(options.runtime.clone()));
    }
    let prepare = |path: &Path, source| ConformanceError::Prepare {
        path: path.to_owned(),
        source,
    };
    let work = &options.work;
    bundle::make_dir(work, 0o755).map_err(|e| prepare(work, e))?;
    let rootfs = work.join("rootfs");
    bundle::build_rootfs(&rootfs, &options.busybox, &options.checker)
        .map_err(|e| prepare(&rootfs, e))?;
    let root = options.root.clone().unwrap_or_else(|| work.join("state"));
    let out = work.join("out");
    let cases_dir = work.join("cases");
    for dir in [&root, &out, &cases_dir] {
        bundle::make_dir(dir, 0o755).map_err(|e| prepare(dir, e))?;
    }
    let tag = format!("rc{}", std::process::id());
    let mut shared = Run {
        runtime: Runtime::new(options.runtime.clone(), root, out),
        rootfs,
        cases_dir,
        cgroup_prefix: format!("/refeng-conformance-{tag}"),
        tag,
    };
    let mut results = Vec::new();
    for (serial, case) in cases().into_iter().enumerate() {
        if options
            .filter
            .as_deref()
            .is_some_and(|filter| !case.name.contains(filter))
        {
            continue;
        }
        let started = Instant::now();
        let verdict = {
            let dir = shared.cases_dir.join(serial.to_string());
            let mut env = Env {
                run: &mut shared,
                dir: dir.clone(),
                serial,
                bundles: 0,
                ids: Vec::new(),
                cgroups: Vec::new(),
            };
            match bundle::make_dir(&dir, 0o755) {
                Ok(()) => (case.run)(&mut env).unwrap_or_else(|e| Verdict::Fail(e.to_string())),
                Err(e) => Verdict::Fail(e.to_string()),
            }
        };
        let result = CaseResult {
            name: case.name,
            statements: case.statements,
            verdict,
            millis: started.elapsed().as_millis(),
        };
        on_result(&result);
        results.push(result);
    }
    bundle::remove_cgroups(&shared.cgroup_prefix);
    bundle::remove_cgroups(shared.cgroup_prefix.trim_start_matches('/'));
    bundle::unmount_below(work);
    if !options.keep {
        let _ = fs::remove_dir_all(work);
    }
    Ok(Report {
        runtime: options.runtime.display().to_string(),
        cases: results,
    })
}

/// Polls `probe` every 20 ms until it holds or `timeout` passes; returns whether it held.
fn wait_for(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if probe() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_cites_known_statements_and_names_are_unique() {
        let all = cases();
        let mut names = std::collections::BTreeSet::new();
        for case in &all {
            assert!(
                names.insert(case.name.clone()),
                "duplicate case {}",
                case.name
            );
            assert!(!case.statements.is_empty(), "{} cites nothing", case.name);
            for id in &case.statements {
                assert!(
                    statements::find(id).is_some(),
                    "{} cites unknown statement {id}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn the_table_lists_every_statement_once() {
        let table = cli::statements_table();
        for statement in statements::ALL {
            let row = format!("| `{}` |", statement.id);
            assert_eq!(table.matches(&row).count(), 1, "{}", statement.id);
        }
    }
}
