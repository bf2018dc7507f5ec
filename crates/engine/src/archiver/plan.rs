//! Where each backup target goes in the snapshot, as restic 0.14 decides it
//! (`resolveRelativeTargets`, `NewTree`, `unrollTree` in its archiver; reimplemented here).
//!
//! A target is stored under its path components: `sub/deeper` as `sub` → `deeper`, `../x`
//! as `x`, `/srv/data` as `srv` → `data`. A target with no components (`.`, `..`, `/`)
//! stands for its entries. Two top-level names found in different directories (`x` and
//! `../x`) are told apart as `x`, `x-1`, `x-2`… in the order given. A target below another
//! target is folded into it. The snapshot's `paths` are the targets as given, made absolute
//! with restic's working directory, in their order, duplicates kept.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::{EngineError, Result};

/// One name in the snapshot above or at a target (restic's `archiver.Tree`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The directory holding a top-level entry, as restic writes it: `/`, `.`, `..`, `../..`.
    root: PathBuf,
    /// A leaf: its contents are saved from here (relative to the working directory or
    /// absolute, as restic's paths are).
    pub path: Option<PathBuf>,
    /// A directory above targets: its metadata comes from here.
    pub info: Option<PathBuf>,
    /// Entries below, by name.
    pub children: BTreeMap<Vec<u8>, Entry>,
}

/// What a backup of some targets stores.
#[derive(Debug)]
pub(super) struct Plan {
    /// The snapshot's `paths`.
    pub paths: Vec<String>,
    /// The targets that exist, absolute: `-x` keeps what is below each one to its file
    /// system (the nearest one decides).
    pub origins: Vec<PathBuf>,
    /// The working directory every relative path is read from.
    pub cwd: PathBuf,
    /// The snapshot's top level.
    pub top: BTreeMap<Vec<u8>, Entry>,
    /// What could not be read while planning; everything else is backed up.
    pub errors: Vec<String>,
}

impl Plan {
    /// The path of a planned file on disk.
    pub fn on_disk(&self, p: &Path) -> PathBuf {
        go_clean(&self.cwd.join(p))
    }
}

/// Go's `filepath.Clean`: lexical, `.` for nothing, `..` above `/` dropped.
pub(super) fn go_clean(p: &Path) -> PathBuf {
    let mut rooted = false;
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => rooted = true,
            Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(OsStr::new(".."));
                }
            }
            Component::Normal(s) => parts.push(s),
        }
    }
    let mut out = PathBuf::from(if rooted { "/" } else { "" });
    out.extend(parts);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The working directory as Go's `os.Getwd` gives it to restic (`$PWD` when it names the
/// current directory, so a directory entered through a symlink keeps that name in the
/// snapshot's paths), and the real one, which every read goes through.
fn working_dirs() -> Result<(PathBuf, PathBuf)> {
    let real = std::env::current_dir().map_err(EngineError::io("current directory"))?;
    let pwd = std::env::var_os("PWD").map(PathBuf::from);
    if let Some(pwd) = pwd.filter(|p| p.is_absolute()) {
        if let (Ok(a), Ok(b)) = (std::fs::metadata(&pwd), std::fs::metadata(&real)) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                return Ok((pwd, real));
            }
        }
    }
    Ok((real.clone(), real))
}

/// The names a target is stored under (`..` at its start has none).
fn components(clean: &Path) -> Vec<Vec<u8>> {
    clean
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// The directory holding a clean target's first component, as restic names it.
fn root_dir(clean: &Path) -> PathBuf {
    if clean.is_absolute() {
        return PathBuf::from("/");
    }
    let ups = clean
        .components()
        .filter(|c| matches!(c, Component::ParentDir))
        .count();
    if ups == 0 {
        PathBuf::from(".")
    } else {
        std::iter::repeat_n("..", ups).collect()
    }
}

/// Entry names of a directory, sorted by bytes (Go's `sort.Strings`).
fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Plans a backup of `targets` as given on the command line, from the working directory.
pub(super) fn plan(targets: &[PathBuf]) -> Result<Plan> {
    let (shown, real) = working_dirs()?;
    plan_in(targets, &shown, &real)
}

/// [`plan`] with the working directory as restic shows it (`shown`) and as it is (`real`).
fn plan_in(targets: &[PathBuf], shown: &Path, real: &Path) -> Result<Plan> {
    let mut plan = Plan {
        paths: Vec::new(),
        origins: Vec::new(),
        cwd: real.to_path_buf(),
        top: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut leaves: Vec<PathBuf> = Vec::new();
    for given in targets {
        // restic leaves out targets that do not exist (only those: a target it cannot read
        // is kept and fails later, named).
        let missing = given.as_os_str().is_empty()
            || matches!(std::fs::symlink_metadata(real.join(given)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if missing {
            plan.errors
                .push(format!("{} does not exist, skipping", given.display()));
            continue;
        }
        plan.paths
            .push(go_clean(&shown.join(given)).to_string_lossy().into_owned());
        plan.origins.push(go_clean(&real.join(given)));
        let target = go_clean(given);
        if !components(&target).is_empty() {
            leaves.push(target);
            continue;
        }
        // `.`, `..` and `/` have no name to be stored under: their entries stand for them.
        match read_dir_sorted(&real.join(&target)) {
            Ok(names) => leaves.extend(
                names
                    .iter()
                    .map(|n| go_clean(&target.join(OsStr::from_bytes(n)))),
            ),
            Err(e) => plan.errors.push(format!("{}: {e}", given.display())),
        }
    }
    if plan.origins.is_empty() {
        // restic refuses to write a snapshot of nothing.
        return Err(EngineError::Usage(
            "all target directories/files do not exist".into(),
        ));
    }
    let mut seen = HashSet::new();
    for target in leaves {
        if seen.insert(target.clone()) {
            add(&mut plan.top, &target)?;
        }
    }
    let mut errors = Vec::new();
    for e in plan.top.values_mut() {
        unroll(e, real, &mut errors)?;
    }
    plan.errors.extend(errors);
    Ok(plan)
}

/// Adds a clean target with at least one component to the top level.
fn add(top: &mut BTreeMap<Vec<u8>, Entry>, target: &Path) -> Result<()> {
    let comps = components(target);
    let Some((first, rest)) = comps.split_first() else {
        return Err(EngineError::Usage(format!(
            "invalid path {:?} (no path components)",
            target
        )));
    };
    let root = root_dir(target);
    let mut name = first.clone();
    let mut n = 0;
    while let Some(other) = top.get(&name) {
        if other.root == root {
            break;
        }
        n += 1;
        name = [first.as_slice(), format!("-{n}").as_bytes()].concat();
    }
    let entry = top.entry(name).or_insert_with(|| Entry {
        root: root.clone(),
        ..Entry::default()
    });
    if rest.is_empty() {
        entry.path = Some(target.to_path_buf());
        return Ok(());
    }
    // Below a renamed entry the real directory keeps its own name.
    let at = go_clean(&root.join(OsStr::from_bytes(first)));
    entry.info = Some(at.clone());
    add_below(entry, target, &at, rest)
}

/// Adds the components `comps` of `target` below `dir`, which is `at` on disk.
fn add_below(dir: &mut Entry, target: &Path, at: &Path, comps: &[Vec<u8>]) -> Result<()> {
    let Some((name, rest)) = comps.split_first() else {
        return Ok(());
    };
    let child = dir.children.entry(name.clone()).or_default();
    if rest.is_empty() {
        if child.path.is_some() {
            return Err(EngineError::Usage(format!(
                "path is already set for target {}",
                target.display()
            )));
        }
        child.path = Some(target.to_path_buf());
        return Ok(());
    }
    let sub = at.join(OsStr::from_bytes(name));
    child.info = Some(sub.clone());
    add_below(child, target, &sub, rest)
}

/// A leaf with targets below it becomes a directory whose every entry is a leaf, so the
/// nested targets are stored once, where they are.
fn unroll(e: &mut Entry, real: &Path, errors: &mut Vec<String>) -> Result<()> {
    if let (Some(path), false) = (e.path.clone(), e.children.is_empty()) {
        match read_dir_sorted(&real.join(&path)) {
            Ok(names) => {
                for n in names {
                    let p = path.join(OsStr::from_bytes(&n));
                    let child = e.children.entry(n).or_default();
                    match &child.path {
                        None => child.path = Some(p),
                        Some(q) if *q == p => {}
                        Some(q) => {
                            return Err(EngineError::Usage(format!(
                                "collision on path {} and {}",
                                q.display(),
                                p.display()
                            )))
                        }
                    }
                }
            }
            // The nested targets are still saved; the rest of this directory is named
            // as unreadable.
            Err(err) => errors.push(format!("{}: {err}", path.display())),
        }
        e.path = None;
        if e.info.is_none() {
            e.info = Some(path);
        }
    }
    for c in e.children.values_mut() {
        unroll(c, real, errors)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn clean_is_gos() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("a/..", "."),
            ("a/../..", ".."),
            ("./sub/", "sub"),
            ("a//b/./c/..", "a/b"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("//a", "/a"),
            ("../x/../y", "../y"),
        ] {
            assert_eq!(go_clean(Path::new(input)), p(want), "{input:?}");
        }
    }

    #[test]
    fn roots_and_components() {
        assert_eq!(root_dir(&p("a/b")), p("."));
        assert_eq!(root_dir(&p("../x/y")), p(".."));
        assert_eq!(root_dir(&p("../../x")), p("../.."));
        assert_eq!(root_dir(&p("/a")), p("/"));
        assert_eq!(components(&p("../x/y")), [b"x".to_vec(), b"y".to_vec()]);
        assert!(components(&p("../..")).is_empty());
    }

    /// The top level's shape: name → (path, info, children's names).
    fn shape(e: &BTreeMap<Vec<u8>, Entry>) -> Vec<String> {
        e.iter()
            .map(|(n, e)| {
                let kids = shape(&e.children);
                format!(
                    "{}={}|{}[{}]",
                    String::from_utf8_lossy(n),
                    e.path
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string()),
                    e.info
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string()),
                    kids.join(",")
                )
            })
            .collect()
    }

    fn dir_with(entries: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for e in entries {
            let path = d.path().join(e);
            if e.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, b"x").unwrap();
            }
        }
        d
    }

    fn plan_at(d: &Path, cwd: &str, targets: &[&str]) -> Plan {
        let cwd = d.join(cwd);
        let targets: Vec<PathBuf> = targets.iter().map(PathBuf::from).collect();
        plan_in(&targets, &cwd, &cwd).unwrap()
    }

    #[test]
    fn dot_stands_for_its_entries() {
        let d = dir_with(&["w/b", "w/a/f", "w/sub/deeper/g", "x/y/z"]);
        let plan = plan_at(d.path(), "w", &["."]);
        assert_eq!(shape(&plan.top), ["a=a|[]", "b=b|[]", "sub=sub|[]"]);
        assert_eq!(plan.paths, [d.path().join("w").display().to_string()]);

        let plan = plan_at(d.path(), "w/sub", &[".."]);
        assert_eq!(
            shape(&plan.top),
            ["a=../a|[]", "b=../b|[]", "sub=../sub|[]"]
        );
    }

    #[test]
    fn relative_targets_keep_their_components() {
        let d = dir_with(&["w/sub/deeper/g", "x/y/z"]);
        let plan = plan_at(d.path(), "w", &["sub/deeper", "../x/y"]);
        assert_eq!(
            shape(&plan.top),
            ["sub=|sub[deeper=sub/deeper|[]]", "x=|../x[y=../x/y|[]]"]
        );
    }

    #[test]
    fn same_name_elsewhere_is_numbered_in_order() {
        let d = dir_with(&["w/x/q", "x/y", "w/f"]);
        let plan = plan_at(d.path(), "w", &["x", "../x"]);
        assert_eq!(shape(&plan.top), ["x=x|[]", "x-1=../x|[]"]);
        let plan = plan_at(d.path(), "w", &["../x/y", "x/q"]);
        assert_eq!(
            shape(&plan.top),
            ["x=|../x[y=../x/y|[]]", "x-1=|x[q=x/q|[]]"]
        );
    }

    #[test]
    fn nested_targets_fold_into_the_outer_one() {
        let d = dir_with(&["w/sub/deeper/g", "w/sub/h"]);
        for order in [["sub", "sub/deeper"], ["sub/deeper", "sub"]] {
            let plan = plan_at(d.path(), "w", &order);
            assert_eq!(
                shape(&plan.top),
                ["sub=|sub[deeper=sub/deeper|[],h=sub/h|[]]"]
            );
            assert_eq!(plan.paths.len(), 2);
        }
    }

    #[test]
    fn paths_keep_order_and_duplicates_and_skip_the_missing() {
        let d = dir_with(&["w/f", "w/sub/g"]);
        let plan = plan_at(d.path(), "w", &["sub", "./f", "missing", "f"]);
        let w = d.path().join("w");
        let want: Vec<String> = ["sub", "f", "f"]
            .iter()
            .map(|n| w.join(n).display().to_string())
            .collect();
        assert_eq!(plan.paths, want);
        assert_eq!(shape(&plan.top), ["f=f|[]", "sub=sub|[]"]);
        assert_eq!(plan.errors, ["missing does not exist, skipping"]);

        let targets = [p("missing"), p("")];
        let err = plan_in(&targets, &w, &w).unwrap_err();
        assert!(err.to_string().contains("do not exist"), "{err}");
    }

    #[test]
    fn shown_working_directory_names_the_paths() {
        let d = dir_with(&["w/f"]);
        let w = d.path().join("w");
        let plan = plan_in(&[p("f"), p(".")], Path::new("/shown/w"), &w).unwrap();
        assert_eq!(plan.paths, ["/shown/w/f", "/shown/w"]);
        assert_eq!(plan.on_disk(Path::new("f")), w.join("f"));
    }
}
