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

impl Container<Running> {
    /// Freezes the container.
    ///
    /// # Errors
    /// If the freezer fails; the container is handed back running.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn pause(self) -> Result<Container<Paused>, (Self, FreezeError)> {
        match self.state.cgroup.freeze(true) {
            Ok(()) => Ok(self.into_state()),
            Err(source) => {
                let id = self.id().to_string();
                Err((
                    self,
                    FreezeError {
                        id,
                        op: "freeze",
                        source: Box::new(source),
                    },
                ))
            }
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
        match self.state.cgroup.freeze(false) {
            Ok(()) => Ok(self.into_state()),
            Err(source) => {
                let id = self.id().to_string();
                Err((
                    self,
                    FreezeError {
                        id,
                        op: "thaw",
                        source: Box::new(source),
                    },
                ))
            }
        }
    }
}
