//! Throwaway databases on a real PostgreSQL server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The server to create test databases on: `$DATABASE_URL`, else
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.into())
}

/// A fresh, empty database, dropped (`WITH (FORCE)`, best-effort) when this value drops.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of the new database (the admin URL with the database name replaced).
    pub url: String,
    /// `chainmux_test_<pid>_<counter>_<nanos>`.
    pub name: String,
}

impl TestDb {
    /// Creates `chainmux_test_<pid>_<counter>_<nanos>` on [`admin_url`].
    ///
    /// # Panics
    /// When the server cannot be reached or refuses; the message names `scripts/ensure-tools.sh`.
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let name = format!(
            "chainmux_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let mut conn = admin_connect(&admin).await.unwrap_or_else(|err| {
            panic!("cannot connect to PostgreSQL at {admin}: {err}; run `source scripts/ensure-tools.sh` or set DATABASE_URL")
        });
        // The name is generated here from digits and `_`: safe to splice in.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("CREATE DATABASE {name} on {admin}: {err}"));
        let _ = conn.close().await;
        TestDb { url: with_database(&admin, &name), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Drop is sync and may run inside a runtime: use a thread with its own runtime.
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = admin_connect(&admin).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        sqlx::query(AssertSqlSafe(drop_db)).execute(&mut conn),
                    )
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

async fn admin_connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("timed out after {CONNECT_TIMEOUT:?}")),
    }
}

/// `url` with its database (path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
        assert_eq!(
            with_database("postgresql://h?application_name=t", "x"),
            "postgresql://h/x?application_name=t"
        );
    }
}
