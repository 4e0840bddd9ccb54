//! containerd's filter syntax (pkg/filters), used by every List and by Subscribe:
//!
//! ```text
//! filters  := selector (',' selector)*          all must match
//! selector := fieldpath [op value]              no op: the field is present
//! fieldpath:= field ('.' field)*
//! field    := [A-Za-z0-9_]+ | "quoted"
//! op       := '==' | '!=' | '~='                ~= is a regular expression match
//! value    := quoted ("..", /../ or |..|) | run of non-space, non-comma characters
//! ```
//!
//! Several filter strings match when any one of them does; no filter strings match everything.

use regex::Regex;

use super::error::Error;

/// The fields an object shows to filters: `path` is the dotted field path; `None` when the
/// object has no such field.
pub trait Fields {
    /// The value at `path`, if present.
    fn field(&self, path: &[String]) -> Option<String>;
}

/// The value of `labels.<key...>` from a label map, as containerd's adaptors read it (the rest
/// of the path joined by `.`).
pub fn label_field<'a, I>(labels: I, rest: &[String]) -> Option<String>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    if rest.is_empty() {
        return None;
    }
    let key = rest.join(".");
    labels
        .into_iter()
        .find(|(k, _)| **k == key)
        .map(|(_, v)| v.clone())
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

impl Selector {
    fn matches(&self, obj: &dyn Fields) -> bool {
        let value = obj.field(&self.path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(v) => value.as_deref() == Some(v.as_str()),
            // containerd compares the absent field as the empty string here.
            Op::NotEqual(v) => value.unwrap_or_default() != *v,
            Op::Matches(re) => value.is_some_and(|s| re.is_match(&s)),
        }
    }
}

/// A parsed set of filter strings.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Alternatives (any matches); each a conjunction of selectors. Empty: match everything.
    any: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses the filter strings of a request.
    ///
    /// # Errors
    /// `InvalidArgument` naming the filter and the position of the syntax error.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Filter, Error> {
        let mut any = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.trim().is_empty() {
                // containerd: an empty filter string matches everything.
                return Ok(Filter::default());
            }
            any.push(Parser::new(f).parse()?);
        }
        Ok(Filter { any })
    }

    /// Whether `obj` passes.
    pub fn matches(&self, obj: &dyn Fields) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(obj)))
    }
}

struct Parser<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            chars: src.chars().collect(),
            pos: 0,
        }
    }

    /// containerd's wording: the input split at the position, and the reason (the class
    /// suffix is part of its message too, so a client sees it twice, as from containerd).
    fn err(&self, what: &str) -> Error {
        let at = if self.pos >= self.chars.len() {
            self.src.to_string()
        } else {
            format!(
                "{} >|{}|< {}",
                self.chars[..self.pos].iter().collect::<String>(),
                self.chars[self.pos],
                self.chars[self.pos + 1..].iter().collect::<String>()
            )
        };
        Error::InvalidArgument(format!(
            "filters: parse error: [{at}]: {what}: invalid argument"
        ))
    }

    fn unexpected(&self) -> Error {
        match self.peek() {
            Some(c) => self.err(&format!("unexpected input: {c}")),
            None => self.err("unexpected end of input"),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn parse(mut self) -> Result<Vec<Selector>, Error> {
        let mut selectors = Vec::new();
        loop {
            selectors.push(self.selector()?);
            self.skip_space();
            match self.peek() {
                None => return Ok(selectors),
                Some(',') => self.pos += 1,
                Some(_) => return Err(self.unexpected()),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, Error> {
        let mut path = vec![self.field()?];
        loop {
            self.skip_space();
            if self.peek() == Some('.') {
                self.pos += 1;
                path.push(self.field()?);
            } else {
                break;
            }
        }
        self.skip_space();
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('=')) => 1,
            (Some('!'), Some('=')) => 2,
            (Some('~'), Some('=')) => 3,
            (None, _) | (Some(','), _) => {
                return Ok(Selector {
                    path,
                    op: Op::Present,
                })
            }
            _ => return Err(self.unexpected()),
        };
        self.pos += 2;
        self.skip_space();
        let value = self.value()?;
        let op = match op {
            1 => Op::Equal(value),
            2 => Op::NotEqual(value),
            _ => Op::Matches(Regex::new(&value).map_err(|e| {
                Error::InvalidArgument(format!("filters: bad regexp {value:?}: {e}"))
            })?),
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> Result<String, Error> {
        self.skip_space();
        match self.peek() {
            Some('"') => self.quoted('"'),
            Some(c) if c.is_alphanumeric() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().collect())
            }
            _ => Err(self.unexpected()),
        }
    }

    fn value(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some(q @ ('"' | '/' | '|')) => self.quoted(q),
            Some(c) if c != ',' && !c.is_whitespace() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ',' && !c.is_whitespace()) {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().collect())
            }
            _ => Err(self.err("expected value or quoted")),
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.pos += 1;
                    match (quote, c) {
                        (_, c) if c == quote => out.push(c),
                        ('"', 'n') => out.push('\n'),
                        ('"', 't') => out.push('\t'),
                        ('"', '\\') => out.push('\\'),
                        ('"', _) => return Err(self.err("unknown escape")),
                        // In /../ and |..| the escapes belong to the regexp.
                        (_, c) => {
                            out.push('\\');
                            out.push(c);
                        }
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Obj(HashMap<String, String>, HashMap<String, String>);

    impl Fields for Obj {
        fn field(&self, path: &[String]) -> Option<String> {
            match path.first().map(String::as_str) {
                Some("labels") => label_field(&self.1, &path[1..]),
                Some(name) if path.len() == 1 => self.0.get(name).cloned(),
                _ => None,
            }
        }
    }

    fn obj() -> Obj {
        Obj(
            [("topic", "/tasks/exit"), ("namespace", "default")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            [("a.b", "c"), ("x", "y z")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn m(filters: &[&str]) -> bool {
        Filter::parse(filters).unwrap().matches(&obj())
    }

    #[test]
    fn containerd_filter_forms() {
        assert!(m(&[]));
        assert!(m(&["topic==\"/tasks/exit\""]));
        // `/` opens a quoted value, as in containerd: `/tasks/` then stray input.
        assert!(Filter::parse(&["topic==/tasks/exit"]).is_err());
        assert!(!m(&["topic==/tasks/"]));
        assert!(m(&["topic==\"/tasks/exit\",namespace==default"]));
        assert!(!m(&["topic==\"/tasks/exit\",namespace==other"]));
        assert!(m(&["namespace==other", "topic~=^/tasks/"]));
        assert!(m(&["topic~=/tasks\\/.*/"]));
        assert!(m(&["labels.\"a.b\"==c"]));
        assert!(m(&["labels.a.b==c"]));
        assert!(m(&["labels.x==\"y z\""]));
        assert!(m(&["labels.x"]));
        assert!(!m(&["labels.missing"]));
        assert!(m(&["labels.missing!=v"]));
        assert!(!m(&["topic!=\"/tasks/exit\""]));
    }

    #[test]
    fn syntax_errors_are_invalid_argument() {
        for bad in [
            "==x",
            "topic==",
            "topic=x",
            "topic==\"x",
            "a.",
            "topic~=(",
            "a b",
        ] {
            let err = Filter::parse(&[bad]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
