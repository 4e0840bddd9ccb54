//! The image commands: images, load, import, tag, rmi, and the pull that `run` does when an
//! image is missing; the daemon's JSON progress streams printed as docker prints them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};

use serde_json::Value;

use super::client::{Body, ClientError};
use super::containers::path_escape;
use super::format::{self, short_id, Format};
use super::{specs, CliError, Ctx};

use super::q;

/// `name` with `:latest` when it names neither a tag nor a digest, as docker prints it.
pub fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// Splits `repo[:tag]` (the tag after the last `/`).
pub fn split_tag(r: &str) -> (&str, Option<&str>) {
    if let Some(at) = r.find('@') {
        return (&r[..at], None);
    }
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    }
}

/// Prints a JSON message stream (pull, load, import) as the docker CLI does on a
/// non-terminal: progress updates are left out, statuses one per line; a message with an
/// error ends it with that error. On a terminal (`terminal` is its width, from
/// [`super::stream::terminal_width`]), each layer keeps one line that is updated, its progress
/// drawn from `progressDetail` at that width.
///
/// # Errors
/// The stream's own error message, or a broken connection.
pub fn display_messages(
    r: impl Read,
    out: &mut impl Write,
    terminal: Option<u16>,
) -> Result<Vec<Value>, CliError> {
    let width = terminal.unwrap_or(super::progress::DAEMON_WIDTH);
    let terminal = terminal.is_some();
    let mut lines_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = 0usize;
    let mut all = Vec::new();
    for line in BufReader::new(r).lines() {
        let line = line.map_err(|e| CliError::from(ClientError::Io(e)))?;
        if line.trim().is_empty() {
            continue;
        }
        let m: Value = serde_json::from_str(&line)
            .map_err(|e| ClientError::Protocol(format!("{e}: {line}")))?;
        if let Some(e) = m["errorDetail"]["message"]
            .as_str()
            .or_else(|| m["error"].as_str())
        {
            return Err(CliError::Status {
                code: 1,
                message: e.to_owned(),
            });
        }
        let id = m["id"].as_str().unwrap_or("");
        let status = m["status"].as_str().unwrap_or("");
        // The detail drawn here, as docker's CLI draws it; the daemon's own text only without.
        let drawn;
        let progress = match m.get("progressDetail") {
            Some(d) => {
                drawn = super::progress::render_detail(d, width);
                drawn.as_str()
            }
            None => m["progress"].as_str().unwrap_or(""),
        };
        let has_progress = m["progressDetail"]["current"].as_i64().unwrap_or(0) > 0
            || m["progressDetail"]["total"].as_i64().unwrap_or(0) > 0;
        let w = |out: &mut dyn Write, s: &str| -> Result<(), CliError> {
            out.write_all(s.as_bytes()).map_err(CliError::io("stdout"))
        };
        if terminal
            && !id.is_empty()
            && (has_progress || !progress.is_empty() || m.get("progressDetail").is_some())
        {
            let at = match lines_of.get(id) {
                Some(l) => *l,
                None => {
                    lines_of.insert(id.to_owned(), count);
                    count += 1;
                    w(out, "\n")?;
                    count - 1
                }
            };
            let up = count - at;
            let text = if progress.is_empty() {
                format!("{id}: {status}")
            } else {
                format!("{id}: {status} {progress}")
            };
            w(out, &format!("\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B"))?;
        } else {
            if !terminal || id.is_empty() {
                lines_of.clear();
                count = 0;
            }
            if !terminal && has_progress {
                all.push(m);
                continue;
            }
            if let Some(s) = m["stream"].as_str() {
                w(out, s)?;
            } else if !id.is_empty() {
                w(out, &format!("{id}: {status}\n"))?;
            } else if !status.is_empty() || m.get("status").is_some() {
                w(out, &format!("{status}\n"))?;
            }
        }
        out.flush().map_err(CliError::io("stdout"))?;
        all.push(m);
    }
    Ok(all)
}

/// Pulls `image` (run's pull when the image is missing), progress on stderr unless `quiet`.
///
/// # Errors
/// The daemon's and the registry's.
pub fn pull_quietly(ctx: &Ctx, image: &str, quiet: bool) -> Result<(), CliError> {
    let full = with_default_tag(image);
    let (repo, tag) = split_tag(&full);
    let mut path = format!("/images/create?fromImage={}", q(repo));
    if let Some(t) = tag {
        path.push_str(&format!("&tag={}", q(t)));
    } else if let Some((_, d)) = image.split_once('@') {
        path.push_str(&format!("&tag={}", q(d)));
    }
    let auth = registry_auth(ctx, repo);
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|a| ("X-Registry-Auth", a.as_str()))
        .collect();
    let r = ctx
        .client
        .request("POST", &path, &headers, Body::None)?
        .ok()?;
    if quiet {
        display_messages(r, &mut std::io::sink(), None)?;
    } else {
        let mut err = std::io::stderr().lock();
        let term = super::stream::terminal_width(std::io::stderr());
        display_messages(r, &mut err, term)?;
    }
    Ok(())
}

/// The `X-Registry-Auth` header for the registry of `repo`, from config.json and its
/// credential helpers (the registry client's reader), when there are credentials.
fn registry_auth(ctx: &Ctx, repo: &str) -> Option<String> {
    use crate::image::registry::auth::{Credentials, DockerConfig};
    use base64::Engine as _;
    let reference = crate::image::registry::Reference::parse(repo).ok()?;
    let config = DockerConfig::load_if_exists(&ctx.config_dir.join("config.json")).ok()??;
    let creds = config.lookup(&reference.registry).ok()??;
    let v = match creds {
        Credentials::Basic { username, password } => {
            serde_json::json!({"username": username, "password": password, "serveraddress": reference.registry})
        }
        Credentials::IdentityToken(t) => {
            serde_json::json!({"identitytoken": t, "serveraddress": reference.registry})
        }
    };
    Some(base64::engine::general_purpose::URL_SAFE.encode(v.to_string()))
}

/// `images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Restrict to a repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

const IMAGES_TABLE: &str = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_TABLE_DIGESTS: &str =
    "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// The rows of one image: one per tag, else one per repository of its digests, else
/// `<none>`, as docker's image list shows them.
pub(crate) fn image_rows(img: &Value, no_trunc: bool, digests_shown: bool) -> Vec<gotmpl::Value> {
    let strs = |k: &str| -> Vec<String> {
        img[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| *s != "<none>:<none>" && *s != "<none>@<none>")
            .map(str::to_owned)
            .collect()
    };
    let tags = strs("RepoTags");
    let digests = strs("RepoDigests");
    let digest_of = |repo: &str| -> String {
        if !digests_shown {
            return "<none>".into();
        }
        digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == repo)
                    .map(|(_, d)| d.to_owned())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for t in &tags {
        let (r, tag) = split_tag(t);
        pairs.push((
            r.to_owned(),
            tag.unwrap_or("<none>").to_owned(),
            digest_of(r),
        ));
    }
    for d in &digests {
        if let Some((r, dg)) = d.split_once('@') {
            if !pairs.iter().any(|(pr, _, _)| pr == r) {
                pairs.push((r.to_owned(), "<none>".into(), dg.to_owned()));
            }
        }
    }
    if pairs.is_empty() {
        pairs.push(("<none>".into(), "<none>".into(), "<none>".into()));
    }
    let id = img["Id"].as_str().unwrap_or("");
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = img["Size"].as_f64().unwrap_or(0.0);
    let shared = img["SharedSize"].as_i64().unwrap_or(-1);
    let containers = img["Containers"].as_i64().unwrap_or(-1);
    let na = |v: i64, f: &dyn Fn(i64) -> String| if v < 0 { "N/A".to_owned() } else { f(v) };
    pairs
        .into_iter()
        .map(|(repo, tag, digest)| {
            format::row(&[
                ("Repository", repo),
                ("Tag", tag),
                ("Digest", digest),
                ("ID", short_id(id, no_trunc)),
                (
                    "CreatedSince",
                    if created > 0 {
                        format::ago(created)
                    } else {
                        "N/A".into()
                    },
                ),
                (
                    "CreatedAt",
                    if created > 0 {
                        format::go_time(created)
                    } else {
                        String::new()
                    },
                ),
                ("Size", format::human_size(size, 3)),
                ("VirtualSize", format::human_size(size, 4)),
                (
                    "SharedSize",
                    na(shared, &|v| format::human_size(v as f64, 4)),
                ),
                (
                    "UniqueSize",
                    na(shared, &|v| format::human_size(size - v as f64, 4)),
                ),
                ("Containers", na(containers, &|v| v.to_string())),
            ])
        })
        .collect()
}

/// `images`.
///
/// # Errors
/// Daemon, filter and template errors.
pub fn images(ctx: &Ctx, a: ImagesArgs) -> Result<(), CliError> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut query = Vec::new();
    if a.all {
        query.push("all=1".to_owned());
    }
    if !filters.is_empty() {
        query.push(format!(
            "filters={}",
            q(&specs::filters(&filters)?.to_string())
        ));
    }
    let path = if query.is_empty() {
        "/images/json".to_owned()
    } else {
        format!("/images/json?{}", query.join("&"))
    };
    let fmt_text = if a.quiet {
        "{{.ID}}".to_owned()
    } else {
        a.format
            .clone()
            .or_else(|| ctx.config_value("imagesFormat"))
            .unwrap_or_else(|| "table".into())
    };
    let default = if a.digests {
        IMAGES_TABLE_DIGESTS
    } else {
        IMAGES_TABLE
    };
    let f = Format::parse(&fmt_text, default)?;
    // docker fills the digest column when it is asked for, by flag or by the template.
    let digests_shown = a.digests || fmt_text.contains(".Digest");
    let list: Vec<Value> = ctx.client.get_json(&path)?;
    let rows: Vec<gotmpl::Value> = list
        .iter()
        .flat_map(|i| image_rows(i, a.no_trunc, digests_shown))
        .collect();
    let header = BTreeMap::from([
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("VirtualSize", "VIRTUAL SIZE"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("Containers", "CONTAINERS"),
    ]);
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &header, &rows)?;
    Ok(())
}

/// `load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

/// `load`.
///
/// # Errors
/// An unreadable file, a terminal on stdin, the daemon's errors.
pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<(), CliError> {
    let mut file;
    let mut stdin;
    let reader: &mut dyn Read = match &a.input {
        Some(p) if p != "-" => {
            file = std::fs::File::open(p).map_err(CliError::io(format!("open {p}")))?;
            &mut file
        }
        _ => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::Status {
                    code: 1,
                    message: "requested load from stdin, but stdin is empty".into(),
                });
            }
            stdin = std::io::stdin().lock();
            &mut stdin
        }
    };
    let path = if a.quiet {
        "/images/load?quiet=1"
    } else {
        "/images/load?quiet=0"
    };
    let r = ctx
        .client
        .request("POST", path, &[], Body::Stream(reader, "application/x-tar"))?
        .ok()?;
    let json = r.header("Content-Type").is_some_and(|t| t.contains("json"));
    let mut out = std::io::stdout().lock();
    if json {
        let term = super::stream::terminal_width(std::io::stdout()).filter(|_| !a.quiet);
        display_messages(r, &mut out, term)?;
    } else {
        let mut r = r;
        std::io::copy(&mut r, &mut out).map_err(CliError::io("stdout"))?;
    }
    Ok(())
}

/// `import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// A tarball file, a URL, or - for STDIN
    #[arg(value_name = "file|URL|-")]
    pub source: String,
    /// The repository (and tag) to name the image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `import`: prints the new image's id.
///
/// # Errors
/// An unreadable file, the daemon's errors.
pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<(), CliError> {
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    let from = if is_url { a.source.as_str() } else { "-" };
    let mut query = vec![format!("fromSrc={}", q(from))];
    if let Some(r) = &a.reference {
        if let Err(e) = crate::image::registry::Reference::parse(r) {
            return Err(CliError::Status {
                code: 1,
                message: e.to_string(),
            });
        }
        query.push(format!("repo={}", q(r)));
    }
    if let Some(m) = &a.message {
        query.push(format!("message={}", q(m)));
    }
    if let Some(p) = &a.platform {
        query.push(format!("platform={}", q(p)));
    }
    for c in &a.change {
        query.push(format!("changes={}", q(c)));
    }
    let path = format!("/images/create?{}", query.join("&"));
    let r = if is_url {
        ctx.client.request("POST", &path, &[], Body::None)?
    } else if a.source == "-" {
        let mut stdin = std::io::stdin().lock();
        ctx.client.request(
            "POST",
            &path,
            &[],
            Body::Stream(&mut stdin, "application/x-tar"),
        )?
    } else {
        let mut f =
            std::fs::File::open(&a.source).map_err(CliError::io(format!("open {}", a.source)))?;
        ctx.client.request(
            "POST",
            &path,
            &[],
            Body::Stream(&mut f, "application/x-tar"),
        )?
    };
    let r = r.ok()?;
    let mut out = std::io::stdout().lock();
    display_messages(r, &mut out, None)?;
    Ok(())
}

/// `tag`.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

/// `tag`.
///
/// # Errors
/// The daemon's.
pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<(), CliError> {
    let (repo, tag) = split_tag(&a.target);
    let mut path = format!("/images/{}/tag?repo={}", path_escape(&a.source), q(repo));
    if let Some(t) = tag {
        path.push_str(&format!("&tag={}", q(t)));
    }
    ctx.client.call("POST", &path, Body::None)?;
    Ok(())
}

/// `rmi`.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Images
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `rmi`: prints what was untagged and deleted.
///
/// # Errors
/// Exit 1 when any failed (each error printed).
pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    if a.force {
        query.push("force=1");
    }
    if a.no_prune {
        query.push("noprune=1");
    }
    let qs = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let mut failed = false;
    for i in &a.images {
        let r: Result<Vec<Value>, ClientError> = ctx
            .client
            .request(
                "DELETE",
                &format!("/images/{}{qs}", path_escape(i)),
                &[],
                Body::None,
            )
            .and_then(|r| r.ok())
            .and_then(|r| r.json());
        match r {
            Ok(items) => {
                let mut out = std::io::stdout().lock();
                for it in items {
                    if let Some(u) = it["Untagged"].as_str() {
                        writeln!(out, "Untagged: {u}").map_err(CliError::io("stdout"))?;
                    }
                    if let Some(d) = it["Deleted"].as_str() {
                        writeln!(out, "Deleted: {d}").map_err(CliError::io("stdout"))?;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("busybox:1"), ("busybox", Some("1")));
        assert_eq!(split_tag("localhost:5000/a"), ("localhost:5000/a", None));
        assert_eq!(
            split_tag("localhost:5000/a:t"),
            ("localhost:5000/a", Some("t"))
        );
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/a"),
            "localhost:5000/a:latest"
        );
        assert_eq!(with_default_tag("a@sha256:00"), "a@sha256:00");
    }

    #[test]
    fn image_rows_follow_tags_then_digests() {
        let img = json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["a:1", "b:2"],
            "RepoDigests": ["a@sha256:ff"], "Created": 0, "Size": 1000});
        let rows = image_rows(&img, false, false);
        assert_eq!(rows.len(), 2);
        let none = json!({"Id": "sha256:0123456789abcdef", "RepoTags": [], "RepoDigests": []});
        let rows = image_rows(&none, false, false);
        let f = Format::parse("{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}", "").unwrap();
        assert_eq!(f.render(&rows[0]).unwrap(), "<none> <none> 0123456789ab 0B");
    }

    #[test]
    fn messages_print_as_docker_on_a_pipe() {
        let stream = concat!(
            r#"{"status":"Pulling from library/busybox","id":"latest"}"#,
            "\n",
            r#"{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"abc"}"#,
            "\n",
            r#"{"status":"Pull complete","progressDetail":{},"id":"abc"}"#,
            "\n",
            r#"{"stream":"Loaded image: busybox:latest\n"}"#,
            "\n",
        );
        let mut out = Vec::new();
        display_messages(stream.as_bytes(), &mut out, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "latest: Pulling from library/busybox\nabc: Pull complete\nLoaded image: busybox:latest\n"
        );
        let bad = r#"{"errorDetail":{"message":"boom"},"error":"boom"}"#;
        assert!(display_messages(bad.as_bytes(), &mut Vec::new(), None).is_err());
    }
}

/// `save`.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    /// Images
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `save`: the images as a `docker save` archive.
///
/// # Errors
/// The daemon's; stdout on a terminal.
pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<(), CliError> {
    let names: Vec<String> = a.images.iter().map(|i| format!("names={}", q(i))).collect();
    super::containers::download(
        ctx,
        &format!("/images/get?{}", names.join("&")),
        a.output.as_deref(),
        "save image",
    )
}

/// `history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// The image
    pub image: String,
}

/// `history`: the image's layers, newest first.
///
/// # Errors
/// The daemon's; template errors.
pub fn history(ctx: &Ctx, a: HistoryArgs) -> Result<(), CliError> {
    let list: Vec<Value> = ctx
        .client
        .get_json(&format!("/images/{}/history", path_escape(&a.image)))?;
    let rows: Vec<gotmpl::Value> = list
        .iter()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("");
            let id = if id == "<missing>" || id.is_empty() {
                "<missing>".to_owned()
            } else {
                short_id(id, a.no_trunc)
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("");
            let by = if a.no_trunc {
                by.to_owned()
            } else {
                format::ellipsis(&by.replace('\t', " "), 45)
            };
            let size = h["Size"].as_f64().unwrap_or(0.0);
            format::row(&[
                ("ID", id),
                (
                    "CreatedSince",
                    if a.human {
                        format::ago(created)
                    } else {
                        rfc3339(created)
                    },
                ),
                ("CreatedAt", rfc3339(created)),
                ("CreatedBy", by),
                (
                    "Size",
                    if a.human {
                        format::human_size(size, 3)
                    } else {
                        (size as i64).to_string()
                    },
                ),
                ("Comment", h["Comment"].as_str().unwrap_or("").to_owned()),
            ])
        })
        .collect();
    let fmt_text = if a.quiet {
        "{{.ID}}".to_owned()
    } else {
        a.format.clone().unwrap_or_else(|| "table".into())
    };
    let default = if a.human {
        "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    } else {
        "{{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    };
    let f = Format::parse(&fmt_text, default)?;
    let header = BTreeMap::from([
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ]);
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &header, &rows)?;
    Ok(())
}

/// A unix time as Go's RFC 3339 layout prints it in local time (`Z` for UTC).
fn rfc3339(unix: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_opt(unix, 0)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `image prune`.
#[derive(Debug, clap::Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// `image prune`: prints what was untagged and deleted and the space freed.
///
/// # Errors
/// The daemon's; filters that do not parse.
pub fn prune(ctx: &Ctx, a: ImagePruneArgs) -> Result<(), CliError> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !super::containers::confirm(a.force, warning)? {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let v = super::system::prune_one(ctx, "/images/prune", &filters, "")?;
    let mut text = super::system::images_removed(&v);
    text.push_str(&super::system::total_reclaimed(
        v["SpaceReclaimed"].as_f64().unwrap_or(0.0),
    ));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .map_err(CliError::io("stdout"))
}

/// `pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub image: String,
}

/// `pull`: the daemon's progress (a line per layer, updated in place on a terminal, plain
/// status lines otherwise), then the image's full name.
///
/// # Errors
/// The daemon's and the registry's.
pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<(), CliError> {
    let mut reference =
        crate::image::registry::Reference::parse(&a.image).map_err(|e| CliError::Status {
            code: 1,
            message: e.to_string(),
        })?;
    if a.all_tags {
        if a.image.contains('@') || split_tag(&a.image).1.is_some() {
            return Err(CliError::Status {
                code: 1,
                message: "tag can't be used with --all-tags/-a".into(),
            });
        }
        // docker's client sends the name alone (no `tag`): the daemon pulls every tag, and
        // the name is printed without one.
        let (repo, _) = split_tag(&a.image);
        let mut path = format!("/images/create?fromImage={}", q(repo));
        if let Some(p) = &a.platform {
            path.push_str(&format!("&platform={}", q(&p.to_lowercase())));
        }
        reference.tag = None;
        return pull_with(ctx, &a, repo, &path, &reference.to_string());
    }
    let (repo, tag) = match a.image.split_once('@') {
        Some((r, d)) => (r.to_owned(), d.to_owned()),
        None => {
            let full = with_default_tag(&a.image);
            let (r, t) = split_tag(&full);
            (r.to_owned(), t.unwrap_or("latest").to_owned())
        }
    };
    if !a.quiet && !a.image.contains('@') && split_tag(&a.image).1.is_none() {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Using default tag: latest").map_err(CliError::io("stdout"))?;
    }
    let mut path = format!("/images/create?fromImage={}&tag={}", q(&repo), q(&tag));
    if let Some(p) = &a.platform {
        path.push_str(&format!("&platform={}", q(p)));
    }
    pull_with(ctx, &a, &repo, &path, &reference.to_string())
}

/// The pull request `path` for `repo`, its progress shown, then `name`.
fn pull_with(ctx: &Ctx, a: &PullArgs, repo: &str, path: &str, name: &str) -> Result<(), CliError> {
    let auth = registry_auth(ctx, repo).unwrap_or_else(|| "e30=".into());
    let r = ctx
        .client
        .request("POST", path, &[("X-Registry-Auth", &auth)], Body::None)?
        .ok()?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        display_messages(r, &mut std::io::sink(), None)?;
    } else {
        let term = super::stream::terminal_width(std::io::stdout());
        display_messages(r, &mut out, term)?;
    }
    writeln!(out, "{name}").map_err(CliError::io("stdout"))
}

/// `push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

/// `push`: the daemon's progress as `pull` shows it, or with `-q` only the full name.
///
/// # Errors
/// A tag with `--all-tags`; the daemon's and the registry's.
pub fn push(ctx: &Ctx, a: PushArgs) -> Result<(), CliError> {
    let fail = |message: String| CliError::Status { code: 1, message };
    let reference =
        crate::image::registry::Reference::parse(&a.image).map_err(|e| fail(e.to_string()))?;
    if a.image.contains('@') {
        return Err(fail(
            "refeng push takes NAME[:TAG], not a digest reference".into(),
        ));
    }
    let (repo, tag) = split_tag(&a.image);
    if a.all_tags && tag.is_some() {
        return Err(fail("tag can't be used with --all-tags/-a".into()));
    }
    let mut out = std::io::stdout().lock();
    if !a.all_tags && tag.is_none() && !a.quiet {
        writeln!(out, "Using default tag: latest").map_err(CliError::io("stdout"))?;
    }
    // The daemon's route takes the name with its slashes (`/images/{name:.*}/push`).
    let name: Vec<String> = repo.split('/').map(path_escape).collect();
    let mut path = format!("/images/{}/push", name.join("/"));
    if !a.all_tags {
        path.push_str(&format!("?tag={}", q(tag.unwrap_or("latest"))));
    }
    let auth = registry_auth(ctx, repo).unwrap_or_else(|| "e30=".into());
    let r = ctx
        .client
        .request("POST", &path, &[("X-Registry-Auth", &auth)], Body::None)?
        .ok()?;
    if a.quiet {
        display_messages(r, &mut std::io::sink(), None)?;
        writeln!(out, "{reference}").map_err(CliError::io("stdout"))
    } else {
        let term = super::stream::terminal_width(std::io::stdout());
        display_messages(r, &mut out, term).map(|_| ())
    }
}
