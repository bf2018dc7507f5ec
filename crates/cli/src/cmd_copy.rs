use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_engine::copy::{self, CopyJob};
use restash_engine::Repository;

use crate::args::FilterArgs;
use crate::global::{GlobalOpts, Secret};
use crate::ui::Ui;

/// `restash copy`: the destination is `-r`, the source `--from-repo` (or, with the older
/// `--repo2`, the source is `-r` and the destination `--repo2`).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshots to copy (ids or `latest`); all matching ones when none is given.
    pub snapshots: Vec<String>,
    /// Source repository to copy snapshots from.
    #[arg(long = "from-repo", env = "RESTIC_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// File from which to read the source repository location.
    #[arg(long = "from-repository-file", env = "RESTIC_FROM_REPOSITORY_FILE")]
    pub from_repository_file: Option<PathBuf>,
    /// File to read the source repository password from.
    #[arg(long = "from-password-file", env = "RESTIC_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Key id of the key to try first for the source repository.
    #[arg(long = "from-key-hint", env = "RESTIC_FROM_KEY_HINT")]
    pub from_key_hint: Option<String>,
    /// Deprecated (restic 0.14 still takes it): destination repository; the source is
    /// then `-r`.
    #[arg(long = "repo2", env = "RESTIC_REPOSITORY2", hide = true)]
    pub repo2: Option<String>,
    /// Deprecated: file with the destination repository location.
    #[arg(
        long = "repository-file2",
        env = "RESTIC_REPOSITORY_FILE2",
        hide = true
    )]
    pub repository_file2: Option<PathBuf>,
    /// Deprecated: file with the destination repository password.
    #[arg(long = "password-file2", env = "RESTIC_PASSWORD_FILE2", hide = true)]
    pub password_file2: Option<PathBuf>,
    /// Deprecated: key hint for the destination repository.
    #[arg(long = "key-hint2", env = "RESTIC_KEY_HINT2", hide = true)]
    pub key_hint2: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The second repository's flags: restic's `--from-*` group (the source) or the older
/// `*2` group (the destination).
struct Secondary<'a> {
    repo: Option<&'a String>,
    repository_file: Option<&'a PathBuf>,
    password_file: Option<&'a PathBuf>,
    key_hint: Option<&'a String>,
    password_env: &'static str,
    role: &'static str,
}

impl Args {
    /// The second repository and whether it is the source (`--from-*`).
    fn secondary(&self) -> anyhow::Result<(Secondary<'_>, bool)> {
        // cobra warns about deprecated flags before anything else.
        for (flag, set, instead) in [
            ("repo2", self.repo2.is_some(), "--repo or --from-repo"),
            (
                "repository-file2",
                self.repository_file2.is_some(),
                "--repository-file or --from-repository-file",
            ),
        ] {
            if set {
                eprintln!("Flag --{flag} has been deprecated, use {instead} instead");
            }
        }
        let from = self.from_repo.is_some()
            || self.from_repository_file.is_some()
            || self.from_password_file.is_some()
            || self.from_key_hint.is_some();
        let legacy = self.repo2.is_some()
            || self.repository_file2.is_some()
            || self.password_file2.is_some()
            || self.key_hint2.is_some();
        if self.from_repo.is_none()
            && self.from_repository_file.is_none()
            && self.repo2.is_none()
            && self.repository_file2.is_none()
        {
            bail!("Please specify a source repository location (--from-repo or --from-repository-file)");
        }
        if from && legacy {
            bail!(
                "Option groups repo2 and from-repo are mutually exclusive, please specify only one"
            );
        }
        if legacy {
            if self.repo2.is_some() && self.repository_file2.is_some() {
                bail!("Options --repo2 and --repository-file2 are mutually exclusive, please specify only one");
            }
            return Ok((
                Secondary {
                    repo: self.repo2.as_ref(),
                    repository_file: self.repository_file2.as_ref(),
                    password_file: self.password_file2.as_ref(),
                    key_hint: self.key_hint2.as_ref(),
                    password_env: "RESTIC_PASSWORD2",
                    role: "destination",
                },
                false,
            ));
        }
        if self.from_repo.is_some() && self.from_repository_file.is_some() {
            bail!("Options --from-repo and --from-repository-file are mutually exclusive, please specify only one");
        }
        Ok((
            Secondary {
                repo: self.from_repo.as_ref(),
                repository_file: self.from_repository_file.as_ref(),
                password_file: self.from_password_file.as_ref(),
                key_hint: self.from_key_hint.as_ref(),
                password_env: "RESTIC_FROM_PASSWORD",
                role: "source",
            },
            true,
        ))
    }
}

fn secondary_password(s: &Secondary<'_>) -> anyhow::Result<Secret> {
    if let Some(f) = s.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("{} does not exist", f.display()))?;
        return Ok(Secret(text.trim().to_string()));
    }
    if let Ok(p) = std::env::var(s.password_env) {
        return Ok(Secret(p));
    }
    crate::global::prompt_password(&format!("enter password for {} repository: ", s.role))
}

/// Opens the second repository (backend options `-o` apply to it as well, as in restic).
fn open_secondary(g: &GlobalOpts, s: &Secondary<'_>) -> anyhow::Result<Repository> {
    let url = match (s.repo, s.repository_file) {
        (Some(r), _) => r.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading repository file {}", f.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => bail!(
            "Please specify a source repository location (--from-repo or --from-repository-file)"
        ),
    };
    let password = secondary_password(s)?;
    let backend = g.open_backend_at(&url)?;
    let repo = Repository::open(
        backend,
        password.0.as_bytes(),
        s.key_hint.map(String::as_str),
    )?;
    crate::global::warn_unreadable_keys(&repo);
    Ok(repo)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let (second, second_is_source) = a.secondary()?;
    // restic opens the source first.
    let (mut src, mut dst) = if second_is_source {
        let src = open_secondary(g, &second)?;
        (src, g.open()?)
    } else {
        let src = g.open()?;
        (src, open_secondary(g, &second)?)
    };
    let job = CopyJob {
        ids: a.snapshots,
        filter: a.filter.to_filter(),
        source_lock: g.lock_policy(),
        compression: g.compression()?,
        pack_size: g.pack_size()?,
    };
    let ctl = Ui::new(g, "copy", false).control();
    copy::run(&mut src, &mut dst, &job, &ctl)?;
    Ok(())
}
