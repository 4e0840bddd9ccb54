//! The classic builder's cache: which image a step made from a parent image with a container
//! config (whose `Cmd` is the history's CreatedBy, a copy's sources' hash included). dockerd
//! finds it by walking the children of the parent image; refengd keeps the same pairs in an
//! index, `<data-root>/builder/cache.json`, and checks that the image is still there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use refeng_spec::build::ImageConfig;
use tokio::sync::Mutex;

use crate::engine::error::ApiError;
use crate::engine::Engine;
use crate::image::digest::Digest;

/// Serialises the index's read-modify-write between builds.
static INDEX: Mutex<()> = Mutex::const_new(());

fn path(engine: &Engine) -> PathBuf {
    engine.config().data_root.join("builder").join("cache.json")
}

/// The index key of a step: the parent image id and the container config.
fn key(parent: &str, container: &ImageConfig) -> String {
    let config = serde_json::to_vec(container).unwrap_or_default();
    let mut text = parent.as_bytes().to_vec();
    text.push(b'\n');
    text.extend_from_slice(&config);
    Digest::sha256(&text).to_string()
}

/// Per key: the image id and its manifest's digest.
type Index = BTreeMap<String, (String, String)>;

/// The index as last read, with the file's modification time and length then: a warm build
/// asks once per step, and the file only changes when a step runs.
static READ: std::sync::Mutex<Option<(PathBuf, std::time::SystemTime, u64, Index)>> =
    std::sync::Mutex::new(None);

/// Runs `f` on the index at `path`, read again only when the file changed.
fn with_index<T>(path: &std::path::Path, f: impl FnOnce(&Index) -> T) -> T {
    let stamp = std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    let mut memo = READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let (Some((at, len)), Some((p, memo_at, memo_len, index))) = (stamp, memo.as_ref()) {
        if p == path && *memo_at == at && *memo_len == len {
            return f(index);
        }
    }
    let index: Index = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let answer = f(&index);
    *memo = stamp.map(|(at, len)| (path.to_path_buf(), at, len, index));
    answer
}

/// The image (id, manifest digest) a step made before, if the index has it.
///
/// # Errors
/// None yet: an unreadable index is an empty one.
pub async fn lookup(
    engine: &Engine,
    parent: &str,
    container: &ImageConfig,
) -> Result<Option<(String, String)>, ApiError> {
    let _held = INDEX.lock().await;
    let key = key(parent, container);
    Ok(with_index(&path(engine), |index| index.get(&key).cloned()))
}

/// Records that the step (`parent`, `container`) made `image` (whose manifest is `manifest`).
///
/// # Errors
/// `Internal` when the index cannot be written.
pub async fn remember(
    engine: &Engine,
    parent: &str,
    container: &ImageConfig,
    image: &str,
    manifest: &str,
) -> Result<(), ApiError> {
    let _held = INDEX.lock().await;
    let p = path(engine);
    let mut index = with_index(&p, Index::clone);
    index.insert(
        key(parent, container),
        (image.to_owned(), manifest.to_owned()),
    );
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ApiError::internal("the build cache", e))?;
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| ApiError::internal("the build cache", e))?;
    crate::sys::durable::write(&p, 0o600, &bytes)
        .map_err(|e| ApiError::internal("writing the build cache", e))
}

/// `cachefrom`: images whose history stands in for steps that match it, as the classic
/// builder's history cache does (moby's `image/cache`): a step is taken from a source when the
/// source's history and layers begin with the parent's and its next history entry was made by
/// the same instruction (`created_by`).
#[derive(Debug, Clone)]
pub struct Source {
    /// The image id.
    pub id: String,
    /// Its config document.
    pub doc: serde_json::Value,
    /// Its layers, bottom first.
    pub layers: Vec<containerd_client::types::Descriptor>,
}

fn history(doc: &serde_json::Value) -> &[serde_json::Value] {
    doc["history"].as_array().map_or(&[], Vec::as_slice)
}

fn diff_ids(doc: &serde_json::Value) -> &[serde_json::Value] {
    doc["rootfs"]["diff_ids"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// Whether `image` can continue from `parent` (`None`: `FROM scratch`): its history and its
/// layers begin with the parent's, and it has more history. Also the test of the local cache's
/// answer while sources are given: a local image counts only when it lies on the way to one.
#[must_use]
pub fn continues(image: &serde_json::Value, parent: Option<&serde_json::Value>) -> bool {
    let (h, d) = (history(image), diff_ids(image));
    if h.is_empty() {
        return false;
    }
    let Some(parent) = parent else { return true };
    let (ph, pd) = (history(parent), diff_ids(parent));
    if ph.is_empty() && pd.is_empty() {
        return true;
    }
    ph.len() < h.len() && pd.len() <= d.len() && h.starts_with(ph) && d.starts_with(pd)
}

/// The `created_by` of `image`'s history entry `index`.
#[must_use]
pub fn created_by(image: &serde_json::Value, index: usize) -> Option<&str> {
    history(image).get(index)?["created_by"].as_str()
}

/// Which of `image`'s layers history entry `index` made; `None` for an empty-layer entry.
#[must_use]
pub fn layer_of_history(image: &serde_json::Value, index: usize) -> Option<usize> {
    let h = history(image);
    if h.get(index)?["empty_layer"].as_bool() == Some(true) {
        return None;
    }
    let before = h[..index]
        .iter()
        .filter(|e| e["empty_layer"].as_bool() != Some(true))
        .count();
    (before < diff_ids(image).len()).then_some(before)
}

/// The image a step taken from `target` makes on `parent`: the parent's history and layers plus
/// the target's next entry and its layer, the step's container config as config, the target's
/// platform and author (the classic builder's restored cache image).
#[must_use]
pub fn restored(
    parent: Option<&serde_json::Value>,
    target: &serde_json::Value,
    container: &ImageConfig,
) -> serde_json::Value {
    let mut hist: Vec<serde_json::Value> = parent.map(|p| history(p).to_vec()).unwrap_or_default();
    let mut ids: Vec<serde_json::Value> = parent.map(|p| diff_ids(p).to_vec()).unwrap_or_default();
    let index = hist.len();
    let entry = history(target).get(index).cloned().unwrap_or_default();
    if let Some(l) = layer_of_history(target, index) {
        ids.push(diff_ids(target)[l].clone());
    }
    let created = entry["created"].clone();
    hist.push(entry);
    let mut doc = serde_json::json!({
        "architecture": target["architecture"],
        "os": target["os"],
        "config": container,
        "created": created,
        "rootfs": {"type": "layers", "diff_ids": ids},
        "history": hist,
    });
    for key in ["author", "os.version", "os.features", "variant"] {
        if let Some(v) = target.get(key) {
            doc[key] = v.clone();
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(entries: &[(&str, bool)]) -> serde_json::Value {
        let history: Vec<_> = entries
            .iter()
            .map(|(by, empty)| {
                let mut e = json!({"created": format!("t-{by}"), "created_by": by});
                if *empty {
                    e["empty_layer"] = true.into();
                }
                e
            })
            .collect();
        let ids: Vec<_> = entries
            .iter()
            .filter(|(_, empty)| !empty)
            .map(|(by, _)| format!("sha256:{by}"))
            .collect();
        json!({"architecture": "amd64", "os": "linux", "author": "me",
               "rootfs": {"type": "layers", "diff_ids": ids}, "history": history})
    }

    #[test]
    fn a_source_continues_its_own_prefix_only() {
        let source = image(&[("a", false), ("env", true), ("b", false)]);
        let prefix = image(&[("a", false), ("env", true)]);
        let other = image(&[("x", false)]);
        assert!(continues(&source, None));
        assert!(continues(&source, Some(&prefix)));
        assert!(!continues(&source, Some(&other)));
        assert!(!continues(&source, Some(&source)), "needs more history");
        assert!(!continues(&json!({}), None), "no history, nothing to take");
        assert!(continues(
            &source,
            Some(&json!({"rootfs": {"diff_ids": []}}))
        ));
    }

    #[test]
    fn history_entries_map_to_their_layers() {
        let source = image(&[("a", false), ("env", true), ("b", false)]);
        assert_eq!(layer_of_history(&source, 0), Some(0));
        assert_eq!(layer_of_history(&source, 1), None);
        assert_eq!(layer_of_history(&source, 2), Some(1));
        assert_eq!(layer_of_history(&source, 3), None);
        assert_eq!(created_by(&source, 2), Some("b"));
    }

    #[test]
    fn a_restored_step_takes_the_next_entry_and_its_layer() {
        let source = image(&[("a", false), ("env", true), ("b", false)]);
        let parent = image(&[("a", false), ("env", true)]);
        let container = ImageConfig {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), "b".into()]),
            ..ImageConfig::default()
        };
        let doc = restored(Some(&parent), &source, &container);
        assert_eq!(doc["rootfs"]["diff_ids"], json!(["sha256:a", "sha256:b"]));
        assert_eq!(history(&doc).len(), 3);
        assert_eq!(doc["created"], json!("t-b"));
        assert_eq!(doc["config"]["Cmd"], json!(["/bin/sh", "-c", "b"]));
        assert_eq!(doc["author"], json!("me"));
        let first = restored(None, &source, &container);
        assert_eq!(first["rootfs"]["diff_ids"], json!(["sha256:a"]));
    }
}
