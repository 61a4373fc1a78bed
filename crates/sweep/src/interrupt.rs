//! Stopping cleanly on a signal. SIGTERM (a scheduler's preemption or `scancel`), SIGINT (Ctrl-C)
//! and SIGUSR1 (SLURM's warning ahead of the time limit, `--signal=B:USR1@120`) ask training to
//! stop: the current step finishes, every run writes a checkpoint of that step and is marked
//! "interrupted", and the process exits with 128 + the signal (143, 130, 138). A second Ctrl-C
//! stops at once. The handler only records the signal; the training loop polls `requested()`.

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Signals that ask for a clean stop.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];

extern "C" fn on_signal(sig: i32) {
    // Only async-signal-safe work here: an atomic swap and, for a repeated Ctrl-C, _exit.
    let before = SIGNAL.swap(sig, Ordering::SeqCst);
    if before != 0 && sig == libc::SIGINT {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    if before != 0 {
        // Keep the first signal: it decides the exit status.
        SIGNAL.store(before, Ordering::SeqCst);
    }
}

/// Install the handler for the stop signals (once per process, before training starts).
pub fn install() {
    for sig in STOP_SIGNALS {
        // SAFETY: a plain handler that touches only an atomic (and _exit); no SA_RESTART, so a
        // blocking read is interrupted and the loop notices the request sooner.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(i32) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The stop signal received, if any.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Ask for a stop as if `sig` had arrived (the sweep runner's children, tests).
pub fn request(sig: i32) {
    SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).ok();
}

/// The conventional exit status after `sig`: 128 + its number.
pub fn exit_code(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// The signal's name for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// The error a run returns when a stop signal interrupted it (after its checkpoint was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", name(self.signal))
    }
}

impl std::error::Error for Interrupted {}

/// Test hook: `DEPTHPROBE_STOP_AT=E:S` raises SIGTERM in this process after step S of epoch E,
/// so tests can interrupt at an exact step through the real handler.
pub fn maybe_raise_at(epoch: usize, step: usize) {
    thread_local! {
        static AT: Option<(usize, usize)> = std::env::var("DEPTHPROBE_STOP_AT").ok().and_then(|v| {
            let (e, s) = v.split_once(':')?;
            Some((e.parse().ok()?, s.parse().ok()?))
        });
    }
    if AT.with(|a| *a == Some((epoch, step))) {
        // SAFETY: raising a signal in our own process.
        unsafe { libc::raise(libc::SIGTERM) };
    }
}

/// The stop signal behind an error, if a stop caused it.
pub fn signal_of(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| c.downcast_ref::<Interrupted>()).map(|i| i.signal)
}

/// A command's exit status (both binaries): 128 + the signal when it stopped on one, after its
/// runs checkpointed; else success, or failure with the error printed.
pub fn exit_status(res: anyhow::Result<()>) -> std::process::ExitCode {
    use std::process::ExitCode;
    match res {
        Ok(()) => match requested() {
            Some(sig) => ExitCode::from(exit_code(sig)),
            None => ExitCode::SUCCESS,
        },
        Err(e) => match signal_of(&e) {
            Some(sig) => {
                eprintln!("stopped: {e:#}");
                ExitCode::from(exit_code(sig))
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
