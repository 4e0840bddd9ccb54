//! Layer application (image-spec: "Image Layer Filesystem Changeset"): a tar, tar+gzip or
//! tar+zstd stream is unpacked into a directory, with whiteouts written either as overlayfs
//! whiteouts (0/0 character devices, `trusted.overlay.opaque`) or applied by deletion.
//!
//! Every write goes through a directory fd opened with `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`:
//! a layer cannot reach outside the directory, not through `..`, not through an absolute path
//! and not through a symlink it (or an earlier layer) created. What the issue lists as hostile
//! is refused with a [`LayerError`] naming the entry; absolute paths are contained (taken
//! relative to the root, as GNU tar and containerd do).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use super::content::{is_limit, LimitExceeded};
use super::digest::{Algorithm, Digest, Hasher};
use super::tar::{Entry, Kind, Reader, TarError, TarLimits};
use crate::sys::openat2::open_in_root_with;

/// Prefix of a whiteout file name (image-spec: "Whiteouts").
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// overlayfs' opaque-directory xattr.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How whiteouts are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Unpacking into an overlayfs upper directory: `.wh.NAME` becomes a 0/0 character device,
    /// `.wh..wh..opq` the opaque xattr on its directory.
    Overlay,
    /// Unpacking onto a full copy of the parent layers: whited-out paths are deleted.
    Delete,
    /// Not a layer (a `docker cp` archive): `.wh.` names are ordinary files.
    Literal,
}

/// How an archive that is not a layer is unpacked into an existing directory (`docker cp`,
/// Engine API `PUT /containers/{id}/archive`), as dockerd's `archive.Untar` does it: the
/// top entry (`.`) leaves the directory as it is, a symlink may not point above the
/// directory, and device nodes are refused (dockerd makes them; a copy has no business
/// planting one where another process may open it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyRules {
    /// Refuse to replace a directory with a non-directory and the other way round
    /// (`noOverwriteDirNonDir`).
    pub no_overwrite_dir_non_dir: bool,
    /// Every entry owned by this uid and gid (`copyUIDGID`) instead of the archive's owners.
    pub owner: Option<(u32, u32)>,
}

/// Options of one layer application.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How whiteouts are written.
    pub whiteouts: WhiteoutMode,
    /// Lower layers (topmost first), consulted in overlay mode for hardlink targets and for the
    /// metadata of directories that the layer only implies.
    pub lowers: Vec<PathBuf>,
    /// Most uncompressed bytes accepted (bounds decompression bombs).
    pub max_uncompressed: u64,
    /// Most entries accepted.
    pub max_entries: u64,
    /// Limits of the tar reader.
    pub tar: TarLimits,
    /// The diff_id the uncompressed stream must hash to.
    pub expected_diff_id: Option<Digest>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            lowers: Vec::new(),
            max_uncompressed: 64 << 30,
            max_entries: 4 << 20,
            tar: TarLimits::default(),
            expected_diff_id: None,
        }
    }
}

/// What an application produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Entries processed.
    pub entries: u64,
}

/// Why a layer was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// the layer stream (compressed) could not be read
    #[error("reading layer stream")]
    Stream(#[source] io::Error),
    /// the tar archive is malformed or hostile
    #[error("layer archive")]
    Tar(#[from] TarError),
    /// a path contains `..`
    #[error("entry {path:?} escapes the root with '..'")]
    PathEscape {
        /// the entry path
        path: String,
    },
    /// an entry would replace the root directory with a non-directory
    #[error("entry {path:?} would replace the root directory")]
    ReplaceRoot {
        /// the entry path
        path: String,
    },
    /// a path goes through a symlink or a non-directory
    #[error("entry {path:?} goes through a symlink or non-directory")]
    ThroughSymlink {
        /// the entry path
        path: String,
    },
    /// a whiteout names `.`/`..` or nothing
    #[error("whiteout {path:?} escapes its directory")]
    WhiteoutEscape {
        /// the entry path
        path: String,
    },
    /// a symlink of a copy points above the directory it is unpacked into
    #[error("invalid symlink {path:?} -> {target:?}")]
    SymlinkEscape {
        /// the entry path
        path: String,
        /// the link target
        target: String,
    },
    /// a device node in a copy
    #[error("entry {path:?} is a device node, which a copy does not create")]
    DeviceRefused {
        /// the entry path
        path: String,
    },
    /// a copy would replace a directory with a non-directory, or the other way round
    #[error("cannot overwrite {existing} {path:?} with {new}")]
    WouldReplace {
        /// the entry path
        path: String,
        /// what is there ("directory" or "non-directory")
        existing: &'static str,
        /// what the entry is
        new: &'static str,
    },
    /// a hardlink target is invalid
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    HardlinkTarget {
        /// the entry path
        path: String,
        /// the link target
        target: String,
        /// why it was refused
        reason: &'static str,
    },
    /// uid or gid out of range
    #[error("entry {path:?} has out-of-range owner {uid}:{gid}")]
    IdOverflow {
        /// the entry path
        path: String,
        /// the uid
        uid: u64,
        /// the gid
        gid: u64,
    },
    /// device numbers out of range
    #[error("entry {path:?} has out-of-range device {major}:{minor}")]
    DeviceOverflow {
        /// the entry path
        path: String,
        /// the major
        major: u64,
        /// the minor
        minor: u64,
    },
    /// an xattr the layer may not set (overlayfs' own)
    #[error("entry {path:?} sets forbidden xattr {name:?}")]
    ForbiddenXattr {
        /// the entry path
        path: String,
        /// the xattr name
        name: String,
    },
    /// uncompressed stream exceeds the limit
    #[error("layer exceeds {limit} uncompressed bytes")]
    TooLarge {
        /// the limit
        limit: u64,
    },
    /// too many entries
    #[error("layer has more than {limit} entries")]
    TooManyEntries {
        /// the limit
        limit: u64,
    },
    /// uncompressed digest does not match the config's diff_id
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// from the config
        expected: Digest,
        /// computed
        actual: Digest,
    },
    /// a filesystem operation failed
    #[error("{op} {path:?}")]
    Fs {
        /// the operation
        op: &'static str,
        /// the entry path
        path: String,
        /// the error
        #[source]
        source: io::Error,
    },
}

fn fs_err(op: &'static str, path: &[u8]) -> impl FnOnce(Errno) -> LayerError {
    let path = lossy(path);
    move |e| LayerError::Fs {
        op,
        path,
        source: io::Error::from(e),
    }
}

/// The largest write [`copy_in_chunks`] makes.
const WRITE_CHUNK: u64 = 1 << 20;

/// Copies `size` bytes of `from` into `to` in writes of up to [`WRITE_CHUNK`] bytes, each filled
/// from as many reads as it takes. `io::copy`'s 8 KiB buffer turned a large file from a request
/// body, whose reads return what one HTTP frame holds, into thousands of small writes.
fn copy_in_chunks(from: &mut impl Read, to: &mut File, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; usize::try_from(size.clamp(1, WRITE_CHUNK)).unwrap_or(1)];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        to.write_all(&buf[..filled])?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Compression of a layer blob, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// plain tar
    None,
    /// gzip
    Gzip,
    /// zstd
    Zstd,
}

/// Wraps a (possibly compressed) layer stream into a decompressed reader.
///
/// # Errors
/// I/O errors of peeking at the stream or starting the zstd decoder.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::read::MultiGzDecoder::new(r)),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        ))
    } else {
        Ok((Compression::None, Box::new(r)))
    }
}

/// A reader that fails once more than `limit` bytes have passed.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(LimitExceeded));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Splits an entry path into clean components: empty and `.` components dropped, a leading
/// `/` contained, `..` refused.
fn clean(path: &[u8]) -> Result<Vec<&[u8]>, LayerError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(LayerError::PathEscape { path: lossy(path) }),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(c: &[&[u8]]) -> Vec<u8> {
    c.join(&b'/')
}

fn os(p: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(p))
}

/// The state of one application.
struct Applier {
    root: OwnedFd,
    lowers: Vec<OwnedFd>,
    mode: WhiteoutMode,
    copy: Option<CopyRules>,
    created: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, i64, u32)>,
}

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_NO_SYMLINKS;

/// Applies one layer from `stream` (tar, tar+gzip or tar+zstd) into the directory `root`.
///
/// # Errors
/// A [`LayerError`] for every refused entry or failed operation; on error the directory is left
/// partially written and must be discarded by the caller.
#[tracing::instrument(skip(stream, opts), fields(root = %root.display()))]
pub fn apply_layer<R: Read>(
    root: &Path,
    stream: R,
    opts: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let open_dir = |p: &Path| {
        nix::fcntl::open(
            p,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fs_err("open root", p.as_os_str().as_bytes()))
    };
    let ap = Applier {
        root: open_dir(root)?,
        lowers: opts
            .lowers
            .iter()
            .map(|p| open_dir(p))
            .collect::<Result<_, _>>()?,
        mode: opts.whiteouts,
        copy: None,
        created: HashSet::new(),
        dir_times: Vec::new(),
    };
    let u = ap.run(stream, opts)?;
    Ok(Applied {
        diff_id: u
            .diff_id
            .ok_or_else(|| LayerError::Stream(io::Error::other("a layer is always hashed")))?,
        size: u.size,
        entries: u.entries,
    })
}

/// What a copy unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Bytes of the archive.
    pub size: u64,
    /// Entries in it.
    pub entries: u64,
}

/// Unpacks an archive that is not a layer (`docker cp`) into the open directory `dir`, with
/// the same hardened reader and the same confinement as a layer (nothing is written outside
/// `dir`, no symlink is followed), under the [`CopyRules`]. `opts.whiteouts`, `opts.lowers` and
/// `opts.expected_diff_id` do not apply, and the stream is not hashed.
///
/// # Errors
/// As [`apply_layer`], and the refusals of [`CopyRules`]; what was unpacked before the error
/// stays.
pub fn unpack_into_dir<R: Read>(
    dir: OwnedFd,
    stream: R,
    rules: CopyRules,
    opts: &ApplyOptions,
) -> Result<Copied, LayerError> {
    let ap = Applier {
        root: dir,
        lowers: Vec::new(),
        mode: WhiteoutMode::Literal,
        copy: Some(rules),
        created: HashSet::new(),
        dir_times: Vec::new(),
    };
    let u = ap.run(stream, opts)?;
    Ok(Copied {
        size: u.size,
        entries: u.entries,
    })
}

impl Applier {
    /// Unpacks `stream`; hashes it (the diff_id) for a layer, not for a copy.
    fn run<R: Read>(mut self, stream: R, opts: &ApplyOptions) -> Result<Unpacked, LayerError> {
        let ap = &mut self;
        let (_, plain) = decompress(stream).map_err(LayerError::Stream)?;
        let bounded = Bounded {
            inner: plain,
            left: opts.max_uncompressed,
        };
        let hashing = Counted {
            inner: bounded,
            hasher: ap.copy.is_none().then(|| Algorithm::Sha256.hasher()),
            count: 0,
        };
        let mut reader = Reader::new(hashing, opts.tar);
        let limit = opts.max_uncompressed;
        let map_tar = |e: TarError| match e {
            TarError::Io(io) if is_limit(&io) => LayerError::TooLarge { limit },
            e => LayerError::Tar(e),
        };
        let mut entries = 0u64;
        while let Some(mut entry) = reader.next_entry().map_err(map_tar)? {
            entries += 1;
            if let Some((uid, gid)) = ap.copy.and_then(|c| c.owner) {
                entry.uid = u64::from(uid);
                entry.gid = u64::from(gid);
            }
            if entries > opts.max_entries {
                return Err(LayerError::TooManyEntries {
                    limit: opts.max_entries,
                });
            }
            ap.entry(&entry, &mut reader).map_err(|e| match e {
                LayerError::Fs { source, .. } if is_limit(&source) => {
                    LayerError::TooLarge { limit }
                }
                e => e,
            })?;
        }
        // The diff_id covers the whole uncompressed stream, trailing zero blocks included.
        let mut hashing = reader.into_inner();
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| {
            if is_limit(&e) {
                LayerError::TooLarge { limit }
            } else {
                LayerError::Stream(e)
            }
        })?;
        let size = hashing.count;
        let diff_id = hashing.hasher.map(Hasher::finish);
        ap.finish_dir_times()?;
        if let (Some(expected), Some(actual)) = (&opts.expected_diff_id, &diff_id) {
            if expected != actual {
                return Err(LayerError::DiffIdMismatch {
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
            }
        }
        tracing::debug!(?diff_id, size, entries, "unpacked");
        Ok(Unpacked {
            diff_id,
            size,
            entries,
        })
    }
}

/// What [`Applier::run`] read.
struct Unpacked {
    /// The sha256 of the stream, for a layer.
    diff_id: Option<Digest>,
    size: u64,
    entries: u64,
}

/// A reader that counts what passes, and hashes it when given a hasher.
struct Counted<R> {
    inner: R,
    hasher: Option<Hasher>,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

impl Applier {
    fn entry<R: Read>(&mut self, e: &Entry, reader: &mut Reader<R>) -> Result<(), LayerError> {
        let comps = clean(&e.path)?;
        let path = join(&comps);
        if e.uid >= u64::from(u32::MAX) || e.gid >= u64::from(u32::MAX) {
            return Err(LayerError::IdOverflow {
                path: lossy(&e.path),
                uid: e.uid,
                gid: e.gid,
            });
        }
        for (name, _) in &e.xattrs {
            if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
                return Err(LayerError::ForbiddenXattr {
                    path: lossy(&e.path),
                    name: name.clone(),
                });
            }
        }
        let Some((&name, parent)) = comps.split_last() else {
            if self.copy.is_some() {
                // dockerd's Untar leaves an existing directory's `.` as it is.
                return Ok(());
            }
            // The root itself: only its directory metadata may change.
            if e.kind != Kind::Directory {
                return Err(LayerError::ReplaceRoot {
                    path: lossy(&e.path),
                });
            }
            let fd = self.root.try_clone().map_err(|err| LayerError::Fs {
                op: "dup root",
                path: ".".into(),
                source: err,
            })?;
            self.set_meta_fd(fd, e, b".")?;
            self.dir_times.push((Vec::new(), e.mtime, e.mtime_nsec));
            return Ok(());
        };
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if self.mode != WhiteoutMode::Literal {
                return self.whiteout(parent, target, &e.path);
            }
        }
        if self.copy.is_some() {
            copy_checks(parent, e)?;
        }
        let dir = self.ensure_dir(parent, &e.path)?;
        let existing = stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let mut replaced_whiteout = false;
        let mut exists = existing.is_some();
        if let Some(st) = existing {
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            let is_wh = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                && st.st_rdev == 0;
            if self.copy.is_some_and(|c| c.no_overwrite_dir_non_dir) {
                let new_dir = e.kind == Kind::Directory;
                if is_dir != new_dir {
                    let what = |d: bool| if d { "directory" } else { "non-directory" };
                    return Err(LayerError::WouldReplace {
                        path: lossy(&e.path),
                        existing: what(is_dir),
                        new: what(new_dir),
                    });
                }
            }
            if !(is_dir && e.kind == Kind::Directory) {
                if e.kind == Kind::HardLink
                    && clean(&e.link).ok().map(|c| join(&c)) == Some(path.clone())
                {
                    return Ok(());
                }
                remove_all_at(dir.as_fd(), name).map_err(fs_err("remove", &e.path))?;
                exists = false;
                replaced_whiteout = is_wh && self.mode == WhiteoutMode::Overlay;
            }
        }
        let perm = Mode::from_bits_truncate(e.mode & 0o777);
        match e.kind {
            Kind::Directory => {
                if !exists {
                    stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o700))
                        .map_err(fs_err("mkdir", &e.path))?;
                }
                let fd = nix::fcntl::openat(
                    &dir,
                    name,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fs_err("open dir", &e.path))?;
                if replaced_whiteout {
                    // The lower directory of that name was whited out: keep it hidden.
                    set_fd_xattr(&fd, OVERLAY_OPAQUE_XATTR, b"y").map_err(|err| {
                        LayerError::Fs {
                            op: "set opaque",
                            path: lossy(&e.path),
                            source: err,
                        }
                    })?;
                }
                self.set_meta_fd(fd, e, &e.path)?;
                self.dir_times.push((path.clone(), e.mtime, e.mtime_nsec));
            }
            Kind::File => {
                let fd = nix::fcntl::openat(
                    &dir,
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(fs_err("create", &e.path))?;
                let mut f = File::from(fd);
                copy_in_chunks(&mut reader.data(), &mut f, e.size).map_err(|err| {
                    LayerError::Fs {
                        op: "write",
                        path: lossy(&e.path),
                        source: err,
                    }
                })?;
                self.set_meta_fd(OwnedFd::from(f), e, &e.path)?;
            }
            Kind::Symlink => {
                unistd::symlinkat(os(&e.link), &dir, name).map_err(fs_err("symlink", &e.path))?;
                self.set_meta_at(&dir, name, e)?;
            }
            Kind::HardLink => self.hardlink(&dir, name, e)?,
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let kind = match e.kind {
                    Kind::CharDevice => SFlag::S_IFCHR,
                    Kind::BlockDevice => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                // Linux dev_t as the kernel keeps it: 12-bit major, 20-bit minor.
                if e.dev_major > 0xfff || e.dev_minor > 0xf_ffff {
                    return Err(LayerError::DeviceOverflow {
                        path: lossy(&e.path),
                        major: e.dev_major,
                        minor: e.dev_minor,
                    });
                }
                let dev = if kind == SFlag::S_IFIFO {
                    0
                } else {
                    stat::makedev(e.dev_major, e.dev_minor)
                };
                stat::mknodat(&dir, name, kind, perm, dev).map_err(fs_err("mknod", &e.path))?;
                self.set_meta_at(&dir, name, e)?;
            }
        }
        self.created.insert(path);
        Ok(())
    }

    /// Opens the directory `comps` below the root, creating missing directories (with the
    /// metadata of the same directory in a lower layer, if any). Symlinks are never followed.
    fn ensure_dir(&mut self, comps: &[&[u8]], entry: &[u8]) -> Result<OwnedFd, LayerError> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
        let path = join(comps);
        match open_in_root_with(self.root.as_fd(), os(&path), flags, Mode::empty(), RESOLVE) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            // Maybe a whiteout of this layer in the way (handled below), maybe a file.
            Err(Errno::ENOTDIR) if self.mode == WhiteoutMode::Overlay => {}
            Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => {
                return Err(LayerError::ThroughSymlink { path: lossy(entry) })
            }
            Err(e) => return Err(fs_err("open parent", entry)(e)),
        }
        let mut cur = self.root.try_clone().map_err(|err| LayerError::Fs {
            op: "dup root",
            path: lossy(entry),
            source: err,
        })?;
        for (i, &c) in comps.iter().enumerate() {
            let next = nix::fcntl::openat(
                &cur,
                c,
                flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            );
            cur = match next {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let prefix = join(&comps[..=i]);
                    let (mode, uid, gid) = self.lower_dir_meta(&prefix).unwrap_or((0o755, 0, 0));
                    stat::mkdirat(&cur, c, Mode::from_bits_truncate(0o700))
                        .map_err(fs_err("mkdir", entry))?;
                    let fd = nix::fcntl::openat(
                        &cur,
                        c,
                        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(fs_err("open dir", entry))?;
                    unistd::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                        .map_err(fs_err("chown", entry))?;
                    stat::fchmod(&fd, Mode::from_bits_truncate(mode))
                        .map_err(fs_err("chmod", entry))?;
                    fd
                }
                Err(Errno::ENOTDIR) if self.is_whiteout_at(&cur, c) => {
                    // `.wh.a` then `a/b` in one layer: `a` is re-created, hiding the lower `a`.
                    unistd::unlinkat(&cur, c, UnlinkatFlags::NoRemoveDir)
                        .map_err(fs_err("remove whiteout", entry))?;
                    stat::mkdirat(&cur, c, Mode::from_bits_truncate(0o755))
                        .map_err(fs_err("mkdir", entry))?;
                    let fd = nix::fcntl::openat(
                        &cur,
                        c,
                        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(fs_err("open dir", entry))?;
                    set_fd_xattr(&fd, OVERLAY_OPAQUE_XATTR, b"y").map_err(|err| {
                        LayerError::Fs {
                            op: "set opaque",
                            path: lossy(entry),
                            source: err,
                        }
                    })?;
                    fd
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(LayerError::ThroughSymlink { path: lossy(entry) })
                }
                Err(e) => return Err(fs_err("open parent", entry)(e)),
            };
        }
        Ok(cur)
    }

    fn is_whiteout_at(&self, dir: &OwnedFd, name: &[u8]) -> bool {
        self.mode == WhiteoutMode::Overlay
            && stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                    && st.st_rdev == 0
            })
    }

    fn lower_dir_meta(&self, path: &[u8]) -> Option<(u32, u32, u32)> {
        for l in &self.lowers {
            if let Ok(fd) = open_in_root_with(
                l.as_fd(),
                os(path),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
                RESOLVE,
            ) {
                let st = stat::fstat(&fd).ok()?;
                return Some((st.st_mode & 0o7777, st.st_uid, st.st_gid));
            }
        }
        None
    }

    fn whiteout(
        &mut self,
        parent: &[&[u8]],
        target: &[u8],
        entry: &[u8],
    ) -> Result<(), LayerError> {
        if target == b".wh..opq" {
            let dir = self.ensure_dir(parent, entry)?;
            return match self.mode {
                WhiteoutMode::Overlay => {
                    set_fd_xattr(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(|err| LayerError::Fs {
                        op: "set opaque",
                        path: lossy(entry),
                        source: err,
                    })
                }
                WhiteoutMode::Literal => Ok(()),
                WhiteoutMode::Delete => {
                    // image-spec: the opaque marker hides the lower layers' children only.
                    let prefix = join(parent);
                    let names = list_dir(&dir).map_err(fs_err("list", entry))?;
                    for n in names {
                        let child = if prefix.is_empty() {
                            n.clone()
                        } else {
                            [&prefix[..], b"/", &n].concat()
                        };
                        if !self.created.contains(&child) {
                            remove_all_at(dir.as_fd(), &n[..]).map_err(fs_err("remove", entry))?;
                        }
                    }
                    Ok(())
                }
            };
        }
        if target.starts_with(b".wh.") {
            // Other `.wh..wh.` names are aufs bookkeeping (hardlink dirs): nothing to apply.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(LayerError::WhiteoutEscape { path: lossy(entry) });
        }
        let mut full = parent.to_vec();
        full.push(target);
        let path = join(&full);
        if self.created.contains(&path) {
            // image-spec: a whiteout never hides an entry of its own layer.
            return Ok(());
        }
        let dir = self.ensure_dir(parent, entry)?;
        match remove_all_at(dir.as_fd(), target) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(fs_err("remove", entry)(e)),
        }
        if self.mode == WhiteoutMode::Overlay {
            stat::mknodat(
                &dir,
                target,
                SFlag::S_IFCHR,
                Mode::empty(),
                stat::makedev(0, 0),
            )
            .map_err(fs_err("mknod whiteout", entry))?;
        }
        Ok(())
    }

    fn hardlink(&mut self, dir: &OwnedFd, name: &[u8], e: &Entry) -> Result<(), LayerError> {
        let refuse = |reason| LayerError::HardlinkTarget {
            path: lossy(&e.path),
            target: lossy(&e.link),
            reason,
        };
        let tcomps = clean(&e.link).map_err(|_| refuse("target escapes the root"))?;
        let Some((&tname, tparent)) = tcomps.split_last() else {
            return Err(refuse("target is the root"));
        };
        let tdir = match open_in_root_with(
            self.root.as_fd(),
            os(&join(tparent)),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT) => None,
            Err(_) => return Err(refuse("target goes through a symlink")),
        };
        let in_upper = tdir
            .as_ref()
            .and_then(|d| stat::fstatat(d, tname, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok());
        let tdir = match in_upper {
            Some(st) => {
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    return Err(refuse("target is a directory"));
                }
                tdir.ok_or_else(|| refuse("target vanished"))?
            }
            None => self
                .copy_up(tparent, tname, e)
                .ok_or_else(|| refuse("target does not exist"))??,
        };
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target.
        unistd::linkat(&tdir, tname, dir, name, nix::fcntl::AtFlags::empty())
            .map_err(fs_err("link", &e.path))
    }

    /// Copies a regular file of a lower layer into the upper directory so that a hardlink to it
    /// can be made there (overlay mode only).
    fn copy_up(
        &mut self,
        tparent: &[&[u8]],
        tname: &[u8],
        e: &Entry,
    ) -> Option<Result<OwnedFd, LayerError>> {
        let mut full = tparent.to_vec();
        full.push(tname);
        let tpath = join(&full);
        let src = self.lowers.iter().find_map(|l| {
            open_in_root_with(
                l.as_fd(),
                os(&tpath),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW,
                Mode::empty(),
                RESOLVE,
            )
            .ok()
        })?;
        let st = stat::fstat(&src).ok()?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return None;
        }
        Some((|| {
            let dir = self.ensure_dir(tparent, &e.path)?;
            let fd = nix::fcntl::openat(
                &dir,
                tname,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(fs_err("copy up", &e.path))?;
            let mut out = File::from(fd);
            io::copy(&mut File::from(src), &mut out).map_err(|err| LayerError::Fs {
                op: "copy up",
                path: lossy(&e.path),
                source: err,
            })?;
            unistd::fchown(
                &out,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )
            .map_err(fs_err("chown", &e.path))?;
            stat::fchmod(&out, Mode::from_bits_truncate(st.st_mode & 0o7777))
                .map_err(fs_err("chmod", &e.path))?;
            let t = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
            stat::futimens(&out, &t, &t).map_err(fs_err("utimes", &e.path))?;
            Ok(dir)
        })())
    }

    /// Owner, mode (after chown, which clears setuid), xattrs (after chown, which clears
    /// security.capability), mtime.
    fn set_meta_fd(&self, fd: OwnedFd, e: &Entry, path: &[u8]) -> Result<(), LayerError> {
        unistd::fchown(
            &fd,
            Some(Uid::from_raw(e.uid as u32)),
            Some(Gid::from_raw(e.gid as u32)),
        )
        .map_err(fs_err("chown", path))?;
        stat::fchmod(&fd, Mode::from_bits_truncate(e.mode & 0o7777))
            .map_err(fs_err("chmod", path))?;
        for (k, v) in &e.xattrs {
            set_fd_xattr(&fd, k, v).map_err(|err| LayerError::Fs {
                op: "setxattr",
                path: lossy(path),
                source: err,
            })?;
        }
        if e.kind != Kind::Directory {
            let t = TimeSpec::new(e.mtime, i64::from(e.mtime_nsec));
            stat::futimens(&fd, &t, &t).map_err(fs_err("utimes", path))?;
        }
        Ok(())
    }

    fn set_meta_at(&self, dir: &OwnedFd, name: &[u8], e: &Entry) -> Result<(), LayerError> {
        unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(e.uid as u32)),
            Some(Gid::from_raw(e.gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(fs_err("chown", &e.path))?;
        if !e.xattrs.is_empty() {
            // No fd can carry setxattr for a symlink or device node: name it through the parent's
            // fd; `name` is a single component and lsetxattr does not follow it.
            let p = crate::sys::openat2::proc_fd_path(dir).join(os(name));
            for (k, v) in &e.xattrs {
                xattr::set(&p, k, v).map_err(|err| LayerError::Fs {
                    op: "setxattr",
                    path: lossy(&e.path),
                    source: err,
                })?;
            }
        }
        let t = TimeSpec::new(e.mtime, i64::from(e.mtime_nsec));
        stat::utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(fs_err("utimes", &e.path))
    }

    /// Directory mtimes are set last: creating their children changed them.
    fn finish_dir_times(&mut self) -> Result<(), LayerError> {
        for (path, sec, nsec) in self.dir_times.drain(..).rev() {
            let fd = match open_in_root_with(
                self.root.as_fd(),
                os(&path),
                OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                Mode::empty(),
                RESOLVE,
            ) {
                Ok(fd) => fd,
                // Removed later in the same layer (whiteout, replacement): nothing to date.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(fs_err("open dir", &path)(e)),
            };
            let t = TimeSpec::new(sec, i64::from(nsec));
            stat::futimens(&fd, &t, &t).map_err(fs_err("utimes", &path))?;
        }
        Ok(())
    }
}

/// What a copy refuses beyond a layer's rules, as dockerd's `archive.Untar` does: a symlink
/// whose target, taken from the entry's directory, climbs above the directory unpacked into
/// (an absolute target stays below it, as Go's `filepath.Join` reads it); and device nodes.
fn copy_checks(parent: &[&[u8]], e: &Entry) -> Result<(), LayerError> {
    match e.kind {
        Kind::CharDevice | Kind::BlockDevice => Err(LayerError::DeviceRefused {
            path: lossy(&e.path),
        }),
        Kind::Symlink => {
            let mut depth = parent.len();
            for c in e.link.split(|&b| b == b'/') {
                match c {
                    b"" | b"." => {}
                    b".." if depth == 0 => {
                        return Err(LayerError::SymlinkEscape {
                            path: lossy(&e.path),
                            target: lossy(&e.link),
                        })
                    }
                    b".." => depth -= 1,
                    _ => depth += 1,
                }
            }
            Ok(())
        }
        Kind::File | Kind::HardLink | Kind::Directory | Kind::Fifo => Ok(()),
    }
}

fn set_fd_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> io::Result<()> {
    use xattr::FileExt;
    let f = File::from(fd.try_clone()?);
    f.set_xattr(name, value)
}

fn list_dir(dir: &OwnedFd) -> nix::Result<Vec<Vec<u8>>> {
    let d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for ent in d {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, never following a
/// symlink.
///
/// # Errors
/// The errno of the failing call (`ENOENT` if `name` does not exist).
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    match unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for n in list_dir(&sub)? {
        remove_all_at(sub.as_fd(), &n)?;
    }
    drop(sub);
    unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Removes a directory tree by path without following symlinks inside it.
///
/// # Errors
/// I/O errors other than the tree being already absent.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no parent"));
    };
    let dir = nix::fcntl::open(
        parent,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    match remove_all_at(dir.as_fd(), name.as_bytes()) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
