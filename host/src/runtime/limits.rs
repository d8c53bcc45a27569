//! The sandbox's limits: what one rule may use per call, and what it may return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// How often the ticker thread advances the engine's epoch, which is the unit of the
/// deadline: a deadline of N ms is N ticks.
pub const TICK: Duration = Duration::from_millis(1);

/// The least time the `metadata` call made while loading a rule is given.
pub const LOAD_CALL_DEADLINE: Duration = Duration::from_secs(1);

fn ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / TICK.as_micros()).max(1) as u64
}

/// Limits that apply to every rule, each with a default that a well-behaved rule never
/// reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one rule instance may grow to. Default 64 MiB: a batch of 1024
    /// events with long command lines is a few MiB.
    pub memory_bytes: usize,
    /// Table elements (function references) one instance may hold.
    pub table_elements: usize,
    /// Core instances, tables and memories one component may create.
    pub instances: usize,
    /// Wall-clock time one call may take. Default 1 s: the Soft Cell rule takes ~0.3 ms
    /// for a batch of 1024 events.
    pub deadline: Duration,
    /// Fuel (roughly, Wasm instructions) one call may burn; `None` turns fuel metering
    /// off, which is the default (the deadline already bounds a call).
    pub fuel: Option<u64>,
    /// Alerts one `summarize` call may return.
    pub max_alerts: usize,
    /// Bytes of text (names and values) one `summarize` call may return.
    pub max_alert_bytes: usize,
    /// The largest artifact accepted for loading. Default 64 MiB, the memory a rule may
    /// use: the Soft Cell component is ~48 KiB, a Sigma pack of the whole process-creation
    /// catalog ~13 MB (its initial memory, the matcher built ahead, is most of it).
    pub max_artifact_bytes: u64,
    /// Consecutive failed calls after which a rule is quarantined for the rest of the run.
    pub max_consecutive_failures: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            instances: 16,
            deadline: Duration::from_secs(1),
            fuel: None,
            max_alerts: 10_000,
            max_alert_bytes: 16 << 20,
            max_artifact_bytes: 64 << 20,
            max_consecutive_failures: 3,
        }
    }
}

impl Limits {
    /// Checks that every limit lets a rule run at all.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes < (1 << 16) {
            return Err(format!("memory limit {} bytes is below one Wasm page (65536)", self.memory_bytes));
        }
        if self.deadline < TICK {
            return Err(format!(
                "deadline {:?} is shorter than the ticker's resolution ({TICK:?})",
                self.deadline
            ));
        }
        if self.fuel == Some(0) {
            return Err("fuel 0 lets no rule run".into());
        }
        if self.max_consecutive_failures == 0 {
            return Err("quarantine after 0 failures would refuse every rule".into());
        }
        Ok(())
    }

    /// The deadline in ticks.
    pub(super) fn deadline_ticks(&self) -> u64 {
        ticks(self.deadline)
    }

    /// The deadline in ticks of the one `metadata` call made while loading. Loading is off
    /// the evaluation path, and a deadline tuned to a batch of a few milliseconds would
    /// refuse a sound rule whenever the machine is busy, so that call gets at least
    /// [`LOAD_CALL_DEADLINE`]; a rule that loops there is still refused.
    pub(super) fn load_deadline_ticks(&self) -> u64 {
        ticks(self.deadline.max(LOAD_CALL_DEADLINE))
    }

    pub(super) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .table_elements(self.table_elements)
            .instances(self.instances)
            .tables(self.instances)
            .memories(self.instances)
            // A failed grow traps (reported as out of memory) rather than returning -1,
            // which a Rust guest would turn into an abort that reads as a panic.
            .trap_on_grow_failure(true)
            .build()
    }
}

/// What a rule's store holds: its resource limits.
#[derive(Debug)]
pub struct RuleState {
    limits: StoreLimits,
    memory_bytes: usize,
    /// Memory the next call may take beyond the limit: room for the input the host hands
    /// it (see [`RuleState::allow_input`]).
    allowance: usize,
    /// Whether the memory grew into the allowance.
    grew_past_limit: bool,
}

impl RuleState {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            limits: limits.store_limits(),
            memory_bytes: limits.memory_bytes,
            allowance: 0,
            grew_past_limit: false,
        }
    }

    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        self
    }

    /// Lets the next call's memory grow past the limit by what an input of `bytes` takes in
    /// the guest. The memory limit bounds what a rule allocates of its own; a `summarize`
    /// call is handed every match of a window, which the host already holds, so the room
    /// for that input is granted on top (twice its size: the lowered input and the guest's
    /// work over it). The host replaces an instance that grew past its limit before its next
    /// `evaluate` call, or once the windows closing with it are summarized.
    pub(super) fn allow_input(&mut self, bytes: usize) {
        self.allowance = bytes.saturating_mul(2);
    }

    /// Ends what [`RuleState::allow_input`] granted; whether the memory grew past the limit.
    pub(super) fn end_allowance(&mut self) -> bool {
        self.allowance = 0;
        std::mem::take(&mut self.grew_past_limit)
    }
}

impl ResourceLimiter for RuleState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes
            && desired <= self.memory_bytes.saturating_add(self.allowance)
            && maximum.is_none_or(|max| desired <= max)
        {
            self.grew_past_limit = true;
            return Ok(true);
        }
        self.limits.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The thread that advances the engine's epoch every [`TICK`]; stopped when dropped.
#[derive(Debug)]
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new().name("rulehost-epoch".into()).spawn(move || {
            // Ticks follow the clock, not the count of wake-ups: a starved thread catches
            // up, so a deadline is wall-clock time however busy the machine is.
            let start = std::time::Instant::now();
            let mut ticks: u128 = 0;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                let due = start.elapsed().as_micros() / TICK.as_micros();
                while ticks < due {
                    engine.increment_epoch();
                    ticks += 1;
                }
            }
        })?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
