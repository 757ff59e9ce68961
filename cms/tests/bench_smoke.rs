//! The benchmark binary still runs each of its measures and prints its figures (short runs; the
//! figures of real runs are in the README).

use std::process::Command;

/// What `cms-bench args` prints, once it has succeeded.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cms-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_benchmark_prints_throughput_and_latency() {
    let text = bench(&["--clients", "3", "--seconds", "1"]);
    assert!(text.contains("with 3 concurrent clients"), "{text}");
    assert!(text.contains(", 0 errors"), "{text}");
    assert!(
        text.contains("authentications/s") && text.contains("p99"),
        "{text}"
    );
}

#[test]
fn the_benchmark_holds_stalled_connections_and_times_a_fresh_client() {
    let text = bench(&["--hold", "40", "--seconds", "1"]);
    assert!(
        text.contains("40 stalled connections wanted from 2 addresses"),
        "{text}"
    );
    assert!(text.contains(", 0 errors"), "{text}");
    assert!(text.contains("p50") && text.contains("max"), "{text}");
}

#[test]
fn the_benchmark_floods_challenges_and_times_another_card() {
    let text = bench(&["--flood", "--clients", "2", "--seconds", "1"]);
    assert!(text.contains("refused rate_limited"), "{text}");
    let during = text
        .lines()
        .find(|l| l.contains("during the flood"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        during.contains(", 0 refused"),
        "another card was refused: {text}"
    );
}
