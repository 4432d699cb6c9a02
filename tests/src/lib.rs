//! Fixtures shared by Custodia's integration tests: a database of the test's
//! own on each backend.
//!
//! PostgreSQL tests create a fresh database on the server named by
//! `CUSTODIA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and drop it afterwards, even when the test panics. When no server answers,
//! the test says so on the terminal and returns; under `CI=true` it fails.

use std::io::Write;
use std::sync::Once;

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    _dir: Option<TempDir>,
    postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("custodia.db").display());
        TestDatabase {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a notice) when no server
    /// is reachable outside CI.
    pub async fn postgres() -> Option<TestDatabase> {
        let admin_url = std::env::var("CUSTODIA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true and PostgreSQL is not reachable at {admin_url}: {error}");
                }
                announce_skip(&admin_url);
                return None;
            }
        };
        let name = format!("custodia_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("CUSTODIA_TEST_POSTGRES_URL must end with /<database>"),
        };
        Some(TestDatabase {
            url,
            _dir: None,
            postgres: Some(PostgresDatabase { admin_url, name }),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(pg) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&pg.admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg.name))
                    .execute(&mut admin)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database");
        }
    }
}

/// Writes straight to the terminal (the test harness captures `eprintln!`),
/// once per test binary.
fn announce_skip(admin_url: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** PostgreSQL tests SKIPPED: no server at {admin_url}. \
             Start one or set CUSTODIA_TEST_POSTGRES_URL; under CI=true this is a failure. ***\n"
        );
    });
}

/// A one-event append to a new stream of `chain`, with system metadata.
pub fn one_event(chain: custodia_domain::ChainId) -> custodia_application::AppendRequest {
    use custodia_domain::*;
    custodia_application::AppendRequest::new(
        chain,
        StreamId::new(
            StreamCategory::parse("user").expect("valid"),
            uuid::Uuid::now_v7(),
        ),
        custodia_application::ExpectedVersion::Any,
        vec![NewEvent {
            event_id: EventId::generate(),
            event_type: EventType::parse("Touched").expect("valid"),
            schema_version: SchemaVersion::new(1).expect("valid"),
            payload: Payload::json(b"{}".to_vec()).expect("JSON"),
        }],
        Metadata {
            actor: Actor::System,
            command_id: CommandId::generate(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            origin: Origin::parse("test").expect("valid"),
        },
    )
    .expect("a well-formed append")
}

/// Runs each listed async test function once per backend:
/// `backends!(appends_and_reads, conflicts_are_typed);` makes
/// `sqlite::appends_and_reads` and `postgres::appends_and_reads`, and so on.
/// Each function takes a `TestDatabase`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::TestDatabase::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(db) = $crate::TestDatabase::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// Fixtures for tests of the command side.
pub mod identity {
    use std::sync::Arc;

    use custodia_application::commands::credentials::set_password;
    use custodia_application::commands::tenants::{create_tenant, CreateTenant};
    use custodia_application::commands::users::{NewUser, Profile};
    use custodia_application::commands::{Caller, Ports};
    use custodia_application::{EventStore, PersonalData};
    use custodia_domain::identity::tenant::TenantSettings;
    use custodia_domain::rbac::Principal;
    use custodia_domain::TenantId;
    use custodia_domain::{Actor, CommandId, Origin};
    use custodia_infrastructure::{
        open_event_store, Argon2Passwords, Ed25519Signer, KeyVault, MasterKey, OpenMode, Totp,
    };

    use crate::TestDatabase;

    /// The platform operator, with a fresh command id: one per command.
    pub fn operator() -> Caller {
        Caller {
            principal: Principal::PlatformOperator,
            actor: Actor::System,
            command_id: CommandId::generate(),
            correlation_id: uuid::Uuid::now_v7(),
            origin: Origin::parse("test").expect("a valid origin"),
            expected_version: None,
            session: None,
        }
    }

    /// A tenant "Acme" with default settings and its first owner (with
    /// `password`, if given). Returns the tenant and the owner's id.
    pub async fn tenant_with_owner(
        ports: &Ports,
        email: &str,
        password: Option<&str>,
    ) -> (TenantId, uuid::Uuid) {
        let (tenant, user) = (TenantId::generate(), uuid::Uuid::now_v7());
        let owner = NewUser {
            address_vouched: false,
            user,
            email: email.into(),
            profile: Profile::default(),
            invited: false,
            password: None,
        };
        create_tenant(
            ports,
            &operator(),
            CreateTenant {
                tenant,
                name: "Acme".into(),
                settings: TenantSettings::default(),
                owner,
            },
        )
        .await
        .expect("create the tenant");
        if let Some(password) = password {
            set_password(ports, &operator(), tenant, user, password)
                .await
                .expect("set the owner's password");
        }
        (tenant, user)
    }

    /// Real adapters on the test's database (migrated), with a fresh master
    /// key and signing key.
    pub async fn ports(db: &TestDatabase) -> Ports {
        let store: Arc<dyn EventStore> = open_event_store(db.url(), OpenMode::Migrate, 8)
            .await
            .expect("open the event store");
        let vault: Arc<dyn PersonalData> = Arc::new(
            KeyVault::connect(db.url(), MasterKey::generate())
                .await
                .expect("open the key vault"),
        );
        Ports {
            store,
            vault,
            passwords: Arc::new(Argon2Passwords::new()),
            codes: Arc::new(Totp),
            tokens: Arc::new(Ed25519Signer::generate("custodia", "custodia-api")),
            unknown_logins: Arc::default(),
            links: Arc::new(custodia_application::commands::account::LinkBase(
                "http://localhost:8080".to_owned(),
            )),
        }
    }
}
