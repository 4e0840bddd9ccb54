//! The only module allowed to use `unsafe`: thin, documented wrappers over the syscalls that
//! neither `nix` nor `libc`'s safe surface covers (raw clone, openat2, bpf, ...). Every unsafe
//! block states why it is sound in a `// SAFETY:` line. Also the lowest layer's readers of the
//! kernel's text files (`kernel_files`), shared by every part above.
//!
//! A function here is safe only when no caller can make it unsound: one whose soundness rests on
//! its caller is an `unsafe fn` with a `# Safety` section, and callers outside `sys` (where
//! `unsafe` is denied) get a safe wrapper that establishes the condition itself, such as
//! [`process::clone_fork`] checking that the process is single-threaded. Descriptors are taken as
//! `BorrowedFd`/`OwnedFd`, never as bare numbers from the caller (I/O safety).
#![allow(unsafe_code)]

pub mod bpf;
pub mod durable;
pub mod exe;
#[cfg(test)]
pub mod fork;
pub mod kernel_files;
pub mod mount_attr;
pub mod openat2;
pub mod process;
pub mod sched;
pub mod scm_rights;
pub mod seccomp;
pub mod tty;
