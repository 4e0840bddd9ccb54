//! The Diff service: Apply unpacks a layer from the content store into the mounts of an active
//! snapshot (how `ctr images pull/import` unpack), with [`crate::image::layer`]'s applier:
//! overlayfs-aware straight into the upper directory, or with whiteouts applied by deletion into
//! a bind-mounted directory. Diff (making a layer from two mounts) is refused by name.

use std::sync::Arc;

use containerd_client::services::v1::{ApplyRequest, ApplyResponse, DiffRequest, DiffResponse};
use containerd_client::types::{Descriptor, Mount};

use super::content::{self, parse_digest};
use super::error::Error;
use super::grpc;
use super::{Daemon, Services};
use crate::image::format;
use crate::image::layer::{apply_layer, ApplyOptions, WhiteoutMode};
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
        |_d, req: DiffRequest| {
            let _ = req;
            Err::<DiffResponse, _>(Error::NotImplemented(
                "creating a layer from two mounts (Diff.Diff)".into(),
            ))
        }
    );
    s.plugin("io.containerd.grpc.v1", "diff");
    s.plugin("io.containerd.differ.v1", "walking");
}
