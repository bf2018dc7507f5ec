//! The S3 backend, on the `object_store` crate (Apache Arrow project): SigV4 signing,
//! pagination, ranged GETs, multipart uploads and conditional PUTs, all maintained upstream
//! and used by many clients.
//!
//! The [`Backend`] trait is synchronous, so [`S3Backend`] owns a small tokio runtime
//! (2 worker threads) and every method `block_on`s; concurrent callers share it. A
//! semaphore ([`object_store::limit::LimitStore`]) bounds requests in flight to
//! `s3.connections` (default 5, as restic).
//!
//! * Each call sends its requests once: `object_store`'s own retries are off, and
//!   [`crate::RetryBackend`] retries whole calls whose error is retryable (5xx, 408, 429
//!   and `SlowDown`, refused, broken or timed-out connections; never another 4xx). Only
//!   that layer can tell a re-sent create-only `PUT` that finds its own first attempt from
//!   a conflict, so the retrying lives there for every request alike.
//! * Writes are create-only: `PUT` with `If-None-Match: *`; 412 means the file exists. A
//!   server that answers 501/`NotImplemented` to that is remembered and gets `HEAD` then
//!   `PUT` instead (a small race window between two writers of the same name, which only
//!   happens with identical content-addressed data). Objects above the multipart threshold
//!   (64 MiB) are checked with `HEAD` and uploaded in parts; a failed upload is aborted so
//!   its parts are not kept.
//! * A `HEAD` that is refused has no body to say why, so one ranged `GET` fetches the S3
//!   error code (e.g. `SignatureDoesNotMatch`) for the message.
//! * `create()` creates the bucket if it is missing (`PUT /bucket`, signed by
//!   [`crate::sigv4`]), as `restic init` does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::client::{HttpClient, HttpConnector};
use object_store::limit::LimitStore;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig,
};
use tracing::debug;

use crate::options::{BackendOptions, S3Layout};
use crate::retry::{describe_reqwest, reqwest_is_transient};
use crate::s3_config::{object_key, parse_s3_url, type_dir, S3Location};
use crate::s3_creds::{resolve, CredentialSource, Credentials};
use crate::s3_error::{analyze, xml_tag, S3Failure};
use crate::{Backend, BackendError, FileInfo, FileType, Handle, Id};

/// A restic repository in an S3 bucket (AWS or any S3-compatible server).
pub struct S3Backend {
    rt: tokio::runtime::Runtime,
    store: LimitStore<AmazonS3>,
    loc: S3Location,
    creds: Option<Credentials>,
    http: reqwest::Client,
    opts: BackendOptions,
    layout: OnceLock<S3Layout>,
    conditional_put: AtomicBool,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.loc.display())
            .field("region", &self.loc.region)
            .field("layout", &self.layout.get())
            .field("connections", &self.opts.connections)
            .finish_non_exhaustive()
    }
}

/// Hands object_store the backend's own HTTP client, the one that presents the
/// `--tls-client-cert` certificate.
#[derive(Debug)]
struct SharedClient(reqwest::Client);

impl HttpConnector for SharedClient {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.0.clone()))
    }
}

/// A create-only upload's outcome short of success.
enum PutError {
    Exists,
    Store(object_store::Error),
}

impl From<object_store::Error> for PutError {
    fn from(e: object_store::Error) -> Self {
        PutError::Store(e)
    }
}

impl S3Backend {
    /// Opens `s3:…` (the `s3:` prefix is optional) with credentials from the environment.
    /// Nothing is sent to the server yet.
    pub fn open(url: &str, opts: BackendOptions) -> Result<S3Backend, BackendError> {
        S3Backend::open_with_env(url, opts, &|k| std::env::var(k).ok())
    }

    /// Like [`S3Backend::open`], reading variables through `env` (for tests).
    pub fn open_with_env(
        url: &str,
        opts: BackendOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Backend, BackendError> {
        crate::debug_log::init_from_env();
        let rest = url.strip_prefix("s3:").unwrap_or(url);
        let loc = parse_s3_url(rest, env)?;
        let source = resolve(env)?;
        let rt = crate::network_runtime("restash-s3")?;
        let client_options = opts.tls.object_store_options(
            ClientOptions::new()
                .with_allow_http(loc.http)
                .with_connect_timeout(opts.connect_timeout)
                .with_read_timeout(opts.read_timeout)
                .with_timeout(opts.request_timeout)
                .with_pool_max_idle_per_host(opts.connections),
        )?;
        // One request per call: RetryBackend retries every call with one budget, and only
        // it can recognise a re-sent create-only PUT's own first attempt.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: opts.retry_timeout,
        };
        let (mut builder, creds) = match source {
            CredentialSource::Static(c) => {
                let mut b = AmazonS3Builder::new()
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(c.secret_access_key.expose());
                if let Some(t) = &c.session_token {
                    b = b.with_token(t.expose());
                }
                (b, Some(c))
            }
            // Web identity or container credentials: object_store reads the same variables.
            CredentialSource::Ambient => (AmazonS3Builder::from_env(), None),
        };
        builder = builder
            .with_bucket_name(&loc.bucket)
            .with_region(&loc.region)
            .with_client_options(client_options)
            .with_retry(retry)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_disable_tagging(true);
        builder = match &loc.endpoint {
            Some(e) => builder
                .with_endpoint(e)
                .with_virtual_hosted_style_request(false),
            None => builder.with_virtual_hosted_style_request(true),
        };
        let _guard = rt.enter();
        let http = opts
            .tls
            .reqwest_builder()?
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .timeout(opts.request_timeout)
            .pool_max_idle_per_host(opts.connections)
            // object_store turns these off too: compression hides an object's real size.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
            .map_err(|e| BackendError::Config(format!("HTTP client: {e}")))?;
        if opts.tls.has_client_cert() {
            // object_store's options have no client certificate: it gets this client.
            builder = builder.with_http_connector(SharedClient(http.clone()));
        }
        let s3 = builder.build().map_err(|e| {
            BackendError::Config(format!("S3 configuration for {}: {e}", loc.display()))
        })?;
        drop(_guard);
        let layout = OnceLock::new();
        if let Some(l) = opts.s3_layout {
            let _ = layout.set(l);
        }
        Ok(S3Backend {
            store: LimitStore::new(s3, opts.connections),
            rt,
            loc,
            creds,
            http,
            opts,
            layout,
            conditional_put: AtomicBool::new(true),
        })
    }

    /// The layout in use, detected on first need like restic: objects under `keys/` →
    /// default; none there but some under `key/` → s3legacy; neither → default.
    pub fn layout(&self) -> Result<S3Layout, BackendError> {
        if let Some(l) = self.layout.get() {
            return Ok(*l);
        }
        let detected = self.rt.block_on(async {
            if self.any_under("keys").await? {
                return Ok(S3Layout::Default);
            }
            if self.any_under("key").await? {
                return Ok(S3Layout::S3Legacy);
            }
            Ok(S3Layout::Default)
        })?;
        debug!("S3 layout of {}: {detected:?}", self.loc.display());
        Ok(*self.layout.get_or_init(|| detected))
    }

    /// The object's ETag: an MD5 for a single PUT, `<md5>-<parts>` for a multipart upload
    /// (for diagnostics and tests).
    pub fn etag(&self, h: &Handle) -> Result<Option<String>, BackendError> {
        let path = self.path(h)?;
        self.rt
            .block_on(self.store.head(&path))
            .map(|m| m.e_tag)
            .map_err(|e| self.fail("stat", &h.to_string(), e))
    }

    async fn any_under(&self, dir: &str) -> Result<bool, BackendError> {
        let prefix = self.key_path(dir);
        let mut s = self.store.list(Some(&prefix));
        match s.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.fail("list", &format!("{dir}/"), e)),
        }
    }

    fn key_path(&self, key: &str) -> Path {
        if self.loc.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.loc.prefix))
        }
    }

    fn path(&self, h: &Handle) -> Result<Path, BackendError> {
        // The config's key is the same in every layout: no detection needed to open.
        let layout = match h.file_type() {
            FileType::Config => S3Layout::Default,
            _ => self.layout()?,
        };
        Ok(self.key_path(&object_key(layout, h)))
    }

    /// A backend error for an `object_store` failure of `op` on `what`.
    fn fail(&self, op: &str, what: &str, e: object_store::Error) -> BackendError {
        match e {
            object_store::Error::NotFound { .. } => BackendError::NotFound(what.to_string()),
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => {
                BackendError::AlreadyExists(what.to_string())
            }
            e => self.failure(op, what, &analyze(&e)),
        }
    }

    fn failure(&self, op: &str, what: &str, f: &S3Failure) -> BackendError {
        if let Some(reason) = &f.tls {
            return BackendError::Tls {
                context: format!("S3 {op} {what} in {}", self.loc.display()),
                host: crate::tls::host_of(&self.loc.bucket_url),
                reason: reason.clone(),
            };
        }
        BackendError::Other {
            message: format!("S3 {op} {what} in {}: {}", self.loc.display(), f.describe()),
            retryable: f.transient(),
        }
    }

    /// For a refused `HEAD` (no body): the S3 error code from a one-byte `GET`.
    async fn explain(&self, path: &Path, f: S3Failure) -> S3Failure {
        if f.code.is_some() || !matches!(f.status, Some(400 | 401 | 403)) {
            return f;
        }
        let opts = GetOptions::new().with_range(Some(0..1));
        match self.store.get_opts(path, opts).await {
            Err(e) => {
                let g = analyze(&e);
                if g.code.is_some() {
                    g
                } else {
                    f
                }
            }
            Ok(_) => f,
        }
    }

    async fn head(&self, path: &Path, what: &str) -> Result<u64, BackendError> {
        match self.store.head(path).await {
            Ok(m) => Ok(m.size),
            Err(object_store::Error::NotFound { .. }) => {
                Err(BackendError::NotFound(what.to_string()))
            }
            Err(e) => {
                let f = self.explain(path, analyze(&e)).await;
                Err(self.failure("stat", what, &f))
            }
        }
    }

    async fn exists_now(&self, path: &Path) -> Result<bool, object_store::Error> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn write_once(&self, path: &Path, data: &Bytes) -> Result<(), PutError> {
        if data.len() > self.opts.multipart_threshold {
            if self.exists_now(path).await? {
                return Err(PutError::Exists);
            }
            return Ok(self.upload_parts(path, data).await?);
        }
        let payload = PutPayload::from(data.clone());
        if self.conditional_put.load(Ordering::Relaxed) {
            match self
                .store
                .put_opts(path, payload.clone(), PutOptions::from(PutMode::Create))
                .await
            {
                Ok(_) => return Ok(()),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => return Err(PutError::Exists),
                Err(e) => {
                    let f = analyze(&e);
                    if !f.not_implemented() {
                        return Err(e.into());
                    }
                    debug!(
                        "S3 server does not support conditional PUT ({}); using HEAD then PUT",
                        f.describe()
                    );
                    self.conditional_put.store(false, Ordering::Relaxed);
                }
            }
        }
        if self.exists_now(path).await? {
            return Err(PutError::Exists);
        }
        self.store.put(path, payload).await?;
        Ok(())
    }

    /// Uploads `data` in parts of `part_size`, all in flight at once (the store's
    /// semaphore bounds them). A failed upload is aborted: S3 keeps, and bills, the parts
    /// of an unfinished upload until then.
    async fn upload_parts(&self, path: &Path, data: &Bytes) -> Result<(), object_store::Error> {
        let mut upload = self.store.put_multipart(path).await?;
        let step = self.opts.part_size.max(1);
        let parts: Vec<_> = (0..data.len())
            .step_by(step)
            .map(|at| upload.put_part(data.slice(at..(at + step).min(data.len())).into()))
            .collect();
        let done = match futures_util::future::try_join_all(parts).await {
            Ok(_) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if done.is_err() {
            if let Err(e) = upload.abort().await {
                debug!(
                    "S3 aborting the multipart upload of {path}: {}",
                    analyze(&e).describe()
                );
            }
        }
        done
    }

    /// Bucket-level request signed here (object_store has none): `GET /bucket?list-type=2`
    /// to see whether the bucket exists, `PUT /bucket` to create it.
    async fn bucket_request(
        &self,
        creds: &Credentials,
        method: reqwest::Method,
        query: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String), BackendError> {
        let mut url = self.loc.bucket_url.clone();
        url.set_query((!query.is_empty()).then_some(query));
        let hash = crate::sigv4::payload_hash(&body);
        let headers = crate::sigv4::sign(
            method.as_str(),
            &url,
            &self.loc.region,
            creds,
            &hash,
            chrono::Utc::now(),
        );
        let mut req = self.http.request(method, url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let failed = |e: reqwest::Error| {
            crate::tls::tls_error(&e, &self.loc.bucket_url, || {
                format!("S3 bucket {} at {}", self.loc.bucket, self.loc.display())
            })
            .unwrap_or_else(|| self.bucket_error(&describe_reqwest(&e), reqwest_is_transient(&e)))
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(failed)?;
        Ok((status, text))
    }

    fn bucket_error(&self, what: &str, retryable: bool) -> BackendError {
        BackendError::Other {
            message: format!(
                "S3 bucket {} at {}: {what}",
                self.loc.bucket,
                self.loc.display()
            ),
            retryable,
        }
    }

    fn bucket_failure(&self, status: u16, body: &str) -> BackendError {
        let f = S3Failure {
            status: Some(status),
            code: xml_tag(body, "Code"),
            message: xml_tag(body, "Message"),
            text: format!("HTTP {status}"),
            ..S3Failure::default()
        };
        self.bucket_error(&f.describe(), f.transient())
    }

    /// Creates the bucket unless it exists (or credentials come from a web identity, which
    /// this signer does not handle: then the bucket must exist).
    async fn ensure_bucket(&self) -> Result<(), BackendError> {
        let Some(creds) = &self.creds else {
            return Ok(());
        };
        let (status, body) = self
            .bucket_request(
                creds,
                reqwest::Method::GET,
                "list-type=2&max-keys=1",
                Vec::new(),
            )
            .await?;
        match status {
            200..=299 => return Ok(()),
            404 => {}
            _ => return Err(self.bucket_failure(status, &body)),
        }
        let body = if self.loc.region == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.loc.region
            )
            .into_bytes()
        };
        let (status, text) = self
            .bucket_request(creds, reqwest::Method::PUT, "", body)
            .await?;
        match (status, xml_tag(&text, "Code").as_deref()) {
            (200..=299, _) | (409, Some("BucketAlreadyOwnedByYou")) => {
                debug!("created S3 bucket {}", self.loc.bucket);
                Ok(())
            }
            _ => Err(self.bucket_failure(status, &text)),
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.loc.display()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.rt.block_on(self.ensure_bucket())?;
        let cfg = Handle::config();
        match self.stat(&cfg) {
            Ok(_) => {
                return Err(BackendError::AlreadyExists(format!(
                    "config file in {}",
                    self.loc.display()
                )))
            }
            Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let _ = self
            .layout
            .set(self.opts.s3_layout.unwrap_or(S3Layout::Default));
        Ok(())
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        let path = self.path(h)?;
        let what = h.to_string();
        self.rt.block_on(async {
            let r = self
                .store
                .get(&path)
                .await
                .map_err(|e| self.fail("read", &what, e))?;
            let b = r.bytes().await.map_err(|e| self.fail("read", &what, e))?;
            Ok(b.to_vec())
        })
    }

    // The body is copied chunk by chunk into the caller's buffer as it arrives: no second
    // copy of the whole range, and a reused buffer's pages stay mapped between requests.
    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let path = self.path(h)?;
        let what = h.to_string();
        let short = |size: u64| BackendError::ShortRead {
            what: what.clone(),
            offset,
            wanted: length,
            got: size.saturating_sub(offset).min(length),
        };
        buf.clear();
        self.rt.block_on(async {
            if length == 0 {
                let size = self.head(&path, &what).await?;
                return if offset > size {
                    Err(short(size))
                } else {
                    Ok(())
                };
            }
            let end = offset.checked_add(length).ok_or_else(|| short(0))?;
            let opts = GetOptions::new().with_range(Some(offset..end));
            let got = match self.store.get_opts(&path, opts).await {
                Ok(got) => got,
                Err(e @ object_store::Error::NotFound { .. }) => {
                    return Err(self.fail("read", &what, e))
                }
                Err(e) if analyze(&e).transient() => return Err(self.fail("read", &what, e)),
                Err(e) => {
                    // A range past the end: report it as the short read it is.
                    return match self.head(&path, &what).await {
                        Ok(size) if end > size => Err(short(size)),
                        _ => Err(self.fail("read", &what, e)),
                    };
                }
            };
            // The range the answer's Content-Range announced (object_store has checked it is
            // the one asked for, or its start up to a shorter object's end).
            let announced = got.range.clone();
            // The announced range, not the asked length (which comes from an index), bounds
            // what is reserved.
            buf.reserve((announced.end - announced.start).min(length) as usize);
            let mut body = got.into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| self.fail("read", &what, e))?;
                if (buf.len() + chunk.len()) as u64 > length {
                    return Err(BackendError::Other {
                        message: format!(
                            "S3 read {what}: the server sent more than the {length} bytes \
                             asked for"
                        ),
                        retryable: false,
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            if buf.len() as u64 != length {
                if announced.end >= end {
                    // Not a short object: an answer that lost bytes on the way, which a
                    // second request may bring whole.
                    return Err(BackendError::Other {
                        message: format!(
                            "S3 read {what} in {}: the server announced bytes {offset}..{end} \
                             but sent {} of them",
                            self.loc.display(),
                            buf.len()
                        ),
                        retryable: true,
                    });
                }
                return Err(short(offset + buf.len() as u64));
            }
            Ok(())
        })
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let path = self.path(h)?;
        let what = h.to_string();
        let data = Bytes::copy_from_slice(data);
        match self.rt.block_on(self.write_once(&path, &data)) {
            Ok(()) => Ok(()),
            Err(PutError::Exists) => Err(BackendError::AlreadyExists(what)),
            Err(PutError::Store(e)) => Err(self.fail("write", &what, e)),
        }
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        let path = self.path(h)?;
        self.rt.block_on(self.head(&path, &h.to_string()))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        let path = self.path(h)?;
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("remove", &h.to_string(), e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        if t == FileType::Key && self.layout.get().is_none() {
            // Detection's first question is whether `keys/` holds anything: the listing
            // of `keys/` answers it, one round trip less when a command opens.
            let keys = self.list_dir(type_dir(S3Layout::Default, t))?;
            if !keys.is_empty() {
                let _ = self.layout.set(S3Layout::Default);
                return Ok(keys);
            }
        }
        self.list_dir(type_dir(self.layout()?, t))
    }

    fn list_group(&self, t: FileType, group: &str) -> Result<Vec<FileInfo>, BackendError> {
        match t.subdir(group).filter(|s| s.len() == group.len()) {
            Some(sub) => self.list_dir(&format!("{}/{sub}", type_dir(S3Layout::Default, t))),
            None => self.list(t).map(|files| crate::in_group(files, group)),
        }
    }
}

impl S3Backend {
    /// Every file with an id name under `dir`.
    fn list_dir(&self, dir: &str) -> Result<Vec<FileInfo>, BackendError> {
        let prefix = self.key_path(dir);
        self.rt.block_on(async {
            // Recursive listing (no delimiter): data/ab/<id> and legacy data/<id> alike.
            let mut stream = self.store.list(Some(&prefix));
            let mut out = Vec::new();
            while let Some(item) = stream.next().await {
                let meta = item.map_err(|e| self.fail("list", &format!("{dir}/"), e))?;
                if let Some(id) = meta.location.filename().and_then(|n| Id::parse(n).ok()) {
                    out.push(FileInfo {
                        id,
                        size: meta.size,
                    });
                }
            }
            Ok(crate::count_once(out, &format!("S3 {dir}/")))
        })
    }
}
