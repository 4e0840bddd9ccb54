//! Readers of the text files the kernel writes about processes, mounts and cgroups: one parser
//! per format, shared by the runtime, the shim and the conformance oracle.
//!
//! - [`proc_cgroup`]: `/proc/<pid>/cgroup` (cgroups(7) "/proc/[pid]/cgroup");
//! - [`mountinfo`]: `/proc/<pid>/mountinfo` (proc(5) "/proc/[pid]/mountinfo");
//! - [`cgroup_file`]: cgroupfs interface files, in the formats of the kernel's cgroup-v2.rst
//!   "Interface Files" (flat keyed, nested keyed, single values, value lists) and v1 blkio's
//!   per-device counters.
//!
//! Each parser takes the file's text and returns a value or a [`Malformed`] naming the line; no
//! input makes one panic (`fuzz/fuzz_targets/kernel_files.rs`).

pub mod cgroup_file;
pub mod mountinfo;
pub mod proc_cgroup;

use std::io;
use std::path::{Path, PathBuf};

/// The longest excerpt of an offending line an error carries.
const EXCERPT: usize = 120;

/// Text the kernel does not write: which line, what it holds and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {content:?}")]
pub struct Malformed {
    /// 1-based line number.
    pub line: usize,
    /// The line (its first characters when long, invalid UTF-8 replaced).
    pub content: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Malformed {
    /// An error for the 1-based `line` whose text is `content`.
    #[must_use]
    pub fn new(line: usize, content: &[u8], reason: &'static str) -> Self {
        let text = String::from_utf8_lossy(content);
        let content = match text.char_indices().nth(EXCERPT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.into_owned(),
        };
        Self {
            line,
            content,
            reason,
        }
    }
}

/// Errors of reading one of these files.
#[derive(Debug, thiserror::Error)]
pub enum KernelFileError {
    /// the file cannot be read
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// the file holds something its format does not allow
    #[error("unexpected content in {path}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Which line, and why.
        #[source]
        source: Malformed,
    },
}

impl KernelFileError {
    /// Whether the file did not exist (a process that is gone, a counter this kernel lacks).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads `path` whole and parses it with `parse`.
///
/// # Errors
/// [`KernelFileError::Read`] when the file cannot be read, [`KernelFileError::Malformed`] when
/// `parse` refuses its content.
pub fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, Malformed>,
) -> Result<T, KernelFileError> {
    let bytes = std::fs::read(path).map_err(|source| KernelFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|source| KernelFileError::Malformed {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read_parsed`], but a file that does not exist is `Ok(None)`: cgroupfs has no file for a
/// controller that is not enabled or a counter this kernel does not keep.
///
/// # Errors
/// As [`read_parsed`], except for a missing file.
pub fn read_optional<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, Malformed>,
) -> Result<Option<T>, KernelFileError> {
    match read_parsed(path, parse) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The lines of `text` with their 1-based numbers; the empty piece after a final newline is not
/// a line.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = body.is_empty();
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, line)| (i + 1, line))
}

/// `line` as UTF-8, or a [`Malformed`] for it.
fn utf8(number: usize, line: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(line).map_err(|_| Malformed::new(number, line, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_the_final_newline_ends_the_last() {
        let got: Vec<(usize, &[u8])> = lines(b"a\nb\n").collect();
        assert_eq!(got, [(1, &b"a"[..]), (2, &b"b"[..])]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 0);
        let got: Vec<(usize, &[u8])> = lines(b"a\n\nb").collect();
        assert_eq!(got, [(1, &b"a"[..]), (2, &b""[..]), (3, &b"b"[..])]);
    }

    #[test]
    fn long_lines_are_cut_in_errors() {
        let e = Malformed::new(3, "é".repeat(500).as_bytes(), "bad");
        assert_eq!(e.content.chars().count(), EXCERPT + 3);
        assert!(e.to_string().starts_with("line 3: bad: "), "{e}");
    }

    #[test]
    fn a_missing_file_is_none_only_for_read_optional() {
        let missing = Path::new("/nonexistent/refeng/kernel_files");
        assert!(matches!(read_optional(missing, |_| Ok(())), Ok(None)));
        let err = read_parsed(missing, |_| Ok(())).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), "x").unwrap();
        let err = read_optional(tmp.path(), |t| {
            Err::<(), _>(Malformed::new(1, t, "always refused"))
        })
        .unwrap_err();
        assert!(
            matches!(&err, KernelFileError::Malformed { source, .. } if source.content == "x"),
            "{err}"
        );
    }
}
