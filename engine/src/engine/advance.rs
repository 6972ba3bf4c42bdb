//! The manual clock: moving it, running what fell due, and where the next wake-up is.

use super::*;
use chrono::{DateTime, Utc};

use crate::clock::{to_micros, Clock};

impl Engine {
    /// Sets a manual clock, at start, to where it stood when it last moved, or else to `fresh`;
    /// returns the time it shows.
    pub async fn resume_manual_clock(
        &self,
        clock: &crate::clock::ManualClock,
        fresh: DateTime<Utc>,
    ) -> EngineResult<DateTime<Utc>> {
        let stored = self
            .store
            .setting(Self::MANUAL_CLOCK_SETTING, &to_micros(fresh).to_string())
            .await?;
        let at = stored
            .parse::<i64>()
            .map(crate::clock::from_micros)
            .map_err(|e| EngineError::Failed(format!("the stored manual clock {stored:?} is not a time: {e}")))?;
        clock.advance_to(at);
        Ok(clock.now())
    }

    /// Moves a manual clock to `at`, recording it first (see [`Self::MANUAL_CLOCK_SETTING`]).
    pub(super) async fn move_clock(&self, clock: &crate::clock::ManualClock, at: DateTime<Utc>) -> EngineResult<()> {
        self.store
            .put_setting(Self::MANUAL_CLOCK_SETTING, &to_micros(at).to_string())
            .await?;
        clock.advance_to(at);
        Ok(())
    }

    /// Hands every message that is due to the mailer while the clock stands still, so that each
    /// is recorded as sent at the time its step ran. Without a sender (tests that dispatch by
    /// hand, benchmarks), nothing is sent here.
    pub(super) async fn send_due(&self, sender: Option<&Sender>) -> EngineResult<()> {
        let Some(sender) = sender else {
            return Ok(());
        };
        // Each pass claims what is due now; what it leaves (a retry, a message over a rate
        // limit) is due later, so the loop ends.
        while self.dispatch(sender, DISPATCH_BATCH).await?.handled() > 0 {}
        self.send_notifications(sender, 500).await?;
        Ok(())
    }

    /// Moves a manual clock forward by `by`, running every step that falls due on the way, in
    /// order of due time, each at its own due time, and (given a `sender`) handing the
    /// messages those steps made to the mailer at that time too; returns once the engine is
    /// idle at the new time. `clock` must be the engine's own clock. Returns how many
    /// enrollments moved.
    ///
    /// A due lead another pass of this engine holds (an enrolling pass after a deploy, say) is
    /// waited for and then moved, so that what the clock made due has moved when this returns;
    /// one held by another process is left to it.
    pub async fn advance_clock(
        &self,
        clock: &crate::clock::ManualClock,
        by: chrono::Duration,
        sender: Option<&Sender>,
    ) -> EngineResult<usize> {
        let target = clock.now() + by;
        self.advancing_to
            .fetch_max(to_micros(target), std::sync::atomic::Ordering::Relaxed);
        let mut moved = 0;
        self.send_due(sender).await?;
        self.await_sends_in_flight().await?;
        while let Some(at) = self.next_timer().await?.filter(|at| *at <= target) {
            self.move_clock(clock, at).await?;
            let (n, stuck) = self.run_at(at, sender).await?;
            moved += n;
            if stuck {
                // Due but not movable (another process holds its lead): do not spin.
                break;
            }
        }
        self.move_clock(clock, target).await?;
        loop {
            let released = self.store.held().released.subscribe();
            moved += self.run_due(PASS_LEADS as i64).await?;
            self.run_timers(1_000).await?;
            if !self.held_here(released).await {
                self.send_due(sender).await?;
                return Ok(moved);
            }
        }
    }

    /// Moves every enrollment due at the clock's time `at`, batch by batch, and (given a
    /// `sender`) sends their mail at that time: each batch's mail goes out while the next batch
    /// moves, so that neither waits for the other. Returns how many moved, and whether what is
    /// due at `at` cannot be moved here (another process holds its leads).
    pub(super) async fn run_at(&self, at: DateTime<Utc>, sender: Option<&Sender>) -> EngineResult<(usize, bool)> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let moved_some = tokio::sync::Notify::new();
        let finished = AtomicBool::new(false);
        let running = async {
            let outcome = self.run_batches_at(at, &moved_some).await;
            finished.store(true, Ordering::SeqCst);
            moved_some.notify_one();
            outcome
        };
        let sending = async {
            loop {
                // Read before sending: once the runner has finished, what is due after that
                // send has all been sent.
                let last = finished.load(Ordering::SeqCst);
                self.send_due(sender).await?;
                if last {
                    return EngineResult::Ok(());
                }
                moved_some.notified().await;
            }
        };
        let (outcome, ()) = futures_util::future::try_join(running, sending).await?;
        Ok(outcome)
    }

    /// The runner's side of [`Self::run_at`]: batches of what is due at `at`, `moved_some`
    /// told after each.
    pub(super) async fn run_batches_at(
        &self,
        at: DateTime<Utc>,
        moved_some: &tokio::sync::Notify,
    ) -> EngineResult<(usize, bool)> {
        let mut moved = 0;
        loop {
            let released = self.store.held().released.subscribe();
            let n = self.run_due(PASS_LEADS as i64).await? + self.run_timers(1_000).await?;
            moved += n;
            moved_some.notify_one();
            if self.next_timer().await? != Some(at) {
                return Ok((moved, false));
            }
            if n == 0 && !self.held_here(released).await {
                return Ok((moved, true));
            }
        }
    }

    /// Waits (a few seconds at most) for the sends in flight at this clock's time to be
    /// recorded, in any process on the database. A dispatcher leases what it sends until a few
    /// minutes past its own clock: moving this clock past that would let this engine take and
    /// send again what another process, whose manual clock stands still, is sending. A lease
    /// whose holder died is not waited for longer.
    pub(super) async fn await_sends_in_flight(&self) -> EngineResult<()> {
        let waiting_until = std::time::Instant::now() + dispatch::IN_FLIGHT_WAIT;
        let now = self.now();
        while self.store.sends_in_flight(now, now + dispatch::LEASE).await? && std::time::Instant::now() < waiting_until
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Whether a pass of this engine held leads since `released` was subscribed: if one still
    /// holds some, once it has let them go. Then what it held may be due, and is asked again.
    pub(super) async fn held_here(&self, mut released: tokio::sync::watch::Receiver<u64>) -> bool {
        if released.has_changed().unwrap_or(false) {
            return true;
        }
        if self.store.held().is_empty() {
            return false;
        }
        self.store.held().waits.send_modify(|n| *n += 1);
        // The sender lives as long as the engine, which `self` borrows.
        released.changed().await.is_ok()
    }

    /// When the next wait ends (outside paused campaigns), if any enrollment waits.
    pub async fn next_wake(&self) -> EngineResult<Option<DateTime<Utc>>> {
        let paused: Vec<String> = self
            .store
            .campaigns()
            .await?
            .into_iter()
            .filter(|c| c.status != crate::store::CampaignStatus::Active)
            .map(|c| c.id)
            .collect();
        Ok(self.store.next_wake(&paused).await?)
    }

    /// When the engine next has work of its own: a wait ends, an SLA falls due, a cool-down
    /// ends.
    pub async fn next_timer(&self) -> EngineResult<Option<DateTime<Utc>>> {
        let wake = self.next_wake().await?;
        let timer = self.store.next_handoff_timer().await?.map(crate::clock::from_micros);
        Ok(match (wake, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
