//! Fuzzes the `manifest.json` of `docker save` archives, and a whole archive import of the
//! input into a throwaway content store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::{archive, content};

fuzz_target!(|data: &[u8]| {
    let _ = archive::parse_docker_manifest(data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let limits = content::Limits { max_blob_size: 1 << 20, max_in_memory: 1 << 16 };
    if let Ok(store) = content::ContentStore::open(dir.path(), limits) {
        let _ = archive::import_tar(&store, data);
    }
});
