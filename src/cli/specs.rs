//! The CLI's parsers of what users type or keep in files, as the docker CLI reads them:
//! `--filter`, env files and `-e`, `-p`, `-v`, `--mount`, `--tmpfs`, sizes (`--memory`),
//! `--cpus`, `--restart` and `key=value` lists. Each returns a typed error naming the input.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// An input the CLI cannot use, with the text that was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// a filter without `=`
    #[error("invalid argument {0:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)")]
    Filter(String),
    /// a line of an env file that is not a variable
    #[error("{file}: line {line}: variable {name:?} contains whitespaces")]
    EnvFile {
        file: String,
        line: usize,
        name: String,
    },
    /// an env entry with an empty name
    #[error("invalid environment variable: {0}")]
    Env(String),
    /// a port spec that does not parse (docker's words: which part is wrong)
    #[error("{0}")]
    Port(String),
    /// a volume spec that does not parse
    #[error("invalid volume specification: {0:?}")]
    Volume(String),
    /// a --mount field that is not known or not valid
    #[error("invalid argument {0:?} for \"--mount\" flag: {1}")]
    Mount(String, String),
    /// a size such as `512m` that does not parse
    #[error("invalid size: '{0}'")]
    Size(String),
    /// a `--cpus` value that does not parse
    #[error("invalid argument {0:?} for \"--cpus\" flag: not a number of CPUs")]
    Cpus(String),
    /// a restart policy that does not parse
    #[error(
        "invalid restart policy {0:?}: use no, always, unless-stopped or on-failure[:max-retries]"
    )]
    Restart(String),
    /// a `--tmpfs` without a path
    #[error("invalid tmpfs specification: {0:?}")]
    Tmpfs(String),
}

/// `--filter` values as the API's `filters` JSON: `{"name": {"value": true}}`.
///
/// # Errors
/// [`SpecError::Filter`] for a value without `=`.
pub fn filters(items: &[String]) -> Result<Value, SpecError> {
    let mut m: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for f in items {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| SpecError::Filter(f.clone()))?;
        let k = k.trim().to_lowercase();
        m.entry(k)
            .or_default()
            .insert(v.to_owned(), Value::Bool(true));
    }
    Ok(json!(m))
}

/// The lines of an env file (`--env-file`): `KEY=value` kept as written, a bare `KEY` taken
/// from the environment (left out when unset), blank lines and `#` comments skipped.
///
/// # Errors
/// [`SpecError::EnvFile`] for a name with whitespace, [`SpecError::Env`] for an empty one.
pub fn env_file(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (line.trim_end(), None),
        };
        if name.is_empty() {
            return Err(SpecError::Env(line.to_owned()));
        }
        if name.contains(char::is_whitespace) {
            return Err(SpecError::EnvFile {
                file: file.to_owned(),
                line: i + 1,
                name: name.to_owned(),
            });
        }
        match value {
            Some(v) => out.push(format!("{name}={v}")),
            None => {
                if let Some(v) = lookup(name) {
                    out.push(format!("{name}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// `-e NAME=value` as given; a bare `-e NAME` takes the environment's value when set.
///
/// # Errors
/// [`SpecError::Env`] for an empty name.
pub fn env_flag(item: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, SpecError> {
    if item.is_empty() || item.starts_with('=') {
        return Err(SpecError::Env(item.to_owned()));
    }
    if item.contains('=') {
        return Ok(item.to_owned());
    }
    Ok(lookup(item).map_or_else(|| item.to_owned(), |v| format!("{item}={v}")))
}

/// The exposed ports and bindings of `-p` specs: `[ip:][hostPort:]containerPort[/proto]`,
/// ports or ranges.
pub type PortMap = (BTreeMap<String, Value>, BTreeMap<String, Vec<Value>>);

/// Parses `-p` specs.
///
/// # Errors
/// [`SpecError::Port`] naming the spec.
pub fn ports(specs: &[String]) -> Result<PortMap, SpecError> {
    let mut exposed = BTreeMap::new();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for spec in specs {
        let bad = || SpecError::Port(format!("invalid port specification: {spec:?}"));
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p),
            None => (spec.as_str(), "tcp"),
        };
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(SpecError::Port(format!("invalid proto: {proto}")));
        }
        // An IPv6 address is bracketed: [::1]:8080:80.
        let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, after) = r.split_once(']').ok_or_else(bad)?;
            (ip.to_owned(), after.strip_prefix(':').ok_or_else(bad)?)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.len() {
                1 | 2 => (String::new(), rest),
                3 => (parts[0].to_owned(), &rest[parts[0].len() + 1..]),
                _ => return Err(bad()),
            }
        };
        let (host, container) = match rest.split_once(':') {
            Some((h, c)) => (h, c),
            None => ("", rest),
        };
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(SpecError::Port(format!("invalid IP address: {ip}")));
        }
        let (c0, c1) = port_range(container)
            .ok_or_else(|| SpecError::Port(format!("invalid containerPort: {container}")))?;
        let host_range = if host.is_empty() {
            None
        } else {
            Some(
                port_range(host)
                    .ok_or_else(|| SpecError::Port(format!("invalid hostPort: {host}")))?,
            )
        };
        if let Some((h0, h1)) = host_range {
            if h1 - h0 != c1 - c0 && h0 != h1 {
                return Err(bad());
            }
        }
        for (i, p) in (c0..=c1).enumerate() {
            let key = format!("{p}/{proto}");
            exposed.insert(key.clone(), json!({}));
            let host_port = match host_range {
                None => String::new(),
                Some((h0, h1)) if h0 == h1 => h0.to_string(),
                Some((h0, _)) => (h0 + i as u32).to_string(),
            };
            bindings
                .entry(key)
                .or_default()
                .push(json!({"HostIp": ip, "HostPort": host_port}));
        }
    }
    Ok((exposed, bindings))
}

fn port_range(s: &str) -> Option<(u32, u32)> {
    let one = |p: &str| -> Option<u32> {
        let n: u32 = p.parse().ok()?;
        (1..=65535).contains(&n).then_some(n)
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            (a <= b).then_some((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// What a `-v` spec becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `-v /path`: an anonymous volume (`Config.Volumes`).
    Anonymous(String),
    /// `-v src:dst[:opts]`: a bind or named volume (`HostConfig.Binds`, the daemon resolves).
    Bind(String),
}

/// Parses one `-v` spec.
///
/// # Errors
/// [`SpecError::Volume`] for a spec without an absolute container path or with too many parts.
pub fn volume(spec: &str) -> Result<VolumeSpec, SpecError> {
    let bad = || SpecError::Volume(spec.to_owned());
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [dst] if dst.starts_with('/') => Ok(VolumeSpec::Anonymous((*dst).to_owned())),
        [src, dst] | [src, dst, _] if !src.is_empty() && dst.starts_with('/') => {
            if let [_, _, opts] = parts.as_slice() {
                for o in opts.split(',') {
                    if !matches!(
                        o,
                        "ro" | "rw"
                            | "z"
                            | "Z"
                            | "nocopy"
                            | "shared"
                            | "rshared"
                            | "slave"
                            | "rslave"
                            | "private"
                            | "rprivate"
                            | "consistent"
                            | "cached"
                            | "delegated"
                    ) {
                        return Err(bad());
                    }
                }
            }
            Ok(VolumeSpec::Bind(spec.to_owned()))
        }
        _ => Err(bad()),
    }
}

/// Splits a CSV field list, honouring double quotes as docker's `--mount` reader does.
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One `--mount` spec as the API's `HostConfig.Mounts` entry.
///
/// # Errors
/// [`SpecError::Mount`] naming the field that is unknown or invalid.
pub fn mount(spec: &str) -> Result<Value, SpecError> {
    let err = |m: &str| SpecError::Mount(spec.to_owned(), m.to_owned());
    let mut m = Map::new();
    let mut ty = "volume".to_owned();
    let mut bind = Map::new();
    let mut vol = Map::new();
    let mut tmpfs = Map::new();
    let mut labels = Map::new();
    let mut driver_opts = Map::new();
    for field in csv_fields(spec) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_owned())),
            None => (field.to_lowercase(), None),
        };
        let need = |v: &Option<String>| -> Result<String, SpecError> {
            v.clone()
                .ok_or_else(|| err(&format!("invalid field '{field}' must be a key=value pair")))
        };
        match k.as_str() {
            "readonly" | "ro" => {
                let b = match &v {
                    None => true,
                    Some(s) => {
                        parse_bool(s).ok_or_else(|| err(&format!("invalid value for {k}: {s}")))?
                    }
                };
                m.insert("ReadOnly".into(), Value::Bool(b));
            }
            "volume-nocopy" => {
                let b = match &v {
                    None => true,
                    Some(s) => parse_bool(s)
                        .ok_or_else(|| err(&format!("invalid value for volume-nocopy: {s}")))?,
                };
                vol.insert("NoCopy".into(), Value::Bool(b));
            }
            "type" => {
                ty = need(&v)?;
                if !matches!(ty.as_str(), "bind" | "volume" | "tmpfs" | "npipe" | "image") {
                    return Err(err(&format!("invalid mount type {ty:?}")));
                }
            }
            "source" | "src" => {
                m.insert("Source".into(), Value::String(need(&v)?));
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), Value::String(need(&v)?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), Value::String(need(&v)?));
            }
            "bind-nonrecursive" => {
                let s = v.clone().unwrap_or_else(|| "true".into());
                let b = parse_bool(&s).ok_or_else(|| err("invalid value for bind-nonrecursive"))?;
                bind.insert("NonRecursive".into(), Value::Bool(b));
            }
            "consistency" => {
                m.insert("Consistency".into(), Value::String(need(&v)?));
            }
            "volume-driver" => {
                let mut d = vol
                    .remove("DriverConfig")
                    .and_then(|d| d.as_object().cloned())
                    .unwrap_or_default();
                d.insert("Name".into(), Value::String(need(&v)?));
                vol.insert("DriverConfig".into(), Value::Object(d));
            }
            "volume-label" => {
                let s = need(&v)?;
                let (lk, lv) = s.split_once('=').unwrap_or((&s, ""));
                labels.insert(lk.to_owned(), Value::String(lv.to_owned()));
            }
            "volume-opt" => {
                let s = need(&v)?;
                let (ok, ov) = s.split_once('=').unwrap_or((&s, ""));
                driver_opts.insert(ok.to_owned(), Value::String(ov.to_owned()));
            }
            "volume-subpath" => {
                vol.insert("Subpath".into(), Value::String(need(&v)?));
            }
            "tmpfs-size" => {
                let n = size(&need(&v)?).map_err(|_| err("invalid value for tmpfs-size"))?;
                tmpfs.insert("SizeBytes".into(), json!(n));
            }
            "tmpfs-mode" => {
                let s = need(&v)?;
                let n =
                    u32::from_str_radix(&s, 8).map_err(|_| err("invalid value for tmpfs-mode"))?;
                tmpfs.insert("Mode".into(), json!(n));
            }
            _ => return Err(err(&format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    if !m.contains_key("Target") {
        return Err(err("target is required"));
    }
    if !labels.is_empty() {
        vol.insert("Labels".into(), Value::Object(labels));
    }
    if !driver_opts.is_empty() {
        let mut d = vol
            .remove("DriverConfig")
            .and_then(|d| d.as_object().cloned())
            .unwrap_or_default();
        d.insert("Options".into(), Value::Object(driver_opts));
        vol.insert("DriverConfig".into(), Value::Object(d));
    }
    match ty.as_str() {
        "bind" if !vol.is_empty() || !tmpfs.is_empty() => {
            return Err(err(
                "cannot mix 'volume-*' or 'tmpfs-*' options with mount type 'bind'",
            ))
        }
        "volume" if !bind.is_empty() || !tmpfs.is_empty() => {
            return Err(err(
                "cannot mix 'bind-*' or 'tmpfs-*' options with mount type 'volume'",
            ))
        }
        "tmpfs" if !bind.is_empty() || !vol.is_empty() => {
            return Err(err(
                "cannot mix 'bind-*' or 'volume-*' options with mount type 'tmpfs'",
            ))
        }
        _ => {}
    }
    m.insert("Type".into(), Value::String(ty));
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !vol.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(vol));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Value::Object(m))
}

/// `--tmpfs /path[:options]`.
///
/// # Errors
/// [`SpecError::Tmpfs`] for a spec without an absolute path.
pub fn tmpfs(spec: &str) -> Result<(String, String), SpecError> {
    let (path, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !path.starts_with('/') {
        return Err(SpecError::Tmpfs(spec.to_owned()));
    }
    Ok((path.to_owned(), opts.to_owned()))
}

/// A size with docker's binary suffixes (`b`, `k`, `m`, `g`, `t`, `p`, optionally followed by
/// `b`), as `--memory` and `--shm-size` take it.
///
/// # Errors
/// [`SpecError::Size`].
pub fn size(s: &str) -> Result<i64, SpecError> {
    let bad = || SpecError::Size(s.to_owned());
    let t = s.trim().to_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = if unit.len() == 2 && unit.ends_with('b') {
        &unit[..1]
    } else if unit == "ib" {
        return Err(bad());
    } else {
        unit
    };
    let unit = unit.strip_suffix("i").unwrap_or(unit);
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// `--cpus` as `NanoCpus`.
///
/// # Errors
/// [`SpecError::Cpus`].
pub fn cpus(s: &str) -> Result<i64, SpecError> {
    let n: f64 = s.parse().map_err(|_| SpecError::Cpus(s.to_owned()))?;
    if !n.is_finite() || !(0.0..=1e9).contains(&n) {
        return Err(SpecError::Cpus(s.to_owned()));
    }
    Ok((n * 1e9).round() as i64)
}

/// `--restart` as the API's `RestartPolicy`.
///
/// # Errors
/// [`SpecError::Restart`].
pub fn restart(s: &str) -> Result<Value, SpecError> {
    let bad = || SpecError::Restart(s.to_owned());
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c.parse::<i64>().map_err(|_| bad())?)),
        None => (s, None),
    };
    match (name, count) {
        ("no" | "always" | "unless-stopped", None) | ("", None) => {
            Ok(json!({"Name": name, "MaximumRetryCount": 0}))
        }
        ("on-failure", c) => Ok(json!({"Name": name, "MaximumRetryCount": c.unwrap_or(0)})),
        _ => Err(bad()),
    }
}

/// `key=value` items (labels, options) as a map; a bare key gets an empty value.
pub fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (i.clone(), String::new()),
        })
        .collect()
}

/// The fuzz target's check of the CLI's parsers of outside input: the first line names the
/// parser (`format`, `filter`, `env`, `port`, `volume`, `mount`, `tmpfs`, `size`, `cpus`,
/// `restart`), the rest is its input. Returns whether the input was accepted.
///
/// # Panics
/// When an accepted input breaks the parser's own contract (a published port that is not
/// exposed, an env line without `=`, a template that fails to render the fields it was
/// parsed for in a way other than an error): the fuzz target's findings.
#[must_use]
pub fn check_inputs(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let (kind, input) = text.split_once('\n').unwrap_or((&text, ""));
    match kind {
        "format" => {
            let Ok(f) = super::format::Format::parse(input, "{{.ID}}") else {
                return false;
            };
            let row = super::format::row(&[("ID", "0123456789ab".into()), ("Names", "n".into())]);
            let doc = super::format::from_json(
                &json!({"Config": {"Labels": {"a": "b"}, "Env": ["A=1"]}, "N": null}),
            );
            let _ = f.render(&row);
            let _ = f.render(&doc);
            true
        }
        "filter" => match filters(&input.lines().map(str::to_owned).collect::<Vec<_>>()) {
            Ok(v) => {
                assert!(v.is_object());
                true
            }
            Err(_) => false,
        },
        "env" => match env_file("fuzz", input, |k| (k == "SET").then(|| "1".to_owned())) {
            Ok(lines) => {
                assert!(lines.iter().all(|l| l.contains('=')), "{lines:?}");
                true
            }
            Err(_) => false,
        },
        "port" => match ports(&input.lines().map(str::to_owned).collect::<Vec<_>>()) {
            Ok((exposed, bindings)) => {
                assert!(bindings.keys().all(|k| exposed.contains_key(k)));
                true
            }
            Err(_) => false,
        },
        "volume" => volume(input).is_ok(),
        "mount" => match mount(input) {
            Ok(m) => {
                assert!(m["Target"].is_string() && m["Type"].is_string());
                true
            }
            Err(_) => false,
        },
        "tmpfs" => tmpfs(input).is_ok(),
        "size" => size(input).is_ok_and(|n| n >= 0),
        "cpus" => cpus(input).is_ok_and(|n| n >= 0),
        "restart" => restart(input).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_group_values_by_name() {
        let f = filters(&[
            "status=running".into(),
            "label=a=b".into(),
            "status=exited".into(),
        ])
        .unwrap();
        assert_eq!(
            f,
            json!({"label": {"a=b": true}, "status": {"exited": true, "running": true}})
        );
        assert_eq!(
            filters(&["nope".into()]),
            Err(SpecError::Filter("nope".into()))
        );
    }

    #[test]
    fn env_files_read_as_docker_reads_them() {
        let text = "# c\n\nA=1\n  B = x \nC\nD\nE=\n";
        let got = env_file("f", text, |k| (k == "C").then(|| "from-env".to_owned()));
        assert!(got.is_err(), "'B ' has whitespace: {got:?}");
        let got = env_file("f", "A=1\nC\nD\nE=\nF=a=b\n", |k| {
            (k == "C").then(|| "from-env".to_owned())
        })
        .unwrap();
        assert_eq!(got, ["A=1", "C=from-env", "E=", "F=a=b"]);
        assert_eq!(env_flag("X", |_| None).unwrap(), "X");
        assert_eq!(env_flag("X", |_| Some("1".into())).unwrap(), "X=1");
        assert!(env_flag("=x", |_| None).is_err());
    }

    #[test]
    fn ports_parse_every_form() {
        let (e, b) = ports(&[
            "8080:80".into(),
            "127.0.0.1:9000-9001:90-91/udp".into(),
            "53".into(),
        ])
        .unwrap();
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            ["53/tcp", "80/tcp", "90/udp", "91/udp"]
        );
        assert_eq!(b["80/tcp"], [json!({"HostIp": "", "HostPort": "8080"})]);
        assert_eq!(
            b["91/udp"],
            [json!({"HostIp": "127.0.0.1", "HostPort": "9001"})]
        );
        assert_eq!(b["53/tcp"], [json!({"HostIp": "", "HostPort": ""})]);
        let (_, b) = ports(&["[::1]:8080:80".into()]).unwrap();
        assert_eq!(b["80/tcp"], [json!({"HostIp": "::1", "HostPort": "8080"})]);
        for bad in ["", "x", "80/foo", "1:2:3:4", "70000", "bad:1:2", "9-8"] {
            assert!(ports(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_and_mounts() {
        assert_eq!(
            volume("/data").unwrap(),
            VolumeSpec::Anonymous("/data".into())
        );
        assert_eq!(
            volume("v:/data:ro").unwrap(),
            VolumeSpec::Bind("v:/data:ro".into())
        );
        assert!(volume("data").is_err());
        assert!(volume("v:/d:bogus").is_err());
        let m = mount("type=bind,source=/tmp,target=/t,readonly,bind-propagation=rslave").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/tmp", "Target": "/t", "ReadOnly": true,
                   "BindOptions": {"Propagation": "rslave"}})
        );
        let m = mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            m["TmpfsOptions"],
            json!({"SizeBytes": 1048576, "Mode": 0o1770})
        );
        // A bind without a source is the daemon's to refuse, as with docker.
        assert!(mount("type=bind,target=/t").is_ok());
        assert!(mount("source=x").is_err());
        assert!(mount("type=volume,target=/t,bogus=1").is_err());
        assert_eq!(
            tmpfs("/run:size=1m").unwrap(),
            ("/run".into(), "size=1m".into())
        );
    }

    #[test]
    fn sizes_cpus_restart() {
        assert_eq!(size("512m").unwrap(), 512 << 20);
        assert_eq!(size("1g").unwrap(), 1 << 30);
        assert_eq!(size("1GB").unwrap(), 1 << 30);
        assert_eq!(size("100").unwrap(), 100);
        assert!(size("1x").is_err());
        assert!(size("").is_err());
        assert_eq!(cpus("1.5").unwrap(), 1_500_000_000);
        assert!(cpus("x").is_err());
        assert_eq!(restart("on-failure:3").unwrap()["MaximumRetryCount"], 3);
        assert!(restart("sometimes").is_err());
        assert!(restart("always:3").is_err());
    }
}
