//! The Snapshots service: per-namespace snapshot records (name, parent, kind, labels) in the
//! metadata store over the backends of [`crate::image::snapshot`] (`overlayfs`, falling back to
//! plain copies where overlayfs cannot be mounted, and `native`, always copies), laid out under
//! `<root>/io.containerd.snapshotter.v1.<name>` as containerd lays them out. Each namespace's
//! key maps to a backend key of its own, so namespaces never see each other's snapshots.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use containerd_client::services::v1::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, ListSnapshotsResponse,
    MountsRequest, MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse,
    RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse, UpdateSnapshotRequest,
    UpdateSnapshotResponse, UsageRequest, UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse,
};
use containerd_client::types::Mount;

use super::content::update_labels;
use super::error::Error;
use super::filters::{label_field, Fields, Filter};
use super::grpc;
use super::identifiers;
use super::leases;
use super::metadata::{self, Read};
use super::{now, Daemon, Services};
use crate::image::snapshot::{MountSpec, SnapshotError, SnapshotKind, Snapshotter};

/// A namespace's snapshot: what the API shows, and the backend snapshot it stands for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRecord {
    /// The info as served (name = the namespace's key).
    #[prost(message, optional, tag = "1")]
    pub info: Option<Info>,
    /// The backend's key for it.
    #[prost(string, tag = "2")]
    pub backend_key: String,
}

/// The metadata kind of a snapshotter's records.
pub fn kind(snapshotter: &str) -> String {
    format!("snapshots/{snapshotter}")
}

/// A counter in the metadata store.
#[derive(Clone, PartialEq, prost::Message)]
struct Sequence {
    #[prost(uint64, tag = "1")]
    last: u64,
}

/// A new backend key for `key` of namespace `ns`: `<ns>/<n>/<key>` with `n` counting per
/// namespace and snapshotter, the form containerd's metadata store gives its backends (so the
/// backend's messages name snapshots as containerd's do).
fn backend_key(d: &Daemon, ns: &str, sn: &str, key: &str) -> Result<String, Error> {
    let n = d.metadata().update(|tx| {
        let last = tx
            .get_kind::<Sequence>(ns, metadata::INTERNAL_SEQUENCES, sn)?
            .map_or(0, |s| s.last);
        tx.put_kind(
            ns,
            metadata::INTERNAL_SEQUENCES,
            sn,
            &Sequence { last: last + 1 },
        )?;
        Ok(last + 1)
    })?;
    Ok(format!("{ns}/{n}/{key}"))
}

fn does_not_exist(key: &str) -> Error {
    Error::NotFound(format!("snapshot {key} does not exist"))
}

/// The mounts of a backend snapshot, as the API's `Mount` messages.
pub fn to_mounts(specs: Vec<MountSpec>) -> Vec<Mount> {
    specs
        .into_iter()
        .map(|m| Mount {
            r#type: m.fs_type,
            source: m.source.display().to_string(),
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn backend_error(key: &str, e: SnapshotError) -> Error {
    match e {
        SnapshotError::NotFound(_) => does_not_exist(key),
        SnapshotError::AlreadyExists(_) => Error::AlreadyExists(format!("snapshot {key:?}")),
        SnapshotError::NotActive(_) => {
            Error::FailedPrecondition(format!("snapshot {key} is not active"))
        }
        SnapshotError::ParentNotCommitted(p) => Error::InvalidArgument(format!(
            "failed to create snapshot: parent {p:?} is not committed snapshot"
        )),
        SnapshotError::InUse { .. } => {
            Error::FailedPrecondition("cannot remove snapshot with child".into())
        }
        other => Error::internal(&format!("snapshot {key}"), other),
    }
}

/// The backend `name`, or containerd's error for a snapshotter it does not have.
///
/// # Errors
/// `InvalidArgument` for a missing or unknown snapshotter name.
pub fn backend<'a>(d: &'a Daemon, name: &str) -> Result<&'a Snapshotter, Error> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(
            "snapshotter argument missing".into(),
        ));
    }
    d.snapshotter(name)
        .ok_or_else(|| Error::InvalidArgument(format!("snapshotter not loaded: {name}")))
}

/// The record of `key` in `ns`.
///
/// # Errors
/// `NotFound` when there is none.
pub fn record(d: &Daemon, ns: &str, sn: &str, key: &str) -> Result<SnapshotRecord, Error> {
    d.metadata()
        .view(|v| v.get_kind::<SnapshotRecord>(ns, &kind(sn), key))?
        .ok_or_else(|| does_not_exist(key))
}

fn api_kind(k: SnapshotKind) -> Kind {
    match k {
        SnapshotKind::Committed => Kind::Committed,
        SnapshotKind::Active => Kind::Active,
        SnapshotKind::View => Kind::View,
    }
}

struct InfoFields<'a>(&'a Info);

impl Fields for InfoFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let i = self.0;
        match path.first().map(String::as_str) {
            Some("kind") if path.len() == 1 => Some(
                match Kind::try_from(i.kind).unwrap_or(Kind::Unknown) {
                    Kind::View => "view",
                    Kind::Active => "active",
                    Kind::Committed => "committed",
                    Kind::Unknown => "unknown",
                }
                .to_string(),
            ),
            Some("name") if path.len() == 1 => Some(i.name.clone()),
            Some("parent") if path.len() == 1 => Some(i.parent.clone()),
            Some("labels") => label_field(&i.labels, &path[1..]),
            _ => None,
        }
    }
}

/// Creates an active snapshot or a view `key` on `parent` in `ns`: the backend snapshot, then
/// the record (and the lease resource), under the collector's read lock.
///
/// # Errors
/// `AlreadyExists`, `NotFound` for a missing parent, `InvalidArgument` for a parent that is not
/// committed or a bad snapshotter.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    d: &Arc<Daemon>,
    ns: &str,
    lease: Option<&str>,
    sn: &str,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
    view: bool,
) -> Result<Vec<Mount>, Error> {
    backend(d, sn)?;
    if key.is_empty() {
        return Err(Error::InvalidArgument(
            "snapshot key must not be empty".into(),
        ));
    }
    identifiers::validate_labels(&labels)?;
    let (exists, parent_rec) = d.metadata().view(|v| {
        Ok((
            v.get_kind::<SnapshotRecord>(ns, &kind(sn), key)?.is_some(),
            if parent.is_empty() {
                None
            } else {
                Some(v.get_kind::<SnapshotRecord>(ns, &kind(sn), parent)?)
            },
        ))
    })?;
    if exists {
        return Err(Error::AlreadyExists(format!("snapshot {key:?}")));
    }
    let parent_bkey = match parent_rec {
        None => None,
        Some(None) => {
            return Err(Error::NotFound(format!(
                "parent snapshot {parent} does not exist"
            )))
        }
        Some(Some(r)) => Some(r.backend_key),
    };
    let bkey = backend_key(d, ns, sn, key)?;
    let (d2, sn2, bkey2) = (d.clone(), sn.to_string(), bkey.clone());
    let key2 = key.to_string();
    let gc = d.clone();
    let t = now();
    let rec = SnapshotRecord {
        info: Some(Info {
            name: key.to_string(),
            parent: parent.to_string(),
            kind: if view { Kind::View } else { Kind::Active } as i32,
            created_at: Some(t),
            updated_at: Some(t),
            labels,
        }),
        backend_key: bkey.clone(),
    };
    let (ns2, lease2) = (ns.to_string(), lease.map(str::to_string));
    // The backend snapshot and its record under one hold of the collector's read lock: a
    // collection in between would take the new snapshot for garbage.
    let mounts = tokio::task::spawn_blocking(move || {
        let _gc = gc.gc_read();
        let b = backend(&d2, &sn2)?;
        let mounts = if view {
            b.view(&bkey2, parent_bkey.as_deref())
        } else {
            b.prepare(&bkey2, parent_bkey.as_deref())
        }
        .map_err(|e| backend_error(&key2, e))?;
        let stored = d2.metadata().update(|tx| {
            if tx
                .get_kind::<SnapshotRecord>(&ns2, &kind(&sn2), &key2)?
                .is_some()
            {
                return Err(Error::AlreadyExists(format!("snapshot {key2:?}")));
            }
            tx.put_kind(&ns2, &kind(&sn2), &key2, &rec)?;
            if let Some(l) = &lease2 {
                leases::add_resource(tx, &ns2, l, &kind(&sn2), &key2)?;
            }
            Ok(())
        });
        if let Err(e) = stored {
            let _ = b.remove(&bkey2);
            return Err(e);
        }
        Ok::<_, Error>(mounts)
    })
    .await
    .map_err(|e| Error::internal("snapshot task", e))??;
    d.events().publish(
        ns,
        "/snapshot/prepare",
        &SnapshotPrepare {
            key: key.to_string(),
            parent: parent.to_string(),
            snapshotter: sn.to_string(),
        },
    );
    Ok(to_mounts(mounts))
}

/// Registers `containerd.services.snapshots.v1.Snapshots` and the snapshotter plugins.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.snapshots.v1.Snapshots/";
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Prepare"),
        |d, req: PrepareSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let lease = grpc::lease(&req);
            let r = req.into_inner();
            let mounts = create(
                &d,
                &ns,
                lease.as_deref(),
                &r.snapshotter,
                &r.key,
                &r.parent,
                r.labels,
                false,
            )
            .await?;
            Ok(PrepareSnapshotResponse { mounts })
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}View"),
        |d, req: ViewSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let lease = grpc::lease(&req);
            let r = req.into_inner();
            let mounts = create(
                &d,
                &ns,
                lease.as_deref(),
                &r.snapshotter,
                &r.key,
                &r.parent,
                r.labels,
                true,
            )
            .await?;
            Ok(ViewSnapshotResponse { mounts })
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Mounts"),
        |d, req: MountsRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            let b = backend(&d, &r.snapshotter)?;
            let rec = record(&d, &ns, &r.snapshotter, &r.key)?;
            let mounts = b
                .mounts(&rec.backend_key)
                .map_err(|e| backend_error(&r.key, e))?;
            Ok(MountsResponse {
                mounts: to_mounts(mounts),
            })
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Commit"),
        |d, req: CommitSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let lease = grpc::lease(&req);
            let r = req.into_inner();
            let b = backend(&d, &r.snapshotter)?;
            if r.name.is_empty() {
                return Err(Error::InvalidArgument(
                    "snapshot name must not be empty".into(),
                ));
            }
            identifiers::validate_labels(&r.labels)?;
            let sk = kind(&r.snapshotter);
            let rec = record(&d, &ns, &r.snapshotter, &r.key)?;
            let info = rec.info.clone().unwrap_or_default();
            if d.metadata()
                .view(|v| v.get_kind::<SnapshotRecord>(&ns, &sk, &r.name))?
                .is_some()
            {
                return Err(Error::AlreadyExists(format!("snapshot {:?}", r.name)));
            }
            if info.kind != Kind::Active as i32 {
                return Err(Error::FailedPrecondition(format!(
                    "failed to commit snapshot: snapshot {:?} is not active",
                    rec.backend_key
                )));
            }
            let bkey = backend_key(&d, &ns, &r.snapshotter, &r.name)?;
            let _gc = d.gc_read();
            b.commit(&bkey, &rec.backend_key)
                .map_err(|e| backend_error(&r.key, e))?;
            let t = now();
            let committed = SnapshotRecord {
                info: Some(Info {
                    name: r.name.clone(),
                    parent: info.parent.clone(),
                    kind: Kind::Committed as i32,
                    created_at: Some(t),
                    updated_at: Some(t),
                    labels: r.labels.clone(),
                }),
                backend_key: bkey.clone(),
            };
            // Should this fail (a racing commit to the same name), the committed backend
            // snapshot has no record and the collector removes it.
            d.metadata().update(|tx| {
                if tx.get_kind::<SnapshotRecord>(&ns, &sk, &r.name)?.is_some() {
                    return Err(Error::AlreadyExists(format!("snapshot {:?}", r.name)));
                }
                tx.delete_kind(&ns, &sk, &r.key)?;
                tx.put_kind(&ns, &sk, &r.name, &committed)?;
                if let Some(l) = &lease {
                    leases::add_resource(tx, &ns, l, &sk, &r.name)?;
                }
                Ok(())
            })?;
            drop(_gc);
            d.events().publish(
                &ns,
                "/snapshot/commit",
                &SnapshotCommit {
                    key: r.key,
                    name: r.name,
                    snapshotter: r.snapshotter,
                },
            );
            Ok(())
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Remove"),
        |d, req: RemoveSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            backend(&d, &r.snapshotter)?;
            let sk = kind(&r.snapshotter);
            d.metadata().update(|tx| {
                if tx.get_kind::<SnapshotRecord>(&ns, &sk, &r.key)?.is_none() {
                    return Err(does_not_exist(&r.key));
                }
                let children = tx
                    .list_kind::<SnapshotRecord>(&ns, &sk)?
                    .into_iter()
                    .any(|(_, c)| c.info.is_some_and(|i| i.parent == r.key));
                if children {
                    return Err(Error::FailedPrecondition(
                        "cannot remove snapshot with child".into(),
                    ));
                }
                tx.delete_kind(&ns, &sk, &r.key)?;
                Ok(())
            })?;
            d.events().publish(
                &ns,
                "/snapshot/remove",
                &SnapshotRemove {
                    key: r.key,
                    snapshotter: r.snapshotter,
                },
            );
            d.collect_garbage().await?;
            Ok(())
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Stat"),
        |d, req: StatSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            backend(&d, &r.snapshotter)?;
            let rec = record(&d, &ns, &r.snapshotter, &r.key)?;
            Ok(StatSnapshotResponse { info: rec.info })
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Update"),
        |d, req: UpdateSnapshotRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            backend(&d, &r.snapshotter)?;
            let new = r
                .info
                .ok_or_else(|| Error::InvalidArgument("info must not be empty".into()))?;
            let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            let sk = kind(&r.snapshotter);
            let info = d.metadata().update(|tx| {
                let mut rec = tx
                    .get_kind::<SnapshotRecord>(&ns, &sk, &new.name)?
                    .ok_or_else(|| does_not_exist(&new.name))?;
                let mut info = rec.info.clone().unwrap_or_default();
                update_labels(&mut info.labels, &new.labels, &paths, &new.name)?;
                info.updated_at = Some(now());
                rec.info = Some(info.clone());
                tx.put_kind(&ns, &sk, &new.name, &rec)?;
                Ok(info)
            })?;
            Ok(UpdateSnapshotResponse { info: Some(info) })
        }
    );
    let dd = daemon.clone();
    s.router.server_streaming(
        &format!("{S}List"),
        move |req: tonic::Request<ListSnapshotsRequest>| {
            let d = dd.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let r = req.into_inner();
                backend(&d, &r.snapshotter)?;
                let filter = Filter::parse(&r.filters)?;
                let all: Vec<Info> = d
                    .metadata()
                    .view(|v| v.list_kind::<SnapshotRecord>(&ns, &kind(&r.snapshotter)))?
                    .into_iter()
                    .filter_map(|(_, rec)| rec.info)
                    .filter(|i| filter.matches(&InfoFields(i)))
                    .collect();
                let pages = all
                    .chunks(100)
                    .map(|c| ListSnapshotsResponse { info: c.to_vec() })
                    .collect();
                Ok(grpc::stream_of(pages))
            }
        },
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Usage"),
        |d, req: UsageRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            let b = backend(&d, &r.snapshotter)?;
            let rec = record(&d, &ns, &r.snapshotter, &r.key)?;
            let (size, inodes) = b
                .usage(&rec.backend_key)
                .map_err(|e| backend_error(&r.key, e))?;
            Ok(UsageResponse {
                size: size as i64,
                inodes: inodes as i64,
            })
        }
    );
    crate::unary!(
        s.router,
        daemon,
        &format!("{S}Cleanup"),
        |d, req: CleanupRequest| {
            backend(&d, &req.into_inner().snapshotter)?;
            d.collect_garbage().await?;
            Ok(())
        }
    );
    s.plugin("io.containerd.grpc.v1", "snapshots");
    for name in daemon.snapshotter_names() {
        s.plugin("io.containerd.snapshotter.v1", &name);
    }
}

/// The API kind of a backend kind.
pub fn kind_of(k: SnapshotKind) -> Kind {
    api_kind(k)
}
