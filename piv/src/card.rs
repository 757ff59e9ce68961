//! The card handle, its transactions and the APDU exchange (chaining and GET RESPONSE).

use crate::apdu::{Command, Response, StatusWord};
use crate::consts::{ins, AID};
use crate::error::Error;
use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The largest response this client assembles from GET RESPONSE parts; a card that keeps
/// answering `61xx` beyond it is broken.
const MAX_RESPONSE: usize = 64 * 1024;

/// Room for the reader names `SCardStatus` returns with the ATR (a multi-string: the card's
/// reader and its aliases).
const READER_NAMES_BYTES: usize = 1024;

/// How long a failed exchange waits for pcscd to tell whether the card was removed.
const REMOVAL_GRACE: Duration = Duration::from_millis(1500);

/// The largest data field of one short command APDU; longer data is sent chained.
const CHAIN_PART: usize = 255;

/// A connection to the card in one reader.
///
/// Dropping it disconnects with "leave card", so the card keeps its state (a verified PIN stays
/// verified for the next connection); [`PivCard::reset`] is the explicit way to reset the card.
pub struct PivCard {
    card: Option<pcsc::Card>,
    reader: CString,
    atr: Vec<u8>,
}

impl std::fmt::Debug for PivCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivCard")
            .field("reader", &self.reader)
            .field("atr", &hex::encode_upper(&self.atr))
            .finish()
    }
}

impl PivCard {
    /// Connects (shared) to the card in `reader`, with T=0 or T=1.
    pub fn connect(context: &pcsc::Context, reader: &CStr) -> Result<Self, Error> {
        let card = context.connect(reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)?;
        // Owned by `Self` at once, so that an early return below leaves the card unreset.
        let mut this = Self {
            card: Some(card),
            reader: reader.to_owned(),
            atr: Vec::new(),
        };
        if let Some(card) = &this.card {
            this.atr = card_status(card)?.1;
        }
        Ok(this)
    }

    /// The card's answer to reset, as read at connection.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// The name of the reader the card is in.
    pub fn reader(&self) -> &CStr {
        &self.reader
    }

    /// Starts an exclusive transaction and selects the PIV application in it.
    ///
    /// Every command is a method of the returned [`Transaction`]; the transaction ends (leaving
    /// the card as it is) when it is dropped.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let card = self.card.as_mut().ok_or(Error::CardRemoved)?;
        let tx = card.transaction()?;
        let tx = Transaction { tx };
        tx.select()?;
        Ok(tx)
    }

    /// Disconnects, leaving the card powered and its security state as it is.
    pub fn disconnect(mut self) -> Result<(), Error> {
        self.end(pcsc::Disposition::LeaveCard)
    }

    /// Disconnects and resets the card, which clears the PIN and management-key state of every
    /// application on it.
    pub fn reset(mut self) -> Result<(), Error> {
        self.end(pcsc::Disposition::ResetCard)
    }

    fn end(&mut self, disposition: pcsc::Disposition) -> Result<(), Error> {
        match self.card.take() {
            None => Ok(()),
            Some(card) => card.disconnect(disposition).map_err(|(card, e)| {
                // Dropping a `pcsc::Card` resets the card: keep that from happening behind the
                // caller's back. The handle is failing anyway; leaking it costs a few bytes.
                std::mem::forget(card);
                Error::from(e)
            }),
        }
    }
}

impl Drop for PivCard {
    fn drop(&mut self) {
        let _ = self.end(pcsc::Disposition::LeaveCard);
    }
}

/// An exclusive transaction with a card whose PIV application is selected.
///
/// All the commands of the client are methods of this type (see the `pin`, `objects`, `keys`
/// and `mutual_auth` modules), so none can run outside a transaction.
pub struct Transaction<'a> {
    tx: pcsc::Transaction<'a>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transaction")
    }
}

impl Transaction<'_> {
    /// SELECTs the PIV application (done at the start of every transaction).
    pub fn select(&self) -> Result<(), Error> {
        let cmd = Command::new(ins::SELECT, 0x04, 0x00, AID.to_vec());
        let resp = self.transmit(&cmd)?;
        if resp.sw.is_ok() {
            Ok(())
        } else {
            Err(Error::NotPiv)
        }
    }

    /// Sends one command (chained if its data exceeds 255 bytes) and collects the whole
    /// response (following `61xx` with GET RESPONSE). The status word is returned, not judged.
    pub fn transmit(&self, cmd: &Command) -> Result<Response, Error> {
        let result = exchange(cmd, |apdu| self.send_raw(apdu));
        match result {
            Err(Error::Pcsc(e)) => Err(self.explain(e)),
            // A card pulled in the middle of a command can also leave an empty reply behind.
            Err(Error::Malformed(what)) => Err(self.removal().unwrap_or(Error::Malformed(what))),
            other => other,
        }
    }

    /// Sends `cmd` and fails unless the card answers 9000; `key_ref` names the key the command
    /// concerns, so the status word maps to the right error (wrong PIN or wrong PUK …).
    pub(crate) fn transmit_ok(
        &self,
        cmd: &Command,
        key_ref: Option<u8>,
    ) -> Result<Response, Error> {
        let resp = self.transmit(cmd)?;
        if resp.sw.is_ok() {
            Ok(resp)
        } else {
            Err(crate::error::from_status(resp.sw, key_ref))
        }
    }

    fn send_raw(&self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut buf = Zeroizing::new(vec![0u8; pcsc::MAX_BUFFER_SIZE]);
        let n = self.tx.transmit(apdu, &mut buf)?.len();
        buf.truncate(n);
        Ok(buf)
    }

    /// Turns a generic transmit failure into "card removed" (or "service unavailable") when the
    /// card has in fact left (or pcscd has gone). A pcscd going away mid-command answers
    /// "access denied" or "invalid handle" as often as "communications error".
    fn explain(&self, e: pcsc::Error) -> Error {
        use pcsc::Error as P;
        if !matches!(
            e,
            P::NotTransacted
                | P::CommError
                | P::UnresponsiveCard
                | P::UnpoweredCard
                | P::UnknownError
                | P::SecurityViolation
                | P::NoAccess
                | P::InvalidHandle
        ) {
            return Error::from(e);
        }
        self.removal().unwrap_or(Error::Pcsc(e))
    }

    /// Whether the card has left (or the reader or pcscd has gone), as the typed error to
    /// report; `None` if the card is still there.
    ///
    /// A card pulled in the middle of a command first shows as a transport error or a broken
    /// reply; pcscd notices the removal at its next presence poll (about every 400 ms), so wait
    /// a bounded time for that before calling it anything else.
    fn removal(&self) -> Option<Error> {
        let deadline = Instant::now() + REMOVAL_GRACE;
        loop {
            match card_status(&self.tx) {
                Err(status_err) => {
                    return match Error::from(status_err) {
                        Error::Pcsc(_) => None,
                        typed => Some(typed),
                    }
                }
                Ok((status, _)) if !status.contains(pcsc::Status::PRESENT) => {
                    return Some(Error::CardRemoved)
                }
                Ok(_) if Instant::now() >= deadline => return None,
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The card's state and ATR from one `SCardStatus` call with room to spare. Asking for the sizes
/// first (`status2_owned`) is a second round trip, and under Wine its answer is sometimes short
/// of what the second call returns.
fn card_status(card: &pcsc::Card) -> Result<(pcsc::Status, Vec<u8>), pcsc::Error> {
    let mut names = [0u8; READER_NAMES_BYTES];
    let mut atr = [0u8; pcsc::MAX_ATR_SIZE];
    let status = card.status2(&mut names, &mut atr)?;
    Ok((status.status(), status.atr().to_vec()))
}

/// Sends `cmd` through `send` (one raw APDU in, one raw response out): splits its data into
/// chained parts of 255 bytes, then follows `61xx` with GET RESPONSE until the card is done.
pub(crate) fn exchange(
    cmd: &Command,
    mut send: impl FnMut(&[u8]) -> Result<Zeroizing<Vec<u8>>, Error>,
) -> Result<Response, Error> {
    let parts = chain(cmd);
    let last = parts.len() - 1;
    let mut resp = Response::status(StatusWord::OK);
    for (i, part) in parts.iter().enumerate() {
        resp = send_one(part, &mut send)?;
        if i < last && !resp.sw.is_ok() {
            return Ok(resp);
        }
    }
    if resp.sw.sw1() == 0x6C {
        // Wrong Le: the card says how many bytes it has; ask again for exactly that many.
        let mut again = parts[last].clone();
        again.le = Some(usize::from(resp.sw.sw2()));
        resp = send_one(&again, &mut send)?;
    }
    let mut data = Zeroizing::new(std::mem::take(&mut resp.data));
    let mut sw = resp.sw;
    while sw.sw1() == 0x61 {
        let mut more = Command::new(ins::GET_RESPONSE, 0, 0, Vec::new());
        more.le = Some(usize::from(sw.sw2()));
        let mut part = send_one(&more, &mut send)?;
        data.extend_from_slice(&part.data);
        part.data.clear();
        sw = part.sw;
        if data.len() > MAX_RESPONSE {
            return Err(Error::Malformed(format!(
                "the response goes on past {MAX_RESPONSE} bytes"
            )));
        }
    }
    Ok(Response::new(std::mem::take(&mut *data), sw))
}

fn send_one(
    cmd: &Command,
    send: &mut impl FnMut(&[u8]) -> Result<Zeroizing<Vec<u8>>, Error>,
) -> Result<Response, Error> {
    let apdu = Zeroizing::new(cmd.to_bytes());
    let raw = send(&apdu)?;
    let resp = Response::parse(&raw).ok_or_else(|| {
        Error::Malformed(format!("a reply of {} bytes has no status word", raw.len()))
    })?;
    // Instruction, lengths and status only: payloads may be PINs, keys or witnesses.
    tracing::trace!(
        ins = cmd.ins,
        lc = cmd.data.len(),
        resp_len = resp.data.len(),
        sw = %resp.sw,
        "apdu"
    );
    Ok(resp)
}

/// Splits `cmd` into the parts command chaining sends: every part but the last has the chaining
/// bit in CLA and no Le.
pub(crate) fn chain(cmd: &Command) -> Vec<Command> {
    if cmd.data.len() <= CHAIN_PART {
        return vec![cmd.clone()];
    }
    let chunks: Vec<&[u8]> = cmd.data.chunks(CHAIN_PART).collect();
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Command {
            cla: if i < last { cmd.cla | 0x10 } else { cmd.cla },
            ins: cmd.ins,
            p1: cmd.p1,
            p2: cmd.p2,
            data: chunk.to_vec(),
            le: if i < last { None } else { cmd.le },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_data_is_chained_in_255_byte_parts() {
        let cmd = Command::new(0xDB, 0x3F, 0xFF, vec![7u8; 600]);
        let parts = chain(&cmd);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts.iter().map(|p| p.data.len()).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(
            parts.iter().map(|p| p.cla).collect::<Vec<_>>(),
            [0x10, 0x10, 0x00]
        );
        assert_eq!(
            parts.iter().map(|p| p.le).collect::<Vec<_>>(),
            [None, None, Some(0)]
        );
        // Every part is a short APDU.
        assert!(parts.iter().all(|p| p.to_bytes().len() <= 5 + 255 + 1));
        assert_eq!(
            chain(&Command::new(0xCB, 0x3F, 0xFF, vec![1; 255])).len(),
            1
        );
    }

    #[test]
    fn exchange_follows_get_response_and_stops_at_chaining_errors() {
        // A card that answers the chained parts with 9000, then 300 bytes in two pieces.
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let resp = exchange(&Command::new(0x87, 7, 0x9A, vec![0; 300]), |apdu| {
            sent.push(apdu.to_vec());
            let reply = match sent.len() {
                1 => vec![0x90, 0x00],
                2 => [vec![1u8; 256], vec![0x61, 44]].concat(),
                3 => [vec![2u8; 44], vec![0x90, 0x00]].concat(),
                _ => panic!("too many APDUs"),
            };
            Ok(Zeroizing::new(reply))
        })
        .unwrap();
        assert_eq!(resp.sw, StatusWord::OK);
        assert_eq!(resp.data.len(), 300);
        assert_eq!(&resp.data[256..], &[2u8; 44]);
        assert_eq!(sent[0][0], 0x10);
        assert_eq!(sent[1][0], 0x00);
        assert_eq!(sent[2], [0x00, 0xC0, 0x00, 0x00, 44]);

        // The card refuses the first part: the rest is not sent.
        let mut count = 0;
        let resp = exchange(&Command::new(0xDB, 0x3F, 0xFF, vec![0; 600]), |_| {
            count += 1;
            Ok(Zeroizing::new(vec![0x6A, 0x84]))
        })
        .unwrap();
        assert_eq!((resp.sw, count), (StatusWord::NOT_ENOUGH_MEMORY, 1));
    }

    #[test]
    fn exchange_repeats_a_command_with_the_le_the_card_asks_for() {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let resp = exchange(
            &Command::new(0xCB, 0x3F, 0xFF, vec![0x5C, 0x01, 0x7E]),
            |apdu| {
                sent.push(apdu.to_vec());
                Ok(Zeroizing::new(if sent.len() == 1 {
                    vec![0x6C, 0x05]
                } else {
                    vec![1, 2, 3, 4, 5, 0x90, 0x00]
                }))
            },
        )
        .unwrap();
        assert_eq!(
            (resp.data.as_slice(), resp.sw),
            (&[1, 2, 3, 4, 5][..], StatusWord::OK)
        );
        assert_eq!(sent[1].last(), Some(&0x05));
    }

    /// Records every field of every event, as a log would show it.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0 += &format!("{}={:?};", field.name(), value);
        }
    }

    impl tracing::Subscriber for Recorder {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn trace_shows_no_payload() {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = Recorder(events.clone());
        tracing::subscriber::with_default(recorder, || {
            let verify = Command::new(0x20, 0, 0x80, b"918273\xff\xff".to_vec()).without_le();
            exchange(&verify, |_| {
                Ok(Zeroizing::new(b"\x55\x66\x77\x90\x00".to_vec()))
            })
            .unwrap();
        });
        let events = events.lock().unwrap();
        assert_eq!(
            events.as_slice(),
            ["message=apdu;ins=32;lc=8;resp_len=3;sw=9000;"]
        );
    }

    #[test]
    fn exchange_rejects_malformed_and_endless_replies() {
        let short = exchange(&Command::new(0xCB, 0x3F, 0xFF, vec![]), |_| {
            Ok(Zeroizing::new(vec![0x90]))
        });
        assert!(matches!(short, Err(Error::Malformed(_))));
        let endless = exchange(&Command::new(0xCB, 0x3F, 0xFF, vec![]), |_| {
            Ok(Zeroizing::new([vec![0u8; 256], vec![0x61, 0x00]].concat()))
        });
        assert!(matches!(endless, Err(Error::Malformed(_))));
    }
}
