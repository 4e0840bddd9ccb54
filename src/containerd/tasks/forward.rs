//! The daemon's side of the shims' event channel and log: the ttrpc endpoint shims forward their
//! task events to (`TTRPC_ADDRESS`, `containerd.services.events.ttrpc.v1.Events/Forward`), and
//! the reader of each bundle's `log` FIFO, which turns shim log lines into daemon log records.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::{create_events, Events};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Where forwarded events go: the task manager's filter, then the daemon's bus.
pub type EventSink = Arc<dyn Fn(Envelope) + Send + Sync>;

/// Why the endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// cannot serve the ttrpc event endpoint on {path}
    #[error("cannot serve the ttrpc event endpoint on {path}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        #[source]
        source: ttrpc::Error,
    },
}

struct Forwarder {
    sink: EventSink,
}

impl Events for Forwarder {
    fn forward(
        &self,
        _ctx: &ttrpc::TtrpcContext,
        req: ForwardRequest,
    ) -> ttrpc::Result<protobuf::well_known_types::empty::Empty> {
        let Some(envelope) = req.envelope.into_option() else {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                "forward request without an envelope",
            )));
        };
        if envelope.topic.is_empty() || envelope.namespace.is_empty() {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "forwarded event needs a topic and a namespace (topic {:?}, namespace {:?})",
                    envelope.topic, envelope.namespace
                ),
            )));
        }
        (self.sink)(envelope);
        Ok(Default::default())
    }
}

/// The serving endpoint; dropping it stops it and removes the socket.
pub struct EventEndpoint {
    server: Option<ttrpc::Server>,
    path: PathBuf,
}

impl std::fmt::Debug for EventEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEndpoint")
            .field("path", &self.path)
            .finish()
    }
}

impl EventEndpoint {
    /// Serves the endpoint on the unix socket `path` (a stale socket there is replaced).
    ///
    /// # Errors
    /// [`ForwardError::Serve`] when the socket cannot be bound or served.
    pub fn serve(path: &Path, sink: EventSink) -> Result<Self, ForwardError> {
        let err = |source| ForwardError::Serve {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(path);
        let service = create_events(Arc::new(Forwarder { sink }));
        let mut server = ttrpc::Server::new()
            .bind(&format!("unix://{}", path.display()))
            .map_err(err)?
            .register_service(service);
        server.start().map_err(err)?;
        Ok(Self {
            server: Some(server),
            path: path.to_path_buf(),
        })
    }

    /// The socket path (what shims get as `TTRPC_ADDRESS`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EventEndpoint {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a bundle's `log` FIFO on a thread until dropped, logging each line under the task's id.
#[derive(Debug)]
pub struct ShimLog {
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShimLog {
    /// Opens `fifo` read-write (so the open never waits for the shim and the FIFO never reports
    /// end-of-file between shim processes) and starts the reader.
    ///
    /// # Errors
    /// The open's error.
    pub fn open(fifo: &Path, namespace: &str, id: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags_nonblock()
            .open(fifo)?;
        let (stop_read, stop_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (namespace, id) = (namespace.to_string(), id.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("shim-log-{id}"))
            .spawn(move || read_log(file, stop_read, &namespace, &id))?;
        Ok(Self {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

impl Drop for ShimLog {
    fn drop(&mut self) {
        // Closing the pipe's write end wakes the reader with a hangup.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_log(mut file: std::fs::File, stop: OwnedFd, namespace: &str, id: &str) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            PollFd::new(file.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(%id, error = %e, "shim log reader stops");
                return;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(%id, error = %e, "shim log reader stops");
                    return;
                }
            }
        }
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            if !line.is_empty() {
                tracing::debug!(target: "shim", %namespace, %id, "{line}");
            }
        }
    }
    if !pending.is_empty() {
        tracing::debug!(target: "shim", %namespace, %id, "{}", String::from_utf8_lossy(&pending).trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::EventsClient;
    use std::sync::Mutex;

    #[test]
    fn forwarded_envelopes_reach_the_sink_and_empty_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink_got = got.clone();
        let endpoint = EventEndpoint::serve(
            &dir.path().join("c.sock.ttrpc"),
            Arc::new(move |e: Envelope| sink_got.lock().unwrap().push(e.topic)),
        )
        .unwrap();
        let client = EventsClient::new(
            ttrpc::Client::connect(&format!("unix://{}", endpoint.path().display())).unwrap(),
        );
        let envelope = Envelope {
            namespace: "default".into(),
            topic: "/tasks/exit".into(),
            ..Default::default()
        };
        client
            .forward(
                ttrpc::context::with_timeout(5_000_000_000),
                &ForwardRequest {
                    envelope: protobuf::MessageField::some(envelope),
                    ..Default::default()
                },
            )
            .unwrap();
        let err = client
            .forward(
                ttrpc::context::with_timeout(5_000_000_000),
                &ForwardRequest::default(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::INVALID_ARGUMENT),
            "{err:?}"
        );
        assert_eq!(*got.lock().unwrap(), ["/tasks/exit"]);
        let path = endpoint.path().to_path_buf();
        drop(endpoint);
        assert!(!path.exists(), "the socket is removed");
    }

    #[test]
    fn the_log_reader_stops_when_dropped_even_with_a_writer_attached() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let log = ShimLog::open(&fifo, "ns", "t").unwrap();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        use std::io::Write;
        writer
            .write_all(b"time=x level=info msg=hello\npartial")
            .unwrap();
        // Returns only once the reader thread has ended, though a writer is still attached.
        drop(log);
    }
}
