//! refeng-shim: one process per container between containerd (shim v2 ttrpc API) and the OCI
//! runtime. It outlives the daemons, keeps the container's stdio, reaps its processes and reports
//! their exits as events, queued while containerd is away.

pub mod cli;
pub mod events;
pub mod handoff;
pub mod io;
pub mod logging;
pub mod mount;
pub mod oom;
pub mod options;
pub mod reaper;
pub mod runtime;
pub mod serve;
pub mod service;
pub mod start;
pub mod stats;
pub mod task;
