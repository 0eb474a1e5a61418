//! OpenTelemetry export (cargo feature `otlp`): a `safemap serve` child exports
//! its request spans to a fake OTLP/HTTP collector; the exported trace carries
//! the request's `traceparent` trace id. Spans are flushed at SIGTERM.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread")]
async fn request_spans_reach_the_collector_with_the_callers_trace_id() {
    let got: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = got.clone();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                ""
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, collector).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_safemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .arg("--otlp-endpoint")
        .arg(format!("http://{collector_addr}/v1/traces"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let want: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut found = false;
    for _ in 0..50 {
        found = got
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.windows(16).any(|w| w == want.as_slice()));
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "no exported span carried the trace id");
}
