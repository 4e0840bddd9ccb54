//! refeng-runc, the low-level OCI runtime: container state on disk, the typestate lifecycle, the
//! init process that builds the container from namespaces, mounts and cgroups, and the runc-style
//! command line that drives it.

pub mod cgroups;
pub mod channel;
pub mod cli;
pub mod container;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod kill;
pub mod pause;
pub mod process;
pub mod process_setup;
pub mod rootfs;
pub mod run;
pub mod seccomp;
pub mod spec_cmd;
pub mod start;
pub mod state;
pub mod update;
