//! The gRPC server of refeng-containerd: a table of method paths
//! (`/containerd.services.<x>.v1.<Service>/<Method>`) to handlers, served over HTTP/2 on the
//! unix socket. containerd-client generates message types and clients only, so the routing that
//! tonic-build would generate for a server is this table; the framing, the codec and the status
//! trailers are tonic's own (`tonic::server::Grpc` with prost's codec).
//!
//! A service registers its methods with [`Router::unary`], [`Router::server_streaming`],
//! [`Router::client_streaming`] or [`Router::streaming`]; handlers get a `tonic::Request` and
//! return `Result<_, Error>`, and [`namespace`] reads the request's `containerd-namespace`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;
use tokio_stream::{Stream, StreamExt};
use tonic::server::Grpc;
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use super::error::Error;

/// The request as hyper hands it over.
pub type HttpRequest = http::Request<hyper::body::Incoming>;
/// The response tonic's server framing builds.
pub type HttpResponse = http::Response<tonic::body::Body>;
/// A boxed stream of response messages, for server-streaming handlers.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(HttpRequest) -> BoxFuture<HttpResponse> + Send + Sync>;

/// The metadata key containerd's clients name the namespace of a request with.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The largest message a client may send or receive; containerd's server sets 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;

/// The methods the server answers, by full path.
#[derive(Clone, Default)]
pub struct Router {
    methods: HashMap<String, Handler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Router").field("methods", &names).finish()
    }
}

fn grpc<Resp, Req>() -> Grpc<ProstCodec<Resp, Req>>
where
    Resp: prost::Message + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
{
    Grpc::new(ProstCodec::default())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `path` has a handler.
    pub fn has(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// The full paths of all registered methods, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.methods.keys().cloned().collect();
        v.sort();
        v
    }

    fn insert(&mut self, path: &str, handler: Handler) {
        let previous = self.methods.insert(path.to_string(), handler);
        assert!(previous.is_none(), "gRPC method {path} registered twice");
    }

    /// Registers a unary method.
    pub fn unary<Req, Resp, F, Fut>(&mut self, path: &str, f: F)
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    {
        self.insert(
            path,
            Arc::new(move |req: HttpRequest| {
                let f = f.clone();
                Box::pin(async move {
                    let svc = tower::service_fn(move |r: tonic::Request<Req>| {
                        let fut = f(r);
                        async move { fut.await.map(tonic::Response::new).map_err(Status::from) }
                    });
                    grpc::<Resp, Req>().unary(svc, req).await
                })
            }),
        );
    }

    /// Registers a method that answers one request with a stream of messages.
    pub fn server_streaming<Req, Resp, F, Fut>(&mut self, path: &str, f: F)
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<ResponseStream<Resp>, Error>> + Send + 'static,
    {
        self.insert(
            path,
            Arc::new(move |req: HttpRequest| {
                let f = f.clone();
                Box::pin(async move {
                    let svc = tower::service_fn(move |r: tonic::Request<Req>| {
                        let fut = f(r);
                        async move { fut.await.map(tonic::Response::new).map_err(Status::from) }
                    });
                    grpc::<Resp, Req>().server_streaming(svc, req).await
                })
            }),
        );
    }

    /// Registers a method that reads a stream of requests and answers once.
    pub fn client_streaming<Req, Resp, F, Fut>(&mut self, path: &str, f: F)
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(tonic::Request<Streaming<Req>>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    {
        self.insert(
            path,
            Arc::new(move |req: HttpRequest| {
                let f = f.clone();
                Box::pin(async move {
                    let svc = tower::service_fn(move |r: tonic::Request<Streaming<Req>>| {
                        let fut = f(r);
                        async move { fut.await.map(tonic::Response::new).map_err(Status::from) }
                    });
                    grpc::<Resp, Req>().client_streaming(svc, req).await
                })
            }),
        );
    }

    /// Registers a bidirectional streaming method.
    pub fn streaming<Req, Resp, F, Fut>(&mut self, path: &str, f: F)
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(tonic::Request<Streaming<Req>>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<ResponseStream<Resp>, Error>> + Send + 'static,
    {
        self.insert(
            path,
            Arc::new(move |req: HttpRequest| {
                let f = f.clone();
                Box::pin(async move {
                    let svc = tower::service_fn(move |r: tonic::Request<Streaming<Req>>| {
                        let fut = f(r);
                        async move { fut.await.map(tonic::Response::new).map_err(Status::from) }
                    });
                    grpc::<Resp, Req>().streaming(svc, req).await
                })
            }),
        );
    }

    async fn dispatch(&self, req: HttpRequest) -> HttpResponse {
        let path = req.uri().path().to_string();
        match self.methods.get(&path) {
            Some(handler) => {
                tracing::debug!(method = %path, "request");
                handler(req).await
            }
            None => {
                tracing::debug!(method = %path, "unknown method");
                Status::unimplemented(format!("unknown method {path}")).into_http()
            }
        }
    }

    /// Serves the table on `listener` until the task is dropped; each connection is served by
    /// its own task, so one slow client never holds up another.
    ///
    /// # Errors
    /// Fails only when accepting on the socket fails.
    pub async fn serve(self, listener: UnixListener) -> std::io::Result<()> {
        let router = Arc::new(self);
        loop {
            let (stream, _) = listener.accept().await?;
            let router = router.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: HttpRequest| {
                    let router = router.clone();
                    async move { Ok::<_, Infallible>(router.dispatch(req).await) }
                });
                if let Err(err) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %err, "connection ended");
                }
            });
        }
    }
}

/// Binds the unix socket at `path` (replacing a stale one, creating the parent directory).
///
/// # Errors
/// Fails when the directory cannot be created or the socket not bound.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// The namespace a request is for, from its `containerd-namespace` metadata, validated as
/// containerd validates namespace names.
///
/// # Errors
/// `FailedPrecondition` when the header is missing (containerd's "namespace is required"),
/// `InvalidArgument` when it is not a valid namespace name.
pub fn namespace<T>(req: &tonic::Request<T>) -> Result<String, Error> {
    let value = req
        .metadata()
        .get(NAMESPACE_HEADER)
        .ok_or_else(|| Error::FailedPrecondition("namespace is required".into()))?;
    let ns = value
        .to_str()
        .map_err(|_| Error::InvalidArgument("namespace is not valid text".into()))?;
    super::identifiers::validate(ns).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("namespace validation: {m}")),
        other => other,
    })?;
    Ok(ns.to_string())
}

/// The metadata key containerd's clients name the lease of a request with.
pub const LEASE_HEADER: &str = "containerd-lease";

/// The lease a request works under (`containerd-lease`), if any.
pub fn lease<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata()
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A stream from a vector of ready messages.
pub fn stream_of<T: Send + 'static>(items: Vec<T>) -> ResponseStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

/// A stream of the messages a channel receives, ending when the sender is dropped.
pub fn stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
) -> ResponseStream<T> {
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(|x| x))
}
