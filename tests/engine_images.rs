//! refengd's image endpoints over refeng-containerd (and over the real containerd 1.6 with
//! `--containerd`): pull from a loopback docker-registry with the JSON progress stream and
//! X-Registry-Auth, list with filters, inspect, tag, remove and history, driven by the docker
//! CLI 28, docker-py 7 and raw HTTP, and compared with a private dockerd pulling the same
//! images. One refengd and one registry serve the binary; tests that need others start them.

#[path = "containerd_support/mod.rs"]
mod containerd_support;
mod engine_support;
mod peers;
mod registry_images;
mod registry_support;

use std::path::Path;
use std::sync::OnceLock;

use engine_support::{Options, Refengd};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::registry::auth::{CredentialStore, Credentials};
use refeng::image::registry::{Client, ClientConfig, NoProgress, Reference};
use registry_support::RegistryServer;
use serde_json::{json, Value};

/// What the whole binary shares.
struct World {
    refengd: Refengd,
    /// Taken and dropped (stopped by pid) when the binary ends: a static is never dropped.
    registry: std::sync::Mutex<Option<RegistryServer>>,
    /// Its `host:port`.
    registry_host: String,
    /// `host/test/app:1`: two layers, labels `tier=web`, created 2026-01-01.
    app: Pushed,
    /// `host/test/tool:1`: one layer, label `tier=tool`, created 2026-02-01.
    tool: Pushed,
}

/// An image in the registry.
struct Pushed {
    reference: String,
    manifest: Digest,
    config: Digest,
    diff_ids: Vec<String>,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let registry = RegistryServer::plain();
        let app = push_image(
            &registry,
            "test/app:1",
            &[(1, 64 << 10), (2, 32 << 10)],
            "web",
            "2026-01-01T00:00:00Z",
            None,
        );
        let tool = push_image(
            &registry,
            "test/tool:1",
            &[(3, 16 << 10)],
            "tool",
            "2026-02-01T00:00:00Z",
            None,
        );
        World {
            refengd: Refengd::start(),
            registry_host: registry.host(),
            registry: std::sync::Mutex::new(Some(registry)),
            app,
            tool,
        }
    })
}

/// Builds an image (gzip layers of noise, a config with `Labels` and `created`) and pushes it
/// to `registry` as `name`, with `creds` when the registry wants them.
fn push_image(
    registry: &RegistryServer,
    name: &str,
    layers: &[(u64, usize)],
    tier: &str,
    created: &str,
    creds: Option<(&str, &str)>,
) -> Pushed {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("c"), Limits::default()).unwrap();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut history = Vec::new();
    for (seed, len) in layers {
        let (blob, diff_id) = registry_images::layer(*seed, *len);
        let d = store.put(&blob).unwrap();
        diff_ids.push(diff_id.to_string());
        descs.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": d.to_string(), "size": blob.len()}),
        );
        history.push(json!({"created": created, "created_by": format!("ADD f{seed} /")}));
    }
    history.push(json!({"created": created, "created_by": "CMD [\"/f1\"]", "empty_layer": true}));
    let cfg = serde_json::to_vec(&json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux", "created": created,
        "config": {"Cmd": ["/f1"], "Env": ["PATH=/bin"], "Labels": {"tier": tier}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history}))
    .unwrap();
    let config = store.put(&cfg).unwrap();
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": cfg.len()},
        "layers": descs}))
    .unwrap();
    let manifest = store.put(&m).unwrap();
    store.set_reference("local", &manifest).unwrap();
    let mut cs = CredentialStore::default();
    if let Some((u, p)) = creds {
        cs = cs.with(
            &registry.host(),
            Credentials::Basic {
                username: u.into(),
                password: p.into(),
            },
        );
    }
    let client = Client::new(ClientConfig {
        credentials: cs,
        ..ClientConfig::default()
    });
    let reference = format!("{}/{name}", registry.host());
    client
        .push(
            &store,
            "local",
            &Reference::parse(&reference).unwrap(),
            &NoProgress,
        )
        .unwrap();
    Pushed {
        reference,
        manifest,
        config,
        diff_ids,
    }
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    engine_support::run(
        &[
            (
                "docker_pull_streams_progress_and_names_the_image",
                &pull_cli,
            ),
            ("inspect_and_list_show_dockers_fields", &inspect_and_list),
            (
                "list_filters_dangling_reference_label_before_since",
                &list_filters,
            ),
            ("tag_then_remove_untags_before_it_deletes", &tag_and_remove),
            ("history_lists_the_configs_steps", &history),
            ("pull_errors_have_dockerds_codes", &pull_errors),
            ("x_registry_auth_reaches_the_registry", &registry_auth),
            ("docker_py_pulls_lists_tags_and_removes", &docker_py),
            ("a_moved_tag_leaves_a_dangling_image", &dangling),
            ("prune_removes_dangling_then_labelled_images", &prune),
            ("image_events_tell_pull_tag_untag_delete", &image_events),
            ("images_work_over_the_real_containerd", &real_containerd),
            ("inspect_and_list_match_dockerd", &differential),
        ],
        || {
            if let Some(w) = WORLD.get() {
                w.refengd.shutdown();
                drop(w.registry.lock().unwrap_or_else(|e| e.into_inner()).take());
            }
        },
    )
}

fn short(d: &str) -> String {
    d.trim_start_matches("sha256:").chars().take(12).collect()
}

fn pull_cli() {
    let w = world();
    let out = w.refengd.docker(&["pull", &w.app.reference]);
    assert!(out.contains("Downloaded newer image for"), "{out}");
    assert!(
        out.contains(&format!("Digest: {}", w.app.manifest)),
        "{out}"
    );
    // The raw stream: per-layer lines as dockerd sends them.
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("fromImage", &w.tool.reference)
        .finish();
    let r = w
        .refengd
        .request("POST", &format!("/v1.44/images/create?{q}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let lines = r.json_lines();
    let statuses: Vec<&str> = lines.iter().filter_map(|l| l["status"].as_str()).collect();
    assert!(statuses[0].starts_with("Pulling from"), "{statuses:?}");
    for want in [
        "Downloading",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(statuses.contains(&want), "{want} missing: {statuses:?}");
    }
    assert_eq!(
        statuses.last().copied(),
        Some(format!("Status: Downloaded newer image for {}", w.tool.reference).as_str())
    );
    assert!(lines.iter().all(|l| l.get("error").is_none()), "{lines:?}");
    // Again: nothing new.
    let out = w.refengd.docker(&["pull", &w.app.reference]);
    assert!(out.contains("Image is up to date for"), "{out}");
    let info = w.refengd.request("GET", "/info", None).json();
    assert_eq!(info["Images"], 2);
}

fn inspect_and_list() {
    let w = world();
    w.refengd.docker(&["pull", "-q", &w.app.reference]);
    let v: Value =
        serde_json::from_str(&w.refengd.docker(&["image", "inspect", &w.app.reference])).unwrap();
    let v = &v[0];
    assert_eq!(v["Id"], w.app.config.to_string());
    assert_eq!(v["RepoTags"], json!([w.app.reference]));
    let repo = w.app.reference.trim_end_matches(":1");
    assert_eq!(
        v["RepoDigests"],
        json!([format!("{repo}@{}", w.app.manifest)])
    );
    assert_eq!(v["RootFS"]["Layers"], json!(w.app.diff_ids));
    assert_eq!(v["Config"]["Cmd"], json!(["/f1"]));
    assert_eq!(v["Config"]["Labels"], json!({"tier": "web"}));
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Created"], "2026-01-01T00:00:00Z");
    // Both layers are unpacked: their files take their sizes.
    let size = v["Size"].as_i64().unwrap();
    assert!(size >= (96 << 10), "{size}");
    // By id and by id prefix.
    let by_id = w
        .refengd
        .request("GET", &format!("/images/{}/json", w.app.config), None);
    assert_eq!(by_id.json()["Id"], v["Id"]);
    let by_prefix = w.refengd.request(
        "GET",
        &format!("/images/{}/json", short(&w.app.config.to_string())),
        None,
    );
    assert_eq!(by_prefix.json()["Id"], v["Id"]);
    let r = w.refengd.request("GET", "/images/nosuch:1/json", None);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("No such image: nosuch:1"))
    );
    // The CLI's table and JSON.
    let out = w
        .refengd
        .docker(&["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]);
    assert!(
        out.lines()
            .any(|l| l == format!("{repo} 1 {}", short(&w.app.config.to_string()))),
        "{out}"
    );
    let list = w.refengd.request("GET", "/images/json", None).json();
    let app = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Id"] == v["Id"])
        .unwrap();
    assert_eq!(app["RepoTags"], v["RepoTags"]);
    assert_eq!(app["Size"], v["Size"]);
    assert_eq!(app["Labels"], json!({"tier": "web"}));
    assert_eq!(app["Created"], 1_767_225_600);
}

fn ids(w: &World, filters: &str) -> Vec<String> {
    let q: String = form_urlencoded::byte_serialize(filters.as_bytes()).collect();
    let r = w
        .refengd
        .request("GET", &format!("/images/json?filters={q}"), None);
    assert_eq!(r.status, 200, "{filters}: {}", r.text());
    let mut v: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn list_filters() {
    let w = world();
    w.refengd.docker(&["pull", "-q", &w.app.reference]);
    w.refengd.docker(&["pull", "-q", &w.tool.reference]);
    let (app, tool) = (w.app.config.to_string(), w.tool.config.to_string());
    assert_eq!(ids(w, r#"{"label":["tier=web"]}"#), vec![app.clone()]);
    assert_eq!(ids(w, r#"{"label":["tier"]}"#).len(), 2);
    assert_eq!(
        ids(
            w,
            &format!(r#"{{"reference":["{}/test/t*"]}}"#, w.registry_host.clone())
        ),
        vec![tool.clone()]
    );
    assert_eq!(
        ids(w, &format!(r#"{{"before":["{}"]}}"#, w.tool.reference)),
        vec![app.clone()]
    );
    assert_eq!(
        ids(w, &format!(r#"{{"since":["{}"]}}"#, w.app.reference)),
        vec![tool.clone()]
    );
    assert!(ids(w, r#"{"dangling":["true"]}"#).is_empty());
    assert_eq!(
        ids(w, r#"{"dangling":["false"],"label":["tier=tool"]}"#),
        vec![tool]
    );
    let q: String = form_urlencoded::byte_serialize(br#"{"bogus":["1"]}"#).collect();
    let r = w
        .refengd
        .request("GET", &format!("/images/json?filters={q}"), None);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, json!("invalid filter 'bogus'"))
    );
    let out = w
        .refengd
        .docker(&["images", "-q", "--filter", "label=tier=web"]);
    assert_eq!(out.trim(), short(&app));
}

fn tag_and_remove() {
    let w = world();
    w.refengd.docker(&["pull", "-q", &w.tool.reference]);
    w.refengd
        .docker(&["tag", &w.tool.reference, "mine/tool:v2"]);
    let v: Value =
        serde_json::from_str(&w.refengd.docker(&["image", "inspect", "mine/tool:v2"])).unwrap();
    assert_eq!(v[0]["Id"], w.tool.config.to_string());
    let mut tags: Vec<String> = serde_json::from_value(v[0]["RepoTags"].clone()).unwrap();
    tags.sort();
    assert_eq!(
        tags,
        vec![w.tool.reference.clone(), "mine/tool:v2".to_string()]
    );
    // By id while two names hold it: a 409 unless forced.
    let r = w.refengd.request(
        "DELETE",
        &format!("/images/{}", short(&w.tool.config.to_string())),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("must be forced"));
    // A name that is not the last: untagged only.
    let r = w.refengd.request("DELETE", "/images/mine/tool:v2", None);
    assert_eq!(r.json(), json!([{"Untagged": "mine/tool:v2"}]));
    // The last: untagged and deleted, content and snapshots with it.
    let r = w
        .refengd
        .request("DELETE", &format!("/images/{}", w.tool.reference), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr[0], json!({"Untagged": w.tool.reference}));
    assert!(
        arr.contains(&json!({"Deleted": w.tool.config.to_string()})),
        "{v}"
    );
    let r = w
        .refengd
        .request("GET", &format!("/images/{}/json", w.tool.reference), None);
    assert_eq!(r.status, 404);
    let r = w.refengd.request("DELETE", "/images/nosuch:1", None);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("No such image: nosuch:1"))
    );
    // docker rmi -f by id with two names removes both.
    w.refengd.docker(&["pull", "-q", &w.tool.reference]);
    w.refengd
        .docker(&["tag", &w.tool.reference, "mine/tool:v3"]);
    let out = w
        .refengd
        .docker(&["rmi", "-f", &short(&w.tool.config.to_string())]);
    assert!(
        out.contains("Untagged: mine/tool:v3") && out.contains("Deleted: "),
        "{out}"
    );
    assert!(!w
        .refengd
        .docker(&["images", "-q"])
        .contains(&short(&w.tool.config.to_string())));
}

fn history() {
    let w = world();
    w.refengd.docker(&["pull", "-q", &w.app.reference]);
    let r = w
        .refengd
        .request("GET", &format!("/images/{}/history", w.app.reference), None);
    let h = r.json();
    let rows = h.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["Id"], w.app.config.to_string());
    assert_eq!(rows[0]["CreatedBy"], "CMD [\"/f1\"]");
    assert_eq!(rows[0]["Size"], 0);
    assert_eq!(rows[0]["Tags"], json!([w.app.reference]));
    assert_eq!(rows[1]["Id"], "<missing>");
    assert_eq!(rows[2]["CreatedBy"], "ADD f1 /");
    assert!(rows[2]["Size"].as_i64().unwrap() >= 64 << 10);
    let out = w
        .refengd
        .docker(&["history", "--format", "{{.CreatedBy}}", &w.app.reference]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["CMD [\"/f1\"]", "ADD f2 /", "ADD f1 /"]
    );
}

fn create(w: &World, params: &[(&str, &str)], auth: Option<&str>) -> engine_support::HttpResponse {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let path = format!("/images/create?{}", s.finish());
    match auth {
        Some(a) => w
            .refengd
            .request_with("POST", &path, &[("X-Registry-Auth", a)], None),
        None => w.refengd.request("POST", &path, None),
    }
}

fn pull_errors() {
    let w = world();
    let host = w.registry_host.clone();
    let r = create(
        w,
        &[("fromImage", &format!("{host}/test/nosuch")), ("tag", "1")],
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.json()["message"].as_str().unwrap().contains("not found"),
        "{}",
        r.text()
    );
    let r = create(w, &[("fromImage", "bad ref")], None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = create(w, &[], None);
    assert_eq!(r.status, 400);
    let r = create(
        w,
        &[("fromImage", &w.app.reference), ("platform", "linux/s390x")],
        None,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("s390x"));
    let r = create(w, &[("fromImage", &w.app.reference)], Some("%%%"));
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("X-Registry-Auth"));
    let out = w
        .refengd
        .docker_cmd(&["pull", &format!("{host}/test/nosuch:1")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(s)
}

fn registry_auth() {
    let w = world();
    let reg = RegistryServer::basic(&[("alice", "s3cret")]);
    let p = push_image(
        &reg,
        "private/app:1",
        &[(9, 8 << 10)],
        "private",
        "2026-03-01T00:00:00Z",
        Some(("alice", "s3cret")),
    );
    let r = create(w, &[("fromImage", &p.reference)], None);
    assert_eq!(r.status, 401, "{}", r.text());
    let wrong = b64(r#"{"username":"alice","password":"nope"}"#);
    let r = create(w, &[("fromImage", &p.reference)], Some(&wrong));
    assert_eq!(r.status, 401, "{}", r.text());
    let right = b64(r#"{"username":"alice","password":"s3cret"}"#);
    let r = create(w, &[("fromImage", &p.reference)], Some(&right));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Downloaded newer image"), "{}", r.text());
    // The CLI logs in with its config file and sends the header itself.
    let cfg = w.refengd.dir().join("cli");
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    };
    std::fs::write(
        cfg.join("config.json"),
        json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    w.refengd.docker(&["rmi", &p.reference]);
    let out = w.refengd.docker(&["pull", &p.reference]);
    std::fs::remove_file(cfg.join("config.json")).unwrap();
    assert!(out.contains("Downloaded newer image"), "{out}");
    w.refengd.docker(&["rmi", &p.reference]);
}

fn docker_py() {
    let w = world();
    let script = format!(
        r#"
import docker, json
c = docker.from_env(version="auto")
img = c.images.pull("{reference}")
out = [img.id, img.tags]
img.tag("py/tool", "x")
out.append(sorted(c.images.get("py/tool:x").tags))
out.append(sorted(i.id for i in c.images.list(filters={{"label": "tier=tool"}})))
c.images.remove("py/tool:x")
out.append(c.images.get("{reference}").tags)
try:
    c.images.get("py/none:1")
except docker.errors.ImageNotFound as e:
    out.append(e.status_code)
print(json.dumps(out))
"#,
        reference = w.tool.reference
    );
    let out: Value = serde_json::from_str(w.refengd.python(&script).trim()).unwrap();
    let id = w.tool.config.to_string();
    assert_eq!(out[0], json!(id));
    assert_eq!(out[1], json!([w.tool.reference]));
    let mut both = vec!["py/tool:x".to_string(), w.tool.reference.clone()];
    both.sort();
    assert_eq!(out[2], json!(both));
    assert_eq!(out[3], json!([id]));
    assert_eq!(out[4], json!([w.tool.reference]));
    assert_eq!(out[5], json!(404));
}

fn dangling() {
    let w = world();
    // A tag of the app image, then the same tag moved to the tool image: the app image keeps
    // its other name; a one-name image moved away becomes dangling.
    let reg = RegistryServer::plain();
    let a = push_image(
        &reg,
        "moving/img:1",
        &[(21, 4 << 10)],
        "a",
        "2026-04-01T00:00:00Z",
        None,
    );
    w.refengd.docker(&["pull", "-q", &a.reference]);
    let b = push_image(
        &reg,
        "moving/img:1",
        &[(22, 4 << 10)],
        "b",
        "2026-04-02T00:00:00Z",
        None,
    );
    w.refengd.docker(&["pull", "-q", &b.reference]);
    assert_eq!(
        ids(w, r#"{"dangling":["true"]}"#),
        vec![a.config.to_string()]
    );
    let v = w
        .refengd
        .request("GET", &format!("/images/{}/json", a.config), None)
        .json();
    assert_eq!(v["RepoTags"], json!([]));
    let out = w.refengd.docker(&[
        "images",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    assert_eq!(
        out.trim(),
        format!("<none>:<none> {}", short(&a.config.to_string()))
    );
    w.refengd.docker(&["rmi", &short(&a.config.to_string())]);
    w.refengd.docker(&["rmi", &b.reference]);
    assert!(ids(w, r#"{"dangling":["true"]}"#).is_empty());
}

fn prune() {
    let w = world();
    let reg = RegistryServer::plain();
    let a = push_image(
        &reg,
        "prune/img:1",
        &[(31, 4 << 10)],
        "keep",
        "2026-05-01T00:00:00Z",
        None,
    );
    w.refengd.docker(&["pull", "-q", &a.reference]);
    let b = push_image(
        &reg,
        "prune/img:1",
        &[(32, 4 << 10)],
        "drop",
        "2026-05-02T00:00:00Z",
        None,
    );
    w.refengd.docker(&["pull", "-q", &b.reference]);
    // Only the dangling one goes by default.
    let r = w.refengd.request("POST", "/images/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(
        v["ImagesDeleted"]
            .as_array()
            .unwrap()
            .contains(&json!({"Deleted": a.config.to_string()})),
        "{v}"
    );
    assert!(v["SpaceReclaimed"].as_i64().unwrap() >= 4 << 10, "{v}");
    assert!(ids(w, r#"{"dangling":["true"]}"#).is_empty());
    let r = w.refengd.request("POST", "/images/prune", None);
    assert_eq!(
        r.json(),
        json!({"ImagesDeleted": null, "SpaceReclaimed": 0})
    );
    // All unused ones with a label, through the CLI.
    let out = w
        .refengd
        .docker(&["image", "prune", "-a", "-f", "--filter", "label=tier=drop"]);
    assert!(out.contains(&format!("deleted: {}", b.config)), "{out}");
    assert!(ids(w, r#"{"label":["tier=drop"]}"#).is_empty());
    let q: String = form_urlencoded::byte_serialize(br#"{"until":["1h"]}"#).collect();
    assert_eq!(
        w.refengd
            .request("POST", &format!("/images/prune?filters={q}"), None)
            .status,
        400
    );
}

fn image_events() {
    let w = world();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    w.refengd.docker(&["pull", "-q", &w.tool.reference]);
    w.refengd.docker(&["tag", &w.tool.reference, "ev/tool:1"]);
    w.refengd.docker(&["rmi", "ev/tool:1"]);
    w.refengd.docker(&["rmi", &w.tool.reference]);
    let until = since + 60.0;
    let r = w.refengd.request(
        "GET",
        &format!(
            "/events?since={since:.3}&until={:.3}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D",
            until.min(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
                    + 0.2
            )
        ),
        None,
    );
    let evs = r.json_lines();
    let actions: Vec<&str> = evs.iter().map(|e| e["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["pull", "tag", "untag", "delete"], "{evs:?}");
    assert_eq!(evs[0]["Actor"]["ID"], w.tool.reference);
    assert_eq!(evs[1]["Actor"]["Attributes"]["name"], "ev/tool:1");
    assert_eq!(evs[3]["Actor"]["ID"], w.tool.config.to_string());
}

fn real_containerd() {
    use containerd_support::{Daemon, Peer};
    let w = world();
    let ctd = Daemon::start(Peer::Containerd);
    let d = Refengd::start_with(Options {
        containerd: Some(ctd.socket()),
        ..Options::default()
    });
    let out = d.docker(&["pull", &w.app.reference]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let v: Value =
        serde_json::from_str(&d.docker(&["image", "inspect", &w.app.reference])).unwrap();
    assert_eq!(v[0]["Id"], w.app.config.to_string());
    assert_eq!(v[0]["RootFS"]["Layers"], json!(w.app.diff_ids));
    // containerd itself sees the image and its unpacked snapshots in the engine's namespace.
    let ls = ctd.ctr_ok(&["-n", "moby", "images", "ls", "-q"]);
    assert!(
        ls.lines()
            .any(|l| l == format!("{}", Reference::parse(&w.app.reference).unwrap())),
        "{ls}"
    );
    let snaps = ctd.ctr_ok(&[
        "-n",
        "moby",
        "snapshots",
        "--snapshotter",
        "overlayfs",
        "ls",
    ]);
    assert_eq!(snaps.lines().count(), 3, "{snaps}");
    d.docker(&["rmi", &w.app.reference]);
    let ls = ctd.ctr_ok(&["-n", "moby", "images", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");
}

/// Normalises what differs by design between two daemons' answers for the same image: sizes
/// (each measures its own snapshotter) and the driver's name and data.
fn normalise(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for k in [
            "Size",
            "VirtualSize",
            "GraphDriver",
            "Metadata",
            "SharedSize",
            "Containers",
            "ContainerConfig",
            "Container",
            "DockerVersion",
            "Parent",
            "ParentId",
        ] {
            m.remove(k);
        }
        if let Some(Value::Object(c)) = m.get_mut("Config") {
            c.retain(|_, v| !v.is_null() && *v != json!("") && *v != json!(false));
        }
    }
    v
}

fn differential() {
    let w = world();
    let dockerd = peers::dockerd::Dockerd::start();
    let sock = dockerd.dir().join("docker.sock");
    let dreq = |m: &str, p: &str| engine_support::try_request(&sock, m, p, &[], None).unwrap();
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("fromImage", &w.app.reference)
        .finish();
    let want = dreq("POST", &format!("/v1.41/images/create?{q}"));
    assert_eq!(want.status, 200, "{}", want.text());
    w.refengd.docker(&["pull", "-q", &w.app.reference]);
    let path = format!("/v1.41/images/{}/json", w.app.reference);
    let (g, d) = (
        w.refengd.request("GET", &path, None).json(),
        dreq("GET", &path).json(),
    );
    assert_eq!(normalise(g), normalise(d));
    let (g, d) = (
        w.refengd
            .request(
                "GET",
                "/v1.41/images/json?filters=%7B%22label%22%3A%5B%22tier%3Dweb%22%5D%7D",
                None,
            )
            .json(),
        dreq(
            "GET",
            "/v1.41/images/json?filters=%7B%22label%22%3A%5B%22tier%3Dweb%22%5D%7D",
        )
        .json(),
    );
    assert_eq!(normalise(g[0].clone()), normalise(d[0].clone()));
    for (m, p) in [
        ("GET", "/v1.41/images/nosuch:1/json"),
        ("DELETE", "/v1.41/images/nosuch:1"),
        ("GET", "/v1.41/images/nosuch:1/history"),
    ] {
        let (g, d) = (w.refengd.request(m, p, None), dreq(m, p));
        assert_eq!(g.status, d.status, "{m} {p}");
        // dockerd 20.10 wraps some of these twice ("no such image: X: No such image: X");
        // refengd answers with the message current dockerd gives, which ends the old one.
        let (gm, dm) = (g.json()["message"].clone(), d.json()["message"].clone());
        assert!(
            dm.as_str().unwrap().ends_with(gm.as_str().unwrap()),
            "{m} {p}: {gm} vs dockerd {dm}"
        );
    }
    let h = format!("/v1.41/images/{}/history", w.app.reference);
    let (g, d) = (
        w.refengd.request("GET", &h, None).json(),
        dreq("GET", &h).json(),
    );
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["Id"], r["CreatedBy"], r["Tags"], r["Created"]]))
            .collect()
    };
    assert_eq!(strip(&g), strip(&d));
    let _ = Path::new("/");
}
