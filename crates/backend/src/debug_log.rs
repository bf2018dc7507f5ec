//! Debug logging of the network backends: with `RESTASH_DEBUG` set (to anything but empty
//! or `0`), every retry and backoff of [`crate::RetryBackend`] and every layout decision of
//! the S3 backend goes to stderr, and so does every file the engine reads again because
//! its bytes did not hash to its name. Nothing is logged otherwise. Only the
//! `restash_backend`, `restash_engine` and `object_store` targets are shown; none logs
//! request headers, so no credential reaches the log.

use std::sync::Once;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

static INIT: Once = Once::new();

/// Installs the stderr logger if `RESTASH_DEBUG` asks for it; later calls do nothing.
pub fn init_from_env() {
    INIT.call_once(|| {
        let on = std::env::var("RESTASH_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0");
        if !on {
            return;
        }
        let targets = Targets::new()
            .with_target("restash_backend", LevelFilter::DEBUG)
            .with_target("restash_engine", LevelFilter::DEBUG)
            .with_target("object_store", LevelFilter::DEBUG);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(LevelFilter::DEBUG)
            .with_ansi(false)
            .finish()
            .with(targets);
        // Another subscriber may already be installed (a test harness): keep it.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
