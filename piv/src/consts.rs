//! Numbers of the PIV card profile (SP 800-73-4 and the Yubico extensions issuing tools use).

/// The PIV application identifier.
pub const AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
/// The short AID prefix a client may SELECT with (the PIX without the version).
pub const AID_PREFIX: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

/// Instruction bytes.
pub mod ins {
    /// SELECT.
    pub const SELECT: u8 = 0xA4;
    /// GET DATA.
    pub const GET_DATA: u8 = 0xCB;
    /// PUT DATA.
    pub const PUT_DATA: u8 = 0xDB;
    /// VERIFY.
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA.
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    /// RESET RETRY COUNTER.
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    /// GENERAL AUTHENTICATE.
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    /// GENERATE ASYMMETRIC KEY PAIR.
    pub const GENERATE_ASYMMETRIC_KEY_PAIR: u8 = 0x47;
    /// GET RESPONSE.
    pub const GET_RESPONSE: u8 = 0xC0;
    /// SET MANAGEMENT KEY (Yubico extension).
    pub const SET_MANAGEMENT_KEY: u8 = 0xFF;
    /// GET VERSION (Yubico extension).
    pub const GET_VERSION: u8 = 0xFD;
    /// GET SERIAL (Yubico extension).
    pub const GET_SERIAL: u8 = 0xF8;
    /// GET METADATA (Yubico extension, firmware 5.3 and later).
    pub const GET_METADATA: u8 = 0xF7;
}

/// Tags of the data objects on the card (the value of the `5C` tag list in GET/PUT DATA).
pub mod object {
    /// Card Capability Container.
    pub const CCC: u32 = 0x5FC107;
    /// Card Holder Unique Identifier; carries the card serial in its GUID.
    pub const CHUID: u32 = 0x5FC102;
    /// Discovery object (a one-byte tag).
    pub const DISCOVERY: u32 = 0x7E;
    /// Key history object.
    pub const KEY_HISTORY: u32 = 0x5FC10C;
    /// Printed information.
    pub const PRINTED_INFORMATION: u32 = 0x5FC109;
    /// Security object.
    pub const SECURITY_OBJECT: u32 = 0x5FC106;
    /// Certificate for PIV authentication (slot 9A).
    pub const CERT_9A: u32 = 0x5FC105;
    /// Certificate for digital signature (slot 9C).
    pub const CERT_9C: u32 = 0x5FC10A;
    /// Certificate for key management (slot 9D).
    pub const CERT_9D: u32 = 0x5FC10B;
    /// Certificate for card authentication (slot 9E).
    pub const CERT_9E: u32 = 0x5FC101;
    /// First retired key-management certificate (slot 82); slots 82..=95 follow in order.
    pub const CERT_RETIRED_FIRST: u32 = 0x5FC10D;
}

/// Key references (P2 of VERIFY, GENERAL AUTHENTICATE, GENERATE …).
pub mod key {
    /// The PIV application PIN.
    pub const PIN: u8 = 0x80;
    /// The PIN unblocking key.
    pub const PUK: u8 = 0x81;
    /// The card management key.
    pub const MANAGEMENT: u8 = 0x9B;
    /// PIV authentication.
    pub const AUTHENTICATION: u8 = 0x9A;
    /// Digital signature.
    pub const SIGNATURE: u8 = 0x9C;
    /// Key management.
    pub const KEY_MANAGEMENT: u8 = 0x9D;
    /// Card authentication.
    pub const CARD_AUTHENTICATION: u8 = 0x9E;
    /// First retired key-management slot.
    pub const RETIRED_FIRST: u8 = 0x82;
    /// Last retired key-management slot.
    pub const RETIRED_LAST: u8 = 0x95;
}

/// Algorithm identifiers (P1 of GENERAL AUTHENTICATE, tag 80 of GENERATE).
pub mod alg {
    /// Triple DES (three-key, ECB).
    pub const TDES: u8 = 0x03;
    /// RSA 1024.
    pub const RSA_1024: u8 = 0x06;
    /// RSA 2048.
    pub const RSA_2048: u8 = 0x07;
    /// AES-128.
    pub const AES_128: u8 = 0x08;
    /// AES-192.
    pub const AES_192: u8 = 0x0A;
    /// AES-256.
    pub const AES_256: u8 = 0x0C;
    /// ECC P-256.
    pub const ECC_P256: u8 = 0x11;
    /// ECC P-384.
    pub const ECC_P384: u8 = 0x14;
}

/// The certificate object that holds the certificate for `slot`, if the slot has one.
pub fn cert_object_for_slot(slot: u8) -> Option<u32> {
    match slot {
        key::AUTHENTICATION => Some(object::CERT_9A),
        key::SIGNATURE => Some(object::CERT_9C),
        key::KEY_MANAGEMENT => Some(object::CERT_9D),
        key::CARD_AUTHENTICATION => Some(object::CERT_9E),
        key::RETIRED_FIRST..=key::RETIRED_LAST => {
            Some(object::CERT_RETIRED_FIRST + u32::from(slot - key::RETIRED_FIRST))
        }
        _ => None,
    }
}

/// Whether `slot` holds an asymmetric key (9A, 9C, 9D, 9E or a retired slot).
pub fn is_asymmetric_slot(slot: u8) -> bool {
    cert_object_for_slot(slot).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_slots_map_to_consecutive_objects() {
        assert_eq!(cert_object_for_slot(0x82), Some(0x5FC10D));
        assert_eq!(cert_object_for_slot(0x95), Some(0x5FC120));
        assert_eq!(cert_object_for_slot(0x9B), None);
        assert_eq!(cert_object_for_slot(0x9E), Some(0x5FC101));
    }
}
