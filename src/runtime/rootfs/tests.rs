//! Real rootfs setups, each in a forked child with its own mount namespace (root required): the
//! child builds a tiny busybox rootfs, runs prepare/enter/finalize and checks what it sees.

use std::error::Error;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::statfs::{
    statfs, FsType, DEVPTS_SUPER_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC,
};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{LinuxBuilder, Mount, MountBuilder, Spec};

use super::{enter, finalize, prepare, RootfsContext, RootfsError};
use crate::sys::fork::run_in_child;

/// A bundle directory with `rootfs/bin/busybox`; removed on drop (mounts live in children only).
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn ctx(&self) -> RootfsContext {
        RootfsContext {
            rootfs: self.rootfs(),
            bundle: self.path().to_path_buf(),
            no_pivot: false,
            mount_namespace: true,
            user_namespace: false,
            cgroup_namespace: false,
            cgroup: None,
        }
    }
}

fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn ensure(condition: bool, what: impl Into<String>) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn fs_type(path: &str) -> Result<FsType, String> {
    statfs(path)
        .map(|s| s.filesystem_type())
        .map_err(|e| format!("statfs {path}: {e}"))
}

fn readonly(path: &str) -> Result<bool, String> {
    statvfs(path)
        .map(|s| s.flags().contains(FsFlags::ST_RDONLY))
        .map_err(|e| format!("statvfs {path}: {e}"))
}

/// Mount points in this process's namespace, as it sees them.
fn mount_points() -> Vec<PathBuf> {
    crate::sys::kernel_files::mountinfo::read(None)
        .unwrap()
        .into_iter()
        .map(|m| m.mount_point)
        .collect()
}

/// In a child with a new mount namespace: prepare, enter, finalize, then `check`.
fn run_container(
    spec: Spec,
    ctx: RootfsContext,
    check: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    run_in_child(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
        prepare(&spec, &ctx).map_err(|e| format!("prepare: {}", chain(&e)))?;
        enter(&ctx).map_err(|e| format!("enter: {}", chain(&e)))?;
        finalize(&spec, &ctx).map_err(|e| format!("finalize: {}", chain(&e)))?;
        check()
    })
}

/// In a child with a new mount namespace: prepare only, then `check` (with the host root still
/// visible, to see where mounts landed).
fn run_prepare(
    spec: Spec,
    ctx: RootfsContext,
    check: impl FnOnce(Result<(), RootfsError>) -> Result<(), String>,
) -> Result<(), String> {
    run_in_child(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
        check(prepare(&spec, &ctx))
    })
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// A spec with only the given mounts, nothing masked or read-only.
fn bare_spec(mounts: Vec<Mount>) -> Spec {
    let mut spec = Spec::default();
    spec.set_mounts(Some(mounts));
    let linux = LinuxBuilder::default()
        .masked_paths(Vec::<String>::new())
        .readonly_paths(Vec::<String>::new())
        .build()
        .unwrap();
    spec.set_linux(Some(linux));
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(false));
    }
    spec
}

#[test]
fn default_spec_builds_a_runc_like_rootfs() {
    let bundle = Bundle::new();
    let host_unified = fs_type("/sys/fs/cgroup").unwrap() == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
    // Masked files and dirs of the default spec that this kernel has (CONFIG_PROC_KCORE, ...).
    let masked_files: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let masked_dirs: Vec<&str> = ["/proc/acpi", "/sys/firmware"]
        .into_iter()
        .filter(|p| Path::new(p).is_dir())
        .collect();
    assert!(
        !masked_files.is_empty() && !masked_dirs.is_empty(),
        "nothing to check masking with"
    );
    // The hierarchy's root options before: a cgroup2 mount made without a cgroup namespace
    // would reset them for the whole host (mounts::cgroup2).
    let host_cgroup_options = || {
        crate::sys::kernel_files::mountinfo::read(None)
            .unwrap()
            .into_iter()
            .rfind(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
            .map(|m| m.super_options)
    };
    let options_before = host_cgroup_options();
    run_container(Spec::default(), bundle.ctx(), move || {
        ensure(fs_type("/proc")? == PROC_SUPER_MAGIC, "/proc is not procfs")?;
        ensure(fs_type("/dev")? == TMPFS_MAGIC, "/dev is not tmpfs")?;
        ensure(
            fs_type("/dev/pts")? == DEVPTS_SUPER_MAGIC,
            "/dev/pts is not devpts",
        )?;
        ensure(fs_type("/sys")? == SYSFS_MAGIC, "/sys is not sysfs")?;
        ensure(readonly("/sys")?, "/sys is writable")?;

        let null = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
        ensure(
            null.file_type().is_char_device(),
            "/dev/null is not a char device",
        )?;
        let rdev = null.rdev();
        ensure(
            (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)) == (1, 3),
            format!("/dev/null is {rdev:#x}"),
        )?;
        ensure(
            null.permissions().mode() & 0o777 == 0o666,
            "/dev/null mode is not 0666",
        )?;
        for (name, minor) in [("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
            let m = std::fs::metadata(format!("/dev/{name}"))
                .map_err(|e| format!("/dev/{name}: {e}"))?;
            ensure(
                nix::sys::stat::minor(m.rdev()) == minor,
                format!("/dev/{name} minor"),
            )?;
        }
        ensure(
            std::fs::read_link("/dev/ptmx").ok() == Some(PathBuf::from("pts/ptmx")),
            "/dev/ptmx is not a symlink to pts/ptmx",
        )?;
        ensure(
            std::fs::read_link("/dev/fd").ok() == Some(PathBuf::from("/proc/self/fd")),
            "/dev/fd is not a symlink to /proc/self/fd",
        )?;
        ensure(
            std::fs::read_link("/dev/stderr").ok() == Some(PathBuf::from("/proc/self/fd/2")),
            "/dev/stderr",
        )?;

        // maskedPaths: files are covered by /dev/null, directories by an empty read-only tmpfs.
        for file in masked_files {
            let content = std::fs::read(file).map_err(|e| format!("read {file}: {e}"))?;
            ensure(content.is_empty(), format!("{file} is readable"))?;
        }
        for dir in masked_dirs {
            ensure(
                fs_type(dir)? == TMPFS_MAGIC && readonly(dir)?,
                format!("{dir} is not masked"),
            )?;
            let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?.count();
            ensure(entries == 0, format!("{dir} still shows {entries} entries"))?;
        }
        // readonlyPaths: /proc/sys.
        ensure(readonly("/proc/sys")?, "/proc/sys is writable")?;
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/hostname");
        ensure(
            write.as_ref().err().and_then(std::io::Error::raw_os_error) == Some(libc::EROFS),
            format!("writing /proc/sys/kernel/hostname: {write:?}"),
        )?;
        // root.readonly
        ensure(readonly("/")?, "/ is writable")?;
        let create = std::fs::File::create("/new-file");
        ensure(
            create.as_ref().err().and_then(std::io::Error::raw_os_error) == Some(libc::EROFS),
            format!("creating /new-file: {create:?}"),
        )?;
        // The cgroup mount.
        if host_unified {
            ensure(
                fs_type("/sys/fs/cgroup")? == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
                "cgroup2",
            )?;
            // Without a cgroup namespace a bind of the host's hierarchy, read-only as asked.
            ensure(readonly("/sys/fs/cgroup")?, "/sys/fs/cgroup is writable")?;
        } else {
            ensure(
                fs_type("/sys/fs/cgroup")? == TMPFS_MAGIC,
                "/sys/fs/cgroup is not tmpfs",
            )?;
            ensure(readonly("/sys/fs/cgroup")?, "/sys/fs/cgroup is writable")?;
            ensure(
                Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                "no memory hierarchy",
            )?;
            ensure(
                readonly("/sys/fs/cgroup/memory")?,
                "memory hierarchy is writable",
            )?;
        }
        // Nothing of the host is left: only what the spec mounted.
        let points = mount_points();
        ensure(
            points.iter().all(|p| p.starts_with("/")),
            "relative mount point",
        )?;
        ensure(
            !points.iter().any(|p| p.starts_with("/tmp")),
            format!("host mounts visible: {points:?}"),
        )?;
        // And the image's binary runs from the new root.
        let status = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", "test -c /dev/null && exit 7"])
            .status()
            .map_err(|e| format!("exec busybox: {e}"))?;
        ensure(
            status.code() == Some(7),
            format!("busybox exited {status:?}"),
        )
    })
    .unwrap();
    assert_eq!(
        host_cgroup_options(),
        options_before,
        "the host's /sys/fs/cgroup options changed"
    );
}

#[test]
fn symlinked_destinations_stay_inside_the_rootfs() {
    let bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    std::os::unix::fs::symlink("/etc", rootfs.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("/", rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../var", rootfs.join("up")).unwrap();
    std::fs::create_dir(bundle.path().join("vol")).unwrap();
    std::fs::write(bundle.path().join("vol/file"), "from-bundle").unwrap();
    let spec = bare_spec(vec![
        mount("/etc-link", "tmpfs", "tmpfs", &["size=1m"]),
        mount("/evil/opt", "tmpfs", "tmpfs", &["size=1m"]),
        mount("/up/lib", "bind", "vol", &["rbind", "ro"]),
    ]);
    let canonical = std::fs::canonicalize(&rootfs).unwrap();
    let host_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    run_prepare(spec, bundle.ctx(), move |result| {
        result.map_err(|e| chain(&e))?;
        let points = mount_points();
        for inside in ["etc", "opt", "var/lib"] {
            ensure(
                points.contains(&canonical.join(inside)),
                format!("no mount at rootfs/{inside}: {points:?}"),
            )?;
        }
        for outside in ["/etc", "/opt", "/var/lib"] {
            ensure(
                !points.contains(&PathBuf::from(outside)),
                format!("mount escaped to host {outside}"),
            )?;
        }
        ensure(
            std::fs::read_to_string(canonical.join("var/lib/file"))
                .ok()
                .as_deref()
                == Some("from-bundle"),
            "bind did not land at rootfs/var/lib",
        )?;
        ensure(
            std::fs::read_link(canonical.join("etc-link")).is_ok(),
            "the symlink itself is intact",
        )
    })
    .unwrap();
    // The host namespace is untouched (the child had its own; this guards against a leak).
    let host_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(host_before, host_after);
    assert!(
        !rootfs.join("etc").join("passwd").exists(),
        "nothing was copied into the image"
    );
}

#[test]
fn masked_symlinks_are_not_followed() {
    let bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    std::fs::create_dir_all(rootfs.join("data/dir")).unwrap();
    std::fs::write(rootfs.join("data/secret"), "visible").unwrap();
    std::fs::write(rootfs.join("data/masked-file"), "hidden").unwrap();
    std::fs::write(rootfs.join("data/dir/inner"), "hidden").unwrap();
    std::os::unix::fs::symlink("/data/secret", rootfs.join("link")).unwrap();
    std::os::unix::fs::symlink("../../../data", rootfs.join("linkdir")).unwrap();
    let mut spec = Spec::default();
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(false));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_masked_paths(Some(vec![
            "/link".into(),
            "/linkdir".into(),
            "/data/masked-file".into(),
            "/data/dir".into(),
            "/does/not/exist".into(),
        ]));
    }
    run_container(spec, bundle.ctx(), || {
        let secret = std::fs::read_to_string("/data/secret").map_err(|e| e.to_string())?;
        ensure(secret == "visible", "a symlink's target got masked")?;
        ensure(
            std::fs::read_dir("/data").map(|d| d.count()).unwrap_or(0) == 3,
            "/data got masked",
        )?;
        let masked = std::fs::read_to_string("/data/masked-file").map_err(|e| e.to_string())?;
        ensure(masked.is_empty(), "masked file still readable")?;
        ensure(
            !Path::new("/data/dir/inner").exists(),
            "masked dir still shows its contents",
        )?;
        ensure(readonly("/data/dir")?, "masked dir is writable")
    })
    .unwrap();
}

#[test]
fn binds_files_relative_sources_and_flags() {
    let bundle = Bundle::new();
    std::fs::create_dir(bundle.path().join("data")).unwrap();
    std::fs::write(bundle.path().join("data/f"), "data").unwrap();
    std::fs::write(bundle.path().join("hostfile"), "hostfile").unwrap();
    let spec = bare_spec(vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/mnt/data",
            "none",
            "data",
            &["rbind", "ro", "nosuid", "rprivate"],
        ),
        mount("/etc/hostfile", "bind", "hostfile", &["bind"]),
        mount("/dev", "tmpfs", "tmpfs", &["mode=755", "ro"]),
    ]);
    run_container(spec, bundle.ctx(), || {
        ensure(
            std::fs::read_to_string("/mnt/data/f").ok().as_deref() == Some("data"),
            "relative bind source not resolved against the bundle",
        )?;
        ensure(readonly("/mnt/data")?, "ro bind is writable")?;
        let flags = statvfs("/mnt/data").map_err(|e| e.to_string())?.flags();
        ensure(
            flags.contains(FsFlags::ST_NOSUID),
            "nosuid not applied to the bind",
        )?;
        ensure(
            std::fs::metadata("/etc/hostfile")
                .map(|m| m.is_file())
                .unwrap_or(false)
                && std::fs::read_to_string("/etc/hostfile").ok().as_deref() == Some("hostfile"),
            "file bind",
        )?;
        // /dev was mounted rw for the devices, then made read-only in finalize.
        ensure(Path::new("/dev/null").exists(), "no /dev/null")?;
        ensure(readonly("/dev")?, "/dev is writable despite ro")
    })
    .unwrap();
}

#[test]
fn tmpcopyup_keeps_the_previous_contents() {
    let bundle = Bundle::new();
    let keep = bundle.rootfs().join("opt/keep");
    std::fs::create_dir_all(keep.join("sub")).unwrap();
    std::fs::write(keep.join("sub/a.txt"), "a").unwrap();
    std::fs::set_permissions(
        keep.join("sub/a.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/a.txt", keep.join("link")).unwrap();
    std::fs::set_permissions(&keep, std::fs::Permissions::from_mode(0o710)).unwrap();
    let spec = bare_spec(vec![mount(
        "/opt/keep",
        "tmpfs",
        "tmpfs",
        &["tmpcopyup", "ro", "size=1m"],
    )]);
    run_container(spec, bundle.ctx(), || {
        ensure(fs_type("/opt/keep")? == TMPFS_MAGIC, "not a tmpfs")?;
        ensure(readonly("/opt/keep")?, "ro was not applied after the copy")?;
        ensure(
            std::fs::read_to_string("/opt/keep/link").ok().as_deref() == Some("a"),
            "contents lost",
        )?;
        let mode = std::fs::metadata("/opt/keep/sub/a.txt")
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        ensure(mode & 0o777 == 0o640, format!("file mode {mode:o}"))?;
        let mode = std::fs::metadata("/opt/keep")
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        ensure(mode & 0o777 == 0o710, format!("dir mode {mode:o}"))
    })
    .unwrap();
}

#[test]
fn no_pivot_chroots_into_the_rootfs() {
    let bundle = Bundle::new();
    std::fs::write(bundle.rootfs().join("marker"), "inside").unwrap();
    let mut ctx = bundle.ctx();
    ctx.no_pivot = true;
    let spec = bare_spec(vec![mount("/proc", "proc", "proc", &[])]);
    run_container(spec, ctx, || {
        ensure(
            std::fs::read_to_string("/marker").ok().as_deref() == Some("inside"),
            "not in the rootfs",
        )?;
        ensure(fs_type("/proc")? == PROC_SUPER_MAGIC, "/proc is not procfs")?;
        ensure(Path::new("/bin/busybox").exists(), "no busybox")
    })
    .unwrap();
}

#[test]
fn user_namespace_binds_host_devices() {
    let bundle = Bundle::new();
    let mut ctx = bundle.ctx();
    ctx.user_namespace = true;
    let spec = bare_spec(vec![
        mount("/proc", "proc", "proc", &[]),
        mount("/dev", "tmpfs", "tmpfs", &["mode=755"]),
    ]);
    run_container(spec, ctx, || {
        let null = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
        ensure(
            null.file_type().is_char_device(),
            "/dev/null is not a char device",
        )?;
        ensure(nix::sys::stat::minor(null.rdev()) == 3, "wrong minor")?;
        let points = mount_points();
        ensure(
            points.contains(&PathBuf::from("/dev/null")),
            format!("/dev/null is not a bind mount: {points:?}"),
        )
    })
    .unwrap();
}

#[test]
fn refusals_name_what_is_refused() {
    // The propagation check runs before any mount, so it is safe in the test process itself.
    let bundle = Bundle::new();
    let mut spec = bare_spec(vec![]);
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some("sideways".into()));
    }
    let err = prepare(&spec, &bundle.ctx()).unwrap_err();
    assert!(
        matches!(err, RootfsError::UnknownPropagation(ref p) if p == "sideways"),
        "{err}"
    );

    let cases: Vec<(Mount, &str)> = vec![
        (mount("/mnt", "bind", "/tmp", &["bind", "idmap"]), "idmap"),
        (mount("/proc/sys/x", "tmpfs", "tmpfs", &[]), "inside /proc"),
        (
            mount("/proc", "bind", "/tmp", &["bind"]),
            "not of type proc",
        ),
        (
            mount("/mnt", "bind", "no-such-source", &["bind"]),
            "no-such-source",
        ),
    ];
    for (entry, expected) in cases {
        let spec = bare_spec(vec![entry]);
        run_prepare(spec, bundle.ctx(), |result| match result {
            Ok(()) => Err("accepted".to_owned()),
            Err(e) if chain(&e).contains(expected) => Ok(()),
            Err(e) => Err(chain(&e)),
        })
        .unwrap_or_else(|e| panic!("{expected}: {e}"));
    }
}

#[test]
fn sysctls_are_written_inside_the_container() {
    let bundle = Bundle::new();
    let mut spec = bare_spec(vec![mount("/proc", "proc", "proc", &[])]);
    if let Some(linux) = spec.linux_mut() {
        linux.set_sysctl(Some(
            [("kernel.domainname".to_owned(), "refeng.test".to_owned())].into(),
        ));
        linux.set_namespaces(None);
    }
    // A new UTS namespace keeps the write away from the host.
    run_in_child(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWUTS).map_err(|e| format!("unshare uts: {e}"))?;
        run_container(spec, bundle.ctx(), || {
            let name = std::fs::read_to_string("/proc/sys/kernel/domainname")
                .map_err(|e| e.to_string())?;
            ensure(
                name.trim() == "refeng.test",
                format!("domainname is {name:?}"),
            )
        })
    })
    .unwrap();

    let mut bad = bare_spec(vec![]);
    if let Some(linux) = bad.linux_mut() {
        linux.set_sysctl(Some([("kernel/../../x".to_owned(), "1".to_owned())].into()));
    }
    let err = run_in_child(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
        match super::finalize::finalize(&bad) {
            Err(RootfsError::InvalidSysctlKey { key }) if key == "kernel/../../x" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    err.unwrap();
}
