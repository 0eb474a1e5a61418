//! Headless Debian Chromium driven over WebDriver (Debian's `chromedriver`).
//!
//! Locally, a machine without `chromium` and `chromedriver` skips the browser
//! tests with a message; under CI (`CI` set) their absence fails the run, so
//! the tests never pass by skipping where they are meant to run.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// One browser at a time: the machine has two cores and the tests share them.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test waits for the page to show something.
pub const PATIENCE: Duration = Duration::from_secs(15);

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// A browser session; ends the driver (and its browser) when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `width`×`height`, or
    /// `None` (with a message) when they are not installed outside CI.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let (Some(chromium), Some(driver)) =
            (find_program("chromium"), find_program("chromedriver"))
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: the console's browser tests need Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver)"
            );
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // Its own process group, so that dropping the session ends the browser's
        // helper processes too (they outlive chromedriver otherwise).
        let driver = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Ends the session (closes the browser); the driver ends on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// The element with this `data-testid` (and extra CSS), once it exists.
    pub async fn wait_testid(&self, id: &str) -> Element {
        self.wait_css(&format!("[data-testid='{id}']")).await
    }

    /// The first element matching `css`, once it exists.
    pub async fn wait_css(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {PATIENCE:?}: {e}"))
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Waits until `script` returns true.
    pub async fn wait_true(&self, what: &str, script: &str) {
        let started = Instant::now();
        loop {
            if self.js(script, vec![]).await == Value::Bool(true) {
                return;
            }
            assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text contains `needle`; returns the text.
    pub async fn wait_text(&self, id: &str, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.wait_testid(id).await.text().await.unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{id} never said {needle:?}; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that every visible form control has a label and every visible
    /// button a name (what a screen reader announces).
    pub async fn assert_controls_labelled(&self, view: &str) {
        let unnamed = self
            .js(
                "const visible = (e) => e.getClientRects().length > 0;
                 const bad = [];
                 for (const e of document.querySelectorAll('input, textarea, select')) {
                   if (visible(e) && e.labels.length === 0 && !e.getAttribute('aria-label')) bad.push(e.outerHTML);
                 }
                 for (const e of document.querySelectorAll('button, a[href]')) {
                   if (visible(e) && !e.textContent.trim() && !e.getAttribute('aria-label')) bad.push(e.outerHTML);
                 }
                 return bad;",
                vec![],
            )
            .await;
        assert_eq!(unnamed, json!([]), "unlabelled controls in {view}");
    }

    /// Opens the console at `url` and signs in with `token` as a user would.
    pub async fn sign_in(&self, url: &str, token: &str) {
        self.client.goto(&format!("{url}/ui")).await.unwrap();
        self.wait_testid("token-input")
            .await
            .send_keys(token)
            .await
            .unwrap();
        self.wait_testid("token-submit")
            .await
            .click()
            .await
            .unwrap();
        self.wait_true(
            "the signed-in view",
            "return !document.getElementById('nav').hidden",
        )
        .await;
    }

    /// Saves a PNG of the page under `target/console-screenshots/`; with
    /// `for_readme`, also under `docs/` when `SAFEMAP_UPDATE_SCREENSHOTS=1`.
    pub async fn screenshot(&self, name: &str, for_readme: bool) {
        let png = self.client.screenshot().await.unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        if for_readme && std::env::var("SAFEMAP_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            std::fs::write(root.join("docs").join(name), &png).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is the driver's pid (process_group(0) above).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
