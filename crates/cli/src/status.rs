//! `chainmux status`: the gateway's `/v1/chains` as a terminal table.

use anyhow::Context;
use serde_json::Value;

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) async fn print(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/chains", base.trim_end_matches('/'));
    let body: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("requesting {url}"))?
        .error_for_status()
        .with_context(|| format!("requesting {url}"))?
        .bytes()
        .await
        .map_err(anyhow::Error::from)
        .and_then(|bytes| serde_json::from_slice(&bytes).context("decoding /v1/chains"))?;
    let chains = body["chains"].as_array().cloned().unwrap_or_default();
    println!("{:<16} {:>12} {:>12} {:>12} {:>8}", "CHAIN", "HEAD", "INDEXED", "FINALIZED", "LAG");
    for chain in &chains {
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>8}",
            cell(&chain["name"]),
            cell(&chain["head"]),
            cell(&chain["indexed_head"]["number"]),
            cell(&chain["finalized"]),
            cell(&chain["lag"]),
        );
        println!(
            "  {:<16} {:<9} {:<7} {:>5} {:<9} {:>10} {:>5} {:>9} {:>9} {:>6}  REASON",
            "UPSTREAM", "STATE", "PRIMARY", "SCORE", "BREAKER", "HEAD", "LAG", "P50", "P90", "ERR%"
        );
        for upstream in chain["upstreams"].as_array().into_iter().flatten() {
            let number = |key: &str, format: fn(f64) -> String| {
                upstream[key].as_f64().map_or_else(|| "-".to_owned(), format)
            };
            println!(
                "  {:<16} {:<9} {:<7} {:>5} {:<9} {:>10} {:>5} {:>9} {:>9} {:>6}  {}",
                cell(&upstream["name"]),
                cell(&upstream["state"]),
                if upstream["primary"].as_bool() == Some(true) { "yes" } else { "" },
                number("score", |s| format!("{s:.2}")),
                cell(&upstream["breaker"]),
                cell(&upstream["head"]),
                cell(&upstream["lag"]),
                number("latency_p50_ms", |ms| format!("{ms:.1}ms")),
                number("latency_p90_ms", |ms| format!("{ms:.1}ms")),
                number("error_rate", |r| format!("{:.1}", r * 100.0)),
                upstream["reason"].as_str().unwrap_or(""),
            );
        }
    }
    Ok(())
}
