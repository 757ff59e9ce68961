//! The limits that keep the server serving when clients are slow, idle or hostile: how many
//! connections it holds, how many of them one client may hold, and a deadline on every phase of
//! a connection. `cms serve` sets each from a flag; [`ServerLimits::default`] holds the
//! defaults `cms/API.md` lists.

use crate::throttle::ClientKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many connections the server holds and how long each phase of one may take.
///
/// Every phase of a connection has a deadline, so a client that stops sending (or trickles a
/// byte at a time) gives its slot back within a bounded time:
///
/// - the TLS handshake: [`ServerLimits::handshake_timeout`];
/// - the wait for a request and its headers: [`ServerLimits::header_timeout`], counted from
///   when the connection is ready for a request — just after the handshake, or after the
///   previous answer on a kept-alive connection — until the request's headers have all
///   arrived. It is therefore also the idle keep-alive deadline: hyper starts its header timer
///   the moment a connection goes idle, so an idle connection and a slow header are one phase
///   with one clock, and a longer idle deadline would let a header trickle for as long;
/// - the request body: [`ServerLimits::body_timeout`], for the whole body, counted from the end
///   of the headers, however the bytes are spread out;
/// - the answer: [`ServerLimits::write_timeout`], for each write the client leaves blocked by
///   not reading (a client that pipelines requests and never reads the answers).
///
/// Only HTTP/1.1 is served (it is all the server advertises in ALPN), so there are no HTTP/2
/// streams or pings to bound: an HTTP/2 preface is refused and its connection closed at once.
///
/// The per-client cap is below the global one so that one address cannot take every slot; a
/// client is a [`ClientKey`], as the throttling counts it (an IPv4 address, or an IPv6 /64).
/// Clients behind one NAT share its address, hence a cap well above what one agent
/// uses (one or two connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The most connections served at once; more wait in the listen queue until one closes.
    pub max_connections: usize,
    /// The most connections one client (address) holds at once; more are closed as soon as
    /// they are accepted, before the TLS handshake.
    pub max_connections_per_client: usize,
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a connection may wait, from when it is ready for a request, until that
    /// request's headers have all arrived (the idle keep-alive deadline too).
    pub header_timeout: Duration,
    /// How long a request's whole body may take to arrive after its headers.
    pub body_timeout: Duration,
    /// How long a write to the client may stay blocked (the client not reading its answers).
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    /// 1,024 connections, 32 per client, 10 s for the handshake, 10 s for the idle wait and
    /// headers, 20 s for a body (bodies are at most 64 KiB: 20 s is slower than 4 KiB/s), 10 s
    /// for a blocked write.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_client: 32,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// How often, at most, the server warns that one client is over its connection cap.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// The live connections of each client, and when each client over its cap was last warned of.
#[derive(Debug, Default)]
struct Counts {
    live: HashMap<ClientKey, usize>,
    warned: HashMap<ClientKey, Instant>,
}

/// Counts the live connections of each client and refuses one over the per-client cap.
#[derive(Debug, Clone)]
pub(super) struct ClientSlots {
    per_client: usize,
    counts: Arc<Mutex<Counts>>,
}

/// A connection's place in its client's count, given back when dropped.
#[derive(Debug)]
pub(super) struct ClientSlot {
    client: ClientKey,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = counts.live.get_mut(&self.client) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                counts.live.remove(&self.client);
            }
        }
    }
}

impl ClientSlots {
    /// Slots for at most `per_client` connections of each client.
    pub(super) fn new(per_client: usize) -> Self {
        Self {
            per_client,
            counts: Arc::default(),
        }
    }

    /// A slot for a new connection from `peer`, or `None` when its client holds its cap.
    pub(super) fn take(&self, peer: IpAddr) -> Option<ClientSlot> {
        let client = ClientKey::of(peer);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let live = counts.live.entry(client).or_insert(0);
        if *live >= self.per_client {
            let now = Instant::now();
            let warn = counts
                .warned
                .get(&client)
                .filter(|at| now.duration_since(**at) < WARN_INTERVAL)
                .is_none();
            if warn {
                // Forget old warnings so the map stays as small as the set of noisy clients.
                counts
                    .warned
                    .retain(|_, at| now.duration_since(*at) < WARN_INTERVAL);
                counts.warned.insert(client, now);
                tracing::warn!(
                    %client,
                    cap = self.per_client,
                    "a client is over its connection cap: its new connections are closed \
                     (warned once a minute)"
                );
            } else {
                tracing::debug!(%client, "connection over the client's cap closed");
            }
            return None;
        }
        *live += 1;
        Some(ClientSlot {
            client,
            counts: self.counts.clone(),
        })
    }

    /// How many connections `peer`'s client holds now.
    #[cfg(test)]
    fn live(&self, peer: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.live.get(&ClientKey::of(peer)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back_when_they_close() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        assert!(slots.take(b).is_some(), "another client is not affected");
        drop(first);
        assert_eq!(slots.live(a), 1);
        assert!(slots.take(a).is_some());
    }
}
