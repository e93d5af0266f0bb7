//! Sessions as files: one JSON file per session in a private directory.
//!
//! Invariants, and why:
//! - A reader never sees half a record: every write goes to a temporary file in the same
//!   directory, then `rename`s over the record (atomic on POSIX file systems).
//! - A session that was deleted stays deleted: `save` only replaces a file that still
//!   exists, under an exclusive `flock` of it, re-checked after the lock is taken, and
//!   `delete` takes the same lock. A late save racing a logout (or two app instances on
//!   one directory) cannot bring the record back.
//! - Expiry is checked on every load: an expired file reads as "no session", an unreadable
//!   one as a decode error (the session layer removes and audits it); both are also left
//!   to [`FileStore::sweep_expired`], which never stops at one bad file.
//! - The directory is 0700 and files are 0600: a record is a bearer credential.
//! - Blocking file I/O runs on Tokio's blocking pool, never on the async workers.
//! - No fsync: a crash may lose a session's last write, never expose a partial one.

use std::{
    ffi::OsStr,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures::stream;
use tokio::sync::mpsc;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use super::ops::{
    create_unique, is_live, KeyPages, Progress, StoreError, StoreKind, StoreOps, StoreSweep,
};

/// Temporary files older than this were left by a crash mid-write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
const TEMP_SUFFIX: &str = ".tmp";

/// A session store in a directory, safe to share between processes.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tessera::sessions::stores::file::FileStore;
/// let store = FileStore::open("tmp/sessions")?;
/// let report = store.sweep_expired().await?;
/// println!("removed {} expired sessions", report.expired);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: Arc<PathBuf>,
}

/// What one sweep of the directory did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Session files looked at.
    pub examined: u64,
    /// Expired records removed.
    pub expired: u64,
    /// Unreadable or corrupt records removed.
    pub unreadable: u64,
    /// Temporary files left by an interrupted write, removed.
    pub stale_temp: u64,
    /// Files that could not be examined or removed (left in place, logged).
    pub failed: u64,
}

/// What a file holds, as far as the store is concerned.
enum Contents {
    Live(Record),
    Expired,
    Unreadable,
}

impl FileStore {
    /// Opens (creating if needed) the session directory and makes it private (0700).
    ///
    /// # Errors
    /// When the directory cannot be created or its mode cannot be set.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir: Arc::new(dir) })
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes expired and unreadable records and stale temporary files. A file that
    /// cannot be handled is counted in `failed`, logged, and skipped.
    ///
    /// # Errors
    /// Only when the directory itself cannot be listed.
    pub async fn sweep_expired(&self) -> io::Result<SweepReport> {
        self.sweep_expired_with(|_, _| {}).await
    }

    /// [`FileStore::sweep_expired`], calling `progress(done, total)` as it goes.
    ///
    /// # Errors
    /// Only when the directory itself cannot be listed.
    pub async fn sweep_expired_with(
        &self,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> io::Result<SweepReport> {
        let dir = self.dir.clone();
        blocking(move || sweep(&dir, &progress)).await
    }

    fn path_for(&self, id: &Id) -> PathBuf {
        record_path(&self.dir, id)
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        create_unique(self, record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let path = self.path_for(&record.id);
        let bytes = encode(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let saved = blocking(move || replace_existing(&path, &bytes))
            .await
            .map_err(backend)?;
        if !saved {
            tracing::debug!("session ended while the request ran; the late save is dropped");
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let path = self.path_for(session_id);
        let id = *session_id;
        let contents = blocking(move || read_record(&path))
            .await
            .map_err(backend)?;
        match contents {
            Contents::Live(record) if record.id == id => Ok(Some(record)),
            Contents::Live(_) | Contents::Expired => Ok(None),
            // Reported, not hidden: the session layer removes and audits it.
            Contents::Unreadable => Err(session_store::Error::Decode(format!(
                "file store: session file {id} is not a session record"
            ))),
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let path = self.path_for(session_id);
        blocking(move || remove_locked(&path, |_| true).map(|_| ()))
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl StoreOps for FileStore {
    fn kind(&self) -> StoreKind {
        StoreKind::File
    }

    async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool> {
        let path = self.path_for(&record.id);
        let bytes = encode(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        blocking(move || link_new(&path, &bytes))
            .await
            .map_err(backend)
    }

    /// Every record file, live or not (loading checks).
    ///
    /// The directory is read on a blocking thread a page ahead of the reader, who holds
    /// the only other page: memory stays bounded whatever the number of files.
    fn key_pages(&self, page_size: usize) -> KeyPages<'_> {
        let dir = self.dir.clone();
        let page_size = page_size.max(1);
        let (pages, listed) = mpsc::channel(1);
        tokio::task::spawn_blocking(move || {
            let listing = match fs::read_dir(&*dir) {
                Ok(listing) => listing,
                Err(e) => {
                    let _ = pages.blocking_send(Err(StoreError::failed(
                        StoreKind::File,
                        "list keys",
                        e,
                    )));
                    return;
                }
            };
            let mut page = Vec::with_capacity(page_size);
            for entry in listing.flatten() {
                page.extend(record_id(&entry.file_name()));
                // A send fails once the reader dropped the stream: stop listing.
                if page.len() >= page_size
                    && pages.blocking_send(Ok(std::mem::take(&mut page))).is_err()
                {
                    return;
                }
            }
            if !page.is_empty() {
                let _ = pages.blocking_send(Ok(page));
            }
        });
        Box::pin(stream::unfold(listed, |mut listed| async move {
            listed.recv().await.map(|page| (page, listed))
        }))
    }

    async fn sweep(&self, progress: Progress) -> Result<StoreSweep, StoreError> {
        let report = self
            .sweep_expired_with(move |done, total| progress(done, total))
            .await
            .map_err(|e| StoreError::failed(StoreKind::File, "sweep", e))?;
        Ok(StoreSweep {
            expired: report.expired,
            unreadable: report.unreadable,
            stale_temp: report.stale_temp,
            failed: report.failed,
        })
    }

    /// Session files and their bytes.
    async fn usage(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let dir = self.dir.clone();
        let (files, bytes) = blocking(move || {
            let (mut files, mut bytes) = (0, 0);
            for entry in fs::read_dir(&*dir)?.flatten() {
                if record_id(&entry.file_name()).is_some() {
                    files += 1;
                    bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
            Ok((files, bytes))
        })
        .await
        .map_err(|e| StoreError::failed(StoreKind::File, "count files", e))?;
        Ok(vec![("files", files), ("bytes", bytes)])
    }

    /// Writes and removes a probe file: the directory is still there and writable.
    async fn ping(&self) -> Result<String, StoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            let probe = temp_path(&dir, "health");
            write_private(&probe, b"ok")?;
            fs::remove_file(&probe)
        })
        .await
        .map(|()| format!("{} writable", self.dir.display()))
        .map_err(|e| {
            StoreError::failed(
                StoreKind::File,
                "write a probe file",
                format!("{}: {e}", self.dir.display()),
            )
        })
    }
}

async fn blocking<T, F>(work: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

fn backend(e: io::Error) -> session_store::Error {
    session_store::Error::Backend(format!("file store: {e}"))
}

fn encode(record: &Record) -> io::Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(io::Error::other)
}

fn record_path(dir: &Path, id: &Id) -> PathBuf {
    // An `Id` prints as 22 characters of URL-safe base64: never `/`, `.` or NUL, so the
    // name cannot leave the directory whatever the cookie said.
    dir.join(id.to_string())
}

/// The record ID a directory entry stands for, or `None` for anything else.
fn record_id(name: &OsStr) -> Option<Id> {
    let name = name.to_str()?;
    (name.len() == 22)
        .then(|| Id::from_str(name).ok())
        .flatten()
}

fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    let nonce: u64 = rand::random();
    dir.join(format!(".{stem}.{nonce:016x}{TEMP_SUFFIX}"))
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Err(e) = file.write_all(bytes) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

fn read_record(path: &Path) -> io::Result<Contents> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::Expired),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(Contents::Unreadable),
        Err(e) => return Err(e),
    };
    Ok(match serde_json::from_slice::<Record>(&bytes) {
        Ok(record) if is_live(&record) => Contents::Live(record),
        Ok(_) => Contents::Expired,
        Err(_) => Contents::Unreadable,
    })
}

/// Opens `path` and locks it exclusively, making sure the name still points at the locked
/// file (it may have been deleted or replaced while we waited). `None`: it is gone.
fn lock_current(path: &Path) -> io::Result<Option<File>> {
    loop {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.lock()?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == file.metadata()?.ino() => return Ok(Some(file)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Writes a record file at `path` unless a live or unreadable one is there; whether it
/// was written. `hard_link` fails when the name exists, so a create never overwrites
/// another session; an expired record is removed (under its lock, re-checked) first.
fn link_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = temp_path(dir, "create");
    write_private(&temp, bytes)?;
    let linked = loop {
        match fs::hard_link(&temp, path) {
            Ok(()) => break Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match remove_locked(path, |now| matches!(now, Contents::Expired)) {
                    // Removed as expired, or gone meanwhile: the name is free again. (A
                    // dangling symlink is a name taken: `symlink_metadata` sees it.)
                    Ok(true) => {}
                    Ok(false) if fs::symlink_metadata(path).is_err() => {}
                    Ok(false) => break Ok(false),
                    Err(e) => break Err(e),
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = fs::remove_file(&temp);
    linked
}

/// Replaces the record at `path` if it still exists. `false`: it was gone, nothing written.
fn replace_existing(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let Some(_lock) = lock_current(path)? else {
        return Ok(false);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = temp_path(dir, "save");
    write_private(&temp, bytes)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(true)
}

/// Removes the file at `path` under its lock if `doomed` says so of its current contents.
fn remove_locked(path: &Path, doomed: impl Fn(&Contents) -> bool) -> io::Result<bool> {
    let Some(_lock) = lock_current(path)? else {
        return Ok(false);
    };
    if !doomed(&read_record(path)?) {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn sweep(dir: &Path, progress: &dyn Fn(u64, u64)) -> io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let entries: Vec<_> = fs::read_dir(dir)?.collect();
    let total = entries.len() as u64;
    for (done, entry) in (1..).zip(entries) {
        if done % 1024 == 0 || done == total {
            progress(done, total);
        }
        let Ok(entry) = entry else {
            report.failed += 1;
            continue;
        };
        let name = entry.file_name();
        let path = entry.path();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(TEMP_SUFFIX))
        {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if stale && fs::remove_file(&path).is_ok() {
                report.stale_temp += 1;
            }
            continue;
        }
        if record_id(&name).is_none() {
            continue;
        }
        report.examined += 1;
        let contents = match read_record(&path) {
            Ok(contents) => contents,
            Err(e) => {
                tracing::warn!(error = %e, "session sweep could not read a file; skipped");
                report.failed += 1;
                continue;
            }
        };
        let counter = match contents {
            Contents::Live(_) => continue,
            Contents::Expired => &mut report.expired,
            Contents::Unreadable => &mut report.unreadable,
        };
        match remove_locked(&path, |now| !matches!(now, Contents::Live(_))) {
            Ok(true) => *counter += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "session sweep could not remove a file; skipped");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}
