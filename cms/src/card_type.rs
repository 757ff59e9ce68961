//! The card type the Smartcard Details table shows, from the card's Answer To Reset.

/// Known ATRs (from the `pcsc-tools` list) and the type name the registry records.
const KNOWN: &[(&[u8], &str)] = &[
    // NHS smartcard on JCOP41 V2.2.
    (
        &[
            0x3B, 0xF9, 0x18, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45, 0x4A, 0x43, 0x4F, 0x50, 0x34,
            0x31, 0x56, 0x32, 0x32, 0xAF,
        ],
        "NHS CIS",
    ),
    // Gemalto IDPrime PIV Card 2.0 (the seeds' "Gemplus").
    (
        &[
            0x3B, 0x7D, 0x96, 0x00, 0x00, 0x80, 0x31, 0x80, 0x65, 0xB0, 0x83, 0x11, 0x17, 0xE5,
            0x83, 0x00, 0x90, 0x00,
        ],
        "Gemplus",
    ),
    // Oberthur ID-One PIV on Cosmo V8.
    (
        &[
            0x3B, 0xD6, 0x97, 0x00, 0x81, 0xB1, 0xFE, 0x45, 0x1F, 0x87, 0x80, 0x31, 0xC1, 0x52,
            0x41, 0x1A, 0x2B,
        ],
        "Oberthur",
    ),
    // YubiKey 5 NFC over CCID.
    (
        &[
            0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0,
            0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
        ],
        "YubiKey",
    ),
];

/// The card type for an ATR; any other PIV card is `PIV`.
pub fn from_atr(atr: &[u8]) -> &'static str {
    KNOWN
        .iter()
        .find(|(known, _)| *known == atr)
        .map(|(_, name)| *name)
        .unwrap_or("PIV")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_atrs_name_their_type() {
        assert_eq!(from_atr(KNOWN[1].0), "Gemplus");
        assert_eq!(from_atr(&[0x3B, 0x00]), "PIV");
    }
}
