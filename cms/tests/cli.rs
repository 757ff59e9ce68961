//! The `cms` binary as an administrator runs it: init, users and role profiles, issuing a
//! virtual card over PC/SC through a private pcscd, serving over HTTPS (the card signs in),
//! listing, cancelling and the audit log.

use cardsim::{CardFile, CardSpec, Faults};
use cms_api::client::CmsClient;
use piv::consts::key;
use piv::{CardSerial, Pin, PivCard};
use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use testbed::TestBed;

const SERIAL: &str = "4082A001132F2899";

fn cms(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cms"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "cms failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_admin_cli_issues_a_card_serves_it_and_cancels_it() {
    let bed = TestBed::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let out = ok(cms(&data, &["init"]));
    let ca_path = data.join("ca").join("ca-cert.pem");
    assert_eq!(out.trim(), format!("CA certificate: {}", ca_path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["ca/ca-key.pem", "tls/server-key.pem", "master.key"] {
            let mode = std::fs::metadata(data.join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }

    let user = ok(cms(&data, &["add-user", "--name", "Jane Doe"]))
        .trim()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&user).is_ok());
    let role = ok(cms(
        &data,
        &[
            "add-role-profile",
            "--user",
            &user,
            "--organisation",
            "Leeds Teaching Hospitals",
            "--job-role",
            "Staff Nurse",
            "--activities",
            "B0360,B0370",
        ],
    ));
    assert!(role.trim().parse::<i64>().is_ok());

    let card_file = bed.dir().join("card.json");
    CardFile::create(
        &card_file,
        &CardSpec::new(SERIAL.parse::<CardSerial>().unwrap()),
    )
    .unwrap();
    let _inserted = bed.insert(0, &card_file, Faults::default()).unwrap();
    let reader = bed.reader_name(0);

    // A weak PIN is refused before the card is touched.
    let weak = cms(
        &data,
        &[
            "issue-card",
            "--user",
            &user,
            "--pin",
            "1111",
            "--reader",
            &reader,
        ],
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("passcode"));

    let out = ok(cms(
        &data,
        &[
            "issue-card",
            "--user",
            &user,
            "--pin",
            "918273",
            "--reader",
            &reader,
            "--algorithm",
            "p256",
            "--expires-in-days",
            "30",
        ],
    ));
    assert!(
        out.starts_with(&format!(
            "issued card {SERIAL} (NHS CIS, AES-256 management key) to {user}"
        )),
        "{out}"
    );
    let listing = ok(cms(&data, &["list-cards"]));
    let row = listing.lines().find(|l| l.starts_with(SERIAL)).unwrap();
    assert!(
        row.contains("Smartcard")
            && row.contains("Active")
            && row.contains(&format!("Jane Doe ({user})")),
        "{row}"
    );

    // Serve, and sign in with the card over HTTPS.
    // Everything the server can log, into a file that is checked for secrets at the end.
    let log_path = dir.path().join("serve.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_cms"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("CA certificate: {}", ca_path.display())
    );
    let listening = lines.next().unwrap().unwrap();
    let url = listening.strip_prefix("listening on ").unwrap().to_owned();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = CmsClient::new(&url, &std::fs::read_to_string(&ca_path).unwrap()).unwrap();
    let ctx = bed.context().unwrap();
    let mut card = PivCard::connect(&ctx, &CString::new(reader.clone()).unwrap()).unwrap();
    let tx = card.transaction().unwrap();
    tx.verify_pin(&Pin::new("918273").unwrap()).unwrap();
    let cert = tx.read_certificate(key::AUTHENTICATION).unwrap();
    assert_eq!(
        cert.subject(),
        format!("CN=Jane Doe,UID={user},O=Identity Agent CMS")
    );
    let (created, _) = rt
        .block_on(client.authenticate(SERIAL, cert.der(), |m| {
            tx.sign(key::AUTHENTICATION, piv::KeyAlgorithm::P256, m)
        }))
        .unwrap();
    assert_eq!(created.session.user.id, user);
    assert_eq!(created.session.roles[0].activities, ["B0360", "B0370"]);
    drop(tx);

    // Cancelled from the CLI while the service runs: the session ends at once.
    let out = ok(cms(&data, &["cancel-card", SERIAL, "--reason", "lost"]));
    assert!(
        out.starts_with(&format!("card {SERIAL} cancelled on ")),
        "{out}"
    );
    let after = rt.block_on(client.with_session(&created.session_token).session());
    assert_eq!(
        after.unwrap_err().code(),
        Some(cms_api::ErrorCode::InvalidSession)
    );

    // SIGTERM: a graceful stop.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    assert!(server.wait().unwrap().success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    let master = std::fs::read_to_string(data.join("master.key")).unwrap();
    let ca_key = std::fs::read_to_string(data.join("ca/ca-key.pem")).unwrap();
    let ca_key_body = ca_key.lines().nth(1).unwrap();
    for (what, secret) in [
        ("session token", created.session_token.as_str()),
        ("ticket", created.ticket.as_str()),
        ("PIN", "918273"),
        ("master secret", master.trim()),
        ("CA key", ca_key_body),
    ] {
        assert!(!log.contains(secret), "the {what} is in the server's log");
    }

    let audit = ok(cms(&data, &["audit", "--card", SERIAL]));
    let actions: Vec<&str> = audit
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        actions,
        ["card.issue", "card.certify", "authenticate", "card.cancel"]
    );
    let again = cms(&data, &["cancel-card", SERIAL, "--reason", "lost"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("cancelled"));
}

#[test]
fn commands_on_an_uninitialised_directory_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = cms(dir.path(), &["list-cards"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cms init"));
}
