//! The Engine API over HTTP/1.1 on unix sockets: API-version prefixes (`/v1.44/...` and
//! unversioned paths), dockerd's common headers, the route table, and error answers in
//! dockerd's shape. Handlers live beside the state they work on; this module only reads the
//! request and writes the answer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::containers::routes::Call;
use super::error::ApiError;
use super::events::{self, Event};
use super::filters::Filters;
use super::system::{API_VERSION, MIN_API_VERSION, VERSION};
use super::Engine;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;
/// The request as hyper hands it over.
pub type Request = http::Request<Incoming>;

/// An API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses `1.44`.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        if a.is_empty() || b.is_empty() || !(a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Splits `/v1.44/containers/json` into the version text and the route; a path without a
/// version prefix (`/_ping`, `/volumes`) has none.
pub fn strip_version(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let (v, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return (None, path);
    }
    (Some(v), tail)
}

/// The version a request asks for: the current one when unversioned; one outside
/// [min, current] is dockerd's 400.
///
/// # Errors
/// `BadRequest` with dockerd's "too new" / "too old" messages, or for a malformed version.
pub fn check_version(text: Option<&str>) -> Result<ApiVersion, ApiError> {
    let current = ApiVersion::parse(API_VERSION).unwrap_or(ApiVersion(1, 44));
    let min = ApiVersion::parse(MIN_API_VERSION).unwrap_or(ApiVersion(1, 24));
    let Some(text) = text else {
        return Ok(current);
    };
    let version = ApiVersion::parse(text)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid API version {text:?}")))?;
    if version > current {
        return Err(ApiError::BadRequest(format!(
            "client version {version} is too new. Maximum supported API version is {current}"
        )));
    }
    if version < min {
        return Err(ApiError::BadRequest(format!(
            "client version {version} is too old. Minimum supported API version is {min}, please upgrade your client to a newer version"
        )));
    }
    Ok(version)
}

/// [`strip_version`] then [`check_version`].
///
/// # Errors
/// As [`check_version`].
pub fn split_version(path: &str) -> Result<(ApiVersion, &str), ApiError> {
    let (v, rest) = strip_version(path);
    Ok((check_version(v)?, rest))
}

/// The query parameters of a request (of a repeated key the first value counts, as with Go's
/// `r.Form.Get` in dockerd).
#[derive(Debug, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses a query string.
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(m)
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter as dockerd's `httputils.BoolValue` reads it: absent, empty, `0`,
    /// `no`, `false` and `none` are false.
    pub fn bool(&self, key: &str) -> bool {
        !matches!(
            self.get(key)
                .map(|s| s.trim().to_ascii_lowercase())
                .as_deref(),
            None | Some("" | "0" | "no" | "false" | "none")
        )
    }

    /// A boolean parameter as dockerd's `httputils.BoolValueOrDefault` reads it: `default`
    /// when absent, else as [`Query::bool`].
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        if self.get(key).is_none() {
            return default;
        }
        self.bool(key)
    }

    /// The `filters` parameter, parsed.
    ///
    /// # Errors
    /// `BadRequest` when it is not valid filter JSON.
    pub fn filters(&self) -> Result<Filters, ApiError> {
        Filters::parse(self.get("filters").unwrap_or(""))
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON answer (dockerd ends each with a newline).
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut b = serde_json::to_vec(value).unwrap_or_default();
    b.push(b'\n');
    let mut r = Response::new(full(b));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(err: &ApiError) -> Response<Body> {
    let mut r = Response::new(match err.body() {
        Some(b) => full(b),
        None => full(Bytes::new()),
    });
    *r.status_mut() = err.status();
    if err.body().is_some() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    r
}

/// A streamed answer: each item sent on the returned sender becomes one chunk, written at once.
pub fn stream(content_type: &'static str) -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (tx, r)
}

fn add_common_headers(engine: &Engine, r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert(
        "Docker-Experimental",
        HeaderValue::from_static(if engine.config().experimental {
            "true"
        } else {
            "false"
        }),
    );
    h.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(v) = HeaderValue::from_str(&format!("refengd/{VERSION} (linux)")) {
        h.insert(header::SERVER, v);
    }
}

/// What a request asks for, from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Ping,
    Version,
    Info,
    Events,
    ImagesCreate,
    ImagesList,
    ImagesPrune,
    ImageInspect(String),
    ImageHistory(String),
    ImageTag(String),
    ImageDelete(String),
    ImagesLoad,
    /// `POST /build`.
    Build,
    /// `POST /commit`.
    Commit,
    ImagesSave(Vec<String>),
    ImagePush(String),
    Auth,
    SystemDf,
    /// `/containers/...` and `/exec/...`.
    Containers(Call),
    /// `/networks/...`.
    Networks(super::network::routes::Call),
    /// `/volumes/...`.
    Volumes(super::volumes::routes::Call),
}

/// The verbs of `/containers/{id}/VERB`, by method.
const CONTAINER_VERBS: &[(&str, &str)] = &[
    ("GET", "json"),
    ("GET", "logs"),
    ("GET", "top"),
    ("GET", "stats"),
    ("GET", "export"),
    ("GET", "changes"),
    ("GET", "archive"),
    ("HEAD", "archive"),
    ("PUT", "archive"),
    ("POST", "start"),
    ("POST", "stop"),
    ("POST", "restart"),
    ("POST", "kill"),
    ("POST", "pause"),
    ("POST", "unpause"),
    ("POST", "rename"),
    ("POST", "update"),
    ("POST", "wait"),
    ("POST", "attach"),
    ("POST", "resize"),
    ("POST", "exec"),
];

fn container_route(method: &Method, segments: &[&str]) -> Option<Route> {
    container_call(method, segments).map(Route::Containers)
}

fn container_call(method: &Method, segments: &[&str]) -> Option<Call> {
    type Route = Call;
    match (method, segments) {
        (&Method::POST, ["containers", "create"]) => Some(Route::Create),
        (&Method::GET, ["containers", "json"]) => Some(Route::List),
        (&Method::POST, ["containers", "prune"]) => Some(Route::Prune),
        (&Method::DELETE, ["containers", id]) if !id.is_empty() => {
            Some(Route::Container(percent_decode(id)?, ""))
        }
        (m, ["containers", id, verb]) if !id.is_empty() => CONTAINER_VERBS
            .iter()
            .find(|(vm, v)| m.as_str() == *vm && v == verb)
            .and_then(|(_, v)| Some(Route::Container(percent_decode(id)?, v))),
        (&Method::POST, ["exec", id, "start"]) => Some(Route::Exec((*id).to_string(), "start")),
        (&Method::POST, ["exec", id, "resize"]) => Some(Route::Exec((*id).to_string(), "resize")),
        (&Method::GET, ["exec", id, "json"]) => Some(Route::Exec((*id).to_string(), "json")),
        _ => None,
    }
}

/// The path segments between `images/` and a trailing `tail` (image names contain `/`).
fn image_name(segments: &[&str], tail: Option<&str>) -> Option<String> {
    let inner = match tail {
        Some(t) => match segments {
            ["images", inner @ .., last] if *last == t && !inner.is_empty() => inner,
            _ => return None,
        },
        None => match segments {
            ["images", inner @ ..] if !inner.is_empty() => inner,
            _ => return None,
        },
    };
    let joined = inner.join("/");
    let decoded = percent_decode(&joined)?;
    (!decoded.is_empty()).then_some(decoded)
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn route(method: &Method, segments: &[&str]) -> Option<Route> {
    if matches!(segments.first(), Some(&"containers" | &"exec")) {
        return container_route(method, segments);
    }
    if segments.first() == Some(&"networks") {
        return super::network::routes::route(method, segments).map(Route::Networks);
    }
    if segments.first() == Some(&"volumes") {
        return super::volumes::routes::route(method, segments).map(Route::Volumes);
    }
    Some(match (method, segments) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Route::Ping,
        (&Method::GET, ["version"]) => Route::Version,
        (&Method::GET, ["info"]) => Route::Info,
        (&Method::GET, ["events"]) => Route::Events,
        (&Method::POST, ["images", "create"]) => Route::ImagesCreate,
        (&Method::GET, ["images", "json"]) => Route::ImagesList,
        (&Method::POST, ["images", "prune"]) => Route::ImagesPrune,
        (&Method::POST, ["images", "load"]) => Route::ImagesLoad,
        (&Method::POST, ["build"]) => Route::Build,
        (&Method::POST, ["commit"]) => Route::Commit,
        (&Method::POST, ["auth"]) => Route::Auth,
        (&Method::GET, ["system", "df"]) => Route::SystemDf,
        (&Method::POST, [.., "push"]) => Route::ImagePush(image_name(segments, Some("push"))?),
        (&Method::GET, ["images", "get"]) => Route::ImagesSave(Vec::new()),
        (&Method::GET, [.., "get"]) => Route::ImagesSave(vec![image_name(segments, Some("get"))?]),
        (&Method::GET, [.., "json"]) => Route::ImageInspect(image_name(segments, Some("json"))?),
        (&Method::GET, [.., "history"]) => {
            Route::ImageHistory(image_name(segments, Some("history"))?)
        }
        (&Method::POST, [.., "tag"]) => Route::ImageTag(image_name(segments, Some("tag"))?),
        (&Method::DELETE, ["images", ..]) => Route::ImageDelete(image_name(segments, None)?),
        _ => return None,
    })
}

/// Answers one request.
pub async fn handle(engine: Arc<Engine>, req: Request) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (version, rest) = strip_version(&path);
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let Some(route) = route(&method, &segments) else {
        // As dockerd: an unknown route gets neither a version check nor the API headers.
        tracing::debug!(%method, %path, "no route");
        return error_response(&ApiError::NotFound("page not found".into()));
    };
    let result = match check_version(version) {
        Ok(v) => {
            tracing::debug!(%method, %path, version = %v, "request");
            dispatch(&engine, route, v, req).await
        }
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(%method, %path, error = %e, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %e, "request refused");
            }
            error_response(&e)
        }
    };
    add_common_headers(&engine, &mut resp);
    resp
}

async fn dispatch(
    engine: &Arc<Engine>,
    route: Route,
    version: ApiVersion,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    match route {
        Route::Containers(call) => {
            super::containers::routes::dispatch(engine, call, &query, req).await
        }
        Route::Networks(call) => super::network::routes::dispatch(engine, call, &query, req).await,
        Route::Volumes(call) => {
            super::volumes::routes::dispatch(engine, call, version, &query, req).await
        }
        Route::Ping => Ok(ping(req.method())),
        Route::Version => Ok(json(StatusCode::OK, &engine.version_json().await?)),
        Route::Info => Ok(json(StatusCode::OK, &engine.info_json().await?)),
        Route::Events => events_stream(engine, &query),
        Route::ImagesCreate if query.get("fromSrc").is_some_and(|s| !s.is_empty()) => {
            let changes = super::image_archive::query_all(req.uri().query(), "changes");
            let import = super::image_import::ImportRequest {
                src: query.get("fromSrc").unwrap_or("").to_string(),
                repo: query.get("repo").unwrap_or("").to_string(),
                tag: query.get("tag").unwrap_or("").to_string(),
                changes,
                message: query.get("message").unwrap_or("").to_string(),
                platform: query.get("platform").unwrap_or("").to_string(),
            };
            let answer = engine.image_import(req.into_body(), import).await?;
            let mut r = Response::new(full(answer));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        Route::ImagesCreate => images_create(engine, &query, &req).await,
        Route::ImagesPrune => Ok(json(
            StatusCode::OK,
            &engine.images_prune(&query.filters()?).await?,
        )),
        Route::ImagesList => Ok(json(
            StatusCode::OK,
            &engine
                .images_json(&query.filters()?, query.bool("all"))
                .await?,
        )),
        Route::ImageInspect(name) => Ok(json(StatusCode::OK, &engine.image_inspect(&name).await?)),
        Route::ImageHistory(name) => Ok(json(StatusCode::OK, &engine.image_history(&name).await?)),
        Route::ImageTag(name) => {
            engine
                .image_tag(
                    &name,
                    query.get("repo").unwrap_or(""),
                    query.get("tag").unwrap_or(""),
                )
                .await?;
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        Route::ImageDelete(name) => Ok(json(
            StatusCode::OK,
            &engine
                .image_delete(&name, query.bool("force"), query.bool("noprune"))
                .await?,
        )),
        Route::Commit => {
            let changes = super::image_archive::query_all(req.uri().query(), "changes");
            let repo = query.get("repo").unwrap_or("");
            let tag = query.get("tag").unwrap_or("");
            let reference = if repo.is_empty() {
                if !tag.is_empty() {
                    return Err(ApiError::BadRequest(
                        "invalid reference format: a tag needs a repository".into(),
                    ));
                }
                None
            } else {
                let text = if tag.is_empty() {
                    repo.to_string()
                } else {
                    format!("{repo}:{tag}")
                };
                let r = crate::image::registry::Reference::parse(&text)
                    .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {e}")))?;
                Some(r.to_string())
            };
            let commit = super::build::exec::CommitRequest {
                container: query.get("container").unwrap_or("").to_string(),
                reference,
                comment: query.get("comment").unwrap_or("").to_string(),
                author: query.get("author").unwrap_or("").to_string(),
                changes,
                pause: query.get("pause").is_none_or(|_| query.bool("pause")),
            };
            let body = http_body_util::Limited::new(req.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?
                .to_bytes();
            if !body.iter().all(u8::is_ascii_whitespace) {
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
                if let Some(o) = v.as_object() {
                    if let Some((k, _)) =
                        o.iter().find(|(_, x)| !super::containers::body::is_zero(x))
                    {
                        return Err(ApiError::BadRequest(format!(
                            "commit config field {k} is not supported by refengd (use changes)"
                        )));
                    }
                }
            }
            let id = engine.commit(commit).await?;
            Ok(json(StatusCode::CREATED, &serde_json::json!({ "Id": id })))
        }
        Route::Build => {
            // Taken first: a refusal below reads the context the client is sending before it
            // answers, as the archive upload does, so the docker CLI reads the refusal instead
            // of failing on a broken pipe in the middle of its upload.
            let (parts, body) = req.into_parts();
            let body = super::image_archive::body_reader(body);
            let parsed =
                super::build::exec::BuildRequest::parse(parts.uri.query()).and_then(|mut q| {
                    q.credentials = super::auth::decode_config(
                        parts
                            .headers
                            .get("X-Registry-Config")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or(""),
                    )?;
                    Ok(q)
                });
            let req_query = match parsed {
                Ok(q) => q,
                Err(e) => return Err(super::containers::archive::drained(body, e).await),
            };
            let rx = engine.build(body, req_query).await?;
            Ok(streamed(rx, "application/json"))
        }
        Route::ImagesLoad => {
            // Quiet unless asked otherwise, as dockerd (the docker CLI always says which).
            let quiet = query.bool_or("quiet", true);
            let answer = engine.images_load(req.into_body(), quiet).await?;
            // One chunk per JSON line, as dockerd streams them: docker-py decodes chunk by
            // chunk.
            let lines: Vec<Bytes> = answer
                .split_inclusive(|b| *b == b'\n')
                .map(Bytes::copy_from_slice)
                .collect();
            let (tx, rx) = mpsc::channel(lines.len().max(1));
            for l in lines {
                let _ = tx.try_send(l);
            }
            Ok(streamed(rx, "application/json"))
        }
        Route::ImagesSave(mut names) => {
            if names.is_empty() {
                names = super::image_archive::query_all(req.uri().query(), "names");
            }
            let rx = engine.images_save(&names).await?;
            Ok(streamed(rx, "application/x-tar"))
        }
        Route::ImagePush(name) => {
            let credentials = super::auth::decode(registry_auth(&req))?;
            let rx = engine
                .image_push(&name, query.get("tag").unwrap_or(""), credentials)
                .await?;
            Ok(streamed(rx, "application/json"))
        }
        Route::SystemDf => {
            let types = super::image_archive::query_all(req.uri().query(), "type");
            Ok(json(StatusCode::OK, &engine.system_df(&types).await?))
        }
        Route::Auth => {
            let body = read_body(req, MAX_SMALL_BODY).await?;
            Ok(json(StatusCode::OK, &engine.auth(&body).await?))
        }
    }
}

/// An empty answer with `status`.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// `POST /images/create?fromImage=`: a pull (`fromSrc` imports are routed before).
async fn images_create(
    engine: &Arc<Engine>,
    query: &Query,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    for p in ["repo", "message", "changes"] {
        if query.get(p).is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::BadRequest(format!(
                "{p} applies to fromSrc imports only"
            )));
        }
    }
    let Some(image) = query.get("fromImage").filter(|s| !s.is_empty()) else {
        return Err(ApiError::BadRequest(
            "fromImage or fromSrc is required".into(),
        ));
    };
    let credentials = super::auth::decode(registry_auth(req))?;
    let rx = engine
        .pull(
            image,
            query.get("tag").unwrap_or(""),
            query.get("platform").unwrap_or(""),
            credentials,
        )
        .await?;
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The largest JSON body read whole (`POST /auth`).
const MAX_SMALL_BODY: usize = 1 << 20;

/// The `X-Registry-Auth` header's text (a value that is not text is refused by its decoder).
fn registry_auth(req: &Request) -> &str {
    req.headers()
        .get("X-Registry-Auth")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .unwrap_or("")
}

/// The whole body of a request, refused with a 400 beyond `limit` bytes.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    limited
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))
}

/// A streamed answer of `content_type` from a channel of chunks.
fn streamed(rx: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response<Body> {
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ping(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD {
        full(Bytes::new())
    } else {
        full(Bytes::from_static(b"OK"))
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // Builds have an issue of their own; until then clients are told to use the classic
    // builder's protocol rather than BuildKit's session.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    if method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

/// `GET /events`: the past events since `since` from the log, then live ones until `until` or
/// until the client goes away.
fn events_stream(engine: &Arc<Engine>, query: &Query) -> Result<Response<Body>, ApiError> {
    let now = SystemTime::now();
    let since_text = query.get("since").filter(|s| !s.is_empty());
    let until_text = query.get("until").filter(|s| !s.is_empty());
    let since = since_text
        .map(|s| events::parse_timestamp(s, now).map(events::unix_nanos))
        .transpose()?;
    let until = until_text
        .map(|s| events::parse_timestamp(s, now).map(events::unix_nanos))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::BadRequest(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                since_text.unwrap_or(""),
                until_text.unwrap_or("")
            )));
        }
    }
    let filters = query.filters()?;
    events::validate_filters(&filters)?;
    let (mut live, past) = engine.events.subscribe();
    let (tx, resp) = stream("application/json");
    tokio::spawn(async move {
        let send = |e: &Event| {
            let mut b = serde_json::to_vec(e).unwrap_or_default();
            b.push(b'\n');
            Bytes::from(b)
        };
        let in_window = |e: &Event| {
            since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)
        };
        let mut last = 0u64;
        if since.is_some() {
            for (n, e) in &past {
                last = *n;
                if in_window(e) && e.matches(&filters) && tx.send(send(e)).await.is_err() {
                    return;
                }
            }
        } else if let Some((n, _)) = past.last() {
            last = *n;
        }
        let until_instant = until.map(|u| {
            let left = u.saturating_sub(events::unix_nanos(SystemTime::now()));
            tokio::time::Instant::now()
                + std::time::Duration::from_nanos(u64::try_from(left).unwrap_or(0))
        });
        loop {
            let next = async {
                match until_instant {
                    Some(t) => tokio::time::timeout_at(t, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None | Some(None) => return,
                    Some(Some((n, e))) => {
                        if n <= last {
                            continue;
                        }
                        last = n;
                        if in_window(&e) && e.matches(&filters) && tx.send(send(&e)).await.is_err() {
                            return;
                        }
                    }
                },
                () = tx.closed() => return,
            }
        }
    });
    let mut resp = resp;
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// Binds the API socket at `path`: a stale socket is replaced, the parent made, and the socket
/// made `0660 root:<group>` (the group created when missing), as dockerd does with `docker`.
///
/// # Errors
/// When the socket cannot be bound, or its group not made or set.
pub fn bind(path: &Path, group: &str) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    let gid = ensure_group(group)?;
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
        .with_context(|| format!("chown root:{group} {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// The id of `group`, made with `groupadd --system` when it does not exist.
fn ensure_group(group: &str) -> anyhow::Result<nix::unistd::Gid> {
    use anyhow::Context;
    if let Some(g) = nix::unistd::Group::from_name(group).context("looking up the group")? {
        return Ok(g.gid);
    }
    let out = std::process::Command::new("groupadd")
        .args(["--system", group])
        .output()
        .context("running groupadd")?;
    // Another refengd may have made it meanwhile (exit 9: the group exists).
    if !out.status.success() && out.status.code() != Some(9) {
        anyhow::bail!(
            "groupadd --system {group}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    nix::unistd::Group::from_name(group)
        .context("looking up the group")?
        .map(|g| g.gid)
        .with_context(|| format!("group {group} missing after groupadd"))
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(engine: Arc<Engine>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(connection(engine.clone(), stream));
    }
}

/// Serves HTTP/1.1 (with upgrades for attach and exec) on one connection.
async fn connection<I>(engine: Arc<Engine>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(handle(engine, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// The TLS side of `--tlsverify`: the daemon's certificate and key, and every client must show
/// a certificate that `ca` signed (dockerd's `tls.RequireAndVerifyClientCert`).
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, named.
pub fn tls_acceptor(files: &super::config::TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = |p: &Path| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let list = CertificateDer::pem_file_iter(p)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| format!("reading certificates from {}", p.display()))?;
        anyhow::ensure!(!list.is_empty(), "no certificate in {}", p.display());
        Ok(list)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&files.ca)? {
        roots
            .add(c)
            .with_context(|| format!("a CA certificate of {}", files.ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("the client certificate verifier")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the key {}", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key)
        .with_context(|| format!("the certificate {}", files.cert.display()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves the API on a TCP `listener` over TLS until the process ends; a client whose
/// handshake fails (no certificate, one the CA did not sign, plain HTTP) gets no answer.
pub async fn serve_tls(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (engine, tls) = (engine.clone(), tls.clone());
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(stream));
            match handshake.await {
                Ok(Ok(s)) => connection(engine, s).await,
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_split_and_bounded_as_dockerd_does() {
        assert_eq!(
            split_version("/v1.41/containers/json").unwrap(),
            (ApiVersion(1, 41), "/containers/json")
        );
        assert_eq!(
            split_version("/_ping").unwrap(),
            (ApiVersion(1, 44), "/_ping")
        );
        assert_eq!(
            split_version("/volumes").unwrap(),
            (ApiVersion(1, 44), "/volumes")
        );
        let e = split_version("/v1.99/info").unwrap_err();
        assert_eq!(
            e.to_string(),
            "client version 1.99 is too new. Maximum supported API version is 1.44"
        );
        let e = split_version("/v1.12/info").unwrap_err();
        assert!(
            e.to_string().starts_with("client version 1.12 is too old."),
            "{e}"
        );
        assert!(ApiVersion(1, 9) < ApiVersion(1, 10));
    }

    #[test]
    fn query_booleans_read_like_dockerds() {
        let q = Query::parse(Some("a=1&b=false&c=&d=True&e=none"));
        assert!(q.bool("a") && q.bool("d"));
        assert!(!q.bool("b") && !q.bool("c") && !q.bool("e") && !q.bool("zz"));
    }
}
