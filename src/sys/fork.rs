//! Test support: run a closure in a forked child and collect its verdict, so tests that change
//! the mount namespace, pivot_root or mount real filesystems never touch the test process.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

/// Forks, runs `f` in the child and waits for it. The child reports `Err(message)` through a pipe
/// and exits 1; a panic in the child becomes an `Err` too. The returned error describes the
/// failure, from the child's message or its wait status.
///
/// Unlike [`crate::sys::process::clone_fork`] this forks a multi-threaded process (the test
/// harness always is one, so a single-thread check would refuse every call) and stays a safe
/// function, for test code only: glibc's fork makes malloc usable in the child, and a lock that
/// another test thread held at the fork (stdout's, say) leaves the child blocked, never reading
/// half-changed data. The worst a misuse can do is hang one test.
///
/// # Errors
/// The child's error message, or a description of how it died.
pub fn run_in_child<F>(f: F) -> Result<(), String>
where
    F: FnOnce() -> Result<(), String>,
{
    let (read_end, write_end) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only runs `f` and then `_exit`s; it never returns into the test harness.
    // glibc's fork resets the allocator locks in the child, so `f` may allocate even though the
    // test harness is multi-threaded.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|panic| Err(panic_message(&panic)));
            let code = match verdict {
                Ok(()) => 0,
                Err(message) => {
                    let mut file = std::fs::File::from(write_end);
                    let _ = file.write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: _exit(2) ends the child without running the parent's atexit handlers or
            // destructors twice; it takes no pointers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let message = read_all(read_end);
            let status = waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
            match status {
                WaitStatus::Exited(_, 0) if message.is_empty() => Ok(()),
                WaitStatus::Exited(_, _) if !message.is_empty() => Err(message),
                other => Err(format!("child ended with {other:?} {message}")),
            }
        }
    }
}

fn read_all(fd: OwnedFd) -> String {
    let mut text = String::new();
    let _ = std::fs::File::from(fd).read_to_string(&mut text);
    text
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("child panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("child panicked: {s}")
    } else {
        "child panicked".to_owned()
    }
}
