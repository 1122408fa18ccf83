//! Helpers of the end-to-end tests: config files, the `chainmux` process, HTTP and JSON-RPC calls, database rows
//! and the little hex arithmetic the tests need to decode events independently of the code under test.

// Every test binary that includes this module uses a different subset of it.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// How long a `chainmux run` may take to answer `/health` after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline of [`Chainmux::wait_indexed`].
pub const INDEX_TIMEOUT: Duration = Duration::from_secs(40);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);
/// Attempts at starting on a fresh port when another process took the one picked meanwhile.
const PORT_ATTEMPTS: usize = 3;
/// Environment variables never passed to a spawned `chainmux`: they would change its config or its HTTP routing.
const SCRUBBED_ENV: &[&str] =
    &["DATABASE_URL", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, unique per process and call.
pub fn temp_dir(label: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "chainmux-e2e-{label}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// A `Command` for the binary under test, with an environment that cannot leak into its config.
pub fn chainmux_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chainmux"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("CHAINMUX_") || SCRUBBED_ENV.contains(&n)) {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1").stdin(Stdio::null());
    command
}

/// A TOML basic string holding `text` (JSON string escapes are valid TOML).
fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// What goes into the config file of one `chainmux run`: one chain (EVM unless made with [`Config::solana`]) with
/// its upstreams.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub chain: String,
    /// `"evm"` or `"solana"`.
    pub kind: &'static str,
    /// EVM only.
    pub chain_id: u64,
    /// Solana only: `(name, base58 program id)` of `[[chains.programs]]`.
    pub programs: Vec<(String, String)>,
    /// Solana only: `chains[].genesis_hash`; `None` leaves the key out.
    pub genesis_hash: Option<String>,
    /// More arguments of `chainmux run`, e.g. `--no-indexer`.
    pub run_args: Vec<&'static str>,
    /// `(name, url)` in configured order.
    pub upstreams: Vec<(String, String)>,
    pub batch_size: u64,
    pub poll_interval_ms: u64,
    pub probe_interval_ms: u64,
    pub request_timeout_ms: u64,
    pub drain_delay_ms: u64,
    /// More `[chains.rpc]` keys as `(key, TOML value)`, e.g. `("deadline_ms", "3000")` or `("hedge", "false")`;
    /// a key given here replaces the one the fields above would write.
    pub rpc: Vec<(String, String)>,
    /// `[chains.upstreams.rpc]` overrides as `(upstream name, key, TOML value)`.
    pub upstream_rpc: Vec<(String, String, String)>,
    /// `chains[].max_reorg_depth`; `None` leaves the key out (the default applies).
    pub max_reorg_depth: Option<u64>,
    /// `chains[].fetch` (`"full"` or `"logs"`); `None` leaves the key out (full).
    pub fetch: Option<&'static str>,
    /// `chains[].start_block`.
    pub start_block: u64,
    /// More `[[chains]]` keys as `(key, TOML value)`, e.g. `("logs_address_chunk", "16")`.
    pub chain_keys: Vec<(String, String)>,
    /// `[[chains.contracts]]` entries, in order.
    pub contracts: Vec<ContractEntry>,
    /// More `[gateway]` keys as `(key, TOML value)`, e.g. `("anonymous_rpc_rps", "0")`.
    pub gateway_keys: Vec<(String, String)>,
    /// Environment of the process, set after the defaults (so `CHAINMUX_LOG` here replaces the test's filter).
    pub env: Vec<(String, String)>,
}

/// Which addresses a [`ContractEntry`] decodes.
#[derive(Debug, Clone)]
pub enum ContractSource {
    /// `address = "0x…"`.
    Address(String),
    /// `address = ["0x…", …]`.
    Addresses(Vec<String>),
    /// `factory = { address, event, parameter }`: the children announced by `event` of the factory at `address`.
    Factory { address: String, event: String, parameter: String },
}

/// One `[[chains.contracts]]` entry of a [`Config`].
#[derive(Debug, Clone)]
pub struct ContractEntry {
    pub name: String,
    /// The `abi` key as written: an absolute path, or one relative to the config file's directory.
    pub abi: String,
    pub source: ContractSource,
    /// `events`; `None` leaves the key out (every event of the ABI).
    pub events: Option<Vec<String>>,
    /// `start_block`; `None` leaves the key out.
    pub start_block: Option<u64>,
}

impl ContractEntry {
    /// An entry decoding the events of the fixed `addresses` (one: `address = "…"`, more: an array).
    pub fn addresses(name: &str, abi: &std::path::Path, addresses: &[&str]) -> ContractEntry {
        let source = match addresses {
            [one] => ContractSource::Address((*one).to_owned()),
            many => ContractSource::Addresses(many.iter().map(|a| (*a).to_owned()).collect()),
        };
        ContractEntry::new(name, abi, source)
    }

    /// An entry decoding the children announced by `event`'s `parameter` of the factory at `address`.
    pub fn factory(
        name: &str,
        abi: &std::path::Path,
        address: &str,
        event: &str,
        parameter: &str,
    ) -> ContractEntry {
        let source = ContractSource::Factory {
            address: address.to_owned(),
            event: event.to_owned(),
            parameter: parameter.to_owned(),
        };
        ContractEntry::new(name, abi, source)
    }

    fn new(name: &str, abi: &std::path::Path, source: ContractSource) -> ContractEntry {
        ContractEntry {
            name: name.to_owned(),
            abi: abi.display().to_string(),
            source,
            events: None,
            start_block: None,
        }
    }

    /// The entry as a `[[chains.contracts]]` table.
    fn toml(&self) -> String {
        let mut text = format!(
            "\n[[chains.contracts]]\nname = {}\nabi = {}\n",
            toml_string(&self.name),
            toml_string(&self.abi)
        );
        match &self.source {
            ContractSource::Address(address) => {
                text.push_str(&format!("address = {}\n", toml_string(address)))
            }
            ContractSource::Addresses(addresses) => {
                let list: Vec<String> = addresses.iter().map(|a| toml_string(a)).collect();
                text.push_str(&format!("address = [{}]\n", list.join(", ")));
            }
            ContractSource::Factory { address, event, parameter } => text.push_str(&format!(
                "factory = {{ address = {}, event = {}, parameter = {} }}\n",
                toml_string(address),
                toml_string(event),
                toml_string(parameter)
            )),
        }
        if let Some(events) = &self.events {
            let list: Vec<String> = events.iter().map(|e| toml_string(e)).collect();
            text.push_str(&format!("events = [{}]\n", list.join(", ")));
        }
        if let Some(start) = self.start_block {
            text.push_str(&format!("start_block = {start}\n"));
        }
        text
    }
}

impl Config {
    /// Chain `local`, id 31337 (anvil's default), fast polling and probing, a short drain.
    pub fn new(database_url: &str, upstreams: &[(&str, &str)]) -> Config {
        Config {
            database_url: database_url.to_owned(),
            chain: "local".to_owned(),
            kind: "evm",
            chain_id: 31337,
            programs: Vec::new(),
            genesis_hash: None,
            run_args: Vec::new(),
            upstreams: upstreams.iter().map(|(n, u)| ((*n).to_owned(), (*u).to_owned())).collect(),
            batch_size: 50,
            poll_interval_ms: 100,
            probe_interval_ms: 200,
            request_timeout_ms: 5000,
            drain_delay_ms: 100,
            rpc: Vec::new(),
            upstream_rpc: Vec::new(),
            max_reorg_depth: None,
            fetch: None,
            start_block: 0,
            chain_keys: Vec::new(),
            contracts: Vec::new(),
            gateway_keys: Vec::new(),
            env: Vec::new(),
        }
    }

    /// A Solana chain `solana-local` (genesis hash pinned from the first upstream), slot-time polling.
    pub fn solana(database_url: &str, upstreams: &[(&str, &str)]) -> Config {
        let mut config = Config::new(database_url, upstreams);
        config.chain = "solana-local".to_owned();
        config.kind = "solana";
        config.batch_size = 20;
        config
    }

    /// Sets the `[chains.rpc]` key `key` to the TOML value `value` (replacing an earlier setting).
    pub fn rpc_key(&mut self, key: &str, value: impl ToString) -> &mut Config {
        self.rpc.retain(|(k, _)| k != key);
        self.rpc.push((key.to_owned(), value.to_string()));
        self
    }

    /// Sets the `[gateway]` key `key` to the TOML value `value` (replacing an earlier setting).
    pub fn gateway_key(&mut self, key: &str, value: impl ToString) -> &mut Config {
        self.gateway_keys.retain(|(k, _)| k != key);
        self.gateway_keys.push((key.to_owned(), value.to_string()));
        self
    }

    /// Sets the `[[chains]]` key `key` to the TOML value `value` (replacing an earlier setting).
    pub fn chain_key(&mut self, key: &str, value: impl ToString) -> &mut Config {
        self.chain_keys.retain(|(k, _)| k != key);
        self.chain_keys.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn toml(&self, listen: &str) -> String {
        let identity = match (&self.genesis_hash, self.kind) {
            (_, "evm") => format!("chain_id = {}\n", self.chain_id),
            (Some(hash), _) => format!("genesis_hash = {}\n", toml_string(hash)),
            (None, _) => String::new(),
        };
        let gateway: String =
            self.gateway_keys.iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
        let mut text = format!(
            "[database]\nurl = {}\nmax_connections = 5\n\n\
             [gateway]\nlisten = {}\ndrain_delay_ms = {}\n{gateway}\n\
             [[chains]]\nname = {}\nkind = {}\n{identity}start_block = {}\nbatch_size = {}\n\
             poll_interval_ms = {}\n",
            toml_string(&self.database_url),
            toml_string(listen),
            self.drain_delay_ms,
            toml_string(&self.chain),
            toml_string(self.kind),
            self.start_block,
            self.batch_size,
            self.poll_interval_ms,
        );
        if let Some(depth) = self.max_reorg_depth {
            text.push_str(&format!("max_reorg_depth = {depth}\n"));
        }
        if let Some(fetch) = self.fetch {
            text.push_str(&format!("fetch = {}\n", toml_string(fetch)));
        }
        for (key, value) in &self.chain_keys {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text.push_str("\n[chains.rpc]\n");
        let mut rpc: Vec<(String, String)> = vec![
            ("request_timeout_ms".into(), self.request_timeout_ms.to_string()),
            ("probe_interval_ms".into(), self.probe_interval_ms.to_string()),
            ("backoff_min_ms".into(), "20".into()),
            ("backoff_max_ms".into(), "200".into()),
        ];
        for (key, value) in &self.rpc {
            match rpc.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1.clone_from(value),
                None => rpc.push((key.clone(), value.clone())),
            }
        }
        for (key, value) in &rpc {
            text.push_str(&format!("{key} = {value}\n"));
        }
        for (name, id) in &self.programs {
            text.push_str(&format!(
                "\n[[chains.programs]]\nname = {}\nid = {}\n",
                toml_string(name),
                toml_string(id)
            ));
        }
        for entry in &self.contracts {
            text.push_str(&entry.toml());
        }
        for (name, url) in &self.upstreams {
            text.push_str(&format!(
                "\n[[chains.upstreams]]\nname = {}\nurl = {}\n",
                toml_string(name),
                toml_string(url)
            ));
            let overrides: Vec<_> =
                self.upstream_rpc.iter().filter(|(upstream, _, _)| upstream == name).collect();
            if !overrides.is_empty() {
                text.push_str("\n[chains.upstreams.rpc]\n");
                for (_, key, value) in overrides {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
        }
        text
    }
}

/// One `chainmux run` process with its own config file, log file and port; SIGKILLed on drop. When the test is
/// failing, the drop prints the process's log so the failure can be understood from the test output alone.
#[derive(Debug)]
pub struct Chainmux {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    pub chain: String,
    dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

impl Chainmux {
    /// Writes the config, starts `chainmux run` on a free port and waits until `/health` answers.
    pub async fn start(config: &Config) -> Chainmux {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut process = Chainmux::spawn(config);
            match process.wait_healthy().await {
                Ok(()) => return process,
                // Another test took the port between `free_port` and our bind: try another one.
                Err(log) if log.contains("binding gateway.listen") => last = Some(process),
                Err(log) => panic!("chainmux did not start:\n{log}"),
            }
        }
        let log = last.map(|p| p.log()).unwrap_or_default();
        panic!("chainmux could not bind a port in {PORT_ATTEMPTS} attempts:\n{log}");
    }

    /// Writes the config and starts `chainmux run` on a free port without waiting for anything.
    pub fn spawn(config: &Config) -> Chainmux {
        let port = chainmux_testkit::free_port();
        let dir = temp_dir("run");
        let config_path = dir.join("chainmux.toml");
        std::fs::write(&config_path, config.toml(&format!("127.0.0.1:{port}")))
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", config_path.display()));
        let log_path = dir.join("chainmux.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log_path.display()));
        let stdout = log.try_clone().unwrap_or_else(|err| panic!("cannot duplicate the log handle: {err}"));
        let child = chainmux_command()
            .arg("run")
            .args(&config.run_args)
            .arg("--config")
            .arg(&config_path)
            .env("CHAINMUX_LOG", "info,sqlx=warn")
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start chainmux: {err}"));
        Chainmux {
            base: format!("http://127.0.0.1:{port}"),
            port,
            chain: config.chain.clone(),
            dir,
            log_path,
            child: Some(child),
            exit: None,
        }
    }

    /// Process id of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_else(|| panic!("chainmux is not running"))
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The exit status, if the process has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(status);
            self.child = None;
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, then reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.exit = child.wait().ok();
        }
    }

    /// Sends SIGTERM (through `kill(1)`; the crate forbids `unsafe`, so no `libc::kill`).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap_or_else(|err| panic!("cannot run kill(1): {err}"));
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Panics with the log when the process has exited.
    fn assert_alive(&mut self, waiting_for: &str) {
        if let Some(status) = self.exited() {
            panic!("chainmux exited ({status}) while waiting for {waiting_for}; log:\n{}", self.log());
        }
    }

    /// `Err(log)` when the process exits or `/health` does not answer within [`START_TIMEOUT`].
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let url = format!("{}/health", self.base);
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if let Ok((200, _)) = get(&url).await {
                // Make sure it is our process that answered, not another one that owns the port.
                if self.exited().is_none() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("no answer on {url} within {START_TIMEOUT:?}:\n{}", self.log()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        json_get(&self.url(path)).await
    }

    /// This chain's entry of `/v1/chains`.
    pub async fn chain_view(&self) -> Value {
        let body = self.get_json("/v1/chains").await;
        body["chains"]
            .as_array()
            .and_then(|chains| chains.iter().find(|c| c["name"] == self.chain.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("/v1/chains has no chain {:?}: {body}", self.chain))
    }

    /// Polls until `check` returns `Some`, failing (with the log) after `timeout` or when the process exits.
    pub async fn wait_for<T, F, Fut>(&mut self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            self.assert_alive(what);
            if let Some(value) = check().await {
                return value;
            }
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the log has a line containing `needle`; returns that line.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            self.assert_alive(needle);
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for a log line with {needle:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `/v1/chains` reports `indexed_head.number >= number`; returns the chain's view then.
    pub async fn wait_indexed(&mut self, number: u64) -> Value {
        self.wait_indexed_within(number, INDEX_TIMEOUT).await
    }

    pub async fn wait_indexed_within(&mut self, number: u64, timeout: Duration) -> Value {
        let base = self.base.clone();
        let chain = self.chain.clone();
        let mut last = Value::Null;
        let what = format!("indexed_head >= {number}");
        let started = Instant::now();
        loop {
            self.assert_alive(&what);
            if let Ok((200, body)) = get(&format!("{base}/v1/chains")).await
                && let Some(view) = serde_json::from_str::<Value>(&body).ok().and_then(|b| {
                    b["chains"].as_array()?.iter().find(|c| c["name"] == chain.as_str()).cloned()
                })
            {
                if view["indexed_head"]["number"].as_u64().is_some_and(|n| n >= number) {
                    return view;
                }
                last = view;
            }
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; last /v1/chains entry: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The sum of the `/metrics` series named exactly `name` whose labels include all of `labels`; `None` when
    /// there is no such series (a counter that was never incremented is absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let url = self.url("/metrics");
        let (status, text) = get(&url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert_eq!(status, 200, "GET {url}: {text}");
        metric_value(&text, name, labels)
    }

    /// `POST /rpc/{chain}` with `body`; the answer must be 200 with JSON.
    pub async fn rpc(&self, body: &Value) -> Value {
        self.rpc_with_headers(body).await.1
    }

    /// Like [`Chainmux::rpc`], with the answer's headers.
    pub async fn rpc_with_headers(&self, body: &Value) -> (reqwest::header::HeaderMap, Value) {
        let url = self.url(&format!("/rpc/{}", self.chain));
        let response = http()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_else(|err| panic!("POST {url}: reading the body: {err}"));
        assert_eq!(status, 200, "POST {url} {body}: {text}");
        let json =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("POST {url}: not JSON ({err}): {text}"));
        (headers, json)
    }
}

impl Drop for Chainmux {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail = log.len().saturating_sub(30_000);
            let tail = log.get(log.ceil_char_boundary(tail)..).unwrap_or_default();
            eprintln!(
                "----- chainmux log ({} , {}; last {} bytes) -----\n{tail}\n----- end of chainmux log -----",
                self.base,
                self.dir.display(),
                tail.len()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The sum of the series of Prometheus text `text` named exactly `name` with all of `labels`; `None` when there is
/// none.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches =
                metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Runs `chainmux migrate` with `config`, so the schema exists before `chainmux run` starts (a test can then add
/// its own objects to the database first, e.g. triggers that record what the process does).
pub fn migrate(config: &Config) {
    let dir = temp_dir("migrate");
    let path = dir.join("chainmux.toml");
    let listen = format!("127.0.0.1:{}", chainmux_testkit::free_port());
    std::fs::write(&path, config.toml(&listen))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    let output = chainmux_command()
        .arg("migrate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux migrate: {err}"));
    assert!(
        output.status.success(),
        "chainmux migrate failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `chainmux check-config` on `config` written to `dir/chainmux.toml` (so relative paths in it, e.g. `abi`,
/// are relative to `dir`); returns the exit status, stdout and stderr.
pub fn check_config(dir: &std::path::Path, config: &Config) -> (ExitStatus, String, String) {
    let path = dir.join("chainmux.toml");
    let listen = format!("127.0.0.1:{}", chainmux_testkit::free_port());
    std::fs::write(&path, config.toml(&listen))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    let output = chainmux_command()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux check-config: {err}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status, text(&output.stdout), text(&output.stderr))
}

/// An HTTP client that never goes through a proxy.
pub fn http() -> reqwest::Client {
    chainmux_testkit::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_else(|err| panic!("cannot build an HTTP client: {err}"))
}

/// `GET url`: status and body, or the transport error.
pub async fn get(url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = http().get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// `GET url`, which must answer 200 with a JSON body.
pub async fn json_get(url: &str) -> Value {
    let (status, text) = get(url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {text}"))
}

/// Follows `next_cursor` from `path` (with or without a query string) to the last page, `limit` items a page;
/// returns every item and the number of pages. Every page but the last must be full.
pub async fn collect_pages(chainmux: &Chainmux, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}{separator}limit={limit}&cursor={cursor}"),
            None => format!("{path}{separator}limit={limit}"),
        };
        let page = chainmux.get_json(&url).await;
        pages += 1;
        assert!(pages < 100_000, "pagination does not end");
        let batch = page["items"].as_array().unwrap_or_else(|| panic!("{url}: no items: {page}"));
        assert!(batch.len() <= limit, "{url}: {} items, limit {limit}", batch.len());
        items.extend(batch.iter().cloned());
        match &page["next_cursor"] {
            Value::Null => return (items, pages),
            Value::String(next) => {
                assert_eq!(batch.len(), limit, "{url}: a page with a next_cursor is not full");
                assert!(
                    next.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'),
                    "cursor {next:?} would need URL encoding"
                );
                cursor = Some(next.clone());
            }
            other => panic!("{url}: next_cursor is {other}"),
        }
    }
}

/// `POST url` with one JSON-RPC request straight to a node or a proxy in front of it (not through chainmux);
/// returns the whole answer object.
pub async fn rpc_answer(url: &str, method: &str, params: Value) -> Value {
    let response = http()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(rpc_request(1, method, params).to_string())
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method}: {err}"));
    let text = response.text().await.unwrap_or_else(|err| panic!("{method}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{method}: {err}: {text}"))
}

/// The `result` of [`rpc_answer`], which must not be an error.
pub async fn node_rpc(url: &str, method: &str, params: Value) -> Value {
    let body = rpc_answer(url, method, params).await;
    assert!(body.get("error").is_none(), "{method}: {body}");
    body["result"].clone()
}

/// A JSON-RPC 2.0 request object.
pub fn rpc_request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Rows of `sql` (one text column) in order.
pub async fn text_rows(pool: &sqlx::PgPool, sql: &'static str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// The indexed cursor of `chain`, if any (also `None` before the migrations created the table).
pub async fn cursor(pool: &sqlx::PgPool, chain: &str) -> Option<i64> {
    let migrated = sqlx::query_scalar::<_, bool>("SELECT to_regclass('cursors') IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("looking for the cursors table: {err}"));
    if !migrated {
        return None;
    }
    sqlx::query_scalar::<_, i64>("SELECT block_number FROM cursors WHERE chain = $1")
        .bind(chain)
        .fetch_optional(pool)
        .await
        .unwrap_or_else(|err| panic!("reading the cursor: {err}"))
}

/// Connects to a test database.
pub async fn connect(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

/// A `0x` quantity as a number.
pub fn quantity(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("expected a 0x quantity, got {value}"))
}

/// A JSON string, lowercased (addresses may come checksummed).
pub fn lower(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}")).to_ascii_lowercase()
}

/// Big-endian hex (with or without `0x`, any length) as a decimal string.
pub fn hex_to_decimal(hex: &str) -> String {
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    // Little-endian decimal digits.
    let mut digits: Vec<u8> = vec![0];
    for c in hex.chars() {
        let nibble = c.to_digit(16).unwrap_or_else(|| panic!("not hex: {hex}"));
        let mut carry = nibble;
        for digit in &mut digits {
            let value = u32::from(*digit) * 16 + carry;
            *digit = (value % 10) as u8;
            carry = value / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// The 32-byte words of `0x`-prefixed ABI data, as hex without `0x`.
pub fn words(data: &str) -> Vec<&str> {
    let hex = data.strip_prefix("0x").unwrap_or(data);
    assert!(hex.len().is_multiple_of(64), "ABI data is not whole words: {data}");
    (0..hex.len() / 64).map(|i| &hex[i * 64..(i + 1) * 64]).collect()
}

/// The address in the low 20 bytes of a 32-byte topic, `0x`-prefixed lowercase.
pub fn topic_address(topic: &str) -> String {
    let hex = topic.strip_prefix("0x").unwrap_or(topic);
    assert_eq!(hex.len(), 64, "not a 32-byte topic: {topic}");
    assert!(hex[..24].chars().all(|c| c == '0'), "topic is not an address: {topic}");
    format!("0x{}", hex[24..].to_ascii_lowercase())
}

#[test]
fn hex_to_decimal_converts_big_numbers() {
    assert_eq!(hex_to_decimal("0x0"), "0");
    assert_eq!(hex_to_decimal("0x"), "0");
    assert_eq!(hex_to_decimal("ff"), "255");
    assert_eq!(hex_to_decimal("0x3635c9adc5dea00000"), "1000000000000000000000");
    assert_eq!(
        hex_to_decimal(&"f".repeat(64)),
        "115792089237316195423570985008687907853269984665640564039457584007913129639935"
    );
    assert_eq!(
        topic_address(&format!("0x{}{}", "0".repeat(24), "AB".repeat(20))),
        format!("0x{}", "ab".repeat(20))
    );
}

/// Tables of `pool`, one text line per row in primary-key order; identical content gives identical lines.
pub async fn dump(pool: &sqlx::PgPool) -> BTreeMap<&'static str, Vec<String>> {
    let queries: [(&str, &'static str); 6] = [
        ("chains", "SELECT name || ' ' || kind || ' ' || chain_id FROM chains ORDER BY name"),
        (
            "cursors",
            "SELECT chain || ' ' || block_number || ' ' || encode(block_hash, 'hex') FROM cursors ORDER BY chain",
        ),
        ("blocks", "SELECT t::text FROM blocks t ORDER BY chain, number"),
        ("transactions", "SELECT t::text FROM transactions t ORDER BY chain, block_number, tx_index"),
        ("logs", "SELECT t::text FROM logs t ORDER BY chain, block_number, log_index"),
        (
            "transfers",
            "SELECT t::text FROM transfers t ORDER BY chain, block_number, log_index, batch_index, standard",
        ),
    ];
    let mut tables = BTreeMap::new();
    for (table, sql) in queries {
        tables.insert(table, text_rows(pool, sql).await);
    }
    tables
}

/// How long [`wait_synced`] waits for the index to reach anvil's head.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// anvil's head: number and `0x` lowercase hash.
pub async fn anvil_head(eth: &chainmux_testkit::Eth) -> (u64, String) {
    let block = eth.request("eth_getBlockByNumber", json!(["latest", false])).await;
    (quantity(&block["number"]), lower(&block["hash"]))
}

/// Waits until chainmux's indexed head of chain `local` is anvil's head, number and hash; returns that height.
/// Fails at once when the process exits or the indexer stopped.
pub async fn wait_synced(chainmux: &mut Chainmux, eth: &chainmux_testkit::Eth) -> u64 {
    let started = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(status) = chainmux.exited() {
            panic!("chainmux exited ({status}) while following the chain; log:\n{}", chainmux.log());
        }
        if let Some(line) = chainmux.log().lines().find(|l| l.contains("indexer stopped")) {
            panic!("the indexer stopped instead of following the chain: {line}");
        }
        let (head, hash) = anvil_head(eth).await;
        if let Ok((200, body)) = get(&chainmux.url("/v1/chains")).await
            && let Some(view) = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["chains"].as_array()?.iter().find(|c| c["name"] == "local").cloned())
        {
            if view["indexed_head"] == json!({"number": head, "hash": hash}) {
                return head;
            }
            last = view;
        }
        assert!(
            started.elapsed() < SYNC_TIMEOUT,
            "chainmux did not reach anvil's head {head} {hash} within {SYNC_TIMEOUT:?}; last /v1/chains entry: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One anvil (5 blocks mined) behind two testkit `FaultProxy`s configured as upstreams `primary` and `secondary`,
/// with a test database: the setup of the operator-view tests. Probes every `probe_interval_ms`, 500 ms request
/// timeouts, short retry backoff, and a breaker that opens after 3 failures for `breaker_cooldown_ms`.
pub struct ProxiedPair {
    pub anvil: chainmux_testkit::Anvil,
    pub db: chainmux_testkit::TestDb,
    pub eth: chainmux_testkit::Eth,
    pub primary: chainmux_testkit::FaultProxy,
    pub secondary: chainmux_testkit::FaultProxy,
    pub config: Config,
}

impl ProxiedPair {
    pub async fn start(probe_interval_ms: u64, breaker_cooldown_ms: u64) -> ProxiedPair {
        chainmux_testkit::install_crypto_provider();
        let (anvil, db) = tokio::join!(chainmux_testkit::Anvil::spawn(), chainmux_testkit::TestDb::create());
        let eth = chainmux_testkit::Eth::new(&anvil.url);
        eth.mine(5).await;
        let primary = chainmux_testkit::FaultProxy::start(&anvil.url).await;
        let secondary = chainmux_testkit::FaultProxy::start(&anvil.url).await;
        let mut config = Config::new(&db.url, &[("primary", &primary.url), ("secondary", &secondary.url)]);
        config.probe_interval_ms = probe_interval_ms;
        config.request_timeout_ms = 500;
        config
            .rpc_key("breaker_failures", 3)
            .rpc_key("breaker_cooldown_ms", breaker_cooldown_ms)
            .rpc_key("backoff_min_ms", 10)
            .rpc_key("backoff_max_ms", 100);
        ProxiedPair { anvil, db, eth, primary, secondary, config }
    }
}
