//! containerd-shim-refeng-v2: the name containerd derives from the runtime
//! `io.containerd.refeng.v2`; the same program as refeng-shim.

#[path = "refeng-shim.rs"]
mod refeng_shim;

fn main() -> anyhow::Result<()> {
    refeng_shim::main()
}
