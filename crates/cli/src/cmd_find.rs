use std::io::Write;

use anyhow::bail;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
use clap::Args as ClapArgs;
use restash_engine::find::{FindHit, FindOptions, Finder};
use restash_engine::{RepoLock, SnapshotEntry};
use restash_format::{write_go_string, BlobType, GoTime, Id, Node};

use crate::cmd_snapshots::FilterArgs;
use crate::display::{local_time, mode_string};
use crate::global::GlobalOpts;
use crate::snapsel::filtered_snapshots;

/// `restash find`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Patterns (or ids with --blob, --tree, --pack).
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Oldest modification date/time.
    #[arg(short = 'O', long)]
    pub oldest: Option<String>,
    /// Newest modification date/time.
    #[arg(short = 'N', long)]
    pub newest: Option<String>,
    /// Snapshot id to search in (repeatable).
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Pattern is a blob id.
    #[arg(long)]
    pub blob: bool,
    /// Pattern is a tree id.
    #[arg(long)]
    pub tree: bool,
    /// Pattern is a pack id.
    #[arg(long)]
    pub pack: bool,
    /// Display the pack id the blobs belong to (with --blob or --tree).
    #[arg(long = "show-pack-id")]
    pub show_pack_id: bool,
    /// Ignore case for pattern.
    #[arg(short = 'i', long = "ignore-case")]
    pub ignore_case: bool,
    /// Long listing format showing size and mode.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// restic's `find` time formats, in the local zone unless the format has an offset.
fn parse_time(s: &str) -> anyhow::Result<GoTime> {
    let local = |n: NaiveDateTime| -> Option<GoTime> {
        Local
            .from_local_datetime(&n)
            .earliest()
            .map(|t| GoTime(t.fixed_offset()))
    };
    for f in ["%Y-%m-%d", "%d.%m.%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            if let Some(t) = d.and_hms_opt(0, 0, 0).and_then(local) {
                return Ok(t);
            }
        }
    }
    for f in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%d.%m.%Y %H:%M",
        "%d.%m.%Y %H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            if let Some(t) = local(n) {
                return Ok(t);
            }
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S %z", "%d.%m.%Y %H:%M:%S %z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Ok(GoTime(t));
        }
    }
    bail!("unable to parse time: {s:?}")
}

/// The node as restic's `find --json` prints it: path and permissions first, without
/// name, inode, extended attributes, device, content and subtree.
fn node_json(path: &str, n: &Node) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("{\"path\":");
    write_go_string(&mut s, path);
    s.push_str(",\"permissions\":");
    write_go_string(&mut s, &mode_string(n.mode));
    s.push_str(",\"type\":");
    write_go_string(&mut s, n.node_type.as_str());
    if n.mode != 0 {
        let _ = write!(s, ",\"mode\":{}", n.mode);
    }
    let _ = write!(
        s,
        ",\"mtime\":\"{}\",\"atime\":\"{}\",\"ctime\":\"{}\",\"uid\":{},\"gid\":{}",
        n.mtime, n.atime, n.ctime, n.uid, n.gid
    );
    for (k, v) in [("user", &n.user), ("group", &n.group)] {
        if !v.is_empty() {
            let _ = write!(s, ",\"{k}\":");
            write_go_string(&mut s, v);
        }
    }
    for (k, v) in [
        ("device_id", n.device_id),
        ("size", n.size),
        ("links", n.links),
    ] {
        if v != 0 {
            let _ = write!(s, ",\"{k}\":{v}");
        }
    }
    if !n.linktarget.is_empty() {
        s.push_str(",\"linktarget\":");
        write_go_string(&mut s, &n.linktarget);
    }
    if !n.error.is_empty() {
        s.push_str(",\"error\":");
        write_go_string(&mut s, &n.error);
    }
    s.push('}');
    s
}

/// restic's `statefulOutput`: JSON is streamed as one array grouped by snapshot.
struct Output<'a> {
    json: bool,
    long: bool,
    verbose: bool,
    inuse: bool,
    cur: Option<&'a SnapshotEntry>,
    old: Option<&'a SnapshotEntry>,
    hits: usize,
    buf: String,
}

impl<'a> Output<'a> {
    fn same(a: Option<&SnapshotEntry>, b: Option<&SnapshotEntry>) -> bool {
        a.map(|s| s.0) == b.map(|s| s.0)
    }

    fn pattern(&mut self, path: &str, node: &Node) {
        if self.json {
            if !self.inuse {
                self.buf.push('[');
                self.inuse = true;
            }
            if !Self::same(self.cur, self.old) {
                if let Some(old) = self.old {
                    self.buf.push_str(&format!(
                        "],\"hits\":{},\"snapshot\":\"{}\"}},",
                        self.hits, old.0
                    ));
                }
                self.buf.push_str("{\"matches\":[");
                self.old = self.cur;
                self.hits = 0;
            }
            if self.hits > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&node_json(path, node));
            self.hits += 1;
            return;
        }
        if !Self::same(self.cur, self.old) {
            if self.old.is_some() && self.verbose {
                self.buf.push('\n');
            }
            self.old = self.cur;
            if let (Some((id, sn)), true) = (self.old, self.verbose) {
                self.buf.push_str(&format!(
                    "Found matching entries in snapshot {} from {}\n",
                    id.short(),
                    local_time(&sn.time)
                ));
            }
        }
        let line = if self.long {
            crate::display::node_long_line(path, node)
        } else {
            path.to_string()
        };
        self.buf.push_str(&line);
        self.buf.push('\n');
    }

    fn object(&mut self, kind: &str, id: &str, path: &str, parent: Option<&Id>) {
        let Some((sid, sn)) = self.cur else { return };
        if self.json {
            if !self.inuse {
                self.buf.push('[');
                self.inuse = true;
            }
            if self.hits > 0 {
                self.buf.push(',');
            }
            let mut s = format!("{{\"object_type\":\"{kind}\",\"id\":\"{id}\",\"path\":");
            write_go_string(&mut s, path);
            if let Some(p) = parent {
                s.push_str(&format!(",\"parent_tree\":\"{p}\""));
            }
            s.push_str(&format!(
                ",\"snapshot\":\"{sid}\",\"time\":\"{}\"}}",
                sn.time
            ));
            self.buf.push_str(&s);
            self.hits += 1;
            return;
        }
        self.buf.push_str(&format!("Found {kind} {id}\n"));
        if kind == "blob" {
            self.buf.push_str(&format!(" ... in file {path}\n"));
            if let Some(p) = parent {
                self.buf.push_str(&format!("     (tree {p})\n"));
            }
        } else {
            self.buf.push_str(&format!(" ... path {path}\n"));
        }
        self.buf.push_str(&format!(
            " ... in snapshot {} ({})\n",
            sid.short(),
            local_time(&sn.time)
        ));
    }

    fn finish(&mut self) {
        if !self.json {
            return;
        }
        if let Some(old) = self.old {
            self.buf.push_str(&format!(
                "],\"hits\":{},\"snapshot\":\"{}\"}}",
                self.hits, old.0
            ));
        }
        self.buf.push_str(if self.inuse { "]\n" } else { "[]\n" });
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        out.flush()
    }
}

fn object_pack(repo: &restash_engine::Repository, id: &str, t: BlobType) -> String {
    let rid = match Id::parse(id) {
        Ok(r) => restash_format::BlobId(r),
        Err(e) => {
            // restic's `ParseID` messages.
            let why = if id.len() != 64 {
                "invalid length for hash".to_string()
            } else {
                e.to_string()
            };
            return format!(
                "Note: cannot find pack for object '{id}', unable to parse ID: {why}\n"
            );
        }
    };
    match repo.index().get(&rid, t) {
        None => format!("Object {} not found in the index\n", rid.short()),
        Some(loc) => {
            let pack = repo.index().pack_id(loc.pack);
            format!(
                "Object belongs to pack {pack}\n ... Pack {}: <Blob ({}) {}, offset {}, length {}, uncompressed length {}>\n",
                pack.short(),
                t.as_str(),
                rid.short(),
                loc.offset,
                loc.length,
                loc.uncompressed_length
            )
        }
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let mut patterns = a.patterns.clone();
    if a.ignore_case {
        for p in &mut patterns {
            *p = p.to_lowercase();
        }
    }
    let oldest = a.oldest.as_deref().map(parse_time).transpose()?;
    let newest = a.newest.as_deref().map(parse_time).transpose()?;
    if [a.blob, a.tree, a.pack].iter().filter(|b| **b).count() > 1 {
        bail!("cannot have several ID types");
    }
    let mut repo = g.open()?;
    let (lock, index) = repo.load_index_with(|repo| {
        (!g.no_lock)
            .then(|| RepoLock::acquire(repo, false, false))
            .transpose()
    });
    let _lock = lock?;
    index?;
    let opts = FindOptions {
        patterns,
        ignore_case: a.ignore_case,
        oldest,
        newest,
        blob: a.blob,
        tree: a.tree,
        pack: a.pack,
    };
    let (mut finder, from_index) = Finder::new(&repo, &opts)?;
    if !from_index.is_empty() {
        let list: Vec<String> = from_index.iter().map(|p| p.to_string()).collect();
        eprintln!(
            "some pack files are missing from the repository, getting their blobs from the repository index: [{}]\n",
            list.join(" ")
        );
    }
    let snaps = filtered_snapshots(&repo, &a.filter, &a.snapshots)?;
    let mut out = Output {
        json: g.json,
        long: a.long,
        verbose: !g.quiet,
        inuse: false,
        cur: None,
        old: None,
        hits: 0,
        buf: String::new(),
    };
    for entry in &snaps {
        out.cur = Some(entry);
        finder.search(&repo, &entry.1.tree, &mut |hit| match hit {
            FindHit::Node { path, node } => out.pattern(path, node),
            FindHit::Object {
                kind,
                id,
                path,
                parent_tree,
            } => out.object(kind, &id, path, parent_tree.as_ref().map(|t| &t.0)),
        })?;
        out.flush()?;
    }
    out.finish();
    if a.show_pack_id && finder.by_id() {
        for id in finder.blob_ids.iter().flatten() {
            out.buf.push_str(&object_pack(&repo, id, BlobType::Data));
        }
        for id in finder.tree_ids.iter().flatten() {
            out.buf.push_str(&object_pack(&repo, id, BlobType::Tree));
        }
    }
    out.flush()?;
    Ok(())
}
