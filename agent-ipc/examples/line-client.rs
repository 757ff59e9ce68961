//! `line-client`: the socket API as lines, for tests that cannot reach the agent's endpoint
//! from their own process — a Linux test cannot open a named pipe inside Wine, so it runs this
//! program there and talks to it over standard input and output.
//!
//! ```text
//! line-client [--endpoint PATH] [--agent PROGRAM ARGS…]
//! ```
//!
//! With `--agent`, it starts that agent first (everything after it is the agent's command
//! line) and ends it on leaving. It connects (retrying until the agent answers, for 30 s),
//! subscribes, and prints `ready` — on Windows after `security SDDL`, the DACL of the pipe as
//! Windows reports it to a client. Then each input line is a call as JSON (`{"method":
//! "status"}`, `{"method": "login", "params": {}}`), answered with `reply JSON` or `error
//! JSON`, and each event arrives as `event JSON`, one per line. `time N JSON` makes the call N
//! times, one after the other, and prints `times` and each round trip in microseconds, for
//! benchmarks. It leaves at the end of its input, printing `agent exited CODE` first if the
//! agent it started ended on its own.

use agent_ipc::{Call, Client, ClientError};
use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the agent has to answer at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("line-client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let mut endpoint = agent_ipc::default_socket_path();
    let mut agent = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--endpoint") => endpoint = PathBuf::from(args.next().ok_or("--endpoint PATH")?),
            Some("--agent") => {
                let program = args.next().ok_or("--agent PROGRAM ARGS…")?;
                let child = Command::new(program)
                    .args(args.by_ref())
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot start the agent: {e}"))?;
                agent = Some(child);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let client = connect(&endpoint, agent.as_mut()).await?;
    let mut events = client.subscribe().await.map_err(|e| e.to_string())?;
    #[cfg(windows)]
    say(&format!(
        "security {}",
        agent_ipc::endpoint::dacl_sddl(&endpoint)
            .map_err(|e| format!("cannot read the pipe's security: {e}"))?
    ));
    say("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.map_err(|e| e.to_string())? else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let (repeat, call) = match parse_input(&line) {
                    Ok(input) => input,
                    Err(e) => {
                        say(&format!("error {}", serde_json::json!({ "input": e })));
                        continue;
                    }
                };
                if let Some(count) = repeat {
                    let mut times = Vec::with_capacity(count);
                    for _ in 0..count {
                        let started = Instant::now();
                        events.call_raw(call.clone()).await.map_err(|e| format!("a timed call failed: {e}"))?;
                        times.push(started.elapsed().as_micros().to_string());
                    }
                    say(&format!("times {}", times.join(" ")));
                    continue;
                }
                match events.call_raw(call).await {
                    Ok(result) => say(&format!("reply {result}")),
                    Err(ClientError::Agent(error)) => say(&format!("error {}", to_json(&error))),
                    Err(e) => return Err(format!("the agent's connection failed: {e}")),
                }
            }
            event = events.next_event() => match event {
                Ok(event) => say(&format!("event {}", to_json(&event))),
                Err(e) => return Err(format!("the agent's events ended: {e}")),
            },
            status = wait(agent.as_mut()) => {
                say(&format!("agent exited {}", status.and_then(|s| s.code()).unwrap_or(-1)));
                agent = None;
            }
        }
    }
    Ok(())
}

/// An input line: a call as JSON, or `time N` and a call; the repeat count and the call.
fn parse_input(line: &str) -> Result<(Option<usize>, Call), String> {
    let (repeat, json) = match line
        .strip_prefix("time ")
        .and_then(|rest| rest.split_once(' '))
    {
        Some((count, json)) => (
            Some(count.parse().map_err(|e| format!("time {count}: {e}"))?),
            json,
        ),
        None => (None, line),
    };
    let call = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok((repeat, call))
}

/// Connects to `endpoint`, retrying while the agent starts; fails when it exits first.
async fn connect(endpoint: &PathBuf, mut agent: Option<&mut Child>) -> Result<Client, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(endpoint).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("no agent on {}: {e}", endpoint.display()))
            }
            Err(_) => {}
        }
        if let Some(child) = agent.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the agent exited first ({status})"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's exit, or never when there is none.
async fn wait(agent: Option<&mut Child>) -> Option<std::process::ExitStatus> {
    match agent {
        Some(child) => child.wait().await.ok(),
        None => std::future::pending().await,
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("\"unprintable: {e}\""))
}

/// One line out, at once (the test reads it as it comes).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
