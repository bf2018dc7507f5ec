//! One entry point per parser of untrusted server answers, shared by the libFuzzer targets
//! under `fuzz/` and the stable test that replays their corpora (`tests/fuzz_corpus.rs`).
//!
//! S3 listings are XML that `object_store` parses; what restash itself reads from an S3
//! server is the `Code` and `Message` of error bodies and the file name of each listed
//! key. Rejecting input is fine; a panic here means a bug (a parser panicked or returned
//! inconsistent values).

use crate::rest::{parse_listing, Listed};
use crate::s3_error::{status_in, xml_tag, S3Failure};
use crate::{FileInfo, Id};

/// A REST server's answer to `GET /{type}/`: every accepted entry names a valid id (a v1
/// name as listed, in either case), there are no more entries than JSON values, and a v2
/// listing written back from the entries parses to the same entries.
pub fn rest_listing(data: &[u8]) {
    let Ok(entries) = parse_listing(data) else {
        return;
    };
    assert!(
        entries.len() <= data.len() / 66,
        "more entries than the bytes hold"
    );
    let (mut want, mut v1, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for e in &entries {
        match e {
            Listed::Sized(info) => want.push(*info),
            Listed::Named(id, name) => {
                assert_eq!(Id::parse(name).ok(), Some(*id), "name is the id");
                want.push(FileInfo { id: *id, size: 0 });
                v1.push(e.clone());
                names.push(name.as_str());
            }
        }
    }
    let v2: Vec<_> = want
        .iter()
        .map(|i| serde_json::json!({"name": i.id.to_hex(), "size": i.size}))
        .collect();
    let back = parse_listing(&serde_json::to_vec(&v2).expect("serializes")).expect("parses");
    let want: Vec<Listed> = want.into_iter().map(Listed::Sized).collect();
    assert_eq!(back, want, "v2 listing round trip");
    let back = parse_listing(&serde_json::to_vec(&names).expect("serializes")).expect("parses");
    assert_eq!(back, v1, "v1 listing round trip");
}

/// An S3 error body (or an `object_store` error text around one) and a listed key: the
/// `Code` and `Message` restash reports, the status it finds, and the id it takes from a
/// key's file name. Unescaping only shortens, so nothing read is longer than the input.
pub fn s3_answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let code = xml_tag(&text, "Code");
    let message = xml_tag(&text, "Message");
    for v in [&code, &message].into_iter().flatten() {
        assert!(v.len() <= text.len(), "tag value longer than the body");
    }
    let status = status_in(&text);
    if let Some(s) = status {
        assert!(s <= 999, "three digits");
    }
    let f = S3Failure {
        status,
        code,
        message,
        text: text.chars().take(600).collect(),
        ..S3Failure::default()
    };
    let _ = (f.describe(), f.transient(), f.not_implemented());
    if let Ok(path) = object_store::path::Path::parse(text.as_ref()) {
        if let Some(id) = path.filename().and_then(|n| Id::parse(n).ok()) {
            assert_eq!(
                Some(id.to_hex()),
                path.filename().map(str::to_ascii_lowercase)
            );
        }
    }
}
