//! Push: upload an image from the content store: blobs the registry lacks (existence checked
//! first, mounted from another repository of the same registry when the store knows one that
//! has it, else uploaded whole or in chunks, following each answer's `Location`), then the
//! manifests bottom-up and the top one under its tag (distribution-spec: "Push").

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use ureq::http::Method;

use super::client::{location, push_scopes, with_query, ReqBody};
use super::progress::{ProgressEvent, ProgressSink};
use super::pull::{record_source, SOURCE_LABEL};
use super::{Client, Reference, RegistryError};
use crate::image::content::ContentStore;
use crate::image::digest::Digest;
use crate::image::format::{self, Document, FormatError};

/// One blob to upload.
#[derive(Debug, Clone)]
struct BlobJob {
    digest: Digest,
    size: u64,
    mount_from: Option<String>,
}

impl Client {
    /// Pushes the image named `local` in `content` (a stored name, or a reference that
    /// normalises to one) to `dest`; returns the digest of the pushed manifest or index.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] if `local` is not stored or an index names a manifest that
    /// is not; the registry's refusals; auth errors.
    #[tracing::instrument(skip_all, fields(local, dest = %dest))]
    pub fn push(
        &self,
        content: &ContentStore,
        local: &str,
        dest: &Reference,
        progress: &dyn ProgressSink,
    ) -> Result<Digest, RegistryError> {
        let refs = content.metadata()?.references;
        let target = refs
            .get(local)
            .or_else(|| {
                Reference::parse(local)
                    .ok()
                    .and_then(|r| refs.get(&r.to_string()))
            })
            .cloned()
            .or_else(|| local.parse::<Digest>().ok().filter(|d| content.contains(d)))
            .ok_or_else(|| RegistryError::NotFound(local.to_owned()))?;
        let mut pushed = Vec::new();
        let tag = dest.tag.clone().unwrap_or_else(|| target.to_string());
        self.push_tree(content, dest, &target, &tag, 0, &mut pushed, progress)?;
        record_source(content, &pushed, &dest.registry, &dest.repository)?;
        Ok(target)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_tree(
        &self,
        content: &ContentStore,
        dest: &Reference,
        digest: &Digest,
        tag: &str,
        depth: usize,
        pushed: &mut Vec<Digest>,
        progress: &dyn ProgressSink,
    ) -> Result<(), RegistryError> {
        let bytes = content.read_small(digest)?;
        let format_err = |source: FormatError| RegistryError::Format {
            reference: format!("{dest} ({digest})"),
            source,
        };
        let doc = format::parse_document(&bytes, None).map_err(format_err)?;
        let media_type = own_media_type(&bytes).unwrap_or(
            match doc {
                Document::Index(_) => format::OCI_INDEX,
                Document::Manifest(_) => format::OCI_MANIFEST,
            }
            .to_owned(),
        );
        match &doc {
            Document::Index(i) => {
                if depth >= 3 {
                    return Err(RegistryError::Unpack(
                        crate::image::unpack::UnpackError::TooDeep(3),
                    ));
                }
                for d in i.manifests() {
                    let child = format::check_descriptor(d).map_err(format_err)?;
                    if !content.contains(&child) {
                        return Err(RegistryError::NotFound(format!(
                            "{child} (a manifest of index {digest}; only complete images can be pushed)"
                        )));
                    }
                    self.push_tree(
                        content,
                        dest,
                        &child,
                        &child.to_string(),
                        depth + 1,
                        pushed,
                        progress,
                    )?;
                }
            }
            Document::Manifest(m) => {
                let mut jobs = Vec::new();
                let mut seen = BTreeSet::new();
                for d in std::iter::once(m.config()).chain(m.layers().iter()) {
                    let g = format::check_descriptor(d).map_err(format_err)?;
                    if !seen.insert(g.clone()) {
                        continue;
                    }
                    if !content.contains(&g) {
                        return Err(RegistryError::NotFound(format!(
                            "{g} (a blob of manifest {digest}; foreign or missing layers cannot be pushed)"
                        )));
                    }
                    jobs.push(BlobJob {
                        mount_from: mount_source(content, &g, dest),
                        digest: g,
                        size: d.size(),
                    });
                }
                self.push_blobs(content, dest, &jobs, progress)?;
                pushed.extend(jobs.into_iter().map(|j| j.digest));
            }
        }
        self.put_manifest(dest, &bytes, &media_type, digest, tag, progress)?;
        pushed.push(digest.clone());
        Ok(())
    }

    fn push_blobs(
        &self,
        content: &ContentStore,
        dest: &Reference,
        jobs: &[BlobJob],
        progress: &dyn ProgressSink,
    ) -> Result<(), RegistryError> {
        let sources: BTreeSet<String> = jobs.iter().filter_map(|j| j.mount_from.clone()).collect();
        let scopes = push_scopes(dest, &sources);
        let queue = Mutex::new(jobs.iter().collect::<VecDeque<_>>());
        let failure: Mutex<Option<RegistryError>> = Mutex::new(None);
        let workers = self
            .config
            .max_concurrent_uploads
            .clamp(1, jobs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .is_some()
                    {
                        return;
                    }
                    let Some(job) = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop_front()
                    else {
                        return;
                    };
                    if let Err(e) = self.push_blob(content, dest, &scopes, job, progress) {
                        failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        return;
                    }
                });
            }
        });
        match failure
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn push_blob(
        &self,
        content: &ContentStore,
        dest: &Reference,
        scopes: &[String],
        job: &BlobJob,
        progress: &dyn ProgressSink,
    ) -> Result<(), RegistryError> {
        let d = &job.digest;
        let blob_path = format!("/v2/{}/blobs/{d}", dest.repository);
        let resp = self.retrying(|| {
            self.send(
                dest,
                scopes,
                &super::client::Req::new(Method::HEAD, &blob_path),
            )
        })?;
        match resp.status().as_u16() {
            200 => {
                progress.report(ProgressEvent::LayerAlreadyExists { id: d.clone() });
                return Ok(());
            }
            404 => {}
            _ => return Err(self.refused(dest, &format!("check blob {d} in"), resp)),
        }
        let uploads = format!("/v2/{}/blobs/uploads/", dest.repository);
        let start = match &job.mount_from {
            Some(from) => {
                let target =
                    with_query(&with_query(&uploads, "mount", &d.to_string()), "from", from);
                let resp =
                    self.send(dest, scopes, &super::client::Req::new(Method::POST, target))?;
                if resp.status().as_u16() == 201 {
                    progress.report(ProgressEvent::Mounted {
                        id: d.clone(),
                        from: from.clone(),
                    });
                    return Ok(());
                }
                // 202: the registry could not mount and opened an upload instead.
                resp
            }
            None => self.send(
                dest,
                scopes,
                &super::client::Req::new(Method::POST, &uploads),
            )?,
        };
        if start.status().as_u16() != 202 {
            return Err(self.refused(dest, &format!("start upload of {d} to"), start));
        }
        let mut loc = location(&start).ok_or_else(|| self.no_location(dest, "upload start"))?;
        let file = content.open_blob(d)?;
        let size = job.size;
        if size > self.config.chunk_size {
            let mut offset = 0u64;
            while offset < size {
                let len = self.config.chunk_size.min(size - offset);
                let req = super::client::Req::new(Method::PATCH, &loc)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                    .body(ReqBody::File {
                        file: &file,
                        offset,
                        len,
                    });
                let resp = self.send(dest, scopes, &req)?;
                if resp.status().as_u16() != 202 {
                    return Err(self.refused(dest, &format!("upload chunk of {d} to"), resp));
                }
                loc = location(&resp).ok_or_else(|| self.no_location(dest, "chunk upload"))?;
                offset += len;
                progress.report(ProgressEvent::Pushing {
                    id: d.clone(),
                    current: offset,
                    total: size,
                });
            }
            let req =
                super::client::Req::new(Method::PUT, with_query(&loc, "digest", &d.to_string()))
                    .header("Content-Length", "0");
            let resp = self.send(dest, scopes, &req)?;
            self.check_blob_created(dest, d, resp)?;
        } else {
            let req =
                super::client::Req::new(Method::PUT, with_query(&loc, "digest", &d.to_string()))
                    .header("Content-Type", "application/octet-stream")
                    .body(ReqBody::File {
                        file: &file,
                        offset: 0,
                        len: size,
                    });
            let resp = self.send(dest, scopes, &req)?;
            self.check_blob_created(dest, d, resp)?;
            progress.report(ProgressEvent::Pushing {
                id: d.clone(),
                current: size,
                total: size,
            });
        }
        progress.report(ProgressEvent::Pushed { id: d.clone() });
        Ok(())
    }

    fn check_blob_created(
        &self,
        dest: &Reference,
        d: &Digest,
        resp: ureq::http::Response<ureq::Body>,
    ) -> Result<(), RegistryError> {
        if resp.status().as_u16() != 201 {
            return Err(self.refused(dest, &format!("finish upload of {d} to"), resp));
        }
        check_digest_header(dest, &resp, d, "uploaded blob")
    }

    fn no_location(&self, dest: &Reference, what: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: dest.registry.clone(),
            what: format!("{what} answered without a Location header"),
        }
    }

    fn put_manifest(
        &self,
        dest: &Reference,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
        tag: &str,
        progress: &dyn ProgressSink,
    ) -> Result<(), RegistryError> {
        let scopes = push_scopes(dest, &BTreeSet::new());
        let req = super::client::Req::new(
            Method::PUT,
            format!("/v2/{}/manifests/{tag}", dest.repository),
        )
        .header("Content-Type", media_type)
        .body(ReqBody::Bytes(bytes));
        let resp = self.retrying(|| self.send(dest, &scopes, &req))?;
        if resp.status().as_u16() != 201 {
            return Err(self.refused(dest, "push manifest to", resp));
        }
        check_digest_header(dest, &resp, digest, "pushed manifest")?;
        progress.report(ProgressEvent::ManifestPushed {
            tag: tag.to_owned(),
            digest: digest.clone(),
            size: bytes.len() as u64,
        });
        Ok(())
    }
}

/// The registry's `Docker-Content-Digest` for what it stored, when it says one, must be ours.
fn check_digest_header(
    dest: &Reference,
    resp: &ureq::http::Response<ureq::Body>,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    match resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok())
    {
        Some(got) if &got != expected => Err(RegistryError::DigestMismatch {
            registry: dest.registry.clone(),
            what: what.into(),
            expected: expected.clone(),
            actual: got,
        }),
        _ => Ok(()),
    }
}

/// The `mediaType` a manifest or index names itself with.
fn own_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
}

/// Another repository of `dest`'s registry that the store knows has `d` (from a pull or an
/// earlier push), to mount it from instead of uploading.
fn mount_source(content: &ContentStore, d: &Digest, dest: &Reference) -> Option<String> {
    let info = content.info(d).ok()?;
    let repos = info
        .labels
        .get(&format!("{SOURCE_LABEL}.{}", dest.registry))?;
    repos
        .split(',')
        .find(|r| !r.is_empty() && *r != dest.repository)
        .map(str::to_owned)
}
