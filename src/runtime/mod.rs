//! refeng-runc, the low-level OCI runtime: container state on disk, the typestate lifecycle, the
//! init process that builds the container from namespaces, mounts and cgroups, and the runc-style
//! command line that drives it.

pub mod cgroups;
pub mod rootfs;
pub mod seccomp;
