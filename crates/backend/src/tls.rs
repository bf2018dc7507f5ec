//! Trust roots and restic's TLS flags for every HTTPS client.
//!
//! reqwest 0.13's `rustls` feature verifies with `rustls-platform-verifier`, which on Linux
//! reads the system's CA files (`/etc/ssl/...`) and refuses to build a verifier when it
//! finds none. A FROM-scratch container has no such files, so every HTTPS request would
//! fail. Merging the Mozilla roots bundled in `webpki-root-certs` keeps the system store
//! (a company CA mounted at /etc/ssl still works) and makes the image work without one.
//!
//! `--cacert` files replace those roots rather than adding to them: restic builds a new
//! pool from exactly the given files (`internal/backend/http_transport.go`), so a
//! repository pinned to a private CA is not also reachable through a public one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::BackendError;

/// restic's `--cacert`, `--tls-client-cert` and `--insecure-tls`, read and checked once
/// by [`TlsConfig::load`]. The default trusts the system and bundled roots.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// Each `--cacert` file with its PEM text.
    ca_files: Vec<(PathBuf, Arc<Vec<u8>>)>,
    client: Option<ClientCert>,
    insecure: bool,
}

/// A client certificate with its private key, as one PEM text.
#[derive(Clone)]
struct ClientCert {
    file: PathBuf,
    pem: Arc<Vec<u8>>,
}

// The PEM holds a private key: only file names are shown.
impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cas: Vec<_> = self.ca_files.iter().map(|(p, _)| p.display()).collect();
        f.debug_struct("TlsConfig")
            .field("cacert", &cas)
            .field(
                "client_cert",
                &self.client.as_ref().map(|c| c.file.display()),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsConfig {
    /// Reads and checks the files of the flags, as restic does before opening any
    /// backend: an unreadable or unparsable file is an error even for a local repository.
    pub fn load(
        cacert: &[PathBuf],
        client_cert: Option<&Path>,
        insecure: bool,
    ) -> Result<TlsConfig, BackendError> {
        let mut ca_files = Vec::new();
        for file in cacert {
            if file.as_os_str().is_empty() {
                return Err(BackendError::Config(
                    "empty filename for root certificate supplied".into(),
                ));
            }
            let pem = std::fs::read(file).map_err(|e| {
                BackendError::Config(format!(
                    "unable to read root certificate {}: {e}",
                    file.display()
                ))
            })?;
            let parsed = reqwest::Certificate::from_pem_bundle(&pem);
            if !parsed.is_ok_and(|certs| !certs.is_empty()) {
                return Err(BackendError::Config(format!(
                    "cannot parse root certificate from {}: no PEM certificate in it",
                    file.display()
                )));
            }
            ca_files.push((file.clone(), Arc::new(pem)));
        }
        let client = match client_cert {
            Some(file) => Some(load_client_cert(file)?),
            None => None,
        };
        Ok(TlsConfig {
            ca_files,
            client,
            insecure,
        })
    }

    /// Whether `--insecure-tls` turned certificate checks off.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Whether a client certificate is to be presented.
    pub(crate) fn has_client_cert(&self) -> bool {
        self.client.is_some()
    }

    /// A reqwest client builder with these roots, client certificate and checks.
    pub(crate) fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder, BackendError> {
        let mut b = reqwest::Client::builder();
        if self.ca_files.is_empty() {
            b = b.tls_certs_merge(reqwest_roots()?);
        } else {
            let mut certs = Vec::new();
            for (file, pem) in &self.ca_files {
                certs.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                    BackendError::Config(format!(
                        "cannot parse root certificate from {}: {e}",
                        file.display()
                    ))
                })?);
            }
            b = b.tls_certs_only(certs);
        }
        if self.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        if let Some(c) = &self.client {
            b = b.identity(identity(c)?);
        }
        Ok(b)
    }

    /// object_store's client options with these roots and checks. A client certificate
    /// has no knob there; [`crate::S3Backend`] hands object_store a client of its own.
    pub(crate) fn object_store_options(
        &self,
        mut o: object_store::ClientOptions,
    ) -> Result<object_store::ClientOptions, BackendError> {
        if self.ca_files.is_empty() {
            for root in object_store_roots()? {
                o = o.with_root_certificate(root);
            }
        } else {
            o = o.with_no_system_certificates(true);
            for (file, pem) in &self.ca_files {
                let certs = object_store::Certificate::from_pem_bundle(pem).map_err(|e| {
                    BackendError::Config(format!(
                        "cannot parse root certificate from {}: {e}",
                        file.display()
                    ))
                })?;
                for c in certs {
                    o = o.with_root_certificate(c);
                }
            }
        }
        Ok(o.with_allow_invalid_certificates(self.insecure))
    }
}

fn load_client_cert(file: &Path) -> Result<ClientCert, BackendError> {
    if file.as_os_str().is_empty() {
        return Err(BackendError::Config(
            "empty filename for TLS client certificate supplied".into(),
        ));
    }
    let pem = std::fs::read(file).map_err(|e| {
        BackendError::Config(format!(
            "unable to read TLS client certificate {}: {e}",
            file.display()
        ))
    })?;
    let c = ClientCert {
        file: file.to_path_buf(),
        pem: Arc::new(pem),
    };
    // Building a client is what checks that the key belongs to the certificate. No roots:
    // the platform verifier would fail where there is no system CA store (a FROM-scratch
    // image), which has nothing to do with the client certificate.
    reqwest::Client::builder()
        .tls_certs_only(Vec::new())
        .identity(identity(&c)?)
        .build()
        .map_err(|e| client_cert_error(&c.file, &e))?;
    Ok(c)
}

fn identity(c: &ClientCert) -> Result<reqwest::Identity, BackendError> {
    reqwest::Identity::from_pem(&c.pem).map_err(|e| client_cert_error(&c.file, &e))
}

// reqwest's messages name what is missing or malformed, never the PEM content.
fn client_cert_error(file: &Path, e: &reqwest::Error) -> BackendError {
    let mut parts = Vec::new();
    crate::retry::push_causes(&mut parts, e);
    let reason = match parts.is_empty() {
        true => e.to_string(),
        false => parts.join(": "),
    };
    BackendError::Config(format!(
        "parse TLS client cert or key from {}: {reason} (the file must hold the PEM \
         certificate and its private key)",
        file.display()
    ))
}

/// The bundled Mozilla roots as reqwest certificates, to merge into a client.
pub(crate) fn reqwest_roots() -> Result<Vec<reqwest::Certificate>, BackendError> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der)
                .map_err(|e| BackendError::Config(format!("bundled CA root: {e}")))
        })
        .collect()
}

/// The bundled Mozilla roots for object_store's client options.
pub(crate) fn object_store_roots() -> Result<Vec<object_store::Certificate>, BackendError> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| {
            object_store::Certificate::from_der(der)
                .map_err(|e| BackendError::Config(format!("bundled CA root: {e}")))
        })
        .collect()
}

/// A reqwest client builder that trusts the system roots plus the bundled ones (for
/// clients that are not a repository's, which the TLS flags do not concern).
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, BackendError> {
    TlsConfig::default().reqwest_builder()
}

/// Why a TLS handshake failed, when `e`'s causes show a failure that trying again cannot
/// cure: the server's certificate was refused, or the server refused ours.
pub(crate) fn handshake_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return describe(r);
        }
        // An io::Error's source() skips the error it wraps, and the connectors wrap
        // rustls's error in an io::Error that is itself wrapped in another: step inside.
        cur = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

fn describe(e: &rustls::Error) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C};
    match e {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            C::UnknownIssuer => "its certificate is signed by an unknown issuer (self-signed, \
                 or a private CA: trust it with --cacert)"
                .to_string(),
            C::ExpiredContext { not_after, .. } => format!(
                "its certificate has expired (valid until {})",
                utc(not_after.as_secs())
            ),
            C::Expired => "its certificate has expired".to_string(),
            C::NotValidYetContext { not_before, .. } => format!(
                "its certificate is not valid yet (valid from {}; is this clock right?)",
                utc(not_before.as_secs())
            ),
            C::NotValidYet => "its certificate is not valid yet".to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("its certificate is for another host name ({c})")
            }
            C::BadSignature => "its certificate's signature does not verify (signed by \
                 another key than the trusted CA of that name)"
                .to_string(),
            other => format!("its certificate was rejected: {other}"),
        }),
        rustls::Error::AlertReceived(
            a @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::HandshakeFailure),
        ) => Some(format!(
            "the server refused the TLS handshake ({a:?}; does it want a client \
             certificate? --tls-client-cert)"
        )),
        _ => None,
    }
}

fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("{secs} (UNIX)"),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// `host[:port]` of `url`, for naming the server in TLS errors.
/// The [`BackendError::Tls`] for `e` if a certificate or handshake problem caused it: it
/// names the host of `url` and the reason, and is never retried.
pub(crate) fn tls_error(
    e: &(dyn std::error::Error + 'static),
    url: &url::Url,
    context: impl FnOnce() -> String,
) -> Option<BackendError> {
    handshake_problem(e).map(|reason| BackendError::Tls {
        context: context(),
        host: host_of(url),
        reason,
    })
}

pub(crate) fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_parse_and_build_a_client() {
        assert!(reqwest_roots().unwrap().len() > 100);
        assert!(object_store_roots().unwrap().len() > 100);
        client_builder().unwrap().build().unwrap();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");

        let e = TlsConfig::load(std::slice::from_ref(&junk), None, false).unwrap_err();
        assert!(
            e.to_string().contains("cannot parse root certificate from"),
            "{e}"
        );
        assert!(!e.is_retryable());
        let e = TlsConfig::load(std::slice::from_ref(&missing), None, false).unwrap_err();
        assert!(
            e.to_string().contains("unable to read root certificate"),
            "{e}"
        );
        let e = TlsConfig::load(&[PathBuf::new()], None, false).unwrap_err();
        assert!(e.to_string().contains("empty filename"), "{e}");

        let e = TlsConfig::load(&[], Some(&junk), false).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("parse TLS client cert or key from"), "{m}");
        assert!(m.contains("junk.pem"), "{m}");
        let e = TlsConfig::load(&[], Some(&missing), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("unable to read TLS client certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_key_without_its_certificate_is_refused_and_never_shown() {
        // An EC private key (P-256) alone: no certificate next to it.
        let key = "-----BEGIN PRIVATE KEY-----\n\
            MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\n\
            OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n\
            1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G\n\
            -----END PRIVATE KEY-----\n";
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("client.pem");
        std::fs::write(&f, key).unwrap();
        let e = TlsConfig::load(&[], Some(&f), false).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("parse TLS client cert or key"), "{m}");
        assert!(!m.contains("MIGHAgEAMBMG"), "{m}");
        assert!(!format!("{e:?}").contains("MIGHAgEAMBMG"));
    }

    #[test]
    fn debug_shows_file_names_only() {
        let c = TlsConfig {
            client: Some(ClientCert {
                file: PathBuf::from("/etc/client.pem"),
                pem: Arc::new(b"-----BEGIN PRIVATE KEY-----secret".to_vec()),
            }),
            ..TlsConfig::default()
        };
        let d = format!("{c:?}");
        assert!(d.contains("/etc/client.pem"), "{d}");
        assert!(!d.contains("secret"), "{d}");
    }

    #[test]
    fn certificate_failures_are_described() {
        // As the connectors hand it over: inside an io::Error inside another.
        let e = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let d = handshake_problem(&e).unwrap();
        assert!(d.contains("unknown issuer"), "{d}");
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_700_000_000,
            )),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(1_580_515_200),
            ),
        });
        let d = handshake_problem(&e).unwrap();
        assert!(
            d.contains("expired (valid until 2020-02-01 00:00:00 UTC)"),
            "{d}"
        );
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert!(handshake_problem(&e)
            .unwrap()
            .contains("client certificate"));
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(handshake_problem(&e).is_none());
    }
}
