//! Cgroup path resolution: `linux.cgroupsPath` (absolute, relative or absent) to one normalized
//! absolute path below the hierarchy roots, and the checks every operation repeats on a path
//! loaded from persisted state.

use std::path::{Component, Path, PathBuf};

use super::{CgroupError, PROC_SELF_CGROUP};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;

/// How to find the calling process's own cgroup for one hierarchy in `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwnSource {
    /// Controllers of a v1 hierarchy (`["cpu", "cpuacct"]`); empty for the v2 `0::` line.
    pub controllers: Vec<String>,
    /// The mount's root inside the hierarchy (mountinfo field 4), stripped from the own path so
    /// that the result is relative to the mount point.
    pub mount_root: PathBuf,
}

impl OwnSource {
    /// The v2 unified hierarchy mounted at its root.
    pub fn unified() -> Self {
        Self {
            controllers: Vec::new(),
            mount_root: PathBuf::from("/"),
        }
    }

    fn label(&self) -> String {
        if self.controllers.is_empty() {
            "unified".to_owned()
        } else {
            self.controllers.join(",")
        }
    }

    /// This source's own cgroup from `/proc/self/cgroup`, relative to the mount point.
    fn own_path(&self, proc_cgroup: &ProcCgroup) -> Option<PathBuf> {
        let path = if self.controllers.is_empty() {
            proc_cgroup.unified()?
        } else {
            &proc_cgroup
                .memberships
                .iter()
                .find(|m| self.controllers.iter().any(|c| m.has(c)))?
                .path
        };
        Some(match path.strip_prefix(&self.mount_root) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => path.to_path_buf(),
        })
    }
}

/// Resolves `cgroups_path` in each hierarchy of `sources` to a normalized absolute path below
/// that hierarchy's root: an absolute path as given, the same in every hierarchy; a relative one
/// below the calling process's own cgroup in each hierarchy (`proc_cgroup` is
/// `/proc/self/cgroup`, needed only then); `/<id>` when absent.
///
/// A relative path stays below the caller's cgroup: like runc (`utils.CleanPath`), `..` at its
/// start stops there instead of climbing out. One path per source, in order.
pub(super) fn resolve(
    cgroups_path: Option<&Path>,
    id: &str,
    proc_cgroup: Option<&ProcCgroup>,
    sources: &[OwnSource],
) -> Result<Vec<PathBuf>, CgroupError> {
    let joined: Vec<PathBuf> = match cgroups_path {
        None => {
            let id_path = Path::new(id);
            let single = id_path.components().count() == 1
                && matches!(id_path.components().next(), Some(Component::Normal(_)));
            if !single {
                return Err(CgroupError::InvalidPath {
                    path: id_path.to_path_buf(),
                    reason: "a container id used as cgroup name must be one path component",
                });
            }
            vec![Path::new("/").join(id_path); sources.len().max(1)]
        }
        Some(p) if p.is_absolute() => vec![p.to_path_buf(); sources.len().max(1)],
        Some(p) => {
            let below = clamped(p);
            if below.as_os_str().is_empty() {
                return Err(CgroupError::InvalidPath {
                    path: p.to_path_buf(),
                    reason: "a relative cgroups path must name a cgroup below the caller's own",
                });
            }
            if sources.is_empty() {
                return Err(CgroupError::InvalidPath {
                    path: p.to_path_buf(),
                    reason: "no hierarchy to resolve a relative path against",
                });
            }
            let empty = ProcCgroup::default();
            let own = proc_cgroup.unwrap_or(&empty);
            sources
                .iter()
                .map(|source| {
                    let base =
                        source
                            .own_path(own)
                            .ok_or_else(|| CgroupError::OwnCgroupMissing {
                                controller: source.label(),
                                proc_cgroup: PathBuf::from(PROC_SELF_CGROUP),
                            })?;
                    Ok(base.join(&below))
                })
                .collect::<Result<_, CgroupError>>()?
        }
    };
    joined
        .into_iter()
        .map(|joined| {
            let normalized = normalize(&joined)?;
            if normalized.parent().is_none() {
                return Err(CgroupError::InvalidPath {
                    path: joined,
                    reason: "it names the hierarchy root",
                });
            }
            Ok(normalized)
        })
        .collect()
}

/// A relative path cleaned as if it started at a root: `.` dropped, `..` removing the component
/// before it and doing nothing at the start. The result is relative and plain.
fn clamped(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Lexically normalizes an absolute path, refusing `..` that climbs above the root.
fn normalize(path: &Path) -> Result<PathBuf, CgroupError> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(CgroupError::InvalidPath {
                        path: path.to_path_buf(),
                        reason: "`..` escapes the hierarchy root",
                    });
                }
            }
            Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath {
                    path: path.to_path_buf(),
                    reason: "it has a path prefix",
                })
            }
        }
    }
    Ok(out)
}

/// Checks a stored cgroup path (absolute, plain components, not the root) and returns it
/// relative to the hierarchy root, ready to be joined to a mount point.
pub(super) fn checked(path: &Path) -> Result<&Path, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    let rel = path
        .strip_prefix("/")
        .map_err(|_| invalid("a stored cgroup path must be absolute"))?;
    if rel.as_os_str().is_empty() {
        return Err(invalid("it names the hierarchy root"));
    }
    // components() silently drops inner `.` and doubled `/`, so compare with the re-joined form.
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)))
        && rel.components().collect::<PathBuf>().as_os_str() == rel.as_os_str();
    if !plain {
        return Err(invalid("a stored cgroup path must be normalized"));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUP: &str = "\
9:name=systemd:/user.slice
8:pids:/user.slice
4:memory:/user.slice
2:cpu,cpuacct:/user.slice
0::/user.slice/session-1.scope
";

    fn own(text: &str) -> ProcCgroup {
        ProcCgroup::parse(text.as_bytes()).unwrap()
    }

    fn v1(controllers: &[&str], root: &str) -> OwnSource {
        OwnSource {
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            mount_root: PathBuf::from(root),
        }
    }

    fn one(path: &str) -> Vec<PathBuf> {
        vec![PathBuf::from(path)]
    }

    #[test]
    fn absent_path_is_slash_id() {
        assert_eq!(resolve(None, "abc", None, &[]).unwrap(), one("/abc"));
        let sources = [v1(&["cpu"], "/"), v1(&["memory"], "/")];
        assert_eq!(
            resolve(None, "abc", None, &sources).unwrap(),
            [Path::new("/abc"), Path::new("/abc")],
            "one path per hierarchy"
        );
    }

    #[test]
    fn id_with_slash_or_dots_is_refused() {
        for id in ["a/b", "..", ".", ""] {
            assert!(
                matches!(
                    resolve(None, id, None, &[]),
                    Err(CgroupError::InvalidPath { .. })
                ),
                "{id}"
            );
        }
    }

    #[test]
    fn absolute_path_is_normalized_and_kept() {
        let p = resolve(Some(Path::new("/refeng//x/./y/../z")), "id", None, &[]).unwrap();
        assert_eq!(p, one("/refeng/x/z"));
    }

    #[test]
    fn escaping_or_root_paths_are_refused() {
        for p in ["/../x", "/a/../../b", "/", "/a/.."] {
            let err = resolve(Some(Path::new(p)), "id", None, &[]).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{p}: {err}");
        }
    }

    #[test]
    fn relative_path_goes_below_own_v1_cgroup() {
        let sources = [
            v1(&["cpu", "cpuacct"], "/"),
            v1(&["memory"], "/"),
            v1(&["pids"], "/"),
        ];
        let p = resolve(
            Some(Path::new("refeng/c1")),
            "c1",
            Some(&own(PROC_CGROUP)),
            &sources,
        )
        .unwrap();
        assert_eq!(p, [Path::new("/user.slice/refeng/c1"); 3]);
    }

    #[test]
    fn relative_path_strips_the_mount_root() {
        let sources = [v1(&["memory"], "/user.slice")];
        let p = resolve(
            Some(Path::new("c1")),
            "c1",
            Some(&own(PROC_CGROUP)),
            &sources,
        )
        .unwrap();
        assert_eq!(p, one("/c1"));
    }

    #[test]
    fn relative_path_goes_below_own_v2_cgroup() {
        let p = resolve(
            Some(Path::new("c1")),
            "c1",
            Some(&own(PROC_CGROUP)),
            &[OwnSource::unified()],
        )
        .unwrap();
        assert_eq!(p, one("/user.slice/session-1.scope/c1"));
    }

    #[test]
    fn relative_path_stays_below_own_cgroup_like_runc() {
        let src = [OwnSource::unified()];
        let resolved = |p: &str| resolve(Some(Path::new(p)), "c1", Some(&own(PROC_CGROUP)), &src);
        assert_eq!(
            resolved("../../c1").unwrap(),
            one("/user.slice/session-1.scope/c1"),
            "leading .. stops at the caller's cgroup"
        );
        assert_eq!(
            resolved("./a/x/../b").unwrap(),
            one("/user.slice/session-1.scope/a/b")
        );
        for p in ["..", ".", "a/..", "../.."] {
            let err = resolved(p).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{p}: {err}");
        }
    }

    #[test]
    fn disagreeing_v1_own_cgroups_give_a_path_per_hierarchy() {
        // This host's layout: memory sandboxed, the other controllers at the root.
        let text = "9:name=systemd:/\n4:memory:/sandbox/x\n1:cpu:/\n0::/\n";
        let sources = [
            v1(&["cpu"], "/"),
            v1(&["memory"], "/"),
            v1(&["name=systemd"], "/"),
            OwnSource::unified(),
        ];
        let p = resolve(Some(Path::new("a/c1")), "c1", Some(&own(text)), &sources).unwrap();
        assert_eq!(
            p,
            [
                Path::new("/a/c1"),
                Path::new("/sandbox/x/a/c1"),
                Path::new("/a/c1"),
                Path::new("/a/c1")
            ]
        );
    }

    #[test]
    fn missing_own_line_is_refused() {
        let err = resolve(
            Some(Path::new("c1")),
            "c1",
            Some(&own("1:cpu:/\n")),
            &[v1(&["pids"], "/")],
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::OwnCgroupMissing { .. }), "{err}");
    }

    #[test]
    fn checked_refuses_unnormalized_or_relative_paths() {
        assert_eq!(checked(Path::new("/a/b")).unwrap(), Path::new("a/b"));
        for p in ["a/b", "/", "/a/../b", "/a/./b"] {
            assert!(checked(Path::new(p)).is_err(), "{p}");
        }
    }
}
