//! The Diff service: Apply unpacks a layer from the content store into the mounts of an active
//! snapshot (how `ctr images pull/import` unpack), with [`crate::image::layer`]'s applier:
//! overlayfs-aware straight into the upper directory, or with whiteouts applied by deletion into
//! a bind-mounted directory. Diff makes a layer from two mounts (the lower and the upper
//! snapshot), tar or tar+gzip, into the content store (see [`super::layerdiff`]).

use std::sync::Arc;

use std::io::Write as _;

use containerd_client::services::v1::{
    ApplyRequest, ApplyResponse, DiffRequest, DiffResponse, Info,
};
use containerd_client::types::{Descriptor, Mount};

use super::content::{self, parse_digest};
use super::error::Error;
use super::grpc;
use super::metadata::Read as _;
use super::{identifiers, layerdiff, leases, now, Daemon, Services};
use crate::image::digest::Algorithm;
use crate::image::format;
use crate::image::layer::{apply_layer, ApplyOptions, WhiteoutMode};
use crate::image::snapshot::{MountGuard, MountSpec};
use crate::image::tar::Builder;
use crate::unary;

/// The layer media types Apply takes (compression is detected from the bytes).
const LAYER_TYPES: &[&str] = &[
    format::OCI_LAYER,
    format::OCI_LAYER_GZIP,
    format::OCI_LAYER_ZSTD,
    format::DOCKER_LAYER,
    format::DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Where and how to apply into `mounts`.
///
/// # Errors
/// `NotImplemented` for mounts other than one bind or one overlay with an upper directory.
pub fn target(mounts: &[Mount]) -> Result<(std::path::PathBuf, ApplyOptions), Error> {
    let [m] = mounts else {
        return Err(Error::NotImplemented(format!(
            "applying into {} mounts (one bind or overlay mount is supported)",
            mounts.len()
        )));
    };
    let mut opts = ApplyOptions::default();
    match m.r#type.as_str() {
        "bind" | "rbind" => {
            if m.options.iter().any(|o| o == "ro") {
                return Err(Error::InvalidArgument(format!(
                    "mount {} is read-only",
                    m.source
                )));
            }
            opts.whiteouts = WhiteoutMode::Delete;
            Ok((m.source.clone().into(), opts))
        }
        "overlay" => {
            let opt = |k: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(k).map(str::to_string))
            };
            let upper = opt("upperdir=").ok_or_else(|| {
                Error::InvalidArgument("overlay mount has no upperdir (read-only)".into())
            })?;
            opts.whiteouts = WhiteoutMode::Overlay;
            opts.lowers = opt("lowerdir=")
                .map(|l| l.split(':').map(Into::into).collect())
                .unwrap_or_default();
            Ok((upper.into(), opts))
        }
        other => Err(Error::NotImplemented(format!(
            "applying into a {other:?} mount"
        ))),
    }
}

/// Hashes what passes through (the uncompressed tar: its digest is the layer's diff id).
struct Hashing<W> {
    inner: W,
    hasher: crate::image::digest::Hasher,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A directory holding what `mounts` show: a bind's source as it is, anything else mounted
/// under `scratch` for the time of the guard; no mounts at all is an empty tree.
fn tree_of(
    mounts: &[Mount],
    scratch: &std::path::Path,
) -> Result<(std::path::PathBuf, Option<MountGuard>), Error> {
    match mounts {
        [] => {
            std::fs::create_dir_all(scratch).map_err(|e| Error::internal("diff scratch", e))?;
            Ok((scratch.to_path_buf(), None))
        }
        [m] if m.r#type == "bind" || m.r#type == "rbind" => Ok((m.source.clone().into(), None)),
        [m] => {
            std::fs::create_dir_all(scratch).map_err(|e| Error::internal("diff scratch", e))?;
            let spec = MountSpec {
                fs_type: m.r#type.clone(),
                source: m.source.clone().into(),
                options: m.options.clone(),
            };
            let guard = spec
                .mount(scratch)
                .map_err(|e| Error::InvalidArgument(format!("mounting for diff: {e}")))?;
            Ok((scratch.to_path_buf(), Some(guard)))
        }
        more => Err(Error::NotImplemented(format!(
            "diff of {} stacked mounts",
            more.len()
        ))),
    }
}

/// Writes the layer of changes from `r.left` to `r.right` into the content store and records it
/// in `ns` (with the `containerd.io/uncompressed` label containerd gives it).
fn make_layer(
    d: &Daemon,
    ns: &str,
    lease: Option<&str>,
    r: DiffRequest,
) -> Result<Descriptor, Error> {
    let media_type = if r.media_type.is_empty() {
        format::OCI_LAYER_GZIP.to_string()
    } else {
        r.media_type.clone()
    };
    let gzip = match media_type.as_str() {
        format::OCI_LAYER | format::DOCKER_LAYER => false,
        format::OCI_LAYER_GZIP | format::DOCKER_LAYER_GZIP => true,
        other => {
            return Err(Error::NotImplemented(format!(
                "unsupported diff media type: {other}"
            )))
        }
    };
    identifiers::validate_labels(&r.labels)?;
    let clamp = r.source_date_epoch.map(|t| t.seconds);
    let scratch = tempfile::Builder::new()
        .prefix("diff-")
        .tempdir_in(d.state())
        .map_err(|e| Error::internal("diff scratch", e))?;
    let (lower, _lower_mount) = tree_of(&r.left, &scratch.path().join("lower"))?;
    let (upper, _upper_mount) = tree_of(&r.right, &scratch.path().join("upper"))?;
    let reference = if r.r#ref.is_empty() {
        format!("diff-{}", scratch.path().display())
    } else {
        r.r#ref.clone()
    };
    let iref = format!("{ns}/{reference}");
    let store = d.content();
    let mut writer = store
        .writer(&iref, None, None)
        .map_err(|e| Error::internal("diff output", e))?;
    writer
        .truncate()
        .map_err(|e| Error::internal("diff output", e))?;
    let io = |e: std::io::Error| Error::internal("writing the layer", e);
    let sha = || Algorithm::Sha256.hasher();
    let (mut writer, diff_id) = if gzip {
        let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
        let mut tar = Builder::new(Hashing {
            inner: gz,
            hasher: sha(),
        });
        layerdiff::write_changes(&lower, &upper, clamp, &mut tar).map_err(io)?;
        let h = tar.finish().map_err(io)?;
        (h.inner.finish().map_err(io)?, h.hasher.finish())
    } else {
        let mut tar = Builder::new(Hashing {
            inner: writer,
            hasher: sha(),
        });
        layerdiff::write_changes(&lower, &upper, clamp, &mut tar).map_err(io)?;
        let h = tar.finish().map_err(io)?;
        (h.inner, h.hasher.finish())
    };
    writer.flush().map_err(io)?;
    let size = writer.offset();
    let _gc = d.gc_read();
    let digest = writer
        .commit_with(None)
        .map_err(|e| Error::internal("committing the layer", e))?;
    let key = digest.to_string();
    let mut labels = r.labels.clone();
    labels.insert("containerd.io/uncompressed".into(), diff_id.to_string());
    d.metadata().update(|tx| {
        let t = now();
        let created = tx
            .get::<Info>(ns, &key)?
            .and_then(|i| i.created_at)
            .unwrap_or(t);
        tx.put(
            ns,
            &key,
            &Info {
                digest: key.clone(),
                size: size as i64,
                created_at: Some(created),
                updated_at: Some(t),
                labels,
            },
        )?;
        if let Some(l) = lease {
            leases::add_resource(tx, ns, l, "content", &key)?;
        }
        Ok(())
    })?;
    Ok(Descriptor {
        media_type,
        digest: key,
        size: size as i64,
        annotations: Default::default(),
    })
}

/// Registers `containerd.services.diff.v1.Diff`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.diff.v1.Diff/";
    unary!(
        s.router,
        daemon,
        &format!("{S}Apply"),
        |d, req: ApplyRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            if !r.payloads.is_empty() {
                return Err(Error::NotImplemented(
                    "stream processor payloads (encrypted layers)".into(),
                ));
            }
            let desc = r
                .diff
                .ok_or_else(|| Error::InvalidArgument("diff descriptor must be set".into()))?;
            if !LAYER_TYPES.contains(&desc.media_type.as_str()) {
                return Err(Error::NotImplemented(format!(
                    "unsupported diff media type: {}",
                    desc.media_type
                )));
            }
            let digest = parse_digest(&desc.digest)?;
            content::info(&d, &ns, &digest)?;
            let (dir, opts) = target(&r.mounts)?;
            let d2 = d.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let file = d2
                    .content()
                    .open_blob(&digest)
                    .map_err(|e| Error::internal("opening layer", e))?;
                apply_layer(&dir, std::io::BufReader::new(file), &opts)
                    .map_err(|e| Error::InvalidArgument(format!("applying layer {digest}: {e}")))
            })
            .await
            .map_err(|e| Error::internal("apply task", e))??;
            if r.sync_fs {
                nix::unistd::sync();
            }
            Ok(ApplyResponse {
                applied: Some(Descriptor {
                    media_type: format::OCI_LAYER.to_string(),
                    digest: applied.diff_id.to_string(),
                    size: applied.size as i64,
                    annotations: Default::default(),
                }),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Diff"),
        |d, req: DiffRequest| {
            let ns = grpc::namespace(&req)?;
            let lease = grpc::lease(&req);
            let r = req.into_inner();
            let d2 = d.clone();
            let desc =
                tokio::task::spawn_blocking(move || make_layer(&d2, &ns, lease.as_deref(), r))
                    .await
                    .map_err(|e| Error::internal("diff task", e))??;
            Ok(DiffResponse { diff: Some(desc) })
        }
    );
    s.plugin("io.containerd.grpc.v1", "diff");
    s.plugin("io.containerd.differ.v1", "walking");
}
