//! Task events for containerd: built from containerd's event types, wrapped in an envelope and
//! forwarded over ttrpc (`containerd.services.events.ttrpc.v1.Events/Forward`) to the address
//! containerd gives the shim (`TTRPC_ADDRESS`). While that address is unreachable (containerd
//! stopped or restarting) events wait in a bounded queue and go out in order once it answers.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::EventsClient;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;

/// How many undelivered events are kept; older ones are dropped first, with a warning.
pub const QUEUE_LIMIT: usize = 4096;
/// How long one Forward may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the publisher waits between attempts while containerd is unreachable.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long an idle connection is kept before it (and its threads) is dropped.
const IDLE_DISCONNECT: Duration = Duration::from_secs(10);

/// A task event, as containerd names its topics.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// `/tasks/create`
    Created(ev::TaskCreate),
    /// `/tasks/start`
    Started(ev::TaskStart),
    /// `/tasks/exit`
    Exited(ev::TaskExit),
    /// `/tasks/delete`
    Deleted(ev::TaskDelete),
    /// `/tasks/exec-added`
    ExecAdded(ev::TaskExecAdded),
    /// `/tasks/exec-started`
    ExecStarted(ev::TaskExecStarted),
    /// `/tasks/paused`
    Paused(ev::TaskPaused),
    /// `/tasks/resumed`
    Resumed(ev::TaskResumed),
    /// `/tasks/oom`
    Oom(ev::TaskOOM),
}

impl TaskEvent {
    /// The containerd topic.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Created(_) => "/tasks/create",
            Self::Started(_) => "/tasks/start",
            Self::Exited(_) => "/tasks/exit",
            Self::Deleted(_) => "/tasks/delete",
            Self::ExecAdded(_) => "/tasks/exec-added",
            Self::ExecStarted(_) => "/tasks/exec-started",
            Self::Paused(_) => "/tasks/paused",
            Self::Resumed(_) => "/tasks/resumed",
            Self::Oom(_) => "/tasks/oom",
        }
    }

    /// The protobuf message name, which containerd's typeurl uses as the type URL. Constants,
    /// not `descriptor().full_name()`: building the reflection descriptors costs the idle shim
    /// hundreds of kilobytes of heap (a test keeps the two in step).
    pub fn type_url(&self) -> &'static str {
        match self {
            Self::Created(_) => "containerd.events.TaskCreate",
            Self::Started(_) => "containerd.events.TaskStart",
            Self::Exited(_) => "containerd.events.TaskExit",
            Self::Deleted(_) => "containerd.events.TaskDelete",
            Self::ExecAdded(_) => "containerd.events.TaskExecAdded",
            Self::ExecStarted(_) => "containerd.events.TaskExecStarted",
            Self::Paused(_) => "containerd.events.TaskPaused",
            Self::Resumed(_) => "containerd.events.TaskResumed",
            Self::Oom(_) => "containerd.events.TaskOOM",
        }
    }

    /// The event as a protobuf Any, typed the way containerd's typeurl names it (the message's
    /// full name, no `type.googleapis.com/` prefix).
    pub fn to_any(&self) -> Any {
        let value = match self {
            Self::Created(m) => m.write_to_bytes(),
            Self::Started(m) => m.write_to_bytes(),
            Self::Exited(m) => m.write_to_bytes(),
            Self::Deleted(m) => m.write_to_bytes(),
            Self::ExecAdded(m) => m.write_to_bytes(),
            Self::ExecStarted(m) => m.write_to_bytes(),
            Self::Paused(m) => m.write_to_bytes(),
            Self::Resumed(m) => m.write_to_bytes(),
            Self::Oom(m) => m.write_to_bytes(),
        };
        Any {
            type_url: self.type_url().to_string(),
            value: value.unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Where events go.
pub trait Publish: Send + Sync {
    /// Queues `event` for delivery; never blocks on the peer.
    fn publish(&self, event: TaskEvent);
}

/// One attempt to hand an envelope to the caller.
pub trait Transport: Send {
    /// Delivers one envelope.
    ///
    /// # Errors
    /// A message saying why the caller did not take it; the envelope stays queued.
    fn forward(&mut self, envelope: &Envelope) -> Result<(), String>;
    /// Drops the connection (after a failure, or when idle).
    fn disconnect(&mut self);
}

/// The ordered queue of undelivered envelopes.
#[derive(Debug, Default)]
pub struct EventQueue {
    pending: VecDeque<Envelope>,
    dropped: u64,
}

impl EventQueue {
    /// Appends an envelope, dropping the oldest beyond [`QUEUE_LIMIT`].
    pub fn push(&mut self, envelope: Envelope) {
        if self.pending.len() >= QUEUE_LIMIT {
            self.pending.pop_front();
            self.dropped += 1;
            tracing::warn!(
                dropped = self.dropped,
                "event queue full, oldest event dropped"
            );
        }
        self.pending.push_back(envelope);
    }

    /// Delivers queued envelopes in order until the transport refuses one; returns how many went
    /// out.
    pub fn flush(&mut self, transport: &mut dyn Transport) -> usize {
        let mut sent = 0;
        while let Some(front) = self.pending.front() {
            match transport.forward(front) {
                Ok(()) => {
                    self.pending.pop_front();
                    sent += 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e, queued = self.pending.len(), "event not delivered");
                    transport.disconnect();
                    break;
                }
            }
        }
        sent
    }

    /// How many envelopes wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Builds the envelope containerd expects for `event` in `namespace`.
pub fn envelope(namespace: &str, event: &TaskEvent) -> Envelope {
    Envelope {
        timestamp: protobuf::MessageField::some(timestamp(SystemTime::now())),
        namespace: namespace.to_string(),
        topic: event.topic().to_string(),
        event: protobuf::MessageField::some(event.to_any()),
        ..Default::default()
    }
}

/// containerd's ttrpc events service at `TTRPC_ADDRESS`, connected on demand.
#[derive(Debug)]
pub struct TtrpcTransport {
    address: String,
    client: Option<EventsClientBox>,
}

/// `EventsClient` has no Debug; this wrapper gives it one.
struct EventsClientBox(EventsClient);

impl std::fmt::Debug for EventsClientBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventsClient")
    }
}

impl TtrpcTransport {
    /// A transport to `address` (a path or `unix://` URI).
    pub fn new(address: &str) -> Self {
        let address = if address.contains("://") {
            address.to_string()
        } else {
            format!("unix://{address}")
        };
        Self {
            address,
            client: None,
        }
    }
}

impl Transport for TtrpcTransport {
    fn forward(&mut self, envelope: &Envelope) -> Result<(), String> {
        if self.client.is_none() {
            let client = ttrpc::Client::connect(&self.address).map_err(|e| e.to_string())?;
            self.client = Some(EventsClientBox(EventsClient::new(client)));
        }
        let client = self.client.as_ref().map(|c| &c.0).ok_or("not connected")?;
        let req = ForwardRequest {
            envelope: protobuf::MessageField::some(envelope.clone()),
            ..Default::default()
        };
        client
            .forward(
                ttrpc::context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64),
                &req,
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn disconnect(&mut self) {
        self.client = None;
    }
}

/// The production publisher: a queue plus one thread that empties it into containerd.
#[derive(Debug, Clone)]
pub struct Publisher {
    namespace: String,
    shared: Arc<(Mutex<EventQueue>, Condvar)>,
}

impl Publisher {
    /// Starts the delivery thread for `transport`.
    ///
    /// # Errors
    /// The error of spawning the thread.
    pub fn start<T: Transport + 'static>(namespace: &str, transport: T) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(EventQueue::default()), Condvar::new()));
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || deliver(&for_thread, transport))?;
        Ok(Self {
            namespace: namespace.to_string(),
            shared,
        })
    }

    /// Waits until the queue is empty or `timeout` passed; returns whether it emptied.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (queue, changed) = &*self.shared;
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        while !q.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = changed
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Publish for Publisher {
    fn publish(&self, event: TaskEvent) {
        tracing::debug!(topic = event.topic(), "publish");
        let (queue, changed) = &*self.shared;
        queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(envelope(&self.namespace, &event));
        changed.notify_all();
    }
}

/// The delivery loop: sends what is queued, retries while the caller is away, and lets an idle
/// connection go so an idle shim holds no client threads.
fn deliver<T: Transport>(shared: &(Mutex<EventQueue>, Condvar), mut transport: T) {
    let (queue, changed) = shared;
    let mut connected_idle_since: Option<Instant> = None;
    loop {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        while q.is_empty() {
            let wait = if connected_idle_since.is_some() {
                IDLE_DISCONNECT
            } else {
                Duration::from_secs(3600)
            };
            let (guard, timeout) = changed
                .wait_timeout(q, wait)
                .unwrap_or_else(|p| p.into_inner());
            q = guard;
            if timeout.timed_out() && q.is_empty() {
                if let Some(since) = connected_idle_since {
                    if since.elapsed() >= IDLE_DISCONNECT {
                        transport.disconnect();
                        connected_idle_since = None;
                    }
                }
            }
        }
        // Send outside the lock so publishing never waits on containerd.
        let batch: Vec<Envelope> = q.pending.iter().cloned().collect();
        drop(q);
        let mut sent = 0;
        let mut failed = false;
        for envelope in &batch {
            if let Err(e) = transport.forward(envelope) {
                tracing::debug!(error = %e, "containerd unreachable, events stay queued");
                transport.disconnect();
                failed = true;
                break;
            }
            sent += 1;
        }
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        // Only the envelopes that were in the batch are removed; new ones stay behind them.
        for _ in 0..sent.min(q.pending.len()) {
            q.pending.pop_front();
        }
        changed.notify_all();
        drop(q);
        if failed {
            connected_idle_since = None;
            std::thread::sleep(RETRY_INTERVAL);
        } else {
            connected_idle_since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Flaky {
        up: bool,
        got: Vec<String>,
    }

    impl Transport for Flaky {
        fn forward(&mut self, envelope: &Envelope) -> Result<(), String> {
            if self.up {
                self.got.push(envelope.topic.clone());
                Ok(())
            } else {
                Err("connection refused".into())
            }
        }
        fn disconnect(&mut self) {}
    }

    fn start_event() -> TaskEvent {
        TaskEvent::Started(ev::TaskStart {
            container_id: "c".into(),
            pid: 1,
            ..Default::default()
        })
    }

    #[test]
    fn events_wait_while_caller_is_away_and_go_out_in_order() {
        let mut queue = EventQueue::default();
        let mut t = Flaky::default();
        queue.push(envelope("default", &start_event()));
        queue.push(envelope(
            "default",
            &TaskEvent::Exited(ev::TaskExit::default()),
        ));
        assert_eq!(queue.flush(&mut t), 0);
        assert_eq!(queue.len(), 2);
        t.up = true;
        assert_eq!(queue.flush(&mut t), 2);
        assert_eq!(t.got, ["/tasks/start", "/tasks/exit"]);
    }

    #[test]
    fn any_is_typed_like_containerd_typeurl() {
        assert_eq!(
            start_event().to_any().type_url,
            "containerd.events.TaskStart"
        );
    }
}
