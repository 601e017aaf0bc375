//! Panics that jetgen catches never print. Rust's default panic hook writes
//! "thread … panicked at …" to stderr *before* `catch_unwind` sees the panic, so a caught
//! panic — cudarc's "Missing symbol cuInit" from a `libcuda.so.1` that loads but is not a
//! CUDA driver, a third-party file parser tripping over a hostile file, anything behind the
//! C API — would still print one. This module installs (once) a hook that stays silent
//! while a quiet region is active, remembering the message and location instead so the
//! caller can put them in its error; outside quiet regions it calls the previous hook.
//!
//! * [`catch_quietly`] — run a closure on this thread, a panic becomes `Err(message)`;
//! * [`catch_quietly_everywhere`] — the same, silencing panics on every thread while it
//!   runs (for work spread over the thread pool, as behind the C API);
//! * [`silence_process`] — silence every panic of the process from now on (the CLI, which
//!   turns a caught panic into an `error: internal error …` line).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

static INSTALL: Once = Once::new();
/// Quiet regions active on any thread (or 1 for good after [`silence_process`]).
static EVERYWHERE: AtomicUsize = AtomicUsize::new(0);
/// The last silenced panic's "message at file:line".
static LAST: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    static HERE: Cell<usize> = const { Cell::new(0) };
}

fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = EVERYWHERE.load(Ordering::SeqCst) > 0 || HERE.with(Cell::get) > 0;
            if !quiet {
                return previous(info);
            }
            let text = match info.location() {
                Some(l) => format!(
                    "{} at {}:{}",
                    payload_text(info.payload()),
                    l.file(),
                    l.line()
                ),
                None => payload_text(info.payload()),
            };
            if let Ok(mut last) = LAST.lock() {
                *last = Some(text);
            }
        }));
    });
}

/// The text of a panic payload (`&str` or `String`; anything else is "a panic").
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

/// The message of a caught panic: what the hook recorded (message and location) when it
/// was silenced, else the payload's text.
fn message_of(payload: Box<dyn std::any::Any + Send>) -> String {
    let recorded = LAST.lock().ok().and_then(|mut l| l.take());
    recorded.unwrap_or_else(|| payload_text(payload.as_ref()))
}

fn forget_last() {
    if let Ok(mut last) = LAST.lock() {
        *last = None;
    }
}

/// Run `f` on this thread; a panic inside it prints nothing and becomes `Err(message)`.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install();
    forget_last();
    HERE.with(|h| h.set(h.get() + 1));
    let out = catch_unwind(AssertUnwindSafe(f));
    HERE.with(|h| h.set(h.get() - 1));
    out.map_err(message_of)
}

/// Like [`catch_quietly`], and panics on other threads (the thread pool's workers) print
/// nothing while `f` runs either.
pub fn catch_quietly_everywhere<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install();
    forget_last();
    EVERYWHERE.fetch_add(1, Ordering::SeqCst);
    let out = catch_unwind(AssertUnwindSafe(f));
    EVERYWHERE.fetch_sub(1, Ordering::SeqCst);
    out.map_err(message_of)
}

/// From now on no panic of this process prints (for the command line, which reports a
/// caught panic as an error line of its own).
pub fn silence_process() {
    install();
    EVERYWHERE.fetch_add(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_panics_become_messages() {
        let e = catch_quietly(|| -> u8 { panic!("Missing symbol cuInit") }).unwrap_err();
        assert!(
            e.contains("Missing symbol cuInit") && e.contains("quiet_panic.rs"),
            "{e}"
        );
        assert_eq!(catch_quietly(|| 7).unwrap(), 7);
        let e = catch_quietly_everywhere(|| {
            std::thread::spawn(|| panic!("on a worker")).join().is_err()
        })
        .unwrap();
        assert!(e, "the worker's panic is still a panic, only silent");
        let e = catch_quietly(|| std::panic::panic_any(3u32)).unwrap_err();
        assert!(!e.is_empty());
    }
}
