//! Pull: resolve a reference to a manifest (negotiating OCI and Docker media types), pick the
//! platform from an index, fetch the config, download layers several at once straight into
//! the content store (verified, resumed with `Range` after a cut, skipped when present) and
//! apply each layer to its snapshot as soon as it and the ones below it are in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ureq::http::{Method, StatusCode};

use super::client::{pull_scopes, Req};
use super::progress::{ProgressEvent, ProgressSink};
use super::{Client, Reference, RegistryError};
use crate::image::content::{ContentError, ContentStore, Writer};
use crate::image::digest::Digest;
use crate::image::format::{self, Document, FormatError};
use crate::image::layer::ApplyOptions;
use crate::image::snapshot::Snapshotter;
use crate::image::unpack::{self, LayerGate, Resolved, UnpackError};

/// Largest manifest or index accepted (containerd's and docker's limit).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Label recording where a blob was pulled from, by registry: the value lists repositories
/// (containerd's `containerd.io/distribution.source.<registry>`). Push uses it to mount.
pub const SOURCE_LABEL: &str = "containerd.io/distribution.source";
/// How often (in bytes) download progress is reported.
const PROGRESS_STEP: u64 = 512 << 10;

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The name it is stored under (the normalised reference).
    pub name: String,
    /// The manifest or index the name points at.
    pub target: Digest,
    /// The platform's manifest, config and layers.
    pub resolved: Resolved,
    /// The top chain id when layers were unpacked.
    pub top: Option<Digest>,
}

/// Whether a `Content-Type` names a manifest or index (schema1 included, to refuse it by name).
fn is_manifest_type(ct: &str) -> bool {
    [
        format::OCI_INDEX,
        format::DOCKER_MANIFEST_LIST,
        format::OCI_MANIFEST,
        format::DOCKER_MANIFEST,
    ]
    .contains(&ct)
        || format::DOCKER_SCHEMA1.contains(&ct)
}

/// Media types asked for, best first (distribution-spec: "Pulling manifests").
pub(crate) fn accept_header() -> String {
    [
        format::OCI_INDEX,
        format::DOCKER_MANIFEST_LIST,
        format::OCI_MANIFEST,
        format::DOCKER_MANIFEST,
    ]
    .join(", ")
}

impl Client {
    /// Pulls `r` into `content`, and unpacks it into `unpack_into` if given, reporting to
    /// `progress`. The image is named `r.to_string()` in the store.
    ///
    /// # Errors
    /// [`RegistryError`]: the registry's refusals in plain words, auth failures, digest
    /// mismatches, [`RegistryError::Schema1`], download failures after every retry.
    pub fn pull(
        &self,
        r: &Reference,
        content: &ContentStore,
        unpack_into: Option<(&Snapshotter, &ApplyOptions)>,
        progress: &dyn ProgressSink,
    ) -> Result<Pulled, RegistryError> {
        self.pull_with(r, content, unpack_into, progress, &|_| false)
    }

    /// [`Client::pull`] for a caller that keeps layers elsewhere too (refengd's staging store
    /// before containerd): a layer `elsewhere` says it has is reported `AlreadyExists` and not
    /// downloaded into `content`. Ignored when unpacking, which reads every layer from
    /// `content`.
    ///
    /// # Errors
    /// As [`Client::pull`].
    #[tracing::instrument(skip_all, fields(reference = %r))]
    pub fn pull_with(
        &self,
        r: &Reference,
        content: &ContentStore,
        unpack_into: Option<(&Snapshotter, &ApplyOptions)>,
        progress: &dyn ProgressSink,
        elsewhere: &dyn Fn(&Digest) -> bool,
    ) -> Result<Pulled, RegistryError> {
        let lease = content.temporary_lease("pull")?;
        let (bytes, declared, top_digest) = self.resolve_manifest(r, content)?;
        progress.report(ProgressEvent::Resolved {
            reference: r.to_string(),
            digest: top_digest.clone(),
        });
        let mut fetched: Vec<Digest> = vec![top_digest.clone()];
        lease.add(Some(&top_digest), None)?;
        content.ingest(
            bytes.as_slice(),
            Some(&top_digest),
            Some(bytes.len() as u64),
        )?;
        let format_err = |source: FormatError| match source {
            FormatError::Schema1 => RegistryError::Schema1 {
                reference: r.to_string(),
            },
            source => RegistryError::Format {
                reference: r.to_string(),
                source,
            },
        };
        // Walk indexes down to the platform's manifest.
        // Some registries (and storage behind them) label manifests `application/json` or
        // `text/plain`: only a manifest type is taken as a declaration, else the document's own
        // `mediaType` and shape decide (as containerd does).
        let declared = declared.filter(|ct| is_manifest_type(ct));
        let mut doc = format::parse_document(&bytes, declared.as_deref()).map_err(format_err)?;
        let mut depth = 0;
        let manifest = loop {
            match doc {
                Document::Manifest(m) => break m,
                Document::Index(i) => {
                    depth += 1;
                    if depth > 3 {
                        return Err(RegistryError::Unpack(UnpackError::TooDeep(3)));
                    }
                    let d =
                        format::select_platform(&i, &self.config.platform).map_err(format_err)?;
                    let digest = format::check_descriptor(d).map_err(format_err)?;
                    let declared = d.media_type().to_string();
                    let (b, ct, got) = if content.contains(&digest) {
                        (content.read_small(&digest)?, None, digest.clone())
                    } else {
                        self.fetch_manifest(r, &digest.to_string())?
                    };
                    if got != digest {
                        return Err(RegistryError::DigestMismatch {
                            registry: r.registry.clone(),
                            what: "manifest".into(),
                            expected: digest,
                            actual: got,
                        });
                    }
                    if ct.as_deref().is_some_and(|c| c != declared) {
                        tracing::debug!(?ct, %declared, "manifest content type differs from its descriptor");
                    }
                    lease.add(Some(&digest), None)?;
                    content.ingest(b.as_slice(), Some(&digest), Some(b.len() as u64))?;
                    fetched.push(digest);
                    doc = format::parse_document(&b, Some(&declared)).map_err(format_err)?;
                }
            }
        };
        let config = format::check_descriptor(manifest.config()).map_err(format_err)?;
        lease.add(Some(&config), None)?;
        let stop = AtomicBool::new(false);
        self.fetch_blob(r, content, &config, manifest.config().size(), None, &stop)?;
        fetched.push(config);
        // Resolving labels the walk for GC and checks the config against the layers.
        let resolved = unpack::resolve(content, &top_digest, &self.config.platform)?;
        let sizes: BTreeMap<Digest, u64> = manifest
            .layers()
            .iter()
            .filter_map(|d| format::check_descriptor(d).ok().map(|g| (g, d.size())))
            .collect();
        let mut queue = VecDeque::new();
        let mut state = BTreeMap::new();
        for l in &resolved.layers {
            lease.add(Some(l), None)?;
            if state.contains_key(l) {
                continue;
            }
            if content.contains(l) {
                progress.report(ProgressEvent::AlreadyExists { id: l.clone() });
                state.insert(l.clone(), LayerState::Done);
            } else if unpack_into.is_none() && elsewhere(l) {
                progress.report(ProgressEvent::AlreadyExists { id: l.clone() });
                state.insert(l.clone(), LayerState::Done);
                // Not in `content`: nothing to label there.
                continue;
            } else {
                progress.report(ProgressEvent::Waiting { id: l.clone() });
                state.insert(l.clone(), LayerState::Pending);
                queue.push_back(l.clone());
            }
            fetched.push(l.clone());
        }
        let shared = Shared {
            queue: Mutex::new(queue),
            state: Mutex::new(state),
            changed: Condvar::new(),
            failure: Mutex::new(None),
            stop,
        };
        let workers = self.config.max_concurrent_downloads.max(1).min(
            shared
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
        );
        let top = std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| self.download_worker(r, content, &sizes, &shared, progress));
            }
            let out = match unpack_into {
                Some((snapshots, opts)) => {
                    let mut gate = Gate {
                        shared: &shared,
                        layers: &resolved.layers,
                        progress,
                    };
                    unpack::unpack_gated(content, snapshots, &resolved, opts, &mut gate).map(Some)
                }
                None => Ok(None),
            };
            if out.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            out
        });
        if let Some(e) = shared
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let top = top?.flatten();
        // Remember the source for cross-repository mounts when pushing.
        record_source(content, &fetched, &r.registry, &r.repository)?;
        let name = r.to_string();
        content.set_reference(&name, &top_digest)?;
        Ok(Pulled {
            name,
            target: top_digest,
            resolved,
            top,
        })
    }

    /// The manifest or index `r` names: from the store when it is already there (by digest,
    /// or by the digest a `HEAD` of the tag answers, as docker does: Docker Hub does not count
    /// `HEAD`s against pull limits), else fetched.
    fn resolve_manifest(
        &self,
        r: &Reference,
        content: &ContentStore,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let local = match &r.digest {
            Some(d) => Some(d.clone()),
            None => self.head_manifest(r).filter(|d| content.contains(d)),
        };
        match local.filter(|d| content.contains(d)) {
            Some(d) => Ok((content.read_small(&d)?, None, d)),
            None => self.fetch_manifest(r, &r.manifest_ref()),
        }
    }

    /// The digest a `HEAD` of the manifest answers with, if the registry says one.
    fn head_manifest(&self, r: &Reference) -> Option<Digest> {
        let req = Req::new(
            Method::HEAD,
            format!("/v2/{}/manifests/{}", r.repository, r.manifest_ref()),
        )
        .header("Accept", accept_header());
        let resp = self.send(r, &pull_scopes(r), &req).ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes, its content type and
    /// its digest (verified against the reference or `Docker-Content-Digest`).
    pub(crate) fn fetch_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let req = Req::new(
            Method::GET,
            format!("/v2/{}/manifests/{reference}", r.repository),
        )
        .header("Accept", accept_header());
        let resp = self.retrying(|| self.send(r, &pull_scopes(r), &req))?;
        if resp.status() != StatusCode::OK {
            return Err(self.refused(r, "pull", resp));
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if content_type
            .as_deref()
            .is_some_and(|c| format::DOCKER_SCHEMA1.contains(&c))
        {
            return Err(RegistryError::Schema1 {
                reference: r.to_string(),
            });
        }
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| RegistryError::Protocol {
                registry: r.registry.clone(),
                what: format!("manifest {reference} unreadable or over {MAX_MANIFEST} bytes: {e}"),
            })?;
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        let digest = match expected {
            Some(e) => {
                let actual = Digest::of(e.algorithm(), &bytes);
                if actual != e {
                    return Err(RegistryError::DigestMismatch {
                        registry: r.registry.clone(),
                        what: "manifest".into(),
                        expected: e,
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256(&bytes),
        };
        Ok((bytes, content_type, digest))
    }

    /// Retries `f` on transient errors with a short backoff.
    pub(crate) fn retrying<T>(
        &self,
        mut f: impl FnMut() -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    tracing::debug!(error = %e, attempt, "retrying");
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn download_worker(
        &self,
        r: &Reference,
        content: &ContentStore,
        sizes: &BTreeMap<Digest, u64>,
        shared: &Shared,
        progress: &dyn ProgressSink,
    ) {
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let next = shared
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            let Some(d) = next else { return };
            let size = sizes.get(&d).copied().unwrap_or(0);
            let result = self.fetch_blob(r, content, &d, size, Some(progress), &shared.stop);
            let mut state = shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match result {
                Ok(()) => {
                    progress.report(ProgressEvent::DownloadComplete { id: d.clone() });
                    state.insert(d, LayerState::Done);
                }
                Err(e) => {
                    state.insert(d, LayerState::Failed);
                    shared.stop.store(true, Ordering::Relaxed);
                    let mut f = shared
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if f.is_none() {
                        *f = Some(e);
                    }
                }
            }
            shared.changed.notify_all();
        }
    }

    /// Downloads blob `d` of `size` bytes into the store unless present, continuing an earlier
    /// partial download, retrying cut connections from where they stopped.
    pub(crate) fn fetch_blob(
        &self,
        r: &Reference,
        content: &ContentStore,
        d: &Digest,
        size: u64,
        progress: Option<&dyn ProgressSink>,
        stop: &AtomicBool,
    ) -> Result<(), RegistryError> {
        let reference = format!("pull-{d}");
        let mut w = loop {
            if content.contains(d) {
                return Ok(());
            }
            match content.writer(&reference, Some(d), Some(size)) {
                Ok(w) => break w,
                // Another pull is writing this blob: wait for it to land.
                Err(ContentError::Locked(_)) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(RegistryError::Unpack(UnpackError::Stopped));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        };
        if content.contains(d) {
            // Another pull committed it between our check and our lock.
            w.abandon();
            return Ok(());
        }
        if w.offset() > size {
            w.truncate()?;
        }
        if w.offset() > 0 {
            if let Some(p) = progress {
                p.report(ProgressEvent::Resuming {
                    id: d.clone(),
                    offset: w.offset(),
                });
            }
        }
        let mut attempt = 1;
        loop {
            match self.download_into(r, d, size, &mut w, progress, stop) {
                Ok(()) => break,
                Err(e) if e.is_transient() && !stop.load(Ordering::Relaxed) => {
                    if attempt >= self.config.max_attempts {
                        return Err(RegistryError::DownloadFailed {
                            registry: r.registry.clone(),
                            digest: d.clone(),
                            attempts: attempt,
                            source: Box::new(e),
                        });
                    }
                    tracing::info!(digest = %d, offset = w.offset(), error = %e, "download cut, resuming");
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                    if let Some(p) = progress {
                        p.report(ProgressEvent::Resuming {
                            id: d.clone(),
                            offset: w.offset(),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match w.commit(BTreeMap::new()) {
            Ok(_) => Ok(()),
            Err(ContentError::DigestMismatch { expected, actual }) => {
                Err(RegistryError::DigestMismatch {
                    registry: r.registry.clone(),
                    what: "blob".into(),
                    expected,
                    actual,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn download_into(
        &self,
        r: &Reference,
        d: &Digest,
        size: u64,
        w: &mut Writer<'_>,
        progress: Option<&dyn ProgressSink>,
        stop: &AtomicBool,
    ) -> Result<(), RegistryError> {
        let offset = w.offset();
        if offset == size && size > 0 {
            return Ok(());
        }
        let mut req = Req::new(Method::GET, format!("/v2/{}/blobs/{d}", r.repository));
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = self.send(r, &pull_scopes(r), &req)?;
        match resp.status().as_u16() {
            200 => {
                if offset > 0 {
                    tracing::debug!(digest = %d, "registry ignored Range, starting over");
                    w.truncate()?;
                }
            }
            206 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(offset) {
                    w.truncate()?;
                    return Err(RegistryError::Interrupted {
                        registry: r.registry.clone(),
                        digest: d.clone(),
                        offset: 0,
                        source: std::io::Error::other(format!(
                            "partial answer starts at {start:?}, not {offset}"
                        )),
                    });
                }
            }
            416 => {
                w.truncate()?;
                return Err(RegistryError::Interrupted {
                    registry: r.registry.clone(),
                    digest: d.clone(),
                    offset: 0,
                    source: std::io::Error::other("range not satisfiable; starting over"),
                });
            }
            _ => return Err(self.refused(r, &format!("pull blob {d} of"), resp)),
        }
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let mut reported = w.offset();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(RegistryError::Unpack(UnpackError::Stopped));
            }
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RegistryError::Interrupted {
                        registry: r.registry.clone(),
                        digest: d.clone(),
                        offset: w.offset(),
                        source,
                    })
                }
            };
            if n == 0 {
                break;
            }
            if w.offset() + n as u64 > size {
                return Err(RegistryError::Protocol {
                    registry: r.registry.clone(),
                    what: format!("blob {d} is longer than its declared {size} bytes"),
                });
            }
            w.write_all(&buf[..n]).map_err(|e| ContentError::Io {
                path: content_path_hint(d),
                source: e,
            })?;
            if let Some(p) = progress {
                if w.offset() - reported >= PROGRESS_STEP || w.offset() == size {
                    reported = w.offset();
                    p.report(ProgressEvent::Downloading {
                        id: d.clone(),
                        current: w.offset(),
                        total: size,
                    });
                }
            }
        }
        if w.offset() < size {
            return Err(RegistryError::Interrupted {
                registry: r.registry.clone(),
                digest: d.clone(),
                offset: w.offset(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection ended before the blob did",
                ),
            });
        }
        w.flush().map_err(|e| ContentError::Io {
            path: content_path_hint(d),
            source: e,
        })?;
        Ok(())
    }
}

fn content_path_hint(d: &Digest) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("ingest of {d}"))
}

/// 100 ms, 200 ms, 400 ms, ... at most 3 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(5)).min(3000))
}

/// Adds `repository` to each blob's source label for `registry`.
pub(crate) fn record_source(
    content: &ContentStore,
    blobs: &[Digest],
    registry: &str,
    repository: &str,
) -> Result<(), ContentError> {
    let key = format!("{SOURCE_LABEL}.{registry}");
    content.update_metadata(|m| {
        for b in blobs {
            let labels = m.labels.entry(b.clone()).or_default();
            let mut repos: BTreeSet<String> = labels
                .get(&key)
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            repos.insert(repository.to_owned());
            labels.insert(key.clone(), repos.into_iter().collect::<Vec<_>>().join(","));
        }
        Ok(())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerState {
    Pending,
    Done,
    Failed,
}

struct Shared {
    queue: Mutex<VecDeque<Digest>>,
    state: Mutex<BTreeMap<Digest, LayerState>>,
    changed: Condvar,
    failure: Mutex<Option<RegistryError>>,
    stop: AtomicBool,
}

struct Gate<'a> {
    shared: &'a Shared,
    layers: &'a [Digest],
    progress: &'a dyn ProgressSink,
}

impl LayerGate for Gate<'_> {
    fn ready(&mut self, index: usize) -> bool {
        let Some(d) = self.layers.get(index) else {
            return false;
        };
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            match state.get(d) {
                Some(LayerState::Done) => return true,
                Some(LayerState::Failed) | None => return false,
                Some(LayerState::Pending) => {
                    state = self
                        .shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }

    fn applying(&mut self, index: usize, apply: bool) {
        if apply {
            if let Some(d) = self.layers.get(index) {
                self.progress
                    .report(ProgressEvent::Extracting { id: d.clone() });
            }
        }
    }

    fn applied(&mut self, index: usize) {
        if let Some(d) = self.layers.get(index) {
            self.progress
                .report(ProgressEvent::PullComplete { id: d.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_every_supported_type_and_no_schema1() {
        let a = accept_header();
        for t in [
            format::OCI_INDEX,
            format::OCI_MANIFEST,
            format::DOCKER_MANIFEST,
            format::DOCKER_MANIFEST_LIST,
        ] {
            assert!(a.contains(t), "{t}");
        }
        for t in format::DOCKER_SCHEMA1 {
            assert!(!a.contains(t));
        }
    }

    #[test]
    fn source_labels_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path(), Default::default()).unwrap();
        let d = s.put(b"blob").unwrap();
        record_source(&s, std::slice::from_ref(&d), "r:5000", "b/x").unwrap();
        record_source(&s, std::slice::from_ref(&d), "r:5000", "a").unwrap();
        record_source(&s, std::slice::from_ref(&d), "r:5000", "a").unwrap();
        let info = s.info(&d).unwrap();
        assert_eq!(
            info.labels
                .get(&format!("{SOURCE_LABEL}.r:5000"))
                .map(String::as_str),
            Some("a,b/x")
        );
    }
}
