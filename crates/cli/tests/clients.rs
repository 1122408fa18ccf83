//! Real Ethereum client libraries against the gateway: viem and ethers (`tests/clients/js/conformance.mjs`) and
//! web3.py (`tests/clients/py/conformance.py`) run the same broad set of calls through `chainmux run`'s
//! `/rpc/local` and directly against the anvil behind it, and must get identical results (the scripts list the
//! fields that legitimately differ). The libraries are the pinned ones `scripts/ensure-tools.sh` installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chainmux_testkit::{Anvil, Eth, TestDb, populate_transfers};
use common::{Chainmux, Config, wait_synced};
use serde_json::Value;

const TOOLS_HINT: &str = "run `bash scripts/ensure-tools.sh`";

/// The tools dir of `scripts/ensure-tools.sh`: `$CHAINMUX_TOOLS_DIR`, default `$HOME/.cache/chainmux-tools`.
fn tools_dir() -> PathBuf {
    std::env::var_os("CHAINMUX_TOOLS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("chainmux-tools"))
        })
        .unwrap_or_else(|| panic!("neither CHAINMUX_TOOLS_DIR nor HOME is set; {TOOLS_HINT}"))
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$var` if set, else `default`; it must exist.
fn located(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or(default);
    assert!(path.exists(), "{} does not exist (set {var} or {TOOLS_HINT})", path.display());
    path
}

/// A chain with traffic (DemoToken, TestNft and TestMulti transfers), and `chainmux run` following it with the
/// anonymous `/rpc` limit off (the scripts send a few hundred requests in a few seconds).
struct Setup {
    // Field order is drop order: chainmux stops before anvil and the database go away.
    chainmux: Chainmux,
    anvil: Anvil,
    _db: TestDb,
    token: String,
}

impl Setup {
    async fn start() -> Setup {
        let db = TestDb::create().await;
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let mix = populate_transfers(&eth, 3).await;
        let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
        config.gateway_key("anonymous_rpc_rps", 0).gateway_key("anonymous_rps", 0);
        let mut chainmux = Chainmux::start(&config).await;
        wait_synced(&mut chainmux, &eth).await;
        Setup { chainmux, anvil, _db: db, token: format!("{:#x}", mix.token) }
    }

    /// The script's arguments: both HTTP URLs, the token, and both WebSocket URLs.
    fn script_args(&self) -> Vec<String> {
        let gateway = self.chainmux.url("/rpc/local");
        vec![
            "--gateway".into(),
            gateway.clone(),
            "--node".into(),
            self.anvil.url.clone(),
            "--token".into(),
            self.token.clone(),
            "--ws-gateway".into(),
            gateway.replacen("http://", "ws://", 1),
            "--ws-node".into(),
            self.anvil.url.replacen("http://", "ws://", 1),
        ]
    }

    /// `/rpc/local` requests the gateway counted so far.
    async fn rpc_requests(&self) -> f64 {
        self.chainmux
            .metric("chainmux_http_requests_total", &[("route", "/rpc/{chain}")])
            .await
            .unwrap_or(0.0)
    }
}

/// Runs a conformance script (off the async runtime: it takes seconds) and returns its JSON report, failing with
/// the report's failed checks (and the script's stderr) unless it passed.
async fn run_script(mut command: Command, what: &str) -> Value {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("script task")
        .unwrap_or_else(|err| panic!("cannot run the {what} script: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "the {what} script printed no JSON report ({err}; exit {}):\n{stdout}\n{stderr}",
            output.status
        )
    });
    let failed: Vec<&Value> = report["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|client| client["checks"].as_array().into_iter().flatten())
        .filter(|check| check["ok"] != true)
        .collect();
    assert!(
        output.status.success() && report["passed"] == true && failed.is_empty(),
        "{what}: {} failed check(s) (exit {}):\n{}\nstderr:\n{stderr}",
        failed.len(),
        output.status,
        serde_json::to_string_pretty(&failed).unwrap_or_default()
    );
    report
}

/// Checks of every client in `report`.
fn checks(report: &Value) -> Vec<String> {
    report["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|client| {
            let name = client["client"].as_str().unwrap_or("?").to_owned();
            client["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |check| format!("{name}: {}", check["name"].as_str().unwrap_or("?")))
        })
        .collect()
}

/// What every client must have checked: a broad set, so a script that silently skipped a part fails here.
fn assert_broad(report: &Value, clients: &[&str]) {
    let names = checks(report);
    let reported: Vec<&str> =
        report["clients"].as_array().into_iter().flatten().filter_map(|c| c["client"].as_str()).collect();
    assert_eq!(reported, clients, "clients in the report");
    for client in clients {
        let of_client: Vec<&String> =
            names.iter().filter(|n| n.starts_with(&format!("{client}: "))).collect();
        assert!(of_client.len() >= 45, "{client}: only {} checks: {of_client:?}", of_client.len());
        let lowercase: Vec<String> = of_client.iter().map(|n| n.to_lowercase()).collect();
        for needle in [
            "block",
            "transaction",
            "receipt",
            "logs",
            "balance",
            "code",
            "storage",
            "call",
            "estimate",
            "batch",
        ] {
            assert!(
                lowercase.iter().any(|n| n.contains(needle)),
                "{client}: no check of {needle:?}: {of_client:?}"
            );
        }
        for needle in ["sendRawTransaction: receipts", "eth_subscribe newHeads", "eth_subscribe logs"] {
            assert!(
                of_client.iter().any(|n| n.ends_with(needle)),
                "{client}: no {needle:?} check: {of_client:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_and_ethers_get_from_the_gateway_what_anvil_answers() {
    let node =
        std::env::var_os("CHAINMUX_NODE_BIN").filter(|v| !v.is_empty()).unwrap_or_else(|| "node".into());
    let deps = located("CHAINMUX_CLIENTS_JS_DIR", tools_dir().join("clients-js"));
    assert!(
        deps.join("node_modules").join("viem").is_dir(),
        "viem is not installed in {}; {TOOLS_HINT}",
        deps.display()
    );
    let setup = Setup::start().await;
    let before = setup.rpc_requests().await;

    let mut command = Command::new(node);
    command
        .arg(repo_dir().join("tests/clients/js/conformance.mjs"))
        .args(setup.script_args())
        .env("CHAINMUX_CLIENTS_JS_DIR", &deps);
    let report = run_script(command, "viem/ethers").await;

    assert_broad(&report, &["viem", "ethers"]);
    // The gateway side really went through chainmux: at least one request per check.
    let served = setup.rpc_requests().await - before;
    let count = checks(&report).len() as f64;
    assert!(served >= count, "the gateway served {served} /rpc requests for {count} checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3_py_gets_from_the_gateway_what_anvil_answers() {
    let python =
        located("CHAINMUX_CLIENTS_PYTHON", tools_dir().join("clients-py").join("bin").join("python"));
    let setup = Setup::start().await;
    let before = setup.rpc_requests().await;

    let mut command = Command::new(python);
    command.arg(repo_dir().join("tests/clients/py/conformance.py")).args(setup.script_args());
    let report = run_script(command, "web3.py").await;

    assert_broad(&report, &["web3.py"]);
    let served = setup.rpc_requests().await - before;
    let count = checks(&report).len() as f64;
    assert!(served >= count, "the gateway served {served} /rpc requests for {count} checks");
}
