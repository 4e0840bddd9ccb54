//! Images: the content store, OCI and Docker image formats, layer application, snapshots,
//! garbage collection and import/export of `docker save` archives and OCI image layouts.
//!
//! Everything read from an image (a manifest, a layer, an archive) is outside input: it is
//! bounded, validated and never trusted to name a path outside the directory it is written to.

pub mod archive;
pub mod content;
pub mod digest;
pub mod format;
pub mod gc;
pub mod layer;
pub mod registry;
pub mod snapshot;
pub mod tar;
pub mod unpack;
