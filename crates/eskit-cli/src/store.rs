//! Opening the configured store: the URL scheme picks the backend.

use std::path::PathBuf;
use std::sync::Arc;

use eskit::{
    AppendResult, EventData, EventStore, ExpectedVersion, OutboxStore, StoreOptions, StoreTransaction,
    TransactionalStore,
};
use eskit_postgres::PgStore;
use eskit_sqlite::SqliteStore;

use crate::config::{Config, redact_url};
use crate::error::{CliError, CliResult};

/// A database location, by backend.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file: `sqlite://path`, `sqlite:path`, or a plain path.
    Sqlite {
        /// The URL as given (a plain path is used as is).
        url: String,
        /// The file (`None` for an in-memory database).
        path: Option<PathBuf>,
    },
    /// `postgres://…` or `postgresql://…`.
    Postgres {
        /// The URL as given.
        url: String,
    },
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(self.url()))
    }
}

/// A URL with a scheme eskit does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL scheme {scheme:?}: use sqlite://PATH (or a plain file path) or postgres://…")]
pub struct UnsupportedScheme {
    /// The scheme found.
    pub scheme: String,
}

impl DatabaseUrl {
    /// Parses a database URL or path.
    pub fn parse(text: &str) -> Result<Self, UnsupportedScheme> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres { url: text.to_string() });
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let file = rest.split('?').next().unwrap_or_default();
            let path = (!file.is_empty() && !file.contains(":memory:")).then(|| PathBuf::from(file));
            return Ok(DatabaseUrl::Sqlite {
                url: text.to_string(),
                path,
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(UnsupportedScheme {
                scheme: scheme.to_string(),
            });
        }
        Ok(DatabaseUrl::Sqlite {
            url: text.to_string(),
            path: Some(PathBuf::from(text)),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite { url, .. } | DatabaseUrl::Postgres { url } => url,
        }
    }
}

/// An open store of either backend. Cheap to clone.
#[derive(Clone, Debug)]
pub enum OpenStore {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

/// One append of a transaction built by [`OpenStore::append_batch`].
#[derive(Debug)]
pub struct PendingAppend {
    /// The stream.
    pub stream: String,
    /// The expected version.
    pub expected: ExpectedVersion,
    /// The events.
    pub events: Vec<EventData>,
}

/// Which append of a batch failed, and why.
#[derive(Debug)]
pub struct BatchError {
    /// Index of the failed append in the batch (`None`: begin or commit failed).
    pub index: Option<usize>,
    /// The store error.
    pub error: eskit::Error,
}

impl OpenStore {
    /// The event store interface.
    pub fn events(&self) -> Arc<dyn EventStore> {
        match self {
            OpenStore::Sqlite(s) => Arc::new(s.clone()),
            OpenStore::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The outbox interface (for the relay and operator commands).
    pub fn outbox(&self) -> Arc<dyn OutboxStore> {
        match self {
            OpenStore::Sqlite(s) => Arc::new(s.clone()),
            OpenStore::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Appends every item in one transaction: all commit or none does.
    pub async fn append_batch(&self, batch: Vec<PendingAppend>) -> Result<Vec<AppendResult>, BatchError> {
        match self {
            OpenStore::Sqlite(s) => append_in_transaction(s, batch).await,
            OpenStore::Postgres(s) => append_in_transaction(s, batch).await,
        }
    }
}

async fn append_in_transaction<S: TransactionalStore>(
    store: &S,
    batch: Vec<PendingAppend>,
) -> Result<Vec<AppendResult>, BatchError> {
    let mut tx = store.begin().await.map_err(|error| BatchError { index: None, error })?;
    let mut results = Vec::with_capacity(batch.len());
    for (index, item) in batch.into_iter().enumerate() {
        match tx.append(&item.stream, item.expected, item.events).await {
            Ok(r) => results.push(r),
            Err(error) => {
                // Dropping would roll back too; an explicit rollback frees the writer at once.
                let _ = tx.rollback().await;
                return Err(BatchError {
                    index: Some(index),
                    error,
                });
            }
        }
    }
    tx.commit().await.map_err(|error| BatchError { index: None, error })?;
    Ok(results)
}

/// Opens the store the configuration names, with its routes and destinations.
pub async fn open_store(config: &Config) -> CliResult<OpenStore> {
    open_url(&config.database, &config.schema, config.store_options()).await
}

/// Opens a store at `database` (PostgreSQL tables in `schema`) with these options.
pub async fn open_url(database: &str, schema: &str, options: StoreOptions) -> CliResult<OpenStore> {
    let url = DatabaseUrl::parse(database).map_err(|e| CliError::Usage(e.to_string()))?;
    let shown = redact_url(url.url());
    match url {
        DatabaseUrl::Sqlite { url, .. } => SqliteStore::builder(url)
            .options(options)
            .open()
            .await
            .map(OpenStore::Sqlite)
            .map_err(CliError::store(format!("opening {shown}"))),
        DatabaseUrl::Postgres { url } => {
            check_postgres_reachable(&url)
                .await
                .map_err(CliError::store(format!("opening {shown}")))?;
            PgStore::builder(url)
                .schema(schema)
                .options(options)
                .open()
                .await
                .map(OpenStore::Postgres)
                .map_err(CliError::store(format!("opening {shown}")))
        }
    }
}

/// One direct connection before the pool: a server that is down or refuses us fails
/// at once with the real cause ("connection refused", "role does not exist") instead
/// of the pool's "timed out" after its acquire timeout.
async fn check_postgres_reachable(url: &str) -> eskit::Result<()> {
    use sqlx::Connection as _;
    let attempt = tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, sqlx::PgConnection::connect(url));
    match attempt.await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(eskit::Error::database("connecting to PostgreSQL", e)),
        Err(_) => Err(eskit::Error::database(
            "connecting to PostgreSQL",
            format!("no answer within {}s", POSTGRES_CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

/// How long the first connection to PostgreSQL may take.
const POSTGRES_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn schemes() {
        assert!(
            matches!(DatabaseUrl::parse("sqlite://a/b.db"), Ok(DatabaseUrl::Sqlite { path: Some(p), .. }) if p == Path::new("a/b.db"))
        );
        assert!(
            matches!(DatabaseUrl::parse("sqlite:b.db?mode=rwc"), Ok(DatabaseUrl::Sqlite { path: Some(p), .. }) if p == Path::new("b.db"))
        );
        assert!(matches!(
            DatabaseUrl::parse("sqlite::memory:"),
            Ok(DatabaseUrl::Sqlite { path: None, .. })
        ));
        assert!(matches!(
            DatabaseUrl::parse("/tmp/x.db"),
            Ok(DatabaseUrl::Sqlite { .. })
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres { .. })
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db"),
            Ok(DatabaseUrl::Postgres { .. })
        ));
        let e = DatabaseUrl::parse("mysql://h/db").unwrap_err();
        assert!(e.to_string().contains("\"mysql\""), "{e}");
    }
}
