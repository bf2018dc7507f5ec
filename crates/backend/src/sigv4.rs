//! A minimal AWS Signature Version 4 signer for the few S3 requests `object_store` cannot
//! make: bucket-level `HEAD /bucket` and `PUT /bucket` (restic's `init` creates the bucket).
//! Reference: "Authenticating Requests (AWS Signature Version 4)", S3 API documentation.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use url::Url;

use crate::s3_creds::Credentials;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Hex SHA-256 of a payload, for `x-amz-content-sha256`.
pub(crate) fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// RFC 3986 encoding of everything but unreserved characters, as SigV4 wants.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Host` header value reqwest sends for `url` (port only when not the default).
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Headers (lower-case name, value) that sign a request: `x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` if any, and `authorization`.
pub(crate) fn sign(
    method: &str,
    url: &Url,
    region: &str,
    creds: &Credentials,
    payload_sha256: &str,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();

    let mut headers: Vec<(&'static str, String)> = vec![
        ("host", host_header(url)),
        ("x-amz-content-sha256", payload_sha256.to_string()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token", token.expose().to_string()));
    }
    headers.sort_by(|a, b| a.0.cmp(b.0));

    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
    );

    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_secret = format!("AWS4{}", creds.secret_access_key.expose());
    let k_date = hmac(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));

    let mut out: Vec<(&'static str, String)> =
        headers.into_iter().filter(|(k, _)| *k != "host").collect();
    out.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3_creds::Secret;
    use chrono::TimeZone;

    /// The "GET Object" example of the S3 SigV4 documentation, minus its Range header:
    /// checked against botocore's signer with the same inputs.
    #[test]
    fn matches_reference_signature() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        };
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let h = sign("GET", &url, "us-east-1", &creds, &payload_hash(b""), now);
        let auth = &h.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_eq!(
            auth.rsplit('=').next().unwrap(),
            EXPECTED_SIGNATURE,
            "signature differs from botocore's"
        );
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    const EXPECTED_SIGNATURE: &str =
        "df548e2ce037944d03f3e68682813b093763996d597cf890ca3d9037fd231eb4";
}
