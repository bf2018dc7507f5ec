use std::io::Write;

use clap::Args as ClapArgs;
use restash_engine::ls::{self, Listed, LsJob};
use restash_format::{Node, NodeType};
use serde_json::json;

use crate::args::FilterArgs;
use crate::display::{go_time_string, mode_string, snapshot_json};
use crate::global::GlobalOpts;
use crate::ui::Ui;

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

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let job = LsJob {
        snapshot: a.snapshot,
        filter: a.filter.to_filter(),
        dirs: a.dirs,
        recursive: a.recursive,
        lock: g.lock_policy(),
    };
    let mut repo = g.open()?;
    let ctl = Ui::new(g, "ls", false).control();
    let mut out = std::io::stdout().lock();
    ls::run(&mut repo, &job, &ctl, &mut |item| {
        let line = match item {
            Listed::Snapshot(id, snap) if g.json => {
                let mut v = snapshot_json(id, snap);
                v.as_object_mut()
                    .expect("object")
                    .insert("struct_type".into(), "snapshot".into());
                v.to_string()
            }
            Listed::Snapshot(id, snap) => format!(
                "snapshot {} of [{}] filtered by [{}] at {}):",
                id.short(),
                snap.paths.join(" "),
                job.dirs.join(" "),
                go_time_string(&snap.time)
            ),
            Listed::Node(p, node) if g.json => node_json(p, node).to_string(),
            Listed::Node(p, node) if a.long => crate::display::node_long_line(p, node),
            Listed::Node(p, _) => p.to_string(),
        };
        writeln!(out, "{line}")
    })?;
    Ok(())
}
