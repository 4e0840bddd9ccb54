//! Task bundles on disk, laid out as containerd's runtime v2 does: the bundle is
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>` with `config.json`, an empty
//! `rootfs/` (the shim mounts the snapshot there), `work` (a link to the same path under
//! `<root>`), the `log` FIFO the shim writes its log to, and the `address` file the shim writes.
//! refeng adds `refeng-task.json`: the runtime, shim binary and options the task was started
//! with, its exec ids and the exits already published, which is what a restarted daemon needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The runtime v2 plugin's directory name under `--state` and `--root`.
pub const PLUGIN_DIR: &str = "io.containerd.runtime.v2.task";
/// refeng's record of the task in the bundle.
pub const RECORD_FILE: &str = "refeng-task.json";

/// Why a bundle could not be made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// invalid {what} {value:?}: must be letters and digits separated by '.', '_' or '-', at most 76 characters
    #[error(
        "invalid {what} {value:?}: must be letters and digits separated by '.', '_' or '-', at most 76 characters"
    )]
    InvalidName {
        /// `namespace` or `id`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// bundle {0} already exists
    #[error("bundle {0} already exists")]
    Exists(PathBuf),
    /// cannot write {path}
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot write {path}
    #[error("cannot write {path}")]
    Durable {
        /// The path.
        path: PathBuf,
        #[source]
        source: crate::sys::durable::DurableWriteError,
    },
    /// malformed task record {path}
    #[error("malformed task record {path}")]
    Record {
        /// The path.
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Checks a namespace or id the way containerd's `identifiers.Validate` does, which also keeps
/// it a single safe path component.
///
/// # Errors
/// [`BundleError::InvalidName`].
pub fn validate_name(what: &'static str, value: &str) -> Result<(), BundleError> {
    let bad = || BundleError::InvalidName {
        what,
        value: value.to_string(),
    };
    if value.is_empty() || value.len() > 76 {
        return Err(bad());
    }
    let mut prev_sep = true;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            prev_sep = false;
        } else if matches!(c, '.' | '_' | '-') && !prev_sep {
            prev_sep = true;
        } else {
            return Err(bad());
        }
    }
    if prev_sep {
        return Err(bad());
    }
    Ok(())
}

/// A protobuf Any kept as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAny {
    /// The type URL.
    pub type_url: String,
    /// The message bytes.
    #[serde(with = "bytes_base64")]
    pub value: Vec<u8>,
}

mod bytes_base64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// What the daemon keeps about a task in its bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The runtime name (`io.containerd.runc.v2`).
    pub runtime: String,
    /// The shim binary that was started.
    pub shim_binary: PathBuf,
    /// The runtime options given to `start` and Create.
    #[serde(default)]
    pub options: Option<StoredAny>,
    /// Exec ids added and not yet deleted.
    #[serde(default)]
    pub execs: Vec<String>,
    /// Exits already published: (exec id, "" for init; pid). Kept after DeleteProcess, so a
    /// shim's late copy of the same exit is still recognised.
    #[serde(default)]
    pub exits_published: Vec<(String, u32)>,
}

/// Parses a task record (the bundle's `refeng-task.json`).
///
/// # Errors
/// The JSON error for anything but a record.
pub fn parse_record(bytes: &[u8]) -> Result<TaskRecord, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// One task's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The namespace.
    pub namespace: String,
    /// The task id.
    pub id: String,
    /// The bundle directory.
    pub path: PathBuf,
    /// The work directory under `--root`.
    pub work: PathBuf,
}

/// Where bundles live: `--state` and `--root` of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<state>/io.containerd.runtime.v2.task`.
    pub state: PathBuf,
    /// `<root>/io.containerd.runtime.v2.task`.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under the daemon's `--state` and `--root`.
    pub fn new(state: &Path, root: &Path) -> Self {
        Self {
            state: state.join(PLUGIN_DIR),
            root: root.join(PLUGIN_DIR),
        }
    }

    fn bundle(&self, namespace: &str, id: &str) -> Bundle {
        Bundle {
            namespace: namespace.to_string(),
            id: id.to_string(),
            path: self.state.join(namespace).join(id),
            work: self.root.join(namespace).join(id),
        }
    }

    /// Makes the bundle of a new task: directories, `work` link, `config.json`, `rootfs/`, the
    /// `log` FIFO, and the record.
    ///
    /// # Errors
    /// [`BundleError::InvalidName`] for a bad namespace or id, [`BundleError::Exists`] when the
    /// bundle is there already, I/O errors otherwise (the half-made bundle is removed).
    pub fn create(
        &self,
        namespace: &str,
        id: &str,
        spec: &[u8],
        record: &TaskRecord,
    ) -> Result<Bundle, BundleError> {
        validate_name("namespace", namespace)?;
        validate_name("id", id)?;
        let b = self.bundle(namespace, id);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io { path, source }
        };
        let parent = b.path.parent().unwrap_or(&self.state);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        match std::fs::create_dir(&b.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BundleError::Exists(b.path));
            }
            Err(e) => return Err(io(&b.path)(e)),
        }
        let made = (|| {
            std::fs::create_dir_all(&b.work).map_err(io(&b.work))?;
            std::os::unix::fs::symlink(&b.work, b.path.join("work"))
                .map_err(io(&b.path.join("work")))?;
            std::fs::create_dir(b.path.join("rootfs")).map_err(io(&b.path.join("rootfs")))?;
            let config = b.path.join("config.json");
            crate::sys::durable::write(&config, 0o644, spec).map_err(|source| {
                BundleError::Durable {
                    path: config.clone(),
                    source,
                }
            })?;
            nix::unistd::mkfifo(
                &b.path.join("log"),
                nix::sys::stat::Mode::from_bits_truncate(0o700),
            )
            .map_err(|e| io(&b.path.join("log"))(e.into()))?;
            b.write_record(record)
        })();
        if let Err(e) = made {
            b.remove();
            return Err(e);
        }
        Ok(b)
    }

    /// Every bundle on disk, by namespace then id (directories that are not valid names are
    /// skipped with a warning).
    pub fn scan(&self) -> Vec<Bundle> {
        let mut out = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&self.state) else {
            return out;
        };
        let mut namespaces: Vec<_> = namespaces.flatten().map(|e| e.file_name()).collect();
        namespaces.sort();
        for ns in namespaces {
            let ns = ns.to_string_lossy().into_owned();
            if validate_name("namespace", &ns).is_err() {
                tracing::warn!(dir = %self.state.join(&ns).display(), "not a namespace, skipped");
                continue;
            }
            let Ok(ids) = std::fs::read_dir(self.state.join(&ns)) else {
                continue;
            };
            let mut ids: Vec<_> = ids.flatten().map(|e| e.file_name()).collect();
            ids.sort();
            for id in ids {
                let id = id.to_string_lossy().into_owned();
                if validate_name("id", &id).is_err() {
                    tracing::warn!(dir = %self.state.join(&ns).join(&id).display(), "not a task, skipped");
                    continue;
                }
                out.push(self.bundle(&ns, &id));
            }
        }
        out
    }
}

impl Bundle {
    /// The record file.
    pub fn record_path(&self) -> PathBuf {
        self.path.join(RECORD_FILE)
    }

    /// Writes the record durably.
    ///
    /// # Errors
    /// [`BundleError::Durable`].
    pub fn write_record(&self, record: &TaskRecord) -> Result<(), BundleError> {
        let path = self.record_path();
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        crate::sys::durable::write(&path, 0o644, &json)
            .map_err(|source| BundleError::Durable { path, source })
    }

    /// Reads the record.
    ///
    /// # Errors
    /// [`BundleError::Io`] or [`BundleError::Record`].
    pub fn read_record(&self) -> Result<TaskRecord, BundleError> {
        let path = self.record_path();
        let bytes = std::fs::read(&path).map_err(|source| BundleError::Io {
            path: path.clone(),
            source,
        })?;
        parse_record(&bytes).map_err(|source| BundleError::Record { path, source })
    }

    /// The address the shim wrote, if any.
    pub fn address(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("address"))
            .ok()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
    }

    /// Removes the bundle: the rootfs is taken off if a mount is still there (the shim normally
    /// did), then the work directory and the bundle. Errors are logged, not returned: there is
    /// nothing else to try.
    pub fn remove(&self) {
        let rootfs = self.path.join("rootfs");
        // Every mount stacked on rootfs; umount2 answers EINVAL once none is left.
        for _ in 0..16 {
            if nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
        for dir in [&self.work, &self.path] {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_containerds_identifier_rule() {
        for good in ["a", "default", "k8s.io", "my_task-1.x", &"a".repeat(76)] {
            validate_name("id", good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "-a",
            "a-",
            "a..b",
            "a b",
            &"a".repeat(77),
            "ä",
        ] {
            assert!(validate_name("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_lays_out_the_bundle_and_scan_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().join("state"), &dir.path().join("root"));
        let record = TaskRecord {
            runtime: "io.containerd.runc.v2".into(),
            shim_binary: "/bin/shim".into(),
            options: Some(StoredAny {
                type_url: "containerd.runc.v1.Options".into(),
                value: vec![0, 1, 255],
            }),
            execs: vec!["e".into()],
            exits_published: vec![],
        };
        let b = layout.create("ns", "t1", b"{}", &record).unwrap();
        assert_eq!(
            b.path,
            dir.path().join("state/io.containerd.runtime.v2.task/ns/t1")
        );
        assert_eq!(std::fs::read(b.path.join("config.json")).unwrap(), b"{}");
        assert!(b.path.join("rootfs").is_dir());
        assert_eq!(std::fs::read_link(b.path.join("work")).unwrap(), b.work);
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(b.path.join("log"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(b.read_record().unwrap(), record);
        assert!(matches!(
            layout.create("ns", "t1", b"{}", &record),
            Err(BundleError::Exists(_))
        ));
        assert!(matches!(
            layout.create("ns", "../x", b"{}", &record),
            Err(BundleError::InvalidName { .. })
        ));
        assert_eq!(layout.scan(), std::slice::from_ref(&b));
        b.remove();
        assert!(!b.path.exists() && !b.work.exists());
        assert!(layout.scan().is_empty());
    }
}
