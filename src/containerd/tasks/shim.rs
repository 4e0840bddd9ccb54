//! One shim process seen from the daemon: finding its binary from the runtime name, starting it
//! with the shim v2 `start` protocol, cleaning up after it with `delete`, and its ttrpc task API.
//!
//! The task API is called under `containerd.task.v2.Task`, the name containerd 1.6/1.7 and their
//! shims (containerd-shim-runc-v2 from Debian) serve; refeng-shim serves it too. The protos crate
//! generates clients only for the v3 name, so requests are built here over its message types.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::api;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

/// The ttrpc service name the task API is served under by containerd 1.6/1.7 shims.
pub const TASK_SERVICE: &str = "containerd.task.v2.Task";

/// How long a `start` or `delete` invocation of a shim binary may take.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a shim could not be found, started, cleaned up or asked.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// runtime name {0:?} is not of the form io.containerd.<name>.<version> nor a path
    #[error("runtime name {0:?} is not of the form io.containerd.<name>.<version> nor a path")]
    RuntimeName(String),
    /// shim binary {binary} for runtime {runtime} not found in {searched:?}
    #[error("shim binary {binary} for runtime {runtime} not found in {searched:?}")]
    BinaryNotFound {
        /// The runtime name.
        runtime: String,
        /// The binary name derived from it.
        binary: String,
        /// The directories searched.
        searched: Vec<PathBuf>,
    },
    /// cannot run {binary} {action}
    #[error("cannot run {binary} {action}")]
    Spawn {
        /// The shim binary.
        binary: PathBuf,
        /// `start` or `delete`.
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// {binary} {action} failed ({status}): {stderr}
    #[error("{binary} {action} failed ({status}): {stderr}")]
    Failed {
        /// The shim binary.
        binary: PathBuf,
        /// `start` or `delete`.
        action: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stderr (and stdout).
        stderr: String,
    },
    /// {binary} {action} did not finish within {INVOCATION_TIMEOUT:?}
    #[error("{binary} {action} did not finish within {timeout:?}")]
    Timeout {
        /// The shim binary.
        binary: PathBuf,
        /// `start` or `delete`.
        action: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// {binary} start printed no usable address: {output:?}
    #[error("{binary} start printed no usable address: {output:?}")]
    Address {
        /// The shim binary.
        binary: PathBuf,
        /// What it printed.
        output: String,
    },
    /// {binary} delete printed a malformed DeleteResponse
    #[error("{binary} delete printed a malformed DeleteResponse")]
    DeleteResponse {
        /// The shim binary.
        binary: PathBuf,
        #[source]
        source: protobuf::Error,
    },
    /// cannot connect to the shim at {address}
    #[error("cannot connect to the shim at {address}")]
    Connect {
        /// The shim's address.
        address: String,
        #[source]
        source: ttrpc::Error,
    },
    /// shim {method}: {source} (a status answer by its message alone)
    #[error("shim {method}: {}", call_text(source))]
    Call {
        /// The task API method.
        method: &'static str,
        #[source]
        source: ttrpc::Error,
    },
}

/// What a failed call says: the message of the shim's status answer (ttrpc's own text for it
/// is the status's debug form, which callers up to the docker CLI would print), or the
/// transport's error.
fn call_text(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

impl ShimError {
    /// The ttrpc status code of a failed call, when the shim answered one.
    pub fn status_code(&self) -> Option<ttrpc::Code> {
        match self {
            ShimError::Call {
                source: ttrpc::Error::RpcStatus(status),
                ..
            } => Some(status.code()),
            _ => None,
        }
    }

    /// The message of a failed call's status, when the shim answered one.
    pub fn status_message(&self) -> Option<&str> {
        match self {
            ShimError::Call {
                source: ttrpc::Error::RpcStatus(status),
                ..
            } => Some(status.message()),
            _ => None,
        }
    }

    /// Whether the shim is unreachable (gone, or its connection broke), as opposed to a refusal.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ShimError::Connect { .. } => true,
            ShimError::Call { source, .. } => !matches!(source, ttrpc::Error::RpcStatus(_)),
            _ => false,
        }
    }
}

/// The shim binary name containerd derives from a runtime name: `io.containerd.runc.v2` ->
/// `containerd-shim-runc-v2` (the last two dot-separated parts).
///
/// # Errors
/// [`ShimError::RuntimeName`] for a name with fewer than two parts or an empty part.
pub fn binary_name(runtime: &str) -> Result<String, ShimError> {
    let parts: Vec<&str> = runtime.split('.').collect();
    match parts.as_slice() {
        [.., name, version]
            if !name.is_empty()
                && !version.is_empty()
                && parts.len() >= 2
                && !runtime.contains('/') =>
        {
            Ok(format!("containerd-shim-{name}-{version}"))
        }
        _ => Err(ShimError::RuntimeName(runtime.to_string())),
    }
}

/// Finds the shim binary for `runtime`: an absolute path is used as is; otherwise the derived
/// name is looked up in `dirs` (the daemon's own directory first, then `PATH`, as containerd
/// does).
///
/// # Errors
/// [`ShimError::RuntimeName`] or [`ShimError::BinaryNotFound`].
pub fn find_binary(runtime: &str, dirs: &[PathBuf]) -> Result<PathBuf, ShimError> {
    if runtime.starts_with('/') {
        let path = PathBuf::from(runtime);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ShimError::BinaryNotFound {
                runtime: runtime.to_string(),
                binary: runtime.to_string(),
                searched: Vec::new(),
            })
        };
    }
    let binary = binary_name(runtime)?;
    dirs.iter()
        .map(|d| d.join(&binary))
        .find(|p| p.is_file())
        .ok_or_else(|| ShimError::BinaryNotFound {
            runtime: runtime.to_string(),
            binary,
            searched: dirs.to_vec(),
        })
}

/// The directories a shim binary is looked up in: the daemon's own, then `PATH`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// What a shim invocation needs to know about the daemon.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The shim binary.
    pub binary: PathBuf,
    /// The task's namespace.
    pub namespace: String,
    /// The task (container) id.
    pub id: String,
    /// The bundle directory (the working directory of the invocation).
    pub bundle: PathBuf,
    /// The daemon's gRPC address (`-address`, `GRPC_ADDRESS`).
    pub address: String,
    /// The ttrpc address events are forwarded to (`TTRPC_ADDRESS`).
    pub ttrpc_address: String,
    /// The program shims may run to publish events (`-publish-binary`).
    pub publish_binary: PathBuf,
    /// Extra environment, e.g. `PATH` for the runtime binary.
    pub env: Vec<(OsString, OsString)>,
}

impl Invocation {
    fn command(&self, action: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-namespace")
            .arg(&self.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .arg("-id")
            .arg(&self.id);
        if action == "delete" {
            cmd.arg("-bundle").arg(&self.bundle);
        }
        cmd.arg(action)
            .current_dir(&self.bundle)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .env("GRPC_ADDRESS", &self.address)
            .env("NAMESPACE", &self.namespace)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the binary with `action`, `stdin` as its input, and returns its stdout.
    fn run(&self, action: &'static str, stdin: &[u8]) -> Result<Vec<u8>, ShimError> {
        let mut child = self
            .command(action)
            .spawn()
            .map_err(|source| ShimError::Spawn {
                binary: self.binary.clone(),
                action,
                source,
            })?;
        if let Some(mut input) = child.stdin.take() {
            // A shim that does not read its options closes stdin early: not an error.
            let _ = input.write_all(stdin);
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(INVOCATION_TIMEOUT) {
            Ok(output) => output.map_err(|source| ShimError::Spawn {
                binary: self.binary.clone(),
                action,
                source,
            })?,
            Err(_) => {
                // Our own child, by its pid: it has not been reaped (the waiting thread holds it).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(ShimError::Timeout {
                    binary: self.binary.clone(),
                    action,
                    timeout: INVOCATION_TIMEOUT,
                });
            }
        };
        if !output.status.success() {
            return Err(ShimError::Failed {
                binary: self.binary.clone(),
                action,
                status: output.status,
                stderr: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    String::from_utf8_lossy(&output.stdout).trim()
                ),
            });
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            tracing::debug!(binary = %self.binary.display(), action, stderr = %stderr.trim(), "shim said");
        }
        Ok(output.stdout)
    }

    /// `start`: the shim spawns its serving process and prints the address; the runtime
    /// options go to its stdin, marshalled as containerd does (an Any).
    ///
    /// # Errors
    /// [`ShimError`] when the binary fails or prints no address.
    pub fn start(&self, options: Option<&Any>) -> Result<String, ShimError> {
        let stdin = options
            .and_then(|o| o.write_to_bytes().ok())
            .unwrap_or_default();
        let out = self.run("start", &stdin)?;
        parse_address(&out).ok_or_else(|| ShimError::Address {
            binary: self.binary.clone(),
            output: String::from_utf8_lossy(&out).into_owned(),
        })
    }

    /// `delete`: cleans up after a shim that is gone (the runtime's container, the rootfs
    /// mount, the socket), returning what the shim reports about the dead init.
    ///
    /// # Errors
    /// [`ShimError`] when the binary fails or prints a malformed response.
    pub fn delete(&self) -> Result<api::DeleteResponse, ShimError> {
        let out = self.run("delete", &[])?;
        api::DeleteResponse::parse_from_bytes(&out).map_err(|source| ShimError::DeleteResponse {
            binary: self.binary.clone(),
            source,
        })
    }
}

/// The address a shim's `start` printed: a plain address (containerd 1.6/1.7 shims) or the JSON
/// bootstrap parameters of newer ones (`{"version":..,"address":..,"protocol":"ttrpc"}`).
pub fn parse_address(out: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(out).ok()?.trim();
    if text.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Bootstrap {
            address: String,
            #[serde(default)]
            protocol: String,
        }
        let b: Bootstrap = serde_json::from_str(text).ok()?;
        return (b.protocol.is_empty() || b.protocol == "ttrpc")
            .then_some(b.address)
            .filter(|a| !a.is_empty());
    }
    (!text.is_empty() && !text.contains(char::is_whitespace)).then(|| text.to_string())
}

/// A connection to one shim's task API.
#[derive(Clone)]
pub struct ShimClient {
    address: String,
    client: ttrpc::Client,
}

impl std::fmt::Debug for ShimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimClient")
            .field("address", &self.address)
            .finish()
    }
}

/// How long a request that should answer at once may take (everything but Wait).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! call {
    ($(#[$doc:meta])* $name:ident, $method:literal, $req:ty, $resp:ty, $timeout:expr) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// [`ShimError::Call`] with the shim's status, or the transport's error.
        pub fn $name(&self, req: &$req) -> Result<$resp, ShimError> {
            self.call($method, req, $timeout)
        }
    };
}

impl ShimClient {
    /// Connects to `address` (`unix://PATH`, or a bare path).
    ///
    /// # Errors
    /// [`ShimError::Connect`] when nothing answers there.
    pub fn connect(address: &str) -> Result<Self, ShimError> {
        let uri = if address.contains("://") {
            address.to_string()
        } else {
            format!("unix://{address}")
        };
        let client = ttrpc::Client::connect(&uri).map_err(|source| ShimError::Connect {
            address: address.to_string(),
            source,
        })?;
        Ok(Self {
            address: address.to_string(),
            client,
        })
    }

    /// The address this client is connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn call<Req: Message, Resp: Message>(
        &self,
        method: &'static str,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, ShimError> {
        let err = |source| ShimError::Call { method, source };
        let payload = req
            .write_to_bytes()
            .map_err(|e| err(ttrpc::Error::Others(e.to_string())))?;
        let timeout_nano = timeout.map_or(0, |t| t.as_nanos() as i64);
        let request = ttrpc::Request {
            service: TASK_SERVICE.to_string(),
            method: method.to_string(),
            timeout_nano,
            payload,
            ..Default::default()
        };
        let response = self.client.request(request).map_err(err)?;
        Resp::parse_from_bytes(&response.payload).map_err(|e| {
            err(ttrpc::Error::Others(format!(
                "malformed {method} reply: {e}"
            )))
        })
    }

    call!(/// Creates the task's init in the runtime.
        create, "Create", api::CreateTaskRequest, api::CreateTaskResponse, Some(CALL_TIMEOUT));
    call!(/// Starts init or an exec process.
        start, "Start", api::StartRequest, api::StartResponse, Some(CALL_TIMEOUT));
    call!(/// Deletes init or an exec process.
        delete, "Delete", api::DeleteRequest, api::DeleteResponse, Some(CALL_TIMEOUT));
    call!(/// Lists the task's processes.
        pids, "Pids", api::PidsRequest, api::PidsResponse, Some(CALL_TIMEOUT));
    call!(/// Freezes the task.
        pause, "Pause", api::PauseRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Thaws the task.
        resume, "Resume", api::ResumeRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Signals init or an exec process.
        kill, "Kill", api::KillRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Adds an exec process.
        exec, "Exec", api::ExecProcessRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Resizes a process's pty.
        resize_pty, "ResizePty", api::ResizePtyRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Closes a process's stdin.
        close_io, "CloseIO", api::CloseIORequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Updates the task's resources.
        update, "Update", api::UpdateTaskRequest, api::Empty, Some(CALL_TIMEOUT));
    call!(/// Waits for a process to exit; no timeout.
        wait, "Wait", api::WaitRequest, api::WaitResponse, None);
    call!(/// The task's cgroup statistics.
        stats, "Stats", api::StatsRequest, api::StatsResponse, Some(CALL_TIMEOUT));
    call!(/// A process's state.
        state, "State", api::StateRequest, api::StateResponse, Some(CALL_TIMEOUT));
    call!(/// The shim's and init's pids.
        connect_info, "Connect", api::ConnectRequest, api::ConnectResponse, Some(CALL_TIMEOUT));
    call!(/// Asks the shim to exit; it refuses while a process is left.
        shutdown, "Shutdown", api::ShutdownRequest, api::Empty, Some(CALL_TIMEOUT));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_come_from_the_last_two_parts() {
        assert_eq!(
            binary_name("io.containerd.runc.v2").unwrap(),
            "containerd-shim-runc-v2"
        );
        assert_eq!(
            binary_name("io.containerd.refeng.v2").unwrap(),
            "containerd-shim-refeng-v2"
        );
        for bad in ["", "runc", "io.containerd.", ".v2", "a/b.v2"] {
            assert!(
                matches!(binary_name(bad), Err(ShimError::RuntimeName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn addresses_plain_and_bootstrap_json() {
        assert_eq!(
            parse_address(b"unix:///run/s/ab.sock\n").as_deref(),
            Some("unix:///run/s/ab.sock")
        );
        assert_eq!(
            parse_address(br#"{"version":3,"address":"unix:///s","protocol":"ttrpc"}"#).as_deref(),
            Some("unix:///s")
        );
        assert_eq!(
            parse_address(br#"{"version":3,"address":"unix:///s","protocol":"grpc"}"#),
            None
        );
        assert_eq!(parse_address(b""), None);
        assert_eq!(parse_address(b"two words"), None);
        assert_eq!(parse_address(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_missing_binary_names_what_was_searched() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_binary("io.containerd.nosuch.v9", &[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            err.to_string().contains("containerd-shim-nosuch-v9"),
            "{err}"
        );
    }
}
