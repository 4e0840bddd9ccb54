//! The serving shim: a new session, subreaper, the reaper thread, the event publisher, and a
//! synchronous ttrpc server on the socket `start` handed down. Synchronous on purpose: a shim is
//! idle almost always, and a few parked threads cost far less memory than an async runtime.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::create_task;

use super::cli::Args;
use super::events::{Publish, Publisher, TaskEvent, TtrpcTransport};
use super::options::RuntimeOptions;
use super::reaper::{Reaper, ReaperError};
use super::runtime::{RuncCli, Runtime, Waiter};
use super::service::Shim;
use super::start::{self, StartError};
use super::task::TaskService;

/// ttrpc's worker pool, per connection. A worker that takes a request and leaves fewer than
/// `MIN` idle starts more, up to `DEFAULT` idle, so a request blocked in Wait never starves the
/// others (hence MIN >= 1, and ttrpc asks MIN < DEFAULT < MAX). `MAX` caps the idle workers:
/// one that finds `MAX` idle already exits, so a burst of requests (ten concurrent execs) does not
/// leave its workers parked in the shim for the rest of the container's life.
const WORKERS_MIN: usize = 1;
const WORKERS_DEFAULT: usize = 2;
const WORKERS_MAX: usize = 3;

/// Why the serving shim could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// cannot become a child subreaper
    #[error("cannot become a child subreaper")]
    Subreaper(#[source] nix::errno::Errno),
    /// cannot start the reaper
    #[error("cannot start the reaper")]
    Reaper(#[from] ReaperError),
    /// cannot start the event publisher
    #[error("cannot start the event publisher")]
    Publisher(#[source] std::io::Error),
    /// cannot serve ttrpc on fd {fd}
    #[error("cannot serve ttrpc on fd {fd}: {source}")]
    Ttrpc { fd: RawFd, source: ttrpc::Error },
    /// bundle
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Drops events when containerd gave no `TTRPC_ADDRESS` (a shim run by hand).
#[derive(Debug)]
struct NoPublisher;

impl Publish for NoPublisher {
    fn publish(&self, event: TaskEvent) {
        tracing::debug!(topic = event.topic(), "no TTRPC_ADDRESS, event dropped");
    }
}

/// The Task service under both names containerd uses: `containerd.task.v2.Task` (containerd
/// 1.6/1.7) and `containerd.task.v3.Task` (2.x, whose messages are the same); the protos crate
/// generates only the v3 name.
fn task_methods(
    service: Arc<TaskService>,
) -> std::collections::HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> {
    let mut methods = create_task(service.clone());
    let v2: Vec<_> = create_task(service)
        .into_iter()
        .map(|(name, handler)| {
            (
                name.replace("/containerd.task.v3.", "/containerd.task.v2."),
                handler,
            )
        })
        .collect();
    methods.extend(v2);
    methods
}

/// Serves until Shutdown exits the process.
///
/// # Errors
/// [`ServeError`] when any part cannot be set up.
pub fn serve(args: &Args, listen_fd: RawFd) -> Result<(), ServeError> {
    // Own session: the shim must not die with containerd's process group or terminal.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).map_err(ServeError::Subreaper)?;
    // Before any other thread: every later thread inherits SIGCHLD blocked.
    let reaper = Reaper::start()?;
    let bundle = start::bundle(args)?;
    let socket_dir = start::socket_dir();
    let (publish, publisher): (Arc<dyn Publish>, Option<Publisher>) =
        match std::env::var("TTRPC_ADDRESS") {
            Ok(address) if !address.is_empty() => {
                let p = Publisher::start(&args.namespace, TtrpcTransport::new(&address))
                    .map_err(ServeError::Publisher)?;
                (Arc::new(p.clone()), Some(p))
            }
            _ => (Arc::new(NoPublisher), None),
        };
    let start_options = RuntimeOptions::load(&bundle).unwrap_or_default();
    let namespace = args.namespace.clone();
    let factory_reaper = Arc::clone(&reaper);
    let factory_bundle = bundle.clone();
    let shim = Arc::new(Shim::new(
        &args.namespace,
        start_options,
        Box::new(move |options: &RuntimeOptions| -> Arc<dyn Runtime> {
            tracing::info!(binary = options.binary(), "runtime");
            Arc::new(RuncCli::new(
                options.binary(),
                &options.root_for(&namespace),
                &factory_bundle,
                Waiter::Reaper(Arc::clone(&factory_reaper)),
            ))
        }),
        publish,
        &socket_dir,
    ));
    let weak = Arc::downgrade(&shim);
    reaper.set_handler(Box::new(move |pid, status, at| {
        if let Some(shim) = weak.upgrade() {
            shim.process_exited(pid, status, at);
        }
    }));
    let socket: Option<PathBuf> = Some(start::socket_path(args));
    let service = TaskService::new(Arc::clone(&shim), publisher, socket);
    let mut server = ttrpc::Server::new()
        .add_listener(listen_fd)
        .map_err(|source| ServeError::Ttrpc {
            fd: listen_fd,
            source,
        })?
        .register_service(task_methods(Arc::new(service)))
        .set_thread_count_min(WORKERS_MIN)
        .set_thread_count_default(WORKERS_DEFAULT)
        .set_thread_count_max(WORKERS_MAX);
    server.start().map_err(|source| ServeError::Ttrpc {
        fd: listen_fd,
        source,
    })?;
    tracing::info!(id = %args.id, pid = std::process::id(), "serving");
    loop {
        std::thread::park();
    }
}
