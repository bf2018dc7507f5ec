//! `restash key`: list, add, remove and change the keys (passwords), with restic's locks
//! and messages.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args as ClapArgs, Subcommand};
use restash_crypto::KdfParams;
use restash_engine::events::Control;
use restash_engine::keys::{self, KeyEntry, NewKeyOptions};
use restash_engine::EngineError;
use serde_json::json;

use crate::display::{go_time_string, local_time};
use crate::global::{prompt_password, GlobalOpts, Secret};

/// `restash key`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// restic takes these before or after the subcommand.
    #[command(flatten)]
    pub new_key: NewKeyArgs,
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// Key subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List the key files (passwords) of the repository.
    List,
    /// Add a key (password) for the repository.
    Add,
    /// Remove a key by id (not the one in use).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password: add a new key, then remove the one in use.
    Passwd,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    match a.command {
        KeyCommand::List => list(g),
        KeyCommand::Add => add(g, a.new_key),
        KeyCommand::Remove { id } => remove(g, &id),
        KeyCommand::Passwd => passwd(g, a.new_key),
    }
}

fn list(g: &GlobalOpts) -> anyhow::Result<()> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "key")?;
    // As restic: a key that cannot be read is named and left out of the list.
    let (rows, unreadable) = restash_engine::keys::load_all_keys(&repo)?;
    for bad in &unreadable {
        eprintln!("LoadKey() failed: {bad}");
    }
    let current = repo.key_id();
    if g.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(id, k)| {
                json!({
                    "current": *id == current,
                    "id": id.short(),
                    "userName": k.username,
                    "hostName": k.hostname,
                    "created": local_time(&k.created),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let mut table = crate::display::Table::new(&[" ID", "User", "Host", "Created"]);
    for (id, k) in &rows {
        let mark = if *id == current { '*' } else { ' ' };
        table.row(vec![
            format!("{mark}{}", id.short()),
            k.username.clone(),
            k.hostname.clone(),
            local_time(&k.created),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

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

/// The engine's password source: [`new_password`], asked once the lock is held.
fn ask(k: &NewKeyArgs) -> impl FnMut() -> restash_engine::Result<Vec<u8>> + '_ {
    || match new_password(k) {
        Ok(pw) => Ok(pw.0.as_bytes().to_vec()),
        Err(e) => Err(EngineError::Usage(crate::exit::message(&e))),
    }
}

fn options(g: &GlobalOpts, k: &NewKeyArgs) -> NewKeyOptions {
    NewKeyOptions {
        user: k.user.clone().unwrap_or_default(),
        host: k.host.clone().unwrap_or_default(),
        kdf: KdfParams::calibrate(),
        lock: g.write_lock_policy(),
    }
}

fn describe(g: &GlobalOpts, (_, k): &KeyEntry) {
    if !g.quiet {
        println!(
            "saved new key as <Key of {}@{}, created on {}>",
            k.username,
            k.hostname,
            go_time_string(&k.created)
        );
    }
}

pub fn add(g: &GlobalOpts, k: NewKeyArgs) -> anyhow::Result<()> {
    let repo = g.open()?;
    let ctl = Control::default();
    let added = keys::add(&repo, &options(g, &k), &mut ask(&k), &ctl)?;
    describe(g, &added);
    Ok(())
}

pub fn remove(g: &GlobalOpts, prefix: &str) -> anyhow::Result<()> {
    let repo = g.open()?;
    let ctl = Control::default();
    let id = keys::remove(&repo, prefix, &g.write_lock_policy(), &ctl)?;
    if !g.quiet {
        println!("removed key {id}");
    }
    Ok(())
}

pub fn passwd(g: &GlobalOpts, k: NewKeyArgs) -> anyhow::Result<()> {
    let repo = g.open()?;
    let ctl = Control::default();
    let added = keys::passwd(&repo, &options(g, &k), &mut ask(&k), &ctl)?;
    describe(g, &added);
    Ok(())
}
