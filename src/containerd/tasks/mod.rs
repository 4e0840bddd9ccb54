//! Tasks of refeng-containerd: each task runs under its own shim, started with the shim v2
//! `start` protocol and driven over ttrpc; the shims' events come back through the ttrpc
//! endpoint at `TTRPC_ADDRESS`; bundles on disk let a restarted daemon re-attach.

pub mod bundle;
pub mod forward;
pub mod input;
pub mod manager;
pub mod service;
pub mod shim;
pub mod task;

pub use manager::{
    CreateTask, ErrorCode, ManagerConfig, ProcessInfo, ProcessStatus, Stdio, TaskManager,
    TaskOpError,
};
