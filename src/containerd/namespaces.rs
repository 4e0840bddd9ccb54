//! The Namespaces service: create, inspect, relabel and remove namespaces. A namespace also
//! comes into being when anything is stored in it; it can be removed only when empty.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use containerd_client::services::v1::{
    CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest, GetNamespaceRequest,
    GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse, Namespace,
    UpdateNamespaceRequest, UpdateNamespaceResponse,
};

use super::error::Error;
use super::identifiers;
use super::metadata::Read;
use super::{Daemon, Services};

fn subject(name: &str) -> String {
    format!("namespace {name:?}")
}

/// The namespace of the request's header, or "" when it has none (for the events' envelope).
fn header_namespace<T>(req: &tonic::Request<T>) -> String {
    super::grpc::namespace(req).unwrap_or_default()
}

/// Applies an update mask to the labels of namespace `name` as containerd's namespaces service
/// does: no paths replace all labels; `labels` replaces all; `labels.<key>` sets (or, with no
/// value, removes) one key.
///
/// # Errors
/// `InvalidArgument` for a path other than `labels` and `labels.<key>`.
pub fn apply_labels(
    name: &str,
    labels: &mut HashMap<String, String>,
    new: &HashMap<String, String>,
    paths: &[String],
) -> Result<(), Error> {
    if paths.is_empty() {
        labels.clone_from(new);
        return Ok(());
    }
    for path in paths {
        if path == "labels" {
            labels.clone_from(new);
        } else if let Some(key) = path.strip_prefix("labels.") {
            match new.get(key).filter(|v| !v.is_empty()) {
                Some(v) => {
                    labels.insert(key.to_string(), v.clone());
                }
                None => {
                    labels.remove(key);
                }
            }
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot update {path:?} field on {}",
                subject(name)
            )));
        }
    }
    Ok(())
}

/// Registers `containerd.services.namespaces.v1.Namespaces`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.namespaces.v1.Namespaces/";
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}Get"),
        move |req: tonic::Request<GetNamespaceRequest>| {
            let d = d.clone();
            async move {
                let name = req.into_inner().name;
                identifiers::validate(&name)?;
                // containerd answers a namespace that does not exist (yet) as one without labels.
                let ns = d
                    .metadata()
                    .view(|v| v.namespace(&name))?
                    .unwrap_or(Namespace {
                        name: name.clone(),
                        labels: HashMap::new(),
                    });
                Ok(GetNamespaceResponse {
                    namespace: Some(ns),
                })
            }
        },
    );
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}List"),
        move |_req: tonic::Request<ListNamespacesRequest>| {
            let d = d.clone();
            async move {
                Ok(ListNamespacesResponse {
                    namespaces: d.metadata().view(|v| v.namespaces())?,
                })
            }
        },
    );
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}Create"),
        move |req: tonic::Request<CreateNamespaceRequest>| {
            let d = d.clone();
            async move {
                let event_ns = header_namespace(&req);
                let ns = req
                    .into_inner()
                    .namespace
                    .ok_or_else(|| Error::InvalidArgument("namespace must not be empty".into()))?;
                identifiers::validate(&ns.name)?;
                identifiers::validate_labels(&ns.labels)?;
                d.metadata().update(|tx| {
                    if tx.namespace(&ns.name)?.is_some() {
                        return Err(Error::AlreadyExists(subject(&ns.name)));
                    }
                    tx.put_namespace(&ns)
                })?;
                d.events().publish(
                    &event_ns,
                    "/namespaces/create",
                    &NamespaceCreate {
                        name: ns.name.clone(),
                        labels: ns.labels.clone(),
                    },
                );
                Ok(CreateNamespaceResponse {
                    namespace: Some(ns),
                })
            }
        },
    );
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}Update"),
        move |req: tonic::Request<UpdateNamespaceRequest>| {
            let d = d.clone();
            async move {
                let event_ns = header_namespace(&req);
                let req = req.into_inner();
                let new = req
                    .namespace
                    .ok_or_else(|| Error::InvalidArgument("namespace must not be empty".into()))?;
                identifiers::validate(&new.name)?;
                identifiers::validate_labels(&new.labels)?;
                let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
                let updated = d.metadata().update(|tx| {
                    let mut ns = tx.namespace(&new.name)?.unwrap_or(Namespace {
                        name: new.name.clone(),
                        labels: HashMap::new(),
                    });
                    apply_labels(&new.name, &mut ns.labels, &new.labels, &paths)?;
                    tx.put_namespace(&ns)?;
                    Ok(ns)
                })?;
                // containerd's event carries the labels of the request, not the result.
                d.events().publish(
                    &event_ns,
                    "/namespaces/update",
                    &NamespaceUpdate {
                        name: new.name.clone(),
                        labels: new.labels.clone(),
                    },
                );
                Ok(UpdateNamespaceResponse {
                    namespace: Some(updated),
                })
            }
        },
    );
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}Delete"),
        move |req: tonic::Request<DeleteNamespaceRequest>| {
            let d = d.clone();
            async move {
                let name = req.into_inner().name;
                identifiers::validate(&name)?;
                d.metadata().update(|tx| {
                    if tx.namespace(&name)?.is_none() {
                        return Err(Error::NotFound(subject(&name)));
                    }
                    if let Some(kind) = tx.first_kind_in(&name)? {
                        return Err(Error::FailedPrecondition(format!(
                            "{} must be empty, but it still has {kind}",
                            subject(&name)
                        )));
                    }
                    tx.remove_namespace(&name)
                })?;
                // containerd publishes the removal in the removed namespace itself.
                d.events().publish(
                    &name.clone(),
                    "/namespaces/delete",
                    &NamespaceDelete { name },
                );
                Ok(())
            }
        },
    );
    s.plugin("io.containerd.grpc.v1", "namespaces");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn update_masks_follow_containerd() {
        let mut l = m(&[("a", "1"), ("b", "2")]);
        apply_labels(
            "n",
            &mut l,
            &m(&[("a", "9"), ("c", "3")]),
            &["labels.a".into()],
        )
        .unwrap();
        assert_eq!(l, m(&[("a", "9"), ("b", "2")]));
        apply_labels("n", &mut l, &m(&[]), &["labels.b".into()]).unwrap();
        assert_eq!(l, m(&[("a", "9")]));
        apply_labels("n", &mut l, &m(&[("z", "1")]), &[]).unwrap();
        assert_eq!(l, m(&[("z", "1")]));
        assert!(matches!(
            apply_labels("n", &mut l, &m(&[]), &["name".into()]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
