//! ATR profiles: which real card the virtual card claims to be.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The card type a virtual card presents, chosen by its Answer To Reset.
///
/// Every ATR is a real one from the `pcsc-tools` list (`smartcard_list.txt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AtrProfile {
    /// NHS smartcard on a JCOP41 platform (`nhs-cis`).
    NhsCis,
    /// Gemalto IDPrime PIV Card 2.0 (`gemalto`).
    Gemalto,
    /// Oberthur / IDEMIA ID-One PIV on a Cosmo V8 device (`oberthur`).
    Oberthur,
    /// A generic PIV card: the NIST demonstration PIV card (`piv`).
    Piv,
    /// YubiKey 5 NFC over its CCID interface (`yubikey`).
    #[serde(rename = "yubikey")]
    YubiKey,
    /// A blank NXP J3H145 JavaCard with a PIV applet loaded by its owner (`javacard`): an ATR
    /// that names no card type, as many PIV cards have.
    #[serde(rename = "javacard")]
    JavaCard,
}

/// A profile name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown ATR profile {0:?} (known: nhs-cis, gemalto, oberthur, piv, yubikey, javacard)")]
pub struct UnknownProfile(pub String);

const NHS_CIS: &[u8] = &[
    0x3B, 0xF9, 0x18, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45, 0x4A, 0x43, 0x4F, 0x50, 0x34, 0x31, 0x56,
    0x32, 0x32, 0xAF,
];
const GEMALTO: &[u8] = &[
    0x3B, 0x7D, 0x96, 0x00, 0x00, 0x80, 0x31, 0x80, 0x65, 0xB0, 0x83, 0x11, 0x17, 0xE5, 0x83, 0x00,
    0x90, 0x00,
];
const OBERTHUR: &[u8] = &[
    0x3B, 0xD6, 0x97, 0x00, 0x81, 0xB1, 0xFE, 0x45, 0x1F, 0x87, 0x80, 0x31, 0xC1, 0x52, 0x41, 0x1A,
    0x2B,
];
const PIV: &[u8] = &[
    0x3B, 0x8F, 0x80, 0x01, 0x80, 0x73, 0xCC, 0x91, 0xCB, 0xF9, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
    0x00, 0x10, 0x00, 0x29,
];
const YUBIKEY: &[u8] = &[
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];
const JAVACARD: &[u8] = &[0x3B, 0x94, 0x95, 0x81, 0x01, 0x46, 0x54, 0x56, 0x01, 0xC4];

impl AtrProfile {
    /// Every profile, in a stable order.
    pub const ALL: [AtrProfile; 6] = [
        AtrProfile::NhsCis,
        AtrProfile::Gemalto,
        AtrProfile::Oberthur,
        AtrProfile::Piv,
        AtrProfile::YubiKey,
        AtrProfile::JavaCard,
    ];

    /// The Answer To Reset the card sends.
    pub fn atr(&self) -> &'static [u8] {
        match self {
            AtrProfile::NhsCis => NHS_CIS,
            AtrProfile::Gemalto => GEMALTO,
            AtrProfile::Oberthur => OBERTHUR,
            AtrProfile::Piv => PIV,
            AtrProfile::YubiKey => YUBIKEY,
            AtrProfile::JavaCard => JAVACARD,
        }
    }

    /// The profile's name as used on the command line and in card files.
    pub fn name(&self) -> &'static str {
        match self {
            AtrProfile::NhsCis => "nhs-cis",
            AtrProfile::Gemalto => "gemalto",
            AtrProfile::Oberthur => "oberthur",
            AtrProfile::Piv => "piv",
            AtrProfile::YubiKey => "yubikey",
            AtrProfile::JavaCard => "javacard",
        }
    }

    /// Whether the card answers the Yubico extensions (GET VERSION, GET SERIAL).
    pub fn is_yubikey(&self) -> bool {
        matches!(self, AtrProfile::YubiKey)
    }
}

impl fmt::Display for AtrProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AtrProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_named_for_its_card_type() {
        // A PIV card whose ATR names nothing is a PIV card.
        let javacard = AtrProfile::JavaCard.atr();
        assert_eq!(piv::card_type::from_atr(javacard), None);
        assert_eq!(piv::card_type::card_type(javacard, true), "PIV");
        for profile in AtrProfile::ALL
            .into_iter()
            .filter(|p| *p != AtrProfile::JavaCard)
        {
            let name = piv::card_type::from_atr(profile.atr()).expect("a known ATR");
            assert_eq!(
                name.to_ascii_lowercase().replace(' ', "-"),
                profile.name(),
                "{profile}"
            );
            assert_eq!(piv::card_type::card_type(profile.atr(), true), name);
        }
    }

    /// TCK: the XOR of every byte after TS is zero when a checksum is present.
    fn tck_ok(atr: &[u8]) -> bool {
        atr[1..].iter().fold(0u8, |a, b| a ^ b) == 0
    }

    #[test]
    fn names_round_trip_and_atrs_are_well_formed() {
        for p in AtrProfile::ALL {
            assert_eq!(p.to_string().parse::<AtrProfile>().unwrap(), p);
            assert_eq!(p.atr()[0], 0x3B);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        // Profiles whose ATR offers T=1 carry a checksum byte.
        for p in [
            AtrProfile::NhsCis,
            AtrProfile::Oberthur,
            AtrProfile::Piv,
            AtrProfile::YubiKey,
            AtrProfile::JavaCard,
        ] {
            assert!(tck_ok(p.atr()), "{p}");
        }
        assert!("jcop".parse::<AtrProfile>().is_err());
        assert_eq!(
            " YubiKey ".parse::<AtrProfile>().unwrap(),
            AtrProfile::YubiKey
        );
    }
}
