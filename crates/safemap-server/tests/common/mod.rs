//! Shared helpers of the integration tests: a server on a port-0 loopback
//! listener in this process, and a small HTTP client.
#![allow(dead_code, clippy::unwrap_used)]

pub mod references;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use safemap_server::ServeOptions;
use safemap_server::config::Config;
use safemap_server::server::run_with_state;
use safemap_server::state::AppState;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    pub state: AppState,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// Starts a server with this configuration file text in a fresh data dir.
    pub async fn start_with(config: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, config).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (restarts).
    pub async fn start_in(dir: &Path, config: &str) -> TestServer {
        let config = Config::parse(Path::new("test.toml"), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let opts = ServeOptions {
            data_dir: dir.to_path_buf(),
            config,
        };
        let (stx, srx) = oneshot::channel();
        let task = tokio::spawn(async move {
            run_with_state(
                listener,
                opts,
                async {
                    let _ = rx.await;
                },
                Some(stx),
            )
            .await
            .unwrap();
        });
        let state = srx.await.unwrap();
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        let token_path = dir.join("admin.token");
        let mut admin = String::new();
        for _ in 0..3000 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status() == 200
                && let Ok(t) = std::fs::read_to_string(&token_path)
            {
                admin = t.trim().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!admin.is_empty(), "server did not come up");
        TestServer {
            url,
            admin,
            dir: dir.to_path_buf(),
            http,
            state,
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server cleanly (storage closed) and keeps the data dir.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self._tmp.take()
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// A request with the admin token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(method, path, Some(&self.admin.clone()))
    }

    pub async fn put(&self, map: &str, key: &str, value: Value) -> Response {
        self.admin(Method::PUT, &format!("/v1/maps/{map}/keys/{key}"))
            .json(&value)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, map: &str, key: &str) -> Response {
        self.admin(Method::GET, &format!("/v1/maps/{map}/keys/{key}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, map: &str, key: &str, reason: &str) -> Response {
        self.admin(Method::DELETE, &format!("/v1/maps/{map}/keys/{key}"))
            .header("x-reason", reason)
            .send()
            .await
            .unwrap()
    }

    /// Creates a token with these roles and returns it.
    pub async fn token(&self, name: &str, roles: &[&str]) -> String {
        let r = self
            .admin(Method::POST, "/v1/tokens")
            .json(&json!({"name": name, "roles": roles}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// Every audit record matching `query`, following `next` from the start
    /// in pages of `limit` (each page at most `limit` long, `next` its last id).
    pub async fn audit_pages(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut after = String::new();
        loop {
            let (st, v) = sj(self
                .admin(
                    Method::GET,
                    &format!("/v1/audit?{query}&limit={limit}{after}"),
                )
                .send()
                .await
                .unwrap())
            .await;
            assert_eq!(st, 200, "{v}");
            let page = v["records"].as_array().unwrap();
            assert!(page.len() <= limit);
            out.extend(page.iter().cloned());
            match v["next"].as_u64() {
                Some(n) => {
                    assert!(page.last().is_none_or(|r| r["id"].as_u64() == Some(n)));
                    after = format!("&after={n}");
                }
                None => return out,
            }
        }
    }

    /// `POST /v1/maps/{map}/restore` with `body`, reason "undo".
    pub async fn restore(&self, map: &str, body: Value) -> (u16, Value) {
        sj(self
            .admin(Method::POST, &format!("/v1/maps/{map}/restore"))
            .header("x-reason", "undo")
            .json(&body)
            .send()
            .await
            .unwrap())
        .await
    }

    /// All audit records (up to 1000).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = self
            .admin(Method::GET, &format!("/v1/audit?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["records"].as_array().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Status and JSON body of a response.
pub async fn sj(r: Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The ids of audit records.
pub fn ids(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

/// The error code of an error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The address from a spawned `safemap serve`'s `listening on <addr>` line
/// (its stdout must be piped). The rest of its stdout is drained by a thread,
/// so the child never blocks on a full pipe.
pub fn listening_addr(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}
