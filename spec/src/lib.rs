//! The pure models of refeng's lifecycles: no I/O, no clocks, only states and the operations that move them.

pub mod build;
pub mod engine;
pub mod health;
pub mod oci;
pub mod shim;
pub mod task;
