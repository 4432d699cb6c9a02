//! `custodia migrate` and `custodia snapshots drop`: the database's schema,
//! and the derived data beside the log.

use std::process::ExitCode;

pub async fn drop_snapshots(database_url: &str) -> Result<ExitCode, String> {
    use custodia_infrastructure::{open_event_store, OpenMode};
    let store = open_event_store(database_url, OpenMode::Existing, 1)
        .await
        .map_err(|e| e.to_string())?;
    let dropped = store.drop_snapshots().await.map_err(|e| e.to_string())?;
    println!("dropped {dropped} snapshots; commands rebuild them as they run");
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(database_url: &str) -> Result<ExitCode, String> {
    use custodia_infrastructure::{Backend, PostgresEventStore, SqliteEventStore};
    let applied = match Backend::of(database_url).map_err(|e| e.to_string())? {
        Backend::Sqlite => {
            let store = SqliteEventStore::connect(database_url, true)
                .await
                .map_err(|e| e.to_string())?;
            store.migrate().await
        }
        Backend::Postgres => {
            let store = PostgresEventStore::connect(database_url, 1)
                .await
                .map_err(|e| e.to_string())?;
            store.migrate().await
        }
    }
    .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(ExitCode::SUCCESS)
}
