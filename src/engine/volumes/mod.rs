//! Volumes of the `local` driver, as dockerd keeps them: one directory per volume under
//! `<data-root>/volumes/<name>`, its data in `_data` (the mountpoint containers bind) and its
//! record in `volume.json`, replaced by a durable write (temp, fsync, rename) so that a crash
//! never leaves a half-written record. A volume created with options (`type`, `device`, `o`) is
//! mounted on `_data` the way the local driver mounts it (a tmpfs, or a bind of `device` with
//! `o=bind`) for its first user and unmounted after its last; any other filesystem type is
//! refused by name. Which containers use a volume is the containers' business
//! ([`crate::engine::containers::mounts`]); this store only keeps the volumes.

pub mod routes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::filters::Filters;

/// The only driver refengd has.
pub const LOCAL: &str = "local";
/// The data directory inside a volume's directory.
const DATA: &str = "_data";
/// The record inside a volume's directory.
const RECORD: &str = "volume.json";

/// One volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Its unique name (64 hex digits for an anonymous one).
    pub name: String,
    /// When it was made, RFC 3339 to the second (dockerd's `CreatedAt`).
    pub created_at: String,
    /// Labels as given (`None` when the request had none: dockerd then shows `null`).
    pub labels: Option<BTreeMap<String, String>>,
    /// Driver options as given.
    pub options: Option<BTreeMap<String, String>>,
    /// Made for a container (`-v /path`, an image's VOLUME), not by name.
    #[serde(default)]
    pub anonymous: bool,
}

/// Why a volume call failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// get {0}: no such volume
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// remove {name}: volume is in use - \[ids\]
    #[error("remove {name}: volume is in use - [{}]", .users.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers that use it.
        users: Vec<String>,
    },
    /// create {0}: "{0}" includes invalid characters for a local volume name, ...
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \
         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, \
         use absolute path"
    )]
    InvalidName(String),
    /// create {0}: volume name is too short, names should be at least two alphanumeric characters
    #[error("create {0}: volume name is too short, names should be at least two alphanumeric characters")]
    TooShort(String),
    /// create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    NoDriver {
        /// The volume.
        name: String,
        /// The driver asked for.
        driver: String,
    },
    /// create {name}: {why} (a bad or unsupported driver option)
    #[error("create {name}: {why}")]
    BadOption {
        /// The volume.
        name: String,
        /// What is wrong, naming the option.
        why: String,
    },
    /// {doing} {path}: {source}
    #[error("{doing} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        doing: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        let m = e.to_string();
        match e {
            VolumeError::NotFound(_) | VolumeError::NoDriver { .. } => ApiError::NotFound(m),
            VolumeError::InUse { .. } => ApiError::Conflict(m),
            VolumeError::InvalidName(_)
            | VolumeError::TooShort(_)
            | VolumeError::BadOption { .. } => ApiError::BadRequest(m),
            VolumeError::Io { .. } => ApiError::Internal(m),
        }
    }
}

fn io_err<'a>(
    doing: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a name as the local driver does.
///
/// # Errors
/// `TooShort` for one character, `InvalidName` for characters out of its pattern.
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    if name.len() < 2 {
        return Err(VolumeError::TooShort(name.to_string()));
    }
    if !valid_name(name) {
        return Err(VolumeError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Whether `name` is a name the local driver accepts (dockerd's `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// How the local driver mounts a volume that has options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalMount {
    /// `type=tmpfs`: a tmpfs with `o` as its mount data (flags such as `ro` taken out).
    Tmpfs {
        /// `device` (the tmpfs's source name).
        device: String,
        /// Mount flags named in `o`.
        flags: nix::mount::MsFlags,
        /// The rest of `o`.
        data: String,
    },
    /// `o=bind` (or `rbind`): `device`, a host directory, bound on the mountpoint.
    Bind {
        /// The host directory.
        device: String,
        /// `rbind`.
        recursive: bool,
        /// `ro` in `o`.
        readonly: bool,
    },
}

/// The local driver's options: none (a plain directory), or what to mount.
///
/// # Errors
/// `BadOption` for a key other than type/device/o, a missing `device`, or a filesystem type
/// refengd does not mount (only tmpfs and binds), each named.
pub fn local_mount(
    name: &str,
    opts: Option<&BTreeMap<String, String>>,
) -> Result<Option<LocalMount>, VolumeError> {
    let bad = |why: String| VolumeError::BadOption {
        name: name.to_string(),
        why,
    };
    let Some(opts) = opts.filter(|o| !o.is_empty()) else {
        return Ok(None);
    };
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(bad(format!("invalid option: {k:?}")));
        }
    }
    let Some(device) = opts.get("device").filter(|d| !d.is_empty()) else {
        return Err(bad("missing required option: \"device\"".into()));
    };
    let kind = opts.get("type").map_or("", String::as_str);
    let o = opts.get("o").map_or("", String::as_str);
    let words: Vec<&str> = o.split(',').filter(|w| !w.is_empty()).collect();
    let bind = words.iter().any(|w| matches!(*w, "bind" | "rbind"));
    if bind {
        if !device.starts_with('/') {
            return Err(bad(format!(
                "o=bind needs an absolute host path as device (got {device:?})"
            )));
        }
        for w in &words {
            if !matches!(*w, "bind" | "rbind" | "ro" | "rw") {
                return Err(bad(format!(
                    "option o={o:?}: {w:?} is not supported by refengd for a bind volume (only \
                     bind, rbind, ro, rw)"
                )));
            }
        }
        return Ok(Some(LocalMount::Bind {
            device: device.clone(),
            recursive: words.contains(&"rbind"),
            readonly: words.contains(&"ro"),
        }));
    }
    if kind != "tmpfs" {
        return Err(bad(format!(
            "type={kind:?} is not supported by refengd's local driver (only type=tmpfs and \
             o=bind volumes are mounted)"
        )));
    }
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for w in words {
        match w {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            other => data.push(other),
        }
    }
    Ok(Some(LocalMount::Tmpfs {
        device: device.clone(),
        flags,
        data: data.join(","),
    }))
}

/// Every volume, by name, and where they live.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
    map: Mutex<BTreeMap<String, VolumeRecord>>,
    /// How many running containers (and copy-ups) hold each volume mounted: a volume with
    /// options is mounted by the first and unmounted after the last, as the local driver does
    /// (so a tmpfs volume's content lasts while some container uses it).
    active: Mutex<BTreeMap<String, usize>>,
}

impl Volumes {
    /// The volumes recorded under `<data_root>/volumes` (a directory without a readable record,
    /// left by a crash during a create, is skipped with a warning).
    pub fn open(data_root: &Path) -> Volumes {
        let dir = data_root.join("volumes");
        let mut map = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path().join(RECORD);
                match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                    serde_json::from_slice::<VolumeRecord>(&b).map_err(|e| e.to_string())
                }) {
                    Ok(r) if e.file_name().to_str() == Some(r.name.as_str()) => {
                        map.insert(r.name.clone(), r);
                    }
                    Ok(_) => {
                        tracing::warn!(path = %p.display(), "volume record names another volume")
                    }
                    Err(err) => {
                        tracing::warn!(path = %p.display(), error = %err, "volume record not loaded");
                    }
                }
            }
        }
        Volumes {
            dir,
            map: Mutex::new(map),
            active: Mutex::new(BTreeMap::new()),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more user of volume `name`: the first mounts it (when it has options).
    ///
    /// # Errors
    /// As [`Volumes::ensure_mounted`].
    pub fn acquire(&self, name: &str) -> Result<(), VolumeError> {
        let mut a = self.active();
        let n = a.get(name).copied().unwrap_or(0);
        if n == 0 {
            self.ensure_mounted(name)?;
        }
        a.insert(name.to_string(), n + 1);
        Ok(())
    }

    /// A user of volume `name` that was running when the daemon started (its mount is there).
    pub fn adopt(&self, name: &str) {
        *self.active().entry(name.to_string()).or_insert(0) += 1;
    }

    /// One user fewer: after the last, a volume with options is unmounted.
    pub fn release(&self, name: &str) {
        let mut a = self.active();
        let Some(n) = a.get_mut(name) else { return };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return;
        }
        a.remove(name);
        let has_options = self
            .lock()
            .get(name)
            .is_some_and(|r| r.options.as_ref().is_some_and(|o| !o.is_empty()));
        let data = self.mountpoint(name);
        if has_options && is_mounted(&data) {
            if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(volume = %name, error = %e, "volume not unmounted");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VolumeRecord>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where volume `name`'s data is (the path containers bind).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// The record of `name`.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeRecord> {
        self.lock().values().cloned().collect()
    }

    /// Creates volume `name` (a fresh anonymous name when `None`), or returns the existing one
    /// of that name as dockerd does; the bool says whether it was made now.
    ///
    /// # Errors
    /// `InvalidName`, `NoDriver` for a driver other than local, `BadOption`, `Io`.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        labels: Option<BTreeMap<String, String>>,
        options: Option<BTreeMap<String, String>>,
    ) -> Result<(VolumeRecord, bool), VolumeError> {
        let anonymous = name.is_none_or(str::is_empty);
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => crate::engine::containers::names::new_id().map_err(|e| VolumeError::Io {
                doing: "making a volume name",
                path: self.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?,
        };
        if !matches!(driver, "" | LOCAL) {
            return Err(VolumeError::NoDriver {
                name,
                driver: driver.to_string(),
            });
        }
        check_name(&name)?;
        local_mount(&name, options.as_ref())?;
        let mut map = self.lock();
        if let Some(existing) = map.get(&name) {
            return Ok((existing.clone(), false));
        }
        let rec = VolumeRecord {
            name: name.clone(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            labels,
            options,
            anonymous,
        };
        let vdir = self.dir.join(&name);
        let data = vdir.join(DATA);
        std::fs::create_dir_all(&data).map_err(io_err("creating", &data))?;
        let bytes = serde_json::to_vec(&rec).map_err(|e| VolumeError::Io {
            doing: "encoding",
            path: vdir.clone(),
            source: std::io::Error::other(e),
        })?;
        let record = vdir.join(RECORD);
        crate::sys::durable::write(&record, 0o600, &bytes).map_err(|e| VolumeError::Io {
            doing: "writing",
            path: record.clone(),
            source: std::io::Error::other(e),
        })?;
        map.insert(name, rec.clone());
        Ok((rec, true))
    }

    /// Removes volume `name` (the caller has checked that no container uses it): the record
    /// goes first, so a crash leaves data without a record, never a record without data; then
    /// its mount, then its directory.
    ///
    /// # Errors
    /// `NotFound`, `Io`.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let mut map = self.lock();
        if !map.contains_key(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let vdir = self.dir.join(name);
        let record = vdir.join(RECORD);
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &record)(e)),
        }
        let _ = crate::sys::durable::sync_dir(&vdir);
        map.remove(name);
        drop(map);
        let data = vdir.join(DATA);
        if is_mounted(&data) {
            let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
        }
        // Never delete through a mount: a bind volume's data is a host directory.
        if is_mounted(&data) {
            return Err(VolumeError::Io {
                doing: "unmounting",
                path: data,
                source: std::io::Error::other("still mounted"),
            });
        }
        std::fs::remove_dir_all(&vdir).map_err(io_err("removing", &vdir))
    }

    /// Mounts volume `name` as its options say, unless it is mounted already (a volume without
    /// options is a plain directory and needs nothing).
    ///
    /// # Errors
    /// `NotFound`, `BadOption` for options that no longer parse, `Io` when the mount fails.
    pub fn ensure_mounted(&self, name: &str) -> Result<(), VolumeError> {
        let rec = self.get(name)?;
        let Some(how) = local_mount(name, rec.options.as_ref())? else {
            return Ok(());
        };
        let data = self.mountpoint(name);
        if is_mounted(&data) {
            return Ok(());
        }
        use nix::mount::{mount, MsFlags};
        let r = match &how {
            LocalMount::Tmpfs {
                device,
                flags,
                data: d,
            } => mount(
                Some(device.as_str()),
                &data,
                Some("tmpfs"),
                *flags,
                (!d.is_empty()).then_some(d.as_str()),
            ),
            LocalMount::Bind {
                device,
                recursive,
                readonly,
            } => {
                let mut f = MsFlags::MS_BIND;
                if *recursive {
                    f |= MsFlags::MS_REC;
                }
                mount(Some(device.as_str()), &data, None::<&str>, f, None::<&str>).and_then(|()| {
                    if *readonly {
                        mount(
                            None::<&str>,
                            &data,
                            None::<&str>,
                            f | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                            None::<&str>,
                        )
                    } else {
                        Ok(())
                    }
                })
            }
        };
        r.map_err(|e| VolumeError::Io {
            doing: "mounting the volume on",
            path: data.clone(),
            source: std::io::Error::from(e),
        })
    }

    /// The bytes under volume `name`'s data (files counted once, by their length).
    pub fn size(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            let mut n = 0;
            for e in rd.flatten() {
                let Ok(md) = e.path().symlink_metadata() else {
                    continue;
                };
                if md.is_dir() {
                    n += walk(&e.path());
                } else if md.is_file() {
                    n += md.len();
                }
            }
            n
        }
        walk(&self.mountpoint(name))
    }

    /// The API shape of `rec` (inspect, list, create), with `UsageData` when given (df).
    pub fn json(&self, rec: &VolumeRecord, usage: Option<(u64, usize)>) -> Value {
        let mut v = json!({
            "CreatedAt": rec.created_at,
            "Driver": LOCAL,
            "Labels": rec.labels,
            "Mountpoint": self.mountpoint(&rec.name).to_string_lossy(),
            "Name": rec.name,
            "Options": rec.options,
            "Scope": "local",
        });
        if let Some((size, refs)) = usage {
            v["UsageData"] = json!({"Size": size, "RefCount": refs});
        }
        v
    }
}

/// Whether `path` is a mount point (listed in this process's mountinfo).
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_octal(m) == want)
    })
}

/// mountinfo's `\040`-style escapes.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `rec`, used by `refs` containers, passes `f` (keys dangling, label, name, driver;
/// `all` is the prune-only key and is ignored here).
///
/// # Errors
/// `BadRequest` for another key or a `dangling` value other than true/false/1/0.
pub fn matches(f: &Filters, rec: &VolumeRecord, refs: usize) -> Result<bool, ApiError> {
    f.validate(&["dangling", "label", "name", "driver", "all"])?;
    if f.bool_value("dangling")?.is_some_and(|d| d != (refs == 0)) {
        return Ok(false);
    }
    let names: Vec<&str> = f.get("name").collect();
    if !names.is_empty() && !names.iter().any(|n| rec.name.contains(n)) {
        return Ok(false);
    }
    let drivers: Vec<&str> = f.get("driver").collect();
    if !drivers.is_empty() && !drivers.contains(&LOCAL) {
        return Ok(false);
    }
    if !f.match_labels("label", &rec.labels.clone().unwrap_or_default()) {
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn names_follow_dockerd_s_pattern() {
        assert!(valid_name("data_1.x-y"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("_a"));
        assert!(!valid_name(""));
    }

    #[test]
    fn local_options_mount_tmpfs_and_binds_and_refuse_the_rest_by_name() {
        assert_eq!(local_mount("v", None).unwrap(), None);
        let t = local_mount(
            "v",
            Some(&opts(&[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m,noexec"),
            ])),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            t,
            LocalMount::Tmpfs {
                device: "tmpfs".into(),
                flags: nix::mount::MsFlags::MS_NOEXEC,
                data: "size=1m".into()
            }
        );
        let b = local_mount(
            "v",
            Some(&opts(&[
                ("type", "none"),
                ("device", "/srv"),
                ("o", "bind,ro"),
            ])),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            b,
            LocalMount::Bind {
                device: "/srv".into(),
                recursive: false,
                readonly: true
            }
        );
        let e = local_mount("v", Some(&opts(&[("type", "tmpfs")]))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "create v: missing required option: \"device\""
        );
        let e = local_mount("v", Some(&opts(&[("bogus", "1")]))).unwrap_err();
        assert_eq!(e.to_string(), "create v: invalid option: \"bogus\"");
        let e = local_mount("v", Some(&opts(&[("type", "nfs"), ("device", ":/x")]))).unwrap_err();
        assert!(e.to_string().contains("type=\"nfs\""), "{e}");
    }

    #[test]
    fn records_survive_a_reopen_and_removal_is_durable() {
        let d = tempfile::tempdir().unwrap();
        let v = Volumes::open(d.path());
        let (r, made) = v
            .create(Some("data"), "local", Some(opts(&[("a", "b")])), None)
            .unwrap();
        assert!(made && !r.anonymous);
        let (_, again) = v.create(Some("data"), "", None, None).unwrap();
        assert!(!again);
        let (anon, _) = v.create(None, "local", None, None).unwrap();
        assert!(anon.anonymous && anon.name.len() == 64);
        std::fs::write(v.mountpoint("data").join("f"), "12345").unwrap();
        assert_eq!(v.size("data"), 5);
        let v2 = Volumes::open(d.path());
        assert_eq!(v2.get("data").unwrap(), r);
        assert_eq!(v2.list().len(), 2);
        v2.remove("data").unwrap();
        assert!(!d.path().join("volumes/data").exists());
        assert!(Volumes::open(d.path()).get("data").is_err());
        assert!(matches!(
            v2.create(Some("x"), "nfs", None, None),
            Err(VolumeError::NoDriver { .. })
        ));
    }

    #[test]
    fn filters_select_as_dockerd_does() {
        let rec = VolumeRecord {
            name: "web-data".into(),
            created_at: String::new(),
            labels: Some(opts(&[("env", "prod")])),
            options: None,
            anonymous: false,
        };
        let f = |j: &str| Filters::parse(j).unwrap();
        assert!(matches(&f(r#"{"name":["data"]}"#), &rec, 0).unwrap());
        assert!(!matches(&f(r#"{"name":["nope"]}"#), &rec, 0).unwrap());
        assert!(matches(&f(r#"{"dangling":["true"]}"#), &rec, 0).unwrap());
        assert!(!matches(&f(r#"{"dangling":["true"]}"#), &rec, 1).unwrap());
        assert!(matches(&f(r#"{"label":["env=prod"]}"#), &rec, 0).unwrap());
        assert!(matches(&f(r#"{"label":["env"]}"#), &rec, 0).unwrap());
        assert!(!matches(&f(r#"{"label":["env=dev"]}"#), &rec, 0).unwrap());
        assert!(!matches(&f(r#"{"driver":["nfs"]}"#), &rec, 0).unwrap());
        assert!(matches(&f(r#"{"bogus":["x"]}"#), &rec, 0).is_err());
        assert!(matches(&f(r#"{"dangling":["maybe"]}"#), &rec, 0).is_err());
    }
}
