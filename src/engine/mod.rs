//! refengd: the Docker Engine API over a containerd API daemon. It serves the API on unix
//! sockets ([`server`]), keeps Docker's semantics (events, and next container records, logs,
//! names) and reaches containerd only through its gRPC client ([`backend`]); without
//! `--containerd` it starts and watches its own refeng-containerd ([`supervisor`]).

pub mod auth;
pub mod backend;
pub mod build;
pub mod changes;
pub mod config;
pub mod containers;
pub mod df;
pub mod error;
pub mod events;
pub mod filters;
pub mod image_archive;
pub mod image_import;
pub mod image_push;
pub mod images;
pub mod lifecycle;
pub mod network;
pub mod requests;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod system;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use containerd_client::events::{TaskExit, TaskOom, TaskPaused, TaskResumed};
use containerd_client::types::Envelope;
use prost::Message;

pub use config::{Config, Flags};
pub use error::ApiError;

use backend::Backend;
use events::{Event, EventLog};

/// How long refengd waits for containerd to answer at start (dockerd: 60 s).
const CONTAINERD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon's shared state: what every handler works on.
#[derive(Debug)]
pub struct Engine {
    config: RwLock<Config>,
    flags: Flags,
    /// The containerd client.
    pub backend: Backend,
    /// The event log and feed.
    pub events: EventLog,
    /// The engine's id (kept in `<data-root>/engine-id`).
    pub id: String,
    /// The containers.
    pub containers: containers::Registry,
    /// The networks (bridges, endpoints, published ports, DNS).
    pub network: network::containers::Slot,
    /// The volumes of the local driver.
    pub volumes: volumes::Volumes,
    /// Images resolved before, by target digest: what a digest names never changes, so the
    /// catalogue reads only the documents of images it has not seen.
    resolved: std::sync::Mutex<std::collections::HashMap<String, Arc<images::Resolved>>>,
}

impl Engine {
    /// The configuration in force (a copy: `SIGHUP` may replace it).
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the configuration file (`SIGHUP`), applies the keys dockerd reloads (`labels`,
    /// `debug`/`log-level`, `insecure-registries`, `experimental`) and emits the daemon `reload`
    /// event. A file that does not load leaves the configuration as it was.
    ///
    /// # Errors
    /// When the file does not load, or changes a key that needs a restart.
    pub fn reload(&self) -> Result<(), anyhow::Error> {
        let fresh = Config::load(&self.flags)?;
        let mut c = self.config.write().unwrap_or_else(|e| e.into_inner());
        let fixed = |a: &Config, b: &Config| {
            (
                (a.hosts.clone(), a.tcp_hosts.clone(), a.tls.clone()),
                a.data_root.clone(),
                a.exec_root.clone(),
                a.containerd.clone(),
                a.containerd_namespace.clone(),
                a.group.clone(),
                a.pidfile.clone(),
                a.bip,
                a.default_address_pools.clone(),
                a.bridge_none,
                a.seccomp_profile.clone(),
            ) == (
                (b.hosts.clone(), b.tcp_hosts.clone(), b.tls.clone()),
                b.data_root.clone(),
                b.exec_root.clone(),
                b.containerd.clone(),
                b.containerd_namespace.clone(),
                b.group.clone(),
                b.pidfile.clone(),
                b.bip,
                b.default_address_pools.clone(),
                b.bridge_none,
                b.seccomp_profile.clone(),
            )
        };
        if !fixed(&c, &fresh) {
            anyhow::bail!(
                "hosts, tls*, data-root, exec-root, containerd, containerd-namespace, group, pidfile, \
                 bip, default-address-pools, bridge and seccomp-profile take effect only at start; restart refengd to \
                 change them"
            );
        }
        *c = fresh;
        let attrs: BTreeMap<String, String> = [
            ("name", system::hostname()),
            ("labels", format!("[{}]", c.labels.join(" "))),
            (
                "debug",
                matches!(c.log_level.as_str(), "debug" | "trace").to_string(),
            ),
            (
                "insecure-registries",
                format!("[{}]", c.insecure_registries.join(" ")),
            ),
            ("experimental", c.experimental.to_string()),
            ("log-driver", c.log_driver.name().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        drop(c);
        self.events
            .emit(Event::new("daemon", "reload", &self.id, attrs));
        Ok(())
    }

    /// The `volume` event `action` (create, destroy) about volume `name`, as dockerd emits it.
    pub fn volume_event(&self, name: &str, action: &str) {
        let attrs = [("driver".to_string(), volumes::LOCAL.to_string())].into();
        self.events.emit(Event::new("volume", action, name, attrs));
    }
}

/// What a task event from containerd says, decoded from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// A process ended (`/tasks/exit`); `id` is the exec id, or the container id for init.
    Exited {
        /// The containerd container id.
        container_id: String,
        /// The process id within the task.
        id: String,
        /// The pid of the process that exited.
        pid: u32,
        /// Its exit status.
        exit_status: u32,
    },
    /// The kernel's OOM killer hit the task (`/tasks/oom`).
    OomKilled {
        /// The containerd container id.
        container_id: String,
    },
    /// The task was frozen (`/tasks/paused`).
    Paused {
        /// The containerd container id.
        container_id: String,
    },
    /// The task was thawed (`/tasks/resumed`).
    Resumed {
        /// The containerd container id.
        container_id: String,
    },
}

impl TaskEvent {
    /// Decodes the task events the engine acts on; other topics are `None`.
    pub fn decode(env: &Envelope) -> Option<TaskEvent> {
        let any = env.event.as_ref()?;
        let body = any.value.as_slice();
        match env.topic.as_str() {
            "/tasks/exit" => TaskExit::decode(body).ok().map(|e| TaskEvent::Exited {
                container_id: e.container_id,
                id: e.id,
                pid: e.pid,
                exit_status: e.exit_status,
            }),
            "/tasks/oom" => TaskOom::decode(body).ok().map(|e| TaskEvent::OomKilled {
                container_id: e.container_id,
            }),
            "/tasks/paused" => TaskPaused::decode(body).ok().map(|e| TaskEvent::Paused {
                container_id: e.container_id,
            }),
            "/tasks/resumed" => TaskResumed::decode(body).ok().map(|e| TaskEvent::Resumed {
                container_id: e.container_id,
            }),
            _ => None,
        }
    }
}

/// Follows containerd's events in the engine's namespace for as long as the daemon runs,
/// subscribing again when containerd restarts.
async fn follow_containerd(engine: Arc<Engine>) {
    loop {
        match engine.backend.subscribe().await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(env)) => match TaskEvent::decode(&env) {
                        Some(TaskEvent::Exited {
                            container_id,
                            id,
                            pid,
                            exit_status,
                        }) => {
                            let engine = engine.clone();
                            tokio::spawn(async move {
                                engine
                                    .on_task_exit(&container_id, &id, pid, exit_status)
                                    .await;
                            });
                        }
                        Some(TaskEvent::OomKilled { container_id }) => {
                            engine.on_task_oom(&container_id);
                        }
                        Some(TaskEvent::Paused { .. } | TaskEvent::Resumed { .. }) | None => {}
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "containerd event stream ended");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to containerd events yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn load_id(data_root: &Path) -> anyhow::Result<String> {
    let path = data_root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    crate::sys::durable::write(&path, 0o644, id.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Writes the pidfile, refusing to start when it names a live process (dockerd's check).
fn claim_pidfile(path: &Path) -> anyhow::Result<()> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let pid = nix::unistd::Pid::from_raw(pid);
            if pid != nix::unistd::getpid()
                && nix::sys::signal::kill(pid, None).is_ok()
                && Path::new(&format!("/proc/{pid}")).exists()
            {
                anyhow::bail!(
                    "pid file found, ensure refengd is not running or delete {}",
                    path.display()
                );
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, std::process::id().to_string())
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs the daemon until TERM or INT: the pidfile, the supervised refeng-containerd (unless
/// `--containerd`), the API sockets; `HUP` reloads the configuration file.
///
/// # Errors
/// When the configuration, the pidfile, containerd or a socket fail at start.
pub async fn run(flags: Flags) -> anyhow::Result<()> {
    let config = Config::load(&flags)?;
    for dir in [&config.data_root, &config.exec_root] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    claim_pidfile(&config.pidfile)?;
    let pidfile = config.pidfile.clone();
    let result = serve(config, flags).await;
    let _ = std::fs::remove_file(&pidfile);
    result
}

async fn serve(config: Config, flags: Flags) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let supervisor = match &config.containerd {
        Some(_) => None,
        None => Some(supervisor::Supervisor::start(supervisor::Layout::new(
            &config,
        ))?),
    };
    let result = async {
        let backend = Backend::new(&config.containerd_socket(), &config.containerd_namespace)?;
        let ctd = backend.wait_ready(CONTAINERD_START_TIMEOUT).await?;
        tracing::info!(version = %ctd.version, socket = %backend.socket().display(), "containerd answers");
        let engine = Arc::new(Engine {
            id: load_id(&config.data_root)?,
            config: RwLock::new(config.clone()),
            flags,
            containers: containers::Registry::new(
                &config.data_root,
                &config.exec_root,
                containers::ctd::Ctd::new(
                    backend.clone(),
                    // refeng-containerd runs its own shim and runtime by default; the real
                    // containerd gets runc's shim, as dockerd asks for.
                    if config.containerd.is_some() {
                        "io.containerd.runc.v2"
                    } else {
                        crate::containerd::tasks::service::DEFAULT_RUNTIME
                    },
                ),
            ),
            backend,
            volumes: volumes::Volumes::open(&config.data_root),
            resolved: std::sync::Mutex::default(),
            events: EventLog::default(),
            network: network::containers::Slot::new({
                let mut n = network::NetworkConfig::new(
                    &config.data_root,
                    &config.exec_root,
                    config.bip,
                    config.default_address_pools.clone(),
                );
                n.default_network = !config.bridge_none;
                n
            }),
        });
        tokio::spawn(follow_containerd(engine.clone()));
        if engine.network.open_at_start() {
            engine.network.get().await?;
        }
        // After subscribing: an exit while records load is caught by their final check.
        engine.restore_containers().await;
        // As dockerd: the API answers once the containers are loaded (a request before would
        // not find them).
        let mut sockets: Vec<PathBuf> = Vec::new();
        for host in &config.hosts {
            let listener = server::bind(host, &config.group)?;
            sockets.push(host.clone());
            tracing::info!(socket = %host.display(), "API listen");
            tokio::spawn(server::serve(engine.clone(), listener));
        }
        if let Some(files) = config.tls.as_ref().filter(|_| !config.tcp_hosts.is_empty()) {
            let acceptor = server::tls_acceptor(files)?;
            for addr in &config.tcp_hosts {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding tcp://{addr}"))?;
                tracing::info!(address = %addr, "API listen (TLS, client certificates)");
                tokio::spawn(server::serve_tls(
                    engine.clone(),
                    listener,
                    acceptor.clone(),
                ));
            }
        }
        let mut term = signal(SignalKind::terminate()).context("TERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("INT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("HUP handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match engine.reload() {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "configuration not reloaded"),
                },
            }
        }
        tracing::info!("stopping");
        if let Some(n) = engine.network.opened() {
            // The proxies and resolvers end with the daemon; endpoints and rules stay for the
            // containers that keep running (live restore), the rules go when none does.
            if let Err(e) = n.stop() {
                tracing::warn!(error = %e, "network rules not removed");
            }
        }
        for s in sockets {
            let _ = std::fs::remove_file(s);
        }
        anyhow::Ok(())
    }
    .await;
    if let Some(s) = supervisor {
        s.stop().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::to_any;

    #[test]
    fn task_events_decode_from_their_envelopes() {
        let env = Envelope {
            timestamp: None,
            namespace: "moby".into(),
            topic: "/tasks/exit".into(),
            event: Some(to_any(&TaskExit {
                container_id: "c1".into(),
                id: "c1".into(),
                pid: 7,
                exit_status: 3,
                exited_at: None,
            })),
        };
        assert_eq!(
            TaskEvent::decode(&env),
            Some(TaskEvent::Exited {
                container_id: "c1".into(),
                id: "c1".into(),
                exit_status: 3,
                pid: 7,
            })
        );
        let env = Envelope {
            topic: "/tasks/oom".into(),
            event: Some(to_any(&TaskOom {
                container_id: "c2".into(),
            })),
            ..env
        };
        assert_eq!(
            TaskEvent::decode(&env),
            Some(TaskEvent::OomKilled {
                container_id: "c2".into()
            })
        );
        let env = Envelope {
            topic: "/containers/create".into(),
            ..env
        };
        assert_eq!(TaskEvent::decode(&env), None);
    }
}
