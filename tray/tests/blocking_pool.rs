#![cfg(unix)]
//! The `blocking` crate's pool (zbus runs its blocking calls there) must not keep an idle
//! thread: one that stays wakes every 500 ms for as long as the tray runs.

use std::time::{Duration, Instant};

/// The names of this process's threads from the `blocking` pool.
fn pool_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("listing this process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("blocking-"))
        .collect()
}

#[test]
fn an_idle_pool_thread_exits() {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(blocking::unblock(|| ()));
    assert!(!pool_threads().is_empty(), "the task ran on a pool thread");
    // An idle thread exits after 500 ms without work; allow for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pool_threads().is_empty() {
        assert!(
            Instant::now() < deadline,
            "pool threads still there after 5 s idle: {:?}",
            pool_threads()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
