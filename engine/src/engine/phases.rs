//! Where the engine's time goes: how long its work spent in each phase since the process
//! started. `/metrics` shows the totals (`nurture_engine_seconds_total{phase}`), and
//! `nurture bench e2e` reads them before and after a wave to say which phase bounds it, so
//! that the next bottleneck is visible without a profiler.
//!
//! The dispatcher's `send` and `record` overlap (outcomes are written while the pool keeps
//! sending), so the phases do not add up to `dispatch`, the wall time of dispatch passes that
//! found work; a dispatcher's idle time is the rest of the wall clock. Work of one phase may run
//! concurrently (requests ingesting events at once), so a phase's total can exceed the wall
//! time it was measured over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One phase of the engine's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Behaviour events taken in (rules, scores, the journeys they move), from any source.
    Ingest,
    /// Runner passes: enrollments whose waits are over, moved.
    Runner,
    /// Dispatch passes that found work, from claim to the last outcome written.
    Dispatch,
    /// The dispatcher's claim of due messages and the read of their leads, tags and
    /// suppressions.
    Claim,
    /// Rendering claimed messages (templates, tracked links, footers).
    Render,
    /// From the first message handed to the mail pool to the last send completed.
    Send,
    /// Writing send outcomes (overlaps `Send`).
    Record,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Ingest,
        Phase::Runner,
        Phase::Dispatch,
        Phase::Claim,
        Phase::Render,
        Phase::Send,
        Phase::Record,
    ];

    /// The label `/metrics` gives the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Ingest => "ingest",
            Phase::Runner => "runner",
            Phase::Dispatch => "dispatch",
            Phase::Claim => "claim",
            Phase::Render => "render",
            Phase::Send => "send",
            Phase::Record => "record",
        }
    }
}

/// Nanoseconds spent per phase, added to as work finishes, and the messages of dispatch
/// passes that have ended.
#[derive(Debug, Default)]
pub struct Phases {
    spent: [AtomicU64; Phase::ALL.len()],
    dispatched: AtomicU64,
}

impl Phases {
    pub fn add(&self, phase: Phase, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.spent[phase as usize].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds the time since `started` to `phase`.
    pub fn since(&self, phase: Phase, started: Instant) {
        self.add(phase, started.elapsed());
    }

    /// Ends a dispatch pass that started at `started` and claimed `messages`: its time is
    /// added to `Dispatch` before its messages are counted, so a reader that sees them counted
    /// sees the pass's time too.
    pub fn pass_ended(&self, started: Instant, messages: usize) {
        self.since(Phase::Dispatch, started);
        self.dispatched.fetch_add(messages as u64, Ordering::Release);
    }

    /// Messages claimed by dispatch passes that have ended (whatever their outcome).
    pub fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Acquire)
    }

    /// Every phase with its total so far.
    pub fn totals(&self) -> Vec<(Phase, Duration)> {
        Phase::ALL
            .iter()
            .map(|&phase| {
                (
                    phase,
                    Duration::from_nanos(self.spent[phase as usize].load(Ordering::Relaxed)),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_separately() {
        let phases = Phases::default();
        phases.add(Phase::Send, Duration::from_millis(1_500));
        phases.add(Phase::Send, Duration::from_millis(500));
        phases.add(Phase::Runner, Duration::from_micros(7));
        let totals = phases.totals();
        assert_eq!(totals.len(), Phase::ALL.len());
        for (phase, spent) in totals {
            let expected = match phase {
                Phase::Send => Duration::from_secs(2),
                Phase::Runner => Duration::from_micros(7),
                _ => Duration::ZERO,
            };
            assert_eq!(spent, expected, "{}", phase.name());
        }
    }

    #[test]
    fn an_ended_pass_counts_its_time_and_messages() {
        let phases = Phases::default();
        let started = Instant::now() - Duration::from_millis(3);
        phases.pass_ended(started, 40);
        phases.pass_ended(Instant::now(), 2);
        assert_eq!(phases.dispatched(), 42);
        let dispatch = phases.totals()[Phase::Dispatch as usize].1;
        assert!(dispatch >= Duration::from_millis(3), "{dispatch:?}");
    }
}
