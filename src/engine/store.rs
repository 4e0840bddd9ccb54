//! The engine's view of containerd's image side, through its gRPC services only: Content
//! (info, read, resumable write), Images, Leases, Snapshots and Diff. Every call is in the
//! engine's namespace; writes made while a pull runs carry its lease, so containerd's garbage
//! collector leaves them alone until the image names them.

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
    UsageRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest, DeleteImageRequest,
    DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image, Info as ContentInfo, InfoRequest,
    ListImagesRequest, ReadContentRequest, UpdateImageRequest, UpdateRequest, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

use super::backend::Backend;
use super::error::ApiError;

/// The snapshotter the engine unpacks into (dockerd's default with containerd).
pub const SNAPSHOTTER: &str = "overlayfs";
/// The metadata key containerd reads a request's lease from.
const LEASE_HEADER: &str = "containerd-lease";
/// The largest manifest, index or config the engine reads whole.
const MAX_DOCUMENT: usize = 8 << 20;
/// Bytes per Content.Write message.
const WRITE_CHUNK: usize = 1 << 20;

/// What Content.Info says of a blob.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    /// Its size.
    pub size: i64,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// The gRPC image store of the engine.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

fn missing(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
}

impl Store {
    /// The store behind `backend`.
    pub fn new(backend: Backend) -> Store {
        Store { backend }
    }

    fn req<T>(&self, msg: T, lease: Option<&str>) -> tonic::Request<T> {
        let mut r = self.backend.request(msg);
        if let Some(l) = lease.and_then(|l| l.parse().ok()) {
            r.metadata_mut().insert(LEASE_HEADER, l);
        }
        r
    }

    /// Content.Info, `None` when containerd has no such blob.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn info(&self, digest: &str) -> Result<Option<BlobInfo>, ApiError> {
        let r = ContentClient::new(self.backend.channel())
            .info(self.req(
                InfoRequest {
                    digest: digest.into(),
                },
                None,
            ))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().info.map(|i| BlobInfo {
                size: i.size,
                labels: i.labels,
            })),
            Err(s) if missing(&s) => Ok(None),
            Err(s) => Err(ApiError::from_grpc(&format!("content {digest}"), &s)),
        }
    }

    /// Content.Read of a whole (small) blob.
    ///
    /// # Errors
    /// `NotFound` when absent, `Internal` when larger than a document may be.
    pub async fn read(&self, digest: &str) -> Result<Vec<u8>, ApiError> {
        let mut stream = ContentClient::new(self.backend.channel())
            .read(self.req(
                ReadContentRequest {
                    digest: digest.into(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(|s| ApiError::from_grpc(&format!("reading {digest}"), &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| ApiError::from_grpc(&format!("reading {digest}"), &s))?;
            out.extend_from_slice(&chunk.data);
            if out.len() > MAX_DOCUMENT {
                return Err(ApiError::Internal(format!(
                    "{digest} is larger than {MAX_DOCUMENT} bytes"
                )));
            }
        }
        Ok(out)
    }

    /// Sets `labels` on a blob containerd already has (Content.Update with one `labels.<key>`
    /// path each, so its other labels stay).
    ///
    /// # Errors
    /// The call's failures (`NotFound` when the blob went).
    pub async fn add_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ApiError> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        ContentClient::new(self.backend.channel())
            .update(self.req(
                UpdateRequest {
                    info: Some(ContentInfo {
                        digest: digest.into(),
                        labels,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("labelling {digest}"), &s))
    }

    /// Content.Read of a whole blob of any size, each chunk handed to `sink` as it comes.
    /// Returns the bytes read.
    ///
    /// # Errors
    /// `NotFound` when absent; the call's failures; `Internal` when `sink` fails.
    pub async fn read_with(
        &self,
        digest: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ApiError> {
        let mut stream = ContentClient::new(self.backend.channel())
            .read(self.req(
                ReadContentRequest {
                    digest: digest.into(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(|s| ApiError::from_grpc(&format!("reading {digest}"), &s))?
            .into_inner();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| ApiError::from_grpc(&format!("reading {digest}"), &s))?;
            sink(&chunk.data).map_err(|e| ApiError::internal(&format!("copying {digest}"), e))?;
            total += chunk.data.len() as u64;
        }
        Ok(total)
    }

    /// Writes the blob `digest` of `size` bytes from `file` with Content.Write (continuing an
    /// earlier partial write of the same ref) and commits it with `labels`, under `lease`.
    ///
    /// # Errors
    /// The call's failures, a digest mismatch included.
    pub async fn write(
        &self,
        digest: &str,
        size: u64,
        mut file: tokio::fs::File,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> Result<(), ApiError> {
        let doing = format!("writing {digest}");
        let err = |s: tonic::Status| ApiError::from_grpc(&doing, &s);
        let r#ref = format!("refengd-{digest}");
        let total = i64::try_from(size).map_err(|e| ApiError::internal(&doing, e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let closed = || ApiError::Internal(format!("{doing}: containerd closed the write"));
        // The first request (Stat: where an earlier attempt got to) is queued before the call:
        // containerd's Go server sends the response headers only with its first answer, so
        // waiting for the call before sending would wait forever.
        tx.send(WriteContentRequest {
            action: 0,
            r#ref: r#ref.clone(),
            total,
            expected: digest.into(),
            ..Default::default()
        })
        .await
        .map_err(|_| closed())?;
        let mut responses = ContentClient::new(self.backend.channel())
            .write(self.req(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease)))
            .await
            .map_err(err)?
            .into_inner();
        let stat = responses.message().await.map_err(err)?.ok_or_else(closed)?;
        let mut offset = u64::try_from(stat.offset).unwrap_or(0).min(size);
        if offset > 0 {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| ApiError::internal(&doing, e))?;
        }
        let mut buf = vec![0u8; WRITE_CHUNK];
        while offset < size {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| ApiError::internal(&doing, e))?;
            if n == 0 {
                return Err(ApiError::Internal(format!(
                    "{doing}: the staged blob is short"
                )));
            }
            tx.send(WriteContentRequest {
                action: 1,
                r#ref: r#ref.clone(),
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                data: buf[..n].to_vec(),
                ..Default::default()
            })
            .await
            .map_err(|_| closed())?;
            responses.message().await.map_err(err)?.ok_or_else(closed)?;
            offset += n as u64;
        }
        tx.send(WriteContentRequest {
            action: 2,
            r#ref,
            total,
            offset: total,
            expected: digest.into(),
            labels,
            ..Default::default()
        })
        .await
        .map_err(|_| closed())?;
        responses.message().await.map_err(err)?.ok_or_else(closed)?;
        drop(tx);
        Ok(())
    }

    /// Images.Get, `None` when there is no image of that name.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn image(&self, name: &str) -> Result<Option<Image>, ApiError> {
        match ImagesClient::new(self.backend.channel())
            .get(self.req(GetImageRequest { name: name.into() }, None))
            .await
        {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if missing(&s) => Ok(None),
            Err(s) => Err(ApiError::from_grpc(&format!("image {name}"), &s)),
        }
    }

    /// Images.List.
    ///
    /// # Errors
    /// The call's failures.
    pub async fn images(&self) -> Result<Vec<Image>, ApiError> {
        Ok(ImagesClient::new(self.backend.channel())
            .list(self.req(ListImagesRequest::default(), None))
            .await
            .map_err(|s| ApiError::from_grpc("listing images", &s))?
            .into_inner()
            .images)
    }

    /// Names `target` as `name` (Images.Create, or Update of the target when the name exists).
    ///
    /// # Errors
    /// The calls' failures.
    pub async fn put_image(&self, name: &str, target: Descriptor) -> Result<(), ApiError> {
        let now: prost_types::Timestamp = std::time::SystemTime::now().into();
        let image = Image {
            name: name.into(),
            labels: HashMap::new(),
            target: Some(target),
            created_at: Some(now),
            updated_at: Some(now),
        };
        let mut client = ImagesClient::new(self.backend.channel());
        match client
            .create(self.req(
                CreateImageRequest {
                    image: Some(image.clone()),
                    ..Default::default()
                },
                None,
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => client
                .update(self.req(
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        ..Default::default()
                    },
                    None,
                ))
                .await
                .map(|_| ())
                .map_err(|s| ApiError::from_grpc(&format!("updating image {name}"), &s)),
            Err(s) => Err(ApiError::from_grpc(&format!("creating image {name}"), &s)),
        }
    }

    /// Images.Delete; with `sync`, containerd collects what nothing references any more before
    /// answering.
    ///
    /// # Errors
    /// The call's failures.
    pub async fn delete_image(&self, name: &str, sync: bool) -> Result<(), ApiError> {
        ImagesClient::new(self.backend.channel())
            .delete(self.req(
                DeleteImageRequest {
                    name: name.into(),
                    sync,
                    ..Default::default()
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("deleting image {name}"), &s))
    }

    /// Leases.Create with an expiry, so a lease that a crash leaves behind ends by itself.
    ///
    /// # Errors
    /// The call's failures.
    pub async fn lease(&self, id: &str, life: std::time::Duration) -> Result<(), ApiError> {
        let expire = chrono::Utc::now()
            + chrono::Duration::from_std(life).unwrap_or(chrono::Duration::hours(1));
        let labels = HashMap::from([(
            "containerd.io/gc.expire".to_string(),
            expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )]);
        LeasesClient::new(self.backend.channel())
            .create(self.req(
                CreateLeaseRequest {
                    id: id.into(),
                    labels,
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc("creating a lease", &s))
    }

    /// Leases.Delete (what it held is collected once nothing else holds it).
    ///
    /// # Errors
    /// The call's failures.
    pub async fn end_lease(&self, id: &str) -> Result<(), ApiError> {
        LeasesClient::new(self.backend.channel())
            .delete(self.req(
                DeleteLeaseRequest {
                    id: id.into(),
                    sync: false,
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc("ending a lease", &s))
    }

    /// Whether the committed snapshot `key` exists.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn has_snapshot(&self, key: &str) -> Result<bool, ApiError> {
        match SnapshotsClient::new(self.backend.channel())
            .stat(self.req(
                StatSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.into(),
                },
                None,
            ))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if missing(&s) => Ok(false),
            Err(s) => Err(ApiError::from_grpc(&format!("snapshot {key}"), &s)),
        }
    }

    /// The disk use of snapshot `key` (Snapshots.Usage), 0 when absent.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn usage(&self, key: &str) -> Result<i64, ApiError> {
        match SnapshotsClient::new(self.backend.channel())
            .usage(self.req(
                UsageRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.into(),
                },
                None,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().size),
            Err(s) if missing(&s) => Ok(0),
            Err(s) => Err(ApiError::from_grpc(&format!("snapshot {key}"), &s)),
        }
    }

    /// Unpacks `layer` as the snapshot `chain` on top of `parent` (Prepare, Diff.Apply, Commit),
    /// checking that what was applied is `diff_id`. A failure removes the active snapshot.
    ///
    /// # Errors
    /// The calls' failures; `Internal` when the applied digest is not `diff_id`.
    pub async fn unpack(
        &self,
        chain: &str,
        parent: &str,
        layer: Descriptor,
        diff_id: &str,
        lease: &str,
    ) -> Result<(), ApiError> {
        let key = format!("extract-{}-{chain}", std::process::id());
        let mut snapshots = SnapshotsClient::new(self.backend.channel());
        let mounts = snapshots
            .prepare(self.req(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.clone(),
                    parent: parent.into(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await
            .map_err(|s| ApiError::from_grpc(&format!("preparing snapshot {chain}"), &s))?
            .into_inner()
            .mounts;
        let result = async {
            let applied = DiffClient::new(self.backend.channel())
                .apply(self.req(
                    ApplyRequest {
                        diff: Some(layer.clone()),
                        mounts,
                        ..Default::default()
                    },
                    Some(lease),
                ))
                .await
                .map_err(|s| ApiError::from_grpc(&format!("applying layer {}", layer.digest), &s))?
                .into_inner()
                .applied;
            let got = applied.map(|d| d.digest).unwrap_or_default();
            if got != diff_id {
                return Err(ApiError::Internal(format!(
                    "layer {} applied as {got}, but the image config says {diff_id}",
                    layer.digest
                )));
            }
            snapshots
                .commit(self.req(
                    CommitSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        name: chain.into(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    Some(lease),
                ))
                .await
                .map(|_| ())
                .map_err(|s| ApiError::from_grpc(&format!("committing snapshot {chain}"), &s))
        }
        .await;
        if result.is_err() {
            let _ = snapshots
                .remove(self.req(
                    RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key,
                    },
                    Some(lease),
                ))
                .await;
        }
        result
    }
}
