//! `restash rewrite`: restic 0.17's command to drop files from snapshots or change their
//! host or time. The engine does the work; this file reads the flags and prints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeZone};
use clap::Args as ClapArgs;
use restash_engine::archiver::sources::read_lines;
use restash_engine::events::{Control, Event, EventSink};
use restash_engine::rewrite::{run as rewrite, RewriteOptions};
use restash_engine::PatternSet;
use restash_format::GoTime;

use crate::args::FilterArgs;
use crate::display::go_time_string;
use crate::global::GlobalOpts;
use crate::ui::Ui;

/// restic's `TimeFormat`, in Go's notation for its error message and in chrono's.
const GO_TIME_FORMAT: &str = "2006-01-02 15:04:05";
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `restash rewrite`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshots to rewrite (ids, prefixes or `latest`); all filtered snapshots if none.
    #[arg(value_name = "snapshotID")]
    pub ids: Vec<String>,
    /// Remove original snapshots after creating new ones.
    #[arg(long)]
    pub forget: bool,
    /// Do not do anything, just print what would be done.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Replace hostname.
    #[arg(long = "new-host", value_name = "host")]
    pub new_host: Option<String>,
    /// Replace time of the backup (`2006-01-02 15:04:05`, local time).
    #[arg(long = "new-time", value_name = "time")]
    pub new_time: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Exclude a `pattern` (can be specified multiple times).
    #[arg(short = 'e', long = "exclude", value_name = "pattern")]
    pub exclude: Vec<String>,
    /// Same as --exclude `pattern` but ignores the casing of filenames.
    #[arg(long = "iexclude", value_name = "pattern")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a `file` (can be specified multiple times).
    #[arg(long = "exclude-file", value_name = "file")]
    pub exclude_file: Vec<PathBuf>,
    /// Same as --exclude-file but ignores casing of `file`names in patterns.
    #[arg(long = "iexclude-file", value_name = "file")]
    pub iexclude_file: Vec<PathBuf>,
}

/// `--new-time` as restic parses it: local time, seconds required.
fn parse_time(s: &str) -> anyhow::Result<GoTime> {
    let naive = NaiveDateTime::parse_from_str(s, TIME_FORMAT).map_err(|e| {
        anyhow::anyhow!("error in time option: parsing time {s:?} as {GO_TIME_FORMAT:?}: {e}")
    })?;
    let local = chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .with_context(|| format!("error in time option: {s:?} does not exist in local time"))?;
    Ok(GoTime(local.fixed_offset()))
}

fn patterns(a: &Args) -> anyhow::Result<PatternSet> {
    let mut excludes = a.exclude.clone();
    for f in &a.exclude_file {
        excludes.extend(read_lines(f, true)?);
    }
    let mut iexcludes = a.iexclude.clone();
    for f in &a.iexclude_file {
        iexcludes.extend(read_lines(f, true)?);
    }
    let mut set = PatternSet::parse(&excludes)?;
    set.add_insensitive(&iexcludes)?;
    Ok(set)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let opts = RewriteOptions {
        ids: a.ids.clone(),
        filter: a.filter.to_filter(),
        excludes: patterns(&a)?,
        forget: a.forget,
        dry_run: a.dry_run,
        // restic takes an empty value as not given.
        new_host: a.new_host.clone().filter(|h| !h.is_empty()),
        new_time: match a.new_time.as_deref() {
            None | Some("") => None,
            Some(t) => Some(parse_time(t)?),
        },
        // restic takes its lock for rewrite whatever --no-lock says.
        lock: g.write_lock_policy(),
        compression: g.compression()?,
        pack_size: g.pack_size()?,
    };
    // restic refuses before it asks for the password.
    opts.check()?;
    let verbosity = if g.quiet { 0 } else { 1 + g.verbose };
    let ui = Ui::new(g, "rewrite", false);
    let ctl = Control::new(Arc::new(move |e: &Event<'_>| match e {
        // restic prints each snapshot as Go formats its Snapshot value.
        Event::Selected { id, snapshot: s } if verbosity >= 1 => println!(
            "\nsnapshot {} of [{}] at {} by {}@{}",
            id.short(),
            s.paths.join(" "),
            go_time_string(&s.time),
            s.username,
            s.hostname
        ),
        _ => ui.event(e),
    }));
    // SIGINT/SIGTERM stop the rewrite between trees and release the lock (exit 130); a
    // second signal ends the process at once.
    crate::signals::interrupt_on(&ctl.cancel)?;
    let mut repo = g.open()?;
    let sum = rewrite(&mut repo, &opts, &ctl)?;
    if verbosity >= 1 {
        println!();
        let msg = match (sum.rewritten.len(), a.dry_run) {
            (0, false) => "no snapshots were modified".to_string(),
            (0, true) => "no snapshots would be modified".to_string(),
            (n, false) => format!("modified {n} snapshots"),
            (n, true) => format!("would modify {n} snapshots"),
        };
        println!("{msg}");
    }
    Ok(())
}
