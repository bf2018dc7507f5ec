//! restic's include/exclude patterns (`internal/filter`): a pattern is matched component by
//! component against a slash-separated path; a relative pattern may match at any depth,
//! `**` spans any number of components, and each component uses Go's `filepath.Match`.

use crate::{EngineError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    text: Vec<u8>,
    simple: bool,
}

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    original: String,
    parts: Vec<Part>,
    // restic's --iinclude/--iexclude: pattern and path are compared in lower case.
    insensitive: bool,
}

fn clean(path: &str) -> Vec<&str> {
    // filepath.Clean for our purpose: drop empty and "." components, keep a leading "".
    let mut out = Vec::new();
    if path.starts_with('/') {
        out.push("");
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." && out.len() > 1 {
            out.pop();
            continue;
        }
        out.push(c);
    }
    out
}

impl Pattern {
    /// Parses a pattern; a leading `/` anchors it at the root.
    pub fn parse(s: &str) -> Result<Pattern> {
        let s = s.trim_end_matches(['\r', '\n']);
        if s.is_empty() {
            return Err(EngineError::Usage("empty pattern".into()));
        }
        let parts: Vec<Part> = clean(s)
            .into_iter()
            .map(|p| Part {
                text: p.as_bytes().to_vec(),
                simple: !p.contains(['*', '?', '[', '\\']),
            })
            .collect();
        for p in &parts {
            if !p.simple && glob_match(&p.text, b"").is_err() {
                return Err(EngineError::Usage(format!("invalid pattern {s:?}")));
            }
        }
        Ok(Pattern {
            original: s.to_string(),
            parts,
            insensitive: false,
        })
    }

    /// Parses a pattern that ignores case, like restic's `--iexclude`.
    pub fn parse_insensitive(s: &str) -> Result<Pattern> {
        let mut p = Pattern::parse(&s.to_lowercase())?;
        p.insensitive = true;
        Ok(p)
    }

    fn fold<'a>(&self, path: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.insensitive {
            std::borrow::Cow::Owned(String::from_utf8_lossy(path).to_lowercase().into_bytes())
        } else {
            std::borrow::Cow::Borrowed(path)
        }
    }

    fn is_absolute(&self) -> bool {
        self.parts.first().map(|p| p.text.is_empty()) == Some(true)
    }

    fn double_wildcard(&self) -> Option<usize> {
        self.parts.iter().position(|p| p.text == b"**")
    }

    /// Whether the pattern matches `path` (components of an absolute path, first `""`).
    fn matches_parts(&self, parts: &[Part], strs: &[&[u8]]) -> bool {
        if let Some(pos) = parts.iter().position(|p| p.text == b"**") {
            let star = Part {
                text: b"*".to_vec(),
                simple: false,
            };
            let mut i = 0;
            while i + parts.len() <= strs.len() + 1 {
                let mut np: Vec<Part> = parts[..pos].to_vec();
                np.extend(std::iter::repeat_n(star.clone(), i));
                np.extend_from_slice(&parts[pos + 1..]);
                if self.matches_parts(&np, strs) {
                    return true;
                }
                i += 1;
            }
            return false;
        }
        if parts.is_empty() || strs.is_empty() || parts.len() > strs.len() {
            return false;
        }
        let absolute = parts[0].text.is_empty();
        let max_offset = if absolute {
            0
        } else {
            strs.len() - parts.len()
        };
        'outer: for offset in (0..=max_offset).rev() {
            for (i, p) in parts.iter().enumerate().rev() {
                let s = strs[offset + i];
                let ok = if p.simple {
                    p.text == s
                } else {
                    glob_match(&p.text, s).unwrap_or(false)
                };
                if !ok {
                    continue 'outer;
                }
            }
            return true;
        }
        false
    }

    /// Whether the pattern matches the slash-separated `path`.
    pub fn matches(&self, path: &[u8]) -> bool {
        let path = self.fold(path);
        let strs = split(&path);
        self.matches_parts(&self.parts, &strs)
    }

    /// Whether some path below `path` could still match (for descending into directories
    /// while restoring with `--include`).
    pub fn child_may_match(&self, path: &[u8]) -> bool {
        if !self.is_absolute() {
            return true;
        }
        let path = self.fold(path);
        let mut strs = split(&path);
        if let Some(pos) = self.double_wildcard() {
            if strs.len() >= pos {
                strs.truncate(pos);
            }
        }
        let l = strs.len().min(self.parts.len());
        self.matches_parts(&self.parts[..l], &strs)
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

fn split(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    if path.first() == Some(&b'/') {
        out.push(b"");
    }
    out.extend(
        path.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b"."),
    );
    out
}

/// A list of patterns; matches when any pattern does.
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// Parses every pattern.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<PatternSet> {
        Ok(PatternSet {
            patterns: patterns
                .iter()
                .map(|p| Pattern::parse(p.as_ref()))
                .collect::<Result<_>>()?,
        })
    }

    /// Adds case-insensitive patterns (restic's `--iinclude`/`--iexclude`).
    pub fn add_insensitive<S: AsRef<str>>(&mut self, patterns: &[S]) -> Result<()> {
        for p in patterns {
            self.patterns.push(Pattern::parse_insensitive(p.as_ref())?);
        }
        Ok(())
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Any pattern matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches(path))
    }

    /// Any pattern could match below `path`.
    pub fn child_may_match(&self, path: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.child_may_match(path))
    }
}

/// Go's `filepath.Match` for one path component. `Err` for a malformed pattern.
fn glob_match(pat: &[u8], name: &[u8]) -> std::result::Result<bool, ()> {
    let (mut p, mut n) = (0usize, 0usize);
    // Backtracking point for the last '*': (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                b'?' if n < name.len() => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' if n < name.len() => {
                    let (matched, next) = class_match(pat, p, name[n])?;
                    if matched {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
                b'\\' => {
                    let c = *pat.get(p + 1).ok_or(())?;
                    if n < name.len() && name[n] == c {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                c if c != b'?' && c != b'[' && n < name.len() && name[n] == c => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    class_match(pat, p, 0)?;
                }
                _ => {}
            }
        } else if n == name.len() {
            return Ok(true);
        }
        match star {
            Some((sp, sn)) if sn < name.len() => {
                star = Some((sp, sn + 1));
                p = sp;
                n = sn + 1;
            }
            _ => {
                // Validate the rest of the pattern like Go does before reporting no match.
                let mut q = p;
                while q < pat.len() {
                    match pat[q] {
                        b'[' => q = class_match(pat, q, 0)?.1,
                        b'\\' => q += 2,
                        _ => q += 1,
                    }
                }
                if q > pat.len() {
                    return Err(());
                }
                return Ok(false);
            }
        }
    }
}

/// Matches `c` against the class starting at `pat[start] == b'['`; returns the match and
/// the index after the closing `]`.
fn class_match(pat: &[u8], start: usize, c: u8) -> std::result::Result<(bool, usize), ()> {
    let mut i = start + 1;
    let negate = pat.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i).ok_or(())?;
        if lo == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if lo == b'\\' {
            i += 1;
            *pat.get(i).ok_or(())?
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if pat.get(i) == Some(&b'-') && pat.get(i + 1).is_some_and(|b| *b != b']') {
            i += 1;
            hi = pat[i];
            if hi == b'\\' {
                i += 1;
                hi = *pat.get(i).ok_or(())?;
            }
            i += 1;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Ok((matched != negate, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::parse(p).unwrap().matches(s.as_bytes())
    }

    #[test]
    fn restic_filter_cases() {
        // From restic's internal/filter tests.
        assert!(m("*.go", "/foo/bar/test.go"));
        assert!(!m("*.c", "/foo/bar/test.go"));
        assert!(m("foo", "/foo/bar/test.go"));
        assert!(m("bar", "/foo/bar/test.go"));
        assert!(m("/foo", "/foo/bar/test.go"));
        assert!(!m("/bar", "/foo/bar/test.go"));
        assert!(m("/foo/bar", "/foo/bar/test.go"));
        assert!(m("foo/**/test.go", "/foo/bar/test.go"));
        assert!(m("foo/**/test.go", "/foo/test.go"));
        assert!(m("**/test.go", "/foo/bar/baz/test.go"));
        assert!(!m("/foo/**/test.go", "/bar/foo/test.go"));
        assert!(m("b*/t?st.go", "/foo/bar/test.go"));
        assert!(m("[a-c]ar", "/foo/bar"));
        assert!(!m("[^a-c]ar", "/foo/bar"));
        assert!(m("te\\st.go", "/test.go"));
        assert!(Pattern::parse("[").is_err());
        assert!(Pattern::parse_insensitive("*.TXT")
            .unwrap()
            .matches(b"/A/b.Txt"));
        assert!(!m("*.TXT", "/A/b.Txt"));
    }

    #[test]
    fn child_matching() {
        let p = Pattern::parse("/foo/bar/*.txt").unwrap();
        assert!(p.child_may_match(b"/foo"));
        assert!(p.child_may_match(b"/foo/bar"));
        assert!(!p.child_may_match(b"/baz"));
        assert!(Pattern::parse("x").unwrap().child_may_match(b"/anything"));
    }
}
