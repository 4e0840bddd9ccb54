//! fstab-style mount options (`mounts[].options`) turned into mount(2) flags, propagation changes
//! and the filesystem data string, the way runc's `parseMountOptions` does.

use nix::mount::MsFlags;

/// What one `mounts` entry's options mean to mount(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// Flags for the mount call itself (`MS_BIND`, `MS_RDONLY`, ...).
    pub flags: MsFlags,
    /// Propagation changes, each applied with its own mount(2) call after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Options the kernel flag table does not know, handed to the filesystem as its data.
    pub data: Vec<String>,
    /// `tmpcopyup`: copy what the destination held into the new tmpfs.
    pub tmpcopyup: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...) set on the whole mount tree afterwards with
    /// mount_setattr(2): `MOUNT_ATTR_*` bits to set and to clear.
    pub recursive_set: u64,
    /// See `recursive_set`.
    pub recursive_clear: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            tmpcopyup: false,
            recursive_set: 0,
            recursive_clear: 0,
        }
    }
}

impl MountOptions {
    /// The data string for mount(2), `None` when there is none.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Whether this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Whether the data string has `key=...`.
    pub fn has_data_key(&self, key: &str) -> bool {
        self.data
            .iter()
            .any(|d| d.split_once('=').is_some_and(|(k, _)| k == key))
    }
}

/// An option this runtime recognises but refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// ID-mapped mounts
    #[error("id-mapped mounts ({0:?}) are not supported yet")]
    IdMapped(String),
}

/// What a recursive option does: set or clear `MOUNT_ATTR_*` bits. An access-time option sets
/// the whole access-time field.
fn recursive(option: &str) -> Option<(u64, u64)> {
    use crate::sys::mount_attr::attr;
    let atime = |value| Some((value, attr::ATIME_MASK));
    Some(match option {
        "rro" => (attr::RDONLY, 0),
        "rrw" => (0, attr::RDONLY),
        "rnosuid" => (attr::NOSUID, 0),
        "rsuid" => (0, attr::NOSUID),
        "rnodev" => (attr::NODEV, 0),
        "rdev" => (0, attr::NODEV),
        "rnoexec" => (attr::NOEXEC, 0),
        "rexec" => (0, attr::NOEXEC),
        "rnodiratime" => (attr::NODIRATIME, 0),
        "rdiratime" => (0, attr::NODIRATIME),
        "rrelatime" => return atime(attr::RELATIME),
        // runtime-spec config.md "Mounts": the recursive `norelatime`, through mount_setattr(2).
        // `norelatime` only clears MS_RELATIME, and a mount without noatime or strictatime is
        // relatime anyway (the kernel's default since Linux 2.6.30). Its mount_setattr form
        // clears MOUNT_ATTR_RELATIME, whose value is 0 (the access-time field is an enum, not a
        // set of bits): it changes nothing, and the mount keeps its setting. runc 1.1.5 does
        // exactly that. Recognised all the same, so it is not handed to the filesystem as data.
        "rnorelatime" => (0, 0),
        "rstrictatime" => return atime(attr::STRICTATIME),
        "rnoatime" => return atime(attr::NOATIME),
        "ratime" | "rnostrictatime" => return atime(attr::RELATIME),
        "rnosymfollow" => (attr::NOSYMFOLLOW, 0),
        "rsymfollow" => (0, attr::NOSYMFOLLOW),
        _ => return None,
    })
}

/// `nosymfollow` (Linux 5.10); nix does not name it.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// How an option changes the flags: sets them, or clears them.
#[derive(Debug, Clone, Copy)]
enum FlagChange {
    Set(MsFlags),
    Clear(MsFlags),
}

/// runc's flag table (libcontainer/specconv `mountFlags`).
fn flag_change(option: &str) -> Option<FlagChange> {
    use FlagChange::{Clear, Set};
    Some(match option {
        "acl" => Set(MsFlags::MS_POSIXACL),
        "async" => Clear(MsFlags::MS_SYNCHRONOUS),
        "atime" => Clear(MsFlags::MS_NOATIME),
        "bind" => Set(MsFlags::MS_BIND),
        "defaults" => Set(MsFlags::empty()),
        "dev" => Clear(MsFlags::MS_NODEV),
        "diratime" => Clear(MsFlags::MS_NODIRATIME),
        "dirsync" => Set(MsFlags::MS_DIRSYNC),
        "exec" => Clear(MsFlags::MS_NOEXEC),
        "iversion" => Set(MsFlags::MS_I_VERSION),
        "lazytime" => Set(MsFlags::MS_LAZYTIME),
        "loud" => Clear(MsFlags::MS_SILENT),
        "mand" => Set(MsFlags::MS_MANDLOCK),
        "noacl" => Clear(MsFlags::MS_POSIXACL),
        "noatime" => Set(MsFlags::MS_NOATIME),
        "nodev" => Set(MsFlags::MS_NODEV),
        "nodiratime" => Set(MsFlags::MS_NODIRATIME),
        "noexec" => Set(MsFlags::MS_NOEXEC),
        "noiversion" => Clear(MsFlags::MS_I_VERSION),
        "nolazytime" => Clear(MsFlags::MS_LAZYTIME),
        "nomand" => Clear(MsFlags::MS_MANDLOCK),
        "norelatime" => Clear(MsFlags::MS_RELATIME),
        "nostrictatime" => Clear(MsFlags::MS_STRICTATIME),
        "nosuid" => Set(MsFlags::MS_NOSUID),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "rbind" => Set(MsFlags::MS_BIND.union(MsFlags::MS_REC)),
        "relatime" => Set(MsFlags::MS_RELATIME),
        "remount" => Set(MsFlags::MS_REMOUNT),
        "ro" => Set(MsFlags::MS_RDONLY),
        "rw" => Clear(MsFlags::MS_RDONLY),
        "silent" => Set(MsFlags::MS_SILENT),
        "strictatime" => Set(MsFlags::MS_STRICTATIME),
        "suid" => Clear(MsFlags::MS_NOSUID),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "sync" => Set(MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

/// Propagation options; each becomes its own mount(2) call.
fn propagation(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Every mount option `parse` understands as a flag, a propagation or `tmpcopyup` (what
/// `features` reports as mountOptions); anything else goes to the filesystem as data.
pub const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "ratime",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "rrelatime",
    "rro",
    "rrw",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Parses options left to right: later options override earlier ones (`ro,rw` is read-write).
///
/// # Errors
/// [`OptionError`] for options that are known but refused (`idmap`, `ridmap`).
pub(crate) fn parse(options: &[String]) -> Result<MountOptions, OptionError> {
    let mut parsed = MountOptions::default();
    for option in options {
        let option = option.as_str();
        if let Some(change) = flag_change(option) {
            match change {
                FlagChange::Set(f) => parsed.flags |= f,
                FlagChange::Clear(f) => parsed.flags &= !f,
            }
        } else if let Some(p) = propagation(option) {
            parsed.propagation.push(p);
        } else if option == "tmpcopyup" {
            parsed.tmpcopyup = true;
        } else if option == "idmap" || option == "ridmap" {
            return Err(OptionError::IdMapped(option.to_owned()));
        } else if let Some((set, clear)) = recursive(option) {
            // A later option overrides an earlier one on the same bits.
            parsed.recursive_set = (parsed.recursive_set & !clear & !set) | set;
            parsed.recursive_clear = (parsed.recursive_clear & !set) | clear;
        } else if !option.is_empty() {
            parsed.data.push(option.to_owned());
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn table_of_options() {
        let ms = |f: MsFlags| f;
        // (options, flags, propagation calls, data, tmpcopyup)
        type Case<'a> = (&'a [&'a str], MsFlags, &'a [MsFlags], &'a [&'a str], bool);
        let cases: &[Case<'_>] = &[
            (&[], MsFlags::empty(), &[], &[], false),
            (&["ro"], ms(MsFlags::MS_RDONLY), &[], &[], false),
            (&["ro", "rw"], MsFlags::empty(), &[], &[], false),
            (&["rw", "ro"], MsFlags::MS_RDONLY, &[], &[], false),
            (
                &["nosuid", "nodev", "noexec"],
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                &[],
                &[],
                false,
            ),
            (&["nosuid", "suid"], MsFlags::empty(), &[], &[], false),
            (&["nodev", "dev"], MsFlags::empty(), &[], &[], false),
            (&["noexec", "exec"], MsFlags::empty(), &[], &[], false),
            (&["sync"], MsFlags::MS_SYNCHRONOUS, &[], &[], false),
            (&["sync", "async"], MsFlags::empty(), &[], &[], false),
            (&["dirsync"], MsFlags::MS_DIRSYNC, &[], &[], false),
            (&["remount"], MsFlags::MS_REMOUNT, &[], &[], false),
            (&["mand", "nomand"], MsFlags::empty(), &[], &[], false),
            (&["mand"], MsFlags::MS_MANDLOCK, &[], &[], false),
            (&["noatime"], MsFlags::MS_NOATIME, &[], &[], false),
            (&["noatime", "atime"], MsFlags::empty(), &[], &[], false),
            (&["nodiratime"], MsFlags::MS_NODIRATIME, &[], &[], false),
            (
                &["nodiratime", "diratime"],
                MsFlags::empty(),
                &[],
                &[],
                false,
            ),
            (&["relatime"], MsFlags::MS_RELATIME, &[], &[], false),
            (
                &["relatime", "norelatime"],
                MsFlags::empty(),
                &[],
                &[],
                false,
            ),
            (&["strictatime"], MsFlags::MS_STRICTATIME, &[], &[], false),
            (
                &["strictatime", "nostrictatime"],
                MsFlags::empty(),
                &[],
                &[],
                false,
            ),
            (&["bind"], MsFlags::MS_BIND, &[], &[], false),
            (
                &["rbind"],
                MsFlags::MS_BIND | MsFlags::MS_REC,
                &[],
                &[],
                false,
            ),
            (&["defaults"], MsFlags::empty(), &[], &[], false),
            (&["nosymfollow"], MS_NOSYMFOLLOW, &[], &[], false),
            (
                &["rbind", "rprivate", "ro"],
                MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY,
                &[MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)],
                &[],
                false,
            ),
            (
                &[
                    "shared",
                    "rshared",
                    "private",
                    "slave",
                    "rslave",
                    "unbindable",
                    "runbindable",
                ],
                MsFlags::empty(),
                &[
                    MsFlags::MS_SHARED,
                    MsFlags::MS_SHARED.union(MsFlags::MS_REC),
                    MsFlags::MS_PRIVATE,
                    MsFlags::MS_SLAVE,
                    MsFlags::MS_SLAVE.union(MsFlags::MS_REC),
                    MsFlags::MS_UNBINDABLE,
                    MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC),
                ],
                &[],
                false,
            ),
            (
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
                MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                &[],
                &["mode=755", "size=65536k"],
                false,
            ),
            (
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                &[],
                &["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                false,
            ),
            (
                &["tmpcopyup", "mode=1777"],
                MsFlags::empty(),
                &[],
                &["mode=1777"],
                true,
            ),
        ];
        for (input, flags, propagation, data, copyup) in cases {
            let parsed = parse(&opts(input)).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(parsed.flags, *flags, "flags of {input:?}");
            assert_eq!(parsed.propagation, *propagation, "propagation of {input:?}");
            assert_eq!(parsed.data, opts(data), "data of {input:?}");
            assert_eq!(parsed.tmpcopyup, *copyup, "tmpcopyup of {input:?}");
        }
    }

    #[test]
    fn data_string_joins_unknown_options() {
        let parsed = parse(&opts(&["mode=755", "ro", "size=1m"])).unwrap();
        assert_eq!(parsed.data_string().as_deref(), Some("mode=755,size=1m"));
        assert!(parsed.has_data_key("mode"));
        assert!(!parsed.has_data_key("uid"));
        assert_eq!(parse(&opts(&["ro"])).unwrap().data_string(), None);
    }

    #[test]
    fn refused_options() {
        assert_eq!(
            parse(&opts(&["bind", "idmap"])),
            Err(OptionError::IdMapped("idmap".into()))
        );
        assert_eq!(
            parse(&opts(&["ridmap"])),
            Err(OptionError::IdMapped("ridmap".into()))
        );
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        use crate::sys::mount_attr::attr;
        let p = parse(&opts(&["rbind", "rro", "rnosuid"])).unwrap();
        assert_eq!(
            (p.recursive_set, p.recursive_clear),
            (attr::RDONLY | attr::NOSUID, 0)
        );
        let p = parse(&opts(&["rro", "rrw"])).unwrap();
        assert_eq!((p.recursive_set, p.recursive_clear), (0, attr::RDONLY));
        let p = parse(&opts(&["rnoatime"])).unwrap();
        assert_eq!(
            (p.recursive_set, p.recursive_clear),
            (attr::NOATIME, attr::ATIME_MASK)
        );
        let p = parse(&opts(&["rnoatime", "rrelatime"])).unwrap();
        assert_eq!(p.recursive_set & attr::ATIME_MASK, attr::RELATIME);
        // rnorelatime changes nothing, alone or after another access-time option.
        let p = parse(&opts(&["rnorelatime"])).unwrap();
        assert_eq!((p.recursive_set, p.recursive_clear), (0, 0));
        assert!(p.data.is_empty(), "{:?}", p.data);
        let p = parse(&opts(&["rnoatime", "rnorelatime"])).unwrap();
        assert_eq!(
            (p.recursive_set, p.recursive_clear),
            (attr::NOATIME, attr::ATIME_MASK)
        );
    }

    #[test]
    fn every_reported_mount_option_is_understood() {
        for option in super::MOUNT_OPTIONS {
            let known = super::flag_change(option).is_some()
                || super::propagation(option).is_some()
                || super::recursive(option).is_some()
                || *option == "tmpcopyup";
            assert!(known, "{option} is reported by features but not parsed");
        }
    }
}
