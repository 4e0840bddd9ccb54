//! The `changes` of `docker import` (and of commit, when it comes): Dockerfile instructions
//! applied to an image config, as dockerd's `BuildFromConfig` applies them. The instructions
//! dockerd accepts are CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL,
//! USER, VOLUME and WORKDIR; any other is refused with dockerd's message (`run is not a valid
//! change command`). Variables (`$VAR`, `${VAR}`) are replaced from the config's `Env` as the
//! builder does for ENV, LABEL, EXPOSE, USER, VOLUME, WORKDIR and STOPSIGNAL; the `${VAR:-x}`
//! modifiers are refused by name rather than read wrongly.

use serde_json::{json, Map, Value};

use super::error::ApiError;

/// The longest `changes` text taken (all instructions together).
pub const MAX_CHANGES: usize = 64 << 10;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Applies `changes` (each one or more instruction lines) to the image config object
/// `config` (the `config` member of an image configuration: `Cmd`, `Env`, ...).
///
/// # Errors
/// `BadRequest` naming the instruction or the part of it that is refused.
pub fn apply(config: &mut Map<String, Value>, changes: &[String]) -> Result<(), ApiError> {
    if changes.iter().map(String::len).sum::<usize>() > MAX_CHANGES {
        return Err(bad(format!("changes are longer than {MAX_CHANGES} bytes")));
    }
    let mut cmd_set = false;
    for line in changes.iter().flat_map(|c| logical_lines(c)) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let keyword = word.to_ascii_lowercase();
        match keyword.as_str() {
            "cmd" => {
                config.insert("Cmd".into(), json!(command(rest)?));
                cmd_set = true;
            }
            "entrypoint" => {
                config.insert("Entrypoint".into(), json!(command(rest)?));
                // The builder drops an inherited CMD when ENTRYPOINT changes without one.
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            "env" => {
                for (k, v) in name_values("ENV", rest, &env_of(config))? {
                    set_env(config, &k, &v);
                }
            }
            "label" => {
                let pairs = name_values("LABEL", rest, &env_of(config))?;
                merge(
                    config,
                    "Labels",
                    pairs.into_iter().map(|(k, v)| (k, json!(v))).collect(),
                );
            }
            "expose" => {
                let env = env_of(config);
                let mut ports = Vec::new();
                for p in rest.split_whitespace() {
                    ports.extend(expose(&substitute(p, &env)?)?);
                }
                if ports.is_empty() {
                    return Err(bad("EXPOSE requires at least one argument"));
                }
                merge(
                    config,
                    "ExposedPorts",
                    ports.into_iter().map(|p| (p, json!({}))).collect(),
                );
            }
            "user" => {
                let user = substitute(one_arg("USER", rest)?, &env_of(config))?;
                config.insert("User".into(), json!(user));
            }
            "workdir" => {
                let dir = substitute(one_arg("WORKDIR", rest)?, &env_of(config))?;
                let old = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                config.insert("WorkingDir".into(), json!(workdir(&old, &dir)));
            }
            "volume" => {
                let env = env_of(config);
                let list = match json_array(rest)? {
                    Some(v) => v,
                    None => rest.split_whitespace().map(str::to_string).collect(),
                };
                if list.is_empty() {
                    return Err(bad("VOLUME requires at least one argument"));
                }
                let mut paths = Vec::new();
                for v in list {
                    let v = substitute(v.trim(), &env)?;
                    if v.is_empty() {
                        return Err(bad("VOLUME specified can not be an empty string"));
                    }
                    paths.push(v);
                }
                merge(
                    config,
                    "Volumes",
                    paths.into_iter().map(|p| (p, json!({}))).collect(),
                );
            }
            "onbuild" => {
                let trigger = rest.split_whitespace().next().unwrap_or("");
                match trigger.to_ascii_uppercase().as_str() {
                    "" => return Err(bad("ONBUILD requires at least one argument")),
                    "ONBUILD" => {
                        return Err(bad("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
                    }
                    t @ ("FROM" | "MAINTAINER") => {
                        return Err(bad(format!("{t} isn't allowed as an ONBUILD trigger")))
                    }
                    _ => {}
                }
                let mut list = match config.remove("OnBuild") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                list.push(json!(rest));
                config.insert("OnBuild".into(), Value::Array(list));
            }
            "stopsignal" => {
                let sig = substitute(one_arg("STOPSIGNAL", rest)?, &env_of(config))?;
                check_signal(&sig)?;
                config.insert("StopSignal".into(), json!(sig));
            }
            "healthcheck" => {
                config.insert("Healthcheck".into(), healthcheck(rest)?);
            }
            other => {
                return Err(bad(format!("{other} is not a valid change command")));
            }
        }
    }
    Ok(())
}

/// Joins lines that end in a backslash, as a Dockerfile does.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            continue;
        }
        cur.push_str(l);
        out.push(std::mem::take(&mut cur));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn one_arg<'a>(what: &str, rest: &'a str) -> Result<&'a str, ApiError> {
    if rest.is_empty() {
        return Err(bad(format!("{what} requires exactly one argument")));
    }
    Ok(rest)
}

/// A JSON array of strings, when `rest` is one (the exec form).
fn json_array(rest: &str) -> Result<Option<Vec<String>>, ApiError> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    // As the Dockerfile parser: text that is not a JSON string array is the shell form.
    Ok(serde_json::from_str::<Vec<String>>(rest).ok())
}

/// CMD / ENTRYPOINT: the exec form as given, the shell form under `/bin/sh -c`.
fn command(rest: &str) -> Result<Vec<String>, ApiError> {
    Ok(match json_array(rest)? {
        Some(v) => v,
        None if rest.is_empty() => Vec::new(),
        None => vec!["/bin/sh".into(), "-c".into(), rest.into()],
    })
}

fn env_of(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let mut env = env_of(config);
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
    config.insert("Env".into(), json!(env));
}

/// Adds `entries` to the object member `key` (made when absent or not an object).
fn merge(config: &mut Map<String, Value>, key: &str, entries: Vec<(String, Value)>) {
    let mut m = match config.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.extend(entries);
    config.insert(key.into(), Value::Object(m));
}

/// Replaces `$VAR` and `${VAR}` from `env` (an unset variable is empty); `\$` is a literal
/// dollar.
fn substitute(text: &str, env: &[String]) -> Result<String, ApiError> {
    let lookup = |name: &str| -> String {
        env.iter()
            .rev()
            .find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                out.push('$');
                chars.next();
            }
            '$' => match chars.peek() {
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) if ch == '_' || ch.is_ascii_alphanumeric() => name.push(ch),
                            Some(ch) => {
                                return Err(bad(format!(
                                    "variable modifier {ch:?} in ${{{name}...}} is not supported by refengd"
                                )))
                            }
                            None => return Err(bad(format!("missing '}}' in {text:?}"))),
                        }
                    }
                    out.push_str(&lookup(&name));
                }
                Some(ch) if *ch == '_' || ch.is_ascii_alphabetic() => {
                    let mut name = String::new();
                    while let Some(ch) = chars.peek() {
                        if *ch == '_' || ch.is_ascii_alphanumeric() {
                            name.push(*ch);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push_str(&lookup(&name));
                }
                _ => out.push('$'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits `rest` into words, honouring double and single quotes and backslash escapes;
/// variables are replaced in unquoted and double-quoted text.
fn words(rest: &str, env: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = rest.chars();
    let mut raw = String::new();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    cur.push_str(&substitute(&std::mem::take(&mut raw), env)?);
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                cur.push_str(&substitute(&std::mem::take(&mut raw), env)?);
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => quoted.push(e),
                            Some('$') => quoted.push_str("\\$"),
                            Some(e) => {
                                quoted.push('\\');
                                quoted.push(e);
                            }
                            None => return Err(bad(format!("unterminated quote in {rest:?}"))),
                        },
                        Some(ch) => quoted.push(ch),
                        None => return Err(bad(format!("unterminated quote in {rest:?}"))),
                    }
                }
                cur.push_str(&substitute(&quoted, env)?);
            }
            '\'' => {
                in_word = true;
                cur.push_str(&substitute(&std::mem::take(&mut raw), env)?);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(bad(format!("unterminated quote in {rest:?}"))),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('$') => raw.push_str("\\$"),
                    Some(e) => raw.push(e),
                    None => {}
                }
            }
            c => {
                in_word = true;
                raw.push(c);
            }
        }
    }
    if in_word {
        cur.push_str(&substitute(&raw, env)?);
        out.push(cur);
    }
    Ok(out)
}

/// ENV and LABEL: `k=v k2="v 2"`, or the legacy `k value with spaces`.
fn name_values(what: &str, rest: &str, env: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    if rest.is_empty() {
        return Err(bad(format!("{what} requires at least one argument")));
    }
    let tokens = words(rest, env)?;
    let first = tokens.first().cloned().unwrap_or_default();
    if !first.contains('=') {
        // Legacy form: the name, then the rest of the line as the value.
        if tokens.len() < 2 {
            return Err(bad(format!("{what} names must have a value: {first}")));
        }
        return Ok(vec![(first, tokens[1..].join(" "))]);
    }
    let mut out = Vec::new();
    for w in tokens {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| bad(format!("{what} names can not be blank or lack '=': {w:?}")))?;
        if k.is_empty() {
            return Err(bad(format!("{what} names can not be blank")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `80`, `80/udp`, `8000-8002/tcp` as `port/proto` keys.
fn expose(spec: &str) -> Result<Vec<String>, ApiError> {
    let refuse = || bad(format!("invalid port in EXPOSE: {spec:?}"));
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(format!("invalid proto in EXPOSE: {proto:?}")));
    }
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    let lo: u16 = lo.parse().map_err(|_| refuse())?;
    let hi: u16 = hi.parse().map_err(|_| refuse())?;
    if hi < lo {
        return Err(refuse());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// WORKDIR relative to the one before, always absolute, cleaned lexically.
fn workdir(old: &str, new: &str) -> String {
    let joined = if new.starts_with('/') {
        new.to_string()
    } else {
        format!("/{old}/{new}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn check_signal(sig: &str) -> Result<(), ApiError> {
    if sig.parse::<u8>().is_ok_and(|n| n > 0) {
        return Ok(());
    }
    let name = sig.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        return Ok(());
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|_| ())
        .map_err(|_| bad(format!("invalid signal: {sig}")))
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn duration(flag: &str, text: &str) -> Result<i64, ApiError> {
    let refuse = || bad(format!("invalid duration for --{flag}: {text:?}"));
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(refuse());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(refuse)?;
        let value: i64 = rest[..n].parse().map_err(|_| refuse())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(refuse()),
        };
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(refuse)?;
        rest = &rest[u..];
    }
    Ok(total)
}

/// HEALTHCHECK NONE | [--interval=D --timeout=D --start-period=D --start-interval=D
/// --retries=N] CMD command.
fn healthcheck(rest: &str) -> Result<Value, ApiError> {
    let mut rest = rest.trim();
    let mut out = Map::new();
    while let Some(opt) = rest.strip_prefix("--") {
        let end = opt.find(char::is_whitespace).unwrap_or(opt.len());
        let (flag, value) = opt[..end].split_once('=').ok_or_else(|| {
            bad(format!(
                "HEALTHCHECK option --{} needs a value",
                &opt[..end]
            ))
        })?;
        let key = match flag {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            other => return Err(bad(format!("unknown flag: --{other}"))),
        };
        let v = if key == "Retries" {
            let n: i64 = value
                .parse()
                .map_err(|_| bad(format!("invalid value for --retries: {value:?}")))?;
            if n < 0 {
                return Err(bad("--retries cannot be negative"));
            }
            n
        } else {
            duration(flag, value)?
        };
        out.insert(key.into(), json!(v));
        rest = opt[end..].trim_start();
    }
    let (word, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    match word.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !args.is_empty() || !out.is_empty() {
                return Err(bad("HEALTHCHECK NONE takes no arguments"));
            }
            Ok(json!({"Test": ["NONE"]}))
        }
        "CMD" => {
            let test = match json_array(args)? {
                Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                None if args.is_empty() => return Err(bad("HEALTHCHECK CMD requires a command")),
                None => vec!["CMD-SHELL".to_string(), args.to_string()],
            };
            out.insert("Test".into(), json!(test));
            Ok(Value::Object(out))
        }
        other => Err(bad(format!(
            "Unknown type {other:?} in HEALTHCHECK (try CMD)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut c = Map::new();
        apply(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        Value::Object(c)
    }

    fn refused(change: &str) -> String {
        let mut c = Map::new();
        let e = apply(&mut c, &[change.to_string()]).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        e.to_string()
    }

    /// The same changes dockerd 20.10 applied to `docker import` (its inspect output).
    #[test]
    fn dockerds_import_changes() {
        let c = applied(&[
            r#"ENV A=1 B="two words""#,
            "EXPOSE 80 443/udp",
            "LABEL x=y",
            "USER nobody",
            "WORKDIR /w",
            "VOLUME /data",
            r#"ENTRYPOINT ["/bin/sh"]"#,
            "CMD echo hi",
            "ONBUILD run echo x",
        ]);
        assert_eq!(c["Env"], json!(["A=1", "B=two words"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "443/udp": {}}));
        assert_eq!(c["Labels"], json!({"x": "y"}));
        assert_eq!(c["User"], json!("nobody"));
        assert_eq!(c["WorkingDir"], json!("/w"));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["OnBuild"], json!(["run echo x"]));
        let h = applied(&["HEALTHCHECK CMD true"]);
        assert_eq!(h["Healthcheck"], json!({"Test": ["CMD-SHELL", "true"]}));
    }

    #[test]
    fn builder_rules() {
        // ENTRYPOINT after CMD keeps it; alone it drops an inherited one.
        let c = applied(&["CMD [\"a\"]", "ENTRYPOINT [\"e\"]"]);
        assert_eq!(c["Cmd"], json!(["a"]));
        let mut m = Map::new();
        m.insert("Cmd".into(), json!(["old"]));
        apply(&mut m, &["ENTRYPOINT e".into()]).unwrap();
        assert_eq!(m["Cmd"], Value::Null);
        let c = applied(&[
            "ENV P=/a",
            "ENV P=$P:/b Q=${P}",
            "WORKDIR x",
            "WORKDIR ../y/./z",
        ]);
        assert_eq!(c["Env"], json!(["P=/a:/b", "Q=/a"]));
        assert_eq!(c["WorkingDir"], json!("/y/z"));
        let c = applied(&[
            "ENV legacy some value",
            "LABEL 'a b'=\"c\\\"d\"",
            "EXPOSE 8000-8002/udp",
        ]);
        assert_eq!(c["Env"], json!(["legacy=some value"]));
        assert_eq!(c["Labels"], json!({"a b": "c\"d"}));
        assert_eq!(c["ExposedPorts"].as_object().unwrap().len(), 3);
        let c = applied(&[
            "STOPSIGNAL SIGUSR1",
            "HEALTHCHECK --interval=1m30s --retries=2 CMD [\"t\"]",
        ]);
        assert_eq!(c["StopSignal"], json!("SIGUSR1"));
        assert_eq!(
            c["Healthcheck"],
            json!({"Interval": 90_000_000_000i64, "Retries": 2, "Test": ["CMD", "t"]})
        );
        assert_eq!(applied(&["CMD []"])["Cmd"], json!([]));
        assert_eq!(
            applied(&["VOLUME [\"/a\", \"/b\"]"])["Volumes"],
            json!({"/a": {}, "/b": {}})
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert_eq!(refused("RUN x"), "run is not a valid change command");
        assert_eq!(
            refused("FROM busybox"),
            "from is not a valid change command"
        );
        assert_eq!(
            refused("ONBUILD FROM x"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert!(refused("ONBUILD ONBUILD RUN x").contains("Chaining ONBUILD"));
        assert!(refused("EXPOSE 99999").contains("invalid port"));
        assert!(refused("EXPOSE 80/xyz").contains("invalid proto"));
        assert!(refused("ENV A=${B:-x}").contains("not supported"));
        assert!(refused("ENV A=\"open").contains("unterminated"));
        assert!(refused("STOPSIGNAL SIGNOPE").contains("invalid signal"));
        assert!(refused("HEALTHCHECK --bogus=1 CMD x").contains("--bogus"));
        assert!(refused("HEALTHCHECK --interval=5x CMD x").contains("--interval"));
        assert!(refused("USER").contains("USER"));
        assert!(refused("ENV").contains("ENV"));
    }
}
