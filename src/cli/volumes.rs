//! The volume commands (`volume ls`, `create`, `inspect`, `rm`, `prune`) and the network
//! listing (`network ls`, `inspect`), with docker's output.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use super::client::Body;
use super::containers::path_escape;
use super::format::{self, short_id, Format};
use super::{specs, CliError, Ctx};

use super::filters_query;

/// `volume ls` and `network ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output (networks)
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display names (volumes) or IDs (networks)
    #[arg(short, long)]
    pub quiet: bool,
}

fn labels_text(v: &Value) -> String {
    let mut l: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    l.sort();
    l.join(",")
}

/// `volume ls`, sorted by name as docker sorts it.
///
/// # Errors
/// The daemon's; filters and templates that do not parse.
pub fn volume_ls(ctx: &Ctx, a: LsArgs) -> Result<(), CliError> {
    let v: Value = ctx
        .client
        .get_json(&format!("/volumes{}", filters_query(&a.filter)?))?;
    let mut vols: Vec<Value> = v["Volumes"].as_array().cloned().unwrap_or_default();
    vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let rows: Vec<gotmpl::Value> = vols
        .iter()
        .map(|v| {
            format::row(&[
                ("Name", v["Name"].as_str().unwrap_or("").to_owned()),
                ("Driver", v["Driver"].as_str().unwrap_or("").to_owned()),
                ("Scope", v["Scope"].as_str().unwrap_or("").to_owned()),
                (
                    "Mountpoint",
                    v["Mountpoint"].as_str().unwrap_or("").to_owned(),
                ),
                ("Labels", labels_text(&v["Labels"])),
                ("Links", "N/A".to_owned()),
                ("Size", "N/A".to_owned()),
            ])
        })
        .collect();
    let text = if a.quiet {
        "{{.Name}}".to_owned()
    } else {
        a.format
            .clone()
            .or_else(|| ctx.config_value("volumesFormat"))
            .unwrap_or_else(|| "table".into())
    };
    let f = Format::parse(&text, "{{.Driver}}\t{{.Name}}")?;
    let header = BTreeMap::from([
        ("Name", "VOLUME NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Links", "LINKS"),
        ("Size", "SIZE"),
    ]);
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &header, &rows)?;
    Ok(())
}

/// `volume create`.
#[derive(Debug, clap::Args)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// The volume's name (one is made when left out)
    pub name: Option<String>,
}

/// `volume create`: prints the volume's name.
///
/// # Errors
/// The daemon's.
pub fn volume_create(ctx: &Ctx, a: VolumeCreateArgs) -> Result<(), CliError> {
    let body = json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": specs::key_values(&a.opt),
        "Labels": specs::key_values(&a.label),
    });
    let v: Value = ctx
        .client
        .request("POST", "/volumes/create", &[], Body::json(&body))?
        .ok()?
        .json()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", v["Name"].as_str().unwrap_or("")).map_err(CliError::io("stdout"))
}

/// `volume rm`.
#[derive(Debug, clap::Args)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    /// Volumes
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// `volume rm`: prints each removed name.
///
/// # Errors
/// Exit 1 when any removal failed (each error printed).
pub fn volume_rm(ctx: &Ctx, a: VolumeRmArgs) -> Result<(), CliError> {
    let mut failed = false;
    for n in &a.volumes {
        let path = format!(
            "/volumes/{}{}",
            path_escape(n),
            if a.force { "?force=1" } else { "" }
        );
        match ctx.client.call("DELETE", &path, Body::None) {
            Ok(_) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{n}").map_err(CliError::io("stdout"))?;
            }
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// `volume inspect` and `network inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Names
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Runs `inspect` for `base`'s objects; `typed` gives a decoded answer the fields the docker
/// CLI's Go type has although the JSON left them out, so a template sees their zero values as
/// docker's does instead of failing on them.
fn inspect_objects(
    ctx: &Ctx,
    a: InspectArgs,
    base: &str,
    typed: fn(&mut Value),
) -> Result<(), CliError> {
    let template = a
        .format
        .as_deref()
        .map(|f| Format::parse(f, ""))
        .transpose()?;
    let mut raws = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match ctx
            .client
            .call("GET", &format!("{base}/{}", path_escape(n)), Body::None)
        {
            Ok(raw) => raws.push(raw),
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match template {
        Some(t) => {
            for raw in &raws {
                let mut v: Value = serde_json::from_slice(raw)
                    .map_err(|e| super::client::ClientError::Protocol(e.to_string()))?;
                typed(&mut v);
                writeln!(out, "{}", t.render(&format::from_json(&v))?)
                    .map_err(CliError::io("stdout"))?;
            }
        }
        None => {
            let mut all = vec![b'['];
            for (i, r) in raws.iter().enumerate() {
                if i > 0 {
                    all.push(b',');
                }
                all.extend_from_slice(r.trim_ascii());
            }
            all.push(b']');
            let mut text = super::inspect::indent(&all, "    ");
            text.push(b'\n');
            out.write_all(&text).map_err(CliError::io("stdout"))?;
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// `volume inspect`.
///
/// # Errors
/// Exit 1 when a volume is missing (its error printed).
pub fn volume_inspect(ctx: &Ctx, a: InspectArgs) -> Result<(), CliError> {
    inspect_objects(ctx, a, "/volumes", |_| ())
}

/// `volume prune`.
#[derive(Debug, clap::Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// `volume prune`: prints the removed volumes and the space freed.
///
/// # Errors
/// The daemon's.
pub fn volume_prune(ctx: &Ctx, a: VolumePruneArgs) -> Result<(), CliError> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !super::containers::confirm(a.force, warning)? {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let v = super::system::prune_one(ctx, "/volumes/prune", &filters, "")?;
    let mut text = super::system::removed(&v, "VolumesDeleted", "Deleted Volumes:");
    text.push_str(&super::system::total_reclaimed(
        v["SpaceReclaimed"].as_f64().unwrap_or(0.0),
    ));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .map_err(CliError::io("stdout"))
}

/// `network ls`, sorted by name as docker sorts it.
///
/// # Errors
/// The daemon's; filters and templates that do not parse.
pub fn network_ls(ctx: &Ctx, a: LsArgs) -> Result<(), CliError> {
    let mut list: Vec<Value> = ctx
        .client
        .get_json(&format!("/networks{}", filters_query(&a.filter)?))?;
    list.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let rows: Vec<gotmpl::Value> = list
        .iter()
        .map(|n| {
            format::row(&[
                ("ID", short_id(n["Id"].as_str().unwrap_or(""), a.no_trunc)),
                ("Name", n["Name"].as_str().unwrap_or("").to_owned()),
                ("Driver", n["Driver"].as_str().unwrap_or("").to_owned()),
                ("Scope", n["Scope"].as_str().unwrap_or("").to_owned()),
                (
                    "IPv6",
                    n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                ),
                (
                    "Internal",
                    n["Internal"].as_bool().unwrap_or(false).to_string(),
                ),
                ("Labels", labels_text(&n["Labels"])),
            ])
        })
        .collect();
    let text = if a.quiet {
        "{{.ID}}".to_owned()
    } else {
        a.format
            .clone()
            .or_else(|| ctx.config_value("networksFormat"))
            .unwrap_or_else(|| "table".into())
    };
    let f = Format::parse(&text, "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")?;
    let header = BTreeMap::from([
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
    ]);
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &header, &rows)?;
    Ok(())
}

/// `network inspect`.
///
/// # Errors
/// Exit 1 when a network is missing (its error printed).
pub fn network_inspect(ctx: &Ctx, a: InspectArgs) -> Result<(), CliError> {
    inspect_objects(ctx, a, "/networks", network_zero_values)
}

/// The `omitempty` fields of an IPAM config (docker's `network.IPAMConfig`: a dockerd given
/// only a subnet sends no `Gateway`), at their Go zero values.
fn network_zero_values(v: &mut Value) {
    let Some(configs) = v.pointer_mut("/IPAM/Config").and_then(Value::as_array_mut) else {
        return;
    };
    for c in configs.iter_mut().filter_map(Value::as_object_mut) {
        for k in ["Subnet", "IPRange", "Gateway"] {
            c.entry(k).or_insert_with(|| json!(""));
        }
        c.entry("AuxiliaryAddresses").or_insert_with(|| json!({}));
    }
}

/// `network create`.
#[derive(Debug, clap::Args)]
pub struct NetworkCreateArgs {
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// The network's name
    pub name: String,
}

/// An address and a prefix length (`10.1.0.0/16`).
fn cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

/// Whether `data` (an address, or a CIDR's address) lies inside `subnet`: the docker CLI's
/// `subnetMatches`, with its errors.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, CliError> {
    let fail = |message: String| CliError::Status { code: 1, message };
    let (net, len) = cidr(subnet)
        .ok_or_else(|| fail(format!("invalid subnet: invalid CIDR address: {subnet}")))?;
    let ip = if data.contains('/') {
        cidr(data)
            .ok_or_else(|| fail(format!("invalid CIDR address: {data}")))?
            .0
    } else {
        match data.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    let masked = |a: u128, bits: u32| {
        let len = u32::from(len).min(bits);
        if len == 0 {
            0
        } else {
            a >> (bits - len)
        }
    };
    Ok(match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
            masked(u128::from(u32::from(n)), 32) == masked(u128::from(u32::from(i)), 32)
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
            masked(u128::from(n), 128) == masked(u128::from(i), 128)
        }
        _ => false,
    })
}

/// The IPAM pools of `network create`: each `--ip-range` and `--gateway` goes to the
/// `--subnet` that holds it, with the checks and messages of the docker CLI's
/// `createIPAMConfig`.
fn ipam_pools(a: &NetworkCreateArgs) -> Result<Vec<Value>, CliError> {
    let fail = |message: String| CliError::Status { code: 1, message };
    if a.subnet.len() < a.ip_range.len() || a.subnet.len() < a.gateway.len() {
        return Err(fail(
            "every ip-range or gateway must have a corresponding subnet".into(),
        ));
    }
    let mut pools: Vec<serde_json::Map<String, Value>> = Vec::new();
    for (i, s) in a.subnet.iter().enumerate() {
        for k in &a.subnet[..i] {
            if subnet_matches(s, k)? || subnet_matches(k, s)? {
                return Err(fail(
                    "multiple overlapping subnet configuration is not supported".into(),
                ));
            }
        }
        pools.push(serde_json::Map::from_iter([(
            "Subnet".to_owned(),
            json!(s),
        )]));
    }
    for (key, values, what, multiple) in [
        ("IPRange", &a.ip_range, "range", "ranges"),
        ("Gateway", &a.gateway, "gateway", "gateways"),
    ] {
        let on = if key == "IPRange" { "on" } else { "for" };
        for v in values {
            let mut matched = false;
            for (i, s) in a.subnet.iter().enumerate() {
                if !subnet_matches(s, v)? {
                    continue;
                }
                if let Some(old) = pools[i].get(key).and_then(Value::as_str) {
                    return Err(fail(format!(
                        "cannot configure multiple {multiple} ({v}, {old}) {on} the same subnet ({s})"
                    )));
                }
                pools[i].insert(key.to_owned(), json!(v));
                matched = true;
            }
            if !matched {
                return Err(fail(format!("no matching subnet for {what} {v}")));
            }
        }
    }
    Ok(pools.into_iter().map(Value::Object).collect())
}

/// `network create`: prints the new network's id.
///
/// # Errors
/// Gateways and ranges outside every subnet; the daemon's.
pub fn network_create(ctx: &Ctx, a: NetworkCreateArgs) -> Result<(), CliError> {
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "EnableIPv6": a.ipv6,
        "IPAM": {"Driver": "default", "Config": ipam_pools(&a)?, "Options": {}},
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Options": specs::key_values(&a.opt),
        "Labels": specs::key_values(&a.label),
    });
    let v: Value = ctx
        .client
        .request("POST", "/networks/create", &[], Body::json(&body))?
        .ok()?
        .json()?;
    if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{w}");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", v["Id"].as_str().unwrap_or("")).map_err(CliError::io("stdout"))
}

/// `network rm`.
#[derive(Debug, clap::Args)]
pub struct NetworkRmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    /// Networks
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

/// `network rm`: prints each removed name.
///
/// # Errors
/// Exit 1 when any removal failed (each error printed).
pub fn network_rm(ctx: &Ctx, a: NetworkRmArgs) -> Result<(), CliError> {
    let mut failed = false;
    for n in &a.networks {
        match ctx.client.call(
            "DELETE",
            &format!("/networks/{}", path_escape(n)),
            Body::None,
        ) {
            Ok(_) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{n}").map_err(CliError::io("stdout"))?;
            }
            Err(e) if a.force && e.status() == Some(404) => {}
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    // docker 28 ends with a status error without a message, which prints as Go words it.
    if failed {
        return Err(CliError::Status {
            code: 1,
            message: "exit status 1".into(),
        });
    }
    Ok(())
}

/// `network connect`.
#[derive(Debug, clap::Args)]
pub struct NetworkConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// The network
    pub network: String,
    /// The container
    pub container: String,
}

/// `network connect`: silent on success.
///
/// # Errors
/// The daemon's.
pub fn network_connect(ctx: &Ctx, a: NetworkConnectArgs) -> Result<(), CliError> {
    let mut ipam = serde_json::Map::new();
    if let Some(ip) = &a.ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = &a.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    let body = json!({
        "Container": a.container,
        "EndpointConfig": {"IPAMConfig": ipam, "Aliases": a.alias},
    });
    ctx.client.call(
        "POST",
        &format!("/networks/{}/connect", path_escape(&a.network)),
        Body::json(&body),
    )?;
    Ok(())
}

/// `network disconnect`.
#[derive(Debug, clap::Args)]
pub struct NetworkDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    /// The network
    pub network: String,
    /// The container
    pub container: String,
}

/// `network disconnect`: silent on success.
///
/// # Errors
/// The daemon's.
pub fn network_disconnect(ctx: &Ctx, a: NetworkDisconnectArgs) -> Result<(), CliError> {
    let body = json!({"Container": a.container, "Force": a.force});
    ctx.client.call(
        "POST",
        &format!("/networks/{}/disconnect", path_escape(&a.network)),
        Body::json(&body),
    )?;
    Ok(())
}

/// `network prune`.
#[derive(Debug, clap::Args)]
pub struct NetworkPruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// `network prune`: prints the removed networks (nothing when none were; networks take no
/// space, so no total).
///
/// # Errors
/// The daemon's; filters that do not parse.
pub fn network_prune(ctx: &Ctx, a: NetworkPruneArgs) -> Result<(), CliError> {
    if !super::containers::confirm(
        a.force,
        "WARNING! This will remove all custom networks not used by at least one container.",
    )? {
        return Ok(());
    }
    let v = super::system::prune_one(ctx, "/networks/prune", &a.filter, "")?;
    let text = super::system::removed(&v, "NetworksDeleted", "Deleted Networks:");
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .map_err(CliError::io("stdout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_configs_get_the_fields_docker_leaves_out() {
        let mut v = json!({"IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}, {"Gateway": "g"}]}});
        network_zero_values(&mut v);
        assert_eq!(
            v["IPAM"]["Config"],
            json!([
                {"Subnet": "10.1.0.0/24", "IPRange": "", "Gateway": "", "AuxiliaryAddresses": {}},
                {"Subnet": "", "IPRange": "", "Gateway": "g", "AuxiliaryAddresses": {}},
            ])
        );
        let mut none = json!({"IPAM": {"Config": null}});
        network_zero_values(&mut none);
        assert_eq!(none, json!({"IPAM": {"Config": null}}));
    }
}
