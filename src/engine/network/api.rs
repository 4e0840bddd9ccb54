//! The network endpoints of the Engine API as functions over a [`NetworkController`], answering
//! with dockerd 20.10's JSON and errors, for the server to route when the containers code lands:
//! `POST /networks/create`, `GET /networks` (filters), `GET /networks/{id}`,
//! `DELETE /networks/{id}`, `POST /networks/prune` (filters).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{NetworkController, NetworkCreate};
use crate::engine::error::ApiError;
use crate::engine::events::parse_timestamp;
use crate::engine::filters::Filters;

/// The filters `GET /networks` takes (daemon/network/filter.go).
pub const LIST_FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];
/// The filters `POST /networks/prune` takes.
pub const PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];

/// `POST /networks/create`: `{"Id": ..., "Warning": ""}`.
///
/// # Errors
/// 400 for a body that is not a create request (naming the field) or an unsupported option,
/// 409 for a name in use, 403 for an overlapping subnet.
pub fn create(net: &NetworkController, body: &[u8]) -> Result<Value, ApiError> {
    let req = parse_create(body)?;
    let id = net.create_network(&req)?;
    Ok(json!({"Id": id, "Warning": ""}))
}

/// Reads a create request's body; a field refengd does not know is refused by name.
///
/// # Errors
/// 400 with serde's message (which names the field and its position).
pub fn parse_create(body: &[u8]) -> Result<NetworkCreate, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid network create request: {e}")))
}

/// `GET /networks/{id}`.
///
/// # Errors
/// 404 for an unknown network.
pub fn inspect(net: &NetworkController, key: &str) -> Result<Value, ApiError> {
    Ok(net.inspect(key)?)
}

/// `DELETE /networks/{id}`.
///
/// # Errors
/// 404 unknown, 403 for `bridge`, `host` and `none`, 409 while containers are connected.
pub fn remove(net: &NetworkController, key: &str) -> Result<(), ApiError> {
    Ok(net.remove_network(key)?)
}

/// Go's `filters.Args.Match`: no values, an equal value, or a value that is a regular
/// expression matching anywhere in `source`.
fn matches(f: &Filters, key: &str, source: &str) -> bool {
    if !f.contains(key) {
        return true;
    }
    f.get(key).any(|want| {
        want == source
            || regex::Regex::new(want)
                .map(|r| r.is_match(source))
                .unwrap_or(false)
    })
}

/// `GET /networks`: every network that passes the filters.
///
/// # Errors
/// 400 for a filter key or value dockerd refuses.
pub fn list(net: &NetworkController, filters: &Filters) -> Result<Value, ApiError> {
    filters.validate(LIST_FILTERS)?;
    for t in filters.get("type") {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::BadRequest(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    let dangling = filters.bool_value("dangling")?;
    let state = net.snapshot();
    let mut out = Vec::new();
    for v in net.list() {
        let name = v["Name"].as_str().unwrap_or_default();
        let id = v["Id"].as_str().unwrap_or_default();
        let driver = v["Driver"].as_str().unwrap_or_default();
        let builtin = ["bridge", "host", "none"].contains(&name)
            && state.networks.values().all(|n| n.name != name || n.default);
        let labels = state
            .networks
            .values()
            .find(|n| n.id == id)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        // dockerd 20.10 judges `dangling` on the list's own entries, whose Containers are
        // never filled in a list: every user network counts as dangling, in use or not.
        let in_use = v["Containers"].as_object().is_some_and(|c| !c.is_empty());
        let keep = matches(filters, "name", name)
            && matches(filters, "id", id)
            && filters.exact_match("driver", driver)
            && filters.exact_match("scope", "local")
            && filters.match_labels("label", &labels)
            && filters.get("type").all(|t| (t == "builtin") == builtin)
            && dangling.is_none_or(|d| d == (!builtin && !in_use));
        if keep {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

/// `POST /networks/prune`: `{"NetworksDeleted": [names]}` (null when none, as dockerd's nil
/// slice encodes).
///
/// # Errors
/// 400 for a bad filter.
pub fn prune(net: &NetworkController, filters: &Filters) -> Result<Value, ApiError> {
    filters.validate(PRUNE_FILTERS)?;
    let now = SystemTime::now();
    let mut until = None;
    for u in filters.get("until") {
        until = Some(parse_timestamp(u, now)?);
    }
    let removed = net.prune_matching(|n| {
        let created = chrono::DateTime::parse_from_rfc3339(&n.created)
            .map(SystemTime::from)
            .unwrap_or(now);
        let not_labels = filters
            .get("label!")
            .any(|want| match want.split_once('=') {
                Some((k, v)) => n.labels.get(k).is_some_and(|have| have == v),
                None => n.labels.contains_key(want),
            });
        until.is_none_or(|u| created < u) && filters.match_labels("label", &n.labels) && !not_labels
    })?;
    Ok(json!({
        "NetworksDeleted": if removed.is_empty() { Value::Null } else { json!(removed) }
    }))
}

/// The parsers [`check`] fuzzes, by the first line of its input.
pub const FUZZ_KINDS: &[&str] = &["create", "endpoint", "ports", "add-host"];

/// Parses `data` (`KIND\nTEXT`) with one of the parsers of network requests: a network create
/// body, a container's `EndpointSettings`, `PortBindings` (with `-P` over the `EXPOSE` keys on
/// its first line), an `--add-host` entry. `true`: accepted; `false`: refused (or not a known
/// kind).
///
/// # Panics
/// When a refusal is not a 400 or an accepted input breaks an invariant: the fuzz target's
/// findings.
pub fn check(data: &[u8]) -> bool {
    use super::containers;
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (kind, input) = text.split_once('\n').unwrap_or((text, ""));
    let refused = |e: ApiError| {
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{kind}: {e}");
        false
    };
    match kind {
        "create" => match parse_create(input.as_bytes()) {
            Ok(_) => true,
            Err(e) => refused(e),
        },
        "endpoint" => match serde_json::from_str::<Value>(input) {
            Ok(v) => match containers::parse_endpoint("EndpointConfig", &v) {
                Ok(r) => {
                    assert!(r.aliases.iter().all(|a| !a.is_empty()), "empty alias kept");
                    true
                }
                Err(e) => refused(e),
            },
            Err(_) => false,
        },
        "ports" => {
            let (exposed, bindings) = input.split_once('\n').unwrap_or((input, "null"));
            let exposed: Vec<String> = exposed.split_whitespace().map(String::from).collect();
            match serde_json::from_str::<Value>(bindings) {
                Ok(v) => match containers::port_requests(Some(&v), !exposed.is_empty(), &exposed) {
                    Ok(reqs) => {
                        for r in &reqs {
                            assert!(r.container_port > 0, "port 0 accepted");
                            assert!(r.host_ports.0 <= r.host_ports.1, "inverted range");
                        }
                        true
                    }
                    Err(e) => refused(e),
                },
                Err(_) => false,
            }
        }
        "add-host" => super::files::parse_extra_host(input, Some(std::net::Ipv4Addr::LOCALHOST))
            .map(|h| assert!(!h.names.is_empty()))
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_read_strictly() {
        // What the docker CLI sends for `network create --subnet ... -o ... --label ... app`.
        let req = parse_create(
            br#"{"Name":"app","CheckDuplicate":true,"Driver":"bridge","Scope":"","EnableIPv6":false,
                "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.1.0.0/16","IPRange":"10.1.2.0/24","Gateway":"10.1.0.254"}]},
                "Internal":false,"Attachable":false,"Ingress":false,"ConfigOnly":false,
                "ConfigFrom":null,"Options":{"com.docker.network.driver.mtu":"1400"},"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(req.name, "app");
        let cfg = &req.ipam.unwrap().config.unwrap()[0];
        assert_eq!(cfg.ip_range.as_deref(), Some("10.1.2.0/24"));
        let e = parse_create(br#"{"Name":"x","Frobnicate":1}"#).unwrap_err();
        assert!(e.to_string().contains("Frobnicate"), "{e}");
        let e = parse_create(br#"{"Name":"x","IPAM":{"Config":[{"AuxAddress":{},"Bogus":1}]}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("Bogus"), "{e}");
    }
}
