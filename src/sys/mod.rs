//! The only module allowed to use `unsafe`: thin, documented wrappers over the syscalls that
//! neither `nix` nor `libc`'s safe surface covers (raw clone, openat2, bpf, ...). Every unsafe
//! block states why it is sound in a `// SAFETY:` line. Also the lowest layer's readers of the
//! kernel's text files (`kernel_files`), shared by every part above.
#![allow(unsafe_code)]

pub mod bpf;
pub mod exe;
pub mod fd;
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
