//! The init layer, as dockerd's `initlayer.Setup` makes it: the mount points the runtime binds
//! onto (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/dev/console`, ...) and
//! `/.dockerenv`, `/etc/mtab`, in a committed snapshot of their own between an image's layers
//! and each container's writable layer. The writable layer then holds only what the container
//! itself changed, so a commit or a build step diffs it against the init layer and never sees
//! the mount points, and `docker diff` neither.
//!
//! One init layer per image top chain (`<chain id>-init`), shared by the image's containers
//! rather than one per container as dockerd makes them: the content is the same for every
//! container, and a `docker run --rm` that finds it pays one Prepare, not a Prepare, a mount,
//! a Commit and a removal more (about 13 ms, a tenth of it, measured). The first create that
//! needs it makes it; the image's config blob references it with a
//! `containerd.io/gc.ref.snapshot.<snapshotter>/init` label, so containerd's collector takes it
//! together with the image, once no container's snapshot has it as parent. Should it be
//! collected meanwhile (its label dropped, or only another image of the same chain left), the
//! next create makes it again.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The init layer over the image top chain `chain`, the parent of its containers' writable
/// layers.
#[must_use]
pub fn snapshot(chain: &str) -> String {
    format!("{chain}-init")
}

/// Whether snapshot `name` is an init layer: a writable layer over one is a container made
/// with init layers (a per-container `<id>-init` of an earlier refengd counts too).
#[must_use]
pub fn is_init(name: &str) -> bool {
    name.ends_with("-init")
}

/// The active snapshot container `id`'s create makes an init layer in, before it is committed
/// as [`snapshot`].
#[must_use]
pub fn active_key(id: &str) -> String {
    format!("{id}-init-key")
}

/// The label on an image's config blob that keeps its init layer from the collector.
#[must_use]
pub fn label() -> String {
    format!(
        "containerd.io/gc.ref.snapshot.{}/init",
        super::super::store::SNAPSHOTTER
    )
}

/// What a path of the init layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Dir,
    File,
    Symlink(&'static str),
}

/// dockerd 20.10's list (daemon/initlayer/setup_unix.go), relative to the root.
const PLACEHOLDERS: [(&str, Placeholder); 10] = [
    ("dev/pts", Placeholder::Dir),
    ("dev/shm", Placeholder::Dir),
    ("proc", Placeholder::Dir),
    ("sys", Placeholder::Dir),
    (".dockerenv", Placeholder::File),
    ("etc/resolv.conf", Placeholder::File),
    ("etc/hosts", Placeholder::File),
    ("etc/hostname", Placeholder::File),
    ("dev/console", Placeholder::File),
    ("etc/mtab", Placeholder::Symlink("/proc/mounts")),
];

/// Makes the init layer's entries in the root filesystem mounted at `root` (the image with an
/// empty writable layer on top), as dockerd does: every non-directory on each entry's path is
/// unlinked first (so an image's own `/etc/hosts` gives way to an empty one, and no symlink of
/// the image is ever followed out of `root`), then what is missing is made: directories and
/// their parents 0755, empty files 0755, `/etc/mtab` a symlink to `/proc/mounts`.
///
/// # Errors
/// The first failure to make an entry, with its path.
pub fn populate(root: &Path) -> Result<(), String> {
    for (path, kind) in PLACEHOLDERS {
        let mut prefix = root.to_path_buf();
        for part in path.split('/') {
            prefix.push(part);
            // A directory refuses (EISDIR), a missing entry too (ENOENT): both are fine.
            let _ = std::fs::remove_file(&prefix);
        }
        let target = root.join(path);
        match std::fs::metadata(&target) {
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("/{path}: {e}")),
        }
        let failed = |e: std::io::Error| format!("/{path}: {e}");
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true).mode(0o755);
        if let Some(parent) = target.parent() {
            dirs.create(parent).map_err(failed)?;
        }
        // The mode is set, not left to refengd's umask: dockerd's is always 022.
        let mode = std::fs::Permissions::from_mode(0o755);
        match kind {
            Placeholder::Dir => {
                dirs.create(&target).map_err(failed)?;
                std::fs::set_permissions(&target, mode).map_err(failed)?;
            }
            Placeholder::File => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&target)
                    .and_then(|f| f.set_permissions(mode))
                    .map_err(failed)?;
            }
            Placeholder::Symlink(to) => std::os::unix::fs::symlink(to, &target).map_err(failed)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_root_gets_every_mount_point() {
        let t = tempfile::tempdir().unwrap();
        populate(t.path()).unwrap();
        for d in ["dev/pts", "dev/shm", "proc", "sys"] {
            assert!(t.path().join(d).is_dir(), "{d}");
        }
        for f in [
            ".dockerenv",
            "etc/resolv.conf",
            "etc/hosts",
            "etc/hostname",
            "dev/console",
        ] {
            let m = std::fs::symlink_metadata(t.path().join(f)).unwrap();
            assert!(m.is_file() && m.len() == 0, "{f}");
            assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{f}");
        }
        assert_eq!(
            std::fs::read_link(t.path().join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
    }

    #[test]
    fn the_images_files_give_way_and_its_directories_stay() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(r.join("etc/hosts"), "from the image").unwrap();
        std::fs::write(r.join("etc/mtab"), "a file").unwrap();
        std::fs::write(r.join("etc/passwd"), "root").unwrap();
        populate(r).unwrap();
        assert_eq!(std::fs::read(r.join("etc/hosts")).unwrap(), b"");
        assert_eq!(
            std::fs::read_link(r.join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
        assert_eq!(std::fs::read(r.join("etc/passwd")).unwrap(), b"root");
        assert!(r.join("proc/self").is_dir());
    }

    #[test]
    fn a_symlink_on_the_way_is_removed_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("dev")).unwrap();
        populate(&root).unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        let etc = std::fs::symlink_metadata(root.join("etc")).unwrap();
        assert!(etc.is_dir(), "{etc:?}");
        assert!(root.join("etc/hosts").is_file() && root.join("dev/pts").is_dir());
    }
}
