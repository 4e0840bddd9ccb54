//! The Dockerfile parser of dockerd's classic builder (dockerd 20.10 with its vendored buildkit
//! `frontend/dockerfile/parser` and `instructions`), as a pure function from text to typed
//! instructions, and the printer that writes them back.
//!
//! What it follows, checked against `DOCKER_BUILDKIT=0 docker build` (tests/build_dockerd.rs):
//! parser directives on the leading comment lines (`escape`, `syntax` noted; any other
//! `# key=value` ends the directives as it does in dockerd), comments, line continuations with
//! the escape token (comment lines and empty lines inside a continuation are skipped, the
//! latter with dockerd's warning), JSON (exec) and shell forms, the flags of each instruction and
//! each instruction's argument rules. Heredocs are not part of the classic builder: their lines
//! become instructions, so the unknown instruction that follows `RUN <<EOF` is reported with a
//! note saying so.
//!
//! Deliberate differences, each refused with an error that names it rather than ignored as
//! dockerd ignores it: flags on `ARG`, `STOPSIGNAL` and `HEALTHCHECK NONE`; a Dockerfile that is
//! not UTF-8.

use std::fmt;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape token (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// The `# syntax=` directive, noted and ignored as the classic builder ignores it.
    pub syntax: Option<String>,
    /// The instructions in order.
    pub instructions: Vec<Located>,
    /// dockerd's parser warnings (empty continuation lines).
    pub warnings: Vec<String>,
}

/// An instruction and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The line it starts on (1-based).
    pub line: usize,
    /// The line it ends on (continuations).
    pub end_line: usize,
    /// Its text with continuations joined and outer white space trimmed (what `docker build`
    /// prints after `Step N/M :`).
    pub source: String,
    /// The instruction.
    pub instruction: Instruction,
}

/// The command of `RUN`, `CMD` and `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// The JSON (exec) form.
    Exec(Vec<String>),
    /// The shell form: run through `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// Nothing after the keyword (the shell form of an empty command).
    Absent,
}

/// `KEY=value` pairs of `ENV` and `LABEL`, as written (expanded when the build reaches them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValues {
    /// The pairs in order.
    pub pairs: Vec<(String, String)>,
    /// The old one-pair form `ENV KEY value with spaces`.
    pub legacy: bool,
}

/// One name of `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name as written.
    pub name: String,
    /// Its default as written.
    pub default: Option<String>,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image, a stage name or `scratch`, as written (build arguments before the first `FROM`
    /// are substituted when the stage begins).
    pub image: String,
    /// The stage name, lower-cased.
    pub stage_name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// `RUN [--mount=...] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// `--mount` values, which the classic builder refuses when it reaches the step.
    pub mounts: Vec<String>,
}

/// The arguments of `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// The sources as written.
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod` (the classic builder refuses it when it reaches the step).
    pub chmod: Option<String>,
    /// `--from` (`COPY` only).
    pub from: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disables the base image's check.
    None,
    /// `HEALTHCHECK [flags] CMD command`.
    Check {
        /// The command (never [`CommandLine::Absent`]).
        command: CommandLine,
        /// `--interval` in nanoseconds.
        interval: Option<i64>,
        /// `--timeout` in nanoseconds.
        timeout: Option<i64>,
        /// `--start-period` in nanoseconds.
        start_period: Option<i64>,
        /// `--retries`.
        retries: Option<i64>,
    },
}

/// `ONBUILD INSTRUCTION`: kept as text and parsed again when a build uses the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger's keyword, upper-cased.
    pub keyword: String,
    /// The trigger as written (what lands in the image's `OnBuild`).
    pub expression: String,
}

/// A Dockerfile instruction with its arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `SHELL ["exe", "arg"]` (JSON only).
    Shell(Vec<String>),
    /// `ENV`.
    Env(KeyValues),
    /// `LABEL`.
    Label(KeyValues),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE` (sorted as dockerd sorts them, before substitution).
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD`.
    Add(CopyArgs),
}

impl Instruction {
    /// The keyword, upper-case.
    #[must_use]
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::From(_) => "FROM",
            Self::Run(_) => "RUN",
            Self::Cmd(_) => "CMD",
            Self::Entrypoint(_) => "ENTRYPOINT",
            Self::Shell(_) => "SHELL",
            Self::Env(_) => "ENV",
            Self::Label(_) => "LABEL",
            Self::Arg(_) => "ARG",
            Self::Workdir(_) => "WORKDIR",
            Self::User(_) => "USER",
            Self::Expose(_) => "EXPOSE",
            Self::Volume(_) => "VOLUME",
            Self::StopSignal(_) => "STOPSIGNAL",
            Self::Healthcheck(_) => "HEALTHCHECK",
            Self::Onbuild(_) => "ONBUILD",
            Self::Maintainer(_) => "MAINTAINER",
            Self::Copy(_) => "COPY",
            Self::Add(_) => "ADD",
        }
    }
}

/// Why a Dockerfile was refused: the line, the instruction and dockerd's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The line (1-based) of the instruction (or of the directive or last line).
    pub line: usize,
    /// The instruction's keyword as written, upper-cased, when the error is about one.
    pub instruction: Option<String>,
    /// What is wrong.
    #[source]
    pub reason: ParseReason,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.instruction {
            Some(i) => write!(f, "Dockerfile:{}: {i}: {}", self.line, self.reason),
            None => write!(f, "Dockerfile:{}: {}", self.line, self.reason),
        }
    }
}

/// The reasons dockerd gives, in its words (lower-cased where dockerd capitalises).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseReason {
    /// The text is not UTF-8.
    #[error("the Dockerfile is not UTF-8 text")]
    NotUtf8,
    /// No instruction at all.
    #[error("file with no instructions")]
    NoInstructions,
    /// `# escape=` with another token.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    /// A directive given twice.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// An instruction dockerd does not know.
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    /// An unknown instruction on a line that a heredoc of the classic builder's unsupported
    /// syntax made into an instruction.
    #[error("unknown instruction: {instruction} (line {heredoc_line} starts a heredoc, which the classic builder does not support: it reads the heredoc's lines as instructions)")]
    HeredocLine {
        /// The keyword found.
        instruction: String,
        /// The line with `<<`.
        heredoc_line: usize,
    },
    /// An instruction before the first `FROM` other than `ARG`.
    #[error("no build stage in current context")]
    NoBuildStage,
    /// A flag the instruction does not take.
    #[error("unknown flag: {0}")]
    UnknownFlag(String),
    /// A flag given twice.
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    /// `--flag` without `=value`.
    #[error("missing a value on flag: {0}")]
    MissingFlagValue(String),
    /// An argument in the flags' place that is not a flag.
    #[error("arg should start with -- : {0}")]
    NotAFlag(String),
    /// `INSTR` without its argument.
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    /// `INSTR a b` where one is allowed.
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    /// `COPY src` without a destination.
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(&'static str),
    /// `ENV KEY` without a value.
    #[error("{0} must have two arguments")]
    TwoArguments(&'static str),
    /// `ENV a=b c`.
    #[error("syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    MissingEquals(String),
    /// `ENV =x`.
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    /// A JSON array with something else than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// `SHELL` not in JSON form.
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),
    /// `FROM a b`.
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// `FROM x AS 1a`.
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    /// `ONBUILD ONBUILD`.
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    /// `ONBUILD FROM` or `ONBUILD MAINTAINER`.
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    /// `HEALTHCHECK NONE x`.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK --interval=5s NONE` (dockerd ignores the flags).
    #[error("HEALTHCHECK NONE takes no flags, got --{0}")]
    HealthcheckNoneFlags(String),
    /// `HEALTHCHECK FOO`.
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    /// `HEALTHCHECK CMD`.
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckCommand,
    /// A duration Go cannot parse.
    #[error("{0}")]
    Duration(#[from] super::go_text::DurationError),
    /// A duration under 1ms.
    #[error("interval {0:?} cannot be less than 1ms")]
    DurationTooShort(String),
    /// `--retries=x`.
    #[error("strconv.ParseInt: parsing {0:?}: invalid syntax")]
    Retries(String),
    /// `--retries=0`.
    #[error("--retries must be at least 1 (not {0})")]
    RetriesTooLow(i64),
    /// `VOLUME ""`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
}

const DEFAULT_ESCAPE: char = '\\';

/// Parses a Dockerfile.
///
/// # Errors
/// The first problem dockerd would report, with its line and instruction: directive errors and
/// line-level errors of the whole file first, then the instructions' argument errors.
pub fn parse(bytes: &[u8]) -> Result<Dockerfile, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        instruction: None,
        reason: ParseReason::NotUtf8,
    })?;
    let (nodes, directives, warnings) = parse_nodes(text)?;
    let mut instructions = Vec::with_capacity(nodes.len());
    let mut heredoc_at: Option<usize> = None;
    let mut stage_seen = false;
    for node in &nodes {
        let located = node_instruction(node, heredoc_at)?;
        if matches!(located.instruction, Instruction::From(_)) {
            stage_seen = true;
        } else if !stage_seen && !matches!(located.instruction, Instruction::Arg(_)) {
            return Err(ParseError {
                line: node.line,
                instruction: Some(node.keyword_upper()),
                reason: ParseReason::NoBuildStage,
            });
        }
        if opens_heredoc(&located.instruction) {
            heredoc_at = Some(node.line);
        }
        instructions.push(located);
    }
    Ok(Dockerfile {
        escape: directives.escape,
        syntax: directives.syntax,
        instructions,
        warnings,
    })
}

/// Parses one instruction written alone, as dockerd parses an `ONBUILD` trigger when a build
/// uses the image (default escape token, exactly one instruction).
///
/// # Errors
/// As [`parse`], and when the text holds no instruction or more than one.
pub fn parse_trigger(text: &str) -> Result<Located, ParseError> {
    let (nodes, _, _) = parse_nodes(text)?;
    if nodes.len() != 1 {
        return Err(ParseError {
            line: 1,
            instruction: Some("ONBUILD".into()),
            reason: ParseReason::ExactlyOneArgument("ONBUILD trigger"),
        });
    }
    node_instruction(&nodes[0], None)
}

fn opens_heredoc(i: &Instruction) -> bool {
    let has = |s: &str| {
        s.match_indices("<<").any(|(at, _)| {
            s[at + 2..]
                .trim_start_matches(['-', '"', '\''])
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        })
    };
    match i {
        Instruction::Run(Run {
            command: CommandLine::Shell(s),
            ..
        }) => has(s),
        Instruction::Copy(c) | Instruction::Add(c) => c.sources.iter().any(|s| has(s)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Lines to nodes (dockerd's parser.Parse and its line parsers).

struct Directives {
    escape: char,
    syntax: Option<String>,
    seen_escape: bool,
    seen_syntax: bool,
    done: bool,
}

impl Directives {
    /// `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$` on each line until one does not
    /// match or names an unknown directive.
    fn line(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        let err = |reason| ParseError {
            line: number,
            instruction: None,
            reason,
        };
        match key.as_str() {
            "escape" => {
                if self.seen_escape {
                    return Err(err(ParseReason::DuplicateDirective(key)));
                }
                self.seen_escape = true;
                self.escape = match value {
                    "`" => '`',
                    "\\" => '\\',
                    other => return Err(err(ParseReason::InvalidEscape(other.to_owned()))),
                };
            }
            "syntax" => {
                if self.seen_syntax {
                    return Err(err(ParseReason::DuplicateDirective(key)));
                }
                self.seen_syntax = true;
                self.syntax = Some(value.to_owned());
            }
            _ => self.done = true,
        }
        Ok(())
    }
}

fn directive(line: &str) -> Option<(&str, &str)> {
    let blank = |c: char| c == ' ' || c == '\t';
    let rest = line.strip_prefix('#')?.trim_start_matches(blank);
    let key_len = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest.trim_start_matches(blank).strip_prefix('=')?;
    let value = rest.trim_start_matches(blank).trim_end_matches(blank);
    (!value.is_empty()).then_some((key, value))
}

/// A logical line of the Dockerfile: the keyword, its flags and the rest.
#[derive(Debug)]
struct Node {
    line: usize,
    end_line: usize,
    /// The joined line (continuations removed), left-trimmed.
    original: String,
    /// The keyword as written.
    keyword: String,
    flags: Vec<String>,
    args: NodeArgs,
}

impl Node {
    fn keyword_upper(&self) -> String {
        self.keyword.to_uppercase()
    }
}

/// What a line parser made of the arguments.
#[derive(Debug)]
struct NodeArgs {
    args: Vec<String>,
    json: bool,
    /// `ENV`/`LABEL` in the old `KEY value` form.
    legacy: bool,
    /// The trigger of `ONBUILD`.
    sub: Option<Box<Node>>,
}

impl NodeArgs {
    fn plain(args: Vec<String>) -> Self {
        Self {
            args,
            json: false,
            legacy: false,
            sub: None,
        }
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn continuation(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    trimmed.strip_suffix(escape)
}

#[allow(clippy::type_complexity)]
fn parse_nodes(text: &str) -> Result<(Vec<Node>, Directives, Vec<String>), ParseError> {
    let mut d = Directives {
        escape: DEFAULT_ESCAPE,
        syntax: None,
        seen_escape: false,
        seen_syntax: false,
        done: false,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // bufio.ScanLines: split on \n, drop one trailing \r; no empty last line.
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let lines: Vec<&str> = lines
        .into_iter()
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .collect();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let stripped = raw.trim_start();
        d.line(stripped, i + 1)?;
        i += 1;
        let start = i;
        let first = if stripped.starts_with('#') {
            ""
        } else {
            stripped
        };
        let (mut line, mut end) = match continuation(first, d.escape) {
            Some(l) => (l.to_owned(), false),
            None => (first.to_owned(), true),
        };
        if end && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end && i < lines.len() {
            let raw = lines[i];
            d.line(raw, i + 1)?;
            i += 1;
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            match continuation(raw, d.escape) {
                Some(l) => line.push_str(l),
                None => {
                    line.push_str(raw);
                    end = true;
                }
            }
        }
        if empty_continuation {
            warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }
        nodes.push(node_from_line(&line, d.escape, start, i)?);
    }
    if !warnings.is_empty() {
        warnings.push(
            "[WARNING]: Empty continuation lines will become errors in a future release.".into(),
        );
    }
    if nodes.is_empty() {
        return Err(ParseError {
            line: lines.len().max(1),
            instruction: None,
            reason: ParseReason::NoInstructions,
        });
    }
    Ok((nodes, d, warnings))
}

/// dockerd's `tokenWhitespace`: `[\t\v\f\r ]+`.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_token_space(s: &str) -> Vec<String> {
    s.split(is_token_space)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn node_from_line(line: &str, escape: char, start: usize, end: usize) -> Result<Node, ParseError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_token_space) {
        Some(at) => (
            &trimmed[..at],
            trimmed[at..].trim_start_matches(is_token_space),
        ),
        None => (trimmed, ""),
    };
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim();
    let err = |reason| ParseError {
        line: start,
        instruction: Some(keyword.to_uppercase()),
        reason,
    };
    let args = match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => maybe_json_list(rest).map_err(err)?,
        "arg" => NodeArgs::plain(words(rest, escape)),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(rest).map_err(err)?,
        "env" | "label" => {
            let key = if keyword.eq_ignore_ascii_case("env") {
                "ENV"
            } else {
                "LABEL"
            };
            name_values(rest, key, escape).map_err(err)?
        }
        "expose" | "from" => NodeArgs::plain(split_token_space(rest)),
        "healthcheck" => health_args(rest).map_err(err)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => NodeArgs::plain(if rest.is_empty() {
            vec![]
        } else {
            vec![rest.to_owned()]
        }),
        "onbuild" => {
            let sub = if rest.is_empty() {
                None
            } else {
                Some(Box::new(node_from_line(rest, escape, start, end)?))
            };
            NodeArgs {
                args: vec![],
                json: false,
                legacy: false,
                sub,
            }
        }
        _ => NodeArgs::plain(vec![]),
    };
    Ok(Node {
        line: start,
        end_line: end,
        original: line.to_owned(),
        keyword: keyword.to_owned(),
        flags,
        args,
    })
}

/// dockerd's `extractBuilderFlags`: leading `--flag[=value]` words (quotes and `\` handled),
/// up to the first word that does not start with `--` or a bare `--`.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut word: Vec<u8> = Vec::new();
    let mut in_word = false;
    let mut quote: Option<u8> = None;
    let mut blank_ok = false;
    let mut pos = 0;
    let push = |words: &mut Vec<String>, w: &mut Vec<u8>| {
        words.push(String::from_utf8_lossy(w).into_owned());
        w.clear();
    };
    loop {
        if !in_word {
            if pos == b.len() {
                break;
            }
            let c = b[pos];
            if c.is_ascii_whitespace() || c == 0x0b {
                pos += 1;
                continue;
            }
            if c != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (&line[pos..], words);
            }
            in_word = true;
        }
        if pos == b.len() {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                push(&mut words, &mut word);
            }
            break;
        }
        let c = b[pos];
        match quote {
            None => {
                if c.is_ascii_whitespace() || c == 0x0b {
                    in_word = false;
                    if word == b"--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        push(&mut words, &mut word);
                    }
                    blank_ok = false;
                } else if c == b'\'' || c == b'"' {
                    quote = Some(c);
                    blank_ok = true;
                } else if c == b'\\' {
                    if pos + 1 < b.len() {
                        pos += 1;
                        word.push(b[pos]);
                    }
                } else {
                    word.push(c);
                }
            }
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == b'\\' {
                    if pos + 1 == b.len() {
                        quote = None;
                    } else {
                        pos += 1;
                        word.push(b[pos]);
                    }
                } else {
                    word.push(c);
                }
            }
        }
        pos += 1;
    }
    ("", words)
}

/// dockerd's `parseWords`: white-space separated words, quotes kept (substitution removes them
/// later), the escape token kept with the character it escapes.
fn words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        if !in_word {
            if i == chars.len() {
                break;
            }
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        if i == chars.len() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        let c = chars[i];
        match quote {
            None => {
                if c.is_whitespace() {
                    in_word = false;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    word.push(chars[i]);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    word.push(chars[i]);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
        }
        i += 1;
    }
    words
}

fn name_values(rest: &str, key: &'static str, escape: char) -> Result<NodeArgs, ParseReason> {
    let ws = words(rest, escape);
    if ws.is_empty() {
        return Ok(NodeArgs::plain(vec![]));
    }
    if !ws[0].contains('=') {
        let Some(at) = rest.find(is_token_space) else {
            return Err(ParseReason::TwoArguments(key));
        };
        let value = rest[at..].trim_start_matches(is_token_space);
        let mut a = NodeArgs::plain(vec![rest[..at].to_owned(), value.to_owned()]);
        a.legacy = true;
        return Ok(a);
    }
    let mut args = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ParseReason::MissingEquals(w));
        };
        args.push(k.to_owned());
        args.push(v.to_owned());
    }
    Ok(NodeArgs::plain(args))
}

enum Json {
    Strings(Vec<String>),
    NotStrings,
    Other,
}

/// dockerd's `parseJSON`: the first JSON value of the text (what follows it is ignored, as Go's
/// decoder ignores it) when the text starts with `[`.
fn json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::Other;
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(serde_json::Value::Array(items))) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
        _ => Json::Other,
    }
}

fn maybe_json(rest: &str) -> Result<NodeArgs, ParseReason> {
    if rest.is_empty() {
        return Ok(NodeArgs::plain(vec![]));
    }
    match json(rest) {
        Json::Strings(args) => Ok(NodeArgs {
            args,
            json: true,
            legacy: false,
            sub: None,
        }),
        Json::NotStrings => Err(ParseReason::JsonNotStrings),
        Json::Other => Ok(NodeArgs::plain(vec![rest.to_owned()])),
    }
}

fn maybe_json_list(rest: &str) -> Result<NodeArgs, ParseReason> {
    match json(rest) {
        Json::Strings(args) => Ok(NodeArgs {
            args,
            json: true,
            legacy: false,
            sub: None,
        }),
        Json::NotStrings => Err(ParseReason::JsonNotStrings),
        Json::Other => Ok(NodeArgs::plain(split_token_space(rest))),
    }
}

fn health_args(rest: &str) -> Result<NodeArgs, ParseReason> {
    let sep = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '\u{b}')
        .unwrap_or(rest.len());
    if sep == 0 {
        return Ok(NodeArgs::plain(vec![]));
    }
    let typ = &rest[..sep];
    let after = rest[sep..].trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
    let mut cmd = maybe_json(after)?;
    cmd.args.insert(0, typ.to_owned());
    Ok(cmd)
}

// ---------------------------------------------------------------------------------------------
// Nodes to instructions (dockerd's instructions.Parse).

/// The flags an instruction takes, parsed as dockerd's BFlags parses them.
struct Flags<'a> {
    given: &'a [String],
    values: Vec<(&'static str, Vec<String>)>,
}

impl<'a> Flags<'a> {
    fn parse(
        given: &'a [String],
        known: &[&'static str],
        multi: &[&'static str],
    ) -> Result<Self, ParseReason> {
        let mut values: Vec<(&'static str, Vec<String>)> =
            known.iter().map(|k| (*k, vec![])).collect();
        for arg in given {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ParseReason::NotAFlag(arg.clone()));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(slot) = values.iter_mut().find(|(k, _)| *k == name) else {
                return Err(ParseReason::UnknownFlag(name.to_owned()));
            };
            let is_multi = multi.contains(&slot.0);
            if !slot.1.is_empty() && !is_multi {
                return Err(ParseReason::DuplicateFlag(name.to_owned()));
            }
            let Some(value) = value else {
                return Err(ParseReason::MissingFlagValue(name.to_owned()));
            };
            slot.1.push(value.to_owned());
        }
        Ok(Self { given, values })
    }

    fn none(given: &'a [String]) -> Result<(), ParseReason> {
        Self::parse(given, &[], &[]).map(|_| ())
    }

    /// The value of a single-valued flag; `--flag=` counts as not given, as in dockerd.
    fn value(&self, name: &str) -> Option<String> {
        let _ = self.given;
        self.values
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.last().cloned())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn command_line(args: &NodeArgs) -> CommandLine {
    if args.json {
        CommandLine::Exec(args.args.clone())
    } else if args.args.is_empty() {
        CommandLine::Absent
    } else {
        CommandLine::Shell(args.args.join(" "))
    }
}

fn pairs(args: &[String], key: &'static str) -> Result<Vec<(String, String)>, ParseReason> {
    if args.is_empty() {
        return Err(ParseReason::AtLeastOneArgument(key));
    }
    args.chunks(2)
        .map(|kv| {
            if kv[0].is_empty() {
                Err(ParseReason::BlankName(key))
            } else {
                Ok((kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
            }
        })
        .collect()
}

fn duration_flag(flags: &Flags<'_>, name: &str) -> Result<Option<i64>, ParseReason> {
    match flags.value(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let ns = super::go_text::parse_duration(&v)?;
            if ns < 1_000_000 {
                return Err(ParseReason::DurationTooShort(name.to_owned()));
            }
            Ok(Some(ns))
        }
    }
}

fn copy_args(
    node: &Node,
    key: &'static str,
    known: &[&'static str],
) -> Result<CopyArgs, ParseReason> {
    let args = &node.args.args;
    if args.len() < 2 {
        return Err(ParseReason::NoDestination(key));
    }
    let flags = Flags::parse(&node.flags, known, &[])?;
    let (dest, sources) = args.split_last().expect("two arguments");
    Ok(CopyArgs {
        sources: sources.to_vec(),
        dest: dest.clone(),
        chown: flags.value("chown"),
        chmod: flags.value("chmod"),
        from: flags.value("from"),
    })
}

fn node_instruction(node: &Node, heredoc_at: Option<usize>) -> Result<Located, ParseError> {
    let err = |reason| ParseError {
        line: node.line,
        instruction: Some(node.keyword_upper()),
        reason,
    };
    let instruction = instruction(node, heredoc_at).map_err(err)?;
    Ok(Located {
        line: node.line,
        end_line: node.end_line,
        source: node.original.trim().to_owned(),
        instruction,
    })
}

fn instruction(node: &Node, heredoc_at: Option<usize>) -> Result<Instruction, ParseReason> {
    let a = &node.args;
    let args = &a.args;
    let one = |key: &'static str| -> Result<String, ParseReason> {
        if args.len() != 1 {
            return Err(ParseReason::ExactlyOneArgument(key));
        }
        Ok(args[0].clone())
    };
    Ok(match node.keyword.to_ascii_lowercase().as_str() {
        "env" => {
            Flags::none(&node.flags)?;
            Instruction::Env(KeyValues {
                pairs: pairs(args, "ENV")?,
                legacy: a.legacy,
            })
        }
        "label" => {
            Flags::none(&node.flags)?;
            Instruction::Label(KeyValues {
                pairs: pairs(args, "LABEL")?,
                legacy: a.legacy,
            })
        }
        "maintainer" => {
            let m = one("MAINTAINER")?;
            Flags::none(&node.flags)?;
            Instruction::Maintainer(m)
        }
        "add" => Instruction::Add(copy_args(node, "ADD", &["chown", "chmod"])?),
        "copy" => Instruction::Copy(copy_args(node, "COPY", &["chown", "from", "chmod"])?),
        "from" => {
            let stage_name = match args.len() {
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_lowercase();
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase()
                                || c.is_ascii_digit()
                                || matches!(c, '-' | '_' | '.')
                        });
                    if !valid {
                        return Err(ParseReason::StageName(args[2].clone()));
                    }
                    Some(name)
                }
                1 => None,
                _ => return Err(ParseReason::FromArguments),
            };
            let flags = Flags::parse(&node.flags, &["platform"], &[])?;
            Instruction::From(From {
                image: args[0].clone(),
                stage_name,
                platform: flags.value("platform").filter(|p| !p.is_empty()),
            })
        }
        "onbuild" => {
            let Some(sub) = &a.sub else {
                return Err(ParseReason::AtLeastOneArgument("ONBUILD"));
            };
            Flags::none(&node.flags)?;
            let keyword = sub.keyword.to_uppercase();
            match keyword.as_str() {
                "ONBUILD" => return Err(ParseReason::OnbuildChain),
                "MAINTAINER" | "FROM" => return Err(ParseReason::OnbuildTrigger(keyword)),
                _ => {}
            }
            // dockerd: the original line without `(?i)^\s*ONBUILD\s*`.
            let expression = node.original.trim_start();
            let expression = expression[node.keyword.len()..].trim_start();
            Instruction::Onbuild(Onbuild {
                keyword,
                expression: expression.to_owned(),
            })
        }
        "workdir" => {
            let w = one("WORKDIR")?;
            Flags::none(&node.flags)?;
            Instruction::Workdir(w)
        }
        "run" => {
            let flags = Flags::parse(&node.flags, &["mount"], &["mount"])?;
            Instruction::Run(Run {
                command: command_line(a),
                mounts: flags.all("mount"),
            })
        }
        "cmd" => {
            Flags::none(&node.flags)?;
            Instruction::Cmd(command_line(a))
        }
        "entrypoint" => {
            Flags::none(&node.flags)?;
            Instruction::Entrypoint(command_line(a))
        }
        "healthcheck" => {
            if args.is_empty() {
                return Err(ParseReason::AtLeastOneArgument("HEALTHCHECK"));
            }
            let typ = args[0].to_uppercase();
            let rest = &args[1..];
            if typ == "NONE" {
                if !rest.is_empty() {
                    return Err(ParseReason::HealthcheckNoneArguments);
                }
                if let Some(f) = node.flags.first() {
                    return Err(ParseReason::HealthcheckNoneFlags(
                        f.trim_start_matches('-')
                            .split('=')
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    ));
                }
                Instruction::Healthcheck(Healthcheck::None)
            } else {
                let flags = Flags::parse(
                    &node.flags,
                    &["interval", "timeout", "start-period", "retries"],
                    &[],
                )?;
                if typ != "CMD" {
                    return Err(ParseReason::HealthcheckType(typ));
                }
                if rest.is_empty() {
                    return Err(ParseReason::HealthcheckCommand);
                }
                let command = if a.json {
                    CommandLine::Exec(rest.to_vec())
                } else {
                    CommandLine::Shell(rest.join(" "))
                };
                let interval = duration_flag(&flags, "interval")?;
                let timeout = duration_flag(&flags, "timeout")?;
                let start_period = duration_flag(&flags, "start-period")?;
                let retries = match flags.value("retries").filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => {
                        let n: i64 = v
                            .parse::<i32>()
                            .map_err(|_| ParseReason::Retries(v.clone()))?
                            .into();
                        if n < 1 {
                            return Err(ParseReason::RetriesTooLow(n));
                        }
                        Some(n)
                    }
                };
                Instruction::Healthcheck(Healthcheck::Check {
                    command,
                    interval,
                    timeout,
                    start_period,
                    retries,
                })
            }
        }
        "expose" => {
            if args.is_empty() {
                return Err(ParseReason::AtLeastOneArgument("EXPOSE"));
            }
            Flags::none(&node.flags)?;
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose(ports)
        }
        "user" => {
            let u = one("USER")?;
            Flags::none(&node.flags)?;
            Instruction::User(u)
        }
        "volume" => {
            if args.is_empty() {
                return Err(ParseReason::AtLeastOneArgument("VOLUME"));
            }
            Flags::none(&node.flags)?;
            let mut volumes = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(ParseReason::EmptyVolume);
                }
                volumes.push(v.to_owned());
            }
            Instruction::Volume(volumes)
        }
        "stopsignal" => {
            let s = one("STOPSIGNAL")?;
            Flags::none(&node.flags)?;
            Instruction::StopSignal(s)
        }
        "arg" => {
            if args.is_empty() {
                return Err(ParseReason::AtLeastOneArgument("ARG"));
            }
            Flags::none(&node.flags)?;
            let mut decls = Vec::with_capacity(args.len());
            for w in args {
                decls.push(match w.split_once('=') {
                    Some(("", _)) => return Err(ParseReason::BlankName("ARG")),
                    Some((k, v)) => ArgDecl {
                        name: k.to_owned(),
                        default: Some(v.to_owned()),
                    },
                    None => ArgDecl {
                        name: w.clone(),
                        default: None,
                    },
                });
            }
            Instruction::Arg(decls)
        }
        "shell" => {
            Flags::none(&node.flags)?;
            if args.is_empty() {
                return Err(ParseReason::AtLeastOneArgument("SHELL"));
            }
            if !a.json {
                return Err(ParseReason::NotJson("SHELL"));
            }
            Instruction::Shell(args.clone())
        }
        _ => {
            let instruction = node.keyword_upper();
            return Err(match heredoc_at {
                Some(heredoc_line) => ParseReason::HeredocLine {
                    instruction,
                    heredoc_line,
                },
                None => ParseReason::UnknownInstruction(instruction),
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Printing.

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exec(v) => f.write_str(&json_list(v)),
            Self::Shell(s) => f.write_str(s),
            Self::Absent => Ok(()),
        }
    }
}

fn kv_text(kv: &KeyValues) -> String {
    if kv.legacy {
        if let [(k, v)] = kv.pairs.as_slice() {
            return format!("{k} {v}");
        }
    }
    let items: Vec<String> = kv.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    items.join(" ")
}

fn flag(out: &mut String, name: &str, value: Option<&String>) {
    if let Some(v) = value {
        out.push_str(&format!("--{name}={v} "));
    }
}

fn copy_text(c: &CopyArgs) -> String {
    let mut out = String::new();
    flag(&mut out, "from", c.from.as_ref());
    flag(&mut out, "chown", c.chown.as_ref());
    flag(&mut out, "chmod", c.chmod.as_ref());
    let mut all = c.sources.clone();
    all.push(c.dest.clone());
    if all
        .iter()
        .any(|w| w.is_empty() || w.contains(is_token_space))
        || all[0].starts_with('[')
    {
        out.push_str(&json_list(&all));
    } else {
        out.push_str(&all.join(" "));
    }
    out
}

impl fmt::Display for Instruction {
    /// One line that [`parse`] reads back as this instruction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kw = self.keyword();
        let body = match self {
            Self::From(from) => {
                let mut out = String::new();
                flag(&mut out, "platform", from.platform.as_ref());
                out.push_str(&from.image);
                if let Some(n) = &from.stage_name {
                    out.push_str(" AS ");
                    out.push_str(n);
                }
                out
            }
            Self::Run(run) => {
                let mut out = String::new();
                for m in &run.mounts {
                    flag(&mut out, "mount", Some(m));
                }
                out.push_str(&run.command.to_string());
                out
            }
            Self::Cmd(c) | Self::Entrypoint(c) => c.to_string(),
            Self::Shell(v) => json_list(v),
            Self::Env(kv) | Self::Label(kv) => kv_text(kv),
            Self::Arg(decls) => decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Self::Workdir(s) | Self::User(s) | Self::StopSignal(s) | Self::Maintainer(s) => {
                s.clone()
            }
            Self::Expose(ports) => ports.join(" "),
            Self::Volume(v) => json_list(v),
            Self::Healthcheck(Healthcheck::None) => "NONE".to_owned(),
            Self::Healthcheck(Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                retries,
            }) => {
                let mut out = String::new();
                for (name, v) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                ] {
                    if let Some(ns) = v {
                        out.push_str(&format!("--{name}={ns}ns "));
                    }
                }
                if let Some(r) = retries {
                    out.push_str(&format!("--retries={r} "));
                }
                out.push_str("CMD ");
                out.push_str(&command.to_string());
                out
            }
            Self::Onbuild(o) => o.expression.clone(),
            Self::Copy(c) | Self::Add(c) => copy_text(c),
        };
        if body.is_empty() {
            f.write_str(kw)
        } else {
            write!(f, "{kw} {body}")
        }
    }
}

impl Dockerfile {
    /// The Dockerfile as text that [`parse`] reads back to the same instructions.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.escape != DEFAULT_ESCAPE {
            out.push_str(&format!("# escape={}\n", self.escape));
        }
        for i in &self.instructions {
            out.push_str(&i.instruction.to_string());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let d = parse(format!("FROM base\n{text}\n").as_bytes()).unwrap();
        d.instructions[1].instruction.clone()
    }

    fn reason(text: &str) -> (usize, ParseReason) {
        let e = parse(text.as_bytes()).unwrap_err();
        (e.line, e.reason)
    }

    #[test]
    fn lines_join_as_dockerd_joins_them() {
        let d = parse(b"FROM base\nENV A=1 \\\n  # comment\n\n   B=2\nRUN a \\\\  \nb\n").unwrap();
        let env = &d.instructions[1];
        assert_eq!((env.line, env.end_line), (2, 5));
        assert_eq!(env.source, "ENV A=1    B=2");
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        // An escaped escape at the end of a line still continues it.
        assert_eq!(d.instructions[2].source, "RUN a \\b");
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        let d = parse(b"# syntax=x/y\n#  ESCAPE = ` \nFROM base\nENV A=`\n  B=1\n").unwrap();
        assert_eq!((d.escape, d.syntax.as_deref()), ('`', Some("x/y")));
        let d = parse(b"# note\n# escape=`\nFROM base\n").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(
            reason("#escape=x\nFROM base\n"),
            (1, ParseReason::InvalidEscape("x".into()))
        );
        assert_eq!(
            reason("# escape=`\n# escape=\\\nFROM base\n"),
            (2, ParseReason::DuplicateDirective("escape".into()))
        );
    }

    #[test]
    fn forms_and_flags() {
        assert_eq!(
            one("CMD [\"a\", \"b\"] trailing"),
            Instruction::Cmd(CommandLine::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            one("CMD [\"a\","),
            Instruction::Cmd(CommandLine::Shell("[\"a\",".into()))
        );
        assert_eq!(one("CMD"), Instruction::Cmd(CommandLine::Absent));
        let Instruction::Copy(c) = one("COPY --from=\"s 1\" --chown=a\\ b x \"y z\" /d/") else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("s 1"));
        assert_eq!(c.chown.as_deref(), Some("a b"));
        assert_eq!(c.sources, ["x", "\"y", "z\""]);
        assert_eq!(
            one("ENV A=\"x y\" B=c\\ d"),
            Instruction::Env(KeyValues {
                pairs: vec![("A".into(), "\"x y\"".into()), ("B".into(), "c\\ d".into())],
                legacy: false
            })
        );
        assert_eq!(
            one("EXPOSE 90 8080 100"),
            Instruction::Expose(vec!["100".into(), "8080".into(), "90".into()])
        );
        let Instruction::Onbuild(o) = one("onbuild run echo hi  ") else {
            panic!()
        };
        assert_eq!(
            (o.keyword.as_str(), o.expression.as_str()),
            ("RUN", "run echo hi  ")
        );
    }

    #[test]
    fn refusals_name_the_line_and_instruction() {
        let e = parse(b"FROM base\n\nENV --foo A=1\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:3: ENV: unknown flag: foo");
        assert_eq!(
            reason("FROM base\nCOPY --link a b\n").1,
            ParseReason::UnknownFlag("link".into())
        );
        assert_eq!(
            reason("FROM base\nCOPY --chown a b\n").1,
            ParseReason::MissingFlagValue("chown".into())
        );
        assert_eq!(
            reason("FROM base\nENV A\n"),
            (2, ParseReason::TwoArguments("ENV"))
        );
        assert_eq!(
            reason("ENV A=1\nFROM base\n"),
            (1, ParseReason::NoBuildStage)
        );
        assert_eq!(reason("\n# c\n\n").1, ParseReason::NoInstructions);
        assert_eq!(parse(b"FROM base\nENV A=\xff\n").unwrap_err().line, 2);
        assert_eq!(
            reason("FROM base\nRUN <<EOF\necho hi\nEOF\n"),
            (
                3,
                ParseReason::HeredocLine {
                    instruction: "ECHO".into(),
                    heredoc_line: 2
                }
            )
        );
        assert_eq!(
            reason("FROM base\nFOO\n").1,
            ParseReason::UnknownInstruction("FOO".into())
        );
        assert_eq!(
            reason("FROM base\nHEALTHCHECK --interval=500us CMD x\n").1,
            ParseReason::DurationTooShort("interval".into())
        );
    }
}
