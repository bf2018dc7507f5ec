//! One HTTP PUT or POST of a small text body, for pushing metrics to a Prometheus Pushgateway.
//! It lives here so the CLI shares the backends' TLS roots and stays free of async code.

use std::time::Duration;

use crate::BackendError;

/// The HTTP method of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Replace the whole group.
    Put,
    /// Replace only the metrics sent.
    Post,
}

/// Sends `body` to `url` with `content_type`; any status other than 2xx is an error.
/// Credentials in the URL are never part of an error message.
pub fn send(
    method: Method,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
    timeout: Duration,
) -> Result<(), BackendError> {
    let parsed =
        url::Url::parse(url).map_err(|e| BackendError::Config(format!("invalid push URL: {e}")))?;
    let shown = redacted(&parsed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BackendError::io("starting the push runtime"))?;
    // The request future needs the runtime's timer, so it is made inside the runtime.
    let _guard = rt.enter();
    let client = crate::tls::client_builder()?
        .timeout(timeout)
        .build()
        .map_err(|e| BackendError::Config(format!("HTTP client: {e}")))?;
    let method = match method {
        Method::Put => reqwest::Method::PUT,
        Method::Post => reqwest::Method::POST,
    };
    let request = client
        .request(method.clone(), parsed)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    let resp = rt
        .block_on(async move { request.send().await })
        .map_err(|e| {
            BackendError::Config(format!(
                "{method} {shown}: {}",
                crate::retry::describe_reqwest(&e)
            ))
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(BackendError::Config(format!(
            "{method:?} {shown}: HTTP {status}"
        )));
    }
    Ok(())
}

/// The URL without user name and password.
fn redacted(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_shown() {
        let u = url::Url::parse("https://user:secret@push.example/metrics").unwrap();
        assert_eq!(redacted(&u), "https://push.example/metrics");
    }

    #[test]
    fn bad_url_is_a_config_error() {
        let e = send(
            Method::Put,
            "not a url",
            vec![],
            "text/plain",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid push URL"), "{e}");
    }
}
