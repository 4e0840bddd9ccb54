//! Garbage collection of refeng-containerd, as containerd's metadata GC does it: per namespace,
//! mark from the roots (images' targets, containers' snapshots, unexpired leases' resources,
//! anything labelled `containerd.io/gc.root`), follow `containerd.io/gc.ref.content*` and
//! `containerd.io/gc.ref.snapshot.<snapshotter>*` labels and snapshot parents, and remove every
//! record not marked, in one transaction. Then the bytes: blobs and backend snapshots no
//! namespace records any more are removed. Run after every delete; writers that put bytes first
//! and records second hold [`super::Daemon::gc_read`] so a collection never falls in between.

use std::collections::{BTreeMap, BTreeSet};

use containerd_client::services::v1::{Container, Image, Info, Lease};

use super::error::Error;
use super::leases::{self, FLAT_LABEL};
use super::metadata::Read;
use super::snapshots::{self, SnapshotRecord};
use super::Daemon;

/// The label that makes an object a root.
pub const ROOT_LABEL: &str = "containerd.io/gc.root";
const CONTENT_REF: &str = "containerd.io/gc.ref.content";
const SNAPSHOT_REF: &str = "containerd.io/gc.ref.snapshot.";

/// What one collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Content records removed, `namespace/digest`.
    pub content: Vec<String>,
    /// Snapshot records removed, `namespace/snapshotter/key`.
    pub snapshots: Vec<String>,
    /// Leases removed because they expired, `namespace/id`.
    pub leases: Vec<String>,
    /// Blob files removed.
    pub blobs: Vec<String>,
    /// Backend snapshots removed, `snapshotter/backend key`.
    pub backend_snapshots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Content(String),
    Snapshot(String, String),
}

/// The objects a label map references.
fn label_refs(labels: &std::collections::HashMap<String, String>, out: &mut Vec<Node>) {
    for (k, v) in labels {
        if let Some(rest) = k.strip_prefix(CONTENT_REF) {
            if rest.is_empty() || rest.starts_with('.') || rest.starts_with('/') {
                out.push(Node::Content(v.clone()));
            }
        } else if let Some(rest) = k.strip_prefix(SNAPSHOT_REF) {
            let sn = rest.split('/').next().unwrap_or_default();
            if !sn.is_empty() {
                out.push(Node::Snapshot(sn.to_string(), v.clone()));
            }
        }
    }
}

fn is_root(labels: &std::collections::HashMap<String, String>) -> bool {
    labels.contains_key(ROOT_LABEL)
}

/// Runs one collection.
///
/// # Errors
/// `Internal` when the store cannot be read or written or a file not removed.
pub fn collect(d: &Daemon) -> Result<Report, Error> {
    let _exclusive = d.gc_write();
    let now = chrono::Utc::now();
    let sn_names: Vec<String> = d.snapshotter_names();
    let mut report = Report::default();
    let (live_blobs, live_backend) = d.metadata().update(|tx| {
        let mut live_blobs = BTreeSet::new();
        let mut live_backend: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ns in tx.namespaces()? {
            let ns = ns.name;
            let contents: BTreeMap<String, Info> = tx
                .list::<Info>(&ns)?
                .into_iter()
                .map(|i| (i.digest.clone(), i))
                .collect();
            let mut snaps: BTreeMap<(String, String), SnapshotRecord> = BTreeMap::new();
            for sn in &sn_names {
                for (key, rec) in tx.list_kind::<SnapshotRecord>(&ns, &snapshots::kind(sn))? {
                    snaps.insert((sn.clone(), key), rec);
                }
            }
            let mut roots = Vec::new();
            let mut flat = Vec::new();
            for img in tx.list::<Image>(&ns)? {
                if let Some(t) = &img.target {
                    roots.push(Node::Content(t.digest.clone()));
                }
            }
            for c in tx.list::<Container>(&ns)? {
                if !c.snapshotter.is_empty() && !c.snapshot_key.is_empty() {
                    roots.push(Node::Snapshot(
                        c.snapshotter.clone(),
                        c.snapshot_key.clone(),
                    ));
                }
                label_refs(&c.labels, &mut roots);
            }
            for lease in tx.list::<Lease>(&ns)? {
                if leases::expired(&lease, now) {
                    leases::remove(tx, &ns, &lease.id)?;
                    report.leases.push(format!("{ns}/{}", lease.id));
                    continue;
                }
                let into = if lease.labels.contains_key(FLAT_LABEL) {
                    &mut flat
                } else {
                    &mut roots
                };
                for r in leases::resources(tx, &ns, &lease.id)? {
                    if r.r#type == "content" {
                        into.push(Node::Content(r.id));
                    } else if let Some(sn) = r.r#type.strip_prefix("snapshots/") {
                        into.push(Node::Snapshot(sn.to_string(), r.id));
                    }
                }
            }
            for (dg, i) in &contents {
                if is_root(&i.labels) {
                    roots.push(Node::Content(dg.clone()));
                }
            }
            for ((sn, key), rec) in &snaps {
                if rec.info.as_ref().is_some_and(|i| is_root(&i.labels)) {
                    roots.push(Node::Snapshot(sn.clone(), key.clone()));
                }
            }
            let mut marked: BTreeSet<Node> = BTreeSet::new();
            while let Some(n) = roots.pop() {
                if !marked.insert(n.clone()) {
                    continue;
                }
                match &n {
                    Node::Content(dg) => {
                        if let Some(i) = contents.get(dg) {
                            label_refs(&i.labels, &mut roots);
                        }
                    }
                    Node::Snapshot(sn, key) => {
                        if let Some(info) = snaps
                            .get(&(sn.clone(), key.clone()))
                            .and_then(|r| r.info.as_ref())
                        {
                            if !info.parent.is_empty() {
                                roots.push(Node::Snapshot(sn.clone(), info.parent.clone()));
                            }
                            label_refs(&info.labels, &mut roots);
                        }
                    }
                }
            }
            // A flat lease holds its own resources, not what they reference; but a snapshot
            // cannot outlive its parent, so parents are kept all the same.
            let mut flat_queue = flat;
            while let Some(n) = flat_queue.pop() {
                if !marked.insert(n.clone()) {
                    continue;
                }
                if let Node::Snapshot(sn, key) = &n {
                    if let Some(info) = snaps
                        .get(&(sn.clone(), key.clone()))
                        .and_then(|r| r.info.as_ref())
                    {
                        if !info.parent.is_empty() {
                            flat_queue.push(Node::Snapshot(sn.clone(), info.parent.clone()));
                        }
                    }
                }
            }
            for dg in contents.keys() {
                if marked.contains(&Node::Content(dg.clone())) {
                    live_blobs.insert(dg.clone());
                } else {
                    tx.delete::<Info>(&ns, dg)?;
                    report.content.push(format!("{ns}/{dg}"));
                }
            }
            for ((sn, key), rec) in &snaps {
                if marked.contains(&Node::Snapshot(sn.clone(), key.clone())) {
                    live_backend
                        .entry(sn.clone())
                        .or_default()
                        .insert(rec.backend_key.clone());
                } else {
                    tx.delete_kind(&ns, &snapshots::kind(sn), key)?;
                    report.snapshots.push(format!("{ns}/{sn}/{key}"));
                }
            }
        }
        Ok((live_blobs, live_backend))
    })?;
    for blob in d
        .content()
        .list()
        .map_err(|e| Error::internal("listing blobs", e))?
    {
        let key = blob.to_string();
        if !live_blobs.contains(&key) {
            d.content()
                .remove_blob(&blob)
                .map_err(|e| Error::internal("removing blob", e))?;
            report.blobs.push(key);
        }
    }
    for sn in &sn_names {
        let Some(backend) = d.snapshotter(sn) else {
            continue;
        };
        let empty = BTreeSet::new();
        let live = live_backend.get(sn).unwrap_or(&empty);
        // Children before parents: remove what has no children left, until nothing changes.
        loop {
            let all = backend
                .list()
                .map_err(|e| Error::internal("listing snapshots", e))?;
            let parents: BTreeSet<&String> =
                all.values().filter_map(|i| i.parent.as_ref()).collect();
            let doomed: Vec<&String> = all
                .keys()
                .filter(|k| !live.contains(*k) && !parents.contains(k))
                .collect();
            if doomed.is_empty() {
                break;
            }
            for k in doomed {
                backend
                    .remove(k)
                    .map_err(|e| Error::internal(&format!("removing snapshot {k}"), e))?;
                report.backend_snapshots.push(format!("{sn}/{k}"));
            }
        }
    }
    if report != Report::default() {
        tracing::info!(?report, "garbage collected");
    }
    Ok(report)
}
