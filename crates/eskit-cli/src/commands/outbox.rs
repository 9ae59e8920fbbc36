//! `eskit outbox …`: status, listing, the dead-letter queue, purge.

use std::collections::BTreeMap;
use std::time::Duration;

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use eskit::{DeadFilter, DeadSelector, DestinationStatus, EntryFilter, OutboxEntry};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::{
    DeadFilterArgs, DeadSelectorArgs, DestinationArgs, DisableArgs, DlqCommand, DlqListArgs, JsonFlag, ListArgs,
    OutboxCommand, PurgeArgs,
};
use crate::commands::append::print_json;
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::store::open_store;

/// Runs `eskit outbox …`.
pub async fn run(config: &Config, command: OutboxCommand) -> CliResult {
    match command {
        OutboxCommand::Status(args) => status(config, args).await,
        OutboxCommand::List(args) => list(config, args).await,
        OutboxCommand::Dlq(DlqCommand::List(args)) => dlq_list(config, args).await,
        OutboxCommand::Dlq(DlqCommand::Replay(args)) => dlq_change(config, args, DlqAction::Replay).await,
        OutboxCommand::Dlq(DlqCommand::Discard(args)) => dlq_change(config, args, DlqAction::Discard).await,
        OutboxCommand::Purge(args) => purge(config, args).await,
        OutboxCommand::Enable(args) => enable(config, args).await,
        OutboxCommand::Disable(args) => disable(config, args).await,
    }
}

/// One row of `outbox status`.
#[derive(Debug, Serialize)]
struct StatusRow {
    #[serde(flatten)]
    status: DestinationStatus,
    /// Why the destination is disabled (e.g. after a 410 Gone), if it is.
    disabled: Option<String>,
}

async fn status(config: &Config, args: JsonFlag) -> CliResult {
    let store = open_store(config).await?.outbox();
    let mut rows: BTreeMap<String, StatusRow> = BTreeMap::new();
    // Configured destinations show up even before they have entries.
    for d in &config.destinations {
        rows.insert(
            d.name.clone(),
            StatusRow {
                status: DestinationStatus {
                    destination: d.name.clone(),
                    ..DestinationStatus::default()
                },
                disabled: None,
            },
        );
    }
    for s in store
        .status()
        .await
        .map_err(CliError::store("reading the outbox status"))?
    {
        rows.insert(
            s.destination.clone(),
            StatusRow {
                status: s,
                disabled: None,
            },
        );
    }
    for d in store
        .disabled_destinations()
        .await
        .map_err(CliError::store("reading disabled destinations"))?
    {
        rows.entry(d.destination.clone())
            .or_insert_with(|| StatusRow {
                status: DestinationStatus {
                    destination: d.destination.clone(),
                    ..DestinationStatus::default()
                },
                disabled: None,
            })
            .disabled = Some(d.reason);
    }
    let rows: Vec<StatusRow> = rows.into_values().collect();
    if args.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no destinations (none configured and no outbox entries)");
        return Ok(());
    }
    let mut table = new_table(&[
        "destination",
        "pending",
        "retrying",
        "delivered",
        "dead",
        "oldest pending",
        "state",
    ]);
    for r in &rows {
        let s = &r.status;
        table.add_row(vec![
            Cell::new(&s.destination),
            num(s.pending),
            num(s.retrying),
            num(s.delivered),
            num(s.dead),
            Cell::new(
                s.oldest_pending_age_secs
                    .map(|a| format_age(Duration::from_secs_f64(a.max(0.0))))
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(match &r.disabled {
                Some(reason) => format!("disabled: {reason}"),
                None => "enabled".into(),
            }),
        ]);
    }
    println!("{table}");
    Ok(())
}

async fn list(config: &Config, args: ListArgs) -> CliResult {
    let store = open_store(config).await?.outbox();
    let filter = EntryFilter {
        destination: args.destination,
        state: args.state.map(Into::into),
        stream_id: args.stream,
        after_seq: args.after_seq,
        limit: Some(args.limit),
    };
    let entries = store
        .list_entries(&filter)
        .await
        .map_err(CliError::store("listing outbox entries"))?;
    more_hint(&entries, args.limit);
    print_entries(&entries, args.json, false)
}

async fn dlq_list(config: &Config, args: DlqListArgs) -> CliResult {
    let store = open_store(config).await?.outbox();
    let filter = dead_filter(args.destination, &args.filter, args.after_seq, Some(args.limit));
    let entries = store
        .list_dead(&filter)
        .await
        .map_err(CliError::store("listing the dead-letter queue"))?;
    more_hint(&entries, args.limit);
    print_entries(&entries, args.json, true)
}

#[derive(Clone, Copy)]
enum DlqAction {
    Replay,
    Discard,
}

async fn dlq_change(config: &Config, args: DeadSelectorArgs, action: DlqAction) -> CliResult {
    let store = open_store(config).await?.outbox();
    let selector = DeadSelector {
        id: args.id,
        destination: args.destination.clone(),
    };
    let (verb, done) = match action {
        DlqAction::Replay => ("replaying", "replayed"),
        DlqAction::Discard => ("discarding", "discarded"),
    };
    let result = if args.filter.is_set() {
        let filter = dead_filter(args.destination.clone(), &args.filter, None, None);
        match action {
            DlqAction::Replay => store.replay_dead_matching(&filter).await,
            DlqAction::Discard => store.discard_dead_matching(&filter).await,
        }
    } else {
        match action {
            DlqAction::Replay => store.replay_dead(&selector).await,
            DlqAction::Discard => store.discard_dead(&selector).await,
        }
    };
    let n = match result {
        Ok(n) => n,
        Err(eskit::Error::NotFound(_)) => 0,
        Err(e) => return Err(CliError::store(format!("{verb} dead entries"))(e)),
    };
    if n == 0 && args.id.is_some() {
        return Err(CliError::Failed(format!(
            "no dead entry with id {}{}",
            args.id.map(|i| i.to_string()).unwrap_or_default(),
            args.destination
                .map(|d| format!(" in destination {d:?}"))
                .unwrap_or_default()
        )));
    }
    println!("{done} {n} dead {}", if n == 1 { "entry" } else { "entries" });
    Ok(())
}

/// A full page may have a next one: say how to get it (on stderr, so `--json` output
/// stays clean).
fn more_hint(entries: &[OutboxEntry], limit: u32) {
    if entries.len() >= limit as usize
        && let Some(last) = entries.last()
    {
        eprintln!("more entries may follow: add --after-seq {}", last.seq);
    }
}

fn dead_filter(
    destination: Option<String>,
    f: &DeadFilterArgs,
    after_seq: Option<i64>,
    limit: Option<u32>,
) -> DeadFilter {
    DeadFilter {
        destination,
        dead_from: f.dead_from,
        dead_to: f.dead_to,
        error_contains: f.error.clone().filter(|e| !e.is_empty()),
        after_seq,
        limit,
    }
}

async fn enable(config: &Config, args: DestinationArgs) -> CliResult {
    let store = open_store(config).await?.outbox();
    let was_disabled = store
        .enable_destination(&args.destination)
        .await
        .map_err(CliError::store(format!("enabling destination {:?}", args.destination)))?;
    if was_disabled {
        println!("enabled {}", args.destination);
    } else {
        println!("{} was not disabled", args.destination);
    }
    Ok(())
}

async fn disable(config: &Config, args: DisableArgs) -> CliResult {
    let store = open_store(config).await?.outbox();
    store
        .disable_destination(&args.destination, &args.reason)
        .await
        .map_err(CliError::store(format!("disabling destination {:?}", args.destination)))?;
    println!("disabled {}: {}", args.destination, args.reason);
    Ok(())
}

async fn purge(config: &Config, args: PurgeArgs) -> CliResult {
    let store = open_store(config).await?.outbox();
    let age =
        time::Duration::try_from(args.older_than).map_err(|_| CliError::Usage("--older-than is too large".into()))?;
    let before = OffsetDateTime::now_utc()
        .checked_sub(age)
        .ok_or_else(|| CliError::Usage("--older-than is too large".into()))?;
    let n = store
        .purge_delivered(before)
        .await
        .map_err(CliError::store("purging delivered entries"))?;
    println!(
        "purged {n} delivered {} older than {}",
        if n == 1 { "entry" } else { "entries" },
        humantime::format_duration(args.older_than)
    );
    Ok(())
}

/// An entry as `--json` prints it (the stored entry; payload as JSON).
fn print_entries(entries: &[OutboxEntry], json: bool, dead: bool) -> CliResult {
    if json {
        for e in entries {
            print_json(e)?;
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "{}",
            if dead {
                "the dead-letter queue is empty"
            } else {
                "no entries"
            }
        );
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let mut table = if dead {
        new_table(&["id", "destination", "stream", "type", "attempts", "dead", "last error"])
    } else {
        new_table(&[
            "id",
            "destination",
            "stream",
            "type",
            "state",
            "attempts",
            "age",
            "last error",
        ])
    };
    for e in entries {
        let age = |t: OffsetDateTime| {
            let d = now - t;
            if d.is_negative() {
                "0s".to_string()
            } else {
                format_age(Duration::try_from(d).unwrap_or_default()) + " ago"
            }
        };
        let error = Cell::new(
            e.last_error
                .as_deref()
                .map(|s| truncate(s, 80))
                .unwrap_or_else(|| "-".into()),
        );
        if dead {
            table.add_row(vec![
                Cell::new(e.id),
                Cell::new(&e.destination),
                Cell::new(&e.stream_id),
                Cell::new(&e.event_type),
                num(u64::from(e.attempts)),
                Cell::new(e.dead_at.map(age).unwrap_or_else(|| "-".into())),
                error,
            ]);
        } else {
            table.add_row(vec![
                Cell::new(e.id),
                Cell::new(&e.destination),
                Cell::new(&e.stream_id),
                Cell::new(&e.event_type),
                Cell::new(e.state.as_str()),
                num(u64::from(e.attempts)),
                Cell::new(age(e.created_at)),
                error,
            ]);
        }
    }
    println!("{table}");
    if entries.len() >= 2 {
        println!("{} entries", entries.len());
    }
    Ok(())
}

/// A table in eskit's style.
pub fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    // Fit a real terminal; never squeeze into an unknown or absurdly narrow one.
    if table.width().is_none_or(|w| w < 60) {
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    table
}

/// A right-aligned number cell.
pub fn num(n: u64) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}

/// A short age like `3m 12s` (at most two units).
pub fn format_age(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {s}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        one_line.chars().take(max - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(format_age(Duration::from_millis(250)), "250ms");
        assert_eq!(format_age(Duration::from_secs(75)), "1m 15s");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 61)), "3h 1m");
        assert_eq!(format_age(Duration::from_secs(2 * 86_400 + 3600)), "2d 1h");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
