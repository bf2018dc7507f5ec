//! `restash`: restic's command line over the restash engine. Flags, environment
//! variables and exit codes are restic's, so restic users need no new manual.
#![forbid(unsafe_code)]

mod args;
mod cmd_backup;
mod cmd_cache;
mod cmd_cat;
mod cmd_check;
mod cmd_copy;
mod cmd_diff;
mod cmd_find;
mod cmd_forget;
mod cmd_generate;
mod cmd_init;
mod cmd_k8s;
mod cmd_key;
mod cmd_ls;
mod cmd_misc;
mod cmd_mount;
mod cmd_prune;
mod cmd_repair;
mod cmd_restore;
mod cmd_rewrite;
mod cmd_serve;
mod cmd_snapshots;
mod cmd_stats;
mod cmd_tag;
mod display;
mod exit;
mod global;
mod select_args;
mod signals;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Done;
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
    /// Print a file (or a directory as tar or zip) from a snapshot to stdout.
    Dump(cmd_cat::DumpArgs),
    /// Mount the repository (read-only, through FUSE).
    Mount(cmd_mount::Args),
    /// Serve a read-only web view of the repository: every host's backups, browsing, downloads.
    Serve(cmd_serve::Args),
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
    /// Rewrite snapshots to exclude unwanted files.
    Rewrite(cmd_rewrite::Args),
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
    /// Generate manual pages and auto-completion files (bash, fish, zsh, powershell).
    Generate(cmd_generate::Args),
    /// Print version information.
    Version,
}

fn run(cli: Cli) -> anyhow::Result<Done> {
    let g = &cli.global;
    let done = match cli.command {
        Command::Backup(a) => return cmd_backup::run(g, *a),
        Command::Restore(a) => return cmd_restore::run(g, a),
        Command::Init(a) => cmd_init::run(g, a),
        Command::Snapshots(a) => cmd_snapshots::run(g, a),
        Command::Ls(a) => cmd_ls::run(g, a),
        Command::Cat(a) => cmd_cat::run(g, a),
        Command::Dump(a) => cmd_cat::dump(g, a),
        Command::Mount(a) => return cmd_mount::run(g, a),
        Command::Serve(a) => return cmd_serve::run(g, a),
        Command::Key(a) => cmd_key::run(g, a),
        Command::Unlock(a) => cmd_misc::unlock(g, a),
        Command::List(a) => cmd_misc::list(g, a),
        Command::Forget(a) => cmd_forget::run(g, a),
        Command::Tag(a) => cmd_tag::run(g, a),
        Command::Rewrite(a) => cmd_rewrite::run(g, a),
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
        Command::Generate(a) => cmd_generate::run(g, a, command()),
        Command::Version => cmd_generate::version(g),
    };
    done.map(|()| Done::Ok)
}

/// Ends the process now with `done`'s exit code: for a backup whose uploads outlast the
/// SIGTERM grace period, reported from the watchdog's thread while the main thread still
/// waits on them.
pub(crate) fn end_now(done: Done) -> ! {
    std::process::exit(done.code().into())
}

/// The command line: `backup --forget` takes forget's keep flags, whose `-H`
/// (`--keep-hourly`) would clash with backup's `-H` (`--host`); there only the long form.
fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().try_get_matches()?)
}

/// The whole command line as clap sees it: what parses, and what `generate` describes.
fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommand("backup", |c| c.mut_arg("hourly", |a| a.short(None)))
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
    // The one place a command's outcome becomes restic's exit code.
    match run(cli) {
        Ok(done) => ExitCode::from(done.code()),
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Fatal: {}", exit::message(&e));
            ExitCode::from(exit::error_code(&e))
        }
    }
}
