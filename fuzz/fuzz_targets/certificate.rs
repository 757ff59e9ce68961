//! piv's certificate reader: the content of a certificate object (`70` DER, `71` info, `FE`)
//! as `Transaction::read_certificate` reads it, and the DER parser with every field the agent
//! and the CMS look at. A certificate that parses writes back to an object that reads to the
//! same certificate, and its DER re-encodes to a certificate that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use piv::certificate::{from_object_content, object_content};
use piv::Certificate;

fn look_at(cert: &Certificate) {
    let _ = (
        cert.subject(),
        cert.issuer(),
        cert.serial_hex(),
        cert.serial(),
    );
    let _ = (cert.not_before(), cert.not_after(), format!("{cert:?}"));
    let _ = cert.spki_der();
    if let Ok(key) = cert.public_key() {
        let _ = format!("{key:?}");
    }
    let _ = cert.verify(
        b"message",
        &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = from_object_content(data) {
        look_at(&cert);
        let again =
            from_object_content(&object_content(cert.der())).expect("written back, it reads");
        assert_eq!(again, cert);
    }
    if let Ok(cert) = Certificate::from_der(data) {
        look_at(&cert);
        assert_eq!(cert.der(), data);
        use der::Encode;
        let der = cert.x509().to_der().expect("a parsed certificate encodes");
        Certificate::from_der(&der).expect("a re-encoded certificate parses");
    }
});
