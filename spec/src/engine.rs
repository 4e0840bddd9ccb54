//! The Engine container lifecycle (Engine API `State.Status`) as a pure model: containers by
//! name, their status, restart policy and whether they were stopped by hand, and which API call
//! is legal in which status with dockerd's exact HTTP answer otherwise.
//!
//! Sources: the Engine API reference (ContainerStart 204/304/404/409, ContainerStop 204/304,
//! ContainerKill 204/404/409, ContainerPause/Unpause, ContainerDelete 204/400/404/409) and
//! dockerd's `daemon/{start,stop,kill,pause,unpause,delete,restart}.go` where the reference is
//! silent. Restart policies follow `restartmanager`: `always` and `unless-stopped` restart on any
//! exit, `on-failure[:N]` on a non-zero exit up to N times; a container stopped by hand (stop,
//! kill) is not restarted, until a daemon restart brings back the `always` ones.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `State.Status` of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its processes are frozen.
    Paused,
    /// It exited and its restart policy will start it again.
    Restarting,
    /// Being removed (transient: `remove` is atomic in the model).
    Removing,
    /// It exited (or was stopped) and stays so.
    Exited,
    /// Its removal failed half-way; only a forced remove gets rid of it.
    Dead,
}

impl Status {
    /// The API's lowercase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// Parses the API's name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Running,
            Self::Paused,
            Self::Restarting,
            Self::Removing,
            Self::Exited,
            Self::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// dockerd's `IsRunning()`: a process exists (running, paused, or between restarts).
    #[must_use]
    pub fn is_running(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// `no` (the default).
    No,
    /// `always`.
    Always,
    /// `unless-stopped`.
    UnlessStopped,
    /// `on-failure` with `MaximumRetryCount` (0: unlimited).
    OnFailure(u32),
}

impl RestartPolicy {
    /// Whether an exit with `code`, after `count` restarts, starts the container again
    /// (`restartmanager.ShouldRestart`, not counting a stop by hand, which the caller checks).
    #[must_use]
    pub fn restarts_after(self, code: i32, count: u32) -> bool {
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure(max) => code != 0 && (max == 0 || count < max),
        }
    }
}

/// One container of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its status.
    pub status: Status,
    /// Its restart policy.
    pub policy: RestartPolicy,
    /// Stopped by `stop` or `kill` (dockerd's `HasBeenManuallyStopped`): no policy restart.
    pub stopped_by_hand: bool,
    /// How often the policy restarted it since the last start by hand.
    pub restart_count: u32,
    /// The last exit code (0 before any exit).
    pub exit_code: i32,
}

/// An API call (caller) or an event of the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `POST /containers/create?name=NAME` with a restart policy.
    Create {
        /// Its name.
        name: String,
        /// Its restart policy.
        policy: RestartPolicy,
    },
    /// `POST /containers/NAME/start`.
    Start(String),
    /// `POST /containers/NAME/stop` (TERM; the model's process dies of it).
    Stop(String),
    /// `POST /containers/NAME/restart`.
    Restart(String),
    /// `POST /containers/NAME/kill` (KILL).
    Kill(String),
    /// `POST /containers/NAME/pause`.
    Pause(String),
    /// `POST /containers/NAME/unpause`.
    Unpause(String),
    /// `DELETE /containers/NAME[?force=1]`.
    Remove {
        /// Which.
        name: String,
        /// `force`.
        force: bool,
    },
    /// `GET /containers/NAME/json`.
    Inspect(String),
    /// World: the process exits by itself with `code` (legal while running).
    Exit {
        /// Which.
        name: String,
        /// The exit code.
        code: i32,
    },
    /// World: the restart policy's back-off ran out (legal while restarting).
    RestartDue(String),
    /// World: removing the container's resources fails (legal while created, exited).
    RemovalFails(String),
    /// World: refengd is killed and started again (live restore: processes keep running).
    DaemonRestart,
}

/// Why a call is refused: dockerd's error classes, each with its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// 404 `No such container: NAME`.
    NoSuchContainer,
    /// 409: the name is taken.
    NameInUse,
    /// 409: start of a paused container.
    StartPaused,
    /// 409: start of a container being removed or dead.
    MarkedForRemoval,
    /// 409: kill or pause of a container that does not run.
    NotRunning,
    /// 409: pause of a paused container.
    AlreadyPaused,
    /// 409: pause of a restarting container.
    Restarting,
    /// 409: unpause of a container that is not paused.
    NotPaused,
    /// 409: remove without force of a running, paused or restarting container.
    RemoveRunning(Status),
    /// 409: remove of a container already being removed.
    RemovalInProgress,
}

impl Refusal {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::NoSuchContainer => 404,
            _ => 409,
        }
    }

    /// dockerd's message for the container called `name` with id `id`.
    #[must_use]
    pub fn message(self, name: &str, id: &str) -> String {
        match self {
            Self::NoSuchContainer => format!("No such container: {name}"),
            Self::NameInUse => format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
            ),
            Self::StartPaused => "cannot start a paused container, try unpause instead".into(),
            Self::MarkedForRemoval => "container is marked for removal and cannot be started".into(),
            Self::NotRunning => format!("Container {id} is not running"),
            Self::AlreadyPaused => format!("Container {id} is already paused"),
            Self::Restarting => {
                format!("Container {id} is restarting, wait until the container is running")
            }
            Self::NotPaused => format!("Container {id} is not paused"),
            Self::RemoveRunning(Status::Paused) => format!(
                "You cannot remove a paused container {id}. Unpause and then stop the container before attempting removal or force remove"
            ),
            Self::RemoveRunning(s) => format!(
                "You cannot remove a {s} container {id}. Stop the container before attempting removal or force remove"
            ),
            Self::RemovalInProgress => format!("removal of container {name} is already in progress"),
        }
    }
}

/// What a call answers: a success status, or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// 201 (create), 204 (a change), or 200 (inspect).
    Done(u16),
    /// 304: nothing to do (start of a running container, stop of a stopped one).
    NotModified,
    /// 404 or 409 with dockerd's message.
    Refused(Refusal),
}

impl Answer {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Done(s) => s,
            Self::NotModified => 304,
            Self::Refused(r) => r.status(),
        }
    }
}

/// The model: every container by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The containers.
    pub containers: BTreeMap<String, Container>,
}

impl Model {
    /// An empty daemon.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the world can do `op` now (caller operations are always legal: refusals are
    /// part of the model).
    #[must_use]
    pub fn legal(&self, op: &Op) -> bool {
        let status = |n: &str| self.containers.get(n).map(|c| c.status);
        match op {
            Op::Exit { name, .. } => status(name) == Some(Status::Running),
            Op::RestartDue(name) => status(name) == Some(Status::Restarting),
            Op::RemovalFails(name) => {
                matches!(status(name), Some(Status::Created | Status::Exited))
            }
            _ => true,
        }
    }

    /// Applies `op` and answers as dockerd does. A refusal leaves the state unchanged.
    ///
    /// # Panics
    /// Never for a legal `op`; a world operation that is not [`Model::legal`] is ignored.
    pub fn apply(&mut self, op: &Op) -> Answer {
        if let Op::Create { name, policy } = op {
            if self.containers.contains_key(name) {
                return Answer::Refused(Refusal::NameInUse);
            }
            self.containers.insert(
                name.clone(),
                Container {
                    status: Status::Created,
                    policy: *policy,
                    stopped_by_hand: false,
                    restart_count: 0,
                    exit_code: 0,
                },
            );
            return Answer::Done(201);
        }
        if let Op::DaemonRestart = op {
            self.daemon_restart();
            return Answer::Done(200);
        }
        let name = match op {
            Op::Start(n)
            | Op::Stop(n)
            | Op::Restart(n)
            | Op::Kill(n)
            | Op::Pause(n)
            | Op::Unpause(n)
            | Op::Inspect(n)
            | Op::RestartDue(n)
            | Op::RemovalFails(n)
            | Op::Remove { name: n, .. }
            | Op::Exit { name: n, .. } => n.clone(),
            Op::Create { .. } | Op::DaemonRestart => unreachable!("handled above"),
        };
        let Some(c) = self.containers.get_mut(&name) else {
            return Answer::Refused(Refusal::NoSuchContainer);
        };
        let refuse = Answer::Refused;
        match op {
            Op::Start(_) => match c.status {
                Status::Paused => refuse(Refusal::StartPaused),
                Status::Running | Status::Restarting => Answer::NotModified,
                Status::Removing | Status::Dead => refuse(Refusal::MarkedForRemoval),
                Status::Created | Status::Exited => {
                    c.status = Status::Running;
                    c.stopped_by_hand = false;
                    c.restart_count = 0;
                    Answer::Done(204)
                }
            },
            Op::Stop(_) => {
                if c.status.is_running() {
                    // SIGTERM to a shell init without a handler: ignored, then SIGKILL. A
                    // restarting container has no process: its pending restart is cancelled and
                    // its last exit code stays.
                    if c.status != Status::Restarting {
                        c.exit_code = 137;
                    }
                    c.status = Status::Exited;
                    c.stopped_by_hand = true;
                    Answer::Done(204)
                } else {
                    Answer::NotModified
                }
            }
            Op::Kill(_) => {
                if c.status.is_running() {
                    if c.status != Status::Restarting {
                        c.exit_code = 137;
                    }
                    c.status = Status::Exited;
                    c.stopped_by_hand = true;
                    Answer::Done(204)
                } else {
                    refuse(Refusal::NotRunning)
                }
            }
            Op::Restart(_) => match c.status {
                Status::Removing | Status::Dead => refuse(Refusal::MarkedForRemoval),
                s => {
                    if s.is_running() && s != Status::Restarting {
                        c.exit_code = 137;
                    }
                    c.status = Status::Running;
                    c.stopped_by_hand = false;
                    c.restart_count = 0;
                    Answer::Done(204)
                }
            },
            Op::Pause(_) => match c.status {
                Status::Running => {
                    c.status = Status::Paused;
                    Answer::Done(204)
                }
                Status::Paused => refuse(Refusal::AlreadyPaused),
                Status::Restarting => refuse(Refusal::Restarting),
                Status::Created | Status::Exited | Status::Removing | Status::Dead => {
                    refuse(Refusal::NotRunning)
                }
            },
            Op::Unpause(_) => {
                if c.status == Status::Paused {
                    c.status = Status::Running;
                    Answer::Done(204)
                } else {
                    refuse(Refusal::NotPaused)
                }
            }
            Op::Remove { force, .. } => match c.status {
                Status::Removing => refuse(Refusal::RemovalInProgress),
                s if s.is_running() && !force => refuse(Refusal::RemoveRunning(s)),
                _ => {
                    self.containers.remove(&name);
                    Answer::Done(204)
                }
            },
            Op::Inspect(_) => Answer::Done(200),
            Op::Exit { code, .. } => {
                if c.status == Status::Running {
                    c.exit_code = *code;
                    c.status =
                        if !c.stopped_by_hand && c.policy.restarts_after(*code, c.restart_count) {
                            Status::Restarting
                        } else {
                            Status::Exited
                        };
                }
                Answer::Done(200)
            }
            Op::RestartDue(_) => {
                if c.status == Status::Restarting {
                    c.status = Status::Running;
                    c.restart_count += 1;
                }
                Answer::Done(200)
            }
            Op::RemovalFails(_) => {
                if matches!(c.status, Status::Created | Status::Exited) {
                    c.status = Status::Dead;
                }
                Answer::Done(200)
            }
            Op::Create { .. } | Op::DaemonRestart => unreachable!("handled above"),
        }
    }

    /// refengd restarts with live restore: running and paused containers keep their processes;
    /// a restarting one is started at once; stopped ones with `always` (even if stopped by
    /// hand) and `unless-stopped` or `on-failure` (unless stopped by hand, and for on-failure
    /// only after a failure within its count) are started, as dockerd's `restore` does.
    fn daemon_restart(&mut self) {
        for c in self.containers.values_mut() {
            match c.status {
                Status::Restarting => {
                    c.status = Status::Running;
                    c.restart_count += 1;
                }
                Status::Exited => {
                    let start = match c.policy {
                        RestartPolicy::Always => true,
                        RestartPolicy::UnlessStopped => !c.stopped_by_hand,
                        RestartPolicy::No | RestartPolicy::OnFailure(_) => false,
                    };
                    if start {
                        c.status = Status::Running;
                        c.stopped_by_hand = false;
                    }
                }
                Status::Created
                | Status::Running
                | Status::Paused
                | Status::Removing
                | Status::Dead => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m_with(name: &str, policy: RestartPolicy) -> Model {
        let mut m = Model::new();
        assert_eq!(
            m.apply(&Op::Create {
                name: name.into(),
                policy
            }),
            Answer::Done(201)
        );
        m
    }

    fn status(m: &Model, n: &str) -> Option<Status> {
        m.containers.get(n).map(|c| c.status)
    }

    #[test]
    fn dockerds_answers_for_the_usual_calls() {
        let mut m = m_with("a", RestartPolicy::No);
        let a = || "a".to_string();
        assert_eq!(m.apply(&Op::Start(a())).status(), 204);
        assert_eq!(m.apply(&Op::Start(a())).status(), 304);
        assert_eq!(
            m.apply(&Op::Remove {
                name: a(),
                force: false
            }),
            Answer::Refused(Refusal::RemoveRunning(Status::Running))
        );
        assert_eq!(m.apply(&Op::Pause(a())).status(), 204);
        assert_eq!(
            m.apply(&Op::Start(a())),
            Answer::Refused(Refusal::StartPaused)
        );
        assert_eq!(
            m.apply(&Op::Pause(a())),
            Answer::Refused(Refusal::AlreadyPaused)
        );
        assert_eq!(m.apply(&Op::Unpause(a())).status(), 204);
        assert_eq!(
            m.apply(&Op::Unpause(a())),
            Answer::Refused(Refusal::NotPaused)
        );
        assert_eq!(m.apply(&Op::Stop(a())).status(), 204);
        assert_eq!(m.apply(&Op::Stop(a())).status(), 304);
        assert_eq!(
            m.apply(&Op::Kill(a())),
            Answer::Refused(Refusal::NotRunning)
        );
        assert_eq!(
            m.apply(&Op::Remove {
                name: a(),
                force: false
            })
            .status(),
            204
        );
        assert_eq!(m.apply(&Op::Start(a())).status(), 404);
        assert_eq!(
            Refusal::NoSuchContainer.message("a", "x"),
            "No such container: a"
        );
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let mut m = m_with("a", RestartPolicy::Always);
        m.apply(&Op::Start("a".into()));
        m.apply(&Op::Pause("a".into()));
        let before = m.clone();
        for op in [
            Op::Start("a".into()),
            Op::Pause("a".into()),
            Op::Remove {
                name: "a".into(),
                force: false,
            },
            Op::Create {
                name: "a".into(),
                policy: RestartPolicy::No,
            },
            Op::Kill("zz".into()),
        ] {
            assert!(matches!(m.apply(&op), Answer::Refused(_)), "{op:?}");
            assert_eq!(m, before, "{op:?}");
        }
    }

    #[test]
    fn restart_policies_follow_restartmanager() {
        let mut m = m_with("f", RestartPolicy::OnFailure(2));
        m.apply(&Op::Start("f".into()));
        for _ in 0..2 {
            m.apply(&Op::Exit {
                name: "f".into(),
                code: 1,
            });
            assert_eq!(status(&m, "f"), Some(Status::Restarting));
            m.apply(&Op::RestartDue("f".into()));
        }
        m.apply(&Op::Exit {
            name: "f".into(),
            code: 1,
        });
        assert_eq!(
            status(&m, "f"),
            Some(Status::Exited),
            "the count is used up"
        );
        m.apply(&Op::Start("f".into()));
        m.apply(&Op::Exit {
            name: "f".into(),
            code: 0,
        });
        assert_eq!(
            status(&m, "f"),
            Some(Status::Exited),
            "success is no failure"
        );

        // Stopped by hand: no restart, until the daemon restarts an `always` container.
        let mut m = m_with("a", RestartPolicy::Always);
        m.apply(&Op::Create {
            name: "u".into(),
            policy: RestartPolicy::UnlessStopped,
        });
        for n in ["a", "u"] {
            m.apply(&Op::Start(n.into()));
            m.apply(&Op::Stop(n.into()));
            assert_eq!(status(&m, n), Some(Status::Exited));
        }
        m.apply(&Op::DaemonRestart);
        assert_eq!(status(&m, "a"), Some(Status::Running));
        assert_eq!(status(&m, "u"), Some(Status::Exited));
    }

    /// Found by the typestate property test: the model once gave a stopped restarting
    /// container KILL's code, though it had no process to kill.
    #[test]
    fn stopping_a_restarting_container_keeps_its_last_exit_code() {
        let mut m = m_with("r", RestartPolicy::Always);
        m.apply(&Op::Start("r".into()));
        m.apply(&Op::Exit {
            name: "r".into(),
            code: 0,
        });
        assert_eq!(status(&m, "r"), Some(Status::Restarting));
        assert_eq!(m.apply(&Op::Stop("r".into())).status(), 204);
        let c = &m.containers["r"];
        assert_eq!(
            (c.status, c.exit_code, c.stopped_by_hand),
            (Status::Exited, 0, true)
        );
    }

    #[test]
    fn dead_containers_only_go_by_remove() {
        let mut m = m_with("d", RestartPolicy::No);
        assert!(m.legal(&Op::RemovalFails("d".into())));
        m.apply(&Op::RemovalFails("d".into()));
        assert_eq!(
            m.apply(&Op::Start("d".into())),
            Answer::Refused(Refusal::MarkedForRemoval)
        );
        assert_eq!(m.apply(&Op::Stop("d".into())), Answer::NotModified);
        assert_eq!(
            m.apply(&Op::Remove {
                name: "d".into(),
                force: false
            })
            .status(),
            204
        );
        assert!(m.containers.is_empty());
    }

    #[test]
    fn world_operations_have_preconditions() {
        let m = m_with("c", RestartPolicy::No);
        assert!(!m.legal(&Op::Exit {
            name: "c".into(),
            code: 0
        }));
        assert!(!m.legal(&Op::RestartDue("c".into())));
        assert!(m.legal(&Op::Stop("c".into())));
    }
}
