//! The checks refeng-containerd runs on a decoded request before it touches any state, reachable
//! by method name so that the fuzz target (`fuzz/fuzz_targets/containerd_requests.rs`) drives
//! the same code the services run on protobuf bytes from a client: ids, refs, digests, labels,
//! filters, field paths, mounts and runtime specs in `Any`.

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
use containerd_client::services::v1::{
    AddResourceRequest, ApplyRequest, Container, CreateContainerRequest, CreateImageRequest,
    CreateNamespaceRequest, CreateRequest, InfoRequest, ListContainersRequest, ListImagesRequest,
    PublishRequest, SubscribeRequest, UpdateContainerRequest, UpdateNamespaceRequest, WriteAction,
    WriteContentRequest,
};
use prost::Message;

use super::error::Error;
use super::filters::Filter;
use super::{containers, content, diff, events, identifiers, images, leases, namespaces};

/// The methods [`check`] knows, by full gRPC path.
pub const METHODS: &[&str] = &[
    "/containerd.services.containers.v1.Containers/Create",
    "/containerd.services.containers.v1.Containers/Update",
    "/containerd.services.containers.v1.Containers/List",
    "/containerd.services.images.v1.Images/Create",
    "/containerd.services.images.v1.Images/List",
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Write",
    "/containerd.services.snapshots.v1.Snapshots/Prepare",
    "/containerd.services.diff.v1.Diff/Apply",
    "/containerd.services.leases.v1.Leases/Create",
    "/containerd.services.leases.v1.Leases/AddResource",
    "/containerd.services.events.v1.Events/Publish",
    "/containerd.services.events.v1.Events/Subscribe",
    "/containerd.services.namespaces.v1.Namespaces/Create",
    "/containerd.services.namespaces.v1.Namespaces/Update",
];

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Error> {
    M::decode(body).map_err(|e| Error::InvalidArgument(format!("malformed request: {e}")))
}

fn some<T>(v: Option<T>, what: &str) -> Result<T, Error> {
    v.ok_or_else(|| Error::InvalidArgument(format!("{what} must not be empty")))
}

/// Decodes `body` as the request of `method` and checks it as the service does.
///
/// # Errors
/// `InvalidArgument` (or the class the service gives) naming what is wrong; `NotImplemented`
/// for a method this table does not know.
pub fn check(method: &str, body: &[u8]) -> Result<(), Error> {
    match METHODS.iter().position(|m| *m == method) {
        Some(0) => {
            let c = some(
                decode::<CreateContainerRequest>(body)?.container,
                "container",
            )?;
            containers::validate(&c)?;
            if let Some(spec) = &c.spec {
                containers::spec_of(spec)?;
            }
        }
        Some(1) => {
            let r = decode::<UpdateContainerRequest>(body)?;
            let new = some(r.container, "container")?;
            let mut old = Container {
                id: new.id.clone(),
                ..new.clone()
            };
            containers::apply_update(
                &mut old,
                &new,
                &r.update_mask.map(|m| m.paths).unwrap_or_default(),
            )?;
            containers::validate(&old)?;
        }
        Some(2) => {
            Filter::parse(&decode::<ListContainersRequest>(body)?.filters)?;
        }
        Some(3) => images::validate(&some(decode::<CreateImageRequest>(body)?.image, "image")?)?,
        Some(4) => {
            Filter::parse(&decode::<ListImagesRequest>(body)?.filters)?;
        }
        Some(5) => {
            content::parse_digest(&decode::<InfoRequest>(body)?.digest)?;
        }
        Some(6) => {
            let w = decode::<WriteContentRequest>(body)?;
            if w.r#ref.is_empty() {
                return Err(Error::InvalidArgument(
                    "first message must have a reference".into(),
                ));
            }
            WriteAction::try_from(w.action).map_err(|_| {
                Error::InvalidArgument(format!("unknown write action {}", w.action))
            })?;
            if !w.expected.is_empty() {
                content::parse_digest(&w.expected)?;
            }
            identifiers::validate_labels(&w.labels)?;
        }
        Some(7) => {
            let p = decode::<PrepareSnapshotRequest>(body)?;
            if p.key.is_empty() {
                return Err(Error::InvalidArgument(
                    "snapshot key must not be empty".into(),
                ));
            }
            identifiers::validate_labels(&p.labels)?;
        }
        Some(8) => {
            let a = decode::<ApplyRequest>(body)?;
            let d = some(a.diff, "diff descriptor")?;
            content::parse_digest(&d.digest)?;
            diff::target(&a.mounts)?;
        }
        Some(9) => {
            let l = decode::<CreateRequest>(body)?;
            if l.id.is_empty() {
                return Err(Error::InvalidArgument("lease id must not be empty".into()));
            }
            identifiers::validate_labels(&l.labels)?;
        }
        Some(10) => {
            leases::validate_resource(&some(
                decode::<AddResourceRequest>(body)?.resource,
                "resource",
            )?)?;
        }
        Some(11) => {
            let p = decode::<PublishRequest>(body)?;
            events::validate_topic(&p.topic)?;
            some(p.event, "event")?;
        }
        Some(12) => {
            Filter::parse(&decode::<SubscribeRequest>(body)?.filters)?;
        }
        Some(13) => {
            let n = some(
                decode::<CreateNamespaceRequest>(body)?.namespace,
                "namespace",
            )?;
            identifiers::validate(&n.name)?;
            identifiers::validate_labels(&n.labels)?;
        }
        Some(14) => {
            let r = decode::<UpdateNamespaceRequest>(body)?;
            let n = some(r.namespace, "namespace")?;
            identifiers::validate(&n.name)?;
            let mut labels = HashMap::new();
            namespaces::apply_labels(
                &n.name,
                &mut labels,
                &n.labels,
                &r.update_mask.map(|m| m.paths).unwrap_or_default(),
            )?;
        }
        _ => {
            return Err(Error::NotImplemented(format!(
                "no request checks for {method}"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_container_passes_and_garbage_is_refused() {
        let c = CreateContainerRequest {
            container: Some(Container {
                id: "c1".into(),
                runtime: Some(containerd_client::services::v1::container::Runtime {
                    name: "io.containerd.runc.v2".into(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: containers::SPEC_TYPE_URL.into(),
                    value: br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},"linux":{}}"#.to_vec(),
                }),
                ..Default::default()
            }),
        };
        check(METHODS[0], &c.encode_to_vec()).unwrap();
        assert!(check(METHODS[0], b"\xff\xff\xff").is_err());
        assert!(check(METHODS[0], &[]).is_err());
        assert!(check("/nope", &[]).is_err());
    }
}
