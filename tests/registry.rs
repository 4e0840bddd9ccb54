//! The registry client against Debian's docker-registry on loopback: plain, with basic auth,
//! and with token auth from the test's own token server (`tests/registry_support`). Pushes an
//! imported image and pulls it back by tag and by digest, resolves a multi-platform index,
//! resumes cut downloads, mounts across repositories, uploads in chunks, and shows that wrong
//! credentials, missing rights, missing tags and schema1 registries give clear errors.

mod registry_images;
mod registry_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use refeng::image::archive::{self, RootfsImport};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::format::PlatformWanted;
use refeng::image::layer::ApplyOptions;
use refeng::image::registry::auth::{CredentialStore, Credentials, DockerConfig};
use refeng::image::registry::{
    Client, ClientConfig, NoProgress, ProgressEvent, Pulled, RecordedProgress, Reference,
    RegistryError,
};
use refeng::image::snapshot::{Backend, Snapshotter};

use registry_support::{CutProxy, RegistryServer, TokenServer};

/// Pulls without unpacking or progress.
fn pull(c: &Client, r: &Reference, into: &ContentStore) -> Result<Pulled, RegistryError> {
    c.pull(r, into, None, &NoProgress)
}

/// Pushes without progress.
fn push(
    c: &Client,
    from: &ContentStore,
    local: &str,
    dest: &Reference,
) -> Result<Digest, RegistryError> {
    c.push(from, local, dest, &NoProgress)
}

fn store(dir: &Path, name: &str) -> ContentStore {
    ContentStore::open(dir.join(name), Limits::default()).unwrap()
}

fn client() -> Client {
    Client::new(ClientConfig::default())
}

fn client_as(registry: &str, user: &str, password: &str) -> Client {
    Client::new(ClientConfig {
        credentials: CredentialStore::default().with(
            registry,
            Credentials::Basic {
                username: user.into(),
                password: password.into(),
            },
        ),
        ..ClientConfig::default()
    })
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A `docker import` of a busybox rootfs: one layer, as `local/busybox:1`.
fn imported_busybox(dir: &Path, content: &ContentStore) -> Digest {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let st = Command::new("cp")
        .args(["/bin/busybox", root.join("bin/busybox").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .args([
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    archive::import_rootfs(
        content,
        std::fs::File::open(&tar).unwrap(),
        "local/busybox:1",
        &RootfsImport {
            cmd: vec!["/bin/sh".into()],
            env: vec![],
            platform: None,
            created: Some("2026-01-01T00:00:00Z".into()),
            ..RootfsImport::default()
        },
    )
    .unwrap()
}

/// Manifest, config and layer digests of a stored image, for comparing two stores.
fn digests(content: &ContentStore, target: &Digest) -> Vec<Digest> {
    let r = refeng::image::unpack::resolve(content, target, &PlatformWanted::host()).unwrap();
    let mut v = vec![r.manifest, r.config];
    v.extend(r.layers);
    v
}

fn snapshotter(dir: &Path) -> Snapshotter {
    let backend = Backend::detect(dir);
    Snapshotter::open(dir.join("snapshots"), backend).unwrap()
}

#[test]
fn push_imported_image_then_pull_by_tag_and_digest() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let local = imported_busybox(dir.path(), &src);
    let c = client();
    let dest = reference(&format!("{}/refeng/busybox:1", reg.host()));
    let progress = RecordedProgress::default();
    let pushed = c.push(&src, "local/busybox:1", &dest, &progress).unwrap();
    assert_eq!(pushed, local);
    let events = progress.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProgressEvent::ManifestPushed { tag, digest, .. } if tag == "1" && digest == &local)),
        "{events:?}"
    );

    // By tag, unpacked as it arrives: the busybox binary is in the top snapshot.
    let by_tag = store(dir.path(), "by-tag");
    let snaps = snapshotter(&dir.path().join("s1"));
    let pulled = c
        .pull(
            &dest,
            &by_tag,
            Some((&snaps, &ApplyOptions::default())),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(pulled.target, local);
    assert_eq!(digests(&by_tag, &pulled.target), digests(&src, &local));
    let top = pulled.top.expect("unpacked");
    let bin = snaps.fs_dir(&top.to_string()).unwrap().join("bin/busybox");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        by_tag.metadata().unwrap().references.get(&dest.to_string()),
        Some(&local)
    );

    // By digest, into another store: the same digests all the way down.
    let by_digest = store(dir.path(), "by-digest");
    let pinned = reference(&format!("{}/refeng/busybox@{local}", reg.host()));
    let pulled = pull(&c, &pinned, &by_digest).unwrap();
    assert_eq!(pulled.target, local);
    assert_eq!(digests(&by_digest, &local), digests(&src, &local));

    // A second pull into the same store downloads nothing.
    let progress = RecordedProgress::default();
    c.pull(&dest, &by_tag, None, &progress).unwrap();
    let events = progress.events();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, ProgressEvent::Downloading { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::AlreadyExists { .. })));
}

#[test]
fn multi_platform_index_resolves_to_the_asked_platform() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (amd, amd_size) = registry_images::image(&src, "amd64", &[(1, 20_000), (2, 1000)]);
    let (arm, arm_size) = registry_images::image(&src, "arm64", &[(3, 30_000)]);
    let index = registry_images::index(
        &src,
        &[
            (amd.clone(), amd_size, "amd64"),
            (arm.clone(), arm_size, "arm64"),
        ],
    );
    src.set_reference("local/multi:1", &index).unwrap();
    let dest = reference(&format!("{}/multi/app:1", reg.host()));
    assert_eq!(
        push(&client(), &src, "local/multi:1", &dest).unwrap(),
        index
    );
    for (arch, want, layer_seed) in [("amd64", &amd, 1), ("arm64", &arm, 3)] {
        let c = Client::new(ClientConfig {
            platform: PlatformWanted {
                os: "linux".into(),
                architecture: arch.into(),
                variant: None,
            },
            ..ClientConfig::default()
        });
        let into = store(dir.path(), arch);
        let pulled = pull(&c, &dest, &into).unwrap();
        assert_eq!(pulled.target, index, "the name points at the index");
        assert_eq!(&pulled.resolved.manifest, want, "{arch}");
        let (layer, _) =
            registry_images::layer(layer_seed, if layer_seed == 1 { 20_000 } else { 30_000 });
        assert_eq!(pulled.resolved.layers[0], Digest::sha256(&layer), "{arch}");
        // Only the platform's blobs were fetched.
        let other = if arch == "amd64" { &arm } else { &amd };
        assert!(
            !into.contains(other),
            "{arch} pulled the other platform's manifest"
        );
    }
    let c = Client::new(ClientConfig {
        platform: PlatformWanted {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..ClientConfig::default()
    });
    let e = pull(&c, &dest, &store(dir.path(), "none")).unwrap_err();
    assert!(
        format!("{e:#}").contains("linux/s390x") || error_chain(&e).contains("linux/s390x"),
        "{}",
        error_chain(&e)
    );
}

/// An error and its sources, as a user would see them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn a_cut_download_resumes_with_range() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(7, 2 << 20)]);
    src.set_reference("local/big:1", &m).unwrap();
    push(
        &client(),
        &src,
        "local/big:1",
        &reference(&format!("{}/big/one:1", reg.host())),
    )
    .unwrap();
    let (blob, _) = registry_images::layer(7, 2 << 20);
    let layer = Digest::sha256(&blob);

    // Within one pull: the connection is cut after 300000 bytes and the client continues.
    let proxy = CutProxy::start(&reg.host());
    proxy.cut_next_blob_get(300_000);
    let via = reference(&format!("{}/big/one:1", proxy.host()));
    let into = store(dir.path(), "one-pull");
    let progress = RecordedProgress::default();
    let pulled = client().pull(&via, &into, None, &progress).unwrap();
    assert_eq!(pulled.target, m);
    assert_eq!(into.info(&layer).unwrap().size, blob.len() as u64);
    let ranges: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.is_blob_get() && r.path().ends_with(&layer.to_string()))
        .filter_map(|r| r.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec!["bytes=300000-".to_string()]);
    assert!(progress.events().iter().any(|e| matches!(
        e,
        ProgressEvent::Resuming {
            offset: 300_000,
            ..
        }
    )));

    // Across pulls: with no retries the first pull fails, keeps its bytes, and the next pull
    // asks only for the rest.
    let proxy = CutProxy::start(&reg.host());
    proxy.cut_next_blob_get(500_000);
    let via = reference(&format!("{}/big/one:1", proxy.host()));
    let into = store(dir.path(), "two-pulls");
    let once = Client::new(ClientConfig {
        max_attempts: 1,
        ..ClientConfig::default()
    });
    let e = pull(&once, &via, &into).unwrap_err();
    assert!(
        matches!(e, RegistryError::DownloadFailed { .. }),
        "{}",
        error_chain(&e)
    );
    assert!(e.to_string().contains("the next pull continues"), "{e}");
    assert!(!into.contains(&layer));
    let pulled = pull(&client(), &via, &into).unwrap();
    assert_eq!(pulled.target, m);
    assert!(into.contains(&layer));
    let ranges: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.is_blob_get() && r.path().ends_with(&layer.to_string()))
        .filter_map(|r| r.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec!["bytes=500000-".to_string()]);
}

#[test]
fn basic_auth_from_docker_config_and_wrong_credentials() {
    let reg = RegistryServer::basic(&[("alice", "s3cret")]);
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(11, 5000)]);
    src.set_reference("local/a:1", &m).unwrap();
    let dest = reference(&format!("{}/private/a:1", reg.host()));

    // Credentials from a docker config.json, keyed the way `docker login` writes them.
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths": {{"http://{}/v2/": {{"auth": "YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let from_config = Client::new(ClientConfig {
        credentials: CredentialStore {
            config: DockerConfig::load_if_exists(&config).unwrap(),
            ..CredentialStore::default()
        },
        ..ClientConfig::default()
    });
    push(&from_config, &src, "local/a:1", &dest).unwrap();
    let pulled = pull(&from_config, &dest, &store(dir.path(), "ok")).unwrap();
    assert_eq!(pulled.target, m);

    let wrong = client_as(&reg.host(), "alice", "wrong");
    let e = pull(&wrong, &dest, &store(dir.path(), "wrong")).unwrap_err();
    assert!(
        matches!(e, RegistryError::WrongCredentials { .. }),
        "{}",
        error_chain(&e)
    );
    assert_eq!(
        e.to_string(),
        format!("wrong username or password for registry {}", reg.host())
    );
    let e = pull(&client(), &dest, &store(dir.path(), "anon")).unwrap_err();
    assert!(
        matches!(e, RegistryError::AuthRequired { .. }),
        "{}",
        error_chain(&e)
    );
    assert!(e.to_string().contains("requires authentication"), "{e}");
}

#[test]
fn token_auth_scopes_refresh_and_mounts() {
    let tokens = TokenServer::builder()
        .user("alice", "pw", &["*"])
        .user("reader", "pw", &["pull"])
        .anonymous(&["pull"])
        .expires_in(1)
        .start();
    let reg = RegistryServer::token(&tokens);
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(21, 50_000), (22, 70_000)]);
    src.set_reference("local/t:1", &m).unwrap();
    let dest = reference(&format!("{}/team/app:1", reg.host()));

    let alice = client_as(&reg.host(), "alice", "pw");
    push(&alice, &src, "local/t:1", &dest).unwrap();

    // A reader pulls; the token lives 1 s, so a pull 2 s later asks for a new one.
    let reader = client_as(&reg.host(), "reader", "pw");
    let into = store(dir.path(), "reader");
    assert_eq!(pull(&reader, &dest, &into).unwrap().target, m);
    let before = reader_pull_tokens(&tokens);
    assert!(before >= 1);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    pull(&reader, &dest, &store(dir.path(), "reader2")).unwrap();
    assert!(
        reader_pull_tokens(&tokens) > before,
        "the expired token was not refreshed"
    );

    // Listing tags authenticates as a pull does: a fresh client asks for a pull token first.
    let lister = client_as(&reg.host(), "reader", "pw");
    let before = reader_pull_tokens(&tokens);
    assert_eq!(lister.tags(&dest).unwrap(), ["1"]);
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("reader")
                && r.status == 200
                && r.scopes == ["repository:team/app:pull"]),
        "{:?}",
        tokens.requests()
    );
    assert!(reader_pull_tokens(&tokens) > before);
    let e = lister
        .tags(&reference(&format!("{}/team/none", reg.host())))
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::Refused { status: 404, code, message, .. }
            if code == "NAME_UNKNOWN" && message == "repository name not known to registry"),
        "{}",
        error_chain(&e)
    );

    // The reader may not push: a clear refusal, not a loop.
    let e = push(
        &reader,
        &src,
        "local/t:1",
        &reference(&format!("{}/team/copy:1", reg.host())),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::InsufficientScope {
                authenticated: true,
                ..
            }
        ),
        "{}",
        error_chain(&e)
    );
    assert!(
        e.to_string().starts_with("access denied by registry"),
        "{e}"
    );

    // Anonymous users get a pull token without credentials, and a clear refusal to push.
    let anonymous = client();
    assert_eq!(
        pull(&anonymous, &dest, &store(dir.path(), "anon"))
            .unwrap()
            .target,
        m
    );
    assert!(tokens
        .requests()
        .iter()
        .any(|r| r.user.is_none() && r.status == 200));
    let e = push(
        &anonymous,
        &src,
        "local/t:1",
        &reference(&format!("{}/team/anon:1", reg.host())),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::InsufficientScope {
                authenticated: false,
                ..
            }
        ),
        "{}",
        error_chain(&e)
    );
    assert!(
        e.to_string().contains("anonymous users lack the rights"),
        "{e}"
    );

    // Wrong password at the token service.
    let e = pull(
        &client_as(&reg.host(), "alice", "nope"),
        &dest,
        &store(dir.path(), "x"),
    )
    .unwrap_err();
    assert!(
        matches!(e, RegistryError::WrongCredentials { .. }),
        "{}",
        error_chain(&e)
    );

    // What alice pulled from team/app is mounted, not uploaded, into team/mirror.
    let pulled_store = store(dir.path(), "alice");
    pull(&alice, &dest, &pulled_store).unwrap();
    let progress = RecordedProgress::default();
    alice
        .push(
            &pulled_store,
            &dest.to_string(),
            &reference(&format!("{}/team/mirror:1", reg.host())),
            &progress,
        )
        .unwrap();
    let events = progress.events();
    let mounted = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Mounted { from, .. } if from == "team/app"))
        .count();
    assert_eq!(mounted, 3, "config and both layers mounted: {events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProgressEvent::Pushing { .. })),
        "{events:?}"
    );
}

fn reader_pull_tokens(tokens: &TokenServer) -> usize {
    tokens
        .requests()
        .iter()
        .filter(|r| r.user.as_deref() == Some("reader") && r.status == 200)
        .count()
}

#[test]
fn chunked_upload_follows_each_location() {
    let reg = RegistryServer::plain();
    let proxy = CutProxy::start(&reg.host());
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(31, 1 << 20), (32, 100)]);
    src.set_reference("local/c:1", &m).unwrap();
    let c = Client::new(ClientConfig {
        chunk_size: 256 << 10,
        ..ClientConfig::default()
    });
    let dest = reference(&format!("{}/chunks/c:1", proxy.host()));
    push(&c, &src, "local/c:1", &dest).unwrap();
    let reqs = proxy.requests();
    let patches: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    // The 1 MiB layer (gzip of noise is a little larger) goes in 5 chunks of 256 KiB.
    assert_eq!(patches.len(), 5, "{reqs:?}");
    let ranges: Vec<&str> = patches
        .iter()
        .filter_map(|r| r.header("content-range"))
        .collect();
    assert_eq!(ranges[0], "0-262143");
    assert_eq!(ranges[1], "262144-524287");
    // Each PATCH went to the Location of the answer before it, not to a fixed URL.
    let targets: std::collections::BTreeSet<_> = patches.iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets.len(), patches.len(), "{targets:?}");
    // Small blobs go in one PUT.
    let puts_with_body = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
        .filter(|r| r.header("content-length").is_some_and(|l| l != "0"))
        .count();
    assert_eq!(puts_with_body, 2, "config and the small layer");
    let back = pull(
        &client(),
        &reference(&format!("{}/chunks/c:1", reg.host())),
        &store(dir.path(), "back"),
    )
    .unwrap();
    assert_eq!(back.target, m);
}

#[test]
fn registry_errors_in_plain_words() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(41, 100)]);
    src.set_reference("local/e:1", &m).unwrap();
    push(
        &client(),
        &src,
        "local/e:1",
        &reference(&format!("{}/errs/e:1", reg.host())),
    )
    .unwrap();
    let e = pull(
        &client(),
        &reference(&format!("{}/errs/e:nosuchtag", reg.host())),
        &store(dir.path(), "a"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("pull {}/errs/e:nosuchtag: no such manifest: the tag or digest does not exist in this repository (HTTP 404, MANIFEST_UNKNOWN: manifest unknown)", reg.host())
    );
    let e = pull(
        &client(),
        &reference(&format!("{}/nobody/here:1", reg.host())),
        &store(dir.path(), "b"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("repository not found")
            || e.to_string().contains("no such manifest"),
        "{e}"
    );
    let e = push(
        &client(),
        &src,
        "local/missing:1",
        &reference(&format!("{}/errs/e:2", reg.host())),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no image named \"local/missing:1\" in the content store"
    );
    // Nothing listens: the error names the registry.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = pull(
        &Client::new(ClientConfig {
            max_attempts: 1,
            ..ClientConfig::default()
        }),
        &reference(&format!("127.0.0.1:{port}/x:1")),
        &store(dir.path(), "c"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{e}"
    );
    // A non-loopback registry is never spoken to in plain HTTP unless configured insecure.
    let c = client();
    assert!(!c.is_insecure("10.0.0.1:5000"));
    assert!(Client::new(ClientConfig {
        insecure_registries: vec!["10.0.0.1:5000".into()],
        ..ClientConfig::default()
    })
    .is_insecure("10.0.0.1:5000"));
}

/// A server on loopback answering every manifest GET with `body` labelled `content_type` (what
/// some registries and their storage do); everything else gets 404 (a HEAD too, so the client
/// falls back to GET). Serves until dropped.
fn manifest_server(content_type: &'static str, body: Vec<u8>) -> registry_support::Listener {
    registry_support::Listener::start(move |mut s| {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        if head.starts_with("GET /v2/") && head.contains("/manifests/") {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        } else if head.contains(" HTTP/1.1") {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        // Anything else is the client's HTTPS probe: closed unanswered.
    })
}

#[test]
fn a_manifest_labelled_application_json_is_read_by_its_own_media_type() {
    // The manifest parses and names a config this server does not have: the pull gets as far
    // as the config, which proves the manifest was accepted despite its content type.
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(71, 100)]);
    let server = manifest_server("application/json", src.read_small(&m).unwrap());
    let port = server.addr().port();
    let e = pull(
        &client(),
        &reference(&format!("127.0.0.1:{port}/lax:1")),
        &store(dir.path(), "s"),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "pull blob {} of",
            registry_images::config_digest(&src, &m)
        )),
        "{}",
        error_chain(&e)
    );
    drop(server);
}

/// A registry that serves only a schema1 manifest (as registries of before 2017 did).
#[test]
fn a_schema1_registry_is_refused_clearly() {
    let body = br#"{"schemaVersion":1,"name":"old","tag":"1","fsLayers":[],"history":[]}"#;
    let server = manifest_server(
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        body.to_vec(),
    );
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let e = pull(
        &client(),
        &reference(&format!("127.0.0.1:{port}/old:1")),
        &store(dir.path(), "s"),
    )
    .unwrap_err();
    assert!(
        matches!(e, RegistryError::Schema1 { .. }),
        "{}",
        error_chain(&e)
    );
    assert!(e.to_string().contains("schema1"), "{e}");
    drop(server);
}

/// A client that treats loopback like any other registry: TLS verified, no plain HTTP.
fn strict_client(certs_dir: Option<&Path>) -> Client {
    Client::new(ClientConfig {
        loopback_insecure: false,
        certs_dir: certs_dir.map(Path::to_path_buf),
        max_attempts: 1,
        ..ClientConfig::default()
    })
}

#[test]
fn tls_registries_trust_certs_d_and_client_certificates() {
    let ca = registry_support::TestCa::new();
    let reg = RegistryServer::tls(&ca, false);
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(51, 10_000)]);
    src.set_reference("local/tls:1", &m).unwrap();
    let dest = reference(&format!("{}/tls/app:1", reg.host()));

    // Loopback is insecure by default: HTTPS without verification (the registry speaks no
    // plain HTTP, so success means TLS was used).
    push(&client(), &src, "local/tls:1", &dest).unwrap();

    // Verified: an unknown CA is refused, naming the registry.
    let e = pull(&strict_client(None), &dest, &store(dir.path(), "a")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach registry {}", reg.host())),
        "{e}"
    );
    assert!(
        error_chain(&e).to_lowercase().contains("certificate"),
        "{}",
        error_chain(&e)
    );

    // With the CA in certs.d/<host:port>/ca.crt, as `docker` reads /etc/docker/certs.d.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(reg.host())).unwrap();
    std::fs::copy(ca.cert(), certs.join(reg.host()).join("ca.crt")).unwrap();
    let pulled = pull(&strict_client(Some(&certs)), &dest, &store(dir.path(), "b")).unwrap();
    assert_eq!(pulled.target, m);

    // A registry demanding client certificates: refused without, served with client.cert/.key.
    let mtls = RegistryServer::tls(&ca, true);
    let dest = reference(&format!("{}/tls/app:1", mtls.host()));
    std::fs::create_dir_all(certs.join(mtls.host())).unwrap();
    std::fs::copy(ca.cert(), certs.join(mtls.host()).join("ca.crt")).unwrap();
    let e = push(&strict_client(Some(&certs)), &src, "local/tls:1", &dest).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot reach registry"),
        "{}",
        error_chain(&e)
    );
    let (crt, key) = ca.issue("client", "clientAuth");
    std::fs::copy(crt, certs.join(mtls.host()).join("client.cert")).unwrap();
    std::fs::copy(key, certs.join(mtls.host()).join("client.key")).unwrap();
    push(&strict_client(Some(&certs)), &src, "local/tls:1", &dest).unwrap();
}

#[test]
fn concurrent_pulls_into_one_store_share_blobs() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(
        &src,
        "amd64",
        &[(61, 1 << 20), (62, 1 << 20), (63, 300_000)],
    );
    src.set_reference("local/cc:1", &m).unwrap();
    let dest = reference(&format!("{}/cc/app:1", reg.host()));
    push(&client(), &src, "local/cc:1", &dest).unwrap();
    let shared = store(dir.path(), "shared");
    let snaps = snapshotter(&dir.path().join("s"));
    let c = client();
    let tops: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    c.pull(
                        &dest,
                        &shared,
                        Some((&snaps, &ApplyOptions::default())),
                        &NoProgress,
                    )
                    .unwrap()
                    .top
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        tops.iter().all(|t| t.is_some() && *t == tops[0]),
        "{tops:?}"
    );
    assert_eq!(digests(&shared, &m), digests(&src, &m));
    for l in &digests(&src, &m)[2..] {
        assert_eq!(shared.info(l).unwrap().size, src.info(l).unwrap().size);
    }
}

#[test]
fn pulling_what_the_store_has_fetches_nothing() {
    let reg = RegistryServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = store(dir.path(), "src");
    let (m, _) = registry_images::image(&src, "amd64", &[(81, 50_000)]);
    src.set_reference("local/again:1", &m).unwrap();
    push(
        &client(),
        &src,
        "local/again:1",
        &reference(&format!("{}/again/app:1", reg.host())),
    )
    .unwrap();
    let proxy = CutProxy::start(&reg.host());
    let via = reference(&format!("{}/again/app:1", proxy.host()));
    let into = store(dir.path(), "into");
    pull(&client(), &via, &into).unwrap();
    let first = proxy.requests().len();
    // Again: the tag is checked with HEAD and nothing else is asked for.
    assert_eq!(pull(&client(), &via, &into).unwrap().target, m);
    let again: Vec<String> = proxy.requests()[first..]
        .iter()
        .filter(|r| r.path().starts_with("/v2/again/"))
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(again, vec!["HEAD /v2/again/app/manifests/1".to_string()]);
    // By digest: not even that.
    let before = proxy.requests().len();
    pull(
        &client(),
        &reference(&format!("{}/again/app@{m}", proxy.host())),
        &into,
    )
    .unwrap();
    assert!(proxy.requests()[before..]
        .iter()
        .all(|r| !r.path().starts_with("/v2/again/")));
}

/// A registry that answers `GET /v2/<repo>/tags/list` from `pages` (the request target with
/// its query, then the `Link` header to send, if any, with `SELF` for its own URL, and the
/// tags) and records each target asked for; anything else gets 404 `NAME_UNKNOWN`.
fn tag_server(
    pages: Vec<(String, Option<String>, Vec<&'static str>)>,
) -> (
    registry_support::Listener,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    let server = registry_support::Listener::start(move |mut s| {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        let Some(target) = head
            .strip_prefix("GET ")
            .and_then(|h| h.split(' ').next())
            .map(str::to_owned)
        else {
            if head.contains(" HTTP/1.1") {
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
            return;
        };
        log.lock().unwrap().push(target.clone());
        match pages.iter().find(|(t, _, _)| *t == target) {
            Some((_, link, tags)) => {
                let body = serde_json::json!({"name": "r", "tags": tags}).to_string();
                let me = format!("http://{}", s.local_addr().unwrap());
                let link = link
                    .as_ref()
                    .map(|l| format!("Link: {}\r\n", l.replace("SELF", &me)))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            None => {
                let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    (server, asked)
}

#[test]
fn tag_lists_follow_next_links_and_last() {
    let page = |t: &str, link: Option<&str>, tags: Vec<&'static str>| {
        (t.to_owned(), link.map(str::to_owned), tags)
    };
    // Links: absolute on the same registry (`SELF` is the server's own URL), then relative.
    let (server, asked) = tag_server(vec![
        page(
            "/v2/linked/tags/list?n=2",
            Some(r#"<SELF/v2/linked/tags/list?n=2&last=b>; rel="next""#),
            vec!["b", "a"],
        ),
        page(
            "/v2/linked/tags/list?n=2&last=b",
            Some(r#"<list?n=2&last=d>; rel="next""#),
            vec!["d", "c"],
        ),
        page("/v2/linked/tags/list?n=2&last=d", None, vec!["e"]),
        // No links: a full page asks again from its last tag.
        page("/v2/unlinked/tags/list?n=2", None, vec!["1", "2"]),
        page("/v2/unlinked/tags/list?n=2&last=2", None, vec!["3", "4"]),
        page("/v2/unlinked/tags/list?n=2&last=4", None, vec![]),
        // A registry that ignores `last`: its first page again ends the listing.
        page("/v2/stuck/tags/list?n=1", None, vec!["x"]),
        page("/v2/stuck/tags/list?n=1&last=x", None, vec!["x"]),
        // A link back to itself.
        page(
            "/v2/loop/tags/list",
            Some(r#"</v2/loop/tags/list>; rel="next""#),
            vec!["v1"],
        ),
        // A link to another host would take the credentials along.
        page(
            "/v2/away/tags/list",
            Some(r#"<http://10.0.0.1/v2/away/tags/list?last=a>; rel="next""#),
            vec!["a"],
        ),
        page("/v2/empty/tags/list", None, vec![]),
        page("/v2/bad/tags/list", None, vec!["ok", "-bad"]),
    ]);
    let host = format!("127.0.0.1:{}", server.addr().port());
    let c = client();
    let r = |repo: &str| reference(&format!("{host}/{repo}"));
    assert_eq!(
        c.tags_paged(&r("linked"), Some(2)).unwrap(),
        ["b", "a", "d", "c", "e"]
    );
    assert_eq!(
        c.tags_paged(&r("unlinked"), Some(2)).unwrap(),
        ["1", "2", "3", "4"]
    );
    assert_eq!(c.tags_paged(&r("stuck"), Some(1)).unwrap(), ["x"]);
    assert_eq!(c.tags(&r("loop")).unwrap(), ["v1"]);
    assert!(c.tags(&r("empty")).unwrap().is_empty());
    // Without a page size, no `n` and no `last`: only links lead on.
    assert_eq!(c.tags(&r("unlinked:9")).unwrap_err().to_string(), format!("list tags of {host}/unlinked: repository not found (it does not exist or you may not read it) (HTTP 404, NAME_UNKNOWN: repository name not known to registry)"));
    let e = c.tags(&r("away")).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Protocol { what, .. } if what.contains("off the registry")),
        "{}",
        error_chain(&e)
    );
    let e = c.tags(&r("bad")).unwrap_err();
    assert!(
        error_chain(&e).contains(r#""-bad", which is not a valid tag"#),
        "{}",
        error_chain(&e)
    );
    let asked = asked.lock().unwrap().clone();
    for want in [
        "/v2/linked/tags/list?n=2&last=d",
        "/v2/unlinked/tags/list?n=2&last=4",
        "/v2/stuck/tags/list?n=1&last=x",
    ] {
        assert!(
            asked.iter().any(|a| a == want),
            "{want} not asked: {asked:?}"
        );
    }
    assert_eq!(
        asked.iter().filter(|a| a.starts_with("/v2/loop/")).count(),
        2,
        "{asked:?}"
    );
    assert!(
        !asked
            .iter()
            .any(|a| a.contains("away") && a.contains("last")),
        "{asked:?}"
    );
    drop(server);
}
