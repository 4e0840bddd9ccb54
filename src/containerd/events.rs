//! The event bus of refeng-containerd and its Events service: every service publishes what it
//! did (`/containers/create`, `/images/delete`, ...) on the one in-process bus; clients publish
//! and forward their own, and subscribe with containerd's filters.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use containerd_client::services::v1::{ForwardRequest, PublishRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use prost_types::Any;
use tokio::sync::mpsc;
use tonic::Status;

use super::error::Error;
use super::filters::{Fields, Filter};
use super::grpc::{self, ResponseStream, Router};
use super::identifiers;

/// How many events a slow subscriber may fall behind before it misses some.
const BACKLOG: usize = 4096;

/// The bus. Cloning it gives another handle to the same bus.
///
/// Each subscriber has its own queue of the events its filter passes, bounded by [`BACKLOG`]:
/// a queue takes memory only for what it holds, so a bus nobody listens to, or whose listeners
/// keep up, holds next to nothing (a broadcast ring would hold all its slots from the start).
#[derive(Debug, Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Result<Envelope, Status>>,
}

impl Fields for Envelope {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "namespace" => Some(self.namespace.clone()),
            [f] if f == "topic" => Some(self.topic.clone()),
            [f, rest @ ..] if f == "event" => {
                self.event.as_ref().and_then(|e| event_field(e, rest))
            }
            _ => None,
        }
    }
}

/// A label of `labels` for the path `[key]` (containerd's fieldpath for a map).
fn label(labels: &std::collections::HashMap<String, String>, rest: &[String]) -> Option<String> {
    match rest {
        [k] => labels.get(k).cloned(),
        _ => None,
    }
}

/// `event.<field>` of a filter: the event's field by its protobuf name, as containerd's
/// generated fieldpath adaptors answer it (strings, a bool, `labels.<key>`, nested messages;
/// numbers are not fields there either). `None` for an unknown type or field.
#[allow(clippy::too_many_lines)]
pub fn event_field(any: &Any, path: &[String]) -> Option<String> {
    use containerd_client::events as ev;
    use containerd_client::services::v1 as svc;
    use prost::Message as _;
    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    let b = any.value.as_slice();
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match name {
        "containerd.events.ContainerCreate" => {
            let e = ev::ContainerCreate::decode(b).ok()?;
            match p.as_slice() {
                ["id"] => Some(e.id),
                ["image"] => Some(e.image),
                ["runtime", "name"] => e.runtime.map(|r| r.name),
                _ => None,
            }
        }
        "containerd.events.ContainerUpdate" => {
            let e = ev::ContainerUpdate::decode(b).ok()?;
            match p.as_slice() {
                ["id"] => Some(e.id),
                ["image"] => Some(e.image),
                ["snapshot_key"] => Some(e.snapshot_key),
                ["labels", ..] => label(&e.labels, &path[1..]),
                _ => None,
            }
        }
        "containerd.events.ContainerDelete" => match p.as_slice() {
            ["id"] => Some(ev::ContainerDelete::decode(b).ok()?.id),
            _ => None,
        },
        "containerd.events.ContentCreate" => match p.as_slice() {
            ["digest"] => Some(ev::ContentCreate::decode(b).ok()?.digest),
            _ => None,
        },
        "containerd.events.ContentDelete" => match p.as_slice() {
            ["digest"] => Some(ev::ContentDelete::decode(b).ok()?.digest),
            _ => None,
        },
        "containerd.events.NamespaceCreate" | "containerd.events.NamespaceUpdate" => {
            let e = ev::NamespaceCreate::decode(b).ok()?;
            match p.as_slice() {
                ["name"] => Some(e.name),
                ["labels", ..] => label(&e.labels, &path[1..]),
                _ => None,
            }
        }
        "containerd.events.NamespaceDelete" => match p.as_slice() {
            ["name"] => Some(ev::NamespaceDelete::decode(b).ok()?.name),
            _ => None,
        },
        "containerd.events.SnapshotPrepare" => {
            let e = ev::SnapshotPrepare::decode(b).ok()?;
            match p.as_slice() {
                ["key"] => Some(e.key),
                ["parent"] => Some(e.parent),
                ["snapshotter"] => Some(e.snapshotter),
                _ => None,
            }
        }
        "containerd.events.SnapshotCommit" => {
            let e = ev::SnapshotCommit::decode(b).ok()?;
            match p.as_slice() {
                ["key"] => Some(e.key),
                ["name"] => Some(e.name),
                ["snapshotter"] => Some(e.snapshotter),
                _ => None,
            }
        }
        "containerd.events.SnapshotRemove" => {
            let e = ev::SnapshotRemove::decode(b).ok()?;
            match p.as_slice() {
                ["key"] => Some(e.key),
                ["snapshotter"] => Some(e.snapshotter),
                _ => None,
            }
        }
        "containerd.events.TaskCreate" => {
            let e = ev::TaskCreate::decode(b).ok()?;
            match p.as_slice() {
                ["container_id"] => Some(e.container_id),
                ["bundle"] => Some(e.bundle),
                ["checkpoint"] => Some(e.checkpoint),
                ["io", "stdin"] => e.io.map(|io| io.stdin),
                ["io", "stdout"] => e.io.map(|io| io.stdout),
                ["io", "stderr"] => e.io.map(|io| io.stderr),
                ["io", "terminal"] => e.io.map(|io| io.terminal.to_string()),
                _ => None,
            }
        }
        "containerd.events.TaskDelete" => {
            let e = ev::TaskDelete::decode(b).ok()?;
            match p.as_slice() {
                ["container_id"] => Some(e.container_id),
                ["id"] => Some(e.id),
                _ => None,
            }
        }
        "containerd.events.TaskExit" => {
            let e = ev::TaskExit::decode(b).ok()?;
            match p.as_slice() {
                ["container_id"] => Some(e.container_id),
                ["id"] => Some(e.id),
                _ => None,
            }
        }
        "containerd.events.TaskExecAdded" | "containerd.events.TaskExecStarted" => {
            let e = ev::TaskExecAdded::decode(b).ok()?;
            match p.as_slice() {
                ["container_id"] => Some(e.container_id),
                ["exec_id"] => Some(e.exec_id),
                _ => None,
            }
        }
        "containerd.events.TaskCheckpointed" => {
            let e = ev::TaskCheckpointed::decode(b).ok()?;
            match p.as_slice() {
                ["container_id"] => Some(e.container_id),
                ["checkpoint"] => Some(e.checkpoint),
                _ => None,
            }
        }
        "containerd.events.TaskStart"
        | "containerd.events.TaskOOM"
        | "containerd.events.TaskPaused"
        | "containerd.events.TaskResumed" => match p.as_slice() {
            // Each has container_id as its first field (tag 1, a string).
            ["container_id"] => Some(ev::TaskOom::decode(b).ok()?.container_id),
            _ => None,
        },
        "containerd.services.images.v1.ImageCreate"
        | "containerd.services.images.v1.ImageUpdate" => {
            let e = svc::ImageCreate::decode(b).ok()?;
            match p.as_slice() {
                ["name"] => Some(e.name),
                ["labels", ..] => label(&e.labels, &path[1..]),
                _ => None,
            }
        }
        "containerd.services.images.v1.ImageDelete" => match p.as_slice() {
            ["name"] => Some(svc::ImageDelete::decode(b).ok()?.name),
            _ => None,
        },
        _ => None,
    }
}

/// Checks a topic as containerd's exchange does: `/` then identifiers joined by `/`.
///
/// # Errors
/// `InvalidArgument` saying what is wrong with it.
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    let Some(rest) = topic.strip_prefix('/') else {
        return Err(Error::InvalidArgument(format!(
            "topic {topic:?} must start with '/'"
        )));
    };
    if rest.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "topic {topic:?} must have at least one component"
        )));
    }
    for component in rest.split('/') {
        identifiers::validate(component).map_err(|e| {
            Error::InvalidArgument(format!("failed validation on component {component:?}: {e}"))
        })?;
    }
    Ok(())
}

/// Wraps an event message in an `Any` with the type URL containerd gives it (its full
/// protobuf name, which Go's typeurl resolves).
pub fn to_any<E: prost::Name>(event: &E) -> Any {
    Any {
        type_url: E::full_name(),
        value: event.encode_to_vec(),
    }
}

impl EventBus {
    /// A new bus with no subscribers.
    pub fn new() -> Self {
        EventBus::default()
    }

    /// Publishes an event of the daemon in namespace `ns` under `topic`.
    pub fn publish<E: prost::Name>(&self, ns: &str, topic: &str, event: &E) {
        self.publish_any(ns, topic, to_any(event));
    }

    /// Publishes an already wrapped event, stamped now.
    pub fn publish_any(&self, ns: &str, topic: &str, event: Any) {
        self.forward(Envelope {
            timestamp: Some(SystemTime::now().into()),
            namespace: ns.to_string(),
            topic: topic.to_string(),
            event: Some(event),
        });
    }

    /// Sends an envelope on as it is (a shim's or a client's forwarded event).
    pub fn forward(&self, envelope: Envelope) {
        tracing::debug!(topic = %envelope.topic, namespace = %envelope.namespace, "event");
        // No subscriber is not an error: the event is simply not seen by anyone.
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subscribers.retain(|s| {
            if !s.filter.matches(&envelope) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(Ok(envelope.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(topic = %envelope.topic, "event subscriber fell behind: event dropped");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// A stream of the events from now on that pass `filter`.
    pub fn subscribe(&self, filter: Filter) -> ResponseStream<Envelope> {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subscribers.retain(|s| !s.tx.is_closed());
        subscribers.push(Subscriber { filter, tx });
        grpc::stream_from(rx)
    }
}

/// Registers the Events service (`containerd.services.events.v1.Events`).
pub fn register(router: &mut Router, bus: &EventBus) {
    const S: &str = "/containerd.services.events.v1.Events/";
    let b = bus.clone();
    router.unary(
        &format!("{S}Publish"),
        move |req: tonic::Request<PublishRequest>| {
            let b = b.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let req = req.into_inner();
                validate_topic(&req.topic)?;
                let event = req
                    .event
                    .ok_or_else(|| Error::InvalidArgument("event must not be empty".into()))?;
                b.publish_any(&ns, &req.topic, event);
                Ok(())
            }
        },
    );
    let b = bus.clone();
    router.unary(
        &format!("{S}Forward"),
        move |req: tonic::Request<ForwardRequest>| {
            let b = b.clone();
            async move {
                let env = req
                    .into_inner()
                    .envelope
                    .ok_or_else(|| Error::InvalidArgument("envelope must not be empty".into()))?;
                identifiers::validate(&env.namespace)?;
                validate_topic(&env.topic)?;
                b.forward(env);
                Ok(())
            }
        },
    );
    let b = bus.clone();
    router.server_streaming(
        &format!("{S}Subscribe"),
        move |req: tonic::Request<SubscribeRequest>| {
            let b = b.clone();
            async move {
                let filter = Filter::parse(&req.into_inner().filters)?;
                Ok(b.subscribe(filter))
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked_like_containerds_exchange() {
        assert!(validate_topic("/tasks/exit").is_ok());
        assert!(validate_topic("/a").is_ok());
        for bad in ["", "/", "tasks", "/tasks/", "/a//b", "/a b"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn subscribers_see_matching_events_only() {
        use tokio_stream::StreamExt;
        let bus = EventBus::new();
        let mut s = bus.subscribe(Filter::parse(&["topic==\"/a/b\""]).unwrap());
        bus.publish_any("ns", "/a/c", Any::default());
        bus.publish_any("ns", "/a/b", Any::default());
        let env = s.next().await.unwrap().unwrap();
        assert_eq!(env.topic, "/a/b");
        assert_eq!(env.namespace, "ns");
    }

    #[tokio::test]
    async fn event_fields_filter_as_containerds_fieldpaths() {
        use containerd_client::events::{ContainerCreate, TaskExit, TaskOom};
        use tokio_stream::StreamExt;
        let bus = EventBus::new();
        let mut s = bus.subscribe(
            Filter::parse(&["topic==\"/tasks/exit\",event.container_id==\"c2\""]).unwrap(),
        );
        for id in ["c1", "c2"] {
            bus.publish(
                "ns",
                "/tasks/exit",
                &TaskExit {
                    container_id: id.into(),
                    id: id.into(),
                    pid: 1,
                    exit_status: 0,
                    exited_at: None,
                },
            );
        }
        let env = s.next().await.unwrap().unwrap();
        let any = env.event.clone().unwrap();
        assert_eq!(
            event_field(&any, &["container_id".into()]).as_deref(),
            Some("c2")
        );
        assert_eq!(event_field(&any, &["pid".into()]), None);
        let c = to_any(&ContainerCreate {
            id: "x".into(),
            image: "img".into(),
            runtime: Some(containerd_client::events::container_create::Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
        });
        assert_eq!(
            event_field(&c, &["runtime".into(), "name".into()]).as_deref(),
            Some("io.containerd.runc.v2")
        );
        let o = to_any(&TaskOom {
            container_id: "o".into(),
        });
        assert_eq!(
            event_field(&o, &["container_id".into()]).as_deref(),
            Some("o")
        );
    }
}
