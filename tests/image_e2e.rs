//! Issue 5 "done when": images made by the real `docker save`, by skopeo and by umoci are
//! imported, unpacked into overlay snapshots, and a container runs from the snapshot with
//! refeng-runc. Round trips go back through the real tools (`docker load`, `skopeo inspect`).
//!
//! Needs root and the Debian packages docker.io, skopeo, umoci, busybox-static (.ci/setup installs
//! them); a test whose tool is missing fails and names the package. Every dockerd, mount, container and temp dir is
//! cleaned up by a guard, also when an assertion fails.

mod peers;
mod rootfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use refeng::image::archive::{self, RootfsImport, Sink};
use refeng::image::content::{ContentStore, Limits};
use refeng::image::digest::Digest;
use refeng::image::format::PlatformWanted;
use refeng::image::gc;
use refeng::image::layer::ApplyOptions;
use refeng::image::snapshot::{Backend, MountGuard, Snapshotter};
use refeng::image::tar::Builder;
use refeng::image::unpack;

use peers::dockerd::{Dockerd, DOCKER, DOCKERD};

const RUNC: &str = env!("CARGO_BIN_EXE_refeng-runc");

/// Fails the test when `tool` is not installed: CI installs them all in .ci/setup, and a test
/// that passes without running would hide a broken install.
fn require_tool(tool: &str) {
    let installed = Path::new(tool).exists()
        || Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    assert!(
        installed,
        "{tool} is not installed: apt-get install docker.io skopeo umoci busybox-static (.ci/setup)"
    );
}

fn check(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run(cmd: &str, args: &[&str]) -> String {
    check(
        Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}")),
        &format!("{cmd} {args:?}"),
    )
}

/// The busybox root filesystem plus `/etc/base` (for the layers above to be checked against),
/// as a tarball at `path`.
fn busybox_rootfs_tar(path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    rootfs::busybox(dir.path());
    fs::write(dir.path().join("etc/base"), "base\n").unwrap();
    rootfs::tar(dir.path(), path);
}

struct Store {
    _dir: tempfile::TempDir,
    content: ContentStore,
    snapshots: Snapshotter,
    runc_root: PathBuf,
}

impl Store {
    fn new(backend: Backend) -> Store {
        let dir = tempfile::Builder::new()
            .prefix("refeng-img")
            .tempdir_in("/tmp")
            .unwrap();
        let content = ContentStore::open(dir.path().join("content"), Limits::default()).unwrap();
        let snapshots = Snapshotter::open(dir.path().join("snap"), backend).unwrap();
        let runc_root = dir.path().join("runc");
        Store {
            _dir: dir,
            content,
            snapshots,
            runc_root,
        }
    }

    fn unpack(&self, target: &Digest) -> (unpack::Resolved, Digest) {
        let r = unpack::resolve(&self.content, target, &PlatformWanted::host()).unwrap();
        let top = unpack::unpack(&self.content, &self.snapshots, &r, &ApplyOptions::default())
            .unwrap()
            .unwrap();
        (r, top)
    }

    /// Runs `args` in a container on a writable snapshot of `top`; returns its stdout.
    fn run_container(&self, id: &str, top: &Digest, args: &[&str]) -> String {
        let bundle = tempfile::Builder::new()
            .prefix("refeng-bundle")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = bundle.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let mounts = self.snapshots.prepare(id, Some(&top.to_string())).unwrap();
        let _mounted: Vec<MountGuard> = mounts.iter().map(|m| m.mount(&rootfs).unwrap()).collect();
        run(
            RUNC,
            &["spec", "--bundle", &bundle.path().display().to_string()],
        );
        let cfg_path = bundle.path().join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!(args);
        cfg["root"]["readonly"] = false.into();
        fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        struct Delete<'a>(&'a Path, &'a str);
        impl Drop for Delete<'_> {
            fn drop(&mut self) {
                let _ = Command::new(RUNC)
                    .arg("--root")
                    .arg(self.0)
                    .args(["delete", "--force", self.1])
                    .output();
            }
        }
        let _delete = Delete(&self.runc_root, id);
        let out = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["run", id, "--bundle"])
            .arg(bundle.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        check(out, "refeng-runc run")
    }
}

#[test]
fn docker_save_imports_runs_and_round_trips_through_docker_load() {
    for tool in [DOCKERD, DOCKER, rootfs::BUSYBOX] {
        require_tool(tool);
    }
    let work = tempfile::tempdir().unwrap();
    let w = |s: &str| work.path().join(s).display().to_string();
    busybox_rootfs_tar(&work.path().join("rootfs.tar"));
    fs::create_dir(w("ctx")).unwrap();
    fs::write(w("ctx/a"), "layer2\n").unwrap();
    fs::write(w("ctx/b"), "layer3\n").unwrap();
    fs::write(
        w("ctx/Dockerfile"),
        "FROM refeng-test/base:1\nCOPY a /a\nCOPY b /etc/b\nCMD [\"/bin/cat\",\"/a\"]\n",
    )
    .unwrap();

    let dockerd = Dockerd::start();
    dockerd.docker(&["import", &w("rootfs.tar"), "refeng-test/base:1"]);
    // The legacy builder runs no container for COPY: multi-layer images without a runtime.
    dockerd.docker(&["build", "-q", "-t", "refeng-test/multi:1", &w("ctx")]);
    dockerd.docker(&["save", "-o", &w("save.tar"), "refeng-test/multi:1"]);
    let docker_id = dockerd
        .docker(&["inspect", "-f", "{{.Id}}", "refeng-test/multi:1"])
        .trim()
        .to_owned();

    let store = Store::new(Backend::Overlay);
    let imported =
        archive::import_tar(&store.content, fs::File::open(w("save.tar")).unwrap()).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "refeng-test/multi:1");
    let (resolved, top) = store.unpack(&imported[0].target);
    assert_eq!(
        resolved.config.to_string(),
        docker_id,
        "config digest is docker's image id"
    );
    assert_eq!(resolved.layers.len(), 3);
    let out = store.run_container(
        "docker-save",
        &top,
        &[
            "/bin/sh",
            "-c",
            "cat /a /etc/b /etc/base; echo ran > /tmp/x; cat /tmp/x",
        ],
    );
    assert_eq!(out, "layer2\nlayer3\nbase\nran\n");

    // export in docker-save form and load it into the real dockerd: same image id
    dockerd.docker(&["rmi", "refeng-test/multi:1"]);
    let f = fs::File::create(w("export.tar")).unwrap();
    archive::export_docker(
        &store.content,
        &[("refeng-test/multi:1".into(), imported[0].target.clone())],
        &PlatformWanted::host(),
        Sink::Tar(Builder::new(f)),
    )
    .unwrap();
    dockerd.docker(&["load", "-i", &w("export.tar")]);
    assert_eq!(
        dockerd
            .docker(&["inspect", "-f", "{{.Id}}", "refeng-test/multi:1"])
            .trim(),
        docker_id
    );

    // export ∘ import is the identity on digests
    let again = Store::new(Backend::Overlay);
    let re = archive::import_tar(&again.content, fs::File::open(w("export.tar")).unwrap()).unwrap();
    assert_eq!(re[0].target, imported[0].target);
    drop(dockerd);

    // GC: nothing goes while the image is named and a container snapshot is active
    assert!(gc::collect(&store.content, Some(&store.snapshots))
        .unwrap()
        .blobs
        .is_empty());
    store
        .content
        .remove_reference("refeng-test/multi:1")
        .unwrap();
    let report = gc::collect(&store.content, Some(&store.snapshots)).unwrap();
    assert!(report.blobs.len() >= 5, "{report:?}");
    assert!(
        report.snapshots.is_empty(),
        "the active snapshot holds its chain: {report:?}"
    );
    store.snapshots.remove("docker-save").unwrap();
    let report = gc::collect(&store.content, Some(&store.snapshots)).unwrap();
    assert_eq!(report.snapshots.len(), 3, "{report:?}");
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.snapshots.list().unwrap().is_empty());
}

#[test]
fn docker_import_like_rootfs_image_runs_and_skopeo_reads_the_export() {
    require_tool(rootfs::BUSYBOX);
    let work = tempfile::tempdir().unwrap();
    busybox_rootfs_tar(&work.path().join("rootfs.tar"));
    let store = Store::new(Backend::Overlay);
    let opts = RootfsImport {
        cmd: vec!["/bin/sh".into()],
        created: Some("2026-01-01T00:00:00Z".into()),
        ..RootfsImport::default()
    };
    let m = archive::import_rootfs(
        &store.content,
        fs::File::open(work.path().join("rootfs.tar")).unwrap(),
        "rootfs:1",
        &opts,
    )
    .unwrap();
    let (_, top) = store.unpack(&m);
    assert_eq!(
        store.run_container("rootfs", &top, &["/bin/echo", "hello"]),
        "hello\n"
    );
    // reproducible
    let m2 = archive::import_rootfs(
        &store.content,
        fs::File::open(work.path().join("rootfs.tar")).unwrap(),
        "rootfs:2",
        &opts,
    )
    .unwrap();
    assert_eq!(m, m2);

    require_tool("skopeo");
    let oci = work.path().join("oci");
    archive::export_oci::<fs::File>(
        &store.content,
        &[("rootfs:1".into(), m.clone())],
        Sink::Dir(oci.clone()),
    )
    .unwrap();
    let inspect = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:rootfs:1", oci.display()),
        ],
    );
    assert_eq!(
        Digest::sha256(inspect.as_bytes()),
        m,
        "skopeo sees the same manifest"
    );
    let dtar = work.path().join("d.tar");
    archive::export_docker(
        &store.content,
        &[("rootfs:1".into(), m.clone())],
        &PlatformWanted::host(),
        Sink::Tar(Builder::new(fs::File::create(&dtar).unwrap())),
    )
    .unwrap();
    run(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", dtar.display())],
    );
}

#[test]
fn skopeo_oci_layout_imports_and_runs() {
    require_tool("skopeo");
    require_tool(rootfs::BUSYBOX);
    let work = tempfile::tempdir().unwrap();
    busybox_rootfs_tar(&work.path().join("rootfs.tar"));
    let src = Store::new(Backend::Overlay);
    let m = archive::import_rootfs(
        &src.content,
        fs::File::open(work.path().join("rootfs.tar")).unwrap(),
        "bb:1",
        &RootfsImport::default(),
    )
    .unwrap();
    let dtar = work.path().join("d.tar");
    archive::export_docker(
        &src.content,
        &[("bb:1".into(), m)],
        &PlatformWanted::host(),
        Sink::Tar(Builder::new(fs::File::create(&dtar).unwrap())),
    )
    .unwrap();
    // skopeo re-encodes: gzip layers, its own manifest and config
    let layout = work.path().join("layout");
    run(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", dtar.display()),
            &format!("oci:{}:bb", layout.display()),
        ],
    );
    for backend in [Backend::Overlay, Backend::Copy] {
        let store = Store::new(backend);
        let imported = archive::import_dir(&store.content, &layout).unwrap();
        assert_eq!(imported[0].name, "bb");
        let (_, top) = store.unpack(&imported[0].target);
        assert_eq!(
            store.run_container("skopeo", &top, &["/bin/cat", "/etc/base"]),
            "base\n"
        );
    }
    // the same layout as a tar
    let ltar = work.path().join("layout.tar");
    run(
        "tar",
        &[
            "-C",
            &layout.display().to_string(),
            "-cf",
            &ltar.display().to_string(),
            ".",
        ],
    );
    let store = Store::new(Backend::Overlay);
    let imported = archive::import_tar(&store.content, fs::File::open(&ltar).unwrap()).unwrap();
    store.unpack(&imported[0].target);
}

#[test]
fn umoci_multi_layer_with_whiteouts_imports_and_runs() {
    require_tool("umoci");
    require_tool(rootfs::BUSYBOX);
    let work = tempfile::tempdir().unwrap();
    let l = work.path().join("layout").display().to_string();
    let bundle = work.path().join("bundle");
    let b = bundle.display().to_string();
    run("umoci", &["init", "--layout", &l]);
    run("umoci", &["new", "--image", &format!("{l}:t")]);
    run("umoci", &["unpack", "--image", &format!("{l}:t"), &b]);
    let r = bundle.join("rootfs");
    rootfs::busybox(&r);
    fs::create_dir_all(r.join("data/old")).unwrap();
    fs::write(r.join("data/old/f"), "old\n").unwrap();
    fs::write(r.join("gone"), "x").unwrap();
    // --refresh-bundle: the next repack then diffs against this layer, not the empty image
    run(
        "umoci",
        &[
            "repack",
            "--refresh-bundle",
            "--image",
            &format!("{l}:t"),
            &b,
        ],
    );
    // layer 2: delete a file, replace a directory's content (opaque or per-file whiteouts)
    fs::remove_file(r.join("gone")).unwrap();
    fs::remove_dir_all(r.join("data/old")).unwrap();
    fs::create_dir_all(r.join("data/old")).unwrap();
    fs::write(r.join("data/old/g"), "new\n").unwrap();
    run("umoci", &["repack", "--image", &format!("{l}:t"), &b]);
    run(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:t"),
            "--config.cmd",
            "/bin/sh",
        ],
    );
    for backend in [Backend::Overlay, Backend::Copy] {
        let store = Store::new(backend);
        let imported = archive::import_dir(&store.content, Path::new(&l)).unwrap();
        let target = imported
            .iter()
            .find(|i| i.name == "t")
            .unwrap()
            .target
            .clone();
        let (resolved, top) = store.unpack(&target);
        assert!(
            resolved.layers.len() >= 2,
            "{:?} {imported:?}",
            resolved.layers
        );
        let out = store.run_container(
            "umoci",
            &top,
            &[
                "/bin/sh",
                "-c",
                "ls /data/old; test -e /gone && echo present; cat /data/old/g",
            ],
        );
        assert_eq!(out, "g\nnew\n", "{backend:?}");
    }
}
