//! Requests to pages and downloads. Paths are routed by hand on their raw, percent-decoded
//! bytes: a snapshot's names need not be UTF-8, and each URL segment is one name.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::write::GzEncoder;
use restash_engine::events::{Cancel, Control, Discard};
use restash_engine::{
    dir_subtree, dump_tar, dump_zip, find_node_by_names, EngineError, FileReader, RepoLock,
};
use restash_format::NodeType;
use serde_json::json;
use tokio::sync::oneshot;

use crate::html::{self, SnapshotRow};
use crate::stream::{blocking, body, BodyWriter, Workers};
use crate::{Library, ServeError, ServeOptions};

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

struct App {
    library: Arc<Library>,
    opts: ServeOptions,
    workers: Arc<Workers>,
    cancel: Cancel,
}

/// Serves until `cancel` fires; downloads still running then get two seconds to end (the
/// caller waits for their threads once the connections are gone).
pub async fn run(
    library: Arc<Library>,
    opts: ServeOptions,
    listener: std::net::TcpListener,
    cancel: Cancel,
    workers: Arc<Workers>,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Server)?;
    let app = Arc::new(App {
        library,
        opts,
        workers,
        cancel: cancel.clone(),
    });
    let router = axum::Router::new().fallback(handle).with_state(app);
    let stop = cancel.clone();
    let stopped = async move {
        while !stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(stopped);
    tokio::select! {
        r = server => r.map_err(ServeError::Server),
        _ = async {
            while !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn html_page(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn status_of(e: &EngineError) -> StatusCode {
    match e {
        EngineError::NotFound(_) => StatusCode::NOT_FOUND,
        EngineError::Usage(_) => StatusCode::BAD_REQUEST,
        EngineError::Locked(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn failure(app: &App, e: &EngineError) -> Response {
    let status = status_of(e);
    if status.is_server_error() {
        app.library.warn(&format!("request failed: {e}"));
    }
    html_page(
        status,
        html::error(status.canonical_reason().unwrap_or("Error"), &e.to_string()),
    )
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    secure(route(app, req).await)
}

async fn route(app: Arc<App>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return "ok\n".into_response();
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !app.opts.auth.allows(given) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"restash\"")],
            "authentication required\n",
        )
            .into_response();
    }
    // HEAD is GET without the body, which the HTTP layer leaves out.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<Vec<u8>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).collect())
        .collect();
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    match segs
        .iter()
        .map(Vec::as_slice)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => volumes_page(app).await,
        [b"assets", b"style.css"] => asset("text/css; charset=utf-8", STYLE),
        [b"assets", b"app.js"] => asset("text/javascript; charset=utf-8", SCRIPT),
        [b"api", b"volumes"] => volumes_json(app).await,
        [b"hosts", host] => {
            let host = text(host);
            host_page(app, host).await
        }
        [b"snapshots", id, b"tree", rest @ ..] => {
            let id = text(id);
            let rest = rest.iter().map(|c| c.to_vec()).collect();
            tree_page(app, id, rest).await
        }
        [b"snapshots", id, b"file", rest @ ..] if !rest.is_empty() => {
            let id = text(id);
            let rest = rest.iter().map(|c| c.to_vec()).collect();
            download(app, id, rest, Download::File).await
        }
        [b"snapshots", id, b"archive", rest @ ..] => {
            let format = match query.split('&').find_map(|kv| kv.strip_prefix("format=")) {
                Some("zip") => Download::Zip,
                Some("tar.gz") | None => Download::TarGz,
                Some(other) => {
                    let msg = format!("unknown archive format {other:?}: use tar.gz or zip");
                    return html_page(StatusCode::BAD_REQUEST, html::error("Bad Request", &msg));
                }
            };
            let id = text(id);
            let rest = rest.iter().map(|c| c.to_vec()).collect();
            download(app, id, rest, format).await
        }
        _ => html_page(
            StatusCode::NOT_FOUND,
            html::error("Not Found", &format!("nothing at {path}")),
        ),
    }
}

// A snapshot path as errors name it.
fn shown_path(comps: &[Vec<u8>]) -> String {
    let mut path = String::new();
    for c in comps {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(c));
    }
    path
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        text,
    )
        .into_response()
}

async fn volumes_page(app: Arc<App>) -> Response {
    blocking(&app.workers.clone(), move || {
        let warnings = match app.library.snapshots() {
            Ok(s) => s.load_warnings(),
            Err(e) => return failure(&app, &e),
        };
        match app.library.volumes(SystemTime::now(), app.opts.stale_after) {
            Ok(v) => {
                let stale = html::age(app.opts.stale_after.as_secs());
                html_page(StatusCode::OK, html::volumes(&v, &stale, &warnings))
            }
            Err(e) => failure(&app, &e),
        }
    })
    .await
}

async fn volumes_json(app: Arc<App>) -> Response {
    blocking(&app.workers.clone(), move || {
        match app.library.volumes(SystemTime::now(), app.opts.stale_after) {
            Ok(vols) => {
                let rows: Vec<_> = vols
                    .iter()
                    .map(|v| {
                        json!({
                            "host": v.host,
                            "last_snapshot": v.last_id.to_string(),
                            "last_time": v.last_time.unix_secs(),
                            "age_seconds": v.age_secs,
                            "snapshots": v.count,
                            "files": v.totals.as_ref().ok().map(|t| t.files),
                            "bytes": v.totals.as_ref().ok().map(|t| t.bytes),
                            "error": v.totals.as_ref().err(),
                            "tags": v.tags,
                            "stale": v.stale,
                            "partial": v.partial,
                        })
                    })
                    .collect();
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    serde_json::Value::Array(rows).to_string(),
                )
                    .into_response()
            }
            Err(e) => failure(&app, &e),
        }
    })
    .await
}

async fn host_page(app: Arc<App>, host: String) -> Response {
    blocking(&app.workers.clone(), move || {
        let all = match app.library.snapshots() {
            Ok(s) => s,
            Err(e) => return failure(&app, &e),
        };
        let mut rows: Vec<SnapshotRow> = all
            .readable()
            .iter()
            .filter(|(_, s)| s.hostname == host)
            .map(|(id, s)| SnapshotRow {
                id: *id,
                time: html::time(&s.time),
                tags: s.tags.clone(),
                paths: s.paths.clone(),
                totals: app.library.snapshot_totals(s).ok(),
            })
            .collect();
        if rows.is_empty() {
            let e = EngineError::NotFound(format!("no snapshots of host {host:?}"));
            return failure(&app, &e);
        }
        rows.reverse();
        html_page(StatusCode::OK, html::host(&host, &rows))
    })
    .await
}

async fn tree_page(app: Arc<App>, id: String, comps: Vec<Vec<u8>>) -> Response {
    blocking(&app.workers.clone(), move || {
        let lib = &app.library;
        let shown = (|| {
            lib.need_index()?;
            let (sid, snap) = lib.snapshot(&id)?;
            let repo = lib.repo();
            let names: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
            let tree = match find_node_by_names(&repo, &snap.tree, &names)? {
                None => snap.tree,
                Some(n) if n.node_type == NodeType::Dir => dir_subtree(&n, &shown_path(&comps))?,
                Some(_) => return Ok(Err(sid)),
            };
            let nodes = repo.load_tree(&tree)?.nodes;
            let time = html::time(&snap.time);
            Ok(Ok(html::tree(&snap.hostname, &sid, &time, &comps, &nodes)))
        })();
        match shown {
            Ok(Ok(page)) => html_page(StatusCode::OK, page),
            // A file's tree URL leads to the file.
            Ok(Err(sid)) => {
                let rel: Vec<String> = comps.iter().map(|c| html::seg(c)).collect();
                let to = format!("/snapshots/{sid}/file/{}", rel.join("/"));
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
            }
            Err(e) => failure(&app, &e),
        }
    })
    .await
}

#[derive(Debug, Clone, Copy)]
enum Download {
    File,
    TarGz,
    Zip,
}

// What the response says before its body streams.
struct Head {
    name: String,
    kind: String,
    len: Option<u64>,
}

fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let utf8 = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

async fn download(app: Arc<App>, id: String, comps: Vec<Vec<u8>>, what: Download) -> Response {
    let (head_tx, head_rx) = oneshot::channel();
    let (writer, rx) = BodyWriter::new();
    let worker = app.clone();
    app.workers
        .spawn(move || stream_download(&worker, &id, &comps, what, head_tx, writer));
    match head_rx.await {
        Ok(Ok(head)) => {
            let mut r = Response::new(body(rx));
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&head.kind) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&disposition(&head.name)) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            if let Some(len) = head.len {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(Err(e)) => failure(&app, &e),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the download's worker ended",
        )
            .into_response(),
    }
}

// Finds what to send, takes restic's read lock for as long as it streams (a prune must
// not delete packs under a download), says the head, and writes the body. A failure
// before the head is an error page; after it, the connection is cut.
fn stream_download(
    app: &App,
    id: &str,
    comps: &[Vec<u8>],
    what: Download,
    head_tx: oneshot::Sender<Result<Head, EngineError>>,
    mut writer: BodyWriter,
) {
    let lib = &app.library;
    let mut head_tx = Some(head_tx);
    let result = (|| -> Result<(), EngineError> {
        lib.need_index()?;
        let (sid, snap) = lib.snapshot(id)?;
        let repo = lib.repo();
        let ctl = Control::new(Arc::new(Discard)).with_cancel(app.cancel.clone());
        let _lock = RepoLock::take(&repo, false, &app.opts.lock, &ctl)?;
        let names: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        let node = find_node_by_names(&repo, &snap.tree, &names)?;
        let name = match comps.last() {
            Some(c) => String::from_utf8_lossy(c).into_owned(),
            None => format!("snapshot-{}", sid.short()),
        };
        let mut send_head = |head: Head| {
            if let Some(tx) = head_tx.take() {
                let _ = tx.send(Ok(head));
            }
        };
        match (what, node) {
            (Download::File, Some(n)) if n.node_type == NodeType::File => {
                let mut reader = FileReader::new(&repo, &n)?;
                let kind = mime_guess::from_path(&name)
                    .first_raw()
                    .unwrap_or("application/octet-stream");
                send_head(Head {
                    name: name.clone(),
                    kind: kind.to_string(),
                    len: Some(reader.len()),
                });
                reader.copy_to(&mut writer)?;
            }
            (Download::File, _) => {
                return Err(EngineError::NotFound(format!("{name:?} is not a file")));
            }
            (format, node) => {
                let tree = match node {
                    None => snap.tree,
                    Some(n) if n.node_type == NodeType::Dir => dir_subtree(&n, &shown_path(comps))?,
                    Some(_) => {
                        return Err(EngineError::NotFound(format!("{name:?} is not a folder")))
                    }
                };
                let io = EngineError::io("send archive");
                if let Download::Zip = format {
                    send_head(Head {
                        name: format!("{name}.zip"),
                        kind: "application/zip".into(),
                        len: None,
                    });
                    dump_zip(&repo, &tree, &name, &mut writer)?;
                } else {
                    send_head(Head {
                        name: format!("{name}.tar.gz"),
                        kind: "application/gzip".into(),
                        len: None,
                    });
                    let mut gz = GzEncoder::new(&mut writer, flate2::Compression::fast());
                    dump_tar(&repo, &tree, &name, &mut gz)?;
                    gz.finish().map_err(io)?;
                }
            }
        }
        std::io::Write::flush(&mut writer).map_err(EngineError::io("send"))?;
        Ok(())
    })();
    if let Err(e) = result {
        match head_tx.take() {
            Some(tx) => {
                let _ = tx.send(Err(e));
            }
            None => {
                lib.warn(&format!("download from snapshot {id} stopped: {e}"));
                writer.fail(e.to_string());
            }
        }
    }
}
