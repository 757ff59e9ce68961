//! The benchmark binary still runs and prints its figures (a short run; the figures of a real
//! run are in the README).

use std::process::Command;

#[test]
fn the_benchmark_prints_throughput_and_latency() {
    let out = Command::new(env!("CARGO_BIN_EXE_cms-bench"))
        .args(["--clients", "3", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("with 3 concurrent clients"), "{text}");
    assert!(text.contains(", 0 errors"), "{text}");
    assert!(
        text.contains("authentications/s") && text.contains("p99"),
        "{text}"
    );
}

#[test]
fn the_benchmark_holds_stalled_connections_and_times_a_fresh_client() {
    let out = Command::new(env!("CARGO_BIN_EXE_cms-bench"))
        .args(["--hold", "40", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("40 stalled connections wanted from 2 addresses"),
        "{text}"
    );
    assert!(text.contains(", 0 errors"), "{text}");
    assert!(text.contains("p50") && text.contains("max"), "{text}");
}
