//! Spawning and stopping real `redis-server` instances (no persistence, on 127.0.0.1 only).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::anvil::free_port;

const TOOLS_HINT: &str = "run `bash scripts/ensure-tools.sh` (or set REDIS_SERVER_BIN)";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server` on 127.0.0.1, killed (SIGKILL) on drop. The binary is `$REDIS_SERVER_BIN`, else
/// `redis-server` on `PATH`.
#[derive(Debug)]
pub struct RedisServer {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh server on a free port, once it answers `PING`.
    pub async fn spawn() -> RedisServer {
        Self::spawn_on_port(free_port()).await
    }

    /// A fresh (empty) server on `port`, e.g. to bring one back on the URL of a killed one.
    pub async fn spawn_on_port(port: u16) -> RedisServer {
        let bin =
            std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty()).unwrap_or("redis-server".into());
        let port_text = port.to_string();
        let child = Command::new(&bin)
            .args(["--port", &port_text, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}; {TOOLS_HINT}", bin.to_string_lossy()));
        let mut server = RedisServer { url: format!("redis://127.0.0.1:{port}"), port, child: Some(child) };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !server.answers_ping() {
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {port} exited at start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Kills the server (SIGKILL), as a crash would; idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether a `PING` on a new connection gets `+PONG` (blocking, with short timeouts).
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let timeout = Some(Duration::from_millis(500));
        if stream.set_read_timeout(timeout).is_err() || stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
