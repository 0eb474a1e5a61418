//! TLS: with a certificate configured the server speaks HTTPS (rustls), HTTP/1.1
//! and HTTP/2 via ALPN; plain HTTP is not served. The fixture is a self-signed
//! test certificate for 127.0.0.1 signed by a test CA (tests/fixtures; the CA key
//! was thrown away; never use these anywhere else).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use safemap_server::ServeOptions;
use safemap_server::config::Config;

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_with_the_configured_certificate() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        fixtures.join("test-cert.pem").display(),
        fixtures.join("test-key.pem").display()
    );
    let config = Config::parse(Path::new("tls.toml"), &text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        data_dir: tmp.path().to_path_buf(),
        config,
    };
    let task = tokio::spawn(safemap_server::run(listener, opts, async {
        let _ = rx.await;
    }));
    let pem = std::fs::read(fixtures.join("test-ca.pem")).unwrap();
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(r) = https.get(format!("https://{addr}/healthz")).send().await {
            assert_eq!(r.status(), 200);
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "no HTTPS answer");
    let token = std::fs::read_to_string(tmp.path().join("admin.token")).unwrap();
    let r = https
        .put(format!("https://{addr}/v1/maps/m/keys/k"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
