//! Helpers of the `restash k8s` manifest tests: the kubernetes-validate installation, running
//! `restash k8s …` (YAML or `--json`), and reading pods out of Jobs and CronJobs.
//! Included by tests/k8s_manifests.rs with `#[path = "common/k8s.rs"] mod k8s;`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::run::{cmd_output, prepare_cmd, restash_bin};
use crate::common::{restash, CmdOutput};
use crate::servers;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The kubernetes-validate executable (`scripts/k8s-validate.sh install`, once per test
/// binary), or `None` outside CI when it cannot be installed.
pub fn validator() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    servers::tool(
        &BIN,
        "kubernetes-validate (scripts/k8s-validate.sh)",
        "k8s-validate.sh",
        "install",
    )
}

/// Runs `kubernetes-validate --strict -k <version> files…`.
pub fn validate(bin: &Path, version: &str, files: &[PathBuf]) -> CmdOutput {
    let out = Command::new(bin)
        .args(["--strict", "-k", version])
        .args(files)
        .stdin(Stdio::null())
        .output()
        .expect("run kubernetes-validate");
    cmd_output(
        format!("kubernetes-validate --strict -k {version} {files:?}"),
        out,
    )
}

/// Splits a command line on spaces; `'…'` groups words (no escapes).
pub fn words(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    if any {
        out.push(cur);
    }
    out
}

fn k8s_args(json: bool, args: &[String]) -> Vec<String> {
    let mut all: Vec<String> = if json { vec!["--json".into()] } else { vec![] };
    all.push("k8s".into());
    all.extend(args.iter().cloned());
    all
}

/// `restash k8s args…` (YAML), checked to succeed.
pub fn k8s_yaml(args: &[String]) -> String {
    restash(k8s_args(false, args), &[])
        .success()
        .stdout_str()
        .to_string()
}

/// `restash --json k8s args…`: the items of the List it prints.
pub fn k8s_json(args: &[String]) -> Vec<Value> {
    let out = restash(k8s_args(true, args), &[]).success().json();
    assert_eq!(out["kind"], "List");
    out["items"].as_array().expect("items").clone()
}

/// [`k8s_json`] of a command line given as one string (see [`words`]).
pub fn k8s(line: &str) -> Vec<Value> {
    k8s_json(&words(line))
}

/// `restash k8s line` expected to fail; its output.
pub fn k8s_fails(line: &str) -> CmdOutput {
    restash(k8s_args(false, &words(line)), &[]).expect_code(1)
}

/// `restash [--json] k8s args…` with `stdin` fed in.
pub fn k8s_stdin(line: &str, stdin: &str, json: bool) -> CmdOutput {
    let (mut cmd, rendered) = prepare_cmd(&restash_bin(), k8s_args(json, &words(line)), &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn restash");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    cmd_output(rendered, child.wait_with_output().expect("wait"))
}

/// The pod spec of a Job or CronJob.
pub fn pod_spec(doc: &Value) -> &Value {
    match doc["kind"].as_str() {
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        Some("Job") => &doc["spec"]["template"]["spec"],
        k => panic!("not a Job or CronJob: {k:?}"),
    }
}

/// Its only container.
pub fn container(doc: &Value) -> &Value {
    let c = &pod_spec(doc)["containers"];
    assert_eq!(c.as_array().expect("containers").len(), 1);
    &c[0]
}

/// The container's arguments.
pub fn args(doc: &Value) -> Vec<String> {
    let a = container(doc)["args"].as_array().expect("args");
    a.iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// The container's environment; every entry must be a plain `name`/`value` pair (no
/// `valueFrom`: credentials come as files).
pub fn env(doc: &Value) -> Vec<(String, String)> {
    let e = container(doc)["env"].as_array().expect("env");
    e.iter()
        .map(|e| {
            let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["name", "value"], "only plain values: {e}");
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("name"), s("value"))
        })
        .collect()
}

/// One environment variable's value.
pub fn env_get(doc: &Value, name: &str) -> Option<String> {
    env(doc)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A volume of the pod by name.
pub fn volume<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let vols = pod_spec(doc)["volumes"].as_array().expect("volumes");
    vols.iter().find(|v| v["name"] == name).expect("volume")
}

/// The container's mount of a volume.
pub fn mount<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let m = container(doc)["volumeMounts"].as_array().expect("mounts");
    m.iter().find(|m| m["name"] == name).expect("mount")
}

/// The preferred podAffinity term.
pub fn affinity_term(doc: &Value) -> &Value {
    &pod_spec(doc)["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        ["podAffinityTerm"]
}

/// setpriv arguments that give a process the identity a manifest's securityContext asks for,
/// as the container runtime does: uid, gid, fsGroup as supplementary group, the added
/// capabilities as bounding and inheritable set (and nothing ambient), no_new_privs.
pub fn identity_of(doc: &Value) -> Vec<String> {
    let pod = &pod_spec(doc)["securityContext"];
    let sc = &container(doc)["securityContext"];
    let uid = sc["runAsUser"]
        .as_u64()
        .or(pod["runAsUser"].as_u64())
        .unwrap();
    let gid = sc["runAsGroup"]
        .as_u64()
        .or(pod["runAsGroup"].as_u64())
        .unwrap_or(0);
    let add: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().unwrap().to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let caps: String = std::iter::once("-all".to_string())
        .chain(add.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let groups = match pod["fsGroup"].as_u64() {
        Some(g) => format!("--groups={g}"),
        None => "--clear-groups".into(),
    };
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        groups,
        format!("--bounding-set={caps}"),
        format!("--inh-caps={caps}"),
        "--no-new-privs".into(),
        "--".into(),
    ]
}
