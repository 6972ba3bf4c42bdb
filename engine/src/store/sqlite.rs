//! The SQLite adapter: the embedded default, one file, zero set-up. WAL mode with a busy
//! timeout; write transactions start with `BEGIN IMMEDIATE` so that two writers queue rather
//! than deadlock on a lock upgrade.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqlitePool, Transaction};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use super::handoffs::*;
use super::*;
use crate::clock::to_micros;
use crate::handoff::{Handoff, Member};

/// The sqlx database of this adapter, for the shared handoff code.
type Db = Sqlite;
/// How a read locks the rows it takes for this transaction.
const FOR_UPDATE: &str = "";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How a write transaction starts (taking the write lock at once).
const WRITE_BEGIN: &str = "BEGIN IMMEDIATE";
/// How the outbox claim skips rows another dispatcher holds.
const SKIP_LOCKED: &str = "";
/// How erasure finds the lead.
const ERASE_LOOKUP: &str = "SELECT email FROM leads WHERE id = $1";

pub struct SqliteStore {
    /// Connections for reads (and the few writes outside numbered transactions).
    pool: SqlitePool,
    writer: Writer,
}

/// What a write transaction needs, shared by the store and its staged transactions (see
/// [`Staged`]), which take their turn only when they come to write.
#[derive(Clone)]
struct Writer {
    /// The one connection numbered write transactions run on. SQLite drops a connection's page
    /// cache whenever another connection has written since it last read; writing from one
    /// connection keeps the writer's cache warm from one transaction to the next. It never
    /// checkpoints on commit: [`Checkpointer`] does that off the writer's turn.
    pool: SqlitePool,
    /// SQLite has one writer. Write transactions of this process queue here, first come first
    /// served, instead of in SQLite's busy handler, whose sleeps (1, 2, 5, … 100 ms) made the
    /// tail latency of concurrent writes tens of milliseconds. Other processes on the same
    /// file still meet the busy timeout.
    turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    checkpointer: Checkpointer,
    /// Notified when a transaction that queued messages commits (the dispatcher waits on it).
    mail: std::sync::Arc<tokio::sync::Notify>,
    /// The journey passes committed lately, by write sequence number (see `begin_checked`).
    passes: std::sync::Arc<std::sync::Mutex<PassLog>>,
}

/// The lead sets of the journey passes this process committed lately, by write sequence
/// number: a pass decided in a snapshot may still write if everything committed since was a
/// pass over other leads. Kept short: a snapshot older than the log is simply decided again.
#[derive(Default)]
struct PassLog(std::collections::VecDeque<(i64, std::sync::Arc<[i64]>)>);

impl PassLog {
    const KEEP: usize = 256;

    fn record(&mut self, seq: i64, leads: std::sync::Arc<[i64]>) {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back((seq, leads));
    }

    /// Of `leads`, those the passes numbered after `seq` wrote (each pass's leads are sorted).
    fn written_since(&self, seq: i64, leads: &[i64]) -> HashSet<i64> {
        let later: Vec<&[i64]> = self
            .0
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, theirs)| &**theirs)
            .collect();
        leads
            .iter()
            .copied()
            .filter(|id| later.iter().any(|theirs| theirs.binary_search(id).is_ok()))
            .collect()
    }

    /// Whether every write transaction numbered `after + 1 .. before` was a journey pass over
    /// none of `leads` (sorted).
    fn disjoint(&self, after: i64, before: i64, leads: &[i64]) -> bool {
        (after + 1..before).all(|seq| {
            self.0
                .iter()
                .find(|(s, _)| *s == seq)
                .is_some_and(|(_, theirs)| theirs.iter().all(|id| leads.binary_search(id).is_err()))
        })
    }
}

impl SqliteStore {
    /// The options a `sqlite://path` URL or a bare path names.
    fn options(url: &str) -> StoreResult<SqliteConnectOptions> {
        Ok(if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(url)
        })
    }

    /// The database file `url` names.
    pub fn file(url: &str) -> StoreResult<std::path::PathBuf> {
        Ok(Self::options(url)?.get_filename().to_path_buf())
    }

    /// Opens (creating if missing) the database file a `sqlite://path` URL or a bare path names.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = Self::options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory")
            // When the WAL starts over, its file is cut back to this size: a burst that grew it
            // does not keep its disk space.
            .pragma("journal_size_limit", Checkpointer::WAL_FILE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        // Kept open for the store's life: a new connection would start with a cold cache.
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        // Its own connection, whose busy timeout bounds how long a `RESTART` checkpoint waits
        // for readers.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.busy_timeout(Checkpointer::RESTART_WAIT))
            .await?;
        let turn = std::sync::Arc::<tokio::sync::Mutex<()>>::default();
        Ok(Self {
            writer: Writer {
                checkpointer: Checkpointer::spawn(checkpoints, turn.clone()),
                mail: Default::default(),
                pool: write_pool,
                turn,
                passes: Default::default(),
            },
            pool,
        })
    }

    /// A numbered write transaction (see `Writer::numbered_tx`), for writes outside the `Tx` port.
    async fn write_tx(&self) -> StoreResult<WriteTx> {
        Ok(self.writer.numbered_tx().await?.0)
    }
}

impl Writer {
    /// A write transaction with the next write sequence number: what every write that changes
    /// what a journey pass reads (leads, their tags, events and ledger, enrollments, messages,
    /// suppressions, campaigns) runs in.
    async fn numbered_tx(&self) -> StoreResult<(WriteTx, i64)> {
        let mut tx = self.pool.begin_with(WRITE_BEGIN).await?;
        let seq: i64 = sqlx::query_scalar("UPDATE write_seq SET seq = seq + 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?;
        Ok((
            WriteTx {
                tx,
                checkpointer: self.checkpointer.clone(),
            },
            seq,
        ))
    }

    /// The write transaction numbered `seq`, of the journey pass over `leads` if any.
    fn pass(&self, seq: i64, leads: Option<std::sync::Arc<[i64]>>) -> Pass {
        Pass {
            seq,
            leads,
            log: self.passes.clone(),
            checkpointer: self.checkpointer.clone(),
            mail: self.mail.clone(),
        }
    }

    /// This process's turn to write and the transaction numbered after `since`, with its pass
    /// over `leads`, if every write numbered between was a pass of this process over other
    /// leads; `None` (the transaction rolled back) if not.
    async fn begin_checked(
        &self,
        since: i64,
        leads: std::sync::Arc<[i64]>,
    ) -> StoreResult<Option<(tokio::sync::OwnedMutexGuard<()>, Transaction<'static, Sqlite>, Pass)>> {
        let turn = self.turn.clone().lock_owned().await;
        let (tx, next) = self.numbered_tx().await?;
        // Passes of this process record themselves before they give up the writer's turn, so
        // every pass numbered before `next` is in the log by now; any other writer is not.
        let fresh = self
            .passes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .disjoint(since, next, &leads);
        if !fresh {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some((turn, tx.tx, self.pass(next, Some(leads)))))
    }

    /// `n` ids of an AUTOINCREMENT table for a staged pass, in a turn of their own: usually one
    /// statement ([`bump_sequence`]), else a transaction of [`reserve_ids`].
    async fn reserve(&self, table: &'static str, n: usize) -> StoreResult<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let _turn = self.turn.lock().await;
        let mut conn = self.pool.acquire().await?;
        if let Some(ids) = bump_sequence(&mut conn, table, n).await? {
            return Ok(ids);
        }
        let mut tx = sqlx::Connection::begin_with(&mut *conn, WRITE_BEGIN).await?;
        let ids = reserve_ids(&mut tx, table, n).await?;
        tx.commit().await?;
        Ok(ids)
    }
}

/// A numbered write transaction on the writer connection. It derefs to the connection, as a
/// sqlx transaction does; committing it wakes the checkpointer.
struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    checkpointer: Checkpointer,
}

impl WriteTx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.checkpointer.wake();
        Ok(())
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Copies committed pages from the WAL into the database file (a `PASSIVE` checkpoint) after
/// writes, on a connection of its own and outside the writer's turn. SQLite's automatic
/// checkpoint ran inside the commit that crossed 1,000 pages, with its two `fsync`s, while the
/// next writer waited: in `bench engine` a tenth of commits took 9-13 ms instead of about one.
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
/// a reader of an older snapshot (the WAL grew to 110 MB in `bench engine`, and to 116 MB with a
/// million leads). So once the WAL holds [`Checkpointer::RESTART_FRAMES`], the checkpoint runs
/// again inside the writer's turn in `RESTART` mode: it copies the frames written meanwhile and
/// waits for the readers of older snapshots to finish, so that the next write starts the WAL
/// over. It waits [`Checkpointer::RESTART_WAIT`] at most (the checkpoint connection's busy
/// timeout), so a long read (an export, a funnel count) costs the writers that much once, not
/// its whole length; then the WAL grows on until the next try.
#[derive(Clone)]
struct Checkpointer {
    wake: tokio::sync::mpsc::Sender<()>,
    /// Commits so far.
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpointer {
    /// The rest after a checkpoint of `BUSY_FRAMES` or more.
    const REST_BUSY: Duration = Duration::from_millis(100);
    /// The longest rest after a checkpoint of fewer, and how often it looks at the commits.
    const REST_LIGHT: Duration = Duration::from_secs(1);
    const REST_POLL: Duration = Duration::from_millis(50);
    const BUSY_FRAMES: i64 = 1_000;
    /// Commits that end a light checkpoint's rest early: a journey pass writes about 300
    /// frames, a lead from the API a few.
    const EARLY_COMMITS: u64 = 32;
    /// SQLite's own automatic checkpoint comes at 1,000 pages; this is four times that (16 MB
    /// of 4 KiB pages).
    const RESTART_FRAMES: i64 = 4_000;
    /// How long a `RESTART` checkpoint waits for readers of older snapshots, holding the
    /// writer's turn.
    const RESTART_WAIT: Duration = Duration::from_millis(100);
    /// `journal_size_limit`: twice what the WAL holds when it is started over, so that steady
    /// writes reuse the file and only a burst's growth is given back.
    const WAL_FILE_LIMIT: i64 = 32 << 20;

    fn spawn(pool: SqlitePool, writer: std::sync::Arc<tokio::sync::Mutex<()>>) -> Checkpointer {
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

    const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    const RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";

    /// Runs a checkpoint (`PASSIVE` or `RESTART`); returns the frames in the WAL.
    async fn checkpoint(pool: &SqlitePool, pragma: &'static str) -> Option<i64> {
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
    fn wake(&self) {
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Full: a checkpoint is already due, and it will copy this write's pages too.
        let _ = self.wake.try_send(());
    }
}

/// Lead ids in order, as the pass log keeps them.
fn sorted(leads: &[i64]) -> std::sync::Arc<[i64]> {
    let mut sorted = leads.to_vec();
    sorted.sort_unstable();
    sorted.into()
}

/// Reads in the hot path aggregate their rows into one JSON array: sqlx hands SQLite rows over
/// one at a time from its worker thread, which costs more than parsing one string. A lead is an
/// array of its columns in [`LeadRow`]'s order (serde reads a struct from a sequence), not an
/// object: no 27 keys to write and parse for every lead.
static SELECT_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} FROM leads WHERE id IN (SELECT value FROM json_each($1) \
         UNION SELECT id FROM leads WHERE email IN (SELECT value FROM json_each($2)) \
         UNION SELECT id FROM leads WHERE external_id IN (SELECT value FROM json_each($3)))",
        *LEADS_AS_JSON
    )
});

/// Leads by id alone, as every pass reads them: a join over the ids (see [`id_set`]), in id
/// order, with no `UNION` and no temporary b-tree of ids.
static SELECT_LEADS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} FROM {WANTED} CROSS JOIN leads ON id = i.wanted", *LEADS_AS_JSON));

/// The aggregate that both lead reads select.
static LEADS_AS_JSON: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = LEAD_COLUMNS
        .iter()
        .map(|(c, ty)| {
            if *ty == "jsonb" {
                format!("json({c})")
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    format!("SELECT json_group_array(json_array({}))", columns.join(", "))
});

static WRITE_LEADS: LazyLock<String> = LazyLock::new(|| {
    let cols = lead_column_list();
    let values: Vec<String> = LEAD_COLUMNS
        .iter()
        .map(|(c, ty)| {
            if *ty == "jsonb" {
                format!("json(j.value->'{c}')")
            } else {
                format!("j.value->>'{c}'")
            }
        })
        .collect();
    let updates: Vec<String> = LEAD_COLUMNS
        .iter()
        .skip(1)
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO leads ({cols}) SELECT {} FROM jsonb_each(jsonb($1)) AS j WHERE true \
         ON CONFLICT (id) DO UPDATE SET {}",
        values.join(", "),
        updates.join(", ")
    )
});

static LIST_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM leads WHERE id > $1 AND ($2 IS NULL OR stage = $2) \
         AND ($3 IS NULL OR id IN (SELECT lead_id FROM lead_tags WHERE tag = $3)) \
         AND ($4 IS NULL OR lower(coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(company, '')) LIKE $4 ESCAPE '\\') \
         ORDER BY id LIMIT $5",
        lead_column_list()
    )
});

const TIMELINE: [(TimelineKind, &str); 6] = [
    (
        TimelineKind::Event,
        "SELECT id, occurred_at, json_object('type', type, 'properties', json(properties), 'source', source, 'received_at', received_at) \
         FROM events WHERE lead_id = $1 AND (occurred_at < $2 OR (occurred_at = $2 AND id < $3)) ORDER BY occurred_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::TagChange,
        "SELECT id, at, json_object('tag', tag, 'family', family, 'change', CASE WHEN added THEN 'added' ELSE 'removed' END, 'by', json_object('kind', actor_kind, 'name', actor)) \
         FROM tag_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::ScoreChange,
        "SELECT id, at, json_object('delta', delta, 'reason', reason, 'rule', rule, 'by', json_object('kind', actor_kind, 'name', actor)) \
         FROM score_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Handoff,
        "SELECT id, created_at, json_object('queue', queue, 'reason', reason, 'priority', priority, 'origin', origin, 'status', status, 'handoff_id', CAST(id AS TEXT), 'claimed_by', claimed_by, 'reject_reason', reject_reason) \
         FROM handoffs WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::CampaignStep,
        "SELECT id, at, json_object('campaign', campaign_id, 'enrollment', enrollment_id, 'step', step, 'outcome', outcome, 'detail', detail) \
         FROM journey WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Message,
        "SELECT id, created_at, json_object('message', id, 'campaign', campaign_id, 'step', step, 'channel', channel, 'template', template, 'status', status, 'reason', reason, 'sent_at', sent_at) \
         FROM messages WHERE enrollment_id IN (SELECT id FROM enrollments WHERE lead_id = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
];

/// The most rows one statement of a multi-row write holds. The engine's step writes bind their
/// values (`INSERT … VALUES (…), (…)`) instead of unpacking a JSON batch: measured on the
/// journey table, 1.5 µs a row against 4.7 µs for `jsonb_each` over objects, and no JSON to
/// build. A pass of 1,000 leads writes each table in one statement: every statement is a
/// round trip to the connection's thread, and with two passes in flight on two cores each trip
/// waited about 0.1 ms to be scheduled (`perf sched latency`), which made a pass's write, at
/// 128 rows a statement (44 statements), half waiting.
const VALUES_MAX: usize = 1024;

/// SQLite's limit on bound parameters in one statement (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_PARAMS: usize = 32_766;

/// The rows of the statement that writes a chunk of `n`: the next power of four, so that a
/// table has at most six statement shapes, and a pass's text (its tables' statements run
/// together, see [`Staged`]) one of few that the writer's statement cache keeps prepared. The rows past `n` are padding (see [`values_sql`]).
fn statement_rows(n: usize) -> usize {
    let mut rows = 1;
    while rows < n {
        rows *= 4;
    }
    rows
}

/// `rows` cut into chunks of the most rows a statement of `columns` values a row may hold.
fn value_chunks<T>(rows: &[T], columns: usize) -> std::slice::Chunks<'_, T> {
    let mut most = VALUES_MAX;
    while most > 1 && most * columns > MAX_PARAMS {
        most /= 4;
    }
    rows.chunks(most)
}

/// `head VALUES (?, …), (?, …) tail;` for every chunk of `rows`, appended to `sql`, each row
/// `columns` values that `push` binds, the list padded with rows of NULLs up to
/// [`statement_rows`]. `head` and `tail` drop the padding: an update joins on the first column
/// (`… FROM (VALUES …) AS v WHERE t.id = v.column1`, and NULL matches nothing); an insert
/// selects from the list (`INSERT INTO t (…) SELECT * FROM (VALUES …) WHERE column1 IS NOT
/// NULL`), so the first column of a real row is never NULL.
///
/// This is the hot write of every engine batch, so it binds without sqlx's `QueryBuilder`: the
/// text has plain `?` placeholders (no number to format for each), and values are handed over
/// without copies (see [`Binds`]).
fn values_sql<T>(
    sql: &mut String,
    binds: &mut Binds,
    head: &str,
    tail: &str,
    columns: usize,
    rows: &[T],
    push: impl Fn(&mut Binds, &T),
) -> StoreResult<()> {
    debug_assert!(
        head.contains("column1") || tail.contains("column1"),
        "a padded write must drop its padding: {head} … {tail}"
    );
    debug_assert!(
        !head.contains('$') && !tail.contains('$'),
        "staged statements take `?` parameters: {head} … {tail}"
    );
    for chunk in value_chunks(rows, columns) {
        let size = statement_rows(chunk.len());
        // No spaces: sqlx hashes and compares the whole text to find the prepared statement,
        // and at 1,024 rows a pass's text runs to about 100 KB.
        sql.reserve(head.len() + tail.len() + 10 + size * (columns * 2 + 2));
        sql.push_str(head);
        sql.push_str("VALUES ");
        let row_text = {
            let mut row = String::with_capacity(columns * 2 + 2);
            row.push('(');
            for c in 0..columns {
                row.push_str(if c == 0 { "?" } else { ",?" });
            }
            row.push(')');
            row
        };
        for i in 0..size {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&row_text);
        }
        sql.push_str(tail);
        sql.push_str(";\n");
        let before = sqlx::Arguments::len(&binds.args);
        sqlx::Arguments::reserve(&mut binds.args, size * columns, 0);
        for row in chunk {
            push(binds, row);
        }
        for _ in 0..(size - chunk.len()) * columns {
            binds.opt_int(None);
        }
        let bound = sqlx::Arguments::len(&binds.args) - before;
        if bound != size * columns {
            return Err(StoreError::Corrupt(format!(
                "{bound} values bound for {size} rows of {columns} columns"
            )));
        }
    }
    Ok(())
}

/// The values of one or more statements, in order. sqlx copies a bound `&str` into a new `String`
/// in a new `Arc`; here a short string that recurs from row to row (campaign id, step, status)
/// is one shared `Arc<str>` for the whole write, and any other string costs one allocation.
#[derive(Default)]
struct Binds {
    args: sqlx::sqlite::SqliteArguments,
    shared: Vec<std::sync::Arc<str>>,
    error: Option<sqlx::error::BoxDynError>,
}

/// How many recurring strings one write keeps to share; past that, each costs an allocation.
const SHARED_NAMES: usize = 32;

impl Binds {
    fn add<V: sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite> + 'static>(&mut self, value: V) -> &mut Self {
        use sqlx::Arguments;
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        self
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.add(value)
    }

    fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        self.add(value)
    }

    /// A string that recurs across rows (an id, a name, a status). A write has a handful of
    /// them, so a short list searched in order beats hashing each value.
    fn name(&mut self, value: &str) -> &mut Self {
        let shared = match self.shared.iter().find(|known| ***known == *value) {
            Some(known) => known.clone(),
            None => {
                let new: std::sync::Arc<str> = value.into();
                if self.shared.len() < SHARED_NAMES {
                    self.shared.push(new.clone());
                }
                new
            }
        };
        self.add(shared)
    }

    /// Runs `sql` (one statement or several) with these values.
    async fn execute(self, sql: String, conn: &mut sqlx::SqliteConnection) -> StoreResult<()> {
        if let Some(e) = self.error {
            return Err(StoreError::Corrupt(format!("a value could not be bound: {e}")));
        }
        sqlx::query_with(AssertSqlSafe(sql), self.args)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// A string of this row alone (a detail, a reason).
    fn text(&mut self, value: &str) -> &mut Self {
        self.add(std::sync::Arc::<str>::from(value))
    }

    fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        self.add(value.map(std::sync::Arc::<str>::from))
    }
}

fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The ids a hot read joins over, bound as `$1` ([`id_set`]): `FROM {WANTED} CROSS JOIN t ON
/// key = i.wanted`. Its one column, `wanted`, leaves the table's own names unambiguous.
const WANTED: &str = "(SELECT value AS wanted FROM json_each($1)) AS i";

/// Ids sorted and without repeats, as one JSON array, for the hot reads that join over them
/// ([`WANTED`]). `key IN (SELECT value FROM json_each(…))` first copies the ids into a
/// temporary b-tree; the join reads the array as it stands and looks each id up in order. Measured on 1,000 ids against 100,000 rows: about 0.25 µs an id
/// less by rowid, 0.06 µs by an index.
fn id_set(ids: &[i64]) -> String {
    let mut set = ids.to_vec();
    set.sort_unstable();
    set.dedup();
    json_ids(&set)
}

fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

store_impl!(SqliteStore {
    async fn mail_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        // One process writes a SQLite file's mail (others are tools: import, migrate).
        self.writer.mail.clone()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn finish_messages(&self, outcomes: &[MessageOutcome]) -> StoreResult<()> {
        if let Some(json) = json_batch(outcomes) {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "UPDATE messages SET status = j.value->>'status', reason = j.value->>'reason', \
                 sent_at = j.value->>'sent_at', next_attempt_at = j.value->>'next_attempt_at', \
                 attempts = attempts - j.value->>'refund' \
                 FROM jsonb_each(jsonb($1)) AS j WHERE messages.id = j.value->>'id'",
            )
            .bind(json)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let turn = self.writer.turn.clone().lock_owned().await;
        let (tx, seq) = self.writer.numbered_tx().await?;
        Ok(Box::new(SqliteTx::new(tx.tx, Some(turn), Some(self.writer.pass(seq, None)))))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx::new(self.pool.begin().await?, None, None)))
    }

    async fn begin_snapshot(&self) -> StoreResult<Option<Snapshot>> {
        let mut tx = self.pool.begin().await?;
        // The first read starts the snapshot, so the number is the snapshot's own.
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM write_seq").fetch_one(&mut *tx).await?;
        Ok(Some(Snapshot {
            tx: Box::new(SqliteTx::new(tx, None, None)),
            seq,
        }))
    }

    async fn begin_checked(&self, seq: i64, leads: &[i64]) -> StoreResult<Option<Box<dyn Tx>>> {
        // Staged: the writes are bound outside the writer's turn (see `Staged`).
        Ok(Some(Box::new(SqliteTx {
            tx: None,
            turn: None,
            pass: None,
            frozen: None,
            staged: Some(Staged {
                writer: self.writer.clone(),
                since: seq,
                leads: sorted(leads),
                sql: String::new(),
                binds: Binds::default(),
            }),
            queued_mail: false,
        })))
    }

    fn written_since(&self, seq: i64, leads: &[i64]) -> HashSet<i64> {
        self.writer
            .passes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written_since(seq, leads)
    }

    async fn next_wake(&self, paused: &[String]) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(wake_at) FROM enrollments WHERE status = 'waiting' \
             AND campaign_id NOT IN (SELECT value FROM json_each($1))",
        )
        .bind(json_strings(paused))
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(from_micros))
    }

    async fn refresh_statistics(&self) -> StoreResult<Vec<String>> {
        // SQLite plans these queries from their indexes, with no gathered statistics.
        Ok(Vec::new())
    }

    async fn decay(&self, decay: Decay, now: DateTime<Utc>) -> StoreResult<u64> {
        let cutoff = to_micros(now) - decay.every.secs() * 1_000_000;
        let mut tx = self.write_tx().await?;
        const DUE: &str = "score > 0 AND MAX(COALESCE(last_activity_at, created_at), COALESCE(last_decay_at, 0)) <= $1";
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) \
             SELECT id, -((score * $2 + 99) / 100), 'decay', 'system', 'decay', NULL, $3, $3 FROM leads WHERE {DUE}"
        )))
        .bind(cutoff)
        .bind(decay.percent)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE leads SET score = score - ((score * $2 + 99) / 100), last_decay_at = $3, updated_at = $3 WHERE {DUE}"
        )))
        .bind(cutoff)
        .bind(decay.percent)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

});

/// A transaction, and for a write transaction this process's turn to write (held until the
/// transaction is dropped) and its write sequence number; then the frozen campaigns once read
/// (a transaction sees one snapshot, and no `Tx` method changes a campaign's status, so a pass
/// that asks twice makes one round trip).
struct SqliteTx {
    /// `None` while staged, and after a staged pass found its snapshot out of date.
    tx: Option<Transaction<'static, Sqlite>>,
    #[allow(dead_code)]
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    pass: Option<Pass>,
    frozen: Option<Vec<String>>,
    staged: Option<Staged>,
    /// It queued messages: the dispatcher is woken when it commits.
    queued_mail: bool,
}

/// The writes of a journey pass decided in a snapshot, bound before it takes the writer's turn.
/// Binding a pass's rows (about 3 ms for 1,000 leads) used to happen inside the turn, with
/// every statement a round trip to the writer connection's thread; staged, the turn is
/// `BEGIN`, the write sequence number, one multi-statement execution and `COMMIT`: 8.2 ms a
/// pass in `bench engine` W2 against about 11.5 ms, which is what every other writer waits
/// behind. (The bench's steps/s did not change: it was CPU-bound on two cores already.) The
/// statements use `?` parameters only: sqlx binds a multi-statement text's values in order,
/// statement after statement, where `$1` would name the first value of the whole text.
struct Staged {
    writer: Writer,
    /// The write sequence number of the snapshot the pass was decided in.
    since: i64,
    leads: std::sync::Arc<[i64]>,
    sql: String,
    binds: Binds,
}

/// A write transaction's number, and if it is a journey pass, the leads it writes (sorted):
/// recorded in the pass log when it commits, which also wakes the checkpointer.
struct Pass {
    seq: i64,
    leads: Option<std::sync::Arc<[i64]>>,
    log: std::sync::Arc<std::sync::Mutex<PassLog>>,
    checkpointer: Checkpointer,
    mail: std::sync::Arc<tokio::sync::Notify>,
}

impl SqliteTx {
    fn new(
        tx: Transaction<'static, Sqlite>,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        pass: Option<Pass>,
    ) -> Self {
        SqliteTx {
            tx: Some(tx),
            turn,
            pass,
            frozen: None,
            staged: None,
            queued_mail: false,
        }
    }

    /// The transaction's connection; a staged transaction takes its turn here and runs what it
    /// staged first.
    async fn conn(&mut self) -> StoreResult<&mut sqlx::SqliteConnection> {
        if let Some(staged) = self.staged.take() {
            let Staged {
                writer,
                since,
                leads,
                sql,
                binds,
            } = staged;
            let Some((turn, mut tx, pass)) = writer.begin_checked(since, leads).await? else {
                return Err(StoreError::Stale);
            };
            if !sql.is_empty() {
                binds.execute(sql, &mut tx).await?;
            }
            (self.tx, self.turn, self.pass) = (Some(tx), Some(turn), Some(pass));
        }
        match &mut self.tx {
            Some(tx) => Ok(&mut **tx),
            None => Err(StoreError::Stale),
        }
    }

    /// Writes `rows` through [`values_sql`], at once or, staged, at the turn.
    async fn write_values<T>(
        &mut self,
        head: &str,
        tail: &str,
        columns: usize,
        rows: &[T],
        push: impl Fn(&mut Binds, &T),
    ) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(staged) = &mut self.staged {
            return values_sql(&mut staged.sql, &mut staged.binds, head, tail, columns, rows, push);
        }
        let (mut sql, mut binds) = (String::new(), Binds::default());
        values_sql(&mut sql, &mut binds, head, tail, columns, rows, push)?;
        binds.execute(sql, self.conn().await?).await
    }

    /// One statement with `?` parameters that `bind` binds, at once or, staged, at the turn.
    async fn write(&mut self, statement: &str, bind: impl FnOnce(&mut Binds)) -> StoreResult<()> {
        debug_assert!(
            !statement.contains('$'),
            "staged statements take `?` parameters: {statement}"
        );
        if let Some(staged) = &mut self.staged {
            staged.sql.push_str(statement);
            staged.sql.push_str(";\n");
            bind(&mut staged.binds);
            return Ok(());
        }
        let mut binds = Binds::default();
        bind(&mut binds);
        binds.execute(statement.to_owned(), self.conn().await?).await
    }
}

pacing::pacing_impl!(SqliteTx {
    async fn suppressions(&mut self, email_hashes: &[String]) -> StoreResult<Vec<pacing::Suppression>> {
        let mut wanted: Vec<&str> = email_hashes.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let wanted = serde_json::to_string(&wanted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM {WANTED} CROSS JOIN mail_suppressions ON email_hash = i.wanted",
            pacing::SUPPRESSION_COLUMNS
        )))
        .bind(wanted)
        .fetch_all(self.conn().await?)
        .await?)
    }
});

handoff_impl!(SqliteStore, SqliteTx {
    async fn claim_many(&mut self, queue: &str, members: &[String], now: i64) -> StoreResult<Vec<Option<Handoff>>> {
        // The n-th open handoff (in claim order) goes to the n-th member, in one statement.
        // RETURNING sees only the handoff, so each comes back to its member's next slot.
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH asked(member, n) AS (SELECT value, key + 1 FROM json_each($2)), \
             cand(cid, n) AS (SELECT id, row_number() OVER (ORDER BY priority DESC, created_at, id) FROM \
               (SELECT id, priority, created_at FROM handoffs WHERE queue = $1 AND status = 'open' AND assigned_to IS NULL \
                ORDER BY priority DESC, created_at, id LIMIT $3)) \
             UPDATE handoffs SET status = 'claimed', claimed_by = m.member, claimed_at = $4, updated_at = $4 \
             FROM (SELECT cand.cid, asked.member FROM cand JOIN asked USING (n)) AS m \
             WHERE handoffs.id = m.cid RETURNING {HANDOFF_COLUMNS}"
        )))
        .bind(queue)
        .bind(json_strings(members))
        .bind(members.len() as i64)
        .bind(now)
        .fetch_all(self.conn().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        let mut out: Vec<Option<Handoff>> = vec![None; members.len()];
        for handoff in handoffs_from(rows)? {
            let slot = (0..members.len())
                .find(|i| out[*i].is_none() && handoff.claimed_by.as_deref() == Some(members[*i].as_str()));
            if let Some(slot) = slot {
                out[slot] = Some(handoff);
            }
        }
        Ok(out)
    }
});

/// Reserves `n` ids of an AUTOINCREMENT table. Inside BEGIN IMMEDIATE no other writer runs, so
/// the ids after the sequence are ours; the sequence row is moved past them at once so later
/// reservations in this transaction do not hand them out again.
async fn reserve_ids(tx: &mut sqlx::SqliteConnection, table: &'static str, n: usize) -> StoreResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Some(ids) = bump_sequence(tx, table, n).await? {
        return Ok(ids);
    }
    // No sequence row yet: the table has never had one.
    let last: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COALESCE(MAX(id), 0) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    let end = last + n as i64;
    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
        .bind(table)
        .bind(end)
        .execute(&mut *tx)
        .await?;
    Ok((last + 1..=end).collect())
}

/// Moves a table's sequence `n` ids on in one statement (atomic by itself, even outside a
/// transaction) and returns the ids passed over; `None` if the table has no sequence row yet.
async fn bump_sequence(
    conn: &mut sqlx::SqliteConnection,
    table: &'static str,
    n: usize,
) -> StoreResult<Option<Vec<i64>>> {
    let end: Option<i64> = sqlx::query_scalar("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = ? RETURNING seq")
        .bind(n as i64)
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(end.map(|end| (end - n as i64 + 1..=end).collect()))
}

#[async_trait]
impl Tx for SqliteTx {
    async fn find_leads(&mut self, ids: &[i64], emails: &[String], external_ids: &[String]) -> StoreResult<Vec<Lead>> {
        let rows: Option<String> = if emails.is_empty() && external_ids.is_empty() {
            sqlx::query_scalar(AssertSqlSafe(SELECT_LEADS_BY_ID.as_str()))
                .bind(id_set(ids))
                .fetch_one(self.conn().await?)
                .await?
        } else {
            sqlx::query_scalar(AssertSqlSafe(SELECT_LEADS.as_str()))
                .bind(json_ids(ids))
                .bind(json_strings(emails))
                .bind(json_strings(external_ids))
                .fetch_one(self.conn().await?)
                .await?
        };
        json_rows_into(
            rows,
            ids.len() + emails.len() + external_ids.len(),
            <Lead as TryFrom<LeadRow>>::try_from,
        )
    }

    async fn view_leads(&mut self, ids: &[i64]) -> StoreResult<Vec<Lead>> {
        // One writer: reading locks nothing here.
        self.find_leads(ids, &[], &[]).await
    }

    async fn reserve_lead_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        reserve_ids(self.conn().await?, "leads", n).await
    }

    async fn write_leads(&mut self, leads: &[Lead]) -> StoreResult<()> {
        for chunk in leads.chunks(5_000) {
            let rows: Vec<LeadRow> = chunk.iter().map(LeadRow::from).collect();
            sqlx::query(AssertSqlSafe(WRITE_LEADS.as_str()))
                .bind(serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .execute(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn write_lead_activity(&mut self, leads: &[ActivityRow]) -> StoreResult<()> {
        self.write_values(
            "UPDATE leads SET score = v.column2, stage = v.column3, last_activity_at = v.column4, updated_at = v.column5 FROM (",
            ") AS v WHERE leads.id = v.column1",
            5,
            leads,
            |b, r| {
                b.int(r.id)
                    .int(r.score)
                    .name(r.stage)
                    .opt_int(r.last_activity_at)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn load_tags(&mut self, ids: &[i64]) -> StoreResult<Vec<(i64, String, TagFamily)>> {
        let rows: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT json_group_array(json_array(lead_id, tag, family)) FROM {WANTED} CROSS JOIN lead_tags ON lead_id = i.wanted")))
                .bind(id_set(ids))
                .fetch_one(self.conn().await?)
                .await?;
        let rows: Vec<(i64, String, String)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t, f)| TagFamily::parse(&f).map(|f| (id, t, f)))
            .collect())
    }

    async fn load_enrollments(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Enrollment>> {
        // One JSON row, not a row each through sqlx's worker channel (see `json_rows`), by lead
        // and then by id: the join walks the sorted leads through `enrollments_lead`.
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(json_array({ENROLLMENT_COLUMNS})) \
             FROM {WANTED} CROSS JOIN enrollments ON lead_id = i.wanted"
        )))
        .bind(id_set(lead_ids))
        .fetch_one(self.conn().await?)
        .await?;
        json_rows_into(rows, lead_ids.len(), EnrollmentRow::into_enrollment)
    }

    async fn due_leads(&mut self, now: i64, paused: &[String], busy: &[i64], limit: i64) -> StoreResult<Vec<i64>> {
        // The earliest due enrollments by the wake-up index (no grouping: that would read every
        // due row for each batch), as one JSON row (see `json_rows`): a row each through sqlx's
        // worker channel cost about a microsecond a lead, four times the query's own work. The
        // index holds the lead, so with no campaign paused no enrollment row is read at all.
        let campaigns = if paused.is_empty() {
            ""
        } else {
            "AND campaign_id NOT IN (SELECT value FROM json_each($4))"
        };
        let mut query = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(lead_id ORDER BY wake_at, id) FROM (\
             SELECT lead_id, wake_at, id FROM enrollments WHERE status = 'waiting' AND wake_at <= $1 \
             AND lead_id NOT IN (SELECT value FROM json_each($3)) {campaigns} ORDER BY wake_at LIMIT $2)"
        )))
        .bind(now)
        .bind(limit)
        .bind(json_ids(busy));
        if !paused.is_empty() {
            query = query.bind(json_strings(paused));
        }
        let leads: Option<String> = query.fetch_one(self.conn().await?).await?;
        Ok(distinct(json_rows(leads)?))
    }

    async fn take_free_leads(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Lead>> {
        self.find_leads(lead_ids, &[], &[]).await
    }

    async fn frozen_campaigns(&mut self) -> StoreResult<Vec<String>> {
        if let Some(frozen) = &self.frozen {
            return Ok(frozen.clone());
        }
        let frozen: Vec<String> = sqlx::query_scalar("SELECT id FROM campaigns WHERE status <> 'active' ORDER BY id")
            .fetch_all(self.conn().await?)
            .await?;
        self.frozen = Some(frozen.clone());
        Ok(frozen)
    }

    async fn campaign_source(&mut self, id: &str, version: &str) -> StoreResult<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT file, source FROM campaign_versions WHERE campaign_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(self.conn().await?)
                .await?,
        )
    }

    async fn reserve_enrollment_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        if let Some(staged) = &self.staged {
            return staged.writer.reserve("enrollments", n).await;
        }
        reserve_ids(self.conn().await?, "enrollments", n).await
    }

    async fn write_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        let rows: Vec<EnrollmentRow> = rows.iter().map(EnrollmentRow::from).collect();
        self.write_values(
            "INSERT INTO enrollments (id, campaign_id, version, lead_id, step, status, wake_at, outcome, transitions, entered_at, updated_at) \
             SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, \
             outcome = excluded.outcome, transitions = excluded.transitions, updated_at = excluded.updated_at",
            11,
            &rows,
            |b, r| {
                b.int(r.id)
                    .name(&r.campaign_id)
                    .name(&r.version)
                    .int(r.lead_id)
                    .name(&r.step)
                    .name(&r.status)
                    .opt_int(r.wake_at)
                    .opt_text(r.outcome.as_deref())
                    .int(r.transitions)
                    .int(r.entered_at)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn move_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        // Setting `status`, even to the same value, makes SQLite rewrite the entries of both
        // indexes whose condition names it: measured on 100,000 enrollments, 1.5-2.3 µs a row
        // without it against 3-4.8 µs with it.
        let rows: Vec<EnrollmentRow> = rows.iter().map(EnrollmentRow::from).collect();
        self.write_values(
            "UPDATE enrollments SET step = v.column2, wake_at = v.column3, outcome = v.column4, \
             transitions = v.column5, updated_at = v.column6 FROM (",
            ") AS v WHERE enrollments.id = v.column1",
            6,
            &rows,
            |b, r| {
                b.int(r.id)
                    .name(&r.step)
                    .opt_int(r.wake_at)
                    .opt_text(r.outcome.as_deref())
                    .int(r.transitions)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn write_journey(&mut self, rows: &[JourneyRow]) -> StoreResult<()> {
        if !rows.is_empty() {
            self.write_values(
                "INSERT INTO journey_moves (enrollment_id, lead_id, campaign_id, at, steps) SELECT * FROM (",
                ") WHERE column1 IS NOT NULL",
                5,
                &journey_moves(rows)?,
                |b, m| {
                    b.int(m.enrollment_id)
                        .int(m.lead_id)
                        .name(m.campaign_id)
                        .int(m.at)
                        .text(&m.steps);
                },
            )
            .await?;
            // One writer at a time on SQLite: one shard.
            let deltas =
                serde_json::to_string(&step_count_deltas(rows)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.write(
                "INSERT INTO step_counts (campaign_id, step, outcome, shard, entered, lines) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, 0, j.value->>3, j.value->>4 FROM json_each(?) AS j WHERE true \
                 ON CONFLICT (campaign_id, step, outcome, shard) DO UPDATE SET \
                 entered = step_counts.entered + excluded.entered, lines = step_counts.lines + excluded.lines",
                |b| {
                    b.add(deltas);
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<()> {
        self.queued_mail |= !rows.is_empty();
        self.write_values(
            "INSERT INTO messages (enrollment_id, seq, lead_id, campaign_id, version, step, channel, template, status, reason, next_attempt_at, created_at) \
             SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (enrollment_id, seq) DO NOTHING",
            12,
            rows,
            |b, r| {
                b.int(r.enrollment_id)
                    .int(r.seq)
                    .int(r.lead_id)
                    .name(&r.campaign_id)
                    .name(&r.version)
                    .name(&r.step)
                    .name(&r.channel)
                    .name(&r.template)
                    .name(&r.status)
                    .opt_text(r.reason.as_deref())
                    .opt_int(r.next_attempt_at)
                    .int(r.created_at);
            },
        )
        .await
    }

    async fn load_messages(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<SentMessage>> {
        // By enrollment and then by seq, the order they were made in: the join walks the sorted
        // enrollments through the messages' unique (enrollment_id, seq).
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(json_array(enrollment_id, id, step)) \
             FROM {WANTED} CROSS JOIN messages ON enrollment_id = i.wanted"
        )))
        .bind(id_set(enrollment_ids))
        .fetch_one(self.conn().await?)
        .await?;
        json_rows(rows)
    }

    async fn load_events(
        &mut self,
        ids: &[i64],
        needs: &[(String, Option<i64>)],
    ) -> StoreResult<Vec<(i64, EventFact)>> {
        // The needs are read out of their JSON once, not for every event they are held against.
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH n(type, since) AS MATERIALIZED (SELECT value->>'type', value->>'since' FROM json_each($2)) \
             SELECT json_group_array(json_array(e.lead_id, e.type, e.occurred_at, json(e.properties))) \
             FROM {WANTED} CROSS JOIN events e ON e.lead_id = i.wanted \
             CROSS JOIN n ON e.type = n.type AND e.occurred_at >= n.since"
        )))
        .bind(id_set(ids))
        .bind(event_needs_json(needs))
        .fetch_one(self.conn().await?)
        .await?;
        let rows: Vec<(i64, String, i64, Map<String, Value>)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, at, properties)| {
                (
                    id,
                    EventFact {
                        kind,
                        occurred_at: from_micros(at),
                        properties,
                    },
                )
            })
            .collect())
    }

    async fn load_cap_usage(
        &mut self,
        ids: &[i64],
        rules: &[String],
        since: i64,
    ) -> StoreResult<Vec<(i64, String, i64, i64)>> {
        let rows: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(lead_id, rule, occurred_at, delta)) FROM score_changes \
             WHERE lead_id IN (SELECT value FROM json_each($1)) AND rule IN (SELECT value FROM json_each($2)) AND occurred_at >= $3",
        )
        .bind(json_ids(ids))
        .bind(json_strings(rules))
        .bind(since)
        .fetch_one(self.conn().await?)
        .await?;
        json_rows(rows)
    }

    async fn suppressed(&mut self, email_hashes: &[String]) -> StoreResult<HashSet<String>> {
        if email_hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT email_hash FROM suppressions WHERE email_hash IN (SELECT value FROM json_each($1))",
        )
        .bind(json_strings(email_hashes))
        .fetch_all(self.conn().await?)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn keyed_events(&mut self, keys: &[&str]) -> StoreResult<Vec<(String, i64, EventFact)>> {
        let rows: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(idempotency_key, lead_id, type, occurred_at, json(properties))) \
             FROM events WHERE idempotency_key IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(keys).unwrap_or_default())
        .fetch_one(self.conn().await?)
        .await?;
        let rows: Vec<(String, i64, String, i64, Map<String, Value>)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .map(|(key, lead, kind, at, properties)| {
                let fact = EventFact {
                    kind,
                    occurred_at: from_micros(at),
                    properties,
                };
                (key, lead, fact)
            })
            .collect())
    }

    async fn insert_events(&mut self, events: &[NewEvent<'_>]) -> StoreResult<HashSet<String>> {
        let mut inserted = HashSet::new();
        for chunk in events.chunks(5_000) {
            let keys: Vec<Option<String>> = sqlx::query_scalar(
                "INSERT INTO events (lead_id, type, properties, occurred_at, received_at, idempotency_key, source) \
                 SELECT j.value->>'lead_id', j.value->>'type', json(j.value->'properties'), j.value->>'occurred_at', j.value->>'received_at', \
                 j.value->>'idempotency_key', j.value->>'source' FROM jsonb_each(jsonb($1)) AS j WHERE true \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            )
            .bind(serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .fetch_all(self.conn().await?)
            .await?;
            inserted.extend(keys.into_iter().flatten());
        }
        Ok(inserted)
    }

    async fn write_changes(&mut self, changes: &Changes) -> StoreResult<Vec<Opened>> {
        // Tag and score rows are bound as values (see `values_sql`), like the step writes;
        // removals are rare and stay one JSON batch.
        let rows = ChangeRows::of(changes);
        self.write_values(
            "INSERT INTO tag_changes (lead_id, tag, family, added, actor_kind, actor, at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL",
            7,
            &rows.tag_log,
            |b, r| {
                b.int(r.lead_id)
                    .name(r.tag)
                    .name(r.family)
                    .add(r.added)
                    .name(r.actor_kind)
                    .name(r.actor)
                    .int(r.at);
            },
        )
        .await?;
        if let Some(json) = json_batch(&rows.net_tags(false)) {
            self.write(
                "DELETE FROM lead_tags WHERE (lead_id, tag) IN (SELECT j.value->>'lead_id', j.value->>'tag' FROM jsonb_each(jsonb(?)) AS j)",
                |b| {
                    b.add(json);
                },
            )
            .await?;
        }
        self.write_values(
            "INSERT INTO lead_tags (lead_id, tag, family, added_at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (lead_id, tag) DO NOTHING",
            4,
            &rows.net_tags(true),
            |b, r| {
                b.int(r.lead_id).name(r.tag).name(r.family).int(r.at);
            },
        )
        .await?;
        self.write_values(
            "INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL",
            8,
            &rows.scores,
            |b, r| {
                b.int(r.lead_id)
                    .int(r.delta)
                    .name(r.reason)
                    .name(r.actor_kind)
                    .name(r.actor)
                    .opt_text(r.rule)
                    .int(r.occurred_at)
                    .int(r.at);
            },
        )
        .await?;
        let Some(json) = json_batch(&rows.handoffs) else {
            return Ok(Vec::new());
        };
        // `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint.
        Ok(sqlx::query_as(
            "INSERT INTO handoffs (lead_id, queue, reason, priority, origin, status, score, tags, campaign_id, step, sla_due_at, created_at, updated_at) \
             SELECT j.value->>'lead_id', j.value->>'queue', j.value->>'reason', j.value->>'priority', j.value->>'origin', 'open', \
             j.value->>'score', j.value->>'tags', j.value->>'campaign_id', j.value->>'step', j.value->>'sla_due_at', j.value->>'created_at', j.value->>'created_at' \
             FROM jsonb_each(jsonb($1)) AS j WHERE true ON CONFLICT DO NOTHING RETURNING id, lead_id, queue",
        )
        .bind(json)
        .fetch_all(self.conn().await?)
        .await?)
    }

    fn scope(&mut self, leads: &[i64]) {
        if let Some(pass) = &mut self.pass {
            pass.leads = Some(sorted(leads));
        }
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let mut this = *self;
        // A staged pass takes its turn and writes here.
        this.conn().await?;
        let SqliteTx {
            tx,
            turn,
            pass,
            queued_mail,
            ..
        } = this;
        tx.ok_or(StoreError::Stale)?.commit().await?;
        if let Some(pass) = pass {
            if let Some(leads) = pass.leads {
                pass.log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(pass.seq, leads);
            }
            pass.checkpointer.wake();
            if queued_mail {
                pass.mail.notify_one();
            }
        }
        // The turn goes only now, so the next checked writer finds this pass in the log.
        drop(turn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{statement_rows, value_chunks, PassLog, MAX_PARAMS, VALUES_MAX};

    #[test]
    fn a_snapshot_stays_valid_only_across_passes_over_other_leads() {
        let mut log = PassLog::default();
        log.record(5, vec![1, 2].into());
        log.record(6, vec![7].into());
        assert!(log.disjoint(4, 7, &[3, 8]), "5 and 6 wrote other leads");
        assert!(!log.disjoint(4, 7, &[2]), "5 wrote lead 2");
        assert!(!log.disjoint(4, 8, &[3]), "7 is no pass of this process");
        assert!(log.disjoint(6, 7, &[1]), "nothing committed since 6");
        for seq in 10..10 + PassLog::KEEP as i64 {
            log.record(seq, vec![100].into());
        }
        assert!(!log.disjoint(4, 7, &[3]), "5 and 6 fell out of the log");
    }

    #[test]
    fn the_leads_written_since_a_snapshot_are_those_of_later_passes() {
        let mut log = PassLog::default();
        log.record(5, vec![1, 2].into());
        log.record(6, vec![2, 7].into());
        log.record(7, vec![9].into());
        let since = |seq: i64, leads: &[i64]| {
            let mut ids: Vec<i64> = log.written_since(seq, leads).into_iter().collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(
            since(4, &[1, 2, 3, 7]),
            vec![1, 2, 7],
            "5 and 6 came after the snapshot"
        );
        assert_eq!(since(5, &[1, 2, 3, 7]), vec![2, 7], "5 was in the snapshot");
        assert_eq!(since(7, &[1, 2, 9]), Vec::<i64>::new(), "nothing came after 7");
        assert_eq!(since(4, &[]), Vec::<i64>::new());
    }

    #[test]
    fn value_chunks_cover_every_row_once_in_few_shapes() {
        for columns in [1, 12, 40] {
            for n in [0, 1, 2, 3, 127, 128, 129, 1000, 1024, 1025, 3_333] {
                let rows: Vec<usize> = (0..n).collect();
                let chunks: Vec<&[usize]> = value_chunks(&rows, columns).collect();
                let joined: Vec<usize> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
                assert_eq!(joined, rows, "{n} rows");
                for c in &chunks {
                    let size = statement_rows(c.len());
                    assert!(
                        size >= c.len() && size < 4 * c.len().max(1),
                        "{} rows in {size}",
                        c.len()
                    );
                    assert!(
                        size <= VALUES_MAX && size * columns <= MAX_PARAMS,
                        "{size} rows of {columns}"
                    );
                }
                if n <= 1000 && columns <= 12 {
                    assert!(chunks.len() <= 1, "{n} rows of {columns} in one statement");
                }
            }
        }
        let shapes: std::collections::BTreeSet<usize> = (1..=VALUES_MAX).map(statement_rows).collect();
        assert_eq!(shapes.into_iter().collect::<Vec<_>>(), [1, 4, 16, 64, 256, 1024]);
    }

    /// Under steady writes while two readers take turns holding older snapshots (as two
    /// runners do), the WAL is started over once it passes `RESTART_FRAMES` instead of growing
    /// with everything written; the writer, which starts it over, cuts the file back to
    /// `journal_size_limit`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_steady_writes_while_readers_hold_older_snapshots() {
        use super::{Checkpointer, SqliteStore};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("nurture-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wal.db");
        let store = SqliteStore::connect(file.to_str().unwrap()).await.unwrap();
        crate::store::Store::migrate(&store).await.unwrap();
        let store = std::sync::Arc::new(store);
        sqlx::query("CREATE TABLE filler (v BLOB NOT NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for stagger in [0, 3] {
            let (store, stop) = (store.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(stagger)).await;
                while !stop.load(Ordering::Relaxed) {
                    let mut read = store.pool.begin().await.unwrap();
                    sqlx::query("SELECT count(*) FROM filler")
                        .execute(&mut *read)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    read.commit().await.unwrap();
                }
            }));
        }
        // About 17 frames a commit (a 64 KiB row replacing the last), 1,200 commits: some
        // 20,000 frames, five times the WAL's bound.
        let wal = dir.join("wal.db-wal");
        let frame = 4096 + 24;
        let (mut largest, mut written) = (0, 0);
        for _ in 0..1_200 {
            // In this process's turn, as journey passes write.
            let turn = store.writer.turn.lock().await;
            let mut tx = store.write_tx().await.unwrap();
            sqlx::query("DELETE FROM filler").execute(&mut *tx).await.unwrap();
            sqlx::query("INSERT INTO filler VALUES (randomblob(65536))")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            drop(turn);
            written += 17;
            // A pause between commits, as between a runner's passes: some 6,000 frames a
            // second in a debug build (W2 of `bench engine` writes about 22,000).
            tokio::time::sleep(Duration::from_millis(1)).await;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) / frame);
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        assert!(written > 5 * Checkpointer::RESTART_FRAMES as u64);
        // The bound: the frames that reach `RESTART_FRAMES`, what is written in one rest after
        // a checkpoint (a tenth of a second) and while the restart waits for readers.
        assert!(
            largest < 3 * Checkpointer::RESTART_FRAMES as u64,
            "the WAL grew to {largest} frames of the {written} written"
        );
        let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
            .fetch_one(&store.writer.pool)
            .await
            .unwrap();
        assert_eq!(limit, Checkpointer::WAL_FILE_LIMIT);
        std::fs::remove_dir_all(&dir).ok();
    }
}
