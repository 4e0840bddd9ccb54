//! Lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks"): each hook runs with exactly
//! its own args and env, the container state on stdin, and an optional timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::runtime::state::StateReport;

/// The lifecycle points at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// Deprecated; runs with createRuntime, in the runtime namespace.
    Prestart,
    /// After namespaces exist, before pivot_root, in the runtime namespace.
    CreateRuntime,
    /// After createRuntime, before pivot_root, in the container namespace.
    CreateContainer,
    /// After `start`, before the user program, in the container namespace.
    StartContainer,
    /// After the user program started, in the runtime namespace.
    Poststart,
    /// After the container is deleted, in the runtime namespace.
    Poststop,
}

impl std::fmt::Display for HookPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookPoint::Prestart => "prestart",
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        })
    }
}

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// the hook could not be started
    #[error("{point} hook {path}: cannot run it")]
    Spawn {
        /// Lifecycle point.
        point: HookPoint,
        /// Hook path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// the hook exited unsuccessfully
    #[error("{point} hook {path} failed: {status}{stderr}")]
    Failed {
        /// Lifecycle point.
        point: HookPoint,
        /// Hook path.
        path: PathBuf,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The start of its stderr, prefixed by ": " when not empty.
        stderr: String,
    },
    /// the hook ran past its timeout and was killed
    #[error("{point} hook {path} timed out after {timeout}s")]
    TimedOut {
        /// Lifecycle point.
        point: HookPoint,
        /// Hook path.
        path: PathBuf,
        /// The timeout in seconds.
        timeout: i64,
    },
}

/// Runs `hooks` in order; stops at the first failure.
///
/// # Errors
/// The first hook that could not run, failed or timed out.
pub fn run(point: HookPoint, hooks: &[Hook], state: &StateReport) -> Result<(), HookError> {
    let stdin = serde_json::to_vec(state).unwrap_or_default();
    for hook in hooks {
        run_one(point, hook, &stdin)?;
    }
    Ok(())
}

/// Runs every hook of `hooks` even when some fail, logging each failure as a warning: the
/// runtime-spec's rule for poststart and poststop ("the remaining hooks and lifecycle continue as
/// if the hook had succeeded").
pub fn run_all_warn(point: HookPoint, hooks: &[Hook], state: &StateReport) {
    let stdin = serde_json::to_vec(state).unwrap_or_default();
    for hook in hooks {
        if let Err(e) = run_one(point, hook, &stdin) {
            tracing::warn!(error = %e, "hook failed");
        }
    }
}

fn run_one(point: HookPoint, hook: &Hook, stdin: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let spawn_err = |source| HookError::Spawn {
        point,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(&path);
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    tracing::debug!(%point, path = %path.display(), "running hook");
    // Forked, not posix_spawn'ed: startContainer hooks run under the container's seccomp filter,
    // which may refuse the clone3 posix_spawn uses (see `spawn_forked`); runc (Go) starts hooks
    // with clone(2) as well.
    let mut child = crate::sys::process::spawn_forked(&mut cmd).map_err(spawn_err)?;
    if let Some(mut input) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe: that is not a failure.
        let _ = input.write_all(stdin);
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(status) => break status,
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HookError::TimedOut {
                        point,
                        path,
                        timeout: hook.timeout().unwrap_or_default(),
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let mut buf = Vec::new();
        let _ = err.by_ref().take(4096).read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).trim().to_string();
        if !text.is_empty() {
            stderr = format!(": {text}");
        }
    }
    Err(HookError::Failed {
        point,
        path,
        status,
        stderr,
    })
}

/// Whether `spec` has hooks that run in the runtime's namespace while init waits (runtime-spec
/// "Lifecycle" step 4: prestart, deprecated, and createRuntime). Without any, init does not stop
/// for them.
#[must_use]
pub fn has_runtime_namespace_hooks(spec: &oci_spec::runtime::Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        #[allow(deprecated)]
        let prestart = h.prestart();
        prestart.as_ref().is_some_and(|l| !l.is_empty())
            || h.create_runtime().as_ref().is_some_and(|l| !l.is_empty())
    })
}
