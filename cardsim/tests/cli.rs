//! The `cardsim` binary: create, show, insert and remove.

use cardsim::vpcd::{read_frame, write_frame, GET_ATR};
use cardsim::AtrProfile;
use der::EncodePem;
use p256::ecdsa::{DerSignature, SigningKey};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

fn cardsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cardsim"))
        .args(args)
        .output()
        .unwrap()
}

fn self_signed_pem(cn: &str) -> String {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let builder = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::from(7u32),
        Validity::from_now(Duration::from_secs(86_400 * 30)).unwrap(),
        Name::from_str(&format!("CN={cn}")).unwrap(),
        spki,
        &key,
    )
    .unwrap();
    let cert = builder.build::<DerSignature>().unwrap();
    cert.to_pem(der::pem::LineEnding::LF).unwrap()
}

#[test]
fn create_then_show_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    let chain = dir.path().join("chain.pem");
    // The first certificate of the chain goes into the slot.
    let pem = format!(
        "{}{}",
        self_signed_pem("Jane Doe"),
        self_signed_pem("Issuing CA")
    );
    std::fs::write(&chain, pem).unwrap();
    let card_s = card.to_str().unwrap();
    let cert_arg = format!("9a:{}", chain.display());
    let out = cardsim(&[
        "create",
        card_s,
        "--serial",
        "4082A001132F2817",
        "--profile",
        "yubikey",
        "--pin",
        "24681357",
        "--generate",
        "9a:p256",
        "--generate",
        "9c:p256",
        "--certificate",
        &cert_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN PUBLIC KEY"));

    let out = cardsim(&["show", card_s, "--json"]);
    assert!(out.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["serial"], "4082A001132F2817");
    assert_eq!(shown["profile"], "yubikey");
    assert_eq!(shown["pin_tries_left"], 3);
    assert_eq!(shown["slots"][0]["slot"], "9A");
    assert_eq!(shown["slots"][0]["algorithm"], "P-256");
    assert_eq!(shown["slots"][0]["certificate_subject"], "CN=Jane Doe");
    assert_eq!(shown["slots"][1]["slot"], "9C");
    assert!(shown["slots"][1]["certificate_subject"].is_null());
    let objects = shown["objects"].as_array().unwrap();
    assert!(objects.contains(&"5FC105".into()) && objects.contains(&"5FC102".into()));

    let human = cardsim(&["show", card_s]);
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains("slot 9A") && human.contains("CN=Jane Doe"),
        "{human}"
    );
    for secret in ["24681357", "12345678", "010203040506"] {
        assert!(!human.contains(secret), "{human}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    }
}

#[test]
fn create_refuses_bad_arguments_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    let card_s = card.to_str().unwrap();
    for args in [
        vec!["--serial", "4082"],
        vec!["--serial", "4082A001132F2817", "--profile", "jcop"],
        vec!["--serial", "4082A001132F2817", "--generate", "9b:p256"],
        vec!["--serial", "4082A001132F2817", "--generate", "9a:rsa1024"],
        vec!["--serial", "4082A001132F2817", "--management-key", "0102"],
        vec![
            "--serial",
            "4082A001132F2817",
            "--certificate",
            "9a:/nonexistent.pem",
        ],
        vec!["--serial", "4082A001132F2817", "--pin", "12"],
    ] {
        let mut all = vec!["create", card_s];
        all.extend(args.iter().copied());
        let out = cardsim(&all);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!out.stderr.is_empty());
        assert!(!card.exists(), "{args:?} left a card behind");
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn insert_serves_until_remove_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    let card_s = card.to_str().unwrap();
    assert!(cardsim(&["create", card_s, "--serial", "0000000000000001"])
        .status
        .success());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardsim"))
        .args(["insert", card_s, "--port", &port])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut vpcd, _) = listener.accept().unwrap();
    vpcd.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write_frame(&mut vpcd, &[GET_ATR]).unwrap();
    assert_eq!(
        read_frame(&mut vpcd).unwrap().unwrap(),
        AtrProfile::NhsCis.atr()
    );
    write_frame(
        &mut vpcd,
        &[
            0, 0x20, 0, 0x80, 8, b'9', b'9', b'9', b'9', 0xFF, 0xFF, 0xFF, 0xFF,
        ],
    )
    .unwrap();
    // Not selected yet: the PIV application does not answer.
    assert_eq!(read_frame(&mut vpcd).unwrap().unwrap(), [0x6D, 0x00]);

    let pid_file = dir.path().join("card.json.pid");
    wait_for(&pid_file);
    let out = cardsim(&["remove", card_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!pid_file.exists());
    assert_eq!(read_frame(&mut vpcd).ok().flatten(), None);
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("inserted") && stdout.contains("after 1 APDUs"),
        "{stdout}"
    );

    // Nothing to remove any more.
    assert!(!cardsim(&["remove", card_s]).status.success());
}
