//! Interoperability: third-party PIV middleware — OpenSC (`pkcs15-tool`, `pkcs11-tool`) and
//! `yubico-piv-tool` — against a personalised virtual card through the test bed's pcscd.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests --test interop`.

use cardsim::{AtrProfile, CardFile, CardSpec, Faults, InsertedCard};
use der::{Decode, DecodePem, Encode};
use piv::consts::{alg, key};
use piv::CardSerial;
use std::path::PathBuf;
use std::process::Output;
use testbed::pki::TestCa;
use testbed::TestBed;
use x509_cert::Certificate;

const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
const SERIAL: &str = "4082A001132F2817";

/// A card of `profile` with a key generated in 9A and a certificate from a test CA for it, in
/// reader 0 of its own test bed.
struct PersonalisedCard {
    /// Dropped first: the card leaves the reader before the test bed stops.
    _inserted: InsertedCard,
    path: PathBuf,
    certificate: Vec<u8>,
    bed: TestBed,
}

/// Starts a test bed and inserts a [`PersonalisedCard`] of `profile` with a 9A key of
/// `algorithm` into reader 0.
fn personalised_card(profile: AtrProfile, algorithm: u8) -> PersonalisedCard {
    let bed = TestBed::start().unwrap();
    let path = bed.dir().join(format!("{profile}.json"));
    let mut spec = CardSpec::new(SERIAL.parse::<CardSerial>().unwrap());
    spec.profile = profile;
    let mut card = CardFile::create(&path, &spec).unwrap();
    let spki = card.generate_key(key::AUTHENTICATION, algorithm).unwrap();
    let mut ca = TestCa::new("Interop Test CA").unwrap();
    let certificate = ca.issue("Jane Doe", &spki, 365).unwrap();
    card.import_certificate(key::AUTHENTICATION, &certificate)
        .unwrap();
    let _inserted = bed.insert(0, &path, Faults::default()).unwrap();
    PersonalisedCard {
        _inserted,
        path,
        certificate,
        bed,
    }
}

/// One test per ATR profile: `check { name: Profile; … }` makes a test `name` that runs
/// `check(AtrProfile::Profile)`.
macro_rules! tests_per_profile {
    ($check:ident { $($name:ident: $profile:ident;)* }) => {
        $(
            #[test]
            fn $name() {
                $check(AtrProfile::$profile);
            }
        )*
    };
}

fn run(bed: &TestBed, program: &str, args: &[&str]) -> Output {
    bed.run_tool(program, args)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `pkcs15-tool` on reader 0 with `args`.
fn pkcs15_tool(bed: &TestBed, args: &[&str]) -> Output {
    let mut all = vec!["--reader", "0"];
    all.extend_from_slice(args);
    run(bed, "pkcs15-tool", &all)
}

/// `pkcs11-tool` through OpenSC's module, logged in to slot 0 with the factory PIN, with
/// `args`.
fn pkcs11_tool_logged_in(bed: &TestBed, args: &[&str]) -> Output {
    let mut all = vec![
        "--module",
        OPENSC_PKCS11,
        "--slot-index",
        "0",
        "--login",
        "--pin",
        "123456",
    ];
    all.extend_from_slice(args);
    run(bed, "pkcs11-tool", &all)
}

tests_per_profile!(opensc_lists_and_reads_the_9a_certificate {
    opensc_lists_and_reads_the_9a_certificate_on_a_piv_profile: Piv;
    opensc_lists_and_reads_the_9a_certificate_on_an_nhs_cis_profile: NhsCis;
});

fn opensc_lists_and_reads_the_9a_certificate(profile: AtrProfile) {
    let card = personalised_card(profile, alg::RSA_2048);
    let bed = &card.bed;

    let out = pkcs15_tool(bed, &["--list-certificates"]);
    assert!(out.status.success());
    let listing = text(&out);
    assert!(
        listing.contains("Certificate for PIV Authentication"),
        "{listing}"
    );
    let cert = Certificate::from_der(&card.certificate).unwrap();
    // OpenSC shows the DER INTEGER of the serial, tag and length included.
    let serial = hex::encode_upper(cert.tbs_certificate.serial_number.to_der().unwrap());
    assert!(
        listing.replace(' ', "").contains(&serial),
        "serial {serial} not in {listing}"
    );

    // The certificate OpenSC reads back is byte for byte ours.
    let out = pkcs15_tool(bed, &["--read-certificate", "01"]);
    assert!(out.status.success());
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    let read = Certificate::from_pem(pem.trim().as_bytes()).unwrap();
    assert_eq!(read.to_der().unwrap(), card.certificate);
}

tests_per_profile!(pkcs11_self_test {
    pkcs11_tool_self_test_passes_on_a_piv_profile: Piv;
    pkcs11_tool_self_test_passes_on_a_yubikey_profile: YubiKey;
});

fn pkcs11_self_test(profile: AtrProfile) {
    let card = personalised_card(profile, alg::RSA_2048);

    let out = pkcs11_tool_logged_in(&card.bed, &["--test"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("No errors"), "{log}");
    // The RSA key on the card was really exercised: signatures made and checked.
    assert!(log.contains("testing key 0 (PIV AUTH key)"), "{log}");
    assert!(log.contains("SHA256-RSA-PKCS: OK"), "{log}");
    // Logging in spent no PIN try.
    assert_eq!(CardFile::open(&card.path).unwrap().pin_tries_left(), 3);
}

#[test]
fn pkcs11_tool_signs_with_a_p256_key_on_a_yubikey_profile() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;

    let card = personalised_card(AtrProfile::YubiKey, alg::ECC_P256);
    let bed = &card.bed;
    let input = bed.dir().join("hash.bin");
    let output = bed.dir().join("signature.der");
    let digest = sha2::Sha256::digest(b"interop with OpenSC");
    std::fs::write(&input, digest).unwrap();
    let out = pkcs11_tool_logged_in(
        bed,
        &[
            "--sign",
            "--id",
            "01",
            "--mechanism",
            "ECDSA",
            "--signature-format",
            "openssl",
            "--input-file",
            input.to_str().unwrap(),
            "--output-file",
            output.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let signature = p256::ecdsa::Signature::from_der(&std::fs::read(&output).unwrap()).unwrap();
    let cert = Certificate::from_der(&card.certificate).unwrap();
    let point = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let verifying_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    verifying_key.verify_prehash(&digest, &signature).unwrap();
}

fn yubico_piv_tool(bed: &TestBed, args: &[&str]) -> Output {
    let reader = bed.reader_name(0);
    let mut all = vec!["-r", reader.as_str()];
    all.extend_from_slice(args);
    run(bed, "yubico-piv-tool", &all)
}

fn yubico_piv_tool_status_and_pin(profile: AtrProfile) {
    let card = personalised_card(profile, alg::RSA_2048);
    let bed = &card.bed;

    let out = yubico_piv_tool(bed, &["-a", "status"]);
    let status = text(&out);
    assert!(out.status.success(), "{status}");
    // The CHUID carries the serial in its GUID.
    assert!(
        status.contains(&SERIAL.to_ascii_lowercase()),
        "serial missing: {status}"
    );
    assert!(status.contains("Slot 9a"), "{status}");
    assert!(status.contains("RSA2048"), "{status}");
    assert!(status.contains("CN=Jane Doe"), "{status}");
    assert!(status.contains("PIN tries left:\t3"), "{status}");

    let out = yubico_piv_tool(bed, &["-a", "verify-pin", "-P", "123456"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Successfully verified PIN"));

    let out = yubico_piv_tool(bed, &["-a", "verify-pin", "-P", "654321"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("2 tries left"), "{}", text(&out));
    assert_eq!(CardFile::open(&card.path).unwrap().pin_tries_left(), 2);
}

tests_per_profile!(yubico_piv_tool_status_and_pin {
    yubico_piv_tool_reads_status_and_verifies_the_pin_on_a_yubikey_profile: YubiKey;
    yubico_piv_tool_reads_status_and_verifies_the_pin_on_a_piv_profile: Piv;
});

#[test]
fn yubico_piv_tool_generates_a_key_with_the_factory_management_key() {
    let card = personalised_card(AtrProfile::YubiKey, alg::RSA_2048);
    let out = yubico_piv_tool(&card.bed, &["-a", "generate", "-s", "9c", "-A", "ECCP256"]);
    assert!(out.status.success(), "{}", text(&out));
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(pem.contains("BEGIN PUBLIC KEY"), "{pem}");
    // The card file holds the key the tool was told about.
    let state = CardFile::open(&card.path).unwrap();
    assert_eq!(
        state.state().key_algorithm(key::SIGNATURE),
        Some(alg::ECC_P256)
    );
}
