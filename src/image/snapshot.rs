//! Snapshots: one committed snapshot per layer chain id (shared by every image with that
//! chain), writable active snapshots for containers on top, mounted with overlayfs; a plain-copy
//! backend where overlayfs is missing. Layout under the root, like containerd's overlay
//! snapshotter: `snapshots/<n>/fs` (the layer's upper dir or full copy), `snapshots/<n>/work`,
//! and `metadata.json` mapping keys to ids, kinds and parents.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::layer::{apply_layer, remove_tree, Applied, ApplyOptions, LayerError, WhiteoutMode};
use crate::sys::durable::{self, DurableWriteError};

/// How snapshots are stored and mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    /// Each layer is an overlayfs upper directory; mounts stack them.
    Overlay,
    /// Each snapshot is a full copy of its parent plus its changes; mounts are binds.
    Copy,
}

/// Kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// An unpacked layer chain: read-only, shared.
    Committed,
    /// A container's writable layer.
    Active,
    /// A read-only view of a committed snapshot (containerd's `View`).
    View,
}

/// What the snapshotter records about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Numeric directory id.
    pub id: u64,
    /// Committed or active.
    pub kind: SnapshotKind,
    /// Parent key.
    pub parent: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    next_id: u64,
    snapshots: BTreeMap<String, SnapshotInfo>,
}

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// no snapshot with this key
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// a snapshot with this key exists
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// the snapshot is the parent of another
    #[error("snapshot {key:?} is the parent of {child:?}")]
    InUse {
        /// the snapshot
        key: String,
        /// a child
        child: String,
    },
    /// the snapshot is not an active one (only those can be committed)
    #[error("snapshot {0:?} is not active")]
    NotActive(String),
    /// a new snapshot's parent is not a committed snapshot
    #[error("parent snapshot {0:?} is not committed")]
    ParentNotCommitted(String),
    /// overlay mount options exceed a page
    #[error("overlay options for {0:?} exceed the mount data limit")]
    TooManyLayers(String),
    /// the layer could not be applied
    #[error("applying layer for {key}")]
    Layer {
        /// the chain id
        key: String,
        /// the layer error
        #[source]
        source: LayerError,
    },
    /// metadata is corrupt
    #[error("snapshot metadata {0} is corrupt")]
    Corrupt(PathBuf, #[source] serde_json::Error),
    /// mount or unmount failed
    #[error("mount {what} on {target}")]
    Mount {
        /// what was mounted
        what: String,
        /// where
        target: PathBuf,
        /// the errno
        #[source]
        source: nix::Error,
    },
    /// the metadata could not be replaced durably
    #[error(transparent)]
    Write(#[from] DurableWriteError),
    /// i/o on a snapshot path
    #[error("snapshot i/o on {path}")]
    Io {
        /// the path
        path: PathBuf,
        /// the error
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One mount to perform, in the shape of the runtime-spec `mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// `overlay` or `bind`.
    pub fs_type: String,
    /// Source (`overlay` or a directory).
    pub source: PathBuf,
    /// Options (`lowerdir=...`, `ro`, `rbind`).
    pub options: Vec<String>,
}

impl MountSpec {
    /// Mounts onto `target` and returns a guard that unmounts when dropped.
    ///
    /// # Errors
    /// [`SnapshotError::Mount`].
    pub fn mount(&self, target: &Path) -> Result<MountGuard, SnapshotError> {
        let err = |source| SnapshotError::Mount {
            what: format!("{} {}", self.fs_type, self.source.display()),
            target: target.to_owned(),
            source,
        };
        if self.fs_type == "bind" {
            nix::mount::mount(
                Some(&self.source),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(err)?;
            let guard = MountGuard {
                target: target.to_owned(),
            };
            if self.options.iter().any(|o| o == "ro") {
                nix::mount::mount(
                    None::<&str>,
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(err)?;
            }
            return Ok(guard);
        }
        let data = self.options.join(",");
        nix::mount::mount(
            Some(&self.source),
            target,
            Some(self.fs_type.as_str()),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(err)?;
        Ok(MountGuard {
            target: target.to_owned(),
        })
    }
}

/// Unmounts its target when dropped (lazily, so a busy mount never leaks past the guard).
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
}

impl MountGuard {
    /// The mount point.
    #[must_use]
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.target, MntFlags::MNT_DETACH) {
            tracing::warn!(target = %self.target.display(), error = %e, "unmount failed");
        }
    }
}

/// Whether overlayfs can be mounted here (with `trusted.*` whiteouts, i.e. as root).
#[must_use]
pub fn overlay_supported(scratch: &Path) -> bool {
    let Ok(dir) = tempfile::tempdir_in(scratch) else {
        return false;
    };
    let p = |s: &str| dir.path().join(s);
    for s in ["l", "u", "w", "m"] {
        if fs::create_dir(p(s)).is_err() {
            return false;
        }
    }
    let spec = MountSpec {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", p("l").display()),
            format!("upperdir={}", p("u").display()),
            format!("workdir={}", p("w").display()),
        ],
    };
    spec.mount(&p("m")).is_ok()
}

impl Backend {
    /// Overlay where overlayfs mounts under `scratch`, the plain-copy backend otherwise.
    #[must_use]
    pub fn detect(scratch: &Path) -> Backend {
        if overlay_supported(scratch) {
            Backend::Overlay
        } else {
            tracing::warn!("overlayfs unavailable: snapshots are full copies");
            Backend::Copy
        }
    }
}

/// The snapshotter.
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    backend: Backend,
    lock: Mutex<()>,
}

impl Snapshotter {
    /// Opens (creating) a snapshotter at `root` with `backend`.
    ///
    /// # Errors
    /// [`SnapshotError::Io`].
    pub fn open(root: impl Into<PathBuf>, backend: Backend) -> Result<Self, SnapshotError> {
        let root = root.into();
        let s = root.join("snapshots");
        fs::create_dir_all(&s).map_err(io_err(&s))?;
        Ok(Snapshotter {
            root,
            backend,
            lock: Mutex::new(()),
        })
    }

    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    fn load(&self) -> Result<Meta, SnapshotError> {
        let p = self.meta_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SnapshotError::Corrupt(p, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn save(&self, m: &Meta) -> Result<(), SnapshotError> {
        let bytes = serde_json::to_vec_pretty(m)
            .map_err(|e| SnapshotError::Corrupt(self.meta_path(), e))?;
        Ok(durable::write(&self.meta_path(), 0o600, &bytes)?)
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// The directory holding a snapshot's files (its upper dir or full copy).
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`].
    pub fn fs_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let m = self.load()?;
        let info = m
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        Ok(self.dir(info.id).join("fs"))
    }

    /// What is known about `key`.
    ///
    /// # Errors
    /// [`SnapshotError::Corrupt`], [`SnapshotError::Io`].
    pub fn stat(&self, key: &str) -> Result<Option<SnapshotInfo>, SnapshotError> {
        Ok(self.load()?.snapshots.get(key).cloned())
    }

    /// All snapshots.
    ///
    /// # Errors
    /// [`SnapshotError::Corrupt`], [`SnapshotError::Io`].
    pub fn list(&self) -> Result<BTreeMap<String, SnapshotInfo>, SnapshotError> {
        Ok(self.load()?.snapshots)
    }

    /// The fs dirs of `key` and its ancestors, `key` first.
    fn chain(&self, m: &Meta, key: &str) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = Some(key.to_owned());
        while let Some(k) = cur {
            let info = m
                .snapshots
                .get(&k)
                .ok_or_else(|| SnapshotError::NotFound(k.clone()))?;
            out.push(self.dir(info.id).join("fs"));
            cur = info.parent.clone();
            if out.len() > super::format::MAX_LAYERS + 1 {
                break;
            }
        }
        Ok(out)
    }

    fn reserve(&self, m: &mut Meta) -> Result<(u64, PathBuf), SnapshotError> {
        let id = m.next_id + 1;
        m.next_id = id;
        self.save(m)?;
        let dir = self.dir(id);
        // A crash may have left this id's directory behind: it was never recorded, drop it.
        remove_tree(&dir).map_err(io_err(&dir))?;
        fs::create_dir_all(dir.join("fs")).map_err(io_err(&dir))?;
        Ok((id, dir))
    }

    /// Unpacks one layer as the committed snapshot `chain_id` on top of `parent`. If the
    /// snapshot exists it is shared and `stream` is not read (returns `None`). The snapshot only
    /// becomes visible once the whole layer applied and its diff_id matched.
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`] for a missing parent, [`SnapshotError::Layer`] if the layer is
    /// refused; the partial directory is removed.
    #[tracing::instrument(skip(self, stream, opts), fields(chain_id = %chain_id))]
    pub fn unpack_layer<R: Read>(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        stream: R,
        opts: &ApplyOptions,
    ) -> Result<Option<Applied>, SnapshotError> {
        let key = chain_id.to_string();
        let parent_key = parent.map(ToString::to_string);
        let (id, dir, lowers) = {
            let _g = self
                .lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut m = self.load()?;
            if m.snapshots.contains_key(&key) {
                return Ok(None);
            }
            let lowers = match &parent_key {
                Some(p) => self.chain(&m, p)?,
                None => Vec::new(),
            };
            let (id, dir) = self.reserve(&mut m)?;
            (id, dir, lowers)
        };
        let fs_dir = dir.join("fs");
        let result = (|| {
            let mut opts = opts.clone();
            match self.backend {
                Backend::Overlay => {
                    opts.whiteouts = WhiteoutMode::Overlay;
                    opts.lowers = lowers;
                }
                Backend::Copy => {
                    opts.whiteouts = WhiteoutMode::Delete;
                    opts.lowers = Vec::new();
                    if let Some(p) = lowers.first() {
                        copy_tree(p, &fs_dir).map_err(io_err(&fs_dir))?;
                    }
                }
            }
            apply_layer(&fs_dir, stream, &opts).map_err(|source| SnapshotError::Layer {
                key: key.clone(),
                source,
            })
        })();
        let applied = match result {
            Ok(a) => a,
            Err(e) => {
                let _ = remove_tree(&dir);
                return Err(e);
            }
        };
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut m = self.load()?;
        if m.snapshots.contains_key(&key) {
            // Unpacked concurrently by someone else: keep theirs.
            let _ = remove_tree(&dir);
            return Ok(Some(applied));
        }
        m.snapshots.insert(
            key,
            SnapshotInfo {
                id,
                kind: SnapshotKind::Committed,
                parent: parent_key,
            },
        );
        self.save(&m)?;
        Ok(Some(applied))
    }

    /// Creates the writable snapshot `key` on top of the committed `parent` and returns how to
    /// mount it.
    ///
    /// # Errors
    /// [`SnapshotError::AlreadyExists`], [`SnapshotError::NotFound`],
    /// [`SnapshotError::ParentNotCommitted`].
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Vec<MountSpec>, SnapshotError> {
        self.create(key, parent, SnapshotKind::Active)
    }

    /// Creates the read-only view `key` of the committed `parent` and returns how to mount it.
    ///
    /// # Errors
    /// As [`Snapshotter::prepare`].
    pub fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<MountSpec>, SnapshotError> {
        self.create(key, parent, SnapshotKind::View)
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: SnapshotKind,
    ) -> Result<Vec<MountSpec>, SnapshotError> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut m = self.load()?;
        if m.snapshots.contains_key(key) {
            return Err(SnapshotError::AlreadyExists(key.to_owned()));
        }
        if let Some(p) = parent {
            match m.snapshots.get(p) {
                None => return Err(SnapshotError::NotFound(p.to_owned())),
                Some(i) if i.kind != SnapshotKind::Committed => {
                    return Err(SnapshotError::ParentNotCommitted(p.to_owned()))
                }
                Some(_) => {}
            }
        }
        let (id, dir) = self.reserve(&mut m)?;
        if self.backend == Backend::Overlay {
            fs::create_dir_all(dir.join("work")).map_err(io_err(&dir))?;
        } else if let Some(p) = parent {
            let src = self.chain(&m, p)?.remove(0);
            copy_tree(&src, &dir.join("fs")).map_err(io_err(&dir))?;
        }
        m.snapshots.insert(
            key.to_owned(),
            SnapshotInfo {
                id,
                kind,
                parent: parent.map(ToOwned::to_owned),
            },
        );
        self.save(&m)?;
        drop(_g);
        self.mounts(key)
    }

    /// Turns the active snapshot `key` into the committed snapshot `name` (its files stay
    /// where they are; only the record changes, atomically).
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`], [`SnapshotError::NotActive`],
    /// [`SnapshotError::AlreadyExists`] when `name` is taken.
    pub fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut m = self.load()?;
        let info = m
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        if info.kind != SnapshotKind::Active {
            return Err(SnapshotError::NotActive(key.to_owned()));
        }
        if m.snapshots.contains_key(name) {
            return Err(SnapshotError::AlreadyExists(name.to_owned()));
        }
        let mut info = m.snapshots.remove(key).unwrap_or_else(|| unreachable!());
        info.kind = SnapshotKind::Committed;
        m.snapshots.insert(name.to_owned(), info);
        self.save(&m)
    }

    /// Disk usage of the snapshot's own files (not its parents'): bytes in allocated blocks
    /// and inodes, hard links counted once, as containerd's `fs.DiskUsage` counts them.
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`], [`SnapshotError::Io`].
    pub fn usage(&self, key: &str) -> Result<(u64, u64), SnapshotError> {
        let dir = self.fs_dir(key)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut size = 0u64;
        let mut stack = vec![dir];
        while let Some(p) = stack.pop() {
            let md = fs::symlink_metadata(&p).map_err(io_err(&p))?;
            if seen.insert((md.dev(), md.ino())) {
                size += md.blocks() * 512;
            }
            if md.is_dir() {
                for entry in fs::read_dir(&p).map_err(io_err(&p))? {
                    stack.push(entry.map_err(io_err(&p))?.path());
                }
            }
        }
        Ok((size, seen.len() as u64))
    }

    /// How to mount `key`: overlay over its chain (read-only for a committed snapshot), or a bind
    /// of its directory.
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`], [`SnapshotError::TooManyLayers`].
    pub fn mounts(&self, key: &str) -> Result<Vec<MountSpec>, SnapshotError> {
        let m = self.load()?;
        let info = m
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        let dir = self.dir(info.id);
        let ro = info.kind != SnapshotKind::Active;
        let bind = |p: PathBuf| MountSpec {
            fs_type: "bind".into(),
            source: p,
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        };
        if self.backend == Backend::Copy {
            return Ok(vec![bind(dir.join("fs"))]);
        }
        let lowers = match (info.kind, &info.parent) {
            (SnapshotKind::Committed, _) => self.chain(&m, key)?,
            (SnapshotKind::Active | SnapshotKind::View, Some(p)) => self.chain(&m, p)?,
            (SnapshotKind::Active | SnapshotKind::View, None) => Vec::new(),
        };
        let lowerdir = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut options = Vec::new();
        match info.kind {
            SnapshotKind::Committed if lowers.len() == 1 => return Ok(vec![bind(dir.join("fs"))]),
            SnapshotKind::Committed => options.push(format!("lowerdir={lowerdir}")),
            SnapshotKind::Active | SnapshotKind::View if lowers.is_empty() => {
                return Ok(vec![bind(dir.join("fs"))])
            }
            SnapshotKind::View if lowers.len() == 1 => return Ok(vec![bind(lowers[0].clone())]),
            SnapshotKind::View => options.push(format!("lowerdir={lowerdir}")),
            SnapshotKind::Active => {
                options.push(format!("lowerdir={lowerdir}"));
                options.push(format!("upperdir={}", dir.join("fs").display()));
                options.push(format!("workdir={}", dir.join("work").display()));
            }
        }
        options.push("index=off".into());
        if options.iter().map(|o| o.len() + 1).sum::<usize>() >= 4096 {
            return Err(SnapshotError::TooManyLayers(key.to_owned()));
        }
        Ok(vec![MountSpec {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            options,
        }])
    }

    /// Removes a snapshot that is no snapshot's parent.
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`], [`SnapshotError::InUse`].
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut m = self.load()?;
        if let Some((child, _)) = m
            .snapshots
            .iter()
            .find(|(_, i)| i.parent.as_deref() == Some(key))
        {
            return Err(SnapshotError::InUse {
                key: key.to_owned(),
                child: child.clone(),
            });
        }
        let info = m
            .snapshots
            .remove(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_owned()))?;
        // Forget first, then delete: a crash in between leaves an unrecorded directory that the
        // next reservation of that id (or an fsck) removes, never a record without files.
        self.save(&m)?;
        let dir = self.dir(info.id);
        remove_tree(&dir).map_err(io_err(&dir))
    }
}

/// Copies a tree preserving types, owners, modes, mtimes, xattrs and hardlinks (the plain-copy
/// backend). Symlinks are copied, never followed.
///
/// # Errors
/// I/O errors.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    copy_meta(src, dst, &fs::symlink_metadata(src)?)?;
    copy_dir(src, dst, &mut inodes)?;
    let md = fs::symlink_metadata(src)?;
    set_times(dst, &md)
}

fn copy_dir(src: &Path, dst: &Path, inodes: &mut BTreeMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for ent in fs::read_dir(src)? {
        let ent = ent?;
        let s = ent.path();
        let d = dst.join(ent.file_name());
        let md = fs::symlink_metadata(&s)?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&d)?;
            copy_meta(&s, &d, &md)?;
            copy_dir(&s, &d, inodes)?;
            set_times(&d, &md)?;
            continue;
        }
        if md.nlink() > 1 {
            if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &d)?;
                continue;
            }
            inodes.insert((md.dev(), md.ino()), d.clone());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
        } else if ft.is_file() {
            fs::copy(&s, &d)?;
        } else {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else if ft.is_block_device() {
                nix::sys::stat::SFlag::S_IFBLK
            } else if ft.is_fifo() {
                nix::sys::stat::SFlag::S_IFIFO
            } else {
                continue; // sockets are not part of an image
            };
            nix::sys::stat::mknod(
                &d,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                md.rdev(),
            )?;
        }
        copy_meta(&s, &d, &md)?;
        set_times(&d, &md)?;
    }
    Ok(())
}

fn copy_meta(s: &Path, d: &Path, md: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(d, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            d,
            nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    if let Ok(names) = xattr::list(s) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(s, &n) {
                xattr::set(d, &n, &v)?;
            }
        }
    }
    Ok(())
}

fn set_times(d: &Path, md: &fs::Metadata) -> io::Result<()> {
    let t = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        d,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}
