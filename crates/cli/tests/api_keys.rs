//! API keys, rate limits and CORS through the real binary: keys made with `chainmux keys`, a `chainmux run` on a
//! real anvil and PostgreSQL, and plain HTTP requests, with statuses, headers and metrics checked as a client sees
//! them.

mod common;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use chainmux_testkit::{Anvil, TestDb, free_port};
use common::{Config, POLL, chainmux_command, metric_value, temp_dir};
use serde_json::{Value, json};

/// Longer than the gateway's key cache (5 s): a revocation must show within it.
const REVOCATION_TIMEOUT: Duration = Duration::from_secs(8);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `chainmux run` with extra `[gateway]` keys, which the shared harness has no setter for.
struct Server {
    base: String,
    dir: PathBuf,
    log_path: PathBuf,
    child: Child,
}

impl Server {
    async fn start(config: &Config, gateway: &str) -> Server {
        let port = free_port();
        let dir = temp_dir("keys-run");
        let text = config.toml(&format!("127.0.0.1:{port}")).replacen(
            "[gateway]\n",
            &format!("[gateway]\n{gateway}\n"),
            1,
        );
        let config_path = dir.join("chainmux.toml");
        std::fs::write(&config_path, text).expect("write config");
        let log_path = dir.join("chainmux.log");
        let log = File::create(&log_path).expect("create log");
        let child = chainmux_command()
            .args(["run", "--config"])
            .arg(&config_path)
            .env("CHAINMUX_LOG", "debug,sqlx=warn,hyper=info")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start chainmux");
        let mut server = Server { base: format!("http://127.0.0.1:{port}"), dir, log_path, child };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("chainmux exited ({status}):\n{}", server.log());
            }
            if let Ok(response) = client().get(server.url("/health")).send().await
                && response.status() == 200
            {
                return server;
            }
            assert!(started.elapsed() < START_TIMEOUT, "chainmux did not answer /health:\n{}", server.log());
            tokio::time::sleep(POLL).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics_text().await;
        metric_value(&text, name, labels).unwrap_or(0.0)
    }

    async fn metrics_text(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- chainmux log -----\n{}\n----- end -----", self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn client() -> reqwest::Client {
    client_from(Ipv4Addr::LOCALHOST)
}

/// A client whose connections come from `local` (any 127.0.0.0/8 address is a loopback address on Linux).
fn client_from(local: Ipv4Addr) -> reqwest::Client {
    chainmux_testkit::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(local))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client")
}

/// Status, headers and JSON body (`Null` when the body is not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

async fn get_with_key(server: &Server, path: &str, key: Option<&str>) -> Answer {
    let mut request = client().get(server.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    send(request).await
}

async fn rpc_with_key(server: &Server, key: Option<&str>) -> Answer {
    let mut request = client()
        .post(server.url("/rpc/local"))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).to_string());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    send(request).await
}

/// Runs `chainmux keys <args> --config <file>`; exit status, stdout, stderr.
fn keys(config_path: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let output = chainmux_command()
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config_path)
        .output()
        .expect("run chainmux keys");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status, text(&output.stdout), text(&output.stderr))
}

/// `keys create` that must succeed; returns the printed key.
fn create_key(config_path: &Path, args: &[&str]) -> String {
    let mut full = vec!["create"];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = keys(config_path, &full);
    assert!(status.success(), "keys create {args:?}: {stdout}{stderr}");
    let key = stdout.trim().to_owned();
    assert_eq!(stdout.lines().count(), 1, "the key alone on stdout: {stdout:?}");
    assert!(
        key.len() == 68 && key.starts_with("cmx_") && key[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "key format: {key:?}"
    );
    assert!(
        stderr.contains(&key[..12]) && !stderr.contains(&key[12..]),
        "stderr names the prefix only: {stderr}"
    );
    key
}

fn write_config(config: &Config) -> PathBuf {
    let path = temp_dir("keys-cli").join("chainmux.toml");
    std::fs::write(&path, config.toml(&format!("127.0.0.1:{}", free_port()))).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_checked_limited_and_revoked() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    let config_path = write_config(&config);

    // --- CLI: create, list; the database holds hashes only. -------------------------------------------------
    let alpha = create_key(&config_path, &["--name", "alpha"]);
    let beta = create_key(&config_path, &["--name", "beta", "--rps", "2", "--burst", "2"]);
    let gamma = create_key(&config_path, &[]);
    assert!(alpha != beta && beta != gamma);
    let (status, _, stderr) = keys(&config_path, &["create", "--name", "alpha"]);
    assert!(!status.success() && stderr.contains("a key named \"alpha\" exists"), "{stderr}");
    let (status, _, stderr) = keys(&config_path, &["create", "--rps", "0"]);
    assert!(!status.success(), "--rps 0 is refused: {stderr}");

    let pool = common::connect(&db.url).await;
    for key in [&alpha, &beta, &gamma] {
        // Hashed by PostgreSQL here, independently of the code under test.
        let (stored, prefix): (bool, String) = sqlx::query_as(
            "SELECT key_hash = sha256(decode($1, 'hex')), prefix FROM api_keys WHERE prefix = $2",
        )
        .bind(&key[4..])
        .bind(&key[..12])
        .fetch_one(&pool)
        .await
        .expect("stored key");
        assert!(stored, "key_hash is the SHA-256 of the key's bytes");
        assert_eq!(prefix, key[..12]);
    }
    let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_all(&pool)
        .await
        .expect("dump");
    for key in [&alpha, &beta, &gamma] {
        assert!(!dump.iter().any(|row| row.contains(&key[12..])), "the key itself is not stored: {dump:?}");
    }

    let (status, listing, stderr) = keys(&config_path, &["list"]);
    assert!(status.success(), "{stderr}");
    let line_of = |prefix: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {listing}"))
            .to_owned()
    };
    let beta_line: Vec<String> = line_of(&beta[..12]).split_whitespace().map(str::to_owned).collect();
    assert_eq!(beta_line[1..6], ["beta", "2", "2", "200*", "400*"], "{listing}");
    let alpha_line: Vec<String> = line_of(&alpha[..12]).split_whitespace().map(str::to_owned).collect();
    assert_eq!(alpha_line[1..6], ["alpha", "100*", "200*", "200*", "400*"], "{listing}");
    assert!(line_of(&gamma[..12]).split_whitespace().nth(1) == Some("-"), "{listing}");
    for key in [&alpha, &beta, &gamma] {
        assert!(!listing.contains(&key[12..]), "list never shows a key: {listing}");
    }

    // --- The gateway with keys required and CORS for one origin. --------------------------------------------
    let server =
        Server::start(&config, "require_api_key = true\ncors_allowed_origins = [\"https://app.example\"]")
            .await;

    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(get_with_key(&server, open, None).await.status, 200, "{open} needs no key");
    }
    let missing = get_with_key(&server, "/v1/chains", None).await;
    assert_eq!((missing.status, missing.error_code()), (401, "unauthorized"), "{}", missing.body);
    let missing_rpc = rpc_with_key(&server, None).await;
    assert_eq!(missing_rpc.status, 401, "{}", missing_rpc.body);
    let unknown = format!("cmx_{}", "5a".repeat(32));
    let bad = get_with_key(&server, "/v1/chains", Some(&unknown)).await;
    assert_eq!((bad.status, bad.error_code()), (403, "forbidden"), "{}", bad.body);
    let malformed = get_with_key(&server, "/v1/chains", Some("not-a-key")).await;
    assert_eq!((malformed.status, malformed.error_code()), (403, "forbidden"), "{}", malformed.body);

    let good = get_with_key(&server, "/v1/chains", Some(&alpha)).await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(good.body["chains"][0]["name"], "local", "{}", good.body);
    let bearer = send(client().get(server.url("/v1/chains")).bearer_auth(&alpha)).await;
    assert_eq!(bearer.status, 200, "{}", bearer.body);
    // `?key=` is taken out before the handler, which rejects unknown parameters.
    let in_query =
        get_with_key(&server, &format!("/v1/chains/local/transfers?limit=1&key={alpha}"), None).await;
    assert_eq!(in_query.status, 200, "{}", in_query.body);
    assert!(in_query.body["items"].is_array(), "{}", in_query.body);
    let unknown_param =
        get_with_key(&server, "/v1/chains/local/transfers?limit=1&other=1", Some(&alpha)).await;
    assert_eq!(
        unknown_param.status, 400,
        "other unknown parameters are still rejected: {}",
        unknown_param.body
    );
    let rpc = rpc_with_key(&server, Some(&alpha)).await;
    assert_eq!((rpc.status, &rpc.body["result"]), (200, &json!("0x7a69")), "{}", rpc.body);

    // --- Per-key limits: beta (2/s, burst 2) runs dry, alpha does not; beta's RPC budget is separate. -----------
    let started = Instant::now();
    let first = get_with_key(&server, "/v1/chains", Some(&beta)).await;
    let second = get_with_key(&server, "/v1/chains", Some(&beta)).await;
    let third = get_with_key(&server, "/v1/chains", Some(&beta)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(450),
        "three requests took {elapsed:?}: too slow to exhaust a 2/s budget"
    );
    assert_eq!((first.status, second.status), (200, 200), "{} {}", first.body, second.body);
    assert_eq!((third.status, third.error_code()), (429, "rate_limited"), "{}", third.body);
    let retry_after: u64 = third.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry_after >= 1, "{retry_after}");
    assert!(!third.body.to_string().contains(&beta[4..]), "errors never echo the key: {}", third.body);
    let other = get_with_key(&server, "/v1/chains", Some(&alpha)).await;
    assert_eq!(other.status, 200, "another key is unaffected: {}", other.body);
    let beta_rpc = rpc_with_key(&server, Some(&beta)).await;
    assert_eq!(beta_rpc.status, 200, "/rpc spends a separate budget: {}", beta_rpc.body);
    // After Retry-After, the key may call again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(get_with_key(&server, "/v1/chains", Some(&beta)).await.status, 200);

    // --- CORS: preflight answered for the allowed origin only; refusals readable by the page. -----------------
    let preflight = |origin: &'static str| {
        send(
            client()
                .request(reqwest::Method::OPTIONS, server.url("/v1/chains"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "x-api-key"),
        )
    };
    let allowed = preflight("https://app.example").await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(
        allowed.header("access-control-allow-headers").is_some_and(|h| h.contains("x-api-key")),
        "{:?}",
        allowed.headers
    );
    let denied = preflight("https://evil.example").await;
    assert_eq!(denied.header("access-control-allow-origin"), None, "{:?}", denied.headers);
    let refused = send(client().get(server.url("/v1/chains")).header("origin", "https://app.example")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example"));

    // --- Revocation: refused within the key cache's lifetime; revoking twice is an error. --------------------
    assert_eq!(get_with_key(&server, "/v1/chains", Some(&gamma)).await.status, 200);
    let (status, _, stderr) = keys(&config_path, &["revoke", &gamma[..12]]);
    assert!(status.success() && stderr.contains(&gamma[..12]), "{stderr}");
    let revoked_at = Instant::now();
    loop {
        let answer = get_with_key(&server, "/v1/chains", Some(&gamma)).await;
        if answer.status == 403 {
            assert_eq!(answer.error_code(), "forbidden");
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(revoked_at.elapsed() < REVOCATION_TIMEOUT, "revoked key still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, stderr) = keys(&config_path, &["revoke", &gamma[..12]]);
    assert!(!status.success() && stderr.contains("already revoked"), "{stderr}");
    let (status, _, stderr) = keys(&config_path, &["revoke", "alpha"]);
    assert!(status.success(), "revoke by name: {stderr}");
    let (status, _, stderr) = keys(&config_path, &["revoke", "nobody"]);
    assert!(!status.success() && stderr.contains("no key"), "{stderr}");
    let (_, listing, _) = keys(&config_path, &["list"]);
    assert_ne!(line_of_in(&listing, &gamma[..12]).split_whitespace().last(), Some("-"), "{listing}");
    assert_eq!(line_of_in(&listing, &beta[..12]).split_whitespace().last(), Some("-"), "{listing}");

    // --- Metrics count failures by reason and refusals by scope, without keys in labels; logs hold no key. ----
    for (reason, at_least) in [("missing", 2.0), ("unknown", 1.0), ("invalid", 1.0), ("revoked", 1.0)] {
        let count = server.metric("chainmux_auth_failures_total", &[("reason", reason)]).await;
        assert!(count >= at_least, "auth failures {reason}: {count}");
    }
    let limited =
        server.metric("chainmux_rate_limited_total", &[("scope", "key"), ("route_kind", "rest")]).await;
    assert_eq!(limited, 1.0);
    let metrics = server.metrics_text().await;
    let log = server.log();
    for key in [&alpha, &beta, &gamma, &unknown] {
        assert!(!metrics.contains(&key[12..]), "a key in /metrics");
        assert!(!log.contains(&key[12..]), "a key in the log");
    }
}

fn line_of_in(listing: &str, prefix: &str) -> String {
    listing
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} in {listing}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_are_limited_per_ip_with_a_separate_rpc_budget() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    let server = Server::start(
        &config,
        "anonymous_rps = 1\nanonymous_burst = 2\nanonymous_rpc_rps = 1\nanonymous_rpc_burst = 3",
    )
    .await;

    let rest = |client: reqwest::Client| {
        let url = server.url("/v1/chains");
        async move { send(client.get(url).header("x-forwarded-for", "203.0.113.9")).await }
    };
    let started = Instant::now();
    let statuses = [rest(client()).await.status, rest(client()).await.status];
    let third = rest(client()).await;
    assert!(started.elapsed() < Duration::from_millis(900), "too slow to exhaust a 1/s budget");
    assert_eq!(statuses, [200, 200]);
    // X-Forwarded-For is ignored without trust_forwarded_for: still the same client.
    assert_eq!((third.status, third.error_code()), (429, "rate_limited"), "{}", third.body);
    assert!(third.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    // Another address has its own budget.
    let elsewhere = rest(client_from(Ipv4Addr::new(127, 0, 0, 2))).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);

    // The RPC budget (burst 3) is untouched by the REST requests.
    for call in 0..3 {
        let answer = rpc_with_key(&server, None).await;
        assert_eq!(answer.status, 200, "rpc call {call}: {}", answer.body);
    }
    let over = rpc_with_key(&server, None).await;
    assert_eq!((over.status, over.error_code()), (429, "rate_limited"), "{}", over.body);
    // Every call of a batch counts: a batch of 3 spends another client's whole burst of 3.
    let batcher = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []});
    let batch = json!([call, call, call]).to_string();
    let post = |body: String| {
        batcher.post(server.url("/rpc/local")).header("content-type", "application/json").body(body)
    };
    let answered = send(post(batch)).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(answered.body.as_array().map(Vec::len), Some(3), "{}", answered.body);
    let after = send(post(call.to_string())).await;
    assert_eq!((after.status, after.error_code()), (429, "rate_limited"), "{}", after.body);
    // Made-up keys spend the sender's anonymous budget before they reach the database: 403, 403, then 429.
    let guesser = client_from(Ipv4Addr::new(127, 0, 0, 4));
    let mut statuses = Vec::new();
    for guess in 0..3u8 {
        let made_up = format!("cmx_{}", format!("{guess:02x}").repeat(32));
        let request = guesser.get(server.url("/v1/chains")).header("x-api-key", made_up);
        statuses.push(send(request).await.status);
    }
    assert_eq!(statuses, [403, 403, 429]);
    // Probes are never limited.
    for _ in 0..5 {
        assert_eq!(get_with_key(&server, "/health", None).await.status, 200);
    }

    assert!(
        server.metric("chainmux_rate_limited_total", &[("scope", "ip"), ("route_kind", "rest")]).await >= 1.0
    );
    assert!(
        server.metric("chainmux_rate_limited_total", &[("scope", "ip"), ("route_kind", "rpc")]).await >= 1.0
    );
}
