//! The content store: blobs addressed by digest under `<root>/blobs/<alg>/<hex>`, verified while
//! they are written, committed atomically (temp, fsync, rename), resumable ingests under
//! `<root>/ingest/`, and the metadata (labels, leases, image references) that garbage collection
//! starts from.
//!
//! A blob whose bytes do not match its digest is never visible: it only exists in the ingest
//! directory until [`Writer::commit`] has checked it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::digest::{Algorithm, Digest, Hasher};
use crate::sys::durable::{self, DurableWriteError};

/// Label naming a blob that this blob references (containerd's GC label scheme): any label
/// whose key starts with this prefix and whose value is a digest keeps that digest alive.
pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Label prefix naming a snapshot (by key) that a blob keeps alive, e.g. an image config keeps
/// the snapshot of its top layer chain: `containerd.io/gc.ref.snapshot.overlay`.
pub const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";

/// Bounds on what the store accepts and what it reads into memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest blob accepted by a writer.
    pub max_blob_size: u64,
    /// Largest blob [`ContentStore::read_small`] reads into memory (manifests, configs).
    pub max_in_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blob_size: 64 << 30,
            // containerd limits manifests to 4 MiB; configs can be larger with long histories.
            max_in_memory: 16 << 20,
        }
    }
}

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// blob not found
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// written bytes do not hash to the expected digest
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// what the caller promised
        expected: Digest,
        /// what the bytes hash to
        actual: Digest,
    },
    /// written size differs from the expected size
    #[error("size mismatch for {reference}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// the ingest reference
        reference: String,
        /// what the caller promised
        expected: u64,
        /// what was written
        actual: u64,
    },
    /// blob exceeds a size limit
    #[error("blob {what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// the blob or ingest
        what: String,
        /// the limit in force
        limit: u64,
    },
    /// another writer holds the ingest
    #[error("ingest {0:?} is being written by another writer")]
    Locked(String),
    /// lease not found
    #[error("lease {0:?} not found")]
    LeaseNotFound(String),
    /// metadata file is corrupt
    #[error("content metadata {path} is corrupt")]
    CorruptMetadata {
        /// the metadata file
        path: PathBuf,
        /// the parse error
        #[source]
        source: serde_json::Error,
    },
    /// a store file could not be replaced durably
    #[error(transparent)]
    Write(#[from] DurableWriteError),
    /// an I/O error on a store path
    #[error("content store i/o on {path}")]
    Io {
        /// the path acted on
        path: PathBuf,
        /// the error
        #[source]
        source: io::Error,
    },
}

/// Marker error inside an `io::Error` that a size limit was hit (`ErrorKind::FileTooLarge` is
/// newer than our MSRV).
#[derive(Debug)]
pub(crate) struct LimitExceeded;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

/// Whether an I/O error is a [`LimitExceeded`].
pub(crate) fn is_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<LimitExceeded>())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the store knows about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A lease: resources held alive for as long as the lease exists, whatever references them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Blobs held.
    pub blobs: BTreeSet<Digest>,
    /// Snapshots held, by key.
    pub snapshots: BTreeSet<String>,
}

/// Persisted metadata: labels, leases, image references.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Labels per blob.
    #[serde(default)]
    pub labels: BTreeMap<Digest, BTreeMap<String, String>>,
    /// Leases by id.
    #[serde(default)]
    pub leases: BTreeMap<String, Lease>,
    /// Image references (name → manifest or index digest); GC roots.
    #[serde(default)]
    pub references: BTreeMap<String, Digest>,
}

/// A content store rooted at a directory.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    limits: Limits,
    meta_lock: Mutex<()>,
}

impl ContentStore {
    /// Opens (creating if needed) a store at `root`.
    ///
    /// # Errors
    /// [`ContentError::Io`] if the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>, limits: Limits) -> Result<Self, ContentError> {
        let root = root.into();
        for sub in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(ContentStore {
            root,
            limits,
            meta_lock: Mutex::new(()),
        })
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a committed blob (whether or not it exists).
    #[must_use]
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Whether the blob is committed.
    #[must_use]
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size and labels of a blob.
    ///
    /// # Errors
    /// [`ContentError::NotFound`] if the blob is not committed.
    pub fn info(&self, digest: &Digest) -> Result<Info, ContentError> {
        let path = self.blob_path(digest);
        let md = match fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let labels = self
            .metadata()?
            .labels
            .get(digest)
            .cloned()
            .unwrap_or_default();
        Ok(Info {
            digest: digest.clone(),
            size: md.len(),
            labels,
        })
    }

    /// Opens a committed blob for reading.
    ///
    /// # Errors
    /// [`ContentError::NotFound`] if it is not committed.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(digest.clone())
            } else {
                io_err(&path)(e)
            }
        })
    }

    /// Reads a blob into memory, refusing blobs above [`Limits::max_in_memory`].
    ///
    /// # Errors
    /// [`ContentError::NotFound`], [`ContentError::TooLarge`], [`ContentError::Io`].
    pub fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let f = self.open_blob(digest)?;
        let limit = self.limits.max_in_memory;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&self.blob_path(digest)))?;
        if buf.len() as u64 > limit {
            return Err(ContentError::TooLarge {
                what: digest.to_string(),
                limit,
            });
        }
        Ok(buf)
    }

    /// All committed blobs.
    ///
    /// # Errors
    /// [`ContentError::Io`] if a blob directory cannot be listed.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name();
                // Anything that is not a well-formed digest is not a blob (a stray temp file).
                if let Ok(d) = format!("{}:{}", alg.name(), name.to_string_lossy()).parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Starts or resumes an ingest named `reference`. Bytes written by an earlier writer of the
    /// same reference that was never committed (a crash, a dropped writer) are kept: the new
    /// writer re-hashes them and [`Writer::offset`] says where to resume.
    ///
    /// # Errors
    /// [`ContentError::TooLarge`] if `expected_size` is above the limit, or the partial data
    /// already is; [`ContentError::Io`].
    pub fn writer(
        &self,
        reference: &str,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Writer<'_>, ContentError> {
        let limit = expected_size.unwrap_or(self.limits.max_blob_size);
        if limit > self.limits.max_blob_size {
            return Err(ContentError::TooLarge {
                what: reference.to_owned(),
                limit: self.limits.max_blob_size,
            });
        }
        let dir = self.ingest_dir(reference);
        let data = dir.join("data");
        // A writer of the same reference that just committed removes the (then empty) folder:
        // make it again if it vanished between our mkdir and our open.
        // Each attempt can only lose to a commit that removed the folder, and every loss means
        // a writer finished, so a handful of attempts is plenty however busy the machine is.
        let mut attempts = 0;
        let file = loop {
            // create_dir_all reports EEXIST when the folder existed at its mkdir but was gone
            // (removed by that commit) when it checked: the same race, retried the same way.
            match fs::create_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(io_err(&dir)(e)),
            }
            match OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&data)
            {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 16 => attempts += 1,
                Err(e) => return Err(io_err(&data)(e)),
            }
        };
        // Two writers appending to one ingest would interleave: the second is refused.
        let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => ContentError::Locked(reference.to_owned()),
            e => io_err(&data)(e.into()),
        })?;
        // The lock holder may have committed (renamed the file away) before we locked it.
        {
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata().map_err(io_err(&data))?.ino();
            if fs::metadata(&data).map(|m| m.ino()).ok() != Some(ours) {
                return Err(ContentError::Locked(reference.to_owned()));
            }
        }
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut hasher = algorithm.hasher();
        file.seek(SeekFrom::Start(0)).map_err(io_err(&data))?;
        let mut offset = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io_err(&data))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
            if offset > limit {
                return Err(ContentError::TooLarge {
                    what: reference.to_owned(),
                    limit,
                });
            }
        }
        if offset > 0 {
            tracing::debug!(reference, offset, "resuming ingest");
        }
        Ok(Writer {
            store: self,
            reference: reference.to_owned(),
            dir,
            file,
            hasher,
            offset,
            written_back: offset,
            limit,
            expected: expected.cloned(),
            expected_size,
        })
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        // The reference is caller-chosen text: hash it into a safe directory name.
        self.root
            .join("ingest")
            .join(Digest::sha256(reference.as_bytes()).hex())
    }

    /// Bytes an unfinished ingest of `reference` holds, if there is one (for a status report;
    /// the resuming writer re-reads them).
    #[must_use]
    pub fn ingest_size(&self, reference: &str) -> Option<u64> {
        fs::metadata(self.ingest_dir(reference).join("data"))
            .ok()
            .map(|m| m.len())
    }

    /// Discards the unfinished ingest of `reference`; false when there was none. A writer that
    /// still holds it keeps its open file and finds nothing to commit into later.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn abort_ingest(&self, reference: &str) -> Result<bool, ContentError> {
        let dir = self.ingest_dir(reference);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Removes a blob file only (for a caller that keeps labels elsewhere, as
    /// refeng-containerd's metadata store does). Removing a missing blob is not an error.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes everything `reader` yields as one blob and commits it.
    ///
    /// # Errors
    /// As [`ContentStore::writer`] and [`Writer::commit`]; [`ContentError::Io`] on read errors.
    pub fn ingest<R: Read>(
        &self,
        mut reader: R,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        if let Some(d) = expected {
            if self.contains(d) {
                return Ok(d.clone());
            }
        }
        let reference = match expected {
            Some(d) => format!("ingest-{d}"),
            None => format!(
                "ingest-anon-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ),
        };
        // Another ingest of the same content may hold the ingest: wait for it to land.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut w = loop {
            match self.writer(&reference, expected, expected_size) {
                Ok(w) => break w,
                Err(ContentError::Locked(r)) => {
                    if let Some(d) = expected.filter(|d| self.contains(d)) {
                        return Ok(d.clone());
                    }
                    if expected.is_none() || std::time::Instant::now() >= deadline {
                        return Err(ContentError::Locked(r));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(d) = expected.filter(|d| self.contains(d)) {
            w.abandon();
            return Ok(d.clone());
        }
        if w.offset() > 0 {
            // The reader starts at 0: restart rather than trusting a resume we cannot seek.
            w.truncate()?;
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(io_err(&w.dir))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).map_err(|e| {
                if is_limit(&e) {
                    ContentError::TooLarge {
                        what: reference.clone(),
                        limit: w.limit,
                    }
                } else {
                    io_err(&w.dir)(e)
                }
            })?;
        }
        w.commit(BTreeMap::new())
    }

    /// Writes a byte slice as a blob.
    ///
    /// # Errors
    /// As [`ContentStore::ingest`].
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, ContentError> {
        let d = Digest::sha256(bytes);
        self.ingest(bytes, Some(&d), Some(bytes.len() as u64))
    }

    /// Removes a blob and its labels. Removing a missing blob is not an error.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.update_metadata(|m| {
            m.labels.remove(digest);
            Ok(())
        })
    }

    /// Current metadata.
    ///
    /// # Errors
    /// [`ContentError::CorruptMetadata`], [`ContentError::Io`].
    pub fn metadata(&self) -> Result<Metadata, ContentError> {
        let path = self.root.join("metadata.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ContentError::CorruptMetadata { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Applies `f` to the metadata and persists the result atomically.
    ///
    /// # Errors
    /// What `f` returns, or the errors of reading and writing the metadata.
    pub fn update_metadata<T>(
        &self,
        f: impl FnOnce(&mut Metadata) -> Result<T, ContentError>,
    ) -> Result<T, ContentError> {
        let _guard = self
            .meta_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut meta = self.metadata()?;
        let out = f(&mut meta)?;
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|source| ContentError::CorruptMetadata {
                path: self.root.join("metadata.json"),
                source,
            })?;
        durable::write(&self.root.join("metadata.json"), 0o600, &bytes)?;
        Ok(out)
    }

    /// Replaces the labels of a committed blob.
    ///
    /// # Errors
    /// [`ContentError::NotFound`] if the blob is not committed.
    pub fn set_labels(
        &self,
        digest: &Digest,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ContentError> {
        if !self.contains(digest) {
            return Err(ContentError::NotFound(digest.clone()));
        }
        self.update_metadata(|m| {
            if labels.is_empty() {
                m.labels.remove(digest);
            } else {
                m.labels.insert(digest.clone(), labels);
            }
            Ok(())
        })
    }

    /// Adds one label to a committed blob.
    ///
    /// # Errors
    /// [`ContentError::NotFound`] if the blob is not committed.
    pub fn add_label(&self, digest: &Digest, key: &str, value: &str) -> Result<(), ContentError> {
        if !self.contains(digest) {
            return Err(ContentError::NotFound(digest.clone()));
        }
        self.update_metadata(|m| {
            m.labels
                .entry(digest.clone())
                .or_default()
                .insert(key.to_owned(), value.to_owned());
            Ok(())
        })
    }

    /// Names an image: `name` keeps `target` (a manifest or index) and all it references alive.
    ///
    /// # Errors
    /// [`ContentError::NotFound`] if `target` is not committed.
    pub fn set_reference(&self, name: &str, target: &Digest) -> Result<(), ContentError> {
        if !self.contains(target) {
            return Err(ContentError::NotFound(target.clone()));
        }
        self.update_metadata(|m| {
            m.references.insert(name.to_owned(), target.clone());
            Ok(())
        })
    }

    /// Removes an image name; the content stays until garbage collection.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn remove_reference(&self, name: &str) -> Result<Option<Digest>, ContentError> {
        self.update_metadata(|m| Ok(m.references.remove(name)))
    }

    /// Creates (or keeps) a lease.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn create_lease(&self, id: &str) -> Result<(), ContentError> {
        self.update_metadata(|m| {
            m.leases.entry(id.to_owned()).or_default();
            Ok(())
        })
    }

    /// Adds a blob and/or snapshot to a lease.
    ///
    /// # Errors
    /// [`ContentError::LeaseNotFound`].
    pub fn lease_add(
        &self,
        id: &str,
        blob: Option<&Digest>,
        snapshot: Option<&str>,
    ) -> Result<(), ContentError> {
        self.update_metadata(|m| {
            let lease = m
                .leases
                .get_mut(id)
                .ok_or_else(|| ContentError::LeaseNotFound(id.to_owned()))?;
            if let Some(b) = blob {
                lease.blobs.insert(b.clone());
            }
            if let Some(s) = snapshot {
                lease.snapshots.insert(s.to_owned());
            }
            Ok(())
        })
    }

    /// Creates a lease that is deleted when the guard drops: what an import or unpack writes is
    /// held by it until the image reference (or a label) holds it.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn temporary_lease(&self, purpose: &str) -> Result<LeaseGuard<'_>, ContentError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{purpose}-{}-{n}", std::process::id());
        self.create_lease(&id)?;
        Ok(LeaseGuard { store: self, id })
    }

    /// Deletes a lease; what it held becomes collectable.
    ///
    /// # Errors
    /// [`ContentError::LeaseNotFound`].
    pub fn delete_lease(&self, id: &str) -> Result<(), ContentError> {
        self.update_metadata(|m| {
            m.leases
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| ContentError::LeaseNotFound(id.to_owned()))
        })
    }
}

/// A lease deleted on drop (see [`ContentStore::temporary_lease`]).
#[derive(Debug)]
pub struct LeaseGuard<'a> {
    store: &'a ContentStore,
    id: String,
}

impl LeaseGuard<'_> {
    /// The lease id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds a blob and/or a snapshot key to the lease.
    ///
    /// # Errors
    /// As [`ContentStore::lease_add`].
    pub fn add(&self, blob: Option<&Digest>, snapshot: Option<&str>) -> Result<(), ContentError> {
        self.store.lease_add(&self.id, blob, snapshot)
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.store.delete_lease(&self.id) {
            tracing::warn!(lease = %self.id, error = %e, "deleting temporary lease");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    durable::sync_dir(dir).map_err(io_err(dir))
}

/// An ingest in progress. Dropping it without [`Writer::commit`] keeps the partial data so that
/// a later writer of the same reference resumes.
#[derive(Debug)]
pub struct Writer<'a> {
    store: &'a ContentStore,
    reference: String,
    dir: PathBuf,
    file: nix::fcntl::Flock<File>,
    hasher: Hasher,
    offset: u64,
    /// Up to where writeback was started (see [`WRITEBACK_STEP`]).
    written_back: u64,
    limit: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
}

/// After each this many bytes, a writer starts their writeback, so that the `fsync` at commit
/// waits for the last few MiB rather than the whole blob (54 ms for a 50 MiB layer here).
const WRITEBACK_STEP: u64 = 8 << 20;

impl Writer<'_> {
    /// Bytes already written (where a resumed ingest continues).
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The digest of the bytes written so far.
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Gives the ingest up (the blob landed through another writer): its data is removed.
    pub fn abandon(self) {
        let data = self.dir.join("data");
        let _ = fs::remove_file(&data);
        let _ = fs::remove_dir(&self.dir);
    }

    /// Discards what was written so far.
    ///
    /// # Errors
    /// [`ContentError::Io`].
    pub fn truncate(&mut self) -> Result<(), ContentError> {
        self.file.set_len(0).map_err(io_err(&self.dir))?;
        self.offset = 0;
        self.written_back = 0;
        self.hasher = self
            .expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm)
            .hasher();
        Ok(())
    }

    /// As [`Writer::commit`], with the expected digest given (or changed) at the end, as a
    /// containerd client may send it only with its commit; labels are the caller's business.
    ///
    /// # Errors
    /// As [`Writer::commit`].
    pub fn commit_with(mut self, expected: Option<&Digest>) -> Result<Digest, ContentError> {
        if let Some(e) = expected {
            self.expected = Some(e.clone());
        }
        self.commit(BTreeMap::new())
    }

    /// Verifies size and digest, then makes the blob visible atomically. A blob that fails
    /// verification is discarded.
    ///
    /// # Errors
    /// [`ContentError::SizeMismatch`], [`ContentError::DigestMismatch`], [`ContentError::Io`].
    pub fn commit(self, labels: BTreeMap<String, String>) -> Result<Digest, ContentError> {
        let Writer {
            store,
            reference,
            dir,
            file,
            hasher,
            offset,
            expected,
            expected_size,
            ..
        } = self;
        let discard = |e: ContentError| {
            let _ = fs::remove_dir_all(&dir);
            e
        };
        if let Some(size) = expected_size {
            if size != offset {
                return Err(discard(ContentError::SizeMismatch {
                    reference,
                    expected: size,
                    actual: offset,
                }));
            }
        }
        let actual = hasher.finish();
        if let Some(expected) = expected {
            if expected != actual {
                return Err(discard(ContentError::DigestMismatch { expected, actual }));
            }
        }
        file.sync_all().map_err(io_err(&dir))?;
        let target = store.blob_path(&actual);
        let data = dir.join("data");
        // Renamed while still locked, so no other writer can append to the committed blob.
        fs::rename(&data, &target).map_err(io_err(&target))?;
        drop(file);
        sync_dir(target.parent().unwrap_or(Path::new(".")))?;
        // Only if empty: a writer of the same reference may already have started a new `data`.
        let _ = fs::remove_dir(&dir);
        if !labels.is_empty() {
            store.update_metadata(|m| {
                m.labels.entry(actual.clone()).or_default().extend(labels);
                Ok(())
            })?;
        }
        tracing::debug!(digest = %actual, size = offset, "committed blob");
        Ok(actual)
    }
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.offset + buf.len() as u64 > self.limit {
            tracing::debug!(reference = %self.reference, limit = self.limit, "ingest over its limit");
            return Err(io::Error::other(LimitExceeded));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        if self.offset - self.written_back >= WRITEBACK_STEP {
            crate::sys::durable::start_writeback(
                &self.file,
                self.written_back,
                self.offset - self.written_back,
            );
            self.written_back = self.offset;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_ingests_of_the_same_content_all_succeed() {
        let (_d, s) = store();
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let d = Digest::sha256(&bytes);
        for _ in 0..20 {
            s.delete(&d).unwrap();
            std::thread::scope(|t| {
                for _ in 0..4 {
                    t.spawn(|| {
                        assert_eq!(
                            s.ingest(&bytes[..], Some(&d), Some(bytes.len() as u64))
                                .unwrap(),
                            d
                        );
                    });
                }
            });
            assert_eq!(s.read_small(&d).unwrap(), bytes);
        }
    }

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path(), Limits::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn put_and_read_back() {
        let (_d, s) = store();
        let d = s.put(b"hello").unwrap();
        assert_eq!(d, Digest::sha256(b"hello"));
        assert_eq!(s.read_small(&d).unwrap(), b"hello");
        assert_eq!(s.info(&d).unwrap().size, 5);
        assert_eq!(s.list().unwrap(), vec![d]);
    }

    #[test]
    fn mismatched_digest_never_becomes_visible() {
        let (_d, s) = store();
        let wrong = Digest::sha256(b"other");
        let err = s.ingest(&b"hello"[..], Some(&wrong), None).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!s.contains(&wrong));
        assert!(s.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(s.root().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn size_limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(
            dir.path(),
            Limits {
                max_blob_size: 4,
                max_in_memory: 2,
            },
        )
        .unwrap();
        assert!(matches!(
            s.ingest(&b"hello"[..], None, None),
            Err(ContentError::TooLarge { .. })
        ));
        let d = s.put(b"abc").unwrap();
        assert!(matches!(
            s.read_small(&d),
            Err(ContentError::TooLarge { .. })
        ));
        let e = s.ingest(&b"ab"[..], Some(&Digest::sha256(b"ab")), Some(3));
        assert!(matches!(e, Err(ContentError::SizeMismatch { .. })));
    }

    #[test]
    fn ingest_resumes_after_a_dropped_writer() {
        let (_d, s) = store();
        let data = b"0123456789abcdef";
        let d = Digest::of(Algorithm::Sha512, data);
        {
            let mut w = s.writer("ref1", Some(&d), Some(data.len() as u64)).unwrap();
            w.write_all(&data[..7]).unwrap();
            // dropped: simulates a crash before commit
        }
        assert!(!s.contains(&d));
        let mut w = s.writer("ref1", Some(&d), Some(data.len() as u64)).unwrap();
        assert_eq!(w.offset(), 7);
        w.write_all(&data[7..]).unwrap();
        assert_eq!(w.commit(BTreeMap::new()).unwrap(), d);
        assert_eq!(s.read_small(&d).unwrap(), data);
    }

    #[test]
    fn a_second_writer_of_the_same_ingest_is_refused() {
        let (_d, s) = store();
        let mut w1 = s.writer("r", None, None).unwrap();
        assert!(matches!(
            s.writer("r", None, None),
            Err(ContentError::Locked(_))
        ));
        w1.write_all(b"x").unwrap();
        drop(w1);
        assert_eq!(s.writer("r", None, None).unwrap().offset(), 1);
    }

    #[test]
    fn labels_leases_references_persist() {
        let (dir, s) = store();
        let d = s.put(b"x").unwrap();
        s.add_label(&d, "a", "b").unwrap();
        s.create_lease("l").unwrap();
        s.lease_add("l", Some(&d), Some("snap")).unwrap();
        s.set_reference("img", &d).unwrap();
        let s2 = ContentStore::open(dir.path(), Limits::default()).unwrap();
        let m = s2.metadata().unwrap();
        assert_eq!(m.labels[&d]["a"], "b");
        assert!(m.leases["l"].blobs.contains(&d));
        assert_eq!(m.references["img"], d);
        assert!(matches!(
            s2.lease_add("nope", None, None),
            Err(ContentError::LeaseNotFound(_))
        ));
    }
}
