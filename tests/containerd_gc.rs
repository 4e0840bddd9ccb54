//! Garbage collection and crash safety of refeng-containerd: what leases, images, gc.root and
//! gc.ref labels hold is kept and everything else goes after a delete (records and bytes);
//! `ctr leases` gives containerd's transcript; and a `kill -9` in the middle of an import leaves
//! a store where every record's bytes are there and the import can simply be run again.

mod containerd_support;

use std::collections::HashMap;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest, DeleteImageRequest, DeleteRequest, Image, InfoRequest,
    UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use containerd_support::{channel, req, transcript, Daemon, Peer};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// Writes `data` as a blob in `ns` (under `lease`, if any) with `labels`; returns its digest.
async fn put(
    ch: &Channel,
    ns: &str,
    lease: Option<&str>,
    data: &[u8],
    labels: &[(&str, &str)],
) -> String {
    let dg = sha256(data);
    let m = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: format!("ref-{dg}"),
        total: data.len() as i64,
        expected: dg.clone(),
        offset: 0,
        data: data.to_vec(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut r = req(ns, tokio_stream::iter(vec![m]));
    if let Some(l) = lease {
        r.metadata_mut()
            .insert("containerd-lease", l.parse().unwrap());
    }
    let mut out = ContentClient::new(ch.clone())
        .write(r)
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = out.next().await {
        // Content another namespace has already is shared, as Go's client takes it.
        if let Err(e) = m {
            assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
        }
    }
    dg
}

async fn exists(ch: &Channel, ns: &str, dg: &str) -> bool {
    ContentClient::new(ch.clone())
        .info(req(ns, InfoRequest { digest: dg.into() }))
        .await
        .is_ok()
}

fn blob_file(d: &Daemon, dg: &str) -> bool {
    d.root()
        .join("io.containerd.content.v1.content/blobs/sha256")
        .join(dg.trim_start_matches("sha256:"))
        .exists()
}

async fn lease(ch: &Channel, ns: &str, id: &str, labels: &[(&str, &str)]) {
    LeasesClient::new(ch.clone())
        .create(req(
            ns,
            CreateRequest {
                id: id.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        ))
        .await
        .unwrap();
}

async fn delete_lease(ch: &Channel, ns: &str, id: &str) {
    LeasesClient::new(ch.clone())
        .delete(req(
            ns,
            DeleteRequest {
                id: id.into(),
                sync: true,
            },
        ))
        .await
        .unwrap();
}

#[test]
fn collection_keeps_what_is_referenced_and_removes_the_rest() {
    let d = Daemon::start(Peer::Refeng);
    rt().block_on(async {
        let ch = channel(&d).await;
        // Under a lease: kept while it lives, gone (record and file) when it is deleted.
        lease(&ch, "a", "l1", &[]).await;
        let leased = put(&ch, "a", Some("l1"), b"leased", &[]).await;
        let root = put(&ch, "a", None, b"root", &[("containerd.io/gc.root", "x")]).await;
        let layer = put(&ch, "a", Some("l1"), b"layer", &[]).await;
        let manifest = put(
            &ch,
            "a",
            Some("l1"),
            b"manifest",
            &[("containerd.io/gc.ref.content.l.0", &layer)],
        )
        .await;
        ImagesClient::new(ch.clone())
            .create(req(
                "a",
                CreateImageRequest {
                    image: Some(Image {
                        name: "img".into(),
                        target: Some(Descriptor {
                            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                            digest: manifest.clone(),
                            size: 8,
                            annotations: HashMap::new(),
                        }),
                        ..Default::default()
                    }),
                    source_date_epoch: None,
                },
            ))
            .await
            .unwrap();
        // The same bytes in another namespace, unreferenced there but under a lease.
        lease(&ch, "b", "keep", &[]).await;
        put(&ch, "b", Some("keep"), b"leased", &[]).await;
        delete_lease(&ch, "a", "l1").await;
        assert!(
            !exists(&ch, "a", &leased).await,
            "leased content outlived its lease"
        );
        assert!(blob_file(&d, &leased), "namespace b still holds the bytes");
        assert!(
            exists(&ch, "a", &root).await,
            "gc.root content was collected"
        );
        assert!(
            exists(&ch, "a", &manifest).await,
            "the image's target was collected"
        );
        assert!(
            exists(&ch, "a", &layer).await,
            "a gc.ref.content label was not followed"
        );
        // Dropping the reference label frees the layer.
        ContentClient::new(ch.clone())
            .update(req(
                "a",
                UpdateRequest {
                    info: Some(containerd_client::services::v1::Info {
                        digest: manifest.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["labels.containerd.io/gc.ref.content.l.0".into()],
                    }),
                },
            ))
            .await
            .unwrap();
        ImagesClient::new(ch.clone())
            .delete(req(
                "a",
                DeleteImageRequest {
                    name: "img".into(),
                    sync: true,
                    target: None,
                },
            ))
            .await
            .unwrap();
        for (what, dg) in [("layer", &layer), ("manifest", &manifest)] {
            assert!(!exists(&ch, "a", dg).await, "{what} outlived its image");
            assert!(!blob_file(&d, dg), "{what}'s bytes outlived its image");
        }
        delete_lease(&ch, "b", "keep").await;
        assert!(
            !blob_file(&d, &leased),
            "bytes no namespace holds were kept"
        );
        // An expired lease holds nothing and is itself removed by the next collection.
        lease(
            &ch,
            "c",
            "old",
            &[("containerd.io/gc.expire", "2000-01-01T00:00:00Z")],
        )
        .await;
        let stale = put(&ch, "c", Some("old"), b"stale", &[]).await;
        lease(&ch, "c", "trigger", &[]).await;
        delete_lease(&ch, "c", "trigger").await;
        assert!(
            !exists(&ch, "c", &stale).await,
            "an expired lease held content"
        );
        let left = LeasesClient::new(ch.clone())
            .list(req(
                "c",
                containerd_client::services::v1::ListRequest { filters: vec![] },
            ))
            .await
            .unwrap()
            .into_inner()
            .leases;
        assert!(left.is_empty(), "expired lease not removed: {left:?}");
        assert!(exists(&ch, "a", &root).await);
    });
}

const LEASES_SCRIPT: &[&[&str]] = &[
    &["leases", "create", "--id", "l1", "a=b"],
    &["leases", "create", "--id", "l1"],
    &["leases", "create", "--id", "l2", "--expires", "1h"],
    &["leases", "ls", "-q"],
    &["leases", "ls", "id==l1"],
    &["leases", "rm", "l1", "nope"],
    &["leases", "rm", "l2"],
    &["leases", "ls", "-q"],
];

#[test]
fn leases_match_containerd() {
    let ours = transcript(&Daemon::start(Peer::Refeng), LEASES_SCRIPT);
    let theirs = transcript(&Daemon::start(Peer::Containerd), LEASES_SCRIPT);
    assert_eq!(ours, theirs);
    assert!(ours.contains("l1"), "{ours}");
}

/// Every blob the namespace lists can be read whole, and every listed image checks complete.
fn assert_consistent(d: &Daemon) {
    let blobs = d.ctr_ok(&["content", "ls", "-q"]);
    for dg in blobs.lines() {
        let out = d.ctr(&["content", "get", dg]);
        if !out.status.success() {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            panic!(
                "a record without its bytes: {dg}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        assert_eq!(sha256(&out.stdout), dg, "{dg} reads back other bytes");
    }
    let check = d.ctr_ok(&["images", "check"]);
    for line in check.lines().skip(1) {
        assert!(
            line.contains("complete"),
            "an image with missing content: {line}"
        );
    }
    // Every snapshot's directory is there (keys of unpacks in progress have spaces: ask the
    // API rather than parse ctr's table).
    rt().block_on(async {
        use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
        use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, UsageRequest};
        let mut c = SnapshotsClient::new(channel(d).await);
        let mut pages = c
            .list(req(
                "default",
                ListSnapshotsRequest {
                    snapshotter: "overlayfs".into(),
                    filters: vec![],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        while let Some(page) = pages.next().await {
            for info in page.unwrap().info {
                c.usage(req(
                    "default",
                    UsageRequest {
                        snapshotter: "overlayfs".into(),
                        key: info.name.clone(),
                    },
                ))
                .await
                .unwrap_or_else(|e| panic!("snapshot {:?} has no files: {e}", info.name));
            }
        }
    });
}

/// `kill -9` of refeng-containerd at several points of an import: after a restart the store is
/// consistent, and importing again completes the image.
#[test]
fn kill_during_import_leaves_a_consistent_store() {
    let a = containerd_support::archive::archives();
    let oci = a.oci.display().to_string();
    let mut d = Daemon::start(Peer::Refeng);
    for delay_ms in [20, 60, 120, 200, 400] {
        let mut import = std::process::Command::new("ctr")
            .arg("--address")
            .arg(d.socket())
            .args(["images", "import", &oci])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.restart();
        let _ = import.wait();
        // The collection shortly after the start may still remove what nothing holds (the
        // import's index once ctr's lease is gone): look once it is done, not while it runs.
        // It also removes bytes the crash left without a record.
        std::thread::sleep(Duration::from_millis(500));
        assert_consistent(&d);
        let listed = d.ctr_ok(&["content", "ls", "-q"]);
        let blobs = d
            .root()
            .join("io.containerd.content.v1.content/blobs/sha256");
        for f in std::fs::read_dir(&blobs).unwrap().flatten() {
            let dg = format!("sha256:{}", f.file_name().to_string_lossy());
            assert!(
                listed.contains(&dg),
                "bytes without a record after a restart: {dg}"
            );
        }
        d.ctr_ok(&["images", "import", &oci]);
        assert_consistent(&d);
        assert!(d.ctr_ok(&["images", "check"]).contains("complete"));
        // Start the next round from nothing, through the collector. The killed import's lease
        // (24 hours, as ctr makes them) still holds what it wrote: drop it as its owner would.
        for l in d.ctr_ok(&["leases", "ls", "-q"]).lines() {
            d.ctr_ok(&["leases", "rm", l]);
        }
        d.ctr_ok(&["images", "rm", "--sync", containerd_support::archive::IMAGE]);
        assert_eq!(
            d.ctr_ok(&["content", "ls", "-q"]),
            "",
            "after delay {delay_ms} ms"
        );
    }
}
