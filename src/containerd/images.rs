//! The Images service: named references to a target descriptor (an index or manifest in the
//! content store), per namespace, with labels. An image keeps its target and everything the
//! target's `containerd.io/gc.ref.*` labels reach from garbage collection.

use std::sync::Arc;

use containerd_client::services::v1::{
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    Image, ImageCreate, ImageDelete, ImageUpdate, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest, UpdateImageResponse,
};
use containerd_client::types::Descriptor;

use super::content::{parse_digest, update_labels};
use super::error::Error;
use super::filters::{label_field, Fields, Filter};
use super::grpc;
use super::identifiers;
use super::metadata::Read;
use super::{now, Daemon, Services};
use crate::unary;

fn subject(name: &str) -> String {
    format!("image {name:?}")
}

/// Checks an image as containerd's metadata store does.
///
/// # Errors
/// `InvalidArgument` naming the field.
pub fn validate(img: &Image) -> Result<(), Error> {
    if img.name.is_empty() {
        return Err(Error::InvalidArgument(
            "image name must not be empty".into(),
        ));
    }
    identifiers::validate_labels(&img.labels)?;
    let t = img
        .target
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("Target must be set".into()))?;
    validate_target(t)
}

fn validate_target(t: &Descriptor) -> Result<(), Error> {
    parse_digest(&t.digest)
        .map_err(|_| Error::InvalidArgument(format!("Target.Digest {:?} invalid", t.digest)))?;
    if t.size <= 0 {
        return Err(Error::InvalidArgument(
            "Target.Size must be greater than zero".into(),
        ));
    }
    if t.media_type.is_empty() {
        return Err(Error::InvalidArgument(
            "Target.MediaType must be set".into(),
        ));
    }
    Ok(())
}

struct ImageFields<'a>(&'a Image);

impl Fields for ImageFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let i = self.0;
        let t = i.target.as_ref();
        match path.first().map(String::as_str) {
            Some("name") if path.len() == 1 => Some(i.name.clone()),
            Some("target") if path.len() == 2 => match path[1].as_str() {
                "digest" => t.map(|t| t.digest.clone()),
                "mediatype" => t.map(|t| t.media_type.clone()),
                _ => None,
            },
            Some("labels") => label_field(&i.labels, &path[1..]),
            Some("annotations") => t.and_then(|t| label_field(&t.annotations, &path[1..])),
            _ => None,
        }
    }
}

/// Registers `containerd.services.images.v1.Images`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.images.v1.Images/";
    unary!(
        s.router,
        daemon,
        &format!("{S}Get"),
        |d, req: GetImageRequest| {
            let ns = grpc::namespace(&req)?;
            let name = req.into_inner().name;
            let image = d
                .metadata()
                .view(|v| v.get::<Image>(&ns, &name))?
                .ok_or_else(|| Error::NotFound(subject(&name)))?;
            Ok(GetImageResponse { image: Some(image) })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}List"),
        |d, req: ListImagesRequest| {
            let ns = grpc::namespace(&req)?;
            let filter = Filter::parse(&req.into_inner().filters)?;
            Ok(ListImagesResponse {
                images: d
                    .metadata()
                    .view(|v| v.list::<Image>(&ns))?
                    .into_iter()
                    .filter(|i| filter.matches(&ImageFields(i)))
                    .collect(),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Create"),
        |d, req: CreateImageRequest| {
            let ns = grpc::namespace(&req)?;
            let mut img = req
                .into_inner()
                .image
                .ok_or_else(|| Error::InvalidArgument("image must not be empty".into()))?;
            validate(&img)?;
            let t = now();
            img.created_at = Some(t);
            img.updated_at = Some(t);
            d.metadata().update(|tx| {
                if tx.get::<Image>(&ns, &img.name)?.is_some() {
                    return Err(Error::AlreadyExists(subject(&img.name)));
                }
                tx.put(&ns, &img.name, &img)
            })?;
            d.events().publish(
                &ns,
                "/images/create",
                &ImageCreate {
                    name: img.name.clone(),
                    labels: img.labels.clone(),
                },
            );
            Ok(CreateImageResponse { image: Some(img) })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Update"),
        |d, req: UpdateImageRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            let new = r
                .image
                .ok_or_else(|| Error::InvalidArgument("image must not be empty".into()))?;
            if new.name.is_empty() {
                return Err(Error::InvalidArgument(
                    "image name must not be empty".into(),
                ));
            }
            let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
            let updated = d.metadata().update(|tx| {
                let mut img = tx
                    .get::<Image>(&ns, &new.name)?
                    .ok_or_else(|| Error::NotFound(subject(&new.name)))?;
                if paths.is_empty() {
                    img.labels.clone_from(&new.labels);
                    img.target.clone_from(&new.target);
                }
                let mut label_paths = Vec::new();
                for p in &paths {
                    if p == "labels" || p.starts_with("labels.") {
                        label_paths.push(p.clone());
                    } else if p == "target" {
                        img.target.clone_from(&new.target);
                    } else if p == "annotations" || p.starts_with("annotations.") {
                        let newann = new
                            .target
                            .as_ref()
                            .map(|t| t.annotations.clone())
                            .unwrap_or_default();
                        if let Some(t) = img.target.as_mut() {
                            let lp = p.replacen("annotations", "labels", 1);
                            update_labels(&mut t.annotations, &newann, &[lp], &new.name)?;
                        }
                    } else {
                        return Err(Error::InvalidArgument(format!(
                            "cannot update {p:?} field on image {:?}",
                            new.name
                        )));
                    }
                }
                if !label_paths.is_empty() {
                    update_labels(&mut img.labels, &new.labels, &label_paths, &new.name)?;
                }
                validate(&img)?;
                img.updated_at = Some(now());
                tx.put(&ns, &img.name, &img)?;
                Ok(img)
            })?;
            d.events().publish(
                &ns,
                "/images/update",
                &ImageUpdate {
                    name: updated.name.clone(),
                    labels: updated.labels.clone(),
                },
            );
            Ok(UpdateImageResponse {
                image: Some(updated),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Delete"),
        |d, req: DeleteImageRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner();
            d.metadata().update(|tx| {
                let img = tx
                    .get::<Image>(&ns, &r.name)?
                    .ok_or_else(|| Error::NotFound(subject(&r.name)))?;
                if let Some(want) = &r.target {
                    if img.target.as_ref().map(|t| &t.digest) != Some(&want.digest) {
                        return Err(Error::FailedPrecondition(format!(
                            "image {:?} has another target than {}",
                            r.name, want.digest
                        )));
                    }
                }
                tx.delete::<Image>(&ns, &r.name)?;
                Ok(())
            })?;
            d.events()
                .publish(&ns, "/images/delete", &ImageDelete { name: r.name });
            // Collected before answering, which is what `sync` asks for.
            d.collect_garbage().await?;
            Ok(())
        }
    );
    s.plugin("io.containerd.grpc.v1", "images");
}
