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

/// The seals that make the copy immutable.
fn seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
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
