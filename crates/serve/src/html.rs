//! The pages, rendered on the server: plain HTML that works without scripts (the one
//! script only sorts and filters the volumes table) and fits a phone's screen.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use restash_format::{GoTime, Node, NodeType, SnapshotId};

use crate::model::{Totals, Volume};

/// Characters escaped in one path segment of a URL.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'\'');

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One URL path segment for raw name bytes (names need not be UTF-8).
pub fn seg(name: &[u8]) -> String {
    percent_encoding::percent_encode(name, SEGMENT).to_string()
}

fn seg_str(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A time as the pages show it: restic's table format, in the zone it was recorded in
/// (a pod's clock says UTC; the snapshot says where the backup ran).
pub fn time(t: &GoTime) -> String {
    t.0.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Sizes as restic prints them (1024-based, two decimals).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// An age in its two largest units: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn page(title: &str, crumbs: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · restash</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"/assets/style.css\">\
<script src=\"/assets/app.js\" defer></script></head>\
<body><header><a class=\"brand\" href=\"/\">restash</a><nav>{crumbs}</nav></header>\
<main>{body}</main></body></html>\n",
        t = esc(title),
    )
}

// A line of the sizes over time, scaled to its own range: the shape matters, not the
// numbers (which the row shows).
fn sparkline(series: &[(i64, u64)]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let pts: Vec<(i64, u64)> = series.iter().rev().take(60).rev().copied().collect();
    if pts.is_empty() {
        return String::new();
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let lo = pts.iter().map(|p| p.1).min().unwrap_or(0);
    let hi = pts.iter().map(|p| p.1).max().unwrap_or(0);
    let x = |t: i64| {
        if t1 > t0 {
            (t - t0) as f64 / (t1 - t0) as f64 * (W - 4.0) + 2.0
        } else {
            W / 2.0
        }
    };
    let y = |b: u64| {
        if hi > lo {
            H - 2.0 - (b - lo) as f64 / (hi - lo) as f64 * (H - 4.0)
        } else {
            H / 2.0
        }
    };
    let mut line = String::new();
    for (t, b) in &pts {
        let _ = write!(line, "{:.1},{:.1} ", x(*t), y(*b));
    }
    let (lt, lb) = pts[pts.len() - 1];
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
role=\"img\" aria-label=\"size over time\"><polyline points=\"{}\"/>\
<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/></svg>",
        line.trim_end(),
        x(lt),
        y(lb)
    )
}

/// The volumes page: one row per host.
pub fn volumes(vols: &[Volume], stale_after_text: &str, warnings: &[String]) -> String {
    let stale = vols.iter().filter(|v| v.stale).count();
    let partial = vols.iter().filter(|v| v.partial).count();
    let mut b = String::new();
    let _ = write!(
        b,
        "<section class=\"summary\"><h1>Volumes</h1><p><span id=\"count\">{}</span> volumes · \
<span class=\"flag stale\">{stale} stale</span> (no backup for {}) · \
<span class=\"flag partial\">{partial} partial</span></p>\
<input id=\"filter\" type=\"search\" placeholder=\"Filter by host or tag\" \
aria-label=\"Filter by host or tag\" autocomplete=\"off\"></section>",
        vols.len(),
        esc(stale_after_text),
    );
    for w in warnings {
        let _ = write!(b, "<p class=\"warning\">{}</p>", esc(w));
    }
    b.push_str(
        "<div class=\"scroll\"><table id=\"volumes\"><thead><tr>\
<th data-sort=\"host\">Host</th><th data-sort=\"last\">Last backup</th>\
<th data-sort=\"age\">Age</th><th data-sort=\"count\" class=\"num\">Snapshots</th>\
<th data-sort=\"files\" class=\"num\">Files</th><th data-sort=\"bytes\" class=\"num\">Size</th>\
<th>Size over time</th><th data-sort=\"flags\">Flags</th></tr></thead><tbody>",
    );
    for v in vols {
        let mut class = vec!["volume"];
        let mut flags = Vec::new();
        if v.stale {
            class.push("stale");
            flags.push("stale");
        }
        if v.partial {
            class.push("partial");
            flags.push("partial");
        }
        let (files, size, ftitle) = match &v.totals {
            Ok(Totals { files, bytes: n }) => (files.to_string(), bytes(*n), String::new()),
            Err(e) => ("?".into(), "?".into(), esc(e)),
        };
        let (fsort, bsort) = match &v.totals {
            Ok(t) => (t.files as i128, t.bytes as i128),
            Err(_) => (-1, -1),
        };
        let _ = write!(
            b,
            "<tr class=\"{cls}\" data-host=\"{host}\" data-tags=\"{tags}\" data-last=\"{last}\" \
data-age-seconds=\"{age}\" data-count=\"{count}\" data-files=\"{fsort}\" data-bytes=\"{bsort}\" \
data-flags=\"{flagtext}\">\
<td class=\"host\"><a href=\"/hosts/{hseg}\">{host}</a>{taglist}</td>\
<td class=\"last\"><a href=\"/snapshots/{id}/tree/\" title=\"snapshot {short}\">{lasttext}</a></td>\
<td class=\"age\">{agetext}</td><td class=\"count num\">{count}</td>\
<td class=\"files num\" title=\"{ftitle}\">{files}</td><td class=\"bytes num\" title=\"{ftitle}\">{size}</td>\
<td class=\"trend\">{spark}</td><td class=\"flags\">{flagspans}</td></tr>",
            cls = class.join(" "),
            host = esc(&v.host),
            hseg = seg_str(&v.host),
            tags = esc(&v.tags.join(" ")),
            taglist = {
                // The partial tag is the flag already; the other tags are shown as given.
                let shown: Vec<&str> = v
                    .tags
                    .iter()
                    .map(String::as_str)
                    .filter(|t| *t != restash_engine::PARTIAL_TAG)
                    .collect();
                match shown.is_empty() {
                    true => String::new(),
                    false => format!("<span class=\"tags\">{}</span>", esc(&shown.join(", "))),
                }
            },
            last = v.last_time.unix_secs(),
            age = v.age_secs,
            count = v.count,
            flagtext = flags.join(" "),
            id = v.last_id,
            short = v.last_id.short(),
            lasttext = esc(&time(&v.last_time)),
            agetext = age(v.age_secs),
            spark = sparkline(&v.series),
            flagspans = flags
                .iter()
                .map(|f| format!("<span class=\"flag {f}\">{f}</span>"))
                .collect::<String>(),
        );
    }
    b.push_str("</tbody></table></div>");
    if vols.is_empty() {
        b.push_str("<p class=\"empty\">This repository has no snapshots yet.</p>");
    }
    page("Volumes", "", &b)
}

/// One snapshot as a host page lists it.
pub struct SnapshotRow {
    /// Its id.
    pub id: SnapshotId,
    /// Its time as restic prints it.
    pub time: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its paths.
    pub paths: Vec<String>,
    /// Files and bytes, when known.
    pub totals: Option<Totals>,
}

/// A host's snapshots, newest first.
pub fn host(host: &str, rows: &[SnapshotRow]) -> String {
    let mut b = format!(
        "<h1>{}</h1><div class=\"scroll\"><table id=\"snapshots\"><thead><tr><th>Time</th>\
<th>ID</th><th>Tags</th><th>Paths</th><th class=\"num\">Files</th><th class=\"num\">Size</th>\
</tr></thead><tbody>",
        esc(host)
    );
    for r in rows {
        let (files, size) = match r.totals {
            Some(t) => (t.files.to_string(), bytes(t.bytes)),
            None => ("?".into(), "?".into()),
        };
        let _ = write!(
            b,
            "<tr class=\"snapshot\" data-id=\"{id}\"><td><a class=\"browse\" \
href=\"/snapshots/{id}/tree/\">{time}</a></td><td><code>{short}</code></td><td>{tags}</td>\
<td>{paths}</td><td class=\"num\">{files}</td><td class=\"num\">{size}</td></tr>",
            id = r.id,
            short = r.id.short(),
            time = esc(&r.time),
            tags = esc(&r.tags.join(", ")),
            paths = esc(&r.paths.join(", ")),
        );
    }
    b.push_str("</tbody></table></div>");
    let crumbs = format!("<a href=\"/hosts/{}\">{}</a>", seg_str(host), esc(host));
    page(host, &crumbs, &b)
}

fn kind(t: &NodeType) -> &'static str {
    match t {
        NodeType::Dir => "dir",
        NodeType::File => "file",
        NodeType::Symlink => "symlink",
        _ => "other",
    }
}

/// A directory of a snapshot. `path` is the list of raw name components from the root.
pub fn tree(host: &str, id: &SnapshotId, time: &str, path: &[Vec<u8>], nodes: &[Node]) -> String {
    let base = format!("/snapshots/{id}");
    let rel: String = path.iter().map(|c| format!("{}/", seg(c))).collect();
    let mut crumbs = format!(
        "<a href=\"/hosts/{}\">{}</a> / <a href=\"{base}/tree/\">{}</a>",
        seg_str(host),
        esc(host),
        esc(time)
    );
    let mut so_far = String::new();
    for c in path {
        so_far.push_str(&seg(c));
        so_far.push('/');
        let _ = write!(
            crumbs,
            " / <a href=\"{base}/tree/{so_far}\">{}</a>",
            esc(&String::from_utf8_lossy(c))
        );
    }
    let dir_name = path
        .last()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_else(|| "/".into());
    let mut b = format!(
        "<h1>{}</h1><p class=\"actions\">Download this folder: \
<a id=\"download-tar\" href=\"{base}/archive/{rel}?format=tar.gz\" download>.tar.gz</a> \
<a id=\"download-zip\" href=\"{base}/archive/{rel}?format=zip\" download>.zip</a></p>\
<div class=\"scroll\"><table id=\"entries\"><thead><tr><th>Name</th><th class=\"num\">Size</th>\
<th>Modified</th><th>Mode</th><th></th></tr></thead><tbody>",
        esc(&dir_name)
    );
    for n in nodes {
        let name = String::from_utf8_lossy(&n.name);
        let link = format!("{rel}{}", seg(&n.name));
        let (cell, action) = match n.node_type {
            NodeType::Dir => (
                format!(
                    "<a class=\"open\" href=\"{base}/tree/{link}/\">{}/</a>",
                    esc(&name)
                ),
                String::new(),
            ),
            NodeType::File => (
                esc(&name),
                format!("<a class=\"download\" href=\"{base}/file/{link}\" download>download</a>"),
            ),
            NodeType::Symlink => (
                format!(
                    "{} → {}",
                    esc(&name),
                    esc(&String::from_utf8_lossy(&n.link_target_bytes()))
                ),
                String::new(),
            ),
            _ => (esc(&name), String::new()),
        };
        let size = match n.node_type {
            NodeType::File => bytes(n.size),
            _ => String::new(),
        };
        let _ = write!(
            b,
            "<tr class=\"entry\" data-name=\"{ename}\" data-type=\"{kind}\" data-size=\"{raw}\">\
<td class=\"name\">{cell}</td><td class=\"num\">{size}</td><td>{mtime}</td>\
<td><code>{mode}</code></td><td>{action}</td></tr>",
            ename = esc(&name),
            kind = kind(&n.node_type),
            raw = n.size,
            mtime = esc(&n.mtime.0.format("%Y-%m-%d %H:%M").to_string()),
            mode = esc(&restash_format::go_mode_string(n.mode_with_type())),
        );
    }
    b.push_str("</tbody></table></div>");
    if nodes.is_empty() {
        b.push_str("<p class=\"empty\">This folder is empty.</p>");
    }
    page(&dir_name, &crumbs, &b)
}

/// A page for an error, with its status already chosen by the caller.
pub fn error(title: &str, message: &str) -> String {
    page(
        title,
        "",
        &format!(
            "<h1>{}</h1><p class=\"warning\">{}</p>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_sizes_and_escapes() {
        assert_eq!(age(42), "42 s");
        assert_eq!(age(12 * 60 + 5), "12 min");
        assert_eq!(age(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(age(2 * 86_400 + 4 * 3600 + 59), "2 d 4 h");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(3 << 30), "3.00 GiB");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(seg(b"a b/c?\xff"), "a%20b%2Fc%3F%FF");
        assert_eq!(seg(b"a&amp;b"), "a%26amp;b");
    }

    #[test]
    fn sparkline_scales_to_its_box() {
        assert_eq!(sparkline(&[]), "");
        let one = sparkline(&[(10, 5)]);
        assert!(one.contains("points=\"60.0,12.0\""), "{one}");
        let two = sparkline(&[(0, 0), (10, 100)]);
        assert!(two.contains("points=\"2.0,22.0 118.0,2.0\""), "{two}");
    }
}
