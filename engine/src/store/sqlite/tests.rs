//! The SQLite adapter's own tests (the contract suite is in `tests/it/storage.rs`).

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
    crate::store::AdminStore::migrate(&store).await.unwrap();
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
