//! Volumes and mounts in refengd, driven by the docker CLI 28 as a user would: named volumes
//! that outlive their containers and a daemon restart, anonymous volumes (`-v /path`, an
//! image's VOLUME, with the copy-up of the image's content) and `--rm`/`rm -v`, binds read-only
//! and read-write, tmpfs size limits, `--volumes-from`, and `volume ls/inspect/rm/prune` with
//! their filters, and a docker-compose project's named volume. Then the same runs against a
//! private dockerd 20.10: the volume inspect shapes and the container's `Mounts` must match
//! (paths under each daemon's data root and anonymous names aside).
//!
//! One refengd and one dockerd serve the binary; both are stopped by pid at the end, also after
//! a failure, and every mount below their directories is detached before they are removed.

mod engine_support;
mod peers;
mod rootfs;

use std::fs;
use std::process::Output;
use std::sync::{Mutex, OnceLock};

use engine_support::{Options, Refengd};
use peers::dockerd::Dockerd;
use serde_json::Value;

struct World {
    refengd: Refengd,
    dockerd: Mutex<Option<Dockerd>>,
    work: tempfile::TempDir,
}

static W: OnceLock<World> = OnceLock::new();

/// The base image `bb:base` (busybox) and `bb:vol`, the same with `VOLUME /seed` over a
/// directory that holds `/seed/hello` (mode 0640, owned by 1000:1000), in both daemons.
fn world() -> &'static World {
    W.get_or_init(|| {
        let refengd = Refengd::start();
        let dockerd = Dockerd::start();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        rootfs::busybox(&root);
        fs::create_dir_all(root.join("seed/sub")).unwrap();
        fs::write(root.join("seed/hello"), "from the image\n").unwrap();
        fs::write(root.join("seed/sub/deep"), "deep\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("seed/hello"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(root.join("seed/hello"), Some(1000), Some(1000)).unwrap();
        let tar = work.path().join("busybox.tar");
        rootfs::tar(&root, &tar);
        let path_env = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (tag, extra) in [("bb:base", None), ("bb:vol", Some("VOLUME /seed"))] {
            let mut args = vec!["import", "--change", path_env, "--change", "CMD [\"sh\"]"];
            if let Some(e) = extra {
                args.extend(["--change", e]);
            }
            args.extend([tar.to_str().unwrap(), tag]);
            refengd.docker(&args);
            dockerd.docker(&args);
        }
        World {
            refengd,
            dockerd: Mutex::new(Some(dockerd)),
            work,
        }
    })
}

fn d() -> &'static Refengd {
    &world().refengd
}

fn with_dockerd<T>(f: impl FnOnce(&Dockerd) -> T) -> T {
    let g = world().dockerd.lock().unwrap_or_else(|e| e.into_inner());
    f(g.as_ref().expect("dockerd running"))
}

/// `docker args` against refengd, which may fail.
fn try_docker(args: &[&str]) -> Output {
    d().docker_cmd(args).output().expect("run docker")
}

fn inspect(kind: &str, name: &str) -> Value {
    let out = d().docker(&[kind, "inspect", name]);
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn volume_names(args: &[&str]) -> Vec<String> {
    let mut a = vec!["volume", "ls", "-q"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = d().docker(&a).lines().map(String::from).collect();
    v.sort();
    v
}

fn named_volume_outlives_containers_and_restarts() {
    d().docker(&["volume", "create", "keep"]);
    d().docker(&[
        "run",
        "--rm",
        "-v",
        "keep:/d",
        "bb:base",
        "sh",
        "-c",
        "echo kept > /d/f",
    ]);
    let out = d().docker(&["run", "--rm", "-v", "keep:/d:ro", "bb:base", "cat", "/d/f"]);
    assert_eq!(out, "kept\n");
    let mp = inspect("volume", "keep")["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fs::read_to_string(format!("{mp}/f")).unwrap(), "kept\n");
    d().restart(&Options::default());
    let v = inspect("volume", "keep");
    assert_eq!(v["Name"], "keep");
    assert_eq!(v["Mountpoint"], mp.as_str());
    let out = d().docker(&["run", "--rm", "-v", "keep:/d", "bb:base", "cat", "/d/f"]);
    assert_eq!(out, "kept\n");
    d().docker(&["volume", "rm", "keep"]);
    assert!(!std::path::Path::new(&mp).exists());
}

fn anonymous_volumes_go_with_rm_v_and_rm_flag_only() {
    d().docker(&["volume", "create", "stays"]);
    let before = volume_names(&[]);
    // --rm: the anonymous volume goes, the named one stays.
    d().docker(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "-v",
        "stays:/n",
        "bb:base",
        "sh",
        "-c",
        "echo a > /anon/f && echo n > /n/f",
    ]);
    assert_eq!(volume_names(&[]), before);
    // rm without -v keeps it; rm -v removes it.
    d().docker(&[
        "create", "--name", "anon1", "-v", "/anon", "bb:base", "true",
    ]);
    let m = inspect("container", "anon1")["Mounts"].clone();
    let anon = m[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64, "{m}");
    assert_eq!(m[0]["Type"], "volume");
    assert_eq!(m[0]["Mode"], "");
    assert!(volume_names(&[]).contains(&anon));
    d().docker(&["rm", "anon1"]);
    assert!(volume_names(&[]).contains(&anon));
    d().docker(&["volume", "rm", &anon]);
    d().docker(&[
        "create", "--name", "anon2", "-v", "/anon", "-v", "stays:/n", "bb:base", "true",
    ]);
    let anon = inspect("container", "anon2")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    d().docker(&["rm", "-v", "anon2"]);
    let now = volume_names(&[]);
    assert!(!now.contains(&anon));
    assert!(now.contains(&"stays".to_string()));
    d().docker(&["volume", "rm", "stays"]);
}

fn image_volume_is_copied_up_unless_nocopy() {
    // Anonymous volume from the image's VOLUME: the image's content, owners and modes.
    let out = d().docker(&[
        "run",
        "--rm",
        "bb:vol",
        "sh",
        "-c",
        "cat /seed/hello /seed/sub/deep && stat -c '%a %u:%g' /seed/hello",
    ]);
    assert_eq!(out, "from the image\ndeep\n640 1000:1000\n");
    let id = d().docker(&["create", "bb:vol", "true"]).trim().to_string();
    let c = inspect("container", &id);
    assert_eq!(c["Config"]["Volumes"], serde_json::json!({"/seed": {}}));
    let m = &c["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Destination"].as_str()),
        (Some("volume"), Some("/seed"))
    );
    let src = m["Source"].as_str().unwrap().to_string();
    assert_eq!(
        fs::read_to_string(format!("{src}/hello")).unwrap(),
        "from the image\n"
    );
    d().docker(&["rm", "-v", &id]);
    // A new named volume is filled too; then it keeps its own content.
    let out = d().docker(&[
        "run",
        "--rm",
        "-v",
        "fresh:/seed",
        "bb:vol",
        "sh",
        "-c",
        "cat /seed/hello; echo mine > /seed/hello",
    ]);
    assert_eq!(out, "from the image\n");
    let out = d().docker(&[
        "run",
        "--rm",
        "-v",
        "fresh:/seed",
        "bb:vol",
        "cat",
        "/seed/hello",
    ]);
    assert_eq!(out, "mine\n");
    // nocopy, in both syntaxes: the volume stays empty.
    let out = d().docker(&[
        "run",
        "--rm",
        "-v",
        "empty1:/seed:nocopy",
        "bb:vol",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "");
    let out = d().docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=empty2,dst=/seed,volume-nocopy",
        "bb:vol",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(out, "");
    // A bind over the VOLUME path wins: no anonymous volume is made.
    let host = world().work.path().join("over");
    fs::create_dir_all(&host).unwrap();
    let before = volume_names(&[]);
    let spec = format!("{}:/seed", host.display());
    let out = d().docker(&["run", "--rm", "-v", &spec, "bb:vol", "ls", "-A", "/seed"]);
    assert_eq!(out, "");
    assert_eq!(volume_names(&[]), before);
    d().docker(&["volume", "rm", "fresh", "empty1", "empty2"]);
}

fn binds_read_only_and_read_write() {
    let host = world().work.path().join("bind");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in"), "host\n").unwrap();
    let rw = format!("{}:/h", host.display());
    let out = d().docker(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "bb:base",
        "sh",
        "-c",
        "cat /h/in && echo c > /h/out",
    ]);
    assert_eq!(out, "host\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "c\n");
    let ro = format!("{}:/h:ro", host.display());
    let o = try_docker(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "bb:base",
        "sh",
        "-c",
        "echo x > /h/out",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );
    let mnt = format!("type=bind,src={},dst=/h,readonly", host.display());
    let o = try_docker(&["run", "--rm", "--mount", &mnt, "bb:base", "touch", "/h/new"]);
    assert!(!o.status.success());
    assert!(!host.join("new").exists());
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "c\n");
    // --mount does not make a missing source, as dockerd.
    let missing = format!("type=bind,src={}/nope,dst=/h", host.display());
    let o = try_docker(&["run", "--rm", "--mount", &missing, "bb:base", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bind source path does not exist"),
        "{o:?}"
    );
}

fn tmpfs_sizes_are_enforced() {
    let fill = "dd if=/dev/zero of=/t/f bs=1024 count=2048";
    for args in [
        vec!["--tmpfs", "/t:size=1m"],
        vec!["--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576"],
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args.iter().copied());
        a.extend(["bb:base", "sh", "-c", fill]);
        let o = try_docker(&a);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("No space left"),
            "{args:?}: {o:?}"
        );
        let mut a = vec!["run", "--rm"];
        a.extend(args.iter().copied());
        a.extend([
            "bb:base",
            "sh",
            "-c",
            "dd if=/dev/zero of=/t/f bs=1024 count=512 2>/dev/null && echo ok",
        ]);
        assert_eq!(d().docker(&a), "ok\n");
    }
    let out = d().docker(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-mode=1770",
        "bb:base",
        "stat",
        "-c",
        "%a",
        "/t",
    ]);
    assert_eq!(out, "1770\n");
    // A tmpfs volume of the local driver: its size holds, its data is shared while mounted.
    d().docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tv",
    ]);
    let o = try_docker(&["run", "--rm", "-v", "tv:/t", "bb:base", "sh", "-c", fill]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left"),
        "{o:?}"
    );
    let mp = inspect("volume", "tv")["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    d().docker(&["volume", "rm", "tv"]);
    assert!(!std::path::Path::new(&mp).exists());
    // The same made by --mount with volume-opt and volume-label.
    let o = try_docker(&[
        "run", "--rm", "--mount",
        "type=volume,src=mv,dst=/t,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m,volume-label=by=mount",
        "bb:base", "sh", "-c", fill,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left"),
        "{o:?}"
    );
    let v = inspect("volume", "mv");
    assert_eq!(v["Options"]["o"], "size=1m", "{v}");
    assert_eq!(v["Labels"], serde_json::json!({"by": "mount"}));
    d().docker(&["volume", "rm", "mv"]);
    // A bind volume of the local driver shows the host directory.
    let host = world().work.path().join("bindvol");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("x"), "bound\n").unwrap();
    let dev = format!("device={}", host.display());
    d().docker(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "bv",
    ]);
    assert_eq!(
        d().docker(&["run", "--rm", "-v", "bv:/b", "bb:base", "cat", "/b/x"]),
        "bound\n"
    );
    d().docker(&["volume", "rm", "bv"]);
    // Removing the volume unmounted it and left the host directory alone.
    assert_eq!(fs::read_to_string(host.join("x")).unwrap(), "bound\n");
}

fn volumes_from_shares_the_mounts() {
    d().docker(&[
        "create",
        "--name",
        "src1",
        "-v",
        "/shared",
        "-v",
        "vf:/named",
        "bb:base",
        "true",
    ]);
    d().docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src1",
        "bb:base",
        "sh",
        "-c",
        "echo s > /shared/f; echo n > /named/f",
    ]);
    let out = d().docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src1:ro",
        "bb:base",
        "cat",
        "/shared/f",
        "/named/f",
    ]);
    assert_eq!(out, "s\nn\n");
    let o = try_docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src1:ro",
        "bb:base",
        "touch",
        "/shared/g",
    ]);
    assert!(!o.status.success());
    // The volumes belong to src1: a --rm user does not remove them.
    let anon = inspect("container", "src1")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/shared")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(volume_names(&[]).contains(&anon));
    // (Through the API: the CLI takes a 404 from create for a missing image and pulls.)
    let r = d().request(
        "POST",
        "/v1.44/containers/create",
        Some(br#"{"Image":"bb:base","HostConfig":{"VolumesFrom":["nosuch"]}}"#),
    );
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("No such container: nosuch"),
        "{}",
        r.text()
    );
    d().docker(&["rm", "-v", "src1"]);
    assert!(!volume_names(&[]).contains(&anon));
    d().docker(&["volume", "rm", "vf"]);
}

fn volume_commands_and_filters() {
    d().docker(&[
        "volume", "create", "--label", "env=prod", "--label", "tier", "lab1",
    ]);
    d().docker(&["volume", "create", "--label", "env=dev", "lab2"]);
    d().docker(&["volume", "create", "used1"]);
    d().docker(&[
        "create", "--name", "user1", "-v", "used1:/u", "bb:base", "true",
    ]);
    assert_eq!(volume_names(&["-f", "label=env=prod"]), ["lab1"]);
    assert_eq!(volume_names(&["-f", "label=env"]), ["lab1", "lab2"]);
    assert_eq!(volume_names(&["-f", "name=lab"]), ["lab1", "lab2"]);
    assert_eq!(
        volume_names(&["-f", "driver=local", "-f", "name=used"]),
        ["used1"]
    );
    assert!(volume_names(&["-f", "driver=nfs"]).is_empty());
    assert_eq!(volume_names(&["-f", "dangling=false"]), ["used1"]);
    assert!(!volume_names(&["-f", "dangling=true"]).contains(&"used1".to_string()));
    let o = try_docker(&["volume", "ls", "-f", "bogus=1"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid filter 'bogus'"),
        "{o:?}"
    );
    let v = inspect("volume", "lab1");
    assert_eq!(v["Labels"], serde_json::json!({"env": "prod", "tier": ""}));
    assert_eq!(
        (v["Driver"].as_str(), v["Scope"].as_str()),
        (Some("local"), Some("local"))
    );
    // In use: 409, also forced; a forced removal of nothing is fine.
    let r = d().request("DELETE", "/v1.44/volumes/used1?force=1", None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("volume is in use"), "{}", r.text());
    let r = d().request("DELETE", "/v1.44/volumes/nosuch", None);
    assert_eq!(r.status, 404);
    let r = d().request("DELETE", "/v1.44/volumes/nosuch?force=1", None);
    assert_eq!(r.status, 204);
    // Prune (API 1.44): anonymous only, unless all; with a label filter.
    let anon = d().docker(&["volume", "create"]).trim().to_string();
    let out = d().docker(&["volume", "prune", "-f"]);
    assert!(out.contains(&anon), "{out}");
    assert!(volume_names(&[]).contains(&"lab1".to_string()));
    let out = d().docker(&["volume", "prune", "-f", "-a", "--filter", "label=env=dev"]);
    assert!(out.contains("lab2") && !out.contains("lab1"), "{out}");
    let out = d().docker(&["volume", "prune", "-f", "-a"]);
    assert!(out.contains("lab1") && !out.contains("used1"), "{out}");
    assert_eq!(volume_names(&[]), ["used1"]);
    // system df lists the volume with its use.
    let df: Value = d()
        .request("GET", "/v1.44/system/df?type=volume", None)
        .json();
    let u = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "used1")
        .unwrap()["UsageData"]
        .clone();
    assert_eq!(u["RefCount"], 1, "{df}");
    // ... and the CLI reads it.
    let out = d().docker(&[
        "system",
        "df",
        "-v",
        "--format",
        "{{range .Volumes}}{{.Name}} {{.Links}}\n{{end}}",
    ]);
    assert!(out.lines().any(|l| l == "used1 1"), "{out}");
    d().docker(&["rm", "user1"]);
    d().docker(&["volume", "rm", "used1"]);
}

fn bad_input_is_refused_by_name() {
    for (args, msg) in [
        (
            vec!["volume", "create", "a/b"],
            "includes invalid characters",
        ),
        (vec!["volume", "create", "x"], "volume name is too short"),
        (
            vec!["volume", "create", "-d", "nfs", "vv"],
            "plugin \"nfs\" not found",
        ),
        (
            vec![
                "volume",
                "create",
                "-o",
                "type=nfs",
                "-o",
                "device=:/x",
                "vv",
            ],
            "type=\"nfs\"",
        ),
        (
            vec!["volume", "create", "-o", "type=tmpfs", "vv"],
            "missing required option: \"device\"",
        ),
        (
            vec!["volume", "create", "-o", "size=1g", "vv"],
            "invalid option: \"size\"",
        ),
        (
            vec!["run", "--rm", "-v", "vv:/d:bogus", "bb:base", "true"],
            "bogus",
        ),
        (
            vec![
                "run", "--rm", "-v", "/a:/b", "-v", "/c:/b", "bb:base", "true",
            ],
            "Duplicate mount point",
        ),
        (
            vec![
                "run",
                "--rm",
                "--mount",
                "type=bind,src=/tmp,dst=/b,readonly,bind-recursive=readonly,bind-propagation=rprivate",
                "bb:base",
                "true",
            ],
            "ReadOnlyForceRecursive",
        ),
        (
            vec!["run", "--rm", "--tmpfs", "/t:bogus=1", "bb:base", "true"],
            "bogus",
        ),
        (
            vec![
                "run",
                "--rm",
                "--mount",
                "type=volume,src=x,dst=/d",
                "bb:base",
                "true",
            ],
            "too short",
        ),
    ] {
        let o = try_docker(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // Nothing was left behind by the refusals.
    assert!(!volume_names(&[]).contains(&"vv".to_string()));
}

/// `docker build` over an image with a VOLUME: what a RUN writes below the VOLUME path after
/// the VOLUME is not in the image (it went to the build container's anonymous volume, removed
/// with it), on both daemons alike; the build leaves no volume behind.
fn build_after_volume_discards_run_writes() {
    let ctx = world().work.path().join("build-ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:base\nRUN mkdir /vol && echo built > /vol/f\nVOLUME /vol\nRUN echo lost > /vol/g\n",
    )
    .unwrap();
    let ctx = ctx.to_str().unwrap().to_string();
    let before = volume_names(&[]);
    let out = d()
        .docker_cmd(&["build", "-q", "-t", "bv:1", &ctx])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(volume_names(&[]), before, "the build left volumes");
    let ours = d().docker(&["run", "--rm", "bv:1", "ls", "/vol"]);
    assert_eq!(ours, "f\n");
    let theirs = with_dockerd(|k| {
        k.docker(&["build", "-q", "-t", "bv:1", &ctx]);
        k.docker(&["run", "--rm", "bv:1", "ls", "/vol"])
    });
    assert_eq!(ours, theirs);
    d().docker(&["rmi", "bv:1"]);
}

/// `bind-nonrecursive` binds the directory alone: a mount below it on the host is not seen
/// (with the default rbind it is); `bind-create-mountpoint` makes a missing source. The first on
/// both daemons alike.
fn bind_recursion_and_created_sources() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let nest = world().work.path().join("nest");
    let sub = nest.join("sub");
    fs::create_dir_all(&sub).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(ok.success());
    let _guard = Unmount(sub.clone());
    fs::write(sub.join("inner"), "i").unwrap();
    let rec = format!("type=bind,src={},dst=/n", nest.display());
    let nonrec = format!("{rec},bind-nonrecursive");
    let run = |docker: &dyn Fn(&[&str]) -> String| {
        (
            docker(&["run", "--rm", "--mount", &rec, "bb:base", "ls", "/n/sub"]),
            docker(&["run", "--rm", "--mount", &nonrec, "bb:base", "ls", "/n/sub"]),
        )
    };
    let ours = run(&|a| d().docker(a));
    assert_eq!(ours, ("inner\n".to_string(), String::new()));
    assert_eq!(ours, with_dockerd(|k| run(&|a| k.docker(a))));
    let missing = world().work.path().join("made/by/mount");
    // (The CLI 28 has no --mount key for it: through the API.)
    let body = serde_json::json!({"Image": "bb:base", "Cmd": ["touch", "/m/x"], "HostConfig": {
        "Mounts": [{"Type": "bind", "Source": missing, "Target": "/m",
                    "BindOptions": {"CreateMountpoint": true}}]}});
    let r = d().request(
        "POST",
        "/v1.44/containers/create",
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    assert!(missing.is_dir());
    d().docker(&["start", "-a", &id]);
    assert!(missing.join("x").exists());
    d().docker(&["rm", &id]);
}

/// A refengd restart while a container holds a tmpfs volume keeps the volume mounted for it:
/// containers started after the restart still share its content, and the holder's removal
/// unmounts it.
fn tmpfs_volume_held_across_a_restart() {
    d().docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tvr",
    ]);
    d().docker(&[
        "run", "-d", "--name", "holder2", "-v", "tvr:/t", "bb:base", "sleep", "60",
    ]);
    d().docker(&[
        "run",
        "--rm",
        "-v",
        "tvr:/t",
        "bb:base",
        "sh",
        "-c",
        "echo held > /t/h",
    ]);
    d().restart(&Options::default());
    for _ in 0..2 {
        let out = d().docker(&["run", "--rm", "-v", "tvr:/t", "bb:base", "cat", "/t/h"]);
        assert_eq!(out, "held\n");
    }
    d().docker(&["rm", "-f", "holder2"]);
    let out = d().docker(&["run", "--rm", "-v", "tvr:/t", "bb:base", "ls", "-A", "/t"]);
    assert_eq!(out, "");
    d().docker(&["volume", "rm", "tvr"]);
}

/// docker-compose 1.29 with a named volume: `up` writes, `down` keeps the volume, the next
/// `up` reads what was written, `down -v` removes it.
fn compose_project_keeps_its_named_volume() {
    let proj = world().work.path().join("volproj");
    fs::create_dir_all(&proj).unwrap();
    // network_mode none: the project needs no network (this daemon runs without a bridge).
    fs::write(
        proj.join("docker-compose.yml"),
        "version: \"3\"\nservices:\n  app:\n    image: bb:base\n    network_mode: none\n    \
         command: sh -c \"cat /data/f 2>/dev/null || echo none; echo written > /data/f\"\n    \
         volumes:\n      - appdata:/data\nvolumes:\n  appdata:\n",
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let out = std::process::Command::new("docker-compose")
            .args(["--no-ansi", "-p", "volproj"])
            .args(args)
            .current_dir(&proj)
            .env("DOCKER_HOST", d().host())
            .env("DOCKER_CONFIG", d().dir().join("cli"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run docker-compose");
        assert!(out.status.success(), "docker-compose {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once("| ").map(|(_, t)| t.trim().to_string()))
            .collect()
    };
    assert_eq!(said(&compose(&["up"])), ["none"]);
    compose(&["down"]);
    assert!(volume_names(&[]).contains(&"volproj_appdata".to_string()));
    let v = inspect("volume", "volproj_appdata");
    assert_eq!(v["Labels"]["com.docker.compose.project"], "volproj", "{v}");
    assert_eq!(said(&compose(&["up"])), ["written"]);
    compose(&["down", "-v"]);
    assert!(!volume_names(&[]).contains(&"volproj_appdata".to_string()));
}

/// A tmpfs volume of the local driver is mounted while some container uses it and unmounted
/// after the last (its content goes), on both daemons alike.
fn tmpfs_volume_lives_while_used() {
    fn steps(docker: &dyn Fn(&[&str]) -> String) -> Vec<String> {
        docker(&[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=1m",
            "tvl",
        ]);
        docker(&[
            "run", "-d", "--name", "holder", "-v", "tvl:/t", "bb:base", "sleep", "60",
        ]);
        docker(&[
            "run",
            "--rm",
            "-v",
            "tvl:/t",
            "bb:base",
            "sh",
            "-c",
            "echo s > /t/s",
        ]);
        let held = docker(&["run", "--rm", "-v", "tvl:/t", "bb:base", "cat", "/t/s"]);
        docker(&["rm", "-f", "holder"]);
        let after = docker(&["run", "--rm", "-v", "tvl:/t", "bb:base", "ls", "-A", "/t"]);
        docker(&["volume", "rm", "tvl"]);
        vec![held, after]
    }
    let ours = steps(&|a| d().docker(a));
    assert_eq!(ours, ["s\n", ""]);
    let theirs = with_dockerd(|k| steps(&|a| k.docker(a)));
    assert_eq!(ours, theirs);
}

/// The same volumes and container on both daemons: volume inspect and `Mounts` must match once
/// each daemon's data root and the random names are taken out.
fn differential_against_dockerd() {
    let bind = world().work.path().join("diff-bind");
    fs::create_dir_all(&bind).unwrap();
    let bind_rw = format!("{}:/h", bind.display());
    let bind_ro = format!("{}:/hro:ro", bind.display());
    let mount_bind = format!(
        "type=bind,src={},dst=/mb,bind-propagation=rslave",
        bind.display()
    );
    let create_args: Vec<&str> = vec![
        "create",
        "--name",
        "diff1",
        "-v",
        "dv1:/x",
        "-v",
        "dv2:/y:ro",
        "-v",
        "/anon",
        "-v",
        &bind_rw,
        "-v",
        &bind_ro,
        "--mount",
        &mount_bind,
        "--mount",
        "type=volume,src=dv3,dst=/z,readonly,volume-nocopy",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=700",
        "--tmpfs",
        "/t2:size=1m",
        "bb:vol",
        "true",
    ];
    let volume_create: [&[&str]; 2] = [
        &["volume", "create", "--label", "a=b", "dv1"],
        &[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=1m",
            "dv2",
        ],
    ];
    let ours = {
        // The same client makes the volumes on both sides: the CLI 28 leaves out the empty
        // DriverOpts the 20.10 one sends, and both daemons show options as they were given.
        for c in volume_create {
            let out = std::process::Command::new(peers::dockerd::DOCKER)
                .arg("--host")
                .arg(d().host())
                .args(c)
                .env("DOCKER_CONFIG", d().dir().join("cli"))
                .env("DOCKER_API_VERSION", "1.41")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        d().docker(&create_args);
        let vols: Value =
            serde_json::from_str(&d().docker(&["volume", "inspect", "dv1", "dv2", "dv3"])).unwrap();
        let c = inspect("container", "diff1");
        (vols, c, d().dir().to_path_buf())
    };
    let theirs = with_dockerd(|k| {
        for c in volume_create {
            k.docker(c);
        }
        k.docker(&create_args);
        let vols: Value =
            serde_json::from_str(&k.docker(&["volume", "inspect", "dv1", "dv2", "dv3"])).unwrap();
        let c: Value = serde_json::from_str(&k.docker(&["inspect", "diff1"])).unwrap();
        k.docker(&["rm", "-v", "diff1"]);
        k.docker(&["volume", "rm", "dv1", "dv2", "dv3"]);
        (vols, c[0].clone(), k.dir().to_path_buf())
    });
    d().docker(&["rm", "-v", "diff1"]);
    d().docker(&["volume", "rm", "dv1", "dv2", "dv3"]);
    let norm_vol = |v: &Value, root: &std::path::Path| {
        let mut v = v.clone();
        let mp = v["Mountpoint"].as_str().unwrap().to_string();
        let rel = mp
            .strip_prefix(&root.display().to_string())
            .unwrap_or(&mp)
            .trim_start_matches("/data")
            .to_string();
        v["Mountpoint"] = Value::String(rel);
        assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");
        v["CreatedAt"] = Value::Null;
        v
    };
    for (a, b) in ours
        .0
        .as_array()
        .unwrap()
        .iter()
        .zip(theirs.0.as_array().unwrap())
    {
        assert_eq!(norm_vol(a, &ours.2), norm_vol(b, &theirs.2));
    }
    let norm_mounts = |c: &Value, root: &std::path::Path| {
        let mut ms: Vec<Value> = c["Mounts"].as_array().unwrap().clone();
        for m in &mut ms {
            let anonymous = m["Name"].as_str().is_some_and(|n| n.len() == 64);
            if anonymous {
                m["Name"] = Value::String("<anonymous>".into());
            }
            if m["Type"] == "volume" {
                let s = m["Source"].as_str().unwrap().to_string();
                let rel = s
                    .strip_prefix(&root.display().to_string())
                    .unwrap_or(&s)
                    .trim_start_matches("/data")
                    .to_string();
                let rel = if anonymous {
                    "/volumes/<anonymous>/_data".to_string()
                } else {
                    rel
                };
                m["Source"] = Value::String(rel);
            }
        }
        ms.sort_by(|a, b| a["Destination"].as_str().cmp(&b["Destination"].as_str()));
        ms
    };
    assert_eq!(
        norm_mounts(&ours.1, &ours.2),
        norm_mounts(&theirs.1, &theirs.2)
    );
    // The CLIs order Binds differently (each daemon keeps them as sent): compare them sorted.
    let sorted = |v: &Value| {
        let mut b: Vec<String> = v["HostConfig"]["Binds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        b.sort();
        b
    };
    assert_eq!(sorted(&ours.1), sorted(&theirs.1));
    assert_eq!(
        ours.1["HostConfig"]["Tmpfs"],
        theirs.1["HostConfig"]["Tmpfs"]
    );
    assert_eq!(ours.1["Config"]["Volumes"], theirs.1["Config"]["Volumes"]);
}

/// `--mount type=volume,volume-subpath=`: the container sees the subpath alone; a symlink a
/// container wrote in the volume resolves inside the volume, never to the host's file of that
/// name; a missing subpath fails the start by name; `..` and absolute subpaths are refused.
fn volume_subpath_stays_in_the_volume() {
    d().docker(&["volume", "create", "sp"]);
    d().docker(&[
        "run",
        "--rm",
        "-v",
        "sp:/v",
        "bb:base",
        "sh",
        "-c",
        "mkdir -p /v/sub /v/etc && echo insub > /v/sub/f && echo top > /v/top \
         && echo decoy > /v/etc/hostname && ln -s /etc /v/abs && ln -s ../../../../etc /v/rel",
    ]);
    let sub = "type=volume,src=sp,dst=/x,volume-subpath=sub";
    let out = d().docker(&[
        "run",
        "--rm",
        "--mount",
        sub,
        "bb:base",
        "sh",
        "-c",
        "ls /x; cat /x/f",
    ]);
    assert_eq!(out, "f\ninsub\n");
    // Writes land in the subpath.
    d().docker(&[
        "run",
        "--rm",
        "--mount",
        sub,
        "bb:base",
        "sh",
        "-c",
        "echo w > /x/w",
    ]);
    let mp = inspect("volume", "sp")["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fs::read_to_string(format!("{mp}/sub/w")).unwrap(), "w\n");
    // Symlinks resolve in the volume: /etc of the volume, not the host's.
    let host = fs::read_to_string("/etc/hostname").unwrap_or_default();
    for link in ["abs", "rel"] {
        let m = format!("type=volume,src=sp,dst=/x,volume-subpath={link}");
        let out = d().docker(&[
            "run",
            "--rm",
            "--mount",
            &m,
            "bb:base",
            "cat",
            "/x/hostname",
        ]);
        assert_eq!(out, "decoy\n", "{link} left the volume (host has {host:?})");
    }
    let m = "type=volume,src=sp,dst=/x,volume-subpath=nope";
    let o = try_docker(&["run", "--rm", "--mount", m, "bb:base", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("subpath \"nope\""),
        "{err}"
    );
    for bad in ["../sp", "/sub"] {
        let m = format!("type=volume,src=sp,dst=/x,volume-subpath={bad}");
        let o = try_docker(&["run", "--rm", "--mount", &m, "bb:base", "true"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("subpath must be a relative path"),
            "{bad}: {err}"
        );
    }
    // Nothing staged is left mounted.
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains("/subpaths/"), "{info}");
    d().docker(&["volume", "rm", "sp"]);
}

fn main() {
    engine_support::run(
        &[
            (
                "named_volume",
                &named_volume_outlives_containers_and_restarts,
            ),
            (
                "anonymous_volumes",
                &anonymous_volumes_go_with_rm_v_and_rm_flag_only,
            ),
            ("copy_up", &image_volume_is_copied_up_unless_nocopy),
            ("binds", &binds_read_only_and_read_write),
            ("tmpfs", &tmpfs_sizes_are_enforced),
            ("volumes_from", &volumes_from_shares_the_mounts),
            ("volume_commands", &volume_commands_and_filters),
            ("bad_input", &bad_input_is_refused_by_name),
            (
                "tmpfs_volume_lives_while_used",
                &tmpfs_volume_lives_while_used,
            ),
            (
                "build_after_volume",
                &build_after_volume_discards_run_writes,
            ),
            ("bind_recursion", &bind_recursion_and_created_sources),
            (
                "tmpfs_volume_held_across_a_restart",
                &tmpfs_volume_held_across_a_restart,
            ),
            ("compose", &compose_project_keeps_its_named_volume),
            ("volume_subpath", &volume_subpath_stays_in_the_volume),
            (
                "differential_against_dockerd",
                &differential_against_dockerd,
            ),
        ],
        || {
            if let Some(w) = W.get() {
                w.dockerd.lock().unwrap_or_else(|e| e.into_inner()).take();
                w.refengd.shutdown();
                let _ = fs::remove_dir_all(w.work.path());
            }
        },
    );
}
