//! Import and export: `docker save` archives (manifest.json + repositories, in the old
//! per-layer-directory layout and the new OCI-layout one), OCI image layouts (directory or
//! tar), and building an image from a root filesystem tarball (`docker import`).
//!
//! Archives are outside input: every file is streamed into the content store (verified against
//! its name where the name is a digest), only the small index files are held in memory, and
//! names inside the archive are resolved lexically, never on the host filesystem.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};
use serde::{Deserialize, Serialize};

use super::content::{ContentError, ContentStore, LeaseGuard};
use super::digest::{Algorithm, Digest, HashingReader};
use super::format::{self, Document, FormatError, PlatformWanted};
use super::layer::{decompress, Compression};
use super::tar::{Builder, Entry, Kind, Reader, TarError, TarLimits};
use crate::sys::durable::{self, DurableWriteError};

/// Annotation naming an image in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Errors of import and export.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// the archive tar is malformed
    #[error("archive")]
    Tar(#[from] TarError),
    /// content store failure (incl. a blob whose bytes do not match its name)
    #[error("content")]
    Content(#[from] ContentError),
    /// invalid manifest, index or config
    #[error("image format")]
    Format(#[from] FormatError),
    /// a JSON index file is malformed
    #[error("{file} is malformed")]
    Json {
        /// the file
        file: String,
        /// the parse error
        #[source]
        source: serde_json::Error,
    },
    /// neither manifest.json nor index.json
    #[error("archive has neither manifest.json nor an OCI index.json")]
    UnknownLayout,
    /// oci-layout version unsupported
    #[error("unsupported oci-layout version {0:?}")]
    LayoutVersion(String),
    /// a file the archive's index names is missing
    #[error("archive names {0:?}, which it does not contain")]
    Missing(String),
    /// a path in the archive escapes it
    #[error("archive path {0:?} escapes the archive")]
    PathEscape(String),
    /// too many files or index too large
    #[error("archive {0} exceeds its limit")]
    TooLarge(&'static str),
    /// an exported file could not be written durably
    #[error(transparent)]
    Write(#[from] DurableWriteError),
    /// i/o error
    #[error("i/o on {path}")]
    Io {
        /// the path
        path: String,
        /// the error
        #[source]
        source: io::Error,
    },
}

fn io_err(path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_string();
    move |source| ArchiveError::Io { path, source }
}

/// One entry of a docker-save `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// Path of the config file in the archive.
    pub config: String,
    /// `name:tag` list.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars, bottom first.
    pub layers: Vec<String>,
}

/// Parses a docker-save `manifest.json`.
///
/// # Errors
/// [`ArchiveError::Json`], [`ArchiveError::TooLarge`] for more than [`format::MAX_MANIFESTS`]
/// images or [`format::MAX_LAYERS`] layers.
pub fn parse_docker_manifest(bytes: &[u8]) -> Result<Vec<DockerManifestEntry>, ArchiveError> {
    let v: Vec<DockerManifestEntry> =
        serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
            file: "manifest.json".into(),
            source,
        })?;
    if v.len() > format::MAX_MANIFESTS || v.iter().any(|e| e.layers.len() > format::MAX_LAYERS) {
        return Err(ArchiveError::TooLarge("manifest.json"));
    }
    Ok(v)
}

/// An image that an import named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The reference name (`busybox:latest`), or the digest string for unnamed images.
    pub name: String,
    /// The manifest or index digest.
    pub target: Digest,
}

/// What an archive held, by archive path.
#[derive(Debug, Default)]
struct Files {
    blobs: BTreeMap<String, Digest>,
    small: BTreeMap<String, Vec<u8>>,
    symlinks: BTreeMap<String, String>,
}

const SMALL_FILES: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];
const MAX_FILES: usize = 100_000;

/// Cleans an archive path lexically; `..` that would leave the archive is refused.
fn clean(path: &str) -> Result<String, ArchiveError> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(ArchiveError::PathEscape(path.to_owned()));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

fn blob_name(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

impl Files {
    fn add_file(
        &mut self,
        content: &ContentStore,
        lease: &LeaseGuard<'_>,
        path: &str,
        size: u64,
        data: impl Read,
    ) -> Result<(), ArchiveError> {
        if self.blobs.len() + self.small.len() + self.symlinks.len() > MAX_FILES {
            return Err(ArchiveError::TooLarge("file count"));
        }
        if SMALL_FILES.contains(&path) {
            let limit = content.limits().max_in_memory;
            if size > limit {
                return Err(ArchiveError::TooLarge("index file"));
            }
            let mut buf = Vec::new();
            data.take(limit)
                .read_to_end(&mut buf)
                .map_err(io_err(path))?;
            self.small.insert(path.to_owned(), buf);
            return Ok(());
        }
        let expected = blob_name(path);
        // Any other file may be what manifest.json names: `<id>/layer.tar` in docker's legacy
        // layout, `<hex>.tar` and `<hex>.json` in skopeo's docker-archive, `blobs/...` in
        // the OCI one. Only the legacy per-layer metadata (`<id>/json`, `<id>/VERSION`) is
        // never named, and is skipped.
        let legacy_metadata = path.contains('/')
            && expected.is_none()
            && (path.ends_with("/json") || path.ends_with("/VERSION"));
        if legacy_metadata {
            io::copy(&mut data.take(size), &mut io::sink()).map_err(io_err(path))?;
            return Ok(());
        }
        let d = content.ingest(data, expected.as_ref(), Some(size))?;
        lease.add(Some(&d), None)?;
        self.blobs.insert(path.to_owned(), d);
        Ok(())
    }

    fn resolve(&self, path: &str) -> Result<Digest, ArchiveError> {
        let mut p = clean(path)?;
        for _ in 0..16 {
            if let Some(d) = self.blobs.get(&p) {
                return Ok(d.clone());
            }
            let Some(t) = self.symlinks.get(&p) else {
                break;
            };
            let base = p.rsplit_once('/').map_or("", |(d, _)| d);
            p = clean(&format!("{base}/{t}"))?;
        }
        Err(ArchiveError::Missing(path.to_owned()))
    }
}

/// Imports a `docker save` archive or an OCI layout tar from a stream (either compressed).
///
/// # Errors
/// [`ArchiveError`] for malformed archives, mismatching blobs, invalid manifests.
#[tracing::instrument(skip_all)]
pub fn import_tar<R: Read>(
    content: &ContentStore,
    stream: R,
) -> Result<Vec<Imported>, ArchiveError> {
    let (_, plain) = decompress(stream).map_err(io_err("archive"))?;
    let mut reader = Reader::new(plain, TarLimits::default());
    // Held until the references are set, so a concurrent GC cannot take what was just written.
    let lease = content.temporary_lease("import")?;
    let mut files = Files::default();
    while let Some(e) = reader.next_entry()? {
        let path = clean(&String::from_utf8_lossy(&e.path))?;
        match e.kind {
            Kind::File => files.add_file(content, &lease, &path, e.size, reader.data())?,
            Kind::Symlink | Kind::HardLink => {
                let t = String::from_utf8_lossy(&e.link).into_owned();
                // Hardlink targets are archive-rooted, symlink targets relative to the entry.
                let t = if e.kind == Kind::HardLink {
                    format!("/{t}")
                } else {
                    t
                };
                files.symlinks.insert(path, t);
            }
            _ => {}
        }
    }
    // Symlink targets starting with '/' are archive-rooted.
    let symlinks = std::mem::take(&mut files.symlinks);
    for (k, v) in symlinks {
        let v = if let Some(abs) = v.strip_prefix('/') {
            let depth = k.matches('/').count();
            format!("{}{abs}", "../".repeat(depth))
        } else {
            v
        };
        files.symlinks.insert(k, v);
    }
    finish_import(content, &lease, &files)
}

/// Imports an OCI image layout directory.
///
/// # Errors
/// As [`import_tar`].
#[tracing::instrument(skip(content))]
pub fn import_dir(content: &ContentStore, dir: &Path) -> Result<Vec<Imported>, ArchiveError> {
    // Held until the references are set, so a concurrent GC cannot take what was just written.
    let lease = content.temporary_lease("import")?;
    let mut files = Files::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for ent in fs::read_dir(&abs).map_err(io_err(abs.display()))? {
            let ent = ent.map_err(io_err(abs.display()))?;
            let r = rel.join(ent.file_name());
            let md = fs::symlink_metadata(ent.path()).map_err(io_err(r.display()))?;
            let name = r.to_string_lossy().into_owned();
            if md.is_dir() {
                stack.push(r);
            } else if md.is_file() {
                let f = fs::File::open(ent.path()).map_err(io_err(r.display()))?;
                files.add_file(
                    content,
                    &lease,
                    &name,
                    md.len(),
                    io::BufReader::with_capacity(1 << 20, f),
                )?;
            }
            // Symlinks in a layout directory are not followed: they could point anywhere.
        }
    }
    finish_import(content, &lease, &files)
}

fn finish_import(
    content: &ContentStore,
    lease: &LeaseGuard<'_>,
    files: &Files,
) -> Result<Vec<Imported>, ArchiveError> {
    if let Some(index) = files.small.get("index.json") {
        if let Some(layout) = files.small.get("oci-layout") {
            #[derive(Deserialize)]
            struct Layout {
                #[serde(rename = "imageLayoutVersion")]
                version: String,
            }
            let l: Layout =
                serde_json::from_slice(layout).map_err(|source| ArchiveError::Json {
                    file: "oci-layout".into(),
                    source,
                })?;
            if l.version != "1.0.0" {
                return Err(ArchiveError::LayoutVersion(l.version));
            }
            let index: ImageIndex =
                serde_json::from_slice(index).map_err(|source| ArchiveError::Json {
                    file: "index.json".into(),
                    source,
                })?;
            format::validate_index(&index)?;
            let mut out = Vec::new();
            for d in index.manifests() {
                let target = format::check_descriptor(d)?;
                if !content.contains(&target) {
                    return Err(ArchiveError::Missing(target.to_string()));
                }
                check_reachable(content, &target, 0)?;
                let ann = d.annotations().as_ref();
                let name = ann
                    .and_then(|a| a.get(CONTAINERD_NAME).or_else(|| a.get(REF_NAME)))
                    .cloned()
                    .unwrap_or_else(|| target.to_string());
                content.set_reference(&name, &target)?;
                out.push(Imported { name, target });
            }
            // Docker's OCI-layout save also has manifest.json; index.json alone names it fully,
            // but tags only live in manifest.json when index.json carries none.
            if let Some(m) = files.small.get("manifest.json") {
                for e in parse_docker_manifest(m)? {
                    let config = files.resolve(&e.config)?;
                    if let Some(hit) = out
                        .iter()
                        .find(|i| manifest_config(content, &i.target).ok() == Some(config.clone()))
                        .cloned()
                    {
                        for tag in e.repo_tags.unwrap_or_default() {
                            if !out.iter().any(|i| i.name == tag) {
                                content.set_reference(&tag, &hit.target)?;
                                out.push(Imported {
                                    name: tag,
                                    target: hit.target.clone(),
                                });
                            }
                        }
                    }
                }
            }
            return Ok(out);
        }
    }
    let Some(m) = files.small.get("manifest.json") else {
        return Err(ArchiveError::UnknownLayout);
    };
    let mut out = Vec::new();
    for e in parse_docker_manifest(m)? {
        let config = files.resolve(&e.config)?;
        let layers = e
            .layers
            .iter()
            .map(|l| files.resolve(l))
            .collect::<Result<Vec<_>, _>>()?;
        let target = write_manifest(content, &config, &layers)?;
        lease.add(Some(&target), None)?;
        let tags = e.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            content.set_reference(&target.to_string(), &target)?;
            out.push(Imported {
                name: target.to_string(),
                target: target.clone(),
            });
        }
        for tag in tags {
            content.set_reference(&tag, &target)?;
            out.push(Imported {
                name: tag,
                target: target.clone(),
            });
        }
    }
    Ok(out)
}

fn manifest_config(content: &ContentStore, target: &Digest) -> Result<Digest, ArchiveError> {
    match format::parse_document(&content.read_small(target)?, None)? {
        Document::Manifest(m) => Ok(format::check_descriptor(m.config())?),
        Document::Index(_) => Err(ArchiveError::Missing("config".into())),
    }
}

/// Checks that a manifest's config and layers (or an index's manifests) are present.
fn check_reachable(content: &ContentStore, d: &Digest, depth: usize) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::TooLarge("index nesting"));
    }
    match format::parse_document(&content.read_small(d)?, None)? {
        Document::Manifest(m) => {
            for desc in std::iter::once(m.config()).chain(m.layers()) {
                let c = format::check_descriptor(desc)?;
                let info = content
                    .info(&c)
                    .map_err(|_| ArchiveError::Missing(c.to_string()))?;
                if info.size != desc.size() {
                    return Err(ArchiveError::Content(ContentError::SizeMismatch {
                        reference: c.to_string(),
                        expected: desc.size(),
                        actual: info.size,
                    }));
                }
            }
        }
        Document::Index(i) => {
            // A multi-platform index exported for one platform carries only some manifests.
            for m in i.manifests() {
                let c = format::check_descriptor(m)?;
                if content.contains(&c) {
                    check_reachable(content, &c, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

fn layer_media_type(content: &ContentStore, d: &Digest) -> Result<&'static str, ArchiveError> {
    let f = content.open_blob(d)?;
    let (c, _) = decompress(f).map_err(io_err(d))?;
    Ok(match c {
        Compression::None => format::DOCKER_LAYER,
        Compression::Gzip => format::DOCKER_LAYER_GZIP,
        Compression::Zstd => format::OCI_LAYER_ZSTD,
    })
}

/// Writes a Docker schema2 manifest for a config and layers already in the store.
fn write_manifest(
    content: &ContentStore,
    config: &Digest,
    layers: &[Digest],
) -> Result<Digest, ArchiveError> {
    let cfg_bytes = content.read_small(config)?;
    // Validates diff_id count against the layers before anything names the image.
    format::parse_config(&cfg_bytes, layers.len())?;
    let desc = |mt: &str, d: &Digest, size: u64| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": size});
    let mut ls = Vec::new();
    for l in layers {
        ls.push(desc(
            layer_media_type(content, l)?,
            l,
            content.info(l)?.size,
        ));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": format::DOCKER_MANIFEST,
        "config": desc(format::DOCKER_CONFIG, config, cfg_bytes.len() as u64),
        "layers": ls,
    });
    let bytes = serde_json::to_vec(&m).map_err(|source| ArchiveError::Json {
        file: "manifest".into(),
        source,
    })?;
    Ok(content.put(&bytes)?)
}

/// Options of [`import_rootfs`].
#[derive(Debug, Clone, Default)]
pub struct RootfsImport {
    /// `Cmd` of the image config.
    pub cmd: Vec<String>,
    /// `Env` of the image config.
    pub env: Vec<String>,
    /// Platform written to the config (host if `None`).
    pub platform: Option<PlatformWanted>,
    /// `created` timestamp (RFC 3339); fixed input gives a reproducible image.
    pub created: Option<String>,
    /// The whole `config` object (`Cmd`, `Env`, `Labels`, ...); when given, `cmd` and `env`
    /// are not used.
    pub config: Option<serde_json::Value>,
    /// The image's `comment` and its history entry's (dockerd: the import message, else
    /// `Imported from SRC`).
    pub comment: Option<String>,
    /// The history entry's `created_by`; `refeng import` when `None`, left out when empty.
    pub created_by: Option<String>,
}

/// Builds a one-layer image from a root filesystem tarball (plain, gzip or zstd), like
/// `docker import`, and names it `name`.
///
/// # Errors
/// [`ArchiveError::Tar`] if the tarball is not a valid tar; content errors.
#[tracing::instrument(skip(content, stream, opts))]
pub fn import_rootfs<R: Read>(
    content: &ContentStore,
    stream: R,
    name: &str,
    opts: &RootfsImport,
) -> Result<Digest, ArchiveError> {
    let lease = content.temporary_lease("import-rootfs")?;
    let layer = content.ingest(stream, None, None)?;
    lease.add(Some(&layer), None)?;
    let (compression, plain) = decompress(content.open_blob(&layer)?).map_err(io_err("rootfs"))?;
    let hashing = HashingReader::new(plain, Algorithm::Sha256);
    let mut r = Reader::new(hashing, TarLimits::default());
    while r.next_entry()?.is_some() {}
    let mut hashing = r.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("rootfs"))?;
    let (diff_id, _) = hashing.finish();
    let p = opts.platform.clone().unwrap_or_else(PlatformWanted::host);
    let config = opts
        .config
        .clone()
        .unwrap_or_else(|| serde_json::json!({"Cmd": opts.cmd, "Env": opts.env}));
    let comment = opts
        .comment
        .clone()
        .unwrap_or_else(|| "Imported from tarball".into());
    let mut history = serde_json::json!({"comment": comment});
    match opts.created_by.as_deref() {
        None => history["created_by"] = "refeng import".into(),
        Some("") => {}
        Some(by) => history["created_by"] = by.into(),
    }
    let mut cfg = serde_json::json!({
        "architecture": p.architecture,
        "os": p.os,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [history],
    });
    if opts.comment.is_some() {
        cfg["comment"] = comment.into();
    }
    if let Some(v) = &p.variant {
        cfg["variant"] = v.clone().into();
    }
    if let Some(c) = &opts.created {
        cfg["created"] = c.clone().into();
        cfg["history"][0]["created"] = c.clone().into();
    }
    let cfg_bytes = serde_json::to_vec(&cfg).map_err(|source| ArchiveError::Json {
        file: "config".into(),
        source,
    })?;
    let config = content.put(&cfg_bytes)?;
    lease.add(Some(&config), None)?;
    let layer_mt = match compression {
        Compression::None => format::OCI_LAYER,
        Compression::Gzip => format::OCI_LAYER_GZIP,
        Compression::Zstd => format::OCI_LAYER_ZSTD,
    };
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": format::OCI_MANIFEST,
        "config": {"mediaType": format::OCI_CONFIG, "digest": config.to_string(), "size": cfg_bytes.len()},
        "layers": [{"mediaType": layer_mt, "digest": layer.to_string(), "size": content.info(&layer)?.size}],
    });
    let bytes = serde_json::to_vec(&m).map_err(|source| ArchiveError::Json {
        file: "manifest".into(),
        source,
    })?;
    let manifest = content.put(&bytes)?;
    content.set_reference(name, &manifest)?;
    Ok(manifest)
}

/// Where an export goes.
#[derive(Debug)]
pub enum Sink<W: Write> {
    /// An OCI layout directory (created if missing).
    Dir(PathBuf),
    /// A tar stream.
    Tar(Builder<W>),
}

impl<W: Write> Sink<W> {
    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
        match self {
            Sink::Dir(root) => {
                let p = root.join(path);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
                }
                // Whole or absent, also after a crash: a layout with a truncated blob under
                // its digest's name would be read as a corrupt image.
                let mut data = data.take(size);
                durable::write_with(&p, 0o644, |f| io::copy(&mut data, f).map(drop))?;
                Ok(())
            }
            Sink::Tar(b) => {
                let mut e = Entry::new(path, Kind::File);
                e.size = size;
                b.append(&e, data).map_err(io_err(path))
            }
        }
    }

    fn dir(&mut self, path: &str) -> Result<(), ArchiveError> {
        match self {
            Sink::Dir(root) => fs::create_dir_all(root.join(path)).map_err(io_err(path)),
            Sink::Tar(b) => b
                .append(
                    &Entry::new(format!("{path}/"), Kind::Directory),
                    io::empty(),
                )
                .map_err(io_err(path)),
        }
    }

    /// Finishes a tar sink (end-of-archive marker); a directory needs nothing.
    ///
    /// # Errors
    /// I/O errors of the sink.
    pub fn finish(self) -> Result<Option<W>, ArchiveError> {
        match self {
            Sink::Dir(_) => Ok(None),
            Sink::Tar(b) => b.finish().map(Some).map_err(io_err("archive")),
        }
    }
}

/// The blobs an image needs (manifests, configs, layers), each once, in a stable order.
fn reachable(
    content: &ContentStore,
    target: &Digest,
    out: &mut Vec<Digest>,
    depth: usize,
) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::TooLarge("index nesting"));
    }
    if out.contains(target) {
        return Ok(());
    }
    out.push(target.clone());
    match format::parse_document(&content.read_small(target)?, None)? {
        Document::Manifest(m) => {
            for d in std::iter::once(m.config()).chain(m.layers()) {
                let c = format::check_descriptor(d)?;
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        Document::Index(i) => {
            for m in i.manifests() {
                let c = format::check_descriptor(m)?;
                if content.contains(&c) {
                    reachable(content, &c, out, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

fn descriptor_for(
    content: &ContentStore,
    d: &Digest,
    name: &str,
) -> Result<Descriptor, ArchiveError> {
    let bytes = content.read_small(d)?;
    let mt = match format::parse_document(&bytes, None)? {
        Document::Manifest(m) => m
            .media_type()
            .as_ref()
            .map_or(format::OCI_MANIFEST.to_string(), ToString::to_string),
        Document::Index(i) => i
            .media_type()
            .as_ref()
            .map_or(format::OCI_INDEX.to_string(), ToString::to_string),
    };
    let mut desc = Descriptor::new(
        mt.as_str().into(),
        bytes.len() as u64,
        oci_spec::image::Digest::from(d),
    );
    let mut ann = std::collections::HashMap::new();
    ann.insert(REF_NAME.to_owned(), name.to_owned());
    desc.set_annotations(Some(ann));
    Ok(desc)
}

fn write_blobs<W: Write>(
    content: &ContentStore,
    sink: &mut Sink<W>,
    blobs: &[Digest],
) -> Result<(), ArchiveError> {
    sink.dir("blobs")?;
    sink.dir("blobs/sha256")?;
    if blobs.iter().any(|b| b.algorithm() == Algorithm::Sha512) {
        sink.dir("blobs/sha512")?;
    }
    for b in blobs {
        let size = content.info(b)?.size;
        let f = content.open_blob(b)?;
        sink.file(
            &format!("blobs/{}/{}", b.algorithm().name(), b.hex()),
            size,
            io::BufReader::with_capacity(1 << 20, f),
        )?;
    }
    Ok(())
}

fn index_json(
    content: &ContentStore,
    images: &[(String, Digest)],
) -> Result<Vec<u8>, ArchiveError> {
    let mut manifests = Vec::new();
    for (name, d) in images {
        manifests.push(descriptor_for(content, d, name)?);
    }
    let v = serde_json::json!({"schemaVersion": 2, "mediaType": format::OCI_INDEX, "manifests": manifests});
    serde_json::to_vec(&v).map_err(|source| ArchiveError::Json {
        file: "index.json".into(),
        source,
    })
}

/// Exports images (name → manifest or index digest) as an OCI image layout.
///
/// # Errors
/// [`ArchiveError`] for missing content or sink errors.
pub fn export_oci<W: Write>(
    content: &ContentStore,
    images: &[(String, Digest)],
    mut sink: Sink<W>,
) -> Result<Option<W>, ArchiveError> {
    let mut blobs = Vec::new();
    for (_, d) in images {
        reachable(content, d, &mut blobs, 0)?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    sink.file("oci-layout", layout.len() as u64, &layout[..])?;
    write_blobs(content, &mut sink, &blobs)?;
    let index = index_json(content, images)?;
    sink.file("index.json", index.len() as u64, &index[..])?;
    sink.finish()
}

/// Exports images as a `docker save` archive in the current (OCI-layout based) form:
/// `manifest.json` and `repositories` beside `index.json` and `blobs/`, so that both `docker
/// load` and OCI tools read it. Index targets are resolved to `platform`'s manifest for
/// `manifest.json`.
///
/// # Errors
/// [`ArchiveError`] for missing content or sink errors.
pub fn export_docker<W: Write>(
    content: &ContentStore,
    images: &[(String, Digest)],
    platform: &PlatformWanted,
    mut sink: Sink<W>,
) -> Result<Option<W>, ArchiveError> {
    let mut blobs = Vec::new();
    let mut entries: Vec<DockerManifestEntry> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, d) in images {
        reachable(content, d, &mut blobs, 0)?;
        let r = super::unpack::resolve(content, d, platform).map_err(|e| match e {
            super::unpack::UnpackError::Content(c) => ArchiveError::Content(c),
            super::unpack::UnpackError::Format(f) => ArchiveError::Format(f),
            other => ArchiveError::Missing(other.to_string()),
        })?;
        let path = |d: &Digest| format!("blobs/{}/{}", d.algorithm().name(), d.hex());
        let layers: Vec<String> = r.layers.iter().map(path).collect();
        let is_tag = name.contains(':') && !name.contains('@') && !name.starts_with("sha256:");
        if let Some(e) = entries.iter_mut().find(|e| e.config == path(&r.config)) {
            if is_tag {
                e.repo_tags.get_or_insert_with(Vec::new).push(name.clone());
            }
        } else {
            entries.push(DockerManifestEntry {
                config: path(&r.config),
                repo_tags: is_tag.then(|| vec![name.clone()]),
                layers,
            });
        }
        if is_tag {
            if let Some((repo, tag)) = name.rsplit_once(':') {
                if let Some(top) = r.layers.last() {
                    repositories
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), top.hex().to_owned());
                }
            }
        }
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    sink.file("oci-layout", layout.len() as u64, &layout[..])?;
    write_blobs(content, &mut sink, &blobs)?;
    let index = index_json(content, images)?;
    sink.file("index.json", index.len() as u64, &index[..])?;
    let m = serde_json::to_vec(&entries).map_err(|source| ArchiveError::Json {
        file: "manifest.json".into(),
        source,
    })?;
    sink.file("manifest.json", m.len() as u64, &m[..])?;
    let r = serde_json::to_vec(&repositories).map_err(|source| ArchiveError::Json {
        file: "repositories".into(),
        source,
    })?;
    sink.file("repositories", r.len() as u64, &r[..])?;
    sink.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(b: &mut Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut e = Entry::new(path, Kind::File);
        e.size = data.len() as u64;
        b.append(&e, data).unwrap();
    }

    /// skopeo's docker-archive names its blobs `<hex>.tar` and `<hex>.json` at the top.
    #[test]
    fn skopeo_docker_archives_import() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path().join("c"), Default::default()).unwrap();
        let mut layer = Builder::new(Vec::new());
        file(&mut layer, "etc/marker", b"hi\n");
        let layer = layer.finish().unwrap();
        let diff_id = Digest::sha256(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}}))
        .unwrap();
        let cfg = Digest::sha256(&config);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{}.json", cfg.hex()),
            "RepoTags": ["sk/bb:2"],
            "Layers": [format!("{}.tar", diff_id.hex())]}]))
        .unwrap();
        let mut b = Builder::new(Vec::new());
        file(&mut b, &format!("{}.tar", diff_id.hex()), &layer);
        file(&mut b, &format!("{}.json", cfg.hex()), &config);
        file(&mut b, "manifest.json", &manifest);
        file(&mut b, "repositories", b"{}");
        let tar = b.finish().unwrap();
        let imported = import_tar(&content, &tar[..]).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].name, "sk/bb:2");
        assert_eq!(manifest_config(&content, &imported[0].target).unwrap(), cfg);
    }
}
