use clap::Args as ClapArgs;

use crate::global::GlobalOpts;

/// `restash init`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Repository format version: 1, 2, "latest" or "stable" (both 2).
    #[arg(long = "repository-version", default_value = "stable")]
    pub repository_version: String,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let version = match a.repository_version.as_str() {
        "1" => 1,
        "2" | "latest" | "stable" => 2,
        other => anyhow::bail!("unsupported repository version {other:?} (use 1 or 2)"),
    };
    let (repo, location) = g.init(version)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "initialized",
                "id": repo.config().id,
                "repository": location,
            })
        );
    } else if !g.quiet {
        println!(
            "created restic repository {} at {location}\n\n\
             Please note that knowledge of your password is required to access\n\
             the repository. Losing your password means that your data is\n\
             irrecoverably lost.",
            &repo.config().id[..10]
        );
    }
    Ok(())
}
