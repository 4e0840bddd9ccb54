//! `GET /system/df`: disk use. The images part is measured from containerd's snapshots (each
//! layer's own use, `Snapshots.Usage`): `LayersSize` counts every layer once, an image's
//! `SharedSize` is the part of its layers other images use too. Volumes are measured by
//! walking their data (`UsageData`: size and how many containers use each). Containers are
//! listed as `docker ps -a --size` lists them (`SizeRw`, `SizeRootFs`), and each image counts
//! the containers made from it. The build cache is BuildKit's, which the classic builder does
//! not keep: the list is empty, as dockerd 20.10's is for classic builds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::error::ApiError;
use super::filters::Filters;
use super::Engine;

/// The object types `type=` may ask for (API 1.42).
const TYPES: &[&str] = &["container", "image", "volume", "build-cache"];

impl Engine {
    /// `GET /system/df?type=`.
    ///
    /// # Errors
    /// `BadRequest` for an unknown `type`; containerd's failures.
    pub async fn system_df(&self, types: &[String]) -> Result<Value, ApiError> {
        for t in types {
            if !TYPES.contains(&t.as_str()) {
                return Err(ApiError::BadRequest(format!("unknown object type: {t}")));
            }
        }
        let wants = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
        let mut out = serde_json::Map::new();
        let containers = if wants("container") || wants("image") {
            self.containers_json(true, 0, wants("container"), &Filters::default())
                .await?
        } else {
            json!([])
        };
        let mut per_image: BTreeMap<String, i64> = BTreeMap::new();
        for c in containers.as_array().into_iter().flatten() {
            if let Some(id) = c["ImageID"].as_str() {
                *per_image.entry(id.to_string()).or_default() += 1;
            }
        }
        if wants("image") {
            let catalog = self.catalog().await?;
            // Which images (by id) use each layer chain, and what each chain takes.
            let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut chains_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (_, r) in &catalog {
                for c in &r.chain_ids {
                    users.entry(c.clone()).or_default().insert(r.id.clone());
                }
                chains_of.insert(r.id.clone(), r.chain_ids.clone());
            }
            let store = self.store();
            let mut usage: BTreeMap<String, i64> = BTreeMap::new();
            for c in users.keys() {
                usage.insert(c.clone(), store.usage(c).await?);
            }
            let mut images = self.images_json(&Filters::default(), false).await?;
            for img in images.as_array_mut().into_iter().flatten() {
                let id = img["Id"].as_str().unwrap_or("").to_string();
                let shared: i64 = chains_of
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .filter(|c| users.get(*c).is_some_and(|u| u.len() > 1))
                    .map(|c| usage.get(c).copied().unwrap_or(0))
                    .sum();
                img["SharedSize"] = json!(shared);
                img["Containers"] = json!(per_image.get(&id).copied().unwrap_or(0));
            }
            out.insert("LayersSize".into(), json!(usage.values().sum::<i64>()));
            out.insert("Images".into(), images);
        }
        if wants("container") {
            out.insert("Containers".into(), containers);
        }
        if wants("volume") {
            let mut vols = Vec::new();
            for rec in self.volumes.list() {
                let refs = self.volume_users(&rec.name).len();
                let size = self.volumes.size(&rec.name);
                vols.push(self.volumes.json(&rec, Some((size, refs))));
            }
            out.insert("Volumes".into(), json!(vols));
        }
        if wants("build-cache") {
            out.insert("BuildCache".into(), json!([]));
        }
        Ok(Value::Object(out))
    }
}
