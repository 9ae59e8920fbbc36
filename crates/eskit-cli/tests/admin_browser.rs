//! The DLQ page in a real headless Chromium (Debian's `chromium` + `chromium-driver`),
//! driven over WebDriver with fantoccini: load the page, enter the token, see the dead
//! entry (its text escaped), click Replay, see it delivered.
//!
//! Without chromedriver the test prints why and skips, except under CI (`CI` set),
//! where it fails: `.ci/run` installs both packages.

#[allow(dead_code, unused_imports)]
#[path = "../src/admin/mod.rs"]
mod admin;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use eskit_testkit::wait_until;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{Fixture, Setup, TOKEN, WAIT};
use tokio::process::{Child, Command};

/// Chromium flags for a sandbox-less, offline, headless run.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
];

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in candidates {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/lib/chromium")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver and chromium, or why not. Under CI a missing binary is a failure.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let driver = find_binary("ESKIT_TEST_CHROMEDRIVER", &["chromedriver"]);
    let chromium = find_binary("ESKIT_TEST_CHROMIUM", &["chromium", "chromium-browser"]);
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        (d, c) => {
            let missing = [("chromedriver", d.is_none()), ("chromium", c.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and ");
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "{missing} not found under CI: .ci/run must install chromium and chromium-driver"
            );
            println!(
                "SKIPPED dlq_page_replays_a_dead_entry_in_chromium: {missing} not found \
                 (apt-get install -y chromium chromium-driver, or set ESKIT_TEST_CHROMEDRIVER / ESKIT_TEST_CHROMIUM)"
            );
            None
        }
    }
}

/// A chromedriver child on a free loopback port; killed on drop.
struct Driver {
    _child: Child,
    url: String,
}

async fn start_driver(driver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    let ready = wait_until(WAIT, || async {
        match reqwest::get(&status).await {
            Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
            Err(_) => false,
        }
    })
    .await;
    assert!(ready, "chromedriver did not become ready on {url}");
    Driver { _child: child, url }
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium.display().to_string(), "args": args }),
    );
    ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("open a Chromium session")
}

/// Text of the first element matching `css`, if any.
async fn text_of(client: &Client, css: &str) -> Option<String> {
    let el = client.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

async fn wait_text(client: &Client, css: &str, expected: &str) {
    let ok = wait_until(WAIT, || async {
        text_of(client, css).await.as_deref() == Some(expected)
    })
    .await;
    assert!(
        ok,
        "{css} never showed {expected:?}; it shows {:?}",
        text_of(client, css).await
    );
}

#[tokio::test]
async fn dlq_page_replays_a_dead_entry_in_chromium() {
    let Some((driver_bin, chromium)) = browser_binaries() else {
        return;
    };
    let f = Fixture::start("page-hooks", Setup::default()).await;
    // An error text full of markup: the page must show it as text.
    let hostile = "HTTP 422: <img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";
    let id = f.append("order-7", json!({ "error": hostile })).await;
    f.wait_state("order-7", id, "dead").await;

    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let client = connect(&driver, &chromium, profile.path()).await;
    let result = drive(&client, &f, id, hostile).await;
    let shot = client.screenshot().await.ok();
    client.close().await.ok();
    if let Some(png) = shot {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eskit-dlq-page.png");
        std::fs::write(&path, png).ok();
        println!("screenshot: {}", path.display());
    }
    f.stop().await;
    result.unwrap();
}

async fn drive(client: &Client, f: &Fixture, id: uuid::Uuid, hostile: &str) -> Result<(), String> {
    client.goto(&f.base).await.map_err(|e| e.to_string())?;

    // No token yet: the page asks for one. A wrong one is refused.
    let token = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login:not([hidden]) #token"))
        .await
        .map_err(|e| format!("no token form: {e}"))?;
    token
        .send_keys("not-the-token-at-all")
        .await
        .map_err(|e| e.to_string())?;
    client
        .find(Locator::Css("#login-button"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_text(client, "#login-error", "missing or wrong bearer token").await;

    // The right token, entered once.
    let token = client.find(Locator::Css("#token")).await.map_err(|e| e.to_string())?;
    token.send_keys(TOKEN).await.map_err(|e| e.to_string())?;
    client
        .find(Locator::Css("#login-button"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;

    // The dead entry, with its attempts and its error shown as text.
    let row = format!("#dlq tr[data-id=\"{id}\"]");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&row))
        .await
        .map_err(|e| format!("dead entry not shown: {e}"))?;
    wait_text(client, &format!("{row} td.error"), hostile).await;
    wait_text(client, &format!("{row} td.attempts"), "1").await;
    wait_text(client, "#destinations tr[data-destination=\"page-hooks\"] td.dead", "1").await;
    let injected = client
        .execute(
            "return [document.querySelectorAll('img').length, typeof window.__xss, \
             sessionStorage.getItem('eskit-admin-token'), localStorage.length];",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(
        injected,
        json!([0, "undefined", TOKEN, 0]),
        "no markup from entry text, token only in sessionStorage"
    );

    // Replay with the destination healthy: the page shows it delivered.
    f.switch.set_failing(false);
    client
        .find(Locator::Css(&format!("{row} button.replay")))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_text(client, &format!("#replayed tr[data-id=\"{id}\"] td.state"), "delivered").await;
    assert!(f.switch.accepted(id), "the destination received the replayed entry");
    wait_text(client, "#destinations tr[data-destination=\"page-hooks\"] td.dead", "0").await;
    let ok = wait_until(WAIT, || async { client.find(Locator::Css(&row)).await.is_err() }).await;
    assert!(ok, "the entry is gone from the DLQ table");
    // Auto-refresh: an entry that dies now appears without reloading.
    f.switch.set_failing(true);
    let later = f.append("order-8", json!({ "error": "HTTP 503: later" })).await;
    f.wait_state("order-8", later, "dead").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#dlq tr[data-id=\"{later}\"]")))
        .await
        .map_err(|e| format!("auto-refresh did not show the new dead entry: {e}"))?;
    Ok(())
}
