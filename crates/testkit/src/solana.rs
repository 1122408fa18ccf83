//! A real local Solana JSON-RPC node for tests, and the known traffic sent to it.
//!
//! [`SolanaNode`] runs `chainmux-solana-node` (surfpool, built outside the workspace by
//! `scripts/ensure-solana-node.sh`, because it pulls ~1,000 crates), and [`run_traffic`] runs
//! its sibling `chainmux-solana-traffic`, which sends a fixed scenario (SOL, SPL Token and
//! Token-2022 transfers, a failed transaction, inner transfers) and describes it in a JSON
//! manifest, parsed here into [`TrafficManifest`]. Tests index the node and compare what
//! they find with the manifest. See `crates/testkit/solana-node/README.md` for the node's
//! quirks (block hashes, commitment lag) that tests must allow for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const BUILD_HINT: &str = "run `bash scripts/ensure-solana-node.sh` (or set CHAINMUX_SOLANA_NODE)";
const NODE_BIN: &str = "chainmux-solana-node";
const TRAFFIC_BIN: &str = "chainmux-solana-traffic";
/// A cold surfnet start (genesis, program loading) takes a few seconds; be generous on CI.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The scenario is ~25 transactions at 250 ms slots; this bounds a hung node.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(300);
/// Node stderr kept for error messages; the rest is drained and dropped.
const OUTPUT_CAP: usize = 64 * 1024;

/// The node binary: `$CHAINMUX_SOLANA_NODE`, else
/// `${CHAINMUX_SOLANA_NODE_DIR:-$HOME/.cache/chainmux-solana-node}/target/debug/chainmux-solana-node`
/// (where `scripts/ensure-solana-node.sh` builds it).
pub fn solana_node_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CHAINMUX_SOLANA_NODE").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("CHAINMUX_SOLANA_NODE={} does not exist; {BUILD_HINT}", bin.display());
        }
        return Ok(bin);
    }
    let cache_dir = match std::env::var_os("CHAINMUX_SOLANA_NODE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; {BUILD_HINT}"))?;
            PathBuf::from(home).join(".cache").join("chainmux-solana-node")
        }
    };
    let bin = cache_dir.join("target").join("debug").join(NODE_BIN);
    if !bin.is_file() {
        bail!("{} not found; {BUILD_HINT}", bin.display());
    }
    Ok(bin)
}

/// `chainmux-solana-traffic`, next to the node binary.
pub fn solana_traffic_binary() -> Result<PathBuf> {
    let node = solana_node_binary()?;
    let bin = node.parent().unwrap_or_else(|| Path::new(".")).join(TRAFFIC_BIN);
    if !bin.is_file() {
        bail!("{} not found next to {}; {BUILD_HINT}", bin.display(), node.display());
    }
    Ok(bin)
}

/// A running `chainmux-solana-node` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct SolanaNode {
    url: String,
    child: Child,
    stderr: Output,
}

type Output = Arc<Mutex<Vec<u8>>>;

impl SolanaNode {
    /// Starts a node on free ports and waits for its `ready <url>` line.
    pub async fn start() -> Result<SolanaNode> {
        let bin = solana_node_binary()?;
        let mut child = Command::new(&bin)
            // Nothing should be written, but keep any stray file out of the repository.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}; {BUILD_HINT}", bin.display()))?;
        let stderr: Output = Arc::default();
        if let Some(pipe) = child.stderr.take() {
            drain(pipe, Some(stderr.clone()));
        }
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();

        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("ready ") {
                    return Ok(Some(url.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let url = match ready {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => {
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                bail!("{NODE_BIN} exited before it was ready ({status}):\n{}", text(&stderr));
            }
            Ok(Err(err)) => bail!("reading {NODE_BIN}'s stdout: {err}\n{}", text(&stderr)),
            Err(_) => {
                let _ = child.kill().await;
                bail!("{NODE_BIN} not ready within {READY_TIMEOUT:?}:\n{}", text(&stderr));
            }
        };
        // Keep reading stdout so the node never blocks on (or dies of) a closed pipe.
        drain(lines.into_inner(), None);
        Ok(SolanaNode { url, child, stderr })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the node wrote to stderr so far (capped), for failure messages.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Stops the node now (SIGKILL) and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn text(output: &Output) -> String {
    let bytes = output.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_CAP`] bytes in `keep` if given.
fn drain(mut pipe: impl AsyncRead + Unpin + Send + 'static, keep: Option<Output>) {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(Ok(mut out)) = keep.as_ref().map(|k| k.lock()) {
                        let room = OUTPUT_CAP.saturating_sub(out.len());
                        out.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
        }
    });
}

/// Runs `chainmux-solana-traffic --url <url> --seed <seed>` to completion and parses its manifest.
/// Keypairs (so wallets, mints and token accounts) depend only on the seed: use a different seed
/// for every run against the same node.
///
/// Runs are serialized within a test process: the scenario waits for each transaction's confirmation
/// on a clock-driven node, and several scenarios (each with its own node) at once on a 2-core machine
/// starve the nodes until they reject the blockhashes they just handed out.
pub async fn run_traffic(url: &str, seed: u64) -> Result<TrafficManifest> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let bin = solana_traffic_binary()?;
    let output = Command::new(&bin)
        .args(["--url", url, "--seed", &seed.to_string()])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TRAFFIC_TIMEOUT, output)
        .await
        .map_err(|_| anyhow!("{TRAFFIC_BIN} did not finish within {TRAFFIC_TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {}; {BUILD_HINT}", bin.display()))?;
    if !output.status.success() {
        bail!("{TRAFFIC_BIN} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!("{TRAFFIC_BIN} printed no valid manifest:\n{}", String::from_utf8_lossy(&output.stdout))
    })
}

/// What `chainmux-solana-traffic` sent. All addresses, signatures and hashes are base58.
#[derive(Debug, Clone, Deserialize)]
pub struct TrafficManifest {
    pub seed: u64,
    pub genesis_hash: String,
    /// Slots of the scenario's first and last transaction.
    pub first_slot: u64,
    pub last_slot: u64,
    /// Wallets by role: `payer`, `a`, `b`, `faucet` (the airdrop's sender and fee payer).
    pub wallets: Vec<TrafficWallet>,
    pub mints: Vec<TrafficMint>,
    pub token_accounts: Vec<TrafficTokenAccount>,
    /// In the order sent (and confirmed).
    pub transactions: Vec<TrafficTx>,
}

impl TrafficManifest {
    /// The wallet address with `role` (`payer`, `a`, `b`, `faucet`).
    pub fn wallet(&self, role: &str) -> Option<&str> {
        self.wallets.iter().find(|w| w.role == role).map(|w| w.address.as_str())
    }

    /// The transaction with `signature`.
    pub fn transaction(&self, signature: &str) -> Option<&TrafficTx> {
        self.transactions.iter().find(|t| t.signature == signature)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrafficWallet {
    pub role: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrafficMint {
    /// `spl-token` or `token-2022`.
    pub label: String,
    pub mint: String,
    /// Owning program id (Token or Token-2022).
    pub program: String,
    pub decimals: u8,
    pub mint_authority: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrafficTokenAccount {
    pub address: String,
    pub mint: String,
    /// The owner wallet (for the nested account: A's token account).
    pub owner: String,
    pub program: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrafficTx {
    /// What the step did, e.g. `spl-token: transfer a->b`.
    pub label: String,
    pub signature: String,
    pub slot: u64,
    pub success: bool,
    pub fee_payer: String,
    /// Lamports, from the node's getTransaction.
    pub fee: u64,
    /// `meta.err` as JSON; null on success.
    pub error: Value,
    /// Transfers of the top-level instructions, in order. For a failed transaction: what it
    /// tried (nothing moved).
    pub transfers: Vec<TrafficTransfer>,
    /// Transfers the top-level instructions make through CPI (inner instructions).
    pub inner_transfers: Vec<TrafficTransfer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrafficTransfer {
    /// `sol` or `spl`.
    pub standard: String,
    /// The executing program id (System, Token or Token-2022).
    pub program: String,
    /// The mint; None for SOL.
    pub token: Option<String>,
    /// SOL: wallets. SPL: token accounts; the all-zero address (`1111…1111`, 32 ones) as the
    /// source of a mintTo and the destination of a burn.
    pub from: String,
    pub to: String,
    /// SPL: the token accounts' owners (None on the all-zero side). SOL: None.
    pub from_owner: Option<String>,
    pub to_owner: Option<String>,
    /// Lamports or raw token units, decimal.
    pub amount: String,
    /// SPL: the mint's decimals. SOL: None.
    pub decimals: Option<u8>,
}

impl TrafficTransfer {
    /// `amount` as a number.
    pub fn amount_u128(&self) -> Result<u128> {
        self.amount.parse().with_context(|| format!("amount {:?} is not a number", self.amount))
    }
}
