//! The `start` and `delete` subcommands: `start` binds the task socket, spawns the serving shim in
//! its own session with the socket inherited, writes `address` into the bundle and prints the
//! address; `delete` cleans up after a shim that died.

use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use containerd_shim_protos::api;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

use super::cli::Args;
use super::events::timestamp;
use super::mount;
use super::options::RuntimeOptions;
use super::runtime::{RuncCli, Runtime, Waiter};

/// The environment variable that hands the listening socket's descriptor to the serving shim.
pub const LISTEN_FD_ENV: &str = "REFENG_SHIM_LISTEN_FD";
/// The environment variable that names the directory for task sockets (default
/// [`DEFAULT_SOCKET_DIR`]).
pub const SOCKET_DIR_ENV: &str = "REFENG_SHIM_SOCKET_DIR";
/// Where task and console sockets go by default.
pub const DEFAULT_SOCKET_DIR: &str = "/run/refeng/s";

/// Why `start` or `delete` failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// cannot create the socket directory {0}
    #[error("cannot create the socket directory {0}")]
    SocketDir(PathBuf, #[source] std::io::Error),
    /// cannot bind the task socket {0}
    #[error("cannot bind the task socket {0}")]
    Bind(PathBuf, #[source] std::io::Error),
    /// cannot pass the task socket to the serving shim
    #[error("cannot pass the task socket to the serving shim")]
    Inherit(#[source] nix::errno::Errno),
    /// cannot spawn the serving shim
    #[error("cannot spawn the serving shim")]
    Spawn(#[source] std::io::Error),
    /// cannot write the address file
    #[error("cannot write the address file")]
    Write(#[source] crate::sys::durable::DurableWriteError),
    /// cannot find the bundle
    #[error("cannot find the bundle")]
    Bundle(#[source] std::io::Error),
}

/// The directory for task sockets.
pub fn socket_dir() -> PathBuf {
    std::env::var_os(SOCKET_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_DIR))
}

/// FNV-1a, 64 bits: a stable, short name for (containerd address, namespace, id), so one shim
/// socket path belongs to one task of one containerd.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The task socket path for `args`.
pub fn socket_path(args: &Args) -> PathBuf {
    socket_dir().join(format!(
        "{:016x}.sock",
        fnv1a(&[&args.address, &args.namespace, &args.id])
    ))
}

/// The bundle: `-bundle`, or the working directory containerd starts the shim in.
///
/// # Errors
/// [`StartError::Bundle`] when the working directory cannot be read.
pub fn bundle(args: &Args) -> Result<PathBuf, StartError> {
    match &args.bundle {
        Some(b) => Ok(PathBuf::from(b)),
        None => std::env::current_dir().map_err(StartError::Bundle),
    }
}

/// Runs `start`: returns the `unix://` address to print.
///
/// # Errors
/// [`StartError`] when the socket cannot be bound or the serving shim cannot be spawned.
pub fn start(args: &Args) -> Result<String, StartError> {
    let bundle = bundle(args)?;
    // containerd writes the runtime options to our stdin; keep them for the serving shim.
    if !std::io::stdin().is_terminal() {
        let mut bytes = Vec::new();
        if std::io::stdin().read_to_end(&mut bytes).is_ok() && !bytes.is_empty() {
            match Any::parse_from_bytes(&bytes).map(|any| RuntimeOptions::from_any(&any)) {
                Ok(Ok(options)) => {
                    if let Err(e) = options.persist(&bundle) {
                        tracing::warn!(error = %e, "runtime options from start not kept");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "runtime options from start ignored"),
                Err(e) => tracing::warn!(error = %e, "malformed runtime options on stdin"),
            }
        }
    }
    let path = socket_path(args);
    let address = format!("unix://{}", path.display());
    let dir = socket_dir();
    std::fs::create_dir_all(&dir).map_err(|e| StartError::SocketDir(dir.clone(), e))?;
    if UnixStream::connect(&path).is_ok() {
        // A shim for this task already serves (containerd retried start): reuse it.
        tracing::info!(%address, "shim already serving");
    } else {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| StartError::Bind(path.clone(), e))?;
        fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty())).map_err(StartError::Inherit)?;
        let exe = std::env::current_exe().map_err(StartError::Spawn)?;
        let mut daemon = Command::new(exe);
        // One malloc arena: the shim's threads are mostly parked, and an arena per thread would
        // cost more resident memory than it saves in contention.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            daemon.env("MALLOC_ARENA_MAX", "1");
        }
        daemon
            .args(&args.raw_flags)
            .env(LISTEN_FD_ENV, listener.as_raw_fd().to_string())
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                StartError::Spawn(e)
            })?;
    }
    write_address(&bundle, &address)?;
    Ok(address)
}

/// Records the task socket's address in the bundle: containerd reads it back after a restart to
/// reconnect to this shim, and two retried starts of one task may write it at once, so it is
/// written durably with a unique temp name ([`crate::sys::durable`]).
fn write_address(bundle: &Path, address: &str) -> Result<(), StartError> {
    crate::sys::durable::write(&bundle.join("address"), 0o644, address.as_bytes())
        .map_err(StartError::Write)
}

/// Runs `delete` after a shim died: force-deletes the container in the runtime, takes the rootfs
/// off, removes the task socket, and returns the `DeleteResponse` bytes to print.
///
/// # Errors
/// [`StartError::Bundle`] when the bundle cannot be found.
pub fn delete(args: &Args) -> Result<Vec<u8>, StartError> {
    let bundle = bundle(args)?;
    let options = RuntimeOptions::load(&bundle).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "runtime options unreadable, using defaults");
        RuntimeOptions::default()
    });
    let runtime = RuncCli::new(
        options.binary(),
        &options.root_for(&args.namespace),
        &bundle,
        Waiter::Direct,
    );
    match runtime.delete(&args.id, true) {
        Ok(()) => {}
        // The usual case: the shim deleted the container before it exited.
        Err(e) if e.is_not_found() => tracing::debug!(error = %e, "nothing left to delete"),
        Err(e) => tracing::warn!(error = %e, "runtime delete failed"),
    }
    mount::unmount_rootfs(&bundle.join("rootfs"));
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let _ = std::fs::remove_file(address.trim().trim_start_matches("unix://"));
    }
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let resp = api::DeleteResponse {
        pid,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    Ok(resp.write_to_bytes().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd retries `start` of one task, so two shim processes may write the same bundle's
    /// address at once: the file is always one whole address, no writer fails, and no temp file
    /// stays behind. (The fixed `address.tmp` this replaced failed here with ENOENT.)
    #[test]
    fn concurrent_address_writes_never_collide_or_tear() {
        let dir = tempfile::tempdir().unwrap();
        let addresses: Vec<String> = (0..4)
            .map(|i| format!("unix:///run/s/{}.sock", i.to_string().repeat(100 * (i + 1))))
            .collect();
        std::thread::scope(|s| {
            for a in &addresses {
                let bundle = dir.path();
                s.spawn(move || {
                    for _ in 0..200 {
                        write_address(bundle, a).expect("write address");
                    }
                });
            }
            let path = dir.path().join("address");
            let addresses = &addresses;
            s.spawn(move || {
                for _ in 0..400 {
                    match std::fs::read_to_string(&path) {
                        Ok(got) => assert!(addresses.contains(&got), "torn address {got:?}"),
                        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                    }
                }
            });
        });
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["address"], "nothing but the address is left");
    }

    #[test]
    fn socket_names_differ_per_task_and_fit_sun_path() {
        let a = fnv1a(&["/run/c.sock", "default", "a"]);
        let b = fnv1a(&["/run/c.sock", "default", "b"]);
        let c = fnv1a(&["/run/c.sock", "defaulta", ""]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(format!("{DEFAULT_SOCKET_DIR}/{a:016x}.sock").len() < 108);
    }
}
