//! The errors of the virtual card library.

use crate::slot_key::KeyError;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Anything that can go wrong creating, opening, personalising or inserting a virtual card.
#[derive(Debug, Error)]
pub enum CardError {
    /// The card file could not be read.
    #[error("cannot read card file {path}")]
    Read {
        /// The card file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The card file could not be written.
    #[error("cannot write card file {path}")]
    Write {
        /// The card file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The card file is not a card this version understands.
    #[error("card file {path} is not a valid card")]
    Corrupt {
        /// The card file.
        path: PathBuf,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// `create` refuses to overwrite an existing card.
    #[error("card file {0} already exists")]
    Exists(PathBuf),
    /// A PIN or PUK of the wrong form.
    #[error("{what} must be 4 to 8 characters, none of them 0xFF")]
    BadSecret {
        /// "PIN" or "PUK".
        what: &'static str,
    },
    /// A slot that cannot hold an asymmetric key.
    #[error("slot {0:02X} cannot hold a key (9A, 9C, 9D, 9E or 82..95)")]
    BadSlot(u8),
    /// A certificate that is not DER.
    #[error("certificate for slot {0:02X} is not a DER X.509 certificate")]
    BadCertificate(u8),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The management key stored in the card file is not usable.
    #[error("stored management key is unusable: {0}")]
    ManagementKey(#[from] piv::management_key::ManagementKeyError),
    /// vpcd did not accept the connection.
    #[error("cannot connect to vpcd at {addr}")]
    Connect {
        /// Where vpcd was expected.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The connection to vpcd failed while serving.
    #[error("vpcd connection failed")]
    Connection(#[source] std::io::Error),
    /// The thread serving the card panicked.
    #[error("the card's serving thread panicked")]
    ServerPanicked,
}
