//! TLS trust per registry, the way dockerd reads it: the system's roots, plus for a registry
//! `host[:port]` the CA certificates `<certs-dir>/<host[:port]>/*.crt` and a client certificate
//! `*.cert` with its `*.key` (dockerd's `/etc/docker/certs.d`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// Where dockerd looks for per-registry certificates.
pub const DOCKER_CERTS_DIR: &str = "/etc/docker/certs.d";
/// System CA bundles, Debian's first.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a registry's certificate folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// a file could not be read
    #[error("cannot read {path}")]
    Read {
        /// the file
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// a file is not PEM of the expected kind
    #[error("{path} is not a PEM {what}")]
    Pem {
        /// the file
        path: PathBuf,
        /// certificate or private key
        what: &'static str,
    },
    /// a client certificate without its key, or the other way round
    #[error("client certificate {cert} has no matching key {key} (both or neither are needed)")]
    Unpaired {
        /// the `.cert`
        cert: PathBuf,
        /// the `.key` looked for
        key: PathBuf,
    },
}

/// The TLS settings for one registry.
#[derive(Debug, Default)]
pub struct RegistryTls {
    /// Extra CA certificates (`*.crt`).
    pub roots: Vec<Certificate<'static>>,
    /// A client certificate chain and key (`*.cert` + `*.key`).
    pub client: Option<ClientCert>,
}

impl RegistryTls {
    /// Reads `<certs_dir>/<registry>/`; an absent folder gives no extra settings.
    ///
    /// # Errors
    /// [`TlsError`] for unreadable or malformed files, and unpaired client certificates.
    pub fn load(certs_dir: &Path, registry: &str) -> Result<Self, TlsError> {
        let dir = certs_dir.join(registry);
        let mut out = RegistryTls::default();
        // A registry name is host[:port]; it cannot walk out of the certs folder.
        if registry.contains('/') || registry.starts_with('.') {
            return Ok(out);
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(TlsError::Read { path: dir, source }),
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in &files {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => out.roots.extend(read_certs(path)?),
                Some("cert") => {
                    let key = path.with_extension("key");
                    if !key.exists() {
                        return Err(TlsError::Unpaired {
                            cert: path.clone(),
                            key,
                        });
                    }
                    let chain = read_certs(path)?;
                    let pem = read(&key)?;
                    let k = PrivateKey::from_pem(&pem).map_err(|_| TlsError::Pem {
                        path: key.clone(),
                        what: "private key",
                    })?;
                    out.client = Some(ClientCert::new_with_certs(&chain, k));
                }
                Some("key") => {
                    let cert = path.with_extension("cert");
                    if !cert.exists() {
                        return Err(TlsError::Unpaired {
                            cert,
                            key: path.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether there is nothing beyond the defaults.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.roots.is_empty() && self.client.is_none()
    }

    /// The ureq TLS configuration: the system roots plus ours when we have any, verification
    /// off for insecure registries (dockerd's insecure-registries skip it too).
    ///
    /// # Errors
    /// [`TlsError`] if the system bundle is unreadable when extra roots must join it.
    pub fn config(&self, verify: bool) -> Result<TlsConfig, TlsError> {
        let mut b = TlsConfig::builder()
            .disable_verification(!verify)
            .client_cert(self.client.clone());
        if !self.roots.is_empty() {
            let mut all = system_roots()?;
            all.extend(self.roots.iter().cloned());
            b = b.root_certs(RootCerts::Specific(Arc::new(all)));
        } else if let Ok(system) = system_roots() {
            if !system.is_empty() {
                b = b.root_certs(RootCerts::Specific(Arc::new(system)));
            }
        }
        Ok(b.build())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The system's CA certificates, as docker uses the system pool.
fn system_roots() -> Result<Vec<Certificate<'static>>, TlsError> {
    for b in SYSTEM_BUNDLES {
        let p = Path::new(b);
        if p.exists() {
            return read_certs(p);
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_folder_means_defaults_and_names_cannot_escape() {
        let d = tempfile::tempdir().unwrap();
        assert!(RegistryTls::load(d.path(), "example.com:5000")
            .unwrap()
            .is_default());
        std::fs::create_dir(d.path().join("x")).unwrap();
        std::fs::write(d.path().join("x/ca.crt"), "junk").unwrap();
        assert!(RegistryTls::load(d.path().join("y").as_path(), "../x")
            .unwrap()
            .is_default());
    }

    #[test]
    fn refuses_junk_and_unpaired_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("reg:1");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("ca.crt"), "not pem").unwrap();
        let e = RegistryTls::load(d.path(), "reg:1").unwrap_err();
        assert!(e.to_string().contains("is not a PEM certificate"), "{e}");
        std::fs::remove_file(r.join("ca.crt")).unwrap();
        std::fs::write(r.join("client.key"), "k").unwrap();
        let e = RegistryTls::load(d.path(), "reg:1").unwrap_err();
        assert!(
            e.to_string().contains("has no matching key")
                || e.to_string().contains("client certificate"),
            "{e}"
        );
    }
}
