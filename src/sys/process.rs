//! Process creation and process-wide attributes that `nix` does not wrap safely.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Which side of a [`clone_fork`] we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The caller, with the child's pid.
    Parent(Pid),
    /// The new process.
    Child,
}

/// Why [`clone_fork`] did not fork.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// another thread shares the process, so the child could inherit a lock held forever
    #[error("refusing to fork a multi-threaded process: the child could inherit locks held by other threads")]
    MultiThreaded,
    /// the single-thread check itself failed (a seccomp filter refusing unshare(2), ...)
    #[error("cannot tell whether the process is single-threaded")]
    Check(#[source] Errno),
    /// clone(2) failed
    #[error("clone")]
    Clone(#[source] Errno),
}

/// `clone(2)` with fork semantics (no new stack, child gets SIGCHLD on exit) plus namespace
/// `flags`: one syscall creates the process directly inside its new namespaces, which is what
/// makes it pid 1 of a new pid namespace.
///
/// The child runs with a copy of the parent's memory but only the calling thread, so a lock
/// another thread held at that moment would stay locked in the child forever, and a structure
/// that thread was changing would stay half-changed. This function therefore refuses unless the
/// calling thread is the only one, checked right before the clone: `unshare(CLONE_VM)` is a
/// no-op that the kernel refuses with EINVAL exactly when another task shares our memory
/// (unshare(2), kernel/fork.c `check_unshare_flags`). No thread can appear between the check and
/// the clone, since the only thread that could start one is the one running this function. The
/// kernel check works in any mount namespace, with or without /proc, which matters for the
/// intermediate processes that fork after joining a container's namespaces.
///
/// # Errors
/// [`ForkError::MultiThreaded`] when another thread exists, [`ForkError::Check`] when the
/// check cannot run, [`ForkError::Clone`] with the errno of `clone(2)`.
pub fn clone_fork(flags: CloneFlags) -> Result<Forked, ForkError> {
    match nix::sched::unshare(CloneFlags::CLONE_VM) {
        Ok(()) => {}
        Err(Errno::EINVAL) => return Err(ForkError::MultiThreaded),
        Err(e) => return Err(ForkError::Check(e)),
    }
    // SAFETY: the check above proved the calling thread is the only one (see the function's
    // documentation for why none can have started since).
    unsafe { clone_fork_unchecked(flags) }.map_err(ForkError::Clone)
}

/// [`clone_fork`] without the single-thread check.
///
/// # Safety
/// The calling thread must be the only thread of the process (no other task may share its
/// memory): the child gets a copy of the memory with only this thread in it, and any lock or
/// data structure another thread was holding or changing would stay so in the child.
unsafe fn clone_fork_unchecked(flags: CloneFlags) -> Result<Forked, Errno> {
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a NULL stack the kernel gives the child a copy-on-write copy of the caller's
    // stack, exactly like fork(2); no pointers are passed. The single-thread requirement is this
    // function's contract, upheld by its caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// `clone3(2)`'s CLONE_INTO_CGROUP (uapi linux/sched.h; Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to its `cgroup` member (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// [`clone_fork`] with the child born in the cgroup v2 directory `cgroup` (`clone3(2)` with
/// CLONE_INTO_CGROUP): the child is never anywhere else, and no process is moved between
/// cgroups, which spares the global lock a move takes (see `runtime::cgroups::Entry`).
///
/// # Errors
/// As [`clone_fork`]; [`ForkError::Clone`] carries the errno of `clone3(2)`: ENOSYS before
/// Linux 5.7 or from a seccomp filter that does not list clone3, EPERM/EACCES/ENOENT when the
/// caller may not enter that cgroup, EAGAIN over the cgroup's pid limit.
pub fn clone_fork_into(flags: CloneFlags, cgroup: BorrowedFd<'_>) -> Result<Forked, ForkError> {
    match nix::sched::unshare(CloneFlags::CLONE_VM) {
        Ok(()) => {}
        Err(Errno::EINVAL) => return Err(ForkError::MultiThreaded),
        Err(e) => return Err(ForkError::Check(e)),
    }
    let fd = u64::try_from(cgroup.as_raw_fd()).map_err(|_| ForkError::Clone(Errno::EBADF))?;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd,
        ..CloneArgs::default()
    };
    // SAFETY: the check above proved the calling thread is the only one (the contract of
    // `clone_fork_unchecked`, documented there). With no stack (0, size 0) clone3 gives the
    // child a copy-on-write copy of the caller's stack, exactly like fork(2); the kernel reads
    // `args` (valid, and its size passed with it) during the call only and writes nothing back,
    // since no pidfd, tid or set_tid pointer is given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(ForkError::Clone(Errno::last())),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Marks every descriptor from `first` upwards close-on-exec, so that nothing of the runtime's
/// leaks into the container process (CVE-2024-21626 class).
///
/// close_range(2) with CLOSE_RANGE_CLOEXEC does it in one call. When that is refused, the
/// descriptors /proc/self/fd lists are marked one by one with fcntl(2): ENOSYS before Linux 5.9,
/// EINVAL (the flag) before 5.11, and EPERM from a seccomp filter that does not list close_range,
/// as Docker 19.03's default profile and older Kubernetes ones do (the runtime may itself run
/// under such a filter).
///
/// # Errors
/// The errno of close_range(2) when it is none of those; otherwise of the fallback:
/// /proc/self/fd cannot be read, or fcntl(2) fails on a listed descriptor that is still open.
pub fn cloexec_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: close_range only changes descriptor flags; it reads no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    match Errno::result(ret) {
        Ok(_) => Ok(()),
        Err(Errno::ENOSYS | Errno::EINVAL | Errno::EPERM) => cloexec_listed(first),
        Err(errno) => Err(errno),
    }
}

/// The fallback of [`cloexec_from`]: each descriptor from `first` that /proc/self/fd lists.
fn cloexec_listed(first: RawFd) -> Result<(), Errno> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd;

    let mut dir = Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let listing = dir.as_raw_fd();
    let mut fds = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let fd = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|name| name.parse::<RawFd>().ok());
        if let Some(fd) = fd.filter(|fd| *fd >= first && *fd != listing) {
            fds.push(fd);
        }
    }
    drop(dir);
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD take and return plain integers and touch no memory of ours;
        // a number that is no longer open only yields EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        let set = Errno::result(flags).and_then(|flags| {
            // SAFETY: as above; F_SETFD only sets the descriptor's flags.
            let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            Errno::result(ret)
        });
        match set {
            // Closed since it was listed: nothing left to leak.
            Ok(_) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Starts `command` with fork(2) rather than posix_spawn(3).
///
/// glibc 2.34 and later create a posix_spawn child with clone3(2) and fall back to clone(2) only
/// on ENOSYS. A seccomp filter that does not list clone3 answers EPERM instead (Docker 19.03's
/// default profile and older Kubernetes ones do), and the spawn fails. glibc's fork(2) is a plain
/// clone(2), which such profiles allow; std takes its fork path for a command with a `pre_exec`
/// hook. Hooks that run under the container's filter (startContainer) need this.
///
/// # Errors
/// What [`Command::spawn`] returns.
pub fn spawn_forked(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the child between fork and exec and does nothing at all, so it
    // cannot touch a lock, the allocator or any state another thread held at fork time.
    unsafe {
        command.pre_exec(|| Ok(()));
    }
    command.spawn()
}

/// `setdomainname(2)` for the calling process's UTS namespace.
///
/// # Errors
/// The errno of `setdomainname(2)`.
pub fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call; the
    // kernel copies at most `len` bytes and needs no terminating NUL.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// Ends the calling process at once with `code`, running no exit handlers: what a forked child
/// that shares the parent's buffers and handlers must use. Safe like `std::process::exit`: what
/// it skips (destructors, buffered output) is a leak, never a use of freed memory.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes a plain integer and never returns; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// One of the three standard descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// Descriptor 0.
    Input,
    /// Descriptor 1.
    Output,
    /// Descriptor 2.
    Error,
}

impl StdStream {
    /// All three, in descriptor order.
    pub const ALL: [StdStream; 3] = [StdStream::Input, StdStream::Output, StdStream::Error];

    fn raw(self) -> RawFd {
        match self {
            StdStream::Input => libc::STDIN_FILENO,
            StdStream::Output => libc::STDOUT_FILENO,
            StdStream::Error => libc::STDERR_FILENO,
        }
    }
}

/// Makes `fd` the process's standard `stream` (`dup2(2)` onto 0, 1 or 2), as needed to make a
/// terminal the process's stdio.
///
/// Only the standard descriptors can be targets: Rust's standard library treats them as always
/// open (its startup opens /dev/null on any that is closed, so no later `open` can reuse their
/// numbers) and never hands them out as an `OwnedFd`, so replacing one closes nothing another
/// owner holds. (A `dup_onto` with any target number, as this replaced, could
/// close a descriptor owned elsewhere, which I/O safety forbids a safe function to do.)
///
/// # Errors
/// The errno of `dup2(2)`.
pub fn replace_std_stream(fd: BorrowedFd<'_>, stream: StdStream) -> Result<(), Errno> {
    // SAFETY: dup2 only manipulates the descriptor table; `fd` is a live descriptor borrowed for
    // the call, and the target is a standard descriptor, which no OwnedFd owns (see above); it is
    // replaced atomically.
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), stream.raw()) };
    Errno::result(ret).map(drop)
}

/// Gives the program about to be executed a clean signal state: every disposition back to
/// `SIG_DFL` (a Rust runtime ignores SIGPIPE, and exec keeps ignored signals ignored) and no
/// signal blocked (exec keeps the mask too). Handlers need no reset: exec drops them anyway.
///
/// # Errors
/// The errno of `sigprocmask(2)`; dispositions the kernel refuses (SIGKILL, SIGSTOP) are skipped.
pub fn reset_signals() -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL registers no handler code, so no handler can run with
        // broken invariants; the previous action is discarded.
        let _ = unsafe { sigaction(sig, &default) };
    }
    // Real-time signals are not in nix's `Signal`. 32 and 33 are glibc's own (its sigaction
    // refuses them), so the range starts at the SIGRTMIN it reports.
    for raw in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: a zeroed sigaction with sa_handler = SIG_DFL installs the default action;
        // the struct lives for the call and the old action is not asked for.
        let _ = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(raw, &act, std::ptr::null_mut())
        };
    }
    SigSet::empty().thread_set_mask()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};

    /// With a second thread alive, clone_fork refuses and creates no process. (Before the check
    /// it forked: the test then reaps the child and fails.)
    #[test]
    fn clone_fork_refuses_while_another_thread_runs() {
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || parked.recv());
        let result = clone_fork(CloneFlags::empty());
        if let Ok(Forked::Child) = result {
            // Only this thread exists here: joining `other` would wait forever.
            exit_now(0);
        }
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
        match result {
            Err(ForkError::MultiThreaded) => {}
            Ok(Forked::Child) => unreachable!("the child exited above"),
            Ok(Forked::Parent(pid)) => {
                let _ = waitpid(pid, None);
                panic!("forked a multi-threaded process");
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    /// A forked child has one thread, so clone_fork works there (the runtime's intermediate
    /// process relies on it) and the grandchild's exit code comes back.
    #[test]
    fn clone_fork_forks_a_single_threaded_process() {
        crate::sys::fork::run_in_child(|| match clone_fork(CloneFlags::empty()) {
            Ok(Forked::Child) => exit_now(7),
            Ok(Forked::Parent(pid)) => match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, 7)) => Ok(()),
                other => Err(format!("grandchild ended with {other:?}")),
            },
            Err(e) => Err(format!("clone_fork in a single-threaded child: {e:?}")),
        })
        .unwrap();
    }

    #[test]
    fn std_streams_are_the_standard_numbers() {
        let raw: Vec<_> = StdStream::ALL.iter().map(|s| s.raw()).collect();
        assert_eq!(raw, [0, 1, 2]);
    }
}
