//! Applet tests where the crypto must be checked: signatures, key agreement, mutual
//! authentication, and the long-data paths (chaining, GET RESPONSE).

mod common;

use cardsim::AtrProfile;
use common::{inner, state, Host};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use piv::apdu::{Command, StatusWord};
use piv::consts::{alg, ins, key, object};
use piv::{tlv, ManagementKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256};

fn authenticated_host() -> Host {
    let mut host = Host::new(state(AtrProfile::Piv));
    assert_eq!(host.authenticate(&ManagementKey::factory()), StatusWord::OK);
    host
}

/// PKCS#1 v1.5 signature padding of a SHA-256 digest to 256 bytes.
/// GET DATA for the object with the 3-byte `tag`, built by hand so a test can set its Le.
fn get_data_command(tag: &[u8; 3]) -> Command {
    Command::new(ins::GET_DATA, 0x3F, 0xFF, tlv::encode(0x5C, tag))
}

fn pkcs1_sha256_block(digest: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let t_len = PREFIX.len() + digest.len();
    let mut block = vec![0x00, 0x01];
    block.resize(256 - t_len - 1, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&PREFIX);
    block.extend_from_slice(digest);
    assert_eq!(block.len(), 256);
    block
}

#[test]
fn rsa_signature_in_9a_verifies_with_the_generated_public_key() {
    let mut host = authenticated_host();
    // The 7F49 answer is longer than 256 bytes: it comes through GET RESPONSE.
    let first = host.raw(&Command::new(
        ins::GENERATE_ASYMMETRIC_KEY_PAIR,
        0,
        key::AUTHENTICATION,
        vec![0xAC, 0x03, 0x80, 0x01, alg::RSA_2048],
    ));
    assert_eq!(first.sw.sw1(), 0x61, "expected 61xx, got {}", first.sw);
    assert_eq!(first.data.len(), 256);
    let rest = host.raw(&Command::new(ins::GET_RESPONSE, 0, 0, vec![]));
    assert_eq!(rest.sw, StatusWord::OK);
    let mut template = first.data.clone();
    template.extend_from_slice(&rest.data);
    let n = inner(&template, 0x7F49, 0x81);
    let e = inner(&template, 0x7F49, 0x82);
    let public = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).unwrap();
    assert_eq!(public.size(), 256);

    let digest = Sha256::digest(b"sign me");
    let block = pkcs1_sha256_block(&digest);
    // Without the PIN: refused.
    let r = host.private_op(alg::RSA_2048, key::AUTHENTICATION, 0x81, &block);
    assert_eq!(r.sw, StatusWord::SECURITY_STATUS_NOT_SATISFIED);
    assert_eq!(host.verify_pin("123456"), StatusWord::OK);
    // The wrong algorithm, and a block of the wrong size.
    let r = host.private_op(alg::ECC_P256, key::AUTHENTICATION, 0x81, &digest);
    assert_eq!(r.sw, StatusWord::WRONG_P1P2);
    let r = host.private_op(alg::RSA_2048, key::AUTHENTICATION, 0x81, &block[1..]);
    assert_eq!(r.sw, StatusWord::WRONG_DATA);

    let r = host.private_op(alg::RSA_2048, key::AUTHENTICATION, 0x81, &block);
    assert_eq!(r.sw, StatusWord::OK);
    let signature = inner(&r.data, 0x7C, 0x82);
    assert_eq!(signature.len(), 256);
    public
        .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .expect("signature verifies");
    // The key stays with the card state.
    assert_eq!(
        host.applet.state().key_algorithm(key::AUTHENTICATION),
        Some(alg::RSA_2048)
    );
}

#[test]
fn p256_signature_and_key_agreement() {
    let mut host = authenticated_host();
    let r = host.generate(key::SIGNATURE, alg::ECC_P256);
    assert_eq!(r.sw, StatusWord::OK);
    let point = inner(&r.data, 0x7F49, 0x86);
    assert_eq!((point.len(), point[0]), (65, 0x04));
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();

    assert_eq!(host.verify_pin("123456"), StatusWord::OK);
    let digest = Sha256::digest(b"a document");
    let r = host.private_op(alg::ECC_P256, key::SIGNATURE, 0x81, &digest);
    assert_eq!(r.sw, StatusWord::OK);
    let sig = p256::ecdsa::Signature::from_der(&inner(&r.data, 0x7C, 0x82)).unwrap();
    vk.verify_prehash(&digest, &sig).unwrap();
    // A different hash does not verify with that signature.
    assert!(vk
        .verify_prehash(&Sha256::digest(b"another"), &sig)
        .is_err());

    // ECDH in 9D: both sides reach the same secret.
    let r = host.generate(key::KEY_MANAGEMENT, alg::ECC_P256);
    let card_point = inner(&r.data, 0x7F49, 0x86);
    let ours = p256::SecretKey::random(&mut rand::rngs::OsRng);
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let our_point = ours.public_key().to_encoded_point(false);
    let r = host.private_op(
        alg::ECC_P256,
        key::KEY_MANAGEMENT,
        0x85,
        our_point.as_bytes(),
    );
    assert_eq!(r.sw, StatusWord::OK);
    let card_secret = inner(&r.data, 0x7C, 0x82);
    let card_public = p256::PublicKey::from_sec1_bytes(&card_point).unwrap();
    let expected = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), card_public.as_affine());
    assert_eq!(card_secret, expected.raw_secret_bytes().to_vec());
    // A point not on the curve is refused.
    let mut bad = our_point.as_bytes().to_vec();
    bad[64] ^= 1;
    let r = host.private_op(alg::ECC_P256, key::KEY_MANAGEMENT, 0x85, &bad);
    assert_eq!(r.sw, StatusWord::WRONG_DATA);
}

#[test]
fn card_authentication_key_needs_no_pin() {
    let mut host = authenticated_host();
    let r = host.generate(key::CARD_AUTHENTICATION, alg::ECC_P256);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&inner(&r.data, 0x7F49, 0x86)).unwrap();
    host.applet.reset();
    host.select();
    let challenge = [0x5Au8; 32];
    let r = host.private_op(alg::ECC_P256, key::CARD_AUTHENTICATION, 0x81, &challenge);
    assert_eq!(r.sw, StatusWord::OK);
    let sig = p256::ecdsa::Signature::from_der(&inner(&r.data, 0x7C, 0x82)).unwrap();
    vk.verify_prehash(&challenge, &sig).unwrap();
}

#[test]
fn mutual_authentication_with_3des_and_aes() {
    let mut host = Host::new(state(AtrProfile::YubiKey));
    let wrong = ManagementKey::new(alg::TDES, &[9; 24]).unwrap();
    // The wrong key cannot decrypt the witness: the card refuses the second step.
    assert_eq!(
        host.authenticate(&wrong),
        StatusWord::SECURITY_STATUS_NOT_SATISFIED
    );
    assert!(!host.applet.is_management_authenticated());
    let factory = ManagementKey::factory();
    assert_eq!(host.authenticate(&factory), StatusWord::OK);
    assert!(host.applet.is_management_authenticated());

    // Switch to an AES-128 key.
    let aes = ManagementKey::new(alg::AES_128, &[0x3C; 16]).unwrap();
    let mut data = vec![alg::AES_128, key::MANAGEMENT, 16];
    data.extend_from_slice(aes.secret());
    let r = host.transmit(Command::new(ins::SET_MANAGEMENT_KEY, 0xFF, 0xFF, data).without_le());
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(host.applet.state().management_key().unwrap(), aes);
    assert!(host.applet.take_changed());

    host.applet.reset();
    host.select();
    assert!(!host.applet.is_management_authenticated());
    // The old key and the old algorithm no longer work.
    assert_eq!(host.authenticate(&factory), StatusWord::WRONG_P1P2);
    assert_eq!(host.authenticate(&aes), StatusWord::OK);

    // External authentication: the host encrypts the card's challenge.
    host.applet.reset();
    host.select();
    let r = host.transmit(Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg::AES_128,
        key::MANAGEMENT,
        vec![0x7C, 0x02, 0x81, 0x00],
    ));
    let challenge = inner(&r.data, 0x7C, 0x81);
    assert_eq!(challenge.len(), 16);
    let answer = aes.encrypt_block(&challenge).unwrap();
    let r = host.transmit(Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg::AES_128,
        key::MANAGEMENT,
        tlv::encode(0x7C, &tlv::encode(0x82, &answer)),
    ));
    assert_eq!(r.sw, StatusWord::OK);
    assert!(host.applet.is_management_authenticated());

    // Card authentication: the card encrypts the host's challenge.
    let mut body = tlv::encode(0x81, &[0x11; 16]);
    tlv::push(&mut body, 0x82, &[]);
    let r = host.transmit(Command::new(
        ins::GENERAL_AUTHENTICATE,
        alg::AES_128,
        key::MANAGEMENT,
        tlv::encode(0x7C, &body),
    ));
    assert_eq!(
        inner(&r.data, 0x7C, 0x82),
        aes.encrypt_block(&[0x11; 16]).unwrap()
    );

    // Bad new keys are refused.
    for bad in [
        vec![alg::AES_128, key::MANAGEMENT, 16, 1, 2],
        vec![0x0C, key::MANAGEMENT, 2, 1, 2],
        vec![alg::TDES, 0x9A, 1, 1],
    ] {
        let r = host.transmit(Command::new(ins::SET_MANAGEMENT_KEY, 0xFF, 0xFF, bad).without_le());
        assert_eq!(r.sw, StatusWord::WRONG_DATA);
    }
}

#[test]
fn pin_blocks_after_three_wrong_and_the_puk_unblocks_it() {
    let mut host = Host::new(state(AtrProfile::NhsCis));
    assert_eq!(host.verify_pin("000000"), StatusWord::tries_left(2));
    assert_eq!(host.verify_pin("000000"), StatusWord::tries_left(1));
    assert_eq!(host.verify_pin("000000"), StatusWord::tries_left(0));
    assert_eq!(host.verify_pin("123456"), StatusWord::AUTH_BLOCKED);
    assert_eq!(host.applet.state().pin_tries_left(), 0);
    assert!(host.applet.take_changed());

    let mut data = b"12345678".to_vec();
    data.extend_from_slice(b"4321\xFF\xFF\xFF\xFF");
    let r = host.transmit(Command::new(ins::RESET_RETRY_COUNTER, 0, key::PIN, data).without_le());
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(host.applet.state().pin_tries_left(), 3);
    assert_eq!(host.verify_pin("123456"), StatusWord::tries_left(2));
    assert_eq!(host.verify_pin("4321"), StatusWord::OK);
}

#[test]
fn a_2kb_certificate_goes_in_chained_and_comes_back_through_get_response() {
    let mut host = authenticated_host();
    let cert: Vec<u8> = (0..2048u32).map(|i| (i * 31 % 251) as u8).collect();
    let content = cardsim::state::certificate_object(&cert);
    let r = host.put_data(object::CERT_9A, &content);
    assert_eq!(r.sw, StatusWord::OK);
    assert!(host.applet.take_changed());

    // A short GET DATA answers 256 bytes at a time with 61xx.
    let first = host.raw(&get_data_command(&[0x5F, 0xC1, 0x05]));
    assert_eq!((first.sw.sw1(), first.data.len()), (0x61, 256));
    let r = host.get_data(object::CERT_9A);
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(r.data, tlv::encode(0x53, &content));
    assert_eq!(
        host.applet
            .state()
            .certificate(key::AUTHENTICATION)
            .unwrap(),
        cert
    );

    // An extended-length GET DATA gets it all at once.
    let mut long = get_data_command(&[0x5F, 0xC1, 0x05]);
    long.le = Some(4096);
    let r = host.raw(&long);
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(r.data, tlv::encode(0x53, &content));

    // Empty content deletes the object.
    assert_eq!(host.put_data(object::CERT_9A, &[]).sw, StatusWord::OK);
    assert_eq!(host.get_data(object::CERT_9A).sw, StatusWord::NOT_FOUND);

    // Discovery is written with 7E, not 53.
    let mut body = tlv::encode(0x5C, &[0x7E]);
    tlv::push(&mut body, 0x7E, &[0x4F, 0x01, 0xA0]);
    let r = host.transmit(Command::new(ins::PUT_DATA, 0x3F, 0xFF, body).without_le());
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(host.get_data(0x7E).data, vec![0x7E, 0x03, 0x4F, 0x01, 0xA0]);
}

#[test]
fn a_reset_forgets_pin_management_key_and_pending_data() {
    let mut host = authenticated_host();
    assert_eq!(host.verify_pin("123456"), StatusWord::OK);
    let mut short = get_data_command(&[0x5F, 0xC1, 0x02]);
    short.le = Some(16);
    let first = host.raw(&short);
    assert_eq!(first.sw.sw1(), 0x61);
    host.applet.reset();
    host.select();
    assert!(!host.applet.is_pin_verified());
    assert!(!host.applet.is_management_authenticated());
    let r = host.raw(&Command::new(ins::GET_RESPONSE, 0, 0, vec![]));
    assert_eq!(r.sw, StatusWord::CONDITIONS_NOT_SATISFIED);
    assert_eq!(
        host.generate(key::AUTHENTICATION, alg::ECC_P256).sw,
        StatusWord::SECURITY_STATUS_NOT_SATISFIED
    );
}

#[test]
fn retired_slots_hold_keys_and_certificates() {
    let mut host = authenticated_host();
    assert_eq!(
        host.generate(0x96, alg::ECC_P256).sw,
        StatusWord::WRONG_P1P2
    );
    for slot in [key::RETIRED_FIRST, key::RETIRED_LAST] {
        let r = host.generate(slot, alg::ECC_P256);
        assert_eq!(r.sw, StatusWord::OK);
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&inner(&r.data, 0x7F49, 0x86)).unwrap();
        // Signing needs the PIN in a retired slot too.
        let digest = Sha256::digest([slot]);
        assert_eq!(
            host.private_op(alg::ECC_P256, slot, 0x81, &digest).sw,
            StatusWord::SECURITY_STATUS_NOT_SATISFIED
        );
        assert_eq!(host.verify_pin("123456"), StatusWord::OK);
        let r = host.private_op(alg::ECC_P256, slot, 0x81, &digest);
        let sig = p256::ecdsa::Signature::from_der(&inner(&r.data, 0x7C, 0x82)).unwrap();
        vk.verify_prehash(&digest, &sig).unwrap();
        host.applet.reset();
        host.select();
        assert_eq!(host.authenticate(&ManagementKey::factory()), StatusWord::OK);
    }
    let cert = [0x30, 0x03, 0x02, 0x01, 0x2A];
    let r = host.put_data(0x5FC10D, &cardsim::state::certificate_object(&cert));
    assert_eq!(r.sw, StatusWord::OK);
    assert_eq!(
        host.applet.state().certificate(key::RETIRED_FIRST).unwrap(),
        cert
    );
    assert_eq!(host.get_data(0x5FC120).sw, StatusWord::NOT_FOUND);
}

#[test]
fn every_management_algorithm_authenticates_and_metadata_names_it() {
    use piv::ManagementAlgorithm;
    for algorithm in ManagementAlgorithm::ALL {
        for metadata in [true, false] {
            let mut spec = cardsim::CardSpec::new(common::SERIAL.parse().unwrap())
                .with_management_algorithm(algorithm);
            spec.metadata = metadata;
            let mut host = Host::new(cardsim::CardState::new(&spec).unwrap());
            let factory = ManagementKey::factory_for(algorithm);
            let meta = host.raw(&Command::new(ins::GET_METADATA, 0, key::MANAGEMENT, vec![]));
            if metadata {
                assert_eq!(meta.sw, StatusWord::OK);
                assert_eq!(
                    tlv::find(&meta.data, 0x01).unwrap(),
                    Some(&[algorithm.id()][..])
                );
                assert_eq!(tlv::find(&meta.data, 0x05).unwrap(), Some(&[1u8][..]));
            } else {
                assert_eq!(meta.sw, StatusWord::INS_NOT_SUPPORTED);
            }
            // Any other algorithm is refused at the first step, before a witness.
            for other in ManagementAlgorithm::ALL
                .into_iter()
                .filter(|a| *a != algorithm)
            {
                let wrong = ManagementKey::factory_for(other);
                assert_eq!(
                    host.authenticate(&wrong),
                    StatusWord::WRONG_P1P2,
                    "{algorithm} card, {other} key"
                );
            }
            assert_eq!(host.authenticate(&factory), StatusWord::OK, "{algorithm}");

            // The card takes a new key of its own algorithm only.
            for other in ManagementAlgorithm::ALL {
                let key =
                    ManagementKey::with_algorithm(other, &vec![0x5A; other.key_len()]).unwrap();
                let mut data = vec![other.id(), key::MANAGEMENT, other.key_len() as u8];
                data.extend_from_slice(key.secret());
                let r = host
                    .transmit(Command::new(ins::SET_MANAGEMENT_KEY, 0xFF, 0xFF, data).without_le());
                if other == algorithm {
                    assert_eq!(r.sw, StatusWord::OK);
                    assert_eq!(host.applet.state().management_key().unwrap(), key);
                } else {
                    assert_eq!(
                        r.sw,
                        StatusWord::WRONG_DATA,
                        "{algorithm} card took {other}"
                    );
                }
            }
            if metadata {
                let meta = host.raw(&Command::new(ins::GET_METADATA, 0, key::MANAGEMENT, vec![]));
                assert_eq!(tlv::find(&meta.data, 0x05).unwrap(), Some(&[0u8][..]));
                let pin = host.raw(&Command::new(ins::GET_METADATA, 0, key::PIN, vec![]));
                assert_eq!(pin.sw, StatusWord::REFERENCE_NOT_FOUND);
            }
        }
    }
}
