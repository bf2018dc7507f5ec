//! The generated manifests run as a pod would run them, against a real S3 server
//! (SeaweedFS): the Secret's `data` decoded into files under `/secrets` (mode 0440, group =
//! fsGroup, as the kubelet writes them), the PVC bind-mounted at `/data` (read-only for a
//! backup), a fresh `/tmp`, and the container's exact `env` and `args` run by the real binary
//! in a private mount namespace and chroot, under the identity of the securityContext. The
//! backup Job's snapshot carries the PVC as host and the pvc/user tags; the restore Job puts
//! the volume back as it was, into another PVC, and one directory alone with `--path`.
//!
//! Needs root (mount namespace, chroot, setpriv); skipped otherwise. SeaweedFS is required
//! under `CI=true`, as in the S3 tests.
mod common;
#[path = "common/k8s.rs"]
mod k8s;
#[path = "common/servers.rs"]
mod servers;

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::run::{restash_bin, run_cmd};
use common::{assert_trees_equal, restash, CmdOutput, CompareOptions};
use k8s::*;
use serde_json::Value;

/// Builds the pod's file system and runs `chroot ROOT command…` in a private mount
/// namespace: `$1` root, `$2` volume, `$3` ro|rw|none, `$4` secrets dir, `$5` directory of the
/// binary (mounted at /restash), `$6` file shown as /dev/termination-log; the rest is run.
const POD: &str = r#"
set -eu
R=$1 DATA=$2 MODE=$3 SECRETS=$4 BIN=$5 TERM=$6; shift 6
mount -t tmpfs -o mode=755 tmpfs "$R"
for d in usr etc; do mkdir "$R/$d"; mount --rbind "/$d" "$R/$d"; done
for l in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"
  elif [ -d "/$l" ]; then mkdir "$R/$l"; mount --rbind "/$l" "$R/$l"; fi
done
mkdir -p "$R/data" "$R/secrets" "$R/tmp" "$R/dev" "$R/restash" "$R/proc"
chmod 1777 "$R/tmp"
if [ "$MODE" != none ]; then mount --bind "$DATA" "$R/data"; fi
if [ "$MODE" = ro ]; then mount -o remount,bind,ro "$R/data"; fi
mount --bind "$SECRETS" "$R/secrets"; mount -o remount,bind,ro "$R/secrets"
mount --bind "$BIN" "$R/restash"
for n in null zero urandom random; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
touch "$R/dev/termination-log"; mount --bind "$TERM" "$R/dev/termination-log"
mount -t proc proc "$R/proc" 2>/dev/null || true
# The root file system is read-only, as readOnlyRootFilesystem makes it.
mount -o remount,ro "$R"
exec chroot "$R" "$@"
"#;

struct Pod {
    dir: tempfile::TempDir,
    secrets: PathBuf,
}

impl Pod {
    /// Writes the Secret manifest's keys as the kubelet does (root-owned, group fsGroup 100;
    /// the mode comes from each Job's volume).
    fn new(secret: &Value) -> Pod {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        for (k, v) in secret["data"].as_object().unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            let f = secrets.join(k);
            std::fs::write(&f, bytes).unwrap();
            chown(&f, Some(0), Some(100)).unwrap();
        }
        Pod { dir, secrets }
    }

    /// Runs the Job's container with `pvc_dir` at /data; returns its output and the
    /// termination message.
    fn run(&self, job: &Value, pvc_dir: &Path) -> (CmdOutput, String) {
        let c = container(job);
        let mode_of_data = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/data")
            .map(|m| if m["readOnly"] == true { "ro" } else { "rw" })
            .unwrap_or("none");
        // The kubelet gives the Secret's files the volume's defaultMode.
        let mode = volume(job, "secrets")["secret"]["defaultMode"]
            .as_u64()
            .unwrap() as u32;
        for f in std::fs::read_dir(&self.secrets).unwrap() {
            let f = f.unwrap().path();
            std::fs::set_permissions(&f, PermissionsExt::from_mode(mode)).unwrap();
        }
        let root = self.dir.path().join("root");
        let _ = std::fs::create_dir(&root);
        let term = self.dir.path().join("termination-log");
        std::fs::write(&term, "").unwrap();
        std::fs::set_permissions(&term, PermissionsExt::from_mode(0o666)).unwrap();
        let bin = restash_bin();
        let mut argv: Vec<String> = vec!["-c".into(), POD.into(), "pod".into()];
        for p in [&root, pvc_dir] {
            argv.push(p.display().to_string());
        }
        argv.push(mode_of_data.into());
        argv.push(self.secrets.display().to_string());
        argv.push(bin.parent().unwrap().display().to_string());
        argv.push(term.display().to_string());
        // Only the container's environment: `env -i` drops everything the test has.
        argv.push("/usr/bin/env".into());
        argv.push("-i".into());
        argv.extend(env(job).into_iter().map(|(k, v)| format!("{k}={v}")));
        argv.push("/usr/bin/setpriv".into());
        argv.extend(identity_of(job));
        argv.push(format!(
            "/restash/{}",
            bin.file_name().unwrap().to_str().unwrap()
        ));
        argv.extend(contract_args(job));
        let mut all = vec![
            "--mount".to_string(),
            "--propagation".into(),
            "private".into(),
            "bash".into(),
        ];
        all.extend(argv);
        let out = run_cmd(Path::new("/usr/bin/unshare"), &all, &[]);
        let msg = std::fs::read_to_string(&term).unwrap();
        (out, msg)
    }
}

/// Whether `restash <words> --help` mentions `text` (commands and flags other helpers add).
fn binary_has(words: &[&str], text: &str) -> bool {
    let mut a = words.to_vec();
    a.push("--help");
    let help = restash(a, &[]);
    help.code == 0 && String::from_utf8_lossy(&help.stdout).contains(text)
}

/// Whether the binary under test has `backup --termination-log` (the agent side of the
/// identity contract, landed separately).
fn has_termination_log() -> bool {
    binary_has(&["backup"], "--termination-log")
}

/// The container's arguments; without `--termination-log FILE` (and a loud notice) while the
/// binary under test does not have that flag yet.
fn contract_args(job: &Value) -> Vec<String> {
    let a = args(job);
    if !a.iter().any(|x| x == "--termination-log") || has_termination_log() {
        return a;
    }
    eprintln!(
        "NOTE: this restash has no `backup --termination-log` yet: the pod runs without it \
         (every other argument as in the manifest)"
    );
    let mut out = vec![];
    let mut it = a.into_iter();
    while let Some(x) = it.next() {
        if x == "--termination-log" {
            it.next();
        } else {
            out.push(x);
        }
    }
    out
}

/// A small volume as Zero to JupyterHub leaves it: everything jovyan's (1000:100).
fn user_volume(base: &Path) -> PathBuf {
    let v = base.join("claim-alice");
    for d in ["", "work/project", "work/other", ".cache"] {
        std::fs::create_dir_all(v.join(d)).unwrap();
    }
    std::fs::write(v.join("notebook.ipynb"), "{\"cells\": []}\n").unwrap();
    std::fs::write(v.join("work/project/data.csv"), "a,b\n1,2\n".repeat(5000)).unwrap();
    std::fs::write(v.join("work/other/notes.md"), "# notes\n").unwrap();
    std::fs::write(v.join(".cache/big"), vec![7u8; 100_000]).unwrap();
    let walk = walkdir(&v);
    for p in walk {
        chown(&p, Some(1000), Some(100)).unwrap();
    }
    v
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut kids: Vec<PathBuf> = std::fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// An empty PVC as a provisioner hands it out (root-owned 0755; fsGroup is applied by the
/// kubelet: group 100, group-writable, setgid).
fn empty_volume(base: &Path, name: &str) -> PathBuf {
    let v = base.join(name);
    std::fs::create_dir(&v).unwrap();
    chown(&v, Some(0), Some(100)).unwrap();
    std::fs::set_permissions(&v, PermissionsExt::from_mode(0o2775)).unwrap();
    v
}

#[test]
fn backup_and_restore_jobs_run_as_pods_against_s3() {
    if !common::is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED: needs root (mount namespace, chroot, setpriv) to play the pod");
        return;
    }
    let Some(sw) = servers::seaweedfs() else {
        return;
    };
    let repo = sw.url(&servers::unique_name("k8s"));
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), PermissionsExt::from_mode(0o755)).unwrap();

    // The credentials as an operator has them, turned into the Secret manifest.
    let creds = base.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let password = "k8s-pod-Passw0rd";
    std::fs::write(creds.join("RESTIC_PASSWORD"), format!("{password}\n")).unwrap();
    std::fs::write(
        creds.join("AWS_ACCESS_KEY_ID"),
        format!("{}\n", servers::S3_KEY),
    )
    .unwrap();
    let secret_file = creds.join("AWS_SECRET_ACCESS_KEY");
    std::fs::write(secret_file, format!("{}\n", servers::S3_SECRET)).unwrap();
    let secret = &k8s(&format!(
        "secret --from-file {} --repository {repo}",
        creds.display()
    ))[0];
    let pod = Pod::new(secret);
    let mut env_init: Vec<(&str, String)> = sw.env();
    env_init.push(("RESTIC_PASSWORD", password.into()));
    let env_refs: Vec<(&str, &str)> = env_init.iter().map(|(k, v)| (*k, v.as_str())).collect();
    restash(["-r", repo.as_str(), "init"], &env_refs).success();

    // Backup Job: read-only volume, jovyan, the identity arguments.
    let vol = user_volume(base.path());
    let job = &k8s("job --pvc claim-alice --exclude /data/.cache --name-suffix t")[0];
    let (out, msg) = pod.run(job, &vol);
    let out = out.success();
    if has_termination_log() {
        assert!(!msg.is_empty(), "a termination message\n{}", out.describe());
    }
    let snaps = restash(["-r", repo.as_str(), "snapshots", "--json"], &env_refs).success();
    let snaps = snaps.json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{}", out.describe());
    assert_eq!(snaps[0]["hostname"], "claim-alice");
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/data"]));
    let mut tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["pvc=claim-alice", "user=alice"]);

    // Restore Job into another, empty PVC: the volume as it was, without the excluded cache.
    let target = empty_volume(base.path(), "claim-alice-restored");
    let job =
        &k8s("restore --pvc claim-alice --target-pvc claim-alice-restored=alice --name-suffix r")
            [0];
    pod.run(job, &target).0.success();
    let opts = CompareOptions {
        root_metadata: false,
        skip: vec![PathBuf::from(".cache")],
        ..CompareOptions::default()
    };
    assert!(
        !target.join(".cache").exists(),
        "excluded directory restored"
    );
    assert_trees_equal(&vol, &target, &opts);

    // --path: one directory alone, into a volume that has other files.
    let partial = empty_volume(base.path(), "claim-alice-partial");
    std::fs::write(partial.join("keep.txt"), "mine").unwrap();
    let job = &k8s("restore --pvc claim-alice --target-pvc claim-alice-partial=alice --path work/project --name-suffix p")[0];
    pod.run(job, &partial).0.success();
    assert_trees_equal(
        &vol.join("work/project"),
        &partial.join("work/project"),
        // As restic, `restore snap:sub` does not give the target directory itself the
        // snapshot's metadata.
        &CompareOptions {
            root_metadata: false,
            ..CompareOptions::default()
        },
    );
    assert!(partial.join("keep.txt").exists());
    assert!(!partial.join("work/other").exists() && !partial.join("notebook.ipynb").exists());

    // Retention after the backup and the prune CronJob, once the binary has them.
    if binary_has(&["backup"], "--forget") {
        let job = &k8s("job --pvc claim-alice --keep-daily 1 --name-suffix f")[0];
        let (out, msg) = pod.run(job, &vol);
        let out = out.success();
        // The second backup of the volume found its parent by its hint, read no other
        // volume's snapshots or index, and applied its policy to the snapshots the hint
        // names.
        let said = format!("{msg}{}", out.stdout_str());
        for counter in [r#""parent_by_hint":1"#, r#""forget_by_hint":1"#] {
            assert!(
                said.contains(counter),
                "{counter}: {msg}\n{}",
                out.describe()
            );
        }
        let snaps = restash(["-r", repo.as_str(), "snapshots", "--json"], &env_refs).success();
        assert_eq!(snaps.json().as_array().unwrap().len(), 1, "one daily kept");
    } else {
        eprintln!("NOTE: this restash has no `backup --forget` yet: retention not run");
    }
    if binary_has(&["prune"], "prune") {
        // The fleet's retention in the weekly pass: forget --keep-daily 1 --prune.
        let cron = &k8s("prune --keep-daily 1")[0];
        let job = serde_json::json!({
            "kind": "Job",
            "spec": cron["spec"]["jobTemplate"]["spec"].clone(),
        });
        pod.run(&job, Path::new("/nonexistent")).0.success();
        let snaps = restash(["-r", repo.as_str(), "snapshots", "--json"], &env_refs).success();
        assert_eq!(snaps.json().as_array().unwrap().len(), 1, "the daily kept");
        restash(["-r", repo.as_str(), "check"], &env_refs).success();
    } else {
        eprintln!("NOTE: this restash has no `prune` yet: the prune CronJob's pod not run");
    }
}
