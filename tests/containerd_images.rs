//! Images, content, snapshots and containers of refeng-containerd driven by the real `ctr`:
//! `images import` (OCI and docker archives) unpacks through Diff.Apply, Snapshots and Leases;
//! `images ls/tag/rm/export`, `content ls/get`, `snapshots ls/prepare/mounts/rm`,
//! `containers create/ls/info/rm`. The same script runs against a private real containerd and
//! the transcripts must match after normalising times and the daemons' directories.

mod containerd_support;
mod rootfs;

use std::fs;
use std::path::{Path, PathBuf};

use containerd_support::{transcript, Daemon, Peer};
use refeng::image::archive::{self, RootfsImport, Sink};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::format::PlatformWanted;
use refeng::image::tar::Builder;

const IMAGE: &str = "docker.io/library/busybox:latest";

/// A busybox image as an OCI archive and as a `docker save` archive, made by refeng's image
/// library from a root filesystem (reproducible: fixed creation time).
struct Archives {
    _dir: tempfile::TempDir,
    oci: PathBuf,
    docker: PathBuf,
}

fn archives() -> Archives {
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

/// The transcript with the daemon's directory replaced, so paths compare.
fn run_script(d: &Daemon, script: &[&[&str]]) -> String {
    transcript(d, script).replace(&d.path().display().to_string(), "<dir>")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn import_and_inspect_images_like_containerd() {
    let a = archives();
    let (oci, docker) = (s(&a.oci), s(&a.docker));
    let script: Vec<Vec<&str>> = vec![
        vec!["images", "import", &oci],
        vec!["images", "ls"],
        vec!["images", "ls", "-q"],
        vec!["images", "check"],
        vec!["images", "import", &docker],
        vec!["images", "ls", "-q"],
        vec!["images", "tag", IMAGE, "example.com/tagged:v1"],
        vec!["images", "ls", "name~=tagged"],
        vec!["images", "rm", "example.com/tagged:v1"],
        vec!["images", "rm", "example.com/nothere:v1"],
        vec!["content", "ls"],
        vec!["snapshots", "ls"],
        vec!["snapshots", "--snapshotter", "native", "ls"],
        vec!["snapshots", "--snapshotter", "nosuch", "ls"],
    ];
    let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
    let ours = {
        let d = Daemon::start(Peer::Refeng);
        run_script(&d, &script)
    };
    let theirs = {
        let d = Daemon::start(Peer::Containerd);
        run_script(&d, &script)
    };
    assert_eq!(ours, theirs);
    assert!(ours.contains(IMAGE), "{ours}");
}
