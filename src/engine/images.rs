//! The image endpoints: pull (`POST /images/create?fromImage=`), list, inspect, tag, remove and
//! history, over containerd's image store reached through [`Store`] (gRPC only).
//!
//! A pull runs the registry client into a private staging content store of the engine (under
//! `<data-root>/tmp`), then copies each blob into containerd with Content.Write under a lease,
//! names the image with Images.Create and unpacks it with Snapshots.Prepare, Diff.Apply and
//! Snapshots.Commit — what containerd's own client does for `ctr pull`. The registry client
//! writes into a local store by design; staging keeps the engine off containerd's directories,
//! so the same pull works against the real containerd 1.6, at the cost of a second local copy
//! of each blob while the pull runs (the staging store is removed when it ends).
//!
//! Image ids are config digests and the repository names are containerd image names
//! (`docker.io/library/busybox:latest`); an image whose last name moved away is kept as
//! `moby-dangling@<target digest>`, as dockerd does with containerd.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use containerd_client::types::Descriptor;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::events::Event;
use super::filters::Filters;
use super::store::Store;
use super::Engine;
use crate::image::content::{ContentStore, Limits};
use crate::image::digest::Digest;
use crate::image::format::{self, Document, PlatformWanted};
use crate::image::registry::auth::{CredentialStore, Credentials};
use crate::image::registry::progress::{ProgressEvent, ProgressSink};
use crate::image::registry::{Client, ClientConfig, Reference};
use crate::image::unpack;

/// The name prefix of images kept without a name.
pub const DANGLING: &str = "moby-dangling@";

/// The content label on an image's config blob that names the image it was built on (dockerd's
/// parent chain; the builder sets it on its intermediates and results).
pub const PARENT_LABEL: &str = "io.refeng.image.parent";
/// How long a pull's lease lives if refengd dies during the pull.
const PULL_LEASE_LIFE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The `/images/json` filter keys.
const LIST_FILTERS: &[&str] = &["dangling", "label", "before", "since", "reference", "until"];

/// An image as the engine sees it: a containerd target resolved to this platform's manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the image names point at (an index or a manifest).
    pub target: Descriptor,
    /// The manifest for this platform.
    pub manifest: String,
    /// The config digest: the image id.
    pub id: String,
    /// The config document.
    pub config: Value,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// The layers' diff ids.
    pub diff_ids: Vec<String>,
    /// The layers' chain ids (snapshot names).
    pub chain_ids: Vec<String>,
}

/// The familiar form of a containerd image name, as docker prints it (`busybox:latest`).
pub fn familiar(name: &str) -> String {
    let rest = name.strip_prefix("docker.io/").unwrap_or(name);
    if name.starts_with("docker.io/") {
        if let Some(r) = rest.strip_prefix("library/") {
            if !r.contains('/') {
                return r.to_string();
            }
        }
    }
    rest.to_string()
}

/// The repository of an image name (without tag or digest).
pub(super) fn repository(name: &str) -> &str {
    let no_digest = name.split('@').next().unwrap_or(name);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn media_type_of(bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match v.get("mediaType").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None if v.get("manifests").is_some() => format::OCI_INDEX.to_string(),
        None => format::OCI_MANIFEST.to_string(),
    }
}

fn descriptor(d: &oci_spec::image::Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: i64::try_from(d.size()).unwrap_or(i64::MAX),
        annotations: HashMap::new(),
    }
}

fn no_such_image(name: &str) -> ApiError {
    ApiError::NotFound(format!("No such image: {name}"))
}

/// Progress events from the registry client's threads into the response stream.
pub(super) struct Forward(pub(super) mpsc::UnboundedSender<ProgressEvent>);

impl ProgressSink for Forward {
    fn report(&self, event: ProgressEvent) {
        let _ = self.0.send(event);
    }
}

pub(super) fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

pub(super) fn error_line(e: &ApiError) -> Bytes {
    let m = e.to_string();
    line(&json!({"errorDetail": {"message": m}, "error": m}))
}

impl Engine {
    pub(super) fn store(&self) -> Store {
        Store::new(self.backend.clone())
    }

    /// Resolves a containerd image's target for this platform, reading documents through
    /// Content.Read.
    ///
    /// # Errors
    /// `NotFound` for missing content, `Internal` for documents that do not parse.
    pub async fn resolve(&self, target: &Descriptor) -> Result<Resolved, ApiError> {
        let store = self.store();
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::Internal(format!("image {}: {what}: {e}", target.digest))
        };
        let mut digest = target.digest.clone();
        let mut declared = Some(target.media_type.clone());
        for _ in 0..4 {
            let bytes = store.read(&digest).await?;
            match format::parse_document(&bytes, declared.as_deref())
                .map_err(|e| bad("manifest", &e))?
            {
                Document::Index(i) => {
                    let d = format::select_platform(&i, &PlatformWanted::host())
                        .map_err(|e| bad("index", &e))?;
                    digest = d.digest().to_string();
                    declared = Some(d.media_type().to_string());
                }
                Document::Manifest(m) => {
                    let cfg_digest = m.config().digest().to_string();
                    let cfg_bytes = store.read(&cfg_digest).await?;
                    let (_, diff_ids) = format::parse_config(&cfg_bytes, m.layers().len())
                        .map_err(|e| bad("config", &e))?;
                    let config: Value =
                        serde_json::from_slice(&cfg_bytes).map_err(|e| bad("config", &e))?;
                    return Ok(Resolved {
                        target: target.clone(),
                        manifest: digest,
                        id: cfg_digest,
                        config,
                        layers: m.layers().iter().map(descriptor).collect(),
                        chain_ids: format::chain_ids(&diff_ids)
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        diff_ids: diff_ids.iter().map(ToString::to_string).collect(),
                    });
                }
            }
        }
        Err(bad("index", &"nested too deep"))
    }

    /// Every image name of the namespace with its resolved image (names whose content is
    /// missing for this platform are left out).
    pub(super) async fn catalog(&self) -> Result<Vec<(String, Arc<Resolved>)>, ApiError> {
        let seen = self.resolved.lock().map(|m| m.clone()).unwrap_or_default();
        let mut by_target: HashMap<String, Arc<Resolved>> = HashMap::new();
        let mut out = Vec::new();
        for img in self.store().images().await? {
            let Some(target) = img.target else { continue };
            let known = by_target
                .get(&target.digest)
                .or_else(|| seen.get(&target.digest))
                .cloned();
            let r = match known {
                Some(r) => {
                    by_target.insert(target.digest.clone(), r.clone());
                    r
                }
                None => match self.resolve(&target).await {
                    Ok(r) => {
                        let r = Arc::new(r);
                        by_target.insert(target.digest.clone(), r.clone());
                        r
                    }
                    Err(e) => {
                        tracing::debug!(name = %img.name, error = %e, "image left out");
                        continue;
                    }
                },
            };
            out.push((img.name, r));
        }
        // Only what is named now: a deleted image's documents are not kept.
        if let Ok(mut m) = self.resolved.lock() {
            *m = by_target;
        }
        Ok(out)
    }

    /// Finds the image `name` names: a full id (`sha256:…`), a reference, or a unique id
    /// prefix, in dockerd's order. Returns the image and all its names.
    pub(super) async fn find(&self, name: &str) -> Result<(Arc<Resolved>, Vec<String>), ApiError> {
        let catalog = self.catalog().await?;
        let names_of = |id: &str| -> Vec<String> {
            catalog
                .iter()
                .filter(|(_, r)| r.id == id)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let by_id = |id: &str| {
            catalog
                .iter()
                .find(|(_, r)| r.id == id)
                .map(|(_, r)| r.clone())
        };
        if let Some(hex) = name.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return by_id(name)
                    .map(|r| (r.clone(), names_of(&r.id)))
                    .ok_or_else(|| no_such_image(name));
            }
        }
        if let Ok(r) = Reference::parse(name) {
            let full = r.to_string();
            if let Some((_, res)) = catalog.iter().find(|(n, _)| *n == full) {
                return Ok((res.clone(), names_of(&res.id)));
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids: BTreeSet<&str> = catalog
                .iter()
                .map(|(_, r)| r.id.as_str())
                .filter(|id| id.trim_start_matches("sha256:").starts_with(prefix))
                .collect();
            match ids.len() {
                1 => {
                    let id = ids.into_iter().next().unwrap_or_default().to_string();
                    let r = by_id(&id).ok_or_else(|| no_such_image(name))?;
                    return Ok((r, names_of(&id)));
                }
                0 => {}
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "multiple IDs found with provided prefix: {prefix}"
                    )))
                }
            }
        }
        Err(no_such_image(name))
    }

    pub(super) async fn size_of(&self, r: &Resolved) -> Result<i64, ApiError> {
        let store = self.store();
        let mut total = 0;
        for chain in &r.chain_ids {
            total += store.usage(chain).await?;
        }
        Ok(total)
    }

    /// `GET /images/json`.
    ///
    /// # Errors
    /// `BadRequest` for bad filters; containerd's failures.
    pub async fn images_json(&self, filters: &Filters, all: bool) -> Result<Value, ApiError> {
        let _ = all; // Every image is a top-level one: refengd keeps no intermediate build images.
        filters.validate(LIST_FILTERS)?;
        if filters.contains("until") {
            return Err(ApiError::BadRequest(
                "invalid filter 'until': not supported by /images/json".into(),
            ));
        }
        let dangling = filters.bool_value("dangling")?;
        let catalog = self.catalog().await?;
        let created = |r: &Resolved| -> i64 {
            r.config
                .get("created")
                .and_then(Value::as_str)
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |t| t.timestamp())
        };
        let bound = |key: &str| -> Result<Option<i64>, ApiError> {
            let Some(v) = filters.get(key).next() else {
                return Ok(None);
            };
            let catalog_hit = catalog.iter().find(|(n, r)| {
                familiar(n) == v
                    || *n
                        == Reference::parse(v)
                            .map(|r| r.to_string())
                            .unwrap_or_default()
                    || r.id == v
                    || r.id.trim_start_matches("sha256:").starts_with(v)
            });
            catalog_hit
                .map(|(_, r)| Some(created(r)))
                .ok_or_else(|| no_such_image(v))
        };
        let before = bound("before")?;
        let since = bound("since")?;
        let mut groups: BTreeMap<String, (Arc<Resolved>, Vec<String>)> = BTreeMap::new();
        for (name, r) in &catalog {
            groups
                .entry(r.id.clone())
                .or_insert_with(|| (r.clone(), Vec::new()))
                .1
                .push(name.clone());
        }
        let mut out = Vec::new();
        for (id, (r, names)) in groups {
            let is_dangling = names.iter().all(|n| n.starts_with(DANGLING));
            if dangling.is_some_and(|d| d != is_dangling) {
                continue;
            }
            let labels: BTreeMap<String, String> = r
                .config
                .pointer("/config/Labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            if !filters.match_labels("label", &labels) {
                continue;
            }
            let c = created(&r);
            if before.is_some_and(|b| c >= b) || since.is_some_and(|s| c <= s) {
                continue;
            }
            let named: Vec<&String> = names.iter().filter(|n| !n.starts_with(DANGLING)).collect();
            if filters.contains("reference")
                && !named.iter().any(|n| {
                    let f = familiar(n);
                    filters
                        .get("reference")
                        .any(|pat| reference_matches(pat, &f))
                })
            {
                continue;
            }
            let tags: Vec<String> = named
                .iter()
                .filter(|n| !n.contains('@'))
                .map(|n| familiar(n))
                .collect();
            let digests: BTreeSet<String> = named
                .iter()
                .map(|n| format!("{}@{}", familiar(repository(n)), r.target.digest))
                .collect();
            out.push(json!({
                "Id": id,
                "ParentId": "",
                "RepoTags": tags,
                "RepoDigests": digests,
                "Created": c,
                "Size": self.size_of(&r).await?,
                "SharedSize": -1,
                "Labels": if labels.is_empty() { Value::Null } else { json!(labels) },
                "Containers": -1,
            }));
        }
        out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_i64().unwrap_or(0)));
        Ok(Value::Array(out))
    }

    /// `GET /images/{name}/json`.
    ///
    /// # Errors
    /// `NotFound` (`No such image: NAME`); containerd's failures.
    pub async fn image_inspect(&self, name: &str) -> Result<Value, ApiError> {
        let (r, names) = self.find(name).await?;
        let named: Vec<&String> = names.iter().filter(|n| !n.starts_with(DANGLING)).collect();
        let tags: Vec<String> = named
            .iter()
            .filter(|n| !n.contains('@'))
            .map(|n| familiar(n))
            .collect();
        let digests: BTreeSet<String> = named
            .iter()
            .map(|n| format!("{}@{}", familiar(repository(n)), r.target.digest))
            .collect();
        let c = r.config.get("config").cloned().unwrap_or(json!({}));
        let field = |k: &str, default: Value| c.get(k).cloned().unwrap_or(default);
        let config = json!({
            "Hostname": "",
            "Domainname": "",
            "User": field("User", json!("")),
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "ExposedPorts": field("ExposedPorts", Value::Null),
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": field("Env", Value::Null),
            "Cmd": field("Cmd", Value::Null),
            "Image": "",
            "Volumes": field("Volumes", Value::Null),
            "WorkingDir": field("WorkingDir", json!("")),
            "Entrypoint": field("Entrypoint", Value::Null),
            "OnBuild": field("OnBuild", Value::Null),
            "Labels": field("Labels", Value::Null),
            "StopSignal": field("StopSignal", Value::Null),
            "Healthcheck": field("Healthcheck", Value::Null),
            "ArgsEscaped": field("ArgsEscaped", Value::Null),
            "Shell": field("Shell", Value::Null),
        });
        let mut config = config;
        if let Value::Object(m) = &mut config {
            // dockerd leaves these out when unset (`omitempty`).
            m.retain(|k, v| {
                !matches!(
                    k.as_str(),
                    "ExposedPorts" | "StopSignal" | "Healthcheck" | "ArgsEscaped" | "Shell"
                ) || !(v.is_null() || *v == json!(false))
            });
        }
        Ok(json!({
            "Id": r.id,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": self.parent_of(&r.id).await?,
            "Comment": r.config.get("comment").cloned().unwrap_or(json!("")),
            "Created": r.config.get("created").cloned().unwrap_or(json!("")),
            "DockerVersion": r.config.get("docker_version").cloned().unwrap_or(json!("")),
            "Author": r.config.get("author").cloned().unwrap_or(json!("")),
            "Config": config,
            "Architecture": r.config.get("architecture").cloned().unwrap_or(json!("")),
            "Os": r.config.get("os").cloned().unwrap_or(json!("")),
            "Size": self.size_of(&r).await?,
            "GraphDriver": {"Data": null, "Name": super::store::SNAPSHOTTER},
            "RootFS": {"Type": "layers", "Layers": r.diff_ids},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }))
    }

    /// `GET /images/{name}/history`: the config's history, newest first, with each
    /// non-empty step's layer size.
    ///
    /// # Errors
    /// `NotFound`; containerd's failures.
    pub async fn image_history(&self, name: &str) -> Result<Value, ApiError> {
        let (r, names) = self.find(name).await?;
        let store = self.store();
        let history = r
            .config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layer = 0usize;
        let mut rows = Vec::new();
        for h in &history {
            let empty = h
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = match r.chain_ids.get(layer) {
                    Some(chain) => store.usage(chain).await?,
                    None => 0,
                };
                layer += 1;
                s
            };
            let created = h
                .get("created")
                .and_then(Value::as_str)
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |t| t.timestamp());
            rows.push(json!({
                "Id": "<missing>",
                "Created": created,
                "CreatedBy": h.get("created_by").cloned().unwrap_or(json!("")),
                "Tags": Value::Null,
                "Size": size,
                "Comment": h.get("comment").cloned().unwrap_or(json!("")),
            }));
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top["Id"] = json!(r.id);
            let tags: Vec<String> = names
                .iter()
                .filter(|n| !n.starts_with(DANGLING) && !n.contains('@'))
                .map(|n| familiar(n))
                .collect();
            top["Tags"] = json!(tags);
        }
        Ok(Value::Array(rows))
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    ///
    /// # Errors
    /// `NotFound`, `BadRequest` for a bad reference; containerd's failures.
    pub async fn image_tag(&self, name: &str, repo: &str, tag: &str) -> Result<(), ApiError> {
        let (r, _) = self.find(name).await?;
        if repo.is_empty() {
            return Err(ApiError::BadRequest(
                "repository name must have at least one component".into(),
            ));
        }
        let text = if tag.is_empty() {
            repo.to_string()
        } else {
            format!("{repo}:{tag}")
        };
        let reference = Reference::parse(&text)
            .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {e}")))?;
        if reference.digest.is_some() {
            return Err(ApiError::BadRequest(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let full = reference.to_string();
        let old = self.store().image(&full).await?;
        self.store().put_image(&full, r.target.clone()).await?;
        self.keep_dangling(old.and_then(|i| i.target), &full)
            .await?;
        self.drop_dangling(&r.target.digest).await?;
        self.events.emit(Event::new(
            "image",
            "tag",
            &r.id,
            BTreeMap::from([("name".to_string(), familiar(&full))]),
        ));
        Ok(())
    }

    /// After `name` moved away from `old`: keeps `old` as a dangling image when no other name
    /// holds it.
    pub(super) async fn keep_dangling(
        &self,
        old: Option<Descriptor>,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(old) = old else { return Ok(()) };
        let images = self.store().images().await?;
        let held = images
            .iter()
            .any(|i| i.name != name && i.target.as_ref().is_some_and(|t| t.digest == old.digest));
        let still = images
            .iter()
            .any(|i| i.name == name && i.target.as_ref().is_some_and(|t| t.digest == old.digest));
        if !held && !still {
            let dangling = format!("{DANGLING}{}", old.digest);
            self.store().put_image(&dangling, old).await?;
        }
        Ok(())
    }

    /// Removes the dangling name of `target` once a real name holds it.
    pub(super) async fn drop_dangling(&self, target: &str) -> Result<(), ApiError> {
        let dangling = format!("{DANGLING}{target}");
        if self.store().image(&dangling).await?.is_some() {
            self.store().delete_image(&dangling, false).await?;
        }
        Ok(())
    }

    /// [`Engine::resolve`] through the catalogue's memory of targets: a target resolved before
    /// costs no read (a container create reads the manifest and config of its image otherwise).
    ///
    /// # Errors
    /// As [`Engine::resolve`].
    pub(crate) async fn resolve_known(
        &self,
        target: &Descriptor,
    ) -> Result<Arc<Resolved>, ApiError> {
        if let Some(r) = self.known(&target.digest) {
            return Ok(r);
        }
        let r = Arc::new(self.resolve(target).await?);
        if let Ok(mut m) = self.resolved.lock() {
            m.insert(target.digest.clone(), r.clone());
        }
        Ok(r)
    }

    /// The image a target digest names, if the catalogue resolved it before (its documents
    /// never change; whether it is still there is the caller's to check).
    pub(crate) fn known(&self, target: &str) -> Option<Arc<Resolved>> {
        self.resolved.lock().ok()?.get(target).cloned()
    }

    /// The image `id` was built on, from the label the builder puts on its config blob (empty
    /// when it has none: pulled, loaded and imported images have no parent).
    pub(crate) async fn parent_of(&self, id: &str) -> Result<String, ApiError> {
        Ok(self
            .store()
            .info(id)
            .await?
            .and_then(|i| i.labels.get(PARENT_LABEL).cloned())
            .unwrap_or_default())
    }

    /// Records that image `id` was built on `parent` (dockerd's parent chain).
    pub(crate) async fn set_parent(&self, id: &str, parent: &str) -> Result<(), ApiError> {
        if parent.is_empty() {
            return Ok(());
        }
        self.store()
            .add_labels(
                id,
                HashMap::from([(PARENT_LABEL.to_owned(), parent.to_owned())]),
            )
            .await
    }

    /// Whether a container (in any state) was made from image `id`.
    fn image_in_use(&self, id: &str) -> bool {
        self.containers
            .lock()
            .values()
            .any(|e| e.stored.image_id == id)
    }

    /// Whether another image was built on `id`.
    async fn has_children(&self, id: &str) -> Result<bool, ApiError> {
        let ids: BTreeSet<String> = self
            .catalog()
            .await?
            .iter()
            .map(|(_, r)| r.id.clone())
            .filter(|other| other != id)
            .collect();
        for other in ids {
            if self.parent_of(&other).await? == id {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `DELETE /images/{name}`: untags a name that is not the image's last, else deletes the
    /// image (and its content and snapshots, which containerd then collects). `force` also
    /// deletes an image named in several repositories when asked by id. Then, unless `noprune`,
    /// its untagged parents go too, up the chain, as dockerd prunes them: each while no name,
    /// no other child image and no container holds it.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` for an id named in several repositories without `force`.
    pub async fn image_delete(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
    ) -> Result<Value, ApiError> {
        let (r, names) = self.find(name).await?;
        let by_reference = Reference::parse(name)
            .ok()
            .map(|x| x.to_string())
            .filter(|full| names.contains(full));
        let named: Vec<&String> = names.iter().filter(|n| !n.starts_with(DANGLING)).collect();
        if let Some(full) = &by_reference {
            if named.len() > 1 {
                self.store().delete_image(full, false).await?;
                self.events.emit(Event::new(
                    "image",
                    "untag",
                    &r.id,
                    BTreeMap::from([("name".to_string(), r.id.clone())]),
                ));
                return Ok(json!([{"Untagged": familiar(full)}]));
            }
        } else if named.len() > 1 && !force {
            let short: String =
                r.id.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
            return Err(ApiError::Conflict(format!(
                "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        let mut out = Vec::new();
        let mut parent = self.parent_of(&r.id).await?;
        self.remove_image(&r, &names, &mut out).await?;
        while !noprune && !parent.is_empty() {
            let Ok((p, p_names)) = self.find(&parent).await else {
                break;
            };
            if p_names.iter().any(|n| !n.starts_with(DANGLING))
                || self.image_in_use(&p.id)
                || self.has_children(&p.id).await?
            {
                break;
            }
            parent = self.parent_of(&p.id).await?;
            self.remove_image(&p, &p_names, &mut out).await?;
        }
        let mut seen = BTreeSet::new();
        out.retain(|v| seen.insert(v.to_string()));
        Ok(Value::Array(out))
    }

    /// Removes every name of image `r`, then says what went: the names, the image, and the
    /// layers no other image holds.
    async fn remove_image(
        &self,
        r: &Resolved,
        names: &[String],
        out: &mut Vec<Value>,
    ) -> Result<(), ApiError> {
        if let Ok(mut m) = self.resolved.lock() {
            m.remove(&r.target.digest);
        }
        for (i, n) in names.iter().enumerate() {
            // The last delete is synchronous: containerd collects the content and snapshots no
            // name holds any more before answering, so `Deleted` tells what went.
            self.store().delete_image(n, i + 1 == names.len()).await?;
            if !n.starts_with(DANGLING) {
                out.push(json!({"Untagged": familiar(n)}));
                if !n.contains('@') {
                    out.push(json!({"Untagged": format!("{}@{}", familiar(repository(n)), r.target.digest)}));
                }
            }
        }
        self.events.emit(Event::new(
            "image",
            "delete",
            &r.id,
            BTreeMap::from([("name".to_string(), r.id.clone())]),
        ));
        out.push(json!({"Deleted": r.id}));
        // Only the layers that went: one another image shares stays (the last delete was
        // synchronous, so what is still there is still held).
        for chain in r.chain_ids.iter().rev() {
            if !self.store().has_snapshot(chain).await? {
                out.push(json!({"Deleted": chain}));
            }
        }
        Ok(())
    }

    /// `POST /images/prune`: removes dangling images (`dangling=false`: every image, since no
    /// container holds one yet), with `label` / `label!` filters; answers what went and the
    /// bytes freed (the snapshots' use, measured before they are collected).
    ///
    /// # Errors
    /// `BadRequest` for unknown filters; containerd's failures.
    pub async fn images_prune(&self, filters: &Filters) -> Result<Value, ApiError> {
        filters.validate(&["dangling", "label", "label!"])?;
        let only_dangling = filters.bool_value("dangling")?.unwrap_or(true);
        let catalog = self.catalog().await?;
        let mut groups: BTreeMap<String, (Arc<Resolved>, Vec<String>)> = BTreeMap::new();
        for (name, r) in &catalog {
            groups
                .entry(r.id.clone())
                .or_insert_with(|| (r.clone(), Vec::new()))
                .1
                .push(name.clone());
        }
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for (id, (r, names)) in groups {
            let dangling = names.iter().all(|n| n.starts_with(DANGLING));
            if only_dangling && !dangling {
                continue;
            }
            let labels: BTreeMap<String, String> = r
                .config
                .pointer("/config/Labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let excluded = filters.get("label!").any(|v| match v.split_once('=') {
                Some((k, val)) => labels.get(k).is_some_and(|have| have == val),
                None => labels.contains_key(v),
            });
            if !filters.match_labels("label", &labels) || excluded {
                continue;
            }
            // dockerd prunes from the heads: an image another was built on goes with its
            // last child, if nothing else holds it.
            if self.has_children(&id).await? {
                continue;
            }
            if self.find(&id).await.is_err() {
                continue; // pruned already as the parent of one before it
            }
            reclaimed += self.size_of(&r).await?;
            for v in self
                .image_delete(&id, true, false)
                .await?
                .as_array()
                .into_iter()
                .flatten()
            {
                deleted.push(v.clone());
            }
        }
        Ok(json!({
            "ImagesDeleted": if deleted.is_empty() { Value::Null } else { Value::Array(deleted) },
            "SpaceReclaimed": reclaimed,
        }))
    }

    /// `POST /images/create?fromImage=…`: checks the request, starts the pull, and answers with
    /// its JSON progress stream once the registry resolved the reference (a failure before
    /// that is a plain error answer with its status, as dockerd's). A name with neither tag nor
    /// digest (and no `tag` parameter, which is what `docker pull -a` sends) pulls every tag
    /// of the repository, see [`Engine::pull_all_tags`].
    ///
    /// # Errors
    /// `BadRequest` for a bad reference or parameter, the registry's refusal before any
    /// progress (404 for an unknown manifest or repository, 401 for refused credentials).
    pub async fn pull(
        self: &Arc<Self>,
        from_image: &str,
        tag: &str,
        platform: &str,
        credentials: Option<Credentials>,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        if !platform.is_empty() {
            let host = format!("linux/{}", super::system::go_arch());
            if platform != host {
                return Err(ApiError::BadRequest(format!(
                    "platform {platform:?} is not supported: refengd pulls for {host} only"
                )));
            }
        }
        let text = if tag.is_empty() {
            from_image.to_string()
        } else if tag.starts_with("sha256:") {
            format!("{from_image}@{tag}")
        } else {
            format!("{from_image}:{tag}")
        };
        let reference = Reference::parse(&text)
            .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {e}")))?;
        let config = self.config();
        let mut creds = CredentialStore::default();
        if let Some(c) = credentials {
            creds = creds.with(&reference.registry, c);
        }
        let client = Arc::new(Client::new(ClientConfig {
            credentials: creds,
            insecure_registries: config.insecure_registries.clone(),
            ..ClientConfig::default()
        }));
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let staging = config.data_root.join("tmp").join(format!(
            "pull-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        if tag.is_empty() && names_repository_only(from_image) {
            return self.pull_all_tags(client, reference, staging).await;
        }
        let (mut progress_rx, mut done_rx) =
            start_registry_pull(client, self.store(), &reference, &staging);
        // Wait for the first sign of life: progress means the stream starts; an early result
        // is answered as a whole.
        let first = tokio::select! {
            e = progress_rx.recv() => Ok(e),
            r = &mut done_rx => Err(r),
        };
        // The registry client's threads may all be gone (the sender dropped) before its
        // result is read: that too is an early result.
        let first = match first {
            Ok(None) => Err((&mut done_rx).await),
            other => other,
        };
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let (early_result, first_event) = match first {
            Err(Ok(Err(e))) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
            Err(Ok(Ok(done))) => (Some(Ok(done)), None),
            Err(Err(_)) => (
                Some(Err(ApiError::Internal(
                    "the pull ended without a result".into(),
                ))),
                None,
            ),
            Ok(ev) => (None, ev),
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let name = reference.to_string();
            let short_tag = reference
                .tag
                .clone()
                .or_else(|| reference.digest.as_ref().map(ToString::to_string))
                .unwrap_or_default();
            let _ = tx.send(pulling_from(&reference, &short_tag)).await;
            let mut lines = PullLines::new(engine.store());
            let result = match early_result {
                Some(r) => r,
                None => {
                    if let Some(ev) = &first_event {
                        lines.forward(&tx, ev).await;
                    }
                    drain(progress_rx, done_rx, &tx, &mut lines).await
                }
            };
            let outcome = match result {
                Ok((store, pulled)) => {
                    engine
                        .transfer(&store, &pulled, &name, &lines.present, &tx)
                        .await
                }
                Err(e) => Err(e),
            };
            let _ = tokio::fs::remove_dir_all(&staging).await;
            match outcome {
                Ok(fresh) => {
                    let f = familiar(&name);
                    let _ = tx.send(status_line(&f, fresh)).await;
                    engine.events.emit(Event::new(
                        "image",
                        "pull",
                        &f,
                        BTreeMap::from([("name".to_string(), familiar(&reference.name()))]),
                    ));
                }
                Err(e) => {
                    tracing::warn!(reference = %name, error = %e, "pull failed");
                    let _ = tx.send(error_line(&e)).await;
                }
            }
        });
        Ok(rx)
    }

    /// A pull of every tag of `reference`'s repository, as dockerd's for a name alone
    /// (`docker pull -a`): the registry's tag list first (its refusal is the answer, 404
    /// `repository … not found` for an unknown repository), then each tag in the registry's
    /// order in one stream, each with its `Pulling from` (id: the tag), layer and `Digest:`
    /// lines, and one `Status:` line for the repository at the end. A layer an earlier tag
    /// brought is `Already exists` for the later ones (it is in containerd by then).
    async fn pull_all_tags(
        self: &Arc<Self>,
        client: Arc<Client>,
        reference: Reference,
        staging: std::path::PathBuf,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let tags = {
            let client = client.clone();
            let reference = reference.clone();
            tokio::task::spawn_blocking(move || client.tags(&reference))
                .await
                .map_err(|e| ApiError::internal("listing tags", e))?
        }
        .map_err(|e| tag_list_error(&reference, &e))?;
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let engine = self.clone();
        tokio::spawn(async move {
            let mut fresh = false;
            let mut failure = None;
            for t in &tags {
                let one = reference.with_tag(t);
                let _ = tx.send(pulling_from(&one, t)).await;
                let (progress_rx, done_rx) =
                    start_registry_pull(client.clone(), engine.store(), &one, &staging);
                let mut lines = PullLines::new(engine.store());
                let outcome = match drain(progress_rx, done_rx, &tx, &mut lines).await {
                    Ok((store, pulled)) => {
                        engine
                            .transfer(&store, &pulled, &one.to_string(), &lines.present, &tx)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(f) => fresh |= f,
                    Err(e) => {
                        tracing::warn!(reference = %one, error = %e, "pull failed");
                        failure = Some(e);
                        break;
                    }
                }
            }
            let _ = tokio::fs::remove_dir_all(&staging).await;
            let repo = familiar(&reference.name());
            match failure {
                None => {
                    let _ = tx.send(status_line(&repo, fresh)).await;
                    engine.events.emit(Event::new(
                        "image",
                        "pull",
                        &repo,
                        BTreeMap::from([("name".to_string(), repo.clone())]),
                    ));
                }
                Some(e) => {
                    let _ = tx.send(error_line(&e)).await;
                }
            }
        });
        Ok(rx)
    }

    /// Copies a pulled image from the staging store into containerd, names it, unpacks it and
    /// sends its `Digest:` line. Returns whether the name now points somewhere new. The
    /// layers in `present` were `Already exists` and get no `Pull complete`.
    async fn transfer(
        &self,
        staging: &ContentStore,
        pulled: &crate::image::registry::pull::Pulled,
        name: &str,
        present: &BTreeSet<String>,
        tx: &mpsc::Sender<Bytes>,
    ) -> Result<bool, ApiError> {
        let done = self
            .transfer_staged(
                staging,
                &[(pulled.target.clone(), vec![name.to_string()])],
                tx,
                Unpacking::Pull { present },
            )
            .await?;
        let _ = tx
            .send(line(
                &json!({"status": format!("Digest: {}", pulled.target)}),
            ))
            .await;
        Ok(done.first().is_some_and(|t| t.fresh))
    }

    /// Copies images from a staging store into containerd under one lease (blobs containerd
    /// already has are kept as they are), unpacks each one's layers for this platform, then
    /// names them; the lease ends only once the names and the `gc.ref` labels hold
    /// everything. `images` pairs each target (manifest or index) with its full names.
    ///
    /// # Errors
    /// `BadRequest` when a staged image is not usable on this platform; containerd's failures.
    pub(super) async fn transfer_staged(
        &self,
        staging: &ContentStore,
        images: &[(Digest, Vec<String>)],
        tx: &mpsc::Sender<Bytes>,
        how: Unpacking<'_>,
    ) -> Result<Vec<Transferred>, ApiError> {
        let store = self.store();
        // Resolving in the staging store labels what it walks (index -> manifests, manifest ->
        // config and layers), and those labels travel with the blobs into containerd: without
        // them the collector keeps the target and drops the rest once the lease ends.
        let mut snapshot_of_config: HashMap<Digest, String> = HashMap::new();
        for (target, _) in images {
            let r = unpack::resolve(staging, target, &PlatformWanted::host()).map_err(|e| {
                ApiError::BadRequest(format!("image {target}: {}", error_chain(&e)))
            })?;
            if let Some(top) = r.chain_ids.last() {
                snapshot_of_config.insert(r.config.clone(), top.to_string());
            }
        }
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let lease = format!(
            "refengd-{}-{}-{}",
            how.verb(),
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        store.lease(&lease, PULL_LEASE_LIFE).await?;
        let result = async {
            let blobs = staging
                .list()
                .map_err(|e| ApiError::internal("listing the staging store", e))?;
            for d in &blobs {
                let digest = d.to_string();
                let info = staging
                    .info(d)
                    .map_err(|e| ApiError::internal("reading the staging store", e))?;
                let mut labels: HashMap<String, String> = info.labels.into_iter().collect();
                if let Some(chain) = snapshot_of_config.get(d) {
                    labels.insert(
                        format!("containerd.io/gc.ref.snapshot.{}", super::store::SNAPSHOTTER),
                        chain.clone(),
                    );
                }
                if let Some(have) = store.info(&digest).await? {
                    // A blob containerd already has may lack the references this image needs
                    // (written by another client, or by an import that labelled nothing):
                    // without them the collector takes the config and layers once the lease
                    // ends, and the image is left pointing at a manifest alone.
                    let missing: HashMap<String, String> = labels
                        .into_iter()
                        .filter(|(k, v)| {
                            k.starts_with("containerd.io/gc.ref.") && have.labels.get(k) != Some(v)
                        })
                        .collect();
                    if !missing.is_empty() {
                        store.add_labels(&digest, missing).await?;
                    }
                    continue;
                }
                let file = tokio::fs::File::open(staging.blob_path(d))
                    .await
                    .map_err(|e| ApiError::internal("opening a staged blob", e))?;
                store
                    .write(&digest, info.size, file, labels, &lease)
                    .await?;
            }
            let mut out = Vec::new();
            for (target_digest, names) in images {
                let top_bytes = staging
                    .read_small(target_digest)
                    .map_err(|e| ApiError::internal("reading the staged manifest", e))?;
                let target = Descriptor {
                    media_type: media_type_of(&top_bytes),
                    digest: target_digest.to_string(),
                    size: i64::try_from(top_bytes.len()).unwrap_or(i64::MAX),
                    annotations: HashMap::new(),
                };
                let resolved = self.resolve(&target).await?;
                let mut parent = String::new();
                for ((layer, diff_id), chain) in resolved
                    .layers
                    .iter()
                    .zip(&resolved.diff_ids)
                    .zip(&resolved.chain_ids)
                {
                    let short: String = layer
                        .digest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect();
                    let unpacked = store.has_snapshot(chain).await?;
                    if !unpacked {
                        if matches!(how, Unpacking::Pull { .. }) {
                            let _ = tx
                                .send(line(
                                    &json!({"status": "Extracting", "progressDetail": {}, "id": short}),
                                ))
                                .await;
                        }
                        store
                            .unpack(chain, &parent, layer.clone(), diff_id, &lease)
                            .await?;
                    }
                    let done = match how {
                        // dockerd's `Already exists` is the layer's last line.
                        Unpacking::Pull { present } if unpacked && present.contains(&layer.digest) => {
                            parent = chain.clone();
                            continue;
                        }
                        Unpacking::Pull { .. } => {
                            json!({"status": "Pull complete", "progressDetail": {}, "id": short})
                        }
                        Unpacking::Load => {
                            let size = u64::try_from(layer.size).unwrap_or(0);
                            json!({"status": "Loading layer",
                                   "progressDetail": {"current": size, "total": size},
                                   "progress": progress_bar(size, size),
                                   "id": short})
                        }
                    };
                    let _ = tx.send(line(&done)).await;
                    parent = chain.clone();
                }
                let mut fresh = false;
                for name in names {
                    let old = store.image(name).await?.and_then(|i| i.target);
                    fresh |= old.as_ref().is_none_or(|o| o.digest != target.digest);
                    store.put_image(name, target.clone()).await?;
                    self.keep_dangling(old, name).await?;
                }
                if names.iter().any(|n| !n.starts_with(DANGLING)) {
                    self.drop_dangling(&target.digest).await?;
                }
                out.push(Transferred {
                    resolved,
                    fresh,
                });
            }
            Ok(out)
        }
        .await;
        if let Err(e) = store.end_lease(&lease).await {
            tracing::warn!(%lease, error = %e, "lease not ended; it expires by itself");
        }
        result
    }
}

/// What [`Engine::transfer_staged`] reports per layer: pull's or load's progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unpacking<'a> {
    /// `Extracting` / `Pull complete`, but nothing more for the layers (digests) in `present`,
    /// which the pull reported as `Already exists`.
    Pull {
        /// layers already reported
        present: &'a BTreeSet<String>,
    },
    /// `Loading layer`.
    Load,
}

impl Unpacking<'_> {
    fn verb(self) -> &'static str {
        match self {
            Unpacking::Pull { .. } => "pull",
            Unpacking::Load => "load",
        }
    }
}

/// One image [`Engine::transfer_staged`] stored.
#[derive(Debug)]
pub(super) struct Transferred {
    /// The image as containerd now has it.
    pub resolved: Resolved,
    /// Whether one of its names now points somewhere new.
    pub fresh: bool,
}

/// Whether `from_image` names a repository alone: no tag after its last `/`, no digest (what
/// `docker pull -a` sends, and dockerd then pulls every tag).
pub(super) fn names_repository_only(from_image: &str) -> bool {
    !from_image.contains('@')
        && !from_image
            .rsplit('/')
            .next()
            .unwrap_or(from_image)
            .contains(':')
}

/// What [`start_registry_pull`] ends with.
type RegistryPull = Result<(ContentStore, crate::image::registry::pull::Pulled), ApiError>;

/// Starts the registry client's pull of `reference` into the staging store at `staging` on a
/// blocking thread: its progress events, and its result once it ends. Layers containerd has
/// (asked through `containerd`) are `Already exists` and not downloaded again, as dockerd's.
fn start_registry_pull(
    client: Arc<Client>,
    containerd: Store,
    reference: &Reference,
    staging: &std::path::Path,
) -> (
    mpsc::UnboundedReceiver<ProgressEvent>,
    tokio::sync::oneshot::Receiver<RegistryPull>,
) {
    let (progress_tx, progress_rx) = mpsc::unbounded_channel::<ProgressEvent>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let reference = reference.clone();
    let staging = staging.to_path_buf();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let in_containerd = |d: &Digest| {
            handle
                .block_on(containerd.info(&d.to_string()))
                .is_ok_and(|i| i.is_some())
        };
        let result = ContentStore::open(&staging, Limits::default())
            .map_err(|e| ApiError::internal("opening the staging store", e))
            .and_then(|store| {
                client
                    .pull_with(
                        &reference,
                        &store,
                        None,
                        &Forward(progress_tx),
                        &in_containerd,
                    )
                    .map(|p| (store, p))
                    .map_err(|e| registry_error(&reference, &e))
            });
        let _ = done_tx.send(result);
    });
    (progress_rx, done_rx)
}

/// Forwards a registry pull's progress into the response stream until it ends.
async fn drain(
    mut progress_rx: mpsc::UnboundedReceiver<ProgressEvent>,
    mut done_rx: tokio::sync::oneshot::Receiver<RegistryPull>,
    tx: &mpsc::Sender<Bytes>,
    lines: &mut PullLines,
) -> RegistryPull {
    let ended = || ApiError::Internal("the pull ended without a result".into());
    loop {
        tokio::select! {
            e = progress_rx.recv() => match e {
                Some(ev) => lines.forward(tx, &ev).await,
                None => return done_rx.await.unwrap_or_else(|_| Err(ended())),
            },
            r = &mut done_rx => {
                while let Ok(ev) = progress_rx.try_recv() {
                    lines.forward(tx, &ev).await;
                }
                return r.unwrap_or_else(|_| Err(ended()));
            }
        }
    }
}

/// What one reference's pull sends of the registry client's progress, as dockerd words it.
struct PullLines {
    containerd: Store,
    /// The layers (digests) reported `Already exists`: their last line.
    present: BTreeSet<String>,
    /// containerd has the manifest already: dockerd prints no layer lines for an image it has.
    known: bool,
}

impl PullLines {
    fn new(containerd: Store) -> Self {
        PullLines {
            containerd,
            present: BTreeSet::new(),
            known: false,
        }
    }

    async fn forward(&mut self, tx: &mpsc::Sender<Bytes>, ev: &ProgressEvent) {
        match ev {
            ProgressEvent::Resolved { digest, .. } => {
                self.known = self
                    .containerd
                    .info(&digest.to_string())
                    .await
                    .is_ok_and(|i| i.is_some());
            }
            ProgressEvent::AlreadyExists { id } => {
                self.present.insert(id.to_string());
                if self.known {
                    return;
                }
            }
            _ => {}
        }
        forward(tx, ev).await;
    }
}

/// dockerd's first line for each reference a pull resolves: the repository's path in its
/// registry (`library/busybox`, without the registry), the tag or digest as its id.
fn pulling_from(reference: &Reference, id: &str) -> Bytes {
    line(&json!({
        "status": format!("Pulling from {}", reference.repository),
        "id": id,
    }))
}

/// A pull's last line.
fn status_line(name: &str, fresh: bool) -> Bytes {
    let status = if fresh {
        format!("Status: Downloaded newer image for {name}")
    } else {
        format!("Status: Image is up to date for {name}")
    };
    line(&json!({ "status": status }))
}

/// A refused tag list as dockerd words it: an unknown repository is 404 `repository NAME not
/// found: name unknown: MESSAGE` (distribution's error code in words, then the registry's
/// message); the rest as for any registry error.
fn tag_list_error(r: &Reference, e: &crate::image::registry::RegistryError) -> ApiError {
    use crate::image::registry::RegistryError as E;
    match e {
        E::Refused {
            status: 404,
            code,
            message,
            text,
            ..
        } => {
            let cause = if code.is_empty() {
                text.clone()
            } else {
                format!("{}: {message}", code.to_lowercase().replace('_', " "))
            };
            ApiError::NotFound(format!(
                "repository {} not found: {cause}",
                familiar(&r.name())
            ))
        }
        _ => registry_error(r, e),
    }
}

/// An error with its sources, `: `-joined (the image and registry errors keep their detail in
/// their sources).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(super) async fn forward(tx: &mpsc::Sender<Bytes>, ev: &ProgressEvent) {
    if matches!(ev, ProgressEvent::Resolved { .. }) {
        // dockerd prints the digest once, at the end.
        return;
    }
    let mut v = ev.to_json_message();
    if let ProgressEvent::Downloading { current, total, .. }
    | ProgressEvent::Pushing { current, total, .. } = ev
    {
        v["progress"] = json!(progress_bar(*current, *total));
    }
    if v.get("progressDetail").is_none() {
        v["progressDetail"] = json!({});
    }
    let _ = tx.send(line(&v)).await;
}

/// The progress text dockerd sends beside `progressDetail` for older clients: docker's own
/// drawing at dockerd's 200 columns.
pub(super) fn progress_bar(current: u64, total: u64) -> String {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    crate::cli::progress::render(
        n(current),
        n(total),
        "",
        false,
        crate::cli::progress::DAEMON_WIDTH,
    )
}

/// The registry client's error, as dockerd classes it: refused credentials 401, a missing
/// repository or manifest 404, an image refeng cannot use 400, the rest 500.
pub(super) fn registry_error(r: &Reference, e: &crate::image::registry::RegistryError) -> ApiError {
    use crate::image::registry::RegistryError as E;
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match e {
        E::WrongCredentials { .. } | E::AuthRequired { .. } | E::Unauthorized { .. } => {
            ApiError::Unauthorized(text)
        }
        E::InsufficientScope { .. } => ApiError::Forbidden(text),
        E::Refused { status: 404, .. } | E::NotFound(_) => ApiError::NotFound(format!(
            "manifest for {} not found: {text}",
            familiar(&r.to_string())
        )),
        E::Refused { status: 401, .. } => ApiError::Unauthorized(text),
        E::Refused { status: 403, .. } => ApiError::Forbidden(text),
        E::Schema1 { .. } | E::Reference(_) | E::Format { .. } => ApiError::BadRequest(text),
        _ => ApiError::Internal(text),
    }
}

/// Whether a `reference` filter pattern matches a familiar name (dockerd matches the pattern
/// as a path glob against the name with and without its tag).
fn reference_matches(pattern: &str, name: &str) -> bool {
    let repo = repository(name);
    glob(pattern, name) || glob(pattern, repo)
}

/// `path.Match`-style glob: `*` matches any run of non-`/` characters, `?` one of them.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => t.first().is_some_and(|&c| c != b'/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_dockers() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/user/app:1"), "user/app:1");
        assert_eq!(familiar("127.0.0.1:5000/x/y:2"), "127.0.0.1:5000/x/y:2");
        assert_eq!(repository("127.0.0.1:5000/x:2"), "127.0.0.1:5000/x");
        assert_eq!(repository("127.0.0.1:5000/x"), "127.0.0.1:5000/x");
        assert_eq!(repository("busybox@sha256:ab"), "busybox");
    }

    #[test]
    fn reference_filters_glob_like_dockerd() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(reference_matches("busybox:lat*", "busybox:latest"));
        assert!(!reference_matches("alpine", "busybox:latest"));
        assert!(!reference_matches("*", "127.0.0.1:5000/x:1"));
        assert!(reference_matches("*/*", "127.0.0.1:5000/x:1"));
    }

    #[test]
    fn progress_texts_are_dockerds() {
        assert!(progress_bar(0, 100).starts_with("[>"));
        assert_eq!(
            progress_bar(2_129_920, 2_129_920),
            format!("[{}>]   2.13MB/2.13MB", "=".repeat(50))
        );
    }
}
