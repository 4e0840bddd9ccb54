//! Loading and validating a bundle's `config.json` (runtime-spec: config.md, config-linux.md).
//!
//! `oci-spec` gives the types; this module checks what the types cannot: required fields, path
//! shapes, namespace and mapping consistency, and every field that refeng does not implement yet,
//! which is refused by name instead of being silently ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Largest config.json we read into memory; real ones are a few tens of KiB.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// Errors of loading or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// the config file could not be read
    #[error("cannot read {path}")]
    Read {
        /// The config.json path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// the config is larger than the limit
    #[error("config is {size} bytes, more than the {MAX_CONFIG_BYTES} bytes allowed")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// the config is not valid JSON for the runtime-spec schema
    #[error("config.json is not a valid runtime-spec config: {0}")]
    Parse(#[source] serde_json::Error),
    /// the config breaks a rule of the runtime-spec
    #[error("invalid config: {0}")]
    Invalid(String),
    /// the config sets a field that refeng-runc does not implement
    #[error("unsupported config field {field}: {why}")]
    Unsupported {
        /// JSON path of the field.
        field: &'static str,
        /// Why it is refused.
        why: &'static str,
    },
}

/// Reads `config.json` from `bundle` and validates it.
///
/// # Errors
/// Fails if the file cannot be read, is too large, does not parse, or breaks a rule.
pub fn load_bundle_config(bundle: &Path) -> Result<Spec, ConfigError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_config(&bytes)
}

/// Parses and validates a config from bytes. Never panics, whatever the input.
///
/// # Errors
/// Fails if the input is too large, does not parse, or breaks a rule.
pub fn parse_config(bytes: &[u8]) -> Result<Spec, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { size: bytes.len() });
    }
    let mut json: serde_json::Value = serde_json::from_slice(bytes).map_err(ConfigError::Parse)?;
    drop_unknown_capabilities(&mut json);
    let mut spec: Spec = serde_json::from_value(json).map_err(ConfigError::Parse)?;
    absolute_mount_destinations(&mut spec);
    validate(&spec)?;
    Ok(spec)
}

/// config.md "Capabilities": a capability that cannot be mapped to the kernel MUST be logged as
/// a warning and SHOULD NOT fail the container. oci-spec's enum refuses unknown names, so they
/// are taken out (with the warning) before the typed parse.
fn drop_unknown_capabilities(json: &mut serde_json::Value) {
    let Some(caps) = json
        .get_mut("process")
        .and_then(|p| p.get_mut("capabilities"))
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    for (set, list) in caps.iter_mut() {
        if let Some(list) = list.as_array_mut() {
            list.retain(|name| {
                let known = serde_json::from_value::<oci_spec::runtime::Capability>(name.clone())
                    .is_ok();
                if !known {
                    tracing::warn!(capability = %name, set = %set, "unknown capability is not granted");
                }
                known
            });
        }
    }
}

/// config.md "Mounts": a relative destination is deprecated but MUST be read as relative to "/".
fn absolute_mount_destinations(spec: &mut Spec) {
    for mount in spec.mounts_mut().iter_mut().flatten() {
        if !mount.destination().is_absolute() {
            let absolute = Path::new("/").join(mount.destination());
            mount.set_destination(absolute);
        }
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Checks the rules of the runtime-spec that the types do not encode, and refuses fields that
/// refeng-runc does not implement.
///
/// # Errors
/// The first rule broken, naming the field.
pub fn validate(spec: &Spec) -> Result<(), ConfigError> {
    // config.md "Specification version": MUST be SemVer; we implement major version 1.
    let version = spec.version();
    let major = version.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(invalid(format!(
            "ociVersion {version:?} is not a 1.x runtime-spec version"
        )));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root is required on linux"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path is empty"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process is required to create a container"))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(invalid("process.args must name a program")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        )));
    }
    if let Some(env) = process.env() {
        if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.contains('\0')) {
            return Err(invalid(format!(
                "process.env entry {bad:?} is not KEY=value"
            )));
        }
    }
    if process.console_size().is_some() && process.terminal() != Some(true) {
        return Err(invalid(
            "process.consoleSize is set but process.terminal is not",
        ));
    }
    if let Some(profile) = process.apparmor_profile() {
        if !profile.is_empty() {
            return Err(ConfigError::Unsupported {
                field: "process.apparmorProfile",
                why: "AppArmor is not supported by refeng-runc",
            });
        }
    }
    if let Some(label) = process.selinux_label() {
        if !label.is_empty() {
            return Err(ConfigError::Unsupported {
                field: "process.selinuxLabel",
                why: "SELinux is not supported by refeng-runc",
            });
        }
    }
    if process.io_priority().is_some() {
        return Err(ConfigError::Unsupported {
            field: "process.ioPriority",
            why: "not implemented yet",
        });
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(ConfigError::Unsupported {
            field: "process.execCPUAffinity",
            why: "not implemented yet",
        });
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = HashSet::new();
        for rl in rlimits {
            if !seen.insert(format!("{:?}", rl.typ())) {
                return Err(invalid(format!("process.rlimits has {:?} twice", rl.typ())));
            }
            if rl.soft() > rl.hard() {
                return Err(invalid(format!(
                    "process.rlimits {:?}: soft limit {} is above hard limit {}",
                    rl.typ(),
                    rl.soft(),
                    rl.hard()
                )));
            }
        }
    }
    for mount in spec.mounts().iter().flatten() {
        if mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
            return Err(ConfigError::Unsupported {
                field: "mounts[].uidMappings",
                why: "id-mapped mounts are not implemented yet",
            });
        }
    }
    if let Some(hooks) = spec.hooks() {
        #[allow(deprecated)]
        let all = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
            hooks.poststart(),
            hooks.poststop(),
        ];
        for hook in all.into_iter().flatten().flatten() {
            if !hook.path().is_absolute() {
                return Err(invalid(format!(
                    "hook path {:?} must be absolute",
                    hook.path()
                )));
            }
            if matches!(hook.timeout(), Some(t) if t <= 0) {
                return Err(invalid(format!(
                    "hook {:?}: timeout must be greater than zero",
                    hook.path()
                )));
            }
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux is required"))?;
    let mut types = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !types.insert(ns.typ()) {
            return Err(invalid(format!("namespace {:?} is listed twice", ns.typ())));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(invalid(format!(
                    "namespace {:?} path {path:?} must be absolute",
                    ns.typ()
                )));
            }
        }
    }
    let new_userns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !has_maps {
        return Err(invalid(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    if has_maps && !new_userns {
        return Err(invalid(
            "linux.uidMappings/gidMappings are set but no new user namespace is",
        ));
    }
    if linux.time_offsets().is_some()
        && !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::Time && ns.path().is_none())
    {
        return Err(invalid("linux.timeOffsets needs a new time namespace"));
    }
    if linux.sysctl().is_some() {
        for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
            if key.is_empty() || key.contains("..") || key.starts_with('/') {
                return Err(invalid(format!("sysctl key {key:?} is not valid")));
            }
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        const KNOWN: [&str; 9] = [
            "",
            "shared",
            "slave",
            "private",
            "unbindable",
            "rshared",
            "rslave",
            "rprivate",
            "runbindable",
        ];
        if !KNOWN.contains(&prop.as_str()) {
            return Err(invalid(format!(
                "linux.rootfsPropagation {prop:?} is not known"
            )));
        }
    }
    let unsupported: [(bool, &'static str, &'static str); 4] = [
        (
            linux.intel_rdt().is_some(),
            "linux.intelRdt",
            "Intel RDT is not supported",
        ),
        (
            linux.memory_policy().is_some(),
            "linux.memoryPolicy",
            "not implemented yet",
        ),
        (
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
            "linux.netDevices",
            "not implemented yet",
        ),
        (
            linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()),
            "linux.mountLabel",
            "SELinux is not supported by refeng-runc",
        ),
    ];
    for (set, field, why) in unsupported {
        if set {
            return Err(ConfigError::Unsupported { field, why });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_json() -> serde_json::Value {
        serde_json::to_value(Spec::default()).expect("default spec serializes")
    }

    #[test]
    fn default_spec_is_valid() {
        let bytes = serde_json::to_vec(&default_json()).unwrap();
        parse_config(&bytes).expect("runc's default spec is valid");
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(parse_config(b"{"), Err(ConfigError::Parse(_))));
        assert!(parse_config(b"[]").is_err());
        assert!(matches!(parse_config(b"\xff"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn rules_are_checked() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("ociVersion", serde_json::json!("2.0.0")),
            (
                "process",
                serde_json::json!({"cwd": "/", "user": {"uid":0,"gid":0}, "args": []}),
            ),
        ];
        for (key, value) in cases {
            let mut json = default_json();
            json[key] = value;
            let err = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid(_)), "{key}: {err}");
        }
        let mut json = default_json();
        json["process"]["cwd"] = serde_json::json!("relative");
        assert!(parse_config(&serde_json::to_vec(&json).unwrap()).is_err());
        let mut json = default_json();
        json["mounts"][0]["destination"] = serde_json::json!("mnt/relative");
        let spec = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(
            spec.mounts().as_ref().unwrap()[0].destination(),
            Path::new("/mnt/relative")
        );
        let mut json = default_json();
        json["process"]["capabilities"]["bounding"] =
            serde_json::json!(["CAP_KILL", "CAP_NO_SUCH_THING"]);
        let spec = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        let mut json = default_json();
        json["linux"]["namespaces"] = serde_json::json!([{"type":"pid"},{"type":"pid"}]);
        let err = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let mut json = default_json();
        json["linux"]["namespaces"] = serde_json::json!([{"type":"user"}]);
        let err = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("uidMappings"), "{err}");
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let mut json = default_json();
        json["linux"]["intelRdt"] = serde_json::json!({"closID": "x"});
        let err = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("linux.intelRdt"), "{err}");
        let mut json = default_json();
        json["process"]["apparmorProfile"] = serde_json::json!("docker-default");
        let err = parse_config(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("process.apparmorProfile"), "{err}");
    }
}
