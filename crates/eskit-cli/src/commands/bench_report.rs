//! The results table of `eskit bench`.

use comfy_table::{Cell, CellAlignment, Color};

use super::bench::{BenchResults, Pair};
use crate::commands::outbox::new_table;

fn rate(n: f64) -> Cell {
    Cell::new(format!("{n:.0}/s")).set_alignment(CellAlignment::Right)
}

fn verdict(ok: bool, target: &str) -> Cell {
    let cell = Cell::new(format!("{target}: {}", if ok { "met" } else { "missed" }));
    cell.fg(if ok { Color::Green } else { Color::Yellow })
}

fn row(name: String, p: &Pair, bound: &str, target: Option<f64>) -> Vec<Cell> {
    let ratio = p.ratio();
    vec![
        Cell::new(name),
        rate(p.eskit.per_second()),
        Cell::new(format!("{bound} {:.0}/s", p.bound.per_second())),
        Cell::new(format!("{ratio:.2}×")).set_alignment(CellAlignment::Right),
        match target {
            Some(t) => verdict(ratio >= t, &format!("≥ {t}×")),
            None => Cell::new("—"),
        },
    ]
}

/// The table, one line of context above it. Each eskit row is compared with the plain
/// table bound (with the target), then, indented, with the same rows written or
/// consumed by plain SQL on eskit's own tables (what the engine itself costs).
pub fn render(r: &BenchResults) -> String {
    let mut t = new_table(&["measurement", "eskit", "bound (same run)", "ratio", "target"]);
    let same = "  vs plain SQL on eskit's tables";
    t.add_row(row(
        "append, 1 event per transaction".into(),
        &r.append_single,
        "plain INSERTs",
        None,
    ));
    t.add_row(row(same.into(), &r.append_single_same_schema, "INSERTs", None));
    t.add_row(row(
        format!("append, {} events per transaction", r.batch),
        &r.append_batched,
        "plain INSERTs",
        Some(0.8),
    ));
    t.add_row(row(same.into(), &r.append_batched_same_schema, "INSERTs", None));
    t.add_row(row(
        "relay → null destination".into(),
        &r.relay_null,
        "select-and-mark loop",
        Some(0.7),
    ));
    t.add_row(row(same.into(), &r.relay_null_same_schema, "loop", None));
    t.add_row(row(
        "relay → loopback webhook".into(),
        &r.relay_webhook,
        "loop + same HTTP client",
        Some(0.7),
    ));
    let l = &r.latency;
    let latency_target = if r.backend == "postgres" {
        verdict(l.p99_ms <= 50.0, "p99 ≤ 50 ms")
    } else {
        Cell::new("(PostgreSQL: p99 ≤ 50 ms)")
    };
    t.add_row(vec![
        Cell::new(format!("commit → delivery latency ({} samples)", l.samples)),
        Cell::new(format!("p50 {:.1} ms", l.p50_ms)).set_alignment(CellAlignment::Right),
        Cell::new(format!("p99 {:.1} ms, p999 {:.1} ms", l.p99_ms, l.p999_ms)),
        Cell::new(format!("max {:.0} ms", l.max_ms)).set_alignment(CellAlignment::Right),
        latency_target,
    ]);
    t.add_row(row(
        "relay → null, a transaction held open".into(),
        &r.relay_open_transaction,
        "same drain, clean",
        Some(0.8),
    ));
    t.add_row(row(
        format!("relay → null, {} delivered rows in the table", r.delivered_rows),
        &r.relay_delivered_rows,
        "same drain, clean",
        Some(0.8),
    ));
    format!(
        "eskit bench — {} ({}), {}, {} writers, {} partitions\n{t}",
        r.database, r.backend, r.size, r.writers, r.partitions
    )
}
