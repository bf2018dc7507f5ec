//! `restash serve` over real HTTP (the system's curl as the client): the volumes of a
//! repository written by restash and by restic 0.14 (counts, files, bytes, ages, stale and
//! partial flags), file downloads equal to their sources (names that need escaping or are
//! not UTF-8), folders as .tar.gz and .zip that unpack (with tar and unzip) to the source
//! tree, 404s, token and htpasswd authentication, the refusal to listen beyond localhost
//! without it, SIGINT and SIGTERM, and a corrupted pack cutting the download short rather
//! than ending it as if it were whole.
mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::backup::{data_files, init_repo, lock_ids, with_repo, Tool};
use common::serve::*;
use common::*;
use serde_json::Value;

fn serve_args(repo: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args = with_repo(repo, ["serve", "--listen", "127.0.0.1:0"]);
    args.extend(extra.iter().map(Into::into));
    args
}

#[test]
fn volumes_list_every_host_with_counts_ages_and_flags() {
    let fleet = fleet();
    let server = Server::start(serve_args(&fleet.repo, &[]), &[]);
    let t0 = now_unix();
    let vols = get_json(&server.url("api/volumes"), &[]);
    let t1 = now_unix();
    let vols = vols.as_array().expect("a list");
    let hosts: Vec<&str> = vols.iter().filter_map(|v| v["host"].as_str()).collect();
    let want: Vec<&str> = fleet.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, want, "one row per host, by name");
    for (v, h) in vols.iter().zip(&fleet.hosts) {
        let ctx = format!("{}: {v}", h.host);
        assert_eq!(v["snapshots"], h.count, "{ctx}");
        assert_eq!(v["files"], h.files, "{ctx}");
        assert_eq!(v["bytes"], h.bytes, "{ctx}");
        assert_eq!(v["stale"], h.stale, "{ctx}");
        assert_eq!(v["partial"], h.partial, "{ctx}");
        assert_eq!(v["error"], Value::Null, "{ctx}");
        assert_eq!(
            v["last_snapshot"].as_str(),
            Some(newest_id(&fleet.repo, &h.host).as_str()),
            "{ctx}: the newest snapshot as restic lists it"
        );
        let last = v["last_time"].as_i64().expect("last_time");
        assert!(h.last.0 <= last && last <= h.last.1, "{ctx}: {:?}", h.last);
        let age = v["age_seconds"].as_i64().expect("age");
        assert!(
            t0 - last - 2 <= age && age <= t1 - last + 2,
            "{ctx}: age {age} s, expected {} s",
            t0 - last
        );
    }

    // The page itself: one row per host, the stale and partial rows flagged.
    let page = String::from_utf8(get(&server.url(""), &[])).expect("UTF-8 page");
    for h in &fleet.hosts {
        let mut class = "volume".to_string();
        if h.stale {
            class.push_str(" stale");
        }
        if h.partial {
            class.push_str(" partial");
        }
        let row = format!("<tr class=\"{class}\" data-host=\"{}\"", h.host);
        assert!(page.contains(&row), "{row} in\n{page}");
    }
    assert!(
        page.contains(">1 stale<") && page.contains(">1 partial<"),
        "{page}"
    );

    // Each host page lists its snapshots.
    for h in &fleet.hosts {
        let page =
            String::from_utf8(get(&server.url(&format!("hosts/{}", h.host)), &[])).expect("UTF-8");
        assert_eq!(
            page.matches("<tr class=\"snapshot\"").count(),
            h.count,
            "{page}"
        );
    }
}

fn assert_download(server: &Server, url: &str, want: &[u8]) {
    let f = curl(&server.url(url), &[]);
    assert_eq!((f.curl, f.status), (0, 200), "{url}: {}", f.stderr);
    assert_eq!(
        f.header("content-length"),
        Some(want.len().to_string().as_str()),
        "{url}"
    );
    assert!(
        f.body == want,
        "{url}: {} bytes differ from the source",
        want.len()
    );
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn archive_of(server: &Server, folder_url: &str, kind: Archive, dest: &Path) -> String {
    let format = match kind {
        Archive::TarGz => "tar.gz",
        Archive::Zip => "zip",
    };
    let f = curl(&server.url(&format!("{folder_url}/?format={format}")), &[]);
    assert_eq!(
        (f.curl, f.status),
        (0, 200),
        "{folder_url} as {format}: {}",
        f.stderr
    );
    let file = dest.with_extension(format);
    fs::write(&file, &f.body).expect("write archive");
    unpack(&file, kind, dest);
    f.header("content-disposition").unwrap_or("").to_string()
}

#[test]
fn downloads_equal_their_sources_and_folders_unpack_to_the_tree() {
    let fleet = fleet();
    let server = Server::start(serve_args(&fleet.repo, &[]), &[]);
    let app = &fleet.app;
    let id = newest_id(&fleet.repo, "app-restash");
    let file = |rel: &Path| format!("snapshots/{id}/file/{}", path_url(&app.join(rel)));
    for rel in [
        "docs/data/big.bin",
        "docs/data/empty",
        "top.bin",
        "docs/sub/added.bin",
    ] {
        assert_download(
            &server,
            &file(Path::new(rel)),
            &fs::read(app.join(rel)).unwrap(),
        );
    }
    let escaped = Path::new("docs").join(ESCAPED_NAME);
    assert_download(
        &server,
        &file(&escaped),
        &fs::read(app.join(&escaped)).unwrap(),
    );
    let f = curl(&server.url(&file(&escaped)), &[]);
    let disp = f.header("content-disposition").unwrap_or("");
    let utf8 = disp.split("filename*=UTF-8''").nth(1).unwrap_or("");
    assert_eq!(percent_decode(utf8), ESCAPED_NAME.as_bytes(), "{disp}");
    let odd = Path::new("odd").join(std::ffi::OsStr::from_bytes(ODD_NAME));
    assert_download(&server, &file(&odd), &fs::read(app.join(&odd)).unwrap());
    // Its link on the folder page is the one just used.
    let page = get(
        &server.url(&format!(
            "snapshots/{id}/tree/{}/",
            path_url(&app.join("odd"))
        )),
        &[],
    );
    let link = format!("href=\"/{}\"", file(&odd));
    assert!(
        String::from_utf8_lossy(&page).contains(&link),
        "{link} on the page"
    );

    // A file of restic 0.14's snapshot (compressed, written by restic).
    let db_id = newest_id(&fleet.repo, "db-restic");
    let db_file = fleet
        .dir
        .path()
        .canonicalize()
        .unwrap()
        .join("db/d03/f0003.bin");
    assert_download(
        &server,
        &format!("snapshots/{db_id}/file/{}", path_url(&db_file)),
        &fs::read(&db_file).unwrap(),
    );

    // A file's tree URL leads to the file.
    let f = curl(
        &server.url(&format!(
            "snapshots/{id}/tree/{}",
            path_url(&app.join("top.bin"))
        )),
        &[],
    );
    assert_eq!(f.status, 303);
    assert_eq!(
        f.header("location"),
        Some(format!("/{}", file(Path::new("top.bin"))).as_str())
    );

    // The folder as both archives: the same tree as the source, to the second. zip stores
    // no owner and unzip sets no symlink times, so the link is checked by its target.
    let docs_url = format!("snapshots/{id}/archive/{}", path_url(&app.join("docs")));
    let out = tempfile::tempdir().expect("tempdir");
    let tar_dir = out.path().join("tar");
    let disp = archive_of(&server, &docs_url, Archive::TarGz, &tar_dir);
    assert!(disp.contains("filename=\"docs.tar.gz\""), "{disp}");
    let opts = CompareOptions {
        root_metadata: false,
        ..Default::default()
    };
    assert_trees_equal(&app.join("docs"), &tar_dir.join("docs"), &opts);
    let zip_dir = out.path().join("zip");
    let disp = archive_of(&server, &docs_url, Archive::Zip, &zip_dir);
    assert!(disp.contains("filename=\"docs.zip\""), "{disp}");
    let zip_opts = CompareOptions {
        skip: vec!["link".into()],
        ..opts.clone()
    };
    assert_trees_equal(&app.join("docs"), &zip_dir.join("docs"), &zip_opts);
    assert_eq!(
        fs::read_link(zip_dir.join("docs/link")).expect("a symlink"),
        Path::new("report.txt")
    );

    // The whole snapshot, named after it, holds the source at its absolute path.
    let whole = out.path().join("whole");
    let disp = archive_of(
        &server,
        &format!("snapshots/{id}/archive"),
        Archive::TarGz,
        &whole,
    );
    let short = &id[..8];
    assert!(disp.contains(&format!("snapshot-{short}.tar.gz")), "{disp}");
    let rel = app.strip_prefix("/").unwrap();
    // Names that are not UTF-8 keep their bytes in the tar, as restic's dump keeps them.
    assert_trees_equal(
        app,
        &whole.join(format!("snapshot-{short}")).join(rel),
        &opts,
    );
}

#[test]
fn missing_paths_snapshots_and_hosts_are_404() {
    let fleet = fleet();
    let server = Server::start(serve_args(&fleet.repo, &[]), &[]);
    let id = newest_id(&fleet.repo, "app-restash");
    let docs = path_url(&fleet.app.join("docs"));
    for url in [
        format!("snapshots/{id}/file/{docs}/nope.txt"),
        format!("snapshots/{id}/tree/{docs}/nope/"),
        format!("snapshots/{id}/archive/{docs}/nope/?format=zip"),
        format!("snapshots/{id}/archive/{docs}/nope/?format=tar.gz"),
        format!("snapshots/{id}/file/{docs}/report.txt/below"),
        "snapshots/00000000/tree/".to_string(),
        "snapshots/00000000/file/x".to_string(),
        "hosts/nobody".to_string(),
        "nothing/here".to_string(),
    ] {
        let f = curl(&server.url(&url), &[]);
        assert_eq!((f.curl, f.status), (0, 404), "{url}: {}", f.text());
    }
    // A folder is not a file, and a file not a folder.
    for url in [
        format!("snapshots/{id}/file/{docs}/data"),
        format!("snapshots/{id}/archive/{docs}/report.txt?format=zip"),
    ] {
        let f = curl(&server.url(&url), &[]);
        assert_eq!(f.status, 404, "{url}: {}", f.text());
    }
    let f = curl(
        &server.url(&format!("snapshots/{id}/archive/{docs}/?format=rar")),
        &[],
    );
    assert_eq!(f.status, 400, "{}", f.text());
    let f = curl(&server.url("api/volumes"), &["-X", "POST"]);
    assert_eq!(f.status, 405);
}

/// A repository with one restash snapshot of host `h`: a directory holding `name`, `len`
/// random bytes. Returns the directory owning both, the repository and the source.
fn repo_with_file(name: &str, len: u64, seed: u64) -> (tempfile::TempDir, Repo, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().unwrap();
    let repo = init_repo(Tool::Restash, &base.join("repo"), Some("2"));
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    common::tree::write_random_file(&src.join(name), len, seed);
    backup_as(Tool::Restash, &repo.path, "h", &src, None, &[]);
    (dir, repo, src)
}

fn small_repo() -> (tempfile::TempDir, Repo, PathBuf) {
    repo_with_file("f.bin", 40_000, 3)
}

fn status(server: &Server, path: &str, extra: &[&str]) -> u16 {
    let f = curl(&server.url(path), extra);
    assert_eq!(f.curl, 0, "{path}: {}", f.stderr);
    f.status
}

#[test]
fn a_token_is_required_as_bearer_or_basic_password() {
    let (dir, repo, src) = small_repo();
    let token = "s3cret-token-0123456789";
    let file = dir.path().join("token");
    fs::write(&file, format!("{token}\n")).unwrap();
    let server = Server::start(
        serve_args(&repo.path, &["--token-file", file.to_str().unwrap()]),
        &[],
    );
    assert!(server.stdout().contains("authentication required"));
    let bearer = format!("Authorization: Bearer {token}");
    let basic = format!("anyone:{token}");
    let id = newest_id(&repo.path, "h");
    let download = format!("snapshots/{id}/file/{}", path_url(&src.join("f.bin")));
    for path in ["", "api/volumes", "hosts/h", download.as_str()] {
        let f = curl(&server.url(path), &[]);
        assert_eq!(f.status, 401, "{path} without a token");
        assert!(f
            .header("www-authenticate")
            .unwrap_or("")
            .starts_with("Basic"));
        assert!(
            !f.text().contains("f.bin"),
            "nothing of the repository shows"
        );
        assert_eq!(status(&server, path, &["-H", &bearer]), 200, "{path}");
        assert_eq!(status(&server, path, &["-u", &basic]), 200, "{path}");
        let wrong = format!("Authorization: Bearer {token}x");
        assert_eq!(status(&server, path, &["-H", &wrong]), 401, "{path}");
        assert_eq!(
            status(&server, path, &["-u", "anyone:nope-nope-nope-nope"]),
            401
        );
    }
    assert_eq!(
        get(&server.url(&download), &["-H", &bearer]),
        fs::read(src.join("f.bin")).unwrap()
    );
    assert_eq!(
        get(&server.url("healthz"), &[]),
        b"ok\n",
        "health needs no token"
    );
    assert!(
        !server.stderr().contains(token),
        "the token is never logged"
    );
    drop(server);

    // From the environment.
    let server = Server::start(
        serve_args(&repo.path, &[]),
        &[("RESTASH_SERVE_TOKEN", token)],
    );
    assert_eq!(status(&server, "", &[]), 401);
    assert_eq!(status(&server, "", &["-H", &bearer]), 200);
    drop(server);

    // Too short to be a secret.
    fs::write(&file, "short").unwrap();
    let out = run_to_end(
        serve_args(&repo.path, &["--token-file", file.to_str().unwrap()]),
        &[],
    )
    .expect_code(1);
    assert!(out.stderr.contains("too short"), "{}", out.describe());
}

fn openssl(args: &[&str], stdin: &str) -> String {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("openssl (Debian's openssl package) is needed");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn htpasswd_users_get_in_and_others_do_not() {
    let (dir, repo, _src) = small_repo();
    let apr1 = openssl(&["passwd", "-apr1", "-stdin"], "pw-alice\n");
    let md5 = openssl(&["passwd", "-1", "-stdin"], "pw-bob\n");
    let sha1 = {
        let mut c = std::process::Command::new("sh");
        c.args([
            "-c",
            "printf %s pw-carol | openssl dgst -sha1 -binary | openssl base64",
        ]);
        String::from_utf8(c.output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    assert!(apr1.starts_with("$apr1$") && md5.starts_with("$1$"));
    let file = dir.path().join("htpasswd");
    fs::write(
        &file,
        format!("# users\nalice:{apr1}\nbob:{md5}\n\ncarol:{{SHA}}{sha1}\n"),
    )
    .unwrap();
    let server = Server::start(
        serve_args(&repo.path, &["--htpasswd", file.to_str().unwrap()]),
        &[],
    );
    for (user, pw, want) in [
        ("alice", "pw-alice", 200),
        ("bob", "pw-bob", 200),
        ("carol", "pw-carol", 200),
        ("alice", "pw-bob", 401),
        ("alice", "pw-alic", 401),
        ("mallory", "pw-alice", 401),
        ("", "pw-alice", 401),
    ] {
        let cred = format!("{user}:{pw}");
        assert_eq!(
            status(&server, "api/volumes", &["-u", &cred]),
            want,
            "{cred}"
        );
    }
    assert_eq!(status(&server, "api/volumes", &[]), 401);
    assert_eq!(status(&server, "healthz", &[]), 200);
    assert!(!server.stderr().contains("pw-"), "no password is logged");
    drop(server);

    // A line that cannot be used stops it before it serves anyone.
    fs::write(&file, format!("alice:{apr1}\ndave:plain-text\n")).unwrap();
    let out = run_to_end(
        serve_args(&repo.path, &["--htpasswd", file.to_str().unwrap()]),
        &[],
    )
    .expect_code(1);
    assert!(out.stderr.contains("line 2"), "{}", out.describe());
    assert!(!out.stdout_str().contains(READY));
}

#[test]
fn listening_beyond_localhost_needs_authentication() {
    let (dir, repo, _src) = small_repo();
    let out = run_to_end(
        with_repo(&repo.path, ["serve", "--listen", "0.0.0.0:0"]),
        &[],
    )
    .expect_code(1);
    assert!(
        out.stderr
            .contains("refusing to serve 0.0.0.0:0 without authentication")
            && out.stderr.contains("--htpasswd")
            && out.stderr.contains("--token-file"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout_str().contains(READY));

    // With a token it serves there (asked here through loopback only).
    let file = dir.path().join("token");
    fs::write(&file, "a-token-long-enough-1234").unwrap();
    let server = Server::start(
        with_repo(
            &repo.path,
            osargs!["serve", "--listen", "0.0.0.0:0", "--token-file", &file],
        ),
        &[],
    );
    assert!(
        server.base.starts_with("http://0.0.0.0:"),
        "{}",
        server.base
    );
    let local = format!("http://127.0.0.1:{}/", server.port());
    assert_eq!(get(&format!("{local}healthz"), &[]), b"ok\n");
    assert_eq!(curl(&local, &[]).status, 401);
}

#[test]
fn sigint_and_sigterm_stop_it() {
    let (_dir, repo, _src) = small_repo();
    for (sig, code) in [
        (rustix::process::Signal::Int, 130),
        (rustix::process::Signal::Term, 143),
    ] {
        let server = Server::start(serve_args(&repo.path, &[]), &[]);
        let base = server.base.clone();
        assert_eq!(get(&server.url("api/volumes"), &[])[0], b'[');
        server.signal(sig);
        let out = server.wait().expect_code(code);
        assert!(out.stdout_str().starts_with(READY), "{}", out.describe());
        let f = curl(&format!("{base}healthz"), &[]);
        assert_ne!(f.curl, 0, "nothing listens any more");
    }
    assert_eq!(lock_ids(&repo), Vec::<String>::new(), "no lock left behind");
}

#[test]
fn a_corrupted_pack_cuts_the_download_short() {
    let (_dir, repo, src) = repo_with_file("big.bin", 12_000_000, 5);
    // The file's data is the one large pack; its trees are in another.
    let pack = data_files(&repo.path)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("a data pack");
    let mut bytes = fs::read(&pack).unwrap();
    assert!(bytes.len() > 11_000_000, "{pack:?} holds the file's data");
    let at = bytes.len() * 3 / 4;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x5a;
    }
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&pack, &bytes).unwrap();

    let server = Server::start(serve_args(&repo.path, &[]), &[]);
    let id = newest_id(&repo.path, "h");
    let want = fs::read(src.join("big.bin")).unwrap();
    let f = curl(
        &server.url(&format!(
            "snapshots/{id}/file/{}",
            path_url(&src.join("big.bin"))
        )),
        &[],
    );
    assert_eq!(
        f.status, 200,
        "the head went out before the bad blob was read"
    );
    assert_eq!(
        f.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert_ne!(f.curl, 0, "curl took a broken download for a whole one");
    assert!(f.body.len() < want.len(), "{} bytes arrived", f.body.len());
    assert!(
        want.starts_with(&f.body),
        "what arrived is the file's start"
    );
    for format in ["tar.gz", "zip"] {
        let f = curl(
            &server.url(&format!(
                "snapshots/{id}/archive/{}/?format={format}",
                path_url(&src)
            )),
            &[],
        );
        assert_ne!((f.curl, f.status), (0, 200), "{format} looked complete");
    }
    assert_eq!(get(&server.url("healthz"), &[]), b"ok\n", "still serving");
    let log = server.stderr();
    assert!(log.contains("stopped"), "the failure is logged: {log}");
}

#[test]
fn sigint_during_a_download_stops_it_short() {
    use std::io::{Read, Write};
    // Larger than what the socket buffers of both ends hold, so the client cannot have it
    // all before the server stops.
    let len = 40_000_000;
    let (_dir, repo, src) = repo_with_file("big.bin", len, 6);
    let server = Server::start(serve_args(&repo.path, &[]), &[]);
    let id = newest_id(&repo.path, "h");
    let path = format!("/snapshots/{id}/file/{}", path_url(&src.join("big.bin")));
    // A client that reads the head and a little of the body, then stops reading.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = vec![0u8; 64 * 1024];
    conn.read_exact(&mut got)
        .expect("the start of the response");
    let head = String::from_utf8_lossy(&got[..got.len().min(1024)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {len}")),
        "{head}"
    );
    assert_ne!(
        lock_ids(&repo),
        Vec::<String>::new(),
        "the download holds a read lock"
    );

    server.signal(rustix::process::Signal::Int);
    let out = server.wait().expect_code(130);
    assert!(out.stdout_str().starts_with(READY), "{}", out.describe());
    // The download's thread ended before the process did, and removed its lock: a lock
    // left behind would block the next prune.
    assert_eq!(
        lock_ids(&repo),
        Vec::<String>::new(),
        "a read lock was left behind"
    );
    // What the kernel still held arrives, then the connection ends short of the length.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let end = conn.read_to_end(&mut rest);
    let total = got.len() + rest.len();
    assert!(
        total < len as usize,
        "the whole file arrived ({total} bytes, {end:?}) though the server stopped"
    );
}
