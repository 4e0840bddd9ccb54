//! One entry to every parser refengd runs on request input that is not a route — the
//! `filters` query parameter, the `X-Registry-Auth` header, the `POST /auth` body, import
//! `changes`, `since`/`until` times, the API version prefix and path, daemon.json, the query of
//! `POST /build`, a seccomp profile (`SecurityOpt` `seccomp=<profile>`), the mount forms of a
//! create (`Binds`, a `Mounts` object, `Tmpfs`), a volume create body and the query of the
//! `/containers/{id}/archive` endpoints (`docker cp`: `path`, `noOverwriteDirNonDir`,
//! `copyUIDGID`) — for
//! the `engine_requests` fuzz target and the replay of its seeds in `tests/fuzz_corpus.rs`.
//! Input is a kind on the first line and the text after it; each parser must refuse bad text
//! with a 400 (never panic), and what it accepts must hold its invariant.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::config::{Config, Flags};
use super::error::ApiError;
use super::filters::Filters;
use super::{auth, changes, events, server};

/// The kinds of input, as the first line of a seed names them.
pub const KINDS: &[&str] = &[
    "filters",
    "auth",
    "login",
    "changes",
    "time",
    "path",
    "daemon.json",
    "build",
    "seccomp",
    "create",
    "update",
    "bind",
    "mount",
    "tmpfs",
    "volume",
    "archive",
];

/// Parses `data` (`KIND\nTEXT`) with the parser of its kind. `Ok(true)`: accepted;
/// `Ok(false)`: refused as it should be (or not a known kind).
///
/// # Panics
/// When an accepted input breaks the parser's invariant, or a refusal is not a 400: the fuzz
/// target's findings.
pub fn check(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (kind, input) = text.split_once('\n').unwrap_or((text, ""));
    let refused = |e: ApiError| {
        assert_eq!(
            e.status(),
            http::StatusCode::BAD_REQUEST,
            "{kind}: a refusal must be a 400: {e}"
        );
        false
    };
    match kind {
        "filters" => match Filters::parse(input) {
            Ok(f) => {
                let again = Filters::parse(&f.to_json()).expect("printed filters parse");
                assert_eq!(again, f, "filters do not survive a round trip");
                // The checks every endpoint makes on accepted filters refuse cleanly.
                let _ = events::validate_filters(&f).map_err(refused);
                let _ = f.bool_value("dangling").map_err(refused);
                true
            }
            Err(e) => refused(e),
        },
        "auth" => match auth::decode(input) {
            Ok(_) => true,
            Err(e) => refused(e),
        },
        "login" => match auth::decode_login(input.as_bytes()) {
            Ok((registry, _)) => {
                assert!(!registry.contains('/'), "a login names a host: {registry}");
                true
            }
            Err(e) => refused(e),
        },
        "changes" => {
            // One change per line, as the repeated `changes` parameters come.
            let changes: Vec<String> = input.split('\n').map(str::to_string).collect();
            let mut config = serde_json::Map::new();
            match changes::apply(&mut config, &changes) {
                Ok(()) => {
                    // What was accepted is a config dockerd's decoder takes.
                    let v = serde_json::Value::Object(config);
                    assert!(v.get("Env").is_none_or(serde_json::Value::is_array));
                    assert!(v.get("Cmd").is_none_or(|c| c.is_array() || c.is_null()));
                    true
                }
                Err(e) => refused(e),
            }
        }
        "time" => {
            let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            match events::parse_timestamp(input, now) {
                Ok(t) => {
                    let _ = events::unix_nanos(t);
                    true
                }
                Err(e) => refused(e),
            }
        }
        "path" => {
            let (version, rest) = server::strip_version(input);
            assert!(input.ends_with(rest), "the route is a suffix of the path");
            match server::check_version(version) {
                Ok(v) => {
                    let shown = v.to_string();
                    assert_eq!(server::ApiVersion::parse(&shown), Some(v));
                    true
                }
                Err(e) => refused(e),
            }
        }
        "daemon.json" => {
            Config::from_parts(&Flags::default(), Some((Path::new("daemon.json"), input))).is_ok()
        }
        // The query string of `POST /build`.
        "build" => match super::build::exec::BuildRequest::parse(Some(input)) {
            Ok(r) => {
                assert!(!r.dockerfile.is_empty(), "a build has a Dockerfile path");
                for t in &r.tags {
                    assert!(
                        crate::image::registry::Reference::parse(t).is_ok(),
                        "an accepted tag parses again: {t}"
                    );
                }
                true
            }
            Err(e) => refused(e),
        },
        // A profile's text, as the CLI sends it in `SecurityOpt`; once accepted, it renders
        // for a container with Docker's default capabilities into a `linux.seccomp` the
        // runtime-spec types take.
        "seccomp" => match super::containers::spec::security_opts(&[format!("seccomp={input}")]) {
            Ok(o) => {
                let super::containers::spec::SeccompChoice::Custom(p) = o.seccomp else {
                    // `seccomp=unconfined`.
                    return true;
                };
                let caps: Vec<String> = super::containers::spec::DEFAULT_CAPS
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect();
                let target = super::containers::seccomp::Target {
                    caps: &caps,
                    go_arch: super::system::go_arch(),
                    kernel: Some((6, 1)),
                };
                let v = super::containers::seccomp::render(&p, &target);
                assert!(
                    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(v.clone()).is_ok(),
                    "a rendered profile is a linux.seccomp: {v}"
                );
                true
            }
            Err(e) => refused(e),
        },
        // The body of `POST /containers/create`: every field refengd does not implement is
        // refused by name (a 400), never a panic.
        "create" => match super::containers::body::parse(input.as_bytes()) {
            Ok(_) => true,
            Err(e) => refused(e),
        },
        // The body of `POST /containers/{id}/update`.
        "update" => match super::containers::update::parse(input.as_bytes()) {
            Ok(_) => true,
            Err(e) => refused(e),
        },
        "bind" => match super::containers::mounts::parse_bind(input) {
            Ok(m) => {
                check_mount(&m);
                true
            }
            Err(e) => refused(e),
        },
        "mount" => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(input) else {
                return false;
            };
            match super::containers::mounts::parse_mount(&v) {
                Ok(m) => {
                    check_mount(&m);
                    true
                }
                // A volume driver other than local is not found, as dockerd's plugin lookup.
                Err(ApiError::NotFound(m)) => {
                    assert!(m.contains("plugin"), "mount: 404 only for a driver: {m}");
                    false
                }
                Err(e) => refused(e),
            }
        }
        "tmpfs" => {
            let (dst, opts) = input.split_once(':').unwrap_or((input, ""));
            match super::containers::mounts::parse_tmpfs(dst, opts) {
                Ok(m) => {
                    check_mount(&m);
                    true
                }
                Err(e) => refused(e),
            }
        }
        "volume" => match super::volumes::routes::parse_create(input.as_bytes()) {
            Ok(b) => {
                let name = if b.name.is_empty() {
                    "anonymous"
                } else {
                    &b.name
                };
                match super::volumes::local_mount(name, b.driver_opts.as_ref()) {
                    Ok(_) => true,
                    Err(e) => refused(e.into()),
                }
            }
            Err(e) => refused(e),
        },
        // The query string of `HEAD`/`GET`/`PUT /containers/{id}/archive`.
        "archive" => {
            let q = server::Query::parse(Some(input));
            match super::containers::archive::PutQuery::parse(
                q.get("path").unwrap_or(""),
                q.bool("noOverwriteDirNonDir"),
                q.bool("copyUIDGID"),
            ) {
                Ok(put) => {
                    check_container_path(&put.path);
                    true
                }
                Err(e) => refused(e),
            }
        }
        _ => false,
    }
}

/// What every accepted archive path keeps: clean components, an absolute form that parses back
/// to itself, and a name that is one component (or `/`, or `.`).
fn check_container_path(p: &super::containers::archive::ContainerPath) {
    use super::containers::archive::ContainerPath;
    assert!(
        p.components
            .iter()
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])),
        "{p:?}"
    );
    let abs = p.absolute();
    assert!(abs.starts_with('/'), "{p:?}");
    let again = ContainerPath::parse(&abs).expect("an absolute path parses again");
    assert_eq!(
        (&again.components, again.tail, again.absolute()),
        (&p.components, p.tail, abs.clone()),
        "{p:?}"
    );
    let name = p.name();
    assert!(
        name == "/" || (!name.is_empty() && !name.contains('/')),
        "{p:?}: {name}"
    );
}

/// What every accepted mount keeps: an absolute destination without `..`, and an OCI mount
/// that runtime-spec's type reads.
fn check_mount(m: &super::containers::mounts::MountPoint) {
    assert!(m.destination.starts_with('/'), "{m:?}");
    assert!(!m.destination.split('/').any(|c| c == ".."), "{m:?}");
    let oci = m.oci();
    assert!(
        serde_json::from_value::<oci_spec::runtime::Mount>(oci.clone()).is_ok(),
        "an OCI mount: {oci}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_accepts_and_refuses() {
        assert!(check(b"filters\n{\"label\":[\"a=b\"]}"));
        assert!(!check(b"filters\n{\"label\":1}"));
        assert!(check(b"auth\neyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6ImIifQ=="));
        assert!(!check(b"auth\n!!"));
        assert!(check(
            b"login\n{\"username\":\"a\",\"password\":\"b\",\"serveraddress\":\"127.0.0.1:5000\"}"
        ));
        assert!(!check(b"login\n{}"));
        assert!(check(b"changes\nENV A=1\nCMD [\"sh\"]\nEXPOSE 80/udp"));
        assert!(!check(b"changes\nRUN true"));
        assert!(check(b"bind\ndata:/d:ro,nocopy"));
        assert!(!check(b"bind\n/a:/b:exec"));
        assert!(check(
            b"mount\n{\"Type\":\"tmpfs\",\"Target\":\"/t\",\"TmpfsOptions\":{\"SizeBytes\":1024}}"
        ));
        assert!(!check(b"mount\n{\"Type\":\"volume\",\"Target\":\"/v\",\"VolumeOptions\":{\"DriverConfig\":{\"Name\":\"nfs\"}}}"));
        assert!(check(b"tmpfs\n/run:size=64m,noexec"));
        assert!(!check(b"tmpfs\nrun:size=64m"));
        assert!(check(
            b"volume\n{\"Name\":\"db\",\"DriverOpts\":{\"type\":\"tmpfs\",\"device\":\"tmpfs\"}}"
        ));
        assert!(!check(
            b"volume\n{\"DriverOpts\":{\"type\":\"ext4\",\"device\":\"/dev/sda\"}}"
        ));
        assert!(check(b"time\n10m"));
        assert!(check(b"create\n{\"Image\":\"a\",\"Cmd\":[\"sh\"]}"));
        assert!(!check(
            b"create\n{\"Image\":\"a\",\"HostConfig\":{\"PidMode\":\"host\"}}"
        ));
        assert!(check(b"update\n{\"Memory\":104857600,\"CpusetMems\":\"\"}"));
        assert!(!check(b"update\n{\"CpusetMems\":\"0\"}"));
        assert!(!check(b"time\nlater"));
        assert!(check(
            b"archive\npath=%2Fw%2Fd%2F.&noOverwriteDirNonDir=true"
        ));
        assert!(check(b"archive\npath=../../etc/&copyUIDGID=1"));
        assert!(!check(b"archive\npath="));
        assert!(!check(b"archive\npath=%2Fa%00b"));
        assert!(check(b"path\n/v1.41/info"));
        assert!(!check(b"path\n/v9.99/info"));
        assert!(check(b"daemon.json\n{\"debug\":true}"));
        assert!(!check(b"daemon.json\n{\"bip\":\"x\"}"));
        assert!(check(
            b"seccomp\n{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"}]}"
        ));
        assert!(!check(
            b"seccomp\n{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"nope\":1}"
        ));
    }
}
