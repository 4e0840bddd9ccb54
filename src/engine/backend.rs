//! The engine's only way to containerd: its gRPC API over the unix socket, through
//! containerd-client's generated clients, with every request tagged with the engine's namespace.
//! The same code drives refeng-containerd and the real containerd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{ListImagesRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use tonic::transport::{Channel, Endpoint};

use super::error::ApiError;

/// The metadata key containerd reads the namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// A connection to containerd; cloning shares it.
#[derive(Debug, Clone)]
pub struct Backend {
    channel: Channel,
    namespace: String,
    socket: PathBuf,
}

/// What containerd says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdVersion {
    /// Its version.
    pub version: String,
    /// Its revision (git commit).
    pub revision: String,
}

impl Backend {
    /// A lazily connecting channel to the socket: it (re)connects on each call while containerd
    /// is down, so a restarted containerd is picked up without restarting refengd.
    ///
    /// # Errors
    /// `Internal` only when the endpoint cannot be built.
    pub fn new(socket: &Path, namespace: &str) -> Result<Backend, ApiError> {
        let path = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| ApiError::internal("containerd endpoint", e))?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Ok(Backend {
            channel,
            namespace: namespace.into(),
            socket: socket.into(),
        })
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The engine's containerd namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request tagged with the engine's namespace.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert(NAMESPACE_HEADER, v);
        }
        req
    }

    /// The channel, for the service clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Version.Version.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn version(&self) -> Result<ContainerdVersion, ApiError> {
        let r = VersionClient::new(self.channel())
            .version(tonic::Request::new(()))
            .await
            .map_err(|s| ApiError::from_grpc("containerd version", &s))?
            .into_inner();
        Ok(ContainerdVersion {
            version: r.version,
            revision: r.revision,
        })
    }

    /// Waits until containerd answers Version, for up to `timeout`.
    ///
    /// # Errors
    /// `Unavailable` with the last failure.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<ContainerdVersion, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.version().await {
                Ok(v) => return Ok(v),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(ApiError::Unavailable(format!(
                        "containerd at {} did not answer: {e}",
                        self.socket.display()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// How many images the engine's namespace holds. A containerd without an Images service
    /// holds none.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn image_count(&self) -> Result<usize, ApiError> {
        match ImagesClient::new(self.channel())
            .list(self.request(ListImagesRequest::default()))
            .await
        {
            Ok(r) => Ok(r.into_inner().images.len()),
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(0),
            Err(s) => Err(ApiError::from_grpc("listing images", &s)),
        }
    }

    /// Events.Subscribe to the engine's namespace.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn subscribe(&self) -> Result<tonic::Streaming<Envelope>, ApiError> {
        let req = SubscribeRequest {
            filters: vec![format!("namespace=={}", self.namespace)],
        };
        EventsClient::new(self.channel())
            .subscribe(tonic::Request::new(req))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ApiError::from_grpc("subscribing to containerd events", &s))
    }
}
