//! `chainmux-solana-node [--port N] [--ws-port N]`
//!
//! A local, offline Solana JSON-RPC node for chainmux's integration tests: an
//! in-memory surfpool surfnet (Solana runtime via LiteSVM) serving JSON-RPC over
//! HTTP and WebSocket on 127.0.0.1. Ports default to free ephemeral ones.
//!
//! Prints exactly one line to stdout, `ready http://127.0.0.1:PORT`, once the
//! HTTP endpoint answers `getHealth` with "ok", then runs until killed.
//! Diagnostics go to stderr. Exits non-zero if the surfnet fails to start or stops.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{RpcConfig, SimnetConfig, SimnetEvent, SurfpoolConfig};

const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const USAGE: &str = "usage: chainmux-solana-node [--port N] [--ws-port N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chainmux-solana-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (port, ws_port) = parse_args()?;
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let ws_port = match ws_port {
        Some(p) => p,
        None => free_port()?,
    };

    // skip_blockhash_check: after ~40 s without transactions, surfpool 1.6.1 keeps handing out (and calling valid)
    // a blockhash its runtime no longer accepts, so every send fails with "Blockhash not found". Tests sign with
    // real recent blockhashes anyway; the check only breaks an idle node.
    let simnet = SimnetConfig {
        offline_mode: true,
        remote_rpc_url: None,
        skip_blockhash_check: true,
        ..SimnetConfig::default()
    };
    let config = SurfpoolConfig {
        rpc: RpcConfig { bind_host: HOST.to_string(), bind_port: port, ws_port, ..RpcConfig::default() },
        simnets: vec![simnet.clone()],
        ..SurfpoolConfig::default()
    };

    // No database URL: every store is an in-process map.
    let (svm, events_rx, geyser_rx) = SurfnetSvm::new(SurfnetSvmConfig {
        surfnet_id: simnet.surfnet_id.clone(),
        slot_time: simnet.slot_time,
        instruction_profiling_enabled: simnet.instruction_profiling_enabled,
        max_profiles: simnet.max_profiles,
        log_bytes_limit: simnet.log_bytes_limit,
        skip_blockhash_check: simnet.skip_blockhash_check,
        ..SurfnetSvmConfig::default()
    })
    .map_err(|e| format!("creating the SVM: {e}"))?;
    let (commands_tx, commands_rx) = crossbeam_channel::unbounded();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let handle = runtime.handle().clone();

    // The runloop blocks its thread in a channel select, so it gets a thread of its own.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<String>(1);
    let done_tx_runloop = done_tx.clone();
    std::thread::Builder::new()
        .name("surfnet".into())
        .spawn(move || {
            let result = handle.block_on(surfpool_core::start_local_surfnet(
                svm,
                config,
                commands_tx,
                commands_rx,
                geyser_rx,
            ));
            let msg = match result {
                Ok(()) => "surfnet runloop stopped".to_string(),
                Err(e) => format!("surfnet runloop failed: {e}"),
            };
            let _ = done_tx_runloop.send(msg);
        })
        .map_err(|e| format!("spawning the surfnet thread: {e}"))?;

    // The event channel is bounded and lifecycle events block until read: drain it forever.
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("surfnet-events".into())
        .spawn(move || {
            for event in events_rx.iter() {
                match event {
                    SimnetEvent::CoreStarted(_) => {
                        let _ = started_tx.try_send(());
                    }
                    SimnetEvent::ErrorLog(_, msg) => eprintln!("chainmux-solana-node: error: {msg}"),
                    SimnetEvent::WarnLog(_, msg) => eprintln!("chainmux-solana-node: warn: {msg}"),
                    SimnetEvent::Aborted(msg) => {
                        let _ = done_tx.try_send(format!("surfnet aborted: {msg}"));
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| format!("spawning the event thread: {e}"))?;

    crossbeam_channel::select! {
        recv(started_rx) -> _ => {}
        recv(done_rx) -> msg => return Err(msg.unwrap_or_else(|_| "surfnet stopped".into())),
        default(READY_TIMEOUT) => return Err(format!("not started within {READY_TIMEOUT:?}")),
    }

    let deadline = Instant::now() + READY_TIMEOUT;
    while !health_ok(port) {
        if let Ok(msg) = done_rx.try_recv() {
            return Err(msg);
        }
        if Instant::now() >= deadline {
            return Err(format!("getHealth on port {port} not ok within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    eprintln!("chainmux-solana-node: websocket ws://{HOST}:{ws_port}");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready http://{HOST}:{port}").map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    drop(stdout);

    // Run until killed, or until the surfnet stops on its own (an error).
    Err(done_rx.recv().unwrap_or_else(|_| "surfnet stopped".into()))
}

fn parse_args() -> Result<(Option<u16>, Option<u16>), String> {
    let mut port = None;
    let mut ws_port = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--port" => &mut port,
            "--ws-port" => &mut ws_port,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        let parsed = value
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{arg}: not a port: {value:?}"))?;
        *slot = Some(parsed);
    }
    Ok((port, ws_port))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// One plain HTTP/1.1 `getHealth` call; true when the result is "ok".
fn health_ok(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getHealth"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains(r#""result":"ok""#)
}
