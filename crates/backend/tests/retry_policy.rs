//! The retry policy of the S3 and REST backends under [`RetryBackend`], the stack the CLI
//! opens, against a scripted HTTP server: 503 SlowDown, 500 and 429 are retried; 403, 404,
//! 401 and 412 are not; the number of retries is bounded; a re-sent write that finds its
//! own lost first attempt succeeds; a server without conditional PUT gets HEAD then PUT.
//! The backends alone send each request once. (Real servers and network faults are
//! exercised by the end-to-end tests in `tests/s3_backend.rs` and `tests/rest_backend.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restash_backend::{
    Backend, BackendError, BackendOptions, FileType, Handle, Id, RestBackend, RetryBackend,
    S3Backend, S3Layout,
};

/// One request as the server saw it: method, path and query, lower-case headers.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers each request with the next scripted `(status, body)`; the last one repeats.
/// Status 0 closes the connection without an answer.
fn serve(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let seen = Seen {
                line: line.trim_end().to_string(),
                headers,
            };
            let len: usize = seen
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let head = seen.line.starts_with("HEAD ");
            log.lock().unwrap().push(seen);
            let (status, body) = script[n.min(script.len() - 1)];
            if status == 0 {
                // The request arrived; the connection dies before any answer.
                continue;
            }
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: \"e\"\r\n\
                 Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: close\r\n\r\n{}",
                body.len(),
                if head { "" } else { body }
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (addr, seen)
}

fn s3_error(code: &str) -> &'static str {
    Box::leak(
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
            .into_boxed_str(),
    )
}

fn fast() -> BackendOptions {
    BackendOptions {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retries: 3,
        s3_layout: Some(S3Layout::Default),
        ..BackendOptions::default()
    }
}

fn s3_alone(addr: &str) -> S3Backend {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("k".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
        _ => None,
    };
    S3Backend::open_with_env(&format!("s3:http://{addr}/bucket"), fast(), &env).unwrap()
}

fn s3(addr: &str) -> RetryBackend {
    RetryBackend::new(Arc::new(s3_alone(addr)), &fast())
}

fn methods(seen: &Arc<Mutex<Vec<Seen>>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|s| s.line.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

fn count(seen: &Arc<Mutex<Vec<Seen>>>) -> usize {
    seen.lock().unwrap().len()
}

#[test]
fn s3_retries_5xx_and_slowdown() {
    let (addr, seen) = serve(vec![
        (503, s3_error("SlowDown")),
        (500, s3_error("InternalError")),
        (429, ""),
        (200, "hello"),
    ]);
    assert_eq!(s3(&addr).read(&Handle::config()).unwrap(), b"hello");
    assert_eq!(count(&seen), 4);
}

#[test]
fn s3_retries_are_bounded() {
    let (addr, seen) = serve(vec![(503, s3_error("SlowDown"))]);
    let err = s3(&addr).read(&Handle::config()).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert_eq!(count(&seen), 4, "1 attempt + max_retries 3");
}

#[test]
fn backends_alone_send_each_request_once() {
    let (addr, seen) = serve(vec![(503, s3_error("SlowDown")), (200, "hello")]);
    let err = s3_alone(&addr).read(&Handle::config()).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert_eq!(count(&seen), 1);

    let (addr, seen) = serve(vec![(503, ""), (200, "cfg")]);
    let err = rest_alone(&addr).read(&Handle::config()).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("gave up"), "{err}");
    assert_eq!(count(&seen), 1);
}

#[test]
fn s3_does_not_retry_4xx() {
    for (status, code) in [(403, "AccessDenied"), (400, "InvalidRequest")] {
        let (addr, seen) = serve(vec![(status, s3_error(code))]);
        let err = s3(&addr).read(&Handle::config()).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains(code), "{err}");
        assert_eq!(count(&seen), 1, "{code}");
    }
    let (addr, seen) = serve(vec![(404, s3_error("NoSuchKey"))]);
    let h = Handle::new(FileType::Snapshot, Id([0xab; 32]));
    assert!(matches!(s3(&addr).read(&h), Err(BackendError::NotFound(_))));
    assert_eq!(count(&seen), 1);
}

#[test]
fn s3_refused_head_names_the_code() {
    // HEAD answers carry no body: the code comes from one extra ranged GET.
    let (addr, seen) = serve(vec![(403, s3_error("SignatureDoesNotMatch"))]);
    let err = s3(&addr).stat(&Handle::config()).unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].line.starts_with("HEAD "));
    assert_eq!(seen[1].header("range"), Some("bytes=0-0"));
}

#[test]
fn s3_create_only_put() {
    let h = Handle::new(FileType::Index, Id([0xcd; 32]));
    let (addr, seen) = serve(vec![(412, s3_error("PreconditionFailed"))]);
    assert!(matches!(
        s3(&addr).write(&h, b"x"),
        Err(BackendError::AlreadyExists(_))
    ));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
}

#[test]
fn s3_without_conditional_put_uses_head_then_put() {
    let h = Handle::new(FileType::Index, Id([0xcd; 32]));
    // The first 501 says it all: not retried, and the backend gives up on If-None-Match
    // for the rest of the process.
    let (addr, seen) = serve(vec![
        (501, s3_error("NotImplemented")),
        (404, ""),
        (200, ""),
        (404, ""),
        (200, ""),
    ]);
    let be = s3(&addr);
    be.write(&h, b"x").unwrap();
    be.write(&Handle::new(FileType::Index, Id([0xce; 32])), b"y")
        .unwrap();
    assert_eq!(methods(&seen), ["PUT", "HEAD", "PUT", "HEAD", "PUT"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].header("if-none-match"), Some("*"));
    assert_eq!(seen[2].header("if-none-match"), None);
    assert_eq!(seen[4].header("if-none-match"), None);
}

fn rest_alone(addr: &str) -> RestBackend {
    RestBackend::open(&format!("rest:http://u:secret@{addr}/repo/"), fast()).unwrap()
}

fn rest(addr: &str) -> RetryBackend {
    RetryBackend::new(Arc::new(rest_alone(addr)), &fast())
}

#[test]
fn rest_retry_policy() {
    let (addr, seen) = serve(vec![(503, ""), (500, ""), (200, "cfg")]);
    assert_eq!(rest(&addr).read(&Handle::config()).unwrap(), b"cfg");
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 3);
    assert!(seen_now[0].line.starts_with("GET /repo/config "));
    assert!(seen_now[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));

    let (addr, seen) = serve(vec![(503, "")]);
    let err = rest(&addr).read(&Handle::config()).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(
        err.to_string().contains("(gave up after 3 retries in "),
        "{err}"
    );
    assert_eq!(count(&seen), 4);

    for status in [401, 403, 404] {
        let (addr, seen) = serve(vec![(status, "")]);
        let err = rest(&addr).read(&Handle::config()).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(status == 404, matches!(err, BackendError::NotFound(_)));
        assert_eq!(count(&seen), 1, "{status}");
    }
}

#[test]
fn rest_range_and_listing() {
    let (addr, seen) = serve(vec![(206, "abc")]);
    let h = Handle::new(FileType::Pack, Id([0xef; 32]));
    assert_eq!(rest(&addr).read_range(&h, 10, 3).unwrap(), b"abc");
    assert_eq!(seen.lock().unwrap()[0].header("range"), Some("bytes=10-12"));

    let (addr, _) = serve(vec![(206, "ab")]);
    assert!(matches!(
        rest(&addr).read_range(&h, 10, 3),
        Err(BackendError::ShortRead { got: 2, .. })
    ));

    let listing: &'static str = Box::leak(
        format!(
            "[{{\"name\":\"{}\",\"size\":7}},{{\"name\":\"junk\",\"size\":1}}]",
            Id([0xef; 32])
        )
        .into_boxed_str(),
    );
    let (addr, seen) = serve(vec![(200, listing)]);
    let files = rest(&addr).list(FileType::Pack).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, 7);
    let seen = seen.lock().unwrap();
    assert!(seen[0].line.starts_with("GET /repo/data/ "));
    assert_eq!(
        seen[0].header("accept"),
        Some("application/vnd.x.restic.rest.v2")
    );
}

#[test]
fn s3_put_resent_after_a_lost_answer_is_not_a_conflict() {
    // The first PUT lands but its answer is lost; the re-sent PUT gets 412. The object
    // holds these bytes (HEAD for the size, then GET): it is this write.
    let h = Handle::new(FileType::Snapshot, Id([0xab; 32]));
    let (addr, seen) = serve(vec![
        (0, ""),
        (412, s3_error("PreconditionFailed")),
        (200, "x"),
    ]);
    s3(&addr).write(&h, b"x").unwrap();
    assert_eq!(methods(&seen), ["PUT", "PUT", "HEAD", "GET"]);

    // Same story, but the object holds other bytes of the same size: a real conflict.
    let (addr, seen) = serve(vec![
        (0, ""),
        (412, s3_error("PreconditionFailed")),
        (200, "y"),
    ]);
    assert!(matches!(
        s3(&addr).write(&h, b"x"),
        Err(BackendError::AlreadyExists(_))
    ));
    assert_eq!(methods(&seen), ["PUT", "PUT", "HEAD", "GET"]);

    // Another size: told apart by HEAD alone.
    let (addr, seen) = serve(vec![
        (0, ""),
        (412, s3_error("PreconditionFailed")),
        (200, "xx"),
    ]);
    assert!(matches!(
        s3(&addr).write(&h, b"x"),
        Err(BackendError::AlreadyExists(_))
    ));
    assert_eq!(methods(&seen), ["PUT", "PUT", "HEAD"]);

    // Without a failed attempt first, a 412 is a conflict without a look.
    let (addr, seen) = serve(vec![(412, s3_error("PreconditionFailed"))]);
    assert!(matches!(
        s3(&addr).write(&h, b"x"),
        Err(BackendError::AlreadyExists(_))
    ));
    assert_eq!(methods(&seen), ["PUT"]);
}

#[test]
fn rest_post_resent_after_a_lost_answer_is_not_a_conflict() {
    // HEAD: missing; POST lands but its answer is lost; the retry's HEAD finds the file,
    // and the check (HEAD, GET) finds these bytes.
    let h = Handle::new(FileType::Snapshot, Id([0xab; 32]));
    let (addr, seen) = serve(vec![(404, ""), (0, ""), (200, "x")]);
    rest(&addr).write(&h, b"x").unwrap();
    assert_eq!(methods(&seen), ["HEAD", "POST", "HEAD", "HEAD", "GET"]);

    let (addr, _) = serve(vec![(404, ""), (0, ""), (200, "y")]);
    assert!(matches!(
        rest(&addr).write(&h, b"x"),
        Err(BackendError::AlreadyExists(_))
    ));
}

#[test]
fn s3_failed_multipart_upload_is_aborted() {
    let initiated = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult>\
        <Bucket>bucket</Bucket><Key>k</Key><UploadId>u1</UploadId>\
        </InitiateMultipartUploadResult>";
    let (addr, seen) = serve(vec![
        (404, ""),
        (200, initiated),
        (403, s3_error("AccessDenied")),
    ]);
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("k".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
        _ => None,
    };
    let opts = BackendOptions {
        multipart_threshold: 10,
        part_size: 5,
        ..fast()
    };
    let be = S3Backend::open_with_env(&format!("s3:http://{addr}/bucket"), opts, &env).unwrap();
    let err = be
        .write(
            &Handle::new(FileType::Pack, Id([0xab; 32])),
            b"0123456789ab",
        )
        .unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    let seen = seen.lock().unwrap();
    assert!(seen[0].line.starts_with("HEAD "), "{seen:?}");
    assert!(seen[1].line.starts_with("POST ") && seen[1].line.contains("uploads"));
    assert!(
        seen.iter()
            .any(|s| s.line.starts_with("DELETE ") && s.line.contains("uploadId=u1")),
        "the upload was aborted: {seen:?}"
    );
}
