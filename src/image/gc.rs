//! Garbage collection over the content store and the snapshotter: mark from the roots (image
//! references, leases, active snapshots), follow `containerd.io/gc.ref.*` labels and snapshot
//! parents, sweep exactly what was not marked.

use std::collections::BTreeSet;

use super::content::{ContentError, ContentStore, GC_REF_CONTENT, GC_REF_SNAPSHOT};
use super::digest::Digest;
use super::snapshot::{SnapshotError, SnapshotKind, Snapshotter};

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Snapshots removed, children before parents.
    pub snapshots: Vec<String>,
}

/// Errors of a collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// content store failure
    #[error("content store")]
    Content(#[from] ContentError),
    /// snapshotter failure
    #[error("snapshotter")]
    Snapshot(#[from] SnapshotError),
}

/// Runs one mark-and-sweep collection. Active snapshots (containers' writable layers) are roots:
/// a snapshot in use is never removed, nor any of its ancestors.
///
/// # Errors
/// [`GcError`] if a listing or removal fails; what was removed before the failure stays removed.
#[tracing::instrument(skip_all)]
pub fn collect(
    content: &ContentStore,
    snapshots: Option<&Snapshotter>,
) -> Result<GcReport, GcError> {
    let meta = content.metadata()?;
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut snaps: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<Digest> = meta.references.values().cloned().collect();
    for lease in meta.leases.values() {
        todo.extend(lease.blobs.iter().cloned());
        snaps.extend(lease.snapshots.iter().cloned());
    }
    while let Some(d) = todo.pop() {
        if !blobs.insert(d.clone()) {
            continue;
        }
        if let Some(labels) = meta.labels.get(&d) {
            for (k, v) in labels {
                if k.starts_with(GC_REF_CONTENT) {
                    if let Ok(child) = v.parse::<Digest>() {
                        todo.push(child);
                    }
                } else if k.starts_with(GC_REF_SNAPSHOT) {
                    snaps.insert(v.clone());
                }
            }
        }
    }
    let mut report = GcReport::default();
    for d in content.list()? {
        if !blobs.contains(&d) {
            content.delete(&d)?;
            report.blobs.push(d);
        }
    }
    if let Some(sn) = snapshots {
        let all = sn.list()?;
        let mut marked: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = snaps.into_iter().collect();
        todo.extend(
            all.iter()
                .filter(|(_, i)| i.kind == SnapshotKind::Active)
                .map(|(k, _)| k.clone()),
        );
        while let Some(k) = todo.pop() {
            if let Some(info) = all.get(&k) {
                if marked.insert(k) {
                    todo.extend(info.parent.clone());
                }
            }
        }
        // Children before parents: depth from the root, deepest first.
        let depth = |k: &String| {
            let mut n = 0usize;
            let mut cur = all.get(k).and_then(|i| i.parent.clone());
            while let Some(p) = cur {
                n += 1;
                cur = all.get(&p).and_then(|i| i.parent.clone());
                if n > all.len() {
                    break;
                }
            }
            n
        };
        let mut sweep: Vec<&String> = all.keys().filter(|k| !marked.contains(*k)).collect();
        sweep.sort_by_key(|k| std::cmp::Reverse(depth(k)));
        for k in sweep {
            sn.remove(k)?;
            report.snapshots.push(k.clone());
        }
    }
    tracing::info!(
        blobs = report.blobs.len(),
        snapshots = report.snapshots.len(),
        "garbage collected"
    );
    Ok(report)
}
