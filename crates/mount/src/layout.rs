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

/// restic's default `--time-template`.
pub const DEFAULT_TIME_TEMPLATE: &str = "2006-01-02T15:04:05Z07:00";

// Go's layout elements (longest first where one is a prefix of another) and the chrono
// formats that print them; anything else in a layout is literal, as in Go.
const GO_ELEMENTS: [(&str, &str); 31] = [
    ("January", "%B"),
    ("Monday", "%A"),
    ("Z07:00", ""),
    ("-07:00", "%:z"),
    ("Z0700", ""),
    ("-0700", "%z"),
    ("Z07", ""),
    ("-07", "%:::z"),
    (".000000000", "%.9f"),
    (".000000", "%.6f"),
    (".000", "%.3f"),
    ("2006", "%Y"),
    ("Jan", "%b"),
    ("Mon", "%a"),
    ("MST", ""),
    ("002", "%j"),
    ("01", "%m"),
    ("02", "%d"),
    ("_2", "%e"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("PM", "%p"),
    ("pm", "%P"),
    ("1", "%-m"),
    ("2", "%-d"),
    ("3", "%-I"),
    ("4", "%-M"),
    ("5", "%-S"),
];

/// A snapshot's time formatted by a Go time layout, in the snapshot's own offset (Go keeps
/// the offset a time was parsed with). The default gives `2024-01-02T03:04:05Z`.
pub fn time_name(s: &Snapshot, layout: &str) -> String {
    let t = &s.time.0;
    let utc = t.offset().local_minus_utc() == 0;
    let mut out = String::new();
    let mut rest = layout;
    'scan: while !rest.is_empty() {
        for (go, fmt) in GO_ELEMENTS {
            let Some(after) = rest.strip_prefix(go) else {
                continue;
            };
            match go {
                "Z07:00" if utc => out.push('Z'),
                "Z07:00" => out.push_str(&t.format("%:z").to_string()),
                "Z0700" if utc => out.push('Z'),
                "Z0700" => out.push_str(&t.format("%z").to_string()),
                "Z07" if utc => out.push('Z'),
                "Z07" => out.push_str(&t.format("%:::z").to_string()),
                // Times decoded from JSON carry no zone name; Go then prints the offset.
                "MST" if utc => out.push_str("UTC"),
                "MST" => out.push_str(&t.format("%z").to_string()),
                _ => out.push_str(&t.format(fmt).to_string()),
            }
            rest = after;
            continue 'scan;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
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
fn paths_from(
    template: &str,
    time_template: &str,
    id: &SnapshotId,
    s: &Snapshot,
) -> (Vec<String>, String) {
    let time = time_name(s, time_template);
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
        // Duplicates go at the end (sort + dedup): a `contains` here would make a
        // directory of n snapshots cost n² comparisons at every rebuild.
        layout.entry(parent.clone()).or_default().names.push(name);
        child = parent;
    }
}

/// The layout of `snapshots` (sorted by time, then id, as restic sorts them): each
/// snapshot's index into the slice is what its entries name.
pub fn build(
    snapshots: &[(SnapshotId, Snapshot)],
    templates: &[String],
    time_template: &str,
) -> Layout {
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
            let (paths, suffix) = paths_from(t, time_template, id, s);
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
        e.names.dedup();
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
        let l = build(&snaps, &defaults(), DEFAULT_TIME_TEMPLATE);
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
        let l = build(&[], &defaults(), DEFAULT_TIME_TEMPLATE);
        assert_eq!(l[""].names, ["hosts", "ids", "snapshots", "tags"]);
        assert!(l["/tags"].names.is_empty());
    }

    #[test]
    fn go_time_layouts() {
        let (_, s) = snap("2024-03-09T07:05:03.123456789+02:00", "h", &[], 1);
        assert_eq!(
            time_name(&s, DEFAULT_TIME_TEMPLATE),
            "2024-03-09T07:05:03+02:00"
        );
        assert_eq!(time_name(&s, "2006-01-02_15-04-05"), "2024-03-09_07-05-03");
        assert_eq!(
            time_name(&s, "Mon Jan _2 03:04PM .000 -0700 MST"),
            "Sat Mar  9 07:05AM .123 +0200 +0200"
        );
        let (_, u) = snap("2024-03-09T17:05:03Z", "h", &[], 1);
        assert_eq!(time_name(&u, DEFAULT_TIME_TEMPLATE), "2024-03-09T17:05:03Z");
        assert_eq!(time_name(&u, "January 2, 06 MST"), "March 9, 24 UTC");
        assert_eq!(time_name(&u, "1/2 3:4:5 Z07"), "3/9 5:5:3 Z");
        assert_eq!(time_name(&s, "-07"), "+02");
    }
}
