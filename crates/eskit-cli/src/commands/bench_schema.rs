//! The second bound of `eskit bench`: the rows an append writes (events, outbox entries,
//! the stream's version) inserted with plain SQL straight into eskit's own tables, with
//! all their indexes and triggers, but without the store's checks and round trips.
//! Entries go to destination `raw`, which the plain loop over eskit's table
//! ([`super::bench_raw::Table::Eskit`]) then drains. Each transaction writes a fresh
//! stream, versions 1..n.

use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

use super::bench_raw::{RawDb, RawRow};
use crate::error::{CliError, CliResult};

fn db(context: &'static str) -> impl Fn(sqlx::Error) -> CliError {
    move |e| CliError::store(context)(eskit::Error::database(context, e))
}

/// `head` followed by `rows` copies of `row`, comma-separated.
fn values(head: &str, row: &str, rows: usize) -> String {
    let mut sql = String::from(head);
    for k in 0..rows {
        sql.push_str(if k == 0 { "" } else { ", " });
        sql.push_str(row);
    }
    sql
}

/// Writes `rows` (one stream, versions 1..n) into eskit's tables in one transaction.
pub async fn insert(raw: &RawDb, rows: &[RawRow], partitions: u32) -> CliResult {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let stream = format!("raw-{}", first.id.simple());
    let partition = eskit::partition_of(&stream, partitions);
    let entry_ids: Vec<Uuid> = rows.iter().map(|r| eskit::route_entry_id(r.id, "raw")).collect();
    match raw {
        RawDb::Sqlite(pool, writer) => {
            let _turn = writer.lock().await;
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
            let mut conn = pool.acquire().await.map_err(db("raw insert"))?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db("raw insert"))?;
            let mut events = sqlx::query(AssertSqlSafe(values(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, payload, metadata, recorded_at) VALUES ",
                "(?, ?, ?, 'BenchEvent', ?, NULL, ?)",
                rows.len(),
            )));
            for (v, r) in rows.iter().enumerate() {
                events = events
                    .bind(&stream)
                    .bind(v as i64 + 1)
                    .bind(r.id.to_string())
                    .bind(&r.payload)
                    .bind(now);
            }
            events.execute(&mut *tx).await.map_err(db("raw insert"))?;
            sqlx::query(
                "INSERT INTO streams (stream_id, version) VALUES (?, ?) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
            )
            .bind(&stream)
            .bind(rows.len() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db("raw insert"))?;
            let mut outbox = sqlx::query(AssertSqlSafe(values(
                "INSERT INTO outbox (id, destination, stream_id, \"partition\", event_type, payload, metadata, \
                 event_id, stream_version, created_at, next_attempt_at, state, attempts) VALUES ",
                "(?, 'raw', ?, ?, 'BenchEvent', ?, NULL, ?, ?, ?, ?, 'pending', 0)",
                rows.len(),
            )));
            for (v, (r, id)) in rows.iter().zip(&entry_ids).enumerate() {
                outbox = outbox
                    .bind(id.to_string())
                    .bind(&stream)
                    .bind(i64::from(partition))
                    .bind(&r.payload)
                    .bind(r.id.to_string())
                    .bind(v as i64 + 1)
                    .bind(now)
                    .bind(now);
            }
            outbox.execute(&mut *tx).await.map_err(db("raw insert"))?;
            tx.commit().await.map_err(db("raw insert"))?;
        }
        RawDb::Postgres(pool, s) => {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let versions: Vec<i64> = (1..=rows.len() as i64).collect();
            let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
            let mut tx = pool.begin().await.map_err(db("raw insert"))?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {s}.events (stream_id, stream_version, event_id, event_type, payload) \
                 SELECT $1, v, i, 'BenchEvent', p::jsonb FROM unnest($2::bigint[], $3::uuid[], $4::text[]) AS u(v, i, p)"
            )))
            .bind(&stream)
            .bind(&versions)
            .bind(&ids)
            .bind(&payloads)
            .execute(&mut *tx)
            .await
            .map_err(db("raw insert"))?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {s}.streams (stream_id, version) VALUES ($1, $2) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
            )))
            .bind(&stream)
            .bind(rows.len() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db("raw insert"))?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {s}.outbox (id, destination, stream_id, \"partition\", event_type, payload, event_id, \
                   stream_version, created_at, next_attempt_at) \
                 SELECT e, 'raw', $1, $2, 'BenchEvent', p::jsonb, i, v, now(), now() \
                 FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::bigint[]) AS u(e, p, i, v)"
            )))
            .bind(&stream)
            .bind(partition as i32)
            .bind(&entry_ids)
            .bind(&payloads)
            .bind(&ids)
            .bind(&versions)
            .execute(&mut *tx)
            .await
            .map_err(db("raw insert"))?;
            tx.commit().await.map_err(db("raw insert"))?;
        }
    }
    Ok(())
}
