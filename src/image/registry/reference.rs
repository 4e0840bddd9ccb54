//! Image references as users type them (`busybox`, `ghcr.io/o/r:1.0`, `name@sha256:…`):
//! parsing by the distribution reference grammar and Docker's normalisation (`docker.io`
//! default registry, `library/` prefix for official images, `latest` default tag).

use std::fmt;

use crate::image::digest::Digest;

/// The registry a name without a registry part belongs to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name (registry included) the grammar allows.
pub const MAX_NAME: usize = 255;
/// Longest tag.
pub const MAX_TAG: usize = 128;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// the reference is empty
    #[error("invalid reference format: empty reference")]
    Empty,
    /// upper-case letters in the repository path
    #[error("invalid reference format {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// the name part breaks the grammar
    #[error("invalid reference format {reference:?}: {why}")]
    Name {
        /// the whole reference
        reference: String,
        /// what is wrong
        why: &'static str,
    },
    /// the tag breaks the grammar
    #[error("invalid reference format {reference:?}: tag {tag:?} is not valid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')")]
    Tag {
        /// the whole reference
        reference: String,
        /// the tag
        tag: String,
    },
    /// the digest is not a registered algorithm with a well-formed hex part
    #[error("invalid reference format {reference:?}: {digest:?} is not a valid digest")]
    Digest {
        /// the whole reference
        reference: String,
        /// the digest text
        digest: String,
    },
    /// the name is longer than 255 characters
    #[error("invalid reference format: repository name is longer than {MAX_NAME} characters")]
    TooLong,
}

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`, `localhost`.
    pub registry: String,
    /// The repository path in that registry (`library/busybox`).
    pub repository: String,
    /// The tag, if any (a digest-only reference has none).
    pub tag: Option<String>,
    /// The digest, if any; when present it is what gets pulled.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`. A reference with neither tag nor digest gets `latest`.
    ///
    /// # Errors
    /// [`ReferenceError`] naming the part that breaks the grammar.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| ReferenceError::Digest {
                    reference: s.to_owned(),
                    digest: d.to_owned(),
                })?;
                (r, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a port comes before one).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    reference: s.to_owned(),
                    tag: t.to_owned(),
                });
            }
        }
        let bad = |why| ReferenceError::Name {
            reference: s.to_owned(),
            why,
        };
        if name.is_empty() {
            return Err(bad("no repository name"));
        }
        if name.len() > MAX_NAME {
            return Err(ReferenceError::TooLong);
        }
        // Docker: the first component is a registry if it has a '.' or ':', is `localhost`,
        // or has upper-case letters (which a repository path cannot).
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        if !valid_registry(&registry) {
            return Err(bad("the registry part is not a host[:port]"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_owned()));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(bad(
                "path components are lowercase letters and digits, separated by '.', '_', '__' or dashes",
            ));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(ReferenceError::TooLong);
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the name without tag or digest.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to put after `/manifests/`: the digest if there is one, else the tag.
    #[must_use]
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The host (and port) the registry API answers on.
    #[must_use]
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The same repository with another tag and no digest.
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest`, keeping the tag for display.
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// distribution/reference: `[\w][\w.-]{0,127}`.
pub(crate) fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// distribution/reference: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "."
            || sep == "_"
            || sep == "__"
            || (!sep.is_empty() && sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (r, ""),
        }
    };
    if !port.is_empty() && (port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if r.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// Whether plain HTTP may be used for `registry` without configuration: loopback addresses
/// and `localhost`, as dockerd treats 127.0.0.0/8 and ::1 as insecure registries.
#[must_use]
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("user/app", "docker.io/user/app:latest"),
            ("ghcr.io/o/r/deep:v1.0", "ghcr.io/o/r/deep:v1.0"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:x", "localhost:5000/app:x"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("[::1]:5000/a", "[::1]:5000/a:latest"),
            ("a__b/c-d.e_f/g--h", "docker.io/a__b/c-d.e_f/g--h:latest"),
        ] {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
            assert_eq!(Reference::parse(want).unwrap(), r, "{want} round trip");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        let r = Reference::parse(&format!("127.0.0.1:5000/x:t@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(Reference::parse("x").unwrap().api_host(), DOCKER_HUB_API);
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:.x",
            "busybox:-x",
            &format!("busybox:{}", "t".repeat(129)),
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a//b",
            "a/",
            "/a",
            "a/-b",
            "a/b-",
            "a/b...c",
            "a/b___c",
            "ex ample.com/a",
            "example.com:port/a",
            "example.com:123456/a",
            "[::1/a",
            "[zz]:5000/a",
            ":5000/a",
            &"a".repeat(256),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn loopback_registries() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(
            reg in proptest::option::of("[a-z][a-z0-9]{0,8}\\.[a-z]{2,3}(:[0-9]{1,5})?"),
            path in proptest::collection::vec("[a-z0-9]{1,5}([._-][a-z0-9]{1,5})?", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut s = String::new();
            if let Some(r) = &reg { s.push_str(r); s.push('/'); }
            s.push_str(&path.join("/"));
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let r = Reference::parse(&s).unwrap();
            proptest::prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = Reference::parse(&s);
        }
    }
}
