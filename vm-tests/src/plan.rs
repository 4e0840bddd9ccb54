//! What the host asks the guest agent to do, and what the agent reports back: both are JSON files
//! in the run directory, which the guest sees at the same path through the project share.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which cgroup hierarchy the guest mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// cgroup v2 only: the kernel boots with `cgroup_no_v1=all`.
    V2,
    /// v1 controllers plus an empty cgroup2 at `unified`, the layout of a hybrid host.
    V1,
}

impl CgroupMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V1 => "v1",
        }
    }
}

/// One test binary to run in the guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suite {
    /// The cargo target name (`refeng` for the library's unit tests).
    pub name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
}

/// The guest agent's instructions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub cgroup: CgroupMode,
    /// The project root: the tests' working directory, as under `cargo test`.
    pub project: PathBuf,
    /// `REFENG_RUNTIME` for the suites: the host-built `refeng-runc`.
    pub runtime: PathBuf,
    /// Where the agent writes its [`Outcome`].
    pub outcome: PathBuf,
    /// Extra environment for every suite (`--env`), after the agent's own.
    pub env: Vec<(String, String)>,
    pub suites: Vec<Suite>,
}

/// How one suite ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteOutcome {
    pub name: String,
    /// The binary's exit code, or `None` when a signal ended it.
    pub exit_code: Option<i32>,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub seconds: f64,
}

/// What the agent found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The kernel release the guest ran.
    pub kernel: String,
    /// Controllers the guest enabled (v2) or mounted (v1).
    pub controllers: Vec<String>,
    pub suites: Vec<SuiteOutcome>,
}

/// Values the guest writes to isa-debug-exit; QEMU then exits with `value << 1 | 1`. None is 0,
/// because QEMU's own failures exit with 1, which must never read as "passed".
pub mod exit {
    pub const PASSED: u8 = 0x10;
    pub const FAILED: u8 = 0x11;
    pub const SETUP_FAILED: u8 = 0x12;
    /// `/init` could not reach the agent.
    pub const INIT_FAILED: u8 = 0x13;
}
