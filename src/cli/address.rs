//! Which daemon the CLI talks to, found as the docker CLI finds it: `-H`, then `DOCKER_HOST`,
//! then the context (`--context`, `DOCKER_CONTEXT`, config.json's `currentContext`) from the
//! context store in the docker config directory; else refengd's socket, else dockerd's. TLS
//! from `--tls*` flags, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, or the context's material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::client::{Endpoint, Transport};

/// refengd's default socket.
pub const REFENGD_SOCKET: &str = "/run/refeng/refeng.sock";
/// dockerd's default socket.
pub const DOCKERD_SOCKET: &str = "/var/run/docker.sock";

/// The TLS flags of the command line.
#[derive(Debug, Default, Clone)]
pub struct TlsFlags {
    pub tls: bool,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Why no endpoint could be made.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// an address the CLI cannot use
    #[error("invalid daemon address {0:?}: use unix:///path/to.sock or tcp://host:port")]
    Invalid(String),
    /// a scheme the CLI does not speak
    #[error("daemon address {0:?}: ssh:// and npipe:// are not supported by refeng; use unix:// or tcp://")]
    Unsupported(String),
    /// a context that is not in the store
    #[error("context {name:?} does not exist (looked in {dir})")]
    NoContext { name: String, dir: String },
    /// a context's metadata that cannot be read
    #[error("context {name:?}: {reason}")]
    BadContext { name: String, reason: String },
    /// TLS material that cannot be read
    #[error("tls: {path}: {reason}")]
    Tls { path: String, reason: String },
    /// both -H and a context
    #[error("conflicting options: cannot specify both --host and --context")]
    HostAndContext,
}

/// The docker config directory: `--config`, `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker")
}

/// Resolves the endpoint.
///
/// # Errors
/// An unusable address, a missing or broken context, unreadable TLS files.
pub fn resolve(
    host: Option<&str>,
    context: Option<&str>,
    config: &Path,
    tls: &TlsFlags,
) -> Result<Endpoint, AddressError> {
    if host.is_some() && context.is_some() {
        return Err(AddressError::HostAndContext);
    }
    let env_host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let tls_env = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
    let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
        .filter(|p| !p.is_empty())
        .map_or_else(|| config.to_path_buf(), PathBuf::from);
    let flag_tls = |addr: &str| -> Result<Endpoint, AddressError> {
        let verify = tls.verify || tls_env;
        let want = tls.tls || verify;
        let material = TlsMaterial {
            ca: tls.ca.clone().or_else(|| Some(cert_dir.join("ca.pem"))),
            cert: tls.cert.clone().or_else(|| Some(cert_dir.join("cert.pem"))),
            key: tls.key.clone().or_else(|| Some(cert_dir.join("key.pem"))),
            verify,
        };
        parse_host(addr, want.then_some(&material), false)
    };
    if let Some(h) = host {
        return flag_tls(h);
    }
    let ctx_name = context.map(str::to_owned).or_else(|| {
        std::env::var("DOCKER_CONTEXT")
            .ok()
            .filter(|c| !c.is_empty())
    });
    if ctx_name.is_none() {
        if let Some(h) = &env_host {
            return flag_tls(h);
        }
    }
    let ctx_name = ctx_name.or_else(|| current_context(config));
    if let Some(name) = ctx_name.filter(|n| n != "default") {
        return from_context(&name, config);
    }
    // No context: refengd's socket when refengd runs here, else dockerd's.
    let (path, refengd) =
        if Path::new(REFENGD_SOCKET).exists() || !Path::new(DOCKERD_SOCKET).exists() {
            (REFENGD_SOCKET, true)
        } else {
            (DOCKERD_SOCKET, false)
        };
    Ok(Endpoint {
        transport: Transport::Unix(PathBuf::from(path)),
        address: format!("unix://{path}"),
        refengd_default: refengd,
    })
}

/// config.json's `currentContext`.
fn current_context(config: &Path) -> Option<String> {
    let text = std::fs::read(config.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v["currentContext"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The context store's directory name for a context: the hex SHA-256 of its name.
pub fn context_id(name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_context(name: &str, config: &Path) -> Result<Endpoint, AddressError> {
    let id = context_id(name);
    let meta = config.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read(&meta).map_err(|_| AddressError::NoContext {
        name: name.to_owned(),
        dir: config.join("contexts").display().to_string(),
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| AddressError::BadContext {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    let ep = &v["Endpoints"]["docker"];
    let host = ep["Host"]
        .as_str()
        .ok_or_else(|| AddressError::BadContext {
            name: name.to_owned(),
            reason: "no docker endpoint".into(),
        })?;
    let tls_dir = config.join("contexts/tls").join(&id).join("docker");
    let exists = |f: &str| Some(tls_dir.join(f)).filter(|p| p.exists());
    let material = TlsMaterial {
        ca: exists("ca.pem"),
        cert: exists("cert.pem"),
        key: exists("key.pem"),
        verify: !ep["SkipTLSVerify"].as_bool().unwrap_or(false),
    };
    let use_tls = material.ca.is_some() || material.cert.is_some();
    parse_host(host, use_tls.then_some(&material), false)
}

/// Files for a TLS connection.
#[derive(Debug)]
struct TlsMaterial {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    verify: bool,
}

/// `unix:///path`, `tcp://host:port`, `host:port`, `:port` as dockerd's -H takes them.
fn parse_host(
    addr: &str,
    tls: Option<&TlsMaterial>,
    refengd_default: bool,
) -> Result<Endpoint, AddressError> {
    let invalid = || AddressError::Invalid(addr.to_owned());
    if let Some(path) = addr.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(invalid());
        }
        return Ok(Endpoint {
            transport: Transport::Unix(PathBuf::from(path)),
            address: addr.to_owned(),
            refengd_default: refengd_default || path == REFENGD_SOCKET,
        });
    }
    if addr.starts_with("ssh://") || addr.starts_with("npipe://") || addr.starts_with("fd://") {
        return Err(AddressError::Unsupported(addr.to_owned()));
    }
    let rest = addr
        .strip_prefix("tcp://")
        .or_else(|| addr.strip_prefix("http://"))
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    if rest.contains("://") {
        return Err(invalid());
    }
    let rest = rest.split('/').next().unwrap_or("");
    let (h, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (rest, if tls.is_some() { "2376" } else { "2375" }),
    };
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let h = if h.is_empty() { "127.0.0.1" } else { h };
    let server_name = h.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tls = match tls {
        Some(m) => Some(tls_config(m)?),
        None => None,
    };
    Ok(Endpoint {
        transport: Transport::Tcp {
            addr: format!("{h}:{port}"),
            server_name,
            tls,
        },
        address: format!("tcp://{h}:{port}"),
        refengd_default: false,
    })
}

fn tls_config(m: &TlsMaterial) -> Result<Arc<rustls::ClientConfig>, AddressError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |p: &Path, e: &dyn std::fmt::Display| AddressError::Tls {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(Path::new("-"), &e))?;
    let builder = if m.verify {
        let mut roots = rustls::RootCertStore::empty();
        let ca = m.ca.as_deref().unwrap_or(Path::new("ca.pem"));
        let certs = CertificateDer::pem_file_iter(ca).map_err(|e| fail(ca, &e))?;
        for c in certs {
            roots
                .add(c.map_err(|e| fail(ca, &e))?)
                .map_err(|e| fail(ca, &e))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let cfg = match (&m.cert, &m.key) {
        (Some(c), Some(k)) if c.exists() && k.exists() => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| fail(c, &e))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(c, &e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| fail(k, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(c, &e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// `--tls` without `--tlsverify`: encrypted, the server's certificate not checked, as the
/// docker CLI does.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_as_dockerd_takes_them() {
        let ep = parse_host("unix:///tmp/x.sock", None, false).unwrap();
        assert!(matches!(ep.transport, Transport::Unix(ref p) if p == Path::new("/tmp/x.sock")));
        let ep = parse_host("tcp://127.0.0.1:2375", None, false).unwrap();
        assert!(
            matches!(ep.transport, Transport::Tcp { ref addr, .. } if addr == "127.0.0.1:2375")
        );
        let ep = parse_host(":4243", None, false).unwrap();
        assert_eq!(ep.address, "tcp://127.0.0.1:4243");
        let ep = parse_host("localhost", None, false).unwrap();
        assert_eq!(ep.address, "tcp://localhost:2375");
        assert!(matches!(
            parse_host("ssh://me@host", None, false),
            Err(AddressError::Unsupported(_))
        ));
        assert!(parse_host("unix://", None, false).is_err());
        assert!(parse_host("tcp://host:notaport", None, false).is_err());
    }

    #[test]
    fn context_ids_are_the_sha256_of_the_name() {
        // As the docker CLI names the store's directories.
        assert_eq!(
            context_id("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }
}
