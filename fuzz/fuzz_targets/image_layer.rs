//! Fuzzes layer application into a temp dir: whatever the layer, nothing may be created or
//! changed outside the target directory (a sentinel directory beside it must stay as it was).
#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;
use refeng::image::layer::{apply_layer, ApplyOptions, WhiteoutMode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, layer)) = data.split_first() else { return };
    let Ok(base) = tempfile::tempdir() else { return };
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    if fs::create_dir(&root).is_err() || fs::create_dir(&outside).is_err() || fs::write(outside.join("s"), b"s").is_err() {
        return;
    }
    let opts = ApplyOptions {
        whiteouts: if mode & 1 == 0 { WhiteoutMode::Overlay } else { WhiteoutMode::Delete },
        max_uncompressed: 4 << 20,
        max_entries: 4096,
        ..ApplyOptions::default()
    };
    let _ = apply_layer(&root, layer, &opts);
    let top: Vec<_> = fs::read_dir(base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top.len(), 2, "something was created beside the root: {top:?}");
    let inside: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(inside, vec!["s"]);
    assert_eq!(fs::read(outside.join("s")).unwrap(), b"s");
    assert!(fs::symlink_metadata(&root).unwrap().is_dir());
});
