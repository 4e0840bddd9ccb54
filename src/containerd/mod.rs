//! refeng-containerd: containerd's gRPC API over refeng's image store and shims.

pub mod tasks;
