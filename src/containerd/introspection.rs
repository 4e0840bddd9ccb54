//! The Introspection service: the plugins the daemon runs (Plugins, `ctr plugins ls`) and the
//! server's identity (Server: UUID, pid, pid namespace).

use std::sync::Arc;

use containerd_client::services::v1::{
    Plugin, PluginInfoRequest, PluginsRequest, PluginsResponse, ServerResponse,
};

use super::error::Error;
use super::filters::{Fields, Filter};
use super::{Daemon, Services};

struct PluginFields<'a>(&'a Plugin);

impl Fields for PluginFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "type" => Some(self.0.r#type.clone()),
            [f] if f == "id" => Some(self.0.id.clone()),
            _ => None,
        }
    }
}

fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Registers `containerd.services.introspection.v1.Introspection`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.introspection.v1.Introspection/";
    let d = daemon.clone();
    s.router.unary(
        &format!("{S}Plugins"),
        move |req: tonic::Request<PluginsRequest>| {
            let d = d.clone();
            async move {
                let filter = Filter::parse(&req.into_inner().filters)?;
                Ok(PluginsResponse {
                    plugins: d
                        .plugins()
                        .iter()
                        .filter(|p| filter.matches(&PluginFields(p)))
                        .cloned()
                        .collect(),
                })
            }
        },
    );
    let d = daemon.clone();
    s.router
        .unary(&format!("{S}Server"), move |_req: tonic::Request<()>| {
            let d = d.clone();
            async move {
                Ok(ServerResponse {
                    uuid: d.uuid().to_string(),
                    pid: u64::from(std::process::id()),
                    pidns: pid_namespace(),
                    deprecations: Vec::new(),
                })
            }
        });
    s.router.unary(
        &format!("{S}PluginInfo"),
        |req: tonic::Request<PluginInfoRequest>| async move {
            let r = req.into_inner();
            Err::<containerd_client::services::v1::PluginInfoResponse, _>(Error::NotImplemented(
                format!("plugin info for {}.{}", r.r#type, r.id),
            ))
        },
    );
    s.plugin("io.containerd.grpc.v1", "introspection");
}
