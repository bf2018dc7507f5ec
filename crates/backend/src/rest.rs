//! The REST backend: restic's rest-server protocol (also spoken by `rclone serve restic`).
//!
//! `rest:http://user:pass@host:port/path/`: `POST /?create=true` creates the repository,
//! `GET|HEAD|POST|DELETE /{type}/{name}` (packs as `/data/{name}`, no subdirectory),
//! `/config`, and `GET /{type}/` lists with `Accept: application/vnd.x.restic.rest.v2`
//! (`[{"name":…,"size":…}]`; a v1 server's plain name list works too). Ranged reads send
//! `Range: bytes=a-b`.
//!
//! The protocol has no conditional create, so a write first checks with `HEAD` that the
//! file is missing (two writers of the same name race only with identical,
//! content-addressed data). Requests are bounded by `rest.connections` (default 5). Each
//! call sends its requests once; errors say whether a retry may help (5xx, 408, 429, broken
//! connections, timeouts), and [`crate::RetryBackend`] retries them: re-sending a `POST`
//! is safe because it carries the same bytes to the same name, and a retried write that
//! finds its own earlier attempt is recognised there. The password from the URL is used
//! for basic auth only and shown as `***` in [`Backend::location`].

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use url::Url;

use crate::options::BackendOptions;
use crate::retry::{describe_reqwest, reqwest_is_transient, status_is_transient};
use crate::s3_creds::Secret;
use crate::{Backend, BackendError, FileInfo, FileType, Handle, Id};

const V2: &str = "application/vnd.x.restic.rest.v2";

/// A repository behind a restic REST server.
pub struct RestBackend {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: Url,
    auth: Option<BasicAuth>,
    display: String,
    opts: BackendOptions,
    slots: Semaphore,
}

impl std::fmt::Debug for RestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestBackend")
            .field("location", &self.display)
            .field("connections", &self.opts.connections)
            .finish_non_exhaustive()
    }
}

/// One finished exchange: status, headers we need and the whole body.
struct Reply {
    status: StatusCode,
    content_length: Option<u64>,
    /// The last byte a `206` announced (`Content-Range: bytes FIRST-LAST/SIZE`).
    range_last: Option<u64>,
    body: Bytes,
}

/// LAST of `bytes FIRST-LAST/SIZE`.
fn range_last(v: &str) -> Option<u64> {
    let (_, last) = v
        .strip_prefix("bytes ")?
        .split_once('/')?
        .0
        .split_once('-')?;
    last.trim().parse().ok()
}

/// User name and password for basic auth.
type BasicAuth = (String, Secret);

/// One file of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listed {
    /// v2 listing: `{"name": …, "size": …}`.
    Sized(FileInfo),
    /// v1 listing: the name only, as listed (its size needs a `HEAD`).
    Named(Id, String),
}

/// Parses a listing body, v2 (objects with name and size) or v1 (names). Entries whose
/// name is not an id, or without a size in v2, are skipped.
pub(crate) fn parse_listing(body: &[u8]) -> Result<Vec<Listed>, serde_json::Error> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    let mut out = Vec::new();
    for item in items {
        match item {
            serde_json::Value::Object(m) => {
                let name = m.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                let size = m.get("size").and_then(|s| s.as_u64());
                if let (Ok(id), Some(size)) = (Id::parse(name), size) {
                    out.push(Listed::Sized(FileInfo { id, size }));
                }
            }
            serde_json::Value::String(name) => {
                if let Ok(id) = Id::parse(&name) {
                    out.push(Listed::Named(id, name));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Percent-decodes URL user info.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hexval = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `rest:` URLs into the base URL without credentials, the credentials, and the
/// redacted form for messages.
pub(crate) fn parse_rest_url(s: &str) -> Result<(Url, Option<BasicAuth>, String), BackendError> {
    let rest = s.strip_prefix("rest:").unwrap_or(s);
    let mut url = Url::parse(rest).map_err(|e| {
        // The URL may hold a password: name the problem, not the URL.
        BackendError::Config(format!("invalid REST URL: {e}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BackendError::Config(format!(
            "invalid REST URL: scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    let user = decode(url.username());
    let pass = url.password().map(decode);
    let auth = if user.is_empty() && pass.is_none() {
        None
    } else {
        Some((user, Secret::new(pass.unwrap_or_default())))
    };
    if auth.is_some() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url.set_query(None);
    url.set_fragment(None);
    let display = match &auth {
        Some((u, _)) => {
            let mut shown = url.clone();
            let _ = shown.set_username(u);
            let _ = shown.set_password(Some("***"));
            format!("rest:{shown}")
        }
        None => format!("rest:{url}"),
    };
    Ok((url, auth, display))
}

impl RestBackend {
    /// Opens `rest:http[s]://[user:pass@]host[:port]/[path/]`. Nothing is sent yet.
    pub fn open(url: &str, opts: BackendOptions) -> Result<RestBackend, BackendError> {
        crate::debug_log::init_from_env();
        let (base, auth, display) = parse_rest_url(url)?;
        let rt = crate::network_runtime("restash-rest")?;
        let client = opts
            .tls
            .reqwest_builder()?
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .timeout(opts.request_timeout)
            .pool_max_idle_per_host(opts.connections)
            .build()
            .map_err(|e| BackendError::Config(format!("HTTP client: {e}")))?;
        Ok(RestBackend {
            rt,
            client,
            base,
            auth,
            display,
            slots: Semaphore::new(opts.connections),
            opts,
        })
    }

    fn url(&self, h: &Handle) -> Url {
        let rel = match h.file_type() {
            FileType::Config => h.name(),
            t => format!("{}/{}", t.dir(), h.name()),
        };
        self.rel_url(&rel)
    }

    fn rel_url(&self, rel: &str) -> Url {
        self.base
            .join(rel)
            .expect("relative path joins onto the base")
    }

    fn error(&self, op: &str, what: &str, message: String, retryable: bool) -> BackendError {
        BackendError::Other {
            message: format!("REST {op} {what} at {}: {message}", self.display),
            retryable,
        }
    }

    fn status_error(&self, op: &str, what: &str, r: &Reply) -> BackendError {
        let mut msg = format!("server answered {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        let body = body.trim();
        if !body.is_empty() && body.len() < 300 {
            msg.push_str(&format!(": {body}"));
        }
        if r.status == StatusCode::UNAUTHORIZED {
            msg.push_str(" (wrong user name or password?)");
        }
        self.error(op, what, msg, status_is_transient(r.status.as_u16()))
    }

    /// Sends one request and reads the whole answer. Any status comes back as a [`Reply`]
    /// for the caller to judge; a transport failure is an error, retryable when it is
    /// transient ([`crate::RetryBackend`] does the retrying).
    async fn call(
        &self,
        op: &str,
        what: &str,
        method: Method,
        url: &Url,
        headers: &[(reqwest::header::HeaderName, String)],
        body: Option<&Bytes>,
    ) -> Result<Reply, BackendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("semaphore is never closed");
        let mut req = self.client.request(method, url.clone());
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p.expose()));
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b.clone());
        }
        let failed = |e: reqwest::Error| {
            crate::tls::tls_error(&e, &self.base, || {
                format!("REST {op} {what} at {}", self.display)
            })
            .unwrap_or_else(|| self.error(op, what, describe_reqwest(&e), reqwest_is_transient(&e)))
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let content_length = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let range_last = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(range_last);
        let body = resp.bytes().await.map_err(failed)?;
        Ok(Reply {
            status,
            content_length,
            range_last,
            body,
        })
    }

    async fn head(&self, h: &Handle) -> Result<u64, BackendError> {
        self.head_at(h.to_string(), &self.url(h)).await
    }

    /// The size of the file at `url`, named `what` in errors.
    async fn head_at(&self, what: String, url: &Url) -> Result<u64, BackendError> {
        let r = self
            .call("stat", &what, Method::HEAD, url, &[], None)
            .await?;
        match r.status {
            s if s.is_success() => r
                .content_length
                .ok_or_else(|| self.error("stat", &what, "no Content-Length".into(), false)),
            StatusCode::NOT_FOUND => Err(BackendError::NotFound(what)),
            _ => Err(self.status_error("stat", &what, &r)),
        }
    }
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        match self.stat(&Handle::config()) {
            Ok(_) => {
                return Err(BackendError::AlreadyExists(format!(
                    "config file in {}",
                    self.display
                )))
            }
            Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut url = self.base.clone();
        url.set_query(Some("create=true"));
        let r =
            self.rt
                .block_on(self.call("create", "repository", Method::POST, &url, &[], None))?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error("create", "repository", &r))
        }
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        let what = h.to_string();
        let r = self
            .rt
            .block_on(self.call("read", &what, Method::GET, &self.url(h), &[], None))?;
        match r.status {
            StatusCode::OK => Ok(r.body.to_vec()),
            StatusCode::NOT_FOUND => Err(BackendError::NotFound(what)),
            _ => Err(self.status_error("read", &what, &r)),
        }
    }

    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let what = h.to_string();
        let short = |size: u64| BackendError::ShortRead {
            what: what.clone(),
            offset,
            wanted: length,
            got: size.saturating_sub(offset).min(length),
        };
        buf.clear();
        if length == 0 {
            let size = self.stat(h)?;
            return if offset > size {
                Err(short(size))
            } else {
                Ok(())
            };
        }
        let end = offset.checked_add(length - 1).ok_or_else(|| short(0))?;
        let range = [(RANGE, format!("bytes={offset}-{end}"))];
        let r =
            self.rt
                .block_on(self.call("read", &what, Method::GET, &self.url(h), &range, None))?;
        let body = match r.status {
            StatusCode::PARTIAL_CONTENT if r.body.len() as u64 == length => &r.body[..],
            StatusCode::PARTIAL_CONTENT if r.body.len() as u64 > length => {
                return Err(self.error(
                    "read",
                    &what,
                    format!("the server sent more than the {length} bytes asked for"),
                    false,
                ))
            }
            // The whole range announced but not all of it sent: bytes lost on the way,
            // which a second request may bring whole.
            StatusCode::PARTIAL_CONTENT if r.range_last.is_some_and(|last| last >= end) => {
                return Err(self.error(
                    "read",
                    &what,
                    format!(
                        "the server announced bytes {offset}-{end} but sent {} of them",
                        r.body.len()
                    ),
                    true,
                ))
            }
            StatusCode::PARTIAL_CONTENT => return Err(short(offset + r.body.len() as u64)),
            // A server that ignores Range sends everything.
            StatusCode::OK => {
                let size = r.body.len() as u64;
                if offset + length > size {
                    return Err(short(size));
                }
                &r.body[offset as usize..(offset + length) as usize]
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return match self.stat(h) {
                    Ok(size) => Err(short(size)),
                    Err(e) if e.is_retryable() => Err(e),
                    Err(_) => Err(short(0)),
                }
            }
            StatusCode::NOT_FOUND => return Err(BackendError::NotFound(what)),
            _ => return Err(self.status_error("read", &what, &r)),
        };
        buf.extend_from_slice(body);
        Ok(())
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let what = h.to_string();
        let body = Bytes::copy_from_slice(data);
        self.rt.block_on(async {
            match self.head(h).await {
                Ok(_) => return Err(BackendError::AlreadyExists(what.clone())),
                Err(BackendError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            let r = self
                .call("write", &what, Method::POST, &self.url(h), &[], Some(&body))
                .await?;
            if r.status.is_success() {
                Ok(())
            } else {
                Err(self.status_error("write", &what, &r))
            }
        })
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.rt.block_on(self.head(h))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        let what = h.to_string();
        let r = self.rt.block_on(self.call(
            "remove",
            &what,
            Method::DELETE,
            &self.url(h),
            &[],
            None,
        ))?;
        if r.status.is_success() || r.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.status_error("remove", &what, &r))
        }
    }

    // The REST protocol names restic's types only: a server refuses any other path.
    fn keeps(&self, t: FileType) -> bool {
        t != FileType::Hint
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let what = format!("{}/", t.dir());
        let url = self.rel_url(&what);
        let accept = [(ACCEPT, V2.to_string())];
        let r = self
            .rt
            .block_on(self.call("list", &what, Method::GET, &url, &accept, None))?;
        match r.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            _ => return Err(self.status_error("list", &what, &r)),
        }
        let entries = parse_listing(&r.body)
            .map_err(|e| self.error("list", &what, format!("bad listing: {e}"), false))?;
        let mut out = Vec::new();
        for entry in entries {
            match entry {
                Listed::Sized(info) => out.push(info),
                // v1: sizes by HEAD of the name as listed: a handle's lower-case name
                // would miss a file listed in upper case.
                Listed::Named(id, name) => {
                    let rel = format!("{what}{name}");
                    let size = self
                        .rt
                        .block_on(self.head_at(rel.clone(), &self.rel_url(&rel)))?;
                    out.push(FileInfo { id, size });
                }
            }
        }
        Ok(crate::count_once(out, &format!("REST {what}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(range_last("bytes 0-99/200"), Some(99));
        assert_eq!(range_last("bytes 100-199/*"), Some(199));
        for bad in ["bytes */200", "0-99/200", "bytes 0-x/1", ""] {
            assert_eq!(range_last(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_hide_the_password() {
        let (base, auth, shown) =
            parse_rest_url("rest:http://us%40er:p%3Ass@host:8000/repo").unwrap();
        assert_eq!(base.as_str(), "http://host:8000/repo/");
        let (u, p) = auth.unwrap();
        assert_eq!((u.as_str(), p.expose()), ("us@er", "p:ss"));
        assert_eq!(shown, "rest:http://us%40er:***@host:8000/repo/");
        assert!(!shown.contains("p%3Ass"));

        let (base, auth, shown) = parse_rest_url("rest:https://host/").unwrap();
        assert!(auth.is_none());
        assert_eq!(base.as_str(), "https://host/");
        assert_eq!(shown, "rest:https://host/");

        let e = parse_rest_url("rest:ftp://u:secret@host/").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        let e = parse_rest_url("rest:http://u:secret@[bad/").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn handle_urls() {
        let be =
            RestBackend::open("rest:http://127.0.0.1:1/r/", BackendOptions::default()).unwrap();
        let id = Id([0xab; 32]);
        assert_eq!(
            be.url(&Handle::config()).as_str(),
            "http://127.0.0.1:1/r/config"
        );
        assert_eq!(
            be.url(&Handle::new(FileType::Pack, id)).as_str(),
            format!("http://127.0.0.1:1/r/data/{id}")
        );
        assert_eq!(
            be.url(&Handle::new(FileType::Key, id)).as_str(),
            format!("http://127.0.0.1:1/r/keys/{id}")
        );
    }
}
