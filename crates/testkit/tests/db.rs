//! Real PostgreSQL: throwaway databases.

use chainmux_testkit::{TestDb, admin_url};
use sqlx::{Connection, PgConnection};

async fn exists(name: &str) -> bool {
    let mut admin = PgConnection::connect(&admin_url()).await.expect("admin connection");
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .expect("query pg_database");
    found.is_some()
}

#[tokio::test]
async fn create_gives_a_fresh_database_that_is_gone_after_drop() {
    let db = TestDb::create().await;
    let other = TestDb::create().await;
    assert_ne!(db.name, other.name);
    assert!(db.name.starts_with("chainmux_test_"), "{}", db.name);
    assert!(db.url.ends_with(&format!("/{}", db.name)), "{}", db.url);

    let mut conn = PgConnection::connect(&db.url).await.expect("connect to the test database");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.expect("SELECT 1");
    assert_eq!(one, 1);
    let current: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(&mut conn).await.expect("db");
    assert_eq!(current, db.name);
    assert!(exists(&db.name).await);

    // Dropped even with an open connection (WITH (FORCE)).
    let name = db.name.clone();
    drop(db);
    assert!(!exists(&name).await, "{name} still exists after drop");
    assert!(exists(&other.name).await);
    drop(conn);
}
