//! Unpacking an image from the content store into snapshots: resolve the index to the
//! platform's manifest, check the config, apply each layer as the snapshot of its chain id, and
//! label the config so that garbage collection keeps the snapshots while the image exists.

use std::collections::BTreeMap;

use super::content::{ContentError, ContentStore, GC_REF_CONTENT, GC_REF_SNAPSHOT};
use super::digest::Digest;
use super::format::{self, Document, FormatError, PlatformWanted};
use super::layer::ApplyOptions;
use super::snapshot::{SnapshotError, Snapshotter};

/// Errors of resolving or unpacking an image.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// content store failure (missing blob, too large...)
    #[error("content")]
    Content(#[from] ContentError),
    /// invalid manifest, index or config
    #[error("image format")]
    Format(#[from] FormatError),
    /// snapshot or layer failure
    #[error("snapshot")]
    Snapshot(#[from] SnapshotError),
    /// index nesting too deep
    #[error("index nesting deeper than {0}")]
    TooDeep(usize),
    /// the caller stopped the unpack (a download failed)
    #[error("unpack stopped before every layer was applied")]
    Stopped,
}

/// A resolved image: the platform manifest, its config and the chain of layers.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest digest.
    pub manifest: Digest,
    /// The config digest.
    pub config: Digest,
    /// Layer blob digests, bottom first.
    pub layers: Vec<Digest>,
    /// diff_ids from the config.
    pub diff_ids: Vec<Digest>,
    /// Chain ids of the layers.
    pub chain_ids: Vec<Digest>,
    /// The parsed config.
    pub config_doc: oci_spec::image::ImageConfiguration,
}

/// Resolves `target` (a manifest or index digest) for `platform`, and labels what it walked so
/// that GC follows manifest → config/layers and index → manifests.
///
/// # Errors
/// [`UnpackError`] for missing or invalid content.
pub fn resolve(
    content: &ContentStore,
    target: &Digest,
    platform: &PlatformWanted,
) -> Result<Resolved, UnpackError> {
    let mut cur = target.clone();
    let mut declared: Option<String> = None;
    for _ in 0..4 {
        let bytes = content.read_small(&cur)?;
        match format::parse_document(&bytes, declared.as_deref())? {
            Document::Index(i) => {
                let mut labels = BTreeMap::new();
                for (n, d) in i.manifests().iter().enumerate() {
                    let dg = format::check_descriptor(d)?;
                    if content.contains(&dg) {
                        labels.insert(format!("{GC_REF_CONTENT}.m.{n}"), dg.to_string());
                    }
                }
                merge_labels(content, &cur, labels)?;
                let d = format::select_platform(&i, platform)?;
                declared = Some(d.media_type().to_string());
                cur = format::check_descriptor(d)?;
            }
            Document::Manifest(m) => {
                let config = format::check_descriptor(m.config())?;
                let layers = m
                    .layers()
                    .iter()
                    .map(format::check_descriptor)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut labels = BTreeMap::new();
                labels.insert(format!("{GC_REF_CONTENT}.config"), config.to_string());
                for (n, l) in layers.iter().enumerate() {
                    labels.insert(format!("{GC_REF_CONTENT}.l.{n}"), l.to_string());
                }
                merge_labels(content, &cur, labels)?;
                let (config_doc, diff_ids) =
                    format::parse_config(&content.read_small(&config)?, layers.len())?;
                let chain_ids = format::chain_ids(&diff_ids);
                return Ok(Resolved {
                    manifest: cur,
                    config,
                    layers,
                    diff_ids,
                    chain_ids,
                    config_doc,
                });
            }
        }
    }
    Err(UnpackError::TooDeep(4))
}

fn merge_labels(
    content: &ContentStore,
    d: &Digest,
    labels: BTreeMap<String, String>,
) -> Result<(), ContentError> {
    content.update_metadata(|m| {
        m.labels.entry(d.clone()).or_default().extend(labels);
        Ok(())
    })
}

/// Unpacks every layer of `resolved` (sharing existing chain snapshots) and returns the top
/// chain id, the parent for a container's writable snapshot.
///
/// # Errors
/// [`UnpackError`] if a layer is missing, refused or its diff_id does not match.
pub fn unpack(
    content: &ContentStore,
    snapshots: &Snapshotter,
    resolved: &Resolved,
    opts: &ApplyOptions,
) -> Result<Option<Digest>, UnpackError> {
    unpack_gated(content, snapshots, resolved, opts, &mut AllPresent)
}

/// Decides when each layer may be applied, and hears when it was: a pull applies layers while
/// later ones still download.
pub trait LayerGate {
    /// Blocks until layer `index` (of the manifest) is in the content store; `false` stops
    /// the unpack with [`UnpackError::Stopped`].
    fn ready(&mut self, index: usize) -> bool;
    /// Layer `index` is about to be applied (`false`: its snapshot already existed).
    fn applying(&mut self, index: usize, apply: bool);
    /// Layer `index` is in its snapshot.
    fn applied(&mut self, index: usize);
}

/// Every layer is already in the store.
struct AllPresent;

impl LayerGate for AllPresent {
    fn ready(&mut self, _: usize) -> bool {
        true
    }
    fn applying(&mut self, _: usize, _: bool) {}
    fn applied(&mut self, _: usize) {}
}

/// [`unpack`], asking `gate` before each layer.
///
/// # Errors
/// As [`unpack`]; [`UnpackError::Stopped`] when the gate says stop.
#[tracing::instrument(skip_all, fields(manifest = %resolved.manifest))]
pub fn unpack_gated(
    content: &ContentStore,
    snapshots: &Snapshotter,
    resolved: &Resolved,
    opts: &ApplyOptions,
    gate: &mut dyn LayerGate,
) -> Result<Option<Digest>, UnpackError> {
    // Holds each snapshot from before it exists until the config's label holds the chain.
    let lease = content.temporary_lease("unpack")?;
    let mut parent: Option<&Digest> = None;
    for (index, ((layer, diff_id), chain)) in resolved
        .layers
        .iter()
        .zip(&resolved.diff_ids)
        .zip(&resolved.chain_ids)
        .enumerate()
    {
        lease.add(None, Some(&chain.to_string()))?;
        let missing = snapshots.stat(&chain.to_string())?.is_none();
        if missing && !gate.ready(index) {
            return Err(UnpackError::Stopped);
        }
        gate.applying(index, missing);
        if missing {
            let blob = content.open_blob(layer)?;
            let mut o = opts.clone();
            o.expected_diff_id = Some(diff_id.clone());
            snapshots.unpack_layer(
                chain,
                parent,
                std::io::BufReader::with_capacity(1 << 20, blob),
                &o,
            )?;
        }
        gate.applied(index);
        parent = Some(chain);
    }
    if let Some(top) = parent {
        let key = format!(
            "{GC_REF_SNAPSHOT}.{}",
            match snapshots.backend() {
                super::snapshot::Backend::Overlay => "overlay",
                super::snapshot::Backend::Copy => "native",
            }
        );
        content.add_label(&resolved.config, &key, &top.to_string())?;
    }
    Ok(parent.cloned())
}
