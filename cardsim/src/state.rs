//! The card's persistent state and its file on disk.
//!
//! A card is one JSON file, rewritten atomically (temporary file in the same directory, fsync,
//! rename, fsync of the directory) after every change, so a card keeps its keys when it is
//! removed and inserted again, and survives a killed `cardsim`.

use crate::error::CardError;
use crate::profile::AtrProfile;
use crate::slot_key::SlotKey;
use piv::consts::{self, alg};
use piv::{chuid, tlv, CardSerial, ManagementAlgorithm, ManagementKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// Tries a new PIN or PUK gets.
pub const MAX_TRIES: u8 = 3;
/// The factory PIN.
pub const DEFAULT_PIN: &str = "123456";
/// The factory PUK.
pub const DEFAULT_PUK: &str = "12345678";
/// The CHUID expiry date written at creation.
const CHUID_EXPIRY: &[u8; 8] = b"20301231";
/// The version of the card-file format.
const FORMAT: u32 = 1;

/// How to personalise a new card.
#[derive(Debug, Clone)]
pub struct CardSpec {
    /// The serial carried in the CHUID GUID.
    pub serial: CardSerial,
    /// The ATR profile.
    pub profile: AtrProfile,
    /// The PIN (4–8 characters).
    pub pin: String,
    /// The PUK (4–8 characters).
    pub puk: String,
    /// The 9B management key.
    pub management_key: ManagementKey,
    /// The algorithms SET MANAGEMENT KEY takes; the others it refuses with 6A80, as real
    /// cards do (a YubiKey 4 takes only 3DES, a 5.4 or later all four). Empty: all four.
    pub management_algorithms: Vec<ManagementAlgorithm>,
    /// Whether the card answers GET METADATA (YubiKey 5.3 and later) or not (6D00).
    pub metadata: bool,
}

impl CardSpec {
    /// An `nhs-cis` card with PIN 123456, PUK 12345678 and the factory 3DES management key,
    /// which takes management keys of every algorithm and answers GET METADATA (as a
    /// YubiKey 5.4 or later).
    pub fn new(serial: CardSerial) -> Self {
        Self {
            serial,
            profile: AtrProfile::NhsCis,
            pin: DEFAULT_PIN.to_owned(),
            puk: DEFAULT_PUK.to_owned(),
            management_key: ManagementKey::factory(),
            management_algorithms: Vec::new(),
            metadata: true,
        }
    }

    /// The same card with the factory management key of `algorithm`, taking only keys of it.
    pub fn with_management_algorithm(mut self, algorithm: ManagementAlgorithm) -> Self {
        self.management_key = ManagementKey::factory_for(algorithm);
        self.management_algorithms = vec![algorithm];
        self
    }
}

/// A key as stored in the card file.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    /// PIV algorithm identifier.
    pub(crate) algorithm: u8,
    /// PKCS#8 DER, hex.
    pub(crate) pkcs8: Zeroizing<String>,
}

/// The management key as stored in the card file.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredManagementKey {
    pub(crate) algorithm: u8,
    pub(crate) key: Zeroizing<String>,
}

/// Everything a card remembers across power cycles. Secret fields are wiped on drop and never
/// printed.
#[derive(Clone, Serialize, Deserialize)]
pub struct CardState {
    format: u32,
    serial: String,
    profile: AtrProfile,
    pub(crate) pin: Zeroizing<String>,
    pub(crate) puk: Zeroizing<String>,
    pub(crate) pin_tries_left: u8,
    pub(crate) puk_tries_left: u8,
    pub(crate) management_key: StoredManagementKey,
    /// The algorithm identifiers SET MANAGEMENT KEY takes (a file without them: all four).
    #[serde(default = "every_management_algorithm")]
    management_algorithms: Vec<u8>,
    /// Whether the card answers GET METADATA.
    #[serde(default)]
    metadata: bool,
    /// Slot (two hex digits) to key.
    keys: BTreeMap<String, StoredKey>,
    /// Object tag (hex) to content (hex): the value inside `53` (inside `7E` for discovery).
    objects: BTreeMap<String, String>,
}

impl std::fmt::Debug for CardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardState")
            .field("serial", &self.serial)
            .field("profile", &self.profile)
            .field("pin_tries_left", &self.pin_tries_left)
            .field("puk_tries_left", &self.puk_tries_left)
            .field("slots", &self.keys.keys().collect::<Vec<_>>())
            .field("objects", &self.objects.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn every_management_algorithm() -> Vec<u8> {
    ManagementAlgorithm::ALL.iter().map(|a| a.id()).collect()
}

fn slot_name(slot: u8) -> String {
    format!("{slot:02X}")
}

fn object_name(tag: u32) -> String {
    format!("{tag:X}")
}

/// Whether `secret` is a usable PIN or PUK: 4 to 8 bytes, none of them the 0xFF pad.
pub(crate) fn valid_secret(secret: &[u8]) -> bool {
    (4..=8).contains(&secret.len()) && !secret.contains(&0xFF)
}

/// The content of a certificate object (`70` certificate, `71` uncompressed, `FE` LRC).
pub fn certificate_object(cert_der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cert_der.len() + 12);
    tlv::push(&mut out, 0x70, cert_der);
    tlv::push(&mut out, 0x71, &[0x00]);
    tlv::push(&mut out, 0xFE, &[]);
    out
}

/// A minimal Card Capability Container for a card with this serial.
fn ccc(serial: CardSerial) -> Vec<u8> {
    let mut card_id = vec![0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02];
    card_id.extend_from_slice(&serial.0);
    card_id.extend_from_slice(&[0; 6]);
    let mut out = Vec::new();
    tlv::push(&mut out, 0xF0, &card_id);
    tlv::push(&mut out, 0xF1, &[0x21]);
    tlv::push(&mut out, 0xF2, &[0x21]);
    tlv::push(&mut out, 0xF3, &[]);
    tlv::push(&mut out, 0xF4, &[0x00]);
    tlv::push(&mut out, 0xF5, &[0x10]);
    for tag in [0xF6, 0xF7, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE] {
        tlv::push(&mut out, tag, &[]);
    }
    out
}

impl CardState {
    /// A freshly personalised card: PIN and PUK with full tries, CHUID and CCC, no keys.
    pub fn new(spec: &CardSpec) -> Result<Self, CardError> {
        if !valid_secret(spec.pin.as_bytes()) {
            return Err(CardError::BadSecret { what: "PIN" });
        }
        if !valid_secret(spec.puk.as_bytes()) {
            return Err(CardError::BadSecret { what: "PUK" });
        }
        let mut state = Self {
            format: FORMAT,
            serial: spec.serial.to_string(),
            profile: spec.profile,
            pin: Zeroizing::new(spec.pin.clone()),
            puk: Zeroizing::new(spec.puk.clone()),
            pin_tries_left: MAX_TRIES,
            puk_tries_left: MAX_TRIES,
            management_key: StoredManagementKey {
                algorithm: spec.management_key.algorithm(),
                key: Zeroizing::new(hex::encode(spec.management_key.secret())),
            },
            management_algorithms: if spec.management_algorithms.is_empty() {
                every_management_algorithm()
            } else {
                spec.management_algorithms.iter().map(|a| a.id()).collect()
            },
            metadata: spec.metadata,
            keys: BTreeMap::new(),
            objects: BTreeMap::new(),
        };
        state.set_object(
            consts::object::CHUID,
            &chuid::build(spec.serial, CHUID_EXPIRY),
        );
        state.set_object(consts::object::CCC, &ccc(spec.serial));
        Ok(state)
    }

    /// The card serial.
    pub fn serial(&self) -> CardSerial {
        // Written by `new` from a CardSerial; a hand-edited file falls back to zeros.
        self.serial.parse().unwrap_or(CardSerial([0; 8]))
    }

    /// The ATR profile.
    pub fn profile(&self) -> AtrProfile {
        self.profile
    }

    /// PIN tries left (0 = blocked).
    pub fn pin_tries_left(&self) -> u8 {
        self.pin_tries_left
    }

    /// PUK tries left (0 = blocked).
    pub fn puk_tries_left(&self) -> u8 {
        self.puk_tries_left
    }

    /// The 9B management key.
    pub fn management_key(&self) -> Result<ManagementKey, CardError> {
        let bytes = Zeroizing::new(
            hex::decode(self.management_key.key.as_str())
                .map_err(|_| piv::management_key::ManagementKeyError::NotHex)?,
        );
        Ok(ManagementKey::new(self.management_key.algorithm, &bytes)?)
    }

    /// Whether SET MANAGEMENT KEY takes keys of algorithm identifier `algorithm`.
    pub fn takes_management_algorithm(&self, algorithm: u8) -> bool {
        self.management_algorithms.contains(&algorithm)
    }

    /// Whether the card answers GET METADATA.
    pub fn answers_metadata(&self) -> bool {
        self.metadata
    }

    /// Replaces the 9B management key.
    pub(crate) fn set_management_key(&mut self, key: &ManagementKey) {
        self.management_key = StoredManagementKey {
            algorithm: key.algorithm(),
            key: Zeroizing::new(hex::encode(key.secret())),
        };
    }

    /// The algorithm of the key in `slot`, if there is one.
    pub fn key_algorithm(&self, slot: u8) -> Option<u8> {
        self.keys.get(&slot_name(slot)).map(|k| k.algorithm)
    }

    /// The slots that hold keys, in order.
    pub fn key_slots(&self) -> Vec<u8> {
        self.keys
            .keys()
            .filter_map(|s| u8::from_str_radix(s, 16).ok())
            .collect()
    }

    /// The key in `slot`: `None` when empty.
    pub(crate) fn key(&self, slot: u8) -> Option<Result<SlotKey, CardError>> {
        let stored = self.keys.get(&slot_name(slot))?;
        Some((|| {
            let der = Zeroizing::new(
                hex::decode(stored.pkcs8.as_str())
                    .map_err(|_| crate::slot_key::KeyError::BadStoredKey)?,
            );
            Ok(SlotKey::from_pkcs8(stored.algorithm, &der)?)
        })())
    }

    /// Stores `key` in `slot`.
    pub(crate) fn set_key(&mut self, slot: u8, key: &SlotKey) -> Result<(), CardError> {
        let der = key.to_pkcs8()?;
        self.keys.insert(
            slot_name(slot),
            StoredKey {
                algorithm: key.algorithm(),
                pkcs8: Zeroizing::new(hex::encode(der.as_slice())),
            },
        );
        Ok(())
    }

    /// The content of object `tag` (inside `53`, or inside `7E` for the discovery object).
    pub fn object(&self, tag: u32) -> Option<Vec<u8>> {
        self.objects
            .get(&object_name(tag))
            .and_then(|h| hex::decode(h).ok())
    }

    /// The tags of the objects present, in order.
    pub fn object_tags(&self) -> Vec<u32> {
        self.objects
            .keys()
            .filter_map(|s| u32::from_str_radix(s, 16).ok())
            .collect()
    }

    /// Stores object `tag`; empty content deletes it.
    pub(crate) fn set_object(&mut self, tag: u32, content: &[u8]) {
        if content.is_empty() {
            self.objects.remove(&object_name(tag));
        } else {
            self.objects.insert(object_name(tag), hex::encode(content));
        }
    }

    /// The DER certificate in the certificate object of `slot`, if any.
    pub fn certificate(&self, slot: u8) -> Option<Vec<u8>> {
        let tag = consts::cert_object_for_slot(slot)?;
        let content = self.object(tag)?;
        tlv::find(&content, 0x70).ok().flatten().map(<[u8]>::to_vec)
    }

    /// Generates a key pair in `slot` and returns its DER SubjectPublicKeyInfo.
    pub fn generate_key(&mut self, slot: u8, algorithm: u8) -> Result<Vec<u8>, CardError> {
        if !consts::is_asymmetric_slot(slot) {
            return Err(CardError::BadSlot(slot));
        }
        let key = SlotKey::generate(algorithm)?;
        self.set_key(slot, &key)?;
        Ok(key.public_key_der()?)
    }

    /// Writes `cert_der` into the certificate object of `slot`.
    pub fn import_certificate(&mut self, slot: u8, cert_der: &[u8]) -> Result<(), CardError> {
        let tag = consts::cert_object_for_slot(slot).ok_or(CardError::BadSlot(slot))?;
        // Accept exactly one DER SEQUENCE and nothing after it.
        match tlv::parse(cert_der) {
            Ok((t, rest)) if t.tag == 0x30 && rest.is_empty() => {}
            _ => return Err(CardError::BadCertificate(slot)),
        }
        self.set_object(tag, &certificate_object(cert_der));
        Ok(())
    }
}

/// A card's state on disk.
#[derive(Debug)]
pub struct CardFile {
    path: PathBuf,
    state: CardState,
}

impl CardFile {
    /// Personalises a new card as `spec` says and writes it to `path` (which must not exist).
    pub fn create(path: &Path, spec: &CardSpec) -> Result<Self, CardError> {
        if path.exists() {
            return Err(CardError::Exists(path.to_owned()));
        }
        let file = Self {
            path: path.to_owned(),
            state: CardState::new(spec)?,
        };
        file.save()?;
        Ok(file)
    }

    /// Reads the card at `path`.
    pub fn open(path: &Path) -> Result<Self, CardError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| CardError::Read {
            path: path.to_owned(),
            source,
        })?);
        let state: CardState =
            serde_json::from_str(&text).map_err(|source| CardError::Corrupt {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            state,
        })
    }

    /// Where the card lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The card serial.
    pub fn serial(&self) -> CardSerial {
        self.state.serial()
    }

    /// The ATR profile.
    pub fn profile(&self) -> AtrProfile {
        self.state.profile()
    }

    /// PIN tries left.
    pub fn pin_tries_left(&self) -> u8 {
        self.state.pin_tries_left()
    }

    /// PUK tries left.
    pub fn puk_tries_left(&self) -> u8 {
        self.state.puk_tries_left()
    }

    /// The state as last written.
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// Generates a key pair in `slot` (offline personalisation), saves, and returns the DER
    /// SubjectPublicKeyInfo.
    pub fn generate_key(&mut self, slot: u8, algorithm: u8) -> Result<Vec<u8>, CardError> {
        let spki = self.state.generate_key(slot, algorithm)?;
        self.save()?;
        Ok(spki)
    }

    /// Writes a certificate into the object of `slot` (offline personalisation) and saves.
    pub fn import_certificate(&mut self, slot: u8, cert_der: &[u8]) -> Result<(), CardError> {
        self.state.import_certificate(slot, cert_der)?;
        self.save()
    }

    /// Replaces the state (after the card changed it) and saves.
    pub fn replace_state(&mut self, state: CardState) -> Result<(), CardError> {
        self.state = state;
        self.save()
    }

    /// Writes the state atomically.
    fn save(&self) -> Result<(), CardError> {
        let json = Zeroizing::new(serde_json::to_vec_pretty(&self.state).map_err(|source| {
            CardError::Corrupt {
                path: self.path.clone(),
                source,
            }
        })?);
        write_atomically(&self.path, &json).map_err(|source| CardError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `bytes` to `path` so that a reader sees either the old or the new content, never a
/// mix: a temporary file in the same directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "card".into());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The algorithm identifier for a key-type name on the command line (`rsa2048`, `p256`).
pub fn algorithm_from_name(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "rsa2048" | "rsa-2048" | "rsa" => Some(alg::RSA_2048),
        "p256" | "p-256" | "ecc" | "eccp256" => Some(alg::ECC_P256),
        _ => None,
    }
}
