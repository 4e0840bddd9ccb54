//! `/proc/<pid>/cgroup`: the cgroup a process is in, one line per hierarchy,
//! `hierarchy-ID:controller-list:cgroup-path` (cgroups(7) "/proc/[pid]/cgroup"). The v2 hierarchy
//! is the line `0::<path>`; v1 lines list their controllers (`cpu,cpuacct`) or a name
//! (`name=systemd`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::{lines, read_parsed, KernelFileError, Malformed};

/// One line: the process's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The hierarchy id (0 for the v2 unified hierarchy).
    pub hierarchy_id: u32,
    /// The hierarchy's controllers, or its `name=...`; empty for the v2 line.
    pub controllers: Vec<String>,
    /// The cgroup, relative to the root of the hierarchy (or to the reader's cgroup namespace
    /// root: it may then start with `/..`). The path is everything after the second colon, so
    /// it may hold colons itself.
    pub path: PathBuf,
}

impl Membership {
    /// Whether this is the v2 unified hierarchy's line (`0::/...`).
    #[must_use]
    pub fn is_unified(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty()
    }

    /// Whether the hierarchy carries `controller` (a controller name or `name=...`).
    #[must_use]
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The whole file, in the kernel's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// One entry per line.
    pub memberships: Vec<Membership>,
}

impl ProcCgroup {
    /// Parses the text of a `/proc/<pid>/cgroup` file.
    ///
    /// # Errors
    /// A line without two colons, with a hierarchy id that is not a number, an empty name in
    /// the controller list, or a path that does not start with `/`.
    pub fn parse(text: &[u8]) -> Result<Self, Malformed> {
        let mut memberships = Vec::new();
        for (number, line) in lines(text) {
            let bad = |reason| Malformed::new(number, line, reason);
            let mut parts = line.splitn(3, |b| *b == b':');
            let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected hierarchy-ID:controller-list:cgroup-path"));
            };
            let hierarchy_id = std::str::from_utf8(id)
                .ok()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| bad("the hierarchy id is not a number"))?;
            let list =
                std::str::from_utf8(list).map_err(|_| bad("the controller list is not UTF-8"))?;
            let controllers: Vec<String> = if list.is_empty() {
                Vec::new()
            } else {
                list.split(',').map(str::to_owned).collect()
            };
            if controllers.iter().any(String::is_empty) {
                return Err(bad("the controller list has an empty name"));
            }
            if !path.starts_with(b"/") {
                return Err(bad("the cgroup path does not start with /"));
            }
            memberships.push(Membership {
                hierarchy_id,
                controllers,
                path: PathBuf::from(OsString::from_vec(path.to_vec())),
            });
        }
        Ok(Self { memberships })
    }

    /// Reads `/proc/<pid>/cgroup`, or `/proc/self/cgroup` for `None`.
    ///
    /// # Errors
    /// [`KernelFileError::Read`] when the process is gone or the file unreadable,
    /// [`KernelFileError::Malformed`] when a line does not parse.
    pub fn read(pid: Option<u32>) -> Result<Self, KernelFileError> {
        let path = match pid {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/cgroup")),
            None => PathBuf::from("/proc/self/cgroup"),
        };
        Self::read_from(&path)
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// As [`ProcCgroup::read`].
    pub fn read_from(path: &Path) -> Result<Self, KernelFileError> {
        read_parsed(path, Self::parse)
    }

    /// The v2 unified hierarchy's cgroup, if the process has that line.
    #[must_use]
    pub fn unified(&self) -> Option<&Path> {
        self.memberships
            .iter()
            .find(|m| m.is_unified())
            .map(|m| m.path.as_path())
    }

    /// The v1 line of the hierarchy carrying `controller` (or `name=...`).
    #[must_use]
    pub fn v1(&self, controller: &str) -> Option<&Membership> {
        self.memberships.iter().find(|m| m.has(controller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
9:name=systemd:/
4:memory:/process_api/6147f8a6780dc789ff27c7fb3eac0f11
2:cpu,cpuacct:/user.slice
0::/
";

    #[test]
    fn hybrid_lines_parse_into_hierarchies() {
        let p = ProcCgroup::parse(HYBRID.as_bytes()).unwrap();
        assert_eq!(p.memberships.len(), 4);
        assert_eq!(p.memberships[0].controllers, ["name=systemd"]);
        assert_eq!(
            p.v1("memory").unwrap().path,
            Path::new("/process_api/6147f8a6780dc789ff27c7fb3eac0f11")
        );
        assert_eq!(p.v1("cpuacct").unwrap().hierarchy_id, 2);
        assert!(p.v1("pids").is_none());
        assert_eq!(p.unified(), Some(Path::new("/")));
        assert!(!p.memberships[2].is_unified());
    }

    #[test]
    fn a_path_may_hold_colons_and_spaces() {
        let p = ProcCgroup::parse(b"0::/system.slice/a:b c.scope\n").unwrap();
        assert_eq!(p.unified(), Some(Path::new("/system.slice/a:b c.scope")));
        let p = ProcCgroup::parse(b"3:pids:/x::y").unwrap();
        assert_eq!(p.v1("pids").unwrap().path, Path::new("/x::y"));
    }

    #[test]
    fn a_path_outside_the_namespace_root_is_kept() {
        let p = ProcCgroup::parse(b"0::/../../user.slice\n").unwrap();
        assert_eq!(p.unified(), Some(Path::new("/../../user.slice")));
    }

    #[test]
    fn a_non_utf8_path_is_kept_as_bytes() {
        let p = ProcCgroup::parse(b"0::/a\xffb\n").unwrap();
        assert_eq!(
            p.unified().unwrap().as_os_str().len(),
            4,
            "the byte is kept, not replaced"
        );
    }

    #[test]
    fn empty_text_has_no_memberships() {
        assert_eq!(ProcCgroup::parse(b"").unwrap(), ProcCgroup::default());
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        for (text, line, reason) in [
            (
                "0::/\nnonsense\n",
                2,
                "expected hierarchy-ID:controller-list:cgroup-path",
            ),
            ("x:cpu:/\n", 1, "the hierarchy id is not a number"),
            ("-1:cpu:/\n", 1, "the hierarchy id is not a number"),
            (
                "1:cpu,,pids:/\n",
                1,
                "the controller list has an empty name",
            ),
            (
                "1:cpu:relative\n",
                1,
                "the cgroup path does not start with /",
            ),
            ("0::\n", 1, "the cgroup path does not start with /"),
            (
                "0::/\n\n",
                2,
                "expected hierarchy-ID:controller-list:cgroup-path",
            ),
        ] {
            let err = ProcCgroup::parse(text.as_bytes()).unwrap_err();
            assert_eq!((err.line, err.reason), (line, reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn own_file_reads() {
        let own = ProcCgroup::read(None).unwrap();
        assert!(!own.memberships.is_empty());
        let gone = ProcCgroup::read(Some(u32::MAX - 1)).unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
    }
}
