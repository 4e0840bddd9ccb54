//! The rootfs of a container without a mount namespace (runtime-spec config-linux "Namespaces": a
//! type not listed is inherited from the runtime): its rootfs bind and every mount on it are
//! mounts of the host's namespace, and outlive the container's processes. `create` learns which
//! bind at the rootfs is the container's ([`HostRootfs`]), the state records its mount id, and
//! `delete` (or a `create` that failed half way) unmounts that tree, deepest first, so that
//! nothing the container mounted stays on the host. runc 1.1 leaves them all mounted.
//!
//! Only the tree of that one bind is touched: what the caller had mounted at or below the rootfs
//! before (containerd's overlay at `rootfs/`, say) is not the container's and stays.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MntFlags;

use super::RootfsError;
use crate::sys::kernel_files::mountinfo::{self, MountInfo};

fn read_mounts() -> Result<Vec<MountInfo>, RootfsError> {
    Ok(mountinfo::read(None)?)
}

/// The id of a mount, as the state records it.
fn id_of(m: &MountInfo) -> u64 {
    u64::from(m.mount_id)
}

/// The mounts at the rootfs before `create` ran, to tell the container's bind from the caller's.
#[derive(Debug, Clone)]
pub struct HostRootfs {
    rootfs: PathBuf,
    before: BTreeSet<u64>,
}

impl HostRootfs {
    /// Notes which mounts sit at `rootfs` (an absolute path without symlinks) before the
    /// container's init makes its bind there.
    ///
    /// # Errors
    /// [`RootfsError::ReadProc`] when the mount table cannot be read.
    pub fn before_create(rootfs: &Path) -> Result<Self, RootfsError> {
        let before = read_mounts()?
            .into_iter()
            .filter(|m| m.mount_point == rootfs)
            .map(|m| id_of(&m))
            .collect();
        Ok(Self {
            rootfs: rootfs.to_path_buf(),
            before,
        })
    }

    /// The mount id of the bind the container's init made at the rootfs, `None` while there is
    /// none. Of several new mounts there, the lowest: any other is stacked on it, so in its tree.
    ///
    /// # Errors
    /// [`RootfsError::ReadProc`] when the mount table cannot be read.
    pub fn container_bind(&self) -> Result<Option<u64>, RootfsError> {
        let mounts = read_mounts()?;
        let new: Vec<&MountInfo> = mounts
            .iter()
            .filter(|m| m.mount_point == self.rootfs && !self.before.contains(&id_of(m)))
            .collect();
        Ok(new
            .iter()
            .find(|m| !new.iter().any(|other| other.mount_id == m.parent_id))
            .map(|m| id_of(m)))
    }

    /// The container's bind, which must exist once init reported the rootfs ready.
    ///
    /// # Errors
    /// [`RootfsError::NoHostBind`] when there is none, or the mount table is unreadable.
    pub fn require_container_bind(&self) -> Result<u64, RootfsError> {
        self.container_bind()?
            .ok_or_else(|| RootfsError::NoHostBind {
                rootfs: self.rootfs.clone(),
            })
    }

    /// Unmounts whatever the container mounted so far (a `create` that failed half way).
    ///
    /// # Errors
    /// As [`release_host_mounts`].
    pub fn release(&self) -> Result<(), RootfsError> {
        match self.container_bind()? {
            Some(id) => release_host_mounts(&self.rootfs, id),
            None => Ok(()),
        }
    }
}

/// Mount `top` and everything mounted below it, each with its depth in that tree.
fn tree_of<'m>(mounts: &'m [MountInfo], top: &'m MountInfo) -> Vec<(usize, &'m MountInfo)> {
    let mut tree = vec![(0, top)];
    let mut next = 0;
    while next < tree.len() {
        let (depth, mount) = tree[next];
        tree.extend(
            mounts
                .iter()
                .filter(|m| m.parent_id == mount.mount_id && m.mount_id != mount.mount_id)
                .map(|m| (depth + 1, m)),
        );
        next += 1;
    }
    tree
}

/// Unmounts the container's rootfs bind `id` at `rootfs` and every mount below it, deepest
/// first; nothing when the bind is gone already (a delete that is retried). Called once the
/// container's processes are dead, so nothing of the container moves the mount points meanwhile.
///
/// # Errors
/// [`RootfsError::Unmount`] for a mount that cannot be detached, [`RootfsError::MountsLeft`]
/// when some are still there afterwards, or an unreadable mount table.
pub fn release_host_mounts(rootfs: &Path, id: u64) -> Result<(), RootfsError> {
    let mounts = read_mounts()?;
    let Some(top) = mounts.iter().find(|m| id_of(m) == id) else {
        return Ok(());
    };
    if top.mount_point != rootfs {
        // The id was freed and reused by a mount that is not the container's.
        tracing::warn!(id, mount_point = %top.mount_point.display(), "the container's rootfs bind is gone; mount id reused elsewhere");
        return Ok(());
    }
    let mut tree = tree_of(&mounts, top);
    tree.sort_by_key(|(depth, _)| Reverse(*depth));
    let ids: BTreeSet<u64> = tree.iter().map(|(_, m)| id_of(m)).collect();
    for (_, mount) in &tree {
        // The paths are the kernel's current ones; a mount hidden under a later one at a parent
        // path does not resolve (EINVAL/ENOENT) and goes with the bind at the end. Lazy: the
        // host's table is clean at once even if something still holds a file open in one.
        match nix::mount::umount2(
            &mount.mount_point,
            MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
        ) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(source) => {
                return Err(RootfsError::Unmount {
                    mount_point: mount.mount_point.clone(),
                    source,
                })
            }
        }
    }
    let left = read_mounts()?
        .iter()
        .filter(|m| ids.contains(&id_of(m)))
        .count();
    if left > 0 {
        return Err(RootfsError::MountsLeft {
            rootfs: rootfs.to_path_buf(),
            count: left,
        });
    }
    tracing::debug!(rootfs = %rootfs.display(), mounts = ids.len(), "unmounted the container's host mounts");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_below_a_mount_comes_with_depths() {
        let mounts = mountinfo::parse(
            b"\
1 0 8:1 / / rw - ext4 /dev/sda rw
10 1 8:1 /b/rootfs /b/rootfs rw - ext4 /dev/sda rw
11 10 0:5 / /b/rootfs/proc rw - proc proc rw
12 10 0:6 / /b/rootfs/dev rw - tmpfs tmpfs rw
13 12 0:7 / /b/rootfs/dev/pts rw - devpts devpts rw
20 1 0:8 / /other rw - tmpfs tmpfs rw
",
        )
        .unwrap();
        let top = mounts.iter().find(|m| m.mount_id == 10).unwrap();
        let tree: Vec<(usize, u64)> = tree_of(&mounts, top)
            .iter()
            .map(|(depth, m)| (*depth, id_of(m)))
            .collect();
        assert_eq!(tree, [(0, 10), (1, 11), (1, 12), (2, 13)]);
    }
}
