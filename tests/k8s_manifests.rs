//! `restash k8s …` manifests: every kind (Secret, backup CronJobs for PVCs from flags and a
//! `kubectl get pvc -o name` list, one-off Jobs, restore Jobs, the prune CronJob, root mode,
//! a CA bundle from a Secret or a ConfigMap, the web view's Deployment, Service and token
//! Secret) validated by PyPI `kubernetes-validate
//! --strict` against the Kubernetes 1.28, 1.31 and 1.34 schemas, and a broken manifest
//! failing it; the YAML read back by PyYAML (a YAML 1.1 reader, as go-yaml v2 is) equals
//! the JSON output; and the rules no schema checks: Jobs never restart in place, distinct
//! staggered start minutes inside the window, the host/tag identity arguments, the
//! podAffinity label, credentials only as files and never in args or env, the hardening of
//! every pod, the CA bundle mounted read-only and named by RESTIC_CACERT. As root, the real
//! binary runs under the identity each manifest asks for (setpriv: uid, gid, fsGroup,
//! bounding and inheritable capabilities, no_new_privs), showing what docs/kubernetes.md
//! claims about the two identities.
//!
//! kubernetes-validate is installed into the repository's `.venv` by
//! `scripts/k8s-validate.sh`; if that fails the tests skip loudly, and fail under `CI=true`.
mod common;
#[path = "common/k8s.rs"]
mod k8s;
#[path = "common/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::run::{cmd_output, restash_bin};
use k8s::*;
use serde_json::{json, Value};

/// Secret values distinctive enough to be searched for in every other manifest.
const PASSWORD: &str = "pw-K8s-Secr3t-value";
const KEY_ID: &str = "AKIAK8SEXAMPLEKEYID";
const SECRET_KEY: &str = "sk-K8s-wJalrXUtnFEMI-K7MDENG";
const REPO_URL: &str = "s3:https://osn.example.org/jetstream-backup/restash";

/// A directory with the three credential files (trailing newlines) and an unrelated file.
fn credentials_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let put = |name: &str, text: String| std::fs::write(d.path().join(name), text).unwrap();
    put("RESTIC_PASSWORD", format!("{PASSWORD}\n"));
    put("AWS_ACCESS_KEY_ID", format!("{KEY_ID}\n"));
    put("AWS_SECRET_ACCESS_KEY", format!("{SECRET_KEY}\r\n"));
    put("unrelated.txt", "not a key".into());
    d
}

/// Two PVCs as `kubectl get pvc -o name` prints them, a blank line, a comment, a user.
fn pvc_list_file(dir: &Path) -> PathBuf {
    let p = dir.join("pvcs.txt");
    let text = "persistentvolumeclaim/claim-bob\n\n# a comment\n\
                persistentvolumeclaim/claim-carol=carol.c\n";
    std::fs::write(&p, text).unwrap();
    p
}

/// Exclude patterns a careless YAML writer would turn into booleans, numbers, null,
/// aliases, anchors, comments, mappings or line breaks.
const TRICKY: &[&str] = &[
    "on",
    "no",
    "03",
    "*",
    "~",
    "null",
    "1e3",
    "*.ipynb_checkpoints",
    "a: b",
    "# not a comment",
    "'quoted'",
    "\"dq\"",
    "back\\slash",
    "tab\there",
    "nel\u{85}x",
    "ünïcödé",
    "- dash",
    "&anchor",
];

/// Every kind of manifest: (file name, command line after `restash k8s`).
fn all_command_lines(creds: &Path, list: &Path) -> Vec<(&'static str, Vec<String>)> {
    let (c, l) = (creds.display(), list.display());
    let mut backup = words(&format!(
        "backup --pvc claim-alice --pvc-file {l} --window 03:00-04:00 \
         --time-zone America/Chicago --keep-daily 7 --keep-weekly 4 --keep-monthly 6 \
         --env AWS_DEFAULT_REGION=us-east-1"
    ));
    // `--exclude=…`: a value starting with '-' is not taken for a flag.
    backup.extend(TRICKY.iter().map(|t| format!("--exclude={t}")));
    vec![
        (
            "secret-dir",
            words(&format!("secret --from-file {c} --repository {REPO_URL}")),
        ),
        (
            "secret-files",
            words(&format!(
                "secret --name restash-osn --namespace hub2 \
                 --from-file RESTIC_PASSWORD={c}/RESTIC_PASSWORD \
                 --from-file AWS_ACCESS_KEY_ID={c}/AWS_ACCESS_KEY_ID \
                 --from-file {c}/AWS_SECRET_ACCESS_KEY"
            )),
        ),
        ("backup-cronjobs", backup),
        (
            "backup-root-suspended",
            words(&format!(
                "backup --pvc claim-alice --privileged-read --suspend --schedule '*/10 * * * *' \
                 --repository {REPO_URL} --cpu 100m --cpu-limit none --memory-limit none \
                 --image registry.example/restash:dev"
            )),
        ),
        (
            "backup-one-off",
            words("backup --one-off --pvc claim-alice --pvc claim-bob --name-suffix manual1"),
        ),
        (
            "job",
            words(
                "job --pvc claim-carol=carol.c --deadline 600 --name-suffix j1 --skip-if-unchanged",
            ),
        ),
        (
            "restore-latest",
            words("restore --pvc claim-alice --name-suffix r1"),
        ),
        (
            "restore-path-other-pvc",
            words(
                "restore --pvc claim-alice --snapshot 79766175 --target-pvc \
                 claim-alice-restored=alice --path work/project --name-suffix r2",
            ),
        ),
        (
            "restore-root",
            words("restore --pvc claim-bob --privileged-read --name-suffix r3"),
        ),
        (
            "prune",
            words("prune --schedule '0 5 * * 0' --time-zone America/Chicago --suspend"),
        ),
        (
            "backup-ca-secret",
            words("backup --pvc claim-alice --privileged-read --ca-secret osn-ca"),
        ),
        (
            "restore-ca-configmap",
            words(
                "restore --pvc claim-alice --ca-configmap osn-ca-bundle --ca-key bundle.pem \
                 --name-suffix r4",
            ),
        ),
        ("prune-ca-secret", words("prune --ca-secret osn-ca")),
        ("prune-keep", words("prune --keep-daily 7 --keep-weekly 4")),
        (
            "serve",
            words("serve --ca-configmap osn-ca --stale-after 50h"),
        ),
        (
            "serve-token-secret",
            words("serve --name web -n hub2 --token-secret web-auth --token-key t.txt"),
        ),
    ]
}

#[test]
fn every_manifest_validates_against_1_28_1_31_and_1_34() {
    let Some(bin) = validator() else { return };
    let creds = credentials_dir();
    let dir = tempfile::tempdir().unwrap();
    let list = pvc_list_file(dir.path());
    let mut files = vec![];
    let mut docs = 0;
    for (name, args) in all_command_lines(creds.path(), &list) {
        let yaml = k8s_yaml(&args);
        docs += yaml.lines().filter(|l| *l == "---").count();
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        files.push(path);
    }
    // 2 Secrets, 3 + 1 + 1 CronJobs, 2 + 1 Jobs, 4 restore Jobs, 3 prune CronJobs, and the
    // web view's token Secret, 2 Deployments and 2 Services.
    assert_eq!(docs, 22);
    for version in ["1.28", "1.31", "1.34"] {
        let out = validate(bin, version, &files).success();
        let passed = out.stdout_str().matches("passed for resource").count();
        assert_eq!(passed, docs, "every document validated\n{}", out.describe());
    }
}

#[test]
fn a_wrong_manifest_fails_validation() {
    let Some(bin) = validator() else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = k8s("job --pvc claim-alice --name-suffix x").remove(0);
    let mut unknown = good.clone();
    unknown["spec"]["backofflimit"] = json!(2);
    let mut wrong_type = good.clone();
    wrong_type["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!(5);
    let mut no_schedule = k8s("prune").remove(0);
    no_schedule["spec"]
        .as_object_mut()
        .unwrap()
        .remove("schedule");
    for (name, doc, why) in [
        ("unknown", unknown, "'backofflimit' was unexpected"),
        ("type", wrong_type, "is not of type 'string'"),
        ("required", no_schedule, "'schedule' is a required property"),
        ("good", good, ""),
    ] {
        // JSON is YAML: the validator reads it as it is.
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        for version in ["1.28", "1.31"] {
            let out = validate(bin, version, std::slice::from_ref(&path));
            if why.is_empty() {
                out.success();
                continue;
            }
            assert_ne!(out.code, 0, "{name} must fail\n{}", out.describe());
            let text = format!("{}{}", out.stdout_str(), out.stderr);
            assert!(text.contains(why), "{name}: {why}\n{}", out.describe());
        }
    }
}

/// PyYAML (YAML 1.1, like go-yaml v2 behind kubectl) reads the YAML output back into
/// exactly the JSON output: no string became a boolean, number, null or alias.
#[test]
fn yaml_reads_back_as_the_json_output() {
    let Some(bin) = validator() else { return };
    let python = bin.with_file_name("python");
    let creds = credentials_dir();
    let dir = tempfile::tempdir().unwrap();
    let list = pvc_list_file(dir.path());
    let script = "import json, sys, yaml\n\
                  print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')))))";
    for (name, args) in all_command_lines(creds.path(), &list) {
        let yaml = k8s_yaml(&args);
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &yaml).unwrap();
        let out = Command::new(&python)
            .args(["-c", script])
            .arg(&path)
            .output();
        let out = cmd_output(format!("python yaml.safe_load_all {name}"), out.unwrap()).success();
        let mut parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut json = Value::Array(k8s_json(&args));
        // Each run makes a new web view token: compare all else.
        for docs in [&mut parsed, &mut json] {
            for d in docs.as_array_mut().unwrap() {
                if d["kind"] == "Secret" && d["metadata"]["name"] == "restash-serve-token" {
                    assert_eq!(d["data"]["token"].as_str().unwrap().len(), 88, "{d}");
                    d["data"]["token"] = json!("");
                }
            }
        }
        assert_eq!(parsed, json, "{name}: YAML and JSON differ\n{yaml}");
    }
}

/// Rules every Job pod follows, whatever it does.
fn assert_job_rules(doc: &Value, secret_name: &str) {
    let pod = pod_spec(doc);
    let restart = pod["restartPolicy"].as_str().unwrap();
    assert!(restart == "Never" || restart == "OnFailure", "{restart}");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = container(doc);
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert!(c.get("envFrom").is_none(), "no envFrom");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // Credentials only as files: the Secret is a read-only volume, the env points at it.
    assert_eq!(volume(doc, "secrets")["secret"]["secretName"], secret_name);
    assert_eq!(mount(doc, "secrets")["mountPath"], "/secrets");
    assert_eq!(mount(doc, "secrets")["readOnly"], true);
    assert!(volume(doc, "tmp").get("emptyDir").is_some());
    assert_eq!(mount(doc, "tmp")["mountPath"], "/tmp");
    for key in [
        "RESTIC_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert_eq!(
            env_get(doc, &format!("{key}_FILE")),
            Some(format!("/secrets/{key}"))
        );
        assert_eq!(env_get(doc, key), None);
    }
    assert_eq!(env_get(doc, "TMPDIR").as_deref(), Some("/tmp"));
    assert_eq!(
        env_get(doc, "RESTIC_CACHE_DIR").as_deref(),
        Some("/tmp/restash-cache")
    );
    assert_eq!(
        doc["metadata"]["labels"]["app.kubernetes.io/name"],
        "restash"
    );
    assert_no_secret_values(&doc.to_string());
}

fn assert_no_secret_values(text: &str) {
    for v in [PASSWORD, KEY_ID, SECRET_KEY] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(v);
        assert!(
            !text.contains(v) && !text.contains(&b64),
            "a secret value leaked:\n{text}"
        );
    }
}

#[test]
fn backup_cronjobs_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let list = pvc_list_file(dir.path());
    let docs = k8s(&format!(
        "backup --pvc-file {} --pvc claim-alice --window 03:00-04:00 \
         --time-zone America/Chicago --exclude .cache --keep-daily 7",
        list.display()
    ));
    assert_eq!(docs.len(), 3);
    let mut minutes = vec![];
    let expected = [
        ("claim-alice", "alice"),
        ("claim-bob", "bob"),
        ("claim-carol", "carol.c"),
    ];
    for (doc, (pvc, user)) in docs.iter().zip(expected) {
        assert_eq!(doc["kind"], "CronJob");
        assert_eq!(doc["metadata"]["name"], format!("restash-backup-{pvc}"));
        assert_eq!(doc["metadata"]["namespace"], "jhub");
        let spec = &doc["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["timeZone"], "America/Chicago");
        assert_eq!(spec["suspend"], false);
        let sched: Vec<&str> = spec["schedule"].as_str().unwrap().split(' ').collect();
        assert_eq!(sched[1..], ["3", "*", "*", "*"], "inside 03:00-04:00");
        minutes.push(sched[0].parse::<u32>().unwrap());
        assert_job_rules(doc, "restash");
        let want = format!(
            "backup /data --host {pvc} --tag pvc={pvc} --tag user={user} \
             --termination-log /dev/termination-log --exclude .cache \
             --forget --keep-daily 7 --retry-lock 30m"
        );
        assert_eq!(args(doc), words(&want));
        assert_eq!(env_get(doc, "RESTASH_PVC").as_deref(), Some(pvc));
        let repo_file = env_get(doc, "RESTIC_REPOSITORY_FILE");
        assert_eq!(repo_file.as_deref(), Some("/secrets/RESTIC_REPOSITORY"));
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/component"], "backup");
        assert_eq!(labels["restash/pvc"], pvc);
        let term = affinity_term(doc);
        assert_eq!(
            term["labelSelector"]["matchLabels"]["hub.jupyter.org/username"],
            user
        );
        assert_eq!(
            term["labelSelector"]["matchLabels"]["component"],
            "singleuser-server"
        );
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        // jovyan, no capabilities, the claim read-only.
        let pod = pod_spec(doc);
        assert_eq!(pod["securityContext"]["runAsUser"], 1000);
        assert_eq!(pod["securityContext"]["fsGroup"], 100);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let sc = &container(doc)["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert!(sc["capabilities"].get("add").is_none());
        let claim = &volume(doc, "data")["persistentVolumeClaim"];
        assert_eq!(claim, &json!({"claimName": pvc, "readOnly": true}));
        assert_eq!(mount(doc, "data")["mountPath"], "/data");
        assert_eq!(mount(doc, "data")["readOnly"], true);
    }
    assert_eq!(minutes, [0, 20, 40], "staggered evenly, distinct");
}

#[test]
fn sixty_pvcs_from_stdin_get_sixty_distinct_minutes_across_midnight() {
    let names: String = (0..60)
        .map(|i| format!("persistentvolumeclaim/claim-u{i:02}\n"))
        .collect();
    let line = "backup --pvc-file - --window 23:30-00:30";
    let docs = k8s_stdin(line, &names, true).success().json()["items"].clone();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 60);
    let mut times: Vec<(u32, u32)> = docs
        .iter()
        .map(|d| {
            let s = d["spec"]["schedule"].as_str().unwrap();
            let f: Vec<u32> = s.split(' ').take(2).map(|x| x.parse().unwrap()).collect();
            (f[1], f[0])
        })
        .collect();
    let inside = |&(h, m): &(u32, u32)| (h == 23 && m >= 30) || (h == 0 && m < 30);
    assert!(times.iter().all(inside), "{times:?}");
    times.sort();
    times.dedup();
    assert_eq!(times.len(), 60, "distinct start minutes");
    // The same list in another order gives the same manifests (sorted by PVC name).
    let reversed: String = names.lines().rev().map(|l| format!("{l}\n")).collect();
    let again = k8s_stdin(line, &reversed, true).success().json();
    assert_eq!(&again["items"], &Value::Array(docs.clone()));
}

#[test]
fn root_mode_adds_only_the_needed_capabilities() {
    let backup = k8s("job --pvc claim-alice --privileged-read --name-suffix a");
    let restore = k8s("restore --pvc claim-alice --privileged-read --name-suffix b");
    for (doc, caps) in [
        (&backup[0], json!(["DAC_READ_SEARCH"])),
        (
            &restore[0],
            json!(["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]),
        ),
    ] {
        assert_job_rules(doc, "restash");
        let sc = &container(doc)["securityContext"];
        assert_eq!(pod_spec(doc)["securityContext"]["runAsUser"], 0);
        assert_eq!(sc["runAsUser"], 0);
        assert_eq!(sc["runAsNonRoot"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["capabilities"]["add"], caps);
    }
}

#[test]
fn one_off_backup_jobs() {
    let jobs = k8s("backup --one-off --pvc claim-bob --pvc claim-alice --name-suffix m1");
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "restash-backup-claim-alice-m1",
            "restash-backup-claim-bob-m1"
        ]
    );
    for (j, pvc) in jobs.iter().zip(["claim-alice", "claim-bob"]) {
        assert_eq!(j["kind"], "Job");
        assert_job_rules(j, "restash");
        assert_eq!(args(j)[..4], ["backup", "/data", "--host", pvc]);
    }
    // A default name carries the time, so two runs do not collide.
    let j = k8s("job --pvc claim-alice");
    let n = j[0]["metadata"]["name"].as_str().unwrap();
    assert!(
        n.starts_with("restash-backup-claim-alice-2") && n.len() <= 63,
        "{n}"
    );
}

#[test]
fn restore_jobs() {
    let r = &k8s("restore --pvc claim-alice --name-suffix r")[0];
    assert_eq!(r["kind"], "Job");
    assert_job_rules(r, "restash");
    let want = "restore latest:/data --host claim-alice --target /data --retry-lock 30m";
    assert_eq!(args(r), words(want));
    assert_eq!(pod_spec(r)["securityContext"]["runAsUser"], 1000);
    let claim = &volume(r, "data")["persistentVolumeClaim"];
    assert_eq!(
        claim,
        &json!({"claimName": "claim-alice", "readOnly": false})
    );
    assert_eq!(mount(r, "data")["readOnly"], false);

    let r = &k8s(
        "restore --pvc claim-alice --snapshot 79766175 --target-pvc claim-alice-new=alice \
         --path /work//project/ --name-suffix r --secret other",
    )[0];
    assert_job_rules(r, "other");
    let want =
        "restore 79766175:/data/work/project --host claim-alice --target /data/work/project \
                --retry-lock 30m";
    assert_eq!(args(r), words(want));
    assert_eq!(r["metadata"]["name"], "restash-restore-claim-alice-new-r");
    assert_eq!(r["metadata"]["labels"]["restash/source-pvc"], "claim-alice");
    let claim = &volume(r, "data")["persistentVolumeClaim"];
    assert_eq!(claim["claimName"], "claim-alice-new");
    let term = affinity_term(r);
    assert_eq!(
        term["labelSelector"]["matchLabels"]["hub.jupyter.org/username"],
        "alice"
    );
}

#[test]
fn prune_cronjob_has_no_volume() {
    let p = &k8s(&format!(
        "prune --schedule '0 5 * * 0' --time-zone America/Chicago --suspend --repository {REPO_URL}"
    ))[0];
    assert_eq!(p["kind"], "CronJob");
    assert_eq!(p["spec"]["schedule"], "0 5 * * 0");
    assert_eq!(p["spec"]["suspend"], true);
    assert_eq!(p["spec"]["concurrencyPolicy"], "Forbid");
    assert_job_rules(p, "restash");
    // A prune meeting a night's late backups waits for them; restash's own --retry-lock
    // sets how long, 0 not at all.
    assert_eq!(args(p), ["prune", "--retry-lock", "1h"]);
    let p2 = &k8s("prune --retry-lock 2h")[0];
    assert_eq!(args(p2), ["prune", "--retry-lock", "2h0m0s"]);
    let p3 = &k8s("prune --retry-lock 0")[0];
    assert_eq!(args(p3), ["prune"]);
    assert_eq!(env_get(p, "RESTIC_REPOSITORY").as_deref(), Some(REPO_URL));
    assert!(pod_spec(p).get("affinity").is_none());
    let vols = pod_spec(p)["volumes"].as_array().unwrap();
    assert!(vols
        .iter()
        .all(|v| v.get("persistentVolumeClaim").is_none()));
    assert_eq!(container(p)["resources"]["limits"]["memory"], "2Gi");
}

/// `--ca-secret`/`--ca-configmap`: the bundle's one key is mounted read-only under a fixed
/// name in every kind of job, RESTIC_CACERT names it, and without the flags nothing of it
/// appears.
#[test]
fn ca_bundle_is_mounted_and_named_by_restic_cacert() {
    let cases = [
        (
            "backup --pvc claim-alice --ca-secret osn-ca",
            "secret",
            "osn-ca",
            "ca.crt",
        ),
        (
            "job --pvc claim-alice --privileged-read --ca-configmap trust --ca-key bundle.pem \
             --name-suffix c1",
            "configMap",
            "trust",
            "bundle.pem",
        ),
        (
            "restore --pvc claim-alice --ca-secret osn-ca --ca-key root.pem --name-suffix c2",
            "secret",
            "osn-ca",
            "root.pem",
        ),
        ("prune --ca-configmap trust", "configMap", "trust", "ca.crt"),
    ];
    for (line, kind, name, key) in cases {
        for doc in k8s(line) {
            assert_job_rules(&doc, "restash");
            assert_eq!(
                env_get(&doc, "RESTIC_CACERT").as_deref(),
                Some("/etc/restash/ca/ca.crt"),
                "{line}"
            );
            assert_eq!(mount(&doc, "ca")["mountPath"], "/etc/restash/ca");
            assert_eq!(mount(&doc, "ca")["readOnly"], true);
            let v = &volume(&doc, "ca")[kind];
            let name_field = if kind == "secret" {
                "secretName"
            } else {
                "name"
            };
            assert_eq!(v[name_field], name, "{line}");
            assert_eq!(
                v["items"],
                json!([{"key": key, "path": "ca.crt"}]),
                "{line}"
            );
            assert_eq!(v["defaultMode"], 0o444, "{line}");
        }
    }
    let plain = &k8s("prune")[0];
    assert_eq!(env_get(plain, "RESTIC_CACERT"), None);
    let vols = pod_spec(plain)["volumes"].as_array().unwrap();
    assert!(vols.iter().all(|v| v["name"] != "ca"), "{plain}");
}

#[test]
fn secret_holds_the_files_and_only_there() {
    let creds = credentials_dir();
    let c = creds.path().display();
    let s = &k8s(&format!("secret --from-file {c} --repository {REPO_URL}"))[0];
    assert_eq!(
        (s["kind"].as_str(), s["type"].as_str()),
        (Some("Secret"), Some("Opaque"))
    );
    let data = s["data"].as_object().unwrap();
    let keys: Vec<&String> = data.keys().collect();
    let want = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RESTIC_PASSWORD",
        "RESTIC_REPOSITORY",
    ];
    assert_eq!(keys, want, "only the known keys of the directory");
    let dec = |k: &str| {
        let b = base64::engine::general_purpose::STANDARD.decode(data[k].as_str().unwrap());
        String::from_utf8(b.unwrap()).unwrap()
    };
    assert_eq!(dec("RESTIC_PASSWORD"), PASSWORD, "trailing newline removed");
    assert_eq!(dec("AWS_ACCESS_KEY_ID"), KEY_ID);
    assert_eq!(
        dec("AWS_SECRET_ACCESS_KEY"),
        SECRET_KEY,
        "trailing CRLF removed"
    );
    assert_eq!(dec("RESTIC_REPOSITORY"), REPO_URL);

    // A missing key, a key given twice and an empty value are refused, without the values.
    let out = k8s_fails(&format!("secret --from-file {c}/RESTIC_PASSWORD"));
    assert!(
        out.stderr
            .contains("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"),
        "{}",
        out.describe()
    );
    let out = k8s_fails(&format!(
        "secret --from-file {c} --from-file {c}/RESTIC_PASSWORD"
    ));
    assert!(out.stderr.contains("twice"), "{}", out.describe());
    std::fs::write(creds.path().join("empty"), "\n").unwrap();
    let out = k8s_fails(&format!("secret --from-file {c} --from-file X={c}/empty"));
    assert!(out.stderr.contains("empty"), "{}", out.describe());
    assert_no_secret_values(&out.stderr);
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    for (line, says) in [
        ("backup --pvc Claim_Alice", "invalid pvc name"),
        (
            "backup --pvc claim-a --window 03:00-03:00",
            "invalid window",
        ),
        (
            "backup --pvc claim-a --time-zone 'America Chicago'",
            "invalid time zone",
        ),
        (
            "backup --pvc claim-a --schedule 'TZ=UTC 0 3 * * *'",
            "invalid schedule",
        ),
        (
            "backup --pvc claim-a --memory lots",
            "invalid memory request",
        ),
        (
            "backup --pvc claim-a --cpu 2",
            "must be at most the cpu limit 1",
        ),
        ("prune --memory 3Gi", "must be at most the memory limit 2Gi"),
        (
            "backup --pvc claim-a --env RESTIC_PASSWORD=x",
            "RESTIC_PASSWORD cannot be set",
        ),
        ("backup --pvc claim-a --pvc claim-a=b", "given twice"),
        ("backup", "no PVC given"),
        (
            "restore --pvc claim-a --path ../etc",
            "invalid restore path",
        ),
        (
            "restore --pvc claim-a --snapshot latest:/x",
            "invalid snapshot",
        ),
        ("prune --namespace JHub", "invalid namespace"),
        (
            "prune --ca-secret a --ca-configmap b",
            "cannot be used with",
        ),
        ("prune --ca-secret Bad_Name", "invalid ca secret name"),
        ("prune --ca-configmap ca --ca-key a/b", "invalid --ca-key"),
        (
            "prune --ca-secret ca --env RESTIC_CACERT=/x",
            "RESTIC_CACERT cannot be set",
        ),
        ("backup --pvc claim-a --retry-lock soon", "invalid duration"),
        ("prune --retry-lock 30", "missing unit"),
        ("serve --stale-after soon", "invalid duration"),
        ("serve --name 1web", "invalid name"),
    ] {
        let out = k8s_fails(line);
        assert!(
            out.stderr.contains(says),
            "{line}: expected {says:?}\n{}",
            out.describe()
        );
        assert!(out.stdout.is_empty(), "no partial output");
    }
}

/// The two identities do what docs/kubernetes.md says, run with the real binary under the
/// identity each manifest asks for: as jovyan, files jovyan cannot read are reported (exit 3);
/// a non-root process gets nothing from `capabilities.add`; root with only DAC_READ_SEARCH
/// reads everything; root with the restore capabilities gives files their owners back.
#[test]
fn identities_of_the_manifests_behave_as_documented() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let setpriv = Path::new("/usr/bin/setpriv");
    if !common::is_root() || !setpriv.exists() {
        eprintln!("SKIPPED: needs root and /usr/bin/setpriv to take the manifests' identities");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m)).unwrap();
    chmod(b, 0o755);
    // A volume as Zero to JupyterHub leaves it: jovyan's files, plus two he cannot read.
    let vol = b.join("data");
    std::fs::create_dir_all(vol.join("closed-dir")).unwrap();
    std::fs::write(vol.join("notebook.ipynb"), "{}").unwrap();
    std::fs::write(vol.join("closed-dir/inside.txt"), "hidden").unwrap();
    std::fs::write(vol.join("root-only.txt"), "root").unwrap();
    for p in ["", "closed-dir", "closed-dir/inside.txt", "notebook.ipynb"] {
        chown(vol.join(p), Some(1000), Some(100)).unwrap();
    }
    chmod(&vol.join("root-only.txt"), 0o600);
    chmod(&vol.join("closed-dir"), 0o000);
    // One repository per identity, owned by it (root without DAC_OVERRIDE cannot write
    // into jovyan's directories).
    let repo_of = |name: &str, uid: u32, gid: u32| {
        let d = b.join(name);
        std::fs::create_dir(&d).unwrap();
        chown(&d, Some(uid), Some(gid)).unwrap();
        d.join("repo")
    };
    let run = |doc: &Value, args: &[&str]| {
        let mut all = identity_of(doc);
        all.push(restash_bin().display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        common::run::run_cmd(setpriv, &all, &[("TMPDIR", "/tmp")])
    };
    let (v, ok) = (vol.display().to_string(), "notebook.ipynb");

    let jovyan = &k8s("job --pvc claim-alice --name-suffix a")[0];
    let repo = repo_of("repo-jovyan", 1000, 100).display().to_string();
    run(jovyan, &["-r", &repo, "init"]).success();
    let out = run(
        jovyan,
        &["-r", &repo, "backup", &v, "--host", "claim-alice"],
    )
    .expect_code(3);
    for name in ["root-only.txt", "closed-dir"] {
        assert!(
            out.stderr.contains(name),
            "{name} reported\n{}",
            out.describe()
        );
    }
    // The same non-root identity with DAC_READ_SEARCH added: still nothing more.
    let mut added = jovyan.clone();
    added["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
        json!(["DAC_READ_SEARCH"]);
    run(
        &added,
        &["-r", &repo, "backup", &v, "--host", "claim-alice"],
    )
    .expect_code(3);

    let root = &k8s("job --pvc claim-alice --privileged-read --name-suffix b")[0];
    let repo = repo_of("repo-root", 0, 0).display().to_string();
    run(root, &["-r", &repo, "init"]).success();
    run(root, &["-r", &repo, "backup", &v, "--host", "claim-alice"]).success();
    let ls = run(root, &["-r", &repo, "ls", "latest"]).success();
    for name in ["closed-dir/inside.txt", "root-only.txt", ok] {
        assert!(
            ls.stdout_str().contains(name),
            "{name} backed up\n{}",
            ls.describe()
        );
    }

    // Restore as root with the restore capabilities into an empty directory: owners back.
    let restore = &k8s("restore --pvc claim-alice --privileged-read --name-suffix c")[0];
    let target = b.join("target");
    std::fs::create_dir(&target).unwrap();
    let t = target.display().to_string();
    run(restore, &["-r", &repo, "restore", "latest", "--target", &t]).success();
    let restored = target.join(vol.strip_prefix("/").unwrap());
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(restored.join(p)).unwrap();
        std::os::unix::fs::MetadataExt::uid(&m)
    };
    assert_eq!(owner("closed-dir/inside.txt"), 1000);
    assert_eq!(owner(ok), 1000);
    assert_eq!(owner("root-only.txt"), 0);
}
