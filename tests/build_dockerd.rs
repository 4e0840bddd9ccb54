//! The Dockerfile parser, the build fold and `.dockerignore` matching against the real thing:
//! dockerd 20.10's classic builder (`DOCKER_BUILDKIT=0`), on a private dockerd. Each Dockerfile
//! of the corpus is built by dockerd and planned by `refeng_spec::build` from the same base
//! image config; the image's `Config`, `Author` and the history's CreatedBy of the last stage
//! must match, and a Dockerfile dockerd refuses must be refused by the fold at the same step with
//! dockerd's reason. Then contexts with `.dockerignore` files are built with `COPY . /ctx` and
//! the files that arrived are compared with what the matcher answers.
//!
//! One dockerd serves the whole binary (a single test), and drops at the end, also on failure.

mod peers;
mod rootfs;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use peers::dockerd::Dockerd;
use refeng::engine::build::dockerignore::Dockerignore;
use refeng_spec::build::fold::{
    BaseImage, BuildError, CreatedBy, ImageConfig, ImageSource, StepError,
};
use refeng_spec::build::{parse, plan, BuildOptions};

/// The base images: busybox with a config (`PATH`, `CMD`, `ONBUILD` triggers) and without.
const BASES: [(&str, &[&str]); 3] = [
    (
        "bb:base",
        &[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "CMD [\"sh\"]",
        ],
    ),
    ("bb:plain", &[]),
    (
        "bb:triggers",
        &[
            "ENV PATH=/bin",
            "ONBUILD ENV FROM_TRIGGER=yes",
            "ONBUILD LABEL trig=$FROM_TRIGGER",
        ],
    ),
];

#[derive(Debug)]
enum Outcome {
    /// Both build the same image, or both refuse at the same step for the same reason.
    Same,
    /// dockerd builds it, refeng refuses by name (a deliberate difference; the reason is why).
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    flags: &'static [&'static str],
    outcome: Outcome,
}

const fn same(name: &'static str, dockerfile: &'static str) -> Case {
    Case {
        name,
        dockerfile,
        flags: &[],
        outcome: Outcome::Same,
    }
}

fn corpus() -> Vec<Case> {
    vec![
        same("env-forms", "FROM bb:base\nENV A=1 B=\"x y\" C=${A:-q}\\\n  D=$B\nENV OLD  value with  spaces\nENV A=2\n"),
        same("label-user-workdir-expose", "FROM bb:base\nENV A=1\nLABEL a=$A \"l 2\"=b c='$A'\nUSER 1000:$A\nWORKDIR /x/$A\nWORKDIR rel/../sub\nWORKDIR /abs/../w\nEXPOSE 80 $A/udp 8000-8002/sctp 1.2.3.4:90:91\n"),
        same("plain-base-gets-path", "FROM bb:plain\nCMD echo hi\n"),
        same("cmd-entrypoint", "FROM bb:base\nCMD [\"a\", \"b\"]\nENTRYPOINT echo \"q\" \\t\n"),
        same("entrypoint-resets-cmd", "FROM bb:base\nENTRYPOINT [\"/bin/echo\"]\n"),
        same("entrypoint-keeps-cmd-set-here", "FROM bb:base\nCMD x\nENTRYPOINT [\"/bin/echo\"]\n"),
        same("empty-cmd-and-entrypoint", "FROM bb:base\nCMD\nENTRYPOINT []\n"),
        same("bare-entrypoint", "FROM bb:base\nENTRYPOINT\n"),
        same("json-broken-is-shell", "FROM bb:base\nCMD [\"a\", \n"),
        same("shell", "FROM bb:base\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo\nENV A=1\n"),
        same("volumes", "FROM bb:base\nENV V=/v5\nVOLUME /v1 [\"/v2\"]\nVOLUME [\"/v3\", \"/v4\"]\nVOLUME $V\n"),
        same("stopsignal", "FROM bb:base\nSTOPSIGNAL sigusr1\n"),
        same("stopsignal-number", "FROM bb:base\nSTOPSIGNAL -3\n"),
        same("healthcheck", "FROM bb:base\nHEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=3 CMD [\"true\", \"x\"]\n"),
        same("healthcheck-shell", "FROM bb:base\nHEALTHCHECK --interval=1m30s CMD curl -f http://x/ || exit 1\n"),
        same("healthcheck-none", "FROM bb:base\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n"),
        same("onbuild-and-maintainer", "FROM bb:base\nONBUILD RUN echo hi   \nONBUILD FOO x\nMAINTAINER me <me@x>\n"),
        same("triggers-run-on-from", "FROM bb:triggers\nENV AFTER=1\n"),
        same("escape-backtick", "# escape=`\nFROM bb:base\nENV A=x`\n  B=y\nLABEL a=\"q`\"w\" b=c\\\\d\n"),
        same("unknown-directive-ends-directives", "# foo=bar\n# escape=`\nFROM bb:base\nENV A=`\n"),
        same("syntax-directive", "# syntax=docker/dockerfile:1\n# check=skip=all\nFROM bb:base\n"),
        same("comments-and-empty-in-continuation", "FROM bb:base\n# a comment\n  # indented\nENV A=1 \\\n# comment\n\n   B=2\n"),
        same("crlf", "FROM bb:base\r\nENV A=1 \\\r\n B=2\r\n"),
        same("arg-defaults-and-scope", "ARG BASE=bb:base\nARG V=1\nFROM $BASE\nARG V\nARG W=$V-w\nENV V=$V W=$W\nLABEL v=${V:+set}\n"),
        Case {
            name: "build-args",
            dockerfile: "ARG BASE=bb:plain\nFROM $BASE\nARG A=x\nARG B\nARG HTTP_PROXY\nENV A=$A B=$B P=$HTTP_PROXY NP=$NO_PROXY\n",
            flags: &["--build-arg", "B=bee", "--build-arg", "BASE=bb:base", "--build-arg", "UNUSED=1", "--build-arg", "HTTP_PROXY=h", "--build-arg", "NO_PROXY=n"],
            outcome: Outcome::Same,
        },
        same("env-shadows-arg", "FROM bb:base\nARG A=arg\nENV A=env\nENV B=$A\n"),
        Case {
            name: "multi-stage-target",
            dockerfile: "FROM bb:base AS one\nENV ONE=1\nFROM one AS Two\nENV TWO=2\nFROM bb:base\nENV THREE=3\n",
            flags: &["--target", "two"],
            outcome: Outcome::Same,
        },
        same("multi-stage-last", "FROM bb:base AS one\nENV ONE=1\nFROM one\nLABEL from=one\n"),
        Case {
            name: "labels-option",
            dockerfile: "FROM bb:base\nLABEL a=1\n",
            flags: &["--label", "b=$A", "--label", "a=2"],
            outcome: Outcome::Same,
        },
        same("run-with-args", "FROM bb:base\nARG A=x\nARG B\nRUN echo $A > /a\nRUN [\"true\", \"x\"]\n"),
        same("copy-and-add", "FROM bb:base AS s\nFROM bb:base\nWORKDIR /w\nCOPY Dockerfile rel/\nCOPY --chown=1000:1000 Dockerfile /abs\nCOPY --from=s /etc/passwd /p\nADD Dockerfile /f2\n"),
        same("arg-several-names", "FROM bb:base\nARG A=1 B C=3\nENV A=$A C=$C\n"),
        same("user-and-workdir-take-the-rest", "FROM bb:base\nUSER a b\nWORKDIR /x y\n"),
        same("label-legacy-form", "FROM bb:base\nLABEL a b c\nENV Q \"x y\"\n"),
        same("expose-words-from-a-variable", "FROM bb:base\nENV P=\"80 443/udp\"\nEXPOSE $P 22\n"),
        same("quoting-in-history", "FROM bb:base\nCMD [\"é\\t\", \"a\\u0001\"]\nENTRYPOINT echo 'x'\n"),
        same("healthcheck-short-interval", "FROM bb:base\nHEALTHCHECK --interval=5ms --timeout=1h2m --retries=65 CMD true\n"),
        same("from-scratch", "FROM scratch\nENV A=1\nLABEL x=y\n"),
        same("copy-from-index", "FROM bb:base\nENV S=0\nFROM bb:base\nCOPY --from=0 /etc/passwd /p\n"),
        same("trigger-unknown-instruction", "FROM bb:base AS t\nONBUILD FOO x\nFROM t\n"),
        same("trigger-bad-substitution", "FROM bb:base AS t\nONBUILD ENV A=${X-y}\nFROM t\n"),
        same("required-default-message", "FROM bb:base\nENV A=${X:?}\n"),
        same("required-empty-message", "FROM bb:base\nENV E=\nENV A=${E:?}\n"),
        same("copy-from-index-past-end", "FROM bb:base\nCOPY --from=5 /etc/passwd /p\n"),
        same("healthcheck-bad-duration", "FROM bb:base\nHEALTHCHECK --interval=5 CMD true\n"),
        same("healthcheck-bad-retries", "FROM bb:base\nHEALTHCHECK --retries=x CMD true\n"),
        same("flag-without-value", "FROM bb:base\nCOPY --chown a b\n"),
        same("flag-twice", "FROM bb:base\nCOPY --chown=1 --chown=2 a b\n"),
        same("from-two-args", "FROM bb:base x\n"),
        same("blank-base", "ARG B\nFROM ${B}\n"),
        same("expose-bad-port", "FROM bb:base\nEXPOSE 99999\n"),
        same("workdir-chain", "FROM bb:base\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\nENV W=e\nWORKDIR $W\n"),
        same("empty-expose-variable", "FROM bb:base\nEXPOSE 80 $NOPE\n"),
        same("trigger-flags-refused-later", "FROM bb:base AS t\nONBUILD COPY --chmod=600 a b\nFROM t\n"),
        same("copy-url", "FROM bb:base\nCOPY http://127.0.0.1:9/x /x\n"),
        same("add-chmod", "FROM bb:base\nADD --chmod=600 a b\n"),
        same("label-keys-substituted", "FROM bb:base\nENV K=key\nLABEL $K=v ${K}2=\"$K w\"\n"),
        same("arg-before-from-only-in-from", "ARG A=meta\nFROM bb:base\nENV A=${A:-unset}\n"),
        // Refused by both, at the same step, for the same reason.
        same("unknown-instruction", "FROM bb:base\nFOO bar\n"),
        same("env-without-value", "FROM bb:base\nENV A\n"),
        same("env-missing-equals", "FROM bb:base\nENV A=1 B\n"),
        same("json-not-strings", "FROM bb:base\nCMD [\"a\", 1]\n"),
        same("instruction-before-from", "ENV A=1\nFROM bb:base\n"),
        same("only-comments", "# only comment\n"),
        same("chmod-needs-buildkit", "FROM bb:base\nCOPY --chmod=644 a b\n"),
        same("link-unknown", "FROM bb:base\nCOPY --link a b\n"),
        same("mount-needs-buildkit", "FROM bb:base\nRUN --mount=type=cache,target=/x true\n"),
        same("network-unknown", "FROM bb:base\nRUN --network=none true\n"),
        same("env-flag-unknown", "FROM bb:base\nENV --foo A=1\n"),
        same("bad-stage-name", "FROM bb:base AS 1a\n"),
        same("stage-name-reused", "FROM bb:base AS x\nFROM bb:base AS X\n"),
        Case {
            name: "target-missing",
            dockerfile: "FROM bb:base\n",
            flags: &["--target", "nope"],
            outcome: Outcome::Same,
        },
        same("bad-signal", "FROM bb:base\nSTOPSIGNAL FOO\n"),
        same("bad-proto", "FROM bb:base\nEXPOSE 80/xyz\n"),
        same("substitution-without-colon", "FROM bb:base\nENV A=${X-a}\n"),
        same("substitution-missing-brace", "FROM bb:base\nENV A=\"${X:-a\n"),
        same("substitution-required", "FROM bb:base\nENV A=${X:?a}\n"),
        same("copy-without-dest", "FROM bb:base\nCOPY a\n"),
        same("workdir-without-arg", "FROM bb:base\nWORKDIR\n"),
        same("onbuild-onbuild", "FROM bb:base\nONBUILD ONBUILD RUN x\n"),
        same("onbuild-from", "FROM bb:base\nONBUILD FROM x\n"),
        same("shell-not-json", "FROM bb:base\nSHELL sh -c\n"),
        same("healthcheck-retries-zero", "FROM bb:base\nHEALTHCHECK --retries=0 CMD x\n"),
        same("healthcheck-type", "FROM bb:base\nHEALTHCHECK FOO x\n"),
        same("healthcheck-no-command", "FROM bb:base\nHEALTHCHECK CMD\n"),
        same("volume-empty", "FROM bb:base\nVOLUME [\"\", \"a\"]\n"),
        same("escape-invalid", "#escape=x\nFROM bb:base\n"),
        same("escape-twice", "# escape=`\n# escape=\\\nFROM bb:base\n"),
        same("heredoc", "FROM bb:base\nRUN <<EOF\necho hi\nEOF\n"),
        // No case of a missing base image: dockerd would try to pull it from Docker Hub.
        // Deliberate differences: dockerd ignores these, refeng names them.
        Case {
            name: "arg-flag",
            dockerfile: "FROM bb:base\nARG --foo A=1\n",
            flags: &[],
            outcome: Outcome::Refused("dockerd ignores flags on ARG"),
        },
        Case {
            name: "other-platform",
            dockerfile: "FROM --platform=linux/arm64 bb:base\n",
            flags: &[],
            outcome: Outcome::Refused("dockerd 20.10 uses the local amd64 image for any --platform"),
        },
        Case {
            name: "stopsignal-flag",
            dockerfile: "FROM bb:base\nSTOPSIGNAL --foo TERM\n",
            flags: &[],
            outcome: Outcome::Refused("dockerd ignores flags on STOPSIGNAL"),
        },
        Case {
            name: "healthcheck-none-flag",
            dockerfile: "FROM bb:base\nHEALTHCHECK --interval=5s NONE\n",
            flags: &[],
            outcome: Outcome::Refused("dockerd ignores flags on HEALTHCHECK NONE"),
        },
    ]
}

struct Store(BTreeMap<String, BaseImage>);

impl ImageSource for Store {
    fn image(&self, reference: &str) -> Result<BaseImage, String> {
        self.0.get(reference).cloned().ok_or_else(|| {
            format!("pull access denied for {reference}, repository does not exist or may require 'docker login'")
        })
    }
}

fn options(flags: &[&str]) -> BuildOptions {
    let mut o = BuildOptions::default();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let v = *it.next().expect("flag value");
        match *f {
            "--build-arg" => {
                let (k, val) = v
                    .split_once('=')
                    .map_or((v, None), |(k, x)| (k, Some(x.to_owned())));
                o.build_args.insert(k.to_owned(), val);
            }
            "--target" => o.target = Some(v.to_owned()),
            "--label" => {
                let (k, val) = v.split_once('=').unwrap();
                o.labels.insert(k.to_owned(), val.to_owned());
            }
            other => panic!("flag {other}"),
        }
    }
    o
}

/// What dockerd did with a Dockerfile.
enum Built {
    Image {
        config: Box<ImageConfig>,
        author: String,
        history: Vec<String>,
        output: String,
    },
    /// The last `Step N/M` printed (0: none) and the error line.
    Refused { step: usize, message: String },
}

fn docker_build(dockerd: &Dockerd, ctx: &Path, dockerfile: &str, flags: &[&str]) -> Built {
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut args = vec!["build", "--rm", "--force-rm"];
    args.extend_from_slice(flags);
    let ctx_str = ctx.to_str().unwrap();
    args.push(ctx_str);
    let out = peers::run(&mut dockerd.command(&args));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let step = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Step ")?.split('/').next()?.parse().ok())
            .unwrap_or(0);
        let message = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        return Built::Refused { step, message };
    }
    let id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no image id in: {text}"))
        .trim()
        .to_owned();
    let inspect = dockerd.docker(&[
        "inspect",
        "--format",
        "{{json .Config}}\n{{json .Author}}",
        &id,
    ]);
    let (config, author) = inspect.trim().split_once('\n').unwrap();
    let history = dockerd
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{json .CreatedBy}}",
            &id,
        ])
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap())
        .collect();
    Built::Image {
        config: Box::new(serde_json::from_str(config).unwrap()),
        author: serde_json::from_str(author).unwrap(),
        history,
        output: text,
    }
}

fn normalised(mut c: ImageConfig) -> ImageConfig {
    c.other.remove("Image");
    c
}

/// Compares one case; `Err` says how it differs.
fn check(case: &Case, built: Built, store: &Store) -> Result<(), String> {
    let ours = parse(case.dockerfile.as_bytes())
        .map_err(BuildError::from)
        .and_then(|df| plan(&df, &options(case.flags), store));
    match (&case.outcome, built, ours) {
        (Outcome::Refused(_), Built::Image { .. }, Err(_)) => Ok(()),
        (Outcome::Refused(why), _, ours) => Err(format!(
            "expected a deliberate refusal ({why}), got {ours:?}"
        )),
        (
            Outcome::Same,
            Built::Image {
                config,
                author,
                history,
                output,
            },
            Ok(plan),
        ) => {
            // What `docker build` prints: every step as `Step N/M : SOURCE`, and the warning
            // about build arguments nothing declared.
            for step in plan
                .stages
                .iter()
                .flat_map(|s| &s.steps)
                .filter(|s| !s.trigger && s.line > 0)
            {
                let line = format!(
                    "Step {}/{} : {}",
                    step.number, plan.steps_total, step.source
                );
                if !output.lines().any(|l| l == line) {
                    return Err(format!("dockerd did not print {line:?}:\n{output}"));
                }
            }
            if !plan.unused_build_args.is_empty() {
                let warning = format!(
                    "[Warning] One or more build-args [{}] were not consumed",
                    plan.unused_build_args.join(" ")
                );
                if !output.contains(&warning) {
                    return Err(format!("dockerd did not warn {warning:?}:\n{output}"));
                }
            }
            let last = plan.stages.last().unwrap();
            let (want, got) = (normalised(*config), normalised(last.config.clone()));
            if want != got {
                return Err(format!(
                    "config differs:\n dockerd {}\n refeng  {}",
                    serde_json::to_string(&want).unwrap(),
                    serde_json::to_string(&got).unwrap()
                ));
            }
            if author != last.author {
                return Err(format!(
                    "author: dockerd {author:?}, refeng {:?}",
                    last.author
                ));
            }
            for (step, theirs) in last.steps.iter().rev().zip(&history) {
                let ok = match &step.cache.created_by {
                    CreatedBy::Text(t) => t == theirs,
                    CreatedBy::Copy { prefix, dest } => {
                        theirs.starts_with(prefix.as_str())
                            && theirs.ends_with(&format!(" in {dest} "))
                    }
                };
                if !ok {
                    return Err(format!(
                        "CreatedBy of {:?}: dockerd {theirs:?}, refeng {:?}",
                        step.source, step.cache.created_by
                    ));
                }
            }
            if history.len() < last.steps.len() {
                return Err(format!(
                    "dockerd has {} history entries for {} steps",
                    history.len(),
                    last.steps.len()
                ));
            }
            Ok(())
        }
        (Outcome::Same, Built::Image { .. }, Err(e)) => {
            Err(format!("dockerd built it, refeng refused: {e}"))
        }
        (Outcome::Same, Built::Refused { step, message }, Ok(_)) => Err(format!(
            "dockerd refused it at step {step} ({message}), refeng planned it"
        )),
        (Outcome::Same, Built::Refused { step, message }, Err(e)) => {
            let (our_step, reason, line) = match &e {
                BuildError::Parse(p) => (0, p.reason.to_string(), Some(p.line)),
                BuildError::Target(_) | BuildError::NoStage => (0, e.to_string(), None),
                BuildError::Step { step, reason, .. } => {
                    // dockerd checks a stage's name before it announces the FROM.
                    let printed = if matches!(reason, StepError::StageNameUsed(_)) {
                        step - 1
                    } else {
                        *step
                    };
                    (printed, reason.to_string(), None)
                }
            };
            if our_step != step {
                return Err(format!(
                    "dockerd refused at step {step} ({message}), refeng at step {our_step} ({e})"
                ));
            }
            // Our notes after dockerd's reason: where a heredoc or a trigger came from.
            let core = reason
                .split(" (line ")
                .next()
                .and_then(|r| r.split(" (ONBUILD trigger").next())
                .unwrap()
                .to_lowercase();
            if !message.to_lowercase().contains(&core) {
                return Err(format!("reasons differ: dockerd {message:?}, refeng {e}"));
            }
            if let (Some(line), Some(at)) = (line, message.find("line ")) {
                let theirs: String = message[at + 5..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if theirs != line.to_string() {
                    return Err(format!("line: dockerd {message:?}, refeng {e}"));
                }
            }
            Ok(())
        }
    }
}

fn dockerfile_corpus(dockerd: &Dockerd, work: &Path) -> Vec<String> {
    let mut store = BTreeMap::new();
    for (name, _) in BASES {
        let inspect = dockerd.docker(&["inspect", "--format", "{{.Id}} {{json .Config}}", name]);
        let (id, config) = inspect.trim().split_once(' ').unwrap();
        store.insert(
            name.to_owned(),
            BaseImage {
                id: id.to_owned(),
                config: serde_json::from_str(config).unwrap(),
            },
        );
    }
    let store = Store(store);
    let ctx = work.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let mut failures = Vec::new();
    for case in corpus() {
        let built = docker_build(dockerd, &ctx, case.dockerfile, case.flags);
        if let Err(e) = check(&case, built, &store) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    failures
}

/// Builds a context with `.dockerignore` through dockerd and lists what `COPY . /ctx` copied.
fn dockerignore_corpus(dockerd: &Dockerd, work: &Path) -> Vec<String> {
    let files = [
        "Dockerfile",
        "a.txt",
        "b.md",
        "README.md",
        "README-secret.md",
        "docs/x.md",
        "docs/keep/y.md",
        "src/main.go",
        "src/pkg/util.go",
        "src/pkg/util_test.go",
        "tmp/cache/1",
        "tmp/keep",
        "deep/a/b/c/temp",
        "temp1",
        "temporary",
        "x/temp",
        "x/y/temp.txt",
        "odd+name",
        "oddd+name",
    ];
    let mut ignores: Vec<String> = [
        "# docs example\n*/temp*\n*/*/temp*\ntemp?\n",
        "*.md\n!README*.md\nREADME-secret.md\n",
        "**/*.go\n!src/pkg/*_test.go\n",
        "tmp\n!tmp/keep\n/docs/../src\n",
        "docs\n!**/y.md\n",
        "*\n!src\n!*.txt\n",
        "Dockerfile\n.dockerignore\nodd+name\n",
        " ./a.txt \n\n#!a.txt\n**\n!x/\n",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    ignores.extend(random_ignores(24));
    let mut failures = Vec::new();
    for (n, ignore) in ignores.iter().enumerate() {
        let ctx = work.join(format!("ignore{n}"));
        for f in files {
            let p = ctx.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, f).unwrap();
        }
        fs::create_dir_all(ctx.join("emptydir")).unwrap();
        fs::write(ctx.join("Dockerfile"), "FROM bb:base\nCOPY . /ctx\n").unwrap();
        fs::write(ctx.join(".dockerignore"), ignore).unwrap();
        let tag = format!("ignore{n}");
        dockerd.docker(&["build", "-q", "-t", &tag, ctx.to_str().unwrap()]);
        let listed = dockerd.docker(&["run", "--rm", "--network", "none", &tag, "find", "/ctx"]);
        let theirs: BTreeSet<String> = listed
            .lines()
            .filter_map(|l| l.strip_prefix("/ctx/"))
            .map(str::to_owned)
            .collect();
        let mut entries = Vec::new();
        collect(&ctx, "", &mut entries);
        let matcher = Dockerignore::parse(ignore.as_bytes()).unwrap();
        let mut ours = BTreeSet::new();
        for p in matcher.context_paths(&entries, "Dockerfile") {
            // Extraction makes the parents of what was sent.
            let mut at = p.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                ours.insert(parent.to_owned());
                at = parent;
            }
            ours.insert(p);
        }
        if theirs != ours {
            failures.push(format!(
                ".dockerignore {ignore:?}:\n only dockerd: {:?}\n only refeng: {:?}",
                theirs.difference(&ours).collect::<Vec<_>>(),
                ours.difference(&theirs).collect::<Vec<_>>()
            ));
        }
        dockerd.docker(&["rmi", &tag]);
    }
    failures
}

/// `.dockerignore` files drawn from pieces that hit the context's names, by a fixed-seed
/// generator (the same files every run, so a failure is reproducible).
fn random_ignores(count: usize) -> Vec<String> {
    const SEGMENTS: [&str; 16] = [
        "*", "**", "?", "a*", "src", "docs", "tmp", "keep", "*.md", "*.go", "temp?", "x", "y.md",
        "[a-c]*", "pkg", "..",
    ];
    let mut state: u64 = 0x5eed_1234_abcd_0001;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap() % n
    };
    (0..count)
        .map(|_| {
            let mut text = String::new();
            for _ in 0..1 + next(4) {
                if next(10) < 3 {
                    text.push('!');
                }
                if next(10) == 0 {
                    text.push('/');
                }
                let parts: Vec<&str> = (0..1 + next(3))
                    .map(|_| SEGMENTS[next(SEGMENTS.len())])
                    .collect();
                text.push_str(&parts.join("/"));
                text.push('\n');
            }
            text
        })
        .collect()
}

fn collect(root: &Path, rel: &str, out: &mut Vec<(String, bool)>) {
    for e in fs::read_dir(root.join(rel)).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let dir = e.file_type().unwrap().is_dir();
        out.push((path.clone(), dir));
        if dir {
            collect(root, &path, out);
        }
    }
}

#[test]
fn classic_builder_agrees_with_the_fold_and_the_matcher() {
    let dockerd = Dockerd::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    rootfs::busybox(&root);
    let tar = work.path().join("busybox.tar");
    rootfs::tar(&root, &tar);
    for (name, changes) in BASES {
        let mut args = vec!["import"];
        for c in changes {
            args.push("--change");
            args.push(c);
        }
        args.push(tar.to_str().unwrap());
        args.push(name);
        dockerd.docker(&args);
    }
    let mut failures = dockerfile_corpus(&dockerd, work.path());
    failures.extend(dockerignore_corpus(&dockerd, work.path()));
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
