//! A container's networking as the engine drives it: its namespace wired to its networks at
//! start and unwired at exit and removal (through [`crate::engine::network::containers`]),
//! and `POST /networks/{id}/connect` / `disconnect`.

use std::sync::Arc;

use serde_json::Value;

use super::super::error::ApiError;
use super::super::Engine;
use super::Stored;
use crate::engine::network::containers::{self as netc, Wiring};
use crate::engine::network::files::{DnsOptions, FileMode};
use crate::engine::network::DEFAULT_NETWORK;
use refeng_spec::engine::Status;

fn dns_options(s: &Stored) -> DnsOptions {
    DnsOptions {
        servers: s.host.dns.clone().unwrap_or_default(),
        search: s.host.dns_search.clone().unwrap_or_default(),
        options: s.host.dns_options.clone().unwrap_or_default(),
    }
}

/// Whether the container has a namespace of its own wired to bridge networks (its mode is
/// neither none, host nor container:X), even when disconnected from all of them.
pub fn bridged(s: &Stored) -> bool {
    !matches!(s.network.as_str(), "none" | "host") && !s.network.starts_with("container:")
}

fn exposed(s: &Stored) -> Vec<String> {
    s.config
        .exposed_ports
        .as_ref()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

impl Engine {
    /// Wires container `stored`'s namespace to its networks and writes its /etc files with its
    /// address; container:X gets X's hosts and resolv.conf; nothing for none and host.
    ///
    /// # Errors
    /// The network layer's failure (a taken host port, an address in use, ...), after undoing.
    pub(super) async fn network_attach(&self, stored: &Stored) -> Result<(), ApiError> {
        if let Some(other) = stored.network.strip_prefix("container:") {
            // As dockerd: a container in another's namespace reads that one's hosts and
            // resolv.conf (its embedded DNS answers at 127.0.0.11 in that namespace).
            for f in ["hosts", "resolv.conf"] {
                let from = self.containers.dir_of(other).join(f);
                if let Ok(text) = std::fs::read(&from) {
                    crate::sys::durable::write(
                        &self.containers.dir_of(&stored.id).join(f),
                        0o644,
                        &text,
                    )
                    .map_err(|e| ApiError::internal(&format!("writing {f}"), e))?;
                }
            }
            return Ok(());
        }
        if !bridged(stored) {
            return Ok(());
        }
        let net = self.network.get().await?.clone();
        let ports = netc::port_requests(
            stored.host.port_bindings.as_ref(),
            stored.host.publish_all_ports,
            &exposed(stored),
        )?;
        let name = {
            let map = self.containers.lock();
            map.get(&stored.id)
                .map(|e| e.name().to_string())
                .unwrap_or_default()
        };
        let w = Wiring {
            id: stored.id.clone(),
            name,
            networks: stored.networks.clone(),
            ports,
            dns: dns_options(stored),
            service: stored
                .config
                .labels
                .as_ref()
                .and_then(|l| l.get(netc::COMPOSE_SERVICE_LABEL).cloned()),
            hostname: stored.config.hostname.clone(),
            domainname: stored.config.domainname.clone(),
            extra_hosts: stored.host.extra_hosts.clone().unwrap_or_default(),
        };
        let netns = self.network.netns_path(&stored.id);
        let (n2, ns2, w2) = (net.clone(), netns.clone(), w.clone());
        let endpoints = tokio::task::spawn_blocking(move || netc::attach(&n2, &ns2, &w2))
            .await
            .map_err(|e| ApiError::internal("wiring the network", e))??;
        let state = net.snapshot();
        let gateway = state
            .networks
            .values()
            .find(|n| n.default)
            .map(|n| n.pool.gateway);
        let mode = match stored.networks.first() {
            Some((n, _)) if n != DEFAULT_NETWORK => FileMode::Embedded,
            _ => FileMode::Private,
        };
        let written = netc::etc_files(
            mode,
            "",
            &self.network.host_resolv_conf(),
            endpoints.first().map(|e| e.ip),
            gateway,
            &w.hostname,
            &w.domainname,
            &w.extra_hosts,
            &w.dns,
        )
        .and_then(|f| netc::write_etc(&self.containers.dir_of(&stored.id), &f));
        if let Err(e) = written {
            self.network_detach(&stored.id).await;
            return Err(e);
        }
        // dockerd tells each join of a network at start.
        for ep in &endpoints {
            if let Some(n) = state.networks.get(&ep.network_id) {
                self.network_event(&n.id, &n.name, "connect", &stored.id);
            }
        }
        Ok(())
    }

    /// Unwires container `id`: every endpoint and its namespace file; failures are logged
    /// (the container goes on to exit or removal regardless).
    pub(super) async fn network_detach(&self, id: &str) {
        let Some(net) = self.network.opened().cloned() else {
            return;
        };
        let netns = self.network.netns_path(id);
        let id2 = id.to_string();
        let joined: Vec<(String, String)> = net
            .snapshot()
            .networks
            .values()
            .filter(|n| n.endpoints.contains_key(id))
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let done = tokio::task::spawn_blocking(move || netc::detach(&net, &id2, &netns)).await;
        // dockerd tells each leave of a network at exit and removal.
        for (nid, name) in &joined {
            self.network_event(nid, name, "disconnect", id);
        }
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%id, error = %e, "network not fully unwired"),
            Err(e) => tracing::warn!(%id, error = %e, "network unwiring panicked"),
        }
    }

    /// `POST /networks/{id}/connect` `{"Container": ..., "EndpointConfig": {...}}`: records the
    /// network for the container's next starts and, when it runs, connects it now.
    ///
    /// # Errors
    /// 404 for an unknown network or container, 403 when connected already, 400 for a
    /// container without a bridged namespace or an unsupported endpoint field.
    pub async fn network_connect(self: &Arc<Self>, key: &str, body: &[u8]) -> Result<(), ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
        let container = v["Container"].as_str().unwrap_or_default().to_string();
        if let Some(k) = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .find(|k| !matches!(k.as_str(), "Container" | "EndpointConfig"))
        {
            return Err(ApiError::BadRequest(format!(
                "{k} is not supported in a network connect request"
            )));
        }
        let req = netc::parse_endpoint("EndpointConfig", &v["EndpointConfig"])?;
        let net = self.network.get().await?.clone();
        let rec = net
            .get(key)
            .map_err(|_| ApiError::NotFound(format!("network {key} not found")))?;
        let id = self.containers.find(&container)?;
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let (stored, status, name) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {container}")))?;
            (e.stored.clone(), e.lc.status(), e.name().to_string())
        };
        if !bridged(&stored) {
            return Err(ApiError::BadRequest(format!(
                "container {name} is in network mode {:?}: it cannot be connected to networks",
                stored.host.network_mode
            )));
        }
        if stored.networks.iter().any(|(n, _)| *n == rec.name) {
            return Err(ApiError::Forbidden(format!(
                "endpoint with name {name} already exists in network {}",
                rec.name
            )));
        }
        if rec.default && (req.ipv4.is_some() || !req.aliases.is_empty()) {
            return Err(ApiError::BadRequest(
                "user specified IP address and aliases are supported on user defined networks only"
                    .into(),
            ));
        }
        if matches!(status, Status::Running | Status::Paused) {
            let netns = self.network.netns_path(&id);
            let service = stored
                .config
                .labels
                .as_ref()
                .and_then(|l| l.get(netc::COMPOSE_SERVICE_LABEL).cloned());
            let mut aliases = req.aliases.clone();
            if let Some(s) = service.filter(|s| !aliases.contains(s)) {
                aliases.push(s);
            }
            let opts = crate::engine::network::EndpointOptions {
                container_id: id.clone(),
                container_name: name.clone(),
                aliases,
                ip: req.ipv4,
                ports: Vec::new(),
                dns: dns_options(&stored),
            };
            let (n2, k2) = (net.clone(), rec.id.clone());
            tokio::task::spawn_blocking(move || n2.connect(&netns, &k2, &opts))
                .await
                .map_err(|e| ApiError::internal("connecting", e))??;
        }
        self.update(&id, |e| {
            e.stored.networks.push((rec.name.clone(), req.clone()));
        })?;
        self.network_event(&rec.id, &rec.name, "connect", &id);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect` `{"Container": ..., "Force": bool}`.
    ///
    /// # Errors
    /// 404 unknown network or container, 400 when it is not connected or it is the
    /// container's only network... as dockerd, which allows disconnecting that one too.
    pub async fn network_disconnect(
        self: &Arc<Self>,
        key: &str,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
        let container = v["Container"].as_str().unwrap_or_default().to_string();
        let net = self.network.get().await?.clone();
        let rec = net
            .get(key)
            .map_err(|_| ApiError::NotFound(format!("network {key} not found")))?;
        let id = match self.containers.find(&container) {
            Ok(id) => id,
            // dockerd's `--force` drops an endpoint whose container is gone.
            Err(e) if v["Force"].as_bool() == Some(true) => {
                let c2 = container.clone();
                let n2 = net.clone();
                let k2 = rec.id.clone();
                let found = rec
                    .endpoints
                    .values()
                    .find(|ep| ep.container_name == c2 || ep.container_id.starts_with(&c2))
                    .map(|ep| ep.container_id.clone());
                let Some(cid) = found else { return Err(e) };
                tokio::task::spawn_blocking(move || n2.disconnect(&cid, &k2))
                    .await
                    .map_err(|e| ApiError::internal("disconnecting", e))??;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let lock = self.op_lock(&id)?;
        let _g = lock.lock().await;
        let (stored, name) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {container}")))?;
            (e.stored.clone(), e.name().to_string())
        };
        if !stored.networks.iter().any(|(n, _)| *n == rec.name) {
            return Err(ApiError::BadRequest(format!(
                "container {name} is not connected to network {}",
                rec.name
            )));
        }
        if rec.endpoints.contains_key(&id) {
            let (n2, k2, i2) = (net.clone(), rec.id.clone(), id.clone());
            tokio::task::spawn_blocking(move || n2.disconnect(&i2, &k2))
                .await
                .map_err(|e| ApiError::internal("disconnecting", e))??;
        }
        self.update(&id, |e| {
            e.stored.networks.retain(|(n, _)| *n != rec.name);
        })?;
        self.network_event(&rec.id, &rec.name, "disconnect", &id);
        Ok(())
    }

    /// A `network` event as dockerd emits them (`container` and `name`, `type: bridge`).
    pub fn network_event(&self, net_id: &str, net_name: &str, action: &str, container: &str) {
        let mut attrs = std::collections::BTreeMap::new();
        if !container.is_empty() {
            attrs.insert("container".to_string(), container.to_string());
        }
        attrs.insert("name".to_string(), net_name.to_string());
        attrs.insert("type".to_string(), "bridge".to_string());
        self.events.emit(super::super::events::Event::new(
            "network", action, net_id, attrs,
        ));
    }

    /// `NetworkSettings` of a bridged container, from the network layer's records.
    pub(super) fn network_settings(&self, e: &super::Entry) -> Value {
        let state = self.network.opened().map(|n| n.snapshot());
        netc::settings_json(
            state.as_ref(),
            &e.stored.id,
            &e.stored.networks,
            &self.network.netns_path(&e.stored.id),
            &exposed(&e.stored),
        )
    }

    /// The container list's `Ports` of entry `e`. As dockerd, whose list reads the ports of
    /// the container's network settings: they exist while it runs on a bridge network (its
    /// exposed ports, published or not), and not for none, host, container:X, or a container
    /// that is not running.
    pub(super) fn list_ports(&self, e: &super::Entry) -> Value {
        let bound = self
            .network
            .opened()
            .map(|n| netc::bound_ports(&n.snapshot(), &e.stored.id))
            .unwrap_or_default();
        let wired = bridged(&e.stored) && e.lc.status().is_running();
        let exposed = if wired {
            exposed(&e.stored)
        } else {
            Vec::new()
        };
        netc::list_ports(&exposed, &bound)
    }

    /// `docker ps --filter network=X`: whether entry `e` is on a network named X, or whose id
    /// starts with X (none, host and container:X count as the network of that mode's name).
    pub(super) fn on_network(&self, e: &super::Entry, f: &crate::engine::filters::Filters) -> bool {
        let state = self.network.opened().map(|n| n.snapshot());
        f.get("network").any(|want| {
            if !bridged(&e.stored) {
                return e.stored.network == want;
            }
            e.stored.networks.iter().any(|(name, _)| {
                name == want
                    || state
                        .as_ref()
                        .and_then(|s| s.find(name))
                        .is_some_and(|n| n.id.starts_with(want))
            })
        })
    }

    /// A renamed container answers to its new name on its networks (its endpoints' names).
    ///
    /// # Errors
    /// `Internal` when the network records cannot be written.
    pub(super) async fn network_rename(&self, id: &str, new: &str) -> Result<(), ApiError> {
        let Some(net) = self.network.opened().cloned() else {
            return Ok(());
        };
        let (id, new) = (id.to_string(), new.to_string());
        tokio::task::spawn_blocking(move || net.rename_endpoints(&id, &new))
            .await
            .map_err(|e| ApiError::internal("renaming endpoints", e))??;
        Ok(())
    }
}
