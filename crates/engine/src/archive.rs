//! A snapshot's files and trees written out as they are: one file's bytes, or a directory
//! as a tar or zip stream (restic's `dump` and `dump --archive zip`). Everything streams
//! blob by blob: memory does not grow with the size of a file or of the tree.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use chrono::{Datelike, Timelike};
use restash_format::{BlobId, BlobType, GoTime, Node, NodeType};

use crate::treewalk::{walk_from, Visit};
use crate::{EngineError, Repository, Result};

/// The archive formats of restic's `dump --archive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// POSIX tar (GNU headers), restic's default.
    #[default]
    Tar,
    /// zip, files deflated, as restic writes it.
    Zip,
}

impl ArchiveFormat {
    /// Parses restic's `--archive` value.
    pub fn parse(s: &str) -> Result<ArchiveFormat> {
        match s {
            "tar" => Ok(ArchiveFormat::Tar),
            "zip" => Ok(ArchiveFormat::Zip),
            other => Err(EngineError::Usage(format!(
                "unknown archive format {other:?}: use \"tar\" or \"zip\""
            ))),
        }
    }
}

/// A file node's content as a reader, one verified blob in memory at a time. Its length
/// is known before the first byte (archive headers need it): the sum of the blobs'
/// lengths in the index, so a blob the index lacks fails before anything is written, and
/// a blob that decodes to another length fails the read instead of shifting the file.
pub struct FileReader<'a> {
    repo: &'a Repository,
    blobs: &'a [BlobId],
    lens: Vec<u32>,
    next: usize,
    current: Vec<u8>,
    pos: usize,
    len: u64,
}

impl<'a> FileReader<'a> {
    /// A reader of `node`'s content; the node must be a file.
    pub fn new(repo: &'a Repository, node: &'a Node) -> Result<FileReader<'a>> {
        let blobs: &[BlobId] = node.content.as_deref().unwrap_or(&[]);
        let mut lens = Vec::with_capacity(blobs.len());
        for id in blobs {
            let loc = repo.index().get(id, BlobType::Data).ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "file {}: data blob {id} is not in the index",
                    node.display_name()
                ))
            })?;
            lens.push(loc.plaintext_len());
        }
        Ok(FileReader {
            repo,
            blobs,
            len: lens.iter().map(|&l| u64::from(l)).sum(),
            lens,
            next: 0,
            current: Vec::new(),
            pos: 0,
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the rest of the file to `out`; a blob that fails is that failure, not a
    /// write error.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> Result<u64> {
        std::io::copy(self, out).map_err(into_engine("write to output"))
    }

    fn fill(&mut self) -> Result<bool> {
        while self.pos >= self.current.len() {
            let Some(id) = self.blobs.get(self.next) else {
                return Ok(false);
            };
            let data = self.repo.load_blob(id, BlobType::Data)?;
            let want = self.lens[self.next];
            if data.len() != want as usize {
                return Err(EngineError::Corrupt(format!(
                    "data blob {id} has {} bytes, the index says {want}",
                    data.len()
                )));
            }
            self.current = data;
            self.pos = 0;
            self.next += 1;
        }
        Ok(true)
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // An engine error travels through io::Error so that tar and zip writers stop at
        // once; `into_engine` recovers it.
        if !self.fill().map_err(std::io::Error::other)? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// A writer's io::Error that carries an engine error back as that error; any other is a
// failure to write the output.
fn into_engine(context: &'static str) -> impl Fn(std::io::Error) -> EngineError {
    move |e| {
        if e.get_ref().is_some_and(|inner| inner.is::<EngineError>()) {
            match e.into_inner().map(|inner| inner.downcast::<EngineError>()) {
                Some(Ok(engine)) => return *engine,
                Some(Err(other)) => return EngineError::io(context)(std::io::Error::other(other)),
                None => unreachable!("checked above that the error has an inner value"),
            }
        }
        EngineError::io(context)(e)
    }
}

/// Writes a file node's content to `out`, blob by blob.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<()> {
    FileReader::new(repo, node)?.copy_to(out)?;
    Ok(())
}

/// Writes the tree below `tree` as an archive; entry names are `prefix` joined with the
/// paths below the tree, without the leading slash, as restic's dumper writes them.
pub fn dump_archive(
    repo: &Repository,
    tree: &BlobId,
    prefix: &str,
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        ArchiveFormat::Tar => dump_tar(repo, tree, prefix, out),
        ArchiveFormat::Zip => dump_zip(repo, tree, prefix, out),
    }
}

fn entry_name(path: &str) -> String {
    path.strip_prefix('/').unwrap_or(path).to_string()
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

// Entry names as the snapshot stores them, bytes and all (restic's tar keeps names that
// are not UTF-8): the walker's paths are text, lossy for such names, so the raw name of
// each directory on the way down is kept as the walk enters it.
struct RawNames {
    prefix: Vec<u8>,
    base: usize,
    dirs: Vec<Vec<u8>>,
}

impl RawNames {
    fn new(prefix: &str) -> RawNames {
        let prefix = prefix.trim_matches('/');
        RawNames {
            prefix: prefix.as_bytes().to_vec(),
            base: depth(prefix),
            dirs: Vec::new(),
        }
    }

    fn name(&mut self, path: &str, node: &Node) -> Vec<u8> {
        // The walker visits a directory before what it holds, depth first.
        self.dirs
            .truncate(depth(path).saturating_sub(self.base + 1));
        let mut out = self.prefix.clone();
        for part in self.dirs.iter().chain(std::iter::once(&node.name)) {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(part);
        }
        if node.node_type == NodeType::Dir {
            self.dirs.push(node.name.clone());
        }
        out
    }
}

/// Writes the tree below `tree` as a tar stream (see [`dump_archive`]).
pub fn dump_tar(repo: &Repository, tree: &BlobId, prefix: &str, out: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let io = into_engine("write tar");
    let mut raw = RawNames::new(prefix);
    walk_from(
        repo,
        prefix,
        tree,
        &mut HashSet::new(),
        &mut |_, path, node| {
            let mut name = raw.name(path, node);
            let mut header = tar::Header::new_gnu();
            header.set_mode(node.unix_permissions());
            header.set_uid(node.uid as u64);
            header.set_gid(node.gid as u64);
            header.set_mtime(node.mtime.unix_secs().max(0) as u64);
            // Names too long for the header are informational; the ids are set.
            let _ = header.set_username(&node.user);
            let _ = header.set_groupname(&node.group);
            match node.node_type {
                NodeType::File => {
                    let reader = FileReader::new(repo, node)?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(reader.len());
                    builder
                        .append_data(&mut header, OsStr::from_bytes(&name), reader)
                        .map_err(&io)?;
                }
                NodeType::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    name.push(b'/');
                    builder
                        .append_data(&mut header, OsStr::from_bytes(&name), std::io::empty())
                        .map_err(&io)?;
                }
                NodeType::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    let target = node.link_target_bytes();
                    builder
                        .append_link(
                            &mut header,
                            OsStr::from_bytes(&name),
                            OsStr::from_bytes(&target),
                        )
                        .map_err(&io)?;
                }
                _ => {}
            }
            Ok(Visit::Continue(false))
        },
    )?;
    builder.finish().map_err(io)?;
    Ok(())
}

// MS-DOS time, in the zone the snapshot recorded (as Go's archive/zip writes `Modified`);
// zip cannot say times before 1980, which become its earliest.
fn zip_time(t: &GoTime) -> zip::DateTime {
    let c = t.0;
    u16::try_from(c.year())
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                c.month() as u8,
                c.day() as u8,
                c.hour() as u8,
                c.minute() as u8,
                c.second().min(59) as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Writes the tree below `tree` as a zip stream (see [`dump_archive`]): files deflated,
/// directories and symlinks as restic's dumper stores them. Names that are not UTF-8 are
/// written lossily (the zip writer takes text). The output needs no seeking
/// (sizes and checksums follow each file), so it can go straight to a pipe or a socket.
pub fn dump_zip(repo: &Repository, tree: &BlobId, prefix: &str, out: &mut dyn Write) -> Result<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let failed = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(io) => into_engine("write zip")(io),
        other => EngineError::io("write zip")(std::io::Error::other(other)),
    };
    walk_from(
        repo,
        prefix,
        tree,
        &mut HashSet::new(),
        &mut |_, path, node| {
            let name = entry_name(path);
            let options = zip::write::SimpleFileOptions::default()
                .last_modified_time(zip_time(&node.mtime))
                .unix_permissions(node.unix_permissions());
            match node.node_type {
                NodeType::File => {
                    let mut reader = FileReader::new(repo, node)?;
                    let options = options
                        .compression_method(zip::CompressionMethod::Deflated)
                        .large_file(reader.len() >= u64::from(u32::MAX));
                    zip.start_file(name, options).map_err(failed)?;
                    std::io::copy(&mut reader, &mut zip).map_err(into_engine("write zip"))?;
                }
                NodeType::Dir => zip.add_directory(name, options).map_err(failed)?,
                NodeType::Symlink => {
                    let target = String::from_utf8_lossy(&node.link_target_bytes()).into_owned();
                    zip.add_symlink(name, target, options).map_err(failed)?;
                }
                _ => {}
            }
            Ok(Visit::Continue(false))
        },
    )?;
    zip.finish().map_err(failed)?;
    Ok(())
}
