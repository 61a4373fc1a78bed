//! Training that gives way when another process wants the CPU (docs/performance.md, "Sharing the
//! CPU"). LibTorch's OpenMP threads spin while they wait for each other; when another busy
//! process takes the core one of them needs, its partner spins through the time slice and every
//! parallel region waits for the scheduler: on 2 cores beside one busy process a 2-thread run took
//! 3× its time alone, where one thread keeps nearly its own speed. So while it trains, a run whose
//! thread count depthprobe chose (`train.threads = 0`) times its own work and keeps whichever of
//! two thread counts is faster now: all its threads, or half of them. It tries the other count now
//! and then, and at once when its steps become much slower than they were.
//!
//! Pure bookkeeping over measured seconds (no LibTorch): the engine reports each unit of work and
//! sets the thread count it is told to.

/// The kinds of work a run reports; a kind is only compared with itself (a probe batch of 1,000
/// rows and a training step of 128 take different times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    TrainStep,
    ProbeBatch,
}

/// A window of work is closed when it has at least this many units and this many seconds.
const WINDOW_UNITS: usize = 3;
const WINDOW_SECS: f64 = 0.1;
/// A window this many times slower than the fastest seen at the same count means the CPU is now
/// shared: try the other count at once.
const SLOWER: f64 = 2.0;
/// A trial wins when it is this much faster per unit than the window before it.
const WINS: f64 = 0.85;
/// A trial unit this many times slower than the window before it ends the trial at once: under
/// contention one step with all threads can take many steps' time.
const ABORT: f64 = 3.0;
/// Seconds of work before the next trial: starts here after a change, doubles after each trial
/// that changed nothing, up to the cap.
const FIRST_WAIT: f64 = 4.0;
const MAX_WAIT: f64 = 64.0;

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    units: usize,
    secs: f64,
}

#[derive(Clone, Copy, Debug)]
struct Trial {
    kind: Work,
    from: usize,
    /// Seconds per unit of `kind` at `from` just before the trial.
    reference: f64,
    window: Window,
}

/// What the governor did, for the run's summary and its log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adaptation {
    /// Thread-count changes made (trials that were undone count twice).
    pub changes: usize,
    /// Seconds of work done with fewer threads than the maximum.
    pub reduced_secs: f64,
    /// Seconds of work in all.
    pub total_secs: f64,
}

pub struct ThreadGovernor {
    max: usize,
    reduced: usize,
    now: usize,
    /// Per kind: the open window, and per count (index 0: max, 1: reduced) the last closed
    /// window's and the fastest window's seconds per unit.
    windows: [Window; 2],
    last: [[Option<f64>; 2]; 2],
    best: [[Option<f64>; 2]; 2],
    trial: Option<Trial>,
    clock: f64,
    next_trial: f64,
    wait: f64,
    announced: bool,
    notes: Vec<String>,
    pub adaptation: Adaptation,
}

fn k(w: Work) -> usize {
    w as usize
}

impl ThreadGovernor {
    /// A governor between `max` threads and half of them; None when there is nothing to choose
    /// (one thread).
    pub fn new(max: usize) -> Option<ThreadGovernor> {
        (max >= 2).then(|| ThreadGovernor {
            max,
            reduced: (max / 2).max(1),
            now: max,
            windows: [Window::default(); 2],
            last: [[None; 2]; 2],
            best: [[None; 2]; 2],
            trial: None,
            clock: 0.0,
            next_trial: 0.0,
            wait: FIRST_WAIT,
            announced: false,
            notes: Vec::new(),
            adaptation: Adaptation::default(),
        })
    }

    /// The thread count to use now.
    pub fn threads(&self) -> usize {
        self.now
    }

    /// The smaller of the two counts it chooses between.
    pub fn fewer(&self) -> usize {
        self.reduced
    }

    fn slot(&self, n: usize) -> usize {
        usize::from(n != self.max)
    }

    /// What to tell the user, once each: taken by the caller.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn set(&mut self, n: usize) -> Option<usize> {
        if n == self.now {
            return None;
        }
        self.now = n;
        self.adaptation.changes += 1;
        self.windows = [Window::default(); 2];
        Some(n)
    }

    /// Work of `kind` begins (a probe, an epoch): a trial made on other work says nothing about
    /// it and ends here, back at the count it started from. Returns the count to switch to.
    pub fn starting(&mut self, kind: Work) -> Option<usize> {
        match self.trial {
            Some(t) if t.kind != kind => {
                self.trial = None;
                self.set(t.from)
            }
            _ => None,
        }
    }

    /// One unit of `kind` took `secs` at the current count. Returns the count to switch to, if
    /// the caller must change it now.
    pub fn record(&mut self, kind: Work, secs: f64) -> Option<usize> {
        self.clock += secs;
        self.adaptation.total_secs += secs;
        if self.now != self.max {
            self.adaptation.reduced_secs += secs;
        }
        if let Some(t) = &mut self.trial {
            if t.kind != kind {
                // Other work without `starting` (a caller's slip): as there.
                let from = t.from;
                self.trial = None;
                return self.set(from);
            }
            t.window.units += 1;
            t.window.secs += secs;
            let t = *t;
            if secs > ABORT * t.reference {
                return self.end_trial(false, secs);
            }
            if t.window.units >= WINDOW_UNITS && t.window.secs >= WINDOW_SECS {
                let per = t.window.secs / t.window.units as f64;
                return self.end_trial(per < WINS * t.reference, per);
            }
            return None;
        }
        let w = &mut self.windows[k(kind)];
        w.units += 1;
        w.secs += secs;
        if w.units < WINDOW_UNITS || w.secs < WINDOW_SECS {
            return None;
        }
        let per = w.secs / w.units as f64;
        *w = Window::default();
        let s = self.slot(self.now);
        self.last[k(kind)][s] = Some(per);
        let best = self.best[k(kind)][s];
        self.best[k(kind)][s] = Some(best.map_or(per, |b| b.min(per)));
        let slowed = self.now == self.max && best.is_some_and(|b| per > SLOWER * b);
        if slowed || self.clock >= self.next_trial {
            let to = if self.now == self.max { self.reduced } else { self.max };
            self.trial = Some(Trial { kind, from: self.now, reference: per, window: Window::default() });
            return self.set(to);
        }
        None
    }

    /// End the running trial: keep its count when it `won`, else go back. `per`: its seconds per
    /// unit (or the unit that ended it).
    fn end_trial(&mut self, won: bool, per: f64) -> Option<usize> {
        let t = self.trial.take().expect("a trial is running");
        let tried = self.now;
        if won {
            self.wait = FIRST_WAIT;
            self.next_trial = self.clock + self.wait;
            let s = self.slot(tried);
            self.last[k(t.kind)][s] = Some(per);
            self.best[k(t.kind)] = [None; 2];
            self.best[k(t.kind)][s] = Some(per);
            if tried < self.max && !self.announced {
                self.announced = true;
                self.notes.push(format!(
                    "the CPU is shared: {} threads took {:.1} ms per {}, {tried} take {:.1} ms; training on {tried} \
                     until {} are faster again (train.threads = 0; docs/performance.md, \"Sharing the CPU\")",
                    t.from,
                    t.reference * 1e3,
                    match t.kind {
                        Work::TrainStep => "step",
                        Work::ProbeBatch => "probe batch",
                    },
                    per * 1e3,
                    t.from
                ));
            }
            return None;
        }
        self.wait = (self.wait * 2.0).min(MAX_WAIT);
        self.next_trial = self.clock + self.wait;
        self.set(t.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `g` units of `kind` whose time depends on the thread count; returns the counts used.
    fn run(g: &mut ThreadGovernor, kind: Work, units: usize, secs: &dyn Fn(usize) -> f64) -> Vec<usize> {
        let mut used = Vec::new();
        for _ in 0..units {
            let n = g.threads();
            used.push(n);
            g.record(kind, secs(n));
        }
        used
    }

    #[test]
    fn alone_it_keeps_every_thread_and_tries_fewer_rarely() {
        let mut g = ThreadGovernor::new(2).unwrap();
        // 2 threads: 12 ms a step, 1 thread: 20 ms.
        let used = run(&mut g, Work::TrainStep, 5000, &|n| if n == 2 { 0.012 } else { 0.020 });
        let at_one = used.iter().filter(|&&n| n == 1).count();
        assert_eq!(*used.last().unwrap(), 2);
        // About a minute of work: trials after 0, 4, 12, 28 s, of one window each.
        assert!((4..=20).contains(&at_one), "{at_one} steps at 1 thread");
        let lost = at_one as f64 * 0.008 / (5000.0 * 0.012);
        assert!(lost < 0.01, "{lost}");
        assert!(g.take_notes().is_empty(), "nothing to say");
    }

    #[test]
    fn beside_a_busy_process_it_drops_to_half_and_comes_back_when_it_leaves() {
        let mut g = ThreadGovernor::new(2).unwrap();
        let alone = |n: usize| if n == 2 { 0.012 } else { 0.020 };
        // Spinning threads beside a busy process: 2 threads 0.25 s a step, 1 thread 21 ms.
        let shared = |n: usize| if n == 2 { 0.25 } else { 0.021 };
        run(&mut g, Work::TrainStep, 200, &alone);
        assert_eq!(g.threads(), 2);
        let used = run(&mut g, Work::TrainStep, 3000, &shared);
        let at_two = used.iter().filter(|&&n| n == 2).count();
        assert_eq!(g.threads(), 1);
        // Found within a window, and every later trial of 2 threads ends after one step.
        assert!(at_two <= 3 + 6, "{at_two} slow steps");
        let notes = g.take_notes();
        assert_eq!(notes.len(), 1, "said once");
        // (The window it compared with had alone steps in it too.)
        assert!(
            notes[0].starts_with("the CPU is shared: 2 threads took ")
                && notes[0].contains(" ms per step, 1 take 21.0 ms"),
            "{notes:?}"
        );
        // The other process ends: back to 2 threads at the next trial.
        let used = run(&mut g, Work::TrainStep, 8000, &alone);
        assert_eq!(g.threads(), 2);
        let back = used.iter().position(|&n| n == 2).unwrap();
        assert!(back as f64 * 0.020 < MAX_WAIT + 1.0, "back after {back} steps");
        assert!(run(&mut g, Work::TrainStep, 100, &shared).contains(&1));
        assert!(g.take_notes().is_empty(), "said once");
        assert!(g.adaptation.reduced_secs > 50.0 && g.adaptation.changes >= 4, "{:?}", g.adaptation);
    }

    #[test]
    fn shared_from_the_start_and_kinds_are_compared_with_themselves() {
        let mut g = ThreadGovernor::new(4).unwrap();
        // A probe at initialisation, beside busy processes: 4 threads 0.5 s a batch, 2 threads 40 ms.
        let used = run(&mut g, Work::ProbeBatch, 100, &|n| if n == 4 { 0.5 } else { 0.04 });
        assert_eq!(g.threads(), 2);
        assert!(used.iter().filter(|&&n| n == 4).count() <= 3 + 2);
        // Training steps are faster than probe batches; that alone is not a reason to change.
        let used = run(&mut g, Work::TrainStep, 500, &|n| if n == 4 { 0.3 } else { 0.01 });
        assert_eq!(g.threads(), 2);
        assert!(used.iter().filter(|&&n| n == 4).count() <= 3, "{used:?}");
        // A trial that the other kind of work interrupts is dropped at once: the probe ends in the
        // middle of a trial of 4 threads, and training goes on with 2.
        let mut g = ThreadGovernor::new(4).unwrap();
        let slow4 = |n: usize| if n == 4 { 0.5 } else { 0.04 };
        run(&mut g, Work::ProbeBatch, 100, &slow4);
        while g.threads() != 4 {
            g.record(Work::ProbeBatch, slow4(g.threads()));
        }
        assert_eq!(g.starting(Work::TrainStep), Some(2), "the trial ends with the probe");
        let used = run(&mut g, Work::TrainStep, 1000, &|n| if n == 4 { 0.3 } else { 0.01 });
        assert_eq!(used[0], 2);
        assert!(used.iter().filter(|&&n| n == 4).count() <= 3, "{used:?}");
        // Noise (±30% a unit) never makes it leave the faster count.
        let mut g = ThreadGovernor::new(2).unwrap();
        let state = std::cell::Cell::new(1u64);
        let noisy = |n: usize| {
            let x = state.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state.set(x);
            let jitter = 0.7 + 0.6 * ((x >> 11) as f64 / (1u64 << 53) as f64);
            jitter * if n == 2 { 0.012 } else { 0.020 }
        };
        let used = run(&mut g, Work::TrainStep, 10_000, &noisy);
        assert_eq!(*used.last().unwrap(), 2);
        assert!(used.iter().filter(|&&n| n == 1).count() < 60);
        assert!(ThreadGovernor::new(1).is_none(), "one thread: nothing to choose");
    }
}
