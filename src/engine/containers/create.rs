//! `POST /containers/create`: the name, the image (through the image code's resolver), the
//! Config merged with the image's as dockerd merges it, the files dockerd writes, the
//! snapshots (the writable layer over the image's init layer, made first if missing), the
//! user from the container's own `/etc/passwd` and `/etc/group`, the OCI spec,
//! Containers.Create, and the record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use super::super::error::ApiError;
use super::super::events::Event;
use super::super::images::Resolved;
use super::super::lifecycle::{AnyContainer, Container};
use super::super::Engine;
use super::body::{self, CreateBody};
use super::mounts::{self, MountKind, MountPoint};
use super::spec::{self, NetworkMode, SpecInput};
use super::{etc, init_layer, io, names, Entry, RunState, Stored, WaitState};
use crate::engine::network::DEFAULT_NETWORK;
use crate::image::registry::Reference;
use refeng_spec::engine::{Refusal, RestartPolicy};

/// The cgroup parent of every container (dockerd's is `/docker`).
pub const CGROUP_PARENT: &str = "/refeng";

/// Where an init binary is looked for (`Init: true`), in order: it must be static, since it
/// runs inside the container's root filesystem.
const INIT_CANDIDATES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
    "/usr/local/bin/docker-init",
];

/// The restart policy of a HostConfig.
///
/// # Errors
/// `BadRequest` with dockerd's messages.
pub fn restart_policy(b: &body::RestartPolicyBody) -> Result<RestartPolicy, ApiError> {
    let retries = b.maximum_retry_count;
    let p = match b.name.as_str() {
        "" | "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => {
            if retries < 0 {
                return Err(ApiError::BadRequest(
                    "invalid restart policy: maximum retry count can't be negative".into(),
                ));
            }
            RestartPolicy::OnFailure(u32::try_from(retries).unwrap_or(u32::MAX))
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )))
        }
    };
    if retries != 0 && !matches!(p, RestartPolicy::OnFailure(_)) {
        return Err(ApiError::BadRequest(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
        ));
    }
    Ok(p)
}

/// The stop signal's number (`SIGTERM`, `TERM`, `15`).
///
/// # Errors
/// `BadRequest` naming it.
pub fn signal_number(s: &str) -> Result<i32, ApiError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| ApiError::BadRequest(format!("Invalid signal: {s}")))
}

/// The request's environment, then the image's entries whose names it does not set: dockerd's
/// order (its `merge` of the user's and the image's config), which `inspect` shows.
fn merge_env(image: &[String], user: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let mut out: Vec<String> = user.to_vec();
    for e in image {
        if !user.iter().any(|u| key(u) == key(e)) {
            out.push(e.clone());
        }
    }
    out
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    })
}

/// The image's HEALTHCHECK under the request's, as dockerd merges them (an empty test or a zero
/// duration takes the image's), then checked as dockerd checks them.
///
/// # Errors
/// dockerd's messages for a duration under 1 ms or negative retries.
fn merge_healthcheck(cfg: &mut body::Config, image: Option<&Value>) -> Result<(), ApiError> {
    let image: Option<body::HealthConfig> = image
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    if let Some(i) = image {
        match cfg.healthcheck.as_mut() {
            None => cfg.healthcheck = Some(i),
            Some(h) => {
                if h.test.as_ref().is_none_or(Vec::is_empty) {
                    h.test = i.test;
                }
                for (mine, theirs) in [
                    (&mut h.interval, i.interval),
                    (&mut h.timeout, i.timeout),
                    (&mut h.start_period, i.start_period),
                    (&mut h.start_interval, i.start_interval),
                    (&mut h.retries, i.retries),
                ] {
                    if *mine == 0 {
                        *mine = theirs;
                    }
                }
            }
        }
    }
    let Some(h) = &cfg.healthcheck else {
        return Ok(());
    };
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if v != 0 && v < 1_000_000 {
            return Err(ApiError::BadRequest(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(ApiError::BadRequest(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    match h
        .test
        .as_deref()
        .and_then(|t| t.first())
        .map(String::as_str)
    {
        None | Some("NONE" | "CMD" | "CMD-SHELL") => Ok(()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "unknown Healthcheck type {other:?} (NONE, CMD or CMD-SHELL)"
        ))),
    }
}

/// Merges the image's config into the request's, as dockerd's `merge` does, and checks what
/// refengd cannot honour from the image (a bad HEALTHCHECK).
fn merge_image(cfg: &mut body::Config, image: &Value) -> Result<(), ApiError> {
    let ic = image.get("config").cloned().unwrap_or(Value::Null);
    // The image's VOLUME paths join the request's (anonymous volumes, made at create).
    if let Some(v) = ic.get("Volumes").and_then(Value::as_object) {
        let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
        for k in v.keys() {
            vols.entry(k.clone()).or_insert_with(|| json!({}));
        }
    }
    merge_healthcheck(cfg, ic.get("Healthcheck"))?;
    let image_env = ic.get("Env").and_then(strings).unwrap_or_default();
    cfg.env = Some(merge_env(&image_env, cfg.env.as_deref().unwrap_or(&[])));
    if cfg.entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if cfg.cmd.as_ref().is_none_or(Vec::is_empty) {
            cfg.cmd = ic.get("Cmd").and_then(strings);
        }
        if cfg.entrypoint.is_none() {
            cfg.entrypoint = ic.get("Entrypoint").and_then(strings);
        }
    }
    if cfg.working_dir.is_empty() {
        cfg.working_dir = ic
            .get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into();
    }
    if cfg.user.is_empty() {
        cfg.user = ic.get("User").and_then(Value::as_str).unwrap_or("").into();
    }
    if cfg.stop_signal.is_empty() {
        cfg.stop_signal = ic
            .get("StopSignal")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into();
    }
    let mut labels: BTreeMap<String, String> = ic
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(cfg.labels.take().unwrap_or_default());
    cfg.labels = Some(labels);
    if let Some(p) = ic.get("ExposedPorts").and_then(Value::as_object) {
        let mut ports = cfg.exposed_ports.take().unwrap_or_default();
        for (k, v) in p {
            ports.entry(k.clone()).or_insert_with(|| v.clone());
        }
        cfg.exposed_ports = Some(ports);
    }
    if cfg.on_build.is_none() {
        cfg.on_build = ic.get("OnBuild").and_then(strings);
    }
    if cfg.shell.is_none() {
        cfg.shell = ic.get("Shell").and_then(strings);
    }
    Ok(())
}

/// Reads `files` (paths inside the root filesystem) from a snapshot, by mounting its mounts on
/// a private directory for the time it takes, and copies `copies` up into their volumes (as
/// dockerd's copy-up reads the rootfs with its init layer). With `populate` the snapshot is
/// an init layer being made: mounted read-write and given its mount points
/// ([`init_layer::populate`]); otherwise it is mounted read-only. Missing files read as empty.
fn read_from_rootfs(
    mounts: &[containerd_client::types::Mount],
    scratch: &Path,
    files: &[&str],
    copies: &[(String, PathBuf)],
    populate: bool,
) -> Result<Vec<String>, ApiError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let target = scratch.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| ApiError::internal("creating a mount point", e))?;
    let result = (|| {
        for m in mounts {
            let opts: Vec<&str> = m
                .options
                .iter()
                .map(String::as_str)
                .filter(|o| !matches!(*o, "rbind" | "bind" | "ro" | "rw"))
                .collect();
            let bind = m.r#type == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
            let (fstype, flags) = if bind {
                (None, MsFlags::MS_BIND | MsFlags::MS_REC)
            } else {
                let flags = if populate {
                    MsFlags::empty()
                } else {
                    MsFlags::MS_RDONLY
                };
                (Some(m.r#type.as_str()), flags)
            };
            let data = opts.join(",");
            mount(
                Some(m.source.as_str()),
                &target,
                fstype,
                flags,
                if bind || data.is_empty() {
                    None
                } else {
                    Some(data.as_str())
                },
            )
            .map_err(|e| ApiError::internal(&format!("mounting the snapshot ({})", m.r#type), e))?;
        }
        if populate {
            init_layer::populate(&target)
                .map_err(|e| ApiError::Internal(format!("making the init layer: {e}")))?;
        }
        for (path, volume) in copies {
            copy_up(&target, path, volume)?;
        }
        Ok(files
            .iter()
            .map(|f| {
                std::fs::read_to_string(target.join(f.trim_start_matches('/'))).unwrap_or_default()
            })
            .collect())
    })();
    for _ in mounts {
        let _ = umount2(&target, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(scratch);
    result
}

/// The copy-up (dockerd's `copyExistingContents`): when the image has a directory at `path`
/// and the volume at `volume` is empty, the directory's content, owners and modes go into the
/// volume. The image path is resolved inside `root` only: a symlink on the way is not
/// followed, so an image cannot make refengd copy a host directory.
fn copy_up(root: &Path, path: &str, volume: &Path) -> Result<(), ApiError> {
    let mut src = root.to_path_buf();
    for c in Path::new(path).components() {
        if let std::path::Component::Normal(n) = c {
            src.push(n);
            match std::fs::symlink_metadata(&src) {
                Ok(md) if md.is_dir() => {}
                // Missing, a file, or a symlink: nothing to copy.
                _ => return Ok(()),
            }
        }
    }
    let empty = std::fs::read_dir(volume)
        .map_err(|e| ApiError::internal(&format!("reading {}", volume.display()), e))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    crate::image::snapshot::copy_tree(&src, volume)
        .map_err(|e| ApiError::internal(&format!("copying the image's {path} into its volume"), e))
}

impl Engine {
    /// Finds an image for a container: a reference, a full id or a unique id prefix.
    async fn image_for_container(&self, name: &str) -> Result<(String, Arc<Resolved>), ApiError> {
        let store = super::super::store::Store::new(self.backend.clone());
        let not_found = || {
            let last = name.rsplit('/').next().unwrap_or(name);
            let shown = if name.contains('@') || last.contains(':') {
                name.to_string()
            } else {
                format!("{name}:latest")
            };
            ApiError::NotFound(format!("No such image: {shown}"))
        };
        if let Ok(r) = Reference::parse(name) {
            if let Some(img) = store.image(&r.to_string()).await? {
                if let Some(t) = img.target {
                    let r = self.resolve_known(&t).await?;
                    return Ok((img.name, r));
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Option<(String, Arc<Resolved>)> = None;
            for img in store.images().await? {
                let Some(t) = img.target.clone() else {
                    continue;
                };
                let Ok(r) = self.resolve_known(&t).await else {
                    continue;
                };
                if r.id.trim_start_matches("sha256:").starts_with(hex) {
                    if let Some((_, prev)) = &found {
                        if prev.id != r.id {
                            return Err(ApiError::BadRequest(format!(
                                "multiple IDs found with provided prefix: {hex}"
                            )));
                        }
                        continue;
                    }
                    found = Some((img.name, r));
                }
            }
            if let Some(f) = found {
                return Ok(f);
            }
        }
        Err(not_found())
    }

    /// `POST /containers/create?name=`.
    ///
    /// # Errors
    /// `BadRequest` for the body and its values, `NotFound` for the image, `Conflict` for a
    /// taken name, containerd's failures.
    #[tracing::instrument(skip(self, bytes), fields(name = name))]
    pub async fn container_create(
        self: &Arc<Self>,
        name: &str,
        platform: &str,
        bytes: &[u8],
    ) -> Result<Value, ApiError> {
        if !platform.is_empty() && platform != format!("linux/{}", super::super::system::go_arch())
        {
            return Err(ApiError::BadRequest(format!(
                "platform {platform:?} is not supported: refengd runs linux/{} only",
                super::super::system::go_arch()
            )));
        }
        let CreateBody {
            mut config,
            mut host,
            endpoints,
        } = body::parse(bytes)?;
        if config.image.is_empty() {
            return Err(ApiError::BadRequest(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        let reg = &self.containers;
        let name = if name.is_empty() {
            None
        } else {
            Some(names::validate(name)?)
        };
        let policy = restart_policy(&host.restart_policy)?;
        if host.auto_remove && policy != RestartPolicy::No {
            return Err(ApiError::BadRequest(
                "can't create 'AutoRemove' container with restart policy".into(),
            ));
        }
        if let Some(t) = config.stop_timeout {
            if t < -1 {
                return Err(ApiError::BadRequest(format!("invalid StopTimeout {t}")));
            }
        }
        if !config.stop_signal.is_empty() {
            signal_number(&config.stop_signal)?;
        }
        match host.runtime.as_str() {
            "" | "runc" => host.runtime = "runc".into(),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown or invalid runtime name: {other}"
                )))
            }
        }
        if !matches!(host.isolation.as_str(), "" | "default") {
            return Err(ApiError::BadRequest(format!(
                "Invalid isolation: {:?} - linux only supports 'default'",
                host.isolation
            )));
        }
        let daemon_cfg = self.config();
        let log = match host.log_config.kind.as_str() {
            "" | "json-file" if !(host.log_config.kind.is_empty() && daemon_cfg.log_driver == super::super::config::LogDriver::None) => {
                host.log_config.kind = "json-file".into();
                let mut opts = daemon_cfg.log_opts.clone();
                opts.extend(host.log_config.config.clone().unwrap_or_default());
                Some(io::Rotation::from_opts(opts.iter())?)
            }
            "" | "none" => {
                host.log_config.kind = "none".into();
                if host.log_config.config.as_ref().is_some_and(|c| !c.is_empty()) {
                    return Err(ApiError::BadRequest(
                        "the none log driver takes no options".into(),
                    ));
                }
                None
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "logger: no log driver named '{other}' is registered (refengd has json-file and none)"
                )))
            }
        };
        if host.log_config.config.is_none() {
            host.log_config.config = Some(BTreeMap::new());
        }
        // The network mode: default/bridge and user networks get a namespace of their own,
        // wired at start (`bridge: none` runs default/bridge as none, as dockerd does).
        use crate::engine::network::containers as netc;
        let exposed: Vec<String> = config
            .exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let ports = netc::port_requests(
            host.port_bindings.as_ref(),
            host.publish_all_ports,
            &exposed,
        )?;
        let mode = host.network_mode.clone();
        let bridged = !config.network_disabled
            && !matches!(mode.as_str(), "none" | "host")
            && !mode.starts_with("container:")
            && (!matches!(mode.as_str(), "" | "default" | "bridge") || self.network.has_default());
        let attachments = if bridged {
            netc::resolve_attachments(self.network.get().await?, &mode, endpoints)?
        } else {
            if let Some((k, _)) = endpoints.iter().find(|(k, v)| {
                **v != netc::EndpointRequest::default()
                    || !(k.as_str() == mode || matches!(k.as_str(), "default" | "bridge"))
            }) {
                return Err(ApiError::BadRequest(format!(
                    "NetworkingConfig.EndpointsConfig.{k}: the network mode {mode:?} joins no network"
                )));
            }
            if !ports.is_empty() && mode.starts_with("container:") {
                return Err(ApiError::BadRequest(
                    "conflicting options: port publishing and the container type network mode"
                        .into(),
                ));
            }
            if !ports.is_empty() && mode != "host" {
                return Err(ApiError::BadRequest(format!(
                    "HostConfig.PortBindings: the network mode {mode:?} has no network to publish on"
                )));
            }
            Vec::new()
        };
        let network = if config.network_disabled {
            NetworkMode::None
        } else if bridged {
            NetworkMode::Bridged {
                netns: String::new(),
            }
        } else {
            match mode.as_str() {
                "" | "default" | "bridge" | "none" => NetworkMode::None,
                "host" => NetworkMode::Host,
                m => {
                    let other = reg.find(&m["container:".len()..])?;
                    NetworkMode::Container {
                        id: other,
                        path: None,
                    }
                }
            }
        };
        if host.network_mode.is_empty() {
            host.network_mode = "default".into();
        }
        // dockerd records the swap limit it applies: as much swap as memory.
        if host.memory > 0 && host.memory_swap == 0 {
            host.memory_swap = host.memory * 2;
        }
        let network_is_host = network == NetworkMode::Host;
        let network_name = match &network {
            NetworkMode::None => "none".to_string(),
            NetworkMode::Host => "host".to_string(),
            NetworkMode::Container { id, .. } => format!("container:{id}"),
            NetworkMode::Bridged { .. } => attachments[0].0.clone(),
        };
        if host.shm_size == 0 {
            host.shm_size = spec::DEFAULT_SHM_SIZE;
        }
        let (image_ref, image) = self.image_for_container(&config.image).await?;
        merge_image(&mut config, &image.config)?;
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(ApiError::BadRequest("No command specified".into()));
        }
        let init_binary: Option<PathBuf> = if host.init == Some(true) {
            match INIT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
            {
                Some(p) => Some(p),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "Init: no static tini-like init found (looked for {})",
                        INIT_CANDIDATES.join(", ")
                    )))
                }
            }
        } else {
            None
        };
        // The mounts, parsed and checked before anything is made.
        let from = self.volumes_from(host.volumes_from.as_deref().unwrap_or(&[]))?;
        let volume_paths: Vec<String> = config
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let mut mounts = mounts::parse_all(&host, &volume_paths, from)?;
        let id = names::new_id()?;
        // Reserve the name under the lock with a placeholder-free check; the insert below
        // checks again (two creates may race on one name).
        let name = match name {
            Some(n) => {
                check_name(reg, &n)?;
                n
            }
            None => {
                let mut n = names::generate(0)?;
                let mut retry = 0;
                while check_name(reg, &n).is_err() {
                    retry += 1;
                    n = names::generate(retry)?;
                }
                n
            }
        };
        let hostname = match &network {
            NetworkMode::Host if config.hostname.is_empty() => super::super::system::hostname(),
            NetworkMode::Container { id: other, .. } => {
                let map = reg.lock();
                map.get(other)
                    .and_then(|e| e.stored.spec["hostname"].as_str().map(String::from))
                    .unwrap_or_else(|| other[..12].to_string())
            }
            _ if config.hostname.is_empty() => id[..12].to_string(),
            _ => config.hostname.clone(),
        };
        config.hostname = hostname.clone();
        let network = match network {
            NetworkMode::Bridged { .. } => NetworkMode::Bridged {
                netns: self.network.netns_path(&id).display().to_string(),
            },
            other => other,
        };
        let embedded_dns = attachments
            .first()
            .is_some_and(|(n, _)| n != DEFAULT_NETWORK);
        let dir = reg.dir_of(&id);
        let made = self.make_volumes(&mut mounts)?;
        let drop_made = |me: &Self| {
            for n in &made {
                if me.volume_users(n).is_empty() && me.volumes.remove(n).is_ok() {
                    me.volume_event(n, "destroy");
                }
            }
        };
        let result = self
            .create_resources(CreateParts {
                mounts: &mounts,
                id: &id,
                dir: &dir,
                config: &config,
                host: &host,
                network: network.clone(),
                embedded_dns,
                image: &image,
                image_ref: &image_ref,
                argv: &argv,
                init: init_binary.as_deref(),
            })
            .await;
        let spec = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = self.containers.ctd.remove_partial_snapshots(&id).await;
                let _ = std::fs::remove_dir_all(&dir);
                drop_made(self);
                return Err(e);
            }
        };
        let stored = Stored {
            id: id.clone(),
            created: io::now_rfc3339(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config: config.clone(),
            host,
            image_id: image.id.clone(),
            image_ref,
            network: network_name,
            networks: attachments,
            state: RunState::default(),
            mounts,
            spec,
            log,
        };
        let lc = AnyContainer::Created(Container::new(id.clone(), name.clone(), policy));
        let (hub, _) = broadcast::channel(256);
        let (wait, _) = watch::channel(WaitState {
            exits: 0,
            exit_code: 0,
            running: false,
            removed: false,
        });
        let entry = Entry {
            stored,
            lc,
            op: Arc::new(tokio::sync::Mutex::new(())),
            hub,
            io: None,
            wait,
            execs: Vec::new(),
        };
        let inserted = {
            let mut map = reg.lock();
            match map.values().find(|e| e.name() == name) {
                Some(other) => Err(ApiError::from_refusal(
                    Refusal::NameInUse,
                    &name,
                    &other.stored.id,
                )),
                None => {
                    reg.persist(&entry)?;
                    map.insert(id.clone(), entry);
                    Ok(())
                }
            }
        };
        if let Err(e) = inserted {
            let _ = self.containers.ctd.delete_container(&id).await;
            let _ = self.containers.ctd.remove_snapshot(&id).await;
            let _ = std::fs::remove_dir_all(&dir);
            drop_made(self);
            return Err(e);
        }
        self.container_event(&id, "create", BTreeMap::new());
        // dockerd keeps the bindings of a host-mode container and says they do nothing.
        let warnings: Vec<&str> = if network_is_host && !ports.is_empty() {
            vec!["Published ports are discarded when using host network mode"]
        } else {
            Vec::new()
        };
        Ok(json!({"Id": id, "Warnings": warnings}))
    }

    /// The event `action` about container `id`, with dockerd's attributes (image, name, the
    /// labels) and `extra`.
    pub fn container_event(&self, id: &str, action: &str, extra: BTreeMap<String, String>) {
        let attrs = {
            let map = self.containers.lock();
            let Some(e) = map.get(id) else { return };
            let mut a: BTreeMap<String, String> =
                e.stored.config.labels.clone().unwrap_or_default();
            a.insert("image".into(), e.stored.config.image.clone());
            a.insert("name".into(), e.name().to_string());
            a
        };
        let mut attrs = attrs;
        attrs.extend(extra);
        self.events.emit(Event::new("container", action, id, attrs));
    }

    /// Makes the init layer `init` over the image top chain `top` (see [`init_layer`]) for
    /// the create of container `id`: an active snapshot given the mount points, committed,
    /// and referenced from the image's config blob so that it lives as long as the image.
    async fn make_init_layer(
        &self,
        id: &str,
        top: &str,
        init: &str,
        image: &Resolved,
        image_ref: &str,
    ) -> Result<(), ApiError> {
        let ctd = &self.containers.ctd;
        // The image must be unpacked: a pull unpacks it; one whose snapshot went away is
        // refused with what to do.
        let mounts = ctd.prepare_init(id, top).await.map_err(|e| match e {
            ApiError::NotFound(m) => ApiError::Conflict(format!(
                "the image {image_ref} is not unpacked ({m}); pull it again"
            )),
            other => other,
        })?;
        let scratch = self.containers.run_dir.join(format!("{id}-init"));
        tokio::task::spawn_blocking(move || read_from_rootfs(&mounts, &scratch, &[], &[], true))
            .await
            .map_err(|e| ApiError::internal("making the init layer", e))??;
        ctd.commit_init(id, init).await?;
        let label = HashMap::from([(init_layer::label(), init.to_string())]);
        if let Err(e) = self.store().add_labels(&image.id, label).await {
            // The container holds it all the same; the next create after it makes it again.
            tracing::warn!(image = %image.id, error = %e, "the init layer is not referenced by its image");
        }
        Ok(())
    }

    async fn create_resources(&self, p: CreateParts<'_>) -> Result<Value, ApiError> {
        let reg = &self.containers;
        let top = p
            .image
            .chain_ids
            .last()
            .cloned()
            .ok_or_else(|| ApiError::Internal(format!("image {} has no layers", p.image.id)))?;
        std::fs::create_dir_all(p.dir)
            .map_err(|e| ApiError::internal(&format!("creating {}", p.dir.display()), e))?;
        reg.ctd.hold(p.id).await?;
        let init = init_layer::snapshot(&top);
        let mounts = match reg.ctd.prepare(p.id, &init).await {
            Err(ApiError::NotFound(_)) => {
                self.make_init_layer(p.id, &top, &init, p.image, p.image_ref)
                    .await?;
                reg.ctd.prepare(p.id, &init).await?
            }
            other => other?,
        };
        let scratch = reg.run_dir.join(format!("{}-peek", p.id));
        // A volume that is empty gets the image's content at its path (the copy-up), unless
        // `nocopy`; one with options is mounted first, so the content lands in its tmpfs.
        let mut copies = Vec::new();
        let mut held: Vec<String> = Vec::new();
        for m in p
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume && m.copy)
        {
            if let Err(e) = self.volumes.acquire(&m.name) {
                for n in &held {
                    self.volumes.release(n);
                }
                return Err(e.into());
            }
            held.push(m.name.clone());
            copies.push((m.destination.clone(), PathBuf::from(&m.source)));
        }
        let files = tokio::task::spawn_blocking(move || {
            read_from_rootfs(
                &mounts,
                &scratch,
                &["/etc/passwd", "/etc/group"],
                &copies,
                false,
            )
        })
        .await;
        for n in &held {
            self.volumes.release(n);
        }
        let files = files.map_err(|e| ApiError::internal("reading the user database", e))??;
        let user = etc::resolve_user(
            &p.config.user,
            &files[0],
            &files[1],
            p.host.group_add.as_deref().unwrap_or(&[]),
        )?;
        // The files dockerd writes for the container (a bridged one's get its address at
        // start).
        use crate::engine::network::files::{DnsOptions, FileMode};
        let mode = match &p.network {
            NetworkMode::Host => FileMode::Host,
            NetworkMode::Bridged { .. } if p.embedded_dns => FileMode::Embedded,
            _ => FileMode::Private,
        };
        let files = crate::engine::network::containers::etc_files(
            mode,
            &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            &self.network.host_resolv_conf(),
            None,
            None,
            &p.config.hostname,
            &p.config.domainname,
            p.host.extra_hosts.as_deref().unwrap_or(&[]),
            &DnsOptions {
                servers: p.host.dns.clone().unwrap_or_default(),
                search: p.host.dns_search.clone().unwrap_or_default(),
                options: p.host.dns_options.clone().unwrap_or_default(),
            },
        )?;
        crate::engine::network::containers::write_etc(p.dir, &files)?;
        let all_caps: Vec<String> = {
            let mut v: Vec<String> = caps::runtime::procfs_all_supported(None)
                .unwrap_or_else(|_| caps::all())
                .iter()
                .map(ToString::to_string)
                .collect();
            v.sort();
            v
        };
        let host_devices = if p.host.privileged {
            host_devices()
        } else {
            Vec::new()
        };
        let env = p.config.env.clone().unwrap_or_default();
        let spec = spec::generate(&SpecInput {
            id: p.id,
            hostname: &p.config.hostname,
            domainname: &p.config.domainname,
            args: p.argv.to_vec(),
            env: &env,
            cwd: &p.config.working_dir,
            user: &user,
            tty: p.config.tty,
            host: p.host,
            network: p.network.clone(),
            files_dir: p.dir,
            mounts: p.mounts,
            init_binary: p.init,
            cgroup_parent: CGROUP_PARENT,
            cgroup_v2: super::super::system::cgroup_version() == "2",
            all_caps: &all_caps,
            host_devices: &host_devices,
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
            go_arch: super::super::system::go_arch(),
            kernel: super::seccomp::kernel_release(&super::super::system::kernel_version()),
            daemon_seccomp: &self.config().default_seccomp,
        })?;
        for m in p.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            if Path::new(&m.source).exists() {
                continue;
            }
            // `-v` and `bind-create-mountpoint` make a missing host directory; `--mount`
            // otherwise refuses it, as dockerd.
            if !m.create_source {
                return Err(ApiError::BadRequest(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                )));
            }
            std::fs::create_dir_all(&m.source).map_err(|e| {
                ApiError::BadRequest(format!("creating the bind source {}: {e}", m.source))
            })?;
        }
        let mut labels = HashMap::new();
        labels.insert(
            "com.docker/engine.bundle.path".to_string(),
            p.dir.to_string_lossy().into_owned(),
        );
        reg.ctd
            .create_container(p.id, p.image_ref, &spec, labels)
            .await?;
        Ok(spec)
    }
}

struct CreateParts<'a> {
    id: &'a str,
    mounts: &'a [MountPoint],
    dir: &'a Path,
    config: &'a body::Config,
    host: &'a body::HostConfig,
    network: NetworkMode,
    embedded_dns: bool,
    image: &'a Resolved,
    image_ref: &'a str,
    argv: &'a [String],
    init: Option<&'a Path>,
}

fn check_name(reg: &super::Registry, name: &str) -> Result<(), ApiError> {
    let map = reg.lock();
    match map.values().find(|e| e.name() == name) {
        Some(other) => Err(ApiError::from_refusal(
            Refusal::NameInUse,
            name,
            &other.stored.id,
        )),
        None => Ok(()),
    }
}

/// The host's devices for a privileged container, as dockerd lists them (every character and
/// block device under /dev, except the pty, shm, mqueue and fd trees).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let n = e.file_name();
                if !matches!(
                    n.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    stack.push(p);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if p == Path::new("/dev/console") {
                continue;
            }
            let rdev = md.rdev();
            out.push(json!({
                "path": p.to_string_lossy(),
                "type": kind,
                "major": nix::sys::stat::major(rdev),
                "minor": nix::sys::stat::minor(rdev),
                "fileMode": md.mode() & 0o7777,
                "uid": md.uid(),
                "gid": md.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_as_dockerd_parses_them() {
        let p = |n: &str, c| {
            restart_policy(&body::RestartPolicyBody {
                name: n.into(),
                maximum_retry_count: c,
            })
        };
        assert_eq!(p("", 0).unwrap(), RestartPolicy::No);
        assert_eq!(p("on-failure", 3).unwrap(), RestartPolicy::OnFailure(3));
        assert_eq!(
            p("unless-stopped", 0).unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert!(p("always", 2).is_err());
        assert!(p("sometimes", 0)
            .unwrap_err()
            .to_string()
            .contains("unknown policy 'sometimes'"));
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(signal_number("SIGTERM").unwrap(), 15);
        assert_eq!(signal_number("kill").unwrap(), 9);
        assert_eq!(signal_number("10").unwrap(), 10);
        assert!(signal_number("SIGNOPE").is_err());
    }

    #[test]
    fn the_image_config_merges_under_the_request() {
        let image = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": null,
            "WorkingDir": "/w", "Labels": {"l": "image", "m": "image"}, "User": "user"}});
        let mut c = body::Config {
            env: Some(vec!["A=2".into(), "B=3".into()]),
            labels: Some([("m".to_string(), "mine".to_string())].into()),
            ..Default::default()
        };
        merge_image(&mut c, &image).unwrap();
        assert_eq!(c.env.unwrap(), ["A=2", "B=3", "PATH=/bin"]);
        assert_eq!(c.cmd.unwrap(), ["sh"]);
        assert_eq!((c.working_dir.as_str(), c.user.as_str()), ("/w", "user"));
        assert_eq!(c.labels.unwrap()["m"], "mine");
        // An entrypoint of the request drops the image's Cmd.
        let mut c = body::Config {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        merge_image(&mut c, &image).unwrap();
        assert_eq!(c.cmd, None);
        // The image's VOLUME paths join the request's.
        let vol = json!({"config": {"Volumes": {"/data": {}, "/logs": {}}}});
        let mut c = body::Config {
            volumes: Some([("/mine".to_string(), json!({}))].into()),
            ..Default::default()
        };
        merge_image(&mut c, &vol).unwrap();
        let paths: Vec<String> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(paths, ["/data", "/logs", "/mine"]);
    }

    #[test]
    fn the_image_healthcheck_merges_under_the_request() {
        let image = json!({"config": {"Healthcheck": {"Test": ["CMD", "true"],
            "Interval": 5_000_000_000_i64, "Retries": 4}}});
        let mut c = body::Config {
            healthcheck: Some(body::HealthConfig {
                interval: 2_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        merge_image(&mut c, &image).unwrap();
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test.unwrap(), ["CMD", "true"]);
        assert_eq!((h.interval, h.retries), (2_000_000_000, 4));
        let mut c = body::Config::default();
        merge_image(&mut c, &image).unwrap();
        assert_eq!(c.healthcheck.unwrap().interval, 5_000_000_000);
        for (bad, msg) in [
            (
                json!({"Test": ["CMD", "x"], "Interval": 10}),
                "Interval in Healthcheck cannot be less than 1ms",
            ),
            (
                json!({"Test": ["CMD", "x"], "Retries": -1}),
                "Retries in Healthcheck cannot be negative",
            ),
            (json!({"Test": ["FOO", "x"]}), "unknown Healthcheck type"),
        ] {
            let mut c = body::Config::default();
            let image = json!({"config": {"Healthcheck": bad}});
            let e = merge_image(&mut c, &image).unwrap_err();
            assert!(e.to_string().contains(msg), "{e}");
        }
    }
}
