//! The change feed: PostgreSQL LISTEN/NOTIFY tells every server sharing the database what the
//! others wrote, so each can apply it to its own engine.
//!
//! A notice is one line, `origin kind tenant rest`, sent in the same transaction as the write
//! it announces (so it arrives only if the write committed, and in commit order). It names the
//! write's batch rather than carrying rows, which keeps it under NOTIFY's 8,000-byte limit
//! whatever the batch size; the receiver fetches the batch's rows. A server skips notices of
//! its own `origin`, so nothing is applied twice. When the listening connection drops, notices
//! may have been missed, and the feed says [`Change::Resync`].

use std::time::{SystemTime, UNIX_EPOCH};

use reco_engine::{EntityId, TenantName};
use sqlx::postgres::PgListener;

use crate::error::{Result, StorageError};
use crate::postgres::PgStore;
use crate::rows::corrupt;

/// The channel every notice goes to.
pub(crate) const CHANNEL: &str = "reco_changes";

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    TenantCreated,
    TenantDeleted,
    Entities,
    EntityDeleted,
    Interactions,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::TenantCreated => "tenant_created",
            ChangeKind::TenantDeleted => "tenant_deleted",
            ChangeKind::Entities => "entities",
            ChangeKind::EntityDeleted => "entity_deleted",
            ChangeKind::Interactions => "interactions",
        }
    }
}

/// A notice's text; a batch number may be appended to it in SQL.
pub(crate) fn notice(origin: &str, kind: ChangeKind, tenant: &TenantName, rest: &str) -> String {
    format!("{origin} {} {} {rest}", kind.as_str(), tenant.as_str())
}

/// A name for this process's store, different from every other server's.
pub(crate) fn new_origin() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let here = std::ptr::from_ref(&nanos) as usize;
    format!("{:x}-{:x}-{nanos:x}", std::process::id(), here)
}

/// A change another server made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tenant was made.
    TenantCreated(TenantName),
    /// A tenant and all its data were removed.
    TenantDeleted(TenantName),
    /// Entities were written, in the given batch.
    Entities {
        /// The tenant.
        tenant: TenantName,
        /// Fetch its rows with [`PgStore::entities_in_batch`].
        batch: i64,
    },
    /// An entity was deleted.
    EntityDeleted {
        /// The tenant.
        tenant: TenantName,
        /// The entity.
        id: EntityId,
    },
    /// Interactions were recorded, in the given batch.
    Interactions {
        /// The tenant.
        tenant: TenantName,
        /// Fetch its rows with [`PgStore::interactions_in_batch`].
        batch: i64,
    },
    /// Notices may have been missed: reload everything.
    Resync,
}

/// Parses a notice; `None` for one of `origin`'s own.
fn parse(payload: &str, origin: &str) -> Result<Option<Change>> {
    let mut parts = payload.splitn(4, ' ');
    let (Some(from), Some(kind), Some(tenant), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt(format!("a change notice `{payload}`")));
    };
    if from == origin {
        return Ok(None);
    }
    let tenant = TenantName::parse(tenant).map_err(corrupt)?;
    let batch = || rest.parse::<i64>().map_err(corrupt);
    let change = match kind {
        "tenant_created" => Change::TenantCreated(tenant),
        "tenant_deleted" => Change::TenantDeleted(tenant),
        "entities" => Change::Entities {
            tenant,
            batch: batch()?,
        },
        "interactions" => Change::Interactions {
            tenant,
            batch: batch()?,
        },
        "entity_deleted" => Change::EntityDeleted {
            tenant,
            id: EntityId::parse(rest).map_err(corrupt)?,
        },
        other => return Err(corrupt(format!("a change notice of kind `{other}`"))),
    };
    Ok(Some(change))
}

/// Changes made by other servers, in commit order.
#[derive(Debug)]
pub struct ChangeFeed {
    listener: PgListener,
    origin: String,
}

impl ChangeFeed {
    /// Starts listening. Changes committed after this returns are all delivered.
    pub async fn subscribe(store: &PgStore) -> Result<Self> {
        let mut listener = PgListener::connect_with(store.pool()).await?;
        listener.listen(CHANNEL).await?;
        Ok(Self {
            listener,
            origin: store.origin().to_owned(),
        })
    }

    /// The next change another server made. After a lost connection it reconnects and answers
    /// [`Change::Resync`], since notices sent meanwhile are gone.
    pub async fn next(&mut self) -> Result<Change> {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(change) = parse(notification.payload(), &self.origin)? {
                        return Ok(change);
                    }
                }
                Ok(None) => return Ok(Change::Resync),
                Err(e) => return Err(StorageError::from(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_own_ones_are_skipped() {
        let t = TenantName::parse("shop").unwrap();
        let n = notice("me", ChangeKind::Entities, &t, "") + "42";
        assert_eq!(
            parse(&n, "other").unwrap(),
            Some(Change::Entities {
                tenant: t.clone(),
                batch: 42
            })
        );
        assert_eq!(parse(&n, "me").unwrap(), None);
        let d = notice("me", ChangeKind::EntityDeleted, &t, "an id with spaces");
        assert_eq!(
            parse(&d, "other").unwrap(),
            Some(Change::EntityDeleted {
                tenant: t.clone(),
                id: EntityId::parse("an id with spaces").unwrap()
            })
        );
        let c = notice("me", ChangeKind::TenantCreated, &t, "");
        assert_eq!(parse(&c, "other").unwrap(), Some(Change::TenantCreated(t)));
        assert!(parse("garbage", "x").is_err());
        assert!(parse("me entities shop notanumber", "x").is_err());
        assert_ne!(new_origin(), new_origin());
    }
}
