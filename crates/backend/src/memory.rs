//! A repository held in memory, for tests that need a [`Backend`] without a disk or a
//! server. It behaves like the other backends where the conformance suite looks: writes
//! are create-only, reads past the end fail, listings hold ids (the config has none).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Backend, BackendError, FileInfo, FileType, Handle};

type Files = BTreeMap<Handle, Vec<u8>>;

/// An in-memory [`Backend`]; every clone of an `Arc` of it sees the same files.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    files: Mutex<Files>,
}

impl MemoryBackend {
    /// An empty store (a repository exists once its config is written).
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    // A panic in another test thread while holding the lock leaves the map intact (every
    // mutation is a single insert or remove), so a poisoned lock is still usable.
    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }

    // Nothing to lay out; only an existing config makes this a second `init`.
    fn create(&self) -> Result<(), BackendError> {
        if self.files().contains_key(&Handle::config()) {
            return Err(BackendError::AlreadyExists("config file in memory:".into()));
        }
        Ok(())
    }

    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.files()
            .get(h)
            .cloned()
            .ok_or_else(|| BackendError::NotFound(h.to_string()))
    }

    // A write is visible to every reader and listing as soon as it returns.
    fn lists_immediately(&self) -> bool {
        true
    }

    // No round trips: the same size a local repository prefers.
    fn preferred_read_size(&self) -> u64 {
        4 << 20
    }

    fn read_range_into(
        &self,
        h: &Handle,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let files = self.files();
        let data = files
            .get(h)
            .ok_or_else(|| BackendError::NotFound(h.to_string()))?;
        crate::copy_range(h, data, offset, length, buf)
    }

    fn write(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let mut files = self.files();
        if files.contains_key(h) {
            return Err(BackendError::AlreadyExists(h.to_string()));
        }
        files.insert(*h, data.to_vec());
        Ok(())
    }

    fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        self.files()
            .get(h)
            .map(|d| d.len() as u64)
            .ok_or_else(|| BackendError::NotFound(h.to_string()))
    }

    fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.files().remove(h);
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        let files = self.files();
        let out = files
            .iter()
            .filter(|(h, _)| h.file_type() == t)
            .filter_map(|(h, data)| {
                Some(FileInfo {
                    id: h.id()?,
                    size: data.len() as u64,
                })
            })
            .collect();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    #[test]
    fn memory_backend_conforms() {
        crate::conformance::run(&MemoryBackend::new()).unwrap();
    }

    #[test]
    fn ranges_that_overflow_or_pass_the_end_are_short_reads() {
        let be = MemoryBackend::new();
        let h = Handle::new(FileType::Pack, Id([0xcd; 32]));
        be.write(&h, b"0123456789").unwrap();
        let mut buf = b"old contents".to_vec();
        be.read_range_into(&h, 10, 0, &mut buf).unwrap();
        assert!(
            buf.is_empty(),
            "an empty range at the end replaces the buffer"
        );
        for (offset, length) in [(5, 6), (11, 0), (u64::MAX, 2), (1, u64::MAX)] {
            assert!(matches!(
                be.read_range(&h, offset, length),
                Err(BackendError::ShortRead { .. })
            ));
        }
    }
}
