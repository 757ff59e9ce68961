//! Asking the holder for a PIN through a `pinentry` program (the Assuan protocol). The
//! program gets only an allow-list of environment variables.

use crate::config::PinentryConfig;
use zeroize::Zeroizing;

/// What the prompt says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinPrompt {
    /// The window title.
    pub title: String,
    /// The description (names the holder or the card serial, and the tries left).
    pub description: String,
    /// The prompt beside the entry (`PIN:`).
    pub prompt: String,
    /// An error shown above it (after a wrong PIN, or a PIN breaking the policy).
    pub error: Option<String>,
    /// Ask twice and have pinentry check both match (for a new PIN); the text of the
    /// second prompt.
    pub repeat: Option<String>,
}

/// Why no PIN came back.
#[derive(Debug, thiserror::Error)]
pub enum PinentryError {
    /// The holder cancelled (or closed the window).
    #[error("the PIN prompt was cancelled")]
    Cancelled,
    /// No answer before the timeout.
    #[error("no PIN was entered in time")]
    TimedOut,
    /// The program could not be run or broke the protocol.
    #[error("the PIN prompt failed: {0}")]
    Failed(String),
}

/// Runs the pinentry program of `config` and returns the PIN entered.
pub async fn ask_pin(
    config: &PinentryConfig,
    prompt: &PinPrompt,
) -> Result<Zeroizing<String>, PinentryError> {
    let _ = (config, prompt);
    unimplemented!("hygiene helper")
}
