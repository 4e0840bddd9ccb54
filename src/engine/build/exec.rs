//! `POST /build`: the classic builder's executor. It reads the context tar, plans the build
//! with the pure fold ([`refeng_spec::build::plan`]) and carries out each step: metadata
//! steps commit a config, `RUN` runs in a container of the engine and its changes are
//! committed with containerd's Diff service, `WORKDIR` makes its directory in a snapshot,
//! `COPY`/`ADD` write a layer from the context or from a view of another image (`--from`).
//! Every step's image is stored (as dockerd keeps intermediates) and indexed for the cache
//! ([`super::cache`]); the target stage's image gets the tags. The answer is the JSON message
//! stream `docker build` prints.
//!
//! `pull=1` pulls each base image (with `X-Registry-Config`'s credentials) before the plan
//! uses it, its progress in the stream. `ADD` unpacks local tar archives (plain, gzip, zstd,
//! bzip2, xz) and downloads URLs as dockerd does (0600, Last-Modified as mtime, name from the
//! path or Content-Disposition). `cachefrom` images stand in for steps their history
//! matches ([`cache::Source`]). Refused by name rather than done differently: `remote`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, ViewSnapshotRequest,
};
use containerd_client::services::v1::DiffRequest;
use containerd_client::types::{Descriptor, Mount};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::cache;
use super::dockerignore::clean;
use crate::engine::containers::init_layer;
use crate::engine::error::ApiError;
use crate::engine::image_archive::{BodyReader, Staging};
use crate::engine::images::{familiar, line, DANGLING};
use crate::engine::store::SNAPSHOTTER;
use crate::engine::Engine;
use crate::image::digest::Digest;
use crate::image::format::{self, PlatformWanted};
use crate::image::layer::decompress;
use crate::image::registry::Reference;
use crate::image::snapshot::MountSpec;
use crate::image::tar::{Builder, Entry, Kind, Reader, TarLimits};
use refeng_spec::build::fold::{
    Base, BaseImage, CopyFrom, CopyWork, ImageSource, RunWork, StagePlan, Step, Work,
};
use refeng_spec::build::{parse, plan, BuildOptions, ImageConfig};

/// How long the lease of a build's writes lives if refengd dies during it.
const BUILD_LEASE_LIFE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The query parameters `POST /build` understands; any other one that is set is refused.
const KNOWN: &[&str] = &[
    "dockerfile",
    "t",
    "buildargs",
    "target",
    "labels",
    "nocache",
    "pull",
    "rm",
    "forcerm",
    "q",
    "networkmode",
    "platform",
    "cachefrom",
    "shmsize",
    "memory",
    "memswap",
    "cpushares",
    "cpusetcpus",
    "cpusetmems",
    "cpuperiod",
    "cpuquota",
    "version",
    "session",
    "remote",
];

/// What `POST /build` asks for, read from its query.
#[derive(Debug, Default)]
pub struct BuildRequest {
    /// `dockerfile`: the Dockerfile's path in the context.
    pub dockerfile: String,
    /// `t`, every one given, in full reference form.
    pub tags: Vec<String>,
    /// `q`.
    pub quiet: bool,
    /// The fold's options (`buildargs`, `target`, `labels`, platform).
    pub options: BuildOptions,
    /// `rm`: remove the container of a successful `RUN` (the API's default is true).
    pub rm: bool,
    /// `forcerm`: remove it also when the `RUN` failed.
    pub forcerm: bool,
    /// `nocache`: every step runs.
    pub nocache: bool,
    /// The `HostConfig` of each `RUN`'s container (network mode, shm size, limits).
    pub host_config: Value,
    /// `pull`: pull every base image before it is used, even when the store has it.
    pub pull: bool,
    /// Registry credentials from `X-Registry-Config`, by registry host.
    pub credentials: Vec<(String, crate::image::registry::auth::Credentials)>,
    /// `cachefrom`: images whose history may stand in for steps.
    pub cache_from: Vec<String>,
}

impl BuildRequest {
    /// Reads the query string of `POST /build`.
    ///
    /// # Errors
    /// `BadRequest` naming a parameter that is unknown, malformed, or set to something this
    /// builder does not do.
    pub fn parse(query: Option<&str>) -> Result<BuildRequest, ApiError> {
        let mut all: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            all.push((k.into_owned(), v.into_owned()));
        }
        let first = |key: &str| all.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let truthy = |key: &str| {
            !matches!(
                first(key).map(|s| s.trim().to_ascii_lowercase()).as_deref(),
                None | Some("" | "0" | "no" | "false" | "none")
            )
        };
        for (k, v) in &all {
            // A zero value (`ulimits=null`, `squash=0`, `extrahosts=`) asks for nothing.
            let set = !matches!(v.as_str(), "" | "0" | "null" | "[]" | "{}" | "false");
            if !KNOWN.contains(&k.as_str()) && set {
                return Err(ApiError::BadRequest(format!(
                    "build parameter {k:?} is not supported by refengd"
                )));
            }
        }
        let host = format!("linux/{}", crate::engine::system::go_arch());
        let mut req = BuildRequest {
            dockerfile: first("dockerfile")
                .filter(|s| !s.is_empty())
                .unwrap_or("Dockerfile")
                .to_owned(),
            quiet: truthy("q"),
            ..BuildRequest::default()
        };
        req.options.platform.clone_from(&host);
        req.rm = first("rm").is_none() || truthy("rm");
        req.forcerm = truthy("forcerm");
        req.nocache = truthy("nocache");
        let mut hc = serde_json::Map::new();
        let network = match first("networkmode") {
            None | Some("" | "default" | "bridge") => "default",
            Some("none") => "none",
            Some("host") => "host",
            Some(m) => {
                return Err(ApiError::BadRequest(format!(
                    "networkmode {m:?} is not supported: default, bridge, none or host"
                )))
            }
        };
        hc.insert("NetworkMode".into(), network.into());
        for (key, field) in [
            ("shmsize", "ShmSize"),
            ("memory", "Memory"),
            ("memswap", "MemorySwap"),
            ("cpushares", "CpuShares"),
            ("cpuperiod", "CpuPeriod"),
            ("cpuquota", "CpuQuota"),
        ] {
            if let Some(v) = first(key).filter(|v| !v.is_empty()) {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("{key}: {v:?} is not an integer")))?;
                if n != 0 {
                    hc.insert(field.into(), n.into());
                }
            }
        }
        for (key, field) in [("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")] {
            if let Some(v) = first(key).filter(|v| !v.is_empty()) {
                hc.insert(field.into(), v.into());
            }
        }
        req.host_config = Value::Object(hc);
        for (k, v) in &all {
            if k == "t" && !v.is_empty() {
                let r = Reference::parse(v)
                    .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {e}")))?;
                if r.digest.is_some() {
                    return Err(ApiError::BadRequest(format!(
                        "invalid reference format: {v}: a build cannot be tagged by digest"
                    )));
                }
                req.tags.push(r.to_string());
            }
        }
        if let Some(p) = first("platform").filter(|p| !p.is_empty()) {
            if p != host && p != "linux" {
                return Err(ApiError::BadRequest(format!(
                    "platform {p:?} is not supported: refengd builds for {host} only"
                )));
            }
        }
        if let Some(t) = first("target").filter(|t| !t.is_empty()) {
            req.options.target = Some(t.to_owned());
        }
        if let Some(a) = first("buildargs").filter(|a| !a.is_empty()) {
            req.options.build_args = serde_json::from_str(a).map_err(|e| {
                ApiError::BadRequest(format!("buildargs: not a JSON object of strings: {e}"))
            })?;
        }
        if let Some(l) = first("labels").filter(|l| !l.is_empty()) {
            req.options.labels = serde_json::from_str(l).map_err(|e| {
                ApiError::BadRequest(format!("labels: not a JSON object of strings: {e}"))
            })?;
        }
        if let Some(c) = first("cachefrom").filter(|c| !c.is_empty()) {
            req.cache_from = serde_json::from_str(c).map_err(|e| {
                ApiError::BadRequest(format!("cachefrom: not a JSON array of strings: {e}"))
            })?;
        }
        req.pull = truthy("pull");
        if first("remote").is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::BadRequest(
                "remote: refengd builds from the context in the request body only".into(),
            ));
        }
        if first("version").is_some_and(|v| !v.is_empty() && v != "1") {
            return Err(ApiError::BadRequest(
                "version: refengd has the classic builder (version 1) only".into(),
            ));
        }
        Ok(req)
    }
}

/// One file of the context.
#[derive(Debug, Clone)]
struct ContextFile {
    entry: Entry,
    data: Vec<u8>,
}

/// The build context, by cleaned relative path.
type Context = BTreeMap<String, ContextFile>;

/// Reads the context tar (plain or compressed), checking each path stays inside it.
fn read_context(r: impl Read) -> Result<Context, String> {
    let (_, plain) = decompress(r).map_err(|e| format!("reading the context: {e}"))?;
    let mut reader = Reader::new(plain, TarLimits::default());
    let mut out = Context::new();
    while let Some(entry) = reader
        .next_entry()
        .map_err(|e| format!("reading the context: {e}"))?
    {
        let text = String::from_utf8_lossy(&entry.path).into_owned();
        let path = clean(text.trim_start_matches('/'));
        if path == "." || path.is_empty() {
            continue;
        }
        if path == ".." || path.starts_with("../") {
            return Err(format!("context entry {text:?} is outside the context"));
        }
        let mut data = Vec::new();
        if entry.kind == Kind::File {
            reader
                .data()
                .read_to_end(&mut data)
                .map_err(|e| format!("reading the context: {e}"))?;
        }
        // Directories a file implies get an entry of their own.
        let mut at = path.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            out.entry(parent.to_owned()).or_insert_with(|| ContextFile {
                entry: Entry::new(parent.as_bytes().to_vec(), Kind::Directory),
                data: Vec::new(),
            });
            at = parent;
        }
        out.insert(path, ContextFile { entry, data });
    }
    Ok(out)
}

/// Reads `data` as a build context; the paths it holds (for the `build_context` fuzz target).
///
/// # Errors
/// What the builder answers for a context it cannot read.
pub fn check_context(data: &[u8]) -> Result<Vec<String>, String> {
    read_context(data).map(|c| c.into_keys().collect())
}

/// Go's `filepath.Match` over one path (a `*` never crosses a `/`).
fn glob_regex(pattern: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    re.push('^');
                }
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some('\\') => {
                            let n = chars.next().ok_or("syntax error in pattern")?;
                            re.push_str(&regex::escape(&n.to_string()));
                        }
                        Some('-') => re.push('-'),
                        Some(x) => re.push_str(&regex::escape(&x.to_string())),
                        None => return Err("syntax error in pattern".into()),
                    }
                }
                re.push(']');
            }
            '\\' => {
                let n = chars.next().unwrap_or('\\');
                re.push_str(&regex::escape(&n.to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| e.to_string())
}

/// The state of a stage between steps: its image config document and its layers.
#[derive(Debug, Clone)]
struct ImageState {
    /// The config document (`config`, `rootfs`, `history`, ...).
    doc: Value,
    /// Layers, bottom first, with where their blob is (`None`: already in containerd).
    layers: Vec<(Descriptor, Option<Vec<u8>>)>,
    /// The id of the image this state is (`sha256:` of the document).
    id: String,
}

impl ImageState {
    fn scratch() -> ImageState {
        let p = PlatformWanted::host();
        let mut doc = json!({
            "architecture": p.architecture,
            "os": p.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = p.variant {
            doc["variant"] = v.into();
        }
        ImageState {
            doc,
            layers: Vec::new(),
            id: String::new(),
        }
    }

    /// The chain id of the top layer (the snapshot of this state); empty for no layers.
    fn top_chain(&self) -> String {
        let mut chain = String::new();
        for d in self.doc["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let d = d.as_str().unwrap_or_default();
            chain = if chain.is_empty() {
                d.to_owned()
            } else {
                Digest::sha256(format!("{chain} {d}").as_bytes()).to_string()
            };
        }
        chain
    }

    /// Commits a step whose layer containerd already has (a `RUN`'s or `WORKDIR`'s diff, a
    /// commit's). A layer without a change is left out, the step kept in the history only, as
    /// dockerd's `NewChildImage` does for a diff id that `layer.IsEmpty`.
    fn commit_layer(
        &mut self,
        config: &ImageConfig,
        container: &ImageConfig,
        created_by: &str,
        layer: Descriptor,
    ) {
        self.commit(config, container, created_by, None);
        if layer.digest == EMPTY_LAYER {
            return;
        }
        if let Some(h) = self.doc["history"]
            .as_array_mut()
            .and_then(|h| h.last_mut())
        {
            if let Some(o) = h.as_object_mut() {
                o.remove("empty_layer");
            }
        }
        if let Some(ids) = self.doc["rootfs"]["diff_ids"].as_array_mut() {
            // An uncompressed layer's digest is its diff id.
            ids.push(layer.digest.clone().into());
        }
        self.layers.push((layer, None));
        self.id = Digest::sha256(&serde_json::to_vec(&self.doc).unwrap_or_default()).to_string();
    }

    /// Commits a step: the new config, a history entry, and the layer if there is one.
    fn commit(
        &mut self,
        config: &ImageConfig,
        container: &ImageConfig,
        created_by: &str,
        layer: Option<Vec<u8>>,
    ) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        self.doc["config"] = serde_json::to_value(config).unwrap_or(Value::Null);
        self.doc["container_config"] = serde_json::to_value(container).unwrap_or(Value::Null);
        self.doc["created"] = now.clone().into();
        let mut h = json!({"created": now, "created_by": created_by});
        match layer {
            Some(tar) => {
                let diff = Digest::sha256(&tar).to_string();
                if let Some(ids) = self.doc["rootfs"]["diff_ids"].as_array_mut() {
                    ids.push(diff.clone().into());
                }
                self.layers.push((
                    Descriptor {
                        media_type: format::OCI_LAYER.into(),
                        digest: diff,
                        size: i64::try_from(tar.len()).unwrap_or(i64::MAX),
                        annotations: HashMap::new(),
                    },
                    Some(tar),
                ));
            }
            None => h["empty_layer"] = true.into(),
        }
        if let Some(hs) = self.doc["history"].as_array_mut() {
            hs.push(h);
        } else {
            self.doc["history"] = json!([h]);
        }
        self.id = Digest::sha256(&serde_json::to_vec(&self.doc).unwrap_or_default()).to_string();
    }
}

/// The diff id of a layer without a change: a tar of nothing, its two zero blocks.
const EMPTY_LAYER: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// The files the container's mounts need in its root filesystem, which a container made
/// before init layers ([`init_layer`]) has in its writable layer; dockerd keeps them in an
/// init layer below the container's, so a `RUN` or a commit never has them.
const MOUNT_POINTS: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// A file written through a buffer, hashed (sha256) and counted as it is written.
struct HashingFile {
    out: std::io::BufWriter<std::fs::File>,
    hasher: crate::image::digest::Hasher,
    size: u64,
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Copies the layer tar `src` to `dst` without the empty files made as mount points for
/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (writes to those go to the mounted
/// files, never to the layer). The digest and size of `dst` when something was left out,
/// `None` when the layer is right as it is. Both are files: a layer may be of any size.
fn without_mount_points(
    src: &std::path::Path,
    dst: &std::path::Path,
) -> Result<Option<(String, u64)>, Failed> {
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(src)?);
    let mut r = Reader::new(input, TarLimits::default());
    let mut b = Builder::new(HashingFile {
        out: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dst)?),
        hasher: crate::image::digest::Algorithm::Sha256.hasher(),
        size: 0,
    });
    let mut dropped = false;
    while let Some(e) = r.next_entry()? {
        let path = String::from_utf8_lossy(&e.path).into_owned();
        let path = clean(path.trim_start_matches('/'));
        if e.kind == Kind::File && e.size == 0 && MOUNT_POINTS.contains(&path.as_str()) {
            dropped = true;
            continue;
        }
        b.append(&e, r.data())?;
    }
    if !dropped {
        return Ok(None);
    }
    let mut out = b.finish()?;
    out.flush()?;
    Ok(Some((out.hasher.finish().to_string(), out.size)))
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Where the fold finds base images: the engine's store, looked up from a blocking thread.
struct StoreSource {
    engine: Arc<Engine>,
    handle: tokio::runtime::Handle,
    found: std::sync::Mutex<HashMap<String, Arc<crate::engine::images::Resolved>>>,
    /// With `pull`: where the pulls' progress goes, the credentials, what was pulled already.
    pull: Option<Puller>,
}

struct Puller {
    tx: mpsc::Sender<Bytes>,
    credentials: Vec<(String, crate::image::registry::auth::Credentials)>,
    done: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Puller {
    /// Pulls `reference` (once per build), forwarding the progress lines; an image id is not
    /// pulled.
    fn pull(
        &self,
        engine: &Arc<Engine>,
        handle: &tokio::runtime::Handle,
        reference: &str,
    ) -> Result<(), String> {
        let is_id = reference.starts_with("sha256:")
            || (reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_id
            || !self
                .done
                .lock()
                .map_or(true, |mut d| d.insert(reference.to_owned()))
        {
            return Ok(());
        }
        let parsed =
            Reference::parse(reference).map_err(|e| format!("invalid reference format: {e}"))?;
        // With its tag (`latest` when it has none): a name alone would pull every tag.
        let full = parsed.to_string();
        let registry = parsed.registry;
        let creds = self
            .credentials
            .iter()
            .find(|(host, _)| *host == registry)
            .map(|(_, c)| c.clone());
        handle.block_on(async {
            let mut rx = engine
                .pull(&full, "", "", creds)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(b) = rx.recv().await {
                for l in b.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(v) = serde_json::from_slice::<Value>(l) {
                        if let Some(e) = v.get("error").and_then(Value::as_str) {
                            return Err(e.to_owned());
                        }
                    }
                }
                let _ = self.tx.send(b).await;
            }
            Ok(())
        })
    }
}

impl ImageSource for StoreSource {
    fn image(&self, reference: &str) -> Result<BaseImage, String> {
        if let Some(p) = &self.pull {
            p.pull(&self.engine, &self.handle, reference)?;
        }
        let (r, _) = self
            .handle
            .block_on(self.engine.find(reference))
            .map_err(|e| e.to_string())?;
        let config: ImageConfig =
            serde_json::from_value(r.config.get("config").cloned().unwrap_or_else(|| json!({})))
                .map_err(|e| format!("image {reference}: its config does not parse: {e}"))?;
        let id = r.id.clone();
        if let Ok(mut m) = self.found.lock() {
            m.insert(id.clone(), r);
        }
        Ok(BaseImage { id, config })
    }
}

/// A build that failed: what the stream's `errorDetail` says.
#[derive(Debug)]
struct Failed(String);

impl Failed {
    /// `errorDetail.code`: a failed `RUN`'s exit status, which dockerd gives there (its
    /// `JSONError` code) and the docker CLI then exits with. Read back from the message this
    /// builder words itself, so that the one place that builds it stays the only one.
    fn code(&self) -> Option<i64> {
        self.0
            .strip_prefix("The command '")?
            .rsplit_once("' returned a non-zero code: ")?
            .1
            .parse()
            .ok()
    }
}

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed(e.to_string())
    }
}

struct Run {
    engine: Arc<Engine>,
    tx: mpsc::Sender<Bytes>,
    quiet: bool,
    /// The lease every blob and snapshot of the build is written under until it is named.
    lease: String,
    rm: bool,
    forcerm: bool,
    nocache: bool,
    host_config: Value,
    /// `cachefrom`'s images; narrowed to one once a step was taken from it (as dockerd does,
    /// so that a build does not jump between sources).
    sources: std::sync::Mutex<Vec<Arc<cache::Source>>>,
}

impl Run {
    async fn say(&self, text: &str) {
        if !self.quiet {
            let _ = self.tx.send(line(&json!({ "stream": text }))).await;
        }
    }
}

impl Engine {
    /// `POST /build`: answers the JSON message stream of the classic builder; the work runs
    /// in its own task, so a client that goes away leaves either the image or nothing.
    ///
    /// # Errors
    /// `BadRequest` for a context or Dockerfile that does not read or parse (dockerd answers
    /// those before its stream starts); later failures are the stream's `errorDetail` line.
    pub(in crate::engine) async fn build(
        self: &Arc<Self>,
        reader: BodyReader,
        req: BuildRequest,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let context = tokio::task::spawn_blocking(move || read_context(reader))
            .await
            .map_err(|e| ApiError::internal("reading the context", e))?
            .map_err(ApiError::BadRequest)?;
        let df_path = clean(req.dockerfile.trim_start_matches('/'));
        let dockerfile = context.get(&df_path).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Cannot locate specified Dockerfile: {}",
                req.dockerfile
            ))
        })?;
        let parsed = parse(&dockerfile.data).map_err(|e| {
            ApiError::BadRequest(format!(
                "dockerfile parse error line {}: {}",
                e.line, e.reason
            ))
        })?;
        // The CLI sends the Dockerfile and .dockerignore even when .dockerignore names them;
        // dockerd then takes them out of the context, so that `COPY .` does not copy them.
        let mut context = context;
        if let Some(ignore) = context.get(".dockerignore") {
            if let Ok(d) = super::dockerignore::Dockerignore::parse(&ignore.data) {
                for name in [".dockerignore".to_owned(), df_path.clone()] {
                    if d.matches(&name) {
                        context.remove(&name);
                    }
                }
            }
        }
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let engine = self.clone();
        tokio::spawn(async move {
            let run = Run {
                engine,
                tx: tx.clone(),
                quiet: req.quiet,
                lease: format!(
                    "refengd-build-{}-{}",
                    std::process::id(),
                    SERIAL.fetch_add(1, Ordering::Relaxed)
                ),
                rm: req.rm,
                forcerm: req.forcerm,
                nocache: req.nocache,
                host_config: req.host_config.clone(),
                sources: std::sync::Mutex::new(Vec::new()),
            };
            let store = run.engine.store();
            let result = match store.lease(&run.lease, BUILD_LEASE_LIFE).await {
                Ok(()) => {
                    let r = run.build(context, parsed, req).await;
                    if let Err(e) = store.end_lease(&run.lease).await {
                        tracing::warn!(lease = %run.lease, error = %e, "lease not ended; it expires by itself");
                    }
                    r
                }
                Err(e) => Err(Failed(e.to_string())),
            };
            if let Err(f) = result {
                let detail = match f.code() {
                    Some(code) => json!({"code": code, "message": f.0}),
                    None => json!({"message": f.0}),
                };
                let _ = tx
                    .send(line(&json!({"errorDetail": detail, "error": f.0})))
                    .await;
            }
        });
        Ok(rx)
    }
}

impl Run {
    async fn build(
        &self,
        context: Context,
        parsed: refeng_spec::build::Dockerfile,
        req: BuildRequest,
    ) -> Result<(), Failed> {
        let source = Arc::new(StoreSource {
            engine: self.engine.clone(),
            handle: tokio::runtime::Handle::current(),
            found: std::sync::Mutex::new(HashMap::new()),
            pull: req.pull.then(|| Puller {
                tx: self.tx.clone(),
                credentials: req.credentials.clone(),
                done: std::sync::Mutex::new(std::collections::HashSet::new()),
            }),
        });
        self.find_sources(&req.cache_from).await;
        let s2 = source.clone();
        let options = req.options.clone();
        let planned = tokio::task::spawn_blocking(move || plan(&parsed, &options, &*s2)).await?;
        let planned = planned?;
        for w in &planned.warnings {
            self.say(&format!("[WARNING]: {w}\n")).await;
        }
        let total = planned.steps_total;
        let mut done: Vec<ImageState> = Vec::new();
        for stage in &planned.stages {
            let state = self.stage(stage, &done, &source, &context, total).await?;
            done.push(state);
        }
        let last = done
            .pop()
            .ok_or_else(|| Failed("the build has no stage".into()))?;
        if !planned.unused_build_args.is_empty() {
            self.say(&format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                planned.unused_build_args.join(" ")
            ))
            .await;
        }
        self.write_image(&last, Some(&req.tags)).await?;
        let _ = self.tx.send(line(&json!({"aux": {"ID": last.id}}))).await;
        if req.quiet {
            let _ = self
                .tx
                .send(line(&json!({"stream": format!("{}\n", last.id)})))
                .await;
            return Ok(());
        }
        self.say(&format!("Successfully built {}\n", short(&last.id)))
            .await;
        for t in &req.tags {
            self.say(&format!("Successfully tagged {}\n", familiar(t)))
                .await;
        }
        Ok(())
    }

    async fn stage(
        &self,
        stage: &StagePlan,
        done: &[ImageState],
        source: &StoreSource,
        context: &Context,
        total: usize,
    ) -> Result<ImageState, Failed> {
        let mut state = match &stage.base {
            Base::Scratch => ImageState::scratch(),
            Base::Stage(i) => done
                .get(*i)
                .cloned()
                .ok_or_else(|| Failed(format!("stage {i} is not built")))?,
            Base::Image { reference, id } => {
                let r = source
                    .found
                    .lock()
                    .ok()
                    .and_then(|m| m.get(id).cloned())
                    .ok_or_else(|| Failed(format!("image {reference} went away")))?;
                ImageState {
                    doc: r.config.clone(),
                    layers: r.layers.iter().map(|l| (l.clone(), None)).collect(),
                    id: r.id.clone(),
                }
            }
        };
        self.say(&format!(
            "Step {}/{total} : {}\n",
            stage.number,
            from_source(stage)
        ))
        .await;
        let triggers = stage.steps.iter().filter(|s| s.trigger).count();
        // dockerd prints the base's id unless triggers follow; then the id after the last.
        if triggers > 0 {
            self.say(&format!(
                "# Executing {triggers} build trigger{}\n",
                if triggers == 1 { "" } else { "s" }
            ))
            .await;
        } else if !state.id.is_empty() {
            self.say(&format!(" ---> {}\n", short(&state.id))).await;
        }
        for (i, step) in stage.steps.iter().enumerate() {
            if !step.trigger {
                self.say(&format!("Step {}/{total} : {}\n", step.number, step.source))
                    .await;
            }
            self.step(step, &mut state, context, done).await?;
            let more_triggers = step.trigger && stage.steps.get(i + 1).is_some_and(|n| n.trigger);
            if !more_triggers {
                self.say(&format!(" ---> {}\n", short(&state.id))).await;
            }
        }
        if state.id.is_empty() {
            // `FROM scratch` alone: dockerd refuses to make an image of nothing.
            return Err(Failed(
                "No image was generated. Is your Dockerfile empty?".into(),
            ));
        }
        Ok(state)
    }

    /// One step, from the cache when an image of the same parent and container config is
    /// there (the classic builder's rule); a step that ran is stored as an intermediate image
    /// and remembered.
    async fn step(
        &self,
        step: &Step,
        state: &mut ImageState,
        context: &Context,
        done: &[ImageState],
    ) -> Result<(), Failed> {
        let parent = state.id.clone();
        if !matches!(step.work, Work::Copy(_))
            && self
                .cached(
                    &parent,
                    &step.cache.container_config,
                    &step.cache.created_by.text(""),
                    state,
                )
                .await?
        {
            return Ok(());
        }
        let Some(container) = self.work(step, state, context, done, &parent).await? else {
            return Ok(());
        };
        let manifest = self.write_image(state, Some(&[])).await?;
        self.engine.set_parent(&state.id, &parent).await?;
        Ok(cache::remember(&self.engine, &parent, &container, &state.id, &manifest).await?)
    }

    /// Whether the cache has the step; if so `state` becomes its image. The local cache first
    /// (while `cachefrom` images are given, only an image on the way to one of them counts),
    /// then the sources' history (`created_by` is what the step's history entry says).
    async fn cached(
        &self,
        parent: &str,
        container: &ImageConfig,
        created_by: &str,
        state: &mut ImageState,
    ) -> Result<bool, Failed> {
        if self.nocache {
            return Ok(false);
        }
        let sources = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some((id, manifest)) = cache::lookup(&self.engine, parent, container).await? {
            // The image is read from its manifest rather than looked up among all images: a
            // warm build asks once per step.
            if let Some(found) = self.image_of(&id, &manifest).await {
                if sources.is_empty()
                    || sources
                        .iter()
                        .any(|s| cache::continues(&s.doc, Some(&found.doc)))
                {
                    *state = found;
                    self.say(" ---> Using cache\n").await;
                    return Ok(true);
                }
            }
        }
        let parent_doc = (!state.id.is_empty()).then_some(&state.doc);
        let next = parent_doc.map_or(0, |d| d["history"].as_array().map_or(0, Vec::len));
        let Some(target) = sources.into_iter().find(|s| {
            cache::continues(&s.doc, parent_doc)
                && cache::created_by(&s.doc, next) == Some(created_by)
        }) else {
            return Ok(false);
        };
        let last = target.doc["history"].as_array().map_or(0, Vec::len) == next + 1;
        if last {
            *state = ImageState {
                doc: target.doc.clone(),
                layers: target.layers.iter().map(|l| (l.clone(), None)).collect(),
                id: target.id.clone(),
            };
            self.engine.set_parent(&state.id, parent).await?;
        } else {
            let doc = cache::restored(parent_doc, &target.doc, container);
            let mut layers = if parent_doc.is_some() {
                state.layers.clone()
            } else {
                Vec::new()
            };
            if let Some(l) = cache::layer_of_history(&target.doc, next) {
                let desc = target.layers.get(l).cloned().ok_or_else(|| {
                    Failed(format!("cache-from image {} lacks layer {l}", target.id))
                })?;
                layers.push((desc, None));
            }
            let id = Digest::sha256(&serde_json::to_vec(&doc)?).to_string();
            let restored = ImageState { doc, layers, id };
            self.write_image(&restored, Some(&[])).await?;
            *state = restored;
            self.engine.set_parent(&state.id, parent).await?;
            if let Ok(mut s) = self.sources.lock() {
                *s = vec![target];
            }
        }
        self.say(" ---> Using cache\n").await;
        Ok(true)
    }

    /// Looks up `cachefrom`'s images; one that is not there is skipped, as dockerd skips it
    /// (with a line in its log).
    async fn find_sources(&self, refs: &[String]) {
        let mut found = Vec::new();
        for r in refs {
            match self.engine.find(r).await {
                Ok((image, _)) => found.push(Arc::new(cache::Source {
                    id: image.id.clone(),
                    doc: image.config.clone(),
                    layers: image.layers.clone(),
                })),
                Err(e) => tracing::warn!(image = %r, error = %e, "cache-from image skipped"),
            }
        }
        if let Ok(mut s) = self.sources.lock() {
            *s = found;
        }
    }

    /// The image of `manifest`, if containerd still has it whole and its config is `id`.
    async fn image_of(&self, id: &str, manifest: &str) -> Option<ImageState> {
        let store = self.engine.store();
        // Resolved before (by this build's FROM lookup): one question, whether the manifest is
        // still there; its labels hold its config and layers while it is.
        if let Some(r) = self.engine.known(manifest).filter(|r| r.id == id) {
            store.info(manifest).await.ok()??;
            return Some(ImageState {
                doc: r.config.clone(),
                layers: r.layers.iter().map(|l| (l.clone(), None)).collect(),
                id: r.id.clone(),
            });
        }
        let m: Value = serde_json::from_slice(&store.read(manifest).await.ok()?).ok()?;
        if m["config"]["digest"].as_str() != Some(id) {
            return None;
        }
        let doc: Value = serde_json::from_slice(&store.read(id).await.ok()?).ok()?;
        let mut layers = Vec::new();
        for l in m["layers"].as_array()? {
            let digest = l["digest"].as_str()?.to_owned();
            store.info(&digest).await.ok()??;
            layers.push((
                Descriptor {
                    media_type: l["mediaType"].as_str()?.to_owned(),
                    digest,
                    size: l["size"].as_i64()?,
                    annotations: HashMap::new(),
                },
                None,
            ));
        }
        Some(ImageState {
            doc,
            layers,
            id: id.to_owned(),
        })
    }

    /// Does a step's work; the container config it committed with, `None` when the cache had
    /// it.
    async fn work(
        &self,
        step: &Step,
        state: &mut ImageState,
        context: &Context,
        done: &[ImageState],
        parent: &str,
    ) -> Result<Option<ImageConfig>, Failed> {
        let same = || Some(step.cache.container_config.clone());
        match &step.work {
            Work::Commit => {
                let by = step.cache.created_by.text("");
                state.commit(&step.config, &step.cache.container_config, &by, None);
                Ok(same())
            }
            Work::Run(r) => self.run(step, r, state).await.map(|()| same()),
            Work::Workdir { path } => {
                self.write_image(state, None).await?;
                let chain = state.top_chain();
                let key = format!("build-workdir-{}-{}", std::process::id(), short(&state.id));
                let mut snapshots = self.snapshots();
                let mounts = snapshots
                    .prepare(self.leased(PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent: chain.clone(),
                        labels: HashMap::new(),
                    }))
                    .await
                    .map_err(|s| {
                        Failed(format!("preparing the WORKDIR snapshot: {}", s.message()))
                    })?
                    .into_inner()
                    .mounts;
                let made = self.mkdir_in(&mounts, path).await;
                let layer = match made {
                    Ok(()) => self.diff(&chain, mounts).await,
                    Err(e) => Err(e),
                };
                let _ = self
                    .snapshots()
                    .remove(self.engine.backend.request(RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key,
                    }))
                    .await;
                let by = step.cache.created_by.text("");
                state.commit_layer(&step.config, &step.cache.container_config, &by, layer?);
                Ok(same())
            }
            Work::Copy(c) => {
                let written_dir =
                    c.dest_path.ends_with('/') || c.dest_path.ends_with("/.") || c.dest == ".";
                let from_image;
                let sources = match &c.from {
                    CopyFrom::Context => context,
                    CopyFrom::Stage(i) => {
                        let st = done
                            .get(*i)
                            .ok_or_else(|| Failed(format!("stage {i} is not built")))?;
                        from_image = self.tree_of(st, &c.sources).await?;
                        &from_image
                    }
                    CopyFrom::Image(name) => {
                        let (r, _) = self.engine.find(name).await?;
                        let st = ImageState {
                            doc: r.config.clone(),
                            layers: r.layers.iter().map(|l| (l.clone(), None)).collect(),
                            id: r.id.clone(),
                        };
                        from_image = self.tree_of(&st, &c.sources).await?;
                        &from_image
                    }
                };
                let failed = |e| {
                    Failed(format!(
                        "{} failed: {e}",
                        if c.add { "ADD" } else { "COPY" }
                    ))
                };
                let named;
                let c = match c.chown.as_deref() {
                    Some(spec) if !spec.split(':').all(|p| p.parse::<u64>().is_ok()) => {
                        named = CopyWork {
                            chown: Some(self.chown_ids(state, spec).await?),
                            ..c.clone()
                        };
                        &named
                    }
                    _ => c,
                };
                // The hash (and so the cache key) is taken with the destination as written:
                // whether it is a directory already follows from the parent, which the key
                // holds too, so the parent's filesystem is looked at only on a miss.
                let urls: Vec<String> = c
                    .sources
                    .iter()
                    .filter(|s| c.add && refeng_spec::build::fold::is_url(s))
                    .cloned()
                    .collect();
                let downloads = if urls.is_empty() {
                    Vec::new()
                } else {
                    tokio::task::spawn_blocking(move || {
                        urls.iter()
                            .map(|u| download(u))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await?
                    .map_err(failed)?
                };
                let (tar, hash) =
                    copy_layer(c, written_dir, sources, &downloads).map_err(failed)?;
                let by = step.cache.created_by.text(&hash);
                let mut container = step.cache.container_config.clone();
                if let Some(last) = container.cmd.as_mut().and_then(|c| c.last_mut()) {
                    last.clone_from(&by);
                }
                if self.cached(parent, &container, &by, state).await? {
                    return Ok(None);
                }
                let tar = if !written_dir && self.is_dir_in(state, &c.dest_path).await? {
                    copy_layer(c, true, sources, &downloads).map_err(failed)?.0
                } else {
                    tar
                };
                state.commit(&step.config, &container, &by, Some(tar));
                Ok(Some(container))
            }
        }
    }

    /// A `RUN`: a container of the parent image (stored as an intermediate image), its output
    /// in the stream, its changes committed as a layer.
    async fn run(&self, step: &Step, r: &RunWork, state: &mut ImageState) -> Result<(), Failed> {
        if state.id.is_empty() {
            return Err(Failed(
                "Dockerfile: RUN: a RUN needs a base image: FROM scratch has no files to run"
                    .into(),
            ));
        }
        self.write_image(state, Some(&[])).await?;
        let body = json!({
            "Image": state.id,
            "Cmd": r.argv,
            "Entrypoint": [],
            "Env": r.env,
            "User": r.user,
            "WorkingDir": r.working_dir,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": self.host_config,
        });
        let created = self
            .engine
            .container_create("", "", &serde_json::to_vec(&body)?)
            .await?;
        let id = created
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.say(&format!(" ---> Running in {}\n", short(&id)))
            .await;
        let outcome = self.run_container(&id).await;
        let failed = !matches!(outcome, Ok((0, _)));
        if self.forcerm || (self.rm && !failed) {
            // With its anonymous volumes (an image's VOLUME), as dockerd's builder removes it.
            if let Err(e) = self.engine.container_remove(&id, true, true).await {
                tracing::warn!(%id, error = %e, "intermediate container not removed");
            } else {
                self.say(&format!("Removing intermediate container {}\n", short(&id)))
                    .await;
            }
        }
        let (code, layer) = outcome?;
        if code != 0 {
            return Err(Failed(format!(
                "The command '{}' returned a non-zero code: {code}",
                r.argv.join(" ")
            )));
        }
        let by = step.cache.created_by.text("");
        let layer = layer.ok_or_else(|| Failed("the RUN made no layer".into()))?;
        state.commit_layer(&step.config, &step.cache.container_config, &by, layer);
        Ok(())
    }

    /// Starts the container, forwards its output, and on success diffs its snapshot.
    async fn run_container(&self, id: &str) -> Result<(u32, Option<Descriptor>), Failed> {
        let wait = self.engine.container_wait(id, "next-exit")?;
        self.engine.container_start(id).await?;
        let log = self.engine.containers.log_path(id);
        let mut offset = 0usize;
        let mut wait = wait;
        let exit = loop {
            tokio::select! {
                v = &mut wait => break v.map_err(|_| Failed("the RUN container's wait ended".into()))?,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    offset = self.forward_log(&log, offset).await;
                }
            }
        };
        // The engine's log task may still be writing what the process wrote last: read
        // until the log has stopped growing for 100 ms (at most 2 s).
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let next = self.forward_log(&log, offset).await;
            if next == offset {
                break;
            }
            offset = next;
        }
        let code = exit
            .get("StatusCode")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(u32::MAX);
        if code != 0 {
            return Ok((code, None));
        }
        Ok((0, Some(self.container_layer(id).await?)))
    }

    /// Container `id`'s changes as an uncompressed layer in containerd: Diff.Diff of its
    /// writable layer against its parent, the init layer, which holds the mount points, so
    /// the layer is right as it comes. A container made before init layers (its record
    /// survives an upgrade) has its image as the parent and the mount points in its writable
    /// layer: its layer is rewritten without them.
    async fn container_layer(&self, id: &str) -> Result<Descriptor, Failed> {
        let ctd = &self.engine.containers.ctd;
        let parent = ctd.parent_of(id).await?;
        let mounts = ctd.mounts(id).await?;
        let layer = self.diff(&parent, mounts).await?;
        if init_layer::is_init(&parent) {
            Ok(layer)
        } else {
            self.strip_mount_points(layer).await
        }
    }

    /// Sends the json-file log's lines from `offset` on; the new offset.
    async fn forward_log(&self, path: &std::path::Path, offset: usize) -> usize {
        let Ok(bytes) = tokio::fs::read(path).await else {
            return offset;
        };
        let Some(new) = bytes.get(offset..) else {
            return offset;
        };
        let complete = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for l in new[..complete].split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<Value>(l) {
                if let Some(text) = v.get("log").and_then(Value::as_str) {
                    if v.get("stream").and_then(Value::as_str) == Some("stderr") {
                        // dockerd's builder colours what a RUN writes to stderr.
                        self.say(&format!("\u{1b}[91m{text}\u{1b}[0m")).await;
                    } else {
                        self.say(text).await;
                    }
                }
            }
        }
        offset + complete
    }

    fn snapshots(&self) -> SnapshotsClient<tonic::transport::Channel> {
        SnapshotsClient::new(self.engine.backend.channel())
    }

    fn leased<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = self.engine.backend.request(msg);
        if let Ok(l) = self.lease.parse() {
            r.metadata_mut().insert("containerd-lease", l);
        }
        r
    }

    /// The layer Diff.Diff made, without the mount points' files (see
    /// [`without_mount_points`]): streamed from containerd into a staging file, filtered into
    /// another, which is written back under the build's lease only when it differs. Nothing is
    /// held in memory whole, so a change of any size commits.
    async fn strip_mount_points(&self, layer: Descriptor) -> Result<Descriptor, Failed> {
        let staging = Staging::new(&self.engine, "layer");
        std::fs::create_dir_all(staging.dir())?;
        let (src, dst) = (staging.dir().join("diff"), staging.dir().join("rewritten"));
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&src)?);
        self.engine
            .store()
            .read_with(&layer.digest, |b| f.write_all(b))
            .await?;
        f.flush()?;
        drop(f);
        let (s, d) = (src.clone(), dst.clone());
        let rewritten = tokio::task::spawn_blocking(move || without_mount_points(&s, &d))
            .await
            .map_err(|e| Failed(format!("rewriting the layer: {e}")))??;
        let Some((digest, size)) = rewritten else {
            return Ok(layer);
        };
        let store = self.engine.store();
        if store.info(&digest).await?.is_none() {
            let file = tokio::fs::File::open(&dst).await?;
            store
                .write(&digest, size, file, HashMap::new(), &self.lease)
                .await?;
        }
        drop(staging);
        Ok(Descriptor {
            media_type: layer.media_type,
            digest,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        })
    }

    /// Diff.Diff of `right` against a view of `parent_chain` (empty: against nothing): the
    /// changes as an uncompressed layer in containerd, under the build's lease.
    async fn diff(&self, parent_chain: &str, right: Vec<Mount>) -> Result<Descriptor, Failed> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let view = format!(
            "build-view-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let left = if parent_chain.is_empty() {
            Vec::new()
        } else {
            self.snapshots()
                .view(self.leased(ViewSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: view.clone(),
                    parent: parent_chain.into(),
                    labels: HashMap::new(),
                }))
                .await
                .map_err(|s| Failed(format!("a view of the parent: {}", s.message())))?
                .into_inner()
                .mounts
        };
        let result = DiffClient::new(self.engine.backend.channel())
            .diff(self.leased(DiffRequest {
                left,
                right,
                media_type: format::OCI_LAYER.into(),
                r#ref: view.clone(),
                ..Default::default()
            }))
            .await;
        if !parent_chain.is_empty() {
            let _ = self
                .snapshots()
                .remove(self.engine.backend.request(RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: view,
                }))
                .await;
        }
        result
            .map_err(|s| Failed(format!("committing the changes: {}", s.message())))?
            .into_inner()
            .diff
            .ok_or_else(|| Failed("committing the changes: containerd returned no layer".into()))
    }

    /// `--chown=user[:group]` with names, as numeric `uid:gid` from the parent's `/etc/passwd`
    /// and `/etc/group` (the group defaults to the user's string, as the classic builder reads
    /// it).
    async fn chown_ids(&self, state: &ImageState, spec: &str) -> Result<String, Failed> {
        let (user, group) = spec.split_once(':').unwrap_or((spec, spec));
        let files = self.read_in(state, &["etc/passwd", "etc/group"]).await?;
        let lookup = |text: &str, name: &str, what: &str| -> Result<u64, Failed> {
            if let Ok(n) = name.parse::<u64>() {
                return Ok(n);
            }
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(2).and_then(|id| id.parse::<u64>().ok()))
                .ok_or_else(|| {
                    Failed(format!(
                        "unable to convert uid/gid chown string to host mapping: can't find {what} for {name}"
                    ))
                })
        };
        let uid = lookup(&files[0], user, "uid")?;
        let gid = lookup(&files[1], group, "gid")?;
        Ok(format!("{uid}:{gid}"))
    }

    /// The text of `paths` in `state`'s filesystem (a missing file reads as empty).
    async fn read_in(&self, state: &ImageState, paths: &[&str]) -> Result<Vec<String>, Failed> {
        if state.layers.is_empty() {
            return Ok(vec![String::new(); paths.len()]);
        }
        self.write_image(state, None).await?;
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let key = format!(
            "build-read-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let mounts = self
            .snapshots()
            .view(self.leased(ViewSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: state.top_chain(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(|s| Failed(format!("a view of the parent: {}", s.message())))?
            .into_inner()
            .mounts;
        let scratch = self.engine.config().data_root.join("tmp").join(&key);
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<String>, Failed> {
            std::fs::create_dir_all(&scratch)?;
            let r = (|| -> Result<Vec<String>, Failed> {
                let _guard = mount_one(&mounts, &scratch)?;
                Ok(paths
                    .iter()
                    .map(|p| {
                        resolve_in(&scratch, p)
                            .and_then(|real| std::fs::read_to_string(real).ok())
                            .unwrap_or_default()
                    })
                    .collect())
            })();
            let _ = std::fs::remove_dir(&scratch);
            r
        })
        .await;
        let _ = self
            .snapshots()
            .remove(self.engine.backend.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key,
            }))
            .await;
        read?
    }

    /// Runs `f` on a read-only view of `state`'s filesystem mounted at a scratch directory
    /// (`what` names the view in errors); the mount, the directory and the view go afterwards.
    async fn with_view<T: Send + 'static>(
        &self,
        state: &ImageState,
        what: &str,
        f: impl FnOnce(&std::path::Path) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, Failed> {
        self.write_image(state, None).await?;
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let key = format!(
            "build-view-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let mounts = self
            .snapshots()
            .view(self.leased(ViewSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: state.top_chain(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(|s| Failed(format!("a view of {what}: {}", s.message())))?
            .into_inner()
            .mounts;
        let scratch = self.engine.config().data_root.join("tmp").join(&key);
        let done = tokio::task::spawn_blocking(move || -> Result<T, Failed> {
            std::fs::create_dir_all(&scratch)?;
            let r = (|| -> Result<T, Failed> {
                let _guard = mount_one(&mounts, &scratch)?;
                f(&scratch)
            })();
            let _ = std::fs::remove_dir(&scratch);
            r
        })
        .await;
        let _ = self
            .snapshots()
            .remove(self.engine.backend.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key,
            }))
            .await;
        done?
    }

    /// Whether `path` is a directory in `state`'s filesystem (symlinks followed inside it), as
    /// the classic builder asks of the container before a copy.
    async fn is_dir_in(&self, state: &ImageState, path: &str) -> Result<bool, Failed> {
        if state.layers.is_empty() {
            return Ok(false);
        }
        let path = path.to_owned();
        self.with_view(state, "the parent", move |root| {
            Ok(resolve_in(root, &path).is_some_and(|p| p.is_dir()))
        })
        .await
    }

    /// The files of `state`'s filesystem that `sources` (globs, absolute in it) name, with
    /// everything below them, read from a view of its snapshot: what `COPY --from` copies.
    async fn tree_of(&self, state: &ImageState, sources: &[String]) -> Result<Context, Failed> {
        if state.layers.is_empty() {
            return Ok(Context::new());
        }
        let sources = sources.to_vec();
        self.with_view(state, "the source image", move |root| {
            let mut out = Context::new();
            for s in &sources {
                for key in expand(root, s)? {
                    if let Some(real) = resolve_in(root, &key) {
                        read_tree(&real, &key, &mut out)?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Makes `path` (and its parents, 0755 root) in the snapshot `mounts`, as dockerd's
    /// `WORKDIR` does in the container's filesystem.
    async fn mkdir_in(&self, mounts: &[Mount], path: &str) -> Result<(), Failed> {
        let mounts = mounts.to_vec();
        let path = path.to_owned();
        let scratch = self
            .engine
            .config()
            .data_root
            .join("tmp")
            .join(format!("build-mkdir-{}", std::process::id()));
        tokio::task::spawn_blocking(move || -> Result<(), Failed> {
            std::fs::create_dir_all(&scratch)?;
            let result = (|| -> Result<(), Failed> {
                let [m] = mounts.as_slice() else {
                    return Err(Failed(format!("{} stacked mounts", mounts.len())));
                };
                let spec = MountSpec {
                    fs_type: if m.r#type == "rbind" {
                        "bind".into()
                    } else {
                        m.r#type.clone()
                    },
                    source: m.source.clone().into(),
                    options: m.options.clone(),
                };
                let _guard = spec.mount(&scratch)?;
                // Each existing component is resolved inside the snapshot, so that a symlink
                // (`/var/run -> /run`) never leads out of it.
                let mut prefix = String::new();
                for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
                    let parent = resolve_in(&scratch, &prefix).ok_or_else(|| {
                        Failed(format!("mkdir {path}: {prefix} does not resolve"))
                    })?;
                    prefix.push('/');
                    prefix.push_str(part);
                    if resolve_in(&scratch, &prefix).is_none() {
                        let made = parent.join(part);
                        std::fs::create_dir(&made)?;
                        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
                Ok(())
            })();
            let _ = std::fs::remove_dir(&scratch);
            result
        })
        .await?
    }

    /// Writes `state` into containerd as an image: blobs with their `gc.ref` labels,
    /// snapshots unpacked, named `tags` (none: a dangling image, as an intermediate is;
    /// `None`: not named at all, only its snapshots made).
    /// The manifest's digest.
    async fn write_image(
        &self,
        state: &ImageState,
        tags: Option<&[String]>,
    ) -> Result<String, Failed> {
        let staging = Staging::new(&self.engine, "build");
        std::fs::create_dir_all(staging.dir())?;
        let r = self.write_image_in(state, tags, &staging).await;
        drop(staging);
        r
    }

    async fn write_image_in(
        &self,
        state: &ImageState,
        tags: Option<&[String]>,
        staging: &Staging,
    ) -> Result<String, Failed> {
        let lease = self.lease.as_str();
        let store = self.engine.store();
        let dir = staging.dir().to_path_buf();
        let put = |name: &str, bytes: &[u8]| -> Result<std::path::PathBuf, Failed> {
            let p = dir.join(name);
            let mut f = std::fs::File::create(&p)?;
            f.write_all(bytes)?;
            Ok(p)
        };
        let diff_ids: Vec<String> = state.doc["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut chains = Vec::new();
        for d in &diff_ids {
            let next = match chains.last() {
                None => d.clone(),
                Some(prev) => Digest::sha256(format!("{prev} {d}").as_bytes()).to_string(),
            };
            chains.push(next);
        }
        let mut config_bytes = serde_json::to_vec(&state.doc)?;
        if Digest::sha256(&config_bytes).to_string() != state.id {
            // An image made elsewhere (a base or a `cachefrom` image taken whole): its id names
            // the bytes its maker wrote, which this serialisation need not reproduce.
            let original = store.read(&state.id).await?;
            if Digest::sha256(&original).to_string() != state.id {
                return Err(Failed(format!(
                    "image {}: its config is not there",
                    state.id
                )));
            }
            config_bytes = original;
        }
        let config_digest = Digest::sha256(&config_bytes).to_string();
        let layers: Vec<Value> = state
            .layers
            .iter()
            .map(|(d, _)| json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size}))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format::OCI_MANIFEST,
            "config": {"mediaType": format::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)?;
        let manifest_digest = Digest::sha256(&manifest_bytes).to_string();
        // A warm build ends at the image its tags already name: nothing to write.
        if let Some(tags) = tags.filter(|t| !t.is_empty()) {
            let mut named = true;
            for t in tags {
                let at = store.image(t).await?.and_then(|i| i.target);
                if at.is_none_or(|d| d.digest != manifest_digest) {
                    named = false;
                    break;
                }
            }
            if named {
                return Ok(manifest_digest);
            }
        }
        for (i, (desc, blob)) in state.layers.iter().enumerate() {
            if let Some(tar) = blob {
                if store.info(&desc.digest).await?.is_none() {
                    let p = put(&format!("layer{i}"), tar)?;
                    let f = tokio::fs::File::open(&p).await?;
                    store
                        .write(&desc.digest, tar.len() as u64, f, HashMap::new(), lease)
                        .await?;
                }
            }
        }
        let mut config_labels = HashMap::new();
        if let Some(top) = chains.last() {
            config_labels.insert(
                format!(
                    "containerd.io/gc.ref.snapshot.{}",
                    crate::engine::store::SNAPSHOTTER
                ),
                top.clone(),
            );
        }
        let p = put("config", &config_bytes)?;
        if store.info(&config_digest).await?.is_none() {
            store
                .write(
                    &config_digest,
                    config_bytes.len() as u64,
                    tokio::fs::File::open(&p).await?,
                    config_labels,
                    lease,
                )
                .await?;
        } else if !config_labels.is_empty() {
            store.add_labels(&config_digest, config_labels).await?;
        }
        let mut labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            config_digest.clone(),
        )]);
        for (i, (d, _)) in state.layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                d.digest.clone(),
            );
        }
        let p = put("manifest", &manifest_bytes)?;
        if store.info(&manifest_digest).await?.is_none() {
            store
                .write(
                    &manifest_digest,
                    manifest_bytes.len() as u64,
                    tokio::fs::File::open(&p).await?,
                    labels,
                    lease,
                )
                .await?;
        }
        let mut parent = String::new();
        for ((desc, _), (diff, chain)) in state.layers.iter().zip(diff_ids.iter().zip(&chains)) {
            if !store.has_snapshot(chain).await? {
                store
                    .unpack(chain, &parent, desc.clone(), diff, lease)
                    .await?;
            }
            parent.clone_from(chain);
        }
        let target = Descriptor {
            media_type: format::OCI_MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: i64::try_from(manifest_bytes.len()).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        };
        let Some(tags) = tags else {
            return Ok(manifest_digest);
        };
        let names: Vec<String> = if tags.is_empty() {
            vec![format!("{DANGLING}{manifest_digest}")]
        } else {
            tags.to_vec()
        };
        for name in &names {
            let old = store.image(name).await?.and_then(|i| i.target);
            store.put_image(name, target.clone()).await?;
            if old.as_ref().is_some_and(|o| o.digest != target.digest) {
                self.engine.keep_dangling(old, name).await?;
            }
        }
        if !tags.is_empty() {
            self.engine.drop_dangling(&target.digest).await?;
        }
        Ok(manifest_digest)
    }
}

/// The paths (relative to `root`) that the glob `pattern` names in the tree at `root`.
fn expand(root: &std::path::Path, pattern: &str) -> Result<Vec<String>, Failed> {
    let cleaned = clean(pattern.trim_start_matches('/'));
    let mut at = vec![String::new()];
    for comp in cleaned.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for base in &at {
            let Some(dir) = resolve_in(root, base) else {
                continue;
            };
            let join = |name: &str| {
                if base.is_empty() {
                    name.to_owned()
                } else {
                    format!("{base}/{name}")
                }
            };
            if comp.contains(['*', '?', '[', '\\']) {
                let re = glob_regex(comp).map_err(Failed)?;
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| re.is_match(n))
                    .collect();
                names.sort();
                next.extend(names.iter().map(|n| join(n)));
            } else if std::fs::symlink_metadata(dir.join(comp)).is_ok() {
                next.push(join(comp));
            }
        }
        at = next;
    }
    Ok(at)
}

/// Reads `real` (and below it, links not followed) into `out` under `key`.
fn read_tree(real: &std::path::Path, key: &str, out: &mut Context) -> Result<(), Failed> {
    let meta = std::fs::symlink_metadata(real)?;
    let entry = Entry::from_metadata(key, real, &meta)?;
    let Some(mut entry) =
        entry.filter(|e| matches!(e.kind, Kind::Directory | Kind::Symlink | Kind::File))
    else {
        return Err(Failed(format!(
            "{key}: copying a device, socket or FIFO is not supported by refengd's builder"
        )));
    };
    let kind = entry.kind;
    let mut data = Vec::new();
    if kind == Kind::File {
        data = std::fs::read(real)?;
        entry.size = data.len() as u64;
    }
    if key.is_empty() {
        // The root itself: only what is below it.
    } else {
        out.insert(key.to_owned(), ContextFile { entry, data });
    }
    if kind == Kind::Directory {
        for e in std::fs::read_dir(real)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let sub = if key.is_empty() {
                name.clone()
            } else {
                format!("{key}/{name}")
            };
            read_tree(&real.join(&name), &sub, out)?;
        }
    }
    Ok(())
}

/// Mounts a snapshot's single mount on `target`.
fn mount_one(
    mounts: &[Mount],
    target: &std::path::Path,
) -> Result<crate::image::snapshot::MountGuard, Failed> {
    let [m] = mounts else {
        return Err(Failed(format!("{} stacked mounts", mounts.len())));
    };
    let spec = MountSpec {
        fs_type: if m.r#type == "rbind" {
            "bind".into()
        } else {
            m.r#type.clone()
        },
        source: m.source.clone().into(),
        options: m.options.clone(),
    };
    Ok(spec.mount(target)?)
}

/// `path` inside the tree at `root`, symlinks resolved within it (an absolute link target is
/// taken from `root`); `None` when a component is missing or the links loop.
fn resolve_in(root: &std::path::Path, path: &str) -> Option<std::path::PathBuf> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(String::from)
        .rev()
        .collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = parts.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&at);
        here.push(&part);
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                at.clear();
            }
            parts.extend(
                target
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(String::from)
                    .rev(),
            );
        } else {
            at.push(part);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&at);
    Some(out)
}

/// `FROM ...` as docker prints it in `Step N/M`.
fn from_source(stage: &StagePlan) -> String {
    let base = match &stage.base {
        Base::Scratch => "scratch".to_owned(),
        Base::Image { reference, .. } => reference.clone(),
        Base::Stage(i) => format!("{i}"),
    };
    match &stage.name {
        Some(n) => format!("FROM {base} AS {n}"),
        None => format!("FROM {base}"),
    }
}

/// The layer of a `COPY`/`ADD` from the context, and the sources' hash for CreatedBy.
fn copy_layer(
    c: &CopyWork,
    dest_dir: bool,
    context: &Context,
    downloads: &[Download],
) -> Result<(Vec<u8>, String), String> {
    let (uid, gid) = match &c.chown {
        None => (0, 0),
        Some(spec) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            match (u.parse::<u64>(), g.parse::<u64>()) {
                (Ok(u), Ok(g)) => (u, g),
                _ => return Err(format!("--chown={spec}: ids are not numeric")),
            }
        }
    };
    let mut matched: Vec<&str> = Vec::new();
    for src in &c.sources {
        if c.add && refeng_spec::build::fold::is_url(src) {
            // Downloaded before; written below.
            continue;
        }
        let cleaned = clean(src.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(format!(
                "forbidden path outside the build context: {src} ()"
            ));
        }
        if cleaned == "." {
            matched.push("");
            continue;
        }
        let re = glob_regex(&cleaned)?;
        let before = matched.len();
        for k in context.keys() {
            if re.is_match(k) {
                matched.push(k);
            }
        }
        if matched.len() == before {
            return Err(format!(
                "file not found in build context or excluded by .dockerignore: stat {cleaned}: file does not exist"
            ));
        }
    }
    let dest = c.dest_path.trim_start_matches('/');
    let dest = dest.strip_suffix("/.").unwrap_or(dest);
    let dest = if dest == "." { "" } else { dest };
    if matched.len() + downloads.len() > 1 && !c.dest_path.ends_with('/') {
        return Err(
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
                .into(),
        );
    }
    let dest = dest.trim_end_matches('/');
    let keep = c.preserve_ownership && c.chown.is_none();
    let mut out: BTreeMap<String, (Entry, Cow<'_, [u8]>)> = BTreeMap::new();
    let mut hasher_input = Vec::new();
    for src in &matched {
        let is_dir = src.is_empty()
            || context
                .get(*src)
                .is_some_and(|f| f.entry.kind == Kind::Directory);
        if is_dir {
            let prefix = if src.is_empty() {
                String::new()
            } else {
                format!("{src}/")
            };
            for (k, f) in context.range(prefix.clone()..) {
                let Some(rel) = k.strip_prefix(&prefix) else {
                    break;
                };
                let target = if dest.is_empty() {
                    rel.to_owned()
                } else {
                    format!("{dest}/{rel}")
                };
                add(&mut out, &target, &f.entry, &f.data, (uid, gid, keep))?;
                hasher_input.extend_from_slice(rel.as_bytes());
                hasher_input.extend_from_slice(&f.entry.mode.to_be_bytes());
                hasher_input.extend_from_slice(&f.entry.link);
                hasher_input.extend_from_slice(&f.data);
            }
        } else if let Some(f) = context
            .get(*src)
            .filter(|f| c.add && f.entry.kind == Kind::File && is_archive(&f.data))
        {
            // ADD of a local archive: its entries, unpacked below the destination.
            unpack(&mut out, dest, &f.data)?;
            hasher_input.extend_from_slice(dest.as_bytes());
            hasher_input.extend_from_slice(&f.data);
        } else if let Some(f) = context.get(*src) {
            let base = src.rsplit('/').next().unwrap_or(src);
            let target = if dest_dir || dest.is_empty() {
                if dest.is_empty() {
                    base.to_owned()
                } else {
                    format!("{dest}/{base}")
                }
            } else {
                dest.to_owned()
            };
            add(&mut out, &target, &f.entry, &f.data, (uid, gid, keep))?;
            // What the step writes: the name it gets, its mode, link and content.
            hasher_input.extend_from_slice(target.as_bytes());
            hasher_input.extend_from_slice(&f.entry.mode.to_be_bytes());
            hasher_input.extend_from_slice(&f.entry.link);
            hasher_input.extend_from_slice(&f.data);
        }
    }
    // ADD of URLs: each file as downloaded, 0600, with the server's Last-Modified.
    for d in downloads {
        let target = if dest_dir || dest.is_empty() || c.dest_path.ends_with('/') {
            if d.name.is_empty() {
                return Err(format!("cannot determine filename from url: {}", d.url));
            }
            if dest.is_empty() {
                d.name.clone()
            } else {
                format!("{dest}/{}", d.name)
            }
        } else {
            dest.to_owned()
        };
        let mut e = Entry::new(target.as_bytes().to_vec(), Kind::File);
        e.mode = 0o600;
        e.size = d.data.len() as u64;
        e.mtime = d.mtime;
        add(&mut out, &target, &e, &d.data, (uid, gid, false))?;
        hasher_input.extend_from_slice(target.as_bytes());
        hasher_input.extend_from_slice(&d.data);
    }
    // Parent directories the copy creates: 0755, owned as the copy is.
    let paths: Vec<String> = out.keys().cloned().collect();
    for p in paths {
        let mut at = p.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            out.entry(parent.to_owned()).or_insert_with(|| {
                let mut e = Entry::new(parent.as_bytes().to_vec(), Kind::Directory);
                e.uid = uid;
                e.gid = gid;
                (e, Cow::Borrowed(&[][..]))
            });
            at = parent;
        }
    }
    let mut b = Builder::new(Vec::new());
    for (path, (entry, data)) in &out {
        let mut e = entry.clone();
        e.path = if e.kind == Kind::Directory {
            format!("{path}/").into_bytes()
        } else {
            path.clone().into_bytes()
        };
        b.append(&e, &data[..]).map_err(|e| e.to_string())?;
    }
    let tar = b.finish().map_err(|e| e.to_string())?;
    let kind = if matched.len() + downloads.len() > 1 {
        "multi"
    } else if matched.first().is_some_and(|s| {
        s.is_empty()
            || context
                .get(*s)
                .is_some_and(|f| f.entry.kind == Kind::Directory)
    }) {
        "dir"
    } else {
        "file"
    };
    let hash = Digest::sha256(&hasher_input).to_string();
    Ok((
        tar,
        format!("{kind}:{}", hash.trim_start_matches("sha256:")),
    ))
}

/// An `ADD` URL's file.
#[derive(Debug)]
struct Download {
    url: String,
    /// The name it gets in a destination directory (from the URL's path, else from
    /// Content-Disposition; empty when neither names one).
    name: String,
    data: Vec<u8>,
    /// Last-Modified, in seconds since the epoch (0 without it, as dockerd).
    mtime: i64,
}

/// The most an `ADD` URL may hold.
const MAX_DOWNLOAD: u64 = 1 << 30;

/// Downloads `url` as dockerd's classic builder does for `ADD`.
fn download(url: &str) -> Result<Download, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(120)))
        .max_redirects(8)
        .build()
        .new_agent();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    let status = resp.status();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (last_modified, disposition) = (header("last-modified"), header("content-disposition"));
    if !status.is_success() {
        return Err(format!("failed to GET {url} with status {status}"));
    }
    let data = resp
        .into_body()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .read_to_vec()
        .map_err(|e| format!("failed to GET {url}: {e}"))?;
    let path = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut name = if path.is_empty() || path.ends_with('/') {
        String::new()
    } else {
        path.rsplit('/').next().unwrap_or("").to_owned()
    };
    if name.is_empty() {
        if let Some(d) = disposition {
            if let Some(f) = d
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("filename="))
                .next()
            {
                let f = f.trim_matches('"');
                if !f.ends_with('/') {
                    name = f.rsplit('/').next().unwrap_or("").to_owned();
                }
            }
        }
    }
    if name == "." || name == ".." {
        name.clear();
    }
    let mtime = last_modified
        .and_then(|t| chrono::DateTime::parse_from_rfc2822(&t).ok())
        .map_or(0, |t| t.timestamp());
    Ok(Download {
        url: url.to_owned(),
        name,
        data,
        mtime,
    })
}

fn add<'a>(
    out: &mut BTreeMap<String, (Entry, Cow<'a, [u8]>)>,
    target: &str,
    entry: &Entry,
    data: &'a [u8],
    (uid, gid, keep): (u64, u64, bool),
) -> Result<(), String> {
    if target.is_empty() {
        return Ok(());
    }
    let mut e = entry.clone();
    if !keep {
        e.uid = uid;
        e.gid = gid;
    }
    out.insert(target.to_owned(), (e, Cow::Borrowed(data)));
    Ok(())
}

/// The most an `ADD` archive may unpack to.
const MAX_UNPACKED: u64 = 4 << 30;

/// A sink that fails past `left` bytes (an xz bomb stops there).
struct BoundedVec {
    buf: Vec<u8>,
    left: u64,
}

impl Write for BoundedVec {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len() as u64;
        if n > self.left {
            return Err(std::io::Error::other(format!(
                "the archive unpacks to more than {MAX_UNPACKED} bytes"
            )));
        }
        self.left -= n;
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The tar stream of an `ADD` archive: plain, gzip, zstd, bzip2 or xz, as dockerd's
/// `DecompressStream` reads them.
fn archive_reader(data: &[u8]) -> Result<Box<dyn Read + '_>, String> {
    if data.starts_with(b"BZh") {
        return Ok(Box::new(
            bzip2::read::MultiBzDecoder::new(data).take(MAX_UNPACKED),
        ));
    }
    if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let mut out = BoundedVec {
            buf: Vec::new(),
            left: MAX_UNPACKED,
        };
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out)
            .map_err(|e| format!("reading the xz archive: {e}"))?;
        return Ok(Box::new(std::io::Cursor::new(out.buf)));
    }
    let (_, plain) = decompress(data).map_err(|e| format!("reading the archive: {e}"))?;
    Ok(plain)
}

/// The entries of the archive `data` (plain tar, gzip, zstd, bzip2 or xz) below `dest`,
/// owners as archived.
fn unpack(
    out: &mut BTreeMap<String, (Entry, Cow<'_, [u8]>)>,
    dest: &str,
    data: &[u8],
) -> Result<(), String> {
    let plain = archive_reader(data)?;
    let mut r = Reader::new(plain, TarLimits::default());
    while let Some(mut e) = r
        .next_entry()
        .map_err(|e| format!("reading the archive: {e}"))?
    {
        let text = String::from_utf8_lossy(&e.path).into_owned();
        let path = clean(text.trim_start_matches('/'));
        if path == "." || path.is_empty() {
            continue;
        }
        if path == ".." || path.starts_with("../") {
            return Err(format!("archive entry {text:?} is outside the destination"));
        }
        let mut bytes = Vec::new();
        if e.kind == Kind::File {
            r.data()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading the archive: {e}"))?;
        }
        let target = if dest.is_empty() {
            path
        } else {
            format!("{dest}/{path}")
        };
        if e.kind == Kind::HardLink {
            let link = clean(String::from_utf8_lossy(&e.link).trim_start_matches('/'));
            e.link = if dest.is_empty() {
                link.into_bytes()
            } else {
                format!("{dest}/{link}").into_bytes()
            };
        }
        out.insert(target, (e, Cow::Owned(bytes)));
    }
    Ok(())
}

/// Whether `data` is what the classic builder's ADD would unpack: gzip, bzip2, xz or a tar.
fn is_archive(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
        || data.starts_with(b"BZh")
        || data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || data.get(257..262) == Some(b"ustar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_without_a_change_stays_out_of_the_image() {
        let layer = |digest: &str| Descriptor {
            media_type: format::OCI_LAYER.into(),
            digest: digest.into(),
            size: 1024,
            annotations: HashMap::new(),
        };
        let c = ImageConfig::default();
        let mut state = ImageState::scratch();
        state.commit_layer(&c, &c, "true", layer(EMPTY_LAYER));
        let changed = Digest::sha256(b"a change").to_string();
        state.commit_layer(&c, &c, "touch /x", layer(&changed));
        assert_eq!(state.doc["rootfs"]["diff_ids"], json!([changed]));
        assert_eq!(state.layers.len(), 1);
        let h = state.doc["history"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0]["empty_layer"], json!(true));
        assert!(h[1].get("empty_layer").is_none(), "{h:?}");
        // The empty layer's diff id is that of a tar of nothing.
        let tar = Builder::new(Vec::new()).finish().unwrap();
        assert_eq!(Digest::sha256(&tar).to_string(), EMPTY_LAYER);
    }

    #[test]
    fn globs_match_like_go_filepath_match() {
        let re = glob_regex("a*.txt").unwrap();
        assert!(re.is_match("ab.txt"));
        assert!(!re.is_match("a/b.txt"));
        let re = glob_regex("f[0-9]").unwrap();
        assert!(re.is_match("f3"));
        assert!(!re.is_match("fx"));
        assert!(glob_regex("x[").is_err());
    }

    #[test]
    fn unknown_and_unsupported_parameters_are_refused_by_name() {
        let e = BuildRequest::parse(Some("squash=1")).unwrap_err();
        assert!(e.to_string().contains("squash"), "{e}");
        let e = BuildRequest::parse(Some("platform=linux/s390x")).unwrap_err();
        assert!(e.to_string().contains("linux/s390x"), "{e}");
        let r = BuildRequest::parse(Some("t=a&t=b:2&q=1")).unwrap();
        assert_eq!(
            r.tags,
            ["docker.io/library/a:latest", "docker.io/library/b:2"]
        );
        assert!(r.quiet);
    }
}

/// What `POST /commit` asks for.
#[derive(Debug, Default, Clone)]
pub struct CommitRequest {
    /// The container.
    pub container: String,
    /// `repo[:tag]` as a full reference, or none for an untagged image.
    pub reference: Option<String>,
    /// The commit message.
    pub comment: String,
    /// The author.
    pub author: String,
    /// Dockerfile instructions applied to the config.
    pub changes: Vec<String>,
    /// Freeze the container while its changes are read.
    pub pause: bool,
}

impl Engine {
    /// `POST /commit`: the container's changes as a new layer over its image, with its config
    /// (and `changes` applied), as dockerd's commit makes it. The new image's id.
    ///
    /// # Errors
    /// 404 for the container, 400 for bad changes, 409 for a container being removed; the
    /// store's and containerd's failures.
    pub async fn commit(self: &Arc<Self>, req: CommitRequest) -> Result<String, ApiError> {
        let id = self.containers.find(&req.container)?;
        let (stored, status) = {
            let map = self.containers.lock();
            let e = map.get(&id).ok_or_else(|| {
                ApiError::NotFound(format!("No such container: {}", req.container))
            })?;
            (e.stored.clone(), e.lc.status())
        };
        if matches!(
            status,
            refeng_spec::engine::Status::Removing | refeng_spec::engine::Status::Dead
        ) {
            return Err(ApiError::Conflict(format!(
                "You cannot commit container {id} which is being removed"
            )));
        }
        // The config: the container's, with the changes applied as `docker import` applies them.
        let mut config = serde_json::to_value(&stored.config)
            .map_err(|e| ApiError::internal("the container's config", e))?;
        let obj = config
            .as_object_mut()
            .ok_or_else(|| ApiError::Internal("the container's config".into()))?;
        obj.insert("Image".into(), json!(stored.image_id));
        crate::engine::changes::apply(obj, &req.changes)?;
        let image_config: ImageConfig = serde_json::from_value(config.clone())
            .map_err(|e| ApiError::BadRequest(format!("the committed config: {e}")))?;
        let container_config: ImageConfig =
            serde_json::from_value(serde_json::to_value(&stored.config).unwrap_or_default())
                .unwrap_or_default();
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        // A commit has no stream to say anything on: what the build's steps would say is dropped.
        let (tx, _) = mpsc::channel::<Bytes>(1);
        let run = Run {
            engine: self.clone(),
            tx,
            quiet: true,
            lease: format!(
                "refengd-commit-{}-{}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            ),
            rm: false,
            forcerm: false,
            nocache: false,
            host_config: Value::Null,
            sources: std::sync::Mutex::new(Vec::new()),
        };
        let store = self.store();
        store
            .lease(&run.lease, BUILD_LEASE_LIFE)
            .await
            .map_err(|e| ApiError::internal("a lease for the commit", e))?;
        let paused = req.pause && status == refeng_spec::engine::Status::Running;
        if paused {
            self.containers.ctd.pause(&id).await?;
        }
        let made = run
            .commit_changes(&stored, &image_config, &container_config, &req)
            .await;
        if paused {
            if let Err(e) = self.containers.ctd.resume(&id).await {
                tracing::warn!(%id, error = %e, "the container stays paused after its commit");
            }
        }
        if let Err(e) = store.end_lease(&run.lease).await {
            tracing::warn!(lease = %run.lease, error = %e, "lease not ended; it expires by itself");
        }
        let image_id = made.map_err(|Failed(m)| ApiError::Internal(m))?;
        let mut attrs = BTreeMap::new();
        attrs.insert("comment".to_string(), req.comment.clone());
        attrs.insert("imageID".to_string(), image_id.clone());
        attrs.insert(
            "imageRef".to_string(),
            req.reference.as_deref().map(familiar).unwrap_or_default(),
        );
        self.container_event(&id, "commit", attrs);
        Ok(image_id)
    }
}

impl Run {
    async fn commit_changes(
        &self,
        stored: &crate::engine::containers::Stored,
        config: &ImageConfig,
        container: &ImageConfig,
        req: &CommitRequest,
    ) -> Result<String, Failed> {
        let (image, _) = self.engine.find(&stored.image_id).await?;
        let mut state = self
            .image_of(&image.id, &image.manifest)
            .await
            .ok_or_else(|| Failed(format!("the image {} of the container", image.id)))?;
        let made = self.container_layer(&stored.id).await?;
        let mut cmd = vec![stored.path.clone()];
        cmd.extend(stored.args.iter().cloned());
        state.commit_layer(config, container, &cmd.join(" "), made);
        if let Some(o) = state.doc.as_object_mut() {
            o.insert("container".into(), json!(stored.id));
            if !req.author.is_empty() {
                o.insert("author".into(), json!(req.author));
            }
            if !req.comment.is_empty() {
                o.insert("comment".into(), json!(req.comment));
            }
        }
        if let Some(h) = state.doc["history"]
            .as_array_mut()
            .and_then(|h| h.last_mut())
        {
            if !req.author.is_empty() {
                h["author"] = json!(req.author);
            }
            if !req.comment.is_empty() {
                h["comment"] = json!(req.comment);
            }
        }
        state.id = Digest::sha256(&serde_json::to_vec(&state.doc)?).to_string();
        let tags: Vec<String> = req.reference.iter().cloned().collect();
        self.write_image(&state, Some(&tags)).await?;
        Ok(state.id)
    }
}
