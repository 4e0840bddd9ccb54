//! Runtime options: which OCI runtime binary the shim drives and where that runtime keeps its
//! state, decoded from the `options` containerd hands over (the runc shim's protobuf options or a
//! `runtimeoptions` config path), and persisted in the bundle for the `delete` subcommand.

use std::path::{Path, PathBuf};

use protobuf::well_known_types::any::Any;
use protobuf::CodedInputStream;
use serde::{Deserialize, Serialize};

/// The runtime binary used when no option names one.
pub const DEFAULT_BINARY: &str = "refeng-runc";
/// Where the runtime's state lives by default; the namespace is appended.
pub const DEFAULT_ROOT: &str = "/run/refeng/shim-runtime";
/// The file in the bundle that keeps the options for the `delete` subcommand.
pub const OPTIONS_FILE: &str = "refeng-shim-options.json";

/// containerd's runc shim options (`containerd.runc.v1.Options`), as `ctr --runc-binary` sends.
const RUNC_V1_OPTIONS: &str = "containerd.runc.v1.Options";
/// The CRI/ctr options that only name a config file (`runtimeoptions.v1.Options`).
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";
/// The runtime v1 shim's options (`containerd.linux.runc.RuncOptions`).
const LINUX_RUNC_OPTIONS: &str = "containerd.linux.runc.RuncOptions";

/// The options the shim honours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// The OCI runtime binary (`BinaryName`); a bare name is looked up on `PATH`.
    #[serde(default)]
    pub binary_name: Option<String>,
    /// The runtime's `--root` (`Root`).
    #[serde(default)]
    pub root: Option<PathBuf>,
}

/// Why runtime options could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// malformed protobuf in runtime options of type {type_url}
    #[error("malformed protobuf in runtime options of type {type_url}")]
    Protobuf {
        type_url: String,
        #[source]
        source: protobuf::Error,
    },
    /// runtime options of type {0} are not supported
    #[error("runtime options of type {0} are not supported")]
    Unsupported(String),
    /// cannot read runtime config file {path}
    #[error("cannot read runtime config file {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// malformed runtime config file {path}
    #[error("malformed runtime config file {path}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// cannot keep the runtime options
    #[error("cannot keep the runtime options")]
    Write(#[source] crate::sys::durable::DurableWriteError),
    /// cannot read {path}
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The keys of a runtime config file, spelled as containerd's CRI runc options are.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(rename = "BinaryName", default)]
    binary_name: Option<String>,
    #[serde(rename = "Root", default)]
    root: Option<String>,
}

impl RuntimeOptions {
    /// Decodes the `options` Any of a create request or of the `start` subcommand's stdin.
    /// An empty type URL means "no options".
    ///
    /// # Errors
    /// [`OptionsError::Protobuf`] for a malformed message, [`OptionsError::Unsupported`] for an
    /// unknown type, and the config-file errors when a `runtimeoptions` path cannot be used.
    pub fn from_any(any: &Any) -> Result<Self, OptionsError> {
        let type_url = any
            .type_url
            .rsplit_once('/')
            .map_or(any.type_url.as_str(), |(_, name)| name);
        match type_url {
            "" => Ok(Self::default()),
            RUNC_V1_OPTIONS => {
                let fields = string_fields(&any.value, &[6, 7], &any.type_url)?;
                Ok(Self {
                    binary_name: fields[0].clone(),
                    root: fields[1].clone().map(PathBuf::from),
                })
            }
            LINUX_RUNC_OPTIONS => {
                let fields = string_fields(&any.value, &[1, 2], &any.type_url)?;
                Ok(Self {
                    binary_name: fields[0].clone(),
                    root: fields[1].clone().map(PathBuf::from),
                })
            }
            RUNTIME_OPTIONS => {
                let fields = string_fields(&any.value, &[2], &any.type_url)?;
                match &fields[0] {
                    Some(path) => Self::from_config_file(Path::new(path)),
                    None => Ok(Self::default()),
                }
            }
            other => Err(OptionsError::Unsupported(other.to_string())),
        }
    }

    /// Reads a TOML runtime config file with `BinaryName` and `Root` keys.
    ///
    /// # Errors
    /// [`OptionsError::ConfigRead`] or [`OptionsError::ConfigParse`].
    pub fn from_config_file(path: &Path) -> Result<Self, OptionsError> {
        let text = std::fs::read_to_string(path).map_err(|source| OptionsError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ConfigFile =
            toml::from_str(&text).map_err(|source| OptionsError::ConfigParse {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        Ok(Self {
            binary_name: file.binary_name.filter(|s| !s.is_empty()),
            root: file.root.filter(|s| !s.is_empty()).map(PathBuf::from),
        })
    }

    /// The runtime binary to run.
    pub fn binary(&self) -> &str {
        self.binary_name.as_deref().unwrap_or(DEFAULT_BINARY)
    }

    /// The runtime's state root for containers of `namespace`.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| Path::new(DEFAULT_ROOT).join(namespace))
    }

    /// Keeps these options in `bundle`, so the `delete` subcommand of a later shim process (after
    /// a crash too) drives the same runtime; written durably with a unique temp name, since two
    /// retried starts of one task may persist at once ([`crate::sys::durable`]).
    ///
    /// # Errors
    /// [`OptionsError::Write`] when the file cannot be written.
    pub fn persist(&self, bundle: &Path) -> Result<(), OptionsError> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        crate::sys::durable::write(&bundle.join(OPTIONS_FILE), 0o644, &json)
            .map_err(OptionsError::Write)
    }

    /// Loads what [`RuntimeOptions::persist`] wrote; defaults when the file is absent.
    ///
    /// # Errors
    /// [`OptionsError::Read`] when the file exists but cannot be read or parsed.
    pub fn load(bundle: &Path) -> Result<Self, OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OptionsError::Read {
                path,
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(OptionsError::Read { path, source }),
        }
    }
}

/// Reads the string fields numbered `wanted` from a protobuf message, skipping every other field,
/// so that the shim needs no generated code for the runc options it honours two fields of.
fn string_fields(
    bytes: &[u8],
    wanted: &[u32],
    type_url: &str,
) -> Result<Vec<Option<String>>, OptionsError> {
    let err = |source| OptionsError::Protobuf {
        type_url: type_url.to_string(),
        source,
    };
    let mut found = vec![None; wanted.len()];
    let mut input = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(err)? {
        let (field, wire) = (tag >> 3, tag & 7);
        match wanted.iter().position(|w| *w == field) {
            Some(i) if wire == 2 => found[i] = Some(input.read_string().map_err(err)?),
            _ => {
                let wire_type = protobuf::rt::WireType::new(wire).ok_or_else(|| {
                    err(protobuf::Error::from(std::io::Error::other(format!(
                        "unknown wire type {wire}"
                    ))))
                })?;
                input.skip_field(wire_type).map_err(err)?;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::CodedOutputStream;

    fn any(type_url: &str, fields: &[(u32, &str)]) -> Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_bool(1, true).unwrap();
            for (n, s) in fields {
                out.write_string(*n, s).unwrap();
            }
            out.write_uint32(4, 1000).unwrap();
            out.flush().unwrap();
        }
        Any {
            type_url: type_url.to_string(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn runc_options_give_binary_and_root() {
        let opts = RuntimeOptions::from_any(&any(
            "containerd.runc.v1.Options",
            &[(6, "/usr/sbin/runc"), (7, "/run/x")],
        ))
        .unwrap();
        assert_eq!(opts.binary(), "/usr/sbin/runc");
        assert_eq!(opts.root_for("default"), PathBuf::from("/run/x"));
    }

    #[test]
    fn empty_options_give_defaults() {
        let opts = RuntimeOptions::from_any(&Any::default()).unwrap();
        assert_eq!(opts.binary(), DEFAULT_BINARY);
        assert_eq!(
            opts.root_for("ns"),
            PathBuf::from("/run/refeng/shim-runtime/ns")
        );
    }

    #[test]
    fn config_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.toml");
        std::fs::write(
            &path,
            "BinaryName = \"/usr/sbin/runc\"\nRoot = \"/run/r\"\n",
        )
        .unwrap();
        let opts = RuntimeOptions::from_any(&any(
            "runtimeoptions.v1.Options",
            &[(1, "x"), (2, path.to_str().unwrap())],
        ))
        .unwrap();
        assert_eq!(opts.binary(), "/usr/sbin/runc");
        opts.persist(dir.path()).unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()).unwrap(), opts);
    }

    #[test]
    fn config_file_with_the_other_cri_keys_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.toml");
        // The other keys containerd's CRI runc options have, comments, a literal string and a
        // table after the top-level keys.
        std::fs::write(
            &path,
            "# runc options\nSystemdCgroup = true\nNoPivotRoot = false\nIoUid = 0\n\
             BinaryName = '/usr/local/bin/runc' # local build\nRoot = \"\"\n\
             CriuImagePath = \"\"\n[extra]\nBinaryName = \"ignored\"\n",
        )
        .unwrap();
        let opts = RuntimeOptions::from_config_file(&path).unwrap();
        assert_eq!(opts.binary(), "/usr/local/bin/runc");
        assert_eq!(opts.root, None, "an empty Root means the default");
    }

    #[test]
    fn malformed_config_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.toml");
        for text in [
            "BinaryName = \"unterminated\n",
            "BinaryName = 5\n",
            "Root = [\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let err = RuntimeOptions::from_config_file(&path).unwrap_err();
            assert!(
                matches!(err, OptionsError::ConfigParse { .. }),
                "{text:?}: {err}"
            );
        }
    }

    /// Two shim `start`s of one task (containerd retries) persist at the same moment: the file
    /// is always one whole version, and no writer fails or leaves a temp file behind. The fixed
    /// temp name this replaced made one writer's rename take the other's half-written file, or
    /// fail with ENOENT.
    #[test]
    fn concurrent_persists_never_collide_or_tear() {
        let dir = tempfile::tempdir().unwrap();
        let versions: Vec<RuntimeOptions> = (0..4)
            .map(|i| RuntimeOptions {
                binary_name: Some(format!("/opt/runtime-{i}/{}", "x".repeat(4096 * i))),
                root: Some(PathBuf::from(format!("/run/root-{i}"))),
            })
            .collect();
        std::thread::scope(|s| {
            for v in &versions {
                let bundle = dir.path();
                s.spawn(move || {
                    for _ in 0..200 {
                        v.persist(bundle).expect("persist");
                    }
                });
            }
            let bundle = dir.path();
            let versions = &versions;
            s.spawn(move || {
                for _ in 0..400 {
                    let got = RuntimeOptions::load(bundle).expect("load");
                    assert!(
                        got == RuntimeOptions::default() || versions.contains(&got),
                        "torn options file: {got:?}"
                    );
                }
            });
        });
        assert!(versions.contains(&RuntimeOptions::load(dir.path()).unwrap()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [OPTIONS_FILE],
            "nothing but the options file is left"
        );
    }

    #[test]
    fn unknown_type_is_refused() {
        let err = RuntimeOptions::from_any(&any("x.Other", &[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "runtime options of type x.Other are not supported"
        );
    }
}
