//! What changed in the queues, pushed to open inboxes as server-sent events (`GET /live`), so
//! a new assignment appears without a reload. One watcher per process reads the handoffs'
//! history after the last line it saw, once a second while anyone listens, and fans the lines
//! out; each listener keeps those about queues it works. Every process reads the shared
//! history, so an assignment made by another process (or by the runner) arrives too.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use nurture_engine::engine::Engine;
use nurture_engine::store::handoffs::HandoffMove;
use tokio::sync::broadcast;

use super::*;

/// How often the watcher reads the history while anyone listens.
const EVERY: Duration = Duration::from_secs(1);
/// How long one stream lasts; the browser reconnects (and the session is checked again).
const STREAM: Duration = Duration::from_secs(300);
/// The most lines the watcher reads at a time.
const LINES: i64 = 500;

/// The process's watcher of the handoffs' history and its listeners.
#[derive(Clone)]
pub struct Live {
    moves: broadcast::Sender<Arc<HandoffMove>>,
    watching: Arc<AtomicBool>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            moves: broadcast::channel(1_024).0,
            watching: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Live {
    /// Listens to the lines from now on, starting the watcher on first use.
    fn listen(&self, engine: &Arc<Engine>) -> broadcast::Receiver<Arc<HandoffMove>> {
        let listener = self.moves.subscribe();
        if !self.watching.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch(engine.clone(), self.moves.clone()));
        }
        listener
    }
}

/// Reads the history while anyone listens and sends each line on.
async fn watch(engine: Arc<Engine>, moves: broadcast::Sender<Arc<HandoffMove>>) {
    let mut after = None;
    loop {
        if moves.receiver_count() == 0 {
            // Nobody listens: start again from the end when someone does.
            after = None;
        } else {
            match engine.handoff_moves(after, LINES).await {
                Ok((last, lines)) => {
                    after = Some(last);
                    for line in lines {
                        // No listener left is not an error: the next turn starts over.
                        let _ = moves.send(Arc::new(line));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "The console could not read the queues' history."),
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// `GET /live`: the queue changes the signed-in person cares about, as `handoff` events (the
/// queue and what happened), until the stream's time is up.
pub(super) async fn live(State(state): State<AppState>, jar: CookieJar) -> Answer {
    let (user, _, _) = viewer(&state, &jar).await?;
    let playbook = state.engine.playbook();
    let queues: Vec<String> = playbook
        .queues
        .queues
        .iter()
        .filter(|(_, q)| user.role != Role::Sdr || q.members.contains(&user.email))
        .map(|(name, _)| name.clone())
        .collect();
    let listener = state.live.listen(&state.engine);
    let until = tokio::time::Instant::now() + STREAM;
    let stream = futures_util::stream::unfold(listener, move |mut listener| {
        let queues = queues.clone();
        async move {
            loop {
                let line = match tokio::time::timeout_at(until, listener.recv()).await {
                    Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    // Fell behind: say something changed, and carry on from here.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                        let event = Event::default().event("handoff").data(r#"{"action":"many"}"#);
                        return Some((Ok::<_, Infallible>(event), listener));
                    }
                    Ok(Ok(line)) => line,
                };
                if !queues.contains(&line.queue) {
                    continue;
                }
                let data = serde_json::json!({
                    "queue": line.queue,
                    "action": line.action,
                    "handoff": line.handoff_id.to_string(),
                    "assigned_to": line.assigned_to,
                });
                let event = Event::default().event("handoff").data(data.to_string());
                return Some((Ok(event), listener));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
