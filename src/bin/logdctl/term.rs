//! The terminal for `attach` and `top`: raw mode, put back on every way out (normal exit,
//! errors, and SIGTERM/SIGHUP/SIGQUIT, caught on a thread of their own).

use std::sync::Mutex;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};

/// The settings to put back, and what to print first (e.g. leave the alternate screen).
static SAVED: Mutex<Option<(Termios, &'static str)>> = Mutex::new(None);

/// Puts the terminal (if stdin is one) in raw mode; `undo` is printed when it is restored.
pub fn raw_mode(undo: &'static str) -> anyhow::Result<()> {
    if let Ok(t) = termios::tcgetattr(std::io::stdin()) {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw)
            .context("cannot put the terminal in raw mode")?;
        *SAVED.lock().unwrap() = Some((t, undo));
    }
    Ok(())
}

/// Puts the terminal back as it was (idempotent).
pub fn restore() {
    if let Some((t, undo)) = SAVED.lock().map(|mut g| g.take()).unwrap_or(None) {
        // Straight to fd 1: another thread may hold std's stdout lock for good.
        if !undo.is_empty() {
            let _ = nix::unistd::write(std::io::stdout(), undo.as_bytes());
        }
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &t);
    }
}

/// Terminal back as it was, then exit.
pub fn leave(code: i32, why: &str) -> ! {
    restore();
    if !why.is_empty() {
        eprint!("\r\n[logdctl: {why}]\r\n");
    }
    std::process::exit(code);
}

/// Signals that would end us are taken by a thread that restores the terminal first.
/// Call before starting any other thread (they inherit the blocked mask).
pub fn catch_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    set.thread_block().context("cannot block signals")?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            leave(128 + sig as i32, &format!("{sig}"));
        }
    });
    Ok(())
}
