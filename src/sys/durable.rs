//! Durable replacement of a whole file: the one way refeng writes a file that must survive a
//! crash and that others read while it may be rewritten (state.json, pid files, the shim's
//! `address` and options, the content store's metadata, snapshot metadata).
//!
//! The steps: a new file with a unique name in the destination's directory (created with
//! `O_EXCL`, so two writers never share it), the content, the mode, `fsync` of the file, `rename`
//! over the destination (atomic: a reader sees the old file or the new one, never a part), and
//! `fsync` of the directory (the rename itself is only durable once the directory is; ext4 and
//! xfs document the same). The temp file is removed on every failure before the rename, also
//! when the content callback panics.
//!
//! The destination's name is replaced: a symlink there is replaced, not followed.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The step of a durable write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the temporary file beside the destination.
    CreateTemp,
    /// Writing the content into the temporary file.
    Write,
    /// Setting the temporary file's mode.
    SetMode,
    /// `fsync` of the temporary file.
    SyncFile,
    /// Renaming the temporary file over the destination.
    Rename,
    /// `fsync` of the directory after the rename (the new content is in place, maybe not durable).
    SyncDir,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::CreateTemp => "create a temporary file",
            Step::Write => "write",
            Step::SetMode => "set the mode",
            Step::SyncFile => "fsync",
            Step::Rename => "rename into place",
            Step::SyncDir => "fsync the directory",
        })
    }
}

/// Why a durable write failed: the destination, the step and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("durable write of {path}: cannot {step}")]
pub struct DurableWriteError {
    /// The destination.
    pub path: PathBuf,
    /// The step that failed.
    pub step: Step,
    /// The error.
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `bytes`, durably, with permission bits `mode` (applied exactly, the
/// umask does not apply).
///
/// # Errors
/// [`DurableWriteError`] naming the step; before [`Step::Rename`] the destination is untouched
/// and no temp file is left; at [`Step::SyncDir`] the new content is in place but its durability
/// is unknown.
pub fn write(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), DurableWriteError> {
    write_with(path, mode, |file| file.write_all(bytes))
}

/// Like [`write`], with the content written by `fill` into the (empty) new file, e.g. a copy
/// from a reader: nothing has to be held in memory.
///
/// # Errors
/// As [`write`]; an error of `fill` is [`Step::Write`].
pub fn write_with<F>(path: &Path, mode: u32, fill: F) -> Result<(), DurableWriteError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let tmp = stage(path, mode, fill)?;
    tmp.persist(path)
        .map_err(|e| failure(path, Step::Rename, e.error))?;
    sync_dir(parent_dir(path)).map_err(|e| failure(path, Step::SyncDir, e))
}

/// Replaces several files of one directory `dir` (name, mode, content), each as [`write`]
/// does, with one `fsync` of the directory after all the renames instead of one per file: for
/// a set written together, such as a container's `hosts`, `hostname` and `resolv.conf`.
///
/// # Errors
/// As [`write`], for the first file that fails; the files before it are replaced (durable only
/// when the error is not at [`Step::SyncDir`]), the ones after it are untouched.
pub fn write_all_in(dir: &Path, files: &[(&str, u32, &[u8])]) -> Result<(), DurableWriteError> {
    let mut staged = Vec::with_capacity(files.len());
    for &(name, mode, bytes) in files {
        let path = dir.join(name);
        let tmp = stage(&path, mode, |f| f.write_all(bytes))?;
        staged.push((path, tmp));
    }
    let Some(last) = staged.last().map(|(p, _)| p.clone()) else {
        return Ok(());
    };
    for (path, tmp) in staged {
        tmp.persist(&path)
            .map_err(|e| failure(&path, Step::Rename, e.error))?;
    }
    sync_dir(dir).map_err(|e| failure(&last, Step::SyncDir, e))
}

fn failure(path: &Path, step: Step, source: io::Error) -> DurableWriteError {
    DurableWriteError {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// The new content of `path` in a synced temp file beside it, not yet renamed into place.
fn stage<F>(path: &Path, mode: u32, fill: F) -> Result<tempfile::NamedTempFile, DurableWriteError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let fail = |step| move |source| failure(path, step, source);
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
        .map_err(fail(Step::CreateTemp))?;
    // A dot name so that directory listings (`ids`, GC walks) skip it; random, created with
    // O_EXCL and retried on a collision by tempfile. Removed when dropped before the rename.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(fail(Step::CreateTemp))?;
    fill(tmp.as_file_mut()).map_err(fail(Step::Write))?;
    // fchmod rather than the open mode: the umask would otherwise decide.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(fail(Step::SetMode))?;
    tmp.as_file().sync_all().map_err(fail(Step::SyncFile))?;
    Ok(tmp)
}

/// `fsync` of a directory: makes the entries created, renamed or removed in it durable.
///
/// # Errors
/// Opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts writing `len` bytes of `file` from `offset` back to the disk, without waiting for
/// them (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). A hint that makes a later `fsync` of a
/// large file short, since most of it is on its way by then; it promises no durability itself.
/// Failures are ignored for the same reason: the `fsync` that follows reports them.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the fd is open for `file`'s lifetime, which covers the call; the kernel only
    // reads the arguments and touches no memory of ours.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// The directory a destination lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_content_and_applies_the_mode_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old content that is longer").unwrap();
        // 0o666 would be 0o644 under the usual umask if the mode went through open(2).
        for mode in [0o600, 0o666, 0o640] {
            write(&path, mode, b"new").unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, mode);
        }
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("address");
        std::fs::write(&path, "old").unwrap();
        let err = write_with(&path, 0o644, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(err.step, Step::Write);
        assert_eq!(err.path, path);
        assert_eq!(
            err.to_string(),
            format!("durable write of {}: cannot write", path.display())
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["address"]);
    }

    #[test]
    fn a_panicking_writer_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let caught = std::panic::catch_unwind(|| {
            let _ = write_with(&path, 0o644, |_| panic!("writer panicked"));
        });
        assert!(caught.is_err());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_refused_rename_leaves_the_destination_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.pid");
        std::fs::create_dir_all(path.join("occupied")).unwrap();
        let err = write(&path, 0o644, b"42").unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert!(path.join("occupied").is_dir());
        assert_eq!(names(dir.path()), ["init.pid"]);
    }

    #[test]
    fn a_missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone/state.json");
        let err = write(&path, 0o600, b"{}").unwrap_err();
        assert_eq!(err.step, Step::CreateTemp);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("gone/state.json"), "{err}");
    }

    #[test]
    fn a_symlink_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(&link, 0o644, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"new");
    }

    /// Writers racing on one destination (two shim starts, two `exec --pid-file`) never share a
    /// temp file, never fail, and a reader only ever sees one writer's whole content.
    #[test]
    fn concurrent_writers_never_collide_and_readers_never_see_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        // Sizes past one page, so a torn file would be visible as a wrong length.
        let contents: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![b'a' + i; 1000 + 9000 * usize::from(i)])
            .collect();
        std::thread::scope(|s| {
            for content in &contents {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..150 {
                        write(path, 0o644, content).expect("durable write");
                    }
                });
            }
            let (path, contents) = (&path, &contents);
            s.spawn(move || {
                for _ in 0..600 {
                    match std::fs::read(path) {
                        Ok(got) => assert!(contents.contains(&got), "torn: {} bytes", got.len()),
                        Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
                    }
                }
            });
        });
        assert!(contents.contains(&std::fs::read(&path).unwrap()));
        assert_eq!(names(dir.path()), ["shared"]);
    }

    #[test]
    fn a_set_of_files_is_replaced_together_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), "old hosts, longer than the new").unwrap();
        write_all_in(
            dir.path(),
            &[
                ("hosts", 0o644, b"h"),
                ("hostname", 0o600, b"n"),
                ("resolv.conf", 0o640, b"r"),
            ],
        )
        .unwrap();
        for (name, mode, content) in [("hosts", 0o644, "h"), ("hostname", 0o600, "n")] {
            let p = dir.path().join(name);
            assert_eq!(std::fs::read_to_string(&p).unwrap(), content);
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, mode);
        }
        assert_eq!(names(dir.path()), ["hostname", "hosts", "resolv.conf"]);
        write_all_in(dir.path(), &[]).unwrap();
    }

    #[test]
    fn a_set_whose_later_file_cannot_be_staged_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), "old").unwrap();
        // A file in a directory that does not exist: staging fails before any rename.
        let err = write_all_in(
            dir.path(),
            &[("hosts", 0o644, b"new"), ("gone/f", 0o644, b"x")],
        )
        .unwrap_err();
        assert_eq!(err.step, Step::CreateTemp);
        assert_eq!(std::fs::read(dir.path().join("hosts")).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["hosts"]);
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("pid")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/run/x/pid")), Path::new("/run/x"));
    }
}
