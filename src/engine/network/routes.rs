//! The `/networks` routes of the Engine API: which call a method and path name, and the
//! answer to each (list, create, inspect, remove, connect, disconnect, prune), with dockerd's
//! `network` events.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::api;
use crate::engine::error::ApiError;
use crate::engine::server::{empty, json, Body, Query, Request};
use crate::engine::Engine;

/// The largest body a network call reads.
const MAX_BODY: usize = 1 << 20;

/// A `/networks` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `GET /networks`.
    List,
    /// `POST /networks/create`.
    Create,
    /// `POST /networks/prune`.
    Prune,
    /// `GET /networks/{id}`.
    Inspect(String),
    /// `DELETE /networks/{id}`.
    Remove(String),
    /// `POST /networks/{id}/connect`.
    Connect(String),
    /// `POST /networks/{id}/disconnect`.
    Disconnect(String),
}

/// The call `method` and `segments` (the path after the version) name, if any.
pub fn route(method: &Method, segments: &[&str]) -> Option<Call> {
    Some(match (method, segments) {
        (&Method::GET, ["networks"]) | (&Method::GET, ["networks", ""]) => Call::List,
        (&Method::POST, ["networks", "create"]) => Call::Create,
        (&Method::POST, ["networks", "prune"]) => Call::Prune,
        (&Method::GET, ["networks", id]) if !id.is_empty() => Call::Inspect((*id).into()),
        (&Method::DELETE, ["networks", id]) if !id.is_empty() => Call::Remove((*id).into()),
        (&Method::POST, ["networks", id, "connect"]) => Call::Connect((*id).into()),
        (&Method::POST, ["networks", id, "disconnect"]) => Call::Disconnect((*id).into()),
        _ => return None,
    })
}

async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))
}

/// Answers a `/networks` call.
///
/// # Errors
/// As each endpoint documents (dockerd's statuses).
pub async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    q: &Query,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    match call {
        Call::List => {
            let net = engine.network.get().await?;
            Ok(json(StatusCode::OK, &api::list(net, &q.filters()?)?))
        }
        Call::Create => {
            let body = read_body(req).await?;
            let net = engine.network.get().await?.clone();
            let v = tokio::task::spawn_blocking(move || api::create(&net, &body))
                .await
                .map_err(|e| ApiError::internal("creating the network", e))??;
            let id = v["Id"].as_str().unwrap_or_default().to_string();
            let name = engine
                .network
                .get()
                .await?
                .get(&id)
                .map(|n| n.name)
                .unwrap_or_default();
            engine.network_event(&id, &name, "create", "");
            Ok(json(StatusCode::CREATED, &v))
        }
        Call::Prune => {
            let net = engine.network.get().await?.clone();
            let before = net.snapshot();
            let filters = q.filters()?;
            let v = tokio::task::spawn_blocking(move || api::prune(&net, &filters))
                .await
                .map_err(|e| ApiError::internal("pruning networks", e))??;
            for name in v["NetworksDeleted"].as_array().into_iter().flatten() {
                if let Some(n) = before
                    .networks
                    .values()
                    .find(|n| Some(n.name.as_str()) == name.as_str())
                {
                    engine.network_event(&n.id, &n.name, "destroy", "");
                }
            }
            Ok(json(StatusCode::OK, &v))
        }
        Call::Inspect(id) => {
            let net = engine.network.get().await?;
            Ok(json(StatusCode::OK, &api::inspect(net, &id)?))
        }
        Call::Remove(key) => {
            let net = engine.network.get().await?.clone();
            let rec = net.get(&key).ok();
            let k2 = key.clone();
            tokio::task::spawn_blocking(move || api::remove(&net, &k2))
                .await
                .map_err(|e| ApiError::internal("removing the network", e))??;
            if let Some(n) = rec {
                engine.network_event(&n.id, &n.name, "destroy", "");
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Call::Connect(key) => {
            let body = read_body(req).await?;
            engine.network_connect(&key, &body).await?;
            Ok(empty(StatusCode::OK))
        }
        Call::Disconnect(key) => {
            let body = read_body(req).await?;
            engine.network_disconnect(&key, &body).await?;
            Ok(empty(StatusCode::OK))
        }
    }
}
