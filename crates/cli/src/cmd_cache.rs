//! `restash cache`: lists and cleans up the local cache directories, as restic's `cache`
//! does. A repository's cache directory is marked as used (its modification time) each
//! time a command opens the repository with the cache.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use restash_engine::EngineError;

use crate::global::GlobalOpts;
use restash_engine::units::format_bytes_above;

/// `restash cache`
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Remove old cache directories.
    #[arg(long)]
    pub cleanup: bool,
    /// Max age in days for cache directories to be considered old.
    #[arg(long = "max-age", value_name = "days", default_value_t = 30)]
    pub max_age: u32,
    /// Do not output the size of the cache directories.
    #[arg(long = "no-size")]
    pub no_size: bool,
    /// cache takes no arguments; kept to give restic's message.
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// One repository's cache directory.
struct CacheDir {
    name: String,
    modified: SystemTime,
}

/// restic's names for cache directories: a repository id, or check's temporary caches.
fn is_cache_dir_name(name: &str) -> bool {
    restash_backend::is_id_name(name)
        || name
            .strip_prefix("restic-check-cache-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The cache directories under `base`; a missing base has none.
fn cache_dirs(base: &Path) -> anyhow::Result<Vec<CacheDir>> {
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", base.display())),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", base.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Not following links: a link named like a cache is not ours to measure or remove.
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if !meta.is_dir() || !is_cache_dir_name(&name) {
            continue;
        }
        let modified = meta
            .modified()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        dirs.push(CacheDir { name, modified });
    }
    dirs.sort_by_key(|d| d.modified);
    Ok(dirs)
}

/// Total size of the files under `path`.
fn dir_size(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

fn age(modified: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO)
}

/// restic's table: columns padded to their widest cell, two spaces apart, a rule of
/// dashes under the header and under the rows.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    println!("{}", line(&mut header.iter().copied()));
    println!("{}", "-".repeat(total));
    for row in rows {
        println!("{}", line(&mut row.iter().map(String::as_str)));
    }
    println!("{}", "-".repeat(total));
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    if !a.args.is_empty() {
        return Err(EngineError::Usage(
            "the cache command expects no arguments, only options - please see `restash help cache` for usage and flags".into(),
        )
        .into());
    }
    if g.no_cache {
        bail!("Refusing to do anything, the cache is disabled");
    }
    let base = g.cache_base()?;
    let max_age = Duration::from_secs(u64::from(a.max_age) * 24 * 3600);
    let dirs = cache_dirs(&base)?;
    if a.cleanup {
        let old: Vec<_> = dirs.iter().filter(|d| age(d.modified) > max_age).collect();
        if old.is_empty() {
            if !g.quiet {
                println!("no old cache dirs found");
            }
            return Ok(());
        }
        if !g.quiet {
            println!("remove {} old cache directories", old.len());
        }
        for d in old {
            let path = base.join(&d.name);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                eprintln!("unable to remove {}: {e}", path.display());
            }
        }
        return Ok(());
    }
    if dirs.is_empty() {
        println!("no cache dirs found, basedir is {}", base.display());
        return Ok(());
    }
    let mut header = vec!["Repo ID", "Last Used", "Old"];
    if !a.no_size {
        header.push("Size");
    }
    let mut rows = Vec::new();
    for d in &dirs {
        let id = if d.name.starts_with("restic-check-cache-") {
            d.name.clone()
        } else {
            d.name[..10].to_string()
        };
        let age = age(d.modified);
        let mut row = vec![
            id,
            format!("{} days ago", age.as_secs() / (24 * 3600)),
            if age > max_age { "yes" } else { "" }.to_string(),
        ];
        if !a.no_size {
            row.push(format!(
                "{:>11}",
                format_bytes_above(dir_size(&base.join(&d.name))?)
            ));
        }
        rows.push(row);
    }
    print_table(&header, &rows);
    println!("{} cache dirs in {}", dirs.len(), base.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_cache_dir_name;

    #[test]
    fn only_restics_cache_names_are_cache_dirs() {
        assert!(is_cache_dir_name(&"ab".repeat(32)));
        assert!(is_cache_dir_name("restic-check-cache-123"));
        for not in [
            "",
            "CACHEDIR.TAG",
            "restic-check-cache-",
            "restic-check-cache-x",
            "ab",
        ] {
            assert!(!is_cache_dir_name(not), "{not:?}");
        }
    }
}
