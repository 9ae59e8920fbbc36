//! `eskit append`: one event from flags, or a JSONL file.

use std::io::{BufRead, Write};

use eskit::{EventData, ExpectedVersion, Limits};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::cli::{AppendArgs, parse_expected_version};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::store::{PendingAppend, open_store};

/// Runs `eskit append`.
pub async fn run(config: &Config, args: AppendArgs) -> CliResult {
    let limits = Limits {
        max_payload_bytes: config.max_payload_bytes,
        ..Limits::default()
    };
    match (&args.stream, &args.file) {
        (Some(stream), None) => {
            let (Some(event_type), Some(data)) = (&args.event_type, &args.data) else {
                return Err(CliError::Usage("--stream needs --type and --data".into()));
            };
            let mut event = EventData::from_json_str(event_type.clone(), data)
                .map_err(|e| CliError::Input(format!("--data: {e}")))?;
            if let Some(meta) = &args.metadata {
                event.metadata = Some(
                    eskit::event::parse_raw("metadata", meta)
                        .map_err(|e| CliError::Input(format!("--metadata: {e}")))?,
                );
            }
            if let Some(id) = args.id {
                event = event.with_id(id);
            }
            limits
                .check_append(stream, std::slice::from_ref(&event))
                .map_err(|e| CliError::Input(e.to_string()))?;
            let store = open_store(config).await?;
            let result = store
                .events()
                .append(
                    stream,
                    args.expected_version.unwrap_or(ExpectedVersion::Any),
                    vec![event],
                )
                .await
                .map_err(CliError::store(format!("appending to stream {stream:?}")))?;
            print_json(&result)
        }
        (None, Some(path)) => {
            let lines = read_lines(path)?;
            let items = parse_lines(&lines, &limits)?;
            let store = open_store(config).await?;
            let batch = args.batch.unwrap_or(1).max(1) as usize;
            let mut committed = 0usize;
            for chunk in items.chunks(batch) {
                let appends = chunk
                    .iter()
                    .map(|l| PendingAppend {
                        stream: l.stream.clone(),
                        expected: l.expected,
                        events: vec![l.event.clone()],
                    })
                    .collect();
                let results = store.append_batch(appends).await.map_err(|e| {
                    let first = chunk[0].line;
                    let last = chunk[chunk.len() - 1].line;
                    let what = match e.index {
                        Some(i) => format!("line {}", chunk[i].line),
                        None if first == last => format!("line {first}"),
                        None => format!("lines {first}-{last}"),
                    };
                    let done = if committed == 0 {
                        "nothing was written".to_string()
                    } else {
                        format!("the {committed} lines before were committed")
                    };
                    CliError::Failed(format!(
                        "{what}: {} ({}the transaction was rolled back; {done})",
                        crate::error::one_line(&e.error),
                        if chunk.len() > 1 {
                            format!("lines {first}-{last} were one transaction: ")
                        } else {
                            String::new()
                        },
                    ))
                })?;
                committed += chunk.len();
                for (l, r) in chunk.iter().zip(results) {
                    print_json(&LineResult {
                        line: l.line,
                        result: r,
                    })?;
                }
            }
            Ok(())
        }
        _ => Err(CliError::Usage(
            "give either --stream (with --type and --data) or --file".into(),
        )),
    }
}

#[derive(Serialize)]
struct LineResult {
    line: usize,
    #[serde(flatten)]
    result: eskit::AppendResult,
}

/// One line of an events file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLine<'a> {
    stream: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    expected_version: Option<serde_json::Value>,
}

/// A parsed, validated line.
#[derive(Debug)]
struct ParsedLine {
    line: usize,
    stream: String,
    expected: ExpectedVersion,
    event: EventData,
}

fn read_lines(path: &std::path::Path) -> CliResult<Vec<String>> {
    let shown = path.display().to_string();
    let reader: Box<dyn BufRead> = if shown == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(CliError::io(format!("opening {shown}")))?,
        ))
    };
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        lines.push(line.map_err(CliError::io(format!("{shown}: reading line {}", i + 1)))?);
    }
    Ok(lines)
}

/// Parses and validates every line before anything is written: a bad line means no
/// transaction is started at all.
fn parse_lines(lines: &[String], limits: &Limits) -> CliResult<Vec<ParsedLine>> {
    let mut parsed = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        let line = i + 1;
        if text.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| CliError::Input(format!("line {line}: {msg} (nothing was written)"));
        let raw: FileLine<'_> = serde_json::from_str(text).map_err(|e| bad(format!("not a valid event line: {e}")))?;
        let expected = match raw.expected_version {
            None => ExpectedVersion::Any,
            Some(serde_json::Value::Number(n)) => ExpectedVersion::Exact(
                n.as_u64()
                    .ok_or_else(|| bad(format!("expected_version {n} is not a version")))?,
            ),
            Some(serde_json::Value::String(s)) => {
                parse_expected_version(&s).map_err(|e| bad(format!("expected_version: {e}")))?
            }
            Some(other) => return Err(bad(format!("expected_version {other} is not a version"))),
        };
        let mut event = EventData::from_json_str(raw.event_type, raw.data.get()).map_err(|e| bad(e.to_string()))?;
        if let Some(id) = raw.id {
            event = event.with_id(id);
        }
        if let Some(meta) = raw.metadata {
            event.metadata = Some(meta.to_owned());
        }
        limits
            .check_append(&raw.stream, std::slice::from_ref(&event))
            .map_err(|e| bad(e.to_string()))?;
        parsed.push(ParsedLine {
            line,
            stream: raw.stream,
            expected,
            event,
        });
    }
    if parsed.is_empty() {
        return Err(CliError::Input("the file holds no events".into()));
    }
    Ok(parsed)
}

/// Prints one value as a JSON line on stdout.
pub fn print_json(value: &impl Serialize) -> CliResult {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| CliError::io("writing JSON to stdout")(e.into()))?;
    writeln!(out).map_err(CliError::io("writing to stdout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn parses_lines_and_names_the_bad_one() {
        let ok = parse_lines(
            &lines(
                "{\"stream\":\"a\",\"type\":\"T\",\"data\":{\"x\":1}}\n\n{\"stream\":\"b\",\"type\":\"T\",\"data\":[],\"expected_version\":\"no-stream\"}",
            ),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].line, 3);
        assert_eq!(ok[1].expected, ExpectedVersion::NoStream);

        let err = parse_lines(
            &lines("{\"stream\":\"a\",\"type\":\"T\",\"data\":1}\n{\"stream\":\"\",\"type\":\"T\",\"data\":1}"),
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 2: "), "{err}");
        let err = parse_lines(
            &lines("{\"stream\":\"a\",\"type\":\"T\",\"data\":{"),
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 1: "), "{err}");
        let err = parse_lines(
            &lines("{\"stream\":\"a\",\"type\":\"T\",\"data\":1,\"extra\":2}"),
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("extra"), "{err}");
    }
}
