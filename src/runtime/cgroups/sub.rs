//! `exec --cgroup`: the process joins existing sub-cgroups of the container's cgroup instead of
//! the container's cgroup itself, with runc 1.1's argument rules (`runc exec --help`,
//! observed on runc 1.1.5):
//!
//! - `PATH` alone puts the process in `PATH` below the container's cgroup in every hierarchy;
//!   it must then be the only `--cgroup`;
//! - `CONTROLLER[,CONTROLLER]:PATH` (repeatable) does so in the hierarchies of those controllers
//!   (a v1 controller or `name=...`); the others keep the container's cgroup; an empty
//!   controller (`:PATH`, `memory,:PATH`) means every hierarchy;
//! - cgroup v2 has one hierarchy, so it takes only `PATH` or `:PATH`;
//! - the path is relative to the container's cgroup even with a leading `/`, may use `..`
//!   without leaving the container's cgroup, and must exist.
//!
//! Where runc silently keeps one of two contradicting requests (a controller given twice with
//! different paths, or `:PATH` beside `CONTROLLER:OTHER`), refeng-runc refuses them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::v1::{Hierarchy, Placement};
use super::{path, Backend, Cgroup, CgroupError, Driver};

/// Parsed `--cgroup` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubCgroups {
    /// One sub-cgroup in every hierarchy.
    All(PathBuf),
    /// A sub-cgroup per controller; hierarchies whose controllers are not named keep the
    /// container's cgroup.
    PerController(BTreeMap<String, PathBuf>),
}

fn invalid(arg: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::SubCgroup {
        arg: arg.to_owned(),
        reason: reason.into(),
    }
}

impl SubCgroups {
    /// Parses the `--cgroup` arguments; `None` when there are none.
    ///
    /// # Errors
    /// [`CgroupError::SubCgroup`] for an argument with two colons, a `PATH` without controller
    /// beside other `--cgroup`s, or contradicting paths for one controller.
    pub fn parse(args: &[String]) -> Result<Option<Self>, CgroupError> {
        if args.is_empty() {
            return Ok(None);
        }
        let mut all: Option<(&str, PathBuf)> = None;
        let mut per: BTreeMap<String, (&str, PathBuf)> = BTreeMap::new();
        for arg in args {
            let parts: Vec<&str> = arg.splitn(3, ':').collect();
            match parts.as_slice() {
                [path] => {
                    if args.len() != 1 {
                        return Err(invalid(
                            arg,
                            "a path without a controller must be the only --cgroup (use CONTROLLER:PATH)",
                        ));
                    }
                    all = Some((arg, PathBuf::from(path)));
                }
                [controllers, path] => {
                    for controller in controllers.split(',') {
                        let path = PathBuf::from(path);
                        if controller.is_empty() {
                            if let Some((first, other)) = &all {
                                if *other != path {
                                    return Err(invalid(
                                        arg,
                                        format!("every hierarchy already has {first:?}"),
                                    ));
                                }
                            }
                            all = Some((arg, path));
                        } else if let Some((first, other)) = per.get(controller) {
                            if *other != path {
                                return Err(invalid(
                                    arg,
                                    format!("controller {controller} already has {first:?}"),
                                ));
                            }
                        } else {
                            per.insert(controller.to_owned(), (arg, path));
                        }
                    }
                }
                _ => return Err(invalid(arg, "expected [CONTROLLER[,CONTROLLER]:]PATH")),
            }
        }
        if let Some((first, path)) = all {
            if let Some((_, (arg, _))) = per.iter().find(|(_, (_, p))| *p != path) {
                return Err(invalid(
                    arg,
                    format!("contradicts {first:?}, which names every hierarchy"),
                ));
            }
            return Ok(Some(Self::All(path)));
        }
        Ok(Some(Self::PerController(
            per.into_iter().map(|(c, (_, p))| (c, p)).collect(),
        )))
    }

    /// How the user wrote the request for `controller` (or for every hierarchy), for errors.
    fn describe(&self, controller: Option<&str>) -> String {
        match (self, controller) {
            (Self::PerController(map), Some(c)) => match map.get(c) {
                Some(p) => format!("{c}:{}", p.display()),
                None => c.to_owned(),
            },
            (Self::All(p), _) => p.display().to_string(),
            (Self::PerController(_), None) => String::new(),
        }
    }
}

/// `base` (a checked, relative cgroup path) joined with the sub-cgroup `sub`, which must stay at
/// or below `base`. A leading `/` in `sub` does not make it absolute (runc joins it the same way).
fn below(base: &Path, sub: &Path, arg: &str) -> Result<PathBuf, CgroupError> {
    let escapes = || invalid(arg, "not a sub-cgroup of the container's cgroup");
    let mut out = base.to_path_buf();
    for component in sub.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(escapes());
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    // Judged on the result, as runc does: `../<leaf>/x` from the leaf stays inside.
    if out.starts_with(base) {
        Ok(out)
    } else {
        Err(escapes())
    }
}

/// The v1 placement of a process joining `sub`: per hierarchy the container is in (by key), the
/// container's path there with the sub-cgroup below it where `sub` names that hierarchy.
pub(super) fn v1_paths(
    hierarchies: &[Hierarchy],
    at: &Placement<'_>,
    sub: &SubCgroups,
) -> Result<BTreeMap<String, PathBuf>, CgroupError> {
    let joined: Vec<&Hierarchy> = hierarchies.iter().filter(|h| at.rel(h).is_some()).collect();
    if let SubCgroups::PerController(map) = sub {
        for controller in map.keys() {
            if !joined.iter().any(|h| h.controllers.contains(controller)) {
                return Err(invalid(
                    &sub.describe(Some(controller)),
                    format!("the container's cgroup has no {controller} hierarchy"),
                ));
            }
        }
    }
    let mut out = BTreeMap::new();
    for h in joined {
        let Some(rel) = at.rel(h) else { continue };
        let chosen: Option<(String, &Path)> = match sub {
            SubCgroups::All(p) => Some((sub.describe(None), p.as_path())),
            SubCgroups::PerController(map) => {
                let named: Vec<(&String, &PathBuf)> = h
                    .controllers
                    .iter()
                    .filter_map(|c| map.get(c).map(|p| (c, p)))
                    .collect();
                if let Some((c2, p2)) = named.iter().find(|(_, p)| *p != named[0].1) {
                    let (c1, p1) = named[0];
                    return Err(invalid(
                        &sub.describe(Some(c2)),
                        format!(
                            "{c1} and {c2} share a hierarchy but got different paths ({} and {})",
                            p1.display(),
                            p2.display()
                        ),
                    ));
                }
                named
                    .first()
                    .map(|(c, p)| (sub.describe(Some(c)), p.as_path()))
            }
        };
        let path = match chosen {
            Some((arg, p)) => below(rel, p, &arg)?,
            None => rel.to_path_buf(),
        };
        out.insert(h.key(), Path::new("/").join(path));
    }
    Ok(out)
}

impl Cgroup {
    /// The cgroup a process started with `exec --cgroup` joins: the container's, with the
    /// sub-cgroups `sub` names (see the module documentation for the rules).
    ///
    /// # Errors
    /// [`CgroupError::SubCgroup`] when `sub` names a controller the container's cgroup has no
    /// hierarchy for (any controller under v2) or leaves the container's cgroup;
    /// [`CgroupError::SubCgroupMissing`] when a sub-cgroup does not exist.
    pub fn with_sub_cgroups(&self, sub: &SubCgroups) -> Result<Cgroup, CgroupError> {
        let joined = match Backend::discover(self.driver)? {
            Backend::V1(h) => {
                let hierarchies = v1_paths(h.list(), &self.placement()?, sub)?;
                for x in h.list() {
                    if let Some(p) = hierarchies.get(&x.key()) {
                        let dir = x.mountpoint.join(path::checked(p)?);
                        if !dir.is_dir() {
                            return Err(CgroupError::SubCgroupMissing { path: dir });
                        }
                    }
                }
                Cgroup {
                    driver: Driver::V1,
                    path: self.path.clone(),
                    hierarchies,
                }
            }
            Backend::V2(u) => {
                let rel = self.unified_path()?;
                let p = match sub {
                    SubCgroups::All(p) => below(rel, p, &sub.describe(None))?,
                    SubCgroups::PerController(map) => {
                        let controller = map.keys().next().map_or("", String::as_str);
                        return Err(invalid(
                            &sub.describe(Some(controller)),
                            "cgroup v2 has one hierarchy: give --cgroup PATH without a controller",
                        ));
                    }
                };
                let dir = u.dir(&p);
                if !dir.is_dir() {
                    return Err(CgroupError::SubCgroupMissing { path: dir });
                }
                Cgroup {
                    driver: Driver::V2,
                    path: Path::new("/").join(p),
                    hierarchies: BTreeMap::new(),
                }
            }
        };
        tracing::debug!(path = %joined.path.display(), hierarchies = ?joined.hierarchies, "exec joins sub-cgroups");
        Ok(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroups::v1::Hierarchies;
    use crate::sys::kernel_files::mountinfo;

    fn args(list: &[&str]) -> Result<Option<SubCgroups>, CgroupError> {
        SubCgroups::parse(&list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    fn per(pairs: &[(&str, &str)]) -> SubCgroups {
        SubCgroups::PerController(
            pairs
                .iter()
                .map(|(c, p)| ((*c).to_owned(), PathBuf::from(p)))
                .collect(),
        )
    }

    fn refused(list: &[&str]) -> String {
        match args(list) {
            Err(e @ CgroupError::SubCgroup { .. }) => e.to_string(),
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn arguments_follow_runc() {
        assert_eq!(args(&[]).unwrap(), None);
        assert_eq!(args(&["sub"]).unwrap(), Some(SubCgroups::All("sub".into())));
        assert_eq!(args(&[""]).unwrap(), Some(SubCgroups::All("".into())));
        assert_eq!(
            args(&[":sub"]).unwrap(),
            Some(SubCgroups::All("sub".into()))
        );
        assert_eq!(
            args(&["memory,:sub"]).unwrap(),
            Some(SubCgroups::All("sub".into())),
            "an empty controller names every hierarchy"
        );
        assert_eq!(
            args(&["memory,pids:a", "cpu:b"]).unwrap(),
            Some(per(&[("memory", "a"), ("pids", "a"), ("cpu", "b")]))
        );
        assert_eq!(
            args(&["memory:a", "memory:a"]).unwrap(),
            Some(per(&[("memory", "a")]))
        );
        assert_eq!(
            args(&["name=systemd:a"]).unwrap(),
            Some(per(&[("name=systemd", "a")]))
        );
    }

    #[test]
    fn bad_or_contradicting_arguments_are_refused() {
        assert!(refused(&["a:b:c"]).contains("expected [CONTROLLER"));
        assert!(refused(&["sub", "cpu:sub"]).contains("must be the only --cgroup"));
        assert!(refused(&["memory:a", "memory:b"]).contains("controller memory already has"));
        assert!(refused(&[":a", "memory:b"]).contains("names every hierarchy"));
        assert!(refused(&["memory:b", ":a"]).contains("names every hierarchy"));
        assert!(refused(&[":a", ":b"]).contains("every hierarchy already has"));
    }

    #[test]
    fn a_sub_cgroup_stays_below_the_container() {
        let base = Path::new("refeng/c1");
        assert_eq!(
            below(base, Path::new("sub"), "x").unwrap(),
            Path::new("refeng/c1/sub")
        );
        assert_eq!(
            below(base, Path::new("/sub"), "x").unwrap(),
            Path::new("refeng/c1/sub"),
            "a leading / is not absolute"
        );
        assert_eq!(
            below(base, Path::new("../c1/sub"), "x").unwrap(),
            Path::new("refeng/c1/sub")
        );
        assert_eq!(below(base, Path::new("sub/.."), "x").unwrap(), base);
        assert_eq!(below(base, Path::new(""), "x").unwrap(), base);
        for escaping in ["..", "../c1x", "../../..", "sub/../../c2"] {
            assert!(
                matches!(
                    below(base, Path::new(escaping), "x"),
                    Err(CgroupError::SubCgroup { .. })
                ),
                "{escaping}"
            );
        }
    }

    const MOUNTINFO: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    fn hierarchies() -> Hierarchies {
        Hierarchies::from_mounts(&mountinfo::parse(MOUNTINFO.as_bytes()).unwrap())
    }

    fn placement() -> Placement<'static> {
        Placement::PerHierarchy(BTreeMap::from([
            ("cpu,cpuacct", Path::new("c")),
            ("memory", Path::new("sandbox/c")),
            ("name=systemd", Path::new("c")),
            ("", Path::new("c")),
        ]))
    }

    fn resolved(sub: &SubCgroups) -> Result<Vec<(String, String)>, CgroupError> {
        Ok(v1_paths(hierarchies().list(), &placement(), sub)?
            .into_iter()
            .map(|(k, p)| (k, p.display().to_string()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn v1_every_hierarchy_gets_the_path_below_its_own_cgroup() {
        assert_eq!(
            resolved(&SubCgroups::All("sub".into())).unwrap(),
            pairs(&[
                ("", "/c/sub"),
                ("cpu,cpuacct", "/c/sub"),
                ("memory", "/sandbox/c/sub"),
                ("name=systemd", "/c/sub"),
            ])
        );
    }

    #[test]
    fn v1_named_controllers_get_the_path_and_the_others_stay() {
        assert_eq!(
            resolved(&per(&[("memory", "m"), ("cpuacct", "a")])).unwrap(),
            pairs(&[
                ("", "/c"),
                ("cpu,cpuacct", "/c/a"),
                ("memory", "/sandbox/c/m"),
                ("name=systemd", "/c"),
            ])
        );
        let err = resolved(&per(&[("cpu", "a"), ("cpuacct", "b")])).unwrap_err();
        assert!(err.to_string().contains("share a hierarchy"), "{err}");
        let err = resolved(&per(&[("pids", "a")])).unwrap_err();
        assert!(err.to_string().contains("no pids hierarchy"), "{err}");
        let err = resolved(&per(&[("memory", "../../x")])).unwrap_err();
        assert!(err.to_string().contains("not a sub-cgroup"), "{err}");
    }

    #[test]
    fn v1_a_container_from_an_older_state_is_in_the_controller_hierarchies_only() {
        let uniform = Placement::Uniform(Path::new("c"));
        let got = v1_paths(hierarchies().list(), &uniform, &SubCgroups::All("s".into())).unwrap();
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            ["cpu,cpuacct", "memory", "name=systemd"]
        );
    }
}
