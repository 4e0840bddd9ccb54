//! The shim handoff model (`refeng_spec::shim`) against the shim's task service, in process: a
//! fake runtime, the real event queue with a transport that the caller's death and return switch
//! off and on. Random sequences of requests, exits and caller restarts must give the model's
//! reply, phase, delivered events and queue every step.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use containerd_shim_protos::api;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::types::task::Status;
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use refeng::shim::events::{envelope, EventQueue, Publish, TaskEvent, Transport};
use refeng::shim::options::RuntimeOptions;
use refeng::shim::runtime::{Launch, Runtime, RuntimeError};
use refeng::shim::service::{Shim, Shutdown};
use refeng_spec::shim::{Model, Op, Phase, Reply, ShimError, Topic};

const ID: &str = "c1";
const PID: u32 = 4242;

/// The runtime as the shim expects it to behave, with no processes behind it.
#[derive(Debug)]
struct FakeRuntime;

impl Runtime for FakeRuntime {
    fn create(&self, _: &Path, _: Launch<'_>) -> Result<u32, RuntimeError> {
        Ok(PID)
    }
    fn start(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn exec(&self, _: &str, _: &[u8], _: Launch<'_>) -> Result<u32, RuntimeError> {
        Ok(PID + 1)
    }
    fn kill(&self, _: &str, _: u32, _: bool) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn pause(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn resume(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn ps(&self, _: &str) -> Result<Vec<u32>, RuntimeError> {
        Ok(vec![PID])
    }
    fn update(&self, _: &str, _: &[u8]) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn watch_exit(&self, _: u32) -> Option<(u32, SystemTime)> {
        None
    }
}

/// Pushes into the same queue type the production publisher drains.
struct QueuePublisher(Arc<Mutex<EventQueue>>);

impl Publish for QueuePublisher {
    fn publish(&self, event: TaskEvent) {
        self.0.lock().unwrap().push(envelope("default", &event));
    }
}

/// containerd's events endpoint: up while the caller lives.
#[derive(Default)]
struct Caller {
    up: bool,
    received: Vec<String>,
}

impl Transport for Caller {
    fn forward(&mut self, envelope: &Envelope) -> Result<(), String> {
        if self.up {
            self.received.push(envelope.topic.clone());
            Ok(())
        } else {
            Err("connection refused".into())
        }
    }
    fn disconnect(&mut self) {}
}

struct Case {
    shim: Shim,
    queue: Arc<Mutex<EventQueue>>,
    caller: Caller,
    bundle: tempfile::TempDir,
    shut_down: bool,
}

impl Case {
    fn new() -> Self {
        let queue = Arc::new(Mutex::new(EventQueue::default()));
        let bundle = tempfile::tempdir().unwrap();
        let shim = Shim::new(
            "default",
            RuntimeOptions::default(),
            Box::new(|_: &RuntimeOptions| -> Arc<dyn Runtime> { Arc::new(FakeRuntime) }),
            Arc::new(QueuePublisher(Arc::clone(&queue))),
            bundle.path(),
        )
        .without_oom_watch();
        Self {
            shim,
            queue,
            caller: Caller {
                up: true,
                ..Default::default()
            },
            bundle,
            shut_down: false,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<Reply, ShimError> {
        let model_err = |e: refeng::shim::service::ShimError| {
            e.model()
                .unwrap_or_else(|| panic!("{op:?}: error outside the model: {e}"))
        };
        let result = match op {
            Op::Create => self
                .shim
                .create(api::CreateTaskRequest {
                    id: ID.into(),
                    bundle: self.bundle.path().to_string_lossy().into_owned(),
                    ..Default::default()
                })
                .map(|_| Reply::Done)
                .map_err(model_err),
            Op::Start => self
                .shim
                .start(api::StartRequest {
                    id: ID.into(),
                    ..Default::default()
                })
                .map(|_| Reply::Done)
                .map_err(model_err),
            Op::Kill => self
                .shim
                .kill(api::KillRequest {
                    id: ID.into(),
                    signal: 9,
                    ..Default::default()
                })
                .map(|()| Reply::Done)
                .map_err(model_err),
            Op::State => self
                .shim
                .state(api::StateRequest {
                    id: ID.into(),
                    ..Default::default()
                })
                .map(|s| {
                    let phase = match s.status.enum_value_or_default() {
                        Status::CREATED => Phase::Created,
                        Status::RUNNING => Phase::Started,
                        Status::STOPPED => Phase::Exited,
                        other => panic!("unexpected status {other:?}"),
                    };
                    let exit = (phase == Phase::Exited).then_some(s.exit_status);
                    Reply::State(phase, exit)
                })
                .map_err(model_err),
            Op::Wait => self
                .shim
                .wait(api::WaitRequest {
                    id: ID.into(),
                    ..Default::default()
                })
                .map(|w| Reply::ExitStatus(w.exit_status))
                .map_err(model_err),
            Op::Delete => self
                .shim
                .delete(api::DeleteRequest {
                    id: ID.into(),
                    ..Default::default()
                })
                .map(|d| Reply::ExitStatus(d.exit_status))
                .map_err(model_err),
            Op::Shutdown => Ok(match self.shim.shutdown() {
                Shutdown::Exit => {
                    self.shut_down = true;
                    Reply::Done
                }
                Shutdown::Refused => Reply::StillServing,
            }),
            Op::Exit(status) => {
                self.shim.process_exited(PID, *status, SystemTime::now());
                Ok(Reply::Done)
            }
            Op::CallerGone => {
                self.caller.up = false;
                Ok(Reply::Done)
            }
            Op::CallerBack => {
                self.caller.up = true;
                Ok(Reply::Done)
            }
        };
        self.queue.lock().unwrap().flush(&mut self.caller);
        result
    }

    fn check_state(&self, model: &Model) {
        if self.shut_down {
            assert_eq!(model.phase, Phase::ShutDown);
        } else {
            assert_eq!(self.shim.phase(), model.phase, "phase");
        }
        let delivered: Vec<String> = model
            .delivered
            .iter()
            .map(|t| {
                match t {
                    Topic::Create => "/tasks/create",
                    Topic::Start => "/tasks/start",
                    Topic::Exit => "/tasks/exit",
                    Topic::Delete => "/tasks/delete",
                }
                .to_string()
            })
            .collect();
        assert_eq!(self.caller.received, delivered, "delivered events");
        assert_eq!(
            self.queue.lock().unwrap().len(),
            model.queued.len(),
            "queued"
        );
    }
}

#[derive(Debug, Clone)]
struct Reference {
    model: Model,
    last: Option<Result<Reply, ShimError>>,
}

struct Handoff;

impl ReferenceStateMachine for Handoff {
    type State = Reference;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Self::State> {
        Just(Reference {
            model: Model::new(),
            last: None,
        })
        .boxed()
    }

    fn transitions(state: &Self::State) -> BoxedStrategy<Self::Transition> {
        // Only legal operations are generated, so the preconditions never reject a whole run
        // (after shutdown only the caller's comings and goings remain).
        let weighted = [
            (3, Op::Create),
            (3, Op::Start),
            (1, Op::Kill),
            (2, Op::State),
            (1, Op::Wait),
            (2, Op::Delete),
            (1, Op::Shutdown),
            (2, Op::Exit(0)),
            (2, Op::CallerGone),
            (2, Op::CallerBack),
        ];
        let choices: Vec<(u32, BoxedStrategy<Op>)> = weighted
            .into_iter()
            .filter(|(_, op)| state.model.legal(op))
            .map(|(w, op)| {
                let strategy = match op {
                    Op::Exit(_) => (0u32..3).prop_map(|s| Op::Exit(s * 64 + 1)).boxed(),
                    other => Just(other).boxed(),
                };
                (w, strategy)
            })
            .collect();
        proptest::strategy::Union::new_weighted(choices).boxed()
    }

    fn preconditions(state: &Self::State, op: &Self::Transition) -> bool {
        state.model.legal(op)
    }

    fn apply(mut state: Self::State, op: &Self::Transition) -> Self::State {
        state.last = Some(state.model.apply(op));
        state
    }
}

struct ShimUnderTest;

impl StateMachineTest for ShimUnderTest {
    type SystemUnderTest = Case;
    type Reference = Handoff;

    fn init_test(_: &Reference) -> Case {
        Case::new()
    }

    fn apply(mut case: Case, reference: &Reference, op: Op) -> Case {
        let want = reference.last.clone().expect("the reference applied first");
        let got = case.apply(&op);
        assert_eq!(got, want, "{op:?}");
        case.check_state(&reference.model);
        case
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Up to 30 steps of requests, exits and caller restarts; every reply, the phase and the
    /// events the caller received or still has to receive match the model.
    #[test]
    fn shim_follows_the_handoff_model(sequential 1..=30 => ShimUnderTest);
}

/// Replays a fixed sequence through the same harness.
fn replay(ops: &[Op]) {
    let mut reference = Reference {
        model: Model::new(),
        last: None,
    };
    let mut case = Case::new();
    for op in ops {
        assert!(
            reference.model.legal(op),
            "{op:?} illegal in {:?}",
            reference.model
        );
        reference = Handoff::apply(reference, op);
        case = ShimUnderTest::apply(case, &reference, op.clone());
    }
}

/// containerd restarted while the container ran and exited: the exit reaches it afterwards, and
/// the task can still be waited on and deleted.
#[test]
fn exit_while_caller_is_gone_is_delivered_after_restart() {
    replay(&[
        Op::Create,
        Op::Start,
        Op::CallerGone,
        Op::Exit(1),
        Op::CallerBack,
        Op::State,
        Op::Wait,
        Op::Delete,
        Op::Shutdown,
    ]);
}

/// A created task deleted without start reports SIGKILL and lets the shim go.
#[test]
fn created_task_deleted_before_start() {
    replay(&[
        Op::Create,
        Op::Shutdown,
        Op::Delete,
        Op::State,
        Op::Shutdown,
    ]);
}
