//! A private CA and TLS in front of the test servers, for the HTTPS tests.
//!
//! [`pki`] makes, once per test binary and with `openssl`, a CA and certificates signed by
//! it: one for `127.0.0.1`/`localhost`, one for another name, one that expired in 2020 and
//! a client certificate. [`TlsProxy`] runs `scripts/tls-proxy.py` (python3's ssl, a thread per connection)
//! in front of a plain-HTTP server, optionally requiring a client certificate. Included
//! with `#[path = "common/tls.rs"] mod tls;` next to `servers`.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::servers::unavailable;

/// The files of the test PKI.
#[derive(Debug)]
pub struct Pki {
    /// Everything lives here.
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A second CA that signed nothing the servers use.
    pub other_ca: PathBuf,
    /// Server certificate and key for `127.0.0.1` and `localhost`.
    pub server: (PathBuf, PathBuf),
    /// Server certificate and key for `wrong.example` only.
    pub wrong_name: (PathBuf, PathBuf),
    /// Server certificate and key for `127.0.0.1`, valid only in January 2020.
    pub expired: (PathBuf, PathBuf),
    /// Client certificate and its key in one PEM file, as restic's --tls-client-cert wants.
    pub client: PathBuf,
}

const OPENSSL_CNF: &str = r#"
[req]
distinguished_name = dn
prompt = no
[dn]
CN = restash test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[wrong_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
"#;

/// The test PKI, made on first use (about 0.3 s), or `None` outside CI when `openssl`
/// fails.
pub fn pki() -> Option<&'static Pki> {
    static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();
    match PKI.get_or_init(make_pki) {
        Ok(p) => Some(p),
        Err(why) => unavailable("openssl (to make test certificates)", why),
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn make_pki() -> Result<Pki, String> {
    let dir = tempfile::Builder::new()
        .prefix("restash-pki-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    w("ca.cnf", OPENSSL_CNF).map_err(|e| e.to_string())?;
    w("index.txt", "").map_err(|e| e.to_string())?;
    w("serial", "01\n").map_err(|e| e.to_string())?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (ca, subj) in [
        ("ca", "/CN=restash test CA"),
        ("other-ca", "/CN=restash other CA"),
    ] {
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let mut a = vec!["req", "-x509", "-config", "ca.cnf", "-extensions", "ca_ext"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", subj]);
        openssl(&dir, &a)?;
    }
    // `openssl ca` is what takes explicit validity dates in OpenSSL 3.0 (`x509 -req`
    // only has -days, which cannot be negative), so it signs every leaf.
    let leaves: [(&str, &str, &[&str]); 4] = [
        ("server", "server_ext", &["-days", "2"]),
        ("wrong", "wrong_ext", &["-days", "2"]),
        (
            "expired",
            "server_ext",
            &[
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
            ],
        ),
        ("client", "client_ext", &["-days", "2"]),
    ];
    for (name, ext, validity) in leaves {
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let mut a = vec!["req", "-new"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&dir, &a)?;
        let mut a = vec![
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            &csr,
            "-out",
            &pem,
            "-notext",
            "-extensions",
            ext,
        ];
        a.extend(validity);
        openssl(&dir, &a)?;
    }
    let client = dir.join("client-with-key.pem");
    let both = std::fs::read_to_string(dir.join("client.pem")).map_err(|e| e.to_string())?
        + &std::fs::read_to_string(dir.join("client.key")).map_err(|e| e.to_string())?;
    std::fs::write(&client, both).map_err(|e| e.to_string())?;
    let pair = |n: &str| (dir.join(format!("{n}.pem")), dir.join(format!("{n}.key")));
    Ok(Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server: pair("server"),
        wrong_name: pair("wrong"),
        expired: pair("expired"),
        client,
        dir,
    })
}

/// `scripts/tls-proxy.py` serving one certificate in front of a plain server; it exits
/// when this test process does.
#[derive(Debug)]
pub struct TlsProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl TlsProxy {
    /// TLS with `cert` (a `(certificate, key)` pair) in front of `upstream`
    /// (`host:port`); with `client_ca`, a client certificate signed by it is required.
    /// `None` outside CI when python3 cannot run it.
    pub fn start(
        cert: &(PathBuf, PathBuf),
        upstream: &str,
        client_ca: Option<&Path>,
    ) -> Option<TlsProxy> {
        match start_proxy(cert, upstream, client_ca) {
            Ok(p) => Some(p),
            Err(why) => unavailable("the TLS proxy (python3 scripts/tls-proxy.py)", &why),
        }
    }
}

fn start_proxy(
    cert: &(PathBuf, PathBuf),
    upstream: &str,
    client_ca: Option<&Path>,
) -> Result<TlsProxy, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tls-proxy.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg("--cert")
        .arg(&cert.0)
        .arg("--key")
        .arg(&cert.1)
        .arg("--upstream")
        .arg(upstream)
        .arg("--owner")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(ca) = client_ca {
        cmd.arg("--client-ca").arg(ca);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start python3: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port: u16 = line
        .trim()
        .parse()
        .map_err(|_| format!("tls-proxy.py printed {line:?}, not its port"))?;
    // The proxy outlives this handle (its watchdog ends it with the test process); reap
    // it in the background so it leaves no zombie.
    std::thread::spawn(move || child.wait());
    Ok(TlsProxy {
        addr: format!("127.0.0.1:{port}"),
    })
}
