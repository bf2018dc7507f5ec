//! Trust roots for every HTTPS client.
//!
//! reqwest 0.13's `rustls` feature verifies with `rustls-platform-verifier`, which on Linux
//! reads the system's CA files (`/etc/ssl/...`) and refuses to build a verifier when it
//! finds none. A FROM-scratch container has no such files, so every HTTPS request would
//! fail. Merging the Mozilla roots bundled in `webpki-root-certs` keeps the system store
//! (a company CA mounted at /etc/ssl still works) and makes the image work without one.

use crate::BackendError;

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

/// A reqwest client builder that trusts the system roots plus the bundled ones.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, BackendError> {
    Ok(reqwest::Client::builder().tls_certs_merge(reqwest_roots()?))
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
}
