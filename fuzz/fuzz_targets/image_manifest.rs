//! Fuzzes manifest and index parsing (OCI and Docker schema2; schema1 refused), with and
//! without a declared media type, and platform selection on whatever index parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::format::{self, Document, PlatformWanted};

fuzz_target!(|data: &[u8]| {
    for declared in [None, Some(format::OCI_MANIFEST), Some(format::OCI_INDEX), Some(format::DOCKER_MANIFEST_LIST)] {
        match format::parse_document(data, declared) {
            Ok(Document::Index(i)) => {
                let _ = format::select_platform(&i, &PlatformWanted::host());
                // everything accepted has validated descriptors
                for d in i.manifests() {
                    assert!(format::check_descriptor(d).is_ok());
                }
            }
            Ok(Document::Manifest(m)) => {
                assert!(m.layers().len() <= format::MAX_LAYERS);
                for d in m.layers() {
                    assert!(format::check_descriptor(d).is_ok());
                }
            }
            Err(_) => {}
        }
    }
});
