//! `restash serve` in a real browser: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/serve.mjs`). The volumes page lists every host with the ages this test
//! expects, flags the stale and the partial one, filters as one types and sorts on a
//! header click; clicking through a host, its newest snapshot and folders downloads files
//! and the folder as .tar.gz and .zip, which must equal the source; on a phone the table
//! becomes cards without sideways scrolling.
//!
//! Needs chromium (`apt-get install chromium`), node and `npm ci --prefix tests/browser`;
//! without them the test fails and says so.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::backup::with_repo;
use common::serve::*;
use common::*;
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The browser, node and playwright-core, or a panic saying what to install.
fn requirements() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "{chromium:?} is missing: install Debian's chromium (apt-get install chromium); \
         the browser tests never download a browser of their own"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 20 or newer (apt-get install nodejs npm)"
    );
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is missing: run `npm ci --prefix tests/browser`"
    );
    (chromium, browser_dir.join("serve.mjs"))
}

/// Runs the script (at most five minutes); its JSON report.
fn run_script(script: &Path, chromium: &Path, env: &[(&str, String)]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start node");
    while matches!(child.try_wait(), Ok(None)) {
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("wait for node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node {script:?} failed ({}) after {:.1?}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        out.status,
        started.elapsed()
    );
    eprintln!("browser run took {:.1?}", started.elapsed());
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("report {last:?}: {e}\n{stderr}"))
}

#[test]
fn volumes_browse_and_download_in_chromium() {
    let (chromium, script) = requirements();
    let fleet = fleet();
    let server = Server::start(
        with_repo(&fleet.repo, ["serve", "--listen", "127.0.0.1:0"]),
        &[],
    );

    // Ages as the page must show them at any moment of the next five minutes: the page is
    // rendered after `now`, and no snapshot is newer than the end of its backup.
    let now = now_unix();
    let hosts: Vec<Value> = fleet
        .hosts
        .iter()
        .map(|h| {
            let min = (now - h.last.1).max(0);
            let max = now - h.last.0 + 300;
            let mut texts: Vec<String> = (min..=max)
                .map(|s| restash_serve::html::age(s as u64))
                .collect();
            texts.dedup();
            json!({
                "host": h.host,
                "lastId": newest_id(&fleet.repo, &h.host),
                "count": h.count,
                "stale": h.stale,
                "partial": h.partial,
                "ageMin": min,
                "ageMax": max,
                "ageTexts": texts,
            })
        })
        .collect();
    assert!(
        hosts.iter().any(|h| h["ageTexts"] == json!(["3 d 0 h"])),
        "the stale host's age is known exactly: {hosts:?}"
    );
    let partial: Vec<&str> = fleet
        .hosts
        .iter()
        .filter(|h| h.partial)
        .map(|h| h.host.as_str())
        .collect();
    let expect = json!({
        "hosts": hosts,
        "filter": "restic",
        "tag": { "word": "partial", "hosts": partial },
    });

    let mut steps: Vec<Value> = fleet
        .app
        .join("docs")
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(json!({ "open": n.to_str().expect("UTF-8") })),
            _ => None,
        })
        .collect();
    steps.extend([
        json!({ "shot": "serve-browse.png" }),
        json!({ "archive": "docs" }),
        json!({ "download": ESCAPED_NAME }),
        json!({ "download": "run.sh" }),
        json!({ "open": "data" }),
        json!({ "download": "big.bin" }),
    ]);
    let browse = json!({ "host": "app-restash", "steps": steps });

    let out = tempfile::tempdir().expect("tempdir");
    let downloads = out.path().join("downloads");
    fs::create_dir(&downloads).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-browser-shots");
    fs::create_dir_all(&shots).unwrap();
    let report = run_script(
        &script,
        &chromium,
        &[
            ("BASE_URL", server.base.clone()),
            ("EXPECT", expect.to_string()),
            ("BROWSE", browse.to_string()),
            ("DOWNLOAD_DIR", downloads.display().to_string()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
    );
    eprintln!("screenshots in {shots:?}; report {report}");
    assert!(report["checks"].as_u64().unwrap_or(0) > 50, "{report}");

    let saved = report["downloads"].as_array().expect("downloads");
    let names: Vec<&str> = saved
        .iter()
        .filter_map(|d| d["suggested"].as_str())
        .collect();
    // chromium saves a name with '?' (not allowed on every file system) with '_' instead.
    let escaped = ESCAPED_NAME.replace('?', "_");
    assert_eq!(
        names,
        [
            "docs.tar.gz",
            "docs.zip",
            escaped.as_str(),
            "run.sh",
            "big.bin"
        ],
        "the names the browser would save them under"
    );
    let path = |i: usize| PathBuf::from(saved[i]["path"].as_str().expect("path"));
    let docs = fleet.app.join("docs");
    for (i, rel) in [(2, ESCAPED_NAME), (3, "run.sh"), (4, "data/big.bin")] {
        assert!(
            fs::read(path(i)).unwrap() == fs::read(docs.join(rel)).unwrap(),
            "download of {rel} differs from the source"
        );
    }
    let opts = CompareOptions {
        root_metadata: false,
        ..Default::default()
    };
    let tar_dir = out.path().join("tar");
    unpack(&path(0), Archive::TarGz, &tar_dir);
    assert_trees_equal(&docs, &tar_dir.join("docs"), &opts);
    let zip_dir = out.path().join("zip");
    unpack(&path(1), Archive::Zip, &zip_dir);
    // unzip sets no symlink times; the link's target is checked instead.
    let zip_opts = CompareOptions {
        skip: vec!["link".into()],
        ..opts
    };
    assert_trees_equal(&docs, &zip_dir.join("docs"), &zip_opts);
    assert_eq!(
        fs::read_link(zip_dir.join("docs/link")).unwrap(),
        Path::new("report.txt")
    );
    for png in ["serve-volumes.png", "serve-browse.png", "serve-phone.png"] {
        let bytes = fs::read(shots.join(png)).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG"), "{png} was taken");
    }
}
