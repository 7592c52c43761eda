//! The off-site copy of backup sets: S3-compatible object storage, through the `object_store` crate.
//!
//! The remote sits beside the local [`BackupStore`](crate::store::BackupStore), not behind it: restores
//! read local files (`pg_restore` seeks in a dump, archives are extracted with free-space checks), so
//! the remote only ever moves whole sets in ([`Remote::pull`]) and out ([`Remote::push`]), and every set
//! is restored from the local store.
//!
//! Layout under `s3://bucket/prefix/`:
//! - `<set>/<file>.age` (or `<file>` unencrypted): every component file the manifest lists, each
//!   encrypted on its own as it is read (see [`crypt`]);
//! - `<set>/manifest.json`: the set's manifest exactly as written locally, uploaded **last** and only
//!   if absent (`If-None-Match: *`). A set is remote-complete when, and only when, this object exists.
//!   It stays readable (it holds names, sizes, checksums and versions, no data) so that listing and
//!   authentication need no decryption key; the backup key's HMAC authenticates it, and it is checked
//!   before anything else of the set is downloaded.
//! - `<set>/.claim`: created (only if absent) before the first byte of a set is uploaded, naming the
//!   manifest seal of the set being uploaded: two hosts uploading different sets under one name are
//!   told apart, and exactly one of them wins; the same set uploaded again resumes.
//!
//! A download writes into the local store's `.partial-<set>/`; each file is checked against the
//! manifest's SHA-256 and size before it gets its name, so an interrupted pull resumes with the files
//! already checked and never leaves a set that a restore could take.

pub mod crypt;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::Serialize;

pub use self::crypt::{Crypt, CryptError};
use crate::archive::{create_dir_mode, HashingWriter};
use crate::backup::auth::{AuthError, Keyring};
use crate::backup::{BackupError, Manifest, ManifestError, Progress, SetStatus, MANIFEST_FILE};
use crate::config::{Config, RemoteConfig};
use crate::secret::Secret;
use crate::store::{self, BackupStore as _, EntryKind, LocalDirStore, StoreError};

/// Name of the claim object of a set.
pub const CLAIM_OBJECT: &str = ".claim";
/// Marker of a local partial set being downloaded: the seal of the manifest it is downloaded for.
pub const PULL_MARKER: &str = ".rail-pull";
/// Suffix of a file being downloaded.
const PART_SUFFIX: &str = ".part";
/// Parts of one upload, below S3's limit of 10,000 (encryption adds a little to each file).
const MAX_PARTS: u64 = 9_000;
const MIB: u64 = 1024 * 1024;
/// Sets whose manifests are fetched at once when listing.
const LIST_CONCURRENCY: usize = 8;
/// An unfinished upload (a claim without a manifest) older than this may be removed by retention.
const STALE_UPLOAD: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Errors of the remote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    #[error("no remote is configured (backup.remote.url)")]
    NotConfigured,
    #[error("backup.remote.url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot set up the remote {url}")]
    Setup {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Crypt(#[from] CryptError),
    #[error("the remote {url} failed while {what}")]
    Request {
        url: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "no credentials for the remote {url}: set backup.remote.access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on AWS, an instance or container role is used when there is one; none answered while {what})"
    )]
    NoCredentials { url: String, what: String },
    #[error("no set `{name}` in {url}")]
    NotFound { name: String, url: String },
    #[error("set `{name}` in {url} is incomplete: its upload did not finish (it has no manifest)")]
    Incomplete { name: String, url: String },
    #[error("remote set `{name}` cannot be used")]
    Manifest {
        name: String,
        #[source]
        source: ManifestError,
    },
    #[error("remote set `{name}` cannot be trusted")]
    Unauthenticated {
        name: String,
        #[source]
        source: AuthError,
    },
    #[error("remote set `{name}`: {object} {problem}")]
    Damaged { name: String, object: String, problem: String },
    #[error(
        "set `{name}` is already being uploaded to {url} by another host, or was ({holder}): one set name is written by one host only; take the backup under another name"
    )]
    Claimed { name: String, url: String, holder: String },
    #[error(
        "{url} already holds a different set named `{name}`; take the backup under another name"
    )]
    Conflict { name: String, url: String },
    #[error(
        "backup `{name}` is {status} locally and is not uploaded: only complete, authenticated sets leave the host"
    )]
    NotUploadable { name: String, status: &'static str },
    #[error(
        "a partial download or backup of `{name}` is in {}: remove it with `rollback prune` or finish it", dir.display()
    )]
    PartialExists { name: String, dir: PathBuf },
    #[error("there is no complete, authenticated set in {url}")]
    NoSets { url: String },
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("cannot access {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a background task of the transfer failed")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<StoreError> for RemoteError {
    fn from(e: StoreError) -> Self {
        Self::Backup(e.into())
    }
}

impl RemoteError {
    /// Whether the error says the set is damaged or forged (exit 3), as opposed to a failure to reach
    /// or configure the remote.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Manifest { .. }
                | Self::Unauthenticated { .. }
                | Self::Damaged { .. }
                | Self::Claimed { .. }
                | Self::Conflict { .. }
                | Self::NotUploadable { .. }
                | Self::PartialExists { .. }
        )
    }
}

/// The remote of a configuration.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
    crypt: Arc<Crypt>,
    part_size: usize,
    concurrency: usize,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("crypt", &self.crypt)
            .finish_non_exhaustive()
    }
}

/// A set as the remote holds it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteEntry {
    pub name: String,
    /// `complete` (manifest present and authenticated), `incomplete` (no manifest),
    /// `unauthenticated` or `damaged`.
    pub status: SetStatus,
    pub created_at: Option<DateTime<Utc>>,
    /// When the manifest reached the remote.
    pub uploaded_at: Option<DateTime<Utc>>,
    /// Bytes of the plaintext components.
    pub size: u64,
    pub reason: Option<String>,
    pub app_version: Option<String>,
    pub schema_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub name: String,
    pub url: String,
    /// `uploaded`, or `already-remote` when the same set was there already.
    pub outcome: &'static str,
    pub files: usize,
    /// Bytes read from the local set.
    pub bytes: u64,
    pub encryption: String,
    pub duration_ms: u64,
}

/// What a pull (or a remote verification) did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub name: String,
    pub url: String,
    /// `downloaded`, `already-local` or `verified`.
    pub outcome: &'static str,
    pub files: usize,
    /// Files found already downloaded and checked by an earlier, interrupted pull.
    pub resumed_files: usize,
    /// Plaintext bytes downloaded.
    pub bytes: u64,
    pub path: Option<PathBuf>,
    pub key_id: Option<String>,
    pub checks: Vec<RemoteCheck>,
    pub duration_ms: u64,
}

/// One object checked by a remote verification.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteCheck {
    pub object: String,
    pub ok: bool,
    pub detail: String,
}

/// What remote retention removed (or would).
#[derive(Debug, Clone, Serialize)]
pub struct RemotePruneReport {
    pub url: String,
    pub removed: Vec<String>,
    pub kept: usize,
    pub dry_run: bool,
}

/// One file of a set: its path inside the set, size and SHA-256.
#[derive(Debug, Clone)]
struct SetFile {
    rel: String,
    size: u64,
    sha256: String,
}

fn set_files(manifest: &Manifest) -> Vec<SetFile> {
    let mut out = Vec::new();
    for c in &manifest.components {
        if c.files.is_empty() {
            out.push(SetFile { rel: c.file.clone(), size: c.size, sha256: c.sha256.clone() });
        } else {
            for f in &c.files {
                out.push(SetFile {
                    rel: format!("{}/{}", c.file, f.file),
                    size: f.size,
                    sha256: f.sha256.clone(),
                });
            }
        }
    }
    // Small files first: a cut connection then costs the least.
    out.sort_by_key(|f| f.size);
    out
}

/// `s3://bucket/prefix` → (bucket, prefix).
fn parse_url(url: &str) -> Result<(String, String), RemoteError> {
    let bad = |reason: &str| RemoteError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let rest = url.trim().strip_prefix("s3://").ok_or_else(|| bad("it must start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("it names no bucket"));
    }
    if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)) {
        return Err(bad("a bucket name has only lowercase letters, digits, `-` and `.`"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
        return Err(bad("the prefix must not hold `.`, `..` or empty segments"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

fn now_ms(start: std::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Remote {
    /// The remote of `cfg`, or `NotConfigured`.
    pub fn from_config(cfg: &Config) -> Result<Self, RemoteError> {
        Self::new(&cfg.backup.remote)
    }

    /// The remote described by `rc`.
    pub fn new(rc: &RemoteConfig) -> Result<Self, RemoteError> {
        if !rc.is_configured() {
            return Err(RemoteError::NotConfigured);
        }
        let (bucket, prefix) = parse_url(&rc.url)?;
        let url = format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_owned();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_region(&rc.region)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_retry(object_store::RetryConfig {
                max_retries: rc.retries as usize,
                retry_timeout: rc.request_timeout.get() * (rc.retries + 1),
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(rc.request_timeout.get())
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_allow_http(rc.endpoint.starts_with("http://")),
            );
        if !rc.endpoint.is_empty() {
            builder = builder.with_endpoint(&rc.endpoint);
        }
        let set = |s: &Secret| (!s.is_empty()).then(|| s.expose().to_owned());
        if let Some(v) = set(&rc.access_key_id) {
            builder = builder.with_access_key_id(v);
        }
        if let Some(v) = set(&rc.secret_access_key) {
            builder = builder.with_secret_access_key(v);
        }
        if let Some(v) = set(&rc.session_token) {
            builder = builder.with_token(v);
        }
        let store =
            builder.build().map_err(|source| RemoteError::Setup { url: url.clone(), source })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix.split('/').filter(|p| !p.is_empty()).collect::<ObjPath>(),
            url,
            crypt: Arc::new(Crypt::from_config(rc)?),
            part_size: (rc.part_size.bytes() as usize).max(5 * 1024 * 1024),
            concurrency: (rc.concurrency as usize).max(1),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How files are encrypted, in words.
    pub fn encryption(&self) -> &str {
        &self.crypt.description
    }

    fn set_prefix(&self, name: &str) -> ObjPath {
        self.prefix.child(name)
    }

    fn object(&self, name: &str, rel: &str) -> ObjPath {
        let mut path = self.set_prefix(name);
        for part in rel.split('/') {
            path = path.child(part);
        }
        path
    }

    fn object_name(&self, name: &str, rel: &str) -> String {
        let suffix = if self.crypt.is_encrypted() { crypt::SUFFIX } else { "" };
        format!("{name}/{rel}{suffix}")
    }

    fn request(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
        let what = what.into();
        move |source| {
            // With no key anywhere, object_store asks the instance metadata service: say what is missing.
            if source.to_string().contains("169.254.169.254") {
                return RemoteError::NoCredentials { url: self.url.clone(), what };
            }
            RemoteError::Request { url: self.url.clone(), what, source }
        }
    }

    /// The manifest bytes of `name` and when they were uploaded; `None` when absent.
    async fn manifest_bytes(
        &self,
        name: &str,
    ) -> Result<Option<(Bytes, DateTime<Utc>)>, RemoteError> {
        let path = self.object(name, MANIFEST_FILE);
        match self.store.get(&path).await {
            Ok(got) => {
                let uploaded = got.meta.last_modified;
                if got.meta.size > 16 * 1024 * 1024 {
                    return Err(RemoteError::Manifest {
                        name: name.to_owned(),
                        source: ManifestError::TooLarge,
                    });
                }
                let bytes = got
                    .bytes()
                    .await
                    .map_err(self.request(format!("reading the manifest of `{name}`")))?;
                Ok(Some((bytes, uploaded)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.request(format!("reading the manifest of `{name}`"))(e)),
        }
    }

    /// Read, check and authenticate the manifest of `name` before anything else of it is read.
    async fn checked_manifest(
        &self,
        name: &str,
        keys: &Keyring,
        emergency: bool,
    ) -> Result<(Manifest, Bytes, Option<String>), RemoteError> {
        store::validate_name(name)?;
        let Some((bytes, _)) = self.manifest_bytes(name).await? else {
            let claim = self.store.head(&self.object(name, CLAIM_OBJECT)).await;
            return Err(if claim.is_ok() {
                RemoteError::Incomplete { name: name.to_owned(), url: self.url.clone() }
            } else {
                RemoteError::NotFound { name: name.to_owned(), url: self.url.clone() }
            });
        };
        let manifest = Manifest::parse(&bytes, name, !emergency)
            .map_err(|source| RemoteError::Manifest { name: name.to_owned(), source })?;
        let key_id = match keys.verify(&manifest) {
            Ok(id) => Some(id),
            Err(_) if emergency => None,
            Err(source) => {
                return Err(RemoteError::Unauthenticated { name: name.to_owned(), source })
            }
        };
        Ok((manifest, bytes, key_id))
    }

    /// Every set in the remote, newest first, each authenticated with `keys`.
    pub async fn list(&self, keys: &Keyring) -> Result<Vec<RemoteEntry>, RemoteError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(self.request("listing sets"))?;
        let names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|n| store::validate_name(n).is_ok())
            .collect();
        let mut out: Vec<RemoteEntry> = futures_util::stream::iter(names)
            .map(|name| self.describe(name, keys))
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.name.cmp(&a.name)));
        Ok(out)
    }

    async fn describe(&self, name: String, keys: &Keyring) -> Result<RemoteEntry, RemoteError> {
        let mut entry = RemoteEntry {
            name: name.clone(),
            status: SetStatus::Incomplete,
            created_at: None,
            uploaded_at: None,
            size: 0,
            reason: None,
            app_version: None,
            schema_version: None,
            key_id: None,
            problem: None,
        };
        let Some((bytes, uploaded)) = self.manifest_bytes(&name).await? else {
            entry.problem = Some("no manifest: the upload did not finish".into());
            if let Ok(meta) = self.store.head(&self.object(&name, CLAIM_OBJECT)).await {
                entry.created_at = Some(meta.last_modified);
            }
            return Ok(entry);
        };
        entry.uploaded_at = Some(uploaded);
        let parsed = Manifest::parse(&bytes, &name, true);
        let manifest = match parsed {
            Ok(m) => {
                match keys.verify(&m) {
                    Ok(id) => {
                        entry.status = SetStatus::Complete;
                        entry.key_id = Some(id);
                    }
                    Err(e) => {
                        entry.status = SetStatus::Unauthenticated;
                        entry.problem = Some(e.to_string());
                    }
                }
                Some(m)
            }
            Err(e) => {
                entry.status = SetStatus::Damaged;
                entry.problem = Some(e.to_string());
                Manifest::parse(&bytes, &name, false).ok()
            }
        };
        if let Some(m) = manifest {
            entry.created_at = Some(m.created_at);
            entry.size = m.total_size();
            entry.reason = Some(m.reason.clone());
            entry.app_version.clone_from(&m.app_version);
            entry.schema_version.clone_from(&m.schema_version);
        }
        Ok(entry)
    }

    /// The newest complete, authenticated remote set that is not a pre-rollback safety copy.
    pub async fn newest(&self, keys: &Keyring) -> Result<RemoteEntry, RemoteError> {
        self.list(keys)
            .await?
            .into_iter()
            .find(|e| {
                e.status == SetStatus::Complete
                    && !e
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(crate::backup::PRE_ROLLBACK_REASON))
            })
            .ok_or_else(|| RemoteError::NoSets { url: self.url.clone() })
    }

    /// Upload the local set `name`: claim it, upload every file (encrypted), then its manifest, only if
    /// absent. Uploading a set the remote already holds is a no-op; an interrupted upload of the same
    /// set resumes (its files are sent again).
    pub async fn push(
        &self,
        cfg: &Config,
        name: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<PushReport, RemoteError> {
        let start = std::time::Instant::now();
        let entry = crate::backup::find(cfg, name)?;
        let (SetStatus::Complete, Some(manifest)) = (entry.status, entry.manifest.as_ref()) else {
            return Err(RemoteError::NotUploadable {
                name: name.to_owned(),
                status: entry.status.as_str(),
            });
        };
        let dir = entry.path.clone();
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes = Bytes::from(
            fs_err::read(&manifest_path)
                .map_err(|source| RemoteError::Io { path: manifest_path.clone(), source })?,
        );
        let seal = manifest.manifest_sha256.clone();
        let files = set_files(manifest);
        let mut report = PushReport {
            name: name.to_owned(),
            url: self.url.clone(),
            outcome: "uploaded",
            files: files.len(),
            bytes: files.iter().map(|f| f.size).sum(),
            encryption: self.crypt.description.clone(),
            duration_ms: 0,
        };
        if let Some((remote, _)) = self.manifest_bytes(name).await? {
            return if same_seal(&remote, name, &seal) {
                report.outcome = "already-remote";
                report.duration_ms = now_ms(start);
                Ok(report)
            } else {
                Err(RemoteError::Conflict { name: name.to_owned(), url: self.url.clone() })
            };
        }
        self.claim(name, &seal).await?;
        for file in &files {
            self.upload_file(name, &dir.join(&file.rel), file, &progress).await?;
        }
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self
            .store
            .put_opts(&self.object(name, MANIFEST_FILE), PutPayload::from(manifest_bytes), opts)
            .await
        {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let same = self
                    .manifest_bytes(name)
                    .await?
                    .is_some_and(|(remote, _)| same_seal(&remote, name, &seal));
                if !same {
                    return Err(RemoteError::Conflict {
                        name: name.to_owned(),
                        url: self.url.clone(),
                    });
                }
            }
            Err(e) => return Err(self.request(format!("writing the manifest of `{name}`"))(e)),
        }
        report.duration_ms = now_ms(start);
        tracing::info!(set = name, remote = %self.url, files = report.files, "uploaded");
        Ok(report)
    }

    /// Create the claim object of `name` for the set sealed `seal`, or accept the one that is there
    /// when it names the same set.
    async fn claim(&self, name: &str, seal: &str) -> Result<(), RemoteError> {
        let host = nix::unistd::gethostname()
            .map_or_else(|_| "unknown".into(), |h| h.to_string_lossy().into_owned());
        let body = serde_json::json!({
            "seal": seal,
            "host": host,
            "pid": std::process::id(),
            "at": Utc::now(),
        });
        let path = self.object(name, CLAIM_OBJECT);
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let payload = PutPayload::from(serde_json::to_vec(&body).expect("JSON"));
        match self.store.put_opts(&path, payload, opts).await {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let existing = self
                    .store
                    .get(&path)
                    .await
                    .map_err(self.request(format!("reading the claim of `{name}`")))?
                    .bytes()
                    .await
                    .map_err(self.request(format!("reading the claim of `{name}`")))?;
                let value: serde_json::Value =
                    serde_json::from_slice(&existing).unwrap_or(serde_json::Value::Null);
                if value.get("seal").and_then(|v| v.as_str()) == Some(seal) {
                    return Ok(());
                }
                let holder = format!(
                    "host {}, pid {}, at {}",
                    value.get("host").and_then(|v| v.as_str()).unwrap_or("?"),
                    value.get("pid").map_or_else(|| "?".into(), ToString::to_string),
                    value.get("at").and_then(|v| v.as_str()).unwrap_or("?")
                );
                Err(RemoteError::Claimed { name: name.to_owned(), url: self.url.clone(), holder })
            }
            Err(e) => Err(self.request(format!("claiming `{name}`"))(e)),
        }
    }

    /// Read, encrypt and upload one file: small files in one request, others in parts, several at once.
    async fn upload_file(
        &self,
        name: &str,
        path: &Path,
        file: &SetFile,
        progress: &Arc<dyn Progress>,
    ) -> Result<(), RemoteError> {
        let task = format!("upload {}", file.rel);
        let location = {
            let suffix = if self.crypt.is_encrypted() { crypt::SUFFIX } else { "" };
            self.object(name, &format!("{}{suffix}", file.rel))
        };
        progress.begin(&task, Some(file.size));
        // Memory is bounded by the parts in flight, one waiting and one being filled. S3 takes at most
        // 10,000 parts: a file too large for the configured size gets larger parts (whole MiB).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let part_size =
            self.part_size.max((file.size / MAX_PARTS).div_ceil(MIB) as usize * MIB as usize);
        let path_owned = path.to_owned();
        let encrypt = self.crypt.encrypt(ChunkWriter::new(tx, part_size));
        let mut writer =
            encrypt.map_err(|source| RemoteError::Io { path: path.to_owned(), source })?;
        let progress2 = Arc::clone(progress);
        let task2 = task.clone();
        let producer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut input = fs_err::File::open(&path_owned)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                writer.write_all(&buf[..n])?;
                progress2.advance(&task2, n as u64);
            }
            writer.finish()?.close()
        });
        let what = format!("uploading {}", self.object_name(name, &file.rel));
        let first = rx.recv().await;
        let second = if first.is_some() { rx.recv().await } else { None };
        let sent = match (first, second) {
            // One part at most: a single request.
            (first, None) => {
                let body = first.unwrap_or_default();
                self.store
                    .put(&location, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(self.request(what.clone()))
            }
            (Some(first), Some(second)) => {
                let upload = self
                    .store
                    .put_multipart(&location)
                    .await
                    .map_err(self.request(what.clone()))?;
                let mut multipart = WriteMultipart::new_with_chunk_size(upload, part_size);
                let mut result = Ok(());
                for chunk in [first, second] {
                    multipart.put(chunk);
                }
                while let Some(chunk) = rx.recv().await {
                    if let Err(e) = multipart.wait_for_capacity(self.concurrency).await {
                        result = Err(e);
                        break;
                    }
                    multipart.put(chunk);
                }
                match result {
                    Ok(()) => {
                        multipart.finish().await.map(|_| ()).map_err(self.request(what.clone()))
                    }
                    Err(e) => {
                        let _ = multipart.abort().await;
                        Err(self.request(what.clone())(e))
                    }
                }
            }
            (None, Some(_)) => unreachable!("a second chunk only follows a first"),
        };
        drop(rx);
        let read_result = producer.await.map_err(|source| RemoteError::Task { source })?;
        sent?;
        read_result.map_err(|source| RemoteError::Io { path: path.to_owned(), source })?;
        progress.end(&task, &bytesize::ByteSize(file.size).to_string());
        Ok(())
    }

    /// Download `name` into the local store (checked file by file, resumable), unless it is there.
    pub async fn pull(
        &self,
        cfg: &Config,
        name: &str,
        emergency: bool,
        progress: Arc<dyn Progress>,
    ) -> Result<PullReport, RemoteError> {
        let start = std::time::Instant::now();
        let keys = crate::backup::keyring(cfg)?;
        let local = crate::backup::store(cfg);
        let (manifest, bytes, key_id) = self.checked_manifest(name, &keys, emergency).await?;
        let files = set_files(&manifest);
        let mut report = PullReport {
            name: name.to_owned(),
            url: self.url.clone(),
            outcome: "downloaded",
            files: files.len(),
            resumed_files: 0,
            bytes: 0,
            path: None,
            key_id,
            checks: Vec::new(),
            duration_ms: 0,
        };
        match local.local_path(name) {
            Ok(entry) if entry.kind == EntryKind::Set => {
                let here = Manifest::read(&entry.path, name, false).ok();
                if here.is_some_and(|m| m.manifest_sha256 == manifest.manifest_sha256) {
                    report.outcome = "already-local";
                    report.path = Some(entry.path);
                    report.duration_ms = now_ms(start);
                    return Ok(report);
                }
                return Err(StoreError::Exists {
                    name: name.to_owned(),
                    dir: local.root().to_owned(),
                }
                .into());
            }
            Ok(entry) if entry.kind == EntryKind::Legacy => {
                return Err(StoreError::Exists {
                    name: name.to_owned(),
                    dir: local.root().to_owned(),
                }
                .into());
            }
            _ => {}
        }
        let partial = Self::partial_for(&local, name, &manifest.manifest_sha256)?;
        for file in &files {
            let target = partial.join(&file.rel);
            if let Some(parent) = target.parent() {
                if !parent.exists() {
                    create_dir_mode(parent, 0o700)
                        .map_err(|source| RemoteError::Io { path: parent.to_owned(), source })?;
                }
            }
            if target.exists() {
                let digest = crate::archive::hash_file(&target).ok();
                if digest.is_some_and(|d| d.sha256 == file.sha256 && d.size == file.size) {
                    report.resumed_files += 1;
                    continue;
                }
            }
            let part = partial.join(format!("{}{PART_SUFFIX}", file.rel));
            // What an interrupted pull was writing is started again.
            if part.exists() {
                fs_err::remove_file(&part)
                    .map_err(|source| RemoteError::Io { path: part.clone(), source })?;
            }
            let out = crate::archive::create_private_file(&part).map_err(|e| RemoteError::Io {
                path: part.clone(),
                source: std::io::Error::other(e),
            })?;
            let check = self.download_file(name, file, Some(out), &progress).await?;
            if !check.ok {
                let _ = fs_err::remove_file(&part);
                return Err(RemoteError::Damaged {
                    name: name.to_owned(),
                    object: check.object,
                    problem: check.detail,
                });
            }
            fs_err::rename(&part, &target)
                .map_err(|source| RemoteError::Io { path: target.clone(), source })?;
            report.bytes += file.size;
        }
        // The manifest goes in last, as a local backup writes it.
        let manifest_path = partial.join(MANIFEST_FILE);
        {
            let mut out = crate::archive::create_private_file(&manifest_path).map_err(|e| {
                RemoteError::Io { path: manifest_path.clone(), source: std::io::Error::other(e) }
            })?;
            out.write_all(&bytes)
                .and_then(|()| out.sync_all())
                .map_err(|source| RemoteError::Io { path: manifest_path.clone(), source })?;
        }
        let marker = partial.join(PULL_MARKER);
        fs_err::remove_file(&marker).map_err(|source| RemoteError::Io { path: marker, source })?;
        for dir in files.iter().filter_map(|f| f.rel.split_once('/').map(|(d, _)| d)) {
            store::sync_dir(&partial.join(dir))?;
        }
        let path = local.commit(name)?;
        report.path = Some(path);
        report.duration_ms = now_ms(start);
        tracing::info!(set = name, remote = %self.url, files = report.files, resumed = report.resumed_files, "downloaded");
        Ok(report)
    }

    /// The local partial directory to download `name` into: a new one, or the one an interrupted pull
    /// of the same set left.
    fn partial_for(local: &LocalDirStore, name: &str, seal: &str) -> Result<PathBuf, RemoteError> {
        let partial = local.root().join(format!("{}{name}", store::PARTIAL_PREFIX));
        if partial.exists() {
            let marker = fs_err::read_to_string(partial.join(PULL_MARKER)).unwrap_or_default();
            if marker.trim() == seal {
                return Ok(partial);
            }
            return Err(RemoteError::PartialExists {
                name: name.to_owned(),
                dir: local.root().to_owned(),
            });
        }
        let partial = local.begin(name)?;
        let marker = partial.join(PULL_MARKER);
        let mut file = crate::archive::create_private_file(&marker).map_err(|e| {
            RemoteError::Io { path: marker.clone(), source: std::io::Error::other(e) }
        })?;
        file.write_all(format!("{seal}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| RemoteError::Io { path: marker.clone(), source })?;
        Ok(partial)
    }

    /// Download, decrypt and hash one file into `out` (or nowhere), and compare it with the manifest.
    async fn download_file(
        &self,
        name: &str,
        file: &SetFile,
        out: Option<fs_err::File>,
        progress: &Arc<dyn Progress>,
    ) -> Result<RemoteCheck, RemoteError> {
        let encrypted = self.crypt.is_encrypted();
        let suffix = if encrypted { crypt::SUFFIX } else { "" };
        let object = format!("{name}/{}{suffix}", file.rel);
        let location = self.object(name, &format!("{}{suffix}", file.rel));
        let task = format!("download {}", file.rel);
        let got = match self.store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(RemoteCheck { object, ok: false, detail: "is missing".into() })
            }
            Err(e) => return Err(self.request(format!("downloading {object}"))(e)),
        };
        progress.begin(&task, Some(file.size));
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let crypt = Arc::clone(&self.crypt);
        let progress2 = Arc::clone(progress);
        let task2 = task.clone();
        let consumer =
            tokio::task::spawn_blocking(move || -> Result<crate::archive::Digest256, String> {
                // The decryptor reads the header at once: on this thread, never on the runtime's.
                let crypt_reader: Result<Box<dyn Read + Send>, crypt::DecryptFailure> = if encrypted
                {
                    crypt.decrypt(ChannelReader::new(rx))
                } else {
                    Ok(Box::new(ChannelReader::new(rx)))
                };
                let mut reader = crypt_reader.map_err(|e| format!("cannot be decrypted: {e}"))?;
                let sink: Box<dyn Write> = match &out {
                    Some(f) => Box::new(f),
                    None => Box::new(std::io::sink()),
                };
                let mut writer = HashingWriter::new(sink);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(format!("cannot be read to its end: {e}")),
                    };
                    writer.write_all(&buf[..n]).map_err(|e| format!("cannot be written: {e}"))?;
                    progress2.advance(&task2, n as u64);
                }
                let (_, digest) = writer.finish();
                if let Some(f) = &out {
                    f.sync_all().map_err(|e| format!("cannot be written: {e}"))?;
                }
                Ok(digest)
            });
        let mut stream = got.into_stream();
        let mut fetch_error = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        break; // the consumer stopped: its error says why
                    }
                }
                Err(e) => {
                    fetch_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = consumer.await.map_err(|source| RemoteError::Task { source })?;
        if let Some(e) = fetch_error {
            return Err(self.request(format!("downloading {object}"))(e));
        }
        let check = match written {
            Err(detail) => RemoteCheck { object, ok: false, detail },
            Ok(d) if d.sha256 != file.sha256 || d.size != file.size => RemoteCheck {
                object,
                ok: false,
                detail: format!(
                    "does not match the manifest: SHA-256 {} ({} bytes), expected {} ({} bytes); it is damaged or belongs to another set",
                    short(&d.sha256),
                    d.size,
                    short(&file.sha256),
                    file.size
                ),
            },
            Ok(d) => RemoteCheck {
                object,
                ok: true,
                detail: format!("{} bytes, SHA-256 {}", d.size, short(&d.sha256)),
            },
        };
        progress.end(&task, if check.ok { "ok" } else { "FAILED" });
        Ok(check)
    }

    /// Download every file of `name` and check it against the authenticated manifest, writing nothing.
    pub async fn verify(
        &self,
        cfg: &Config,
        name: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<PullReport, RemoteError> {
        let start = std::time::Instant::now();
        let keys = crate::backup::keyring(cfg)?;
        let (manifest, _, key_id) = self.checked_manifest(name, &keys, false).await?;
        let files = set_files(&manifest);
        let mut report = PullReport {
            name: name.to_owned(),
            url: self.url.clone(),
            outcome: "verified",
            files: files.len(),
            resumed_files: 0,
            bytes: 0,
            path: None,
            key_id,
            checks: vec![RemoteCheck {
                object: format!("{name}/{MANIFEST_FILE}"),
                ok: true,
                detail: "sealed and authenticated".into(),
            }],
            duration_ms: 0,
        };
        for file in &files {
            let check = self.download_file(name, file, None, &progress).await?;
            if check.ok {
                report.bytes += file.size;
            }
            report.checks.push(check);
        }
        report.duration_ms = now_ms(start);
        Ok(report)
    }

    /// Remove the remote sets beyond `backup.remote.keep_last` / `max_age_days`, and unfinished uploads
    /// older than a day. The newest complete, authenticated set is always kept; sets that do not
    /// authenticate are never removed (they are someone else's to explain).
    pub async fn prune(
        &self,
        cfg: &Config,
        dry_run: bool,
    ) -> Result<RemotePruneReport, RemoteError> {
        let keys = crate::backup::keyring(cfg)?;
        let rc = &cfg.backup.remote;
        let entries = self.list(&keys).await?;
        let now = Utc::now();
        let mut removed = Vec::new();
        let mut kept = 0usize;
        let mut complete_seen = 0u32;
        for entry in &entries {
            let remove = match entry.status {
                SetStatus::Complete => {
                    complete_seen += 1;
                    let too_many = complete_seen > rc.keep_last.max(1);
                    let too_old = rc.max_age_days > 0
                        && entry.created_at.is_some_and(|t| {
                            now - t > chrono::TimeDelta::days(i64::from(rc.max_age_days))
                        });
                    complete_seen > 1 && (too_many || too_old)
                }
                SetStatus::Incomplete => entry.created_at.is_some_and(|t| now - t > STALE_UPLOAD),
                _ => false,
            };
            if remove {
                removed.push(entry.name.clone());
            } else {
                kept += 1;
            }
        }
        if !dry_run {
            for name in &removed {
                self.delete_set(name).await?;
            }
        }
        Ok(RemotePruneReport { url: self.url.clone(), removed, kept, dry_run })
    }

    /// Remove every object of `name`, the manifest first so that the set stops being complete at once.
    async fn delete_set(&self, name: &str) -> Result<(), RemoteError> {
        match self.store.delete(&self.object(name, MANIFEST_FILE)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.request(format!("removing `{name}`"))(e)),
        }
        let prefix = self.set_prefix(name);
        let objects: Vec<ObjPath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(self.request(format!("listing `{name}`")))?;
        for object in objects {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.request(format!("removing `{name}`"))(e)),
            }
        }
        tracing::info!(set = name, remote = %self.url, "removed from the remote");
        Ok(())
    }

    /// Whether the remote answers (the bucket can be listed): the dry run's and the health check's probe.
    pub async fn probe(&self) -> Result<(), RemoteError> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(|_| ())
            .map_err(self.request("listing the bucket"))
    }
}

fn same_seal(bytes: &[u8], name: &str, seal: &str) -> bool {
    Manifest::parse(bytes, name, false).is_ok_and(|m| m.manifest_sha256 == seal)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// A writer that cuts what it is given into parts of `part_size` and sends them on.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: BytesMut,
    part_size: usize,
}

impl ChunkWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Bytes>, part_size: usize) -> Self {
        Self { tx, buf: BytesMut::with_capacity(part_size), part_size }
    }

    fn send(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Send what is left.
    fn close(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.send(rest)?;
        }
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.part_size {
            let full = self.buf.split().freeze();
            self.buf.reserve(self.part_size);
            self.send(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A blocking reader of chunks received from the download task.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A line for plans and reports: where the remote is and how it is encrypted.
pub fn describe_config(rc: &RemoteConfig) -> String {
    let mut out = rc.url.trim().to_owned();
    if !rc.endpoint.is_empty() {
        let _ = write!(out, " at {}", crate::secret::redact_url(&rc.endpoint));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_safe_prefix() {
        assert_eq!(
            parse_url("s3://backups/app/prod").unwrap(),
            ("backups".into(), "app/prod".into())
        );
        assert_eq!(parse_url("s3://backups").unwrap(), ("backups".into(), String::new()));
        assert_eq!(parse_url("s3://backups/x/").unwrap(), ("backups".into(), "x".into()));
        for bad in ["backups/x", "s3:///x", "s3://Backups/x", "s3://b/../x", "s3://b/a//c"] {
            let err = parse_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn chunks_are_cut_at_the_part_size() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let handle = std::thread::spawn(move || {
            let mut w = ChunkWriter::new(tx, 10);
            w.write_all(&[1u8; 25]).unwrap();
            w.close().unwrap();
        });
        handle.join().unwrap();
        let mut sizes = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, vec![10, 10, 5]);
    }
}
