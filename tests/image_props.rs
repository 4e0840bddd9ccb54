//! Property tests of image layers and archives:
//! - applying generated layers one by one (delete mode, and overlayfs over the upper dirs) gives
//!   the same tree as applying the squashed result;
//! - export then import is the identity on digests (OCI layout and docker-save forms).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use proptest::prelude::*;
use refeng::image::archive::{self, Sink};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::format::PlatformWanted;
use refeng::image::layer::{apply_layer, ApplyOptions, WhiteoutMode};
use refeng::image::snapshot::MountSpec;
use refeng::image::tar::{Builder, Entry, Kind};

/// The path universe: small enough that layers collide often.
const PATHS: [&str; 8] = ["a", "a/x", "a/b", "a/b/y", "c", "c/z", "w", "a/b/v"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(u8),
    Link(u8),
}

type State = BTreeMap<String, Node>;

fn parent(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(d, _)| d)
}

fn state() -> impl Strategy<Value = State> {
    proptest::collection::vec(0u8..6, PATHS.len()).prop_map(|choices| {
        let mut s = State::new();
        for (p, c) in PATHS.iter().zip(choices) {
            let parent_ok = parent(p).is_none_or(|d| s.get(d) == Some(&Node::Dir));
            let node = match c {
                0 | 1 => None,
                2 | 3 => Some(Node::Dir),
                4 => Some(Node::Link(c)),
                n => Some(Node::File(n)),
            };
            if let (true, Some(n)) = (parent_ok, node) {
                s.insert((*p).to_owned(), n);
            }
        }
        s
    })
}

fn entry(p: &str, n: &Node) -> (Entry, Vec<u8>) {
    match n {
        Node::Dir => (Entry::new(format!("{p}/"), Kind::Directory), vec![]),
        Node::File(c) => {
            let mut e = Entry::new(p, Kind::File);
            e.size = 1;
            (e, vec![*c])
        }
        Node::Link(c) => {
            let mut e = Entry::new(p, Kind::Symlink);
            e.link = format!("target{c}").into_bytes();
            (e, vec![])
        }
    }
}

/// The changeset from `prev` to `next`, as `docker diff`/umoci would write it; `opaque` makes
/// surviving directories opaque and re-lists their children.
fn diff(prev: &State, next: &State, opaque: bool) -> Vec<(Entry, Vec<u8>)> {
    let mut out = Vec::new();
    for (p, n) in next {
        let same_dir = prev.get(p) == Some(&Node::Dir) && *n == Node::Dir;
        let parent_opaque = opaque
            && parent(p).is_some_and(|d| {
                prev.get(d) == Some(&Node::Dir) && next.get(d) == Some(&Node::Dir)
            });
        if prev.get(p) != Some(n) || (parent_opaque && !same_dir) || (opaque && same_dir) {
            out.push(entry(p, n));
        }
        if opaque && same_dir {
            let mut e = Entry::new(format!("{p}/.wh..wh..opq"), Kind::File);
            e.size = 0;
            out.push((e, vec![]));
        }
    }
    for p in prev.keys() {
        if next.contains_key(p) {
            continue;
        }
        // Removed: a whiteout in its parent, if that parent survives as the same directory.
        let parent_survives = parent(p)
            .is_none_or(|d| prev.get(d) == Some(&Node::Dir) && next.get(d) == Some(&Node::Dir));
        let hidden_by_opaque = opaque && parent(p).is_some();
        if parent_survives && !hidden_by_opaque {
            let name = match p.rsplit_once('/') {
                Some((d, n)) => format!("{d}/.wh.{n}"),
                None => format!(".wh.{p}"),
            };
            out.push((Entry::new(name, Kind::File), vec![]));
        }
    }
    out
}

fn tar(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for (e, d) in entries {
        b.append(e, &d[..]).unwrap();
    }
    b.finish().unwrap()
}

fn read_tree(root: &Path) -> State {
    let mut s = State::new();
    fn walk(root: &Path, rel: &str, s: &mut State) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.file_type().is_char_device() && md.rdev() == 0 {
                continue; // an overlay whiteout left in an upper dir: not a file of the tree
            }
            if md.is_dir() {
                s.insert(p.clone(), Node::Dir);
                walk(root, &p, s);
            } else if md.file_type().is_symlink() {
                let t = fs::read_link(e.path()).unwrap();
                let c = t
                    .to_string_lossy()
                    .trim_start_matches("target")
                    .parse()
                    .unwrap();
                s.insert(p, Node::Link(c));
            } else {
                s.insert(p, Node::File(fs::read(e.path()).unwrap()[0]));
            }
        }
    }
    walk(root, "", &mut s);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn layers_one_by_one_equal_the_squashed_layer(states in proptest::collection::vec((state(), any::<bool>()), 1..5)) {
        let tmp = tempfile::tempdir().unwrap();
        let seq = tmp.path().join("seq");
        let squashed = tmp.path().join("squashed");
        fs::create_dir(&seq).unwrap();
        fs::create_dir(&squashed).unwrap();
        let delete = ApplyOptions { whiteouts: WhiteoutMode::Delete, ..ApplyOptions::default() };
        let mut prev = State::new();
        let mut uppers = Vec::new();
        for (i, (next, opaque)) in states.iter().enumerate() {
            let layer = tar(&diff(&prev, next, *opaque));
            apply_layer(&seq, &layer[..], &delete).unwrap();
            prop_assert_eq!(&read_tree(&seq), next, "after layer {}", i);
            let upper = tmp.path().join(format!("u{i}"));
            fs::create_dir(&upper).unwrap();
            let overlay = ApplyOptions { whiteouts: WhiteoutMode::Overlay, lowers: uppers.iter().rev().cloned().collect(), ..ApplyOptions::default() };
            apply_layer(&upper, &layer[..], &overlay).unwrap();
            uppers.push(upper);
            prev = next.clone();
        }
        let last = &states.last().unwrap().0;
        apply_layer(&squashed, &tar(&diff(&State::new(), last, false))[..], &delete).unwrap();
        prop_assert_eq!(&read_tree(&squashed), last);
        // overlayfs over the upper dirs shows the same tree
        let merged = tmp.path().join("merged");
        fs::create_dir(&merged).unwrap();
        let mut lowers: Vec<String> = uppers.iter().rev().map(|p| p.display().to_string()).collect();
        if lowers.len() == 1 {
            let empty = tmp.path().join("empty");
            fs::create_dir(&empty).unwrap();
            lowers.push(empty.display().to_string());
        }
        let spec = MountSpec { fs_type: "overlay".into(), source: "overlay".into(), options: vec![format!("lowerdir={}", lowers.join(":"))] };
        let guard = spec.mount(&merged).unwrap();
        let view = read_tree(&merged);
        drop(guard);
        prop_assert_eq!(&view, last);
    }
}

fn random_image(store: &ContentStore, files: &[(u8, Vec<u8>)], layers: usize) -> Digest {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in 0..layers {
        let entries: Vec<_> = files
            .iter()
            .map(|(n, data)| {
                let mut e = Entry::new(format!("l{l}/f{n}"), Kind::File);
                e.size = data.len() as u64;
                (e, data.clone())
            })
            .collect();
        let plain = tar(&entries);
        diff_ids.push(Digest::sha256(&plain).to_string());
        let blob = if l % 2 == 0 {
            plain
        } else {
            zstd::encode_all(&plain[..], 1).unwrap()
        };
        let d = store.put(&blob).unwrap();
        let mt = if l % 2 == 0 {
            "application/vnd.oci.image.layer.v1.tar"
        } else {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        };
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}),
        );
    }
    let p = PlatformWanted::host();
    let cfg = serde_json::to_vec(&serde_json::json!({"architecture": p.architecture, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let c = store.put(&cfg).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": cfg.len()}, "layers": descs})).unwrap();
    store.put(&m).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn export_then_import_is_the_identity_on_digests(
        files in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..2000)), 0..4),
        layers in 1usize..4,
        docker in any::<bool>(),
    ) {
        let a = tempfile::tempdir().unwrap();
        let src = ContentStore::open(a.path().join("src"), Limits::default()).unwrap();
        let m = random_image(&src, &files, layers);
        src.set_reference("img:1", &m).unwrap();
        let images = [("img:1".to_string(), m.clone())];
        let bytes = if docker {
            archive::export_docker(&src, &images, &PlatformWanted::host(), Sink::Tar(Builder::new(Vec::new()))).unwrap().unwrap()
        } else {
            archive::export_oci(&src, &images, Sink::Tar(Builder::new(Vec::new()))).unwrap().unwrap()
        };
        let dst = ContentStore::open(a.path().join("dst"), Limits::default()).unwrap();
        let imported = archive::import_tar(&dst, &bytes[..]).unwrap();
        prop_assert_eq!(imported.len(), 1);
        prop_assert_eq!(&imported[0].name, "img:1");
        prop_assert_eq!(&imported[0].target, &m);
        prop_assert_eq!(dst.list().unwrap(), src.list().unwrap());
        // and a directory layout
        let dir = a.path().join("layout");
        archive::export_oci::<Vec<u8>>(&dst, &images, Sink::Dir(dir.clone())).unwrap();
        let third = ContentStore::open(a.path().join("third"), Limits::default()).unwrap();
        let again = archive::import_dir(&third, &dir).unwrap();
        prop_assert_eq!(&again[0].target, &m);
    }
}
