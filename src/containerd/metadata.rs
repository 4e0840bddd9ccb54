//! The metadata store: namespaces and every object record of refeng-containerd (containers,
//! images, leases, content labels, snapshot records) in one redb file, `<root>/meta.redb`.
//!
//! Why redb: it is an embedded, pure-Rust B-tree store with ACID transactions whose commit is
//! crash-safe (copy-on-write pages and a checksummed, double-buffered commit slot, fsynced), so a
//! `kill -9` or a power cut at any point leaves the last committed state and nothing half
//! written; it needs no C library (SQLite would need libsqlite3 or a bundled C build, and SQL we
//! do not use), and its one-writer-many-readers model is the one containerd's bbolt has.
//!
//! Records are the protobuf messages of containerd's API themselves (a `Container` is stored as
//! the `containerd.services.containers.v1.Container` it is served as), encoded with prost, keyed
//! by `(namespace, kind, key)`. A namespace exists while its entry in the namespaces table does;
//! writing any object into a namespace creates it, as containerd's buckets do.
//!
//! An idle daemon closes the redb file ([`Metadata::release_idle`]) and opens it again on the next
//! access: redb keeps the page allocator's state of a whole 4 GiB region in memory while a
//! database is open (about 0.6 MB resident, most of an idle refeng-containerd's heap), and an
//! engine that runs nothing should not hold it. The root stays ours in between: a lock file
//! beside the database is held for the store's life, so a second daemon cannot open the root
//! while the file is closed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_client::services::v1::Namespace;
use prost::Message;
use redb::{Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

use super::error::Error;

const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
const OBJECTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("objects");

/// The kind of the store's own counters; kinds starting with `~` are bookkeeping, not objects
/// (a namespace holding only those is empty).
pub const INTERNAL_SEQUENCES: &str = "~sequences";

/// A kind of record and the protobuf message it is stored as.
pub trait Record: prost::Message + Default {
    /// The kind's name in the store's keys (`containers`, `images`, ...).
    const KIND: &'static str;
}

impl Record for containerd_client::services::v1::Container {
    const KIND: &'static str = "containers";
}

impl Record for containerd_client::services::v1::Image {
    const KIND: &'static str = "images";
}

/// The store.
#[derive(Debug)]
pub struct Metadata {
    path: PathBuf,
    /// `<path>.lock`, held exclusively while the store exists (see the module's text).
    _lock: nix::fcntl::Flock<std::fs::File>,
    open: Mutex<Open>,
}

/// The database while it is open, and when it was last used.
#[derive(Debug)]
struct Open {
    db: Option<Arc<Database>>,
    used: Instant,
}

impl Open {
    /// Open, unused for `idle`, and in no running transaction.
    fn unused_for(&self, idle: Duration) -> bool {
        self.db
            .as_ref()
            .is_some_and(|db| Arc::strong_count(db) == 1 && self.used.elapsed() >= idle)
    }
}

fn decode<R: prost::Message + Default>(bytes: &[u8], what: &str) -> Result<R, Error> {
    R::decode(bytes).map_err(|e| Error::internal(&format!("metadata record {what}"), e))
}

impl Metadata {
    /// Opens (creating when new) the store at `path`. redb recovers an interrupted commit on
    /// open by falling back to the last complete one.
    ///
    /// # Errors
    /// `Internal` when the file cannot be opened, is locked by another process or is damaged.
    pub fn open(path: &Path) -> Result<Metadata, Error> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                Error::internal(&format!("opening {}", Path::new(&lock_path).display()), e)
            })?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                Error::internal(
                    &format!(
                        "metadata store {} is in use by another process",
                        path.display()
                    ),
                    errno,
                )
            })?;
        let db = open_db(path)?;
        let tx = db.begin_write()?;
        tx.open_table(NAMESPACES)?;
        tx.open_table(OBJECTS)?;
        tx.commit()?;
        Ok(Metadata {
            path: path.to_path_buf(),
            _lock: lock,
            open: Mutex::new(Open {
                db: Some(Arc::new(db)),
                used: Instant::now(),
            }),
        })
    }

    /// The database, opened again when it was released.
    fn db(&self) -> Result<Arc<Database>, Error> {
        let mut open = self.lock_open();
        open.used = Instant::now();
        if let Some(db) = &open.db {
            return Ok(db.clone());
        }
        let db = Arc::new(open_db(&self.path)?);
        open.db = Some(db.clone());
        Ok(db)
    }

    /// Closes the database when nothing has used it for `idle` and no transaction is running;
    /// the next access opens it again. True when it was closed now.
    pub fn release_idle(&self, idle: Duration) -> bool {
        let mut open = self.lock_open();
        let unused = open.unused_for(idle);
        if unused {
            // Dropped under the lock: redb's file lock is gone before anyone can open again.
            open.db = None;
        }
        unused
    }

    /// Whether [`Metadata::release_idle`] would close the database now (a check without I/O).
    pub fn is_idle(&self, idle: Duration) -> bool {
        self.lock_open().unused_for(idle)
    }

    /// Whether the database is open now.
    pub fn is_open(&self) -> bool {
        self.lock_open().db.is_some()
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on a consistent snapshot of the store.
    ///
    /// # Errors
    /// What `f` returns, or `Internal` when the store cannot be read.
    pub fn view<T>(&self, f: impl FnOnce(&View) -> Result<T, Error>) -> Result<T, Error> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let view = View {
            namespaces: tx.open_table(NAMESPACES)?,
            objects: tx.open_table(OBJECTS)?,
        };
        f(&view)
    }

    /// Runs `f` in one write transaction, committed when `f` returns `Ok` and rolled back when
    /// it returns `Err`: either all of its changes are stored, or none.
    ///
    /// # Errors
    /// What `f` returns, or `Internal` when the store cannot be written.
    pub fn update<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let out = {
            let mut txn = Txn {
                namespaces: tx.open_table(NAMESPACES)?,
                objects: tx.open_table(OBJECTS)?,
            };
            f(&mut txn)
        };
        match out {
            Ok(v) => {
                tx.commit()?;
                Ok(v)
            }
            Err(e) => {
                tx.abort()?;
                Err(e)
            }
        }
    }
}

fn open_db(path: &Path) -> Result<Database, Error> {
    Database::create(path)
        .map_err(|e| Error::internal(&format!("opening metadata store {}", path.display()), e))
}

/// Reading, the same for a snapshot and inside a write transaction.
pub trait Read {
    /// The namespaces table.
    type Namespaces: ReadableTable<&'static str, &'static [u8]>;
    /// The objects table.
    type Objects: ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>;
    /// The namespaces table.
    fn namespaces_table(&self) -> &Self::Namespaces;
    /// The objects table.
    fn objects_table(&self) -> &Self::Objects;

    /// The namespace record `name`, if the namespace exists.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read.
    fn namespace(&self, name: &str) -> Result<Option<Namespace>, Error> {
        match self.namespaces_table().get(name)? {
            Some(v) => Ok(Some(decode(v.value(), name)?)),
            None => Ok(None),
        }
    }

    /// All namespaces, sorted by name.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read.
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let mut out = Vec::new();
        for entry in self.namespaces_table().iter()? {
            let (k, v) = entry?;
            out.push(decode(v.value(), k.value())?);
        }
        Ok(out)
    }

    /// The record `key` of `kind` in namespace `ns`.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read or the record not decoded.
    fn get_kind<R: prost::Message + Default>(
        &self,
        ns: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<R>, Error> {
        match self.objects_table().get((ns, kind, key))? {
            Some(v) => Ok(Some(decode(v.value(), key)?)),
            None => Ok(None),
        }
    }

    /// Every record of `kind` in namespace `ns`, with its key, sorted by key.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read or a record not decoded.
    fn list_kind<R: prost::Message + Default>(
        &self,
        ns: &str,
        kind: &str,
    ) -> Result<Vec<(String, R)>, Error> {
        let mut out = Vec::new();
        for entry in self.objects_table().range((ns, kind, "")..)? {
            let (k, v) = entry?;
            let (kns, kkind, key) = k.value();
            if kns != ns || kkind != kind {
                break;
            }
            out.push((key.to_string(), decode(v.value(), key)?));
        }
        Ok(out)
    }

    /// The record `key` of kind `R` in namespace `ns`.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read or the record not decoded.
    fn get<R: Record>(&self, ns: &str, key: &str) -> Result<Option<R>, Error> {
        self.get_kind(ns, R::KIND, key)
    }

    /// Every record of kind `R` in namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read or a record not decoded.
    fn list<R: Record>(&self, ns: &str) -> Result<Vec<R>, Error> {
        Ok(self
            .list_kind(ns, R::KIND)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The first kind that still has records in namespace `ns`, if any.
    ///
    /// # Errors
    /// `Internal` when the store cannot be read.
    fn first_kind_in(&self, ns: &str) -> Result<Option<String>, Error> {
        for entry in self.objects_table().range((ns, "", "")..)? {
            let (k, _) = entry?;
            let (kns, kind, _) = k.value();
            if kns != ns {
                break;
            }
            if !kind.starts_with('~') {
                return Ok(Some(kind.to_string()));
            }
        }
        Ok(None)
    }
}

/// A consistent read-only snapshot of the store.
#[derive(Debug)]
pub struct View {
    namespaces: ReadOnlyTable<&'static str, &'static [u8]>,
    objects: ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>,
}

impl Read for View {
    type Namespaces = ReadOnlyTable<&'static str, &'static [u8]>;
    type Objects = ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>;
    fn namespaces_table(&self) -> &Self::Namespaces {
        &self.namespaces
    }
    fn objects_table(&self) -> &Self::Objects {
        &self.objects
    }
}

/// A write transaction in progress (see [`Metadata::update`]).
pub struct Txn<'t> {
    namespaces: Table<'t, &'static str, &'static [u8]>,
    objects: Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("namespaces", &self.namespaces.len().ok())
            .field("objects", &self.objects.len().ok())
            .finish()
    }
}

impl<'t> Read for Txn<'t> {
    type Namespaces = Table<'t, &'static str, &'static [u8]>;
    type Objects = Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;
    fn namespaces_table(&self) -> &Self::Namespaces {
        &self.namespaces
    }
    fn objects_table(&self) -> &Self::Objects {
        &self.objects
    }
}

impl Txn<'_> {
    /// Stores the namespace record (creating or replacing it).
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn put_namespace(&mut self, ns: &Namespace) -> Result<(), Error> {
        self.namespaces
            .insert(ns.name.as_str(), ns.encode_to_vec().as_slice())?;
        Ok(())
    }

    /// Creates namespace `name` with no labels if it does not exist; true when it was created.
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn ensure_namespace(&mut self, name: &str) -> Result<bool, Error> {
        if self.namespaces.get(name)?.is_some() {
            return Ok(false);
        }
        self.put_namespace(&Namespace {
            name: name.to_string(),
            labels: Default::default(),
        })?;
        Ok(true)
    }

    /// Removes the namespace record; true when it existed. The caller checks it is empty.
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn remove_namespace(&mut self, name: &str) -> Result<bool, Error> {
        Ok(self.namespaces.remove(name)?.is_some())
    }

    /// Stores a record of `kind` (creating its namespace when new).
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn put_kind<R: prost::Message>(
        &mut self,
        ns: &str,
        kind: &str,
        key: &str,
        record: &R,
    ) -> Result<(), Error> {
        self.ensure_namespace(ns)?;
        self.objects
            .insert((ns, kind, key), record.encode_to_vec().as_slice())?;
        Ok(())
    }

    /// Removes a record of `kind`; true when it existed.
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn delete_kind(&mut self, ns: &str, kind: &str, key: &str) -> Result<bool, Error> {
        Ok(self.objects.remove((ns, kind, key))?.is_some())
    }

    /// Stores a record of kind `R` under `key`.
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn put<R: Record>(&mut self, ns: &str, key: &str, record: &R) -> Result<(), Error> {
        self.put_kind(ns, R::KIND, key, record)
    }

    /// Removes the record `key` of kind `R`; true when it existed.
    ///
    /// # Errors
    /// `Internal` when the store cannot be written.
    pub fn delete<R: Record>(&mut self, ns: &str, key: &str) -> Result<bool, Error> {
        self.delete_kind(ns, R::KIND, key)
    }
}

#[cfg(test)]
mod tests {
    use containerd_client::services::v1::Container;

    use super::*;

    #[test]
    fn records_round_trip_and_failed_updates_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let store = Metadata::open(&path).unwrap();
        let c = Container {
            id: "c1".into(),
            image: "busybox".into(),
            ..Default::default()
        };
        store.update(|tx| tx.put("default", "c1", &c)).unwrap();
        let err = store
            .update(|tx| {
                tx.put(
                    "other",
                    "c2",
                    &Container {
                        id: "c2".into(),
                        ..Default::default()
                    },
                )?;
                Err::<(), _>(Error::AlreadyExists("container \"c2\"".into()))
            })
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)));
        drop(store);

        let store = Metadata::open(&path).unwrap();
        store
            .view(|v| {
                assert_eq!(v.get::<Container>("default", "c1")?, Some(c.clone()));
                assert_eq!(v.list::<Container>("default")?.len(), 1);
                assert!(v.namespace("other")?.is_none(), "rolled back");
                assert_eq!(v.namespaces()?.len(), 1);
                assert_eq!(v.first_kind_in("default")?.as_deref(), Some("containers"));
                assert_eq!(v.first_kind_in("defaul")?, None);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn an_idle_store_closes_and_opens_again_and_the_root_stays_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let store = Metadata::open(&path).unwrap();
        let c = Container {
            id: "c1".into(),
            ..Default::default()
        };
        store.update(|tx| tx.put("default", "c1", &c)).unwrap();
        assert!(
            !store.release_idle(Duration::from_secs(3600)),
            "used just now"
        );
        assert!(!store.is_idle(Duration::from_secs(3600)));
        assert!(store.is_idle(Duration::ZERO));
        // Not while a transaction runs.
        store
            .view(|_| {
                assert!(!store.release_idle(Duration::ZERO));
                Ok(())
            })
            .unwrap();
        assert!(store.release_idle(Duration::ZERO));
        assert!(!store.is_open());
        let err = Metadata::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        let got = store.view(|v| v.get::<Container>("default", "c1")).unwrap();
        assert_eq!(got, Some(c));
        assert!(store.is_open());
        store
            .update(|tx| tx.delete::<Container>("default", "c1"))
            .unwrap();
        assert!(store.release_idle(Duration::ZERO));
        drop(store);
        let store = Metadata::open(&path).unwrap();
        assert_eq!(
            store
                .view(|v| v.list::<Container>("default"))
                .unwrap()
                .len(),
            0
        );
    }
}
