//! `docker load` (`POST /images/load`) and `docker save` (`GET /images/{name}/get`,
//! `GET /images/get?names=`), through a private staging content store as pulls do.
//!
//! Load streams the request body into [`archive::import_tar`] (docker-archive with
//! `manifest.json`, as `docker save` and skopeo write it, or an OCI layout with `index.json`;
//! plain or compressed), which checks every blob against its name and every path against the
//! archive; only a fully read and valid archive reaches containerd, through
//! [`Engine::transfer_staged`] (one lease, `gc.ref` labels, unpack, then the names). A bad
//! archive is a 400 before any answer is written and leaves nothing behind: the staging store
//! is removed and containerd never saw a byte of it.
//!
//! Save copies each image's blobs out of containerd (Content.Read) into a staging store and
//! writes [`archive::export_docker`]'s archive (manifest.json and repositories beside an OCI
//! index.json and blobs/, as dockerd 25+ writes it) into the response as it is made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use containerd_client::types::Descriptor;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::events::Event;
use super::images::{error_chain, familiar, line, Unpacking, DANGLING};
use super::Engine;
use crate::image::archive::{self, ArchiveError, Sink};
use crate::image::content::{ContentStore, Limits};
use crate::image::digest::Digest;
use crate::image::format::{self, Document, PlatformWanted};
use crate::image::registry::Reference;
use crate::image::tar::Builder;

/// Bytes per chunk of a save's response.
const SAVE_CHUNK: usize = 256 << 10;
/// How much of a refused request's body is read (and dropped) before the connection is cut.
const MAX_DRAIN: usize = 1 << 30;
/// How deep an index may nest when an image is copied out of containerd.
const MAX_NESTING: usize = 4;

/// A request body read as a blocking [`Read`] (the archive parsers are synchronous): frames
/// come over a channel from [`pump_body`]; a body that breaks off is an I/O error, never a
/// short but valid end.
#[derive(Debug)]
pub(super) struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("reading the request body: {e}"),
                    ))
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Frames held for one hand-over: the first as it came, copied together only when a second
/// joins it.
#[derive(Debug, Default)]
struct Joined {
    first: Bytes,
    more: Option<bytes::BytesMut>,
}

impl Joined {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.more
            .as_ref()
            .map_or(self.first.len(), bytes::BytesMut::len)
    }

    fn push(&mut self, data: Bytes) {
        if let Some(m) = &mut self.more {
            m.extend_from_slice(&data);
        } else if self.first.is_empty() {
            self.first = data;
        } else {
            let mut m = bytes::BytesMut::with_capacity(JOIN.max(self.first.len() + data.len()));
            m.extend_from_slice(&self.first);
            m.extend_from_slice(&data);
            self.first = Bytes::new();
            self.more = Some(m);
        }
    }

    fn take(&mut self) -> Bytes {
        match self.more.take() {
            Some(m) => m.freeze(),
            None => std::mem::take(&mut self.first),
        }
    }
}

/// How many bytes of a body's frames are joined into one hand-over to the reader.
const JOIN: usize = 256 << 10;

/// Starts copying `body` into a [`BodyReader`]. Frames are joined into hand-overs of [`JOIN`]
/// bytes (the last one shorter), so the reader's thread is woken once per 256 KiB rather than
/// once per HTTP chunk (the docker CLI sends 32 KiB ones; hyper gives them one by one). Every
/// body read this way is an upload answered after its end, so holding a part back delays
/// nothing a client waits for. When the reader is dropped before the end (the request was
/// refused), the rest is read and dropped, up to [`MAX_DRAIN`] bytes, so that the client gets
/// the answer rather than a broken pipe while it still sends.
pub(super) fn body_reader(mut body: Incoming) -> BodyReader {
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(16);
    tokio::spawn(async move {
        let mut drained = 0usize;
        let mut held = Joined::default();
        loop {
            let end = match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.is_closed() {
                            drained += data.len();
                            if drained > MAX_DRAIN {
                                return;
                            }
                        } else {
                            held.push(data);
                        }
                    }
                    if held.len() < JOIN {
                        continue;
                    }
                    None
                }
                Some(Err(e)) => Some(Err(e.to_string())),
                None => Some(Ok(())),
            };
            if !held.is_empty() {
                // A reader that went away is seen at the next frame (`is_closed`).
                let _ = tx.send(Ok(held.take())).await;
            }
            match end {
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Some(Ok(())) => return,
                None => {}
            }
        }
    });
    BodyReader {
        rx,
        current: Bytes::new(),
    }
}

/// A blocking [`Write`] whose bytes become chunks of a streamed response (flush at the end).
pub(super) struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// Chunks for `tx`.
    pub(super) fn new(tx: mpsc::Sender<Bytes>) -> ChunkWriter {
        ChunkWriter {
            tx,
            buf: Vec::new(),
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SAVE_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// A staging store's directory, removed when dropped (also when a request fails half-way or
/// its task is cancelled).
pub(super) struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub(super) fn new(engine: &Engine, purpose: &str) -> Staging {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        Staging {
            dir: engine.config().data_root.join("tmp").join(format!(
                "{purpose}-{}-{}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            )),
        }
    }

    /// Where the staging store lives (removed when dropped).
    pub(super) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(super) fn open(&self) -> Result<ContentStore, ApiError> {
        ContentStore::open(&self.dir, Limits::default())
            .map_err(|e| ApiError::internal("opening the staging store", error_chain(&e)))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "staging store left behind");
            }
        }
    }
}

/// How a failed archive import is answered: what comes from the archive is the client's
/// fault (400), as dockerd answers a malformed `docker load`.
fn load_error(e: &ArchiveError) -> ApiError {
    ApiError::BadRequest(format!("invalid archive: {}", error_chain(e)))
}

/// The full image name an archive's name stands for; `None` for names that are no image
/// name: a digest (an unnamed image) or an OCI `ref.name` that is a bare tag (`latest`).
fn archive_name(name: &str) -> Result<Option<String>, ApiError> {
    if name.parse::<Digest>().is_ok() || !name.contains([':', '/', '@']) {
        return Ok(None);
    }
    Reference::parse(name)
        .map(|r| Some(r.to_string()))
        .map_err(|e| ApiError::BadRequest(format!("invalid archive: image name {name:?}: {e}")))
}

impl Engine {
    /// `POST /images/load`: imports the archive in `body` and answers the progress (unless
    /// `quiet`) and `Loaded image` lines. The work runs in its own task, so a client that goes
    /// away mid-load leaves either the whole image or nothing.
    ///
    /// # Errors
    /// `BadRequest` for an archive that is malformed, hostile or not usable on this platform;
    /// containerd's failures.
    pub async fn images_load(
        self: &Arc<Self>,
        body: Incoming,
        quiet: bool,
    ) -> Result<Bytes, ApiError> {
        let engine = self.clone();
        let reader = body_reader(body);
        tokio::spawn(async move { engine.load(reader, quiet).await })
            .await
            .map_err(|e| ApiError::internal("the load task", e))?
    }

    async fn load(&self, reader: BodyReader, quiet: bool) -> Result<Bytes, ApiError> {
        let staging = Staging::new(self, "load");
        let store = staging.open()?;
        let (store, imported) = tokio::task::spawn_blocking(move || {
            let r = archive::import_tar(&store, reader);
            (store, r)
        })
        .await
        .map_err(|e| ApiError::internal("the archive import", e))?;
        let imported = imported.map_err(|e| load_error(&e))?;
        if imported.is_empty() {
            return Err(ApiError::BadRequest(
                "invalid archive: it names no image".into(),
            ));
        }
        // Names per target, in the archive's order.
        let mut order: Vec<Digest> = Vec::new();
        let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for i in &imported {
            if !order.contains(&i.target) {
                order.push(i.target.clone());
            }
            let entry = names.entry(i.target.clone()).or_default();
            if let Some(n) = archive_name(&i.name)? {
                if !entry.contains(&n) {
                    entry.push(n);
                }
            }
        }
        let existing = self.store().images().await?;
        let mut images = Vec::new();
        for t in &order {
            let mut n = names.remove(t).unwrap_or_default();
            let held = existing
                .iter()
                .any(|i| i.target.as_ref().is_some_and(|d| d.digest == t.to_string()));
            if n.is_empty() && !held {
                n.push(format!("{DANGLING}{t}"));
            }
            images.push((t.clone(), n));
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let collector = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                out.extend_from_slice(&b);
            }
            out
        });
        let done = self
            .transfer_staged(&store, &images, &tx, Unpacking::Load)
            .await;
        drop(tx);
        let progress = collector.await.unwrap_or_default();
        let done = done?;
        let mut out = if quiet { Vec::new() } else { progress };
        for ((_, n), t) in images.iter().zip(&done) {
            let named: Vec<&String> = n.iter().filter(|x| !x.starts_with(DANGLING)).collect();
            if named.is_empty() {
                out.extend_from_slice(&line(
                    &json!({"stream": format!("Loaded image ID: {}\n", t.resolved.id)}),
                ));
            }
            for name in &named {
                out.extend_from_slice(&line(
                    &json!({"stream": format!("Loaded image: {}\n", familiar(name))}),
                ));
            }
            self.events.emit(Event::new(
                "image",
                "load",
                &t.resolved.id,
                BTreeMap::from([(
                    "name".to_string(),
                    named
                        .first()
                        .map_or_else(|| t.resolved.id.clone(), |n| familiar(n)),
                )]),
            ));
        }
        drop(staging);
        Ok(Bytes::from(out))
    }

    /// `GET /images/{name}/get` and `GET /images/get?names=`: finds every image first (an
    /// unknown one is a 404 before any byte is sent), copies them into a staging store, and
    /// answers with the archive as it is written.
    ///
    /// # Errors
    /// `NotFound` for an unknown image; `BadRequest` when no name is given; containerd's
    /// failures while copying.
    pub async fn images_save(
        self: &Arc<Self>,
        names: &[String],
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        if names.is_empty() {
            return Err(ApiError::BadRequest("no image names given".into()));
        }
        let staging = Staging::new(self, "save");
        let store = staging.open()?;
        let mut wanted: Vec<(String, Digest)> = Vec::new();
        let mut copied: BTreeSet<String> = BTreeSet::new();
        for name in names {
            let (r, all) = self.find(name).await?;
            let target: Digest = r
                .target
                .digest
                .parse()
                .map_err(|e| ApiError::internal(&format!("image {name}: target digest"), e))?;
            if copied.insert(r.target.digest.clone()) {
                self.copy_out(&store, &r.target, 0).await?;
            }
            // By name: that name; by id: the image unnamed, as dockerd saves it.
            let full = Reference::parse(name)
                .ok()
                .map(|x| x.to_string())
                .filter(|f| all.contains(f) && !f.contains('@'));
            let entry = match full {
                Some(f) => familiar(&f),
                None => target.to_string(),
            };
            if !wanted.iter().any(|(n, _)| *n == entry) {
                wanted.push((entry, target));
            }
        }
        for (n, t) in &wanted {
            store
                .set_reference(n, t)
                .map_err(|e| ApiError::internal("naming a staged image", error_chain(&e)))?;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        tokio::task::spawn_blocking(move || {
            let writer = ChunkWriter::new(tx.clone());
            let result = archive::export_docker(
                &store,
                &wanted,
                &PlatformWanted::host(),
                Sink::Tar(Builder::new(writer)),
            );
            match result {
                Ok(Some(mut w)) => {
                    if let Err(e) = w.flush() {
                        tracing::debug!(error = %e, "save: the client went away");
                    }
                }
                Ok(None) => {}
                // The answer has started: all that is left is to cut it short, which the
                // client sees as a truncated archive.
                Err(e) => tracing::warn!(error = %error_chain(&e), "save failed"),
            }
            drop(staging);
        });
        Ok(rx)
    }

    /// Copies `d` and what it reaches (an index's manifests that containerd has, a manifest's
    /// config and layers) from containerd into `staging`.
    pub(super) async fn copy_out(
        &self,
        staging: &ContentStore,
        d: &Descriptor,
        depth: usize,
    ) -> Result<(), ApiError> {
        if depth > MAX_NESTING {
            return Err(ApiError::Internal(format!(
                "image {}: indexes nest too deep",
                d.digest
            )));
        }
        let bytes = self.store().read(&d.digest).await?;
        self.copy_blob(staging, &d.digest, Some(&bytes)).await?;
        let bad = |e: &dyn std::error::Error| {
            ApiError::Internal(format!("image {}: {}", d.digest, error_chain(e)))
        };
        match format::parse_document(&bytes, Some(&d.media_type)).map_err(|e| bad(&e))? {
            Document::Index(i) => {
                for m in i.manifests() {
                    let digest = m.digest().to_string();
                    if self.store().info(&digest).await?.is_none() {
                        continue; // another platform's, never pulled
                    }
                    let child = Descriptor {
                        media_type: m.media_type().to_string(),
                        digest,
                        size: i64::try_from(m.size()).unwrap_or(i64::MAX),
                        annotations: Default::default(),
                    };
                    Box::pin(self.copy_out(staging, &child, depth + 1)).await?;
                }
            }
            Document::Manifest(m) => {
                for blob in std::iter::once(m.config()).chain(m.layers()) {
                    self.copy_blob(staging, blob.digest().as_ref(), None)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// One blob from containerd into `staging` (verified against its digest by the store).
    async fn copy_blob(
        &self,
        staging: &ContentStore,
        digest: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        let d: Digest = digest
            .parse()
            .map_err(|e| ApiError::internal(&format!("blob {digest}"), e))?;
        if staging.contains(&d) {
            return Ok(());
        }
        let failed = |e: &dyn std::error::Error| {
            ApiError::internal(&format!("copying {digest}"), error_chain(e))
        };
        let mut w = staging
            .writer(&format!("save-{}", d.hex()), Some(&d), None)
            .map_err(|e| failed(&e))?;
        match bytes {
            Some(b) => w.write_all(b).map_err(|e| failed(&e))?,
            None => {
                self.store()
                    .read_with(digest, |chunk| w.write_all(chunk))
                    .await?;
            }
        }
        w.commit(BTreeMap::new()).map_err(|e| failed(&e))?;
        Ok(())
    }
}

/// Every value of `key` in a query string (`names` repeats in `/images/get?names=a&names=b`).
pub(super) fn query_all(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_image_names_or_none() {
        assert_eq!(
            archive_name("busybox:latest").unwrap().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            archive_name("127.0.0.1:5000/x/y:2").unwrap().as_deref(),
            Some("127.0.0.1:5000/x/y:2")
        );
        assert_eq!(archive_name("latest").unwrap(), None);
        let d = Digest::sha256(b"x").to_string();
        assert_eq!(archive_name(&d).unwrap(), None);
        assert!(archive_name("x/y:bad tag!").is_err());
    }

    #[test]
    fn repeated_query_keys_are_all_kept() {
        assert_eq!(
            query_all(Some("names=a%3A1&names=b&x=1&names="), "names"),
            vec!["a:1".to_string(), "b".to_string()]
        );
        assert!(query_all(None, "names").is_empty());
    }
}
