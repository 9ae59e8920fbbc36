//! The one-screen text report of `eskit chaos`.

use comfy_table::{Cell, Color};
use eskit_testkit::chaos::ChaosReport;

use crate::commands::outbox::{new_table, num};

/// The report: what ran, a table of checks, recovery times, the verdict.
pub fn render(r: &ChaosReport, database: &str, replay: &str) -> String {
    let s = &r.settings;
    let a = &r.appends;
    let mut out = String::new();
    out.push_str(&format!("eskit chaos — seed {}\n", r.seed));
    out.push_str(&format!("  database: {database}\n"));
    out.push_str(&format!(
        "  workload: {} events over {} streams from {} writers; {} relay processes (batch {}, {} partitions); {} SIGKILLs{}\n",
        s.events,
        s.streams,
        s.writers,
        s.relays,
        s.batch_size,
        s.partitions,
        r.kills.len(),
        if s.db_restart { "; PostgreSQL restarted once" } else { "" }
    ));
    out.push_str(&format!(
        "  appends:  {} tried: {} ok, {} failed, {} unknown ({} committed, {} rolled back); {} events stored\n",
        a.attempted, a.ok, a.failed, a.unknown, a.unknown_committed, a.unknown_rolled_back, a.events_stored
    ));
    out.push_str(&format!(
        "  sink:     {} requests: {} accepted, {} answered 503, {} answered 429, {} left hanging\n",
        r.sink.requests, r.sink.accepted, r.sink.server_errors, r.sink.too_many_requests, r.sink.hangs
    ));
    out.push_str(&format!(
        "  time:     chaos {:.1}s, drain {:.1}s, total {:.1}s\n",
        r.durations.chaos_ms as f64 / 1000.0,
        r.durations.drain_ms as f64 / 1000.0,
        r.durations.total_ms as f64 / 1000.0
    ));

    let mut table = new_table(&["check", "value", ""]);
    let mut row = |name: &str, value: Cell, ok: bool| {
        let verdict = if ok {
            Cell::new("ok").fg(Color::Green)
        } else {
            Cell::new("VIOLATION").fg(Color::Red)
        };
        table.add_row(vec![Cell::new(name), value, verdict]);
    };
    row("committed entries", num(r.committed), r.committed > 0);
    row("delivered", num(r.delivered), true);
    row("dead-lettered", num(r.dead), true);
    row(
        "pending after drain",
        num(r.pending_after_drain),
        r.pending_after_drain == 0,
    );
    row("lost (committed − delivered − dead)", num(r.lost), r.lost == 0);
    row(
        "phantoms (delivered, never committed)",
        num(r.phantoms),
        r.phantoms == 0,
    );
    row(
        "per-stream order violations",
        num(r.order_violations),
        r.order_violations == 0,
    );
    row("per-stream gaps", num(r.gaps), r.gaps == 0);
    row(
        "missing stream versions in the store",
        num(r.version_holes),
        r.version_holes == 0,
    );
    row(
        "marked delivered without a sink record",
        num(r.delivered_without_record),
        r.delivered_without_record == 0,
    );
    row(
        "acknowledged appends missing",
        num(r.acknowledged_but_missing),
        r.acknowledged_but_missing == 0,
    );
    row(
        "failed appends stored",
        num(r.failed_but_stored),
        r.failed_but_stored == 0,
    );
    row(
        "version anomalies / unexplained rows",
        Cell::new(format!("{} / {}", r.version_anomalies.len(), r.unexplained_rows)),
        r.version_anomalies.is_empty() && r.unexplained_rows == 0,
    );
    row(
        "duplicates (per 10k; bound)",
        Cell::new(format!(
            "{} ({:.1}; ≤ {})",
            r.duplicates, r.duplicates_per_10k, r.duplicate_bound
        )),
        r.duplicates <= r.duplicate_bound,
    );
    let recoveries = r.recoveries_ms();
    let recovery = match (recoveries.first(), recoveries.last()) {
        (Some(min), Some(max)) => format!(
            "{} of {} kills: min {min} ms, median {} ms, max {max} ms",
            recoveries.len(),
            r.kills.len(),
            recoveries[recoveries.len() / 2]
        ),
        _ => format!("{} kills, none measurable", r.kills.len()),
    };
    row(
        "recovery after SIGKILL",
        Cell::new(recovery),
        r.unexpected_exits.is_empty(),
    );
    if let Some(d) = &r.db_restart {
        let text = format!(
            "down {} ms; deliveries after {}, appends after {}",
            d.downtime_ms,
            d.recovery_ms.map_or("—".into(), |ms| format!("{ms} ms")),
            d.append_recovery_ms.map_or("—".into(), |ms| format!("{ms} ms"))
        );
        row("recovery after database restart", Cell::new(text), d.error.is_none());
    }
    out.push_str(&table.to_string());
    out.push('\n');

    for line in r
        .violations
        .iter()
        .chain(&r.version_anomalies)
        .chain(&r.unexpected_exits)
        .take(8)
    {
        out.push_str(&format!("  ! {line}\n"));
    }
    for line in r.exits_during_db_restart.iter().take(3) {
        out.push_str(&format!("  (during the database restart) {line}\n"));
    }
    for line in r.examples.iter().take(5) {
        out.push_str(&format!("  e.g. {line}\n"));
    }
    if r.passed() {
        out.push_str(&format!("PASSED (replay: {replay})"));
    } else {
        out.push_str(&format!(
            "FAILED: {} violation(s); logs in {}\nreplay: {replay}",
            r.violations.len(),
            r.work_dir.display()
        ));
    }
    out
}
