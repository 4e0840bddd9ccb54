//! The Engine container lifecycle as types (the model is `refeng_spec::engine`): a
//! `Container<S>` per status, caller-driven transitions that consume it and return the next
//! state, and [`AnyContainer`] for what the world decides (a process exits, the daemon restarts)
//! and for the API's calls on a container whose status is only known at run time. Every refusal
//! is the model's [`Refusal`] (or "not modified"), so dockerd's answers have one definition.
//!
//! The record is what refengd persists; effects (containerd calls) wrap these transitions in the
//! containers endpoints, which make the transition only once the effect succeeded.

use std::marker::PhantomData;

use refeng_spec::engine::{Refusal, RestartPolicy, Status};
use serde::{Deserialize, Serialize};

/// What refengd keeps about a container's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// `HostConfig.RestartPolicy`.
    pub policy: RestartPolicy,
    /// Stopped by `stop` or `kill`: the restart policy does not apply.
    pub stopped_by_hand: bool,
    /// Restarts by the policy since the last start by hand.
    pub restart_count: u32,
    /// The last exit code.
    pub exit_code: i32,
    /// The status it was persisted in.
    pub status: Status,
}

macro_rules! states {
    ($($(#[$m:meta])* $name:ident),*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
    )*};
}
states!(
    /// Never started.
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Between an exit and the policy's restart.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited and staying so.
    Exited,
    /// Removal failed half-way.
    Dead
);

/// A container in state `S`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container<S> {
    record: Record,
    state: PhantomData<S>,
}

impl<S> Container<S> {
    fn to<T>(mut self, status: Status) -> Container<T> {
        self.record.status = status;
        Container {
            record: self.record,
            state: PhantomData,
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }
}

impl Container<Created> {
    /// A new container (`POST /containers/create`).
    pub fn new(id: String, name: String, policy: RestartPolicy) -> Self {
        Container {
            record: Record {
                id,
                name,
                policy,
                stopped_by_hand: false,
                restart_count: 0,
                exit_code: 0,
                status: Status::Created,
            },
            state: PhantomData,
        }
    }
}

/// A start by hand (start, restart): the policy applies again from a zero count.
fn started<S>(mut c: Container<S>) -> Container<Running> {
    c.record.stopped_by_hand = false;
    c.record.restart_count = 0;
    c.to(Status::Running)
}

/// Stopped by hand (stop, kill) while a process existed: KILL's code.
fn stopped<S>(mut c: Container<S>, killed: bool) -> Container<Exited> {
    c.record.stopped_by_hand = true;
    if killed {
        c.record.exit_code = 137;
    }
    c.to(Status::Exited)
}

impl Container<Created> {
    /// `start`.
    pub fn start(self) -> Container<Running> {
        started(self)
    }
    /// `remove` begins.
    pub fn remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

impl Container<Exited> {
    /// `start`.
    pub fn start(self) -> Container<Running> {
        started(self)
    }
    /// `remove` begins.
    pub fn remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

/// What follows an exit of the process: the policy decides.
#[derive(Debug)]
pub enum AfterExit {
    /// The policy starts it again after its back-off.
    Restarting(Container<Restarting>),
    /// It stays exited.
    Exited(Container<Exited>),
}

impl Container<Running> {
    /// `pause`.
    pub fn pause(self) -> Container<Paused> {
        self.to(Status::Paused)
    }
    /// `stop` or `kill`: the process ended by the caller's hand.
    pub fn stop(self) -> Container<Exited> {
        stopped(self, true)
    }
    /// `restart`: stopped and started again by hand.
    pub fn restart(mut self) -> Container<Running> {
        self.record.exit_code = 137;
        started(self)
    }
    /// The process exited by itself with `code` (world).
    pub fn exited(mut self, code: i32) -> AfterExit {
        self.record.exit_code = code;
        let r = &self.record;
        if !r.stopped_by_hand && r.policy.restarts_after(code, r.restart_count) {
            AfterExit::Restarting(self.to(Status::Restarting))
        } else {
            AfterExit::Exited(self.to(Status::Exited))
        }
    }
    /// `remove --force` begins (the process is killed first).
    pub fn force_remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

impl Container<Paused> {
    /// `unpause`.
    pub fn unpause(self) -> Container<Running> {
        self.to(Status::Running)
    }
    /// `stop` or `kill`.
    pub fn stop(self) -> Container<Exited> {
        stopped(self, true)
    }
    /// `restart`.
    pub fn restart(mut self) -> Container<Running> {
        self.record.exit_code = 137;
        started(self)
    }
    /// `remove --force` begins.
    pub fn force_remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

impl Container<Restarting> {
    /// The back-off ran out: the policy starts it (world).
    pub fn restart_due(mut self) -> Container<Running> {
        self.record.restart_count += 1;
        self.to(Status::Running)
    }
    /// `stop` or `kill`: the pending restart is cancelled (no process to signal).
    pub fn stop(self) -> Container<Exited> {
        stopped(self, false)
    }
    /// `restart`: started at once, by hand.
    pub fn restart(self) -> Container<Running> {
        started(self)
    }
    /// `remove --force` begins.
    pub fn force_remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

impl Container<Removing> {
    /// The removal finished: the record is gone.
    pub fn removed(self) -> Record {
        self.record
    }
    /// The removal failed half-way (world).
    pub fn failed(self) -> Container<Dead> {
        self.to(Status::Dead)
    }
}

impl Container<Dead> {
    /// `remove` begins again.
    pub fn remove(self) -> Container<Removing> {
        self.to(Status::Removing)
    }
}

/// Why a call on a container did not change it: a refusal, or nothing to do (304).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// 304.
    NotModified,
    /// 404/409 with dockerd's message.
    Refused(Refusal),
}

/// A container whose state is known only at run time: loaded from disk, or named in a call.
/// Cloning it lets a caller ask the model whether a call is legal before making its effect.
#[derive(Debug, Clone)]
pub enum AnyContainer {
    /// created
    Created(Container<Created>),
    /// running
    Running(Container<Running>),
    /// paused
    Paused(Container<Paused>),
    /// restarting
    Restarting(Container<Restarting>),
    /// removing
    Removing(Container<Removing>),
    /// exited
    Exited(Container<Exited>),
    /// dead
    Dead(Container<Dead>),
}

/// What containerd says of a container's task when refengd (re)starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Its task runs.
    Running,
    /// Its task is frozen.
    Paused,
    /// No task, or a stopped one with this exit code (an exit during the downtime).
    Stopped(Option<i32>),
}

/// The result of a call: the container in its next state, or in the same one with why.
pub type Outcome = Result<AnyContainer, (AnyContainer, Unchanged)>;

impl AnyContainer {
    /// Its status.
    pub fn status(&self) -> Status {
        self.record().status
    }

    fn record_mut(&mut self) -> &mut Record {
        match self {
            Self::Created(c) => &mut c.record,
            Self::Running(c) => &mut c.record,
            Self::Paused(c) => &mut c.record,
            Self::Restarting(c) => &mut c.record,
            Self::Removing(c) => &mut c.record,
            Self::Exited(c) => &mut c.record,
            Self::Dead(c) => &mut c.record,
        }
    }

    /// Records the exit code the process really ended with (the model says 137 for a stop by
    /// hand; a process that handles the stop signal ends with its own code, as in dockerd).
    pub fn set_exit_code(&mut self, code: i32) {
        self.record_mut().exit_code = code;
    }

    /// `rename`: the record's new name (the caller checked that it is free).
    pub fn rename(&mut self, name: &str) {
        self.record_mut().name = name.into();
    }

    /// `update`: a new restart policy (judged at the next exit).
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.record_mut().policy = policy;
    }

    /// A `kill` whose signal did not end the process was still a stop by hand: the policy does
    /// not restart it when it ends (dockerd's `HasBeenManuallyStopped`).
    pub fn mark_stopped_by_hand(&mut self) {
        self.record_mut().stopped_by_hand = true;
    }

    /// Its record.
    pub fn record(&self) -> &Record {
        match self {
            Self::Created(c) => c.record(),
            Self::Running(c) => c.record(),
            Self::Paused(c) => c.record(),
            Self::Restarting(c) => c.record(),
            Self::Removing(c) => c.record(),
            Self::Exited(c) => c.record(),
            Self::Dead(c) => c.record(),
        }
    }

    /// A persisted record, reconciled with what containerd says of its task (live restore):
    /// a task that runs keeps running; one that ended while refengd was away is an exit with
    /// its code, which the restart policy then judges; a record persisted mid-removal is dead
    /// (the removal did not finish).
    pub fn load(record: Record, observed: Observed) -> AnyContainer {
        fn c<S>(record: &Record, status: Status) -> Container<S> {
            Container {
                record: Record {
                    status,
                    ..record.clone()
                },
                state: PhantomData,
            }
        }
        match (record.status, observed) {
            (Status::Running | Status::Paused, Observed::Running) => {
                Self::Running(c(&record, Status::Running))
            }
            (Status::Running | Status::Paused, Observed::Paused) => {
                Self::Paused(c(&record, Status::Paused))
            }
            (Status::Running | Status::Paused, Observed::Stopped(code)) => {
                let running: Container<Running> = c(&record, Status::Running);
                match running.exited(code.unwrap_or(255)) {
                    AfterExit::Restarting(r) => Self::Restarting(r),
                    AfterExit::Exited(e) => Self::Exited(e),
                }
            }
            (Status::Created, _) => Self::Created(c(&record, Status::Created)),
            (Status::Restarting, _) => Self::Restarting(c(&record, Status::Restarting)),
            (Status::Exited, _) => Self::Exited(c(&record, Status::Exited)),
            (Status::Removing | Status::Dead, _) => Self::Dead(c(&record, Status::Dead)),
        }
    }

    /// `start`: created and exited ones run; a running one is 304; paused, removing and dead
    /// ones are refused.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn start(self) -> Outcome {
        match self {
            Self::Created(c) => Ok(Self::Running(c.start())),
            Self::Exited(c) => Ok(Self::Running(c.start())),
            s @ (Self::Running(_) | Self::Restarting(_)) => Err((s, Unchanged::NotModified)),
            s @ Self::Paused(_) => Err((s, Unchanged::Refused(Refusal::StartPaused))),
            s @ (Self::Removing(_) | Self::Dead(_)) => {
                Err((s, Unchanged::Refused(Refusal::MarkedForRemoval)))
            }
        }
    }

    /// `stop`: whatever has a process (or a pending restart) ends; the rest is 304.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn stop(self) -> Outcome {
        match self {
            Self::Running(c) => Ok(Self::Exited(c.stop())),
            Self::Paused(c) => Ok(Self::Exited(c.stop())),
            Self::Restarting(c) => Ok(Self::Exited(c.stop())),
            s @ (Self::Created(_) | Self::Exited(_) | Self::Removing(_) | Self::Dead(_)) => {
                Err((s, Unchanged::NotModified))
            }
        }
    }

    /// `kill`: as stop, but refused (409) where nothing runs.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn kill(self) -> Outcome {
        match self.stop() {
            Err((s, Unchanged::NotModified)) => Err((s, Unchanged::Refused(Refusal::NotRunning))),
            other => other,
        }
    }

    /// `restart`: stopped if needed, then started by hand.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn restart(self) -> Outcome {
        match self {
            Self::Created(c) => Ok(Self::Running(c.start())),
            Self::Exited(c) => Ok(Self::Running(c.start())),
            Self::Running(c) => Ok(Self::Running(c.restart())),
            Self::Paused(c) => Ok(Self::Running(c.restart())),
            Self::Restarting(c) => Ok(Self::Running(c.restart())),
            s @ (Self::Removing(_) | Self::Dead(_)) => {
                Err((s, Unchanged::Refused(Refusal::MarkedForRemoval)))
            }
        }
    }

    /// `pause`.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn pause(self) -> Outcome {
        match self {
            Self::Running(c) => Ok(Self::Paused(c.pause())),
            s @ Self::Paused(_) => Err((s, Unchanged::Refused(Refusal::AlreadyPaused))),
            s @ Self::Restarting(_) => Err((s, Unchanged::Refused(Refusal::Restarting))),
            s @ (Self::Created(_) | Self::Exited(_) | Self::Removing(_) | Self::Dead(_)) => {
                Err((s, Unchanged::Refused(Refusal::NotRunning)))
            }
        }
    }

    /// `unpause`.
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn unpause(self) -> Outcome {
        match self {
            Self::Paused(c) => Ok(Self::Running(c.unpause())),
            s => Err((s, Unchanged::Refused(Refusal::NotPaused))),
        }
    }

    /// `remove` begins (with `force`, also where a process runs).
    ///
    /// # Errors
    /// The container unchanged, with why.
    pub fn remove(self, force: bool) -> Result<Container<Removing>, (AnyContainer, Unchanged)> {
        match self {
            Self::Created(c) => Ok(c.remove()),
            Self::Exited(c) => Ok(c.remove()),
            Self::Dead(c) => Ok(c.remove()),
            Self::Running(c) if force => Ok(c.force_remove()),
            Self::Paused(c) if force => Ok(c.force_remove()),
            Self::Restarting(c) if force => Ok(c.force_remove()),
            s @ (Self::Running(_) | Self::Paused(_) | Self::Restarting(_)) => {
                let status = s.status();
                Err((s, Unchanged::Refused(Refusal::RemoveRunning(status))))
            }
            s @ Self::Removing(_) => Err((s, Unchanged::Refused(Refusal::RemovalInProgress))),
        }
    }

    /// The process exited by itself (world; ignored unless running).
    pub fn exited(self, code: i32) -> AnyContainer {
        match self {
            Self::Running(c) => match c.exited(code) {
                AfterExit::Restarting(r) => Self::Restarting(r),
                AfterExit::Exited(e) => Self::Exited(e),
            },
            other => other,
        }
    }

    /// The policy's back-off ran out (world; ignored unless restarting).
    pub fn restart_due(self) -> AnyContainer {
        match self {
            Self::Restarting(c) => Self::Running(c.restart_due()),
            other => other,
        }
    }

    /// What refengd's own start does to a container after live restore: dockerd starts
    /// `always` containers (even stopped by hand) and `unless-stopped` ones not stopped by hand,
    /// and a pending restart at once.
    pub fn after_daemon_start(self) -> AnyContainer {
        match self {
            Self::Restarting(c) => Self::Running(c.restart_due()),
            Self::Exited(c) => {
                let start = match c.record.policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::UnlessStopped => !c.record.stopped_by_hand,
                    RestartPolicy::No | RestartPolicy::OnFailure(_) => false,
                };
                if start {
                    let mut c = c;
                    c.record.stopped_by_hand = false;
                    Self::Running(c.to(Status::Running))
                } else {
                    Self::Exited(c)
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use refeng_spec::engine::{Answer, Model, Op};
    use std::collections::BTreeMap;

    /// The implementation side of the property test: records by name, persisted as JSON at a
    /// daemon restart and loaded back with what "containerd" (the simulated tasks) says.
    #[derive(Default)]
    struct Daemon {
        containers: BTreeMap<String, AnyContainer>,
        next_id: u64,
    }

    impl Daemon {
        fn call(&mut self, name: &str, f: impl FnOnce(AnyContainer) -> Outcome) -> Answer {
            let Some(c) = self.containers.remove(name) else {
                return Answer::Refused(Refusal::NoSuchContainer);
            };
            match f(c) {
                Ok(next) => {
                    self.containers.insert(name.into(), next);
                    Answer::Done(204)
                }
                Err((same, why)) => {
                    self.containers.insert(name.into(), same);
                    match why {
                        Unchanged::NotModified => Answer::NotModified,
                        Unchanged::Refused(r) => Answer::Refused(r),
                    }
                }
            }
        }

        fn world(&mut self, name: &str, f: impl FnOnce(AnyContainer) -> AnyContainer) -> Answer {
            if let Some(c) = self.containers.remove(name) {
                self.containers.insert(name.into(), f(c));
            }
            Answer::Done(200)
        }

        fn apply(&mut self, op: &Op) -> Answer {
            match op {
                Op::Create { name, policy } => {
                    if self.containers.contains_key(name) {
                        return Answer::Refused(Refusal::NameInUse);
                    }
                    self.next_id += 1;
                    let c = Container::new(format!("{:064x}", self.next_id), name.clone(), *policy);
                    self.containers
                        .insert(name.clone(), AnyContainer::Created(c));
                    Answer::Done(201)
                }
                Op::Start(n) => self.call(n, AnyContainer::start),
                Op::Stop(n) => self.call(n, AnyContainer::stop),
                Op::Restart(n) => self.call(n, AnyContainer::restart),
                Op::Kill(n) => self.call(n, AnyContainer::kill),
                Op::Pause(n) => self.call(n, AnyContainer::pause),
                Op::Unpause(n) => self.call(n, AnyContainer::unpause),
                Op::Inspect(n) => {
                    if self.containers.contains_key(n) {
                        Answer::Done(200)
                    } else {
                        Answer::Refused(Refusal::NoSuchContainer)
                    }
                }
                Op::Remove { name, force } => {
                    let Some(c) = self.containers.remove(name) else {
                        return Answer::Refused(Refusal::NoSuchContainer);
                    };
                    match c.remove(*force) {
                        Ok(removing) => {
                            let _gone = removing.removed();
                            Answer::Done(204)
                        }
                        Err((same, Unchanged::Refused(r))) => {
                            self.containers.insert(name.clone(), same);
                            Answer::Refused(r)
                        }
                        Err((same, Unchanged::NotModified)) => {
                            self.containers.insert(name.clone(), same);
                            Answer::NotModified
                        }
                    }
                }
                Op::Exit { name, code } => self.world(name, |c| c.exited(*code)),
                Op::RestartDue(n) => self.world(n, AnyContainer::restart_due),
                Op::RemovalFails(n) => self.world(n, |c| match c {
                    AnyContainer::Created(c) => AnyContainer::Dead(c.remove().failed()),
                    AnyContainer::Exited(c) => AnyContainer::Dead(c.remove().failed()),
                    other => other,
                }),
                Op::DaemonRestart => {
                    // Persist, forget, load back with the tasks as they are (live restore).
                    let saved: Vec<(Record, Observed)> = self
                        .containers
                        .values()
                        .map(|c| {
                            let observed = match c.status() {
                                Status::Running => Observed::Running,
                                Status::Paused => Observed::Paused,
                                _ => Observed::Stopped(None),
                            };
                            let json = serde_json::to_string(c.record()).unwrap();
                            (serde_json::from_str(&json).unwrap(), observed)
                        })
                        .collect();
                    self.containers = saved
                        .into_iter()
                        .map(|(r, o)| {
                            (
                                r.name.clone(),
                                AnyContainer::load(r, o).after_daemon_start(),
                            )
                        })
                        .collect();
                    Answer::Done(200)
                }
            }
        }

        fn view(&self) -> BTreeMap<String, (Status, bool, u32, i32)> {
            self.containers
                .iter()
                .map(|(n, c)| {
                    let r = c.record();
                    (
                        n.clone(),
                        (r.status, r.stopped_by_hand, r.restart_count, r.exit_code),
                    )
                })
                .collect()
        }
    }

    fn model_view(m: &Model) -> BTreeMap<String, (Status, bool, u32, i32)> {
        m.containers
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    (c.status, c.stopped_by_hand, c.restart_count, c.exit_code),
                )
            })
            .collect()
    }

    fn op() -> impl Strategy<Value = Op> {
        let name = prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from);
        let policy = prop_oneof![
            Just(RestartPolicy::No),
            Just(RestartPolicy::Always),
            Just(RestartPolicy::UnlessStopped),
            (0u32..3).prop_map(RestartPolicy::OnFailure),
        ];
        prop_oneof![
            (name.clone(), policy).prop_map(|(name, policy)| Op::Create { name, policy }),
            name.clone().prop_map(Op::Start),
            name.clone().prop_map(Op::Stop),
            name.clone().prop_map(Op::Restart),
            name.clone().prop_map(Op::Kill),
            name.clone().prop_map(Op::Pause),
            name.clone().prop_map(Op::Unpause),
            name.clone().prop_map(Op::Inspect),
            (name.clone(), any::<bool>()).prop_map(|(name, force)| Op::Remove { name, force }),
            (name.clone(), prop::sample::select(vec![0, 1, 137]))
                .prop_map(|(name, code)| Op::Exit { name, code }),
            name.clone().prop_map(Op::RestartDue),
            name.prop_map(Op::RemovalFails),
            Just(Op::DaemonRestart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The types answer every call as the model does and end in the model's state, with
        /// daemon restarts (persist, reload, reconcile) anywhere in the sequence.
        #[test]
        fn typestate_follows_the_model(ops in prop::collection::vec(op(), 1..40)) {
            let mut model = Model::new();
            let mut daemon = Daemon::default();
            for op in &ops {
                if !model.legal(op) {
                    continue;
                }
                let want = model.apply(op);
                let got = daemon.apply(op);
                prop_assert_eq!(got, want, "{:?}", op);
                prop_assert_eq!(daemon.view(), model_view(&model), "after {:?}", op);
            }
        }
    }

    #[test]
    fn an_exit_during_the_downtime_is_judged_by_the_policy() {
        let rec = |policy| Record {
            id: "0".repeat(64),
            name: "x".into(),
            policy,
            stopped_by_hand: false,
            restart_count: 0,
            exit_code: 0,
            status: Status::Running,
        };
        let c = AnyContainer::load(rec(RestartPolicy::No), Observed::Stopped(Some(3)));
        assert_eq!((c.status(), c.record().exit_code), (Status::Exited, 3));
        let c = AnyContainer::load(rec(RestartPolicy::OnFailure(1)), Observed::Stopped(Some(3)));
        assert_eq!(c.status(), Status::Restarting);
        let c = AnyContainer::load(rec(RestartPolicy::No), Observed::Paused);
        assert_eq!(c.status(), Status::Paused);
    }
}
