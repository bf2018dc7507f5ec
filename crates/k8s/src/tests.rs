//! Unit tests of the manifest builders (names, arguments, identity, secrets).

use serde_json::Value;

use crate::*;

fn vol(s: &str) -> Volume {
    Volume::parse(s).unwrap()
}

fn common() -> Common {
    Common::new("jhub", "img:1")
}

fn pod(doc: &Value) -> &Value {
    if doc["kind"] == "CronJob" {
        &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        &doc["spec"]["template"]["spec"]
    }
}

#[test]
fn backup_args_are_the_identity_contract() {
    let v = vol("claim-alice");
    assert_eq!(
        backup_args(&v, &BackupOptions::default()),
        [
            "backup",
            "/data",
            "--host",
            "claim-alice",
            "--tag",
            "pvc=claim-alice",
            "--tag",
            "user=alice",
            "--termination-log",
            "/dev/termination-log",
        ]
    );
    let opts = BackupOptions {
        excludes: vec!["/data/.cache".into()],
        keep_daily: Some(7),
        keep_weekly: None,
        keep_monthly: Some(12),
        skip_if_unchanged: true,
    };
    let a = backup_args(&v, &opts);
    assert_eq!(
        a[10..],
        [
            "--exclude",
            "/data/.cache",
            "--skip-if-unchanged",
            "--forget",
            "--keep-daily",
            "7",
            "--keep-monthly",
            "12"
        ]
    );
}

#[test]
fn restore_args_restore_the_volume_layout() {
    let mut r = RestoreOptions {
        source: vol("claim-alice"),
        target: None,
        snapshot: "latest".into(),
        path: None,
    };
    assert_eq!(
        restore_args(&r).unwrap(),
        [
            "restore",
            "latest:/data",
            "--host",
            "claim-alice",
            "--target",
            "/data"
        ]
    );
    r.path = Some("./a//b/".into());
    r.snapshot = "deadbeef".into();
    assert_eq!(restore_args(&r).unwrap()[1], "deadbeef:/data/a/b");
    assert_eq!(restore_args(&r).unwrap()[5], "/data/a/b");
    r.path = Some("/".into());
    assert_eq!(restore_args(&r).unwrap()[1], "deadbeef:/data");
    r.path = Some("a/../../etc".into());
    assert!(restore_args(&r).is_err());
    r.path = None;
    for bad in ["", "latest:/x", "xyz", "LATEST"] {
        r.snapshot = bad.into();
        assert!(restore_args(&r).is_err(), "{bad}");
    }
}

#[test]
fn long_pvc_names_give_valid_object_names_and_keep_the_name_in_an_annotation() {
    let pvc = format!("claim-{}", "a".repeat(80));
    let v = Volume::new(&pvc, Some("alice")).unwrap();
    let cj = backup_cronjobs(
        &common(),
        &CronSettings::default(),
        &Timing::Schedule("0 3 * * *".into()),
        std::slice::from_ref(&v),
        &BackupOptions::default(),
    )
    .unwrap();
    let md = &cj[0]["metadata"];
    assert!(md["name"].as_str().unwrap().len() <= 52);
    let label = md["labels"]["restash/pvc"].as_str().unwrap();
    assert!(label.len() <= 63 && label != pvc);
    assert_eq!(md["annotations"]["restash/pvc"], pvc.as_str());
    let job = backup_job(&common(), &v, &BackupOptions::default(), "20261124-030000").unwrap();
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        name.len() <= 63 && name.ends_with("-20261124-030000"),
        "{name}"
    );
    assert!(backup_job(&common(), &v, &BackupOptions::default(), "Bad_Suffix").is_err());
}

#[test]
fn root_mode_applies_to_volume_jobs_not_to_prune() {
    let mut c = common();
    c.run_as = RunAs::Root;
    let p = prune_cronjob(&c, &CronSettings::default(), "0 5 * * 0").unwrap();
    assert_eq!(pod(&p)["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod(&p)["securityContext"]["runAsNonRoot"], true);
    let j = backup_job(&c, &vol("claim-a"), &BackupOptions::default(), "x").unwrap();
    assert_eq!(pod(&j)["securityContext"]["runAsUser"], 0);
    assert!(pod(&j)["securityContext"].get("fsGroup").is_none());
}

#[test]
fn credentials_cannot_be_passed_as_env() {
    for name in [
        "RESTIC_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "TMPDIR",
        "RESTIC_CACHE_DIR",
    ] {
        let mut c = common();
        c.extra_env = vec![(name.into(), "x".into())];
        let err = backup_job(&c, &vol("claim-a"), &BackupOptions::default(), "x").unwrap_err();
        assert!(matches!(err, K8sError::ReservedEnv(..)), "{name}: {err}");
    }
    let mut c = common();
    c.extra_env = vec![("AWS_DEFAULT_REGION".into(), "us-east-1".into())];
    let j = backup_job(&c, &vol("claim-a"), &BackupOptions::default(), "x").unwrap();
    let env = pod(&j)["containers"][0]["env"].as_array().unwrap().clone();
    assert_eq!(env.last().unwrap()["name"], "AWS_DEFAULT_REGION");
}

#[test]
fn secret_needs_the_three_keys_and_never_shows_values() {
    let mut e = SecretEntries::default();
    e.0.insert("RESTIC_PASSWORD".into(), b"hunter2".to_vec());
    let err = secret("jhub", "restash", &e).unwrap_err().to_string();
    assert!(
        err.contains("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    e.0.insert("AWS_ACCESS_KEY_ID".into(), b"AKIA".to_vec());
    e.0.insert("AWS_SECRET_ACCESS_KEY".into(), b"s3cr3t".to_vec());
    let s = secret("jhub", "restash", &e).unwrap();
    assert_eq!(s["data"]["RESTIC_PASSWORD"], "aHVudGVyMg==");
    assert_eq!(s["type"], "Opaque");
    let dbg = format!("{e:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("s3cr3t"), "{dbg}");
    e.0.insert("X".into(), vec![]);
    assert!(matches!(
        secret("jhub", "restash", &e),
        Err(K8sError::EmptySecretValue(_))
    ));
    e.0.remove("X");
    e.0.insert("bad/key".into(), b"v".to_vec());
    assert!(secret("jhub", "restash", &e).is_err());
}

#[test]
fn window_staggering_reaches_the_cronjobs() {
    let vols: Vec<Volume> = (0..4).map(|i| vol(&format!("claim-u{i}"))).collect();
    let cron = CronSettings {
        time_zone: "America/Chicago".into(),
        suspend: true,
        ..Default::default()
    };
    let cj = backup_cronjobs(
        &common(),
        &cron,
        &Timing::Window(Window::parse("02:00-03:00").unwrap()),
        &vols,
        &BackupOptions::default(),
    )
    .unwrap();
    let s: Vec<&str> = cj
        .iter()
        .map(|c| c["spec"]["schedule"].as_str().unwrap())
        .collect();
    assert_eq!(s, ["0 2 * * *", "15 2 * * *", "30 2 * * *", "45 2 * * *"]);
    assert!(cj.iter().all(|c| c["spec"]["suspend"] == true));
    assert!(cj
        .iter()
        .all(|c| c["spec"]["timeZone"] == "America/Chicago"));
    let bad = Timing::Schedule("every night".into());
    let err = backup_cronjobs(&common(), &cron, &bad, &vols, &BackupOptions::default());
    assert!(err.is_err());
}
