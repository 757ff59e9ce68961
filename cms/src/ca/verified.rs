//! Certificates already checked against the CA, remembered so that a card that signs in again
//! costs one signature check, not two.

use super::{CaError, CertificateAuthority};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// The most certificates remembered as checked.
const MAX_VERIFIED: usize = 65_536;

/// Certificates already checked against the CA, by the SHA-256 of their DER, so a card that
/// signs in again costs one signature check, not two. Whether a certificate is still the
/// card's is asked of the registry every time.
#[derive(Debug, Default)]
pub struct VerifiedCertificates {
    known: Mutex<HashMap<[u8; 32], piv::Certificate>>,
}

impl VerifiedCertificates {
    /// The parsed certificate if this CA issued `der` (checked once, then remembered).
    pub fn check(
        &self,
        ca: &CertificateAuthority,
        der: &[u8],
    ) -> Result<piv::Certificate, CaError> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(cert) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(cert.clone());
        }
        let cert = ca.verify_issued(der)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_VERIFIED {
            known.clear();
        }
        known.insert(digest, cert.clone());
        Ok(cert)
    }
}
