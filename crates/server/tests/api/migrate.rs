//! `reco migrate` on both backends.

use std::process::Command;

use rand::Rng;
use sqlx::Connection;

use crate::helpers::create_pg_database;

fn reco() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reco"));
    command.env_remove("DATABASE_URL").env_remove("RECO_CONFIG");
    command
}

#[test]
fn migrate_makes_the_embedded_database_under_data() {
    let dir = std::env::temp_dir().join(format!("reco_migrate_{:x}", rand::rng().random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..2 {
        let out = reco().arg("migrate").current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "migrated the sqlite database"
        );
    }
    assert!(dir.join("data").join("reco.db").is_file());
}

#[tokio::test]
async fn migrate_prepares_a_postgres_database() {
    let url = create_pg_database().await;
    let out = reco()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "migrated the postgres database"
    );
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .unwrap()
    .count();
    assert_eq!(
        applied,
        i64::try_from(files).unwrap(),
        "every migration applied"
    );
    assert!(applied >= 2);
    // The tenants' vector indexes follow the ranking mode the servers run with: built for
    // `database`, dropped for `memory` (the default), the rows untouched either way.
    sqlx::query("INSERT INTO tenants (name, dimension, metric) VALUES ('shop', 4, 'cosine')")
        .execute(&mut db)
        .await
        .unwrap();
    let indexes = async |db: &mut sqlx::PgConnection| -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'entities\\_hnsw\\_%'",
        )
        .fetch_one(db)
        .await
        .unwrap()
    };
    for (ranking, want) in [(Some("database"), 1), (None, 0), (Some("database"), 1)] {
        let mut command = reco();
        command.arg("migrate").env("DATABASE_URL", &url);
        match ranking {
            Some(mode) => command.env("RECO_RANKING", mode),
            None => command.env_remove("RECO_RANKING"),
        };
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(indexes(&mut db).await, want, "ranking {ranking:?}");
    }
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(tenants, 1);
}

#[test]
fn bad_commands_and_settings_are_refused() {
    let out = reco().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let bad_url = reco()
        .arg("migrate")
        .env("DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(!bad_url.status.success());
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("postgres://"));
}
