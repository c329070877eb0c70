//! One interface over both backends: PostgreSQL when a `postgres://` URL is given, the embedded
//! SQLite file otherwise.

use indicatif::ProgressBar;
use reco_engine::{
    ChangeId, CheckedEntities, CheckedInteractions, Created, EntityId, Interaction, InteractionId,
    Learning, Lineage, ModelParts, NewEntity, TenantName, TenantSpec,
};

use crate::error::{Result, StorageError};
use crate::feed::ChangeFeed;
use crate::load::load;
use crate::model::{
    DbSearch, LoadSink, Loaded, PoolStats, Recorded, TenantData, TenantRecord, TrainingLock,
};
use crate::postgres::PgStore;
use crate::settings::{PostgresSettings, SqliteSettings};
use crate::sqlite::SqliteStore;

/// Durable storage: PostgreSQL with pgvector, or the embedded SQLite file.
#[derive(Debug, Clone)]
pub enum Store {
    /// PostgreSQL with pgvector: shared by several servers, with a change feed.
    Postgres(PgStore),
    /// SQLite: one file, one server.
    Sqlite(SqliteStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            Store::Postgres($s) => $body,
            Store::Sqlite($s) => $body,
        }
    };
}

impl Store {
    /// Opens PostgreSQL for a `postgres://` or `postgresql://` URL, SQLite for a `sqlite://`
    /// path or none.
    pub async fn open(
        database_url: Option<&str>,
        postgres: PostgresSettings,
        mut sqlite: SqliteSettings,
    ) -> Result<Self> {
        match database_url {
            None => Ok(Store::Sqlite(SqliteStore::open(sqlite).await?)),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(PgStore::connect(url, postgres).await?))
            }
            Some(url) if url.starts_with("sqlite://") => {
                sqlite.path = url.trim_start_matches("sqlite://").into();
                Ok(Store::Sqlite(SqliteStore::open(sqlite).await?))
            }
            Some(url) => Err(StorageError::InvalidSetting(format!(
                "DATABASE_URL starts with postgres:// or sqlite://, not `{}`",
                url.split(':').next().unwrap_or_default()
            ))),
        }
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Applies the backend's migrations.
    pub async fn migrate(&self) -> Result<()> {
        each!(self, s => s.migrate().await)
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        each!(self, s => s.ping().await)
    }

    /// The connection pool's state.
    pub fn pool_stats(&self) -> PoolStats {
        each!(self, s => s.pool_stats())
    }

    /// Makes a tenant with the default learning, or finds it with the same settings (see
    /// [`Store::create_tenant_with`]).
    pub async fn create_tenant(
        &self,
        name: &TenantName,
        spec: TenantSpec,
    ) -> Result<(Created, Lineage)> {
        self.create_tenant_with(name, spec, &Learning::default(), None)
            .await
    }

    /// Makes a tenant (with content vectors or [`TenantSpec::WITHOUT_VECTORS`], how its
    /// model is trained, and its own request budget or none), or finds it with the same
    /// settings; other settings are a conflict. Returns the tenant's lineage too.
    pub async fn create_tenant_with(
        &self,
        name: &TenantName,
        spec: TenantSpec,
        learning: &Learning,
        rate_limit: Option<std::num::NonZeroU32>,
    ) -> Result<(Created, Lineage)> {
        let spec = spec
            .checked()
            .map_err(|e| StorageError::InvalidSetting(e.to_string()))?;
        each!(self, s => s.create_tenant(name, spec, learning, rate_limit).await)
    }

    /// Removes a tenant and all its data; false when it did not exist.
    pub async fn delete_tenant(&self, name: &TenantName) -> Result<bool> {
        each!(self, s => s.delete_tenant(name).await)
    }

    /// A tenant's settings.
    pub async fn tenant(&self, name: &TenantName) -> Result<Option<TenantSpec>> {
        each!(self, s => s.tenant(name).await)
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> Result<Vec<(TenantName, TenantSpec)>> {
        each!(self, s => s.tenants().await)
    }

    /// Inserts or replaces a batch the engine checked (see `Engine::check_entities`): all of
    /// it, or nothing. A batch checked against other settings than the tenant's is refused as a
    /// conflict, checked in the transaction that writes it. Returns the change's stamp: the
    /// tenant's version after it.
    pub async fn upsert_entities(
        &self,
        tenant: &TenantName,
        batch: &CheckedEntities,
    ) -> Result<ChangeId> {
        each!(self, s => s.upsert_entities(tenant, batch).await)
    }

    /// Deletes an entity and returns the change's stamp; `None` (and no change) when it did not
    /// exist.
    pub async fn delete_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<ChangeId>> {
        each!(self, s => s.delete_entity(tenant, id).await)
    }

    /// Records interactions and returns once they are committed, with the change's stamp and
    /// which of them were recorded: an interaction whose id (`ids`, one per interaction) the
    /// tenant already holds, or that an earlier one of the batch gave, is not recorded again.
    /// A batch of duplicates alone is still a change (a stamp), with nothing in it.
    ///
    /// # Panics
    /// When `ids` is not as long as the batch.
    pub async fn record_interactions(
        &self,
        tenant: &TenantName,
        batch: CheckedInteractions,
        ids: Vec<Option<InteractionId>>,
    ) -> Result<Recorded> {
        assert_eq!(ids.len(), batch.len(), "one id (or none) per interaction");
        let rows = batch.into_interactions().into_iter().zip(ids).collect();
        each!(self, s => s.record_interactions(tenant, rows).await)
    }

    /// An entity as stored.
    pub async fn get_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<NewEntity>> {
        each!(self, s => s.get_entity(tenant, id).await)
    }

    /// How many entities and interactions a tenant has.
    pub async fn counts(&self, tenant: &TenantName) -> Result<(u64, u64)> {
        each!(self, s => s.counts(tenant).await)
    }

    /// Stores the SHA-256 of a tenant key.
    pub async fn add_api_key(&self, tenant: &TenantName, hash: [u8; 32]) -> Result<()> {
        each!(self, s => s.add_api_key(tenant, hash).await)
    }

    /// The tenant a key hash opens.
    pub async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<TenantName>> {
        each!(self, s => s.find_api_key(hash).await)
    }

    /// Keeps a trained model unless the tenant's stored one is as new or newer (versions only
    /// go up); true when kept. With PostgreSQL every server hears of it through the feed
    /// ([`crate::Change::Model`]).
    pub async fn save_model(&self, tenant: &TenantName, parts: &ModelParts) -> Result<bool> {
        if self.tenant(tenant).await?.is_none() {
            return Err(StorageError::TenantNotFound(tenant.clone()));
        }
        each!(self, s => s.save_model(tenant, parts).await)
    }

    /// The tenant's stored model, when it has one.
    pub async fn load_model(&self, tenant: &TenantName) -> Result<Option<ModelParts>> {
        each!(self, s => s.load_model(tenant).await)
    }

    /// The version of the tenant's stored model, when it has one.
    pub async fn model_version(&self, tenant: &TenantName) -> Result<Option<u64>> {
        each!(self, s => s.model_version(tenant).await)
    }

    /// The right to train the tenant's model now, `None` while another server trains it
    /// (PostgreSQL's advisory lock; SQLite's file has one server, which guards itself).
    pub async fn training_lock(&self, tenant: &TenantName) -> Result<Option<TrainingLock>> {
        match self {
            Store::Postgres(s) => s.training_lock(tenant).await,
            Store::Sqlite(_) => Ok(Some(TrainingLock { _held: None })),
        }
    }

    /// Top-k ranked by pgvector: the `database` ranking mode.
    pub async fn search(
        &self,
        tenant: &TenantName,
        spec: TenantSpec,
        query: &DbSearch<'_>,
    ) -> Result<Vec<(EntityId, f32)>> {
        match self {
            Store::Postgres(s) => s.search(tenant, spec, query).await,
            Store::Sqlite(_) => Err(StorageError::Unsupported("ranking in the database")),
        }
    }

    /// A tenant's record, entities and whole log as of one moment, for work that reads all of
    /// it off the request path (an offline evaluation); `None` when the tenant does not exist.
    pub async fn read_tenant(&self, tenant: &TenantName) -> Result<Option<TenantData>> {
        struct Collect {
            record: Option<TenantRecord>,
            entities: Vec<NewEntity>,
            interactions: Vec<Interaction>,
        }
        impl LoadSink for Collect {
            fn tenant(&mut self, record: TenantRecord) -> Result<()> {
                self.record = Some(record);
                Ok(())
            }
            fn entities(&mut self, batch: Vec<NewEntity>) -> Result<()> {
                self.entities.extend(batch);
                Ok(())
            }
            fn interactions(&mut self, batch: Vec<Interaction>) -> Result<()> {
                self.interactions.extend(batch);
                Ok(())
            }
        }
        let mut sink = Collect {
            record: None,
            entities: Vec::new(),
            interactions: Vec::new(),
        };
        let loaded = self
            .load_tenant(tenant, i64::MIN, 10_000, &ProgressBar::hidden(), &mut sink)
            .await?;
        Ok(loaded.and(sink.record).map(|record| TenantData {
            record,
            entities: sink.entities,
            interactions: sink.interactions,
        }))
    }

    /// The change feed of other servers' writes; `None` for SQLite, which has one server.
    pub async fn subscribe(&self) -> Result<Option<ChangeFeed>> {
        match self {
            Store::Postgres(s) => ChangeFeed::subscribe(s).await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// Loads a tenant as of one moment: its record (lineage and version), then its entities,
    /// then its interactions since `since_ms`, all read in one transaction, so the rows are
    /// exactly those of the changes up to the version. `None` when the tenant does not exist.
    /// Rows go to `sink` in batches of `batch`; `progress` advances by rows read.
    pub async fn load_tenant(
        &self,
        tenant: &TenantName,
        since_ms: i64,
        batch: usize,
        progress: &ProgressBar,
        sink: &mut impl LoadSink,
    ) -> Result<Option<Loaded>> {
        each!(self, s => {
            let mut snapshot = s.snapshot().await?;
            load(&mut snapshot, tenant, since_ms, batch, progress, sink).await
        })
    }
}
