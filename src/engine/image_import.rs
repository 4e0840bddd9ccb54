//! `docker import` (`POST /images/create?fromSrc=-|URL&repo=&tag=&changes=&message=`): a root
//! filesystem tarball (the request body, or fetched from an http(s) URL) becomes a one-layer
//! image with a config built from the [`changes`](super::changes), made by
//! [`archive::import_rootfs`] in a staging store and stored through
//! [`Engine::transfer_staged`] as loads are. The tarball is checked whole before containerd
//! sees anything; a bad one is a 400 that leaves nothing behind.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use serde_json::{json, Map};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::events::Event;
use super::image_archive::{body_reader, Staging};
use super::images::{error_chain, familiar, line, Unpacking, DANGLING};
use super::Engine;
use crate::image::archive::{self, RootfsImport};
use crate::image::registry::Reference;

/// What `docker import` asks for.
#[derive(Debug, Default)]
pub struct ImportRequest {
    /// `-` (the body) or an http(s) URL.
    pub src: String,
    /// The repository to name the image in (empty: unnamed).
    pub repo: String,
    /// Its tag.
    pub tag: String,
    /// Dockerfile instructions to apply.
    pub changes: Vec<String>,
    /// The commit message (the image's comment).
    pub message: String,
    /// `os/arch`; only this host's is accepted.
    pub platform: String,
}

impl Engine {
    /// Imports a root filesystem tarball as an image; answers `{"status": "<image id>"}`.
    ///
    /// # Errors
    /// `BadRequest` for a bad name, change, platform, URL or tarball; containerd's failures.
    pub async fn image_import(
        self: &Arc<Self>,
        body: Incoming,
        req: ImportRequest,
    ) -> Result<Bytes, ApiError> {
        // Taken first, so that a refusal below still reads the body the client sends.
        let body = if req.src == "-" {
            Some(body_reader(body))
        } else {
            drop(body);
            None
        };
        if !req.platform.is_empty() {
            let host = format!("linux/{}", super::system::go_arch());
            if req.platform != host {
                return Err(ApiError::BadRequest(format!(
                    "platform {:?} is not supported: refengd imports for {host} only",
                    req.platform
                )));
            }
        }
        let name = if req.repo.is_empty() {
            if !req.tag.is_empty() {
                return Err(ApiError::BadRequest("tag is given without repo".into()));
            }
            None
        } else {
            let text = if req.tag.is_empty() {
                req.repo.clone()
            } else {
                format!("{}:{}", req.repo, req.tag)
            };
            let r = Reference::parse(&text)
                .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {e}")))?;
            if r.digest.is_some() {
                return Err(ApiError::BadRequest(
                    "cannot import into a digest reference".into(),
                ));
            }
            Some(r.to_string())
        };
        let mut config = Map::new();
        super::changes::apply(&mut config, &req.changes)?;
        let source: Box<dyn Read + Send> = match body {
            Some(b) => Box::new(b),
            None => Box::new(fetch(&req.src).await?),
        };
        let engine = self.clone();
        tokio::spawn(async move { engine.import(source, name, config, req).await })
            .await
            .map_err(|e| ApiError::internal("the import task", e))?
    }

    async fn import(
        &self,
        source: Box<dyn Read + Send>,
        name: Option<String>,
        config: Map<String, serde_json::Value>,
        req: ImportRequest,
    ) -> Result<Bytes, ApiError> {
        let staging = Staging::new(self, "import");
        let store = staging.open()?;
        let opts = RootfsImport {
            created: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            config: Some(serde_json::Value::Object(config)),
            comment: Some(if req.message.is_empty() {
                format!("Imported from {}", req.src)
            } else {
                req.message.clone()
            }),
            created_by: Some(String::new()),
            ..RootfsImport::default()
        };
        let (store, made) = tokio::task::spawn_blocking(move || {
            let r = archive::import_rootfs(&store, source, "import", &opts);
            (store, r)
        })
        .await
        .map_err(|e| ApiError::internal("the import", e))?;
        let manifest = made
            .map_err(|e| ApiError::BadRequest(format!("invalid tarball: {}", error_chain(&e))))?;
        let names = match &name {
            Some(n) => vec![n.clone()],
            None => vec![format!("{DANGLING}{manifest}")],
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        // The per-layer lines are not part of an import's answer.
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let done = self
            .transfer_staged(&store, &[(manifest, names)], &tx, Unpacking::Load)
            .await;
        drop(tx);
        let _ = drain.await;
        let done = done?;
        drop(staging);
        let id = done
            .first()
            .map(|t| t.resolved.id.clone())
            .unwrap_or_default();
        let mut attrs = BTreeMap::new();
        if let Some(n) = &name {
            attrs.insert("name".to_string(), familiar(n));
        }
        self.events.emit(Event::new("image", "import", &id, attrs));
        Ok(line(&json!({"status": id})))
    }
}

/// Starts fetching `url` (dockerd's `fromSrc` URL; a URL without a scheme is http).
async fn fetch(url: &str) -> Result<impl Read + Send + 'static, ApiError> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::BadRequest(format!(
            "fromSrc {url:?}: only -, http:// and https:// sources are supported"
        )));
    }
    let u = url.clone();
    let resp = tokio::task::spawn_blocking(move || ureq::get(&u).call())
        .await
        .map_err(|e| ApiError::internal("fetching the import source", e))?
        .map_err(|e| ApiError::BadRequest(format!("fetching {url}: {e}")))?;
    Ok(resp.into_body().into_reader())
}
