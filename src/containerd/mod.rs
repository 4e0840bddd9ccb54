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
pub mod error;
pub mod events;
pub mod filters;
pub mod grpc;
pub mod identifiers;
pub mod introspection;
pub mod metadata;
pub mod namespaces;
pub mod tasks;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

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

/// The daemon's shared state: what every service works on.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    metadata: Metadata,
    events: EventBus,
    uuid: String,
    plugins: OnceLock<Vec<Plugin>>,
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
        Ok(Arc::new(Daemon {
            config,
            metadata,
            events: EventBus::new(),
            uuid,
            plugins: OnceLock::new(),
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

    /// The plugins Introspection lists (set once, when the router is built).
    pub fn plugins(&self) -> &[Plugin] {
        self.plugins.get().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Now, as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    std::time::SystemTime::now().into()
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
    router.serve(listener).await?;
    Ok(())
}
