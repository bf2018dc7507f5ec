//! `key add`, `key remove` and `key passwd`, with restic's locks and messages.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args as ClapArgs;
use restash_crypto::KdfParams;
use restash_engine::keys::{add_key, change_password, find_key, remove_key};
use restash_engine::RepoLock;
use restash_format::KeyFile;

use crate::display::go_time_string;
use crate::global::{prompt_password, GlobalOpts, Secret};

/// Flags of the commands that create a key.
#[derive(ClapArgs, Debug)]
pub struct NewKeyArgs {
    /// File from which to read the new password.
    #[arg(long = "new-password-file", global = true)]
    pub new_password_file: Option<PathBuf>,
    /// The username for new keys.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// The hostname for new keys.
    #[arg(long, global = true)]
    pub host: Option<String>,
}

/// restic's `getNewPassword`: the file (trimmed), else asked twice.
fn new_password(k: &NewKeyArgs) -> anyhow::Result<Secret> {
    if let Some(f) = &k.new_password_file {
        let s = match std::fs::read_to_string(f) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} does not exist", f.display())
            }
            Err(e) => bail!("Readfile: {e}"),
        };
        return Ok(Secret(s.trim().to_string()));
    }
    let a = prompt_password("enter new password: ")?;
    if std::io::stdin().is_terminal() {
        let b = prompt_password("enter password again: ")?;
        if a.0 != b.0 {
            bail!("passwords do not match");
        }
    }
    if a.0.is_empty() {
        bail!("an empty password is not a password");
    }
    Ok(a)
}

fn describe(g: &GlobalOpts, repo: &restash_engine::Repository, id: &restash_format::KeyId) {
    if g.quiet {
        return;
    }
    let h = restash_backend::Handle::new(restash_backend::FileType::Key, *id);
    match repo
        .backend()
        .read(&h)
        .ok()
        .and_then(|d| KeyFile::from_json(&d).ok())
    {
        Some(k) => println!(
            "saved new key as <Key of {}@{}, created on {}>",
            k.username,
            k.hostname,
            go_time_string(&k.created)
        ),
        None => println!("saved new key as {id}"),
    }
}

pub fn add(g: &GlobalOpts, k: NewKeyArgs) -> anyhow::Result<()> {
    let repo = g.open()?;
    let _lock = RepoLock::acquire(&repo, false, false)?;
    let pw = new_password(&k)?;
    let id = add_key(
        &repo,
        pw.0.as_bytes(),
        k.user.as_deref().unwrap_or(""),
        k.host.as_deref().unwrap_or(""),
        KdfParams::calibrate(),
    )?;
    describe(g, &repo, &id);
    Ok(())
}

pub fn remove(g: &GlobalOpts, prefix: &str) -> anyhow::Result<()> {
    let repo = g.open()?;
    let _lock = RepoLock::acquire(&repo, true, false)?;
    let id = find_key(&repo, prefix)?;
    remove_key(&repo, &id)?;
    if !g.quiet {
        println!("removed key {id}");
    }
    Ok(())
}

pub fn passwd(g: &GlobalOpts, k: NewKeyArgs) -> anyhow::Result<()> {
    let repo = g.open()?;
    let _lock = RepoLock::acquire(&repo, true, false)?;
    let pw = new_password(&k)?;
    let id = change_password(&repo, pw.0.as_bytes(), KdfParams::calibrate())?;
    describe(g, &repo, &id);
    Ok(())
}
