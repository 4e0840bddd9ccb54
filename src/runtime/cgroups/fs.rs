//! cgroupfs file access shared by both drivers: writing a setting (mapping a missing file to
//! "unsupported on this host"), reading values and pid lists, making and removing directories.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;

use super::CgroupError;
use crate::sys::kernel_files::{self, cgroup_file};

/// Writes `value` to `path`.
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Writes the setting `file` in `dir` for the runtime-spec `field`; a file this kernel does not
/// provide becomes [`CgroupError::Unsupported`] naming the field, never a silent skip.
pub(super) fn write_setting(
    dir: &Path,
    file: &str,
    value: &str,
    field: &str,
) -> Result<(), CgroupError> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(CgroupError::Unsupported {
            field: field.to_owned(),
            reason: format!("{} does not exist on this host", path.display()),
        });
    }
    write(&path, value)
}

/// Reads `path` with surrounding whitespace trimmed.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a `cgroup.procs` file.
pub(super) fn read_pids(path: &Path) -> Result<Vec<Pid>, CgroupError> {
    let pids = kernel_files::read_parsed(path, cgroup_file::list::<i32>)?;
    Ok(pids.into_iter().map(Pid::from_raw).collect())
}

/// Creates `dir` and its missing parents; returns whether `dir` itself was new.
pub(super) fn mkdir_all(dir: &Path) -> Result<bool, CgroupError> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|source| CgroupError::Mkdir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(true)
}

/// How often rmdir is tried on a busy cgroup; the delay doubles from 10ms (about 0.6s total),
/// enough for processes that were just killed to be reaped from the cgroup.
const RMDIR_ATTEMPTS: u32 = 6;

/// Removes the cgroup `dir` and the sub-cgroups below it, deepest first. A missing directory is
/// fine; a busy one is retried.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for child in children {
        remove_tree(&child)?;
    }
    rmdir_retrying(dir)
}

fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => {
                tracing::debug!(path = %dir.display(), "removed cgroup");
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                tracing::debug!(path = %dir.display(), attempt, "cgroup busy, retrying rmdir");
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    attempts: attempt,
                    source,
                })
            }
        }
    }
}

/// Polls `check` until it returns `Some`, for up to about five seconds.
pub(super) fn wait_until<T>(
    mut check: impl FnMut() -> Result<Option<T>, CgroupError>,
) -> Result<Option<T>, CgroupError> {
    let mut delay = Duration::from_micros(100);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_read_and_garbage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("cgroup.procs");
        std::fs::write(&p, "1\n22\n").unwrap();
        assert_eq!(
            read_pids(&p).unwrap(),
            vec![Pid::from_raw(1), Pid::from_raw(22)]
        );
        std::fs::write(&p, "1\nx\n").unwrap();
        assert!(matches!(read_pids(&p), Err(CgroupError::KernelFile(_))));
    }

    #[test]
    fn remove_tree_removes_nested_dirs_and_tolerates_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = tmp.path().join("leaf");
        std::fs::create_dir_all(leaf.join("a/b")).unwrap();
        std::fs::create_dir_all(leaf.join("c")).unwrap();
        remove_tree(&leaf).unwrap();
        assert!(!leaf.exists());
        assert!(tmp.path().exists(), "the parent must stay");
        remove_tree(&leaf).unwrap();
    }
}
