//! The Leases service and the lease bookkeeping of the other services: a lease holds content,
//! ingests and snapshots (its resources) against garbage collection until it is deleted or its
//! `containerd.io/gc.expire` time passes. Objects created under a request's `containerd-lease`
//! become its resources, as in containerd, so an import or unpack in progress is never collected.

use std::sync::Arc;

use containerd_client::services::v1::{
    AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResourceRequest, Lease,
    ListRequest, ListResourcesRequest, ListResourcesResponse, ListResponse, Resource,
};

use super::error::Error;
use super::filters::{label_field, Fields, Filter};
use super::grpc;
use super::identifiers;
use super::metadata::{Read, Record, Txn};
use super::{now, Daemon, Services};
use crate::image::digest::Digest;
use crate::unary;

/// A lease's expiry label: RFC 3339; an expired lease holds nothing.
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// A lease label saying its resources are held without what they reference.
pub const FLAT_LABEL: &str = "containerd.io/gc.flat";

impl Record for Lease {
    const KIND: &'static str = "leases";
}

fn resources_kind(lease: &str) -> String {
    format!("lease/{lease}")
}

fn resource_key(r: &Resource) -> String {
    format!("{}\n{}", r.r#type, r.id)
}

fn subject(id: &str) -> String {
    format!("lease {id:?}")
}

/// Checks a resource's type and id as containerd does.
///
/// # Errors
/// `NotImplemented` for an unknown type, `InvalidArgument` for a content id that is not a
/// digest.
pub fn validate_resource(r: &Resource) -> Result<(), Error> {
    match r.r#type.as_str() {
        "content" => {
            r.id.parse::<Digest>()
                .map_err(|e| Error::InvalidArgument(format!("resource id {:?}: {e}", r.id)))?;
        }
        "ingests" => {}
        t if t.strip_prefix("snapshots/").is_some_and(|s| !s.is_empty()) => {}
        t => {
            return Err(Error::NotImplemented(format!(
                "unsupported resource type {t:?}"
            )))
        }
    }
    if r.id.is_empty() {
        return Err(Error::InvalidArgument(
            "resource id must not be empty".into(),
        ));
    }
    Ok(())
}

/// Adds a resource to `lease` in `ns` within a transaction (what an object created under a
/// lease does).
///
/// # Errors
/// `NotFound` when the lease does not exist.
pub fn add_resource(
    tx: &mut Txn<'_>,
    ns: &str,
    lease: &str,
    r#type: &str,
    id: &str,
) -> Result<(), Error> {
    if tx.get::<Lease>(ns, lease)?.is_none() {
        return Err(Error::NotFound(format!("unable to find lease {lease:?}")));
    }
    let r = Resource {
        id: id.to_string(),
        r#type: r#type.to_string(),
    };
    tx.put_kind(ns, &resources_kind(lease), &resource_key(&r), &r)
}

/// The resources of `lease`.
///
/// # Errors
/// `Internal` when the store cannot be read.
pub fn resources(view: &impl Read, ns: &str, lease: &str) -> Result<Vec<Resource>, Error> {
    Ok(view
        .list_kind::<Resource>(ns, &resources_kind(lease))?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Removes a lease and its resources (in a transaction); false when it did not exist.
///
/// # Errors
/// `Internal` when the store cannot be written.
pub fn remove(tx: &mut Txn<'_>, ns: &str, id: &str) -> Result<bool, Error> {
    if !tx.delete::<Lease>(ns, id)? {
        return Ok(false);
    }
    for r in resources(tx, ns, id)? {
        tx.delete_kind(ns, &resources_kind(id), &resource_key(&r))?;
    }
    Ok(true)
}

/// Whether the lease has expired at `now` (RFC 3339 expiry label in the past).
pub fn expired(lease: &Lease, now: chrono::DateTime<chrono::Utc>) -> bool {
    lease
        .labels
        .get(EXPIRE_LABEL)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t < now)
}

struct LeaseFields<'a>(&'a Lease);

impl Fields for LeaseFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str) {
            Some("id") if path.len() == 1 => Some(self.0.id.clone()),
            Some("labels") => label_field(&self.0.labels, &path[1..]),
            _ => None,
        }
    }
}

/// Registers `containerd.services.leases.v1.Leases`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.leases.v1.Leases/";
    unary!(
        s.router,
        daemon,
        &format!("{S}Create"),
        |d, req: CreateRequest| {
            let ns = grpc::namespace(&req)?;
            let req = req.into_inner();
            // containerd takes any non-empty id (its clients make random ones like `12-AbC-`).
            if req.id.is_empty() {
                return Err(Error::InvalidArgument("lease id must not be empty".into()));
            }
            identifiers::validate_labels(&req.labels)?;
            let lease = Lease {
                id: req.id.clone(),
                created_at: Some(now()),
                labels: req.labels,
            };
            d.metadata().update(|tx| {
                if tx.get::<Lease>(&ns, &lease.id)?.is_some() {
                    return Err(Error::AlreadyExists(subject(&lease.id)));
                }
                tx.put(&ns, &lease.id, &lease)
            })?;
            Ok(CreateResponse { lease: Some(lease) })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Delete"),
        |d, req: DeleteRequest| {
            let ns = grpc::namespace(&req)?;
            let id = req.into_inner().id;
            d.metadata().update(|tx| {
                if !remove(tx, &ns, &id)? {
                    return Err(Error::NotFound(subject(&id)));
                }
                Ok(())
            })?;
            d.collect_garbage().await?;
            Ok(())
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}List"),
        |d, req: ListRequest| {
            let ns = grpc::namespace(&req)?;
            let filter = Filter::parse(&req.into_inner().filters)?;
            Ok(ListResponse {
                leases: d
                    .metadata()
                    .view(|v| v.list::<Lease>(&ns))?
                    .into_iter()
                    .filter(|l| filter.matches(&LeaseFields(l)))
                    .collect(),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}AddResource"),
        |d, req: AddResourceRequest| {
            let ns = grpc::namespace(&req)?;
            let req = req.into_inner();
            let r = req
                .resource
                .ok_or_else(|| Error::InvalidArgument("resource must not be empty".into()))?;
            validate_resource(&r)?;
            d.metadata()
                .update(|tx| add_resource(tx, &ns, &req.id, &r.r#type, &r.id))?;
            Ok(())
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}DeleteResource"),
        |d, req: DeleteResourceRequest| {
            let ns = grpc::namespace(&req)?;
            let req = req.into_inner();
            let r = req
                .resource
                .ok_or_else(|| Error::InvalidArgument("resource must not be empty".into()))?;
            validate_resource(&r)?;
            d.metadata().update(|tx| {
                if tx.get::<Lease>(&ns, &req.id)?.is_none() {
                    return Err(Error::NotFound(subject(&req.id)));
                }
                tx.delete_kind(&ns, &resources_kind(&req.id), &resource_key(&r))?;
                Ok(())
            })?;
            d.collect_garbage().await?;
            Ok(())
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}ListResources"),
        |d, req: ListResourcesRequest| {
            let ns = grpc::namespace(&req)?;
            let id = req.into_inner().id;
            let resources = d.metadata().view(|v| {
                if v.get::<Lease>(&ns, &id)?.is_none() {
                    return Err(Error::NotFound(subject(&id)));
                }
                resources(v, &ns, &id)
            })?;
            Ok(ListResourcesResponse { resources })
        }
    );
    s.plugin("io.containerd.grpc.v1", "leases");
    s.plugin("io.containerd.lease.v1", "manager");
}
