//! Unit tests of the manifest builders (names, arguments, identity, secrets, the web view).

use base64::Engine as _;
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
        keep: Keep {
            daily: Some(7),
            weekly: None,
            monthly: Some(12),
        },
        skip_if_unchanged: true,
        no_parent_hint: true,
    };
    let a = backup_args(&v, &opts);
    assert_eq!(
        a[10..],
        [
            "--exclude",
            "/data/.cache",
            "--skip-if-unchanged",
            "--no-parent-hint",
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
    let p = prune_cronjob(&c, &CronSettings::default(), "0 5 * * 0", &Keep::default()).unwrap();
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

const TOKEN: &str = "tok-9f8e7d6c5b4a-serve-value";

fn serve_opts(token: TokenSource) -> ServeOptions {
    ServeOptions {
        name: "restash-serve".into(),
        token,
        stale_after: None,
    }
}

fn kinds(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["kind"].as_str().unwrap()).collect()
}

fn serve_container(deployment: &Value) -> &Value {
    let c = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(c.len(), 1);
    &c[0]
}

#[test]
fn serve_prints_a_token_secret_unless_one_is_given() {
    let docs = serve_manifests(&common(), &serve_opts(TokenSource::New(TOKEN.into()))).unwrap();
    assert_eq!(kinds(&docs), ["Secret", "Deployment", "Service"]);
    let s = &docs[0];
    assert_eq!(s["metadata"]["name"], "restash-serve-token");
    assert_eq!(s["metadata"]["namespace"], "jhub");
    let b64 = base64::engine::general_purpose::STANDARD.encode(TOKEN);
    assert_eq!(s["data"], serde_json::json!({"token": b64}));
    // The token, plain or encoded, is in the Secret and nowhere else.
    for d in &docs[1..] {
        let text = d.to_string();
        assert!(!text.contains(TOKEN) && !text.contains(&b64), "{text}");
    }
    let c = serve_container(&docs[1]);
    assert!(c.get("envFrom").is_none());
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().all(|e| e.get("valueFrom").is_none()), "{env:?}");
    assert!(env.iter().all(|e| e["name"] != "RESTASH_SERVE_TOKEN"));
    let pod = &docs[1]["spec"]["template"]["spec"];
    let token_vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "token")
        .unwrap();
    assert_eq!(token_vol["secret"]["secretName"], "restash-serve-token");
    assert_eq!(
        token_vol["secret"]["items"],
        serde_json::json!([{"key": "token", "path": "token"}])
    );

    let existing = TokenSource::Existing {
        secret: "web-token".into(),
        key: "bearer.txt".into(),
    };
    let docs = serve_manifests(&common(), &serve_opts(existing)).unwrap();
    assert_eq!(kinds(&docs), ["Deployment", "Service"]);
    let pod = &docs[0]["spec"]["template"]["spec"];
    let token_vol = &pod["volumes"].as_array().unwrap().last().unwrap()["secret"];
    assert_eq!(token_vol["secretName"], "web-token");
    // Whatever the key, the file the argument names is the same.
    assert_eq!(
        token_vol["items"],
        serde_json::json!([{"key": "bearer.txt", "path": "token"}])
    );
    let args = serve_container(&docs[0])["args"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        args,
        [
            "serve",
            "--listen",
            "0.0.0.0:8080",
            "--token-file",
            "/etc/restash/token/token"
        ]
    );
    assert!(!format!("{:?}", TokenSource::New(TOKEN.into())).contains(TOKEN));
}

#[test]
fn serve_is_probed_on_healthz_and_reached_through_its_service() {
    let mut o = serve_opts(TokenSource::New(TOKEN.into()));
    o.name = "web".into();
    o.stale_after = Some("30h0m0s".into());
    let docs = serve_manifests(&common(), &o).unwrap();
    let (dep, svc) = (&docs[1], &docs[2]);
    assert_eq!(dep["apiVersion"], "apps/v1");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(dep["metadata"]["name"], "web");
    assert_eq!(svc["metadata"]["name"], "web");
    assert_eq!(docs[0]["metadata"]["name"], "web-token");
    let c = serve_container(dep);
    let args = c["args"].as_array().unwrap();
    assert_eq!(args[args.len() - 2..], ["--stale-after", "30h0m0s"]);
    assert_eq!(
        c["ports"],
        serde_json::json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(get["port"], 8080, "{probe}");
    }
    // The Service and the Deployment select the template's pods, and only this instance's.
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], pod_labels);
    assert_eq!(&svc["spec"]["selector"], pod_labels);
    assert_eq!(pod_labels["app.kubernetes.io/instance"], "web");
    assert_eq!(pod_labels["app.kubernetes.io/component"], "serve");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        serde_json::json!([{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}])
    );
}

#[test]
fn serve_runs_read_only_as_jovyan_without_a_volume() {
    // Root mode is for reading or restoring volumes; the web view mounts none.
    let mut c = common();
    c.run_as = RunAs::Root;
    let docs = serve_manifests(&c, &serve_opts(TokenSource::New(TOKEN.into()))).unwrap();
    let pod = &docs[1]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &serve_container(&docs[1])["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"], serde_json::json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let vols = pod["volumes"].as_array().unwrap();
    assert!(vols
        .iter()
        .all(|v| v.get("persistentVolumeClaim").is_none()));
    // Everything read-only but the emptyDir that holds the cache.
    for m in serve_container(&docs[1])["volumeMounts"]
        .as_array()
        .unwrap()
    {
        if m["mountPath"] == "/tmp" {
            let tmp = vols.iter().find(|v| v["name"] == m["name"]).unwrap();
            assert!(tmp.get("emptyDir").is_some());
        } else {
            assert_eq!(m["readOnly"], true, "{m}");
        }
    }
}

#[test]
fn serve_refuses_names_the_api_server_would() {
    let named = |name: &str| ServeOptions {
        name: name.into(),
        ..serve_opts(TokenSource::New(TOKEN.into()))
    };
    let existing = |secret: &str, key: &str| {
        serve_opts(TokenSource::Existing {
            secret: secret.into(),
            key: key.into(),
        })
    };
    let bad = [
        (
            serve_opts(TokenSource::New(String::new())),
            "token is empty",
        ),
        (named("1web"), "invalid name \"1web\""),
        (named("Web"), "invalid name \"Web\""),
        (existing("Bad_Name", "token"), "invalid token secret name"),
        (existing("ok", "a/b"), "invalid --token-key"),
        (
            ServeOptions {
                stale_after: Some("26 h".into()),
                ..serve_opts(TokenSource::New(TOKEN.into()))
            },
            "invalid --stale-after",
        ),
    ];
    for (o, says) in bad {
        let err = serve_manifests(&common(), &o).unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
    let mut c = common();
    c.extra_env = vec![("RESTASH_SERVE_TOKEN".into(), "x".into())];
    let err = serve_manifests(&c, &serve_opts(TokenSource::New(TOKEN.into()))).unwrap_err();
    assert!(matches!(err, K8sError::ReservedEnv(..)), "{err}");
}
