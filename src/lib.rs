//! refeng: a container engine built like Docker Engine, bottom-up. This crate holds every part;
//! the binaries in `src/bin/` are thin mains over these modules.

pub mod cli;
pub mod conformance;
pub mod containerd;
pub mod engine;
pub mod image;
pub mod oci;
pub mod runtime;
pub mod shim;
pub mod sys;
