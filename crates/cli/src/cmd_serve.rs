//! `restash serve`: a read-only web view of the repository (every host's backups, browsing,
//! downloads), served by restash itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_engine::events::Cancel;
use restash_engine::units::parse_duration;
use restash_serve::{serve, Auth, Library, ServeOptions};

use crate::exit::Done;
use crate::global::GlobalOpts;

/// `restash serve`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Address to listen on; beyond localhost, --htpasswd or a token is required.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "host:port")]
    pub listen: String,
    /// Apache htpasswd file of the users who may look (bcrypt, MD5 or SHA-1 hashes).
    #[arg(long, value_name = "file", conflicts_with = "token_file")]
    pub htpasswd: Option<PathBuf>,
    /// File holding the access token (default: $RESTASH_SERVE_TOKEN); clients send it as
    /// a bearer token or as the password of any user.
    #[arg(long, value_name = "file")]
    pub token_file: Option<PathBuf>,
    /// Flag a host whose newest backup is older than this (a Go duration).
    #[arg(long, default_value = "26h", value_name = "duration")]
    pub stale_after: String,
}

fn auth(a: &Args) -> anyhow::Result<Auth> {
    if let Some(path) = &a.htpasswd {
        return Ok(Auth::htpasswd(path)?);
    }
    let token = match &a.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        None => match std::env::var("RESTASH_SERVE_TOKEN") {
            Ok(t) => t,
            Err(_) => return Ok(Auth::Open),
        },
    };
    let token = token.trim().to_string();
    if token.len() < 16 {
        bail!("the access token is too short: use at least 16 characters");
    }
    Ok(Auth::Token(token))
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<Done> {
    let stale_after = parse_duration(&a.stale_after)
        .with_context(|| format!("invalid --stale-after {:?}", a.stale_after))?;
    let opts = ServeOptions {
        listen: a.listen.clone(),
        auth: auth(&a)?,
        stale_after,
        lock: g.lock_policy(),
    };
    let repo = g.open()?;
    let warn = Box::new(|w: &str| eprintln!("{w}"));
    // Snapshots are re-listed at most this often: one LIST per minute at most, however
    // many people look.
    let library = Arc::new(Library::new(repo, Duration::from_secs(60), warn));
    let cancel = Cancel::new();
    crate::signals::cancel_on(&cancel, true)?;
    let open = opts.auth.is_open();
    serve(library, opts, cancel.clone(), |addr| {
        println!("serving the repository at http://{addr}/");
        if !open {
            println!("authentication required (token or htpasswd user)");
        }
    })?;
    Ok(match cancel.is_terminated() {
        true => Done::Terminated,
        false => Done::Interrupted,
    })
}
