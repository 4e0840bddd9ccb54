//! refeng-containerd: containerd's gRPC API (the high-level runtime under refengd and the real
//! `ctr`). One daemon owns one metadata store ([`metadata`]) and one event bus ([`events`]);
//! every service is a thin gRPC layer ([`grpc`]) over them and over the image store of
//! [`crate::image`].
//!
//! For a service module: `register(&mut Router, &Arc<Daemon>)` adds its methods;
//! [`grpc::namespace`] reads a request's namespace; [`Daemon::events`] publishes;
//! [`Daemon::metadata`] reads and writes records (`Container` records via
//! [`metadata::Read::get`] / [`metadata::Txn::put`]); [`error::Error`] is the one error type.

pub mod config;
pub mod containers;
pub mod content;
pub mod diff;
pub mod error;
pub mod events;
pub mod filters;
pub mod gc;
pub mod grpc;
pub mod identifiers;
pub mod images;
pub mod introspection;
pub mod layerdiff;
pub mod leases;
pub mod metadata;
pub mod namespaces;
pub mod requests;
pub mod snapshots;
pub mod tasks;
pub mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use containerd_client::services::v1::Plugin;

/// Registers a unary method whose handler gets the daemon: `unary!(router, daemon, PATH,
/// |d, req: RequestType| body)`, with `body` an expression of type `Result<Response, Error>`
/// (evaluated in an async block, so `?` and `.await` work).
#[macro_export]
macro_rules! unary {
    ($router:expr, $daemon:expr, $path:expr, |$d:ident, $req:ident : $t:ty| $body:expr) => {{
        let daemon = ::std::sync::Arc::clone($daemon);
        $router.unary($path, move |$req: ::tonic::Request<$t>| {
            let $d = ::std::sync::Arc::clone(&daemon);
            async move { $body }
        });
    }};
}

pub use config::Config;
pub use error::Error;
use events::EventBus;
use grpc::Router;
use metadata::Metadata;

use crate::image::content::{ContentStore, Limits};
use crate::image::snapshot::{Backend, Snapshotter};

/// The daemon's shared state: what every service works on.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    metadata: Metadata,
    events: EventBus,
    uuid: String,
    plugins: OnceLock<Vec<Plugin>>,
    content: ContentStore,
    snapshotters: BTreeMap<String, Snapshotter>,
    /// Writers that put bytes down before their records hold it shared; a collection holds it
    /// exclusively, so it never sees bytes whose record is still on its way.
    gc_lock: RwLock<()>,
}

impl Daemon {
    /// Opens the daemon's state under the configured root and state directories (creating them).
    ///
    /// # Errors
    /// `Internal` when a directory cannot be created or the metadata store not opened.
    pub fn open(config: Config) -> Result<Arc<Daemon>, Error> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal(&format!("creating {}", dir.display()), e))?;
        }
        let metadata = Metadata::open(&config.root.join("meta.redb"))?;
        let uuid = load_uuid(&config.root)?;
        let content = ContentStore::open(
            config.root.join("io.containerd.content.v1.content"),
            Limits::default(),
        )
        .map_err(|e| Error::internal("opening the content store", e))?;
        let mut snapshotters = BTreeMap::new();
        // `overlayfs` where the kernel mounts overlays here, plain copies where it does not
        // (the snapshots then mount as binds); `native` is always copies, as containerd's is.
        for (name, backend) in [("overlayfs", None), ("native", Some(Backend::Copy))] {
            let root = config
                .root
                .join(format!("io.containerd.snapshotter.v1.{name}"));
            std::fs::create_dir_all(&root)
                .map_err(|e| Error::internal(&format!("creating {}", root.display()), e))?;
            let backend = match backend {
                Some(b) => b,
                None => chosen_backend(&root)?,
            };
            if name == "overlayfs" && backend == Backend::Copy {
                tracing::warn!(
                    "overlayfs cannot be mounted here: the overlayfs snapshotter copies"
                );
            }
            let sn = Snapshotter::open(&root, backend)
                .map_err(|e| Error::internal(&format!("opening snapshotter {name}"), e))?;
            snapshotters.insert(name.to_string(), sn);
        }
        Ok(Arc::new(Daemon {
            config,
            metadata,
            events: EventBus::new(),
            uuid,
            plugins: OnceLock::new(),
            content,
            snapshotters,
            gc_lock: RwLock::new(()),
        }))
    }

    /// The configuration the daemon runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The persistent root directory (`--root`).
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The volatile state directory (`--state`).
    pub fn state(&self) -> &Path {
        &self.config.state
    }

    /// The one metadata store.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The one event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The daemon's UUID (kept in `<root>/uuid` across restarts).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The blob store (bytes only; which namespace sees a blob is in the metadata store).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The snapshotter backend `name`.
    pub fn snapshotter(&self, name: &str) -> Option<&Snapshotter> {
        self.snapshotters.get(name)
    }

    /// The names of the snapshotters.
    pub fn snapshotter_names(&self) -> Vec<String> {
        self.snapshotters.keys().cloned().collect()
    }

    /// Held while bytes are put down before their record (see `gc_lock`).
    pub fn gc_read(&self) -> RwLockReadGuard<'_, ()> {
        self.gc_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held by a collection.
    pub fn gc_write(&self) -> RwLockWriteGuard<'_, ()> {
        self.gc_lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a garbage collection (on a blocking thread) and waits for it.
    ///
    /// # Errors
    /// As [`gc::collect`].
    pub async fn collect_garbage(self: &Arc<Self>) -> Result<gc::Report, Error> {
        let d = self.clone();
        tokio::task::spawn_blocking(move || gc::collect(&d))
            .await
            .map_err(|e| Error::internal("garbage collection task", e))?
    }

    /// The plugins Introspection lists (set once, when the router is built).
    pub fn plugins(&self) -> &[Plugin] {
        self.plugins.get().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Now, as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    std::time::SystemTime::now().into()
}

/// The backend of the `overlayfs` snapshotter: what the first start found (overlayfs if the
/// kernel mounts it here, else copies), kept in `<root>/backend` so that snapshots made by one
/// backend are never read by the other, and later starts skip the mount probe (a probe and its
/// unmount cost tens of milliseconds).
fn chosen_backend(root: &Path) -> Result<Backend, Error> {
    let path = root.join("backend");
    match std::fs::read_to_string(&path).as_deref().map(str::trim) {
        Ok("overlay") => return Ok(Backend::Overlay),
        Ok("copy") => return Ok(Backend::Copy),
        Ok(other) => {
            return Err(Error::Internal(format!(
                "{}: unknown snapshot backend {other:?} (overlay or copy)",
                path.display()
            )))
        }
        Err(_) => {}
    }
    let b = Backend::detect(root);
    let name = match b {
        Backend::Overlay => "overlay",
        Backend::Copy => "copy",
    };
    crate::sys::durable::write(&path, 0o644, name.as_bytes())
        .map_err(|e| Error::internal(&format!("writing {}", path.display()), e))?;
    Ok(b)
}

fn load_uuid(root: &Path) -> Result<String, Error> {
    let path = root.join("uuid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| Error::internal("reading /dev/urandom", e))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tmp = root.join("uuid.tmp");
    std::fs::write(&tmp, &uuid)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::internal(&format!("writing {}", path.display()), e))?;
    Ok(uuid)
}

/// The services and plugins being put together into a server.
#[derive(Debug, Default)]
pub struct Services {
    /// The method table.
    pub router: Router,
    plugins: Vec<Plugin>,
}

impl Services {
    /// Announces a plugin (type and id, as containerd names them) to Introspection.
    pub fn plugin(&mut self, r#type: &str, id: &str) {
        self.plugins.push(Plugin {
            r#type: r#type.to_string(),
            id: id.to_string(),
            ..Default::default()
        });
    }
}

/// Builds the router with every service of the daemon.
pub fn router(daemon: &Arc<Daemon>) -> Router {
    let mut s = Services::default();
    s.plugin("io.containerd.event.v1", "exchange");
    s.plugin("io.containerd.metadata.v1", "redb");
    version::register(&mut s);
    namespaces::register(&mut s, daemon);
    events::register(&mut s.router, daemon.events());
    s.plugin("io.containerd.grpc.v1", "events");
    containers::register(&mut s, daemon);
    content::register(&mut s, daemon);
    images::register(&mut s, daemon);
    leases::register(&mut s, daemon);
    snapshots::register(&mut s, daemon);
    diff::register(&mut s, daemon);
    tasks::service::register(&mut s, daemon);
    introspection::register(&mut s, daemon);
    let mut plugins = s.plugins;
    plugins.sort_by(|a, b| (&a.r#type, &a.id).cmp(&(&b.r#type, &b.id)));
    let _ = daemon.plugins.set(plugins);
    s.router
}

/// Opens the daemon and serves it on the configured socket until the process ends.
///
/// # Errors
/// When the state cannot be opened or the socket not bound or accepted on.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let address: PathBuf = config.address.clone();
    let daemon = Daemon::open(config)?;
    let router = router(&daemon);
    let listener =
        grpc::bind(&address).map_err(|e| anyhow::anyhow!("binding {}: {e}", address.display()))?;
    tracing::info!(address = %address.display(), "serving containerd API");
    // As containerd does shortly after its start: collect what a crash left without a record
    // (bytes written, or a snapshot made, just before the kill).
    let d = daemon.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Err(e) = d.collect_garbage().await {
            tracing::warn!(error = %e, "garbage collection at start failed");
        }
    });
    // An idle daemon gives its metadata store's memory back (see `Metadata::release_idle`).
    let d = daemon.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METADATA_IDLE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !d.metadata.is_idle(METADATA_IDLE) {
                continue;
            }
            let d = d.clone();
            // Closing writes redb's allocator state back: a blocking thread's work.
            let _ =
                tokio::task::spawn_blocking(move || d.metadata.release_idle(METADATA_IDLE)).await;
        }
    });
    router.serve(listener).await?;
    Ok(())
}

/// How long the metadata store stays open without use.
const METADATA_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
