//! The vpcd wire protocol and the loop that serves a card over it.
//!
//! The card is a TCP client of the vpcd reader driver. Every message either way is a 2-byte
//! big-endian length and a payload. A 1-byte payload from vpcd is a control message (power
//! off, power on, reset, get ATR); anything longer is a command APDU, answered with the
//! response APDU. Connecting inserts the card; closing removes it.

use crate::applet::Applet;
use crate::error::CardError;
use crate::faults::Faults;
use crate::state::CardFile;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Control message: power off.
pub const POWER_OFF: u8 = 0x00;
/// Control message: power on.
pub const POWER_ON: u8 = 0x01;
/// Control message: reset.
pub const RESET: u8 = 0x02;
/// Control message: send the ATR.
pub const GET_ATR: u8 = 0x04;

/// How long `insert` keeps trying while vpcd is not listening yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(3);

/// Reads one frame; `None` when the peer closed the connection between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut len[1..])?;
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "vpcd frame over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)?;
    w.flush()
}

/// What the serving thread shares with its [`InsertedCard`].
struct Shared {
    /// APDUs answered, counted before each reply is sent.
    answered: AtomicU32,
    /// APDUs answered, counted once each reply has been sent.
    replied: AtomicU32,
    /// [`InsertedCard::pull_after`]'s count; `u32::MAX` when not armed.
    pull_at: AtomicU32,
    /// [`InsertedCard::hold_after`]'s count; `u32::MAX` when not armed.
    hold_at: AtomicU32,
    /// Whether the serving thread is holding (reads nothing until released).
    held: AtomicBool,
    connected: AtomicBool,
    removing: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            answered: AtomicU32::new(0),
            replied: AtomicU32::new(0),
            pull_at: AtomicU32::new(u32::MAX),
            hold_at: AtomicU32::new(u32::MAX),
            held: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            removing: AtomicBool::new(false),
        }
    }
}

impl Shared {
    /// Whether a pull armed at run time is due: the card has answered as many APDUs as asked.
    fn pull_due(&self) -> bool {
        let at = self.pull_at.load(Ordering::SeqCst);
        at != u32::MAX && self.replied.load(Ordering::SeqCst) >= at
    }

    /// Whether a hold armed at run time is due: the card has answered as many APDUs as asked.
    fn hold_due(&self) -> bool {
        let at = self.hold_at.load(Ordering::SeqCst);
        at != u32::MAX && self.replied.load(Ordering::SeqCst) >= at
    }

    /// Holds while a hold is due, unless the card is being removed or pulled meanwhile.
    fn hold(&self) {
        if !self.hold_due() {
            return;
        }
        self.held.store(true, Ordering::SeqCst);
        while self.hold_due() && !self.removing.load(Ordering::SeqCst) && !self.pull_due() {
            std::thread::sleep(HOLD_POLL);
        }
        self.held.store(false, Ordering::SeqCst);
    }
}

/// How often a holding card looks whether it is released.
const HOLD_POLL: Duration = Duration::from_millis(1);

/// A card in a vpcd reader, served on its own thread. Dropping it removes the card.
pub struct InsertedCard {
    stream: TcpStream,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), CardError>>>,
}

impl std::fmt::Debug for InsertedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertedCard")
            .field("apdus_answered", &self.apdus_answered())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Inserts the card stored at `card` into the vpcd reader listening at `vpcd`, with `faults`.
///
/// Returns once connected; the card is then served on its own thread until it is removed,
/// vpcd closes the connection, or a fault pulls it.
pub fn insert(card: &Path, vpcd: SocketAddr, faults: Faults) -> Result<InsertedCard, CardError> {
    let file = CardFile::open(card)?;
    let stream = connect(vpcd)?;
    let _ = stream.set_nodelay(true);
    let control = stream.try_clone().map_err(CardError::Connection)?;
    let shared = Arc::new(Shared::default());
    shared.connected.store(true, Ordering::SeqCst);
    let thread_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(format!("cardsim {}", file.serial()))
        .spawn(move || {
            let result = serve(stream, file, &faults, &thread_shared);
            thread_shared.connected.store(false, Ordering::SeqCst);
            // A card being removed, or pulled at run time while it read the next APDU, sees
            // its connection cut under it: that is no error.
            match result {
                _ if thread_shared.removing.load(Ordering::SeqCst) => Ok(()),
                Err(CardError::Connection(_)) if thread_shared.pull_due() => Ok(()),
                result => result,
            }
        })
        .map_err(CardError::Connection)?;
    Ok(InsertedCard {
        stream: control,
        shared,
        thread: Some(thread),
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream, CardError> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        match TcpStream::connect_timeout(&addr, CONNECT_PATIENCE) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => return Err(CardError::Connect { addr, source }),
        }
    }
}

impl InsertedCard {
    /// Removes the card: closes the connection and waits for the serving thread. Reports an
    /// error the card hit while serving (a card file it could not write, say).
    pub fn remove(mut self) -> Result<(), CardError> {
        self.stop()
    }

    /// How many APDUs the card has answered so far.
    pub fn apdus_answered(&self) -> u32 {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// Pulls the card once it has answered `answered` APDUs in total since insertion (the
    /// count [`InsertedCard::apdus_answered`] returns), as [`Faults::pull_after_apdus`] does:
    /// the APDU that reaches the count is applied, persisted and answered, then the connection
    /// to the reader closes. A count already reached pulls the card now, before it answers
    /// another APDU. Arming again replaces the count; `u32::MAX` disarms.
    pub fn pull_after(&self, answered: u32) {
        self.shared.pull_at.store(answered, Ordering::SeqCst);
        // The serving thread checks the count between APDUs but waits for the next one in a
        // blocking read: when the count is already reached, cut the connection from here.
        if self.shared.pull_due() {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// Makes the card stop answering once it has answered `answered` APDUs in total since
    /// insertion: the APDU that reaches the count is applied, persisted and answered, then the
    /// card reads nothing more from the reader — the next command (and pcscd's presence poll)
    /// waits, as on a card gone mute — until [`InsertedCard::release`], a pull or removal. A
    /// count already reached holds the next message the card receives, unanswered. A test uses
    /// it to act (stop pcscd, say) at an exact point of a card conversation:
    /// [`InsertedCard::is_held`] says when that point is reached.
    pub fn hold_after(&self, answered: u32) {
        self.shared.hold_at.store(answered, Ordering::SeqCst);
    }

    /// Disarms [`InsertedCard::hold_after`]: a holding card reads the reader's next message.
    pub fn release(&self) {
        self.shared.hold_at.store(u32::MAX, Ordering::SeqCst);
    }

    /// Whether the card is holding, armed by [`InsertedCard::hold_after`].
    pub fn is_held(&self) -> bool {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Whether the card is still connected to the reader.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Waits until the card leaves the reader on its own (vpcd closed, or a fault pulled it)
    /// and returns how serving ended.
    pub fn wait(mut self) -> Result<(), CardError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| CardError::ServerPanicked)?,
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<(), CardError> {
        self.shared.removing.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| CardError::ServerPanicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for InsertedCard {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Acknowledges the next segment at once. vpcd writes a frame's length and its body in two
/// writes; with Nagle on its side and delayed ACKs on ours every APDU would wait ~40 ms for
/// the body. The kernel clears the flag as it goes, so it is set before each read.
fn quick_ack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Serves the card in `file` over `stream` until the connection ends or a fault pulls it.
fn serve(
    mut stream: TcpStream,
    mut file: CardFile,
    faults: &Faults,
    shared: &Shared,
) -> Result<(), CardError> {
    let atr = file.profile().atr();
    let mut applet = Applet::new(file.state().clone());
    loop {
        shared.hold();
        if faults.should_pull(shared.answered.load(Ordering::SeqCst)) || shared.pull_due() {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        quick_ack(&stream);
        // Frames may carry a PIN or a key, replies a shared secret: wiped once handled.
        let Some(frame) = read_frame(&mut stream).map_err(CardError::Connection)? else {
            return Ok(());
        };
        // Armed while this thread waited for the frame: the card holds, or is gone, before it
        // answers.
        shared.hold();
        if shared.pull_due() || shared.removing.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        let frame = Zeroizing::new(frame);
        match frame[..] {
            [] => {}
            [POWER_ON | GET_ATR] if faults.refuse_power_on => {
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            [POWER_OFF | POWER_ON | RESET] => applet.reset(),
            [GET_ATR] => write_frame(&mut stream, atr).map_err(CardError::Connection)?,
            // Unknown control messages are ignored, as vpcd may grow new ones.
            [_] => {}
            _ => {
                let mut reply = Zeroizing::new(match faults.forced_reply(&frame) {
                    Some(reply) => reply,
                    None => applet.process(&frame),
                });
                if applet.take_changed() {
                    file.replace_state(applet.state().clone())?;
                }
                if let Some(delay) = faults.reply_delay {
                    std::thread::sleep(delay);
                }
                faults.corrupt(&mut reply);
                // Counted before it is sent, so whoever reads the reply also sees the count.
                shared.answered.fetch_add(1, Ordering::SeqCst);
                write_frame(&mut stream, &reply).map_err(CardError::Connection)?;
                shared.replied.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}
