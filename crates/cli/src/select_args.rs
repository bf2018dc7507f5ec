//! The flags that choose what a backup reads: restic's exclude options and its lists of
//! targets, turned into the archiver's options.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use restash_engine::archiver::sources::{read_lines, TargetLists};
use restash_engine::archiver::BackupOptions;
use restash_engine::PatternSet;

/// restic's exclude and `--files-from*` flags of `backup`.
#[derive(ClapArgs, Debug)]
pub struct SelectArgs {
    /// Exclude a pattern (repeatable).
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file (repeatable).
    #[arg(long = "exclude-file")]
    pub exclude_file: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from a file (repeatable).
    #[arg(long = "iexclude-file")]
    pub iexclude_file: Vec<PathBuf>,
    /// Exclude directories holding this file (`name[:header]`, repeatable).
    #[arg(long = "exclude-if-present")]
    pub exclude_if_present: Vec<String>,
    /// Exclude CACHEDIR.TAG directories.
    #[arg(long = "exclude-caches")]
    pub exclude_caches: bool,
    /// Exclude files larger than this size (e.g. 100M, 2G).
    #[arg(long = "exclude-larger-than")]
    pub exclude_larger_than: Option<String>,
    /// Stay on the file system of each target.
    #[arg(short = 'x', long = "one-file-system")]
    pub one_file_system: bool,
    /// Read the paths to back up from a file, one per line ('#' comments).
    #[arg(long = "files-from")]
    pub files_from: Vec<PathBuf>,
    /// Read the paths from a file, one per line, taken literally.
    #[arg(long = "files-from-verbatim")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Read NUL-separated paths from a file.
    #[arg(long = "files-from-raw")]
    pub files_from_raw: Vec<PathBuf>,
}

impl SelectArgs {
    /// Sets the exclude options of `o`, reading the exclude files.
    pub fn apply(&self, o: &mut BackupOptions) -> anyhow::Result<()> {
        let mut excludes = self.exclude.clone();
        for f in &self.exclude_file {
            excludes.extend(read_lines(f, true)?);
        }
        let mut iexcludes = self.iexclude.clone();
        for f in &self.iexclude_file {
            iexcludes.extend(read_lines(f, true)?);
        }
        o.excludes = PatternSet::parse(&excludes)?;
        o.excludes.add_insensitive(&iexcludes)?;
        // restic 0.14 records only the --exclude patterns in the snapshot.
        o.exclude_strings = self.exclude.clone();
        o.exclude_if_present = self.exclude_if_present.clone();
        if self.exclude_caches {
            o.exclude_if_present
                .push("CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55".into());
        }
        o.exclude_larger_than = self
            .exclude_larger_than
            .as_deref()
            .map(restash_engine::units::parse_size)
            .transpose()?;
        o.one_file_system = self.one_file_system;
        Ok(())
    }

    /// The `--files-from*` lists.
    pub fn lists(&self) -> TargetLists {
        TargetLists {
            patterns: self.files_from.clone(),
            verbatim: self.files_from_verbatim.clone(),
            raw: self.files_from_raw.clone(),
        }
    }
}
