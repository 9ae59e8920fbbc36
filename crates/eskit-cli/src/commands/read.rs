//! `eskit read`: events as JSON lines.

use eskit::ReadDirection;

use crate::cli::ReadArgs;
use crate::commands::append::print_json;
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::store::open_store;

/// Events fetched per round trip.
const PAGE: u64 = 1000;

/// Runs `eskit read`.
pub async fn run(config: &Config, args: ReadArgs) -> CliResult {
    let store = open_store(config).await?.events();
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    if let Some(stream) = &args.stream {
        let direction = if args.backward {
            ReadDirection::Backward
        } else {
            ReadDirection::Forward
        };
        let mut from = match (args.from, direction) {
            (Some(v), _) => v,
            (None, ReadDirection::Forward) => 1,
            (None, ReadDirection::Backward) => u64::MAX,
        };
        while remaining > 0 {
            let page = remaining.min(PAGE) as usize;
            let events = store
                .read_stream(stream, from, page, direction)
                .await
                .map_err(CliError::store(format!("reading stream {stream:?}")))?;
            let Some(last) = events.last().map(|e| e.stream_version) else {
                break;
            };
            for e in &events {
                print_json(e)?;
            }
            remaining -= events.len() as u64;
            if events.len() < page {
                break;
            }
            from = match direction {
                ReadDirection::Forward => last + 1,
                ReadDirection::Backward if last <= 1 => break,
                ReadDirection::Backward => last - 1,
            };
        }
    } else {
        let mut from = i64::try_from(args.from.unwrap_or(1))
            .map_err(|_| CliError::Usage("--from is larger than any position".into()))?;
        while remaining > 0 {
            let page = remaining.min(PAGE) as usize;
            let events = store
                .read_all(from, page)
                .await
                .map_err(CliError::store("reading all streams"))?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for e in &events {
                print_json(e)?;
            }
            remaining -= events.len() as u64;
            if events.len() < page {
                break;
            }
            from = last + 1;
        }
    }
    Ok(())
}
