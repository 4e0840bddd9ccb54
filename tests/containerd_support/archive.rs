//! A busybox image as an OCI archive and as a `docker save` archive, for `ctr images import`.

use std::fs;
use std::path::PathBuf;

use refeng::image::archive::{self, RootfsImport, Sink};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::format::PlatformWanted;
use refeng::image::tar::Builder;

#[path = "../rootfs/mod.rs"]
pub mod rootfs;

/// The name the OCI archive gives its image.
pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// A busybox image as an OCI archive and as a `docker save` archive, made by refeng's image
/// library from a root filesystem (reproducible: fixed creation time).
pub struct Archives {
    _dir: tempfile::TempDir,
    pub oci: PathBuf,
    pub docker: PathBuf,
}

pub fn archives() -> Archives {
    let dir = tempfile::Builder::new()
        .prefix("ctd-img")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let rootfs_dir = d.join("rootfs");
    rootfs::busybox(&rootfs_dir);
    fs::write(rootfs_dir.join("etc/marker"), "from the archive\n").unwrap();
    rootfs::tar(&rootfs_dir, &d.join("rootfs.tar"));
    let store = ContentStore::open(d.join("content"), Limits::default()).unwrap();
    let m = archive::import_rootfs(
        &store,
        fs::File::open(d.join("rootfs.tar")).unwrap(),
        IMAGE,
        &RootfsImport {
            cmd: vec!["/bin/sh".into()],
            created: Some("2026-01-01T00:00:00Z".into()),
            ..RootfsImport::default()
        },
    )
    .unwrap();
    let images = [(IMAGE.to_string(), m)];
    let oci = d.join("oci.tar");
    archive::export_oci(
        &store,
        &images,
        Sink::Tar(Builder::new(fs::File::create(&oci).unwrap())),
    )
    .unwrap();
    let docker = d.join("docker.tar");
    archive::export_docker(
        &store,
        &[("docker.io/library/other:1".to_string(), images[0].1.clone())],
        &PlatformWanted::host(),
        Sink::Tar(Builder::new(fs::File::create(&docker).unwrap())),
    )
    .unwrap();
    Archives {
        _dir: dir,
        oci,
        docker,
    }
}
