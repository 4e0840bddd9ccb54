//! Image builds: what of the builder belongs to the engine rather than to the pure model in
//! `refeng_spec::build` (the Dockerfile parser and the build fold): `.dockerignore` matching,
//! which reproduces Go's regexp engine on the patterns and so needs the regex crate.

pub mod cache;
pub mod dockerignore;
pub mod exec;

use refeng_spec::build::fold::{BaseImage, ImageConfig, ImageSource};
use refeng_spec::build::{parse, plan, BuildOptions};

/// A store of one image, `base`, with `ONBUILD` triggers, for [`check_dockerfile`].
struct FuzzStore;

impl ImageSource for FuzzStore {
    fn image(&self, reference: &str) -> Result<BaseImage, String> {
        (reference == "base")
            .then(|| BaseImage {
                id: "sha256:base".into(),
                config: ImageConfig {
                    on_build: Some(vec!["ENV T=1".into(), "LABEL t=$T".into()]),
                    ..ImageConfig::default()
                },
            })
            .ok_or_else(|| format!("no image {reference}"))
    }
}

/// The fuzz target `dockerfile_parse`: parses `data` as a Dockerfile and plans the build of
/// what parses. `true`: parsed (whether the build plans or stops at a step).
///
/// # Panics
/// When an error names a line outside the text, an instruction claims a line outside it, or a
/// planned stage lost its `PATH`: the fuzz target's findings.
#[must_use]
pub fn check_dockerfile(data: &[u8]) -> bool {
    let lines = data.split(|b| *b == b'\n').count().max(1);
    match parse(data) {
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= lines,
                "{e}: line out of 1..={lines}"
            );
            false
        }
        Ok(d) => {
            for i in &d.instructions {
                assert!(
                    i.line >= 1 && i.line <= i.end_line && i.end_line <= lines,
                    "{i:?}"
                );
            }
            if let Ok(p) = plan(&d, &BuildOptions::default(), &FuzzStore) {
                for s in &p.stages {
                    let env = s.config.env.as_deref().unwrap_or(&[]);
                    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
                }
            }
            true
        }
    }
}

/// The fuzz target `build_context`: `data` as the context tar of `POST /build` (plain or
/// compressed). `true`: read.
///
/// # Panics
/// When a path of what was read is not a clean relative path inside the context: the fuzz
/// target's findings.
#[must_use]
pub fn check_build_context(data: &[u8]) -> bool {
    match exec::check_context(data) {
        Ok(paths) => {
            for p in paths {
                assert!(
                    !p.is_empty()
                        && !p.starts_with('/')
                        && p != ".."
                        && !p.starts_with("../")
                        && dockerignore::clean(&p) == p,
                    "{p:?} is not a clean path inside the context"
                );
            }
            true
        }
        Err(_) => false,
    }
}

/// The fuzz target `dockerignore`: the first line is a path, the rest a `.dockerignore`.
/// `true`: the patterns parsed.
///
/// # Panics
/// When the walk sends a path that the CLI's walk ignores (decided directory by directory, as
/// `MatchesUsingParentResults`; without exceptions, one that `matches` ignores): the fuzz
/// target's findings.
#[must_use]
pub fn check_dockerignore(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let (path, patterns) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(d) = dockerignore::Dockerignore::parse(patterns.as_bytes()) else {
        return false;
    };
    let path = dockerignore::clean(path.trim_start_matches('/'));
    let _ = d.matches(&path);
    let mut entries = Vec::new();
    let mut at = path.as_str();
    entries.push((at.to_owned(), false));
    while let Some((parent, _)) = at.rsplit_once('/') {
        entries.push((parent.to_owned(), true));
        at = parent;
    }
    for sent in d.context_paths(&entries, "Dockerfile") {
        // The CLI's walk decides each path with what its directory's check found.
        let mut found: Option<Vec<bool>> = None;
        let mut ignored = false;
        let mut at = String::new();
        for part in sent.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            let (i, f) = d.matches_using_parent(&at, found.as_deref());
            (ignored, found) = (i, Some(f));
        }
        assert!(!ignored, "{sent} is ignored but sent");
        if !d.has_exclusions() {
            assert!(!d.matches(&sent), "{sent} is ignored but sent");
        }
    }
    true
}
