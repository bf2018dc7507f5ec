//! restic's S3 repository URLs and key layouts.
//!
//! * `s3:https://host[:port]/bucket[/prefix]` and `s3:http://…`: a custom endpoint,
//!   path-style requests (`http://host/bucket/key`);
//! * `s3:host/bucket[/prefix]` (also `s3://host/…`): HTTPS; AWS hosts
//!   (`s3.amazonaws.com`, `s3.<region>.amazonaws.com`) use virtual-hosted requests
//!   (`https://bucket.s3.<region>.amazonaws.com/key`), others path-style.
//!
//! The region comes from an AWS host name, else `AWS_DEFAULT_REGION` (or `AWS_REGION`),
//! else `us-east-1`; it is never required.

use url::Url;

use crate::options::S3Layout;
use crate::{BackendError, FileType, Handle, HINT_GROUP_HEX};

/// Where an S3 repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Location {
    /// Custom endpoint (`scheme://host[:port]`), or `None` for AWS's own.
    pub endpoint: Option<String>,
    /// Whether plain HTTP is used.
    pub http: bool,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing slash; may be empty.
    pub prefix: String,
    /// Signing region.
    pub region: String,
    /// URL of the bucket itself, for bucket-level requests.
    pub bucket_url: Url,
}

impl S3Location {
    /// `s3:` plus the location, for messages.
    pub fn display(&self) -> String {
        let mut s = match &self.endpoint {
            Some(e) => format!("s3:{e}/{}", self.bucket),
            None => format!("s3:s3.{}.amazonaws.com/{}", self.region, self.bucket),
        };
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }
}

fn aws_region_of(host: &str) -> Option<Option<String>> {
    let rest = host.strip_suffix(".amazonaws.com")?;
    if rest == "s3" {
        return Some(None);
    }
    let region = rest
        .strip_prefix("s3.")
        .or_else(|| rest.strip_prefix("s3-"))?;
    let region = region.strip_prefix("dualstack.").unwrap_or(region);
    Some(Some(region.to_string()))
}

/// `prefix` cleaned like Go's `path.Clean`: no empty, `.` or trailing components.
fn clean_prefix(p: &str) -> Result<String, BackendError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(BackendError::Config(format!(
                    "s3: prefix {p:?} must not contain \"..\""
                )))
            }
            x => parts.push(x),
        }
    }
    Ok(parts.join("/"))
}

/// Parses the part after `s3:`; `env` reads a variable (for the region).
pub(crate) fn parse_s3_url(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Location, BackendError> {
    let bad = |why: &str| BackendError::Config(format!("invalid S3 location {s:?}: {why}"));
    let (scheme, host_port, path) = if s.starts_with("http://") || s.starts_with("https://") {
        let u = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let host = u.host_str().ok_or_else(|| bad("no host"))?.to_string();
        let host_port = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        (u.scheme().to_string(), host_port, u.path().to_string())
    } else {
        let rest = s.strip_prefix("//").unwrap_or(s);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        ("https".to_string(), host.to_string(), path.to_string())
    };
    if host_port.is_empty() {
        return Err(bad("no host"));
    }
    let path = path.trim_start_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(bad("bucket name not found"));
    }
    let prefix = clean_prefix(prefix)?;
    let env_region = env("AWS_DEFAULT_REGION")
        .or_else(|| env("AWS_REGION"))
        .filter(|r| !r.is_empty());
    let host = host_port.split(':').next().unwrap_or_default();
    let (endpoint, region) = match aws_region_of(host) {
        Some(host_region) if scheme == "https" => {
            let region = host_region
                .or(env_region)
                .unwrap_or_else(|| "us-east-1".into());
            (None, region)
        }
        _ => (
            Some(format!("{scheme}://{host_port}")),
            env_region.unwrap_or_else(|| "us-east-1".into()),
        ),
    };
    let bucket_url = match &endpoint {
        Some(e) => format!("{e}/{bucket}"),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
    };
    let bucket_url = Url::parse(&bucket_url).map_err(|e| bad(&e.to_string()))?;
    Ok(S3Location {
        http: scheme == "http",
        endpoint,
        bucket: bucket.to_string(),
        prefix,
        region,
        bucket_url,
    })
}

/// The directory of a file type under a layout (no prefix).
pub(crate) fn type_dir(layout: S3Layout, t: FileType) -> &'static str {
    match (layout, t) {
        (_, FileType::Config) => "",
        (S3Layout::S3Legacy, FileType::Key) => "key",
        (S3Layout::S3Legacy, FileType::Snapshot) => "snapshot",
        (S3Layout::S3Legacy, FileType::Lock) => "lock",
        (_, t) => t.dir(),
    }
}

/// The object key of a file (no prefix): `config`, `keys/<id>`, `data/ab/<id>`,
/// or in the legacy layout `key/<id>`, `data/<id>`…
pub(crate) fn object_key(layout: S3Layout, h: &Handle) -> String {
    let name = h.name();
    match (layout, h.file_type()) {
        (_, FileType::Config) => name,
        (S3Layout::Default, FileType::Pack) => format!("data/{}/{name}", &name[..2]),
        (_, FileType::Hint) => format!(
            "{}/{}/{name}",
            FileType::Hint.dir(),
            &name[..HINT_GROUP_HEX]
        ),
        (layout, t) => format!("{}/{name}", type_dir(layout, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn parse(s: &str, region: Option<&str>) -> S3Location {
        let region = region.map(String::from);
        parse_s3_url(s, &move |k| {
            (k == "AWS_DEFAULT_REGION")
                .then(|| region.clone())
                .flatten()
        })
        .unwrap()
    }

    #[test]
    fn urls() {
        let l = parse("http://127.0.0.1:8333/bucket", None);
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(l.http);
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.region.as_str()),
            ("bucket", "", "us-east-1")
        );
        assert_eq!(l.bucket_url.as_str(), "http://127.0.0.1:8333/bucket");
        assert_eq!(l.display(), "s3:http://127.0.0.1:8333/bucket");

        let l = parse(
            "https://minio.example:9000/b/some//pre/fix/",
            Some("eu-central-1"),
        );
        assert!(!l.http);
        assert_eq!(l.prefix, "some/pre/fix");
        assert_eq!(l.region, "eu-central-1");

        let l = parse("s3.amazonaws.com/bucket/prefix", None);
        assert_eq!(l.endpoint, None);
        assert_eq!(l.region, "us-east-1");
        assert_eq!(
            l.bucket_url.as_str(),
            "https://bucket.s3.us-east-1.amazonaws.com/"
        );
        let l = parse("s3.amazonaws.com/bucket", Some("ap-south-1"));
        assert_eq!(l.region, "ap-south-1");
        let l = parse("//s3.eu-west-3.amazonaws.com/bucket/p", Some("us-west-2"));
        assert_eq!(l.region, "eu-west-3");
        assert_eq!(l.prefix, "p");

        let l = parse("storage.example.org/bucket/x", None);
        assert_eq!(l.endpoint.as_deref(), Some("https://storage.example.org"));

        for bad in ["http://host:1/", "host", "host/b/../x"] {
            let e = parse_s3_url(bad, &|_| None).unwrap_err();
            assert!(matches!(e, BackendError::Config(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn layouts() {
        let id = "ab".repeat(32);
        let p = Handle::new(FileType::Pack, Id([0xab; 32]));
        assert_eq!(object_key(S3Layout::Default, &p), format!("data/ab/{id}"));
        assert_eq!(object_key(S3Layout::S3Legacy, &p), format!("data/{id}"));
        let k = Handle::new(FileType::Key, Id([0xab; 32]));
        assert_eq!(object_key(S3Layout::Default, &k), format!("keys/{id}"));
        assert_eq!(object_key(S3Layout::S3Legacy, &k), format!("key/{id}"));
        let s = Handle::new(FileType::Snapshot, Id([0xab; 32]));
        assert_eq!(object_key(S3Layout::S3Legacy, &s), format!("snapshot/{id}"));
        let i = Handle::new(FileType::Index, Id([0xab; 32]));
        assert_eq!(object_key(S3Layout::S3Legacy, &i), format!("index/{id}"));
        assert_eq!(object_key(S3Layout::S3Legacy, &Handle::config()), "config");
    }
}
