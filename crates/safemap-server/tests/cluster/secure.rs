//! A secured etcd (cluster.md, "Running it"): TLS with client certificates
//! and etcd's user/password authentication, with real processes. The
//! certificates are made at test time (rcgen); the bad configurations are
//! refused at start-up with a message that names the setting.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Etcd, Extra, Server, admin_token, etcd_available, free_port};

/// A CA and certificates it signed, written as PEM files in a directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes `ca.pem`, `server.pem`/`server-key.pem` (127.0.0.1, localhost),
    /// `client.pem`/`client-key.pem`, and `other-ca.pem` (a CA that signed nothing).
    fn new(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair,
        };
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_string());
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let root = ca("safemap test CA");
        write("ca.pem", root.pem());
        write("other-ca.pem", ca("another CA").pem());
        let leaf = |sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.extended_key_usages = usages;
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_string());
            let cert = p.signed_by(&key, &root).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        // etcd's gateway dials etcd itself with the server certificate: it
        // is a client certificate too.
        let (cert, key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            "etcd",
        );
        write("server.pem", cert);
        write("server-key.pem", key);
        let (cert, key) = leaf(
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            "safemap",
        );
        write("client.pem", cert);
        write("client-key.pem", key);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A one-member etcd that serves clients only over TLS and requires a
/// client certificate signed by the CA (`--client-cert-auth`).
struct TlsEtcd {
    child: Child,
    client: u16,
    dir: PathBuf,
}

impl TlsEtcd {
    async fn start(pki: &Pki, dir: &Path) -> TlsEtcd {
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let c_url = format!("https://127.0.0.1:{client}");
        let p_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd-tls.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "tls"])
            .arg("--data-dir")
            .arg(dir.join("etcd-tls"))
            .args(["--listen-client-urls", &c_url])
            .args(["--advertise-client-urls", &c_url])
            .args(["--listen-peer-urls", &p_url])
            .args(["--initial-advertise-peer-urls", &p_url])
            .args(["--initial-cluster", &format!("tls={p_url}")])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{metrics}"),
            ])
            .args(["--cert-file", &pki.path("server.pem")])
            .args(["--key-file", &pki.path("server-key.pem")])
            .args(["--trusted-ca-file", &pki.path("ca.pem")])
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let etcd = TlsEtcd {
            child,
            client,
            dir: dir.to_path_buf(),
        };
        // /health over the plain metrics listener: no certificate needed.
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let url = format!("http://127.0.0.1:{metrics}/health");
            if let Ok(r) = http.get(url).send().await
                && r.text().await.is_ok_and(|t| t.contains("\"true\""))
            {
                return etcd;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the TLS etcd did not become healthy (log in {})",
                etcd.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client)
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(list: &[&str]) -> Extra {
    Extra {
        args: list.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reaches_etcd_over_tls_with_a_client_certificate() {
    if !etcd_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let etcd = TlsEtcd::start(&pki, tmp.path()).await;
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    let (cert, key) = (pki.path("client.pem"), pki.path("client-key.pem"));

    let tls = args(&["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key]);
    let s = Server::start_extra(&etcd.endpoint(), "/t/", &tmp.path().join("a"), None, tls).await;
    let admin = admin_token(&s.dir);
    let r = s
        .req(Method::PUT, "/v1/maps/m/keys/k", &admin)
        .json(&json!({"over": "tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .req(Method::GET, "/v1/maps/m/keys/k", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["value"], json!({"over": "tls"}));
    drop(s);

    // A CA that did not sign etcd's certificate: refused at start-up.
    let dir = tmp.path().join("b");
    let wrong = args(&[
        "--etcd-ca",
        &other,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &key,
    ]);
    let (code, err) = Server::refused(&etcd.endpoint(), "/t/", &dir, wrong);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS to etcd failed"), "{err}");
    assert!(err.contains("--etcd-ca"), "{err}");
    assert!(!dir.join("admin.token").exists());

    // No client certificate while etcd requires one.
    let (code, err) = Server::refused(&etcd.endpoint(), "/t/", &dir, args(&["--etcd-ca", &ca]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("connecting to etcd at https://"), "{err}");

    // Plain http:// to a TLS-only member, with no TLS flag: refused too.
    let plain = etcd.endpoint().replace("https://", "http://");
    let (code, err) = Server::refused(&plain, "/t/", &dir, Extra::default());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("connecting to etcd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_etcd_access_settings_stop_the_start_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let dir = tmp.path().join("s");
    let https = "https://127.0.0.1:1";
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client-key.pem"),
    );
    let missing = tmp.path().join("absent.pem").display().to_string();
    let cases: Vec<(&str, Extra, &str)> = vec![
        (https, args(&["--etcd-ca", &missing]), "absent.pem"),
        (
            https,
            args(&["--etcd-ca", &key]),
            "holds no PEM certificate",
        ),
        (
            https,
            args(&["--etcd-ca", &ca, "--etcd-cert", &cert]),
            "--etcd-cert needs --etcd-key",
        ),
        (
            https,
            args(&["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &ca]),
            "no PEM private key",
        ),
        (https, Extra::default(), "need --etcd-ca"),
        (
            "http://127.0.0.1:1",
            args(&["--etcd-ca", &ca]),
            "need https:// etcd endpoints",
        ),
        (
            "http://127.0.0.1:1",
            args(&["--etcd-user", "root"]),
            "SAFEMAP_ETCD_PASSWORD",
        ),
    ];
    for (endpoint, extra, expected) in cases {
        let shown = extra.args.join(" ");
        let (code, err) = Server::refused(endpoint, "/t/", &dir, extra);
        assert_eq!(code, 2, "{endpoint} {shown}: {err}");
        assert!(err.contains(expected), "{endpoint} {shown}: {err}");
    }
    assert!(
        !dir.join("admin.token").exists(),
        "nothing is touched before the settings are checked"
    );
    // The password is not accepted from the config file.
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("safemap.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\nuser = \"root\"\npassword = \"pw\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("store.password") && err.contains("SAFEMAP_ETCD_PASSWORD"),
        "{err}"
    );
}

/// Turns on etcd's authentication: `root` (root role) and `safemap`, whose
/// role may read and write under `/t/` only.
async fn enable_auth(endpoints: &str) {
    use etcd_client::{Client, Permission};
    let eps: Vec<&str> = endpoints.split(',').collect();
    let mut c = Client::connect(&eps, None).await.unwrap();
    c.user_add("root", "root-pw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("safemap").await.unwrap();
    c.role_grant_permission("safemap", Permission::read_write("/t/").with_prefix())
        .await
        .unwrap();
    c.user_add("safemap", "right-pw", None).await.unwrap();
    c.user_grant_role("safemap", "safemap").await.unwrap();
    c.auth_enable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_authenticates_as_an_etcd_user() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    enable_auth(&etcd.endpoints()).await;
    let tmp = tempfile::tempdir().unwrap();
    let user = |password: Option<&str>| Extra {
        args: vec!["--etcd-user".into(), "safemap".into()],
        env: password
            .map(|p| ("SAFEMAP_ETCD_PASSWORD".to_string(), p.to_string()))
            .into_iter()
            .collect(),
    };

    let s = Server::start_extra(
        &etcd.endpoints(),
        "/t/",
        &tmp.path().join("a"),
        None,
        user(Some("right-pw")),
    )
    .await;
    let admin = admin_token(&s.dir);
    let r = s
        .req(Method::PUT, "/v1/maps/m/keys/k", &admin)
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .req(Method::GET, "/v1/maps/m/keys/k", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let dir = tmp.path().join("b");
    let (code, err) = Server::refused(&etcd.endpoints(), "/t/", &dir, user(Some("wrong-pw")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("etcd refused user \"safemap\""), "{err}");
    assert!(
        !err.contains("wrong-pw"),
        "the password is never printed: {err}"
    );

    // Without a user, etcd's permission check refuses the first read.
    let (code, err) = Server::refused(&etcd.endpoints(), "/t/", &dir, Extra::default());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--etcd-user"), "{err}");

    // The user may not leave its prefix.
    let (code, err) = Server::refused(&etcd.endpoints(), "/other/", &dir, user(Some("right-pw")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("permission denied"), "{err}");
}
