//! Turning `object_store` and S3 failures into short messages that name the S3 error code
//! (`SignatureDoesNotMatch`, `NoSuchBucket`, `SlowDown`…) and say whether a retry may help.
//! The XML error body is reduced to its `Code` and `Message`: the rest (string to sign,
//! canonical request) is noise, and nothing in it is repeated verbatim.

use object_store::client::{HttpError, HttpErrorKind};

/// What an S3 request failure amounts to.
#[derive(Debug, Default, Clone)]
pub(crate) struct S3Failure {
    /// HTTP status, if a response came back.
    pub status: Option<u16>,
    /// S3 error code (`<Code>`), if the response had a body.
    pub code: Option<String>,
    /// S3 error message (`<Message>`).
    pub message: Option<String>,
    /// Transport failure kind, if no usable response came back.
    pub transport: Option<HttpErrorKind>,
    /// The failure as text, error body removed.
    pub text: String,
    /// Why the TLS handshake failed, when no retry can cure it (a refused certificate).
    pub tls: Option<String>,
}

/// The text between `<tag>` and `</tag>`, unescaped minimally.
pub(crate) fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&close)?;
    let v = body[start..end]
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    Some(v.trim().to_string())
}

pub(crate) fn status_in(text: &str) -> Option<u16> {
    let i = text.find("status code: ")? + "status code: ".len();
    text.get(i..i + 3)?.parse().ok()
}

fn http_kind(e: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = c.source();
    }
    None
}

/// Looks at an `object_store` error: status, S3 code and message, transport kind.
pub(crate) fn analyze(e: &object_store::Error) -> S3Failure {
    let full = e.to_string();
    let mut f = S3Failure {
        status: status_in(&full),
        code: xml_tag(&full, "Code"),
        message: xml_tag(&full, "Message"),
        transport: http_kind(e),
        tls: crate::tls::handshake_problem(e),
        ..S3Failure::default()
    };
    if f.status.is_none() {
        f.status = match e {
            object_store::Error::NotFound { .. } => Some(404),
            object_store::Error::Precondition { .. } => Some(412),
            object_store::Error::PermissionDenied { .. } => Some(403),
            object_store::Error::Unauthenticated { .. } => Some(401),
            _ => None,
        };
    }
    // Drop the XML body and anything after it.
    let mut text = match full.find('<') {
        Some(i) => full[..i].trim_end().trim_end_matches(':').to_string(),
        None => full.clone(),
    };
    // object_store's message stops at "error sending request": add the root cause
    // ("Connection refused", "connection reset by peer"…) from the source chain.
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !s.contains('<') && !full.contains(&s) && !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    f.text = if text.chars().count() > 600 {
        text.chars().take(600).collect::<String>() + "…"
    } else {
        text
    };
    f
}

impl S3Failure {
    /// Whether retrying may help: 5xx, 408, 429 (SlowDown), or a broken, refused or
    /// timed-out connection. The code alone decides for an error in the body of a 200
    /// answer (S3 completes a multipart upload that way), which has no error status.
    pub fn transient(&self) -> bool {
        if self.tls.is_some() {
            return false;
        }
        if matches!(
            self.code.as_deref(),
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        ) {
            return true;
        }
        if let Some(s) = self.status {
            return crate::retry::status_is_transient(s);
        }
        matches!(
            self.transport,
            Some(
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            )
        )
    }

    /// Whether the server said it does not implement what was asked (e.g. a conditional
    /// PUT).
    pub fn not_implemented(&self) -> bool {
        self.status == Some(501) || self.code.as_deref() == Some("NotImplemented")
    }

    /// One line for the user: `Code: Message (HTTP status)` when the server sent an S3
    /// error, else the transport error.
    pub fn describe(&self) -> String {
        match (&self.code, self.status) {
            (Some(code), status) => {
                let mut s = code.clone();
                if let Some(m) = &self.message {
                    s.push_str(": ");
                    s.push_str(m);
                }
                if let Some(st) = status {
                    s.push_str(&format!(" (HTTP {st})"));
                }
                s
            }
            (None, _) => self.text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_code_and_message() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated \
            does not match the signature you provided.</Message><StringToSign>AWS4…</StringToSign></Error>";
        assert_eq!(xml_tag(body, "Code").unwrap(), "SignatureDoesNotMatch");
        assert!(xml_tag(body, "Message")
            .unwrap()
            .starts_with("The request signature"));
        assert_eq!(status_in(body), Some(403));
        assert_eq!(xml_tag("<a>&lt;x&amp;y&gt;</a>", "a").unwrap(), "<x&y>");
        assert_eq!(xml_tag("<a>", "a"), None);
    }

    #[test]
    fn transient_failures() {
        let f = S3Failure {
            status: Some(503),
            code: Some("SlowDown".into()),
            ..S3Failure::default()
        };
        assert!(f.transient());
        assert_eq!(f.describe(), "SlowDown (HTTP 503)");
        let f = S3Failure {
            status: Some(403),
            code: Some("SignatureDoesNotMatch".into()),
            ..S3Failure::default()
        };
        assert!(!f.transient());
        let f = S3Failure {
            transport: Some(HttpErrorKind::Interrupted),
            ..S3Failure::default()
        };
        assert!(f.transient());
        let f = S3Failure {
            code: Some("InternalError".into()),
            ..S3Failure::default()
        };
        assert!(f.transient(), "an error in a 200 answer's body");
        let f = S3Failure {
            status: Some(501),
            code: Some("NotImplemented".into()),
            ..S3Failure::default()
        };
        assert!(f.not_implemented());
    }
}
