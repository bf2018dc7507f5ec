//! `restash`: restic's command line over the restash engine. Flags, environment
//! variables and exit codes are restic's, so restic users need no new manual.
#![forbid(unsafe_code)]

mod agent;
mod args;
mod cmd_backup;
mod cmd_cache;
mod cmd_cat;
mod cmd_check;
mod cmd_copy;
mod cmd_diff;
mod cmd_find;
mod cmd_forget;
mod cmd_init;
mod cmd_k8s;
mod cmd_key;
mod cmd_ls;
mod cmd_misc;
mod cmd_prune;
mod cmd_repair;
mod cmd_restore;
mod cmd_snapshots;
mod cmd_stats;
mod cmd_tag;
mod display;
mod global;
mod snapsel;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use restash_engine::EngineError;

use crate::global::GlobalOpts;

/// Fast, restic-compatible backups.
#[derive(Parser, Debug)]
#[command(name = "restash", version, about, disable_help_subcommand = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Initialize a new repository.
    Init(cmd_init::Args),
    /// Create a new backup of files and/or directories.
    Backup(Box<cmd_backup::Args>),
    /// List snapshots.
    Snapshots(cmd_snapshots::Args),
    /// List files in a snapshot.
    Ls(cmd_ls::Args),
    /// Print internal objects to stdout.
    Cat(cmd_cat::Args),
    /// Print a file (or a directory as tar) from a snapshot to stdout.
    Dump(cmd_cat::DumpArgs),
    /// Extract the data from a snapshot.
    Restore(cmd_restore::Args),
    /// Manage keys (passwords).
    Key(cmd_key::Args),
    /// Remove locks other processes created.
    Unlock(cmd_misc::UnlockArgs),
    /// List objects in the repository.
    List(cmd_misc::ListArgs),
    /// Remove snapshots from the repository.
    Forget(cmd_forget::Args),
    /// Modify tags on snapshots.
    Tag(cmd_tag::Args),
    /// Check the repository for errors.
    Check(cmd_check::Args),
    /// Repair the repository (index, snapshots).
    Repair(cmd_repair::Args),
    /// Build a new index (restic 0.14's name for `repair index`).
    RebuildIndex(cmd_repair::IndexArgs),
    /// Print Kubernetes manifests that back up JupyterHub volumes (docs/kubernetes.md).
    K8s(cmd_k8s::Args),
    /// Remove unneeded data from the repository.
    Prune(cmd_prune::Args),
    /// Scan the repository and show basic statistics.
    Stats(cmd_stats::Args),
    /// Find a file, a directory or restic IDs.
    Find(cmd_find::Args),
    /// Show differences between two snapshots.
    Diff(cmd_diff::Args),
    /// Copy snapshots from one repository to another.
    Copy(cmd_copy::Args),
    /// Operate on local cache directories.
    Cache(cmd_cache::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => cmd_init::run(g, a),
        Command::Backup(a) => cmd_backup::run(g, *a),
        Command::Snapshots(a) => cmd_snapshots::run(g, a),
        Command::Ls(a) => cmd_ls::run(g, a),
        Command::Cat(a) => cmd_cat::run(g, a),
        Command::Dump(a) => cmd_cat::dump(g, a),
        Command::Restore(a) => cmd_restore::run(g, a),
        Command::Key(a) => cmd_key::run(g, a),
        Command::Unlock(a) => cmd_misc::unlock(g, a),
        Command::List(a) => cmd_misc::list(g, a),
        Command::Forget(a) => cmd_forget::run(g, a),
        Command::Tag(a) => cmd_tag::run(g, a),
        Command::Check(a) => cmd_check::run(g, a),
        Command::Repair(a) => cmd_repair::run(g, a),
        Command::RebuildIndex(a) => cmd_repair::index(g, a),
        Command::K8s(a) => cmd_k8s::run(g, a),
        Command::Prune(a) => cmd_prune::run(g, a),
        Command::Stats(a) => cmd_stats::run(g, a),
        Command::Find(a) => cmd_find::run(g, a),
        Command::Diff(a) => cmd_diff::run(g, a),
        Command::Copy(a) => cmd_copy::run(g, a),
        Command::Cache(a) => cmd_cache::run(g, a),
    }
}

/// The exit code restic would use for this error (doc/075_scripting.rst).
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return e.exit_code() as u8;
        }
    }
    1
}

/// The error and its causes, each said once: engine errors already include their cause in
/// their own text.
pub(crate) fn message(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}

/// A closed stdout (`restash ls | head`) ends the command quietly, as it does for
/// ripgrep and cat: the reader has all it wanted.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The command line: `backup --forget` takes forget's keep flags, whose `-H`
/// (`--keep-hourly`) would clash with backup's `-H` (`--host`); there only the long form.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommand("backup", |c| c.mut_arg("hourly", |a| a.short(None)));
    Cli::from_arg_matches(&cmd.try_get_matches()?)
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Fatal: {}", message(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
