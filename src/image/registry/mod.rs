//! The registry client: pull and push images and list a repository's tags over the OCI
//! distribution spec (and Docker registries' v2 API, which it grew from), with Docker's reference
//! normalisation, basic and bearer-token authentication, credentials from a docker `config.json`,
//! resumable parallel downloads straight into the content store, unpacking as layers arrive,
//! chunked, monolithic and cross-repository uploads, and per-layer progress.
//!
//! Why our own client over the `oci-client` crate: it is async only (reqwest and tokio inside a
//! store and snapshotter that are synchronous), it takes the bearer token's lifetime only from a
//! JWT `exp` claim (the token spec's `expires_in` is ignored, and tokens need not be JWTs), it
//! has no answer to `insufficient_scope`, and it offers no hook to continue an interrupted blob
//! into our resumable ingest. The transport is the `ureq` crate; what is written here is the
//! distribution protocol itself.

pub mod auth;
pub mod client;
pub mod errors;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod tags;
pub mod tls;

use std::time::Duration;

pub use client::Client;
pub use progress::{NoProgress, ProgressEvent, ProgressSink, RecordedProgress};
pub use pull::Pulled;
pub use reference::{Reference, ReferenceError};

use super::content::ContentError;
use super::digest::Digest;
use super::format::{FormatError, PlatformWanted};
use super::unpack::UnpackError;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where credentials come from.
    pub credentials: auth::CredentialStore,
    /// Registries (`host[:port]`) that may be used over plain HTTP or unverified HTTPS, beside
    /// loopback ones which always may (as dockerd's `insecure-registries`).
    pub insecure_registries: Vec<String>,
    /// Loopback registries count as insecure (dockerd's rule for 127.0.0.0/8 and ::1).
    pub loopback_insecure: bool,
    /// Per-registry CA and client certificates, `<dir>/<host[:port]>/{*.crt,*.cert,*.key}`
    /// (dockerd's `/etc/docker/certs.d`); `None` uses the system roots only.
    pub certs_dir: Option<std::path::PathBuf>,
    /// Layers downloaded at once (dockerd's `max-concurrent-downloads`, default 3).
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once (dockerd's `max-concurrent-uploads`, default 5).
    pub max_concurrent_uploads: usize,
    /// Blobs larger than this are uploaded in chunks of this size (`PATCH` with
    /// `Content-Range`), smaller ones in one `PUT`.
    pub chunk_size: u64,
    /// Attempts for one blob before a pull fails (each continues where the last stopped).
    pub max_attempts: u32,
    /// A read that stalls this long counts as a cut connection.
    pub read_timeout: Duration,
    /// The platform picked from a multi-platform index.
    pub platform: PlatformWanted,
    /// Sent as `User-Agent`.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            credentials: auth::CredentialStore::default(),
            insecure_registries: Vec::new(),
            loopback_insecure: true,
            certs_dir: Some(tls::DOCKER_CERTS_DIR.into()),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            chunk_size: 32 << 20,
            max_attempts: 5,
            read_timeout: Duration::from_secs(60),
            platform: PlatformWanted::host(),
            user_agent: concat!("refeng/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Errors of pulling and pushing. Each says, in words, what the registry or the image did.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// the reference does not parse
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// the registry could not be reached or the connection failed
    #[error("cannot reach registry {registry} ({url})")]
    Unreachable {
        /// the registry
        registry: String,
        /// the URL asked (without its query)
        url: String,
        /// the transport error
        #[source]
        source: Box<ureq::Error>,
    },
    /// credentials were refused
    #[error("wrong username or password for registry {registry}")]
    WrongCredentials {
        /// the registry
        registry: String,
    },
    /// the registry wants credentials and none are configured
    #[error("registry {registry} requires authentication and no credentials are configured for it (docker login, or an entry in config.json)")]
    AuthRequired {
        /// the registry
        registry: String,
    },
    /// a token was refused for a reason other than its scope
    #[error("registry {registry} refused the credentials: {detail}")]
    Unauthorized {
        /// the registry
        registry: String,
        /// what the registry said
        detail: String,
    },
    /// the credentials do not allow the operation
    #[error("access denied by registry {registry}: {} lack the rights {scope:?}", if *.authenticated { "your credentials" } else { "anonymous users" })]
    InsufficientScope {
        /// the registry
        registry: String,
        /// the scope it asked for
        scope: String,
        /// whether credentials were used
        authenticated: bool,
    },
    /// the registry answered an operation with an error
    #[error("{operation}: {text}")]
    Refused {
        /// what was being done, with the reference
        operation: String,
        /// the HTTP status
        status: u16,
        /// the first registry error code, if any
        code: String,
        /// the registry's message with that code, if any
        message: String,
        /// the registry's errors in plain words
        text: String,
    },
    /// the registry broke the protocol
    #[error("registry {registry} broke the distribution protocol: {what}")]
    Protocol {
        /// the registry
        registry: String,
        /// how
        what: String,
    },
    /// a page of a tag list does not parse
    #[error("registry {registry} sent a tag list refeng cannot read")]
    TagList {
        /// the registry
        registry: String,
        /// why
        #[source]
        source: tags::TagListError,
    },
    /// the registry served a schema1 manifest
    #[error("{reference} is a Docker schema1 image, which is not supported (deprecated since 2017): push it again with a current docker or convert it")]
    Schema1 {
        /// the reference
        reference: String,
    },
    /// a manifest, index or config is invalid
    #[error("{reference}: invalid image")]
    Format {
        /// the reference
        reference: String,
        /// why
        #[source]
        source: FormatError,
    },
    /// what the registry sent does not hash to its digest
    #[error("{what} from {registry} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// the registry
        registry: String,
        /// manifest or blob
        what: String,
        /// the digest asked for
        expected: Digest,
        /// the digest of what came
        actual: Digest,
    },
    /// a download was cut (connection reset, stalled, ended early)
    #[error("download of {digest} from {registry} was cut at byte {offset}")]
    Interrupted {
        /// the registry
        registry: String,
        /// the blob
        digest: Digest,
        /// bytes already in the store
        offset: u64,
        /// what happened
        #[source]
        source: std::io::Error,
    },
    /// a blob download failed after every attempt
    #[error("download of {digest} from {registry} failed after {attempts} attempts (the partial data is kept and the next pull continues from it)")]
    DownloadFailed {
        /// the registry
        registry: String,
        /// the blob
        digest: Digest,
        /// attempts made
        attempts: u32,
        /// the last error
        #[source]
        source: Box<RegistryError>,
    },
    /// the local content store failed
    #[error("content store")]
    Content(#[from] ContentError),
    /// unpacking failed
    #[error("unpacking")]
    Unpack(#[from] UnpackError),
    /// the image to push is not in the store
    #[error("no image named {0:?} in the content store")]
    NotFound(String),
    /// the registry's certificate folder is unusable
    #[error("TLS settings for registry {registry}")]
    Tls {
        /// the registry
        registry: String,
        /// why
        #[source]
        source: tls::TlsError,
    },
    /// credentials configuration failed
    #[error("credentials")]
    Credentials(#[source] auth::AuthError),
}

impl RegistryError {
    /// Whether trying the same request again may succeed (a cut connection, a 5xx, 429).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Interrupted { .. } => true,
            RegistryError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
