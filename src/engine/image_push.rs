//! `docker push` (`POST /images/{name}/push`) and `docker login` (`POST /auth`), through the
//! registry client.
//!
//! A push copies the image out of containerd into a staging store (as save does) and hands it
//! to [`Client::push`], whose progress becomes dockerd's JSON stream: `The push refers to
//! repository [...]`, per-layer `Pushing`/`Pushed`/`Layer already exists`/`Mounted from`, then
//! `TAG: digest: D size: N` and the `aux` record the CLI reads the digest from.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::events::Event;
use super::image_archive::Staging;
use super::images::{error_chain, error_line, familiar, forward, line, registry_error, Forward};
use super::Engine;
use crate::image::registry::auth::{CredentialStore, Credentials};
use crate::image::registry::progress::ProgressEvent;
use crate::image::registry::{Client, ClientConfig, Reference};

impl Engine {
    fn registry_client(&self, registry: &str, credentials: Option<Credentials>) -> Client {
        let mut creds = CredentialStore::default();
        if let Some(c) = credentials {
            creds = creds.with(registry, c);
        }
        Client::new(ClientConfig {
            credentials: creds,
            insecure_registries: self.config().insecure_registries.clone(),
            ..ClientConfig::default()
        })
    }

    /// `POST /images/{name}/push?tag=`: pushes `name:tag`, or every tag of the repository
    /// `name` when neither names a tag (`docker push --all-tags`). Answers with the progress
    /// stream once the images are staged; the registry's refusals come as error lines in it,
    /// as dockerd sends them.
    ///
    /// # Errors
    /// `BadRequest` for a bad reference; `NotFound` when no local image has that name;
    /// containerd's failures while staging.
    pub async fn image_push(
        self: &Arc<Self>,
        name: &str,
        tag: &str,
        credentials: Option<Credentials>,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let bad = |e: &dyn std::fmt::Display| {
            ApiError::BadRequest(format!("invalid reference format: {e}"))
        };
        let text = if tag.is_empty() {
            name.to_string()
        } else {
            format!("{name}:{tag}")
        };
        let asked = Reference::parse(&text).map_err(|e| bad(&e))?;
        if asked.digest.is_some() {
            return Err(ApiError::BadRequest(
                "cannot push a digest reference".into(),
            ));
        }
        // Without a tag anywhere, every tag of the repository (the CLI's --all-tags).
        let all_tags = tag.is_empty() && super::images::names_repository_only(name);
        let repo = asked.name();
        let mut wanted: Vec<(String, Arc<super::images::Resolved>)> = Vec::new();
        for (n, r) in self.catalog().await? {
            let hit = if all_tags {
                Reference::parse(&n).is_ok_and(|x| x.name() == repo && x.digest.is_none())
            } else {
                n == asked.to_string()
            };
            if hit {
                wanted.push((n, r));
            }
        }
        if wanted.is_empty() {
            return Err(ApiError::NotFound(format!(
                "An image does not exist locally with the tag: {}",
                familiar(if all_tags { &repo } else { &text })
            )));
        }
        let staging = Staging::new(self, "push");
        let store = staging.open()?;
        let mut copied = std::collections::BTreeSet::new();
        for (n, r) in &wanted {
            if copied.insert(r.target.digest.clone()) {
                self.copy_out(&store, &r.target, 0).await?;
            }
            let target = r
                .target
                .digest
                .parse()
                .map_err(|e| ApiError::internal(&format!("image {n}: target digest"), e))?;
            store
                .set_reference(n, &target)
                .map_err(|e| ApiError::internal("naming a staged image", error_chain(&e)))?;
        }
        let client = self.registry_client(&asked.registry, credentials);
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<ProgressEvent>();
        let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
        let ids: Vec<String> = wanted.iter().map(|(_, r)| r.id.clone()).collect();
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let sink = Forward(progress_tx);
            let mut results = Vec::new();
            for n in &names {
                let dest = match Reference::parse(n) {
                    Ok(d) => d,
                    Err(e) => {
                        results.push(Err(ApiError::BadRequest(e.to_string())));
                        break;
                    }
                };
                match client.push(&store, n, &dest, &sink) {
                    Ok(d) => results.push(Ok((dest, d))),
                    Err(e) => {
                        results.push(Err(registry_error(&dest, &e)));
                        break;
                    }
                }
            }
            drop(staging);
            let _ = done_tx.send(results);
        });
        let engine = self.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(line(&json!({
                    "status": format!("The push refers to repository [{}]", familiar(&repo))
                })))
                .await;
            let results = loop {
                tokio::select! {
                    e = progress_rx.recv() => match e {
                        Some(ev) => send_event(&tx, &ev).await,
                        None => break (&mut done_rx).await.unwrap_or_default(),
                    },
                    r = &mut done_rx => {
                        while let Ok(ev) = progress_rx.try_recv() {
                            send_event(&tx, &ev).await;
                        }
                        break r.unwrap_or_default();
                    }
                }
            };
            for (r, id) in results.iter().zip(&ids) {
                match r {
                    Ok((dest, _)) => engine.events.emit(Event::new(
                        "image",
                        "push",
                        &familiar(&dest.to_string()),
                        BTreeMap::from([("name".to_string(), familiar(&dest.to_string()))]),
                    )),
                    Err(e) => {
                        tracing::warn!(image = %id, error = %e, "push failed");
                        let _ = tx.send(error_line(e)).await;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// `POST /auth`: checks the credentials against the registry the body names.
    ///
    /// # Errors
    /// `BadRequest` for a malformed body; `Unauthorized` when the registry refuses the
    /// credentials; other registry failures as [`registry_error`] classes them.
    pub async fn auth(&self, body: &[u8]) -> Result<Value, ApiError> {
        let (registry, creds) = super::auth::decode_login(body)?;
        let client = self.registry_client(&registry, Some(creds));
        let r = registry.clone();
        tokio::task::spawn_blocking(move || client.login(&r))
            .await
            .map_err(|e| ApiError::internal("the login task", e))?
            .map_err(|e| {
                let reference = Reference {
                    registry: registry.clone(),
                    repository: String::new(),
                    tag: None,
                    digest: None,
                };
                match registry_error(&reference, &e) {
                    ApiError::NotFound(_) => ApiError::Internal(format!(
                        "login attempt to {registry} failed: {}",
                        error_chain(&e)
                    )),
                    other => other,
                }
            })?;
        Ok(json!({"Status": "Login Succeeded", "IdentityToken": ""}))
    }
}

/// One progress event as dockerd writes it; a pushed manifest also gets its `aux` record.
async fn send_event(tx: &mpsc::Sender<Bytes>, ev: &ProgressEvent) {
    forward(tx, ev).await;
    if let ProgressEvent::ManifestPushed { tag, digest, size } = ev {
        let _ = tx
            .send(line(&json!({
                "progressDetail": {},
                "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size},
            })))
            .await;
    }
}
