//! The data directory is the service's user's alone: made 0700 with every file 0600 whatever the
//! umask (the SQLite WAL included), and a directory or file open to other users stops the
//! service from starting, with the path and its mode in the error.
#![cfg(unix)]

use cms::{server, Cms, DataDir, Policy};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Every path under `dir` (itself included) with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = vec![(
        dir.display().to_string(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            out.push((path.display().to_string(), mode));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn under_umask_022_the_data_directory_is_0700_and_every_file_0600() {
    // SAFETY: umask only sets this test process's mask.
    unsafe {
        libc::umask(0o022);
    }
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("state").join("cms");
    let data_dir = DataDir::new(&root);
    let cms = Arc::new(Cms::init(&data_dir, &[], Policy::default()).unwrap());
    let running = server::start(cms.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    cms.add_user("Jane Doe", None).unwrap();
    // The database was written and is still open: its WAL and shared-memory files are there.
    for sqlite in ["cms.sqlite-wal", "cms.sqlite-shm"] {
        assert!(root.join(sqlite).exists(), "{sqlite}");
    }
    let found = modes(&root);
    for (path, mode) in &found {
        let wanted = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, wanted, "{path} is {mode:04o}");
    }
    // The keys, certificates, master secret and database are all among them.
    for file in [
        "ca/ca-key.pem",
        "ca/ca-cert.pem",
        "tls/server-key.pem",
        "tls/server-cert.pem",
        "master.key",
        "cms.sqlite",
    ] {
        let path = root.join(file).display().to_string();
        assert!(found.iter().any(|(p, _)| *p == path), "{file}");
    }
    running.stop().await;
    // Opened again, it is accepted.
    drop(cms);
    Cms::open(&data_dir, Policy::default()).unwrap();
}

fn cms_cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cms"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_data_directory_or_file_open_to_others_stops_the_service() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("data");
    // An empty directory made for the service is taken over: nothing in it was exposed.
    std::fs::create_dir(&root).unwrap();
    chmod(&root, 0o755);
    let (ok, stderr) = cms_cli(&root, &["init"]);
    assert!(ok, "{stderr}");
    assert_eq!(modes(&root)[0].1, 0o700);

    // The directory itself made 0755: serve refuses, naming it and its mode.
    chmod(&root, 0o755);
    let (ok, stderr) = cms_cli(&root, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{} is a directory", root.display())) && stderr.contains("0755"),
        "{stderr}"
    );
    chmod(&root, 0o700);

    // A directory under it.
    let ca = root.join("ca");
    chmod(&ca, 0o750);
    let (ok, stderr) = cms_cli(&root, &["list-cards"]);
    assert!(!ok);
    assert!(
        stderr.contains(&ca.display().to_string()) && stderr.contains("0750"),
        "{stderr}"
    );
    chmod(&ca, 0o700);

    // A file: the database, readable by all.
    let database = root.join("cms.sqlite");
    chmod(&database, 0o644);
    let (ok, stderr) = cms_cli(&root, &["add-user", "--name", "Jane Doe"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{} is a file", database.display())) && stderr.contains("0644"),
        "{stderr}"
    );
    chmod(&database, 0o600);

    let (ok, stderr) = cms_cli(&root, &["add-user", "--name", "Jane Doe"]);
    assert!(ok, "{stderr}");
}
