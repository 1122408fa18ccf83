//! Spawning and stopping real `anvil` dev nodes.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::eth::Eth;

const TOOLS_HINT: &str = "run `bash scripts/ensure-tools.sh` (or set ANVIL_BIN)";
/// Output kept from anvil for error messages; anything beyond is drained and dropped.
const OUTPUT_CAP: usize = 64 * 1024;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts on fresh ports when anvil exits at start-up (e.g. the port was taken meanwhile).
const PORT_ATTEMPTS: usize = 3;

/// The anvil binary: `$ANVIL_BIN`, else `anvil` on `PATH`, else the tools dir installed by
/// `scripts/ensure-tools.sh` (`$CHAINMUX_TOOLS_DIR`, default `$HOME/.cache/chainmux-tools`).
///
/// # Panics
/// When none of these exists.
pub fn anvil_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ANVIL_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "ANVIL_BIN={} does not exist; {TOOLS_HINT}", bin.display());
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("anvil");
            if is_executable(&candidate) {
                return candidate;
            }
        }
    }
    let tools_dir =
        std::env::var_os("CHAINMUX_TOOLS_DIR").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("chainmux-tools"))
        });
    if let Some(dir) = tools_dir {
        let candidate = dir.join("node_modules").join(".bin").join("anvil");
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!("anvil not found (ANVIL_BIN, PATH, tools dir); {TOOLS_HINT}");
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0: {err}"))
}

/// A running anvil node on 127.0.0.1, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Anvil {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    output: Output,
}

type Output = Arc<Mutex<Vec<u8>>>;

impl Anvil {
    /// Chain id 31337, automine, on a free port.
    pub async fn spawn() -> Anvil {
        Self::spawn_with(&[]).await
    }

    /// Like [`Anvil::spawn`] with extra CLI args, e.g. `["--chain-id", "5"]` or `["--block-time", "1"]`.
    pub async fn spawn_with(args: &[&str]) -> Anvil {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_spawn(free_port(), args).await {
                Ok(anvil) => return anvil,
                Err(SpawnError::Exited(msg)) => last_error = msg,
                Err(SpawnError::Timeout(msg)) => panic!("{msg}"),
            }
        }
        panic!("{last_error}");
    }

    /// Like [`Anvil::spawn_with`] on a given port, e.g. to restart a node on the same URL.
    pub async fn spawn_on_port(port: u16, args: &[&str]) -> Anvil {
        // A just-killed node's port can take a moment to be released; retry briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::try_spawn(port, args).await {
                Ok(anvil) => return anvil,
                Err(SpawnError::Exited(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(SpawnError::Exited(msg) | SpawnError::Timeout(msg)) => panic!("{msg}"),
            }
        }
    }

    /// Stops the node now (SIGKILL) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn try_spawn(port: u16, args: &[&str]) -> Result<Anvil, SpawnError> {
        let bin = anvil_binary();
        let port_arg = port.to_string();
        let mut child = Command::new(&bin)
            .args(["--port", port_arg.as_str(), "--host", "127.0.0.1", "--quiet"])
            .args(args)
            // anvil may write caches relative to its working directory: keep them out of the repo.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}; {TOOLS_HINT}", bin.display()));
        let output: Output = Arc::default();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            drain(pipe, output.clone());
        }
        let mut anvil = Anvil { url: format!("http://127.0.0.1:{port}"), port, child: Some(child), output };

        let eth = Eth::new(&anvil.url);
        let started = Instant::now();
        loop {
            if let Some(status) = anvil.exited() {
                let msg = format!(
                    "anvil on port {port} exited at start-up ({status}) with args {args:?}:\n{}",
                    anvil.output_text()
                );
                return Err(SpawnError::Exited(msg));
            }
            if eth.ping_chain_id().await {
                // Make sure the answer came from our node, not another one that owns the port.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if anvil.exited().is_none() {
                    return Ok(anvil);
                }
                continue;
            }
            if started.elapsed() > READY_TIMEOUT {
                let output = anvil.output_text();
                anvil.kill();
                return Err(SpawnError::Timeout(format!(
                    "anvil on port {port} did not answer eth_chainId within {READY_TIMEOUT:?} (args {args:?}):\n{output}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                // Give the drain threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(50));
                Some(status)
            }
            _ => None,
        }
    }

    fn output_text(&self) -> String {
        let bytes = self.output.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

enum SpawnError {
    /// The process exited before answering (bad args, port taken).
    Exited(String),
    Timeout(String),
}

fn drain(mut pipe: Box<dyn Read + Send>, output: Output) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut out) = output.lock() {
                        let room = OUTPUT_CAP.saturating_sub(out.len());
                        out.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
        }
    });
}
