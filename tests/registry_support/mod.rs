//! Registry fixtures for the registry client's tests: a real docker-registry (plain, htpasswd or
//! token auth), a Docker token server, and a proxy that records requests and cuts a blob
//! download short. Each cleans up after itself on drop, also when the test panics.
//!
//! Include with `mod registry_support;` (or `#[path = "registry_support/mod.rs"]`):
//!
//! ```ignore
//! let tokens = TokenServer::builder()
//!     .user("alice", "alice-pw", &["pull", "push"])
//!     .user("reader", "reader-pw", &["pull"])
//!     .start();
//! let registry = RegistryServer::token(&tokens);
//! let proxy = CutProxy::start(&registry.host());
//! proxy.cut_next_blob_get(1000);
//! // ... pull from proxy.host() ..., then tokens.requests(), proxy.requests()
//! ```
//!
//! Needs `docker-registry` and `openssl` (.ci/setup installs both).
// Each test crate uses a different subset of this module.
#![allow(dead_code, unused_imports)]

mod certs;
mod http;
mod proxy;
mod registry;
mod token;

pub use certs::TestCa;
pub use http::{header, Listener};
pub use proxy::{CutProxy, ProxiedRequest};
pub use registry::{RegistryServer, REGISTRY_BIN};
pub use token::{
    jwt_claims, jwt_header, libtrust_key_id, Access, TokenRequest, TokenServer, TokenServerBuilder,
    ISSUER, SERVICE,
};
