//! The house rules that can be checked by reading the tree (docs/ARCHITECTURE.md): the agent and
//! its clients depend on the CMS contract, not on the reference server; no product crate has a
//! cycle between its top-level modules; no product source file grows past the size a newcomer can
//! read without a reason written at its top; RSA private keys are used only by the virtual card
//! and the benchmark's simulated cards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates whose code ships.
const PRODUCT_CRATES: &[&str] = &[
    "piv",
    "cardsim",
    "wire-enum",
    "cms-api",
    "cms",
    "agent",
    "agent-ipc",
    "tray",
];

/// The crates that talk to the service in production and so may not depend on the reference one.
const CONTRACT_ONLY: &[&str] = &["agent", "agent-ipc", "tray"];

/// A file longer than this says why at its top, in a line holding [`LONG_FILE_MARK`].
const MAX_LINES: usize = 600;
const LONG_FILE_MARK: &str = "Long file:";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_agent_and_its_clients_do_not_depend_on_the_reference_service() {
    for krate in CONTRACT_ONLY {
        let out = Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "--locked",
                "--prefix",
                "none",
                "-e",
                "normal,build",
            ])
            .args(["--format", "{p}", "-p", krate])
            .current_dir(workspace())
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {krate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8(out.stdout).unwrap();
        let servers: Vec<&str> = tree.lines().filter(|l| l.starts_with("cms v")).collect();
        assert!(
            servers.is_empty(),
            "{krate} depends on the reference service: {servers:?}"
        );
    }
}

#[test]
fn no_product_crate_has_a_module_cycle() {
    let cycles: Vec<String> = PRODUCT_CRATES
        .iter()
        .filter_map(|krate| {
            let graph = module_graph(&workspace().join(krate).join("src"));
            find_cycle(&graph).map(|cycle| format!("{krate}: {}", cycle.join(" → ")))
        })
        .collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn long_files_say_why() {
    let mut unexplained = Vec::new();
    for krate in PRODUCT_CRATES {
        for file in rust_files(&workspace().join(krate).join("src")) {
            let text = fs::read_to_string(&file).unwrap();
            let lines = text.lines().count();
            let explained = text.lines().take(10).any(|l| l.contains(LONG_FILE_MARK));
            if lines > MAX_LINES && !explained {
                unexplained.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "over {MAX_LINES} lines with no `{LONG_FILE_MARK}` reason at the top: {unexplained:#?}"
    );
}

/// The only product files that may use an RSA private key: `rsa` 0.9 leaks timing in private-key
/// operations (RUSTSEC-2023-0071, the Marvin attack, no fixed release), which is harmless for a
/// simulated card but not for anything that guards a real key. Verifying with a public key is
/// not affected and is used everywhere.
const RSA_PRIVATE_KEY_USERS: &[&str] = &["cardsim/src", "cms/src/bin/cms-bench.rs"];

#[test]
fn rsa_private_keys_live_only_in_simulated_cards() {
    let mut users = Vec::new();
    for krate in PRODUCT_CRATES {
        for file in rust_files(&workspace().join(krate).join("src")) {
            let relative = file.strip_prefix(workspace()).unwrap().to_path_buf();
            if RSA_PRIVATE_KEY_USERS
                .iter()
                .any(|allowed| relative.starts_with(allowed))
            {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap();
            // Unit tests (the module after `#[cfg(test)]`) may sign with throwaway keys.
            let shipped = text.split("#[cfg(test)]").next().unwrap_or_default();
            if ["RsaPrivateKey", "pkcs1v15::SigningKey", "DecryptingKey"]
                .iter()
                .any(|name| shipped.contains(name))
            {
                users.push(relative.display().to_string());
            }
        }
    }
    assert!(
        users.is_empty(),
        "RSA private keys outside the simulated cards: {users:#?}"
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let acyclic = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(find_cycle(&acyclic), None);
    assert_eq!(
        referenced_modules(
            "use crate::{card::Card, session::{self, x}};\nlet _ = crate::time::now();"
        ),
        BTreeSet::from([
            "card".to_string(),
            "session".to_string(),
            "time".to_string()
        ])
    );
}

/// Top-level module → the top-level modules its files name through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let root = fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let modules: BTreeSet<String> = root
        .lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files = rust_files(&src.join(module));
        files.push(src.join(format!("{module}.rs")));
        let mut uses = BTreeSet::new();
        for file in files.iter().filter(|f| f.is_file()) {
            let text = fs::read_to_string(file).unwrap();
            uses.extend(referenced_modules(&text));
        }
        uses.retain(|used| used != module && modules.contains(used));
        graph.insert(module.clone(), uses);
    }
    graph
}

/// The first path segments after each `crate::` in code (not in comments), braces included.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut segment_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => segment_start = true,
                        c if segment_start && (c.is_alphabetic() || c == '_') => {
                            found.insert(identifier(&group[i..]));
                            segment_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                found.insert(identifier(rest));
            }
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle as the path that closes it (`a → b → a`), if the graph has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Every `.rs` file below `dir` (none if it does not exist).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
