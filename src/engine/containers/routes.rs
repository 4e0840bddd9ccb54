//! The HTTP side of the container and exec endpoints: query parameters and bodies in, JSON,
//! streams and hijacked connections out. The server's route table sends every `/containers`
//! and `/exec` request here.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::super::error::ApiError;
use super::super::server::{empty, json, stream, Body, Query, Request};
use super::super::Engine;
use super::attach::{self, AttachPlan, LogsQuery};
use super::io::{log_files, Chunk};
use refeng_spec::engine::Status;

/// A container or exec call, from the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `POST /containers/create`.
    Create,
    /// `GET /containers/json`.
    List,
    /// `POST /containers/prune`.
    Prune,
    /// `/containers/{id}/{verb}` ("" for DELETE).
    Container(String, &'static str),
    /// `/exec/{id}/{verb}`.
    Exec(String, &'static str),
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))
}

fn int(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    match q.get(key).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {s:?}"))),
    }
}

fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// Answers with the hijacked stream: 101 when the client asked for `Upgrade: tcp`, else 200
/// with the output as the body (no stdin then).
fn hijack(engine: &Arc<Engine>, mut req: Request, plan: AttachPlan) -> Response<Body> {
    let _ = engine;
    if wants_upgrade(&req) {
        let on = hyper::upgrade::on(&mut req);
        let tty = plan.tty;
        tokio::spawn(async move {
            match on.await {
                Ok(up) => attach::pump(TokioIo::new(up), plan).await,
                Err(e) => tracing::debug!(error = %e, "attach upgrade failed"),
            }
        });
        return upgraded(tty);
    }
    streamed(plan.tty, plan)
}

fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// The 101 answer to `Upgrade: tcp`; the stream follows on the connection.
fn upgraded(tty: bool) -> Response<Body> {
    let mut r = empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream_type(tty)),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// The stream as a plain 200 body (no stdin then), for clients that did not ask for
/// `Upgrade: tcp`.
fn streamed(tty: bool, plan: AttachPlan) -> Response<Body> {
    let (tx, mut r) = stream(stream_type(tty));
    tokio::spawn(async move {
        let (a, mut b) = tokio::io::duplex(64 << 10);
        tokio::spawn(attach::pump(
            a,
            AttachPlan {
                stdin: None,
                ..plan
            },
        ));
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match tokio::io::AsyncReadExt::read(&mut b, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    *r.status_mut() = StatusCode::OK;
    r
}

/// Runs one call.
///
/// # Errors
/// The call's error, answered in dockerd's shape by the server.
pub async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    q: &Query,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    match call {
        Call::Create => {
            let name = q.get("name").unwrap_or("").to_string();
            let platform = q.get("platform").unwrap_or("").to_string();
            let body = read_body(req, super::body::MAX_BODY).await?;
            let v = engine.container_create(&name, &platform, &body).await?;
            Ok(json(StatusCode::CREATED, &v))
        }
        Call::List => {
            let mut v = engine
                .containers_json(
                    q.bool("all"),
                    int(q, "limit")?.unwrap_or(-1),
                    q.bool("size"),
                    &q.filters()?,
                )
                .await?;
            for c in v.as_array_mut().into_iter().flatten() {
                crate::engine::network::containers::for_api_version(
                    &mut c["NetworkSettings"],
                    req.uri().path(),
                );
            }
            Ok(json(StatusCode::OK, &v))
        }
        Call::Prune => Ok(json(
            StatusCode::OK,
            &engine.containers_prune(&q.filters()?).await?,
        )),
        Call::Container(id, verb) => container(engine, &id, verb, q, req).await,
        Call::Exec(id, verb) => exec(engine, &id, verb, q, req).await,
    }
}

/// `HEAD`, `GET` and `PUT /containers/{id}/archive` (`docker cp`).
async fn archive(
    engine: &Arc<Engine>,
    id: &str,
    q: &Query,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let path = q.get("path").unwrap_or("");
    let with_stat = |mut r: Response<Body>, stat: &super::archive::PathStat| {
        if let Ok(v) = HeaderValue::from_str(&stat.header_value()) {
            r.headers_mut().insert(super::archive::STAT_HEADER, v);
        }
        r
    };
    match *req.method() {
        http::Method::HEAD => {
            let stat = engine.container_stat_path(id, path).await?;
            Ok(with_stat(empty(StatusCode::OK), &stat))
        }
        http::Method::PUT => {
            let body = super::super::image_archive::body_reader(req.into_body());
            let query = super::archive::PutQuery::parse(
                path,
                q.bool("noOverwriteDirNonDir"),
                q.bool("copyUIDGID"),
            );
            match query {
                Ok(query) => engine.container_extract(id, query, body).await?,
                Err(e) => return Err(super::archive::drained(body, e).await),
            }
            Ok(empty(StatusCode::OK))
        }
        _ => {
            let (stat, rx) = engine.container_archive(id, path).await?;
            let body = StreamBody::new(
                ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
            );
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            );
            Ok(with_stat(r, &stat))
        }
    }
}

async fn container(
    engine: &Arc<Engine>,
    id: &str,
    verb: &'static str,
    q: &Query,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let no_content = || Ok(empty(StatusCode::NO_CONTENT));
    match verb {
        "" => {
            engine
                .container_remove(id, q.bool("force"), q.bool("v"))
                .await?;
            no_content()
        }
        "json" => {
            let mut v = engine.container_inspect(id, q.bool("size")).await?;
            crate::engine::network::containers::for_api_version(
                &mut v["NetworkSettings"],
                req.uri().path(),
            );
            Ok(json(StatusCode::OK, &v))
        }
        "start" => {
            if q.get("checkpoint").is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::BadRequest(
                    "checkpoint is not supported by refengd".into(),
                ));
            }
            if let Some(k) = q.get("detachKeys") {
                attach::parse_detach_keys(k)?;
            }
            engine.container_start(id).await?;
            no_content()
        }
        "stop" => {
            engine
                .container_stop(id, int(q, "t")?, q.get("signal"))
                .await?;
            no_content()
        }
        "restart" => {
            engine
                .container_restart(id, int(q, "t")?, q.get("signal"))
                .await?;
            no_content()
        }
        "kill" => {
            engine.container_kill(id, q.get("signal")).await?;
            no_content()
        }
        "pause" | "unpause" => {
            engine.container_pause(id, verb == "pause").await?;
            no_content()
        }
        "rename" => {
            engine
                .container_rename(id, q.get("name").unwrap_or(""))
                .await?;
            no_content()
        }
        "resize" => {
            let h = int(q, "h")?.unwrap_or(0);
            let w = int(q, "w")?.unwrap_or(0);
            engine
                .container_resize(
                    id,
                    u32::try_from(h).unwrap_or(0),
                    u32::try_from(w).unwrap_or(0),
                )
                .await?;
            Ok(empty(StatusCode::OK))
        }
        "top" => Ok(json(
            StatusCode::OK,
            &engine
                .container_top(id, q.get("ps_args").unwrap_or(""))
                .await?,
        )),
        "update" => {
            let body = read_body(req, super::body::MAX_BODY).await?;
            Ok(json(
                StatusCode::OK,
                &engine.container_update(id, &body).await?,
            ))
        }
        "changes" => Ok(json(StatusCode::OK, &engine.container_changes(id).await?)),
        "archive" => archive(engine, id, q, req).await,
        "export" => {
            let rx = engine.container_export(id).await?;
            let body = StreamBody::new(
                ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
            );
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            );
            Ok(r)
        }
        "stats" => {
            let stream_on = q.get("stream").is_none_or(|_| q.bool("stream"));
            let rx = engine
                .container_stats(id, stream_on, q.bool("one-shot"))
                .await?;
            let body = StreamBody::new(
                ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
            );
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        "wait" => {
            let rx = engine.container_wait(id, q.get("condition").unwrap_or(""))?;
            let (tx, mut r) = stream("application/json");
            tokio::spawn(async move {
                if let Ok(v) = rx.await {
                    let mut b = serde_json::to_vec(&v).unwrap_or_default();
                    b.push(b'\n');
                    let _ = tx.send(Bytes::from(b)).await;
                }
            });
            *r.status_mut() = StatusCode::OK;
            Ok(r)
        }
        "logs" => {
            let lq = LogsQuery {
                stdout: q.bool("stdout"),
                stderr: q.bool("stderr"),
                since: attach::parse_unix(q.get("since").unwrap_or(""))?,
                until: attach::parse_unix(q.get("until").unwrap_or(""))?,
                timestamps: q.bool("timestamps"),
                tail: match q.get("tail").unwrap_or("all") {
                    "all" | "" => None,
                    n => Some(n.parse::<usize>().map_err(|_| {
                        ApiError::BadRequest(format!("invalid value for tail: {n:?}"))
                    })?),
                },
                follow: q.bool("follow"),
            };
            let (rx, tty) = engine.container_logs(id, lq)?;
            let body = StreamBody::new(
                ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
            );
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(if tty {
                    "application/vnd.docker.raw-stream"
                } else {
                    "application/vnd.docker.multiplexed-stream"
                }),
            );
            Ok(r)
        }
        "attach" => {
            let cid = engine.containers.find(id)?;
            let keys = attach::parse_detach_keys(q.get("detachKeys").unwrap_or(""))?;
            let (tty, live, io, open_stdin, stdin_once, status, has_log) = {
                let map = engine.containers.lock();
                let e = map
                    .get(&cid)
                    .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))?;
                (
                    e.stored.config.tty,
                    e.hub.subscribe(),
                    e.io.clone(),
                    e.stored.config.open_stdin,
                    e.stored.config.stdin_once,
                    e.lc.status(),
                    e.stored.log.is_some(),
                )
            };
            if matches!(status, Status::Removing | Status::Dead) {
                return Err(ApiError::Conflict(
                    "You cannot attach to a stopped container, start it first".into(),
                ));
            }
            let (so, se) = (q.bool("stdout"), q.bool("stderr"));
            let mut replay = Vec::new();
            if q.bool("logs") && has_log {
                let path = engine.containers.log_path(&cid);
                for f in log_files(&path) {
                    let text = std::fs::read_to_string(f).unwrap_or_default();
                    for l in text
                        .lines()
                        .filter_map(|l| serde_json::from_str::<super::io::LogLine>(l).ok())
                    {
                        let want = match l.stream {
                            super::io::Stream::Stdout => so,
                            super::io::Stream::Stderr => se,
                            super::io::Stream::Stdin => false,
                        };
                        if want {
                            replay.push(if tty {
                                Bytes::from(l.log.into_bytes())
                            } else {
                                super::io::frame(l.stream, l.log.as_bytes())
                            });
                        }
                    }
                }
            }
            // The stdin of a process started after this attach: the container's current one
            // is looked up when bytes arrive, so attaching before start works.
            let stdin = if q.bool("stdin") && open_stdin {
                Some((
                    StdinLater {
                        engine: engine.clone(),
                        id: cid.clone(),
                        now: io,
                    },
                    stdin_once,
                ))
            } else {
                None
            };
            let live = if q.bool("stream") {
                Some(live)
            } else {
                // Without stream: the logs only, then the end.
                let (tx, rx) = tokio::sync::broadcast::channel(1);
                let _ = tx.send(Chunk::End);
                Some(rx)
            };
            let plan = AttachPlan {
                replay,
                live,
                tty,
                stdout: so,
                stderr: se,
                stdin: stdin.map(|(s, once)| (s.resolve_arc(), once)),
                detach_keys: keys,
                finish: None,
            };
            Ok(hijack(engine, req, plan))
        }
        "exec" => {
            let body = read_body(req, 1 << 20).await?;
            Ok(json(
                StatusCode::CREATED,
                &engine.exec_create(id, &body).await?,
            ))
        }
        other => Err(ApiError::NotFound(format!("page not found: {other}"))),
    }
}

/// The stdin an attach writes to: the container's process when the bytes arrive.
struct StdinLater {
    engine: Arc<Engine>,
    id: String,
    now: Option<Arc<super::io::ProcessIo>>,
}

impl StdinLater {
    /// A forwarding `ProcessIo` whose writes go to the container's current stdin.
    fn resolve_arc(self) -> Arc<super::io::ProcessIo> {
        let fwd = super::io::ProcessIo::forwarding(move || {
            self.engine
                .containers
                .lock()
                .get(&self.id)
                .and_then(|e| e.io.clone())
                .or_else(|| self.now.clone())
        });
        Arc::new(fwd)
    }
}

async fn exec(
    engine: &Arc<Engine>,
    id: &str,
    verb: &'static str,
    q: &Query,
    mut req: Request,
) -> Result<Response<Body>, ApiError> {
    match verb {
        "json" => Ok(json(StatusCode::OK, &engine.exec_inspect(id)?)),
        "resize" => {
            let h = int(q, "h")?.unwrap_or(0);
            let w = int(q, "w")?.unwrap_or(0);
            engine
                .exec_resize(
                    id,
                    u32::try_from(h).unwrap_or(0),
                    u32::try_from(w).unwrap_or(0),
                )
                .await?;
            Ok(empty(StatusCode::OK))
        }
        "start" => {
            let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
            let body = read_body(req, 1 << 20).await?;
            let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?
            };
            let detach = v.get("Detach").and_then(Value::as_bool).unwrap_or(false);
            let ex = engine.exec_get(id)?;
            let keys = attach::parse_detach_keys(
                ex.config
                    .get("DetachKeys")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )?;
            let c = &ex.config;
            let b = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
            let (want_out, want_err) = (
                b("AttachStdout") || !b("AttachStderr"),
                b("AttachStderr") || !b("AttachStdout"),
            );
            let want_in = b("AttachStdin");
            let plan = move |(rx, pio, tty): (_, _, bool), finish| AttachPlan {
                replay: Vec::new(),
                live: Some(rx),
                tty,
                stdout: want_out,
                stderr: want_err,
                stdin: want_in.then_some((pio, true)),
                detach_keys: keys,
                finish: Some(finish),
            };
            if let (Some(on), false) = (upgrade, detach) {
                // As dockerd: the 101 goes out first and the process starts once the
                // connection is the client's, so no output can reach the client inside the
                // HTTP response it is still reading (docker-py's socket mode would lose it).
                engine.exec_startable(id)?;
                let tty = ex.process["terminal"].as_bool().unwrap_or(false);
                let (engine, id) = (Arc::clone(engine), id.to_string());
                tokio::spawn(async move {
                    let Ok(up) = on.await else { return };
                    let mut up = TokioIo::new(up);
                    match engine.exec_start(&id).await {
                        Ok(started) => {
                            attach::pump(up, plan(started, ex.done.subscribe())).await;
                        }
                        Err(e) => {
                            // As dockerd: the failure goes to the client as output on
                            // stdout (a frame of the multiplexed stream without a tty), and
                            // the exec's exit code (126) tells the CLI it failed.
                            use tokio::io::AsyncWriteExt;
                            let text = format!("{e}\r\n");
                            let out = if tty {
                                Bytes::from(text)
                            } else {
                                super::io::frame(super::io::Stream::Stdout, text.as_bytes())
                            };
                            let _ = up.write_all(&out).await;
                            let _ = up.shutdown().await;
                        }
                    }
                });
                return Ok(upgraded(tty));
            }
            let started = engine.exec_start(id).await?;
            if detach {
                return Ok(empty(StatusCode::OK));
            }
            let tty = started.2;
            Ok(streamed(tty, plan(started, ex.done.subscribe())))
        }
        other => Err(ApiError::NotFound(format!("page not found: {other}"))),
    }
}

impl Engine {
    /// `POST /containers/prune`: removes every stopped container (created, exited, dead)
    /// that passes the `label`/`until` filters.
    ///
    /// # Errors
    /// 400 for bad filters.
    pub async fn containers_prune(
        self: &Arc<Self>,
        f: &super::super::filters::Filters,
    ) -> Result<Value, ApiError> {
        f.validate(&["label", "label!", "until"])?;
        if f.contains("until") {
            return Err(ApiError::BadRequest(
                "the until filter of prune is not supported by refengd".into(),
            ));
        }
        let victims: Vec<String> = {
            let map = self.containers.lock();
            map.values()
                .filter(|e| {
                    matches!(
                        e.lc.status(),
                        Status::Created | Status::Exited | Status::Dead
                    )
                })
                .filter(|e| {
                    let labels = e.stored.config.labels.clone().unwrap_or_default();
                    f.match_labels("label", &labels)
                        && !f.get("label!").any(|want| match want.split_once('=') {
                            Some((k, v)) => labels.get(k).is_some_and(|h| h == v),
                            None => labels.contains_key(want),
                        })
                })
                .map(|e| e.stored.id.clone())
                .collect()
        };
        let mut deleted = Vec::new();
        let mut reclaimed: i64 = 0;
        let store = super::super::store::Store::new(self.backend.clone());
        for id in victims {
            let size = store.usage(&id).await.unwrap_or(0);
            if self.container_remove(&id, false, false).await.is_ok() {
                reclaimed += size;
                deleted.push(id);
            }
        }
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("reclaimed".to_string(), reclaimed.to_string());
        self.events.emit(super::super::events::Event::new(
            "container",
            "prune",
            "",
            attrs,
        ));
        Ok(
            json!({"ContainersDeleted": if deleted.is_empty() { None } else { Some(deleted) }, "SpaceReclaimed": reclaimed}),
        )
    }
}
