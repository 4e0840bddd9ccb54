//! The Content service: blobs by digest, per namespace. The bytes live once in the image
//! content store of [`crate::image::content`] (`<root>/io.containerd.content.v1.content`);
//! which namespace sees a blob, and its labels, are records in the metadata store. Writes are
//! resumable ingests named by the client's ref: a client that goes away mid-write leaves the
//! ingest (its status shows the offset) and a later Write of the same ref continues it.

use std::collections::HashMap;
use std::io::{Read as _, Seek, SeekFrom, Write as _};
use std::sync::Arc;

use containerd_client::events::ContentDelete;
use containerd_client::services::v1::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse, ListContentRequest,
    ListContentResponse, ListStatusesRequest, ListStatusesResponse, ReadContentRequest,
    ReadContentResponse, Status, StatusRequest, StatusResponse, UpdateRequest, UpdateResponse,
    WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio::sync::mpsc;
use tonic::Streaming;

use super::error::Error;
use super::filters::{label_field, Fields, Filter};
use super::grpc::{self, ResponseStream};
use super::identifiers;
use super::leases;
use super::metadata::{Read, Record};
use super::{now, Daemon, Services};
use crate::image::content::ContentError;
use crate::image::digest::Digest;
use crate::unary;

impl Record for Info {
    const KIND: &'static str = "content";
}

impl Record for Status {
    const KIND: &'static str = "ingests";
}

/// Chunk size of Read responses (containerd's).
const READ_CHUNK: usize = 1 << 20;

/// Parses a digest from a request.
///
/// # Errors
/// `InvalidArgument` as containerd words it (`"x" failed validation`).
pub fn parse_digest(s: &str) -> Result<Digest, Error> {
    s.parse::<Digest>()
        .map_err(|e| Error::InvalidArgument(format!("{s:?} failed validation: {e}")))
}

fn not_found(d: &str) -> Error {
    Error::NotFound(format!("content digest {d}"))
}

/// The namespace's record of blob `d`.
///
/// # Errors
/// `NotFound` when the namespace does not have it.
pub fn info(daemon: &Daemon, ns: &str, d: &Digest) -> Result<Info, Error> {
    daemon
        .metadata()
        .view(|v| v.get::<Info>(ns, &d.to_string()))?
        .ok_or_else(|| not_found(&d.to_string()))
}

fn content_error(e: ContentError) -> Error {
    match e {
        ContentError::NotFound(d) => not_found(&d.to_string()),
        ContentError::Locked(r) => Error::Unavailable(format!("ref {r} locked")),
        ContentError::DigestMismatch { expected, actual } => Error::FailedPrecondition(format!(
            "unexpected commit digest {actual}, expected {expected}"
        )),
        ContentError::SizeMismatch {
            expected, actual, ..
        } => Error::FailedPrecondition(format!(
            "unexpected commit size {actual}, expected {expected}"
        )),
        ContentError::TooLarge { what, limit } => {
            Error::InvalidArgument(format!("{what} is larger than the limit of {limit} bytes"))
        }
        other => Error::internal("content store", other),
    }
}

struct InfoFields<'a>(&'a Info);

impl Fields for InfoFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str) {
            Some("digest") if path.len() == 1 => Some(self.0.digest.clone()),
            Some("labels") => label_field(&self.0.labels, &path[1..]),
            _ => None,
        }
    }
}

struct StatusFields<'a>(&'a Status);

impl Fields for StatusFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "ref" => Some(self.0.r#ref.clone()),
            _ => None,
        }
    }
}

/// The ingest reference in the shared store: namespaces do not see each other's ingests.
fn ingest_ref(ns: &str, r: &str) -> String {
    format!("{ns}/{r}")
}

fn apply_label_paths(
    labels: &mut HashMap<String, String>,
    new: &HashMap<String, String>,
    paths: &[String],
    what: &str,
) -> Result<(), Error> {
    if paths.is_empty() {
        labels.clone_from(new);
        return Ok(());
    }
    for path in paths {
        if path == "labels" {
            labels.clone_from(new);
        } else if let Some(key) = path.strip_prefix("labels.") {
            match new.get(key) {
                Some(v) => {
                    labels.insert(key.to_string(), v.clone());
                }
                None => {
                    labels.remove(key);
                }
            }
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot update {path:?} field on {what}"
            )));
        }
    }
    Ok(())
}

/// Labels update with containerd's field paths (`labels`, `labels.<key>`; none: replace all).
///
/// # Errors
/// `InvalidArgument` for any other path.
pub fn update_labels(
    labels: &mut HashMap<String, String>,
    new: &HashMap<String, String>,
    paths: &[String],
    what: &str,
) -> Result<(), Error> {
    apply_label_paths(labels, new, paths, what)?;
    // containerd's store writes no label with an empty value: setting one removes it.
    labels.retain(|_, v| !v.is_empty());
    identifiers::validate_labels(&*labels)
}

fn status_of(d: &Daemon, ns: &str, mut st: Status) -> Status {
    st.offset = d
        .content()
        .ingest_size(&ingest_ref(ns, &st.r#ref))
        .unwrap_or(0) as i64;
    st
}

/// How a Write of bytes the store already has ended.
enum Shared {
    /// Committed (or the client went away).
    Done,
    /// The client sent bytes after all; this message carries them.
    Bytes(WriteContentRequest),
}

/// A Write of content whose bytes another namespace already has: every status shows them all
/// written; a commit records the blob here with the commit's labels.
#[allow(clippy::too_many_arguments)]
async fn shared_session(
    d: &Arc<Daemon>,
    ns: &str,
    lease: Option<&str>,
    digest: &Digest,
    size: u64,
    first: WriteContentRequest,
    inbound: &mut Streaming<WriteContentRequest>,
    out: &mpsc::Sender<Result<WriteContentResponse, tonic::Status>>,
) -> Result<Shared, Error> {
    let started = Some(now());
    let key = digest.to_string();
    let mut msg = first;
    loop {
        let action = WriteAction::try_from(msg.action)
            .map_err(|_| Error::InvalidArgument(format!("unknown write action {}", msg.action)))?;
        if !msg.data.is_empty() {
            return Ok(Shared::Bytes(msg));
        }
        if !msg.expected.is_empty() && msg.expected != key {
            return Err(Error::FailedPrecondition(format!(
                "unexpected commit digest {key}, expected {}",
                msg.expected
            )));
        }
        if msg.total > 0 && msg.total as u64 != size {
            return Err(Error::FailedPrecondition(format!(
                "unexpected commit size {size}, expected {}",
                msg.total
            )));
        }
        let resp = WriteContentResponse {
            action: msg.action,
            started_at: started,
            updated_at: Some(now()),
            offset: size as i64,
            total: size as i64,
            digest: key.clone(),
        };
        if action == WriteAction::Commit {
            identifiers::validate_labels(&msg.labels)?;
            // Under the collector's read lock from the look at the bytes to the record.
            let gc = d.gc_read();
            if !d.content().contains(digest) {
                return Err(Error::Aborted(format!(
                    "content {key} was collected while being shared; write it again"
                )));
            }
            d.metadata().update(|tx| {
                let t = now();
                let created = tx
                    .get::<Info>(ns, &key)?
                    .and_then(|i| i.created_at)
                    .unwrap_or(t);
                tx.put(
                    ns,
                    &key,
                    &Info {
                        digest: key.clone(),
                        size: size as i64,
                        created_at: Some(created),
                        updated_at: Some(t),
                        labels: msg.labels.clone(),
                    },
                )?;
                if let Some(l) = lease {
                    leases::add_resource(tx, ns, l, "content", &key)?;
                }
                Ok(())
            })?;
            drop(gc);
            let _ = out.send(Ok(resp)).await;
            return Ok(Shared::Done);
        }
        if out.send(Ok(resp)).await.is_err() {
            return Ok(Shared::Done);
        }
        msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return Ok(Shared::Done),
        };
    }
}

/// Runs one Write stream to its end. Errors go to the client as the stream's status.
async fn write_session(
    d: Arc<Daemon>,
    ns: String,
    lease: Option<String>,
    mut inbound: Streaming<WriteContentRequest>,
    out: mpsc::Sender<Result<WriteContentResponse, tonic::Status>>,
) -> Result<(), Error> {
    let mut first = match inbound.message().await {
        Ok(Some(m)) => m,
        Ok(None) | Err(_) => return Ok(()),
    };
    if first.r#ref.is_empty() {
        return Err(Error::InvalidArgument(
            "first message must have a reference".into(),
        ));
    }
    let reference = first.r#ref.clone();
    let mut total = first.total;
    let mut expected = if first.expected.is_empty() {
        None
    } else {
        Some(parse_digest(&first.expected)?)
    };
    if let Some(e) = &expected {
        let key = e.to_string();
        if d.metadata().view(|v| v.get::<Info>(&ns, &key))?.is_some() {
            return Err(Error::AlreadyExists(format!("content {e}")));
        }
        // Shared content: the bytes are here already (another namespace wrote them). As in
        // containerd, the status says they are all there, so the client commits without
        // sending them, and the commit (with its labels) records the blob in this namespace.
        if let Ok(existing) = d.content().info(e) {
            if total <= 0 || total as u64 == existing.size {
                match shared_session(
                    &d,
                    &ns,
                    lease.as_deref(),
                    e,
                    existing.size,
                    first,
                    &mut inbound,
                    &out,
                )
                .await?
                {
                    Shared::Done => return Ok(()),
                    // The client sends the bytes after all: take them as any write.
                    Shared::Bytes(m) => first = m,
                }
            }
        }
    }
    let iref = ingest_ref(&ns, &reference);
    let store = d.content();
    let mut writer = store
        .writer(&iref, expected.as_ref(), None)
        .map_err(content_error)?;
    let started = d.metadata().update(|tx| {
        let st = match tx.get::<Status>(&ns, &reference)? {
            Some(st) => st,
            None => Status {
                started_at: Some(now()),
                r#ref: reference.clone(),
                ..Default::default()
            },
        };
        let st = Status {
            updated_at: Some(now()),
            total,
            expected: expected
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            ..st
        };
        tx.put(&ns, &reference, &st)?;
        if let Some(l) = &lease {
            leases::add_resource(tx, &ns, l, "ingests", &reference)?;
        }
        Ok(st.started_at)
    })?;
    let mut msg = first;
    loop {
        if msg.total > 0 {
            total = msg.total;
        }
        if !msg.expected.is_empty() {
            expected = Some(parse_digest(&msg.expected)?);
        }
        let action = WriteAction::try_from(msg.action)
            .map_err(|_| Error::InvalidArgument(format!("unknown write action {}", msg.action)))?;
        let mut resp = WriteContentResponse {
            action: msg.action,
            started_at: started,
            updated_at: Some(now()),
            offset: writer.offset() as i64,
            total,
            digest: writer.digest().to_string(),
        };
        match action {
            WriteAction::Stat => {}
            WriteAction::Write | WriteAction::Commit => {
                if msg.offset > 0 && msg.offset as u64 != writer.offset() {
                    return Err(Error::OutOfRange(format!(
                        "write @{} must occur at current offset {}",
                        msg.offset,
                        writer.offset()
                    )));
                }
                if msg.offset == 0 && writer.offset() > 0 {
                    writer.truncate().map_err(content_error)?;
                }
                if !msg.data.is_empty() {
                    writer
                        .write_all(&msg.data)
                        .map_err(|e| Error::InvalidArgument(format!("writing {reference}: {e}")))?;
                }
                resp.offset = writer.offset() as i64;
                resp.digest = writer.digest().to_string();
                if action == WriteAction::Commit {
                    let size = writer.offset();
                    let gc = d.gc_read();
                    let committed = if total > 0 && total as u64 != size {
                        writer.abandon();
                        Err(Error::FailedPrecondition(format!(
                            "unexpected commit size {size}, expected {total}"
                        )))
                    } else {
                        writer.commit_with(expected.as_ref()).map_err(content_error)
                    };
                    let result = committed.and_then(|digest| {
                        let key = digest.to_string();
                        identifiers::validate_labels(&msg.labels)?;
                        d.metadata().update(|tx| {
                            tx.delete::<Status>(&ns, &reference)?;
                            let t = now();
                            let created = tx
                                .get::<Info>(&ns, &key)?
                                .and_then(|i| i.created_at)
                                .unwrap_or(t);
                            tx.put(
                                &ns,
                                &key,
                                &Info {
                                    digest: key.clone(),
                                    size: size as i64,
                                    created_at: Some(created),
                                    updated_at: Some(t),
                                    labels: msg.labels.clone(),
                                },
                            )?;
                            if let Some(l) = &lease {
                                leases::add_resource(tx, &ns, l, "content", &key)?;
                            }
                            Ok(())
                        })?;
                        Ok(key)
                    });
                    drop(gc);
                    match result {
                        Ok(key) => resp.digest = key,
                        Err(e) => {
                            // Nothing is left of a refused commit: no ingest, no record.
                            let _ = store.abort_ingest(&iref);
                            let _ = d
                                .metadata()
                                .update(|tx| tx.delete::<Status>(&ns, &reference).map(|_| ()));
                            return Err(e);
                        }
                    }
                    let _ = out.send(Ok(resp)).await;
                    return Ok(());
                }
            }
        }
        if out.send(Ok(resp)).await.is_err() {
            return Ok(());
        }
        msg = match inbound.message().await {
            Ok(Some(m)) => m,
            // The client went away: the ingest stays, resumable under its ref.
            Ok(None) | Err(_) => return Ok(()),
        };
    }
}

/// Registers `containerd.services.content.v1.Content`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    const S: &str = "/containerd.services.content.v1.Content/";
    unary!(
        s.router,
        daemon,
        &format!("{S}Info"),
        |d, req: InfoRequest| {
            let ns = grpc::namespace(&req)?;
            let digest = parse_digest(&req.into_inner().digest)?;
            Ok(InfoResponse {
                info: Some(info(&d, &ns, &digest)?),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Update"),
        |d, req: UpdateRequest| {
            let ns = grpc::namespace(&req)?;
            let req = req.into_inner();
            let new = req
                .info
                .ok_or_else(|| Error::InvalidArgument("info must not be empty".into()))?;
            let digest = parse_digest(&new.digest)?;
            let key = digest.to_string();
            let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
            let updated = d.metadata().update(|tx| {
                let mut info = tx.get::<Info>(&ns, &key)?.ok_or_else(|| not_found(&key))?;
                update_labels(&mut info.labels, &new.labels, &paths, &key)?;
                info.updated_at = Some(now());
                tx.put(&ns, &key, &info)?;
                Ok(info)
            })?;
            Ok(UpdateResponse {
                info: Some(updated),
            })
        }
    );
    let dd = daemon.clone();
    s.router.server_streaming(
        &format!("{S}List"),
        move |req: tonic::Request<ListContentRequest>| {
            let d = dd.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let filter = Filter::parse(&req.into_inner().filters)?;
                let all: Vec<Info> = d
                    .metadata()
                    .view(|v| v.list::<Info>(&ns))?
                    .into_iter()
                    .filter(|i| filter.matches(&InfoFields(i)))
                    .collect();
                // containerd sends the list in pages; one message per 100 infos.
                let pages = all
                    .chunks(100)
                    .map(|c| ListContentResponse { info: c.to_vec() })
                    .collect();
                Ok(grpc::stream_of(pages))
            }
        },
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Delete"),
        |d, req: DeleteContentRequest| {
            let ns = grpc::namespace(&req)?;
            let digest = parse_digest(&req.into_inner().digest)?;
            let key = digest.to_string();
            d.metadata().update(|tx| {
                if !tx.delete::<Info>(&ns, &key)? {
                    return Err(not_found(&key));
                }
                Ok(())
            })?;
            d.events()
                .publish(&ns, "/content/delete", &ContentDelete { digest: key });
            d.collect_garbage().await?;
            Ok(())
        }
    );
    let dd = daemon.clone();
    s.router.server_streaming(
        &format!("{S}Read"),
        move |req: tonic::Request<ReadContentRequest>| {
            let d = dd.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let req = req.into_inner();
                let digest = parse_digest(&req.digest)?;
                let info = info(&d, &ns, &digest)?;
                if req.offset < 0 || req.size < 0 {
                    return Err(Error::InvalidArgument(format!(
                        "offset {} and size {} must not be negative",
                        req.offset, req.size
                    )));
                }
                if req.offset > info.size {
                    return Err(Error::OutOfRange(format!(
                        "offset {} beyond the end of {} ({} bytes)",
                        req.offset, info.digest, info.size
                    )));
                }
                let mut file = d.content().open_blob(&digest).map_err(content_error)?;
                file.seek(SeekFrom::Start(req.offset as u64))
                    .map_err(|e| Error::internal("reading content", e))?;
                let mut left = if req.size == 0 {
                    (info.size - req.offset) as u64
                } else {
                    (req.size as u64).min((info.size - req.offset) as u64)
                };
                let (tx, rx) = mpsc::channel(2);
                let start = req.offset;
                tokio::task::spawn_blocking(move || {
                    let mut offset = start;
                    let mut buf = vec![0u8; READ_CHUNK];
                    while left > 0 {
                        let want = (left as usize).min(READ_CHUNK);
                        let n = match file.read(&mut buf[..want]) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) => {
                                let _ =
                                    tx.blocking_send(Err(
                                        Error::internal("reading content", e).into()
                                    ));
                                return;
                            }
                        };
                        let msg = ReadContentResponse {
                            offset,
                            data: buf[..n].to_vec(),
                        };
                        if tx.blocking_send(Ok(msg)).is_err() {
                            return;
                        }
                        offset += n as i64;
                        left -= n as u64;
                    }
                });
                Ok(grpc::stream_from(rx))
            }
        },
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Status"),
        |d, req: StatusRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner().r#ref;
            let st = d
                .metadata()
                .view(|v| v.get::<Status>(&ns, &r))?
                .ok_or_else(|| Error::NotFound(format!("ref {r:?}")))?;
            Ok(StatusResponse {
                status: Some(status_of(&d, &ns, st)),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}ListStatuses"),
        |d, req: ListStatusesRequest| {
            let ns = grpc::namespace(&req)?;
            let filter = Filter::parse(&req.into_inner().filters)?;
            Ok(ListStatusesResponse {
                statuses: d
                    .metadata()
                    .view(|v| v.list::<Status>(&ns))?
                    .into_iter()
                    .filter(|s| filter.matches(&StatusFields(s)))
                    .map(|s| status_of(&d, &ns, s))
                    .collect(),
            })
        }
    );
    unary!(
        s.router,
        daemon,
        &format!("{S}Abort"),
        |d, req: AbortRequest| {
            let ns = grpc::namespace(&req)?;
            let r = req.into_inner().r#ref;
            let had = d.metadata().update(|tx| tx.delete::<Status>(&ns, &r))?;
            let removed = d
                .content()
                .abort_ingest(&ingest_ref(&ns, &r))
                .map_err(content_error)?;
            if !had && !removed {
                return Err(Error::NotFound(format!("ref {r:?}")));
            }
            Ok(())
        }
    );
    let dd = daemon.clone();
    s.router.streaming(
        &format!("{S}Write"),
        move |req: tonic::Request<Streaming<WriteContentRequest>>| {
            let d = dd.clone();
            async move {
                let ns = grpc::namespace(&req)?;
                let lease = grpc::lease(&req);
                let inbound = req.into_inner();
                let (tx, rx) = mpsc::channel::<Result<WriteContentResponse, tonic::Status>>(4);
                tokio::spawn(async move {
                    let errors = tx.clone();
                    if let Err(e) = write_session(d, ns, lease, inbound, tx).await {
                        tracing::debug!(error = %e, "content write refused");
                        let _ = errors.send(Err(e.into())).await;
                    }
                });
                let stream: ResponseStream<WriteContentResponse> = grpc::stream_from(rx);
                Ok(stream)
            }
        },
    );
    s.plugin("io.containerd.content.v1", "content");
    s.plugin("io.containerd.grpc.v1", "content");
}
