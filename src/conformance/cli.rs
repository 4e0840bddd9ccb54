//! The command line of `refeng-conformance`: flags, defaults and output, over [`run`].

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::conformance::report::{counts, table, tap_line};
use crate::conformance::{cases, run, statements, ConformanceError, Options};

/// refeng-conformance: check an OCI runtime with runc's command line against the runtime-spec.
#[derive(Debug, Parser)]
#[command(name = "refeng-conformance", version)]
pub struct Cli {
    /// The runtime binary (runc, crun, refeng-runc, or a wrapper script taking the same flags).
    #[arg(long, required_unless_present = "statements")]
    pub runtime: Option<PathBuf>,
    /// The runtime's --root; a fresh directory in the work directory by default.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Tap)]
    pub format: Format,
    /// The in-container checker (default: refeng-conformance-checker next to this binary).
    #[arg(long)]
    pub checker: Option<PathBuf>,
    /// busybox-static, copied into the rootfs.
    #[arg(long, default_value = "/usr/bin/busybox")]
    pub busybox: PathBuf,
    /// Work directory (default: a fresh one under the temp dir).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep the work directory (bundles, outputs) for inspection.
    #[arg(long)]
    pub keep: bool,
    /// Print the statement ↔ case table of spec/CONFORMANCE.md and exit.
    #[arg(long)]
    pub statements: bool,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// TAP 13, one line per case as it finishes.
    Tap,
    /// The whole report as one JSON document.
    Json,
    /// A markdown table.
    Table,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// {0}
    #[error(transparent)]
    Run(#[from] ConformanceError),
    /// cannot write the output: {0}
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// cannot serialize the report: {0}
    #[error("cannot serialize the report: {0}")]
    Json(#[from] serde_json::Error),
    /// --runtime is required
    #[error("--runtime is required")]
    NoRuntime,
}

/// The statement ↔ case table, as embedded in spec/CONFORMANCE.md.
#[must_use]
pub fn statements_table() -> String {
    let cases: Vec<(String, Vec<&'static str>)> = cases()
        .into_iter()
        .map(|case| (case.name, case.statements))
        .collect();
    statements::table(&cases)
}

/// Runs the command; returns the process exit code (0: no case failed, 1: some failed; the
/// binary exits 2 on a [`CliError`]).
///
/// # Errors
///
/// [`CliError`] when the run cannot start or the output cannot be written.
pub fn main(cli: Cli) -> Result<i32, CliError> {
    let mut stdout = std::io::stdout().lock();
    if cli.statements {
        stdout.write_all(statements_table().as_bytes())?;
        return Ok(0);
    }
    let runtime = cli.runtime.ok_or(CliError::NoRuntime)?;
    let checker = cli.checker.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.parent()
                    .map(|dir| dir.join("refeng-conformance-checker"))
            })
            .unwrap_or_else(|| PathBuf::from("refeng-conformance-checker"))
    });
    let work = cli.work.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("refeng-conformance-{}", std::process::id()))
    });
    let options = Options {
        runtime,
        root: cli.root,
        filter: cli.filter,
        checker,
        busybox: cli.busybox,
        work,
        keep: cli.keep,
    };
    let format = cli.format;
    let mut number = 0;
    let mut write_error = None;
    let report = run(&options, |result| {
        number += 1;
        if format == Format::Tap {
            let header = if number == 1 { "TAP version 13\n" } else { "" };
            if let Err(e) = writeln!(stdout, "{header}{}", tap_line(number, result)) {
                write_error.get_or_insert(e);
            }
            let _ = stdout.flush();
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let (pass, fail, skip) = counts(&report);
    match format {
        Format::Tap => {
            if number == 0 {
                writeln!(stdout, "TAP version 13")?;
            }
            writeln!(
                stdout,
                "1..{number}\n# pass {pass}, fail {fail}, skip {skip}"
            )?;
        }
        Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Table => write!(stdout, "{}", table(&report))?,
    }
    Ok(i32::from(fail > 0))
}
