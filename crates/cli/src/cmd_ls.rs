use clap::Args as ClapArgs;
use restash_engine::walk_tree;
use restash_format::{Node, NodeType};
use serde_json::json;

use crate::cmd_snapshots::FilterArgs;
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

/// Whether `path` is to be listed given the directory arguments (restic's semantics:
/// direct children, or all descendants with --recursive).
fn wanted(dirs: &[String], recursive: bool, path: &str) -> (bool, bool) {
    if dirs.is_empty() {
        return (true, true);
    }
    let mut list = false;
    let mut descend = false;
    for d in dirs {
        let d = d.trim_end_matches('/');
        let d = if d.starts_with('/') {
            d.to_string()
        } else {
            format!("/{d}")
        };
        if let Some(rest) = path.strip_prefix(&d) {
            if let Some(rest) = rest.strip_prefix('/') {
                list |= recursive || !rest.contains('/');
                descend |= recursive;
            } else if rest.is_empty() {
                descend = true;
            }
        } else if d.starts_with(&format!("{path}/")) {
            descend = true;
        }
    }
    (list, descend)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut repo = g.open()?;
    let (id, snap) = crate::snapsel::resolve(&repo, &a.snapshot, &a.filter.to_filter())?;
    repo.load_index()?;
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
    walk_tree(&repo, &snap.tree, b"", &mut |path, node| {
        let p = String::from_utf8_lossy(path).into_owned();
        let (list, descend) = wanted(&a.dirs, a.recursive, &p);
        if list {
            let line = if g.json {
                node_json(&p, node).to_string()
            } else if a.long {
                crate::display::node_long_line(&p, node)
            } else {
                p.clone()
            };
            writeln!(out, "{line}").map_err(|e| restash_engine::EngineError::Io {
                context: "write to stdout".into(),
                source: e,
            })?;
        }
        Ok(descend)
    })?;
    Ok(())
}
