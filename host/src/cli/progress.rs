//! The progress bar on stderr, lifted off the terminal while the output is written.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rulehost::events::Input;
use rulehost::sinks::Sink;

/// An output that lifts the progress bar off the terminal while it writes.
pub(crate) struct Suspending {
    pub(crate) inner: Box<dyn Sink>,
    pub(crate) progress: Option<indicatif::ProgressBar>,
}

impl Suspending {
    pub(crate) fn quiet<T>(&mut self, write: impl FnOnce(&mut dyn Sink) -> T) -> T {
        match self.progress.clone() {
            Some(bar) => bar.suspend(|| write(self.inner.as_mut())),
            None => write(self.inner.as_mut()),
        }
    }
}

impl Sink for Suspending {
    fn alert(&mut self, alert: &rulehost::alerts::Alert) -> io::Result<()> {
        self.quiet(|out| out.alert(alert))
    }

    fn matched(&mut self, matched: &rulehost::alerts::Match<'_>) -> io::Result<()> {
        self.quiet(|out| out.matched(matched))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.quiet(|out| out.finish())
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal: bytes read of the
/// inputs' total, rate and ETA (a spinner with bytes and rate for standard input).
pub(crate) struct Progress {
    pub(crate) bar: indicatif::ProgressBar,
    pub(crate) stop: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) updater: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(inputs: &[Input], counter: Arc<AtomicU64>) -> Option<Self> {
        if !io::stderr().is_terminal() {
            return None;
        }
        let total: Option<u64> = inputs.iter().map(Input::size).sum();
        let (bar, template) = match total {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{spinner} [{elapsed_precise}] {bytes} read, {bytes_per_sec}",
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (shown, done) = (bar.clone(), stop.clone());
        let updater = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                shown.set_position(counter.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Some(Self { bar, stop, updater: Some(updater) })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(updater) = self.updater.take() {
            let _ = updater.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Progress {
    /// Shows the final count before the bar goes.
    pub(crate) fn finish(self, counter: &AtomicU64) {
        self.bar.set_position(counter.load(Ordering::Relaxed));
        drop(self);
    }
}
