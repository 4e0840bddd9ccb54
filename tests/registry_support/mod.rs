//! Registry fixtures for the registry client's tests: a real docker-registry (plain, htpasswd or
//! token auth) and a Docker token server. Each cleans up after itself on drop, also when the test panics.
//!
//! Include with `mod registry_support;` (or `#[path = "registry_support/mod.rs"]`):
//!
//! ```ignore
//! let tokens = TokenServer::builder()
//!     .user("alice", "alice-pw", &["pull", "push"])
//!     .user("reader", "reader-pw", &["pull"])
//!     .start();
//! let registry = RegistryServer::token(&tokens);
//! // ... pull from registry.host() ..., then count tokens.requests()
//! ```
//!
//! Needs `docker-registry` and `openssl` (.ci/setup installs both).
// Each test crate uses a different subset of this module.
#![allow(dead_code, unused_imports)]

mod http;
mod registry;
mod token;

pub use http::header;
pub use registry::{RegistryServer, REGISTRY_BIN};
pub use token::{
    jwt_claims, jwt_header, libtrust_key_id, Access, TokenRequest, TokenServer, TokenServerBuilder,
    ISSUER, SERVICE,
};
