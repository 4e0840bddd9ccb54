//! `inspect`, `container inspect`, `image inspect`: the daemon's JSON as it sent it (indented
//! as Go's `json.Indent` does, so key order and escapes stay), or through `--format`.

use std::io::Write;

use super::client::{Body, ClientError};
use super::format::{self, Format};
use super::{CliError, Ctx};

/// `refeng inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Names or ids of objects
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// `refeng container inspect` / `image inspect`.
#[derive(Debug, clap::Args)]
pub struct TypedInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes (containers)
    #[arg(short, long)]
    pub size: bool,
    /// Names or ids
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// What an inspect looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Image,
}

fn fetch(ctx: &Ctx, kind: Kind, name: &str, size: bool) -> Result<Vec<u8>, ClientError> {
    let path = match kind {
        Kind::Container => format!(
            "/containers/{}/json{}",
            super::containers::path_escape(name),
            if size { "?size=1" } else { "" }
        ),
        Kind::Image => format!("/images/{}/json", super::containers::path_escape(name)),
    };
    ctx.client.call("GET", &path, Body::None)
}

/// `inspect` of any object: a container first, then an image, as docker tries them.
///
/// # Errors
/// The first error is printed for each missing name and the exit status is 1.
pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<(), CliError> {
    let kinds: Vec<Kind> = match a.kind.as_deref() {
        None | Some("") => vec![Kind::Container, Kind::Image],
        Some("container") => vec![Kind::Container],
        Some("image") => vec![Kind::Image],
        Some(other) => {
            return Err(CliError::Usage(format!(
                "{other:?} is not a valid value for --type (refeng inspects container and image)"
            )))
        }
    };
    run(ctx, &a.names, a.format.as_deref(), a.size, &kinds)
}

/// `container inspect` / `image inspect`.
///
/// # Errors
/// As [`inspect`].
pub fn inspect_typed(ctx: &Ctx, a: TypedInspectArgs, kind: Kind) -> Result<(), CliError> {
    run(ctx, &a.names, a.format.as_deref(), a.size, &[kind])
}

fn run(
    ctx: &Ctx,
    names: &[String],
    fmt: Option<&str>,
    size: bool,
    kinds: &[Kind],
) -> Result<(), CliError> {
    let template = fmt.map(|f| Format::parse(f, "")).transpose()?;
    let mut raws = Vec::new();
    let mut failed = false;
    let mut err = std::io::stderr().lock();
    for name in names {
        let mut found = None;
        let mut last_err = None;
        for k in kinds {
            match fetch(ctx, *k, name, size) {
                Ok(raw) => {
                    found = Some(raw);
                    break;
                }
                // The typed commands show the daemon's own words; `inspect` tries the
                // next kind and, when none has it, says "No such object".
                Err(e @ ClientError::Api { status: 404, .. }) => {
                    if kinds.len() == 1 {
                        last_err = Some(e);
                        break;
                    }
                }
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        match (found, last_err) {
            (Some(raw), _) => raws.push(raw),
            (None, Some(e)) => {
                failed = true;
                let _ = writeln!(err, "{e}");
            }
            (None, None) => {
                failed = true;
                let _ = writeln!(err, "Error: No such object: {name}");
            }
        }
    }
    drop(err);
    let mut out = std::io::stdout().lock();
    match template {
        Some(t) => {
            for raw in &raws {
                let v: serde_json::Value = serde_json::from_slice(raw)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                let text = t.render(&format::from_json(&v))?;
                writeln!(out, "{text}").map_err(CliError::io("stdout"))?;
            }
        }
        None => {
            let mut all = Vec::with_capacity(raws.iter().map(Vec::len).sum::<usize>() + 2);
            all.push(b'[');
            for (i, r) in raws.iter().enumerate() {
                if i > 0 {
                    all.push(b',');
                }
                all.extend_from_slice(trim_ascii(r));
            }
            all.push(b']');
            let mut text = indent(&all, "    ");
            text.push(b'\n');
            out.write_all(&text).map_err(CliError::io("stdout"))?;
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Go's `json.Indent` with an empty prefix: whitespace between tokens is replaced, strings are
/// copied as they are, and empty arrays and objects stay `[]` and `{}`.
pub fn indent(src: &[u8], unit: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut need_indent = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(unit.as_bytes());
        }
    };
    for &c in src {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if need_indent && c != b']' && c != b'}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            b'"' => {
                in_string = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                need_indent = true;
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => {
                out.extend_from_slice(b": ");
            }
            b'}' | b']' => {
                if need_indent {
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_as_go() {
        let got = indent(
            br#"[{"b":1,"a":[],"c":{},"d":["x\"y",{"e":null}]}]"#,
            "    ",
        );
        let want = "[\n    {\n        \"b\": 1,\n        \"a\": [],\n        \"c\": {},\n        \"d\": [\n            \"x\\\"y\",\n            {\n                \"e\": null\n            }\n        ]\n    }\n]";
        assert_eq!(String::from_utf8(got).unwrap(), want);
        assert_eq!(indent(b"[]", "    "), b"[]");
    }
}
