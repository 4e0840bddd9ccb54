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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use containerd_support::archive::rootfs;
use engine_support::{Options, Refengd};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::registry::auth::{CredentialStore, Credentials};
use refeng::image::registry::{Client, ClientConfig, NoProgress, Reference};
use registry_support::{RegistryServer, TokenServer};
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
            (
                "pull_without_a_tag_pulls_every_tag_as_dockerd",
                &pull_all_tags,
            ),
            (
                "load_and_save_interoperate_with_dockerd",
                &load_and_save_interoperate_with_dockerd,
            ),
            (
                "hostile_archives_are_refused_and_leave_nothing",
                &hostile_archives_are_refused_and_leave_nothing,
            ),
            ("import_matches_dockerd", &import_matches_dockerd),
            (
                "build_pull_pulls_the_base_image_first",
                &build_pull_pulls_the_base_image_first,
            ),
            (
                "push_and_login_against_a_basic_auth_registry",
                &push_and_login_against_a_basic_auth_registry,
            ),
            ("login_and_push_against_a_token_registry", &token_registry),
            ("load_labels_content_containerd_already_has", &load_relabels),
            (
                "docker_py_load_save_push_import",
                &docker_py_load_save_push_import,
            ),
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

/// `docker build --pull` (classic builder): the base image comes from the registry first,
/// its progress in the build's output, even when the store has it; a base image the registry
/// does not have fails the build.
fn build_pull_pulls_the_base_image_first() {
    let w = world();
    let _ = w
        .refengd
        .docker_cmd(&["rmi", "-f", &w.tool.reference])
        .output();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\nLABEL pulled=yes\n", w.tool.reference),
    )
    .unwrap();
    let build = |tag: &str| {
        w.refengd
            .docker_cmd(&["build", "--pull", "-t", tag, &dir.path().to_string_lossy()])
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap()
    };
    let out = build("pulled:1");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Pulling from") && text.contains("/test/tool"),
        "{text}"
    );
    assert!(text.contains("Successfully tagged pulled:1"), "{text}");
    let label = w.refengd.docker(&[
        "inspect",
        "-f",
        "{{.Config.Labels.tier}} {{.Config.Labels.pulled}}",
        "pulled:1",
    ]);
    assert_eq!(label.trim(), "tool yes");
    // Present now, it is asked for again.
    let out = build("pulled:2");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Image is up to date") || text.contains("Pulling from"),
        "{text}"
    );
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}/test/nosuch:1\n", w.registry_host),
    )
    .unwrap();
    let out = build("never:1");
    assert!(!out.status.success());
    let _ = w
        .refengd
        .docker_cmd(&["rmi", "pulled:1", "pulled:2"])
        .output();
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
    // Every tag (the repository has one): the tag list asks for the same credentials.
    let repo = p.reference.trim_end_matches(":1");
    let r = create(w, &[("fromImage", repo)], None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = create(w, &[("fromImage", repo)], Some(&right));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().ends_with(&format!(
            "{{\"status\":\"Status: Downloaded newer image for {repo}\"}}\n"
        )),
        "{}",
        r.text()
    );
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
    // Save, remove, load back, import and push over the real containerd: the same content
    // and the same garbage-collection labels work there.
    let saved = d.dir().join("real.tar");
    d.docker(&["save", "-o", saved.to_str().unwrap(), &w.app.reference]);
    d.docker(&["rmi", &w.app.reference]);
    let ls = ctd.ctr_ok(&["-n", "moby", "images", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");
    let out = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {}", w.app.reference));
    // Collected content would show here: containerd's own GC ran when the image went.
    let info = ctd.ctr_ok(&["-n", "moby", "content", "ls", "-q"]);
    for d in [&w.app.manifest, &w.app.config] {
        assert!(
            info.lines().any(|l| l == d.to_string()),
            "{d} missing: {info}"
        );
    }
    assert_eq!(
        inspect_cli(&d, &w.app.reference)["RootFS"]["Layers"],
        json!(w.app.diff_ids)
    );
    let tar = busybox_tar("real");
    d.docker(&[
        "import",
        "-c",
        "ENV R=1",
        tar.to_str().unwrap(),
        "real/imp:1",
    ]);
    assert_eq!(
        inspect_cli(&d, "real/imp:1")["Config"]["Env"],
        json!(["R=1"])
    );
    let dest = format!("{}/real/imp:1", w.registry_host);
    d.docker(&["tag", "real/imp:1", &dest]);
    let out = d.docker(&["push", &dest]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    d.docker(&["rmi", &w.app.reference, "real/imp:1", &dest]);
    let ls = ctd.ctr_ok(&["-n", "moby", "images", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");
    let leases = ctd.ctr_ok(&["-n", "moby", "leases", "ls", "-q"]);
    assert!(leases.trim().is_empty(), "{leases}");
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

/// A busybox root filesystem with `/etc/marker` as a tarball under the shared refengd's
/// directory (removed with it).
fn busybox_tar(name: &str) -> std::path::PathBuf {
    let w = world();
    let dir = w.refengd.dir().join(format!("rootfs-{name}"));
    rootfs::busybox(&dir);
    std::fs::write(dir.join("etc/marker"), format!("{name}\n")).unwrap();
    let tar = w.refengd.dir().join(format!("{name}.tar"));
    rootfs::tar(&dir, &tar);
    let _ = std::fs::remove_dir_all(&dir);
    tar
}

fn inspect_cli(d: &Refengd, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.docker(&["image", "inspect", name])).unwrap();
    v[0].clone()
}

/// What containerd holds for refengd that a load or import could leave behind.
fn leftovers(d: &Refengd) -> (String, Vec<std::path::PathBuf>) {
    let sock = d.dir().join("exec/containerd/containerd.sock");
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(&sock)
        .args(["-n", "moby", "leases", "ls", "-q"])
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staging: Vec<_> = std::fs::read_dir(d.dir().join("data/tmp"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        staging,
    )
}

/// docker save of the real dockerd loads into refengd with the same id, layers and config;
/// refengd's save loads into dockerd, which runs it; skopeo's docker-archive and OCI archive
/// load too; what was loaded survives containerd's collection; docker system df counts it.
fn load_and_save_interoperate_with_dockerd() {
    let w = world();
    let d = &w.refengd;
    let tar = busybox_tar("interop");
    let dockerd = peers::dockerd::Dockerd::start();
    dockerd.docker(&[
        "import",
        "-c",
        r#"CMD ["/bin/sh"]"#,
        "-c",
        "ENV A=1",
        tar.to_str().unwrap(),
        "io/bb:1",
    ]);
    let saved = d.dir().join("from-dockerd.tar");
    dockerd.docker(&["save", "-o", saved.to_str().unwrap(), "io/bb:1"]);
    let want: Value =
        serde_json::from_str(&dockerd.docker(&["image", "inspect", "io/bb:1"])).unwrap();
    let want = &want[0];
    let out = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: io/bb:1");
    let got = inspect_cli(d, "io/bb:1");
    assert_eq!(got["Id"], want["Id"]);
    assert_eq!(got["RootFS"], want["RootFS"]);
    for k in ["Cmd", "Env", "Entrypoint", "WorkingDir", "User", "Labels"] {
        assert_eq!(got["Config"][k], want["Config"][k], "Config.{k}");
    }
    assert_eq!(got["Created"], want["Created"]);
    // The raw stream: progress per layer, then the name (quiet: the name only).
    let body = std::fs::read(&saved).unwrap();
    let r = d.request_with("POST", "/v1.44/images/load?quiet=0", &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    assert_eq!(lines[0]["status"], "Loading layer", "{lines:?}");
    assert_eq!(lines.last().unwrap()["stream"], "Loaded image: io/bb:1\n");
    // Each layer's last line as dockerd sends it, `progress` text included (older clients
    // print that one): dockerd loads the same archive after losing the image.
    let last_per_layer = |lines: &[Value]| {
        let mut ids: Vec<&str> = Vec::new();
        let mut last = std::collections::HashMap::new();
        for l in lines.iter().filter(|l| l["status"] == "Loading layer") {
            let id = l["id"].as_str().unwrap_or("");
            if !ids.contains(&id) {
                ids.push(id);
            }
            last.insert(id, l.clone());
        }
        ids.iter().map(|id| last[id].clone()).collect::<Vec<_>>()
    };
    dockerd.docker(&["rmi", "io/bb:1"]);
    let sock = std::path::PathBuf::from(dockerd.host().trim_start_matches("unix://"));
    let theirs = engine_support::try_request(
        &sock,
        "POST",
        "/v1.41/images/load?quiet=0",
        &[],
        Some(&body),
    )
    .unwrap();
    assert_eq!(theirs.status, 200, "{}", theirs.text());
    assert_eq!(
        last_per_layer(&lines),
        last_per_layer(&theirs.json_lines()),
        "{}",
        theirs.text()
    );
    // Without `quiet`, dockerd is quiet.
    dockerd.docker(&["rmi", "io/bb:1"]);
    let theirs =
        engine_support::try_request(&sock, "POST", "/v1.41/images/load", &[], Some(&body)).unwrap();
    d.docker(&["rmi", "io/bb:1"]);
    let ours = d.request_with("POST", "/v1.44/images/load", &[], Some(&body));
    assert_eq!(ours.json_lines(), theirs.json_lines());
    assert_eq!(
        ours.json_lines(),
        vec![json!({"stream": "Loaded image: io/bb:1\n"})]
    );
    let r = d.request_with("POST", "/v1.44/images/load?quiet=1", &[], Some(&body));
    assert_eq!(
        r.json_lines(),
        vec![json!({"stream": "Loaded image: io/bb:1\n"})]
    );
    // skopeo's docker-archive (blobs as <hex>.tar) and an OCI archive with a gzip wrapper.
    let sk = d.dir().join("skopeo.tar");
    let oci = d.dir().join("oci.tar");
    for (src, dst) in [
        (
            format!("docker-archive:{}", saved.display()),
            format!("docker-archive:{}:io/sk:2", sk.display()),
        ),
        (
            format!("docker-archive:{}", saved.display()),
            format!("oci-archive:{}:io/oci:3", oci.display()),
        ),
    ] {
        let o = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", &src, &dst])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(
        d.docker(&["load", "-i", sk.to_str().unwrap()]).trim(),
        "Loaded image: io/sk:2"
    );
    let gz = d.dir().join("oci.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&oci).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    assert_eq!(
        d.docker(&["load", "-i", gz.to_str().unwrap()]).trim(),
        "Loaded image: io/oci:3"
    );
    assert_eq!(inspect_cli(d, "io/sk:2")["Id"], want["Id"]);
    assert_eq!(inspect_cli(d, "io/oci:3")["RootFS"], want["RootFS"]);
    // A synchronous collection (the last name of another image goes) keeps what load stored.
    d.docker(&["tag", "io/bb:1", "io/gone:1"]);
    // io/oci:3 is its own image (an OCI manifest) over the same layer: the layer stays.
    let gone = d.docker(&["rmi", "io/oci:3"]);
    let layer = want["RootFS"]["Layers"][0].as_str().unwrap();
    assert!(
        !gone.contains(layer),
        "a shared layer is not deleted: {gone}"
    );
    d.docker(&["rmi", "io/sk:2"]);
    let out_tar = d.dir().join("from-refengd.tar");
    d.docker(&["save", "-o", out_tar.to_str().unwrap(), "io/bb:1"]);
    // Both index.json and manifest.json, as dockerd 25+ writes them.
    let names = std::process::Command::new("tar")
        .arg("tf")
        .arg(&out_tar)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&names.stdout);
    for f in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.lines().any(|l| l == f), "{f} missing: {names}");
    }
    dockerd.docker(&["rmi", "io/bb:1"]);
    let out = dockerd.docker(&["load", "-i", out_tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: io/bb:1"), "{out}");
    let ran = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "io/bb:1",
        "cat",
        "/etc/marker",
    ]);
    assert_eq!(ran, "interop\n");
    // refengd loads its own save back, and saves by id and by several names.
    d.docker(&["rmi", "io/bb:1", "io/gone:1"]);
    assert_eq!(
        d.docker(&["load", "-i", out_tar.to_str().unwrap()]).trim(),
        "Loaded image: io/bb:1"
    );
    assert_eq!(inspect_cli(d, "io/bb:1")["Id"], want["Id"]);
    let r = d.request(
        "GET",
        "/v1.44/images/get?names=io%2Fbb%3A1&names=nosuch%3A9",
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = d.request(
        "GET",
        &format!("/v1.44/images/{}/get", want["Id"].as_str().unwrap()),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-tar"));
    let r = d.request_with("POST", "/v1.44/images/load", &[], Some(&r.body));
    assert_eq!(
        r.json_lines().last().unwrap()["stream"],
        format!("Loaded image ID: {}\n", want["Id"].as_str().unwrap())
    );
    // docker system df: the layers once, the image's size, nothing shared yet.
    let df = d.request("GET", "/v1.44/system/df", None).json();
    let img = df["Images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Id"] == want["Id"])
        .unwrap()
        .clone();
    assert!(img["Size"].as_i64().unwrap() > 1_000_000, "{img}");
    assert_eq!(img["Containers"], 0);
    let layers = df["LayersSize"].as_i64().unwrap();
    assert!(layers >= img["Size"].as_i64().unwrap(), "{df}");
    assert_eq!(df["Containers"], json!([]));
    assert_eq!(df["Volumes"], json!([]));
    let cli = d.docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(cli.lines().any(|l| l.starts_with("Images ")), "{cli}");
    let (leases, staging) = leftovers(d);
    assert_eq!((leases.as_str(), staging.len()), ("", 0), "{staging:?}");
}

/// Hostile and broken archives (the fuzz corpus' seeds) are a 400 naming the fault and leave
/// no lease, no staging store and no image behind.
fn hostile_archives_are_refused_and_leave_nothing() {
    let w = world();
    let d = &w.refengd;
    let before = d.request("GET", "/v1.44/images/json", None).json();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/image_docker_manifest");
    for (name, want) in [
        ("dotdot_layer", "escapes the archive"),
        ("absolute_names", "does not contain"),
        ("symlink_out", "escapes the archive"),
        ("truncated_gzip", "invalid archive"),
        ("huge_size", "truncated"),
        ("oci_wrong_digest", "mismatch"),
        ("escaping_symlink", "invalid archive"),
    ] {
        let body = std::fs::read(corpus.join(name)).unwrap();
        let r = d.request_with("POST", "/v1.44/images/load", &[], Some(&body));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        let m = r.json()["message"].as_str().unwrap().to_string();
        assert!(m.contains(want), "{name}: {m}");
    }
    let r = d.request_with("POST", "/v1.44/images/load", &[], Some(b"not a tar at all"));
    assert_eq!(r.status, 400, "{}", r.text());
    // A broken import tarball and a refused change, both before containerd sees a byte.
    let r = d.request_with(
        "POST",
        "/v1.44/images/create?fromSrc=-&repo=bad&tag=1",
        &[],
        Some(&b"not a tarball ".repeat(100)),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.request_with(
        "POST",
        "/v1.44/images/create?fromSrc=-&repo=bad&tag=1&changes=RUN+true",
        &[],
        Some(&[0u8; 1024]),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "run is not a valid change command");
    assert_eq!(d.request("GET", "/v1.44/images/json", None).json(), before);
    let (leases, staging) = leftovers(d);
    assert_eq!((leases.as_str(), staging.len()), ("", 0), "{staging:?}");
}

/// docker import with changes gives the config dockerd gives for the same import; from a
/// loopback URL too; docker history shows the message.
fn import_matches_dockerd() {
    let w = world();
    let d = &w.refengd;
    let tar = busybox_tar("import");
    let dockerd = peers::dockerd::Dockerd::start();
    let changes = [
        r#"ENV A=1 B="two words""#,
        "EXPOSE 80 443/udp",
        "LABEL x=y",
        "USER nobody",
        "WORKDIR /w",
        "VOLUME /data",
        r#"ENTRYPOINT ["/bin/sh"]"#,
        "CMD echo hi",
        "ONBUILD run echo x",
        "HEALTHCHECK --interval=30s CMD true",
    ];
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("-c".into());
        args.push(c.into());
    }
    args.extend([
        "-m".into(),
        "hello".into(),
        tar.display().to_string(),
        "imp:1".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dockerd.docker(&args);
    d.docker(&args);
    let want: Value =
        serde_json::from_str(&dockerd.docker(&["image", "inspect", "imp:1"])).unwrap();
    let got = inspect_cli(d, "imp:1");
    assert_eq!(got["Config"], want[0]["Config"]);
    assert_eq!(got["Comment"], want[0]["Comment"]);
    assert_eq!(got["RootFS"], want[0]["RootFS"]);
    let h = d.docker(&[
        "history",
        "--format",
        "{{.Comment}}|{{.CreatedBy}}",
        "imp:1",
    ]);
    assert_eq!(h.trim(), "hello|");
    // From an http URL on loopback; no repo: an unnamed image, its id answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bytes = std::fs::read(&tar).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
        .unwrap();
        s.write_all(&bytes).unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/rootfs.tar");
    let r = d.request(
        "POST",
        &format!(
            "/v1.44/images/create?fromSrc={}",
            form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        ),
        None,
    );
    server.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json_lines()[0]["status"].as_str().unwrap().to_string();
    let v = d
        .request("GET", &format!("/v1.44/images/{id}/json"), None)
        .json();
    assert_eq!(v["RepoTags"], json!([]));
    assert_eq!(v["Comment"], format!("Imported from {url}"));
    assert_eq!(v["RootFS"], want[0]["RootFS"]);
    d.docker(&["rmi", "imp:1", &id]);
}

/// docker login checks the credentials against an htpasswd registry; docker push sends the
/// image there with dockerd's lines, and what the registry holds is the image refengd has.
fn push_and_login_against_a_basic_auth_registry() {
    let w = world();
    let d = &w.refengd;
    let reg = RegistryServer::basic(&[("alice", "s3cret")]);
    let host = reg.host();
    let bad = d
        .docker_cmd(&["login", "-u", "alice", "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b"wrong\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!bad.status.success());
    let r = d.request(
        "POST",
        "/v1.44/auth",
        Some(
            json!({"username": "alice", "password": "wrong", "serveraddress": host})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = d.request(
        "POST",
        "/v1.44/auth",
        Some(
            json!({"username": "alice", "password": "s3cret", "serveraddress": host})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        r.json(),
        json!({"Status": "Login Succeeded", "IdentityToken": ""})
    );
    let out = d.docker(&["login", "-u", "alice", "-p", "s3cret", &host]);
    assert!(out.contains("Login Succeeded"), "{out}");
    d.docker(&["pull", "-q", &w.tool.reference]);
    let dest = format!("{host}/pushed/tool:7");
    d.docker(&["tag", &w.tool.reference, &dest]);
    let out = d.docker(&["push", &dest]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{host}/pushed/tool]"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("7: digest: {} size:", w.tool.manifest)),
        "{out}"
    );
    // The raw stream carries the aux record the CLI takes the digest from.
    let auth = base64_auth("alice", "s3cret");
    let r = d.request_with(
        "POST",
        &format!("/v1.44/images/{host}/pushed/tool/push?tag=7"),
        &[("X-Registry-Auth", &auth)],
        None,
    );
    let lines = r.json_lines();
    assert!(
        lines.iter().any(|l| l["status"] == "Layer already exists"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["aux"]["Digest"] == w.tool.manifest.to_string()),
        "{lines:?}"
    );
    // Without credentials the registry's refusal is an error line.
    let r = d.request(
        "POST",
        &format!("/v1.44/images/{host}/pushed/tool/push?tag=7"),
        None,
    );
    assert!(
        r.json_lines().last().unwrap().get("error").is_some(),
        "{}",
        r.text()
    );
    let r = d.request(
        "POST",
        &format!("/v1.44/images/{host}/pushed/nosuch/push?tag=1"),
        None,
    );
    assert_eq!(r.status, 404);
    // The registry serves what was pushed: pull it back under another name.
    d.docker(&["rmi", &dest]);
    d.docker(&["pull", &dest]);
    assert_eq!(inspect_cli(d, &dest)["Id"], w.tool.config.to_string());
    d.docker(&["logout", &host]);
    d.docker(&["rmi", &dest]);
}

fn base64_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE
        .encode(json!({"username": user, "password": password}).to_string())
}

/// docker-py 7: login, push, save, load and import_image.
fn docker_py_load_save_push_import() {
    let w = world();
    let d = &w.refengd;
    let reg = RegistryServer::basic(&[("bob", "pw")]);
    let tar = busybox_tar("py");
    let script = format!(
        r#"
import docker, json, io
c = docker.from_env(version="auto")
out = []
out.append(c.login(username="bob", password="pw", registry="{host}")["Status"])
c.api.import_image(src="{tar}", repository="py/imp", tag="1", changes=["CMD [\"/bin/sh\"]", "ENV X=y"])
img = c.images.get("py/imp:1")
out.append([img.attrs["Config"]["Cmd"], img.attrs["Config"]["Env"]])
img.tag("{host}/py/imp", "2")
lines = list(c.images.push("{host}/py/imp", tag="2", stream=True, decode=True, auth_config={{"username": "bob", "password": "pw"}}))
out.append([l["aux"]["Tag"] for l in lines if "aux" in l])
data = b"".join(img.save(named=True))
c.images.remove("py/imp:1")
c.images.remove("{host}/py/imp:2")
loaded = c.images.load(data)
out.append([sorted(i.tags) for i in loaded])
out.append(loaded[0].id == img.id)
print(json.dumps(out))
"#,
        host = reg.host(),
        tar = tar.display()
    );
    let out: Value =
        serde_json::from_str(d.python(&script).trim().lines().last().unwrap()).unwrap();
    assert_eq!(out[0], "Login Succeeded");
    assert_eq!(out[1], json!([["/bin/sh"], ["X=y"]]));
    assert_eq!(out[2], json!(["2"]));
    assert_eq!(out[3], json!([["py/imp:1"]]));
    assert_eq!(out[4], true);
    d.docker(&["rmi", "py/imp:1"]);
}

/// Login and push against a registry behind a token server: /auth asks for a token with the
/// credentials (a wrong password is a 401), and a push with X-Registry-Auth gets a push token.
fn token_registry() {
    let w = world();
    let d = &w.refengd;
    let tokens = TokenServer::builder()
        .user("carol", "pw", &["*"])
        .anonymous(&["pull"])
        .start();
    let reg = RegistryServer::token(&tokens);
    let host = reg.host();
    let login = |pw: &str| {
        d.request(
            "POST",
            "/v1.44/auth",
            Some(
                json!({"username": "carol", "password": pw, "serveraddress": host})
                    .to_string()
                    .as_bytes(),
            ),
        )
    };
    assert_eq!(login("nope").status, 401);
    let ok = login("pw");
    assert_eq!(ok.status, 200, "{}", ok.text());
    d.docker(&["pull", "-q", &w.tool.reference]);
    let dest = format!("{host}/team/tool:1");
    d.docker(&["tag", &w.tool.reference, &dest]);
    let auth = base64_auth("carol", "pw");
    let r = d.request_with(
        "POST",
        &format!("/v1.44/images/{host}/team/tool/push?tag=1"),
        &[("X-Registry-Auth", &auth)],
        None,
    );
    let lines = r.json_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["aux"]["Digest"] == w.tool.manifest.to_string()),
        "{lines:?}"
    );
    // Anonymous callers may pull but not push: the refusal is the stream's last line.
    let r = d.request(
        "POST",
        &format!("/v1.44/images/{host}/team/tool/push?tag=1"),
        None,
    );
    let last = r.json_lines().last().cloned().unwrap();
    assert!(last.get("error").is_some(), "{last}");
    d.docker(&["rmi", &dest]);
}

/// The bug behind "the loaded image vanished": a manifest containerd already had (here put
/// there by `ctr content ingest`, without labels) was kept as it was, so after the load's
/// lease ended the next collection took the config and layers it did not reference. Load now
/// adds the missing `gc.ref` labels to blobs it finds in place.
fn load_relabels() {
    let w = world();
    let d = &w.refengd;
    let tar = busybox_tar("relabel");
    d.docker(&["import", tar.to_str().unwrap(), "rl/img:1"]);
    let saved = d.dir().join("relabel-saved.tar");
    d.docker(&["save", "-o", saved.to_str().unwrap(), "rl/img:1"]);
    let v = inspect_cli(d, "rl/img:1");
    let id = v["Id"].as_str().unwrap().to_string();
    let manifest = v["RepoDigests"][0]
        .as_str()
        .unwrap()
        .split_once('@')
        .unwrap()
        .1
        .to_string();
    d.docker(&["rmi", "rl/img:1"]);
    let sock = d.dir().join("exec/containerd/containerd.sock");
    let ctr = |args: &[&str]| {
        std::process::Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["-n", "moby"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let bytes = std::process::Command::new("tar")
        .arg("xf")
        .arg(&saved)
        .arg("-O")
        .arg(format!(
            "blobs/sha256/{}",
            manifest.trim_start_matches("sha256:")
        ))
        .output()
        .unwrap()
        .stdout;
    let mut c = ctr(&["content", "ingest", "relabel-test"]);
    {
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(&bytes).unwrap();
    }
    assert!(c.wait_with_output().unwrap().status.success());
    d.docker(&["load", "-i", saved.to_str().unwrap()]);
    // A synchronous collection: another image's last name goes.
    d.docker(&["import", tar.to_str().unwrap(), "rl/other:1"]);
    d.docker(&["rmi", "rl/other:1"]);
    assert_eq!(inspect_cli(d, "rl/img:1")["Id"], id);
    let out = ctr(&["content", "ls"]).wait_with_output().unwrap();
    let ls = String::from_utf8_lossy(&out.stdout);
    let line = ls.lines().find(|l| l.starts_with(&manifest)).unwrap();
    assert!(
        line.contains(&format!("containerd.io/gc.ref.content.config={id}")),
        "{line}"
    );
    let again = d.dir().join("relabel-again.tar");
    d.docker(&["save", "-o", again.to_str().unwrap(), "rl/img:1"]);
    d.docker(&["rmi", "rl/img:1"]);
}

/// One line of a pull's output, from the JSON stream or the CLI's text: its id (a layer, a tag,
/// or none) and its status.
type PullLine = (String, String);

/// The lines of a pull's JSON stream.
fn stream_lines(lines: &[Value]) -> Vec<PullLine> {
    lines
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            match l.get("error") {
                Some(e) => (String::new(), format!("error: {e}")),
                None => (text("id"), text("status")),
            }
        })
        .collect()
}

/// The lines a CLI printed for a pull on a pipe (`id: status`, or a line alone).
fn cli_lines(out: &str) -> Vec<PullLine> {
    out.lines()
        .map(|l| match l.split_once(": ") {
            Some((id, status))
                if !id.contains(' ') && !matches!(id, "Digest" | "Status" | "Error") =>
            {
                (id.to_owned(), status.to_owned())
            }
            _ => (String::new(), l.to_owned()),
        })
        .collect()
}

/// A pull's output with what two daemons may differ in left out: of each layer only its last
/// line if that is `Pull complete` or `Already exists` (dockerd and refengd report the download
/// steps before it differently, and concurrent layers interleave), sorted, at the end of its
/// tag's part; with `layers` false no layer lines at all.
fn pull_outline(lines: &[PullLine], layers: bool) -> Vec<String> {
    let is_layer = |id: &str| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = Vec::new();
    let mut part: BTreeMap<String, String> = BTreeMap::new();
    let flush = |part: &mut BTreeMap<String, String>, out: &mut Vec<String>| {
        for (id, last) in std::mem::take(part) {
            if layers && (last == "Pull complete" || last == "Already exists") {
                out.push(format!("{id}: {last}"));
            }
        }
    };
    for (id, status) in lines {
        if is_layer(id) {
            part.insert(id.clone(), status.clone());
            continue;
        }
        if status.starts_with("Digest: ") || status.starts_with("Pulling from ") {
            flush(&mut part, &mut out);
        }
        out.push(if id.is_empty() {
            status.clone()
        } else {
            format!("{id}: {status}")
        });
    }
    flush(&mut part, &mut out);
    out
}

/// `POST /images/create?fromImage=REPO` with no tag pulls every tag of the repository in the
/// registry's order, in one stream, as dockerd does for `docker pull -a`: compared with a
/// private dockerd pulling from the same registry (three tags sharing a base layer), then the
/// images each holds, a second pull (up to date), the docker CLI's and refeng's `pull -a`, an
/// unknown repository and one whose tags were all deleted.
fn pull_all_tags() {
    let w = world();
    let registry = RegistryServer::plain();
    let host = registry.host();
    for (tag, layers) in [
        ("1", &[(21, 24 << 10)][..]),
        ("2", &[(21, 24 << 10), (22, 8 << 10)][..]),
        ("3", &[(21, 24 << 10), (23, 8 << 10)][..]),
    ] {
        push_image(
            &registry,
            &format!("test/multi:{tag}"),
            layers,
            "multi",
            "2026-04-01T00:00:00Z",
            None,
        );
    }
    push_image(
        &registry,
        "test/emptied:1",
        &[(24, 4 << 10)],
        "emptied",
        "2026-04-01T00:00:00Z",
        None,
    );
    // Every tag of test/emptied gone: the registry lists `"tags": null`.
    std::fs::remove_dir_all(
        registry
            .storage_dir()
            .join("docker/registry/v2/repositories/test/emptied/_manifests/tags/1"),
    )
    .unwrap();
    let repo = format!("{host}/test/multi");
    let dockerd = peers::dockerd::Dockerd::start();
    let sock = dockerd.dir().join("docker.sock");
    let pull_raw = |on_dockerd: bool, name: &str| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("fromImage", name)
            .finish();
        let path = format!("/v1.41/images/create?{q}");
        if on_dockerd {
            engine_support::try_request(&sock, "POST", &path, &[], None).unwrap()
        } else {
            w.refengd.request("POST", &path, None)
        }
    };
    let both = |layers: bool| -> [Vec<String>; 2] {
        [true, false].map(|on_dockerd| {
            let r = pull_raw(on_dockerd, &repo);
            assert_eq!(r.status, 200, "dockerd {on_dockerd}: {}", r.text());
            pull_outline(&stream_lines(&r.json_lines()), layers)
        })
    };
    let remove_all = || {
        for t in ["1", "2", "3"] {
            let name = format!("{repo}:{t}");
            let _ = w.refengd.docker_cmd(&["rmi", &name]).output();
            let _ = dockerd.command(&["rmi", &name]).output();
        }
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The registry's order, which is not sorted (docker-registry lists its directory).
        let listed: Vec<String> = Client::new(ClientConfig::default())
            .tags(&Reference::parse(&repo).unwrap())
            .unwrap();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(sorted, ["1", "2", "3"]);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let [theirs, ours] = both(true);
        // One pull event, for the repository (refengd's pull of one tag names the tag).
        let events = |on_dockerd: bool| -> Vec<Value> {
            let until = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 1;
            let path = format!(
                "/v1.41/events?since={since}&until={until}&filters={}",
                form_urlencoded::byte_serialize(br#"{"type":["image"]}"#).collect::<String>()
            );
            let r = if on_dockerd {
                engine_support::try_request(&sock, "GET", &path, &[], None).unwrap()
            } else {
                w.refengd.request("GET", &path, None)
            };
            // Whole seconds can reach back to the test before: only this registry's images.
            r.json_lines()
                .iter()
                .filter(|e| {
                    e["Actor"]["ID"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&host))
                })
                .map(|e| json!([e["Action"], e["Actor"]]))
                .collect()
        };
        let theirs_events = events(true);
        assert_eq!(
            theirs_events,
            [json!(["pull", {"ID": repo, "Attributes": {"name": repo}}])]
        );
        assert_eq!(events(false), theirs_events, "events");
        let pulling: Vec<String> = listed
            .iter()
            .map(|t| format!("{t}: Pulling from test/multi"))
            .collect();
        assert_eq!(
            theirs
                .iter()
                .filter(|l| l.contains("Pulling from"))
                .cloned()
                .collect::<Vec<_>>(),
            pulling,
            "{theirs:#?}"
        );
        assert_eq!(
            theirs
                .iter()
                .filter(|l| l.ends_with("Already exists"))
                .count(),
            2,
            "the base layer exists for the second and third tag: {theirs:#?}"
        );
        assert_eq!(
            theirs.last().map(String::as_str),
            Some(format!("Status: Downloaded newer image for {repo}").as_str())
        );
        assert_eq!(ours, theirs, "refengd (left) and dockerd (right)");
        // The same images, named alike.
        let images = |on_dockerd: bool| -> BTreeSet<String> {
            let path = format!(
                "/v1.41/images/json?filters={}",
                form_urlencoded::byte_serialize(
                    json!({"reference": [repo.clone()]}).to_string().as_bytes()
                )
                .collect::<String>()
            );
            let v = if on_dockerd {
                engine_support::try_request(&sock, "GET", &path, &[], None)
                    .unwrap()
                    .json()
            } else {
                w.refengd.request("GET", &path, None).json()
            };
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| format!("{} {}", i["Id"], i["RepoTags"]))
                .collect()
        };
        let theirs = images(true);
        assert_eq!(theirs.len(), 3, "{theirs:?}");
        assert_eq!(images(false), theirs);
        // Again: nothing new, and no layer lines for images the daemon has.
        let [theirs, ours] = both(true);
        assert_eq!(
            theirs.last().map(String::as_str),
            Some(format!("Status: Image is up to date for {repo}").as_str())
        );
        assert_eq!(theirs.len(), 7, "{theirs:#?}");
        assert_eq!(
            ours, theirs,
            "refengd (left) and dockerd (right), up to date"
        );
        // The docker CLI 28 and refeng, each on both daemons, from nothing.
        let mut outlines = Vec::new();
        for program in [engine_support::DOCKER_CLI, env!("CARGO_BIN_EXE_refeng")] {
            for daemon in [dockerd.host(), w.refengd.host()] {
                remove_all();
                let out = std::process::Command::new(program)
                    .args(["pull", "-a", &repo])
                    .env("DOCKER_HOST", &daemon)
                    .env("DOCKER_CONFIG", w.refengd.dir().join("cli"))
                    .env_remove("DOCKER_CONTEXT")
                    .env_remove("DOCKER_API_VERSION")
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "{program} on {daemon}: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                outlines.push((program, daemon, pull_outline(&cli_lines(&text), true)));
            }
        }
        let (_, _, first) = &outlines[0];
        assert_eq!(first.last(), Some(&repo), "{first:#?}");
        assert!(
            first.iter().any(|l| l.ends_with("Already exists")),
            "{first:#?}"
        );
        for (program, daemon, o) in &outlines[1..] {
            assert_eq!(
                o, first,
                "{program} on {daemon} (left), docker on dockerd (right)"
            );
        }
        // One tag again, whose base layer the other tags' images hold (the CLI loop left
        // dockerd without them).
        both(true);
        let two = format!("{repo}:2");
        let _ = w.refengd.docker_cmd(&["rmi", &two]).output();
        let _ = dockerd.command(&["rmi", &two]).output();
        let [theirs, ours] = [true, false].map(|on_dockerd| {
            let r = pull_raw(on_dockerd, &two);
            assert_eq!(r.status, 200, "dockerd {on_dockerd}: {}", r.text());
            pull_outline(&stream_lines(&r.json_lines()), true)
        });
        assert_eq!(
            theirs
                .iter()
                .filter(|l| l.ends_with(": Already exists"))
                .count(),
            1,
            "{theirs:#?}"
        );
        assert_eq!(ours, theirs, "refengd (left) and dockerd (right), one tag");
        // An unknown repository, and one without tags.
        for name in [
            format!("{host}/test/nosuch"),
            format!("{host}/test/emptied"),
        ] {
            let [d, g] = [true, false].map(|on_dockerd| {
                let r = pull_raw(on_dockerd, &name);
                let body = if r.status == 200 {
                    r.json_lines()
                } else {
                    vec![r.json()]
                };
                (r.status, body)
            });
            assert_eq!(g, d, "{name}: refengd (left) and dockerd (right)");
        }
        let d = pull_raw(true, &format!("{host}/test/nosuch"));
        assert_eq!(d.status, 404, "{}", d.text());
    }));
    remove_all();
    drop(dockerd);
    drop(registry);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}
