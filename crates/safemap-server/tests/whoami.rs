//! `GET /v1/whoami`: a token learns its own name and roles, whatever they are.
#![allow(clippy::unwrap_used)]
mod common;

use common::{TestServer, code, sj};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn whoami_names_the_token_and_its_roles() {
    let s = TestServer::start().await;
    let (st, me) = sj(s.admin(Method::GET, "/v1/whoami").send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(me, json!({"name": "admin", "roles": ["admin"]}));

    // A token without `read` may still ask who it is.
    let ops = s.token("deployer", &["delete", "write"]).await;
    let (st, me) = sj(s
        .req(Method::GET, "/v1/whoami", Some(&ops))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        me,
        json!({"name": "deployer", "roles": ["write", "delete"]})
    );

    for bad in [None, Some("smp_unknown")] {
        let (st, body) = sj(s.req(Method::GET, "/v1/whoami", bad).send().await.unwrap()).await;
        assert_eq!((st, code(&body)), (401, "unauthenticated"));
    }
    // A revoked token is unknown at once.
    let r = s
        .admin(Method::DELETE, "/v1/tokens/deployer")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _) = sj(s
        .req(Method::GET, "/v1/whoami", Some(&ops))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(st, 401);
}
