//! Progress of a pull or push, per layer, as events; and the same events as the Engine API's
//! JSON progress messages (`{"status":"Downloading","progressDetail":{...},"id":"…"}`) that
//! the docker CLI draws its progress bars from.

use std::sync::Mutex;

use crate::image::digest::Digest;

/// One step of a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The reference resolved to this manifest or index.
    Resolved {
        /// what was asked for
        reference: String,
        /// what it names
        digest: Digest,
    },
    /// A layer is queued for download.
    Waiting {
        /// the layer
        id: Digest,
    },
    /// A layer was already in the content store.
    AlreadyExists {
        /// the layer
        id: Digest,
    },
    /// Bytes of a layer arrived (`current` counts what a resumed download already had).
    Downloading {
        /// the layer
        id: Digest,
        /// bytes so far
        current: u64,
        /// the layer's size
        total: u64,
    },
    /// A download was cut and continues from `offset` (HTTP Range).
    Resuming {
        /// the layer
        id: Digest,
        /// where it continues
        offset: u64,
    },
    /// A layer is downloaded and its digest verified.
    DownloadComplete {
        /// the layer
        id: Digest,
    },
    /// A layer is being applied to its snapshot.
    Extracting {
        /// the layer
        id: Digest,
    },
    /// A layer is applied.
    PullComplete {
        /// the layer
        id: Digest,
    },
    /// A blob is being uploaded.
    Pushing {
        /// the blob
        id: Digest,
        /// bytes sent so far
        current: u64,
        /// its size
        total: u64,
    },
    /// The registry already had the blob.
    LayerAlreadyExists {
        /// the blob
        id: Digest,
    },
    /// The blob was mounted from another repository of the same registry.
    Mounted {
        /// the blob
        id: Digest,
        /// the repository it came from
        from: String,
    },
    /// The blob is uploaded.
    Pushed {
        /// the blob
        id: Digest,
    },
    /// A manifest or index was stored under `tag`.
    ManifestPushed {
        /// the tag or digest it was put under
        tag: String,
        /// its digest
        digest: Digest,
        /// its size
        size: u64,
    },
}

impl ProgressEvent {
    /// The Engine API JSON message for this event (one line of `POST /images/create`'s or
    /// `POST /images/{name}/push`'s stream), ids shortened to 12 hex digits as docker does.
    #[must_use]
    pub fn to_json_message(&self) -> serde_json::Value {
        use serde_json::json;
        let short = |d: &Digest| d.hex().chars().take(12).collect::<String>();
        match self {
            ProgressEvent::Resolved { reference, digest } => {
                json!({"status": format!("Digest: {digest}"), "id": reference})
            }
            ProgressEvent::Waiting { id } => json!({"status": "Waiting", "id": short(id)}),
            ProgressEvent::AlreadyExists { id } => {
                json!({"status": "Already exists", "id": short(id)})
            }
            ProgressEvent::Downloading { id, current, total } => json!({
                "status": "Downloading",
                "progressDetail": {"current": current, "total": total},
                "id": short(id),
            }),
            ProgressEvent::Resuming { id, offset } => json!({
                "status": format!("Resuming from byte {offset}"),
                "id": short(id),
            }),
            ProgressEvent::DownloadComplete { id } => {
                json!({"status": "Download complete", "id": short(id)})
            }
            ProgressEvent::Extracting { id } => {
                json!({"status": "Extracting", "id": short(id)})
            }
            ProgressEvent::PullComplete { id } => {
                json!({"status": "Pull complete", "id": short(id)})
            }
            ProgressEvent::Pushing { id, current, total } => json!({
                "status": "Pushing",
                "progressDetail": {"current": current, "total": total},
                "id": short(id),
            }),
            ProgressEvent::LayerAlreadyExists { id } => {
                json!({"status": "Layer already exists", "id": short(id)})
            }
            ProgressEvent::Mounted { id, from } => {
                json!({"status": format!("Mounted from {from}"), "id": short(id)})
            }
            ProgressEvent::Pushed { id } => json!({"status": "Pushed", "id": short(id)}),
            ProgressEvent::ManifestPushed { tag, digest, size } => json!({
                "status": format!("{tag}: digest: {digest} size: {size}"),
            }),
        }
    }
}

/// Where progress goes. Called from several download threads at once.
pub trait ProgressSink: Send + Sync {
    /// Takes one event.
    fn report(&self, event: ProgressEvent);
}

/// Discards progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: ProgressEvent) {}
}

/// Keeps every event (tests, and callers that render at the end).
#[derive(Debug, Default)]
pub struct RecordedProgress(Mutex<Vec<ProgressEvent>>);

impl RecordedProgress {
    /// The events so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ProgressSink for RecordedProgress {
    fn report(&self, event: ProgressEvent) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_messages_have_docker_shape() {
        let id = Digest::sha256(b"layer");
        let lines: Vec<String> = [
            ProgressEvent::Waiting { id: id.clone() },
            ProgressEvent::Downloading {
                id: id.clone(),
                current: 10,
                total: 20,
            },
            ProgressEvent::DownloadComplete { id: id.clone() },
            ProgressEvent::Mounted {
                id: id.clone(),
                from: "a/b".into(),
            },
            ProgressEvent::ManifestPushed {
                tag: "v1".into(),
                digest: id.clone(),
                size: 7,
            },
        ]
        .iter()
        .map(|e| e.to_json_message().to_string())
        .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }
}
