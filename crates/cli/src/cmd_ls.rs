use std::collections::HashSet;

use clap::Args as ClapArgs;
use restash_engine::treewalk::{enter_if, walk_from};
use restash_format::{Node, NodeType};
use serde_json::json;

use crate::args::FilterArgs;
use crate::display::{go_time_string, mode_string, snapshot_json};
use crate::global::GlobalOpts;

/// `restash ls`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: String,
    /// Only list entries below these directories.
    pub dirs: Vec<String>,
    /// Long listing (mode, owner, size, time).
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Include subdirectories of the given directories.
    #[arg(long)]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn node_json(path: &str, n: &Node) -> serde_json::Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": n.node_type.as_str(),
        "path": path,
        "uid": n.uid,
        "gid": n.gid,
    });
    let obj = v.as_object_mut().expect("object");
    if n.node_type == NodeType::File {
        obj.insert("size".into(), n.size.into());
    }
    if n.mode != 0 {
        obj.insert("mode".into(), n.mode.into());
        obj.insert("permissions".into(), mode_string(n.mode).into());
    }
    obj.insert("mtime".into(), n.mtime.to_go_string().into());
    obj.insert("atime".into(), n.atime.to_go_string().into());
    obj.insert("ctime".into(), n.ctime.to_go_string().into());
    obj.insert("struct_type".into(), "node".into());
    v
}

/// Whether `path` is to be listed, and whether to descend below it, given the directory
/// arguments. restic 0.14's rule: the directory itself, its direct children (all
/// descendants with --recursive), and the directories on the way there are walked. A file
/// given as the "directory" is listed alone.
fn wanted(dirs: &[String], recursive: bool, path: &str) -> (bool, bool) {
    if dirs.is_empty() {
        return (true, true);
    }
    let mut list = false;
    let mut descend = false;
    for d in dirs {
        let d = d.trim_end_matches('/');
        if path == d {
            list = true;
            descend = true;
        } else if let Some(rest) = path.strip_prefix(d).and_then(|r| r.strip_prefix('/')) {
            list |= recursive || !rest.contains('/');
            descend |= recursive;
        } else if d.starts_with(&format!("{path}/")) {
            descend = true;
        }
    }
    (list, descend)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if a.dirs.iter().any(|d| !d.starts_with('/')) {
        anyhow::bail!("All path filters must be absolute, starting with a forward slash '/'");
    }
    let mut repo = g.open()?;
    let (chosen, index) = repo
        .load_index_with(|repo| crate::snapsel::resolve(repo, &a.snapshot, &a.filter.to_filter()));
    let (id, snap) = chosen?;
    index?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if g.json {
        let mut v = snapshot_json(&id, &snap);
        v.as_object_mut()
            .expect("object")
            .insert("struct_type".into(), "snapshot".into());
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "snapshot {} of [{}] filtered by [{}] at {}):",
            id.short(),
            snap.paths.join(" "),
            a.dirs.join(" "),
            go_time_string(&snap.time)
        )?;
    }
    // Listing everything (not one directory) walks every tree: they are fetched ahead.
    let roots = if a.dirs.is_empty() || a.recursive {
        vec![snap.tree]
    } else {
        Vec::new()
    };
    repo.prefetching_trees(&roots, || {
        walk_from(
            &repo,
            "",
            &snap.tree,
            &mut HashSet::new(),
            &mut |_, p, node| {
                let (list, descend) = wanted(&a.dirs, a.recursive, p);
                if list {
                    let line = if g.json {
                        node_json(p, node).to_string()
                    } else if a.long {
                        crate::display::node_long_line(p, node)
                    } else {
                        p.to_string()
                    };
                    writeln!(out, "{line}").map_err(|e| restash_engine::EngineError::Io {
                        context: "write to stdout".into(),
                        source: e,
                    })?;
                }
                Ok(enter_if(descend, node))
            },
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wanted;

    fn listed(dirs: &[&str], recursive: bool) -> Vec<&'static str> {
        let dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
        let tree = [
            "/testdir",
            "/testdir/bar",
            "/testdir/sub",
            "/testdir/sub/x",
            "/testdir2",
            "/testdir2/y",
        ];
        tree.into_iter()
            .filter(|p| {
                // Only what the walk reaches: every ancestor must have been descended into.
                let mut anc = String::new();
                for part in p
                    .split('/')
                    .skip(1)
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                    .skip(1)
                    .rev()
                {
                    anc.push('/');
                    anc.push_str(part);
                    if !wanted(&dirs, recursive, &anc).1 {
                        return false;
                    }
                }
                wanted(&dirs, recursive, p).0
            })
            .collect()
    }

    /// What restic 0.14 prints for the same tree and filters.
    #[test]
    fn directory_filters_list_what_restic_lists() {
        let dir = ["/testdir", "/testdir/bar", "/testdir/sub"];
        assert_eq!(listed(&["/testdir"], false), dir);
        assert_eq!(listed(&["/testdir/"], false), dir);
        assert_eq!(listed(&["/testdir/bar"], false), ["/testdir/bar"]);
        assert_eq!(
            listed(&["/testdir/sub"], false),
            ["/testdir/sub", "/testdir/sub/x"]
        );
        assert_eq!(
            listed(&["/testdir"], true),
            ["/testdir", "/testdir/bar", "/testdir/sub", "/testdir/sub/x"]
        );
        assert_eq!(listed(&["/"], false), ["/testdir", "/testdir2"]);
    }
}
