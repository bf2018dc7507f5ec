//! Oracle runs for the backup tests: the same `backup` command line with restash and then
//! with restic 0.14 into one repository, and what differs between the two snapshots.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::backup::{
    ls_nodes, new_snapshot, node_diffs, run_tool, snapshot_id, snapshots, Tool,
};
use crate::common::{osargs, Repo};

/// How much of `restic ls --json` two snapshots must share.
#[derive(Clone, Copy, PartialEq)]
pub enum Nodes {
    /// Every node field: same paths, and the same metadata for the same source.
    Full,
    /// Paths only: the source (e.g. /dev) may change between the two backups.
    Paths,
}

pub struct Case {
    pub name: &'static str,
    pub args: Vec<String>,
    pub targets: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub nodes: Nodes,
    /// The flags must leave something out, or the case tells nothing apart.
    pub selective: bool,
}

pub fn case(name: &'static str, args: &[&str], targets: &[&str], selective: bool) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        cwd: None,
        nodes: Nodes::Full,
        selective,
    }
}

/// Runs each case with restash, then with restic (the oracle) into the same repository,
/// and returns what differs: the snapshots' host, tags, paths, excludes and user, and the
/// `ls --json` listing.
pub fn run_cases(repo: &Repo, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut baseline: Option<usize> = None;
    for c in cases {
        let mut args = osargs!["-r", repo.path, "backup"];
        args.extend(c.args.iter().map(Into::into));
        args.extend(c.targets.iter().map(Into::into));
        let before = snapshots(repo);
        let out = run_tool(Tool::Restash, &args, None, c.cwd.as_deref(), &[]);
        if out.code != 0 {
            failures.push(format!("{}: restash failed\n{}", c.name, out.describe()));
            continue;
        }
        let ours = new_snapshot(repo, &before);
        let before = snapshots(repo);
        run_tool(Tool::Restic, &args, None, c.cwd.as_deref(), &[]).success();
        let theirs = new_snapshot(repo, &before);

        for field in ["hostname", "tags", "paths", "excludes", "username"] {
            if ours.get(field) != theirs.get(field) {
                failures.push(format!(
                    "{}: snapshot {field}: restash {:?}, restic {:?}",
                    c.name,
                    ours.get(field),
                    theirs.get(field)
                ));
            }
        }
        let (mut a, mut b) = (
            ls_nodes(repo, &snapshot_id(&ours)),
            ls_nodes(repo, &snapshot_id(&theirs)),
        );
        if c.nodes == Nodes::Paths {
            for v in a.values_mut().chain(b.values_mut()) {
                *v = Value::Null;
            }
        }
        let n = b.len();
        match baseline {
            None => baseline = Some(n),
            Some(all) if c.selective && n >= all => failures.push(format!(
                "{}: restic keeps {n} of {all} entries; the case tests nothing",
                c.name
            )),
            Some(_) => {}
        }
        let diffs = node_diffs(&a, &b, ("restash", "restic"), 20);
        if !diffs.is_empty() {
            failures.push(format!("{}: ls differs:\n  {}", c.name, diffs.join("\n  ")));
        }
    }
    failures
}

#[track_caller]
pub fn assert_no_failures(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} failure(s) over {total} cases:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
