//! The container image as a Kubernetes Job runs it: FROM scratch, non-root, read-only root
//! file system, a tmpfs at /tmp, the data bind-mounted read-only at /data, the Secret's
//! files at /secrets, the repository on S3 (SeaweedFS on the host), the summary in
//! /dev/termination-log. A backup container, then a restore container into an empty
//! volume; the data must come back identical and restic 0.14 must check the repository.
//!
//! Needs `podman` (apt `podman buildah runc`). Without it the test prints a SKIP notice;
//! under CI (`CI` set) it fails instead, unless `RESTASH_SKIP_CONTAINER=1`. It builds the
//! static binary (profile `container`) and the image itself via scripts/build-image.sh.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::ffi::OsString;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost/restash:e2e-test";
/// jovyan in a JupyterHub user pod.
const UID: u32 = 1000;
const GID: u32 = 100;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Whether to run: podman present, or a loud skip (a failure under CI unless
/// RESTASH_SKIP_CONTAINER=1).
fn podman_available() -> bool {
    if std::env::var("RESTASH_SKIP_CONTAINER").is_ok_and(|v| v == "1") {
        eprintln!("\n*** SKIPPED: container test (RESTASH_SKIP_CONTAINER=1) ***\n");
        return false;
    }
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("podman is required under CI (apt install podman buildah runc), or set RESTASH_SKIP_CONTAINER=1");
    }
    eprintln!(
        "\n************************************************************\n\
         SKIPPED: container test: podman is not installed\n\
         (apt-get install podman buildah runc; under CI this is a failure)\n\
         ************************************************************\n"
    );
    false
}

/// podman with the two settings this sandbox needs (spec section 4): runc instead of
/// crun (cgroup hybrid mode) and ulimits below the hard limits (no CAP_SYS_RESOURCE).
struct Podman {
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\nruntime = \"runc\"\n",
        )
        .expect("containers.conf");
        Podman { conf, _dir: dir }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("CONTAINERS_CONF", &self.conf);
        c
    }

    fn build_image(&self) {
        let mut c = self.command("bash");
        c.arg(repo_root().join("scripts/build-image.sh")).arg(IMAGE);
        if let Ok(cargo) = std::env::var("CARGO") {
            c.env("CARGO", cargo);
        }
        // scripts/test.sh builds the whole suite static and says so: then the binary under
        // test is the one in the image (build-image.sh refuses a dynamic one), and CI saves
        // a second (release) build of every dependency.
        if std::env::var_os("RESTASH_TESTS_STATIC").is_some() {
            c.env("RESTASH_BIN", env!("CARGO_BIN_EXE_restash"));
        }
        let out = c.output().expect("run scripts/build-image.sh");
        assert!(
            out.status.success(),
            "building the image failed\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `podman run --rm` with `opts`, then the image and `args`.
    fn run(&self, opts: Vec<OsString>, args: &[&str]) -> CmdOutput {
        let mut c = self.command("podman");
        c.arg("run").arg("--rm").args(&opts).arg(IMAGE).args(args);
        let rendered = format!("podman run {opts:?} {IMAGE} {args:?}");
        let out = c.output().unwrap_or_else(|e| panic!("{rendered}: {e}"));
        common::run::cmd_output(rendered, out)
    }
}

fn chown_tree(root: &Path) {
    for p in common::tree::post_order(root) {
        std::os::unix::fs::lchown(&p, Some(UID), Some(GID)).expect("chown");
    }
}

/// A home volume as JupyterHub leaves it: owned by jovyan, some files private.
fn home_volume(dir: &Path) {
    common::backup::write_dataset(&dir.join("data"), 40, 6 << 20, 11);
    std::fs::create_dir_all(dir.join(".ssh")).expect("mkdir");
    std::fs::write(dir.join(".ssh/id_ed25519"), b"private key\n").expect("write");
    std::fs::set_permissions(dir.join(".ssh"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    std::fs::set_permissions(
        dir.join(".ssh/id_ed25519"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::write(dir.join("notebook.ipynb"), b"{\"cells\": []}\n").expect("write");
    std::os::unix::fs::symlink("notebook.ipynb", dir.join("latest.ipynb")).expect("symlink");
    chown_tree(dir);
}

fn mount(host: &Path, at: &str, ro: bool) -> OsString {
    let mut v = OsString::from(host);
    v.push(format!(":{at}{}", if ro { ":ro" } else { "" }));
    v
}

#[test]
fn job_style_backup_and_restore_in_the_image() {
    if !podman_available() {
        return;
    }
    let Some(s3) = servers::seaweedfs() else {
        return;
    };
    let podman = Podman::new();
    podman.build_image();

    let base = tempfile::tempdir().expect("tempdir");
    let base = base.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = base.join("claim-alice");
    std::fs::create_dir(&home).expect("mkdir");
    home_volume(&home);

    // The Secret, as Kubernetes mounts it: root-owned files readable by the pod.
    let secrets = base.join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value) in [
        ("RESTIC_PASSWORD", PASSWORD),
        ("AWS_ACCESS_KEY_ID", servers::S3_KEY),
        ("AWS_SECRET_ACCESS_KEY", servers::S3_SECRET),
    ] {
        let p = secrets.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    }
    let url = s3.url(&servers::unique_name("container"));
    let s3_env: Vec<(&str, String)> = s3.env();
    let s3_env_ref: Vec<(&str, &str)> = s3_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host_restic = |args: &[&str]| {
        let mut all = vec!["-r", url.as_str()];
        all.extend_from_slice(args);
        restic(all, &s3_env_ref)
    };
    host_restic(&["init"]).success();

    let termination_log = base.join("termination-log");
    std::fs::write(&termination_log, b"").expect("termination log");
    std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let job = |user: &str, extra: Vec<OsString>| -> Vec<OsString> {
        let mut o = osargs![
            "--user",
            user,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--network",
            "host",
            "-v",
            mount(&secrets, "/secrets", true),
            "-v",
            mount(&termination_log, "/dev/termination-log", false),
            "-e",
            format!("RESTIC_REPOSITORY={url}"),
            "-e",
            "RESTIC_PASSWORD_FILE=/secrets/RESTIC_PASSWORD",
            "-e",
            "AWS_ACCESS_KEY_ID_FILE=/secrets/AWS_ACCESS_KEY_ID",
            "-e",
            "AWS_SECRET_ACCESS_KEY_FILE=/secrets/AWS_SECRET_ACCESS_KEY",
            "-e",
            "AWS_DEFAULT_REGION=us-east-1",
            "-e",
            "RESTASH_PVC=claim-alice",
        ];
        o.extend(extra);
        o
    };
    let read_summary = |out: &CmdOutput| -> Value {
        for secret in [PASSWORD, servers::S3_SECRET] {
            assert!(
                !out.stdout_str().contains(secret) && !out.stderr.contains(secret),
                "a secret is in the output\n{}",
                out.describe()
            );
        }
        assert!(
            !out.stdout.contains(&0x1b),
            "ANSI escape\n{}",
            out.describe()
        );
        let lines = out.json_lines();
        let text = std::fs::read_to_string(&termination_log).expect("termination log");
        let written: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("termination log is not JSON ({e}): {text:?}"));
        assert_eq!(Some(&written), lines.last(), "{}", out.describe());
        written
    };

    // The Job as jovyan: the data read-only.
    let out = podman.run(
        job(
            &format!("{UID}:{GID}"),
            osargs!["-v", mount(&home, "/data", true)],
        ),
        &["backup", "/data"],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = read_summary(&out);
    assert_eq!(summary["status"], "success", "{summary}");
    assert_eq!(summary["host"], "claim-alice");
    let files = common::backup::count_regular_files(&home);
    assert_eq!(summary["files_new"].as_u64(), Some(files), "{summary}");

    // The image's own user (65532) reads jovyan's private files only with DAC_READ_SEARCH;
    // podman gives a non-root user the added capability in its effective set.
    let out = podman.run(
        job(
            "65532:65532",
            osargs![
                "--cap-add",
                "DAC_READ_SEARCH",
                "-v",
                mount(&home, "/data", true)
            ],
        ),
        &["backup", "/data"],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = read_summary(&out);
    assert_eq!(
        summary["files_unmodified"].as_u64(),
        Some(files),
        "{summary}"
    );

    // Restore into an empty volume owned by jovyan.
    let volume = base.join("new-volume");
    std::fs::create_dir(&volume).expect("mkdir");
    chown(&volume, Some(UID), Some(GID)).expect("chown");
    let out = podman.run(
        job(
            &format!("{UID}:{GID}"),
            osargs!["-v", mount(&volume, "/restore", false)],
        ),
        &[
            "restore",
            "latest",
            "--host",
            "claim-alice",
            "--target",
            "/restore",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let summary = read_summary(&out);
    assert_eq!(summary["command"], "restore");
    assert_eq!(summary["status"], "success", "{summary}");
    assert_eq!(summary["files_restored"].as_u64(), Some(files), "{summary}");
    assert_trees_equal(&home, &volume.join("data"), &CompareOptions::default());

    let snaps = host_restic(&["snapshots", "--json"]).success().json();
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|s| s["hostname"] == "claim-alice"
        && s["tags"] == serde_json::json!(["pvc=claim-alice"])
        && s["paths"] == serde_json::json!(["/data"])));
    host_restic(&["check", "--read-data"]).success();

    // TLS with no CA files in the image: reqwest's platform verifier alone finds no roots
    // and cannot even build a client ("HTTP client: builder error"); with the bundled roots
    // merged in, the client is built and the run gets as far as the (closed) port.
    let port = servers::free_port().to_string();
    for url in [
        format!("rest:https://127.0.0.1:{port}/"),
        format!("s3:https://127.0.0.1:{port}/bucket"),
    ] {
        let out = podman.run(
            osargs![
                "--read-only",
                "--network",
                "host",
                "-e",
                "RESTIC_PASSWORD=x",
                "-e",
                "AWS_ACCESS_KEY_ID=k",
                "-e",
                "AWS_SECRET_ACCESS_KEY=s",
            ],
            &["-r", &url, "-o", "max-retries=0", "snapshots"],
        );
        assert_eq!(out.code, 1, "{}", out.describe());
        assert!(
            !out.stderr.contains("HTTP client") && !out.stderr.contains("builder error"),
            "no HTTPS client without CA files\n{}",
            out.describe()
        );
        assert!(
            out.stderr.contains("onnect"),
            "expected a connection error\n{}",
            out.describe()
        );
    }
}
