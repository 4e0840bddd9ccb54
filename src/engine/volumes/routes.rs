//! The `/volumes` routes of the Engine API: create, list, inspect, remove and prune, with
//! dockerd's answers and `volume` events.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{matches, VolumeError};
use crate::engine::error::ApiError;
use crate::engine::server::{empty, json, ApiVersion, Body, Query, Request};
use crate::engine::Engine;

/// The largest body a volume call reads.
const MAX_BODY: usize = 1 << 20;

/// A `/volumes` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `GET /volumes`.
    List,
    /// `POST /volumes/create`.
    Create,
    /// `POST /volumes/prune`.
    Prune,
    /// `GET /volumes/{name}`.
    Inspect(String),
    /// `DELETE /volumes/{name}`.
    Remove(String),
}

/// The call `method` and `segments` (the path after the version) name, if any.
pub fn route(method: &Method, segments: &[&str]) -> Option<Call> {
    Some(match (method, segments) {
        (&Method::GET, ["volumes"] | ["volumes", ""]) => Call::List,
        (&Method::POST, ["volumes", "create"]) => Call::Create,
        (&Method::POST, ["volumes", "prune"]) => Call::Prune,
        (&Method::GET, ["volumes", name]) if !name.is_empty() => Call::Inspect((*name).into()),
        (&Method::DELETE, ["volumes", name]) if !name.is_empty() => Call::Remove((*name).into()),
        _ => return None,
    })
}

/// The body of `POST /volumes/create`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    /// The name ("" for an anonymous volume).
    pub name: String,
    /// "" or local.
    pub driver: String,
    /// The local driver's type/device/o.
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Swarm cluster volumes (API 1.42): not in refengd.
    pub cluster_volume_spec: Option<Value>,
}

/// Parses a create body: the fields above, others refused by name.
///
/// # Errors
/// `BadRequest` for malformed JSON or an unknown field that is set.
pub fn parse_create(bytes: &[u8]) -> Result<CreateBody, ApiError> {
    let v: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::BadRequest("invalid JSON: not an object".into()));
    };
    for (k, val) in obj {
        if !matches!(
            k.as_str(),
            "Name" | "Driver" | "DriverOpts" | "Labels" | "ClusterVolumeSpec"
        ) && !crate::engine::containers::body::is_zero(val)
        {
            return Err(ApiError::BadRequest(format!(
                "{k} is not supported by refengd's volume create (got {val})"
            )));
        }
    }
    let cleaned: serde_json::Map<String, Value> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let b: CreateBody = serde_json::from_value(Value::Object(cleaned))
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    if b.cluster_volume_spec
        .as_ref()
        .is_some_and(|c| !crate::engine::containers::body::is_zero(c))
    {
        return Err(ApiError::BadRequest(
            "ClusterVolumeSpec: cluster volumes need swarm mode, which refengd does not have"
                .into(),
        ));
    }
    Ok(b)
}

async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))
}

/// Answers a `/volumes` call.
///
/// # Errors
/// As each endpoint documents (dockerd's statuses).
pub async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    version: ApiVersion,
    q: &Query,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let vols = &engine.volumes;
    match call {
        Call::List => {
            let f = q.filters()?;
            let mut out = Vec::new();
            for rec in vols.list() {
                let refs = engine.volume_users(&rec.name).len();
                if matches(&f, &rec, refs)? {
                    out.push(vols.json(&rec, None));
                }
            }
            Ok(json(
                StatusCode::OK,
                &json!({"Volumes": out, "Warnings": null}),
            ))
        }
        Call::Create => {
            let body = read_body(req).await?;
            let b = parse_create(&body)?;
            let name = (!b.name.is_empty()).then_some(b.name.as_str());
            let (rec, made) = vols.create(name, &b.driver, b.labels, b.driver_opts)?;
            if made {
                engine.volume_event(&rec.name, "create");
            }
            Ok(json(StatusCode::CREATED, &vols.json(&rec, None)))
        }
        Call::Inspect(name) => {
            let rec = vols.get(&name)?;
            Ok(json(StatusCode::OK, &vols.json(&rec, None)))
        }
        Call::Remove(name) => {
            let force = q.bool("force");
            if vols.get(&name).is_err() && force {
                // dockerd: a forced removal of what does not exist succeeds.
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            let users = engine.volume_users(&name);
            if !users.is_empty() {
                return Err(VolumeError::InUse { name, users }.into());
            }
            vols.remove(&name)?;
            engine.volume_event(&name, "destroy");
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Call::Prune => {
            let f = q.filters()?;
            f.validate(&["label", "all"])?;
            // API 1.42 and later prune anonymous volumes only, unless `all`.
            let all = version < ApiVersion(1, 42) || f.bool_value("all")?.unwrap_or(false);
            let mut deleted = Vec::new();
            let mut reclaimed = 0u64;
            for rec in vols.list() {
                if !(all || rec.anonymous) || !engine.volume_users(&rec.name).is_empty() {
                    continue;
                }
                if !f.match_labels("label", &rec.labels.clone().unwrap_or_default()) {
                    continue;
                }
                let size = vols.size(&rec.name);
                match vols.remove(&rec.name) {
                    Ok(()) => {
                        engine.volume_event(&rec.name, "destroy");
                        reclaimed += size;
                        deleted.push(rec.name);
                    }
                    Err(e) => tracing::warn!(volume = %rec.name, error = %e, "not pruned"),
                }
            }
            engine.events.emit(crate::engine::events::Event::new(
                "volume",
                "prune",
                "",
                [("reclaimed".to_string(), reclaimed.to_string())].into(),
            ));
            Ok(json(
                StatusCode::OK,
                &json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_calls() {
        assert_eq!(route(&Method::GET, &["volumes"]), Some(Call::List));
        assert_eq!(
            route(&Method::DELETE, &["volumes", "v"]),
            Some(Call::Remove("v".into()))
        );
        assert_eq!(route(&Method::PUT, &["volumes", "v"]), None);
    }

    #[test]
    fn create_bodies_parse_or_name_what_is_refused() {
        let b =
            parse_create(br#"{"Name":"v","Driver":"local","Labels":{"a":"b"},"DriverOpts":null}"#)
                .unwrap();
        assert_eq!((b.name.as_str(), b.driver.as_str()), ("v", "local"));
        assert_eq!(b.labels.unwrap()["a"], "b");
        assert!(b.driver_opts.is_none());
        assert!(parse_create(b"").unwrap().name.is_empty());
        let e = parse_create(br#"{"ClusterVolumeSpec":{"Group":"g"}}"#).unwrap_err();
        assert!(e.to_string().contains("ClusterVolumeSpec"), "{e}");
        let e = parse_create(br#"{"Name":"v","Bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("Bogus"), "{e}");
        assert!(parse_create(b"[").is_err());
        assert!(parse_create(br#"{"Labels":{"a":1}}"#).is_err());
    }
}
