//! The console (`/ui`) in a real browser: sign in, see a delete appear live,
//! restore it with a reason in Chinese and find the key back over the API;
//! plan and execute with the typed count, restore the whole plan; a read-only
//! token sees no Restore or Plan controls and a restore it forges is refused.
#![allow(clippy::unwrap_used)]
mod browser;
#[path = "../common/mod.rs"]
mod common;

use browser::{Browser, ONE_BROWSER};
use common::{TestServer, sj};
use reqwest::Method;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[maps.orders]
retention = "7d"
delete_breaker = { max_deletes = 100, per_seconds = 60 }

[[maps.orders.deny_delete]]
name = "archived"
pointer = "/status"
equals = "archived"

[[maps.carts.deny_delete]]
name = "pinned"
pointer = "/pinned"
equals = true
"#;

/// The WebDriver code of the Enter key.
const ENTER: &str = "\u{E007}";

/// "回滚错误的部署" ("roll back the bad deploy").
const CHINESE: &str = "回滚错误的部署";

fn encoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn delete_with_reason(s: &TestServer, map: &str, key: &str, reason: &str) {
    let r = s
        .admin(Method::DELETE, &format!("/v1/maps/{map}/keys/{key}"))
        .header("x-reason-encoded", encoded(reason))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "delete {map}/{key}");
}

fn row(map: &str, key: &str) -> String {
    format!("[data-testid='delete-row'][data-map='{map}'][data-key='{key}']")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_appears_live_and_restore_brings_the_key_back() {
    let _one = ONE_BROWSER.lock().await;
    let s = TestServer::start_with(CONFIG).await;
    for (k, v) in [
        (
            "o-1001",
            json!({"status": "paid", "total": 129.5, "customer": "c-17"}),
        ),
        ("o-1002", json!({"status": "shipped", "total": 18})),
        ("o-1003", json!({"status": "paid", "total": 42})),
    ] {
        let _ = s.put("orders", k, v).await;
    }
    let _ = s.put("sessions", "s-9", json!({"user": "u-1"})).await;
    delete_with_reason(&s, "sessions", "s-9", "logout").await;
    let Some(b) = Browser::start(1280, 800).await else {
        return;
    };
    b.sign_in(&s.url, &s.admin).await;
    b.wait_css(&row("sessions", "s-9")).await;

    // Deletes made elsewhere appear without a reload.
    delete_with_reason(&s, "orders", "o-1001", CHINESE).await;
    let r = b.wait_css(&row("orders", "o-1001")).await;
    let text = r.text().await.unwrap();
    assert!(text.contains(CHINESE), "the row shows the reason: {text}");
    assert!(text.contains("admin"), "the row shows the actor: {text}");
    // Open the previous value; it stays open while newer deletes arrive.
    let value = format!("{} details", row("orders", "o-1001"));
    b.wait_css(&format!("{value} summary"))
        .await
        .click()
        .await
        .unwrap();
    delete_with_reason(&s, "orders", "o-1002", "customer asked to cancel").await;
    b.wait_css(&row("orders", "o-1002")).await;
    let open = b.wait_css(&value).await;
    assert!(open.attr("open").await.unwrap().is_some());
    assert!(
        open.text()
            .await
            .unwrap()
            .contains("\"customer\": \"c-17\"")
    );
    let keys: Vec<String> = {
        let mut v = Vec::new();
        for e in b.all("[data-testid='delete-row']").await {
            v.push(e.attr("data-key").await.unwrap().unwrap());
        }
        v
    };
    assert_eq!(keys, ["o-1002", "o-1001", "s-9"], "newest first");
    b.assert_controls_labelled("recent deletes").await;
    b.screenshot("console-deletes.png", true).await;

    // A filter by map hides the other map's deletes.
    b.client
        .goto(&format!("{}/ui#deletes?map=sessions", s.url))
        .await
        .unwrap();
    b.wait_true(
        "the map filter",
        "return document.querySelectorAll(\"[data-testid='delete-row'][data-map='orders']\").length === 0 \
         && document.querySelectorAll(\"[data-testid='delete-row'][data-map='sessions']\").length === 1",
    )
    .await;
    b.client
        .goto(&format!("{}/ui#deletes", s.url))
        .await
        .unwrap();

    // Restore o-1001 with a reason typed in Chinese.
    b.wait_css(&format!(
        "{} [data-testid='restore-button']",
        row("orders", "o-1001")
    ))
    .await
    .click()
    .await
    .unwrap();
    b.wait_testid("restore-reason")
        .await
        .send_keys("误删恢复")
        .await
        .unwrap();
    b.wait_testid("restore-submit").await.click().await.unwrap();
    let said = b.wait_text("restore-result", "Restored 1").await;
    assert!(said.contains("o-1001"), "{said}");
    b.wait_css("#restore-close").await.click().await.unwrap();

    let (st, entry) = sj(s.get("orders", "o-1001").await).await;
    assert_eq!(st, 200, "the key is back");
    assert_eq!(entry["value"]["total"], 129.5);
    let last = s.audit("map=orders&key=o-1001").await.pop().unwrap();
    assert_eq!(last["op"], "restore");
    assert_eq!(last["reason"], "误删恢复", "recorded decoded, in Chinese");

    // The key's history shows the restore with its reason.
    b.client
        .goto(&format!("{}/ui#history?map=orders&key=o-1001", s.url))
        .await
        .unwrap();
    b.wait_true(
        "the history table",
        "return document.getElementById('view-history').innerText.includes('误删恢复')",
    )
    .await;
    let value_removed = b
        .js(
            "return [...document.querySelectorAll('#view-history tbody tr')].some(tr => \
             tr.cells[1].innerText === 'delete' && tr.cells[4].innerText.includes('\"c-17\"'))",
            vec![],
        )
        .await;
    assert_eq!(
        value_removed,
        json!(true),
        "the delete's row shows the value it removed"
    );

    // The map's breaker is shown with its state.
    b.wait_testid("nav-maps").await.click().await.unwrap();
    let breaker = b
        .wait_css("[data-testid='breaker-state'][data-map='orders']")
        .await;
    assert_eq!(breaker.text().await.unwrap(), "closed");
    b.assert_controls_labelled("maps").await;
    b.screenshot("console-maps.png", false).await;

    // At phone width nothing overflows sideways, in any view.
    b.client.set_window_size(390, 844).await.unwrap();
    for view in ["maps", "plans", "history?map=orders&key=o-1001", "deletes"] {
        b.client
            .goto(&format!("{}/ui#{view}", s.url))
            .await
            .unwrap();
        let id = view.split('?').next().unwrap();
        b.wait_true(
            &format!("the {id} view"),
            &format!("return !document.getElementById('view-{id}').hidden"),
        )
        .await;
        b.wait_true(
            &format!("no horizontal overflow in {id} at phone width"),
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;
    }
    b.wait_css(&row("orders", "o-1002")).await;
    b.js(
        "document.querySelector('table.deletes').scrollIntoView()",
        vec![],
    )
    .await;
    b.screenshot("console-phone.png", false).await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_executes_only_with_the_typed_count_and_restores_whole() {
    let _one = ONE_BROWSER.lock().await;
    let s = TestServer::start_with(CONFIG).await;
    for i in 1..=3 {
        let _ = s
            .put("carts", &format!("old-{i}"), json!({"items": i}))
            .await;
    }
    let _ = s.put("carts", "new-1", json!({"items": 9})).await;
    let _ = s.put("carts", "old-4", json!({"pinned": true})).await;
    let Some(b) = Browser::start(1280, 800).await else {
        return;
    };
    b.sign_in(&s.url, &s.admin).await;
    b.wait_testid("nav-plans").await.click().await.unwrap();
    b.wait_testid("plan-map")
        .await
        .send_keys("carts")
        .await
        .unwrap();
    b.wait_testid("plan-prefix")
        .await
        .send_keys("old-")
        .await
        .unwrap();
    b.wait_testid("plan-create").await.click().await.unwrap();
    assert_eq!(b.wait_text("plan-count", "3").await, "3");
    b.assert_controls_labelled("plans").await;
    let dry_run = b.wait_css("#plan-dryrun").await.text().await.unwrap();
    assert!(
        dry_run.contains("old-4") && dry_run.contains("pinned"),
        "the vetoed key and its rule are shown: {dry_run}"
    );

    let execute = b.wait_testid("plan-execute").await;
    assert!(
        !execute.is_enabled().await.unwrap(),
        "disabled before typing"
    );
    b.wait_testid("plan-reason")
        .await
        .send_keys("清理过期购物车")
        .await
        .unwrap();
    let confirm = b.wait_testid("plan-confirm-input").await;
    confirm.send_keys("2").await.unwrap();
    assert!(
        !execute.is_enabled().await.unwrap(),
        "a wrong count keeps it disabled"
    );
    confirm.clear().await.unwrap();
    confirm.send_keys("3").await.unwrap();
    assert!(
        execute.is_enabled().await.unwrap(),
        "the right count and a reason enable it"
    );
    b.screenshot("console-plan.png", true).await;
    // Nothing is deleted before Execute.
    assert_eq!(s.get("carts", "old-1").await.status(), 200);
    execute.click().await.unwrap();
    b.wait_text("plan-result", "Deleted 3").await;
    for i in 1..=3 {
        assert_eq!(s.get("carts", &format!("old-{i}")).await.status(), 404);
    }
    assert_eq!(s.get("carts", "old-4").await.status(), 200, "vetoed, kept");
    assert_eq!(s.get("carts", "new-1").await.status(), 200);
    let recs = s.audit("map=carts").await;
    let deletes: Vec<&Value> = recs.iter().filter(|r| r["op"] == "delete").collect();
    assert_eq!(deletes.len(), 3);
    assert!(deletes.iter().all(|r| r["reason"] == "清理过期购物车"));

    // From the report to the plan's deletes, and restore all of them at once.
    b.wait_css("[data-testid='plan-result'] a")
        .await
        .click()
        .await
        .unwrap();
    let restore_all = b.wait_testid("restore-plan-button").await;
    assert_eq!(
        restore_all.text().await.unwrap(),
        "Restore all 3 of this plan"
    );
    // By keyboard: Enter on the button, type the reason, Enter submits.
    restore_all.send_keys(ENTER).await.unwrap();
    b.wait_true(
        "the focus in the reason field",
        "return document.activeElement.dataset.testid === 'restore-reason'",
    )
    .await;
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&format!("wrong carts{ENTER}"))
        .await
        .unwrap();
    b.wait_text("restore-result", "Restored 3, skipped 0").await;
    for i in 1..=3 {
        assert_eq!(s.get("carts", &format!("old-{i}")).await.status(), 200);
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_token_sees_no_restore_and_a_forged_restore_is_refused() {
    let _one = ONE_BROWSER.lock().await;
    let s = TestServer::start_with(CONFIG).await;
    let _ = s.put("orders", "o-7", json!({"status": "paid"})).await;
    let del = s.delete("orders", "o-7", "duplicate").await;
    let (_, del) = sj(del).await;
    let audit_id = del["audit_id"].as_u64().unwrap();
    let reader = s.token("oncall-viewer", &["read"]).await;
    let deleter = s.token("deployer", &["read", "delete"]).await;
    let Some(b) = Browser::start(1280, 800).await else {
        return;
    };

    b.sign_in(&s.url, &reader).await;
    b.wait_css(&row("orders", "o-7")).await;
    assert!(b.all("[data-testid='restore-button']").await.is_empty());
    let plans = b.wait_testid("nav-plans").await;
    assert!(
        !plans.is_displayed().await.unwrap(),
        "no Plans for a read-only token"
    );
    // The same request the Restore button would send, forged from the page.
    let status = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/maps/orders/restore', {method: 'POST',
               headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('safemap.token'),
                         'Content-Type': 'application/json', 'X-Reason-Encoded': 'forged'},
               body: JSON.stringify({audit_id: arguments[0]})})
             .then(r => done(r.status), e => done(String(e)));",
            vec![json!(audit_id)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert_eq!(s.get("orders", "o-7").await.status(), 404, "still deleted");
    // Nor in the key's history, nor by going to Plans directly.
    b.client
        .goto(&format!("{}/ui#history?map=orders&key=o-7", s.url))
        .await
        .unwrap();
    b.wait_true(
        "the history of o-7",
        "return document.getElementById('view-history').innerText.includes('duplicate')",
    )
    .await;
    assert!(b.all("[data-testid='restore-button']").await.is_empty());
    b.client.goto(&format!("{}/ui#plans", s.url)).await.unwrap();
    b.wait_true(
        "the deletes view instead of Plans",
        "return !document.getElementById('view-deletes').hidden",
    )
    .await;
    assert!(
        !b.wait_testid("plan-create")
            .await
            .is_displayed()
            .await
            .unwrap()
    );

    // A delete token plans but does not restore.
    b.wait_css("#logout").await.click().await.unwrap();
    b.sign_in(&s.url, &deleter).await;
    b.wait_css(&row("orders", "o-7")).await;
    assert!(b.all("[data-testid='restore-button']").await.is_empty());
    assert!(
        b.wait_testid("nav-plans")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    // A reload keeps the tab signed in (sessionStorage), and no URL holds the token.
    b.client.refresh().await.unwrap();
    b.wait_css(&row("orders", "o-7")).await;
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&deleter));
    b.close().await;
}
