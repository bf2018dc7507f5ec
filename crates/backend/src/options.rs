//! Tuning for the network backends, restic's `-o key=value` options plus restash's own
//! timeouts. Until the CLI has `-o`, every option can also come from the environment.
//!
//! | option | environment | default | meaning |
//! |---|---|---|---|
//! | `s3.connections` | `RESTASH_S3_CONNECTIONS` | 5 | concurrent S3 requests |
//! | `s3.layout` | `RESTASH_S3_LAYOUT` | auto | `default` or `s3legacy`; auto-detected if unset |
//! | `rest.connections` | `RESTASH_REST_CONNECTIONS` | 5 | concurrent REST requests |
//! | `timeout` | `RESTASH_HTTP_TIMEOUT` | 60 | seconds without progress before a request fails |
//! | `retry-timeout` | `RESTASH_RETRY_TIMEOUT` | 120 | seconds after which a failing request is not retried again |
//! | `max-retries` | `RESTASH_MAX_RETRIES` | 8 | retries of one request |

use std::time::Duration;

use crate::{BackendError, TlsConfig};

/// restic's repository layouts on S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Layout {
    /// `keys/`, `snapshots/`, `locks/`, `index/`, `data/<2 hex>/<id>`.
    Default,
    /// Old restic layout: `key/`, `snapshot/`, `lock/`, `index/`, `data/<id>`.
    S3Legacy,
}

/// Options of the S3 and REST backends. Build with [`BackendOptions::from_env`], then
/// apply `-o` pairs with [`BackendOptions::set`].
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Maximum concurrent requests to the server (`s3.connections` / `rest.connections`).
    pub connections: usize,
    /// Forced S3 layout; `None` detects it as restic does.
    pub s3_layout: Option<S3Layout>,
    /// Objects larger than this are uploaded to S3 in parts.
    pub multipart_threshold: usize,
    /// Size of one multipart part (S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Time allowed to open a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time a request may go without receiving any data before it fails.
    pub read_timeout: Duration,
    /// Upper bound on one whole request, uploads included.
    pub request_timeout: Duration,
    /// Retries of one failing request.
    pub max_retries: usize,
    /// No retry starts after this much time since the first attempt.
    pub retry_timeout: Duration,
    /// First backoff; later ones grow exponentially with jitter up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// Roots, client certificate and checks for HTTPS (restic's `--cacert`,
    /// `--tls-client-cert`, `--insecure-tls`).
    pub tls: TlsConfig,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            connections: 5,
            s3_layout: None,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(600),
            max_retries: 8,
            retry_timeout: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            tls: TlsConfig::default(),
        }
    }
}

const ENV: &[(&str, &str)] = &[
    ("RESTASH_S3_CONNECTIONS", "s3.connections"),
    ("RESTASH_REST_CONNECTIONS", "rest.connections"),
    ("RESTASH_S3_LAYOUT", "s3.layout"),
    ("RESTASH_HTTP_TIMEOUT", "timeout"),
    ("RESTASH_RETRY_TIMEOUT", "retry-timeout"),
    ("RESTASH_MAX_RETRIES", "max-retries"),
];

impl BackendOptions {
    /// Defaults overridden by the `RESTASH_*` variables of the table above. `scheme` is
    /// `s3` or `rest` and picks which `*_CONNECTIONS` variable applies.
    pub fn from_env(scheme: &str) -> Result<BackendOptions, BackendError> {
        let mut o = BackendOptions::default();
        for (var, key) in ENV {
            if key.ends_with(".connections") && !key.starts_with(scheme) {
                continue;
            }
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    o.set(key, &v)
                        .map_err(|e| BackendError::Config(format!("{var}: {e}")))?;
                }
            }
        }
        Ok(o)
    }

    /// Applies one `-o key=value` option; unknown keys are an error, as in restic.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), BackendError> {
        let bad = || BackendError::Config(format!("invalid value {value:?} for option {key}"));
        let secs = |v: &str| -> Result<Duration, BackendError> {
            let s: f64 = v.trim_end_matches('s').parse().map_err(|_| bad())?;
            if !(s > 0.0 && s < 1e7) {
                return Err(bad());
            }
            Ok(Duration::from_secs_f64(s))
        };
        match key {
            "s3.connections" | "rest.connections" => {
                let n: usize = value.parse().map_err(|_| bad())?;
                if n == 0 {
                    return Err(bad());
                }
                self.connections = n;
            }
            "s3.layout" => {
                self.s3_layout = match value {
                    "default" => Some(S3Layout::Default),
                    "s3legacy" => Some(S3Layout::S3Legacy),
                    "" | "auto" => None,
                    _ => return Err(bad()),
                }
            }
            "timeout" => self.read_timeout = secs(value)?,
            "retry-timeout" => self.retry_timeout = secs(value)?,
            "max-retries" => self.max_retries = value.parse().map_err(|_| bad())?,
            _ => {
                return Err(BackendError::Config(format!(
                    "unknown backend option {key:?}"
                )))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_options() {
        let mut o = BackendOptions::default();
        assert_eq!(o.connections, 5);
        o.set("s3.connections", "9").unwrap();
        o.set("s3.layout", "s3legacy").unwrap();
        o.set("timeout", "2.5").unwrap();
        assert_eq!(o.connections, 9);
        assert_eq!(o.s3_layout, Some(S3Layout::S3Legacy));
        assert_eq!(o.read_timeout, Duration::from_millis(2500));
        assert!(o.set("s3.connections", "0").is_err());
        assert!(o.set("s3.layout", "flat").is_err());
        assert!(o.set("nope", "1").is_err());
    }
}
