//! The Containers service: container records (id, image, runtime, spec, snapshot, labels,
//! extensions) in the metadata store. A record is metadata only; its task is the Tasks
//! service's business.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::events::{
    container_create, ContainerCreate, ContainerDelete, ContainerUpdate,
};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateContainerResponse, DeleteContainerRequest,
    GetContainerRequest, GetContainerResponse, ListContainerMessage, ListContainersRequest,
    ListContainersResponse, UpdateContainerRequest, UpdateContainerResponse,
};

use super::error::Error;
use super::filters::{label_field, Fields, Filter};
use super::grpc::{self, stream_of};
use super::identifiers;
use super::metadata::Read;
use super::{now, Daemon, Services};
use crate::unary;

/// The subject of a container's errors, as containerd words it.
pub fn subject(id: &str) -> String {
    format!("container {id:?}")
}

struct ContainerFields<'a>(&'a Container);

impl Fields for ContainerFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let c = self.0;
        let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
        match path.first().map(String::as_str) {
            Some("id") if path.len() == 1 => nonempty(&c.id),
            Some("image") if path.len() == 1 => nonempty(&c.image),
            Some("runtime") if path.len() == 2 && path[1] == "name" => {
                c.runtime.as_ref().and_then(|r| nonempty(&r.name))
            }
            Some("labels") => label_field(&c.labels, &path[1..]),
            _ => None,
        }
    }
}

/// Checks a record as containerd's metadata store does before it is written.
///
/// # Errors
/// `InvalidArgument` naming the field that is wrong.
pub fn validate(c: &Container) -> Result<(), Error> {
    identifiers::validate(&c.id)
        .map_err(|e| Error::InvalidArgument(format!("container.ID: {e}")))?;
    identifiers::validate_labels(&c.labels)?;
    if c.extensions.keys().any(String::is_empty) {
        return Err(Error::InvalidArgument(
            "extension key must not be zero-length".into(),
        ));
    }
    if c.runtime.as_ref().is_none_or(|r| r.name.is_empty()) {
        return Err(Error::InvalidArgument(
            "container.Runtime.Name must be set".into(),
        ));
    }
    if c.spec.is_none() {
        return Err(Error::InvalidArgument("container.Spec must be set".into()));
    }
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(Error::InvalidArgument(
            "container.Snapshotter must be set if container.SnapshotKey is set".into(),
        ));
    }
    Ok(())
}

/// containerd's type URL of a runtime spec in an `Any` (Go's typeurl name for specs.Spec).
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The runtime spec a container record (or a task request) carries in an `Any`.
///
/// # Errors
/// `InvalidArgument` when the type URL is not a runtime spec's or the JSON is not a valid spec.
pub fn spec_of(any: &prost_types::Any) -> Result<oci_spec::runtime::Spec, Error> {
    let url = any
        .type_url
        .strip_prefix("type.googleapis.com/")
        .unwrap_or(&any.type_url);
    if url != SPEC_TYPE_URL {
        return Err(Error::InvalidArgument(format!(
            "spec of type {:?} is not supported (want {SPEC_TYPE_URL})",
            any.type_url
        )));
    }
    crate::oci::config::parse_config(&any.value)
        .map_err(|e| Error::InvalidArgument(format!("container spec: {e}")))
}

/// Applies an Update as containerd does: no paths replace labels, spec, extensions, image and
/// snapshot key (and refuse a changed snapshotter or runtime, which are immutable); otherwise
/// each path names what to take from `new`.
pub fn apply_update(old: &mut Container, new: &Container, paths: &[String]) -> Result<(), Error> {
    let all: Vec<String>;
    let paths = if paths.is_empty() {
        if new.snapshotter != old.snapshotter {
            return Err(Error::InvalidArgument(
                "container.Snapshotter field is immutable".into(),
            ));
        }
        let name = |c: &Container| {
            c.runtime
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default()
        };
        if name(new) != name(old) {
            return Err(Error::InvalidArgument(
                "container.Runtime.Name field is immutable".into(),
            ));
        }
        all = ["labels", "spec", "extensions", "image", "snapshotkey"]
            .map(String::from)
            .to_vec();
        &all
    } else {
        paths
    };
    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            set_key(&mut old.labels, key, new.labels.get(key).cloned());
            continue;
        }
        if let Some(key) = path.strip_prefix("extensions.") {
            set_key(&mut old.extensions, key, new.extensions.get(key).cloned());
            continue;
        }
        match path.as_str() {
            "labels" => old.labels.clone_from(&new.labels),
            "spec" => old.spec.clone_from(&new.spec),
            "extensions" => old.extensions.clone_from(&new.extensions),
            "image" => old.image.clone_from(&new.image),
            "snapshotkey" => old.snapshot_key.clone_from(&new.snapshot_key),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "cannot update {path:?} field on {:?}",
                    old.id
                )))
            }
        }
    }
    Ok(())
}

fn set_key<V>(map: &mut HashMap<String, V>, key: &str, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(key.to_string(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// The container `id` of namespace `ns`.
///
/// # Errors
/// `NotFound` when there is none, `Internal` when the store cannot be read.
pub fn get(daemon: &Daemon, ns: &str, id: &str) -> Result<Container, Error> {
    daemon
        .metadata()
        .view(|v| v.get::<Container>(ns, id))?
        .ok_or_else(|| Error::NotFound(format!("{} in namespace {ns:?}", subject(id))))
}

fn list(d: &Daemon, ns: &str, filters: &[String]) -> Result<Vec<Container>, Error> {
    let filter = Filter::parse(filters)?;
    Ok(d.metadata()
        .view(|v| v.list::<Container>(ns))?
        .into_iter()
        .filter(|c| filter.matches(&ContainerFields(c)))
        .collect())
}

/// Registers `containerd.services.containers.v1.Containers`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.containers.v1.Containers/";
    unary!(
        s.router,
        daemon,
        &format!("{S}Get"),
        |d, req: GetContainerRequest| {
            let ns = grpc::namespace(&req)?;
            let id = req.into_inner().id;
            if id.is_empty() {
                return Err(Error::InvalidArgument(
                    "container id must not be empty".into(),
                ));
            }
            Ok(GetContainerResponse {
                container: Some(get(&d, &ns, &id)?),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}List"),
        |d, req: ListContainersRequest| {
            let ns = grpc::namespace(&req)?;
            Ok(ListContainersResponse {
                containers: list(&d, &ns, &req.into_inner().filters)?,
            })
        }
    );
    let dd = daemon.clone();
    s.router.server_streaming(
        &format!("{S}ListStream"),
        move |req: tonic::Request<ListContainersRequest>| {
            let d = dd.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let all = list(&d, &ns, &req.into_inner().filters)?;
                Ok(stream_of(
                    all.into_iter()
                        .map(|c| ListContainerMessage { container: Some(c) })
                        .collect(),
                ))
            }
        },
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Create"),
        |d, req: CreateContainerRequest| {
            let ns = grpc::namespace(&req)?;
            let mut c = req
                .into_inner()
                .container
                .ok_or_else(|| Error::InvalidArgument("container must not be empty".into()))?;
            validate(&c)?;
            // containerd's store writes no label with an empty value.
            c.labels.retain(|_, v| !v.is_empty());
            let t = now();
            c.created_at = Some(t);
            c.updated_at = Some(t);
            d.metadata().update(|tx| {
                if tx.get::<Container>(&ns, &c.id)?.is_some() {
                    return Err(Error::AlreadyExists(subject(&c.id)));
                }
                tx.put(&ns, &c.id, &c)
            })?;
            d.events().publish(
                &ns,
                "/containers/create",
                &ContainerCreate {
                    id: c.id.clone(),
                    image: c.image.clone(),
                    runtime: c.runtime.as_ref().map(|r| container_create::Runtime {
                        name: r.name.clone(),
                        options: r.options.clone(),
                    }),
                },
            );
            Ok(CreateContainerResponse { container: Some(c) })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Update"),
        |d, req: UpdateContainerRequest| {
            let ns = grpc::namespace(&req)?;
            let req = req.into_inner();
            let new = req
                .container
                .ok_or_else(|| Error::InvalidArgument("container must not be empty".into()))?;
            if new.id.is_empty() {
                return Err(Error::InvalidArgument("must specify a container id".into()));
            }
            let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
            let updated = d.metadata().update(|tx| {
                let mut c = tx
                    .get::<Container>(&ns, &new.id)?
                    .ok_or_else(|| Error::NotFound(subject(&new.id)))?;
                apply_update(&mut c, &new, &paths)?;
                // containerd's store writes no label with an empty value: setting one removes it.
                c.labels.retain(|_, v| !v.is_empty());
                validate(&c)?;
                c.updated_at = Some(now());
                tx.put(&ns, &c.id, &c)?;
                Ok(c)
            })?;
            d.events().publish(
                &ns,
                "/containers/update",
                &ContainerUpdate {
                    id: updated.id.clone(),
                    image: updated.image.clone(),
                    labels: updated.labels.clone(),
                    snapshot_key: updated.snapshot_key.clone(),
                },
            );
            Ok(UpdateContainerResponse {
                container: Some(updated),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Delete"),
        |d, req: DeleteContainerRequest| {
            let ns = grpc::namespace(&req)?;
            let id = req.into_inner().id;
            d.metadata().update(|tx| {
                if !tx.delete::<Container>(&ns, &id)? {
                    return Err(Error::NotFound(subject(&id)));
                }
                Ok(())
            })?;
            d.events()
                .publish(&ns, "/containers/delete", &ContainerDelete { id });
            Ok(())
        }
    );
    s.plugin("io.containerd.grpc.v1", "containers");
}

#[cfg(test)]
mod tests {
    use containerd_client::services::v1::container::Runtime;

    use super::*;

    fn c(id: &str) -> Container {
        Container {
            id: id.into(),
            runtime: Some(Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(prost_types::Any::default()),
            labels: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&c("ok")).is_ok());
        let mut x = c("bad/id");
        assert!(validate(&x)
            .unwrap_err()
            .to_string()
            .contains("container.ID"));
        x = c("x");
        x.runtime = None;
        assert!(validate(&x)
            .unwrap_err()
            .to_string()
            .contains("Runtime.Name"));
        x = c("x");
        x.spec = None;
        assert!(validate(&x).unwrap_err().to_string().contains("Spec"));
        x = c("x");
        x.snapshot_key = "k".into();
        assert!(validate(&x)
            .unwrap_err()
            .to_string()
            .contains("Snapshotter"));
    }

    #[test]
    fn update_paths_follow_containerd() {
        let mut old = c("x");
        let mut new = c("x");
        new.labels = [("b".to_string(), "2".to_string())].into();
        new.image = "img".into();
        apply_update(&mut old, &new, &["labels.b".into(), "image".into()]).unwrap();
        assert_eq!(old.labels.len(), 2);
        assert_eq!(old.image, "img");
        apply_update(&mut old, &new, &["labels.a".into()]).unwrap();
        assert_eq!(old.labels.len(), 1);
        assert!(apply_update(&mut old, &new, &["runtime".into()]).is_err());
        new.snapshotter = "overlayfs".into();
        assert!(apply_update(&mut old, &new, &[]).is_err());
        new.snapshotter.clear();
        apply_update(&mut old, &new, &[]).unwrap();
        assert_eq!(old.labels, new.labels);
    }

    #[test]
    fn filters_see_id_image_runtime_and_labels() {
        let mut x = c("x");
        x.image = "docker.io/library/busybox:latest".into();
        let m = |f: &str| Filter::parse(&[f]).unwrap().matches(&ContainerFields(&x));
        assert!(m("id==x"));
        assert!(m("runtime.name==io.containerd.runc.v2"));
        assert!(m("image~=busybox"));
        assert!(m("labels.a==1"));
        assert!(!m("labels.a==2"));
    }
}
