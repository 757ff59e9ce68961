//! The one thread that owns the PC/SC wait: readers, insertions, removals, swaps and pcscd
//! restarts, sent as [`CardEvent`]s over a channel.

use super::CardIdentity;

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    /// pcscd answers: every reader and its card. Sent at start and each time pcscd comes back.
    Available(Vec<ReaderSnapshot>),
    /// pcscd stopped answering; the watcher reconnects with backoff.
    Unavailable(String),
    /// A reader appeared.
    ReaderAdded(String),
    /// A reader went away (with any card in it).
    ReaderRemoved(String),
    /// A card was inserted into an empty reader.
    Inserted(CardIdentity),
    /// The card left the reader.
    Removed {
        /// The reader.
        reader: String,
    },
    /// The reader's event counter moved while a card stayed present (swapped or reset between
    /// two polls); this is the card in it now, re-identified.
    Changed(CardIdentity),
}

/// A reader and its card at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSnapshot {
    /// The reader.
    pub reader: String,
    /// The card in it.
    pub card: Option<CardIdentity>,
}

/// The running watcher thread.
#[derive(Debug)]
pub struct CardWatcher {}

impl CardWatcher {
    /// Starts the thread; it sends what it sees to `events` until [`CardWatcher::stop`].
    pub fn start(
        events: tokio::sync::mpsc::UnboundedSender<CardEvent>,
    ) -> std::io::Result<CardWatcher> {
        let _ = events;
        unimplemented!("card helper")
    }

    /// Stops the thread (cancels its PC/SC wait) and waits for it.
    pub fn stop(self) {
        unimplemented!("card helper")
    }
}
