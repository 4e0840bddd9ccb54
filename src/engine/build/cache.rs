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
fn load(path: &std::path::Path) -> BTreeMap<String, (String, String)> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
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
    Ok(load(&path(engine)).remove(&key(parent, container)))
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
    let mut index = load(&p);
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
