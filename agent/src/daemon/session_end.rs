//! The session's end for an agent without a console (the detached one a logon starts): Windows
//! tells each top-level window (`WM_QUERYENDSESSION`, then `WM_ENDSESSION`), not the console
//! handlers, so the agent keeps one hidden window on a thread of its own. On `WM_ENDSESSION`
//! it asks the agent to stop and holds the window procedure until the agent has ended the
//! session and exited (Windows may end the process as soon as the procedure returns), for at
//! most [`GRACE`].

use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, RegisterClassW,
    TranslateMessage, MSG, WM_ENDSESSION, WM_QUERYENDSESSION, WNDCLASSW, WS_OVERLAPPED,
};

/// How long the window procedure holds Windows at the session's end while the agent stops
/// (Windows itself allows about 5 s before it offers to end a program that has not returned).
const GRACE: Duration = Duration::from_secs(4);

/// Where a session's end is told: the agent's stop requests.
static STOP: OnceLock<UnboundedSender<&'static str>> = OnceLock::new();

/// Starts the hidden window's thread; `stop` hears "session end" when the user logs off or
/// Windows shuts down. An error when the window cannot be made (no desktop: a service, say).
pub fn watch(stop: UnboundedSender<&'static str>) -> std::io::Result<()> {
    if STOP.set(stop).is_err() {
        return Ok(());
    }
    let (made_tx, made) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("session-end".into())
        .spawn(move || {
            let made = create_window().map(|_window| ());
            let pump = made.is_ok();
            let _ = made_tx.send(made);
            if pump {
                pump_messages();
            }
        })?;
    made.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the window's thread ended")))
}

/// Registers the class and makes the window (never shown).
fn create_window() -> std::io::Result<HWND> {
    let class: Vec<u16> = "IdentityAgentSessionEnd\0".encode_utf16().collect();
    // SAFETY: a null name is this program's module, which lives as long as the process.
    let instance = unsafe { GetModuleHandleW(std::ptr::null()) };
    let class_spec = WNDCLASSW {
        lpfnWndProc: Some(window_procedure),
        hInstance: instance,
        lpszClassName: class.as_ptr(),
        // SAFETY: the other fields of WNDCLASSW are valid zeroed (no icon, cursor, menu).
        ..unsafe { std::mem::zeroed() }
    };
    // SAFETY: the class names a procedure of this program and a name that outlives the call
    // (Windows copies it).
    if unsafe { RegisterClassW(&class_spec) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a registered class; no parent, no menu, no creation data.
    let window = unsafe {
        CreateWindowExW(
            0,
            class.as_ptr(),
            class.as_ptr(),
            WS_OVERLAPPED,
            0,
            0,
            0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            instance,
            std::ptr::null(),
        )
    };
    if window.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    Ok(window)
}

/// Dispatches the thread's messages until the process ends.
fn pump_messages() {
    // SAFETY: an all-zero MSG is a valid out-parameter.
    let mut message: MSG = unsafe { std::mem::zeroed() };
    // SAFETY: the loop of the thread that owns the window.
    while unsafe { GetMessageW(&mut message, std::ptr::null_mut(), 0, 0) } > 0 {
        unsafe {
            TranslateMessage(&message);
            DispatchMessageW(&message);
        }
    }
}

/// Agrees to the session's end, and at its end asks the agent to stop and waits for it.
unsafe extern "system" fn window_procedure(
    window: HWND,
    message: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    match message {
        WM_QUERYENDSESSION => 1,
        WM_ENDSESSION => {
            if wparam != 0 {
                if let Some(stop) = STOP.get() {
                    let _ = stop.send("session end");
                    // The process exits from the main thread once the session's end is told.
                    std::thread::sleep(GRACE);
                }
            }
            0
        }
        // SAFETY: the default procedure for what this one does not handle.
        _ => unsafe { DefWindowProcW(window, message, wparam, lparam) },
    }
}
