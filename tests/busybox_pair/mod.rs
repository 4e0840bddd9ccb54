//! A private refengd and a private dockerd, each with the same busybox image `bb:base`
//! (imported with docker's PATH and `CMD ["sh"]`): the world of the test binaries that compare
//! the two engines on images they build or change (`cli_build`, `engine_build`, `engine_files`).
//! Needs the crate-level modules `engine_support`, `peers` and `rootfs`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Mutex;

use crate::engine_support::Refengd;
use crate::peers::dockerd::Dockerd;

/// The two engines and a scratch directory.
pub struct BusyboxPair {
    pub refengd: Refengd,
    /// Taken (and so stopped) by the binary's last test.
    pub dockerd: Mutex<Option<Dockerd>>,
    pub work: tempfile::TempDir,
}

impl BusyboxPair {
    /// Starts both engines and imports busybox as `bb:base` into each; `extra` may add files
    /// to the image's root first.
    pub fn start(extra: impl FnOnce(&Path)) -> BusyboxPair {
        let refengd = Refengd::start();
        let dockerd = Dockerd::start();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        crate::rootfs::busybox(&root);
        extra(&root);
        let tar = work.path().join("busybox.tar");
        crate::rootfs::tar(&root, &tar);
        let args = [
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "CMD [\"sh\"]",
            tar.to_str().unwrap(),
            "bb:base",
        ];
        refengd.docker(&args);
        dockerd.docker(&args);
        BusyboxPair {
            refengd,
            dockerd: Mutex::new(Some(dockerd)),
            work,
        }
    }
}
