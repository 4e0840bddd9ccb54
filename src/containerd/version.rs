//! The Version service: what `ctr version` shows for the server.

use containerd_client::services::v1::VersionResponse;

use super::Services;

/// The containerd API release refeng-containerd serves, with its own version as build metadata.
pub fn version() -> String {
    format!("1.6.20+refeng.{}", env!("CARGO_PKG_VERSION"))
}

/// Registers `containerd.services.version.v1.Version`.
pub fn register(s: &mut Services) {
    s.router.unary(
        "/containerd.services.version.v1.Version/Version",
        |_req: tonic::Request<()>| async move {
            Ok(VersionResponse {
                version: version(),
                revision: "refeng".to_string(),
            })
        },
    );
    s.plugin("io.containerd.grpc.v1", "version");
}
