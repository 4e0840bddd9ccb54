//! `.dockerignore`: which files of a build context reach the builder, with docker's rules (the
//! docker 20.10 CLI's `dockerignore.ReadAll`, `fileutils.PatternMatcher` and the walk of
//! `archive.TarWithOptions`, then dockerd's removal of `.dockerignore` and the Dockerfile when
//! they are ignored). Pure: it answers for paths it is given.
//!
//! The rules, as docker has them: one pattern a line; `#` at the very start of a line makes a
//! comment; white space around a pattern is dropped; a pattern is cleaned like a path (`..` and
//! `.` resolved, a leading `/` dropped); `!` makes an exception; the last pattern that matches
//! decides. A pattern matches a path or any of its parent directories; `*` and `?` do not cross
//! `/`, `**` does (any number of directories, none included); `\` escapes. Patterns become Go
//! regular expressions the way docker builds them, so regexp syntax that docker passes through
//! (`+`, `|`, `(`) means here what it means there. An ignored directory is not walked unless an
//! exception pattern lies below it.

use regex::Regex;

/// Why a `.dockerignore` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerignoreError {
    /// A line that is only `!`.
    #[error(".dockerignore line {line}: illegal exclusion pattern: \"!\"")]
    BareExclusion {
        /// The line (1-based).
        line: usize,
    },
    /// A pattern Go's `filepath.Match` refuses (an unclosed `[`, a trailing `\`).
    #[error(".dockerignore line {line}: syntax error in pattern {pattern:?}")]
    BadPattern {
        /// The line.
        line: usize,
        /// The pattern after cleaning.
        pattern: String,
    },
    /// A pattern whose regular expression does not compile.
    #[error(".dockerignore line {line}: pattern {pattern:?}: {message}")]
    Regex {
        /// The line.
        line: usize,
        /// The pattern.
        pattern: String,
        /// The regex crate's complaint.
        message: String,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    dirs: usize,
    re: Regex,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` (Unix).
#[must_use]
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match out.last() {
                Some(&l) if l != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Whether Go's `filepath.Match` would refuse `pattern` as malformed.
fn bad_pattern(pattern: &str) -> bool {
    let c: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    // One character of a class: `\x` or anything but `-` and `]`.
    let esc = |i: &mut usize| -> bool {
        match c.get(*i) {
            None | Some('-' | ']') => false,
            Some('\\') => {
                *i += 2;
                *i <= c.len()
            }
            Some(_) => {
                *i += 1;
                true
            }
        }
    };
    while i < c.len() {
        match c[i] {
            '\\' => {
                if i + 1 >= c.len() {
                    return true;
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if c.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    if c.get(i) == Some(&']') && ranges > 0 {
                        i += 1;
                        break;
                    }
                    if !esc(&mut i) {
                        return true;
                    }
                    if c.get(i) == Some(&'-') {
                        i += 1;
                        if !esc(&mut i) {
                            return true;
                        }
                    }
                    ranges += 1;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// docker's pattern-to-regexp translation (`Pattern.compile`).
fn regex_of(pattern: &str) -> String {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '.' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.next() {
                Some(n) => {
                    re.push('\\');
                    re.push(n);
                }
                None => re.push_str("\\\\"),
            },
            _ => re.push(ch),
        }
    }
    re.push('$');
    re
}

impl Dockerignore {
    /// Reads a `.dockerignore` (`dockerignore.ReadAll`, then the pattern matcher).
    ///
    /// # Errors
    /// A bare `!` or a malformed pattern, with its line.
    pub fn parse(text: &[u8]) -> Result<Self, DockerignoreError> {
        let text = String::from_utf8_lossy(text);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut p = p.to_owned();
            if !p.is_empty() {
                p = clean(&p);
                if p.len() > 1 && p.starts_with('/') {
                    p.remove(0);
                }
            }
            if invert {
                p.insert(0, '!');
            }
            lines.push((n + 1, p));
        }
        Self::from_patterns(&lines)
    }

    /// A matcher of patterns as `ReadAll` returns them (`!` for exceptions), each with its line.
    ///
    /// # Errors
    /// As [`Dockerignore::parse`].
    pub fn from_patterns(patterns: &[(usize, String)]) -> Result<Self, DockerignoreError> {
        let mut out = Vec::new();
        for (line, p) in patterns {
            let line = *line;
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let p = clean(p);
            let (exclusion, p) = match p.strip_prefix('!') {
                Some("") => return Err(DockerignoreError::BareExclusion { line }),
                Some(rest) => (true, rest.to_owned()),
                None => (false, p),
            };
            if bad_pattern(&p) {
                return Err(DockerignoreError::BadPattern { line, pattern: p });
            }
            let re = Regex::new(&regex_of(&p)).map_err(|e| DockerignoreError::Regex {
                line,
                pattern: p.clone(),
                message: e.to_string(),
            })?;
            out.push(Pattern {
                dirs: p.split('/').count(),
                cleaned: p,
                exclusion,
                re,
            });
        }
        Ok(Self { patterns: out })
    }

    /// Whether `path` (relative to the context, `/`-separated) is ignored (`PatternMatcher.Matches`).
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        let parent = match path.rfind('/') {
            Some(at) => clean(&path[..at]),
            None => ".".to_owned(),
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            let mut hit = p.re.is_match(path);
            if !hit && parent != "." && p.dirs <= parent_dirs.len() {
                hit = p.re.is_match(&parent_dirs[..p.dirs].join("/"));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether `path` is ignored as the docker CLI's context walk decides it
    /// (`PatternMatcher.MatchesUsingParentResults`), given what its directory's check found
    /// (`None` at the top, or when the directory was not checked: then each pattern is also
    /// tried on every parent directory). Also what this check found, for the entries below.
    ///
    /// It differs from [`Dockerignore::matches`] where Go's loop skips a pattern: an exception
    /// is not tried while nothing matched yet, so a directory never records it, and below the
    /// directory it is tried on the path alone. With `**/c.txt` and `!keep.log`, the CLI leaves
    /// out `keep.log/c.txt`, which `matches` keeps.
    #[must_use]
    pub fn matches_using_parent(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut matched = false;
        let mut found = vec![false; self.patterns.len()];
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|m| m.get(i).copied().unwrap_or(false));
            if !hit {
                if p.exclusion != matched {
                    continue;
                }
                hit = p.re.is_match(path);
                if !hit && parent.is_none() {
                    if let Some(at) = path.rfind('/') {
                        let dirs: Vec<&str> = path[..at].split('/').collect();
                        hit = (1..=dirs.len()).any(|k| p.re.is_match(&dirs[..k].join("/")));
                    }
                }
            }
            found[i] = hit;
            if hit {
                matched = !p.exclusion;
            }
        }
        (matched, found)
    }

    /// Whether any pattern is an exception (`!`): without one, an ignored directory can be
    /// skipped whole.
    #[must_use]
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// The paths of a context that reach the builder. `entries` are every path below the context
    /// directory (relative, `/`-separated, with whether it is a directory), in any order; the
    /// answer is in walk order (sorted). It follows the CLI's walk (an ignored directory is not
    /// sent, and its contents only when an exception pattern starts with it), the CLI's keeping
    /// of `.dockerignore` and the Dockerfile, and dockerd's removal of both when they are ignored.
    #[must_use]
    pub fn context_paths(&self, entries: &[(String, bool)], dockerfile: &str) -> Vec<String> {
        let mut out = self.sent_paths(entries, Some(dockerfile));
        out.retain(|p| !((p == ".dockerignore" || p == dockerfile) && self.matches(p)));
        out
    }

    /// The paths the docker CLI puts in the context tar it sends (`TarWithOptions` after
    /// `TrimBuildFilesFromExcludes`): the walk of [`Dockerignore::context_paths`], keeping
    /// `.dockerignore` and the Dockerfile even when ignored (`dockerfile` is `None` when the
    /// Dockerfile comes from elsewhere, stdin or outside the context, and gets no exception).
    #[must_use]
    pub fn sent_paths(&self, entries: &[(String, bool)], dockerfile: Option<&str>) -> Vec<String> {
        let mut walk = self.clone();
        for keep in std::iter::once(".dockerignore").chain(dockerfile) {
            if self.matches(keep) {
                if let Ok(extra) = Self::from_patterns(&[(0, format!("!{keep}"))]) {
                    walk.patterns.extend(extra.patterns);
                }
            }
        }
        let mut sorted: Vec<&(String, bool)> = entries.iter().collect();
        // filepath.Walk visits a directory's entries in lexical order, depth first.
        sorted.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        let mut out = Vec::new();
        let mut skipped: Option<String> = None;
        // What each walked directory's check found, for its entries.
        let mut found_in: std::collections::HashMap<&str, Vec<bool>> =
            std::collections::HashMap::new();
        for (path, is_dir) in sorted {
            if let Some(dir) = &skipped {
                if path.starts_with(&format!("{dir}/")) {
                    continue;
                }
                skipped = None;
            }
            let parent = path
                .rfind('/')
                .and_then(|at| found_in.get(&path[..at]))
                .map(Vec::as_slice);
            let (ignored, found) = walk.matches_using_parent(path, parent);
            if *is_dir {
                found_in.insert(path.as_str(), found);
            }
            if ignored {
                if !is_dir {
                    continue;
                }
                let dir_slash = format!("{path}/");
                let descend = walk.has_exclusions()
                    && walk
                        .patterns
                        .iter()
                        .any(|p| p.exclusion && format!("{}/", p.cleaned).starts_with(&dir_slash));
                if !descend {
                    skipped = Some(path.clone());
                }
                continue;
            }
            out.push(path.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Dockerignore {
        Dockerignore::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn documented_examples() {
        // docs.docker.com, "Dockerignore file": the example file and what it excludes.
        let d = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(d.matches("somedir/temporary.txt"));
        assert!(d.matches("somedir/temp"));
        assert!(d.matches("somedir/subdir/temporary.txt"));
        assert!(d.matches("tempa"));
        assert!(d.matches("tempb"));
        assert!(!d.matches("temp"));
        assert!(!d.matches("temporary.txt"));
        assert!(!d.matches("a/b/c/temp"));
        // `**` matches any number of directories, zero included.
        let d = ignore("**/*.go\n");
        assert!(d.matches("main.go"));
        assert!(d.matches("a/b/main.go"));
        assert!(!d.matches("a/b/main.rs"));
        // Exceptions: the last match decides.
        let d = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(d.matches("CHANGES.md"));
        assert!(!d.matches("README.md"));
        assert!(d.matches("README-secret.md"));
        let d = ignore("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!d.matches("README-secret.md"));
    }

    #[test]
    fn paths_are_cleaned_and_parents_match() {
        let d = ignore("/a/b/../c\n./x\n  spaced  \n");
        assert!(d.matches("a/c"));
        assert!(d.matches("a/c/deep/file"));
        assert!(d.matches("x"));
        assert!(d.matches("spaced"));
        assert!(!d.matches("a/b"));
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn go_regexp_quirks_and_errors() {
        // docker passes regexp syntax it does not escape through to Go's regexp.
        assert!(ignore("a+b\n").matches("aab"));
        assert!(ignore("[a-c]x\n").matches("bx"));
        assert!(ignore("\\*\n").matches("*"));
        assert!(!ignore("\\*\n").matches("x"));
        assert!(matches!(
            Dockerignore::parse(b"ok\n!\n"),
            Err(DockerignoreError::BareExclusion { line: 2 })
        ));
        assert!(matches!(
            Dockerignore::parse(b"[a\n"),
            Err(DockerignoreError::BadPattern { line: 1, .. })
        ));
        assert!(matches!(
            Dockerignore::parse(b"#[a\n x\\\n"),
            Err(DockerignoreError::BadPattern { line: 2, .. })
        ));
    }

    #[test]
    fn the_walk_skips_ignored_directories_unless_an_exception_is_below() {
        let entries: Vec<(String, bool)> = [
            ("Dockerfile", false),
            (".dockerignore", false),
            ("a", true),
            ("a/keep", false),
            ("a/drop", false),
            ("b", true),
            ("b/x", false),
            ("c.txt", false),
        ]
        .iter()
        .map(|(p, d)| ((*p).to_owned(), *d))
        .collect();
        let d = ignore("a\n!a/keep\nb\n.dockerignore\n");
        assert_eq!(
            d.context_paths(&entries, "Dockerfile"),
            ["Dockerfile", "a/keep", "c.txt"]
        );
        // `!**/x` does not start with `b/`: the CLI never walks into b.
        let d = ignore("b\n!**/x\nDockerfile\n");
        assert_eq!(
            d.context_paths(&entries, "Dockerfile"),
            [".dockerignore", "a", "a/drop", "a/keep", "c.txt"]
        );
    }

    #[test]
    fn the_walk_uses_the_directorys_results_as_the_cli_does() {
        let entries: Vec<(String, bool)> = [("keep.log", true), ("keep.log/c.txt", false)]
            .iter()
            .map(|(p, d)| ((*p).to_owned(), *d))
            .collect();
        let d = ignore("**/c.txt\n!keep.log\n");
        assert!(!d.matches("keep.log/c.txt"));
        assert_eq!(d.context_paths(&entries, "Dockerfile"), ["keep.log"]);
        // In the other order the exception is tried on the directory, and holds below it.
        let d = ignore("!keep.log\n**/c.txt\n");
        assert_eq!(d.context_paths(&entries, "Dockerfile"), ["keep.log"]);
        let d = ignore("*.log\n!keep.log\n");
        assert_eq!(
            d.context_paths(&entries, "Dockerfile"),
            ["keep.log", "keep.log/c.txt"]
        );
    }

    proptest::proptest! {
        #[test]
        fn the_walk_sends_nothing_ignored_and_everything_else_when_there_are_no_exceptions(
            patterns in proptest::collection::vec("!?/?(\\*\\*|\\*|\\?|a|b|c\\*|\\.\\.)(/(\\*|a|b|c))?", 0..4),
        ) {
            let tree = ["a", "a/a", "a/b", "a/b/c", "b", "b/c1", "c2", "Dockerfile", ".dockerignore"];
            let entries: Vec<(String, bool)> = tree
                .iter()
                .map(|p| ((*p).to_owned(), matches!(*p, "a" | "a/b" | "b")))
                .collect();
            let text = patterns.join("\n");
            let Ok(d) = Dockerignore::parse(text.as_bytes()) else {
                return Ok(());
            };
            let sent = d.context_paths(&entries, "Dockerfile");
            // With exceptions the CLI's walk may send what `matches` ignores (`**` then
            // `!**/a` sends `a/b`); engine_build compares those with the docker CLI itself.
            if !d.has_exclusions() {
                for p in &sent {
                    proptest::prop_assert!(!d.matches(p), "{} sent but ignored by {:?}", p, text);
                }
                for (p, _) in &entries {
                    let ancestors_kept = p
                        .match_indices('/')
                        .all(|(at, _)| !d.matches(&p[..at]));
                    let expected = ancestors_kept && !d.matches(p);
                    proptest::prop_assert_eq!(sent.contains(p), expected, "{} with {:?}", p, text);
                }
            }
        }
    }
}
