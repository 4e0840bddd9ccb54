//! Image formats: OCI image manifest, index and config, Docker schema2 manifest and manifest
//! list (schema1 is refused), media types, platform selection and chain ids. Parsing goes
//! through oci-spec's types; what oci-spec does not check (registered digest algorithms, sizes,
//! sane counts, diff_id/layer agreement) is checked here.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::digest::{Digest, DigestError};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (what containerd's importer writes for plain tars).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema1 manifests: refused.
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Most layers accepted in one manifest (overlayfs stacks far fewer; docker refuses > 127).
pub const MAX_LAYERS: usize = 512;
/// Most manifests accepted in one index.
pub const MAX_MANIFESTS: usize = 1024;
/// Largest size a descriptor may declare.
pub const MAX_DESCRIPTOR_SIZE: u64 = 64 << 30;

/// Why a manifest, index or config was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// JSON does not parse as the expected document
    #[error("{what} does not parse")]
    Parse {
        /// the document kind
        what: &'static str,
        /// the parse error
        #[source]
        source: serde_json::Error,
    },
    /// Docker schema1 manifest
    #[error("docker schema1 manifests are not supported: convert the image to schema2 or OCI")]
    Schema1,
    /// schemaVersion is not 2
    #[error("unsupported schemaVersion {0}")]
    SchemaVersion(u64),
    /// media type is unknown or does not fit where it is used
    #[error("unexpected media type {found:?} for {what}")]
    MediaType {
        /// where it was found
        what: &'static str,
        /// the media type
        found: String,
    },
    /// digest is not a registered sha256/sha512 digest
    #[error("descriptor digest")]
    Digest(#[from] DigestError),
    /// a count is above its limit
    #[error("{what}: {count} exceeds the limit of {limit}")]
    TooMany {
        /// what was counted
        what: &'static str,
        /// the count
        count: usize,
        /// the limit
        limit: usize,
    },
    /// a declared size is above the limit or zero
    #[error("descriptor {digest} declares an invalid size {size}")]
    Size {
        /// the descriptor digest
        digest: String,
        /// the declared size
        size: u64,
    },
    /// config's rootfs does not match the manifest's layers
    #[error("config declares {diff_ids} diff_ids for {layers} layers")]
    DiffIdCount {
        /// diff_ids in the config
        diff_ids: usize,
        /// layers in the manifest
        layers: usize,
    },
    /// rootfs.type is not "layers"
    #[error("config rootfs type {0:?} is not \"layers\"")]
    RootfsType(String),
    /// no manifest in the index matches the platform
    #[error("no manifest for platform {0}")]
    NoPlatform(String),
}

/// A parsed top-level document: what a tag or an `index.json` entry points at.
#[derive(Debug, Clone)]
pub enum Document {
    /// An image manifest (OCI or Docker schema2).
    Manifest(Box<ImageManifest>),
    /// An index or Docker manifest list.
    Index(Box<ImageIndex>),
}

#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

/// Parses a manifest or index, deciding by the declared media type (from the descriptor that
/// pointed at it), then the document's own `mediaType`, then its shape.
///
/// # Errors
/// [`FormatError::Schema1`] for schema1; [`FormatError::MediaType`] if the document's own media
/// type disagrees with the declared one; validation errors of [`validate_manifest`] and
/// [`validate_index`].
pub fn parse_document(bytes: &[u8], declared: Option<&str>) -> Result<Document, FormatError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| FormatError::Parse {
        what: "manifest",
        source,
    })?;
    let own = probe.media_type.as_deref();
    if probe.schema_version == Some(1)
        || probe.fs_layers.is_some()
        || own.is_some_and(|m| DOCKER_SCHEMA1.contains(&m))
        || declared.is_some_and(|m| DOCKER_SCHEMA1.contains(&m))
    {
        return Err(FormatError::Schema1);
    }
    match probe.schema_version {
        Some(2) => {}
        Some(v) => return Err(FormatError::SchemaVersion(v)),
        None => return Err(FormatError::SchemaVersion(0)),
    }
    if let (Some(d), Some(o)) = (declared, own) {
        if d != o {
            return Err(FormatError::MediaType {
                what: "manifest (declared vs own mediaType)",
                found: o.to_owned(),
            });
        }
    }
    let kind = declared.or(own);
    let is_index = match kind {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(FormatError::MediaType {
                what: "manifest",
                found: other.to_owned(),
            })
        }
        None => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|source| FormatError::Parse {
                what: "image index",
                source,
            })?;
        validate_index(&index)?;
        Ok(Document::Index(Box::new(index)))
    } else {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|source| FormatError::Parse {
                what: "image manifest",
                source,
            })?;
        validate_manifest(&m)?;
        Ok(Document::Manifest(Box::new(m)))
    }
}

/// Checks a descriptor's digest and size; returns the digest.
///
/// # Errors
/// [`FormatError::Digest`], [`FormatError::Size`].
pub fn check_descriptor(d: &Descriptor) -> Result<Digest, FormatError> {
    let digest = Digest::try_from(d.digest())?;
    if d.size() > MAX_DESCRIPTOR_SIZE {
        return Err(FormatError::Size {
            digest: digest.to_string(),
            size: d.size(),
        });
    }
    Ok(digest)
}

/// Whether a media type names a layer this engine can unpack.
#[must_use]
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_FOREIGN
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    )
}

/// Validates a manifest beyond what oci-spec checks.
///
/// # Errors
/// [`FormatError`] for bad digests, sizes, counts or media types.
pub fn validate_manifest(m: &ImageManifest) -> Result<(), FormatError> {
    if m.schema_version() != 2 {
        return Err(FormatError::SchemaVersion(u64::from(m.schema_version())));
    }
    check_descriptor(m.config())?;
    let cmt = m.config().media_type().to_string();
    if cmt != OCI_CONFIG && cmt != DOCKER_CONFIG {
        return Err(FormatError::MediaType {
            what: "config",
            found: cmt,
        });
    }
    if m.layers().len() > MAX_LAYERS {
        return Err(FormatError::TooMany {
            what: "layers",
            count: m.layers().len(),
            limit: MAX_LAYERS,
        });
    }
    for l in m.layers() {
        check_descriptor(l)?;
        let mt = l.media_type().to_string();
        if !is_layer(&mt) {
            return Err(FormatError::MediaType {
                what: "layer",
                found: mt,
            });
        }
    }
    Ok(())
}

/// Validates an index beyond what oci-spec checks.
///
/// # Errors
/// [`FormatError`] for bad digests, sizes or counts.
pub fn validate_index(i: &ImageIndex) -> Result<(), FormatError> {
    if i.schema_version() != 2 {
        return Err(FormatError::SchemaVersion(u64::from(i.schema_version())));
    }
    if i.manifests().len() > MAX_MANIFESTS {
        return Err(FormatError::TooMany {
            what: "manifests",
            count: i.manifests().len(),
            limit: MAX_MANIFESTS,
        });
    }
    for d in i.manifests() {
        check_descriptor(d)?;
    }
    Ok(())
}

/// Parses and validates an image config against the manifest's layer count.
///
/// # Errors
/// [`FormatError::Parse`], [`FormatError::RootfsType`], [`FormatError::DiffIdCount`],
/// [`FormatError::Digest`].
pub fn parse_config(
    bytes: &[u8],
    layers: usize,
) -> Result<(ImageConfiguration, Vec<Digest>), FormatError> {
    let c: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| FormatError::Parse {
            what: "image config",
            source,
        })?;
    if c.rootfs().typ() != "layers" {
        return Err(FormatError::RootfsType(c.rootfs().typ().clone()));
    }
    let diff_ids = c
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>())
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != layers {
        return Err(FormatError::DiffIdCount {
            diff_ids: diff_ids.len(),
            layers,
        });
    }
    Ok((c, diff_ids))
}

/// The platform to select from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformWanted {
    /// `linux`
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... if it matters
    pub variant: Option<String>,
}

impl PlatformWanted {
    /// The platform this process runs on.
    #[must_use]
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        PlatformWanted {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for PlatformWanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `wanted` from an index: os and architecture must match; among those,
/// an exact variant match wins, then a descriptor without variant (arm64's implied `v8`).
/// Entries without a platform (attestations, nested artifacts) are skipped.
///
/// # Errors
/// [`FormatError::NoPlatform`] if none matches.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &PlatformWanted,
) -> Result<&'a Descriptor, FormatError> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in index.manifests() {
        let mt = d.media_type().to_string();
        if mt != OCI_MANIFEST
            && mt != DOCKER_MANIFEST
            && mt != OCI_INDEX
            && mt != DOCKER_MANIFEST_LIST
        {
            continue;
        }
        let Some(p) = d.platform() else { continue };
        if p.os().to_string() != wanted.os || p.architecture().to_string() != wanted.architecture {
            continue;
        }
        let score = match (&wanted.variant, p.variant()) {
            (Some(w), Some(v)) if w == v => 3,
            (None, None) => 3,
            (Some(w), None) if wanted.architecture == "arm64" && w == "v8" => 2,
            (None, Some(_)) => 1,
            (Some(_), _) => continue,
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| FormatError::NoPlatform(wanted.to_string()))
}

/// Chain ids of a layer stack (image-spec: config, "Layer ChainID"):
/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
#[must_use]
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest(config_mt: &str, layer_mt: &str, digest: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{config_mt}","digest":"{D}","size":2}},"layers":[{{"mediaType":"{layer_mt}","digest":"{digest}","size":10}}]}}"#
        )
    }

    #[test]
    fn parses_docker_schema2_and_refuses_schema1() {
        let m = manifest(DOCKER_CONFIG, DOCKER_LAYER_GZIP, D);
        assert!(matches!(
            parse_document(m.as_bytes(), None).unwrap(),
            Document::Manifest(_)
        ));
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse_document(s1.as_bytes(), None),
            Err(FormatError::Schema1)
        ));
    }

    #[test]
    fn refuses_what_oci_spec_accepts() {
        let m = manifest(
            DOCKER_CONFIG,
            DOCKER_LAYER_GZIP,
            "md5:d41d8cd98f00b204e9800998ecf8427e",
        );
        assert!(matches!(
            parse_document(m.as_bytes(), None),
            Err(FormatError::Digest(_))
        ));
        let m = manifest(DOCKER_CONFIG, "text/plain", D);
        assert!(matches!(
            parse_document(m.as_bytes(), None),
            Err(FormatError::MediaType { .. })
        ));
        let m = manifest(DOCKER_CONFIG, DOCKER_LAYER_GZIP, D);
        assert!(matches!(
            parse_document(m.as_bytes(), Some(OCI_INDEX)),
            Err(FormatError::MediaType { .. })
        ));
    }

    #[test]
    fn selects_platform() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":2,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":3,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}
            ]}}"#,
            "1".repeat(64),
            "2".repeat(64)
        );
        let Document::Index(i) = parse_document(idx.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let want = |a: &str, v: Option<&str>| PlatformWanted {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(Into::into),
        };
        assert_eq!(
            select_platform(&i, &want("arm", Some("v7")))
                .unwrap()
                .size(),
            1
        );
        assert_eq!(
            select_platform(&i, &want("arm64", Some("v8")))
                .unwrap()
                .size(),
            3
        );
        assert_eq!(select_platform(&i, &want("arm64", None)).unwrap().size(), 2);
        assert!(select_platform(&i, &want("arm", Some("v6"))).is_err());
        assert!(select_platform(&i, &want("amd64", None)).is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a: Digest = D.parse().unwrap();
        let b = Digest::sha256(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::sha256(format!("{a} {b}").as_bytes()));
    }
}
