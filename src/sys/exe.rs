//! Running the runtime from a sealed in-memory copy of its own binary, so that no process a
//! container can reach has the host's refeng-runc file as its /proc/<pid>/exe (the
//! CVE-2019-5736 class: a container reopening that file for writing and replacing the runtime).

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Set in the environment of the re-executed copy, so a kernel that loses the seals can never
/// make us re-execute forever.
const MARKER: &str = "_REFENG_RUNC_SEALED";

/// The seals that make the copy immutable: no write(2), no new writable shared mapping, no
/// change of size, no change of the seals. F_SEAL_FUTURE_WRITE (Linux 5.1) rather than
/// F_SEAL_WRITE: both refuse every write from then on, through any descriptor, also one the
/// container reopens through /proc; F_SEAL_WRITE in addition makes sure no writable mapping
/// exists yet, and to be sure it waits for every page of the copy still referenced elsewhere
/// (pages sitting in another CPU's LRU batch right after the copy count) and fails with EBUSY
/// if they stay so. Nothing ever maps the copy, so that wait is pure cost, and its EBUSY an
/// occasional failed container start.
fn seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_FUTURE_WRITE
}

/// The subcommands that fork processes ending up inside a container (`create`, `run`, `exec`:
/// `runtime::cli::Command::builds_container_processes`), as they appear on the command line.
const SEALED_COMMANDS: &[&str] = &["create", "run", "exec"];

/// Whether any of `args` (the command line without the program name) is the name of a command
/// that must run sealed. Runs before the command line is parsed, so it over-approximates: an
/// option value or container id spelled like such a command counts too, which costs one
/// re-execution and is otherwise harmless; a command that must run sealed is never missed (its
/// name is always one argument of its own).
pub fn names_sealed_command<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    args.into_iter()
        .any(|a| SEALED_COMMANDS.iter().any(|c| a.as_ref() == *c))
}

/// Whether the running binary is a sealed memfd.
pub fn running_sealed() -> bool {
    File::open("/proc/self/exe")
        .ok()
        .and_then(|f| fcntl(&f, FcntlArg::F_GET_SEALS).ok())
        .is_some_and(|bits| SealFlag::from_bits_truncate(bits).contains(seals()))
}

/// Re-executes the current command line from a sealed memfd copy of the binary, unless it
/// already runs from one. Returns only if that was not needed.
///
/// # Errors
/// The errno of the step that failed (the caller then stops: running unsealed would be unsafe).
pub fn ensure_sealed() -> Result<(), Errno> {
    if running_sealed() || std::env::var_os(MARKER).is_some() {
        return Ok(());
    }
    let mut source = File::open("/proc/self/exe").map_err(io_errno)?;
    let memfd = memfd_create(
        c"refeng-runc",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut copy = File::from(memfd);
    // std copies file to file with copy_file_range/sendfile: no userspace buffer.
    std::io::copy(&mut source, &mut copy).map_err(io_errno)?;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals()))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| Errno::EINVAL))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|_| Errno::EINVAL)
        })
        .collect::<Result<_, _>>()?;
    env.push(CString::new(format!("{MARKER}=1")).map_err(|_| Errno::EINVAL)?);
    match nix::unistd::fexecve(&copy, &args, &env) {
        Err(e) => Err(e),
        Ok(never) => match never {},
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::names_sealed_command;

    #[test]
    fn sealed_commands_are_found_wherever_they_stand() {
        assert!(names_sealed_command(["run", "--bundle", "b", "id"]));
        assert!(names_sealed_command([
            "--root", "/r", "--log=/l", "create", "id"
        ]));
        assert!(names_sealed_command(["--debug", "exec", "-t", "id", "sh"]));
        assert!(!names_sealed_command(["state", "id"]));
        assert!(!names_sealed_command([
            "--root", "/run/x", "delete", "runner"
        ]));
        // Over-approximation: a container named like a command.
        assert!(names_sealed_command(["kill", "run"]));
    }
}
