//! `version` and `info`: the client's and the daemon's facts, in docker's layout.

use std::io::Write;

use serde_json::{json, Value};

use super::client::{version_less, MAX_API_VERSION};
use super::format::{self, bytes_size, Format};
use super::{CliError, Ctx};

/// `refeng version`.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short, long)]
    pub format: Option<String>,
}

/// `refeng info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short, long)]
    pub format: Option<String>,
}

fn context_name() -> String {
    std::env::var("DOCKER_CONTEXT")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn client_facts(api: &str) -> Value {
    json!({
        "Platform": {"Name": ""},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": api,
        "DefaultAPIVersion": MAX_API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": context_name(),
    })
}

/// Go's name for the machine, as docker prints `OS/Arch`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An RFC 3339 build time in Go's ANSIC layout and local time (`Thu May  7 21:09:36 2026`),
/// as docker prints the daemon's; other text as it is.
fn ansic_time(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d
            .with_timezone(&chrono::Local)
            .format("%a %b %e %H:%M:%S %Y")
            .to_string(),
        Err(_) => t.to_owned(),
    }
}

/// Prints `version`.
///
/// # Errors
/// The daemon's; the client part is printed first, as docker does.
pub fn version(ctx: &Ctx, args: VersionArgs) -> Result<(), CliError> {
    let server: Result<Value, CliError> = ctx
        .client
        .get_json::<Value>("/version")
        .map_err(CliError::from);
    let api = ctx.client.version().unwrap_or(MAX_API_VERSION).to_owned();
    let client = client_facts(&api);
    let mut out = std::io::stdout().lock();
    if let Some(f) = args.format {
        let f = Format::parse(&f, "")?;
        let doc = json!({"Client": client, "Server": server.as_ref().ok()});
        let text = f.render(&format::from_json(&doc))?;
        writeln!(out, "{text}").map_err(CliError::io("stdout"))?;
        return server.map(|_| ());
    }
    let mut text = String::new();
    text.push_str("Client:\n");
    text.push_str(&format!(" Version:\t{}\n", env!("CARGO_PKG_VERSION")));
    let downgraded = if version_less(&api, MAX_API_VERSION) {
        format!(" (downgraded from {MAX_API_VERSION})")
    } else {
        String::new()
    };
    text.push_str(&format!(" API version:\t{api}{downgraded}\n"));
    text.push_str(&format!(
        " OS/Arch:\t{}/{}\n",
        std::env::consts::OS,
        go_arch()
    ));
    text.push_str(&format!(" Context:\t{}\n", context_name()));
    if let Ok(s) = &server {
        text.push_str("\nServer:");
        if let Some(p) = s["Platform"]["Name"].as_str().filter(|p| !p.is_empty()) {
            text.push_str(&format!(" {p}"));
        }
        text.push('\n');
        for c in s["Components"].as_array().into_iter().flatten() {
            let name = c["Name"].as_str().unwrap_or("");
            text.push_str(&format!(" {name}:\n"));
            let d = &c["Details"];
            let detail = |k: &str| d[k].as_str().unwrap_or("").to_owned();
            if name == "Engine" {
                text.push_str(&format!(
                    "  Version:\t{}\n",
                    c["Version"].as_str().unwrap_or("")
                ));
                text.push_str(&format!(
                    "  API version:\t{} (minimum version {})\n",
                    detail("ApiVersion"),
                    detail("MinAPIVersion")
                ));
                text.push_str(&format!("  Go version:\t{}\n", detail("GoVersion")));
                text.push_str(&format!("  Git commit:\t{}\n", detail("GitCommit")));
                text.push_str(&format!("  Built:\t{}\n", ansic_time(&detail("BuildTime"))));
                text.push_str(&format!(
                    "  OS/Arch:\t{}/{}\n",
                    detail("Os"),
                    detail("Arch")
                ));
                text.push_str(&format!("  Experimental:\t{}\n", detail("Experimental")));
            } else {
                text.push_str(&format!(
                    "  Version:\t{}\n",
                    c["Version"].as_str().unwrap_or("")
                ));
                let mut keys: Vec<&String> = d
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                keys.sort();
                for k in keys {
                    text.push_str(&format!("  {k}:\t{}\n", detail(k)));
                }
            }
        }
    }
    out.write_all(format::tabwrite(&text, 20, 1).as_bytes())
        .map_err(CliError::io("stdout"))?;
    server.map(|_| ())
}

/// Prints `info`.
///
/// # Errors
/// The daemon's.
pub fn info(ctx: &Ctx, args: InfoArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let server: Result<Value, CliError> = ctx
        .client
        .get_json::<Value>("/info")
        .map_err(CliError::from);
    if let Some(f) = args.format {
        let f = Format::parse(&f, "")?;
        let doc = json!({
            "ClientInfo": {"Version": env!("CARGO_PKG_VERSION"), "Context": context_name(), "Debug": false},
        });
        let mut doc = doc.as_object().cloned().unwrap_or_default();
        if let Ok(Value::Object(s)) = &server {
            for (k, v) in s {
                doc.insert(k.clone(), v.clone());
            }
        }
        let text = f.render(&format::from_json(&Value::Object(doc)))?;
        writeln!(out, "{text}").map_err(CliError::io("stdout"))?;
        return server.map(|_| ());
    }
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    t.push_str(&format!(" Context:    {}\n", context_name()));
    t.push_str(" Debug Mode: false\n");
    let s = match server {
        Ok(s) => s,
        Err(e) => {
            out.write_all(t.as_bytes())
                .map_err(CliError::io("stdout"))?;
            return Err(e);
        }
    };
    t.push('\n');
    t.push_str(&server_info(&s));
    out.write_all(t.as_bytes())
        .map_err(CliError::io("stdout"))?;
    let warnings: Vec<&str> = s["Warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !warnings.is_empty() {
        let mut err = std::io::stderr().lock();
        for w in warnings {
            let _ = writeln!(err, "{w}");
        }
    }
    Ok(())
}

/// The server part of `info`, in docker's order.
fn server_info(s: &Value) -> String {
    let mut t = String::from("Server:\n");
    let str_of = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    let line = |t: &mut String, indent: usize, k: &str, v: &Value| {
        t.push_str(&format!("{}{k}: {}\n", " ".repeat(indent), str_of(v)));
    };
    line(&mut t, 1, "Containers", &s["Containers"]);
    line(&mut t, 2, "Running", &s["ContainersRunning"]);
    line(&mut t, 2, "Paused", &s["ContainersPaused"]);
    line(&mut t, 2, "Stopped", &s["ContainersStopped"]);
    line(&mut t, 1, "Images", &s["Images"]);
    line(&mut t, 1, "Server Version", &s["ServerVersion"]);
    line(&mut t, 1, "Storage Driver", &s["Driver"]);
    for pair in s["DriverStatus"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str()) {
            t.push_str(&format!("  {k}: {v}\n"));
        }
    }
    line(&mut t, 1, "Logging Driver", &s["LoggingDriver"]);
    line(&mut t, 1, "Cgroup Driver", &s["CgroupDriver"]);
    line(&mut t, 1, "Cgroup Version", &s["CgroupVersion"]);
    t.push_str(" Plugins:\n");
    for (k, always) in [
        ("Volume", true),
        ("Network", true),
        ("Authorization", false),
        ("Log", false),
    ] {
        let items: Vec<String> = s["Plugins"][k]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        if always || !items.is_empty() {
            t.push_str(&format!("  {k}: {}\n", items.join(" ")));
        }
    }
    let swarm = s["Swarm"]["LocalNodeState"].as_str().unwrap_or("inactive");
    t.push_str(&format!(" Swarm: {swarm}\n"));
    let mut runtimes: Vec<&String> = s["Runtimes"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    runtimes.sort();
    if !runtimes.is_empty() {
        let names: Vec<&str> = runtimes.iter().map(|s| s.as_str()).collect();
        t.push_str(&format!(" Runtimes: {}\n", names.join(" ")));
    }
    if s["DefaultRuntime"].as_str().is_some_and(|r| !r.is_empty()) {
        line(&mut t, 1, "Default Runtime", &s["DefaultRuntime"]);
    }
    line(&mut t, 1, "Init Binary", &s["InitBinary"]);
    line(
        &mut t,
        1,
        "containerd version",
        &s["ContainerdCommit"]["ID"],
    );
    line(&mut t, 1, "runc version", &s["RuncCommit"]["ID"]);
    line(&mut t, 1, "init version", &s["InitCommit"]["ID"]);
    let opts: Vec<&str> = s["SecurityOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !opts.is_empty() {
        t.push_str(" Security Options:\n");
        for o in opts {
            // name=seccomp,profile=builtin
            let mut name = "";
            let mut rest = Vec::new();
            for kv in o.split(',') {
                match kv.split_once('=') {
                    Some(("name", v)) => name = v,
                    Some((k, v)) => rest.push((k, v)),
                    None => name = kv,
                }
            }
            t.push_str(&format!("  {name}\n"));
            for (k, v) in rest {
                let mut k = k.to_owned();
                if let Some(c) = k.get(..1) {
                    k = c.to_uppercase() + &k[1..];
                }
                t.push_str(&format!("   {k}: {v}\n"));
            }
        }
    }
    line(&mut t, 1, "Kernel Version", &s["KernelVersion"]);
    line(&mut t, 1, "Operating System", &s["OperatingSystem"]);
    line(&mut t, 1, "OSType", &s["OSType"]);
    line(&mut t, 1, "Architecture", &s["Architecture"]);
    line(&mut t, 1, "CPUs", &s["NCPU"]);
    let mem = s["MemTotal"].as_f64().unwrap_or(0.0);
    t.push_str(&format!(" Total Memory: {}\n", bytes_size(mem)));
    line(&mut t, 1, "Name", &s["Name"]);
    line(&mut t, 1, "ID", &s["ID"]);
    line(&mut t, 1, "Docker Root Dir", &s["DockerRootDir"]);
    line(&mut t, 1, "Debug Mode", &s["Debug"]);
    if s["Debug"].as_bool() == Some(true) {
        line(&mut t, 2, "File Descriptors", &s["NFd"]);
        line(&mut t, 2, "Goroutines", &s["NGoroutines"]);
        line(&mut t, 2, "System Time", &s["SystemTime"]);
        line(&mut t, 2, "EventsListeners", &s["NEventsListener"]);
    }
    for (k, label) in [
        ("HttpProxy", "HTTP Proxy"),
        ("HttpsProxy", "HTTPS Proxy"),
        ("NoProxy", "No Proxy"),
    ] {
        if s[k].as_str().is_some_and(|v| !v.is_empty()) {
            line(&mut t, 1, label, &s[k]);
        }
    }
    let labels: Vec<String> = s["Labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    if !labels.is_empty() {
        t.push_str(" Labels:\n");
        for l in labels {
            t.push_str(&format!("  {l}\n"));
        }
    }
    line(&mut t, 1, "Experimental", &s["ExperimentalBuild"]);
    let insecure: Vec<String> = s["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    if !insecure.is_empty() {
        t.push_str(" Insecure Registries:\n");
        for i in insecure {
            t.push_str(&format!("  {i}\n"));
        }
    }
    line(&mut t, 1, "Live Restore Enabled", &s["LiveRestoreEnabled"]);
    t.push('\n');
    t
}

/// `refeng events` and `refeng system events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json' or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

/// An event as docker's templates see it: the Go field names of `events.Message`, which differ
/// from its JSON keys (`status` is `.Status`, `timeNano` is `.TimeNano`).
fn event_fields(e: &Value) -> Value {
    json!({
        "Status": e["status"].as_str().unwrap_or(""),
        "ID": e["id"].as_str().unwrap_or(""),
        "From": e["from"].as_str().unwrap_or(""),
        "Type": e["Type"].as_str().unwrap_or(""),
        "Action": e["Action"].as_str().unwrap_or(""),
        "Actor": {
            "ID": e["Actor"]["ID"].as_str().unwrap_or(""),
            "Attributes": e["Actor"]["Attributes"].as_object().cloned().unwrap_or_default(),
        },
        "Scope": e["scope"].as_str().unwrap_or(""),
        "Time": e["time"].as_i64().unwrap_or(0),
        "TimeNano": e["timeNano"].as_i64().unwrap_or(0),
    })
}

/// A time in Go's `RFC3339NanoFixed` layout and local time, as `events` prints it.
fn rfc3339_nano_fixed(nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default()
    .with_timezone(&chrono::Local);
    let zone = if t.offset().local_minus_utc() == 0 {
        "Z".to_owned()
    } else {
        t.format("%:z").to_string()
    };
    format!("{}{zone}", t.format("%Y-%m-%dT%H:%M:%S%.9f"))
}

/// One event in docker's default layout: time, type, action, actor and its sorted attributes.
fn event_line(e: &Value) -> String {
    let mut line = String::new();
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let secs = e["time"].as_i64().unwrap_or(0);
    if nanos != 0 {
        line.push_str(&rfc3339_nano_fixed(nanos));
        line.push(' ');
    } else if secs != 0 {
        line.push_str(&rfc3339_nano_fixed(secs.saturating_mul(1_000_000_000)));
        line.push(' ');
    }
    line.push_str(&format!(
        "{} {} {}",
        e["Type"].as_str().unwrap_or(""),
        e["Action"].as_str().unwrap_or(""),
        e["Actor"]["ID"].as_str().unwrap_or("")
    ));
    if let Some(attrs) = e["Actor"]["Attributes"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let mut pairs: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        pairs.sort();
        line.push_str(&format!(" ({})", pairs.join(", ")));
    }
    line.push('\n');
    line
}

/// `events`: the daemon's events since `--since` (or now), printed as they come, until
/// `--until` or until interrupted.
///
/// # Errors
/// A format that does not parse (exit 64, as docker), bad times and filters, the daemon's.
pub fn events(ctx: &Ctx, a: EventsArgs) -> Result<(), CliError> {
    // `json` prints the daemon's message as it came, which is how Go marshals the same struct.
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(text) => {
            let parse_error = |e| CliError::Status {
                code: 64,
                message: format!("Error parsing format: {e}"),
            };
            let f = Format::parse(text, "").map_err(parse_error)?;
            // As docker does, the template runs once on an empty message before any event, so
            // one that fails on a value (`{{slice .ID 0 12}}`) is refused as not parsing.
            f.render(&format::from_json(&event_fields(&Value::Null)))
                .map_err(parse_error)?;
            Some(f)
        }
    };
    let raw_json = a.format.as_deref() == Some("json");
    let mut query = Vec::new();
    if let Some(s) = &a.since {
        query.push(format!("since={}", super::containers::timestamp(s)?));
    }
    if let Some(u) = &a.until {
        query.push(format!("until={}", super::containers::timestamp(u)?));
    }
    if !a.filter.is_empty() {
        query.push(super::filters_query(&a.filter)?.split_off(1));
    }
    let path = if query.is_empty() {
        "/events".to_owned()
    } else {
        format!("/events?{}", query.join("&"))
    };
    let r = ctx
        .client
        .request("GET", &path, &[], super::client::Body::None)?
        .ok()?;
    let reader = std::io::BufReader::new(r);
    let mut out = std::io::stdout().lock();
    for e in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        let e = e.map_err(|e| {
            CliError::from(super::client::ClientError::Protocol(format!(
                "event stream: {e}"
            )))
        })?;
        let text = match &template {
            None if raw_json => format!("{e}\n"),
            None => event_line(&e),
            Some(f) => format!("{}\n", f.render(&format::from_json(&event_fields(&e)))?),
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::io("stdout"))?;
    }
    Ok(())
}

/// `refeng system df`.
#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Format output using a custom template ('table', 'json' or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
}

/// `units.HumanSize` with docker's `(N%)` share of a total, as `system df` words reclaimable space.
fn share(part: i64, total: i64) -> String {
    let size = format::human_size(part as f64, 4);
    if total > 0 {
        format!("{size} ({}%)", part.saturating_mul(100) / total)
    } else {
        size
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[][..], Vec::as_slice)
}

/// The summary rows of `system df`, one per kind of object, with the docker CLI's arithmetic
/// (`cli/command/formatter/disk_usage.go`).
fn df_summary(du: &Value) -> Vec<gotmpl::Value> {
    let images = list(du, "Images");
    let layers = du["LayersSize"].as_i64().unwrap_or(0);
    let used: i64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) != 0)
        .filter(|i| i["Size"].as_i64() != Some(-1) && i["SharedSize"].as_i64() != Some(-1))
        .map(|i| i["Size"].as_i64().unwrap_or(0) - i["SharedSize"].as_i64().unwrap_or(0))
        .sum();
    let images_row = format::row(&[
        ("Type", "Images".into()),
        ("TotalCount", images.len().to_string()),
        (
            "Active",
            images
                .iter()
                .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
                .count()
                .to_string(),
        ),
        ("Size", format::human_size(layers as f64, 4)),
        ("Reclaimable", share(layers - used, layers)),
    ]);
    let containers = list(du, "Containers");
    let active = |c: &Value| {
        let s = c["State"].as_str().unwrap_or("");
        s.contains("running") || s.contains("paused") || s.contains("restarting")
    };
    let rw = |c: &Value| c["SizeRw"].as_i64().unwrap_or(0);
    let total: i64 = containers.iter().map(rw).sum();
    let idle: i64 = containers.iter().filter(|c| !active(c)).map(rw).sum();
    let containers_row = format::row(&[
        ("Type", "Containers".into()),
        ("TotalCount", containers.len().to_string()),
        (
            "Active",
            containers.iter().filter(|c| active(c)).count().to_string(),
        ),
        ("Size", format::human_size(total as f64, 4)),
        ("Reclaimable", share(idle, total)),
    ]);
    let volumes = list(du, "Volumes");
    let refs = |v: &Value| v["UsageData"]["RefCount"].as_i64().unwrap_or(-1);
    let vsize = |v: &Value| v["UsageData"]["Size"].as_i64().unwrap_or(-1).max(0);
    let total: i64 = volumes.iter().map(vsize).sum();
    let unused: i64 = volumes.iter().filter(|v| refs(v) == 0).map(vsize).sum();
    let volumes_row = format::row(&[
        ("Type", "Local Volumes".into()),
        ("TotalCount", volumes.len().to_string()),
        (
            "Active",
            volumes.iter().filter(|v| refs(v) > 0).count().to_string(),
        ),
        ("Size", format::human_size(total as f64, 4)),
        ("Reclaimable", share(unused, total)),
    ]);
    let cache = list(du, "BuildCache");
    let shared = |b: &Value| b["Shared"].as_bool().unwrap_or(false);
    let in_use = |b: &Value| b["InUse"].as_bool().unwrap_or(false);
    let bsize = |b: &Value| b["Size"].as_i64().unwrap_or(0);
    let builder: i64 = cache.iter().filter(|b| !shared(b)).map(bsize).sum();
    let busy: i64 = cache
        .iter()
        .filter(|b| in_use(b) && !shared(b))
        .map(bsize)
        .sum();
    let cache_row = format::row(&[
        ("Type", "Build Cache".into()),
        ("TotalCount", cache.len().to_string()),
        (
            "Active",
            cache.iter().filter(|b| in_use(b)).count().to_string(),
        ),
        ("Size", format::human_size(builder as f64, 4)),
        (
            "Reclaimable",
            format::human_size((builder - busy) as f64, 4),
        ),
    ]);
    vec![images_row, containers_row, volumes_row, cache_row]
}

/// `system df -v`'s four tables, each under its title (`verboseWriteTable` in the docker CLI).
fn df_verbose(du: &Value) -> Result<String, CliError> {
    let section = |rows: &[gotmpl::Value], fmt: &str, header: &[(&'static str, &'static str)]| {
        let f = Format::parse(fmt, "")?;
        let mut buf = Vec::new();
        f.print(&mut buf, &header.iter().copied().collect(), rows)?;
        Ok::<String, CliError>(String::from_utf8_lossy(&buf).into_owned())
    };
    let images: Vec<gotmpl::Value> = list(du, "Images")
        .iter()
        .filter_map(|i| {
            // Only the first tag shows; an image without one shows as <none>.
            let first = i["RepoTags"]
                .as_array()
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                .filter(|t| *t != "<none>:<none>");
            let mut one = i.clone();
            one["RepoTags"] = json!(first.into_iter().collect::<Vec<_>>());
            one["RepoDigests"] = json!([]);
            super::images::image_rows(&one, false, false)
                .into_iter()
                .next()
        })
        .collect();
    let containers: Vec<gotmpl::Value> = list(du, "Containers")
        .iter()
        .map(|c| {
            // The virtual size is not shown here.
            let mut c = c.clone();
            c["SizeRootFs"] = json!(0);
            super::containers::ps_row(&c, false)
        })
        .collect();
    let na = |n: i64, f: &dyn Fn(i64) -> String| if n < 0 { "N/A".into() } else { f(n) };
    let volumes: Vec<gotmpl::Value> = list(du, "Volumes")
        .iter()
        .map(|v| {
            let u = &v["UsageData"];
            format::row(&[
                ("Name", v["Name"].as_str().unwrap_or("").to_owned()),
                (
                    "Links",
                    na(u["RefCount"].as_i64().unwrap_or(-1), &|n| n.to_string()),
                ),
                (
                    "Size",
                    na(u["Size"].as_i64().unwrap_or(-1), &|n| {
                        format::human_size(n as f64, 4)
                    }),
                ),
            ])
        })
        .collect();
    let since = |t: &Value| {
        t.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format::ago(t.timestamp()))
            .unwrap_or_default()
    };
    let cache: Vec<gotmpl::Value> = list(du, "BuildCache")
        .iter()
        .map(|b| {
            let id = b["ID"].as_str().unwrap_or("");
            let id = id.split_once(':').map_or(id, |(_, h)| h);
            let mut id: String = id.chars().take(12).collect();
            if b["InUse"].as_bool().unwrap_or(false) {
                id.push('*');
            }
            format::row(&[
                ("ID", id),
                ("CacheType", b["Type"].as_str().unwrap_or("").to_owned()),
                (
                    "Size",
                    format::human_size(b["Size"].as_f64().unwrap_or(0.0), 3),
                ),
                ("CreatedSince", since(&b["CreatedAt"])),
                ("LastUsedSince", since(&b["LastUsedAt"])),
                (
                    "UsageCount",
                    b["UsageCount"].as_i64().unwrap_or(0).to_string(),
                ),
                ("Shared", b["Shared"].as_bool().unwrap_or(false).to_string()),
            ])
        })
        .collect();
    let mut text = String::from("Images space usage:\n\n");
    text.push_str(&section(
        &images,
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("Containers", "CONTAINERS"),
        ],
    )?);
    text.push_str("\nContainers space usage:\n\n");
    text.push_str(&section(
        &containers,
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("LocalVolumes", "LOCAL VOLUMES"),
            ("Size", "SIZE"),
            ("RunningFor", "CREATED"),
            ("Status", "STATUS"),
            ("Names", "NAMES"),
        ],
    )?);
    text.push_str("\nLocal Volumes space usage:\n\n");
    text.push_str(&section(
        &volumes,
        "table {{.Name}}\t{{.Links}}\t{{.Size}}",
        &[
            ("Name", "VOLUME NAME"),
            ("Links", "LINKS"),
            ("Size", "SIZE"),
        ],
    )?);
    let cache_size: i64 = list(du, "BuildCache")
        .iter()
        .filter(|b| !b["Shared"].as_bool().unwrap_or(false))
        .map(|b| b["Size"].as_i64().unwrap_or(0))
        .sum();
    text.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        format::human_size(cache_size as f64, 4)
    ));
    text.push_str(&section(
        &cache,
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
        &[
            ("ID", "CACHE ID"),
            ("CacheType", "CACHE TYPE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("LastUsedSince", "LAST USED"),
            ("UsageCount", "USAGE"),
            ("Shared", "SHARED"),
        ],
    )?);
    Ok(text)
}

/// `system df`: the space images, containers, volumes and the build cache take.
///
/// # Errors
/// The daemon's; templates that do not parse; `--format` other than `table` with `-v`, which
/// docker renders from its own Go types and refeng does not.
pub fn df(ctx: &Ctx, a: DfArgs) -> Result<(), CliError> {
    let format = a.format.clone().unwrap_or_default();
    if a.verbose && !(format.is_empty() || format == "table") {
        return Err(CliError::Usage(
            "--format is not supported with --verbose".into(),
        ));
    }
    let du: Value = ctx.client.get_json("/system/df")?;
    let mut out = std::io::stdout().lock();
    if a.verbose {
        let text = df_verbose(&du)?;
        return out
            .write_all(text.as_bytes())
            .map_err(CliError::io("stdout"));
    }
    let text = match format.as_str() {
        "" | "table" => "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        "raw" => "type: {{.Type}}\ntotal: {{.TotalCount}}\nactive: {{.Active}}\nsize: {{.Size}}\nreclaimable: {{.Reclaimable}}\n",
        other => other,
    };
    let f = Format::parse(text, "")?;
    let header = std::collections::BTreeMap::from([
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ]);
    f.print(&mut out, &header, &df_summary(&du))?;
    Ok(())
}

/// `refeng system prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

/// What `system prune` asks before it removes anything (docker's `confirmationTemplate`).
fn prune_warning(a: &PruneArgs) -> String {
    let mut warnings = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if a.volumes {
        warnings.push("all anonymous volumes not used by at least one container");
    }
    warnings.push(if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    warnings.push(if a.all {
        "all build cache"
    } else {
        "unused build cache"
    });
    let mut text = String::from("WARNING! This will remove:");
    for w in warnings {
        text.push_str(&format!("\n  - {w}"));
    }
    text.push('\n');
    let mut shown: Vec<&String> = a
        .filter
        .iter()
        .filter(|f| {
            let key = f.split_once('=').map_or(f.as_str(), |(k, _)| k);
            matches!(key, "label" | "label!" | "until")
        })
        .collect();
    shown.sort();
    if !shown.is_empty() {
        text.push_str("\n  Items to be pruned will be filtered with:");
        for f in shown {
            text.push_str(&format!("\n  - {f}"));
        }
        text.push('\n');
    }
    text
}

/// One prune request with `filters`; its answer.
pub(crate) fn prune_one(
    ctx: &Ctx,
    path: &str,
    filters: &[String],
    extra: &str,
) -> Result<Value, CliError> {
    let mut path = format!("{path}{}", super::filters_query(filters)?);
    if !extra.is_empty() {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(extra);
    }
    Ok(ctx
        .client
        .request("POST", &path, &[], super::client::Body::None)?
        .ok()?
        .json()?)
}

/// `title` and the strings under `key` of a prune answer, a line each, then a blank line;
/// nothing when none were removed.
pub(crate) fn removed(v: &Value, key: &str, title: &str) -> String {
    let items: Vec<&str> = list(v, key).iter().filter_map(Value::as_str).collect();
    if items.is_empty() {
        return String::new();
    }
    let mut text = format!("{title}\n");
    for i in items {
        text.push_str(i);
        text.push('\n');
    }
    text.push('\n');
    text
}

/// The `Deleted Images:` block of an image prune's answer (untagged and deleted lines), then
/// a blank line; nothing when none were removed.
pub(crate) fn images_removed(v: &Value) -> String {
    let images = list(v, "ImagesDeleted");
    if images.is_empty() {
        return String::new();
    }
    let mut text = String::from("Deleted Images:\n");
    for d in images {
        if let Some(u) = d["Untagged"].as_str() {
            text.push_str(&format!("untagged: {u}\n"));
        }
        if let Some(x) = d["Deleted"].as_str() {
            text.push_str(&format!("deleted: {x}\n"));
        }
    }
    text.push('\n');
    text
}

/// A prune's last line.
pub(crate) fn total_reclaimed(bytes: f64) -> String {
    format!("Total reclaimed space: {}\n", format::human_size(bytes, 4))
}

/// `system prune`: containers, networks, volumes (with `--volumes`), images and the build
/// cache in docker's order, each printing what it removed as it goes, then the total.
///
/// # Errors
/// The daemon's (the first failing prune ends the command, as docker's does); filters that do
/// not parse; `until` with `--volumes`, which volume prune does not take.
pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<(), CliError> {
    if a.volumes
        && a.filter
            .iter()
            .any(|f| f.split_once('=').map_or(f.as_str(), |(k, _)| k) == "until")
    {
        return Err(CliError::Status {
            code: 1,
            message: "ERROR: The \"until\" filter is not supported with \"--volumes\"".into(),
        });
    }
    // A refusal is no failure: docker 28 ends with status 0 and says nothing more.
    if !super::containers::confirm(a.force, &prune_warning(&a))? {
        return Ok(());
    }
    let mut reclaimed: u64 = 0;
    let mut out = std::io::stdout().lock();
    let mut print = |text: String| -> Result<(), CliError> {
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::io("stdout"))
    };
    let space = |v: &Value| v["SpaceReclaimed"].as_u64().unwrap_or(0);

    let v = prune_one(ctx, "/containers/prune", &a.filter, "")?;
    let text = removed(&v, "ContainersDeleted", "Deleted Containers:");
    if !text.is_empty() {
        reclaimed += space(&v);
    }
    print(text)?;
    let v = prune_one(ctx, "/networks/prune", &a.filter, "")?;
    print(removed(&v, "NetworksDeleted", "Deleted Networks:"))?;
    if a.volumes {
        let v = prune_one(ctx, "/volumes/prune", &a.filter, "")?;
        let text = removed(&v, "VolumesDeleted", "Deleted Volumes:");
        if !text.is_empty() {
            reclaimed += space(&v);
        }
        print(text)?;
    }
    let mut image_filters = a.filter.clone();
    image_filters.push(format!("dangling={}", !a.all));
    let v = prune_one(ctx, "/images/prune", &image_filters, "")?;
    let text = images_removed(&v);
    if !text.is_empty() {
        reclaimed += space(&v);
        print(text)?;
    }
    let all = if a.all { "all=1" } else { "" };
    let v = prune_one(ctx, "/build/prune", &a.filter, all)?;
    let text = removed(&v, "CachesDeleted", "Deleted build cache objects:");
    if !text.is_empty() {
        reclaimed += space(&v);
    }
    print(text)?;
    print(total_reclaimed(reclaimed as f64))
}
