//! The CA's files under the service's data directory: where they are, written once for the
//! service's user alone (directories 0700, files 0600 whatever the umask), read back, and PEM
//! blocks decoded.

use super::CaError;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where the CA and TLS files live under the service's data directory.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The CA key, PKCS#8 PEM, mode 0600.
    pub ca_key: PathBuf,
    /// The CA certificate, PEM: what clients trust.
    pub ca_certificate: PathBuf,
    /// The TLS key, PKCS#8 PEM, mode 0600.
    pub tls_key: PathBuf,
    /// The TLS certificate, PEM, issued by the CA.
    pub tls_certificate: PathBuf,
}

impl CaFiles {
    /// The files under `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            ca_key: data_dir.join("ca").join("ca-key.pem"),
            ca_certificate: data_dir.join("ca").join("ca-cert.pem"),
            tls_key: data_dir.join("tls").join("server-key.pem"),
            tls_certificate: data_dir.join("tls").join("server-cert.pem"),
        }
    }
}

/// Creates `dir` and any missing parent for the service's user alone (0700 whatever the umask).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to a new file readable by its owner only (0600 whatever the umask).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    let file_err = |source| CaError::File {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(file_err)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(file_err)?;
    file.write_all(contents).map_err(file_err)?;
    file.sync_all().map_err(file_err)
}

pub(super) fn read(path: &Path) -> Result<Zeroizing<String>, CaError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| CaError::File {
            path: path.to_owned(),
            source,
        })
}

/// Reads a PEM file's DER blocks of one label (`CERTIFICATE`, `PRIVATE KEY`).
pub fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body) {
            out.push(der);
        }
        rest = &after[stop + end.len()..];
    }
    out
}
