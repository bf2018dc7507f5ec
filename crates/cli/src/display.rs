//! How restic prints things: Go FileMode strings, local times, snapshot JSON.

use restash_format::{GoTime, Node, NodeType, Snapshot, SnapshotId};

pub use restash_format::go_mode_string as mode_string;

/// restic's `formatNode` long form, shared by `ls -l` and `find -l`: mode (with the node
/// type's bits), uid, gid, size, local mtime, path, and `-> target` for symlinks.
pub fn node_long_line(path: &str, n: &Node) -> String {
    let mut s = format!(
        "{} {:5} {:5} {:6} {} {}",
        mode_string(n.mode_with_type()),
        n.uid,
        n.gid,
        n.size,
        local_time(&n.mtime),
        path
    );
    if n.node_type == NodeType::Symlink {
        s.push_str(" -> ");
        s.push_str(&String::from_utf8_lossy(&n.link_target_bytes()));
    }
    s
}

/// `2006-01-02 15:04:05` in the local time zone, as restic's tables show times.
pub fn local_time(t: &GoTime) -> String {
    t.0.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Go's `time.Time.String()` for a time decoded from JSON: `… +0100 +0100`, or
/// `… +0000 UTC` for `Z`.
pub fn go_time_string(t: &GoTime) -> String {
    t.to_go_text()
}

/// A snapshot as restic 0.14 prints it: without restic 0.17's `program_version` and
/// `summary`, which it reads past. The file keeps them; only what is shown matches.
pub fn restic_014_view(s: &Snapshot) -> Snapshot {
    Snapshot {
        program_version: None,
        summary: None,
        ..s.clone()
    }
}

/// A snapshot as `restic snapshots --json` prints it: its fields plus `id` and `short_id`.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(restic_014_view(s)).expect("snapshot serializes");
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), id.to_string().into());
        obj.insert("short_id".into(), id.short().into());
    }
    v
}

/// restic's text table (`internal/ui/table`): each column as wide as its widest line (in
/// bytes, as Go's `len`), cells two spaces apart, a cell's lines one below the other,
/// trailing spaces trimmed, a rule of dashes under the header and after the rows.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// An empty line between rows (restic's snapshot list when a row spans lines).
    pub blank_between_rows: bool,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            blank_between_rows: false,
        }
    }

    /// Adds a row; a cell may hold several lines.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as restic prints it, every line ending in a newline.
    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = cell.split('\n').map(str::len).fold(*w, usize::max);
            }
        }
        let total = width.iter().sum::<usize>() + 2 * width.len().saturating_sub(1);
        let rule = "-".repeat(total);
        let mut out = String::new();
        self.push_row(&mut out, &self.header, &width);
        out.push_str(&rule);
        out.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            if self.blank_between_rows && i > 0 {
                out.push('\n');
            }
            self.push_row(&mut out, row, &width);
        }
        out.push_str(&rule);
        out.push('\n');
        out
    }

    fn push_row(&self, out: &mut String, cells: &[String], width: &[usize]) {
        let lines: Vec<Vec<&str>> = cells.iter().map(|c| c.split('\n').collect()).collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..height {
            let mut s = String::new();
            for (i, cell) in lines.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let v = cell.get(k).copied().unwrap_or("");
                s.push_str(v);
                s.push_str(&" ".repeat(width[i].saturating_sub(v.len())));
            }
            out.push_str(s.trim_end_matches(' '));
            out.push('\n');
        }
    }
}

/// restic's `PrintSnapshots` table: oldest first, multi-line cells, a blank line between
/// rows when some snapshot has several paths.
pub fn print_snapshots(
    list: &[restash_engine::SnapshotEntry],
    reasons: Option<&[restash_engine::forget::KeepReason]>,
    compact: bool,
) {
    let reasons = reasons.filter(|r| !r.is_empty());
    let mut rows: Vec<(&restash_engine::SnapshotEntry, usize)> = list.iter().zip(0..).collect();
    rows.sort_by_key(|r| r.0 .1.time.0);
    let mut header: Vec<&str> = vec!["ID", "Time"];
    if compact {
        header.extend(["Host", "Tags  "]);
    } else {
        header.extend(["Host      ", "Tags      "]);
        if reasons.is_some() {
            header.push("Reasons");
        }
        header.push("Paths");
    }
    let mut multiline = false;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|((id, s), i)| {
            let mut c = vec![id.short(), local_time(&s.time), s.hostname.clone()];
            if compact {
                c.push(s.tags.join("\n"));
            } else {
                c.push(s.tags.join(","));
                if let Some(r) = reasons {
                    c.push(r[*i].matches.join("\n"));
                }
                c.push(s.paths.join("\n"));
                multiline |= s.paths.len() > 1;
            }
            c
        })
        .collect();
    let mut table = Table::new(&header);
    table.blank_between_rows = multiline;
    for row in cells {
        table.row(row);
    }
    print!("{}", table.render());
    println!("{} snapshots", rows.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mode_strings() {
        assert_eq!(mode_string(420), "-rw-r--r--");
        assert_eq!(mode_string(2147484141), "drwxr-xr-x");
        assert_eq!(mode_string(134218239), "Lrwxrwxrwx");
        assert_eq!(mode_string(8389101), "urwxr-xr-x");
        assert_eq!(mode_string(69206436), "Dcrw-r--r--");
        assert_eq!(mode_string(2148532735), "dtrwxrwxrwx");
    }

    #[test]
    fn go_time_strings() {
        let t = GoTime::parse("2015-11-10T22:11:48.975774597+01:00").unwrap();
        assert_eq!(
            go_time_string(&t),
            "2015-11-10 22:11:48.975774597 +0100 +0100"
        );
        let t = GoTime::parse("2015-11-10T22:11:48Z").unwrap();
        assert_eq!(go_time_string(&t), "2015-11-10 22:11:48 +0000 UTC");
    }
}
