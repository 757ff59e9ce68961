//! The tray item on Windows: a notification icon (`Shell_NotifyIconW`, through tray-icon) must
//! be made, changed and clicked on the thread whose Win32 message loop serves its window, and
//! the app's loop is async. So the [`TrayFront`] lives on a thread of its own that pumps
//! messages; the app's [`Front`] sends it what to show over a channel and wakes it with a
//! message to a message-only window (a thread message would be lost while the menu's modal loop
//! runs). Notifications are that icon's balloon, which Windows 10 and later show as a toast.
//!
//! The menu opens at the pointer on a left or right click, from a subclass of the icon's window:
//! tray-icon opens it only where the shell says where the icon is (`Shell_NotifyIconGetRect`),
//! which fails for an icon it cannot place (Wine never can), and then nothing opens at all.

use super::TrayFront;
use crate::model::TrayView;
use crate::notices::Urgency;
use anyhow::{anyhow, Context as _, Result};
use std::cell::RefCell;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread::JoinHandle;
use tray_icon::menu::ContextMenu as _;
use widestring::{u16cstr, U16CStr};
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Shell::{
    DefSubclassProc, SetWindowSubclass, Shell_NotifyIconW, NIF_INFO, NIIF_ERROR, NIIF_INFO,
    NIIF_NOSOUND, NIIF_RESPECT_QUIET_TIME, NIM_MODIFY, NOTIFYICONDATAW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GetCursorPos, GetMessageW,
    PostMessageW, PostQuitMessage, RegisterClassW, SetForegroundWindow, TrackPopupMenu,
    TranslateMessage, HMENU, HWND_MESSAGE, MSG, TPM_BOTTOMALIGN, TPM_RIGHTBUTTON, WM_APP,
    WM_CONTEXTMENU, WM_LBUTTONUP, WM_NULL, WM_RBUTTONUP, WNDCLASSW,
};

/// The message that tells the item's thread to read its channel.
const WM_FRONT_COMMAND: u32 = WM_APP + 1;

/// The message the notification area sends the icon's window about clicks: tray-icon's
/// `WM_USER_TRAYICON` (private to it; check it when tray-icon is upgraded — the Wine test of the
/// menu fails if it changes).
const ICON_CALLBACK: u32 = 6002;

/// The class of the message-only window that receives [`WM_FRONT_COMMAND`].
const CLASS: &U16CStr = u16cstr!("IdentityAgentTrayCommands");

/// A notification shown as the icon's balloon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balloon {
    /// Its title (63 characters at most are shown).
    pub title: String,
    /// Its text (255 characters at most are shown).
    pub body: String,
    /// Low is silent, critical shows the error icon.
    pub urgency: Urgency,
}

enum Command {
    Show(Box<TrayView>),
    Balloon(Option<Balloon>),
    Quit,
}

/// What the item's thread keeps between messages.
struct Ui {
    front: TrayFront,
    commands: Receiver<Command>,
    /// The icon's id on its window, found the first time a balloon is shown.
    icon_id: Option<u32>,
}

thread_local! {
    static UI: RefCell<Option<Ui>> = const { RefCell::new(None) };
}

/// A way to the item's thread: the channel and the window that wakes it.
#[derive(Clone)]
struct Mailbox {
    commands: Sender<Command>,
    /// The message-only window, as a number: a window handle is not `Send`, its value is.
    window: usize,
}

impl Mailbox {
    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow!("the tray icon's thread has ended"))?;
        // SAFETY: posting to a window handle has no memory-safety preconditions; a stale one
        // only fails.
        if unsafe { PostMessageW(self.window as HWND, WM_FRONT_COMMAND, 0, 0) } == 0 {
            return Err(std::io::Error::last_os_error()).context("waking the tray icon's thread");
        }
        Ok(())
    }
}

/// The app's handle to the tray item on Windows; dropping it takes the icon away.
pub struct Front {
    mailbox: Mailbox,
    thread: Option<JoinHandle<()>>,
}

/// Shows and hides the icon's balloon (the notifier's way to the item's thread).
#[derive(Clone)]
pub struct Balloons(Mailbox);

impl Balloons {
    /// Shows `balloon` in place of the one shown, or hides it (`None`).
    pub fn show(&self, balloon: Option<Balloon>) -> Result<()> {
        self.0.send(Command::Balloon(balloon))
    }
}

impl Front {
    /// Starts the item's thread and puts the icon in the notification area, showing `view`.
    pub fn new(view: &TrayView) -> Result<Self> {
        let (commands, receiver) = channel();
        let (ready_tx, ready) = sync_channel(1);
        let view = view.clone();
        let thread = std::thread::Builder::new()
            .name("tray-icon".into())
            .spawn(move || match start(&view, receiver) {
                Ok(window) => {
                    let _ = ready_tx.send(Ok(window as usize));
                    pump(window);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .context("starting the tray icon's thread")?;
        let window = ready
            .recv()
            .map_err(|_| anyhow!("the tray icon's thread ended while starting"))??;
        Ok(Self {
            mailbox: Mailbox { commands, window },
            thread: Some(thread),
        })
    }

    /// Brings the item up to date with `view` (on its thread, which logs what fails there).
    pub fn show(&mut self, view: &TrayView) -> Result<()> {
        self.mailbox.send(Command::Show(Box::new(view.clone())))
    }

    /// The way to show balloons on this item.
    pub fn balloons(&self) -> Balloons {
        Balloons(self.mailbox.clone())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if self.mailbox.send(Command::Quit).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// On the item's thread: its message-only window, then the item itself.
fn start(view: &TrayView, commands: Receiver<Command>) -> Result<HWND> {
    // SAFETY: the class's name is a static NUL-terminated string and its procedure lives as
    // long as the program; registering it twice (a second Front) fails harmlessly.
    let window = unsafe {
        let instance = GetModuleHandleW(std::ptr::null());
        let class = WNDCLASSW {
            lpfnWndProc: Some(command_window),
            hInstance: instance,
            lpszClassName: CLASS.as_ptr(),
            ..std::mem::zeroed()
        };
        RegisterClassW(&class);
        CreateWindowExW(
            0,
            CLASS.as_ptr(),
            std::ptr::null(),
            0,
            0,
            0,
            0,
            0,
            HWND_MESSAGE,
            std::ptr::null_mut(),
            instance,
            std::ptr::null(),
        )
    };
    if window.is_null() {
        return Err(std::io::Error::last_os_error()).context("creating the tray's message window");
    }
    let front = match TrayFront::new(view).and_then(open_menu_at_pointer) {
        Ok(front) => front,
        Err(e) => {
            // SAFETY: the window was created on this thread just above.
            unsafe { DestroyWindow(window) };
            return Err(e);
        }
    };
    UI.with(|ui| {
        *ui.borrow_mut() = Some(Ui {
            front,
            commands,
            icon_id: None,
        })
    });
    Ok(window)
}

/// Makes a click on the icon open the menu at the pointer, in place of tray-icon's own.
fn open_menu_at_pointer(front: TrayFront) -> Result<TrayFront> {
    front.tray.set_show_menu_on_left_click(false);
    front.tray.set_show_menu_on_right_click(false);
    let menu = front.menu.hpopupmenu() as usize;
    // SAFETY: the window is tray-icon's, alive as long as `front`, on this thread; the
    // subclass procedure lives as long as the program.
    if unsafe { SetWindowSubclass(front.tray.window_handle(), Some(icon_window), 1, menu) } == 0 {
        return Err(std::io::Error::last_os_error()).context("subclassing the tray icon's window");
    }
    Ok(front)
}

unsafe extern "system" fn icon_window(
    window: HWND,
    message: u32,
    wparam: WPARAM,
    lparam: LPARAM,
    _id: usize,
    menu: usize,
) -> LRESULT {
    if message == ICON_CALLBACK
        && matches!(lparam as u32, WM_LBUTTONUP | WM_RBUTTONUP | WM_CONTEXTMENU)
    {
        let mut pointer = POINT { x: 0, y: 0 };
        // SAFETY: the menu is the tray's, alive with its window; the choice comes back to the
        // window as WM_COMMAND, which muda's own subclass turns into a menu event. Foreground
        // first and a benign message after, so the menu closes on a click elsewhere.
        unsafe {
            if GetCursorPos(&mut pointer) != 0 {
                SetForegroundWindow(window);
                TrackPopupMenu(
                    menu as HMENU,
                    TPM_BOTTOMALIGN | TPM_RIGHTBUTTON,
                    pointer.x,
                    pointer.y,
                    0,
                    window,
                    std::ptr::null(),
                );
                PostMessageW(window, WM_NULL, 0, 0);
            }
        }
    }
    // SAFETY: the arguments are the ones this window was given.
    unsafe { DefSubclassProc(window, message, wparam, lparam) }
}

/// The thread's message loop, until [`Command::Quit`]; then the icon and the window go.
fn pump(window: HWND) {
    // SAFETY: MSG is plain data that GetMessageW fills; the loop is this thread's own.
    unsafe {
        let mut message: MSG = std::mem::zeroed();
        while GetMessageW(&mut message, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&message);
            DispatchMessageW(&message);
        }
    }
    UI.with(|ui| ui.borrow_mut().take());
    // SAFETY: the window is this thread's.
    unsafe { DestroyWindow(window) };
}

unsafe extern "system" fn command_window(
    window: HWND,
    message: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    if message != WM_FRONT_COMMAND {
        // SAFETY: the arguments are the ones this window was given.
        return unsafe { DefWindowProcW(window, message, wparam, lparam) };
    }
    // A command that arrives while one is being carried out (a modal loop inside it) waits in
    // the channel: the outer call reads until the channel is empty.
    UI.with(|ui| {
        if let Ok(mut ui) = ui.try_borrow_mut() {
            if let Some(ui) = ui.as_mut() {
                ui.run_commands();
            }
        }
    });
    0
}

impl Ui {
    fn run_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Show(view) => {
                    if let Err(e) = self.front.show(&view) {
                        tracing::warn!("updating the tray icon: {e:#}");
                    }
                }
                Command::Balloon(balloon) => {
                    if let Err(e) = self.balloon(balloon.as_ref()) {
                        tracing::warn!("showing the tray icon's balloon: {e:#}");
                    }
                }
                // SAFETY: ends this thread's message loop; no preconditions.
                Command::Quit => unsafe { PostQuitMessage(0) },
            }
        }
    }

    /// Shows `balloon` on the icon, or hides the one shown.
    fn balloon(&mut self, balloon: Option<&Balloon>) -> Result<()> {
        let mut data = self.icon_data()?;
        data.uFlags = NIF_INFO;
        if let Some(balloon) = balloon {
            fill(&mut data.szInfoTitle, &balloon.title);
            fill(&mut data.szInfo, &balloon.body);
            data.dwInfoFlags = NIIF_RESPECT_QUIET_TIME
                | match balloon.urgency {
                    Urgency::Low => NIIF_INFO | NIIF_NOSOUND,
                    Urgency::Normal => NIIF_INFO,
                    Urgency::Critical => NIIF_ERROR,
                };
        }
        // SAFETY: `data` is a complete NOTIFYICONDATAW with its size set.
        if unsafe { Shell_NotifyIconW(NIM_MODIFY, &data) } == 0 {
            self.icon_id = None;
            return Err(anyhow!("the notification area refused the balloon"));
        }
        tracing::debug!(icon = data.uID, shown = balloon.is_some(), "balloon");
        Ok(())
    }

    /// The icon's identity for `Shell_NotifyIconW`: its window and its id there. tray-icon does
    /// not say the id (a counter of its own), so it is the one among the first few that the
    /// notification area knows on that window (each tray-icon window holds one icon).
    fn icon_data(&mut self) -> Result<NOTIFYICONDATAW> {
        let mut data = NOTIFYICONDATAW {
            cbSize: std::mem::size_of::<NOTIFYICONDATAW>() as u32,
            hWnd: self.front.tray.window_handle(),
            ..Default::default()
        };
        let known = |data: &mut NOTIFYICONDATAW, id| {
            data.uID = id;
            // SAFETY: as above; no flags, so nothing changes, and unknown ids are refused.
            unsafe { Shell_NotifyIconW(NIM_MODIFY, data) != 0 }
        };
        let id = match self.icon_id {
            Some(id) => id,
            None => (1..=64)
                .find(|id| known(&mut data, *id))
                .ok_or_else(|| anyhow!("the notification area does not know the tray icon"))?,
        };
        self.icon_id = Some(id);
        data.uID = id;
        Ok(data)
    }
}

/// Copies `text` into a fixed UTF-16 field, ending with "…" where it is cut and always
/// NUL-terminated.
fn fill(field: &mut [u16], text: &str) {
    let units: Vec<u16> = text.encode_utf16().collect();
    let room = field.len() - 1;
    let kept = if units.len() <= room {
        units.len()
    } else {
        let mut kept = room - 1;
        // Never half a surrogate pair.
        if (0xD800..0xDC00).contains(&units[kept - 1]) {
            kept -= 1;
        }
        field[kept] = '…' as u16;
        field[kept + 1] = 0;
        kept
    };
    field[..kept].copy_from_slice(&units[..kept]);
    if kept == units.len() {
        field[kept] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    fn read(field: &[u16]) -> String {
        let end = field.iter().position(|u| *u == 0).expect("terminated");
        String::from_utf16(&field[..end]).expect("whole characters")
    }

    #[test]
    fn text_that_fits_is_kept_and_longer_text_is_cut_with_an_ellipsis() {
        let mut field = [0xffffu16; 8];
        fill(&mut field, "Signed");
        assert_eq!(read(&field), "Signed");
        fill(&mut field, "Signed out of the session");
        assert_eq!(read(&field), "Signed…");
        // A character outside the BMP is two units; it is never split.
        fill(&mut field, "Card 🔑🔑🔑");
        assert_eq!(read(&field), "Card …");
    }
}
