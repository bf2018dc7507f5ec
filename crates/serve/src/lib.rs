//! `restash serve`: a read-only web view of a repository. The volumes page shows one row
//! per host (one per PVC for the Kubernetes Jobs) with its last backup, age, size and
//! flags; any snapshot can be browsed, and a file or a folder (`.tar.gz`, `.zip`)
//! downloaded, streamed straight from the repository. The pages and their assets are
//! part of the binary.
//!
//! ```no_run
//! # fn demo(repo: restash_engine::Repository) -> Result<(), restash_serve::ServeError> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use restash_serve::{serve, Library, ServeOptions};
//!
//! let library = Arc::new(Library::new(repo, Duration::from_secs(60), Box::new(|w| eprintln!("{w}"))));
//! let cancel = restash_engine::events::Cancel::new();
//! serve(library, ServeOptions::default(), cancel, |addr| println!("serving on http://{addr}/"))?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod auth;
pub mod html;
mod http;
pub mod model;
mod stream;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use restash_engine::events::Cancel;
use restash_engine::LockPolicy;
use thiserror::Error;

pub use auth::Auth;
pub use model::{Library, Totals, Volume};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// Who may look.
    pub auth: Auth,
    /// A host whose newest backup is older than this is flagged stale.
    pub stale_after: Duration,
    /// How downloads take restic's read lock (`--no-lock`, `--retry-lock`).
    pub lock: LockPolicy,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: "127.0.0.1:8080".into(),
            auth: Auth::Open,
            stale_after: Duration::from_secs(26 * 3600),
            lock: LockPolicy::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A file given on the command line could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An htpasswd file line that cannot be used.
    #[error("{}: line {line}: {why}", path.display())]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// Its line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// Listening beyond this machine without a password or token.
    #[error(
        "refusing to serve {addr} without authentication: listening beyond localhost needs \
--htpasswd FILE or a token (--token-file FILE or $RESTASH_SERVE_TOKEN)"
    )]
    NeedsAuth {
        /// The address asked for.
        addr: String,
    },
    /// The address cannot be resolved or bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("serving failed: {0}")]
    Server(#[source] std::io::Error),
}

/// Binds `opts.listen` (refusing a non-loopback address without authentication), calls
/// `ready` with the bound address, and serves until `cancel` fires.
pub fn serve(
    library: Arc<Library>,
    opts: ServeOptions,
    cancel: Cancel,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listen_err = |source| ServeError::Listen {
        addr: opts.listen.clone(),
        source,
    };
    let addrs: Vec<SocketAddr> = opts.listen.to_socket_addrs().map_err(listen_err)?.collect();
    if opts.auth.is_open() && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(ServeError::NeedsAuth {
            addr: opts.listen.clone(),
        });
    }
    let listener = TcpListener::bind(&addrs[..]).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    let addr = listener.local_addr().map_err(listen_err)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServeError::Server)?;
    ready(addr);
    let workers = Arc::new(stream::Workers::default());
    let served = runtime.block_on(http::run(library, opts, listener, cancel, workers.clone()));
    // Dropping the runtime closes every connection, so a download still running fails its
    // next write, ends, and removes its lock.
    drop(runtime);
    if !workers.wait_idle(Duration::from_secs(30)) {
        eprintln!("some downloads did not end within 30 s; their read locks may be left behind");
    }
    served
}

#[cfg(test)]
mod model_tests;
