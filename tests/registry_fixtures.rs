//! Proves each registry fixture of `tests/registry_support` with outside tools only (curl,
//! skopeo, tar), never with refeng's own registry client: a fixture the client is tested against
//! must not be checked by that client.

mod registry_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use registry_support::{jwt_claims, jwt_header, CutProxy, RegistryServer, TokenServer, SERVICE};

const TAG: &str = "v1";

/// Runs a command with no stdin; panics only when it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// curl, quiet but with errors, never through a proxy from the environment.
fn curl(args: &[&str]) -> Output {
    run(Command::new("curl")
        .args(["--silent", "--show-error", "--noproxy", "*"])
        .args(args))
}

/// The status code of a request (curl's exit code must be 0).
fn status(args: &[&str]) -> u16 {
    let out = curl(
        &[
            &["--output", "/dev/null", "--write-out", "%{http_code}"],
            args,
        ]
        .concat(),
    );
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().parse().expect("curl status code")
}

/// Body of a request that must answer 2xx.
fn body(args: &[&str]) -> Vec<u8> {
    let out = curl(&[&["--fail"], args].concat());
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    out.stdout
}

fn json_body(args: &[&str]) -> Value {
    serde_json::from_slice(&body(args)).expect("a JSON body")
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A one-layer OCI image layout, made by hand (tar for the layer) with the image at `TAG`.
struct Layout {
    dir: TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("refeng-layout-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let content = root.join("content");
        fs::create_dir_all(&content).unwrap();
        fs::write(content.join("hello.txt"), "hello from a registry fixture\n").unwrap();
        let tar = root.join("layer.tar");
        let out = run(Command::new("tar")
            .arg("--create")
            .arg("--file")
            .arg(&tar)
            .arg("-C")
            .arg(&content)
            .arg("hello.txt"));
        assert!(out.status.success(), "tar: {}", text(&out.stderr));
        let layer = fs::read(&tar).unwrap();

        let layout = root.join("layout");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> Value {
            let digest = sha256_digest(bytes);
            fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
            json!({"digest": digest, "size": bytes.len()})
        };
        let layer_desc = put(&layer);
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        });
        let mut config_desc = put(config.to_string().as_bytes());
        config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        let mut layer_entry = layer_desc;
        layer_entry["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_entry],
        });
        let mut manifest_desc = put(manifest.to_string().as_bytes());
        manifest_desc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
        manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": TAG});
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [manifest_desc]});
        fs::write(layout.join("index.json"), index.to_string()).unwrap();
        fs::write(
            root.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Layout { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// `skopeo copy` of the image to `host/repo:TAG` over plain HTTP, with `creds` if given.
    fn push(&self, host: &str, repo: &str, creds: Option<&str>) -> Output {
        let mut cmd = Command::new("skopeo");
        cmd.arg("copy")
            .arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("--dest-tls-verify=false")
            // No credentials from the machine's auth files.
            .arg("--dest-authfile")
            .arg(self.dir.path().join("auth.json"));
        if let Some(creds) = creds {
            cmd.arg("--dest-creds").arg(creds);
        }
        cmd.arg(format!("oci:{}:{TAG}", self.path().display()))
            .arg(format!("docker://{host}/{repo}:{TAG}"));
        run(&mut cmd)
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn plain_registry_takes_a_skopeo_push() {
    let registry = RegistryServer::plain();
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert_eq!(status(&[&format!("{}/v2/", registry.url())]), 200);

    let layout = Layout::new();
    assert_ok(
        &layout.push(&registry.host(), "plain/hello", None),
        "skopeo push",
    );

    let tags = json_body(&[&format!("{}/v2/plain/hello/tags/list", registry.url())]);
    assert_eq!(tags, json!({"name": "plain/hello", "tags": [TAG]}));
    assert!(
        registry
            .storage_dir()
            .join("docker/registry/v2/repositories/plain/hello")
            .is_dir(),
        "the push lands in the registry's own storage"
    );
}

/// Whether the process with `pid` still exists (a reaped child does not).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn registry_is_killed_and_removed_on_drop_also_after_a_panic() {
    let registry = RegistryServer::plain();
    let (pid, dir) = (registry.pid().unwrap(), registry.dir().to_path_buf());
    assert!(alive(pid) && dir.is_dir());
    drop(registry);
    assert!(!alive(pid), "registry {pid} outlived its guard");
    assert!(!dir.exists(), "{} outlived its guard", dir.display());

    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let registry = RegistryServer::plain();
        *seen.lock().unwrap() = Some((registry.pid().unwrap(), registry.dir().to_path_buf()));
        panic!("a failing test");
    });
    assert!(result.is_err());
    let (pid, dir) = seen.into_inner().unwrap().unwrap();
    assert!(!alive(pid), "registry {pid} outlived a panic");
    assert!(!dir.exists(), "{} outlived a panic", dir.display());
}

#[test]
fn registry_startup_failure_quotes_its_log() {
    let tokens = TokenServer::builder().start();
    // The registry refuses to start without the certificate it is told to trust.
    fs::remove_file(tokens.cert_path()).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RegistryServer::token(&tokens)
    }));
    let message = result
        .err()
        .and_then(|p| p.downcast::<String>().ok())
        .expect("a panic with a message");
    assert!(message.contains("exited during startup"), "{message}");
    assert!(
        message.contains("signing-cert.pem"),
        "the log tail: {message}"
    );
}

#[test]
fn basic_registry_checks_passwords() {
    let registry = RegistryServer::basic(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let v2 = format!("{}/v2/", registry.url());
    assert_eq!(status(&[&v2]), 401);
    assert_eq!(status(&["--user", "alice:wrong", &v2]), 401);
    assert_eq!(status(&["--user", "mallory:alice-pw", &v2]), 401);
    assert_eq!(status(&["--user", "alice:alice-pw", &v2]), 200);
    assert_eq!(status(&["--user", "bob:bob-pw", &v2]), 200);

    let layout = Layout::new();
    assert!(!layout
        .push(&registry.host(), "basic/hello", Some("alice:wrong"))
        .status
        .success());
    assert_ok(
        &layout.push(&registry.host(), "basic/hello", Some("alice:alice-pw")),
        "skopeo push with alice's password",
    );
}

#[test]
fn token_registry_trusts_the_token_server() {
    let tokens = TokenServer::builder()
        .user("alice", "alice-pw", &["pull", "push"])
        .user("reader", "reader-pw", &["pull"])
        .expires_in(120)
        .start();
    let registry = RegistryServer::token(&tokens);

    // The registry sends clients to the token server.
    let out = curl(&["--include", &format!("{}/v2/", registry.url())]);
    let head = text(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    let challenge = format!(
        "www-authenticate: bearer realm=\"{}\",service=\"{SERVICE}\"",
        tokens.realm()
    );
    assert!(head.contains(&challenge.to_lowercase()), "{head}");

    // A reader may not push, alice may.
    let layout = Layout::new();
    let denied = layout.push(&registry.host(), "team/app", Some("reader:reader-pw"));
    assert!(!denied.status.success(), "reader pushed");
    assert!(text(&denied.stderr).contains("denied"), "{denied:?}");
    assert_ok(
        &layout.push(&registry.host(), "team/app", Some("alice:alice-pw")),
        "skopeo push as alice",
    );

    // A token fetched by hand opens the repository.
    let scope = "repository:team/app:pull";
    let token_url = format!("{}?service={SERVICE}&scope={scope}", tokens.realm());
    let answer = json_body(&["--user", "alice:alice-pw", &token_url]);
    let token = answer["token"].as_str().expect("token").to_owned();
    assert_eq!(answer["access_token"], answer["token"]);
    assert_eq!(answer["expires_in"], 120);
    let issued_at = answer["issued_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(issued_at).expect("issued_at is RFC 3339");
    let header = jwt_header(&token).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], tokens.key_id());
    let kid = tokens.key_id();
    assert_eq!(kid.len(), 48 + 11, "{kid}");
    assert!(kid.split(':').all(|g| g.len() == 4
        && g.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))));
    let claims = jwt_claims(&token).unwrap();
    assert_eq!(claims["iss"], tokens.issuer());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    let tags_url = format!("{}/v2/team/app/tags/list", registry.url());
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(
        json_body(&["--header", &bearer, &tags_url]),
        json!({"name": "team/app", "tags": [TAG]})
    );
    assert_eq!(status(&[&tags_url]), 401, "no token, no tags");

    // Wrong credentials: 401 with a JSON error. No credentials: a token that grants nothing.
    let out = curl(&[
        "--user",
        "alice:wrong",
        "--write-out",
        "\n%{http_code}",
        &token_url,
    ]);
    let answer = text(&out.stdout);
    let (json_text, code) = answer.rsplit_once('\n').unwrap();
    assert_eq!(code, "401");
    let error: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(error["errors"][0]["code"], "UNAUTHORIZED");
    let anonymous = json_body(&[&token_url]);
    let anonymous = anonymous["token"].as_str().unwrap();
    assert_eq!(jwt_claims(anonymous).unwrap()["access"], json!([]));
    let anonymous_bearer = format!("Authorization: Bearer {anonymous}");
    assert_eq!(status(&["--header", &anonymous_bearer, &tags_url]), 401);

    // Every request is on record, with what it was granted.
    let requests = tokens.requests();
    let by = |user: Option<&str>| {
        requests
            .iter()
            .filter(|r| r.user.as_deref() == user)
            .collect::<Vec<_>>()
    };
    let reader = by(Some("reader"));
    assert!(!reader.is_empty(), "{requests:#?}");
    assert!(reader.iter().all(|r| r.status == 200
        && r.scopes
            .iter()
            .any(|s| s == "repository:team/app:pull,push")
        && r.granted.iter().all(|g| g.actions == ["pull"])));
    let alice = by(Some("alice"));
    assert!(alice.iter().any(|r| r.status == 200
        && r.granted
            .iter()
            .any(|g| g.name == "team/app" && g.actions == ["pull", "push"])));
    assert!(alice
        .iter()
        .any(|r| r.status == 200 && r.scopes == [scope] && r.service.as_deref() == Some(SERVICE)));
    assert_eq!(alice.iter().filter(|r| r.status == 401).count(), 1);
    let anonymous = by(None);
    assert_eq!(anonymous.len(), 1, "{requests:#?}");
    assert!(anonymous[0].granted.is_empty());
}

#[test]
fn anonymous_pull_is_configurable() {
    let tokens = TokenServer::builder().anonymous(&["pull"]).start();
    let registry = RegistryServer::token(&tokens);
    let layout = Layout::new();
    // Anonymous may pull but not push.
    assert!(!layout
        .push(&registry.host(), "anon/app", None)
        .status
        .success());
    let token_url = format!(
        "{}?service={SERVICE}&scope=repository:anon/app:pull,push",
        tokens.realm()
    );
    let answer = json_body(&[&token_url]);
    let claims = jwt_claims(answer["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "anon/app", "actions": ["pull"]}])
    );
    assert_eq!(claims["sub"], "");
}

#[test]
fn tokens_past_their_exp_claim_are_refused_by_the_registry() {
    let tokens = TokenServer::builder()
        .user("alice", "alice-pw", &["pull"])
        .exp_claim_in(-120)
        .start();
    let registry = RegistryServer::token(&tokens);
    let answer = json_body(&[
        "--user",
        "alice:alice-pw",
        &format!("{}?service={SERVICE}", tokens.realm()),
    ]);
    assert_eq!(
        answer["expires_in"], 300,
        "the client is told the token is fresh"
    );
    let bearer = format!(
        "Authorization: Bearer {}",
        answer["token"].as_str().unwrap()
    );
    let v2 = format!("{}/v2/", registry.url());
    assert_eq!(status(&["--header", &bearer, &v2]), 401);

    let fresh = TokenServer::builder()
        .user("alice", "alice-pw", &["pull"])
        .start();
    let registry = RegistryServer::token(&fresh);
    let answer = json_body(&[
        "--user",
        "alice:alice-pw",
        &format!("{}?service={SERVICE}", fresh.realm()),
    ]);
    let bearer = format!(
        "Authorization: Bearer {}",
        answer["token"].as_str().unwrap()
    );
    let v2 = format!("{}/v2/", registry.url());
    assert_eq!(status(&["--header", &bearer, &v2]), 200);
}

/// 256 KiB that do not compress away: a SHA-256 chain.
fn blob_bytes() -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * 1024);
    let mut block = Sha256::digest(b"refeng cut proxy blob").to_vec();
    while out.len() < 256 * 1024 {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out
}

#[test]
fn cut_proxy_cuts_one_blob_download_and_sees_the_resume() {
    let registry = RegistryServer::plain();
    let proxy = CutProxy::start(&registry.host());
    let dir = tempfile::Builder::new()
        .prefix("refeng-cut-")
        .tempdir()
        .unwrap();
    let blob = blob_bytes();
    let digest = sha256_digest(&blob);
    let blob_file = dir.path().join("blob");
    fs::write(&blob_file, &blob).unwrap();

    // Upload through the proxy (POST, then PUT with the whole body): request bodies go through.
    let out = curl(&[
        "--fail",
        "--request",
        "POST",
        "--dump-header",
        "-",
        "--output",
        "/dev/null",
        &format!("{}/v2/cut/app/blobs/uploads/", proxy.url()),
    ]);
    assert_ok(&out, "start upload");
    let headers = text(&out.stdout);
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .expect("Location of the upload");
    assert!(location.starts_with(&proxy.url()), "{location}");
    let put_url = format!("{location}&digest={digest}");
    // Expect: 100-continue makes the registry answer twice; the interim answer goes through.
    let put = [
        "--request",
        "PUT",
        "--header",
        "Expect: 100-continue",
        "--header",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", blob_file.display()),
        &put_url,
    ];
    assert_eq!(status(&put), 201);

    // The armed cut ends the first download after 1000 body bytes.
    let blob_url = format!("{}/v2/cut/app/blobs/{digest}", proxy.url());
    let partial = dir.path().join("download");
    let partial_arg = partial.to_str().unwrap();
    proxy.cut_next_blob_get(1000);
    assert!(proxy.cut_pending());
    let out = curl(&["--output", partial_arg, &blob_url]);
    assert_eq!(
        out.status.code(),
        Some(18),
        "curl reports a partial file: {out:?}"
    );
    assert_eq!(fs::read(&partial).unwrap(), blob[..1000]);
    assert!(!proxy.cut_pending(), "a cut happens once");

    // The resume asks for the rest with Range and gets it whole through the proxy.
    let out = curl(&[
        "--fail",
        "--continue-at",
        "-",
        "--output",
        partial_arg,
        &blob_url,
    ]);
    assert_ok(&out, "resumed download");
    assert!(
        fs::read(&partial).unwrap() == blob,
        "resumed download differs"
    );

    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is_blob_get())
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].cut_after, Some(1000));
    assert_eq!(gets[0].status, Some(200));
    assert_eq!(gets[0].header("Range"), None);
    assert_eq!(gets[1].header("range"), Some("bytes=1000-"));
    assert_eq!(gets[1].status, Some(206));
    assert_eq!(gets[1].cut_after, None);
    let methods: Vec<_> = proxy.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "PUT", "GET", "GET"]);
    let put = &proxy.requests()[1];
    assert_eq!(put.header("Expect"), Some("100-continue"));
    assert_eq!(put.status, Some(201));
}
