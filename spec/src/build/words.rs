//! Variable substitution and quote removal in Dockerfile words, as dockerd's classic builder does
//! them (buildkit `frontend/dockerfile/shell/lex.go` as vendored by dockerd 20.10): `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR:+word}`, `${VAR:?message}`, single and double quotes, and the
//! escape token (`\` or the backtick of `# escape=`). Nothing else of the shell: no `${VAR-word}`
//! (refused as dockerd refuses it), no command substitution, no globbing.

/// Why a word could not be expanded; the message is dockerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    /// `${` without its `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${VAR:Xword}` with X other than `-`, `+` or `?`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(char),
    /// `${VAR-word}` and the other forms without a colon.
    #[error("missing ':' in substitution")]
    MissingColon,
    /// An unterminated single-quoted string.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// An unterminated double-quoted string.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// The end of the word inside `${VAR:-...`.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    /// `${VAR:?message}` with VAR empty or unset.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The word after `?` (dockerd's default when empty).
        message: String,
    },
}

/// A word that failed, as dockerd reports it: `failed to process "WORD": REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What went wrong.
    #[source]
    pub reason: WordError,
}

/// Expands `word` with `env` (`KEY=value` strings; the first match wins, as in dockerd, so a
/// variable set by `ENV` shadows a build argument listed after it).
///
/// # Errors
/// A malformed substitution or an unterminated quote.
pub fn expand(word: &str, env: &[String], escape: char) -> Result<String, ExpandError> {
    run(word, env, escape).map(|(w, _)| w)
}

/// Expands `word` and splits the result into words on unquoted white space (only `EXPOSE` does
/// this: `EXPOSE $PORTS` with `PORTS="80 443"` exposes two ports).
///
/// # Errors
/// As [`expand`].
pub fn expand_words(word: &str, env: &[String], escape: char) -> Result<Vec<String>, ExpandError> {
    run(word, env, escape).map(|(_, ws)| ws)
}

fn run(word: &str, env: &[String], escape: char) -> Result<(String, Vec<String>), ExpandError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
        escape,
    };
    lexer.until(None).map_err(|reason| ExpandError {
        word: word.to_owned(),
        reason,
    })
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [String],
    escape: char,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (consumed) or the end of the word.
    fn until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), WordError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '\'' => {
                    let s = self.single_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.pos += 1;
                    let mut c = c;
                    if c == self.escape {
                        match self.next() {
                            // An escape token at the end of the word is dropped.
                            None => break,
                            Some(escaped) => c = escaped,
                        }
                        words.add_raw_char(c);
                    } else {
                        words.add_char(c);
                    }
                    result.push(c);
                }
            }
        }
        match stop {
            Some(s) => Err(WordError::Unterminated(s)),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Result<String, WordError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err(WordError::UnterminatedSingleQuote),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, WordError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(WordError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    let mut c = c;
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    s.push(c);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, WordError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(if name.is_empty() {
                "$".to_owned()
            } else {
                self.lookup(&name).unwrap_or_default().to_owned()
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(WordError::MissingBrace),
            Some('{' | '}' | ':') => return Err(WordError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            Some('}') => Ok(self.lookup(&name).unwrap_or_default().to_owned()),
            Some(':') => {
                let modifier = self.next();
                let word = match self.until(Some('}')) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(WordError::MissingBrace),
                    Err(e) => return Err(e),
                };
                let found = self.lookup(&name);
                let value = found.unwrap_or_default();
                match modifier {
                    Some('+') => Ok(if value.is_empty() {
                        String::new()
                    } else {
                        word
                    }),
                    Some('-') => Ok(if value.is_empty() {
                        word
                    } else {
                        value.to_owned()
                    }),
                    Some('?') => {
                        if value.is_empty() {
                            let message = if !word.is_empty() {
                                word
                            } else if found.is_none() {
                                "is not allowed to be unset".to_owned()
                            } else {
                                "is not allowed to be empty".to_owned()
                            };
                            Err(WordError::Required { name, message })
                        } else {
                            Ok(value.to_owned())
                        }
                    }
                    Some(m) => Err(WordError::UnsupportedModifier(m)),
                    None => Err(WordError::MissingBrace),
                }
            }
            _ => Err(WordError::MissingColon),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if kv == name => Some(""),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        ["A=1", "B=x y", "EMPTY="]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn substitutes_like_dockerd() {
        let e = env();
        let x = |w: &str| expand(w, &e, '\\').unwrap();
        assert_eq!(x("$A"), "1");
        assert_eq!(x("${A}b"), "1b");
        assert_eq!(x("${X:-def}b"), "defb");
        assert_eq!(x("${EMPTY:-def}"), "def");
        assert_eq!(x("${A:-def}"), "1");
        assert_eq!(x("${A:+set}"), "set");
        assert_eq!(x("${X:+set}"), "");
        assert_eq!(x("$$"), "");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A and '$B'\""), "1 and 'x y'");
        assert_eq!(x("\"a\\\"b\\c\""), "a\"b\\c");
        assert_eq!(x("a\\"), "a");
        assert_eq!(x("$"), "$");
        assert_eq!(x("$1x"), "x");
        assert_eq!(x("${X:-${A}2}"), "12");
        assert_eq!(expand("`$A", &e, '`').unwrap(), "$A");
    }

    #[test]
    fn refuses_what_dockerd_refuses() {
        let e = env();
        let err = |w: &str| expand(w, &e, '\\').unwrap_err().reason;
        assert_eq!(err("${X-a}"), WordError::MissingColon);
        assert_eq!(err("\"${X:-a"), WordError::MissingBrace);
        assert_eq!(err("${}"), WordError::BadSubstitution);
        assert_eq!(err("${A:%x}"), WordError::UnsupportedModifier('%'));
        assert_eq!(err("'abc"), WordError::UnterminatedSingleQuote);
        assert_eq!(err("\"abc"), WordError::UnterminatedDoubleQuote);
        assert_eq!(
            expand("${X:?a}", &e, '\\').unwrap_err().to_string(),
            "failed to process \"${X:?a}\": X: a"
        );
    }

    #[test]
    fn splits_words_after_substitution() {
        let e = env();
        assert_eq!(
            expand_words("$B '$B' z", &e, '\\').unwrap(),
            ["x", "y", "$B", "z"]
        );
    }
}
