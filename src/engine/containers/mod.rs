//! Engine containers: the records refengd keeps (persisted under `<data-root>/containers/<id>`),
//! their names and ids, and every container endpoint over containerd's Snapshots, Containers
//! and Tasks services. Legality of each call comes from the lifecycle model
//! ([`super::lifecycle`]); effects happen first, the transition once they succeeded.
//!
//! Files: [`body`] parses the create body, [`spec`] makes the OCI spec, [`etc`] the files
//! dockerd writes, [`names`] names and ids, [`ctd`] the containerd calls, [`init_layer`] the
//! mount points below each writable layer, [`io`] FIFOs and the json-file log, [`create`],
//! [`ops`] (start, stop, kill, wait, remove, ...), [`view`]
//! (inspect, list) and [`attach`] (attach and logs).

pub mod archive;
pub mod attach;
pub mod body;
pub mod create;
pub mod ctd;
pub mod etc;
pub mod files;
pub mod health;
pub mod init_layer;
pub mod io;
pub mod mounts;
pub mod names;
pub mod net;
pub mod ops;
pub mod routes;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod update;
pub mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::error::ApiError;
use super::lifecycle::{AnyContainer, Record};
use body::{Config, HostConfig};

/// What refengd persists of a container besides its lifecycle record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// 64 hex digits.
    pub id: String,
    /// When it was created (RFC 3339, nanoseconds).
    pub created: String,
    /// argv[0].
    pub path: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Config, merged with the image's.
    pub config: Config,
    /// HostConfig as given (with the daemon's defaults filled in).
    pub host: HostConfig,
    /// The image id (config digest).
    pub image_id: String,
    /// The containerd image name.
    pub image_ref: String,
    /// The network mode in force: none, host, container:<id>, or the primary network's name.
    pub network: String,
    /// The bridge networks joined at start, primary first, with what is asked of each.
    #[serde(default)]
    pub networks: crate::engine::network::containers::Attachments,
    /// The state beside the lifecycle status.
    pub state: RunState,
    /// Its mounts: binds, volumes (by name, anonymous ones made at create) and tmpfs.
    #[serde(default)]
    pub mounts: Vec<mounts::MountPoint>,
    /// The OCI spec as created (network namespace path filled in at start).
    pub spec: serde_json::Value,
    /// The json-file log's rotation, `None` with the `none` driver.
    pub log: Option<io::Rotation>,
}

/// Runtime state shown in inspect.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// The init process's pid while running.
    pub pid: u32,
    /// The last start.
    pub started_at: Option<String>,
    /// The last exit.
    pub finished_at: Option<String>,
    /// The last error of a start.
    pub error: String,
    /// Killed by the OOM killer.
    pub oom_killed: bool,
    /// Exits so far (for `wait?condition=next-exit`).
    pub exits: u64,
    /// Has been started once.
    pub has_been_started: bool,
    /// With a health check: its status and last results.
    #[serde(default)]
    pub health: Option<health::HealthRecord>,
}

/// The persisted form: the record and the lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OnDisk {
    stored: Stored,
    lifecycle: Record,
}

/// What a waiter watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitState {
    /// Exits so far.
    pub exits: u64,
    /// The last exit code.
    pub exit_code: i32,
    /// Whether a process runs (running, paused, restarting).
    pub running: bool,
    /// The container is gone.
    pub removed: bool,
}

/// One container in memory.
#[derive(Debug)]
pub struct Entry {
    /// The record.
    pub stored: Stored,
    /// Its lifecycle state (taken out only during a transition, under `op`).
    pub lc: AnyContainer,
    /// Serialises the calls that change this container.
    pub op: Arc<tokio::sync::Mutex<()>>,
    /// Output of the current process.
    pub hub: broadcast::Sender<io::Chunk>,
    /// The init process's stdio, while it runs.
    pub io: Option<Arc<io::ProcessIo>>,
    /// For waiters.
    pub wait: watch::Sender<WaitState>,
    /// Its exec instances' ids.
    pub execs: Vec<String>,
}

impl Entry {
    fn wait_state(&self) -> WaitState {
        WaitState {
            exits: self.stored.state.exits,
            exit_code: self.lc.record().exit_code,
            running: self.lc.status().is_running(),
            removed: false,
        }
    }

    /// The name without `/`.
    pub fn name(&self) -> &str {
        &self.lc.record().name
    }
}

/// Every container, by id.
#[derive(Debug)]
pub struct Registry {
    /// By id.
    pub map: Mutex<BTreeMap<String, Entry>>,
    /// `<data-root>/containers`.
    pub dir: PathBuf,
    /// `<exec-root>/containers` (FIFOs).
    pub run_dir: PathBuf,
    /// The containerd calls.
    pub ctd: ctd::Ctd,
    /// Exec instances.
    pub execs: Mutex<BTreeMap<String, ops::Exec>>,
}

impl Registry {
    /// An empty registry over `data_root`/`exec_root`, loading nothing yet.
    pub fn new(data_root: &Path, exec_root: &Path, ctd: ctd::Ctd) -> Registry {
        Registry {
            map: Mutex::new(BTreeMap::new()),
            dir: data_root.join("containers"),
            run_dir: exec_root.join("containers"),
            ctd,
            execs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The lock over the map (never held across an await).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Its json-file log.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir_of(id).join(format!("{id}-json.log"))
    }

    /// Finds a container by full id, name (with or without `/`) or unique id prefix, in
    /// dockerd's order; returns its id.
    ///
    /// # Errors
    /// `NotFound` ("No such container: X"); `BadRequest` for an ambiguous prefix... as
    /// dockerd, which answers 404 with "multiple IDs found" only for images.
    pub fn find(&self, name: &str) -> Result<String, ApiError> {
        let map = self.lock();
        find_in(&map, name)
    }

    /// Persists entry `id` (durably: temp, fsync, rename).
    ///
    /// # Errors
    /// `Internal` when the write fails.
    pub fn persist(&self, e: &Entry) -> Result<(), ApiError> {
        let d = OnDisk {
            stored: e.stored.clone(),
            lifecycle: e.lc.record().clone(),
        };
        let bytes = serde_json::to_vec(&d).map_err(|e| ApiError::internal("encoding", e))?;
        let dir = self.dir_of(&e.stored.id);
        std::fs::create_dir_all(&dir)
            .map_err(|err| ApiError::internal(&format!("creating {}", dir.display()), err))?;
        crate::sys::durable::write(&dir.join("config.v2.json"), 0o600, &bytes)
            .map_err(|err| ApiError::internal("persisting the container", err))
    }

    /// Reads every persisted container (for live restore).
    pub fn read_all(&self) -> Vec<(Stored, Record)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path().join("config.v2.json");
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<OnDisk>(&b).map_err(|e| e.to_string()))
            {
                Ok(d) => out.push((d.stored, d.lifecycle)),
                Err(err) => {
                    tracing::warn!(path = %p.display(), error = %err, "container record not loaded")
                }
            }
        }
        out
    }
}

/// [`Registry::find`] over a locked map.
pub fn find_in(map: &BTreeMap<String, Entry>, name: &str) -> Result<String, ApiError> {
    let missing = || ApiError::NotFound(format!("No such container: {name}"));
    if name.is_empty() {
        return Err(missing());
    }
    if map.contains_key(name) {
        return Ok(name.to_string());
    }
    let bare = name.strip_prefix('/').unwrap_or(name);
    if let Some((id, _)) = map.iter().find(|(_, e)| e.name() == bare) {
        return Ok(id.clone());
    }
    let hits: Vec<&String> = map.keys().filter(|id| id.starts_with(name)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(missing()),
        _ => Err(ApiError::BadRequest(format!(
            "multiple IDs found with provided prefix: {name}"
        ))),
    }
}
