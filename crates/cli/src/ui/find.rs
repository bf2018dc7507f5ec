//! How `find` prints what it found: restic's text, and its `--json`, streamed as one
//! array grouped by snapshot.

use std::io::Write;

use restash_engine::SnapshotEntry;
use restash_format::{write_go_string, BlobType, Id, Node};

use crate::display::{local_time, mode_string};

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
pub struct Output {
    json: bool,
    long: bool,
    verbose: bool,
    inuse: bool,
    cur: Option<SnapshotEntry>,
    old: Option<SnapshotEntry>,
    hits: usize,
    buf: String,
}

impl Output {
    /// Output in restic's `--json` or text form; `long` is `-l`, `verbose` not `-q`.
    pub fn new(json: bool, long: bool, verbose: bool) -> Self {
        Output {
            json,
            long,
            verbose,
            inuse: false,
            cur: None,
            old: None,
            hits: 0,
            buf: String::new(),
        }
    }

    /// The snapshot of the hits that follow; whether it is a new one.
    pub fn snapshot(&mut self, s: &SnapshotEntry) -> bool {
        if Self::same(self.cur.as_ref(), Some(s)) {
            return false;
        }
        self.cur = Some(s.clone());
        true
    }

    /// Text to print after everything else.
    pub fn push(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    fn same(a: Option<&SnapshotEntry>, b: Option<&SnapshotEntry>) -> bool {
        a.map(|s| s.0) == b.map(|s| s.0)
    }

    pub fn pattern(&mut self, path: &str, node: &Node) {
        if self.json {
            if !self.inuse {
                self.buf.push('[');
                self.inuse = true;
            }
            if !Self::same(self.cur.as_ref(), self.old.as_ref()) {
                if let Some(old) = &self.old {
                    self.buf.push_str(&format!(
                        "],\"hits\":{},\"snapshot\":\"{}\"}},",
                        self.hits, old.0
                    ));
                }
                self.buf.push_str("{\"matches\":[");
                self.old = self.cur.clone();
                self.hits = 0;
            }
            if self.hits > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&node_json(path, node));
            self.hits += 1;
            return;
        }
        if !Self::same(self.cur.as_ref(), self.old.as_ref()) {
            if self.old.is_some() && self.verbose {
                self.buf.push('\n');
            }
            self.old = self.cur.clone();
            if let (Some((id, sn)), true) = (&self.old, self.verbose) {
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

    pub fn object(&mut self, kind: &str, id: &str, path: &str, parent: Option<&Id>) {
        let Some((sid, sn)) = &self.cur else { return };
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

    pub fn finish(&mut self) {
        if !self.json {
            return;
        }
        if let Some(old) = &self.old {
            self.buf.push_str(&format!(
                "],\"hits\":{},\"snapshot\":\"{}\"}}",
                self.hits, old.0
            ));
        }
        self.buf.push_str(if self.inuse { "]\n" } else { "[]\n" });
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        out.flush()
    }
}

pub fn object_pack(repo: &restash_engine::Repository, id: &str, t: BlobType) -> String {
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
