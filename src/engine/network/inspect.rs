//! The network JSON dockerd 20.10 answers `GET /networks/{id}` and `GET /networks` with
//! (api/types NetworkResource), from a network's record.

use serde_json::{json, Map, Value};

use super::state::{NetworkRecord, PredefinedNetwork};

/// `host` or `none` as dockerd shows them: no IPAM config, no options.
pub fn predefined(p: &PredefinedNetwork) -> Value {
    json!({
        "Name": p.name,
        "Id": p.id,
        "Created": p.created,
        "Scope": "local",
        "Driver": p.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}

/// A network as dockerd shows it; `containers`: whether to fill `Containers` (inspect does,
/// list leaves it empty).
pub fn network(n: &NetworkRecord, containers: bool) -> Value {
    // dockerd shows the IPAM config as the user gave it (no gateway when none was given), and
    // the subnet and gateway it picked for an automatic one.
    let mut config = Map::new();
    match n.subnet_given {
        Some(subnet) => {
            config.insert("Subnet".into(), json!(subnet.to_string()));
            if let Some(r) = n.pool.range {
                config.insert("IPRange".into(), json!(r.to_string()));
            }
            if let Some(g) = n.gateway_given {
                config.insert("Gateway".into(), json!(g.to_string()));
            }
        }
        None => {
            config.insert("Subnet".into(), json!(n.pool.subnet.to_string()));
            config.insert("Gateway".into(), json!(n.pool.gateway.to_string()));
        }
    }
    let mut members = Map::new();
    if containers {
        for (id, e) in &n.endpoints {
            members.insert(
                id.clone(),
                json!({
                    "Name": e.container_name,
                    "EndpointID": e.endpoint_id,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, n.pool.subnet.prefix),
                    "IPv6Address": "",
                }),
            );
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            // dockerd keeps no IPAM options for the default network (null) and an empty map
            // for networks made through the API.
            "Options": if n.default { Value::Null } else { json!({}) },
            "Config": [Value::Object(config)],
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": members,
        "Options": n.options,
        "Labels": n.labels,
    })
}
