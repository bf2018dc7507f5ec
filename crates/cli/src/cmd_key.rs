use clap::{Args as ClapArgs, Subcommand};
use serde_json::json;

use crate::display::local_time;
use crate::global::GlobalOpts;

pub use crate::cmd_key_edit::NewKeyArgs;

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
        KeyCommand::Add => crate::cmd_key_edit::add(g, a.new_key),
        KeyCommand::Remove { id } => crate::cmd_key_edit::remove(g, &id),
        KeyCommand::Passwd => crate::cmd_key_edit::passwd(g, a.new_key),
    }
}

fn list(g: &GlobalOpts) -> anyhow::Result<()> {
    let repo = g.open()?;
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
