//! What the cli benches share: their command-line flags and a `chainmux run` child process. Not a bench target
//! itself (cargo only takes `benches/*.rs` and `benches/*/main.rs`).

// Each bench uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The bench's `--name value` flags and `--name` switches. Flags the bench does not ask about (cargo bench passes
/// `--bench`, other harness flags too) are ignored.
pub struct Flags(Vec<String>);

impl Flags {
    pub fn from_env() -> Flags {
        Flags(std::env::args().skip(1).collect())
    }

    /// The value after `name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        Some(self.0.get(at + 1).map(String::as_str).unwrap_or_else(|| panic!("{name} needs a value")))
    }

    /// The value after `name` parsed, or `default` when the flag is absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.text(name) {
            Some(text) => text.parse().unwrap_or_else(|_| panic!("{name}: not a number: {text}")),
            None => default,
        }
    }

    /// Like [`Flags::number`], for a count that must be positive.
    pub fn positive(&self, name: &str, default: u64) -> u64 {
        let value = self.number(name, default);
        assert!(value > 0, "{name} needs a positive number");
        value
    }

    /// Whether the switch `name` is given.
    pub fn switch(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

/// A `chainmux run` child process on its own config file, in a temp dir that goes with it; killed on drop.
pub struct ChainmuxProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    dir: PathBuf,
}

impl ChainmuxProcess {
    /// Writes `config(port)` and runs `chainmux run <args> --config …` on a free port (`label` names its temp
    /// dir); returns once `/health` answers 200, or panics with its log after `timeout`.
    pub async fn start(
        label: &str,
        args: &[&str],
        config: impl FnOnce(u16) -> String,
        timeout: Duration,
    ) -> ChainmuxProcess {
        let port = chainmux_testkit::free_port();
        let dir = std::env::temp_dir().join(format!("chainmux-bench-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chainmux.toml");
        std::fs::write(&path, config(port)).expect("write config");
        let log = std::fs::File::create(dir.join("chainmux.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chainmux"))
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(&path)
            .env("CHAINMUX_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start chainmux");
        let process = ChainmuxProcess { base: format!("http://127.0.0.1:{port}"), child, dir };
        chainmux_testkit::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{}/health", process.base)).send().await
                && response.status() == 200
            {
                return process;
            }
            assert!(
                started.elapsed() < timeout,
                "chainmux did not start:\n{}",
                std::fs::read_to_string(process.dir.join("chainmux.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChainmuxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
