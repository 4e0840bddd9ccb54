//! Drives the runtime under test through the runc command-line contract: `--root`, `--log`,
//! `--log-format json` before the verb, every command with a deadline, stdio in files (a created
//! container inherits them and would hold a pipe open), and the `state` document parsed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use refeng_spec::oci::Status;
use serde::Deserialize;
use serde_json::Value;

/// The longest any runtime command may take before the oracle calls it hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a container may take to reach `stopped` after `kill KILL` or its program's exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a runtime command could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// cannot run {runtime}: {source}
    #[error("cannot run {runtime}: {source}")]
    Spawn {
        /// The runtime binary.
        runtime: PathBuf,
        /// What spawning reported.
        #[source]
        source: std::io::Error,
    },
    /// cannot set up the output file {path}: {source}
    #[error("cannot set up the output file {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What the file system reported.
        #[source]
        source: std::io::Error,
    },
    /// `{command}` did not finish within {timeout:?}; killed
    #[error("`{command}` did not finish within {timeout:?}; killed")]
    Hung {
        /// The command line.
        command: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// One runtime command's result.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The command line after the global flags.
    pub command: String,
    /// The runtime's exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr and the `--log` file, where runc-style runtimes write their errors.
    pub errors: String,
    /// The file stdout went to (a container started by `create` or `run` writes there too).
    pub stdout_path: PathBuf,
}

impl Ran {
    /// Whether the runtime exited 0.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// One line for a failure message.
    #[must_use]
    pub fn summary(&self) -> String {
        let errors: String = self.errors.split_whitespace().collect::<Vec<_>>().join(" ");
        let errors: String = errors.chars().take(300).collect();
        format!("`{}` → {}: {errors}", self.command, self.status)
    }
}

/// The state document (runtime-spec: State), as far as the oracle reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct StateDocument {
    /// `ociVersion`, REQUIRED.
    #[serde(rename = "ociVersion")]
    pub oci_version: Option<String>,
    /// `id`, REQUIRED.
    pub id: Option<String>,
    /// `status`, REQUIRED.
    pub status: Option<String>,
    /// `pid`, REQUIRED while created or running.
    pub pid: Option<i64>,
    /// `bundle`, REQUIRED: absolute path.
    pub bundle: Option<String>,
    /// `annotations`, OPTIONAL.
    pub annotations: Option<Value>,
}

impl StateDocument {
    /// The status, if it is one the model knows.
    #[must_use]
    pub fn model_status(&self) -> Option<Status> {
        self.status.as_deref().and_then(Status::from_name)
    }
}

/// What `state <id>` showed.
#[derive(Debug, Clone)]
pub enum Observed {
    /// The runtime failed: the container does not exist (or `state` is broken).
    Absent(Ran),
    /// A parsed document.
    Present(StateDocument),
    /// The runtime exited 0 but printed no state document.
    Garbled(Ran),
}

impl Observed {
    /// The status as the model sees it: `None` for absent, `Err` for garbage.
    ///
    /// # Errors
    ///
    /// A description when the runtime printed no document or an unknown status.
    pub fn status(&self) -> Result<Option<Status>, String> {
        match self {
            Self::Absent(_) => Ok(None),
            Self::Present(document) => document
                .model_status()
                .map(Some)
                .ok_or_else(|| format!("unknown status {:?}", document.status)),
            Self::Garbled(ran) => Err(format!("`state` printed no document: {}", ran.stdout)),
        }
    }
}

/// The runtime under test, with the global flags every command gets.
#[derive(Debug)]
pub struct Runtime {
    binary: PathBuf,
    root: PathBuf,
    out: PathBuf,
    commands: u64,
}

impl Runtime {
    /// A runtime whose state lives under `root`; command outputs go under `out`.
    #[must_use]
    pub fn new(binary: PathBuf, root: PathBuf, out: PathBuf) -> Self {
        Self {
            binary,
            root,
            out,
            commands: 0,
        }
    }

    /// The binary under test.
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs `<runtime> --root R --log L --log-format json <args>` with stdin from /dev/null.
    ///
    /// # Errors
    ///
    /// [`DriveError`] when the runtime cannot be spawned or hangs past [`COMMAND_TIMEOUT`];
    /// a non-zero exit is a normal [`Ran`].
    pub fn run(&mut self, args: &[&str]) -> Result<Ran, DriveError> {
        self.run_with_timeout(args, COMMAND_TIMEOUT)
    }

    /// [`Runtime::run`] with another deadline.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn run_with_timeout(
        &mut self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Ran, DriveError> {
        self.commands += 1;
        let base = self.out.join(format!("{:04}", self.commands));
        let stdout_path = base.with_extension("stdout");
        let stderr_path = base.with_extension("stderr");
        let log_path = base.with_extension("log");
        let create = |path: &Path| {
            fs::File::create(path).map_err(|source| DriveError::Output {
                path: path.to_owned(),
                source,
            })
        };
        let command = args.join(" ");
        let mut child = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log_path)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(&stdout_path)?)
            .stderr(create(&stderr_path)?)
            .spawn()
            .map_err(|source| DriveError::Spawn {
                runtime: self.binary.clone(),
                source,
            })?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < timeout => sleep(Duration::from_millis(5)),
                Ok(None) | Err(_) => {
                    // Our own child, by pid.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DriveError::Hung { command, timeout });
                }
            }
        };
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        Ok(Ran {
            command,
            status,
            stdout: read(&stdout_path),
            errors: format!("{}\n{}", read(&stderr_path), read(&log_path)),
            stdout_path,
        })
    }

    /// `state <id>`, parsed.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn state(&mut self, id: &str) -> Result<Observed, DriveError> {
        let ran = self.run(&["state", id])?;
        if !ran.ok() {
            return Ok(Observed::Absent(ran));
        }
        Ok(match serde_json::from_str::<StateDocument>(&ran.stdout) {
            Ok(document) => Observed::Present(document),
            Err(_) => Observed::Garbled(ran),
        })
    }

    /// Polls `state <id>` until it reports `stopped` (or the container is gone) or `timeout`
    /// passes; returns the last observation.
    ///
    /// # Errors
    ///
    /// As [`Runtime::run`].
    pub fn wait_stopped(&mut self, id: &str, timeout: Duration) -> Result<Observed, DriveError> {
        let started = Instant::now();
        loop {
            let observed = self.state(id)?;
            let done = match &observed {
                Observed::Present(document) => document.model_status() == Some(Status::Stopped),
                Observed::Absent(_) | Observed::Garbled(_) => true,
            };
            if done || started.elapsed() > timeout {
                return Ok(observed);
            }
            sleep(Duration::from_millis(50));
        }
    }
}
