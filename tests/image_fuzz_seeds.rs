//! Replays the committed seed corpora of the image fuzz targets as ordinary tests, so the
//! hostile layers and documents in `fuzz/corpus/image_*` are checked on every run, not only
//! when someone fuzzes: layers must leave everything outside their directory untouched, and
//! the hostile ones must be refused.

use std::fs;
use std::path::Path;

use refeng::image::layer::{apply_layer, ApplyOptions, WhiteoutMode};
use refeng::image::{archive, content, format};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        // Only the named seeds: inputs a local fuzzing run added (hex names, git-ignored) have no
        // expectation attached.
        .filter(|(name, _)| !(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

#[test]
fn layer_seeds_are_contained_and_hostile_ones_refused() {
    for (name, data) in corpus("image_layer") {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        let opts = ApplyOptions {
            whiteouts: if data[0] & 1 == 0 {
                WhiteoutMode::Overlay
            } else {
                WhiteoutMode::Delete
            },
            max_uncompressed: 4 << 20,
            ..ApplyOptions::default()
        };
        let result = apply_layer(&root, &data[1..], &opts);
        let hostile = !(name.starts_with("valid")
            || name.starts_with("whiteouts")
            || name.starts_with("absolute")
            || name.starts_with("symlink_then_dir")
            || name.starts_with("hardlink_to_symlink"));
        assert_eq!(result.is_err(), hostile, "{name}: {result:?}");
        let top: Vec<_> = fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "{name}: {top:?}");
        assert_eq!(
            fs::read_dir(base.path().join("outside")).unwrap().count(),
            0,
            "{name}"
        );
    }
}

#[test]
fn document_seeds_parse_or_are_refused_as_expected() {
    for (name, data) in corpus("image_manifest") {
        let ok = format::parse_document(&data, None).is_ok();
        assert_eq!(ok, !(name == "schema1" || name == "bad_digest"), "{name}");
    }
    for (name, data) in corpus("image_config") {
        assert_eq!(
            format::parse_config(&data, 1).is_ok(),
            name == "oci_config",
            "{name}"
        );
    }
    for (name, data) in corpus("image_docker_manifest") {
        let dir = tempfile::tempdir().unwrap();
        let store = content::ContentStore::open(dir.path(), content::Limits::default()).unwrap();
        match name.as_str() {
            "manifest_json" => assert_eq!(archive::parse_docker_manifest(&data).unwrap().len(), 1),
            "docker_save_old" => assert_eq!(
                archive::import_tar(&store, &data[..]).unwrap()[0].name,
                "seed:1"
            ),
            // skopeo's docker-archive names its blobs `<hex>.tar` / `<hex>.json`.
            "skopeo_archive" => assert_eq!(
                archive::import_tar(&store, &data[..]).unwrap()[0].name,
                "seed:2"
            ),
            "oci_layout" | "oci_layout_gzip" => assert_eq!(
                archive::import_tar(&store, &data[..]).unwrap()[0].name,
                "docker.io/library/seed:3"
            ),
            _ => assert!(archive::import_tar(&store, &data[..]).is_err(), "{name}"),
        }
    }
}
