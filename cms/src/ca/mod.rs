//! The service's certificate authority: a P-256 key and self-signed certificate created on
//! `init` (key file 0600), certificates for card keys, and the TLS certificate of the service.
//! Its files are in [`files`]; certificates already checked against it are remembered in
//! [`verified`].

mod files;
mod verified;

pub use files::{create_private_dir, pem_blocks, write_private, CaFiles};
pub use verified::VerifiedCertificates;

use crate::dates;
use der::asn1::{GeneralizedTime, Ia5String, OctetString, SetOfVec, UtcTime, Utf8StringRef};
use der::{Decode, DecodePem, Encode, EncodePem};
use files::read;
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;
use spki::ObjectIdentifier;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// `id-kp-serverAuth`.
const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `id-kp-clientAuth`.
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// `id-at-commonName`: the holder's name in a card certificate.
pub const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// `id-at-organizationName`.
const ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// `UID` (RFC 4519 `uid`): the holder's user id in a card certificate, for machines.
pub const USER_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");
/// The organisation named in every certificate the CA issues.
const ORGANISATION_NAME: &str = "Identity Agent CMS";
/// The longest common name X.509 allows (`ub-common-name`), in characters.
const COMMON_NAME_MAX: usize = 64;
/// How long the CA and the TLS certificates are valid, in days.
const CA_DAYS: i64 = 20 * 365;
const TLS_DAYS: i64 = 5 * 365;

/// What can go wrong with the CA.
#[derive(Debug, Error)]
pub enum CaError {
    /// A CA or TLS file cannot be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The CA files are missing: the service was not initialised.
    #[error("no CA in {0}: run `cms init` first")]
    NotInitialised(PathBuf),
    /// A key or certificate file does not parse.
    #[error("{path} is not a usable {what}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// Building or encoding a certificate failed.
    #[error("building a certificate failed: {0}")]
    Build(String),
    /// The certificate was not issued by this CA.
    #[error("the certificate was not issued by this CA")]
    NotIssuedHere,
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Unparsable(String),
}

fn build_err(e: impl std::fmt::Display) -> CaError {
    CaError::Build(e.to_string())
}

/// Signs the certificate `builder` holds and writes it to `certificate_path`, and its
/// subject's `key` to `key_path` (readable by the service alone).
fn sign_to_files(
    builder: CertificateBuilder<'_, SigningKey>,
    key: &SigningKey,
    key_path: &Path,
    certificate_path: &Path,
) -> Result<(), CaError> {
    let cert = builder.build::<DerSignature>().map_err(build_err)?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(build_err)?;
    write_private(key_path, pem.as_bytes())?;
    // The certificate is no secret, but everything in the data directory is the service's
    // alone: clients get the CA certificate from whoever runs the service.
    write_private(
        certificate_path,
        cert.to_pem(LineEnding::LF).map_err(build_err)?.as_bytes(),
    )
}

/// Whom a card certificate is for, as its subject names them.
#[derive(Debug, Clone, Copy)]
pub struct CertificateHolder<'a> {
    /// The holder's user id (UUID), in the subject's `UID` attribute.
    pub user_id: &'a str,
    /// The holder's name, the subject's common name (cut to the 64 characters X.509 allows).
    pub name: &'a str,
}

impl CertificateHolder<'_> {
    /// The subject `CN=<name>,UID=<user id>,O=Identity Agent CMS`, built attribute by
    /// attribute so that no character of the name can add or change an attribute.
    fn subject(&self) -> Result<Name, CaError> {
        let cut: String = self.name.trim().chars().take(COMMON_NAME_MAX).collect();
        let name = cut.trim_end();
        if name.is_empty() {
            return Err(CaError::Build(
                "a card certificate needs the holder's name".into(),
            ));
        }
        Ok(RdnSequence(vec![
            rdn(ORGANIZATION, ORGANISATION_NAME)?,
            rdn(USER_ID, self.user_id)?,
            rdn(COMMON_NAME, name)?,
        ]))
    }
}

/// A relative distinguished name of one attribute, its value a UTF8String.
fn rdn(oid: ObjectIdentifier, value: &str) -> Result<RelativeDistinguishedName, CaError> {
    let value =
        der::Any::encode_from(&Utf8StringRef::new(value).map_err(build_err)?).map_err(build_err)?;
    let attribute = AttributeTypeAndValue { oid, value };
    Ok(RelativeDistinguishedName(
        SetOfVec::try_from(vec![attribute]).map_err(build_err)?,
    ))
}

/// A certificate issued for a card key.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The serial number, upper-case hex.
    pub serial: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// The CA: its key, its certificate and its name.
pub struct CertificateAuthority {
    key: SigningKey,
    certificate: Certificate,
    certificate_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field(
                "subject",
                &self.certificate.tbs_certificate.subject.to_string(),
            )
            .finish_non_exhaustive()
    }
}

/// A validity period; UTCTime up to 2049, GeneralizedTime after (RFC 5280).
fn validity(not_before: i64, not_after: i64) -> Result<Validity, CaError> {
    let time = |secs: i64| -> Result<Time, CaError> {
        let t = dates::system_time(secs);
        if dates::civil(secs).0 < 2050 {
            UtcTime::from_system_time(t).map(Time::UtcTime)
        } else {
            GeneralizedTime::from_system_time(t).map(Time::GeneralTime)
        }
        .map_err(build_err)
    };
    Ok(Validity {
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

/// A random positive serial number of 16 bytes.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7F) | 0x10;
    SerialNumber::new(&bytes).map_err(build_err)
}

impl CertificateAuthority {
    /// Creates the CA and the TLS certificate (for `localhost`, 127.0.0.1, ::1 and
    /// `hostnames`) where they do not exist yet, then loads them. Existing files are kept.
    pub fn init(files: &CaFiles, name: &str, hostnames: &[String]) -> Result<Self, CaError> {
        if !files.ca_key.exists() {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let subject =
                Name::from_str(&format!("CN={name},O=Identity Agent CMS")).map_err(build_err)?;
            let spki =
                SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(build_err)?;
            let now = dates::now();
            let builder = CertificateBuilder::new(
                Profile::Root,
                random_serial()?,
                validity(now - dates::DAY, now + CA_DAYS * dates::DAY)?,
                subject,
                spki,
                &key,
            )
            .map_err(build_err)?;
            sign_to_files(builder, &key, &files.ca_key, &files.ca_certificate)?;
        }
        let ca = Self::load(files)?;
        if !files.tls_key.exists() {
            ca.create_tls_certificate(files, hostnames)?;
        }
        Ok(ca)
    }

    /// Loads the CA from its files.
    pub fn load(files: &CaFiles) -> Result<Self, CaError> {
        if !files.ca_key.exists() {
            let dir = files.ca_key.parent().unwrap_or(Path::new(".")).to_owned();
            return Err(CaError::NotInitialised(dir));
        }
        let key =
            SigningKey::from_pkcs8_pem(&read(&files.ca_key)?).map_err(|_| CaError::BadFile {
                path: files.ca_key.clone(),
                what: "P-256 PKCS#8 key",
            })?;
        let certificate_pem = read(&files.ca_certificate)?.to_string();
        let certificate =
            Certificate::from_pem(certificate_pem.as_bytes()).map_err(|_| CaError::BadFile {
                path: files.ca_certificate.clone(),
                what: "PEM certificate",
            })?;
        if certificate.tbs_certificate.subject_public_key_info
            != SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(build_err)?
        {
            return Err(CaError::BadFile {
                path: files.ca_certificate.clone(),
                what: "certificate for the CA key",
            });
        }
        Ok(Self {
            key,
            certificate,
            certificate_pem,
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>, CaError> {
        self.certificate.to_der().map_err(build_err)
    }

    fn leaf_profile(&self) -> Profile {
        Profile::Leaf {
            issuer: self.certificate.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        }
    }

    fn create_tls_certificate(&self, files: &CaFiles, hostnames: &[String]) -> Result<(), CaError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(build_err)?;
        let now = dates::now();
        let mut builder = CertificateBuilder::new(
            self.leaf_profile(),
            random_serial()?,
            validity(now - dates::DAY, now + TLS_DAYS * dates::DAY)?,
            Name::from_str("CN=localhost,O=Identity Agent CMS").map_err(build_err)?,
            spki,
            &self.key,
        )
        .map_err(build_err)?;
        let mut names = vec![GeneralName::DnsName(
            Ia5String::new("localhost").map_err(build_err)?,
        )];
        for host in hostnames {
            names.push(match host.parse::<IpAddr>() {
                Ok(ip) => ip_name(ip)?,
                Err(_) => GeneralName::DnsName(Ia5String::new(host).map_err(build_err)?),
            });
        }
        for ip in [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ] {
            names.push(ip_name(ip)?);
        }
        builder
            .add_extension(&SubjectAltName(names))
            .map_err(build_err)?;
        builder
            .add_extension(&ExtendedKeyUsage(vec![SERVER_AUTH]))
            .map_err(build_err)?;
        sign_to_files(builder, &key, &files.tls_key, &files.tls_certificate)
    }

    /// Issues a certificate for a card key `spki_der` (RSA-2048 or P-256): subject
    /// `CN=<holder's name>,UID=<holder's user id>,O=Identity Agent CMS`, serial number from
    /// `serial_taken` never reused, valid between the two instants (Unix seconds).
    pub fn issue_card_certificate(
        &self,
        holder: CertificateHolder<'_>,
        spki_der: &[u8],
        not_before: i64,
        not_after: i64,
        serial_taken: impl Fn(&str) -> bool,
    ) -> Result<IssuedCertificate, CaError> {
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(build_err)?;
        let subject = holder.subject()?;
        let serial = loop {
            let candidate = random_serial()?;
            if !serial_taken(&hex::encode_upper(candidate.as_bytes())) {
                break candidate;
            }
        };
        let serial_hex = hex::encode_upper(serial.as_bytes());
        let mut builder = CertificateBuilder::new(
            self.leaf_profile(),
            serial,
            validity(not_before, not_after)?,
            subject,
            spki,
            &self.key,
        )
        .map_err(build_err)?;
        builder
            .add_extension(&ExtendedKeyUsage(vec![CLIENT_AUTH]))
            .map_err(build_err)?;
        let der = builder
            .build::<DerSignature>()
            .map_err(build_err)?
            .to_der()
            .map_err(build_err)?;
        Ok(IssuedCertificate {
            serial: serial_hex,
            der,
        })
    }

    /// Parses `der` and checks that this CA issued it (issuer name and signature). Validity
    /// dates are the caller's to judge.
    pub fn verify_issued(&self, der: &[u8]) -> Result<piv::Certificate, CaError> {
        let cert =
            piv::Certificate::from_der(der).map_err(|e| CaError::Unparsable(e.to_string()))?;
        let x509 = cert.x509();
        if x509.tbs_certificate.issuer != self.certificate.tbs_certificate.subject {
            return Err(CaError::NotIssuedHere);
        }
        let tbs = x509
            .tbs_certificate
            .to_der()
            .map_err(|e| CaError::Unparsable(e.to_string()))?;
        let signature = x509
            .signature
            .as_bytes()
            .and_then(|s| p256::ecdsa::Signature::from_der(s).ok())
            .ok_or(CaError::NotIssuedHere)?;
        let verifier: &VerifyingKey = self.key.verifying_key();
        p256::ecdsa::signature::Verifier::verify(verifier, &tbs, &signature)
            .map_err(|_| CaError::NotIssuedHere)?;
        Ok(cert)
    }

    /// The instant (Unix seconds) a certificate's validity ends.
    pub fn not_after(cert: &piv::Certificate) -> i64 {
        dates::unix(cert.not_after())
    }

    /// The instant (Unix seconds) a certificate's validity starts.
    pub fn not_before(cert: &piv::Certificate) -> i64 {
        dates::unix(cert.not_before())
    }
}

fn ip_name(ip: IpAddr) -> Result<GeneralName, CaError> {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    Ok(GeneralName::IpAddress(
        OctetString::new(bytes).map_err(build_err)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A new CA in a temporary directory, and the public key (SPKI DER) of a card key.
    fn ca_and_card_key() -> (tempfile::TempDir, CertificateAuthority, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(&CaFiles::in_dir(dir.path()), "CA", &[]).unwrap();
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
            .unwrap()
            .to_der()
            .unwrap();
        (dir, ca, spki)
    }

    const JANE: CertificateHolder<'static> = CertificateHolder {
        user_id: "4e81ac01-7ea1-4665-94f5-5c035a583b79",
        name: "Jane Doe",
    };

    /// The value of the subject's only attribute `oid`, as text.
    fn attribute(cert: &piv::Certificate, oid: ObjectIdentifier) -> String {
        let values: Vec<_> = cert
            .x509()
            .tbs_certificate
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == oid)
            .collect();
        assert_eq!(values.len(), 1, "{}", cert.subject());
        Utf8StringRef::try_from(&values[0].value)
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn card_certificates_name_the_holder_for_people_and_their_id_for_machines() {
        let (_dir, ca, spki) = ca_and_card_key();
        let issue = |name: &str| {
            let holder = CertificateHolder {
                user_id: JANE.user_id,
                name,
            };
            let issued = ca.issue_card_certificate(holder, &spki, 0, dates::DAY, |_| false);
            ca.verify_issued(&issued.unwrap().der).unwrap()
        };

        // A name with the characters of a distinguished name stays one common name.
        let tricky = issue("Doe, Jane+UID=0000,O=Evil");
        assert_eq!(attribute(&tricky, COMMON_NAME), "Doe, Jane+UID=0000,O=Evil");
        assert_eq!(attribute(&tricky, USER_ID), JANE.user_id);
        assert_eq!(attribute(&tricky, ORGANIZATION), "Identity Agent CMS");

        // Names beyond X.509's 64 characters are cut there, on a character boundary.
        let long = "Zoë".repeat(30);
        let cut = attribute(&issue(&long), COMMON_NAME);
        assert_eq!(cut.chars().count(), COMMON_NAME_MAX);
        assert!(long.starts_with(&cut));

        let empty = CertificateHolder {
            user_id: JANE.user_id,
            name: "  ",
        };
        assert!(matches!(
            ca.issue_card_certificate(empty, &spki, 0, dates::DAY, |_| false),
            Err(CaError::Build(_))
        ));
    }

    #[test]
    fn init_creates_files_once_with_a_private_key_file_and_issues_checkable_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_dir(dir.path());
        let ca =
            CertificateAuthority::init(&files, "Test CMS CA", &["cms.example".into()]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&files.ca_key, &files.tls_key] {
                let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        let again = CertificateAuthority::init(&files, "Other", &[]).unwrap();
        assert_eq!(again.certificate_pem(), ca.certificate_pem());

        let card_key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*card_key.verifying_key())
            .unwrap()
            .to_der()
            .unwrap();
        let now = dates::now();
        let issued = ca
            .issue_card_certificate(JANE, &spki, now, now + 730 * dates::DAY, |_| false)
            .unwrap();
        let cert = ca.verify_issued(&issued.der).unwrap();
        assert_eq!(cert.serial_hex(), issued.serial);
        assert_eq!(
            cert.subject(),
            format!("CN=Jane Doe,UID={},O=Identity Agent CMS", JANE.user_id)
        );
        assert_eq!(
            CertificateAuthority::not_after(&cert),
            now + 730 * dates::DAY
        );

        // A certificate from another CA, even one with the same name, is refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other =
            CertificateAuthority::init(&CaFiles::in_dir(other_dir.path()), "Test CMS CA", &[])
                .unwrap();
        let foreign = other
            .issue_card_certificate(JANE, &spki, now, now + dates::DAY, |_| false)
            .unwrap();
        assert!(matches!(
            ca.verify_issued(&foreign.der),
            Err(CaError::NotIssuedHere)
        ));
        let tls = fs::read_to_string(&files.tls_certificate).unwrap();
        assert_eq!(pem_blocks(&tls, "CERTIFICATE").len(), 1);
    }

    #[test]
    fn serials_that_are_taken_are_not_reused() {
        let (_dir, ca, spki) = ca_and_card_key();
        let tries = std::cell::Cell::new(0);
        let issued = ca
            .issue_card_certificate(JANE, &spki, 0, dates::DAY, |_| {
                tries.set(tries.get() + 1);
                tries.get() < 3
            })
            .unwrap();
        assert_eq!(tries.get(), 3);
        assert_eq!(issued.serial.len(), 32);
    }
}
