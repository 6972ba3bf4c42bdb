//! Keeping the WAL bounded: checkpoints between passes, a restart when readers allow it.

use sqlx::SqlitePool;
use std::time::Duration;

/// Copies committed pages from the WAL into the database file (a `PASSIVE` checkpoint) after
/// writes, on a connection of its own and outside the writer's turn. SQLite's automatic
/// checkpoint runs inside the commit that crosses 1,000 pages, with its two `fsync`s, while the
/// next writer waits.
/// A passive checkpoint takes no write lock, so writers go on meanwhile. Wakes that come while
/// one runs or rests make one more, not one each; it rests a tenth of a second after copying
/// SQLite's own 1,000 pages or more, and after less up to a second (light writes pay two
/// `fsync`s a second at most), cut short once [`Checkpointer::EARLY_COMMITS`] more commits
/// came (a burst after a quiet spell would otherwise write a second's worth into the WAL
/// first). The task ends when the store is dropped.
///
/// SQLite starts the WAL over (instead of growing it) only when a writer begins after a
/// checkpoint copied every frame and no reader still reads a snapshot that needs the WAL.
/// Under steady writes neither happens by itself: the frames written during a checkpoint
/// outside the turn leave it always behind, and with two runners taking turns there is always
/// a reader of an older snapshot, and the WAL grows by the size of every write. So once the WAL holds [`Checkpointer::RESTART_FRAMES`], the checkpoint runs
/// again inside the writer's turn in `RESTART` mode: it copies the frames written meanwhile and
/// waits for the readers of older snapshots to finish, so that the next write starts the WAL
/// over. It waits [`Checkpointer::RESTART_WAIT`] at most (the checkpoint connection's busy
/// timeout), so a long read (an export, a funnel count) costs the writers that much once, not
/// its whole length; then the WAL grows on until the next try.
#[derive(Clone)]
pub(super) struct Checkpointer {
    pub(super) wake: tokio::sync::mpsc::Sender<()>,
    /// Commits so far.
    pub(super) commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpointer {
    /// The rest after a checkpoint of `BUSY_FRAMES` or more.
    pub(super) const REST_BUSY: Duration = Duration::from_millis(100);
    /// The longest rest after a checkpoint of fewer, and how often it looks at the commits.
    pub(super) const REST_LIGHT: Duration = Duration::from_secs(1);
    pub(super) const REST_POLL: Duration = Duration::from_millis(50);
    pub(super) const BUSY_FRAMES: i64 = 1_000;
    /// Commits that end a light checkpoint's rest early: a journey pass writes about 300
    /// frames, a lead from the API a few.
    pub(super) const EARLY_COMMITS: u64 = 32;
    /// SQLite's own automatic checkpoint comes at 1,000 pages; this is four times that (16 MB
    /// of 4 KiB pages).
    pub(super) const RESTART_FRAMES: i64 = 4_000;
    /// How long a `RESTART` checkpoint waits for readers of older snapshots, holding the
    /// writer's turn.
    pub(super) const RESTART_WAIT: Duration = Duration::from_millis(100);
    /// `journal_size_limit`: twice what the WAL holds when it is started over, so that steady
    /// writes reuse the file and only a burst's growth is given back.
    pub(super) const WAL_FILE_LIMIT: i64 = 32 << 20;

    pub(super) fn spawn(pool: SqlitePool, writer: std::sync::Arc<tokio::sync::Mutex<()>>) -> Checkpointer {
        use std::sync::atomic::Ordering::Relaxed;
        let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
        let commits = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let counted = commits.clone();
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                let log = Self::checkpoint(&pool, Self::PASSIVE).await.unwrap_or_default();
                if log >= Self::RESTART_FRAMES {
                    let _turn = writer.lock().await;
                    Self::checkpoint(&pool, Self::RESTART).await;
                }
                if log >= Self::BUSY_FRAMES {
                    tokio::time::sleep(Self::REST_BUSY).await;
                    continue;
                }
                let since = counted.load(Relaxed);
                let until = tokio::time::Instant::now() + Self::REST_LIGHT;
                while tokio::time::Instant::now() < until && counted.load(Relaxed) - since < Self::EARLY_COMMITS {
                    tokio::time::sleep(Self::REST_POLL).await;
                }
            }
        });
        Checkpointer { wake, commits }
    }

    pub(super) const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    pub(super) const RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";

    /// Runs a checkpoint (`PASSIVE` or `RESTART`); returns the frames in the WAL.
    pub(super) async fn checkpoint(pool: &SqlitePool, pragma: &'static str) -> Option<i64> {
        match sqlx::query_as::<_, (i64, i64, i64)>(pragma).fetch_one(pool).await {
            Ok((busy, log, copied)) => {
                tracing::debug!(pragma, busy, log, copied, "WAL checkpoint");
                Some(log)
            }
            Err(e) => {
                tracing::warn!(error = %e, "A WAL checkpoint failed; the next write tries again.");
                None
            }
        }
    }

    /// After a commit.
    pub(super) fn wake(&self) {
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Full: a checkpoint is already due, and it will copy this write's pages too.
        let _ = self.wake.try_send(());
    }
}
