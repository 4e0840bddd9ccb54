//! A container's mounts as `docker run` asks for them and dockerd reads them: `Binds`
//! (`-v src:dst[:opts]`, a host path or a volume name), `Mounts` (`--mount`), `Tmpfs`
//! (`--tmpfs`), `Config.Volumes` (`-v /path` and the image's VOLUME: anonymous volumes) and
//! `VolumesFrom`; each becomes a [`MountPoint`], kept in the container's record, shown in
//! inspect's `Mounts` and turned into the OCI spec's mounts. The parsers here are pure (outside
//! input, fuzzed in `fuzz/fuzz_targets/engine_requests.rs`); what touches volumes is in the
//! `Engine` methods below ([`Engine::make_volumes`], [`Engine::acquire_volumes`], ...).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::HostConfig;
use crate::engine::error::ApiError;
use crate::engine::Engine;

/// What a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A volume of the local driver.
    Volume,
    /// A tmpfs of its own.
    Tmpfs,
}

impl MountKind {
    fn api(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// What it is.
    pub kind: MountKind,
    /// The volume's name (empty for an anonymous volume until it is made, and for others).
    pub name: String,
    /// The host path (a volume's mountpoint once known).
    pub source: String,
    /// The path in the container.
    pub destination: String,
    /// The mode as dockerd shows it (`z`, `ro`, `rw,rslave`, "").
    pub mode: String,
    /// Writable.
    pub rw: bool,
    /// A bind's propagation ("" for others).
    pub propagation: String,
    /// A new empty volume gets the image's content at the destination (not with `nocopy`).
    pub copy: bool,
    /// A tmpfs's mount options (size=, mode=, ...).
    pub tmpfs: Vec<String>,
    /// Listed in inspect's `Mounts` (not `--tmpfs`, which dockerd keeps out).
    pub listed: bool,
    /// The volume was made for this container (an anonymous one): `rm -v` and `--rm` remove it.
    pub anonymous: bool,
    /// Labels for a volume `--mount` makes (`volume-label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options for a volume `--mount` makes (`volume-opt`).
    #[serde(default)]
    pub driver_options: BTreeMap<String, String>,
    /// A bind of the source alone, not of the mounts below it (`bind-nonrecursive`).
    #[serde(default)]
    pub non_recursive: bool,
    /// A missing bind source is made (`bind-create-mountpoint`; `-v` always does).
    #[serde(default)]
    pub create_source: bool,
    /// A volume mounted from this path inside it (`volume-subpath`), relative and clean; the
    /// container gets it through [`stage_subpath`], resolved inside the volume.
    #[serde(default)]
    pub subpath: String,
}

impl MountPoint {
    fn new(kind: MountKind, destination: &str) -> MountPoint {
        MountPoint {
            kind,
            name: String::new(),
            source: String::new(),
            destination: destination.to_string(),
            mode: String::new(),
            rw: true,
            propagation: String::new(),
            copy: kind == MountKind::Volume,
            tmpfs: Vec::new(),
            listed: true,
            anonymous: false,
            labels: BTreeMap::new(),
            driver_options: BTreeMap::new(),
            non_recursive: false,
            create_source: false,
            subpath: String::new(),
        }
    }

    /// The entry of inspect's `Mounts`.
    pub fn api(&self) -> Value {
        match self.kind {
            MountKind::Volume => json!({"Type": "volume", "Name": self.name, "Source": self.source,
                "Destination": self.destination, "Driver": "local", "Mode": self.mode, "RW": self.rw,
                "Propagation": ""}),
            MountKind::Bind | MountKind::Tmpfs => json!({"Type": self.kind.api(),
                "Source": self.source, "Destination": self.destination, "Mode": self.mode,
                "RW": self.rw, "Propagation": self.propagation}),
        }
    }

    /// The OCI spec mount (runtime-spec: Mounts), as dockerd writes it.
    pub fn oci(&self) -> Value {
        match self.kind {
            MountKind::Tmpfs => {
                let mut o = vec![
                    json!("noexec"),
                    json!("nosuid"),
                    json!("nodev"),
                    json!("rprivate"),
                ];
                o.extend(self.tmpfs.iter().map(|x| json!(x)));
                if !self.rw {
                    o.push(json!("ro"));
                }
                json!({"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": o})
            }
            MountKind::Volume => {
                let mut o = vec![json!("rbind")];
                if !self.rw {
                    o.push(json!("ro"));
                }
                // A subpath's source is its staged place, set at each start
                // (`set_subpath_sources`): never a path through the volume.
                let source = if self.subpath.is_empty() {
                    self.source.as_str()
                } else {
                    ""
                };
                json!({"destination": self.destination, "type": "bind", "source": source, "options": o})
            }
            MountKind::Bind => {
                let bind = if self.non_recursive { "bind" } else { "rbind" };
                let mut o = vec![json!(bind), json!(self.propagation)];
                if !self.rw {
                    o.push(json!("ro"));
                }
                json!({"destination": self.destination, "type": "bind", "source": self.source, "options": o})
            }
        }
    }
}

/// Opens (`O_PATH`) the subpath of a volume mount inside the volume: symlinks and `..` in it
/// stay below the volume's directory, whatever a container wrote there.
///
/// # Errors
/// `BadRequest` naming the subpath and the volume when it cannot be opened.
pub fn open_subpath(m: &MountPoint) -> Result<std::os::fd::OwnedFd, ApiError> {
    use nix::fcntl::{OFlag, ResolveFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let fail = |e: nix::errno::Errno| {
        bad(format!(
            "error while mounting volume {:?} with subpath {:?}: {}",
            m.name,
            m.subpath,
            e.desc().to_lowercase()
        ))
    };
    let root = nix::fcntl::open(
        m.source.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    crate::sys::openat2::open_in_root_with(
        root.as_fd(),
        &m.subpath,
        OFlag::O_PATH,
        Mode::empty(),
        ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(fail)
}

/// A volume's subpath bound at a private place of the daemon's for the runtime to bind from:
/// the runtime is given this place, never a path through the volume that a symlink written in
/// between could redirect. Unmounted and removed on drop (the container keeps its own mount).
#[derive(Debug)]
pub struct StagedSubpath {
    /// The mount's destination in the container.
    pub destination: String,
    /// Where it is bound.
    pub path: std::path::PathBuf,
    mounted: bool,
}

/// Detaches and removes a staged place (`mounted`: whether a bind may be on it).
fn unstage(path: &std::path::Path, mounted: bool) {
    if mounted {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(path).or_else(|_| std::fs::remove_file(path));
}

/// Binds the subpath of `m` at `at` (made as a directory or a file, as the subpath is), after
/// what an earlier start may have left there (a daemon that died before its drop).
///
/// # Errors
/// `BadRequest` when the subpath cannot be opened; `Internal` when the bind fails.
pub fn stage_subpath(m: &MountPoint, at: &std::path::Path) -> Result<StagedSubpath, ApiError> {
    unstage(at, true);
    let fd = open_subpath(m)?;
    let st = nix::sys::stat::fstat(&fd)
        .map_err(|e| ApiError::internal("stat of a volume subpath", e))?;
    let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mut staged = StagedSubpath {
        destination: m.destination.clone(),
        path: at.to_path_buf(),
        mounted: false,
    };
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ApiError::internal("making the subpath mount point", e))?;
    }
    let made = if dir {
        std::fs::create_dir(at)
    } else {
        std::fs::File::create(at).map(drop)
    };
    made.map_err(|e| ApiError::internal("making the subpath mount point", e))?;
    let source = crate::sys::openat2::proc_fd_path(&fd);
    nix::mount::mount(
        Some(&source),
        at,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| ApiError::internal("binding a volume subpath", e))?;
    staged.mounted = true;
    nix::mount::mount(
        None::<&str>,
        at,
        None::<&str>,
        nix::mount::MsFlags::MS_PRIVATE | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| ApiError::internal("making a subpath mount private", e))?;
    Ok(staged)
}

impl Drop for StagedSubpath {
    fn drop(&mut self) {
        unstage(&self.path, self.mounted);
    }
}

/// Points the bind of each subpath mount in `spec` at its staged place; true when one was.
pub fn set_subpath_sources(spec: &mut Value, staged: &[StagedSubpath]) -> bool {
    let Some(list) = spec["mounts"].as_array_mut() else {
        return false;
    };
    let mut changed = false;
    for s in staged {
        if let Some(e) = list
            .iter_mut()
            .find(|e| e["destination"] == s.destination.as_str())
        {
            e["source"] = json!(s.path);
            changed = true;
        }
    }
    changed
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn check_destination(kind: &str, dst: &str) -> Result<(), ApiError> {
    if !dst.starts_with('/') {
        return Err(bad(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    if dst.trim_end_matches('/').is_empty() {
        return Err(bad(format!(
            "invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
        )));
    }
    if dst.split('/').any(|c| c == "..") {
        return Err(bad(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{dst}' must not contain '..'"
        )));
    }
    Ok(())
}

/// One `Binds` entry (`-v`): `host-path:dst[:opts]` or `volume:dst[:opts]`; options ro, rw,
/// z, Z (SELinux relabels, nothing to do on a host without SELinux, as dockerd), nocopy, and a
/// bind's propagation.
///
/// # Errors
/// `BadRequest` for a malformed entry, a bad name or path, or an option refengd does not
/// implement (named).
pub fn parse_bind(spec: &str) -> Result<MountPoint, ApiError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad(format!("invalid volume specification: '{spec}'"))),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(bad(format!("invalid volume specification: '{spec}'")));
    }
    let is_bind = src.starts_with('/');
    let kind = if is_bind { "bind" } else { "volume" };
    check_destination(kind, dst)?;
    let mut m = MountPoint::new(
        if is_bind {
            MountKind::Bind
        } else {
            MountKind::Volume
        },
        dst,
    );
    if is_bind {
        m.source = src.to_string();
        m.propagation = "rprivate".into();
        // dockerd makes a missing host directory of a `-v` bind.
        m.create_source = true;
    } else {
        crate::engine::volumes::check_name(src)?;
        m.name = src.to_string();
        // dockerd shows a named volume without options as `z`.
        m.mode = "z".into();
    }
    if !opts.is_empty() {
        m.mode = opts.to_string();
    }
    let mut seen_rw = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" if seen_rw => {
                return Err(bad(format!("invalid mode: {opts}")));
            }
            "ro" => {
                m.rw = false;
                seen_rw = true;
            }
            "rw" => seen_rw = true,
            "z" | "Z" => {}
            "nocopy" if !is_bind => m.copy = false,
            p if is_bind && PROPAGATIONS.contains(&p) => m.propagation = p.to_string(),
            _ => {
                return Err(bad(format!(
                    "invalid mode: {opts} (option {o:?} of {spec:?} is not supported by refengd)"
                )))
            }
        }
    }
    Ok(m)
}

/// `Config.Volumes` key (`-v /path`, an image's VOLUME): an anonymous volume at `dst`.
///
/// # Errors
/// `BadRequest` for a relative or root destination.
pub fn parse_anonymous(dst: &str) -> Result<MountPoint, ApiError> {
    check_destination("volume", dst)?;
    let mut m = MountPoint::new(MountKind::Volume, dst);
    m.anonymous = true;
    Ok(m)
}

/// One `HostConfig.Tmpfs` entry (`--tmpfs dst:opts`): a tmpfs not listed in `Mounts`.
///
/// # Errors
/// `BadRequest` for a bad destination or an option that is not a tmpfs one.
pub fn parse_tmpfs(dst: &str, opts: &str) -> Result<MountPoint, ApiError> {
    check_destination("tmpfs", dst)?;
    let mut m = MountPoint::new(MountKind::Tmpfs, dst);
    m.listed = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let key = o.split('=').next().unwrap_or("");
        match key {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            "size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks" | "exec" | "noexec"
            | "suid" | "nosuid" | "dev" | "nodev" | "atime" | "noatime" | "relatime"
            | "strictatime" | "nodiratime" => m.tmpfs.push(o.to_string()),
            _ => {
                return Err(bad(format!(
                    "invalid tmpfs option {o:?} for {dst} (refengd takes size, mode, uid, gid, \
                     nr_inodes, nr_blocks, ro/rw and the exec/suid/dev/atime flags)"
                )))
            }
        }
    }
    Ok(m)
}

/// The `Mount` object of the API (`--mount`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
    consistency: String,
    bind_options: Option<Value>,
    volume_options: Option<Value>,
    tmpfs_options: Option<Value>,
}

fn refuse_unknown(what: &str, v: &Value, known: &[&str]) -> Result<(), ApiError> {
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if !known.contains(&k.as_str()) && !super::body::is_zero(val) {
                return Err(bad(format!(
                    "Mounts: {what}.{k} is not supported by refengd (got {val})"
                )));
            }
        }
    }
    Ok(())
}

fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad(format!("Mounts: {what} must map strings to strings"))),
            })
            .collect(),
        Some(_) => Err(bad(format!("Mounts: {what} must be an object"))),
    }
}

/// One `HostConfig.Mounts` entry (`--mount`): type bind (ReadOnly, BindOptions.Propagation),
/// volume (ReadOnly, VolumeOptions.NoCopy, Labels, DriverConfig of the local driver) or tmpfs
/// (TmpfsOptions.SizeBytes, Mode); every other option is refused by name.
///
/// # Errors
/// `BadRequest` as dockerd's mount validation, or naming what refengd does not implement.
pub fn parse_mount(v: &Value) -> Result<MountPoint, ApiError> {
    let b: MountBody =
        serde_json::from_value(v.clone()).map_err(|e| bad(format!("invalid Mounts entry: {e}")))?;
    refuse_unknown(
        "Mount",
        v,
        &[
            "Type",
            "Source",
            "Target",
            "ReadOnly",
            "Consistency",
            "BindOptions",
            "VolumeOptions",
            "TmpfsOptions",
        ],
    )?;
    if !matches!(b.consistency.as_str(), "" | "default" | "consistent") {
        return Err(bad(format!(
            "Mounts: Consistency {:?} is not supported by refengd",
            b.consistency
        )));
    }
    if b.target.is_empty() {
        return Err(bad("invalid mount config: Target must not be empty"));
    }
    let wrong = |opt: &str| {
        bad(format!(
            "invalid mount config for type \"{}\": {opt} options are not allowed with this type",
            b.kind
        ))
    };
    let mut m = match b.kind.as_str() {
        "bind" => {
            check_destination("bind", &b.target)?;
            if b.volume_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("volume"));
            }
            if b.tmpfs_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("tmpfs"));
            }
            if !b.source.starts_with('/') {
                return Err(bad(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                    b.source
                )));
            }
            let mut m = MountPoint::new(MountKind::Bind, &b.target);
            m.source = b.source.clone();
            m.propagation = "rprivate".into();
            if let Some(o) = b.bind_options.as_ref().filter(|o| !o.is_null()) {
                refuse_unknown(
                    "BindOptions",
                    o,
                    &["Propagation", "NonRecursive", "CreateMountpoint"],
                )?;
                m.non_recursive = o.get("NonRecursive").and_then(Value::as_bool) == Some(true);
                m.create_source = o.get("CreateMountpoint").and_then(Value::as_bool) == Some(true);
                match o.get("Propagation").and_then(Value::as_str).unwrap_or("") {
                    "" => {}
                    p if PROPAGATIONS.contains(&p) => m.propagation = p.to_string(),
                    p => return Err(bad(format!("invalid propagation mode: {p}"))),
                }
            }
            m
        }
        "volume" => {
            check_destination("volume", &b.target)?;
            if b.bind_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("bind"));
            }
            if b.tmpfs_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("tmpfs"));
            }
            let mut m = MountPoint::new(MountKind::Volume, &b.target);
            if b.source.is_empty() {
                m.anonymous = true;
            } else {
                crate::engine::volumes::check_name(&b.source)?;
                m.name = b.source.clone();
                m.mode = "z".into();
            }
            if let Some(o) = b.volume_options.as_ref().filter(|o| !o.is_null()) {
                refuse_unknown(
                    "VolumeOptions",
                    o,
                    &["NoCopy", "Labels", "DriverConfig", "Subpath"],
                )?;
                if o.get("NoCopy").and_then(Value::as_bool) == Some(true) {
                    m.copy = false;
                }
                let subpath = o.get("Subpath").and_then(Value::as_str).unwrap_or("");
                if !subpath.is_empty() {
                    let local = !subpath.starts_with('/')
                        && subpath.split('/').all(|c| c != ".." && !c.contains('\0'));
                    if !local {
                        return Err(bad(format!(
                            "invalid mount config for type \"volume\": subpath must be a \
                             relative path within the volume (got {subpath:?})"
                        )));
                    }
                    m.subpath = subpath
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .collect::<Vec<_>>()
                        .join("/");
                    // The volume's own content is mounted, never the image's copied up.
                    m.copy = false;
                }
                m.labels = string_map(o.get("Labels"), "VolumeOptions.Labels")?;
                if let Some(dc) = o.get("DriverConfig").filter(|d| !d.is_null()) {
                    refuse_unknown("VolumeOptions.DriverConfig", dc, &["Name", "Options"])?;
                    let name = dc.get("Name").and_then(Value::as_str).unwrap_or("");
                    if !matches!(name, "" | "local") {
                        return Err(ApiError::NotFound(format!(
                            "error looking up volume plugin {name}: plugin \"{name}\" not found"
                        )));
                    }
                    m.driver_options =
                        string_map(dc.get("Options"), "VolumeOptions.DriverConfig.Options")?;
                }
            }
            m
        }
        "tmpfs" => {
            check_destination("tmpfs", &b.target)?;
            if !b.source.is_empty() {
                return Err(bad(
                    "invalid mount config for type \"tmpfs\": source must not be specified",
                ));
            }
            if b.bind_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("bind"));
            }
            if b.volume_options.as_ref().is_some_and(|x| !x.is_null()) {
                return Err(wrong("volume"));
            }
            let mut m = MountPoint::new(MountKind::Tmpfs, &b.target);
            if let Some(o) = b.tmpfs_options.as_ref().filter(|o| !o.is_null()) {
                refuse_unknown("TmpfsOptions", o, &["SizeBytes", "Mode"])?;
                // dockerd writes the mode in octal, then the size in bytes.
                if let Some(mode) = o.get("Mode").and_then(Value::as_u64).filter(|m| *m != 0) {
                    m.tmpfs.push(format!("mode={mode:o}"));
                }
                match o.get("SizeBytes").and_then(Value::as_i64) {
                    Some(s) if s < 0 => {
                        return Err(bad(format!(
                            "invalid mount config for type \"tmpfs\": invalid tmpfs size {s}"
                        )))
                    }
                    Some(s) if s > 0 => m.tmpfs.push(tmpfs_size(s)),
                    _ => {}
                }
            }
            m
        }
        "" => return Err(bad("invalid mount config: mount type unknown")),
        other => {
            return Err(bad(format!(
                "invalid mount config: mount type unknown: {other:?} (refengd has bind, volume \
                 and tmpfs)"
            )))
        }
    };
    m.rw = !b.read_only;
    Ok(m)
}

/// A tmpfs size as dockerd prints it (`size=1m` for 1 MiB, the largest exact unit).
fn tmpfs_size(bytes: i64) -> String {
    for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
        if bytes % (1 << shift) == 0 {
            return format!("size={}{unit}", bytes >> shift);
        }
    }
    format!("size={bytes}")
}

/// One `VolumesFrom` entry: `container[:ro|rw]`.
///
/// # Errors
/// `BadRequest` for an empty name or another mode.
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>), ApiError> {
    let (name, mode) = match spec.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(bad(format!("invalid volumes-from specification: {spec:?}")));
    }
    let rw = match mode {
        None => None,
        Some("rw") => Some(true),
        Some("ro") => Some(false),
        Some(m) => return Err(bad(format!("invalid mode for volumes-from: {m}"))),
    };
    Ok((name.to_string(), rw))
}

/// The mounts a create asks for, parsed and checked, before any volume is made: `Binds`,
/// `Mounts`, `Tmpfs`, then `volumes_from` (already resolved to the other containers' mounts),
/// then an anonymous volume for each `Config.Volumes` path nothing else covers.
///
/// # Errors
/// `BadRequest` for a bad entry or a destination given twice ("Duplicate mount point").
pub fn parse_all(
    host: &HostConfig,
    volumes: &[String],
    volumes_from: Vec<MountPoint>,
) -> Result<Vec<MountPoint>, ApiError> {
    let mut out: Vec<MountPoint> = Vec::new();
    let mut seen = BTreeSet::new();
    let norm = |d: &str| d.trim_end_matches('/').to_string();
    let mut push = |m: MountPoint, out: &mut Vec<MountPoint>| -> Result<(), ApiError> {
        if !seen.insert(norm(&m.destination)) {
            return Err(bad(format!("Duplicate mount point: {}", m.destination)));
        }
        out.push(m);
        Ok(())
    };
    for b in host.binds.iter().flatten() {
        push(parse_bind(b)?, &mut out)?;
    }
    for m in host.mounts.iter().flatten() {
        push(parse_mount(m)?, &mut out)?;
    }
    for (dst, opts) in host.tmpfs.iter().flatten() {
        push(parse_tmpfs(dst, opts)?, &mut out)?;
    }
    for m in volumes_from {
        // A path the container mounts itself wins over the other container's.
        if out
            .iter()
            .any(|o| norm(&o.destination) == norm(&m.destination))
        {
            continue;
        }
        push(m, &mut out)?;
    }
    for v in volumes {
        if out.iter().any(|o| norm(&o.destination) == norm(v)) {
            continue;
        }
        push(parse_anonymous(v)?, &mut out)?;
    }
    Ok(out)
}

impl Engine {
    /// The containers (ids) whose mounts name volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.containers
            .lock()
            .values()
            .filter(|e| {
                e.stored
                    .mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.name == name)
            })
            .map(|e| e.stored.id.clone())
            .collect()
    }

    /// Makes the volumes `mounts` need (named ones that do not exist, anonymous ones) and
    /// fills in their names and sources; returns the names of the volumes made now, for the
    /// caller to remove when the create fails, and whether each mount's volume is new.
    ///
    /// # Errors
    /// The volume store's errors.
    pub fn make_volumes(&self, mounts: &mut [MountPoint]) -> Result<Vec<String>, ApiError> {
        let mut made = Vec::new();
        let result = (|| {
            for m in mounts.iter_mut().filter(|m| m.kind == MountKind::Volume) {
                let name = (!m.name.is_empty()).then_some(m.name.as_str());
                let labels = (!m.labels.is_empty()).then(|| m.labels.clone());
                let opts = (!m.driver_options.is_empty()).then(|| m.driver_options.clone());
                let (rec, new) = self.volumes.create(name, "local", labels, opts)?;
                if new {
                    made.push(rec.name.clone());
                    self.volume_event(&rec.name, "create");
                }
                m.name = rec.name.clone();
                m.source = self
                    .volumes
                    .mountpoint(&rec.name)
                    .to_string_lossy()
                    .into_owned();
            }
            Ok::<(), ApiError>(())
        })();
        match result {
            Ok(()) => Ok(made),
            Err(e) => {
                for n in &made {
                    let _ = self.volumes.remove(n);
                }
                Err(e)
            }
        }
    }

    /// The mounts of the containers `--volumes-from` names, each with the mode asked for.
    ///
    /// # Errors
    /// `NotFound` for a container that does not exist; `BadRequest` for a bad entry.
    pub fn volumes_from(&self, specs: &[String]) -> Result<Vec<MountPoint>, ApiError> {
        let mut out = Vec::new();
        for s in specs {
            let (name, rw) = parse_volumes_from(s)?;
            let map = self.containers.lock();
            let id = super::find_in(&map, &name)?;
            let Some(e) = map.get(&id) else { continue };
            for m in e
                .stored
                .mounts
                .iter()
                .filter(|m| m.kind != MountKind::Tmpfs)
            {
                let mut m = m.clone();
                // The volume belongs to the container that made it.
                m.anonymous = false;
                m.copy = false;
                if let Some(rw) = rw {
                    m.rw = rw;
                    m.mode = if rw { "rw".into() } else { "ro".into() };
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Takes the volumes of container `id` for a run: the first user of a volume with options
    /// (a tmpfs, a bind) mounts it; emits dockerd's `mount` events.
    ///
    /// # Errors
    /// A volume's mount failing (what was taken is given back).
    pub fn acquire_volumes(&self, id: &str, mounts: &[MountPoint]) -> Result<(), ApiError> {
        let vols: Vec<&MountPoint> = mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume)
            .collect();
        for (i, m) in vols.iter().enumerate() {
            if let Err(e) = self.volumes.acquire(&m.name) {
                for done in &vols[..i] {
                    self.volumes.release(&done.name);
                }
                return Err(e.into());
            }
        }
        for m in vols {
            let attrs = [
                ("container".to_string(), id.to_string()),
                ("destination".to_string(), m.destination.clone()),
                (
                    "driver".to_string(),
                    crate::engine::volumes::LOCAL.to_string(),
                ),
                ("propagation".to_string(), String::new()),
                ("read/write".to_string(), m.rw.to_string()),
            ]
            .into();
            self.events.emit(crate::engine::events::Event::new(
                "volume", "mount", &m.name, attrs,
            ));
        }
        Ok(())
    }

    /// Gives back what [`Engine::acquire_volumes`] took once the run of `id` ended; emits
    /// `unmount`.
    pub fn release_volumes(&self, id: &str, mounts: &[MountPoint]) {
        for m in mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            self.volumes.release(&m.name);
            let attrs = [
                ("container".to_string(), id.to_string()),
                (
                    "driver".to_string(),
                    crate::engine::volumes::LOCAL.to_string(),
                ),
            ]
            .into();
            self.events.emit(crate::engine::events::Event::new(
                "volume", "unmount", &m.name, attrs,
            ));
        }
    }

    /// After container `id` is gone: removes the anonymous volumes it made that no other
    /// container uses (`rm -v`, `--rm`).
    pub fn remove_anonymous_volumes(self: &Arc<Self>, mounts: &[MountPoint]) {
        for m in mounts
            .iter()
            .filter(|m| m.anonymous && m.kind == MountKind::Volume)
        {
            if !self.volume_users(&m.name).is_empty() {
                continue;
            }
            match self.volumes.remove(&m.name) {
                Ok(()) => self.volume_event(&m.name, "destroy"),
                Err(e) => {
                    tracing::warn!(volume = %m.name, error = %e, "anonymous volume not removed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_host_paths_or_volumes_with_dockerd_s_modes() {
        let m = parse_bind("/a:/b:ro").unwrap();
        assert_eq!(
            (m.kind, m.rw, m.mode.as_str()),
            (MountKind::Bind, false, "ro")
        );
        assert_eq!(
            m.oci(),
            json!({"destination": "/b", "type": "bind", "source": "/a", "options": ["rbind", "rprivate", "ro"]})
        );
        let m = parse_bind("data:/d").unwrap();
        assert_eq!(
            (m.kind, m.name.as_str(), m.mode.as_str()),
            (MountKind::Volume, "data", "z")
        );
        assert!(m.copy);
        assert!(!parse_bind("data:/d:nocopy").unwrap().copy);
        assert_eq!(parse_bind("/a:/b:rslave").unwrap().propagation, "rslave");
        assert!(parse_bind("data:/d:rslave").is_err());
        assert!(parse_bind("/a:b").is_err());
        assert!(parse_bind("/a:/").is_err());
        assert!(parse_bind("a/b:/c")
            .unwrap_err()
            .to_string()
            .contains("invalid characters"));
        assert!(parse_bind("/a:/b:ro,rw").is_err());
        assert!(parse_bind("/a:/b:bogus")
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }

    #[test]
    fn mount_objects_parse_their_options_or_name_what_is_refused() {
        let t = parse_mount(&json!({"Type": "tmpfs", "Target": "/t",
            "TmpfsOptions": {"SizeBytes": 1_048_576, "Mode": 0o700}}))
        .unwrap();
        assert_eq!(t.tmpfs, ["mode=700", "size=1m"]);
        assert_eq!(
            t.oci()["options"],
            json!(["noexec", "nosuid", "nodev", "rprivate", "mode=700", "size=1m"])
        );
        let v = parse_mount(
            &json!({"Type": "volume", "Source": "vv", "Target": "/v", "ReadOnly": true,
            "VolumeOptions": {"NoCopy": true}}),
        )
        .unwrap();
        assert!(!v.rw && !v.copy && v.name == "vv");
        let v = parse_mount(&json!({"Type": "volume", "Source": "vv", "Target": "/v",
            "VolumeOptions": {"Subpath": "./a//b/"}}))
        .unwrap();
        assert_eq!((v.subpath.as_str(), v.copy), ("a/b", false));
        assert_eq!(
            v.oci()["source"],
            "",
            "a subpath is bound from its staged place only"
        );
        let b = parse_mount(&json!({"Type": "bind", "Source": "/s", "Target": "/b",
            "BindOptions": {"Propagation": "rshared"}}))
        .unwrap();
        assert_eq!(b.propagation, "rshared");
        let b = parse_mount(&json!({"Type": "bind", "Source": "/s", "Target": "/b",
            "BindOptions": {"NonRecursive": true, "CreateMountpoint": true}}))
        .unwrap();
        assert!(b.non_recursive && b.create_source);
        assert_eq!(b.oci()["options"], json!(["bind", "rprivate"]));
        for (body, named) in [
            (
                json!({"Type": "bind", "Source": "/s", "Target": "/b", "BindOptions": {"ReadOnlyNonRecursive": true}}),
                "ReadOnlyNonRecursive",
            ),
            (
                json!({"Type": "volume", "Source": "vv", "Target": "/v", "VolumeOptions": {"Subpath": "../x"}}),
                "subpath must be a relative path",
            ),
            (
                json!({"Type": "volume", "Source": "vv", "Target": "/v", "VolumeOptions": {"Subpath": "/x"}}),
                "subpath must be a relative path",
            ),
            (
                json!({"Type": "volume", "Source": "v", "Target": "/v"}),
                "too short",
            ),
            (json!({"Type": "npipe", "Target": "/n"}), "npipe"),
            (
                json!({"Type": "tmpfs", "Source": "x", "Target": "/t"}),
                "source",
            ),
        ] {
            let e = parse_mount(&body).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn tmpfs_and_volumes_from_entries_parse() {
        let t = parse_tmpfs("/t", "size=1m,noexec").unwrap();
        assert!(!t.listed && t.tmpfs == ["size=1m", "noexec"]);
        assert!(parse_tmpfs("/t", "bogus=1").is_err());
        assert_eq!(
            parse_volumes_from("c:ro").unwrap(),
            ("c".into(), Some(false))
        );
        assert_eq!(parse_volumes_from("c").unwrap(), ("c".into(), None));
        assert!(parse_volumes_from("c:zz").is_err());
        assert!(parse_volumes_from(":ro").is_err());
    }

    #[test]
    fn every_source_is_gathered_and_duplicates_refused() {
        let host = HostConfig {
            binds: Some(vec!["/h:/a".into(), "v1:/b".into()]),
            tmpfs: Some([("/t".to_string(), String::new())].into()),
            ..Default::default()
        };
        let all = parse_all(&host, &["/b".into(), "/c/".into()], Vec::new()).unwrap();
        let dsts: Vec<&str> = all.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dsts, ["/a", "/b", "/t", "/c/"]);
        assert!(all[3].anonymous);
        let host = HostConfig {
            binds: Some(vec!["/h:/a".into(), "v1:/a/".into()]),
            ..Default::default()
        };
        assert!(parse_all(&host, &[], Vec::new())
            .unwrap_err()
            .to_string()
            .contains("Duplicate mount point"));
    }
}
