//! The OCI runtime as the shim sees it: the runc command-line contract (`create`, `start`,
//! `exec`, `kill`, `delete`, `pause`, `resume`, `ps`, `update`) behind a trait, so the shim's
//! lifecycle can be tested against a fake and run against refeng-runc, runc or crun.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use super::reaper::Reaper;

/// The standard streams handed to a container process; `None` is `/dev/null`.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The process's stdin.
    pub stdin: Option<OwnedFd>,
    /// The process's stdout.
    pub stdout: Option<OwnedFd>,
    /// The process's stderr.
    pub stderr: Option<OwnedFd>,
}

/// How a process is created: its streams or, for a terminal, the console socket that receives the
/// pty master.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The container id.
    pub id: &'a str,
    /// Streams for a non-terminal process.
    pub io: ProcessIo,
    /// The `--console-socket` for a terminal process.
    pub console_socket: Option<&'a Path>,
}

/// An error of one runtime command.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// cannot run {binary}
    #[error("cannot run {binary}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    /// {binary} {command} failed (exit status {status}): {message}
    #[error("{binary} {command} failed (exit status {status}): {message}")]
    Failed {
        binary: String,
        command: String,
        status: u32,
        message: String,
    },
    /// cannot use {path}
    #[error("cannot use {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// unexpected output of {binary} {command}: {output}
    #[error("unexpected output of {binary} {command}: {output}")]
    Output {
        binary: String,
        command: String,
        output: String,
    },
}

impl RuntimeError {
    /// Whether the runtime said the container does not exist (runc's wording and ours).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Failed { message, .. }
            if message.contains("does not exist"))
    }
}

/// The runtime operations the shim uses. Every method is one runc command; the contract is runc's
/// (runc 1.1 `--help`).
pub trait Runtime: Send + Sync {
    /// `create --bundle B --pid-file P [--console-socket S] ID`; returns the init pid.
    ///
    /// # Errors
    /// [`RuntimeError`] when the command cannot run or fails.
    fn create(&self, bundle: &Path, launch: Launch<'_>) -> Result<u32, RuntimeError>;
    /// `start ID`.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// `exec --detach --process FILE --pid-file P [--console-socket S] ID`; returns the pid.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn exec(&self, exec_id: &str, process: &[u8], launch: Launch<'_>) -> Result<u32, RuntimeError>;
    /// `kill [--all] ID SIGNAL`.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError>;
    /// `delete [--force] ID`.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// `pause ID`.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    /// `resume ID`.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// `ps --format json ID`: the pids in the container.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError>;
    /// `update --resources FILE ID` with runtime-spec `LinuxResources` JSON.
    ///
    /// # Errors
    /// [`RuntimeError`].
    fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError>;
    /// Hands future exits of `pid` (a container process this runtime started) to the shim's exit
    /// handler; returns the exit when it already happened.
    fn watch_exit(&self, pid: u32) -> Option<(u32, SystemTime)>;
}

/// How a runtime command's exit is collected.
#[derive(Debug, Clone)]
pub enum Waiter {
    /// Through the shim's reaper thread (the serving shim is a subreaper).
    Reaper(Arc<Reaper>),
    /// With `waitpid` on the child (the `delete` subcommand, which runs no reaper).
    Direct,
}

/// A runc-compatible binary driven through its command line.
#[derive(Debug, Clone)]
pub struct RuncCli {
    binary: String,
    root: PathBuf,
    /// The bundle, where the json log, pid files and exec process files go.
    bundle: PathBuf,
    waiter: Waiter,
}

impl RuncCli {
    /// A runtime `binary` with state under `root`, writing its files into `bundle`.
    pub fn new(binary: &str, root: &Path, bundle: &Path, waiter: Waiter) -> Self {
        Self {
            binary: binary.to_string(),
            root: root.to_path_buf(),
            bundle: bundle.to_path_buf(),
            waiter,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.bundle.join("log.json")
    }

    /// Runs one command and returns its stdout; a failure carries the last error the runtime
    /// logged during this command (or its stdout/stderr when it logged none).
    fn run(
        &self,
        args: &[OsString],
        io: ProcessIo,
        capture: bool,
    ) -> Result<Vec<u8>, RuntimeError> {
        let command = args
            .iter()
            .find(|a| !a.to_string_lossy().starts_with('-'))
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = self.log_path();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .current_dir(&self.bundle);
        cmd.stdin(io.stdin.map_or_else(Stdio::null, Stdio::from));
        match (capture, io.stdout) {
            (true, _) => cmd.stdout(Stdio::piped()),
            (false, Some(fd)) => cmd.stdout(Stdio::from(fd)),
            (false, None) => cmd.stdout(Stdio::null()),
        };
        let stderr_captured = io.stderr.is_none();
        cmd.stderr(io.stderr.map_or_else(Stdio::piped, Stdio::from));
        tracing::debug!(binary = %self.binary, ?args, "runtime command");
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        // Drop our copies of the streams at once: the process keeps its own.
        drop(cmd);
        let mut out = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_end(&mut out);
        }
        let mut err = Vec::new();
        if stderr_captured {
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_end(&mut err);
            }
        }
        let status = match &self.waiter {
            Waiter::Reaper(reaper) => reaper.wait_for(child.id()),
            Waiter::Direct => match child.wait() {
                Ok(s) => s.code().map_or(255, |c| c as u32),
                Err(source) => {
                    return Err(RuntimeError::Spawn {
                        binary: self.binary.clone(),
                        source,
                    })
                }
            },
        };
        if status == 0 {
            return Ok(out);
        }
        let message = last_logged_error(&log, log_start)
            .or_else(|| {
                let text = String::from_utf8_lossy(&err).trim().to_string();
                (!text.is_empty()).then_some(text)
            })
            .or_else(|| {
                let text = String::from_utf8_lossy(&out).trim().to_string();
                (!text.is_empty()).then_some(text)
            })
            .unwrap_or_else(|| "no error logged (its stderr went to the process's stderr)".into());
        Err(RuntimeError::Failed {
            binary: self.binary.clone(),
            command,
            status,
            message,
        })
    }

    fn read_pid(&self, path: &Path) -> Result<u32, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::File {
            path: path.to_path_buf(),
            source,
        })?;
        text.trim().parse().map_err(|_| RuntimeError::Output {
            binary: self.binary.clone(),
            command: "pid-file".into(),
            output: text.clone(),
        })
    }
}

/// The message of the last `"level":"error"` line written to a runtime's json log after
/// `start`.
fn last_logged_error(log: &Path, start: u64) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        (value.get("level")?.as_str()? == "error")
            .then(|| value.get("msg")?.as_str().map(str::to_string))
            .flatten()
    })
}

/// A process launched without a stderr gets `/dev/null`, as [`ProcessIo`] promises: otherwise it
/// would inherit the pipe `run` reads the runtime's own stderr from, and that read would wait as
/// long as the process lives (a task created with empty stdio, as `ctr run --null-io` sends,
/// hung in Create). A terminal process gets the pty instead.
fn null_stderr(mut io: ProcessIo, terminal: bool) -> Result<ProcessIo, RuntimeError> {
    if io.stderr.is_none() && !terminal {
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|source| RuntimeError::File {
                path: PathBuf::from("/dev/null"),
                source,
            })?;
        io.stderr = Some(null.into());
    }
    Ok(io)
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

impl Runtime for RuncCli {
    fn create(&self, bundle: &Path, launch: Launch<'_>) -> Result<u32, RuntimeError> {
        let pid_file = self.bundle.join("init.pid");
        let mut args = vec![
            os("create"),
            os("--bundle"),
            os(bundle),
            os("--pid-file"),
            os(&pid_file),
        ];
        if let Some(socket) = launch.console_socket {
            args.extend([os("--console-socket"), os(socket)]);
        }
        args.push(os(launch.id));
        let io = null_stderr(launch.io, launch.console_socket.is_some())?;
        self.run(&args, io, false)?;
        self.read_pid(&pid_file)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&[os("start"), os(id)], ProcessIo::default(), false)
            .map(drop)
    }

    fn exec(&self, exec_id: &str, process: &[u8], launch: Launch<'_>) -> Result<u32, RuntimeError> {
        let process_file = self.bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        std::fs::write(&process_file, process).map_err(|source| RuntimeError::File {
            path: process_file.clone(),
            source,
        })?;
        let mut args = vec![
            os("exec"),
            os("--detach"),
            os("--process"),
            os(&process_file),
            os("--pid-file"),
            os(&pid_file),
        ];
        if let Some(socket) = launch.console_socket {
            args.extend([os("--console-socket"), os(socket)]);
        }
        args.push(os(launch.id));
        let io = null_stderr(launch.io, launch.console_socket.is_some())?;
        let result = self.run(&args, io, false);
        let _ = std::fs::remove_file(&process_file);
        result?;
        let pid = self.read_pid(&pid_file);
        let _ = std::fs::remove_file(&pid_file);
        pid
    }

    fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let mut args = vec![os("kill")];
        if all {
            args.push(os("--all"));
        }
        args.extend([os(id), os(signal.to_string())]);
        self.run(&args, ProcessIo::default(), false).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec![os("delete")];
        if force {
            args.push(os("--force"));
        }
        args.push(os(id));
        self.run(&args, ProcessIo::default(), false).map(drop)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&[os("pause"), os(id)], ProcessIo::default(), false)
            .map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&[os("resume"), os(id)], ProcessIo::default(), false)
            .map(drop)
    }

    fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let out = self.run(
            &[os("ps"), os("--format"), os("json"), os(id)],
            ProcessIo::default(),
            true,
        )?;
        serde_json::from_slice::<Option<Vec<u32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|_| RuntimeError::Output {
                binary: self.binary.clone(),
                command: "ps".into(),
                output: String::from_utf8_lossy(&out).into_owned(),
            })
    }

    fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        let file = self.bundle.join("update-resources.json");
        std::fs::write(&file, resources).map_err(|source| RuntimeError::File {
            path: file.clone(),
            source,
        })?;
        let result = self.run(
            &[os("update"), os("--resources"), os(&file), os(id)],
            ProcessIo::default(),
            false,
        );
        let _ = std::fs::remove_file(&file);
        result.map(drop)
    }

    fn watch_exit(&self, pid: u32) -> Option<(u32, SystemTime)> {
        match &self.waiter {
            Waiter::Reaper(reaper) => reaper.watch(pid),
            Waiter::Direct => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_of_this_command_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(&log, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_logged_error(&log, start), None);
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"container c does not exist\"}\n");
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            last_logged_error(&log, start).as_deref(),
            Some("container c does not exist")
        );
    }
}
