//! APDU test vectors from `tests/vectors/*.txt`, run against the applet.
//!
//! Format: `> APDU` sends a command, `< RESPONSE` is the expected response (data and status
//! word) where `..` matches any one byte and `*` any run of bytes; spaces are ignored.
//! `reset` power-cycles the card; `profile NAME` starts over with a fresh card of that profile.
//! `#` starts a comment. Every card has serial 4082A001132F2817 and the default secrets.

use cardsim::{Applet, AtrProfile, CardSpec, CardState};
use std::path::Path;

enum Pattern {
    Byte(u8),
    One,
    Any,
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(&digits).unwrap_or_else(|_| panic!("bad hex {text:?}"))
}

fn parse_pattern(text: &str) -> Vec<Pattern> {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '*' {
            out.push(Pattern::Any);
            i += 1;
        } else {
            let pair: String = chars[i..i + 2].iter().collect();
            out.push(if pair == ".." {
                Pattern::One
            } else {
                Pattern::Byte(u8::from_str_radix(&pair, 16).unwrap())
            });
            i += 2;
        }
    }
    out
}

fn matches(pattern: &[Pattern], bytes: &[u8]) -> bool {
    match pattern.split_first() {
        None => bytes.is_empty(),
        Some((Pattern::Any, rest)) => (0..=bytes.len()).any(|n| matches(rest, &bytes[n..])),
        Some((Pattern::One, rest)) => !bytes.is_empty() && matches(rest, &bytes[1..]),
        Some((Pattern::Byte(b), rest)) => bytes.first() == Some(b) && matches(rest, &bytes[1..]),
    }
}

fn card(profile: AtrProfile) -> Applet {
    let mut spec = CardSpec::new("4082A001132F2817".parse().unwrap());
    spec.profile = profile;
    Applet::new(CardState::new(&spec).unwrap())
}

fn run(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut applet = card(AtrProfile::NhsCis);
    let mut last: Option<(usize, Vec<u8>)> = None;
    let mut checked = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let lineno = n + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(apdu) = line.strip_prefix('>') {
            assert!(
                last.is_none(),
                "{}:{lineno}: two commands without a response line",
                path.display()
            );
            let response = applet.process(&parse_hex(apdu));
            last = Some((lineno, response));
        } else if let Some(expected) = line.strip_prefix('<') {
            let (at, response) = last
                .take()
                .unwrap_or_else(|| panic!("{}:{lineno}: response without command", path.display()));
            assert!(
                matches(&parse_pattern(expected), &response),
                "{}:{at}: got {}, expected {}",
                path.display(),
                hex::encode_upper(&response),
                expected.trim()
            );
            checked += 1;
        } else if line == "reset" {
            applet.reset();
        } else if let Some(name) = line.strip_prefix("profile ") {
            applet = card(name.parse().unwrap());
        } else {
            panic!("{}:{lineno}: cannot read {line:?}", path.display());
        }
    }
    assert!(
        last.is_none(),
        "{}: command without response at the end",
        path.display()
    );
    checked
}

#[test]
fn every_vector_file_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "vector files missing in {}",
        dir.display()
    );
    for f in files {
        let checked = run(&f);
        assert!(checked > 0, "{} checks nothing", f.display());
    }
}

#[test]
fn the_pattern_matcher_can_fail() {
    assert!(matches(&parse_pattern("61*9000"), &[0x61, 1, 2, 0x90, 0]));
    assert!(!matches(&parse_pattern("61*9000"), &[0x61, 1, 2, 0x90, 1]));
    assert!(!matches(&parse_pattern("61..9000"), &[0x61, 1, 2, 0x90, 0]));
    assert!(matches(&parse_pattern("61 .. 9000"), &[0x61, 1, 0x90, 0]));
}
