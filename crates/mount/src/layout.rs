//! The directories above the snapshots (`snapshots/`, `hosts/<host>/`, `tags/<tag>/`,
//! `ids/`), built from path templates exactly as restic 0.14's `SnapshotsDirStructure`
//! builds them, so names, `-N` suffixes of duplicates and `latest` links agree.

use std::collections::BTreeMap;

use restash_format::{Snapshot, SnapshotId};

/// restic's default `--path-template`s.
pub const DEFAULT_TEMPLATES: [&str; 4] = ["ids/%i", "snapshots/%T", "hosts/%h/%T", "tags/%t/%T"];

/// One path of the layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaEntry {
    /// A snapshot's root (or, with `link`, the snapshot a `latest` link names).
    pub snapshot: Option<usize>,
    /// The target of a `latest` link.
    pub link: Option<String>,
    /// Children of a pure directory.
    pub names: Vec<String>,
}

/// Every path of the layout: `""` is the root, others start with `/`.
pub type Layout = BTreeMap<String, MetaEntry>;

/// restic's time template `2006-01-02T15:04:05Z07:00`, in the snapshot's own offset (Go
/// keeps the offset a time was parsed with).
pub fn time_name(s: &Snapshot) -> String {
    let t = &s.time.0;
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if t.offset().local_minus_utc() == 0 {
        base + "Z"
    } else {
        base + &t.format("%:z").to_string()
    }
}

// Tags that cannot be file names; restic applies this only when a snapshot has several
// tags (one tag is used as it is).
fn filename_from_tag(tag: &str) -> String {
    match tag {
        "" | "." => "_".into(),
        ".." => "__".into(),
        t => t.replace('/', "_"),
    }
}

// The paths `template` gives `s`, and the time suffix when it ends with `%T`.
fn paths_from(template: &str, id: &SnapshotId, s: &Snapshot) -> (Vec<String>, String) {
    let time = time_name(s);
    let mut in_verb = false;
    let mut write_time = false;
    let mut out = vec![String::new()];
    for c in template.chars() {
        if write_time {
            out.iter_mut().for_each(|o| o.push_str(&time));
            write_time = false;
        }
        if !in_verb {
            if c == '%' {
                in_verb = true;
            } else {
                out.iter_mut().for_each(|o| o.push(c));
            }
            continue;
        }
        in_verb = false;
        let repl = match c {
            'T' => {
                write_time = true;
                continue;
            }
            't' if s.tags.is_empty() => return (Vec::new(), String::new()),
            't' if s.tags.len() > 1 => {
                let mut next = Vec::with_capacity(out.len() * s.tags.len());
                for tag in &s.tags {
                    let tag = filename_from_tag(tag);
                    next.extend(out.iter().map(|o| format!("{o}{tag}")));
                }
                out = next;
                continue;
            }
            't' => s.tags[0].clone(),
            'i' => id.short(),
            'I' => id.to_string(),
            'u' => s.username.clone(),
            'h' => s.hostname.clone(),
            other => other.to_string(),
        };
        out.iter_mut().for_each(|o| o.push_str(&repl));
    }
    (out, if write_time { time } else { String::new() })
}

// The directory part of a template before its first variable: it exists even when no
// snapshot fills it.
fn static_prefix(template: &str) -> &str {
    let mut in_verb = false;
    let mut start = None;
    for (i, c) in template.char_indices() {
        if !in_verb {
            in_verb = c == '%';
            continue;
        }
        in_verb = false;
        if "iIuhtT".contains(c) {
            start = Some(i);
            break;
        }
    }
    let Some(start) = start else { return "" };
    match template[..start].rfind('/') {
        Some(i) => &template[..i],
        None => "",
    }
}

// Go's path.Clean for the absolute paths built here.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn mount(layout: &mut Layout, path: &str, snapshot: Option<usize>, link: Option<String>) {
    let e = layout.entry(path.to_string()).or_default();
    if snapshot.is_some() {
        e.snapshot = snapshot;
        e.link = link;
    }
    let mut child = path.to_string();
    while let Some(i) = child.rfind('/') {
        let (parent, name) = (child[..i].to_string(), child[i + 1..].to_string());
        let p = layout.entry(parent.clone()).or_default();
        if !p.names.contains(&name) {
            p.names.push(name);
        }
        child = parent;
    }
}

/// The layout of `snapshots` (sorted by time, then id, as restic sorts them): each
/// snapshot's index into the slice is what its entries name.
pub fn build(snapshots: &[(SnapshotId, Snapshot)], templates: &[String]) -> Layout {
    let mut layout = Layout::new();
    mount(&mut layout, "", None, None);
    for t in templates {
        let p = static_prefix(t);
        if !p.is_empty() {
            mount(&mut layout, &clean(&format!("/{p}")), None, None);
        }
    }
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for (n, (id, s)) in snapshots.iter().enumerate() {
        for t in templates {
            let (paths, suffix) = paths_from(t, id, s);
            for p in paths {
                let p = if p.is_empty() { p } else { format!("/{p}") };
                let mut unique = suffix.clone();
                let mut i = 1;
                while layout.contains_key(&format!("{p}{unique}")) {
                    unique = format!("{suffix}-{i}");
                    i += 1;
                }
                mount(&mut layout, &clean(&format!("{p}{unique}")), Some(n), None);
                if !suffix.is_empty() {
                    let newer = latest
                        .get(&p)
                        .is_none_or(|&l| snapshots[l].1.time.0 <= s.time.0);
                    if newer {
                        let link = clean(&format!("{p}/latest"));
                        mount(&mut layout, &link, Some(n), Some(unique));
                        latest.insert(p, n);
                    }
                }
            }
        }
    }
    for e in layout.values_mut() {
        e.names.sort();
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use restash_format::GoTime;

    fn snap(time: &str, host: &str, tags: &[&str], id: u8) -> (SnapshotId, Snapshot) {
        let mut s: Snapshot = Snapshot::from_json(
            format!(
                r#"{{"time":"{time}","tree":"{}","paths":["/x"],"hostname":"{host}"}}"#,
                "00".repeat(32)
            )
            .as_bytes(),
        )
        .expect("snapshot");
        s.time = GoTime::parse(time).expect("time");
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        let id: SnapshotId = format!("{:0<64}", format!("{id:02x}")).parse().expect("id");
        (id, s)
    }

    fn defaults() -> Vec<String> {
        DEFAULT_TEMPLATES.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn layout_matches_restic() {
        let snaps = vec![
            snap("2024-01-02T03:04:05Z", "h1", &["a", "x/y"], 1),
            snap("2024-01-02T03:04:05Z", "h1", &["a"], 2),
            snap("2024-01-03T00:00:00+02:00", "h2", &[], 3),
        ];
        let l = build(&snaps, &defaults());
        assert_eq!(l[""].names, ["hosts", "ids", "snapshots", "tags"]);
        assert_eq!(
            l["/snapshots"].names,
            [
                "2024-01-02T03:04:05Z",
                "2024-01-02T03:04:05Z-1",
                "2024-01-03T00:00:00+02:00",
                "latest"
            ]
        );
        assert_eq!(
            l["/snapshots/latest"].link.as_deref(),
            Some("2024-01-03T00:00:00+02:00")
        );
        assert_eq!(l["/snapshots/2024-01-02T03:04:05Z-1"].snapshot, Some(1));
        assert_eq!(l["/hosts"].names, ["h1", "h2"]);
        assert_eq!(
            l["/hosts/h1/latest"].link.as_deref(),
            Some("2024-01-02T03:04:05Z-1")
        );
        // Several tags are made file names; one tag is taken as it is.
        assert_eq!(l["/tags"].names, ["a", "x_y"]);
        assert_eq!(l["/ids"].names, ["01000000", "02000000", "03000000"]);
        assert!(l["/ids/01000000"].link.is_none());
        assert!(!l.contains_key("/ids/latest"));
    }

    #[test]
    fn empty_repository_has_the_top_directories() {
        let l = build(&[], &defaults());
        assert_eq!(l[""].names, ["hosts", "ids", "snapshots", "tags"]);
        assert!(l["/tags"].names.is_empty());
    }
}
