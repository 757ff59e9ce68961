//! The chain check: the certificate issued by the Card Management Service's authority
//! (`cms.ca_file`).

use super::{check, Findings, NEEDS_RA, OK, SEE_RA, WARNING};
use crate::doctor::facts::certificate_of;
use crate::doctor::DoctorContext;
use agent_ipc::DoctorCheck;
use der::{DecodePem, Encode};
use piv::Certificate;

impl Findings<'_> {
    /// Whether the certificate was issued by the configured service's authority.
    pub(super) fn chain(&self, ctx: &DoctorContext) -> DoctorCheck {
        let Some(certificate) = certificate_of(&self.now.certificate) else {
            return check(
                "certificate_chain",
                WARNING,
                "Not checked: the card holds no readable certificate.",
            );
        };
        let Some(ca_file) = &ctx.ca_file else {
            return check(
                "certificate_chain",
                WARNING,
                "Not checked: no Card Management Service authority is configured (cms.ca_file).",
            );
        };
        let ca = match std::fs::read_to_string(ca_file)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())
            }) {
            Ok(ca) => ca,
            Err(e) => {
                return check(
                    "certificate_chain",
                    WARNING,
                    format!(
                        "Not checked: the Card Management Service authority's certificate {} \
                         cannot be read: {e}",
                        ca_file.display()
                    ),
                )
            }
        };
        if issued_by(certificate, &ca) {
            check(
                "certificate_chain",
                OK,
                "The certificate was issued by the Card Management Service.",
            )
        } else {
            check(
                "certificate_chain",
                NEEDS_RA,
                format!(
                    "The certificate was not issued by the Card Management Service, so the card \
                     cannot sign in {SEE_RA}."
                ),
            )
        }
    }
}

/// Whether `certificate` names `ca` as its issuer and carries a signature by the CA's key.
fn issued_by(certificate: &Certificate, ca: &x509_cert::Certificate) -> bool {
    let x509 = certificate.x509();
    if x509.tbs_certificate.issuer != ca.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = x509.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = x509.signature.as_bytes() else {
        return false;
    };
    let Ok(spki) = ca.tbs_certificate.subject_public_key_info.to_der() else {
        return false;
    };
    piv::PublicKey::from_spki_der(&spki).is_ok_and(|key| key.verify(&tbs, signature).is_ok())
}
