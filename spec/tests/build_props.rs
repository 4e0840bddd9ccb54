//! Properties of the Dockerfile parser and the build fold: a generated Dockerfile printed and
//! parsed again is the same Dockerfile; the fold never panics on anything the parser accepts,
//! and every step it plans carries the config and cache key an executor needs.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use refeng_spec::build::dockerfile::{
    ArgDecl, CommandLine, CopyArgs, Dockerfile, From, Healthcheck, Instruction, KeyValues, Located,
    Onbuild, Run,
};
use refeng_spec::build::fold::{BaseImage, ImageConfig, ImageSource, Work};
use refeng_spec::build::{parse, plan, BuildOptions};

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,6}"
}

fn value() -> impl Strategy<Value = String> {
    "[a-z0-9_/.:=$-]{0,8}"
}

/// A run of text a line parser keeps whole: no leading `--` or `[`, no escape at its end.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/][a-zA-Z0-9/:. _$'\"-]{0,12}[a-zA-Z0-9/.]"
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9_/.*]{1,8}", "[a-z/][a-z0-9 /]{0,5}[a-z]"]
}

fn command() -> impl Strategy<Value = CommandLine> {
    prop_oneof![
        vec("\\PC{0,6}", 0..4).prop_map(CommandLine::Exec),
        text().prop_map(CommandLine::Shell),
        Just(CommandLine::Absent),
    ]
}

fn key_values() -> impl Strategy<Value = KeyValues> {
    prop_oneof![
        vec((name(), value()), 1..4).prop_map(|pairs| KeyValues {
            pairs,
            legacy: false
        }),
        (name(), "[a-z0-9][a-z0-9 ]{0,6}[a-z0-9]").prop_map(|(k, v)| KeyValues {
            pairs: vec![(k, v)],
            legacy: true,
        }),
    ]
}

fn copy_args(with_from: bool) -> impl Strategy<Value = CopyArgs> {
    (
        vec(path(), 1..3),
        path(),
        option::of("[a-z0-9:]{1,6}"),
        option::of("[0-7]{3,4}"),
        option::of("[a-z0-9]{1,5}"),
    )
        .prop_map(move |(sources, dest, chown, chmod, from)| CopyArgs {
            sources,
            dest,
            chown,
            chmod,
            from: from.filter(|_| with_from),
        })
}

fn duration() -> impl Strategy<Value = Option<i64>> {
    option::of(1_000_000i64..36_000_000_000_000)
}

/// Any instruction but `FROM` and `ONBUILD`.
fn body() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        (command(), vec("[a-z=,/]{1,10}", 0..2))
            .prop_map(|(command, mounts)| Instruction::Run(Run { command, mounts })),
        command().prop_map(Instruction::Cmd),
        command().prop_map(Instruction::Entrypoint),
        vec("\\PC{0,6}", 1..3).prop_map(Instruction::Shell),
        key_values().prop_map(Instruction::Env),
        key_values().prop_map(Instruction::Label),
        vec((name(), option::of(value())), 1..3).prop_map(|d| Instruction::Arg(
            d.into_iter()
                .map(|(name, default)| ArgDecl { name, default })
                .collect()
        )),
        text().prop_map(Instruction::Workdir),
        text().prop_map(Instruction::User),
        vec("[0-9]{1,5}(/tcp|/udp)?", 1..4).prop_map(|mut p| {
            p.sort();
            Instruction::Expose(p)
        }),
        vec("[a-z/][a-z0-9/ ]{0,5}[a-z0-9/]", 1..3).prop_map(Instruction::Volume),
        "[A-Z0-9]{1,8}".prop_map(Instruction::StopSignal),
        prop_oneof![
            Just(Healthcheck::None),
            (
                prop_oneof![
                    vec("\\PC{0,6}", 1..3).prop_map(CommandLine::Exec),
                    text().prop_map(CommandLine::Shell)
                ],
                duration(),
                duration(),
                duration(),
                option::of(1i64..100),
            )
                .prop_map(|(command, interval, timeout, start_period, retries)| {
                    Healthcheck::Check {
                        command,
                        interval,
                        timeout,
                        start_period,
                        retries,
                    }
                }),
        ]
        .prop_map(Instruction::Healthcheck),
        text().prop_map(Instruction::Maintainer),
        copy_args(true).prop_map(Instruction::Copy),
        copy_args(false).prop_map(Instruction::Add),
    ]
}

fn instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        6 => body(),
        1 => body().prop_filter("MAINTAINER is no trigger", |i| !matches!(i, Instruction::Maintainer(_))).prop_map(|i| Instruction::Onbuild(Onbuild {
            keyword: i.keyword().to_owned(),
            expression: i.to_string(),
        })),
        1 => from(),
    ]
}

fn from() -> impl Strategy<Value = Instruction> {
    (
        prop_oneof![
            Just("base".to_owned()),
            Just("scratch".to_owned()),
            "[a-z][a-z0-9:/._-]{0,10}"
        ],
        option::of("[a-z][a-z0-9_.-]{0,5}"),
        option::of(prop_oneof![
            Just("linux/amd64".to_owned()),
            "[a-z]{1,5}/[a-z0-9]{1,5}"
        ]),
    )
        .prop_map(|(image, stage_name, platform)| {
            Instruction::From(From {
                image,
                stage_name,
                platform,
            })
        })
}

fn dockerfile() -> impl Strategy<Value = Dockerfile> {
    (
        prop_oneof![Just('\\'), Just('`')],
        vec(
            vec((name(), option::of(value())), 1..2).prop_map(|d| {
                Instruction::Arg(
                    d.into_iter()
                        .map(|(name, default)| ArgDecl { name, default })
                        .collect(),
                )
            }),
            0..2,
        ),
        from(),
        vec(instruction(), 0..12),
    )
        .prop_map(|(escape, args, first, rest)| Dockerfile {
            escape,
            syntax: None,
            instructions: args
                .into_iter()
                .chain(std::iter::once(first))
                .chain(rest)
                .map(|instruction| Located {
                    line: 0,
                    end_line: 0,
                    source: String::new(),
                    instruction,
                })
                .collect(),
            warnings: vec![],
        })
}

fn instructions(d: &Dockerfile) -> Vec<&Instruction> {
    d.instructions.iter().map(|l| &l.instruction).collect()
}

struct OneImage;

impl ImageSource for OneImage {
    fn image(&self, reference: &str) -> Result<BaseImage, String> {
        if reference != "base" {
            return Err(format!("no image {reference}"));
        }
        Ok(BaseImage {
            id: "sha256:base".into(),
            config: ImageConfig {
                env: Some(vec!["PATH=/bin".into(), "X=1".into()]),
                on_build: Some(vec!["ENV T=1".into(), "LABEL t=$T".into()]),
                ..ImageConfig::default()
            },
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_dockerfiles_parse_back_to_themselves(d in dockerfile()) {
        let text = d.to_text();
        let parsed = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(instructions(&parsed), instructions(&d), "{}", text);
        prop_assert_eq!(parsed.escape, d.escape);
    }

    #[test]
    fn the_fold_never_panics_and_plans_every_step(d in dockerfile(), args in vec((name(), option::of(value())), 0..3)) {
        let options = BuildOptions { build_args: args.into_iter().collect::<BTreeMap<_, _>>(), ..BuildOptions::default() };
        if let Ok(p) = plan(&d, &options, &OneImage) {
            for stage in &p.stages {
                for (i, step) in stage.steps.iter().enumerate() {
                    if !step.trigger {
                        prop_assert_eq!(step.cache.parent, i.checked_sub(1));
                    }
                    let created_by = step.cache.created_by.text("file:x");
                    // Empty only for `RUN [""]`, which dockerd records as "" too (its run fails).
                    prop_assert!(
                        !created_by.is_empty()
                            || matches!(&step.work, Work::Run(r) if r.argv.iter().all(String::is_empty)),
                        "{:?}", step.work
                    );
                    if let Work::Run(run) = &step.work {
                        prop_assert!(!run.argv.is_empty());
                    }
                }
                prop_assert!(stage.config.env.as_ref().is_some_and(|e| e.iter().any(|v| v.starts_with("PATH="))));
            }
        }
    }

    #[test]
    fn any_bytes_parse_or_are_refused_with_a_line(bytes in vec(any::<u8>(), 0..300)) {
        match parse(&bytes) {
            Ok(d) => {
                let _ = plan(&d, &BuildOptions::default(), &OneImage);
            }
            Err(e) => prop_assert!(e.line >= 1 && e.line <= bytes.split(|b| *b == b'\n').count(), "{e}"),
        }
    }

    #[test]
    fn any_text_parses_or_is_refused_with_a_line(text in "(FROM base\n)?([A-Za-z]{0,8}[ \t]{0,2}[ -~]{0,20}(\\\\|`)?\r?\n){0,8}") {
        match parse(text.as_bytes()) {
            Ok(d) => {
                let _ = plan(&d, &BuildOptions::default(), &OneImage);
            }
            Err(e) => prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}"),
        }
    }
}
