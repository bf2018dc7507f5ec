//! `restash k8s …`: prints the Kubernetes manifests that run restash for JupyterHub user
//! volumes (docs/kubernetes.md). Nothing here talks to a cluster: the output goes to
//! `kubectl apply -f -`. The flags and what they build are `restash_k8s::request`'s.

use std::io::Write;

use clap::Args as ClapArgs;
use restash_k8s::request::Request;

use crate::global::GlobalOpts;

/// `restash k8s`
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: Request,
}

pub fn run(g: &GlobalOpts, mut a: Args) -> anyhow::Result<()> {
    // The global --retry-lock, parsed by the rule the Jobs' restash parses it with, is
    // what the Jobs wait.
    a.what
        .set_retry_lock(g.retry_lock.map(restash_engine::units::format_duration));
    // The web view's restash parses --stale-after by the same rule: a typo fails here, not
    // in a crash-looping pod.
    if let Request::Serve(s) = &mut a.what {
        if let Some(d) = &s.stale_after {
            let d = restash_engine::units::parse_duration(d)?;
            s.stale_after = Some(restash_engine::units::format_duration(d));
        }
    }
    let now = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let docs = a.what.build(&now, &mut |note| eprintln!("note: {note}"))?;
    let text = if g.json {
        let mut s = serde_json::to_string_pretty(&restash_k8s::list(docs))?;
        s.push('\n');
        s
    } else {
        restash_k8s::to_yaml_stream(&docs)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
