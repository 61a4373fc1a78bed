//! Wall time per phase of a run, printed to stderr at the end when `DEPTHPROBE_PHASES` is set:
//! how the fixed costs of a sweep were found on a GPU machine that has no profiler.

use std::cell::{Cell, RefCell};
use std::time::Instant;

pub struct Phases {
    on: bool,
    last: Cell<Instant>,
    totals: RefCell<Vec<(&'static str, f64, usize)>>,
}

impl Phases {
    pub fn from_env() -> Phases {
        let on = std::env::var_os("DEPTHPROBE_PHASES").is_some_and(|v| !v.is_empty());
        Phases { on, last: Cell::new(Instant::now()), totals: Default::default() }
    }

    /// Charge the time since the previous lap to `name`.
    pub fn lap(&self, name: &'static str) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        let dt = (now - self.last.replace(now)).as_secs_f64();
        let mut t = self.totals.borrow_mut();
        match t.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += dt;
                e.2 += 1
            }
            None => t.push((name, dt, 1)),
        }
    }

    pub fn report(&self, what: &str) {
        if !self.on {
            return;
        }
        let t = self.totals.borrow();
        let all: f64 = t.iter().map(|e| e.1).sum();
        let parts: Vec<String> = t.iter().map(|(n, s, c)| format!("{n} {s:.3} s ×{c}")).collect();
        eprintln!("phases ({what}, {all:.3} s): {}", parts.join(" · "));
    }
}
