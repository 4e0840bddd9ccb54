//! Content store, snapshots and GC together, without external tools: shared chain snapshots,
//! leases, exact collection, refused layers leaving nothing behind, mounts always unmounted.

use std::collections::BTreeMap;
use std::fs;

use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::format::PlatformWanted;
use refeng::image::gc;
use refeng::image::layer::ApplyOptions;
use refeng::image::snapshot::{Backend, SnapshotError, Snapshotter};
use refeng::image::tar::{Builder, Entry, Kind};
use refeng::image::unpack::{self, UnpackError};

fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for (p, d) in files {
        let mut e = Entry::new(*p, Kind::File);
        e.size = d.len() as u64;
        b.append(&e, d.as_bytes()).unwrap();
    }
    b.finish().unwrap()
}

/// An image of `layers`; `diff_override` replaces the config's diff_ids (to make it lie).
fn image(c: &ContentStore, layers: &[Vec<u8>], diff_override: Option<Vec<String>>) -> Digest {
    let diff_ids = diff_override.unwrap_or_else(|| {
        layers
            .iter()
            .map(|l| Digest::sha256(l).to_string())
            .collect()
    });
    let descs: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": c.put(l).unwrap().to_string(), "size": l.len()}))
        .collect();
    let p = PlatformWanted::host();
    let cfg = serde_json::to_vec(&serde_json::json!({"architecture": p.architecture, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let cd = c.put(&cfg).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cfg.len()}, "layers": descs})).unwrap();
    c.put(&m).unwrap()
}

fn setup() -> (tempfile::TempDir, ContentStore, Snapshotter) {
    let d = tempfile::tempdir().unwrap();
    let c = ContentStore::open(d.path().join("c"), Limits::default()).unwrap();
    let s = Snapshotter::open(d.path().join("s"), Backend::Overlay).unwrap();
    (d, c, s)
}

fn unpack(c: &ContentStore, s: &Snapshotter, m: &Digest) -> Result<Option<Digest>, UnpackError> {
    let r = unpack::resolve(c, m, &PlatformWanted::host())?;
    unpack::unpack(c, s, &r, &ApplyOptions::default())
}

#[test]
fn images_share_chain_snapshots_and_gc_removes_exactly_the_unreferenced() {
    let (_d, c, s) = setup();
    assert_eq!(
        Backend::detect(_d.path()),
        Backend::Overlay,
        "this host has overlayfs"
    );
    let base = layer(&[("etc/os", "base\n")]);
    let a = image(&c, &[base.clone(), layer(&[("a", "1")])], None);
    let b = image(&c, &[base.clone(), layer(&[("b", "2")])], None);
    c.set_reference("a:1", &a).unwrap();
    c.set_reference("b:1", &b).unwrap();
    let top_a = unpack(&c, &s, &a).unwrap().unwrap();
    let top_b = unpack(&c, &s, &b).unwrap().unwrap();
    assert_ne!(top_a, top_b);
    assert_eq!(s.list().unwrap().len(), 3, "the base chain is shared");
    assert!(
        c.metadata().unwrap().leases.is_empty(),
        "temporary leases are gone"
    );
    // a stray blob and a leased blob
    let stray = c.put(b"stray").unwrap();
    let leased = c.put(b"leased").unwrap();
    c.create_lease("pull-1").unwrap();
    c.lease_add("pull-1", Some(&leased), None).unwrap();
    let r = gc::collect(&c, Some(&s)).unwrap();
    assert_eq!(r.blobs, vec![stray]);
    assert!(r.snapshots.is_empty());
    // dropping image a frees its manifest, config, top layer and top snapshot, not the base
    c.remove_reference("a:1").unwrap();
    let before = c.list().unwrap().len();
    let r = gc::collect(&c, Some(&s)).unwrap();
    assert_eq!(r.blobs.len(), 3, "{r:?}");
    assert_eq!(c.list().unwrap().len(), before - 3);
    assert_eq!(r.snapshots, vec![top_a.to_string()]);
    assert!(s
        .stat(&Digest::sha256(&base).to_string())
        .unwrap()
        .is_some());
    // the lease going frees the leased blob
    c.delete_lease("pull-1").unwrap();
    assert_eq!(gc::collect(&c, Some(&s)).unwrap().blobs, vec![leased]);
    // an image still runs from b after all that
    let rootfs = tempfile::tempdir().unwrap();
    let mounts = s.prepare("ctr", Some(&top_b.to_string())).unwrap();
    {
        let _g = mounts[0].mount(rootfs.path()).unwrap();
        assert_eq!(
            fs::read_to_string(rootfs.path().join("etc/os")).unwrap(),
            "base\n"
        );
        assert_eq!(fs::read_to_string(rootfs.path().join("b")).unwrap(), "2");
        fs::write(rootfs.path().join("new"), "w").unwrap();
    }
    assert!(!rootfs.path().join("b").exists(), "the guard unmounted");
    // removing a parent in use is refused
    assert!(matches!(
        s.remove(&top_b.to_string()),
        Err(SnapshotError::InUse { .. })
    ));
    c.remove_reference("b:1").unwrap();
    let r = gc::collect(&c, Some(&s)).unwrap();
    assert!(
        r.snapshots.is_empty(),
        "the active snapshot keeps its chain"
    );
    s.remove("ctr").unwrap();
    let r = gc::collect(&c, Some(&s)).unwrap();
    assert_eq!(r.snapshots.len(), 2);
    assert!(c.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(_d.path().join("s/snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn a_layer_whose_diff_id_lies_leaves_no_snapshot() {
    let (_d, c, s) = setup();
    let l = layer(&[("x", "1")]);
    let m = image(&c, &[l], Some(vec![Digest::sha256(b"lie").to_string()]));
    let e = unpack(&c, &s, &m).unwrap_err();
    assert!(
        matches!(
            &e,
            UnpackError::Snapshot(SnapshotError::Layer {
                source: refeng::image::layer::LayerError::DiffIdMismatch { .. },
                ..
            })
        ),
        "{e:?}"
    );
    assert!(s.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(_d.path().join("s/snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn copy_backend_gives_the_same_tree_as_overlay() {
    let d = tempfile::tempdir().unwrap();
    let c = ContentStore::open(d.path().join("c"), Limits::default()).unwrap();
    let mut w = Builder::new(Vec::new());
    let mut e = Entry::new("d/.wh.a", Kind::File);
    e.size = 0;
    w.append(&e, std::io::empty()).unwrap();
    let l2 = w.finish().unwrap();
    let m = image(&c, &[layer(&[("d/a", "1"), ("d/b", "2")]), l2], None);
    let mut seen = BTreeMap::new();
    for backend in [Backend::Overlay, Backend::Copy] {
        let s = Snapshotter::open(d.path().join(format!("{backend:?}")), backend).unwrap();
        let top = unpack(&c, &s, &m).unwrap().unwrap();
        let mnt = tempfile::tempdir().unwrap();
        let mounts = s.mounts(&top.to_string()).unwrap();
        let _g = mounts[0].mount(mnt.path()).unwrap();
        let names: Vec<_> = fs::read_dir(mnt.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        seen.insert(format!("{backend:?}"), names);
        // committed snapshots mount read-only
        assert!(fs::write(mnt.path().join("d/z"), "x").is_err());
    }
    assert_eq!(seen["Overlay"], vec!["b"]);
    assert_eq!(seen["Copy"], vec!["b"]);
}

#[test]
fn content_limits_hold_for_manifests() {
    let d = tempfile::tempdir().unwrap();
    let c = ContentStore::open(
        d.path(),
        Limits {
            max_blob_size: 1 << 20,
            max_in_memory: 64,
        },
    )
    .unwrap();
    let s = Snapshotter::open(d.path().join("s"), Backend::Copy).unwrap();
    let m = image(&c, &[layer(&[("x", "1")])], None);
    assert!(matches!(
        unpack(&c, &s, &m),
        Err(UnpackError::Content(
            refeng::image::content::ContentError::TooLarge { .. }
        ))
    ));
}

#[test]
fn a_directory_left_by_a_crash_mid_unpack_is_discarded() {
    let (d, c, s) = setup();
    // what a crash between reserving id 1 and recording the snapshot leaves behind
    let stale = d.path().join("s/snapshots/1/fs");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("junk"), "half a layer").unwrap();
    let m = image(&c, &[layer(&[("x", "1")])], None);
    let top = unpack(&c, &s, &m).unwrap().unwrap();
    let dir = s.fs_dir(&top.to_string()).unwrap();
    assert!(!dir.join("junk").exists());
    assert_eq!(fs::read_to_string(dir.join("x")).unwrap(), "1");
}

#[test]
fn a_partial_multi_platform_index_resolves_to_the_host_and_round_trips() {
    use refeng::image::archive::{self, Sink};
    let (_d, c, s) = setup();
    let m = image(&c, &[layer(&[("x", "1")])], None);
    let host = PlatformWanted::host();
    let msize = c.info(&m).unwrap().size;
    // the other platform's manifest was never pulled: only its descriptor is here
    let absent = Digest::sha256(b"arm64 manifest");
    let other_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent.to_string(), "size": 100, "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.to_string(), "size": msize, "platform": {"os": "linux", "architecture": host.architecture}},
    ]}))
    .unwrap();
    let i = c.put(&idx).unwrap();
    c.set_reference("multi:1", &i).unwrap();
    let r = unpack::resolve(&c, &i, &host).unwrap();
    assert_eq!(r.manifest, m);
    unpack::unpack(&c, &s, &r, &ApplyOptions::default()).unwrap();
    let other = PlatformWanted {
        os: "linux".into(),
        architecture: other_arch.into(),
        variant: None,
    };
    assert!(matches!(
        unpack::resolve(&c, &i, &other),
        Err(UnpackError::Content(_))
    ));
    let bytes = archive::export_oci(
        &c,
        &[("multi:1".into(), i.clone())],
        Sink::Tar(Builder::new(Vec::new())),
    )
    .unwrap()
    .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let c2 = ContentStore::open(d2.path(), Limits::default()).unwrap();
    let imported = archive::import_tar(&c2, &bytes[..]).unwrap();
    assert_eq!(imported[0].target, i, "the index digest survives");
    assert!(
        gc::collect(&c, Some(&s)).unwrap().blobs.is_empty(),
        "the index holds its manifest and layers"
    );
}
