//! The matrix's tools: running either binary with a time limit, copying repositories,
//! and damaging one file.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use crate::common::backup::{Background, Tool};
use crate::common::tree::{post_order, Prng};
use crate::common::CmdOutput;
use crate::{Damage, Damage::*, Kind, Kind::*};

pub fn cp_a(from: &Path, to: &Path) {
    let status = Process::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("start cp");
    assert!(status.success(), "cp -a {from:?} {to:?}: {status}");
}

/// How a run ended.
pub struct Run {
    pub out: CmdOutput,
    /// Killed at the timeout.
    pub hung: bool,
    /// Stopped when it began retrying a read (restic only).
    pub retried: bool,
}

/// What restic 0.14 prints before it retries a read that failed.
pub const RETRYING: &str = "returned error, retrying after";

/// Runs `tool`, killing it after `timeout`, or as soon as it retries a read if
/// `stop_at_retry`: restic 0.14 retries every failed read ten times over about a minute,
/// even of a file that does not exist (restic 0.16 stopped retrying those).
pub fn run_limited(tool: Tool, args: Vec<OsString>, timeout: Duration, stop_at_retry: bool) -> Run {
    let mut bg = Background::spawn(tool, args, &[], false);
    let deadline = Instant::now() + timeout;
    let (mut hung, mut retried) = (false, false);
    while bg.running() {
        hung = Instant::now() >= deadline;
        retried = stop_at_retry && bg.stderr_so_far().contains(RETRYING);
        if hung || retried {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Run {
        out: bg.kill(),
        hung,
        retried,
    }
}

/// The files of `kind` in a repository, sorted.
pub fn files_of(repo: &Path, kind: Kind) -> Vec<PathBuf> {
    let dir = match kind {
        Config => return vec![repo.join("config")],
        Key => repo.join("keys"),
        Snapshot => repo.join("snapshots"),
        Index => repo.join("index"),
        Pack => repo.join("data"),
    };
    let mut out: Vec<PathBuf> = post_order(&dir)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

pub fn pick(rng: &mut Prng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Damages `path`; returns what was done, for the report.
pub fn apply(path: &Path, damage: Damage, rng: &mut Prng) -> String {
    if damage == Delete {
        fs::remove_file(path).expect("delete");
        return "deleted".into();
    }
    let mut data = fs::read(path).expect("read");
    let len = data.len();
    assert!(len > 1, "{path:?} is too short to damage");
    let what = match damage {
        Flip => {
            let at = pick(rng, len);
            let mask = 1 + pick(rng, 255) as u8;
            data[at] ^= mask;
            format!("byte {at} of {len} xor {mask:#04x}")
        }
        Truncate => {
            let to = 1 + pick(rng, len - 1);
            data.truncate(to);
            format!("cut to {to} of {len} bytes")
        }
        Zero => {
            let at = pick(rng, len);
            let n = (1 + pick(rng, 256)).min(len - at);
            data[at..at + n].fill(0);
            format!("{n} bytes zeroed at {at} of {len}")
        }
        Random => {
            rng.fill(&mut data);
            format!("{len} random bytes")
        }
        Empty => {
            data.clear();
            format!("emptied ({len} bytes)")
        }
        Append => {
            let mut extra = vec![0; 1 + pick(rng, 64)];
            rng.fill(&mut extra);
            data.extend_from_slice(&extra);
            format!("{} bytes appended to {len}", extra.len())
        }
        Delete => unreachable!("handled above"),
    };
    // Repository files are read-only.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(path, &data).expect("write damaged file");
    what
}
