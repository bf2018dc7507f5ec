//! Browsing a repository on S3 (SeaweedFS, SigV4 enforced): `restash serve` lists hosts
//! written by restash and by restic 0.14 and a file downloads equal to its source, and
//! `restash mount` shows every file of a snapshot equal to its source. Outside CI a
//! missing server (or FUSE) skips a test loudly; under `CI=true` it fails it.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::fs;

use common::backup::{Background, Tool};
use common::mount::{compare, fuse_missing, wait_for, Unmount};
use common::serve::*;
use common::*;
use servers::{env_refs, restash_s3, restic_s3, seaweedfs, unique_name};

#[test]
fn serves_a_repository_on_s3() {
    let Some(sw) = seaweedfs() else { return };
    let env = sw.env();
    let url = sw.url(&unique_name("serve"));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().canonicalize().unwrap().join("src");
    common::backup::write_dataset(&src, 12, 3 << 20, 21);
    restash_s3(&url, osargs!["init"], &env).success();
    restash_s3(&url, osargs!["backup", "--host", "by-restash", &src], &env).success();
    restic_s3(&url, osargs!["backup", "--host", "by-restic", &src], &env).success();

    let server = Server::start(
        osargs!["-r", url, "serve", "--listen", "127.0.0.1:0"],
        &env_refs(&env),
    );
    let page = String::from_utf8(get(&server.url(""), &[])).expect("UTF-8 page");
    for host in ["by-restash", "by-restic"] {
        assert!(
            page.contains(&format!("<tr class=\"volume\" data-host=\"{host}\"")),
            "{host} in\n{page}"
        );
    }
    let vols = get_json(&server.url("api/volumes"), &[]);
    let vols = vols.as_array().expect("a list");
    let hosts: Vec<&str> = vols.iter().filter_map(|v| v["host"].as_str()).collect();
    assert_eq!(hosts, ["by-restash", "by-restic"], "one volume per host");
    let files = common::backup::count_regular_files(&src);
    let bytes = common::backup::tree_bytes(&src);
    for v in vols {
        assert_eq!(
            (v["files"].as_u64(), v["bytes"].as_u64()),
            (Some(files), Some(bytes)),
            "{v}"
        );
    }
    let rel = src.join("d05/f0005.bin");
    for v in vols {
        let id = v["last_snapshot"].as_str().expect("id");
        let got = get(
            &server.url(&format!("snapshots/{id}/file/{}", path_url(&rel))),
            &[],
        );
        assert!(
            got == fs::read(&rel).unwrap(),
            "{} differs from the source",
            v["host"]
        );
    }
}

#[test]
fn mounts_a_repository_on_s3() {
    if let Some(why) = fuse_missing() {
        servers::unavailable::<()>("FUSE", why);
        return;
    }
    let Some(sw) = seaweedfs() else { return };
    let env = sw.env();
    let url = sw.url(&unique_name("mount"));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().canonicalize().unwrap().join("src");
    common::backup::write_dataset(&src, 20, 2 << 20, 22);
    restash_s3(&url, osargs!["init"], &env).success();
    restash_s3(&url, osargs!["backup", "--host", "h", &src], &env).success();

    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let _unmount = Unmount(&mnt);
    let mut mount = Background::spawn(
        Tool::Restash,
        osargs!["-r", url, "mount", &mnt],
        &env_refs(&env),
        false,
    );
    wait_for("snapshots/ in the mount", &mut mount, || {
        mnt.join("snapshots").is_dir()
    });
    let mounted = mnt
        .join("hosts/h/latest")
        .join(src.strip_prefix("/").unwrap());
    let entries = compare(&src, &mounted);
    assert!(entries >= 20, "only {entries} entries compared");
    mount.signal(rustix::process::Signal::Int);
    mount.wait().expect_code(130);
}
