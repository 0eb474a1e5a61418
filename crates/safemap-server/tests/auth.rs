//! Authentication and authorization: the matrix of every route × every role,
//! and the token lifecycle (create once-shown, list, revoke at once, hashed at
//! rest, admin.token mode 0600).
#![allow(clippy::unwrap_used)]
mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::{Value, json};

struct Case {
    method: Method,
    route: &'static str,
    path: &'static str,
    role: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Value>,
}

fn c(method: Method, route: &'static str, path: &'static str, role: Option<&'static str>) -> Case {
    Case {
        method,
        route,
        path,
        role,
        headers: vec![("x-reason", "matrix"), ("x-confirm-count", "0")],
        body: None,
    }
}

fn cases() -> Vec<Case> {
    let k = "/v1/maps/{map}/keys/{key}";
    let mut v = vec![
        c(Method::GET, k, "/v1/maps/m/keys/k", Some("read")),
        c(Method::PUT, k, "/v1/maps/m/keys/k", Some("write")),
        c(Method::DELETE, k, "/v1/maps/m/keys/gone", Some("delete")),
        c(
            Method::GET,
            "/v1/maps/{map}/keys",
            "/v1/maps/m/keys",
            Some("read"),
        ),
        c(
            Method::POST,
            "/v1/maps/{map}/refresh",
            "/v1/maps/m/refresh",
            Some("write"),
        ),
        c(
            Method::POST,
            "/v1/maps/{map}/delete-plans",
            "/v1/maps/m/delete-plans",
            Some("delete"),
        ),
        c(
            Method::POST,
            "/v1/maps/{map}/delete-plans/{plan_id}/execute",
            "/v1/maps/m/delete-plans/0000000000000000/execute",
            Some("delete"),
        ),
        c(
            Method::GET,
            "/v1/delete-plans/{plan_id}/tree",
            "/v1/delete-plans/0000000000000000/tree",
            Some("read"),
        ),
        c(
            Method::GET,
            "/v1/maps/{map}/keys/{key}/referrers",
            "/v1/maps/m/keys/k/referrers",
            Some("read"),
        ),
        c(
            Method::POST,
            "/v1/maps/{map}/restore",
            "/v1/maps/m/restore",
            Some("admin"),
        ),
        c(
            Method::GET,
            "/v1/maps/{map}/watch",
            "/v1/maps/m/watch",
            Some("read"),
        ),
        c(Method::GET, "/v1/audit", "/v1/audit", Some("read")),
        c(Method::POST, "/v1/tokens", "/v1/tokens", Some("admin")),
        c(Method::GET, "/v1/tokens", "/v1/tokens", Some("admin")),
        c(
            Method::DELETE,
            "/v1/tokens/{name}",
            "/v1/tokens/nobody",
            Some("admin"),
        ),
        c(Method::GET, "/v1/whoami", "/v1/whoami", Some("any")),
        c(Method::GET, "/healthz", "/healthz", None),
        c(Method::GET, "/readyz", "/readyz", None),
        c(Method::GET, "/metrics", "/metrics", None),
        c(
            Method::GET,
            "/debug/pprof/profile",
            "/debug/pprof/profile?seconds=1",
            Some("admin"),
        ),
        c(Method::GET, "/v1/openapi.json", "/v1/openapi.json", None),
    ];
    for case in &mut v {
        case.body = match case.route {
            "/v1/maps/{map}/keys/{key}" if case.method == Method::PUT => Some(json!({"x": 1})),
            "/v1/maps/{map}/refresh" => Some(json!({"entries": {"r": 1}})),
            "/v1/maps/{map}/delete-plans" => Some(json!({"prefix": "zzz"})),
            "/v1/maps/{map}/restore" => Some(json!({"audit_id": 1})),
            "/v1/tokens" if case.method == Method::POST => {
                Some(json!({"name": "made", "roles": ["read"]}))
            }
            _ => None,
        };
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_times_every_role() {
    let s = TestServer::start().await;
    let _ = s.put("m", "k", json!(1)).await;
    // The matrix covers every documented (= served) route.
    let documented = safemap_server::openapi::documented_routes().unwrap();
    let covered: Vec<(String, String)> = cases()
        .iter()
        .map(|c| (c.method.to_string(), c.route.to_string()))
        .collect();
    for r in &documented {
        assert!(covered.contains(r), "route not in the matrix: {r:?}");
    }
    let mut tokens = vec![(None, None)];
    for role in ["read", "write", "delete", "admin"] {
        tokens.push((
            Some(role),
            Some(s.token(&format!("t-{role}"), &[role]).await),
        ));
    }
    for case in cases() {
        for (role, token) in &tokens {
            let mut r = s.req(case.method.clone(), case.path, token.as_deref());
            for (h, v) in &case.headers {
                r = r.header(*h, *v);
            }
            if let Some(b) = &case.body {
                r = r.json(b);
            }
            let resp = r.send().await.unwrap();
            let st = resp.status().as_u16();
            let ctype = resp.headers().get("content-type").cloned();
            let is_sse =
                ctype.is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
            let body: Value = if is_sse {
                drop(resp);
                Value::Null
            } else {
                serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null)
            };
            let label = format!("{} {} as {:?}: {st} {body}", case.method, case.path, role);
            match (case.role, role) {
                (None, _) => assert!(st < 400, "{label}"),
                (Some(_), None) => {
                    assert_eq!((st, code(&body)), (401, "unauthenticated"), "{label}")
                }
                (Some(need), Some(have)) => {
                    let allowed = *have == "admin" || *have == need || need == "any";
                    if allowed {
                        assert!(st != 401 && st != 403 && st < 500, "{label}");
                    } else {
                        assert_eq!((st, code(&body)), (403, "forbidden"), "{label}");
                    }
                }
            }
        }
    }
    // An unknown token is 401, a malformed header too.
    let (st, _) = sj(s
        .req(Method::GET, "/v1/audit", Some("smp_nope"))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 401);
    let (st, _) = sj(s
        .req(Method::GET, "/v1/audit", None)
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_lifecycle() {
    let s = TestServer::start().await;
    // admin.token is private.
    let mode = std::fs::metadata(s.dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let fresh = s.dir.join("nested/data");
    let (st, _) =
        safemap_server::storage::Storage::open(&fresh, std::time::Duration::from_secs(60)).unwrap();
    st.close();
    let m = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(m & 0o777, 0o700, "a new data directory is private");
    let t = s.token("ci", &["read", "write"]).await;
    assert!(t.starts_with("smp_") && t.len() == 68);
    let (st, v) = sj(s.admin(Method::GET, "/v1/tokens").send().await.unwrap()).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ci"]);
    assert!(
        v.to_string().find("smp_").is_none(),
        "tokens are never listed"
    );
    // Duplicate name, bad role, bad name.
    for (body, want) in [
        (json!({"name": "ci", "roles": ["read"]}), 409),
        (json!({"name": "x", "roles": ["root"]}), 400),
        (json!({"name": "x", "roles": []}), 400),
        (json!({"name": "Bad Name", "roles": ["read"]}), 400),
        (json!({"name": "x"}), 400),
    ] {
        let (st, _) = sj(s
            .admin(Method::POST, "/v1/tokens")
            .json(&body)
            .send()
            .await
            .unwrap())
        .await;
        assert_eq!(st, want, "{body}");
    }
    // Works, then revoked: effective at once.
    let ok = s
        .req(Method::GET, "/v1/maps/m/keys", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (st, _) = sj(s
        .admin(Method::DELETE, "/v1/tokens/ci")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200);
    let gone = s
        .req(Method::GET, "/v1/maps/m/keys", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    let (st, _) = sj(s
        .admin(Method::DELETE, "/v1/tokens/ci")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 404);
    // The last admin token cannot be revoked.
    let (st, v) = sj(s
        .admin(Method::DELETE, "/v1/tokens/admin")
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!((st, code(&v)), (409, "last_admin_token"));
    // Tokens survive a restart, hashed: the database never holds the token itself.
    let t2 = s.token("ops", &["read"]).await;
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let db = std::fs::read(dir.join("safemap.redb")).unwrap();
    let needle = t2.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "token stored in clear"
    );
    let s = TestServer::start_in(&dir, "").await;
    let r = s
        .req(Method::GET, "/v1/audit", Some(&t2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(s);
    drop(tmp);
}
