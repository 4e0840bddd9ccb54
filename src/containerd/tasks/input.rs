//! The checks on what the task side decodes from outside, before any shim is asked: the Tasks
//! requests of clients (ids, exec ids, filters, rootfs mounts, the exec process spec in `Any`),
//! and what shims and the disk hand back (a shim's `start` output, the task record, a forwarded
//! exit event). Reachable by name so that the fuzz target
//! (`fuzz/fuzz_targets/containerd_task_inputs.rs`) drives the same code the service runs.

use containerd_client::services::v1::{
    CreateTaskRequest, ExecProcessRequest, KillRequest, ListTasksRequest, MetricsRequest,
    UpdateTaskRequest,
};
use prost::Message;

use crate::containerd::error::Error;
use crate::containerd::filters::Filter;

/// The inputs [`check`] knows: Tasks methods by gRPC path, then the shim and disk inputs.
pub const INPUTS: &[&str] = &[
    "/containerd.services.tasks.v1.Tasks/Create",
    "/containerd.services.tasks.v1.Tasks/Exec",
    "/containerd.services.tasks.v1.Tasks/List",
    "/containerd.services.tasks.v1.Tasks/Metrics",
    "/containerd.services.tasks.v1.Tasks/Kill",
    "/containerd.services.tasks.v1.Tasks/Update",
    "shim start output",
    "task record",
    "forwarded exit event",
];

/// The type URL of an exec's process spec, as containerd's client marshals it.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Error> {
    M::decode(body).map_err(|e| Error::InvalidArgument(format!("malformed request: {e}")))
}

fn id(what: &str, value: &str) -> Result<(), Error> {
    super::bundle::validate_name("id", value)
        .map_err(|_| Error::InvalidArgument(format!("{what} {value:?} is not a valid identifier")))
}

/// Checks a Create request.
///
/// # Errors
/// `InvalidArgument` for a bad container id or a rootfs mount without a type or source;
/// `NotImplemented` for a checkpoint.
pub fn check_create(r: &CreateTaskRequest) -> Result<(), Error> {
    id("container id", &r.container_id)?;
    if r.checkpoint.is_some() {
        return Err(Error::NotImplemented(
            "creating a task from a checkpoint (refeng has no CRIU support)".into(),
        ));
    }
    for (i, m) in r.rootfs.iter().enumerate() {
        if m.r#type.is_empty() || m.source.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "rootfs mount {i} needs a type and a source (type {:?}, source {:?})",
                m.r#type, m.source
            )));
        }
    }
    Ok(())
}

/// Checks an Exec request: its ids, and that its spec is an OCI process (JSON).
///
/// # Errors
/// `InvalidArgument` naming what is wrong.
pub fn check_exec(r: &ExecProcessRequest) -> Result<(), Error> {
    id("container id", &r.container_id)?;
    id("exec id", &r.exec_id)?;
    let spec = r
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("exec needs a process spec".into()))?;
    if !spec.type_url.is_empty() && spec.type_url != PROCESS_TYPE_URL {
        return Err(Error::InvalidArgument(format!(
            "exec process spec of type {:?} (expected {PROCESS_TYPE_URL})",
            spec.type_url
        )));
    }
    let process: oci_spec::runtime::Process = serde_json::from_slice(&spec.value)
        .map_err(|e| Error::InvalidArgument(format!("exec process spec: {e}")))?;
    if process.args().as_ref().is_none_or(Vec::is_empty) {
        return Err(Error::InvalidArgument(
            "exec process spec has no args".into(),
        ));
    }
    Ok(())
}

/// Checks a request of `method` (or another input of [`INPUTS`]) in `body`.
///
/// # Errors
/// `InvalidArgument` (or the class the service gives) naming what is wrong; `NotImplemented`
/// for a name this table does not know.
pub fn check(input: &str, body: &[u8]) -> Result<(), Error> {
    match INPUTS.iter().position(|m| *m == input) {
        Some(0) => check_create(&decode(body)?),
        Some(1) => check_exec(&decode(body)?),
        Some(2) => Filter::parse(&[decode::<ListTasksRequest>(body)?.filter]).map(drop),
        Some(3) => Filter::parse(&decode::<MetricsRequest>(body)?.filters).map(drop),
        Some(4) => {
            let k = decode::<KillRequest>(body)?;
            id("container id", &k.container_id)?;
            if k.signal == 0 || k.signal > 64 {
                return Err(Error::InvalidArgument(format!(
                    "signal {} is not a signal",
                    k.signal
                )));
            }
            Ok(())
        }
        Some(5) => id(
            "container id",
            &decode::<UpdateTaskRequest>(body)?.container_id,
        ),
        Some(6) => super::shim::parse_address(body)
            .map(drop)
            .ok_or_else(|| Error::InvalidArgument("no address in the shim's output".into())),
        Some(7) => super::bundle::parse_record(body)
            .map(drop)
            .map_err(|e| Error::InvalidArgument(e.to_string())),
        Some(8) => super::manager::exit_of_envelope(body)
            .map(drop)
            .ok_or_else(|| Error::InvalidArgument("not an exit event".into())),
        _ => Err(Error::NotImplemented(format!("no check for {input:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(spec: &[u8]) -> ExecProcessRequest {
        ExecProcessRequest {
            container_id: "c".into(),
            exec_id: "e".into(),
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.into(),
                value: spec.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exec_specs_must_be_processes_with_args() {
        check_exec(&exec(
            br#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        ))
        .unwrap();
        for bad in [&b"{}"[..], b"[", br#"{"args":[]}"#, br#"{"args":"x"}"#] {
            assert!(
                matches!(check_exec(&exec(bad)), Err(Error::InvalidArgument(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut r = exec(br#"{"args":["true"]}"#);
        r.exec_id = "../x".into();
        assert!(check_exec(&r).is_err());
    }

    #[test]
    fn every_input_has_a_check_and_garbage_is_refused() {
        for input in INPUTS {
            assert!(check(input, b"\xff\xff\xff").is_err(), "{input}");
        }
        assert!(matches!(check("nope", b""), Err(Error::NotImplemented(_))));
    }
}
