//! `pause` and `resume`: freeze and thaw every process of the container through its cgroup
//! (v1 freezer, v2 cgroup.freeze).

use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::{Container, Paused, Running};

/// Errors of `pause` and `resume`.
#[derive(Debug, thiserror::Error)]
#[error("container {id}: cannot {op} its cgroup")]
pub struct FreezeError {
    /// Container id.
    pub id: String,
    /// `freeze` or `thaw`.
    pub op: &'static str,
    /// The cgroup error.
    #[source]
    pub source: Box<CgroupError>,
}

impl<S> Container<S> {
    /// Sets the freezer; the caller moves to the next state only when it succeeded.
    fn set_frozen(&self, frozen: bool) -> Result<(), FreezeError> {
        self.state
            .cgroup
            .freeze(frozen)
            .map_err(|source| FreezeError {
                id: self.id().to_string(),
                op: if frozen { "freeze" } else { "thaw" },
                source: Box::new(source),
            })
    }
}

impl Container<Running> {
    /// Freezes the container.
    ///
    /// # Errors
    /// If the freezer fails; the container is handed back running.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn pause(self) -> Result<Container<Paused>, (Self, FreezeError)> {
        match self.set_frozen(true) {
            Ok(()) => Ok(self.into_paused()),
            Err(e) => Err((self, e)),
        }
    }
}

impl Container<Paused> {
    /// Thaws the container.
    ///
    /// # Errors
    /// If the freezer fails; the container is handed back paused.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn resume(self) -> Result<Container<Running>, (Self, FreezeError)> {
        match self.set_frozen(false) {
            Ok(()) => Ok(self.into_running()),
            Err(e) => Err((self, e)),
        }
    }
}
