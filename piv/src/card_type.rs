//! The card type, one vocabulary for the agent and the Card Management Service: a table of
//! real card ATRs, and `PIV` for any other card that answers SELECT of the PIV application.
//!
//! The ATRs come from the `pcsc-tools` list of known cards (`smartcard_list.txt`) and are
//! written the same way: hex bytes separated by spaces, with `.` standing for any nibble (so
//! `..` is any byte). Character classes such as `0[1-3]` are not used here. The table is
//! compiled in; nothing is read at run time.
//!
//! The type names are the ones the virtual card's ATR profiles stand for (`nhs-cis` is
//! `NHS CIS`, `yubikey` is `YubiKey` …), so a card shows under the same name everywhere.

/// The card type of an ATR that is in no row of the table.
pub const UNKNOWN: &str = "Unknown";

/// NHS Care Identity Service smartcards (JCOP41 platform).
pub const NHS_CIS: &str = "NHS CIS";
/// Gemalto cards: the NHS series 4, 5 and 6 (IDPrime, IDPrime .NET, TOP).
pub const GEMALTO: &str = "Gemalto";
/// Oberthur / IDEMIA ID-One cards on Cosmo devices: the NHS series 8.
pub const OBERTHUR: &str = "Oberthur";
/// Other PIV cards (NIST test cards, HID pivCLASS, PIVKey, Taglio).
pub const PIV: &str = "PIV";
/// Yubico YubiKeys (NEO, 4, 5) over CCID or NFC.
pub const YUBIKEY: &str = "YubiKey";

/// The known ATRs, most specific first: the first matching row names the card.
const TABLE: &[(&str, &str)] = &[
    // NHS Care Identity Service (CIS) smartcard, JCOP41 V2.2.
    (
        "3B F9 18 00 00 81 31 FE 45 4A 43 4F 50 34 31 56 32 32 AF",
        NHS_CIS,
    ),
    // NHS hospital smartcard login key, JCOP41 V2.2.1.
    ("3B 6A 00 FF 4A 43 4F 50 34 31 56 32 32 31", NHS_CIS),
    // Gemalto IDPrime PIV Card 2.0, contact and contactless.
    (
        "3B 7D 96 00 00 80 31 80 65 B0 83 11 17 E5 83 00 90 00",
        GEMALTO,
    ),
    (
        "3B 8F 80 01 80 91 E1 31 80 65 B0 83 11 17 E5 83 00 90 00 E9",
        GEMALTO,
    ),
    // Gemalto TOP DL v2 StdR, TOP DL GX4 144K, TOP IM GX4, TOP IM.
    (
        "3B 7D 96 00 00 80 31 80 65 B0 83 11 11 E5 83 00 90 00",
        GEMALTO,
    ),
    (
        "3B 7D 96 00 00 80 31 80 65 B0 83 11 17 D6 83 00 90 00",
        GEMALTO,
    ),
    (
        "3B 7D 96 00 00 80 31 80 65 B0 83 11 D0 A9 83 00 90 00",
        GEMALTO,
    ),
    (
        "3B 6D 00 00 80 31 80 65 B0 83 11 40 C8 83 00 90 00",
        GEMALTO,
    ),
    // Gemalto IDPrime MD 8840, 3840, 3810, 840 and 830 (T=0), and 3810 contactless.
    (
        "3B 7F .. 00 00 80 31 80 65 B0 .. .. .. .. 12 0F FE 82 90 00",
        GEMALTO,
    ),
    (
        "3B 8F 80 01 80 31 80 65 B0 .. .. .. .. 12 0F FE 82 90 00 ..",
        GEMALTO,
    ),
    // Gemalto IDPrime MD 840 (eID), IDPrime 930/3930 FIPS.
    (
        "3B 7F 96 00 00 80 31 80 65 B0 85 03 00 EF 12 02 C1 82 90 00",
        GEMALTO,
    ),
    (
        "3B 7F 96 00 00 80 31 80 65 B0 84 61 60 FB 12 0F FD 82 90 00",
        GEMALTO,
    ),
    // Gemalto IDPrime .NET (and Axalto Cryptoflex .NET before it).
    ("3B .. .. 41 73 74 72 69 64", GEMALTO),
    // Oberthur Technologies ID-One PIV/CIV on a V8 device (IDEMIA Cosmo V8.1 with PIV).
    (
        "3B D6 97 00 81 B1 FE 45 1F 87 80 31 C1 52 41 1A 2B",
        OBERTHUR,
    ),
    // IDEMIA ID-One PIV 2.4, Cosmo V8.0 with a PIV applet.
    (
        "3B D6 97 00 81 B1 FE 45 1F 87 80 31 C1 52 21 1A 4B",
        OBERTHUR,
    ),
    (
        "3B D6 97 00 81 B1 FE 45 1F 07 80 31 C1 52 11 18 F9",
        OBERTHUR,
    ),
    // IDEMIA Cosmo V8.0 and V8.1 with a PIV applet, contactless.
    ("3B 86 80 01 80 31 C1 52 11 18 2C", OBERTHUR),
    ("3B 86 80 01 80 31 C1 52 41 1A 7E", OBERTHUR),
    // Oberthur Cosmo v8.
    (
        "3B D8 18 00 80 B1 FE 45 1F 07 80 31 C1 64 08 06 92 0F D5",
        OBERTHUR,
    ),
    // Oberthur ID-One PIV; Oberthur CS PIV End Point; Cosmo v7 with a PIV applet.
    (
        "3B DB 96 00 80 B1 FE 45 1F 83 00 31 C0 64 B0 FC 10 00 0F 90 00 0D",
        OBERTHUR,
    ),
    (
        "3B DB 96 00 81 B1 FE 45 1F 03 80 F9 A0 00 00 03 08 00 00 10 00 18",
        OBERTHUR,
    ),
    (
        "3B DB 96 00 81 B1 FE 45 1F 83 80 F9 A0 00 00 03 08 00 00 10 00 98",
        OBERTHUR,
    ),
    // NIST demonstration PIV card; NIST test PIV cards; NASA PIV card.
    (
        "3B 8F 80 01 80 73 CC 91 CB F9 A0 00 00 03 08 00 00 10 00 29",
        PIV,
    ),
    (
        "3B DF 96 00 81 B1 FE 45 1F 83 80 73 CC 91 CB F9 A0 00 00 03 08 00 00 10 00 79",
        PIV,
    ),
    (
        "3B DF 97 00 81 B1 FE 45 1F 83 80 73 CC 91 CB F9 A0 00 00 03 08 00 00 10 00 78",
        PIV,
    ),
    // HID Global pivCLASS.
    (
        "3B DF 96 FF 81 31 FE 45 80 59 01 80 50 49 56 43 4C 41 53 73 00 01 1B DE",
        PIV,
    ),
    // Taglio PIV C2190; PIVKey CP70, T840 and C980.
    (
        "3B D9 18 FF 81 91 FE 1F C3 54 41 47 4C 49 4F 50 49 56 5B",
        PIV,
    ),
    ("3B F8 13 00 00 81 31 FE 45 50 49 56 4B 45 59 37 30 FF", PIV),
    (
        "3B F9 13 00 00 81 31 FE 45 53 50 49 56 4B 45 59 37 30 AD",
        PIV,
    ),
    (
        "3B F9 96 00 00 81 31 FE 45 53 50 49 56 4B 45 59 37 30 28",
        PIV,
    ),
    // YubiKey 5 NFC over USB (CCID), over NFC, and through an ACR122U.
    (
        "3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40",
        YUBIKEY,
    ),
    (
        "3B 8D 80 01 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 F9",
        YUBIKEY,
    ),
    (
        "3B 8D 80 01 80 73 C0 21 C0 57 59 75 62 69 4B 65 FF 7F",
        YUBIKEY,
    ),
    // YubiKey 4 (OTP+CCID).
    (
        "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4",
        YUBIKEY,
    ),
    // YubiKey NEO: PKI, CCID (T=1 with and without IFSC), over NFC, OTP+U2F+CCID.
    (
        "3B FC 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 4E 45 4F 72 33 E1",
        YUBIKEY,
    ),
    (
        "3B FC 13 00 00 81 31 FE 45 59 75 62 69 6B 65 79 4E 45 4F 72 33 B1",
        YUBIKEY,
    ),
    (
        "3B FA 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 4E 45 4F A6",
        YUBIKEY,
    ),
    (
        "3B 8C 80 01 59 75 62 69 6B 65 79 4E 45 4F 72 33 58",
        YUBIKEY,
    ),
    (
        "3B F9 18 00 FF 81 31 FE 45 50 56 5F 4A 33 41 30 34 30 40",
        YUBIKEY,
    ),
];

/// The card type the ATR names, where a row of the table has it (`"NHS CIS"`, `"YubiKey"` …).
pub fn from_atr(atr: &[u8]) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(pattern, _)| matches(pattern, atr))
        .map(|(_, name)| *name)
}

/// The card type of a card with `atr` that answered SELECT of the PIV application (`piv`) or
/// not: the table's name where the ATR has a row, else `PIV` for a PIV card and `Unknown` for
/// any other.
pub fn card_type(atr: &[u8], piv: bool) -> &'static str {
    match from_atr(atr) {
        Some(name) => name,
        None if piv => PIV,
        None => UNKNOWN,
    }
}

/// Whether `atr` matches `pattern` (hex bytes separated by spaces, `.` for any nibble). A
/// pattern that is not well-formed matches nothing.
pub fn matches(pattern: &str, atr: &[u8]) -> bool {
    let mut bytes = atr.iter();
    for token in pattern.split_ascii_whitespace() {
        let Some(&byte) = bytes.next() else {
            return false;
        };
        let &[high, low] = token.as_bytes() else {
            return false;
        };
        if !(nibble_matches(high, byte >> 4) && nibble_matches(low, byte & 0x0F)) {
            return false;
        }
    }
    bytes.next().is_none()
}

fn nibble_matches(pattern: u8, nibble: u8) -> bool {
    pattern == b'.' || (pattern as char).to_digit(16) == Some(u32::from(nibble))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(hex: &str) -> Vec<u8> {
        hex.split_ascii_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const NHS: &str = "3B F9 18 00 00 81 31 FE 45 4A 43 4F 50 34 31 56 32 32 AF";

    #[test]
    fn unknown_atrs_are_piv_when_the_card_is() {
        assert_eq!(card_type(&[], false), UNKNOWN);
        assert_eq!(card_type(&[0x3B], false), UNKNOWN);
        // A German health card (eGK): a real ATR that is none of ours.
        let egk = bytes("3B D3 96 FF 81 B1 FE 45 1F 07 80 81 05 2D");
        assert_eq!(card_type(&egk, false), UNKNOWN);
        // The same ATR on a card that answers SELECT of the PIV application.
        assert_eq!(card_type(&egk, true), PIV);
        assert_eq!(from_atr(&egk), None);
        // One byte more or less than a known ATR is another card.
        let mut longer = bytes(NHS);
        longer.push(0x00);
        assert_eq!(from_atr(&longer), None);
        assert_eq!(from_atr(&bytes(NHS)[..18]), None);
        assert_eq!(card_type(&bytes(NHS), false), NHS_CIS);
        // One bit off.
        let mut flipped = bytes(NHS);
        flipped[12] ^= 0x01;
        assert_eq!(from_atr(&flipped), None);
    }

    #[test]
    fn wildcards_match_any_nibble_or_byte() {
        assert!(matches("3B .. 41", &[0x3B, 0x00, 0x41]));
        assert!(matches("3B .. 41", &[0x3B, 0xFF, 0x41]));
        assert!(!matches("3B .. 41", &[0x3B, 0xFF, 0x42]));
        assert!(matches("3B 0. F.", &[0x3B, 0x07, 0xFA]));
        assert!(!matches("3B 0. F.", &[0x3B, 0x17, 0xFA]));
        assert!(matches("3B .7", &[0x3B, 0x87]));
        assert!(!matches("3B .7", &[0x3B, 0x86]));
        assert!(matches("3b fe", &[0x3B, 0xFE]));
        assert!(!matches("3B ..", &[0x3B]));
        assert!(!matches("3B", &[0x3B, 0x00]));
        // Not well-formed: matches nothing.
        assert!(!matches("3B 0", &[0x3B, 0x00]));
        assert!(!matches("3B 0G", &[0x3B, 0x00]));

        // Rows of the table with wildcards: an IDPrime MD 3810 (T=0) and an IDPrime .NET.
        assert_eq!(
            from_atr(&bytes(
                "3B 7F 96 00 00 80 31 80 65 B0 84 23 27 E5 12 0F FE 82 90 00"
            )),
            Some(GEMALTO)
        );
        assert_eq!(
            from_atr(&bytes(
                "3B 7F 95 00 00 80 31 80 65 B0 85 03 00 EF 12 0F FE 82 90 00"
            )),
            Some(GEMALTO)
        );
        assert_eq!(
            from_atr(&bytes("3B 16 96 41 73 74 72 69 64")),
            Some(GEMALTO)
        );
    }

    #[test]
    fn several_yubikey_firmwares_are_yubikeys() {
        for atr in [
            "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4",
            "3B FC 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 4E 45 4F 72 33 E1",
            "3B 8D 80 01 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 F9",
        ] {
            assert_eq!(from_atr(&bytes(atr)), Some(YUBIKEY), "{atr}");
        }
    }

    #[test]
    fn every_row_is_well_formed() {
        for (pattern, name) in TABLE {
            let tokens: Vec<&str> = pattern.split_ascii_whitespace().collect();
            assert!(tokens.len() >= 2, "{pattern}");
            assert!(
                tokens
                    .iter()
                    .all(|t| t.len() == 2 && t.chars().all(|c| c == '.' || c.is_ascii_hexdigit())),
                "{pattern}"
            );
            assert!(pattern.starts_with("3B") || pattern.starts_with("3F"));
            assert!([NHS_CIS, GEMALTO, OBERTHUR, PIV, YUBIKEY].contains(name));
            // A row without wildcards names the ATR it spells.
            if !pattern.contains('.') {
                assert_eq!(from_atr(&bytes(pattern)), Some(*name), "{pattern}");
            }
        }
    }
}
