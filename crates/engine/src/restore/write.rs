//! Writing planned blobs: one pass over a pack's needed regions, every blob verified, each
//! written at its file offsets; a file gets its metadata once its last blob is in.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use restash_backend::{FileType, Handle};

use super::plan::{Open, PlannedBlob, PlannedFile};
use super::{item_of, RestoreOptions};
use crate::events::{Control, Event, RestoreAction};
use crate::fsmeta;
use crate::{EngineError, Repository, Result};

/// What the writing side needs besides the plan.
#[derive(Clone, Copy)]
pub(super) struct Writer<'a> {
    pub opts: &'a RestoreOptions,
    pub ctl: &'a Control,
    pub root: &'a Path,
}

/// Gaps up to this size are read through rather than split into two requests.
const MAX_GAP: u64 = 256 << 10;

thread_local! {
    pub(super) static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

/// Per-worker buffers, reused across packs so that reading does not fault in new pages.
#[derive(Default)]
pub(super) struct Buffers {
    raw: Vec<u8>,
    scratch: Vec<u8>,
    plain: Vec<u8>,
}

pub(super) fn restore_pack(
    repo: &Repository,
    pack: u32,
    blobs: &mut [PlannedBlob],
    files: &[PlannedFile],
    w: Writer<'_>,
    bufs: &mut Buffers,
) -> Vec<String> {
    blobs.sort_by_key(|b| b.loc.offset);
    let pack_id = repo.index().pack_id(pack);
    let handle = Handle::new(FileType::Pack, pack_id);
    let mut errors = Vec::new();
    // Largest single read from the pack; bigger requests are split (a lone blob may
    // exceed it).
    let max_read = repo.backend().preferred_read_size();
    let Buffers {
        raw,
        scratch,
        plain,
    } = bufs;
    let mut start = 0;
    while start < blobs.len() {
        let first = blobs[start].loc.offset as u64;
        let mut end = start + 1;
        let mut last_end = first + blobs[start].loc.length as u64;
        while end < blobs.len() {
            let b = &blobs[end].loc;
            let b_end = b.offset as u64 + b.length as u64;
            if b.offset as u64 > last_end + MAX_GAP || b_end - first > max_read {
                break;
            }
            last_end = last_end.max(b_end);
            end += 1;
        }
        let group = &blobs[start..end];
        start = end;
        if let Err(e) = repo
            .backend()
            .read_range_into(&handle, first, last_end - first, raw)
        {
            for b in group {
                errors.push(format!(
                    "cannot read pack {} for blob {}: {e}",
                    pack_id.short(),
                    b.id.short()
                ));
                fail_blob(b, files, w, &mut errors);
            }
            continue;
        }
        for b in group {
            let at = (b.loc.offset as u64 - first) as usize;
            let bytes = &raw[at..at + b.loc.length as usize];
            if let Err(e) = repo.decode_blob(&b.id, &b.loc, bytes, scratch, plain) {
                let names: Vec<String> = b
                    .targets
                    .iter()
                    .map(|t| files[t.file as usize].path.display().to_string())
                    .collect();
                errors.push(format!("{e} (needed by {})", names.join(", ")));
                fail_blob(b, files, w, &mut errors);
                continue;
            }
            let zero = plain.iter().all(|x| *x == 0);
            for t in &b.targets {
                let f = &files[t.file as usize];
                let r = file_handle(f, w).and_then(|h| {
                    // Runs of zeros stay holes (sparse files) in a new file; the size is
                    // fixed when the file is done. A file written in place may hold other
                    // bytes there.
                    if zero && f.open != Open::Keep {
                        f.state.lock().expect("file state lock").holes = true;
                        return Ok(());
                    }
                    h.write_all_at(plain, t.offset)
                        .map_err(EngineError::io(format!("write {}", f.path.display())))
                });
                if let Err(e) = r {
                    errors.push(e.to_string());
                    mark_failed(f);
                }
                finish_blob(f, w, &mut errors);
            }
        }
    }
    errors
}

fn open(f: &PlannedFile, w: Writer<'_>) -> Result<File> {
    match f.open {
        Open::Keep => fsmeta::open_in_place(&f.path),
        Open::Replace => {
            fsmeta::remove_entry(&f.path, w.opts.delete)?;
            fsmeta::open_for_write(&f.path)
        }
        _ => fsmeta::open_for_write(&f.path),
    }
}

fn file_handle(f: &PlannedFile, w: Writer<'_>) -> Result<Arc<File>> {
    let mut st = f.state.lock().expect("file state lock");
    if let Some(h) = &st.handle {
        return Ok(h.clone());
    }
    let h = Arc::new(open(f, w)?);
    st.handle = Some(h.clone());
    Ok(h)
}

fn mark_failed(f: &PlannedFile) {
    f.state.lock().expect("file state lock").failed = true;
}

fn fail_blob(b: &PlannedBlob, files: &[PlannedFile], w: Writer<'_>, errs: &mut Vec<String>) {
    for t in &b.targets {
        let f = &files[t.file as usize];
        mark_failed(f);
        finish_blob(f, w, errs);
    }
}

/// Counts one blob of `f` as done; after the last one, sets the metadata and closes it.
fn finish_blob(f: &PlannedFile, w: Writer<'_>, errs: &mut Vec<String>) {
    let (handle, failed, holes) = {
        let mut st = f.state.lock().expect("file state lock");
        st.remaining -= 1;
        if st.remaining > 0 {
            return;
        }
        (st.handle.take(), st.failed, st.holes)
    };
    if failed {
        // Like restic, a file whose content cannot be complete is not left behind looking
        // restored.
        drop(handle);
        let left = match std::fs::remove_file(&f.path) {
            Ok(()) => String::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!(" (its incomplete copy could not be removed: {e})"),
        };
        errs.push(format!(
            "{}: not restored, some of its data is missing or damaged{left}",
            f.path.display()
        ));
        return;
    }
    if let Some(h) = handle {
        finish(f, &h, holes, w, errs);
    }
}

fn finish(f: &PlannedFile, h: &File, set_len: bool, w: Writer<'_>, errs: &mut Vec<String>) {
    if set_len {
        if let Err(e) = h.set_len(f.size) {
            errs.push(format!("{}: cannot set its size: {e}", f.path.display()));
            return;
        }
    }
    let e = fsmeta::apply(&f.path, Some(h), &f.meta, w.opts.owners);
    errs.extend(e);
    if w.opts.item_events {
        let action = if f.open == Open::Keep {
            RestoreAction::Updated
        } else {
            RestoreAction::Restored
        };
        w.ctl.emit(Event::Restored {
            action,
            item: &item_of(w.root, &f.path),
            size: Some(f.size),
        });
    }
}

/// Completes a file that waits for no blob: an empty one, or an existing one that holds
/// every blob already but has another length.
pub(super) fn complete(f: &PlannedFile, w: Writer<'_>) -> Vec<String> {
    let mut errs = Vec::new();
    match open(f, w) {
        Ok(h) => finish(f, &h, true, w, &mut errs),
        Err(e) => errs.push(e.to_string()),
    }
    errs
}
