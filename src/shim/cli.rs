//! The shim's command line as containerd calls it: Go-style flags (`-namespace ns -address A
//! -publish-binary B -id ID [-bundle B] [-debug]`) followed by `start`, `delete`, or nothing for
//! the serving daemon that `start` spawns.

use std::ffi::OsString;

/// What the invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Spawn the serving shim, print its address.
    Start,
    /// Clean up after a dead shim.
    Delete,
    /// Serve the task API (the daemon `start` spawned).
    Serve,
    /// Print the version.
    Version,
}

/// The parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// containerd namespace.
    pub namespace: String,
    /// containerd's gRPC address.
    pub address: String,
    /// containerd's binary (for `containerd publish`; unused: events go over ttrpc).
    pub publish_binary: String,
    /// The task id.
    pub id: String,
    /// The bundle, when given (`delete`); otherwise the working directory.
    pub bundle: Option<String>,
    /// Debug logging.
    pub debug: bool,
    /// The action.
    pub action: Action,
    /// The flags as given, for re-executing the serving daemon.
    pub raw_flags: Vec<OsString>,
}

/// A malformed command line.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// flag {0} needs a value
    #[error("flag {0} needs a value")]
    MissingValue(String),
    /// unknown flag {0}
    #[error("unknown flag {0}")]
    UnknownFlag(String),
    /// unknown action {0} (expected start or delete)
    #[error("unknown action {0} (expected start or delete)")]
    UnknownAction(String),
    /// argument {0:?} is not UTF-8
    #[error("argument {0:?} is not UTF-8")]
    NotUtf8(OsString),
}

impl Args {
    /// Parses the arguments after the program name, the way Go's `flag` package does (`-f v`,
    /// `--f v`, `-f=v`, booleans without a value).
    ///
    /// # Errors
    /// [`ArgsError`] for an unknown flag or action, or a flag without its value.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, ArgsError> {
        let mut out = Args {
            namespace: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            id: String::new(),
            bundle: None,
            debug: false,
            action: Action::Serve,
            raw_flags: Vec::new(),
        };
        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            let text = arg
                .to_str()
                .ok_or_else(|| ArgsError::NotUtf8(arg.clone()))?
                .to_string();
            if !text.starts_with('-') {
                out.action = match text.as_str() {
                    "start" => Action::Start,
                    "delete" => Action::Delete,
                    other => return Err(ArgsError::UnknownAction(other.to_string())),
                };
                continue;
            }
            let flag = text.trim_start_matches('-');
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            match name.as_str() {
                "debug" => {
                    out.debug = inline.as_deref() != Some("false");
                    out.raw_flags.push(arg);
                    continue;
                }
                "v" | "version" => {
                    out.action = Action::Version;
                    continue;
                }
                _ => {}
            }
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| ArgsError::MissingValue(name.clone()))?,
            };
            match name.as_str() {
                "namespace" => out.namespace = value.clone(),
                "address" => out.address = value.clone(),
                "publish-binary" => out.publish_binary = value.clone(),
                "id" => out.id = value.clone(),
                "bundle" => out.bundle = Some(value.clone()),
                // Flags of newer containerd versions that this shim does not need.
                "socket" | "containerd-binary" => {}
                other => return Err(ArgsError::UnknownFlag(other.to_string())),
            }
            out.raw_flags.push(format!("-{name}").into());
            out.raw_flags.push(value.into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, ArgsError> {
        Args::parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn containerd_start_line_parses() {
        let a = parse("-namespace default -address /run/c.sock -publish-binary /usr/bin/containerd -id c1 -debug start").unwrap();
        assert_eq!(a.action, Action::Start);
        assert_eq!((a.namespace.as_str(), a.id.as_str()), ("default", "c1"));
        assert!(a.debug);
        assert_eq!(a.raw_flags.len(), 9);
    }

    #[test]
    fn delete_with_bundle_and_equals_form() {
        let a = parse("--namespace=ns -id=c -bundle /b delete").unwrap();
        assert_eq!(a.action, Action::Delete);
        assert_eq!(a.bundle.as_deref(), Some("/b"));
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(matches!(parse("-id"), Err(ArgsError::MissingValue(f)) if f == "id"));
        assert!(matches!(parse("-x 1"), Err(ArgsError::UnknownFlag(f)) if f == "x"));
        assert!(matches!(parse("frob"), Err(ArgsError::UnknownAction(a)) if a == "frob"));
    }
}
