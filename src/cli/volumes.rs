//! The volume commands (`volume ls`, `create`, `inspect`, `rm`, `prune`) and the network
//! listing (`network ls`, `inspect`), with docker's output.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use super::client::Body;
use super::containers::path_escape;
use super::format::{self, short_id, Format};
use super::{specs, CliError, Ctx};

fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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

fn filters_query(f: &[String]) -> Result<String, CliError> {
    if f.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("?filters={}", q(&specs::filters(f)?.to_string())))
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
    let rows: Vec<gtmpl::Value> = vols
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

fn inspect_objects(ctx: &Ctx, a: InspectArgs, base: &str) -> Result<(), CliError> {
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
                let v: Value = serde_json::from_slice(raw)
                    .map_err(|e| super::client::ClientError::Protocol(e.to_string()))?;
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
    inspect_objects(ctx, a, "/volumes")
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
    let v: Value = ctx
        .client
        .request(
            "POST",
            &format!("/volumes/prune{}", filters_query(&filters)?),
            &[],
            Body::None,
        )?
        .ok()?
        .json()?;
    let mut text = String::new();
    let deleted: Vec<&str> = v["VolumesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !deleted.is_empty() {
        text.push_str("Deleted Volumes:\n");
        for d in deleted {
            text.push_str(d);
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0), 4)
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
    let rows: Vec<gtmpl::Value> = list
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
    inspect_objects(ctx, a, "/networks")
}
