//! A build as a fold of Dockerfile instructions over an image state, the way dockerd's classic
//! builder (`builder/dockerfile`, dockerd 20.10) dispatches them: the image config, the build
//! arguments in scope, the stages built so far. It is pure: what needs a container or the
//! context (`RUN`, `COPY`, `ADD`, and `WORKDIR`, which dockerd commits from a container that made
//! the directory) comes out as [`Work`] for an executor, together with the cache key dockerd
//! would probe for that step and the config the image has after it.
//!
//! Base images come from an [`ImageSource`] (the executor's image store, already pulled), so the
//! fold itself reads nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::dockerfile::{
    self, ArgDecl, CommandLine, CopyArgs, Dockerfile, Healthcheck, Instruction, KeyValues, Located,
    ParseError,
};
use super::go_text;
use super::words::{self, ExpandError};

/// The default `SHELL` on Linux.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// The `PATH` dockerd adds to a stage whose base image has none (`system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The build arguments every build accepts without an `ARG` (`builtinAllowedBuildArgs`).
pub const BUILTIN_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];
/// What dockerd answers for `--chmod` and `--mount` in the classic builder.
const NEEDS_BUILDKIT: &str = "requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled";

mod set_as_object {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Empty {}

    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(v: &Option<BTreeSet<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|set| {
                set.iter()
                    .map(|k| (k.clone(), Empty {}))
                    .collect::<BTreeMap<_, _>>()
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BTreeSet<String>>, D::Error> {
        let m: Option<BTreeMap<String, serde::de::IgnoredAny>> = Option::deserialize(d)?;
        Ok(m.map(|m| m.into_keys().collect()))
    }
}

/// An image's `Config` (Engine API names), the part a Dockerfile changes; the rest of the fields
/// (`Hostname`, `Tty`, ...) ride along untouched in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `User`.
    #[serde(default)]
    pub user: String,
    /// `ExposedPorts` (`80/tcp`).
    #[serde(
        default,
        with = "set_as_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeSet<String>>,
    /// `Env` (`KEY=value`).
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `Healthcheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ArgsEscaped` (Windows only; false on Linux).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    /// `Volumes`.
    #[serde(default, with = "set_as_object")]
    pub volumes: Option<BTreeSet<String>>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: String,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `OnBuild`.
    #[serde(default)]
    pub on_build: Option<Vec<String>>,
    /// `Labels`.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `Shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Every other field, kept as the base image had it.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `Config.Healthcheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "command"]`.
    #[serde(default)]
    pub test: Vec<String>,
    /// Nanoseconds (0: the default).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Consecutive failures before unhealthy (0: the default).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl ImageConfig {
    /// The shell in force (`SHELL`, else `/bin/sh -c`).
    #[must_use]
    pub fn shell_or_default(&self) -> Vec<String> {
        self.shell
            .clone()
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect())
    }

    fn env(&self) -> &[String] {
        self.env.as_deref().unwrap_or(&[])
    }
}

/// A base image as the executor's store has it.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// Its id (`sha256:...`).
    pub id: String,
    /// Its config.
    pub config: ImageConfig,
}

/// Where `FROM image` and `COPY --from=image` find images.
pub trait ImageSource {
    /// The image a reference names.
    ///
    /// # Errors
    /// A message for the build's output when there is no such image.
    fn image(&self, reference: &str) -> Result<BaseImage, String>;
}

/// What `POST /build` asks for beyond the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `buildargs` (`None`: given without a value and not in the client's environment).
    pub build_args: BTreeMap<String, Option<String>>,
    /// `target`.
    pub target: Option<String>,
    /// `labels`, added to the last stage as one `LABEL` each, sorted, not substituted.
    pub labels: BTreeMap<String, String>,
    /// The platform this builder builds for (`FROM --platform` must name it).
    pub platform: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            platform: "linux/amd64".to_owned(),
        }
    }
}

/// The build, planned: every stage up to the target with its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The stages in order; the last is the image the build produces.
    pub stages: Vec<StagePlan>,
    /// The `M` of dockerd's `Step N/M`.
    pub steps_total: usize,
    /// Build arguments given but never declared (dockerd's `[Warning] One or more build-args
    /// [...] were not consumed`), sorted.
    pub unused_build_args: Vec<String>,
    /// The parser's warnings.
    pub warnings: Vec<String>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// The step number of its `FROM`.
    pub number: usize,
    /// Its steps in order, triggers of the base image's `ONBUILD` first.
    pub steps: Vec<Step>,
    /// The config of its image after the last step.
    pub config: ImageConfig,
    /// `MAINTAINER`: the image's `Author`.
    pub author: String,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image of the store.
    Image {
        /// The reference after substitution.
        reference: String,
        /// Its id.
        id: String,
    },
    /// An earlier stage (its index).
    Stage(usize),
}

/// One step that commits an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its `N` in `Step N/M` (the `FROM`'s for an `ONBUILD` trigger).
    pub number: usize,
    /// The instruction's text (`docker build` prints it).
    pub source: String,
    /// Its line in the Dockerfile (the `FROM`'s line for a trigger).
    pub line: usize,
    /// Whether it is a trigger of the base image's `ONBUILD`.
    pub trigger: bool,
    /// What the executor does for it.
    pub work: Work,
    /// The image config after it.
    pub config: ImageConfig,
    /// What dockerd's cache compares to reuse an image for it.
    pub cache: CacheKey,
}

/// The work of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Nothing runs: the image is the parent's layers with the new config.
    Commit,
    /// Run a command in a container of the parent image and commit its changes.
    Run(RunWork),
    /// Copy files into the parent image's filesystem.
    Copy(CopyWork),
    /// Make the working directory (owned by root) in a container and commit it.
    Workdir {
        /// The absolute path.
        path: String,
    },
}

/// A `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunWork {
    /// The process's argv (the shell form through `SHELL`).
    pub argv: Vec<String>,
    /// Its environment: the config's `Env` and then the build arguments in scope.
    pub env: Vec<String>,
    /// `User`.
    pub user: String,
    /// `WorkingDir`.
    pub working_dir: String,
}

/// A `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyWork {
    /// `ADD` (URLs are downloaded, local tar archives unpacked).
    pub add: bool,
    /// Where the sources are.
    pub from: CopyFrom,
    /// The sources after substitution: globs for the executor to expand, or for `ADD` URLs
    /// ([`is_url`]) to download.
    pub sources: Vec<String>,
    /// The destination after substitution, as written (it shows in the history).
    pub dest: String,
    /// The destination made absolute against `WorkingDir`, trailing `/` kept.
    pub dest_path: String,
    /// `--chown` after substitution.
    pub chown: Option<String>,
    /// `COPY --from` without `--chown` keeps the owners of the source.
    pub preserve_ownership: bool,
}

/// Where a `COPY` takes its sources from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// An earlier stage's image (its index).
    Stage(usize),
    /// An image of the store.
    Image(String),
}

/// What dockerd's image cache compares: the parent image, and the container config the step
/// commits with (whose `Cmd` is the history's CreatedBy).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheKey {
    /// The previous step of the stage (its index in [`StagePlan::steps`]); `None`: the base.
    pub parent: Option<usize>,
    /// The config with the step's `Cmd`; for a copy its `Cmd` waits for the sources' hash.
    pub container_config: ImageConfig,
    /// The history's CreatedBy.
    pub created_by: CreatedBy,
}

/// A step's CreatedBy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedBy {
    /// Known from the Dockerfile alone.
    Text(String),
    /// A copy: dockerd puts the sources' content hash (`file:<sha256>`, `dir:<sha256>`,
    /// `multi:<sha256>`) in the middle.
    Copy {
        /// `SHELL... #(nop) COPY --chown=X` (no space before the hash, as dockerd writes it).
        prefix: String,
        /// The destination as written.
        dest: String,
    },
}

impl CreatedBy {
    /// The text, with the sources' hash for a copy.
    #[must_use]
    pub fn text(&self, source_hash: &str) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Copy { prefix, dest } => format!("{prefix}{source_hash} in {dest} "),
        }
    }
}

/// A build that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// `--target` names no stage.
    #[error("failed to reach build target {0} in Dockerfile")]
    Target(String),
    /// Only `ARG`s, no `FROM` (dockerd 20.10 crashes its handler on this one).
    #[error("Dockerfile:1: no build stage in current context: the Dockerfile has no FROM")]
    NoStage,
    /// A step failed.
    #[error("Dockerfile:{line}: {instruction}: {reason}")]
    Step {
        /// Its `N`.
        step: usize,
        /// Its line.
        line: usize,
        /// Its keyword.
        instruction: String,
        /// What failed.
        #[source]
        reason: StepError,
    },
}

/// Why a step failed; dockerd's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A substitution failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// `FROM $EMPTY`.
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    /// `FROM --platform` for another platform.
    #[error("platform {asked} is not supported: this builder builds {supported} only")]
    Platform {
        /// What the Dockerfile asked for.
        asked: String,
        /// What the builder builds.
        supported: String,
    },
    /// The base image or the `COPY --from` image is not in the store.
    #[error("{0}")]
    Image(String),
    /// Two stages of one name.
    #[error("{0} stage name already used")]
    StageNameUsed(String),
    /// `--chmod`.
    #[error("the --chmod option {NEEDS_BUILDKIT}")]
    Chmod,
    /// `COPY http://...`.
    #[error("source can't be a URL for COPY")]
    CopyUrl,
    /// `RUN --mount`.
    #[error("the --mount option {NEEDS_BUILDKIT}")]
    Mount,
    /// `STOPSIGNAL` with no such signal.
    #[error("Invalid signal: {0}")]
    Signal(String),
    /// `EXPOSE` with a bad port.
    #[error("{0}")]
    Port(String),
    /// `RUN []`: the exec form with no command; dockerd's container create refuses it.
    #[error("No command specified")]
    NoCommand,
    /// `WORKDIR $EMPTY`.
    #[error("cannot normalize nothing")]
    EmptyWorkdir,
    /// `VOLUME $EMPTY`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// `COPY --from=5` past the stages built.
    #[error("invalid from flag value {0}: index out of bounds")]
    StageIndex(String),
    /// An `ONBUILD` trigger of the base image does not parse.
    #[error("{} (ONBUILD trigger {text:?} of the base image)", .error.reason)]
    Trigger {
        /// The trigger.
        text: String,
        /// Why it does not parse.
        error: Box<ParseError>,
    },
    /// `FROM` or `ONBUILD` as a trigger.
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    TriggerNotAllowed(String),
}

/// dockerd's `BuildArgs`: what `--build-arg` gave, what `ARG` declared in this stage, and the
/// `ARG`s before the first `FROM`.
#[derive(Debug, Clone, Default)]
struct BuildArgs {
    from_options: BTreeMap<String, Option<String>>,
    allowed: BTreeMap<String, Option<String>>,
    meta: BTreeMap<String, Option<String>>,
    referenced: BTreeSet<String>,
}

fn is_builtin(key: &str) -> bool {
    BUILTIN_ARGS.contains(&key)
}

impl BuildArgs {
    fn get(&self, key: &str, mapping: &BTreeMap<String, Option<String>>) -> Option<String> {
        if let Some(Some(v)) = self.from_options.get(key) {
            return Some(v.clone());
        }
        match mapping.get(key) {
            Some(Some(default)) => Some(default.clone()),
            _ => self.meta.get(key).cloned().flatten(),
        }
    }

    fn all_from(&self, mapping: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
        mapping
            .keys()
            .map(String::as_str)
            .chain(BUILTIN_ARGS)
            .filter_map(|k| self.get(k, mapping).map(|v| (k.to_owned(), v)))
            .collect()
    }

    fn env_list(map: BTreeMap<String, String>) -> Vec<String> {
        map.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The allowed arguments not set in `env`, as `KEY=value`, sorted.
    fn filter_allowed(&self, env: &[String]) -> Vec<String> {
        let set: BTreeSet<&str> = env
            .iter()
            .map(|e| e.split('=').next().unwrap_or(""))
            .collect();
        let mut all = self.all_from(&self.allowed);
        all.retain(|k, _| !set.contains(k.as_str()));
        Self::env_list(all)
    }

    fn add(&mut self, key: &str, value: Option<String>) {
        self.allowed.insert(key.to_owned(), value);
        self.referenced.insert(key.to_owned());
    }
}

/// A stage being folded.
struct State {
    config: ImageConfig,
    args: BuildArgs,
    author: String,
    cmd_set: bool,
    steps: Vec<Step>,
}

struct Folder<'a> {
    escape: char,
    images: &'a dyn ImageSource,
    options: &'a BuildOptions,
    stages: Vec<StagePlan>,
}

/// Folds a parsed Dockerfile into a plan.
///
/// # Errors
/// The first error dockerd would stop at: `--target` naming no stage, then the first step that
/// fails (a substitution, an unknown base image, an option the classic builder refuses).
pub fn plan(
    dockerfile: &Dockerfile,
    options: &BuildOptions,
    images: &dyn ImageSource,
) -> Result<Plan, BuildError> {
    let mut meta: Vec<&Located> = Vec::new();
    let mut stages: Vec<(&Located, Vec<&Located>)> = Vec::new();
    for i in &dockerfile.instructions {
        match (&i.instruction, stages.last_mut()) {
            (Instruction::From(_), _) => stages.push((i, Vec::new())),
            (_, Some((_, cmds))) => cmds.push(i),
            (_, None) => meta.push(i),
        }
    }
    if stages.is_empty() {
        return Err(BuildError::NoStage);
    }
    if let Some(target) = &options.target {
        let at = stages
            .iter()
            .position(|(from, _)| match &from.instruction {
                Instruction::From(f) => f
                    .stage_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(target)),
                _ => false,
            })
            .ok_or_else(|| BuildError::Target(target.clone()))?;
        stages.truncate(at + 1);
    }
    // `--label`s: one `LABEL` each at the end of the last stage.
    let label_steps: Vec<Located> = options
        .labels
        .iter()
        .map(|(k, v)| Located {
            line: 0,
            end_line: 0,
            source: format!("LABEL {k}={v}"),
            instruction: Instruction::Label(KeyValues {
                pairs: vec![(k.clone(), v.clone())],
                legacy: false,
            }),
        })
        .collect();
    let steps_total =
        meta.len() + stages.iter().map(|(_, c)| 1 + c.len()).sum::<usize>() + label_steps.len();

    let mut folder = Folder {
        escape: dockerfile.escape,
        images,
        options,
        stages: Vec::new(),
    };
    let mut root = BuildArgs {
        from_options: options.build_args.clone(),
        ..BuildArgs::default()
    };
    let mut number = 0;
    for m in &meta {
        number += 1;
        let Instruction::Arg(decls) = &m.instruction else {
            // The parser refuses anything else before the first FROM.
            continue;
        };
        for d in decls {
            let env = BuildArgs::env_list(root.all_from(&root.allowed));
            let (key, value) = folder
                .expand_arg(d, &env)
                .map_err(|e| step_error(number, m, e.into()))?;
            root.add(&key, value.clone());
            root.meta.insert(key, value);
        }
    }
    let mut referenced = root.referenced.clone();
    let stage_count = stages.len();
    for (index, (from, cmds)) in stages.into_iter().enumerate() {
        number += 1;
        let from_number = number;
        let (mut state, base) = folder.begin(from, from_number, &root)?;
        let last = index + 1 == stage_count;
        let extra = if last {
            label_steps.iter().collect()
        } else {
            Vec::new()
        };
        for cmd in cmds.into_iter().chain(extra) {
            number += 1;
            folder
                .dispatch(&mut state, cmd, number, false)
                .map_err(|e| step_error(number, cmd, e))?;
        }
        referenced.extend(state.args.referenced.iter().cloned());
        let Instruction::From(f) = &from.instruction else {
            unreachable!("stages start with FROM")
        };
        folder.stages.push(StagePlan {
            name: f.stage_name.clone(),
            base,
            number: from_number,
            steps: state.steps,
            config: state.config,
            author: state.author,
        });
    }
    let unused_build_args = options
        .build_args
        .keys()
        .filter(|k| !referenced.contains(*k) && !is_builtin(k))
        .cloned()
        .collect();
    Ok(Plan {
        stages: folder.stages,
        steps_total,
        unused_build_args,
        warnings: dockerfile.warnings.clone(),
    })
}

fn step_error(step: usize, at: &Located, reason: StepError) -> BuildError {
    BuildError::Step {
        step,
        line: at.line,
        instruction: at.instruction.keyword().to_owned(),
        reason,
    }
}

impl Folder<'_> {
    fn expand(&self, word: &str, env: &[String]) -> Result<String, ExpandError> {
        words::expand(word, env, self.escape)
    }

    fn expand_arg(
        &self,
        d: &ArgDecl,
        env: &[String],
    ) -> Result<(String, Option<String>), ExpandError> {
        let key = self.expand(&d.name, env)?;
        let value = d
            .default
            .as_ref()
            .map(|v| self.expand(v, env))
            .transpose()?;
        Ok((key, value))
    }
}

/// Whether an `ADD` source is downloaded rather than taken from the context (`urlutil.IsURL`).
#[must_use]
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The config of `FROM scratch`: an empty `container.Config` as Go serialises it.
fn scratch_config() -> ImageConfig {
    let mut config = ImageConfig::default();
    for key in ["Hostname", "Domainname"] {
        config
            .other
            .insert(key.into(), serde_json::Value::String(String::new()));
    }
    for key in ["AttachStdin", "AttachStdout", "AttachStderr", "Tty"] {
        config
            .other
            .insert(key.into(), serde_json::Value::Bool(false));
    }
    config
}

/// `nat.ParsePortSpec`, reduced to the container ports it exposes (`80/tcp`).
fn exposed_ports(raw: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    let (ip, host) = match n {
        1 => ("", ""),
        2 => ("", parts[0]),
        3 => (parts[0], parts[1]),
        _ => (
            &raw[..raw.len() - container.len() - parts[n - 2].len() - 2],
            parts[n - 2],
        ),
    };
    let (proto, container) = match container.split_once('/') {
        _ if container.is_empty() || container.starts_with('/') => ("", ""),
        None => ("tcp", container),
        Some((port, "")) => ("tcp", port),
        Some((port, proto)) => (proto.split('/').next().unwrap_or(proto), port),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("Invalid ip address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("No port specified: {raw}<empty>"));
    }
    let range = |s: &str| -> Option<(u16, u16)> {
        match s.split_once('-') {
            None => s.parse().ok().map(|p| (p, p)),
            Some((a, b)) => {
                let (a, b): (u16, u16) = (a.parse().ok()?, b.split('-').next()?.parse().ok()?);
                (b >= a).then_some((a, b))
            }
        }
    };
    let (start, end) =
        range(container).ok_or_else(|| format!("Invalid containerPort: {container}"))?;
    if !host.is_empty() {
        let (hs, he) = range(host).ok_or_else(|| format!("Invalid hostPort: {host}"))?;
        if he - hs != end - start && he != hs && end != start {
            return Err(format!(
                "Invalid ranges specified for container and host Ports: {container} and {host}"
            ));
        }
    }
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("Invalid proto: {proto}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `signal.ParseSignal` on Linux: a non-zero number, or a name with or without `SIG`.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i64>() {
        return n != 0;
    }
    let name = s.to_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const NAMES: [&str; 35] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "UNUSED",
    ];
    if NAMES.contains(&name) || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let offset = |rest: &str, max: u32| rest.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    name.strip_prefix("RTMIN+").is_some_and(|r| offset(r, 15))
        || name.strip_prefix("RTMAX-").is_some_and(|r| offset(r, 14))
}

/// Go's `filepath.Clean` for absolute Unix paths.
fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

impl Folder<'_> {
    fn begin(
        &self,
        from: &Located,
        number: usize,
        root: &BuildArgs,
    ) -> Result<(State, Base), BuildError> {
        let Instruction::From(f) = &from.instruction else {
            unreachable!("stages start with FROM")
        };
        let fail = |reason| step_error(number, from, reason);
        let meta_env = BuildArgs::env_list(root.all_from(&root.meta));
        if let Some(p) = &f.platform {
            let p = self.expand(p, &meta_env).map_err(|e| fail(e.into()))?;
            if p != self.options.platform {
                return Err(fail(StepError::Platform {
                    asked: p,
                    supported: self.options.platform.clone(),
                }));
            }
        }
        let name = self
            .expand(&f.image, &meta_env)
            .map_err(|e| fail(e.into()))?;
        if name.is_empty() {
            return Err(fail(StepError::BlankBase(f.image.clone())));
        }
        if let Some(stage_name) = &f.stage_name {
            if self
                .stages
                .iter()
                .any(|s| s.name.as_ref() == Some(stage_name))
            {
                return Err(fail(StepError::StageNameUsed(stage_name.clone())));
            }
        }
        let lower = name.to_lowercase();
        let (base, mut config) = if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&lower))
        {
            (Base::Stage(i), self.stages[i].config.clone())
        } else if name == "scratch" {
            (Base::Scratch, scratch_config())
        } else {
            let image = self
                .images
                .image(&name)
                .map_err(|e| fail(StepError::Image(e)))?;
            (
                Base::Image {
                    reference: name,
                    id: image.id,
                },
                image.config,
            )
        };
        let env = config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.split('=').next() == Some("PATH")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        config
            .other
            .insert("OpenStdin".into(), serde_json::Value::Bool(false));
        config
            .other
            .insert("StdinOnce".into(), serde_json::Value::Bool(false));
        let mut args = root.clone();
        args.allowed.clear();
        args.referenced.clear();
        let mut state = State {
            config,
            args,
            author: String::new(),
            cmd_set: false,
            steps: Vec::new(),
        };
        let triggers = state.config.on_build.take().unwrap_or_default();
        for text in triggers {
            let located = dockerfile::parse_trigger(&text).map_err(|e| {
                fail(StepError::Trigger {
                    text: text.clone(),
                    error: Box::new(e),
                })
            })?;
            if let Instruction::From(_) | Instruction::Onbuild(_) | Instruction::Maintainer(_) =
                located.instruction
            {
                return Err(fail(StepError::TriggerNotAllowed(
                    located.instruction.keyword().to_owned(),
                )));
            }
            let located = Located {
                line: from.line,
                end_line: from.end_line,
                ..located
            };
            self.dispatch(&mut state, &located, number, true)
                .map_err(fail)?;
        }
        Ok((state, base))
    }

    /// Records a step: its work, the config after it and its cache key.
    fn push(
        state: &mut State,
        at: &Located,
        number: usize,
        trigger: bool,
        work: Work,
        container_config: ImageConfig,
        created_by: CreatedBy,
    ) {
        let parent = state.steps.len().checked_sub(1);
        state.steps.push(Step {
            number,
            source: at.source.clone(),
            line: at.line,
            trigger,
            work,
            config: state.config.clone(),
            cache: CacheKey {
                parent,
                container_config,
                created_by,
            },
        });
    }

    /// dockerd's `commit` of a metadata-only step: `Cmd` is `SHELL... "#(nop) " comment`.
    fn commit(state: &mut State, at: &Located, number: usize, trigger: bool, comment: String) {
        let mut cmd = state.config.shell_or_default();
        cmd.push("#(nop) ".to_owned());
        cmd.push(comment);
        let created_by = cmd.join(" ");
        let container_config = ImageConfig {
            cmd: Some(cmd),
            ..state.config.clone()
        };
        Self::push(
            state,
            at,
            number,
            trigger,
            Work::Commit,
            container_config,
            CreatedBy::Text(created_by),
        );
    }

    fn resolve_command(config: &ImageConfig, c: &CommandLine) -> Option<Vec<String>> {
        match c {
            CommandLine::Exec(v) => Some(v.clone()),
            CommandLine::Shell(s) => {
                let mut argv = config.shell_or_default();
                argv.push(s.clone());
                Some(argv)
            }
            CommandLine::Absent => None,
        }
    }

    #[allow(clippy::too_many_lines)]
    fn dispatch(
        &self,
        state: &mut State,
        at: &Located,
        number: usize,
        trigger: bool,
    ) -> Result<(), StepError> {
        let mut env: Vec<String> = state.config.env().to_vec();
        env.extend(state.args.filter_allowed(state.config.env()));
        let x = |w: &str| self.expand(w, &env);
        match &at.instruction {
            Instruction::From(_) => unreachable!("FROM starts a stage"),
            Instruction::Env(kv) => {
                let mut comment = String::from("ENV");
                for (k, v) in &kv.pairs {
                    let (k, v) = (x(k)?, x(v)?);
                    let item = format!("{k}={v}");
                    comment.push(' ');
                    comment.push_str(&item);
                    let list = state.config.env.get_or_insert_with(Vec::new);
                    match list
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(e) => *e = item,
                        None => list.push(item),
                    }
                }
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Label(kv) => {
                // `--label`s (line 0) are not substituted.
                let expand = at.line != 0;
                let mut comment = String::from("LABEL");
                for (k, v) in &kv.pairs {
                    let (k, v) = if expand {
                        (x(k)?, x(v)?)
                    } else {
                        (k.clone(), v.clone())
                    };
                    comment.push_str(&format!(" {k}={v}"));
                    state
                        .config
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Maintainer(m) => {
                state.author.clone_from(m);
                Self::commit(state, at, number, trigger, format!("MAINTAINER {m}"));
            }
            Instruction::Arg(decls) => {
                let mut items = Vec::new();
                for d in decls {
                    let (k, v) = self.expand_arg(d, &env)?;
                    items.push(match &v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    });
                    state.args.add(&k, v);
                }
                Self::commit(
                    state,
                    at,
                    number,
                    trigger,
                    format!("ARG {}", items.join(" ")),
                );
            }
            Instruction::Workdir(p) => {
                let p = x(p)?;
                if p.is_empty() {
                    return Err(StepError::EmptyWorkdir);
                }
                state.config.working_dir = if p.starts_with('/') {
                    p
                } else {
                    clean(&format!("/{}/{p}", state.config.working_dir))
                };
                let mut cmd = state.config.shell_or_default();
                cmd.push(format!("#(nop) WORKDIR {}", state.config.working_dir));
                let created_by = cmd.join(" ");
                let container_config = ImageConfig {
                    cmd: Some(cmd),
                    ..state.config.clone()
                };
                let path = state.config.working_dir.clone();
                Self::push(
                    state,
                    at,
                    number,
                    trigger,
                    Work::Workdir { path },
                    container_config,
                    CreatedBy::Text(created_by),
                );
            }
            Instruction::User(u) => {
                state.config.user = x(u)?;
                let comment = format!("USER {}", state.config.user);
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Volume(vs) => {
                let mut expanded = Vec::new();
                for v in vs {
                    let v = x(v)?;
                    if v.is_empty() {
                        return Err(StepError::EmptyVolume);
                    }
                    state
                        .config
                        .volumes
                        .get_or_insert_with(BTreeSet::new)
                        .insert(v.clone());
                    expanded.push(v);
                }
                Self::commit(
                    state,
                    at,
                    number,
                    trigger,
                    format!("VOLUME {}", go_text::plain_list(&expanded)),
                );
            }
            Instruction::StopSignal(s) => {
                let s = x(s)?;
                if !valid_signal(&s) {
                    return Err(StepError::Signal(s));
                }
                state.config.stop_signal = Some(s.clone());
                Self::commit(state, at, number, trigger, format!("STOPSIGNAL {s}"));
            }
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(words::expand_words(p, &env, self.escape)?);
                }
                for p in &all {
                    let exposed = exposed_ports(p).map_err(StepError::Port)?;
                    state
                        .config
                        .exposed_ports
                        .get_or_insert_with(BTreeSet::new)
                        .extend(exposed);
                }
                Self::commit(
                    state,
                    at,
                    number,
                    trigger,
                    format!("EXPOSE {}", all.join(" ")),
                );
            }
            Instruction::Cmd(c) => {
                let cmd = Self::resolve_command(&state.config, c).or_else(|| {
                    // The empty shell form: the shell alone.
                    Some(state.config.shell_or_default())
                });
                state.config.cmd.clone_from(&cmd);
                state.config.args_escaped = false;
                if !matches!(c, CommandLine::Absent | CommandLine::Exec(_))
                    || matches!(c, CommandLine::Exec(v) if !v.is_empty())
                {
                    state.cmd_set = true;
                }
                let comment = format!("CMD {}", go_text::quote_list(&cmd.unwrap_or_default()));
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Entrypoint(c) => {
                let ep = match c {
                    CommandLine::Exec(v) if v.is_empty() => None,
                    other => Self::resolve_command(&state.config, other),
                };
                state.config.entrypoint.clone_from(&ep);
                state.config.args_escaped = false;
                if !state.cmd_set {
                    state.config.cmd = None;
                }
                let comment = format!(
                    "ENTRYPOINT {}",
                    go_text::quote_list(&ep.unwrap_or_default())
                );
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Healthcheck(h) => {
                let health = match h {
                    Healthcheck::None => HealthConfig {
                        test: vec!["NONE".to_owned()],
                        ..HealthConfig::default()
                    },
                    Healthcheck::Check {
                        command,
                        interval,
                        timeout,
                        start_period,
                        retries,
                    } => {
                        let test = match command {
                            CommandLine::Exec(v) => std::iter::once("CMD".to_owned())
                                .chain(v.iter().cloned())
                                .collect(),
                            CommandLine::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                            CommandLine::Absent => vec!["CMD-SHELL".to_owned()],
                        };
                        HealthConfig {
                            test,
                            interval: interval.unwrap_or(0),
                            timeout: timeout.unwrap_or(0),
                            start_period: start_period.unwrap_or(0),
                            retries: retries.unwrap_or(0),
                        }
                    }
                };
                let comment = format!(
                    "HEALTHCHECK &{{{} {} {} {} {}}}",
                    go_text::quote_list(&health.test),
                    go_text::quote(&go_text::format_duration(health.interval)),
                    go_text::quote(&go_text::format_duration(health.timeout)),
                    go_text::quote(&go_text::format_duration(health.start_period)),
                    go_text::quote_int_as_rune(health.retries),
                );
                state.config.healthcheck = Some(health);
                Self::commit(state, at, number, trigger, comment);
            }
            Instruction::Shell(argv) => {
                state.config.shell = Some(argv.clone());
                Self::commit(
                    state,
                    at,
                    number,
                    trigger,
                    format!("SHELL {}", go_text::plain_list(argv)),
                );
            }
            Instruction::Onbuild(o) => {
                state
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                Self::commit(
                    state,
                    at,
                    number,
                    trigger,
                    format!("ONBUILD {}", o.expression),
                );
            }
            Instruction::Run(run) => {
                if !run.mounts.is_empty() {
                    return Err(StepError::Mount);
                }
                let argv = Self::resolve_command(&state.config, &run.command)
                    .unwrap_or_else(|| state.config.shell_or_default());
                if argv.is_empty() {
                    return Err(StepError::NoCommand);
                }
                let build_args = state.args.filter_allowed(state.config.env());
                let mut save_cmd = argv.clone();
                if !build_args.is_empty() {
                    let shown: Vec<String> = build_args
                        .iter()
                        .filter(|kv| {
                            let k = kv.split('=').next().unwrap_or("");
                            state.args.allowed.contains_key(k) || !is_builtin(k)
                        })
                        .cloned()
                        .collect();
                    save_cmd = std::iter::once(format!("|{}", shown.len()))
                        .chain(shown)
                        .chain(argv.iter().cloned())
                        .collect();
                }
                let created_by = save_cmd.join(" ");
                let container_config = ImageConfig {
                    cmd: Some(save_cmd),
                    args_escaped: false,
                    entrypoint: None,
                    ..state.config.clone()
                };
                let mut run_env = state.config.env().to_vec();
                run_env.extend(build_args);
                let work = Work::Run(RunWork {
                    argv,
                    env: run_env,
                    user: state.config.user.clone(),
                    working_dir: state.config.working_dir.clone(),
                });
                Self::push(
                    state,
                    at,
                    number,
                    trigger,
                    work,
                    container_config,
                    CreatedBy::Text(created_by),
                );
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(at.instruction, Instruction::Add(_));
                self.copy(state, at, number, trigger, c, add, &env)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        state: &mut State,
        at: &Located,
        number: usize,
        trigger: bool,
        c: &CopyArgs,
        add: bool,
        env: &[String],
    ) -> Result<(), StepError> {
        if c.chmod.as_deref().is_some_and(|m| !m.is_empty()) {
            return Err(StepError::Chmod);
        }
        let x = |w: &str| self.expand(w, env);
        let chown = c
            .chown
            .as_deref()
            .map(x)
            .transpose()?
            .filter(|s| !s.is_empty());
        let sources = c
            .sources
            .iter()
            .map(|s| x(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !add && sources.iter().any(|s| is_url(s)) {
            return Err(StepError::CopyUrl);
        }
        let dest = x(&c.dest)?;
        let from = match c.from.as_deref().filter(|f| !f.is_empty()) {
            None => CopyFrom::Context,
            Some(f) => {
                if let Ok(index) = f.parse::<i64>() {
                    match usize::try_from(index)
                        .ok()
                        .filter(|i| *i < self.stages.len())
                    {
                        Some(i) => CopyFrom::Stage(i),
                        None => return Err(StepError::StageIndex(f.to_owned())),
                    }
                } else if let Some(i) = self
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(f.to_lowercase().as_str()))
                {
                    CopyFrom::Stage(i)
                } else {
                    self.images.image(f).map_err(|e| {
                        StepError::Image(format!("invalid from flag value {f}: {e}"))
                    })?;
                    CopyFrom::Image(f.to_owned())
                }
            }
        };
        let dest_path = if dest.starts_with('/') {
            dest.clone()
        } else {
            let mut p = clean(&format!("/{}/{dest}", state.config.working_dir));
            if dest.ends_with('/') && !p.ends_with('/') {
                p.push('/');
            }
            p
        };
        let keyword = if add { "ADD" } else { "COPY" };
        let mut prefix = state.config.shell_or_default().join(" ");
        prefix.push_str(&format!(" #(nop) {keyword} "));
        if let Some(o) = &chown {
            prefix.push_str(&format!("--chown={o}"));
        }
        let mut cmd = state.config.shell_or_default();
        cmd.push(String::new());
        let container_config = ImageConfig {
            cmd: Some(cmd),
            ..state.config.clone()
        };
        let preserve_ownership = from != CopyFrom::Context && chown.is_none();
        let work = Work::Copy(CopyWork {
            add,
            from,
            sources,
            dest: dest.clone(),
            dest_path,
            chown,
            preserve_ownership,
        });
        Self::push(
            state,
            at,
            number,
            trigger,
            work,
            container_config,
            CreatedBy::Copy { prefix, dest },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::parse;

    struct Store;

    impl ImageSource for Store {
        fn image(&self, reference: &str) -> Result<BaseImage, String> {
            match reference {
                "base" => Ok(BaseImage {
                    id: "sha256:b".into(),
                    config: ImageConfig {
                        env: Some(vec!["PATH=/bin".into()]),
                        cmd: Some(vec!["sh".into()]),
                        on_build: Some(vec!["ENV T=1".into()]),
                        ..ImageConfig::default()
                    },
                }),
                _ => Err(format!("no image {reference}")),
            }
        }
    }

    fn build(text: &str, options: &BuildOptions) -> Result<Plan, BuildError> {
        plan(&parse(text.as_bytes()).unwrap(), options, &Store)
    }

    fn created_by(p: &Plan) -> Vec<String> {
        p.stages
            .last()
            .unwrap()
            .steps
            .iter()
            .map(|s| s.cache.created_by.text("file:h"))
            .collect()
    }

    #[test]
    fn steps_carry_dockerds_created_by() {
        let mut options = BuildOptions::default();
        options.build_args.insert("B".into(), Some("bee".into()));
        options
            .build_args
            .insert("HTTP_PROXY".into(), Some("p".into()));
        let p = build(
            "FROM base\nARG A=x\nARG B\nENV E=\"1 2\"\nRUN echo $A\nSHELL [\"/bin/sh\", \"-ec\"]\nWORKDIR w\nCOPY --chown=1:1 a b d/\nCMD [\"x\"]\n",
            &options,
        )
        .unwrap();
        assert_eq!(
            created_by(&p),
            [
                "/bin/sh -c #(nop)  ENV T=1",
                "/bin/sh -c #(nop)  ARG A=x",
                "/bin/sh -c #(nop)  ARG B",
                "/bin/sh -c #(nop)  ENV E=1 2",
                "|2 A=x B=bee /bin/sh -c echo $A",
                "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]",
                "/bin/sh -ec #(nop) WORKDIR /w",
                "/bin/sh -ec #(nop) COPY --chown=1:1file:h in d/ ",
                "/bin/sh -ec #(nop)  CMD [\"x\"]",
            ]
        );
        let stage = &p.stages[0];
        assert!(stage.steps[0].trigger);
        let Work::Run(run) = &stage.steps[4].work else {
            panic!()
        };
        // The proxy is in the environment but, undeclared, not in the cache key.
        assert_eq!(
            run.env,
            ["PATH=/bin", "T=1", "E=1 2", "A=x", "B=bee", "HTTP_PROXY=p"]
        );
        let Work::Copy(copy) = &stage.steps[7].work else {
            panic!()
        };
        assert_eq!(
            (copy.dest_path.as_str(), copy.from.clone()),
            ("/w/d/", CopyFrom::Context)
        );
        assert!(p.unused_build_args.is_empty());
    }

    #[test]
    fn stages_args_and_targets() {
        let text = "ARG V=1\nARG IMG=base\nFROM $IMG AS one\nARG V\nENV V=$V\nFROM one AS two\nENV W=${V:-none}\nFROM base\nCOPY --from=one /a /b\n";
        let p = build(text, &BuildOptions::default()).unwrap();
        assert_eq!(p.stages.len(), 3);
        assert_eq!(p.steps_total, 2 + 3 + 2 + 2);
        assert_eq!(p.stages[1].base, Base::Stage(0));
        // Stage two inherits ENV V from one; the meta ARG is not in scope without an ARG.
        assert!(p.stages[1]
            .config
            .env
            .as_ref()
            .unwrap()
            .contains(&"W=1".to_owned()));
        let Work::Copy(c) = &p.stages[2].steps.last().unwrap().work else {
            panic!()
        };
        assert_eq!(
            (c.from.clone(), c.preserve_ownership),
            (CopyFrom::Stage(0), true)
        );
        let target = BuildOptions {
            target: Some("ONE".into()),
            ..BuildOptions::default()
        };
        assert_eq!(build(text, &target).unwrap().stages.len(), 1);
        let nope = BuildOptions {
            target: Some("x".into()),
            ..BuildOptions::default()
        };
        assert_eq!(
            build(text, &nope).unwrap_err(),
            BuildError::Target("x".into())
        );
    }

    #[test]
    fn refusals_come_at_their_step() {
        let e = build(
            "FROM base\nENV A=1\nCOPY --chmod=644 a b\n",
            &BuildOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                BuildError::Step {
                    step: 3,
                    line: 3,
                    reason: StepError::Chmod,
                    ..
                }
            ),
            "{e}"
        );
        let e = build("FROM nosuch\n", &BuildOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                BuildError::Step {
                    step: 1,
                    reason: StepError::Image(_),
                    ..
                }
            ),
            "{e}"
        );
        let e = build(
            "FROM --platform=linux/arm64 base\n",
            &BuildOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux/arm64"), "{e}");
        let e = build("ARG A=1\n", &BuildOptions::default()).unwrap_err();
        assert_eq!(e, BuildError::NoStage);
        let e = build("FROM base\nRUN []\n", &BuildOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                BuildError::Step {
                    step: 2,
                    reason: StepError::NoCommand,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(exposed_ports("1.2.3.4:90:91").unwrap(), ["91/tcp"]);
        assert_eq!(exposed_ports("80-81/UDP").unwrap(), ["80/udp", "81/udp"]);
        assert!(exposed_ports("80/xyz").is_err());
        assert!(
            valid_signal("sigrtmin+3")
                && valid_signal("-3")
                && !valid_signal("0")
                && !valid_signal("FOO")
        );
    }
}
