//! The task lifecycle model (`refeng_spec::task`) against refeng-containerd through its gRPC
//! API: random sequences of Tasks requests on two tasks with two exec ids each, including
//! "kill -9 refeng-containerd and start it again" and "kill a task's init while the daemon is
//! down" as operations. Every result (reply or gRPC code) must be the model's, and then the
//! whole state (List, Get of every task and exec) must be the model's. Tasks run busybox under
//! refeng-shim and refeng-runc. Needs root and busybox-static.

mod containerd_support;
// containerd_support's archive module has its own copy for the image it builds.
#[allow(clippy::duplicate_mod)]
mod rootfs;
mod shims;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteProcessRequest, DeleteTaskRequest,
    ExecProcessRequest, GetRequest, KillRequest, ListTasksRequest, PauseTaskRequest,
    ResumeTaskRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as PbStatus;
use containerd_support::{channel, req, Daemon, Peer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use protobuf::CodedOutputStream;
use refeng_spec::task::{Code, ExecStatus, Model, Op, Reply, Status, TaskError};

const NS: &str = "props";
const IDS: [&str; 2] = ["a", "b"];
const EXECS: [&str; 2] = ["e1", "e2"];
const REFENG_RUNC: &str = env!("CARGO_BIN_EXE_refeng-runc");

/// The model and what it answered to the last operation.
#[derive(Debug, Clone, Default)]
struct Reference {
    model: Model,
    last: Option<Result<Reply, TaskError>>,
}

#[derive(Debug)]
struct Tasks;

fn id() -> BoxedStrategy<String> {
    proptest::sample::select(IDS.to_vec())
        .prop_map(str::to_owned)
        .boxed()
}

fn exec() -> BoxedStrategy<String> {
    proptest::sample::select(EXECS.to_vec())
        .prop_map(str::to_owned)
        .boxed()
}

impl ReferenceStateMachine for Tasks {
    type State = Reference;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Reference> {
        Just(Reference::default()).boxed()
    }

    fn transitions(state: &Reference) -> BoxedStrategy<Op> {
        // Uniform operations mostly hit absent tasks and seldom reach paused or exec states:
        // two times out of three, one that moves an existing task on.
        let advancing: Vec<Op> = state
            .model
            .tasks
            .iter()
            .flat_map(|(id, t)| advances(id, t))
            .collect();
        if advancing.is_empty() {
            return prop_oneof![1 => any_op(), 3 => id().prop_map(Op::Create)].boxed();
        }
        prop_oneof![
            1 => any_op(),
            1 => id().prop_map(Op::Create),
            4 => proptest::sample::select(advancing),
        ]
        .boxed()
    }

    fn preconditions(state: &Reference, op: &Op) -> bool {
        state.model.legal(op)
    }

    fn apply(mut state: Reference, op: &Op) -> Reference {
        state.last = Some(state.model.apply(op));
        state
    }
}

/// The operations that move task `id` on from where it is, refusals included.
fn advances(id: &str, t: &refeng_spec::task::Task) -> Vec<Op> {
    let i = || id.to_string();
    let mut ops = match t.status {
        Status::Created => vec![
            Op::Start(i()),
            Op::Kill(i()),
            Op::Delete(i()),
            Op::Pause(i()),
        ],
        Status::Running => vec![
            Op::Exec(i(), EXECS[0].into()),
            Op::Exec(i(), EXECS[1].into()),
            Op::Pause(i()),
            Op::Kill(i()),
            Op::Delete(i()),
            Op::RestartAfterExit(i()),
            Op::Restart,
        ],
        Status::Paused => vec![
            Op::Resume(i()),
            Op::Kill(i()),
            Op::Delete(i()),
            Op::Exec(i(), EXECS[0].into()),
        ],
        Status::Stopped => vec![Op::Delete(i()), Op::Wait(i()), Op::Start(i())],
    };
    for (e, (status, _)) in &t.execs {
        ops.extend(match status {
            ExecStatus::Created => vec![
                Op::StartExec(i(), e.clone()),
                Op::DeleteProcess(i(), e.clone()),
            ],
            ExecStatus::Running => vec![
                Op::KillExec(i(), e.clone()),
                Op::DeleteProcess(i(), e.clone()),
            ],
            ExecStatus::Stopped => vec![
                Op::DeleteProcess(i(), e.clone()),
                Op::KillExec(i(), e.clone()),
            ],
        });
    }
    ops
}

fn any_op() -> BoxedStrategy<Op> {
    {
        prop_oneof![
            4 => id().prop_map(Op::Create),
            4 => id().prop_map(Op::Start),
            2 => id().prop_map(Op::Kill),
            2 => id().prop_map(Op::Pause),
            2 => id().prop_map(Op::Resume),
            1 => id().prop_map(Op::Get),
            1 => id().prop_map(Op::Wait),
            3 => id().prop_map(Op::Delete),
            3 => (id(), exec()).prop_map(|(i, e)| Op::Exec(i, e)),
            3 => (id(), exec()).prop_map(|(i, e)| Op::StartExec(i, e)),
            2 => (id(), exec()).prop_map(|(i, e)| Op::KillExec(i, e)),
            2 => (id(), exec()).prop_map(|(i, e)| Op::DeleteProcess(i, e)),
            1 => Just(Op::Restart),
            1 => id().prop_map(Op::RestartAfterExit),
        ]
        .boxed()
    }
}

/// What the daemon answered, in the model's terms.
type Got = Result<Reply, (Code, String)>;

/// One test case: a private refeng-containerd, busybox, and the container records.
struct Case {
    daemon: Daemon,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    records: Vec<String>,
}

impl Case {
    fn new() -> Case {
        let daemon = Daemon::start(Peer::Refeng);
        let dir = tempfile::Builder::new()
            .prefix("taskprops")
            .tempdir_in("/tmp")
            .unwrap();
        rootfs::busybox(&dir.path().join("rootfs"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Case {
            daemon,
            dir,
            rt,
            records: Vec::new(),
        }
    }

    fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    fn cgroup_parent(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn spec(&self, id: &str) -> Vec<u8> {
        let mut spec: serde_json::Value =
            serde_json::from_str(include_str!("common/runc-default-spec.json")).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = vec!["sleep", "1000"].into();
        spec["process"]["env"] = vec!["PATH=/bin"].into();
        spec["root"]["path"] = self
            .dir
            .path()
            .join("rootfs")
            .to_string_lossy()
            .into_owned()
            .into();
        spec["linux"]["cgroupsPath"] = format!("/{}/{id}", self.cgroup_parent()).into();
        serde_json::to_vec(&spec).unwrap()
    }

    /// containerd.runc.v1.Options with refeng-runc and a root of this case's own.
    fn options(&self) -> prost_types::Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(6, REFENG_RUNC).unwrap();
            out.write_string(7, &self.runtime_root().to_string_lossy())
                .unwrap();
            out.flush().unwrap();
        }
        prost_types::Any {
            type_url: "containerd.runc.v1.Options".into(),
            value,
        }
    }

    async fn tasks(&self) -> TasksClient<tonic::transport::Channel> {
        TasksClient::new(channel(&self.daemon).await)
    }

    fn ensure_record(&mut self, id: &str) {
        if self.records.iter().any(|r| r == id) {
            return;
        }
        let container = Container {
            id: id.into(),
            runtime: Some(Runtime {
                name: "io.containerd.refeng.v2".into(),
                options: Some(self.options()),
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: self.spec(id),
            }),
            ..Default::default()
        };
        self.rt.block_on(async {
            ContainersClient::new(channel(&self.daemon).await)
                .create(req(
                    NS,
                    CreateContainerRequest {
                        container: Some(container),
                    },
                ))
                .await
                .unwrap();
        });
        self.records.push(id.to_string());
    }

    fn exec_spec() -> prost_types::Any {
        let process = serde_json::json!({
            "args": ["sleep", "1000"], "env": ["PATH=/bin"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}, "terminal": false,
        });
        prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
        }
    }

    fn get(
        &self,
        id: &str,
        exec: &str,
    ) -> Result<containerd_client::types::v1::Process, tonic::Status> {
        self.rt.block_on(async {
            self.tasks()
                .await
                .get(req(
                    NS,
                    GetRequest {
                        container_id: id.into(),
                        exec_id: exec.into(),
                    },
                ))
                .await
                .map(|r| r.into_inner().process.unwrap())
        })
    }

    fn kill_by_pid_while_down(&mut self, id: &str) {
        let pid = self.get(id, "").expect("task to kill").pid;
        self.daemon.kill();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "init {pid} not reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.daemon.restart();
    }

    fn apply(&mut self, op: &Op) -> Got {
        fn code(s: tonic::Status) -> (Code, String) {
            let c = match s.code() {
                tonic::Code::NotFound => Code::NotFound,
                tonic::Code::AlreadyExists => Code::AlreadyExists,
                tonic::Code::FailedPrecondition => Code::FailedPrecondition,
                other => panic!("unexpected gRPC code {other:?}: {}", s.message()),
            };
            (c, s.message().to_string())
        }
        if let Op::Create(id) = op {
            self.ensure_record(id);
        }
        match op {
            Op::Restart => {
                self.daemon.restart();
                return Ok(Reply::Done);
            }
            Op::RestartAfterExit(id) => {
                self.kill_by_pid_while_down(id);
                return Ok(Reply::Done);
            }
            _ => {}
        }
        let created_exec = match op {
            Op::DeleteProcess(id, e) => self
                .get(id, e)
                .is_ok_and(|p| p.status == PbStatus::Created as i32),
            _ => false,
        };
        self.rt.block_on(async {
            let mut t = self.tasks().await;
            let r: Result<Reply, tonic::Status> = match op {
                Op::Create(id) => t
                    .create(req(
                        NS,
                        CreateTaskRequest {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::Start(id) => t
                    .start(req(
                        NS,
                        StartRequest {
                            container_id: id.clone(),
                            exec_id: String::new(),
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::StartExec(id, e) => t
                    .start(req(
                        NS,
                        StartRequest {
                            container_id: id.clone(),
                            exec_id: e.clone(),
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::Kill(id) | Op::KillExec(id, _) => {
                    let e = match op {
                        Op::KillExec(_, e) => e.clone(),
                        _ => String::new(),
                    };
                    match t
                        .kill(req(
                            NS,
                            KillRequest {
                                container_id: id.clone(),
                                exec_id: e.clone(),
                                signal: 9,
                                all: false,
                            },
                        ))
                        .await
                    {
                        Ok(_) => wait(&mut t, id, &e)
                            .await
                            .map(|w| Reply::ExitStatus(w.into_inner().exit_status)),
                        Err(s) => Err(s),
                    }
                }
                Op::Pause(id) => t
                    .pause(req(
                        NS,
                        PauseTaskRequest {
                            container_id: id.clone(),
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::Resume(id) => t
                    .resume(req(
                        NS,
                        ResumeTaskRequest {
                            container_id: id.clone(),
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::Get(id) => t
                    .get(req(
                        NS,
                        GetRequest {
                            container_id: id.clone(),
                            exec_id: String::new(),
                        },
                    ))
                    .await
                    .map(|r| {
                        let p = r.into_inner().process.unwrap();
                        let s = status(p.status);
                        Reply::Status(s, (s == Status::Stopped).then_some(p.exit_status))
                    }),
                Op::Wait(id) => wait(&mut t, id, "")
                    .await
                    .map(|w| Reply::ExitStatus(w.into_inner().exit_status)),
                Op::Delete(id) => t
                    .delete(req(
                        NS,
                        DeleteTaskRequest {
                            container_id: id.clone(),
                        },
                    ))
                    .await
                    .map(|r| Reply::ExitStatus(r.into_inner().exit_status)),
                Op::Exec(id, e) => t
                    .exec(req(
                        NS,
                        ExecProcessRequest {
                            container_id: id.clone(),
                            exec_id: e.clone(),
                            spec: Some(Self::exec_spec()),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| Reply::Done),
                Op::DeleteProcess(id, e) => {
                    let created = created_exec;
                    t.delete_process(req(
                        NS,
                        DeleteProcessRequest {
                            container_id: id.clone(),
                            exec_id: e.clone(),
                        },
                    ))
                    .await
                    // A never-started exec has no exit status to report.
                    .map(|r| {
                        if created {
                            Reply::Done
                        } else {
                            Reply::ExitStatus(r.into_inner().exit_status)
                        }
                    })
                }
                Op::Restart | Op::RestartAfterExit(_) => unreachable!(),
            };
            r.map_err(code)
        })
    }

    /// The whole state against the model: the task list, every task, every exec.
    fn check_state(&self, model: &Model) {
        let listed: Vec<String> = self.rt.block_on(async {
            let mut ids: Vec<String> = self
                .tasks()
                .await
                .list(req(NS, ListTasksRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .tasks
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        });
        let want: Vec<String> = model.tasks.keys().cloned().collect();
        assert_eq!(listed, want, "task list");
        for (id, task) in &model.tasks {
            let p = self.get(id, "").unwrap();
            assert_eq!(status(p.status), task.status, "status of {id}");
            if let Some(code) = task.exit_status {
                assert_eq!(p.exit_status, code, "exit status of {id}");
            }
            for e in EXECS {
                match (task.execs.get(e), self.get(id, e)) {
                    (None, Err(s)) => assert_eq!(s.code(), tonic::Code::NotFound),
                    (Some((want, exit)), Ok(p)) => {
                        assert_eq!(exec_status(p.status), *want, "status of {id}/{e}");
                        if let Some(code) = exit {
                            assert_eq!(p.exit_status, *code, "exit status of {id}/{e}");
                        }
                    }
                    (want, got) => panic!("{id}/{e}: model {want:?}, daemon {got:?}"),
                }
            }
        }
    }
}

async fn wait(
    t: &mut TasksClient<tonic::transport::Channel>,
    id: &str,
    exec: &str,
) -> Result<tonic::Response<containerd_client::services::v1::WaitResponse>, tonic::Status> {
    t.wait(req(
        NS,
        WaitRequest {
            container_id: id.into(),
            exec_id: exec.into(),
        },
    ))
    .await
}

fn status(s: i32) -> Status {
    match PbStatus::try_from(s) {
        Ok(PbStatus::Created) => Status::Created,
        Ok(PbStatus::Running) => Status::Running,
        Ok(PbStatus::Paused) => Status::Paused,
        Ok(PbStatus::Stopped) => Status::Stopped,
        other => panic!("status {other:?} is no state of the model"),
    }
}

fn exec_status(s: i32) -> ExecStatus {
    match PbStatus::try_from(s) {
        Ok(PbStatus::Created) => ExecStatus::Created,
        Ok(PbStatus::Running) => ExecStatus::Running,
        Ok(PbStatus::Stopped) => ExecStatus::Stopped,
        other => panic!("exec status {other:?} is no state of the model"),
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.daemon.kill();
        // The containers, by the runtime's own state under our folder, then the shims serving
        // our daemon (their command line names its socket), then our cgroups.
        let root = self.runtime_root();
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let _ = Command::new(REFENG_RUNC)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(entry.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let address = self.daemon.socket().to_string_lossy().into_owned();
        for pid in shims::serving(&address, "containerd-shim-") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let parent = c.path().join(self.cgroup_parent());
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for child in children.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

struct DaemonUnderTest;

impl StateMachineTest for DaemonUnderTest {
    type SystemUnderTest = Case;
    type Reference = Tasks;

    fn init_test(_: &Reference) -> Case {
        Case::new()
    }

    fn apply(mut case: Case, reference: &Reference, op: Op) -> Case {
        let want = reference
            .last
            .clone()
            .expect("the reference applied the operation first");
        let got = case.apply(&op);
        match (&want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(g, w, "{op:?}"),
            (Err(w), Err((code, msg))) => {
                assert_eq!(
                    *code,
                    w.code(),
                    "{op:?}: the model refuses with {w}; daemon: {msg}"
                )
            }
            _ => panic!(
                "{op:?}: model {want:?}, daemon {got:?}\n--- daemon log ---\n{}",
                case.daemon.log()
            ),
        }
        case.check_state(&reference.model);
        case
    }
}

fn config() -> Config {
    Config {
        cases: std::env::var("REFENG_TASK_PROP_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12),
        max_shrink_iters: 64,
        ..Config::default()
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    /// Random sequences of 4 to 24 operations; every result and then the whole state must
    /// match the model.
    #[test]
    fn tasks_follow_the_model(sequential 4..=24 => DaemonUnderTest);
}
