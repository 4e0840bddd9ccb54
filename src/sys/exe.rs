//! Running the runtime from a sealed in-memory copy of its own binary, so that no process a
//! container can reach has the host's refeng-runc file as its /proc/<pid>/exe (the
//! CVE-2019-5736 class: a container reopening that file for writing and replacing the runtime).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;
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
    let sealed: OwnedFd = match overlay::sealed() {
        Ok(fd) => fd,
        Err(errno) => {
            tracing::debug!(%errno, "no read-only overlay for the binary; copying it into a sealed memfd");
            sealed_copy()?
        }
    };
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
    match nix::unistd::fexecve(&sealed, &args, &env) {
        Err(e) => Err(e),
        Ok(never) => match never {},
    }
}

/// The whole binary copied into a memfd and sealed: what runc did up to 1.1, and what is left
/// where the overlay cannot be made (no CAP_SYS_ADMIN, no overlayfs, an odd file system).
fn sealed_copy() -> Result<OwnedFd, Errno> {
    let mut source = File::open("/proc/self/exe").map_err(io_errno)?;
    let memfd = memfd_create(
        c"refeng-runc",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut copy = File::from(memfd);
    // std copies file to file with copy_file_range/sendfile: no userspace buffer.
    std::io::copy(&mut source, &mut copy).map_err(io_errno)?;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals()))?;
    Ok(OwnedFd::from(copy))
}

/// The binary opened through a private read-only overlayfs, as runc 1.2 seals it: no copy.
///
/// An overlay without an upper layer is read-only at the superblock, so opening the file for
/// writing through it (as /proc/<pid>/exe of the running runtime) fails with EROFS whatever
/// the caller's privileges, and unlike a read-only bind mount there is no mount flag to flip
/// back. The overlay is made with the new mount API and never attached to any mount namespace:
/// nothing can reach it but through the one O_PATH descriptor of the binary that is executed.
/// Its lower layers are the binary's directory and an empty detached tmpfs (overlayfs wants two
/// lower layers when there is no upper one). Before it is used, a write open of the file
/// through it is tried and must fail with EROFS.
///
/// Costs 0.3-0.5 ms where the copy costs 1.5-5 ms (benches/README.md), and shares the page
/// cache of the installed binary instead of filling new shmem pages on every start.
mod overlay {
    use std::ffi::{CStr, CString};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    use nix::errno::Errno;
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;

    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

    /// Takes ownership of a descriptor a syscall just returned.
    fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
        let fd = i32::try_from(Errno::result(ret)?).map_err(|_| Errno::EBADF)?;
        // SAFETY: a successful fsopen/fsmount returns a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// A file system context of type `fs` with its string options set, created.
    fn context(fs: &CStr, options: &[(&CStr, &CStr)]) -> Result<OwnedFd, Errno> {
        // SAFETY: fsopen reads the NUL-terminated name during the call only.
        let ctx = owned(unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC) })?;
        for (key, value) in options {
            // SAFETY: key and value are NUL-terminated strings that outlive the call, which
            // only reads them; the descriptor is a live fs context.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    ctx.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    key.as_ptr(),
                    value.as_ptr(),
                    0,
                )
            };
            Errno::result(ret)?;
        }
        // SAFETY: FSCONFIG_CMD_CREATE takes no pointers; the descriptor is a live fs context.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                ctx.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        Errno::result(ret)?;
        Ok(ctx)
    }

    /// A detached mount of the created context `ctx`.
    fn mount(ctx: &OwnedFd, attrs: libc::c_uint) -> Result<OwnedFd, Errno> {
        // SAFETY: fsmount takes the context descriptor and flags only, no pointers.
        owned(unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
    }

    /// The running binary, opened O_PATH through the overlay.
    pub(super) fn sealed() -> Result<OwnedFd, Errno> {
        let exe = std::fs::read_link("/proc/self/exe").map_err(super::io_errno)?;
        let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
            return Err(Errno::ENOENT);
        };
        // overlayfs splits lowerdir at ':' and unescapes '\'; a comma ends the option.
        if !exe.is_absolute()
            || dir
                .as_os_str()
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b':' | b',' | b'\\'))
        {
            return Err(Errno::EINVAL);
        }
        let empty = mount(
            &context(c"tmpfs", &[])?,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )?;
        let mut lower = dir.as_os_str().as_bytes().to_vec();
        lower.extend_from_slice(format!(":/proc/self/fd/{}", empty.as_raw_fd()).as_bytes());
        let lower = CString::new(lower).map_err(|_| Errno::EINVAL)?;
        let ctx = context(c"overlay", &[(c"lowerdir", &lower)])?;
        let overlay = mount(
            &ctx,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )?;
        let file = openat(
            &overlay,
            name,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // The defence itself, checked: the file must not open for writing.
        match open(
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::EROFS) => Ok(file),
            Err(e) => Err(e),
            Ok(_) => Err(Errno::EPERM),
        }
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
