//! Test images written straight into a content store: layers of incompressible bytes (so sizes
//! are what they say), gzip-compressed like registry images, one config per platform.

#![allow(dead_code)]

use refeng::image::content::ContentStore;
use refeng::image::digest::Digest;
use refeng::image::tar::{Builder, Entry, Kind};

/// Deterministic pseudo-random bytes (xorshift), so a seed gives the same layer every time.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A gzip layer with one file `f<seed>` of `len` noisy bytes; returns (blob, diff_id).
pub fn layer(seed: u64, len: usize) -> (Vec<u8>, Digest) {
    let mut b = Builder::new(Vec::new());
    let data = noise(seed, len);
    let mut e = Entry::new(format!("f{seed}"), Kind::File);
    e.size = data.len() as u64;
    b.append(&e, &data[..]).unwrap();
    let plain = b.finish().unwrap();
    let diff_id = Digest::sha256(&plain);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Stores an image manifest for `arch` with one layer per entry of `layers` (seed, bytes);
/// returns (manifest digest, manifest size).
pub fn image(store: &ContentStore, arch: &str, layers: &[(u64, usize)]) -> (Digest, u64) {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (seed, len) in layers {
        let (blob, diff_id) = layer(*seed, *len);
        let d = store.put(&blob).unwrap();
        diff_ids.push(diff_id.to_string());
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(), "size": blob.len()}));
    }
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/f0"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    .unwrap();
    let c = store.put(&cfg).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": c.to_string(), "size": cfg.len()},
        "layers": descs}))
    .unwrap();
    (store.put(&m).unwrap(), m.len() as u64)
}

/// Stores an OCI index over `manifests` (digest, size, arch).
pub fn index(store: &ContentStore, manifests: &[(Digest, u64, &str)]) -> Digest {
    let ms: Vec<_> = manifests
        .iter()
        .map(|(d, size, arch)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d.to_string(), "size": size,
                "platform": {"architecture": arch, "os": "linux"}})
        })
        .collect();
    let i = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": ms}))
    .unwrap();
    store.put(&i).unwrap()
}

/// The config digest of a stored manifest.
pub fn config_digest(store: &ContentStore, manifest: &Digest) -> Digest {
    let m: serde_json::Value =
        serde_json::from_slice(&store.read_small(manifest).unwrap()).unwrap();
    m["config"]["digest"].as_str().unwrap().parse().unwrap()
}
