//! The web bridge beside the socket API, on an agent of its own with the bridge on: `status`
//! round trips over HTTP keep-alive, over the WebSocket and over the socket (one client each,
//! one request at a time), and card pulled → `session_ended` over the WebSocket, timed after
//! the bare watcher saw the removal.

use crate::cards::{drain, wait_bare, Change};
use crate::runs::{RunFigures, Stat};
use agent_ipc::Client;
use anyhow::{bail, Context as _, Result};
use cardsim::Faults;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::bridge::{
    bridge_config, free_port, websocket, ws_call, ws_hello, HttpConnection, HttpRequest,
};
use testbed::stack::{AgentOptions, Stack};
use tokio_tungstenite::tungstenite::Message;

/// Times the bridge on an agent started from `options` with the bridge on, then stops it:
/// `requests` round trips per transport, `cycles` card cycles.
pub fn measure(
    stack: &mut Stack,
    options: &AgentOptions,
    card: &Path,
    bare: &mpsc::Receiver<Change>,
    requests: usize,
    cycles: usize,
    figures: &mut RunFigures,
) -> Result<()> {
    let port = free_port()?;
    let options = AgentOptions {
        // The rate limit is not what is measured.
        extra_config: format!(
            "{}\n{}",
            options.extra_config,
            bridge_config(port, "requests_per_second = 1000000\nburst = 1000000\n")
        ),
        ..options.clone()
    };
    stack.start_agent(&options)?;
    round_trips(stack, port, requests, figures)?;
    removals(stack, port, card, bare, cycles, figures)?;
    stack.stop_agent()?;
    Ok(())
}

fn round_trips(stack: &Stack, port: u16, requests: usize, figures: &mut RunFigures) -> Result<()> {
    let socket = stack.socket()?;
    let (http, websocket_times, unix) = stack.runtime.block_on(async {
        let mut http = HttpConnection::connect(port).await?;
        let status = HttpRequest::new("GET", "/v1/status");
        let mut http_times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            let answer = http.send(&status).await?;
            http_times.push(started.elapsed());
            if answer.status != 200 {
                bail!("status over HTTP: {}", answer.status);
            }
        }

        let mut ws = websocket(port, Some(testbed::bridge::PORTAL)).await?;
        ws_hello(&mut ws).await?;
        let mut ws_times = Vec::with_capacity(requests);
        for id in 0..requests {
            let request = json!({ "id": id + 2, "method": "status" });
            let started = Instant::now();
            let answer = ws_call(&mut ws, &request).await?;
            ws_times.push(started.elapsed());
            if answer.get("result").is_none() {
                bail!("status over the WebSocket: {answer}");
            }
        }

        let mut client = Client::connect(&socket).await?;
        let mut unix_times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            client.status().await?;
            unix_times.push(started.elapsed());
        }
        anyhow::Ok((http_times, ws_times, unix_times))
    })?;
    let stats = [Stat::P50, Stat::P99];
    figures.add_times("bridge: `status` over HTTP keep-alive", "", &http, &stats);
    figures.add_times(
        "bridge: `status` over the WebSocket",
        "",
        &websocket_times,
        &stats,
    );
    figures.add_times(
        "bridge: `status` over the socket, same agent",
        "",
        &unix,
        &stats,
    );
    Ok(())
}

fn removals(
    stack: &Stack,
    port: u16,
    card: &Path,
    bare: &mpsc::Receiver<Change>,
    cycles: usize,
    figures: &mut RunFigures,
) -> Result<()> {
    let (event_tx, events) = mpsc::channel::<(Instant, Value)>();
    let mut ws = stack.runtime.block_on(async {
        let mut ws = websocket(port, Some(testbed::bridge::PORTAL)).await?;
        ws_hello(&mut ws).await?;
        ws_call(&mut ws, &json!({ "id": 2, "method": "subscribe" })).await?;
        anyhow::Ok(ws)
    })?;
    stack.runtime.spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let at = Instant::now();
            if let Message::Text(text) = message {
                if let Ok(value) = serde_json::from_str::<Value>(text.as_str()) {
                    if event_tx.send((at, value)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut removed = Vec::new();
    for _ in 0..cycles {
        drain(&events);
        drain(bare);
        let inserted = cardsim::insert(card, stack.bed.vpcd_addr(0), Faults::default())?;
        wait_bare(bare, true)?;
        wait_event(&events, "session_started")?;
        inserted.remove()?;
        let gone = wait_bare(bare, false)?;
        let at = wait_event(&events, "session_ended")?;
        removed.push(at.saturating_duration_since(gone));
    }
    figures.add_times(
        "bridge: card pulled → `session_ended` over the WebSocket",
        "",
        &removed,
        &[Stat::P50, Stat::Max],
    );
    Ok(())
}

fn wait_event(events: &mpsc::Receiver<(Instant, Value)>, name: &str) -> Result<Instant> {
    loop {
        let (at, message) = events
            .recv_timeout(Duration::from_secs(10))
            .with_context(|| format!("no {name} over the WebSocket"))?;
        if message["event"] == name {
            return Ok(at);
        }
    }
}
