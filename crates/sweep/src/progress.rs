//! What a long command shows while it works: a progress bar on a terminal, plain lines
//! otherwise (logs, CI), nothing but errors with `--quiet`. One type for a run's epochs and a
//! sweep's runs.

use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    start: Instant,
    total: usize,
    unit: &'static str,
}

impl Progress {
    /// Progress over `total` steps called `unit` ("epoch", "runs"), starting at `done`.
    pub fn new(unit: &'static str, total: usize, done: usize, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let template = if unit == "epoch" {
                "{elapsed_precise} [{bar:30}] epoch {pos}/{len} · {msg} · ETA {eta}"
            } else {
                "{elapsed_precise} [{bar:30}] {pos}/{len} runs · {msg}"
            };
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(indicatif::ProgressStyle::with_template(template).unwrap().progress_chars("=> "));
            b.set_position(done as u64);
            b
        });
        Progress { bar, quiet, start: Instant::now(), total, unit }
    }

    /// A line above the bar (or on its own).
    pub fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }

    /// Step `pos` reached; `msg` says how it went. Without a terminal, epochs print a line each
    /// and runs (reported by `line`) print nothing more.
    pub fn step(&self, pos: usize, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(pos as u64);
                b.set_message(msg.to_string());
            }
            None if !self.quiet && self.unit == "epoch" => {
                eprintln!("epoch {pos}/{} · {msg} · {:.1}s", self.total, self.start.elapsed().as_secs_f64())
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
