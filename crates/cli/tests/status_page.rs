//! The `/status` page in headless Chromium (Debian's `chromium`, driven from its command line: `--dump-dom` gives
//! the DOM after the page's script ran, `--screenshot` a phone-sized picture) against a real `chainmux run` with
//! API keys required: one anvil behind two fault proxies (`primary` and `secondary`), PostgreSQL, and a key made
//! with `chainmux keys create` that the page gets as `/status?key=…`.
//!
//! The page must show the chain and both upstreams healthy; once the primary dies and `/v1/status` shows it
//! excluded, a new load must show it excluded with its reason, and the incident. Without a key the page still loads
//! and shows the refusal in its error banner. Screenshots go to `<target>/test-artifacts/status-page/`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chainmux_testkit::Fault;
use common::{Chainmux, Config, ProxiedPair, chainmux_command, http, temp_dir};
use serde_json::Value;

const PROBE_INTERVAL_MS: u64 = 100;
/// Long, so that the dead primary stays `excluded` (circuit open) while the browser loads the page, instead of
/// flipping to a half-open probe in between.
const BREAKER_COOLDOWN_MS: u64 = 60_000;
/// How long a state change may take to show up in `/v1/status` (a few probes, with margin for a loaded machine).
const VIEW_WAIT: Duration = Duration::from_secs(30);
/// Page time Chromium lets pass before dumping: the first report is fetched at once, the next after 5 s.
const VIRTUAL_TIME_MS: u64 = 8000;
/// Guard against a hung browser only; a load normally takes a second or two.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// The browser: `CHAINMUX_CHROMIUM`, else `chromium` on `PATH`. Missing is a failure, not a skip.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAINMUX_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found (neither CHAINMUX_CHROMIUM nor `chromium` on PATH): run scripts/ensure-tools.sh, \
                 which installs Debian's chromium package"
            )
        })
}

/// `<target>/test-artifacts/status-page`, created: `CARGO_TARGET_DIR` when set, else the target dir this test
/// binary runs from (`<target>/<profile>/deps/status_page-…`).
fn artifacts_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
            .unwrap_or_else(|| panic!("cannot locate the target dir from the test binary's path")),
    };
    let dir = target.join("test-artifacts").join("status-page");
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// Runs headless Chromium on `url` with `args` (a fresh profile each time); returns its stdout.
async fn browse(url: &str, args: &[String]) -> String {
    let profile = temp_dir("chromium-profile");
    let mut command = tokio::process::Command::new(chromium());
    command
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    // The gateway is on loopback; no proxy must come between.
    for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(name);
    }
    let output = tokio::time::timeout(BROWSER_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER_TIMEOUT:?} on {url}"))
        .unwrap_or_else(|err| panic!("cannot run chromium: {err}; run scripts/ensure-tools.sh"));
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed ({}) on {url}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM of `url` after its script ran.
async fn dump_dom(url: &str) -> String {
    let dom = browse(url, &["--dump-dom".to_owned()]).await;
    assert!(dom.contains("<h1>chainmux status</h1>"), "not the status page:\n{dom}");
    dom
}

/// A phone-sized (390×844) screenshot of `url` into `<artifacts>/<name>`; returns its path.
async fn screenshot(url: &str, name: &str) -> PathBuf {
    let path = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&path);
    browse(url, &[format!("--screenshot={}", path.display()), "--window-size=390,844".to_owned()]).await;
    let bytes =
        std::fs::read(&path).unwrap_or_else(|err| panic!("no screenshot at {}: {err}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    println!("status page screenshot: {}", path.display());
    path
}

/// The HTML of the element that starts with `opening` (an exact opening tag), up to its `</{tag}>`.
fn element<'a>(dom: &'a str, opening: &str, tag: &str) -> Option<&'a str> {
    let start = dom.find(opening)?;
    let rest = &dom[start..];
    let end = rest.find(&format!("</{tag}>"))?;
    Some(&rest[..end])
}

/// The row of upstream `name` in state `state`, failing with the DOM when there is none.
fn upstream_row<'a>(dom: &'a str, name: &str, state: &str) -> &'a str {
    element(dom, &format!(r#"<tr data-upstream="{name}" data-state="{state}">"#), "tr")
        .unwrap_or_else(|| panic!("the page shows no upstream {name} in state {state}:\n{dom}"))
}

/// Whether the error banner is shown, and its text.
fn banner(dom: &str) -> (bool, String) {
    let start = dom.find(r#"<div id="error""#).unwrap_or_else(|| panic!("no error banner element:\n{dom}"));
    let rest = &dom[start..];
    let tag_end = rest.find('>').expect("end of the banner's tag");
    let end = rest.find("</div>").expect("end of the banner");
    (!rest[..tag_end].contains(" hidden"), rest[tag_end + 1..end].to_owned())
}

fn upstream_state(status: &Value, name: &str) -> Option<String> {
    status["chains"][0]["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["name"] == name)
        .and_then(|u| u["state"].as_str().map(str::to_owned))
}

/// `GET {base}/v1/status` with the key; `None` unless it answers 200 with JSON.
async fn status_with_key(base: &str, key: &str) -> Option<Value> {
    let response = http().get(format!("{base}/v1/status")).header("x-api-key", key).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    serde_json::from_str(&response.text().await.ok()?).ok()
}

/// A key from `chainmux keys create` against `config`'s database.
fn create_key(config: &Config) -> String {
    let path = temp_dir("status-page-keys").join("chainmux.toml");
    std::fs::write(&path, config.toml(&format!("127.0.0.1:{}", chainmux_testkit::free_port())))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    let output = chainmux_command()
        .args(["keys", "create", "--name", "status-page", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux keys create: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "keys create: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.trim().to_owned()
}

#[tokio::test]
async fn the_status_page_shows_chains_upstreams_and_an_excluded_upstream_in_chromium() {
    chainmux_testkit::install_crypto_provider();
    // First, so a machine without the browser fails at once with the hint.
    chromium();
    let ProxiedPair { anvil: _anvil, db: _db, eth, primary, secondary: _secondary, mut config } =
        ProxiedPair::start(PROBE_INTERVAL_MS, BREAKER_COOLDOWN_MS).await;
    config.gateway_key("require_api_key", true);
    common::migrate(&config);
    let key = create_key(&config);
    let key = key.as_str();
    let mut chainmux = Chainmux::start(&config).await;
    let base = chainmux.base.clone();
    let base = base.as_str();

    // The page is open (it holds no data) and locked down by its policy; the data it polls is not open.
    let response = http().get(format!("{base}/status")).send().await.expect("GET /status");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let unkeyed = http().get(format!("{base}/v1/status")).send().await.expect("GET /v1/status");
    assert_eq!(unkeyed.status(), 401, "/v1/status stays guarded");

    // Indexed, both upstreams healthy.
    let head = eth.block_number().await;
    chainmux
        .wait_for("both upstreams healthy and the chain indexed in /v1/status", VIEW_WAIT, || async {
            let status = status_with_key(base, key).await?;
            let chain = &status["chains"][0];
            (chain["indexed_head"] == head
                && upstream_state(&status, "primary").as_deref() == Some("healthy")
                && upstream_state(&status, "secondary").as_deref() == Some("healthy"))
            .then_some(())
        })
        .await;

    // Without a key the page loads and says why it has no data.
    let dom = dump_dom(&format!("{base}/status")).await;
    let (shown, text) = banner(&dom);
    assert!(shown && text.contains("HTTP 401") && text.contains("?key="), "banner: {shown} {text:?}");
    assert!(!dom.contains(r#"data-chain="local""#), "no data without a key:\n{dom}");

    let page = format!("{base}/status?key={key}");
    let dom = dump_dom(&page).await;
    let (shown, text) = banner(&dom);
    assert!(!shown, "error banner shown with a valid key: {text}");
    assert!(dom.contains(">Last updated "), "no last-updated time:\n{dom}");
    let card = element(&dom, r#"<article class="card" data-chain="local" data-health="ok">"#, "article")
        .unwrap_or_else(|| panic!("no healthy card of chain local:\n{dom}"));
    assert!(card.contains("<h2>local</h2>"), "{card}");
    let indexed = element(card, r#"<div data-stat="indexed_head">"#, "div").expect("indexed head stat");
    assert!(indexed.contains(&format!("<dd>{head}</dd>")), "indexed head {head}: {indexed}");
    for name in ["primary", "secondary"] {
        let row = upstream_row(&dom, name, "healthy");
        assert!(row.contains(&format!("<strong>{name}</strong>")), "{row}");
        assert!(row.contains(">closed</span>"), "breaker closed: {row}");
    }
    assert!(!dom.contains(r#"data-kind="upstream_excluded""#), "an exclusion before any fault:\n{dom}");
    let before = screenshot(&page, "before.png").await;

    // The primary dies: once /v1/status has it excluded, the page does too, with the reason and the incident.
    primary.set(Fault::Refuse).await;
    chainmux
        .wait_for("the primary excluded in /v1/status", VIEW_WAIT, || async {
            let status = status_with_key(base, key).await?;
            (upstream_state(&status, "primary").as_deref() == Some("excluded")).then_some(())
        })
        .await;
    let dom = dump_dom(&page).await;
    let (shown, text) = banner(&dom);
    assert!(!shown, "error banner shown: {text}");
    let row = upstream_row(&dom, "primary", "excluded");
    assert!(row.contains(">excluded</span>"), "state as text: {row}");
    assert!(row.contains(r#"<td class="wrap" data-field="reason">circuit open</td>"#), "reason: {row}");
    assert!(row.contains(">open</span>"), "breaker open: {row}");
    upstream_row(&dom, "secondary", "healthy");
    let incident = element(&dom, r#"<tr data-kind="upstream_excluded" data-upstream="primary">"#, "tr")
        .unwrap_or_else(|| panic!("no exclusion incident of the primary:\n{dom}"));
    assert!(incident.contains("circuit open"), "{incident}");
    // Its time, as the page writes it: a date and a time of day.
    let time = incident.split("<td").nth(1).unwrap_or_default();
    assert!(
        time.split('>')
            .nth(1)
            .is_some_and(|t| t.len() >= 19 && t.as_bytes()[4] == b'-' && t.as_bytes()[13] == b':'),
        "incident time: {incident}"
    );
    let after = screenshot(&page, "after.png").await;
    assert_ne!(
        std::fs::read(&before).expect("before.png"),
        std::fs::read(&after).expect("after.png"),
        "the page looks the same with the primary excluded"
    );
}
