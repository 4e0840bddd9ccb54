//! A container's filesystem as files: `GET /containers/{id}/export` (a tar of its root
//! filesystem, running or not) and `GET /containers/{id}/changes` (`docker diff`: what its
//! writable layer added, changed and deleted against its image). Both read a read-only view of
//! the container's snapshot, never the container's own mount: an overlay whose lower layers
//! are the writable layer over the image's, or the snapshot's directory bound read-only.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use containerd_client::types::Mount;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::super::error::ApiError;
use super::super::image_archive::ChunkWriter;
use super::super::Engine;
use crate::image::snapshot::{MountGuard, MountSpec};
use crate::image::tar::Builder;

/// The writable layer and the layers below it (top first) of a snapshot's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    /// The writable layer.
    pub upper: PathBuf,
    /// The container's init layer (its mount points) and the image's layers, top first (empty
    /// for an image without layers).
    pub lower: Vec<PathBuf>,
}

/// Reads the layers from containerd's mounts of an active snapshot: one overlay (upperdir,
/// lowerdir) or one bind of a single directory.
///
/// # Errors
/// Any other shape.
pub fn layers(mounts: &[Mount]) -> Result<Layers, String> {
    let [m] = mounts else {
        return Err(format!("{} stacked mounts", mounts.len()));
    };
    match m.r#type.as_str() {
        "bind" | "rbind" => Ok(Layers {
            upper: m.source.clone().into(),
            lower: Vec::new(),
        }),
        "overlay" => {
            let opt = |k: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            let upper = opt("upperdir").ok_or("an overlay without upperdir")?;
            let lower = opt("lowerdir")
                .map(|l| l.split(':').map(PathBuf::from).collect())
                .unwrap_or_default();
            Ok(Layers {
                upper: upper.into(),
                lower,
            })
        }
        other => Err(format!("a {other} mount")),
    }
}

/// A read-only mount of `dirs` stacked (top first) at `target`.
fn view(dirs: &[PathBuf], target: &Path) -> Result<Option<MountGuard>, String> {
    let spec = match dirs {
        [] => return Ok(None),
        [one] => MountSpec {
            fs_type: "bind".into(),
            source: one.clone(),
            options: vec!["ro".into()],
        },
        _ => MountSpec {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!(
                "lowerdir={}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            )],
        },
    };
    spec.mount(target).map(Some).map_err(|e| e.to_string())
}

/// A scratch directory under the data root that goes when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(root: &Path, what: &str) -> Result<Scratch, String> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let dir = root.join("tmp").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// One entry of `docker diff`: 0 changed, 1 added, 2 deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Absolute in the container.
    pub path: String,
    /// dockerd's kind.
    pub kind: u8,
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, crate::image::layer::OVERLAY_OPAQUE_XATTR)
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

/// What the writable layer `upper` changed against the image's filesystem mounted at `lower`
/// (`None` for an image without layers): whiteouts are deletions, entries the image has are
/// changes, others additions; below an opaque directory, what the image had is deleted.
/// Sorted by path.
///
/// # Errors
/// I/O errors reading either tree.
pub fn changes(upper: &Path, lower: Option<&Path>) -> std::io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, lower, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(
    upper: &Path,
    lower: Option<&Path>,
    rel: &str,
    out: &mut Vec<Change>,
) -> std::io::Result<()> {
    let dir = upper.join(rel.trim_start_matches('/'));
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        let meta = entry.metadata()?;
        let in_lower = lower
            .and_then(|l| std::fs::symlink_metadata(l.join(path.trim_start_matches('/'))).ok());
        if is_whiteout(&meta) {
            if in_lower.is_some() {
                out.push(Change { path, kind: 2 });
            }
            continue;
        }
        out.push(Change {
            path: path.clone(),
            kind: if in_lower.is_some() { 0 } else { 1 },
        });
        if meta.is_dir() {
            if is_opaque(&entry.path()) {
                if let (Some(l), Some(m)) = (lower, in_lower.as_ref()) {
                    if m.is_dir() {
                        for e in std::fs::read_dir(l.join(path.trim_start_matches('/')))? {
                            let n = e?.file_name().to_string_lossy().into_owned();
                            if std::fs::symlink_metadata(entry.path().join(&n)).is_err() {
                                out.push(Change {
                                    path: format!("{path}/{n}"),
                                    kind: 2,
                                });
                            }
                        }
                    }
                }
            }
            walk(upper, lower, &path, out)?;
        }
    }
    Ok(())
}

/// Leaves out what the runtime made for its mounts (the destinations and the directories made
/// or touched only to hold them), as dockerd's init layer keeps them out of `docker diff`.
#[must_use]
pub fn without_mountpoints(all: Vec<Change>, destinations: &[String]) -> Vec<Change> {
    let is_dest = |p: &str| destinations.iter().any(|d| d == p);
    let under =
        |p: &str, d: &str| d.len() > p.len() && d.starts_with(p) && d.as_bytes()[p.len()] == b'/';
    let kept: Vec<Change> = all.into_iter().filter(|c| !is_dest(&c.path)).collect();
    kept.iter()
        .filter(|c| {
            let holds_dest = destinations.iter().any(|d| under(&c.path, d));
            !holds_dest || kept.iter().any(|o| under(&c.path, &o.path))
        })
        .cloned()
        .collect()
}

impl Engine {
    /// The container's snapshot layers and its spec's mount destinations.
    async fn container_layers(
        &self,
        name: &str,
    ) -> Result<(String, Layers, Vec<String>), ApiError> {
        let id = self.containers.find(name)?;
        let dests: Vec<String> = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            e.stored.spec["mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["destination"].as_str().map(String::from))
                .collect()
        };
        let mounts = self.containers.ctd.mounts(&id).await?;
        let l = layers(&mounts)
            .map_err(|e| ApiError::Internal(format!("the filesystem of container {id}: {e}")))?;
        Ok((id, l, dests))
    }

    /// `GET /containers/{id}/export`: its root filesystem as a tar stream.
    ///
    /// # Errors
    /// 404; a snapshot that cannot be read.
    pub async fn container_export(&self, name: &str) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let (id, l, _) = self.container_layers(name).await?;
        let root = self.config().data_root.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::task::spawn_blocking(move || {
            let r = (|| -> Result<(), String> {
                let scratch = Scratch::new(&root, "export")?;
                let mut dirs = vec![l.upper.clone()];
                dirs.extend(l.lower.iter().cloned());
                let _guard = view(&dirs, &scratch.0)?;
                let mut b = Builder::new(ChunkWriter::new(tx));
                crate::containerd::layerdiff::write_changes(
                    &scratch.0.join(".no-lower"),
                    &scratch.0,
                    None,
                    &mut b,
                )
                .map_err(|e| e.to_string())?;
                b.finish()
                    .and_then(|mut w| w.flush())
                    .map_err(|e| e.to_string())?;
                Ok(())
            })();
            if let Err(e) = r {
                tracing::warn!(%id, error = %e, "export ended early");
            }
        });
        Ok(rx)
    }

    /// `GET /containers/{id}/changes`.
    ///
    /// # Errors
    /// 404; a snapshot that cannot be read.
    pub async fn container_changes(&self, name: &str) -> Result<Value, ApiError> {
        let (id, l, dests) = self.container_layers(name).await?;
        let root = self.config().data_root.clone();
        let all = tokio::task::spawn_blocking(move || -> Result<Vec<Change>, String> {
            let scratch = Scratch::new(&root, "changes")?;
            let guard = view(&l.lower, &scratch.0)?;
            let lower = guard.as_ref().map(|_| scratch.0.as_path());
            let r = changes(&l.upper, lower).map_err(|e| e.to_string());
            drop(guard);
            r
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("the changes of container {id}: {e}")))?;
        let list: Vec<Value> = without_mountpoints(all, &dests)
            .into_iter()
            .map(|c| json!({"Path": c.path, "Kind": c.kind}))
            .collect();
        Ok(Value::Array(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            target: String::new(),
            options: options.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn layers_come_from_the_mounts() {
        let l = layers(&[m(
            "overlay",
            "overlay",
            &["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"],
        )])
        .unwrap();
        assert_eq!(l.upper, PathBuf::from("/u"));
        assert_eq!(l.lower, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let l = layers(&[m("bind", "/s", &["rbind", "rw"])]).unwrap();
        assert!(l.lower.is_empty());
        assert!(layers(&[]).is_err());
        assert!(layers(&[m("tmpfs", "x", &[])]).is_err());
    }

    #[test]
    fn changes_against_the_image() {
        let t = tempfile::tempdir().unwrap();
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        for d in ["etc", "new", "gone-parent"] {
            std::fs::create_dir_all(up.join(d)).unwrap();
        }
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::create_dir_all(low.join("gone-parent")).unwrap();
        std::fs::write(low.join("etc/passwd"), "x").unwrap();
        std::fs::write(up.join("etc/passwd"), "y").unwrap();
        std::fs::write(low.join("gone-parent/f"), "x").unwrap();
        nix::sys::stat::mknod(
            &up.join("gone-parent/f"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::write(up.join("new/file"), "z").unwrap();
        let c = changes(&up, Some(&low)).unwrap();
        let got: Vec<(&str, u8)> = c.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(
            got,
            [
                ("/etc", 0),
                ("/etc/passwd", 0),
                ("/gone-parent", 0),
                ("/gone-parent/f", 2),
                ("/new", 1),
                ("/new/file", 1)
            ]
        );
    }

    #[test]
    fn mountpoints_and_their_holders_are_left_out() {
        let c = |p: &str, kind| Change {
            path: p.into(),
            kind,
        };
        let all = vec![
            c("/dev", 0),
            c("/dev/pts", 1),
            c("/etc", 0),
            c("/etc/hosts", 1),
            c("/etc/passwd", 0),
            c("/proc", 1),
            c("/tmp", 0),
            c("/tmp/x", 1),
        ];
        let dests: Vec<String> = ["/proc", "/dev/pts", "/etc/hosts"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let got: Vec<String> = without_mountpoints(all, &dests)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(got, ["/etc", "/etc/passwd", "/tmp", "/tmp/x"]);
    }
}
