//! A progress line on stderr while a bench phase runs.
//!
//! On a terminal it redraws one line four times a second (bar, count, rate,
//! elapsed, and a phase-specific detail); otherwise (CI logs) it prints a plain
//! line every five seconds. Written by hand: a bar and a rate do not need a
//! dependency. Stdout is left alone for the JSON result.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BAR_WIDTH: usize = 28;

/// Reads the current count of a phase.
pub(crate) type Counter = Arc<dyn Fn() -> u64 + Send + Sync>;
/// Extra text after the figures, e.g. deliveries received so far.
pub(crate) type Detail = Arc<dyn Fn() -> String + Send + Sync>;

/// A running progress display; call [`Progress::finish`] to end it.
pub(crate) struct Progress {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing `label [bar] done/total unit rate/s elapsed detail`.
    pub(crate) fn start(
        label: &str,
        total: u64,
        unit: &'static str,
        done: Counter,
        detail: Option<Detail>,
    ) -> Self {
        let stop = CancellationToken::new();
        let tty = std::io::stderr().is_terminal();
        let label = label.to_owned();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let every = if tty {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(5)
            };
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = token.cancelled() => true,
                };
                let extra = detail.as_ref().map(|d| d()).unwrap_or_default();
                let line = render(&label, done(), total, unit, started.elapsed(), &extra);
                let mut err = std::io::stderr().lock();
                // A failed write to stderr has nowhere to be reported.
                let _ = if tty {
                    write!(err, "\r\x1b[2K{line}{}", if last { "\n" } else { "" })
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
                if last {
                    return;
                }
            }
        });
        Self { stop, task }
    }

    /// Draws the final state and stops.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        // The task only draws; if it panicked there is nothing left to draw.
        let _ = self.task.await;
    }
}

fn render(
    label: &str,
    done: u64,
    total: u64,
    unit: &str,
    elapsed: Duration,
    detail: &str,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let filled = if total == 0 {
        0
    } else {
        (done.min(total) as f64 / total as f64 * BAR_WIDTH as f64) as usize
    };
    let bar: String = "#".repeat(filled) + &"-".repeat(BAR_WIDTH - filled);
    let mut line = format!(
        "{label} [{bar}] {done}/{total} {unit} {} {unit}/s {secs:.1}s",
        human(rate)
    );
    if !detail.is_empty() {
        line.push_str("  ");
        line.push_str(detail);
    }
    line
}

/// `1234567.0` → `1.23M`.
pub(crate) fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e4 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_bar() {
        let line = render(
            "publish",
            50,
            100,
            "events",
            Duration::from_secs(2),
            "rx 10",
        );
        assert_eq!(
            line,
            "publish [##############--------------] 50/100 events 25 events/s 2.0s  rx 10"
        );
        let line = render("x", 7, 0, "c", Duration::ZERO, "");
        assert!(
            line.starts_with("x [----------------------------] 7/0 c 0 c/s"),
            "{line}"
        );
        assert_eq!(human(2_345_678.0), "2.35M");
        assert_eq!(human(40_000.0), "40.0k");
    }
}
