//! Where a backup's targets, exclude patterns and chunker come from when a person names
//! them: restic's `--files-from*` and `--exclude-file` lists, and the `--chunker` spec.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use restash_chunker::{ChunkerParams, FastCdcParams};

use crate::{EngineError, Result};

/// Lists of targets, in the three forms restic reads.
#[derive(Debug, Clone, Default)]
pub struct TargetLists {
    /// `--files-from`: one per line, trimmed, `#` comments, glob patterns expanded.
    pub patterns: Vec<PathBuf>,
    /// `--files-from-verbatim`: one per line, taken literally.
    pub verbatim: Vec<PathBuf>,
    /// `--files-from-raw`: NUL-separated.
    pub raw: Vec<PathBuf>,
}

/// The lines of a list file; with `comments`, lines are trimmed and blank and `#` lines
/// dropped (restic's `--exclude-file` and `--files-from`), otherwise only empty lines.
pub fn read_lines(path: &Path, comments: bool) -> Result<Vec<String>> {
    let open = || format!("open {}", path.display());
    let f = std::fs::File::open(path).map_err(EngineError::io(open()))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(EngineError::io(format!("read {}", path.display())))?;
        let t = if comments { line.trim() } else { line.as_str() };
        if t.is_empty() || (comments && t.starts_with('#')) {
            continue;
        }
        out.push(t.to_string());
    }
    Ok(out)
}

/// `given` followed by the targets of the lists, in restic's order. A pattern that
/// matches nothing is skipped; the second value names each one.
pub fn targets(given: &[PathBuf], lists: &TargetLists) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut out = given.to_vec();
    let mut skipped = Vec::new();
    for f in &lists.patterns {
        for line in read_lines(f, true)? {
            if !line.contains(['*', '?', '[']) {
                out.push(PathBuf::from(line));
                continue;
            }
            let matches = glob::glob(&line)
                .map_err(|e| EngineError::Usage(format!("invalid pattern {line:?}: {e}")))?;
            let before = out.len();
            for entry in matches {
                out.push(
                    entry.map_err(|e| EngineError::io(format!("pattern {line:?}"))(e.into()))?,
                );
            }
            if out.len() == before {
                skipped.push(format!(
                    "pattern {line:?} does not match any files, skipping"
                ));
            }
        }
    }
    for f in &lists.verbatim {
        out.extend(read_lines(f, false)?.into_iter().map(PathBuf::from));
    }
    for f in &lists.raw {
        use std::os::unix::ffi::OsStrExt;
        let data = std::fs::read(f).map_err(EngineError::io(format!("open {}", f.display())))?;
        out.extend(
            data.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s))),
        );
    }
    Ok((out, skipped))
}

/// The chunker named by `--chunker`: `rabin` (restic's, `None`: the repository's
/// polynomial) or `fastcdc[:MIN,AVG,MAX]` with sizes like `512K`.
pub fn chunker_from_spec(spec: &str) -> Result<Option<ChunkerParams>> {
    let (name, sizes) = spec.split_once(':').unwrap_or((spec, ""));
    match name {
        "rabin" if sizes.is_empty() => Ok(None),
        "fastcdc" if sizes.is_empty() => Ok(Some(FastCdcParams::default().into())),
        "fastcdc" => {
            let v: Vec<u64> = sizes
                .split(',')
                .map(crate::units::parse_size)
                .collect::<Result<_>>()?;
            let [min, avg, max] = v[..] else {
                return Err(EngineError::Usage(
                    "--chunker fastcdc:MIN,AVG,MAX needs three sizes".into(),
                ));
            };
            let p = FastCdcParams::new(min as u32, avg as u32, max as u32)
                .map_err(|e| EngineError::Usage(e.to_string()))?;
            Ok(Some(p.into()))
        }
        _ => Err(EngineError::Usage(format!(
            "unknown chunker {spec:?} (rabin or fastcdc[:MIN,AVG,MAX])"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_restic_order_and_report_empty_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("a.txt"), "").unwrap();
        std::fs::write(
            p("from"),
            format!(
                "  # c\n{}/*.txt\n{}/*.none\nplain\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        std::fs::write(p("verbatim"), " spaced \n").unwrap();
        std::fs::write(p("raw"), b"x\0\0y\0").unwrap();
        let lists = TargetLists {
            patterns: vec![p("from")],
            verbatim: vec![p("verbatim")],
            raw: vec![p("raw")],
        };
        let (t, skipped) = targets(&[PathBuf::from("given")], &lists).unwrap();
        let want: Vec<PathBuf> = vec![
            "given".into(),
            p("a.txt"),
            "plain".into(),
            " spaced ".into(),
            "x".into(),
            "y".into(),
        ];
        assert_eq!(t, want);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("*.none"), "{skipped:?}");
        let err = targets(
            &[],
            &TargetLists {
                patterns: vec![p("missing")],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("open "), "{err}");
    }

    #[test]
    fn chunker_specs() {
        assert!(chunker_from_spec("rabin").unwrap().is_none());
        assert!(chunker_from_spec("fastcdc").unwrap().is_some());
        assert!(chunker_from_spec("fastcdc:512K,1M,8M").unwrap().is_some());
        for bad in ["fastcdc:1M,2M", "fastcdc:x,1M,2M", "buzhash", "rabin:1"] {
            assert!(chunker_from_spec(bad).is_err(), "{bad}");
        }
    }
}
