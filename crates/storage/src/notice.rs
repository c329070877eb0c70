//! The change notices' wire format: one line, `origin kind tenant rest`, on one channel. The
//! PostgreSQL backend sends them in the transactions of its writes; the feed parses them.

use std::time::{SystemTime, UNIX_EPOCH};

use reco_engine::{EntityId, TenantName};

use crate::error::Result;
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

/// A change, made by this server or another, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tenant was made.
    TenantCreated {
        /// The tenant.
        tenant: TenantName,
        /// The random name of this incarnation.
        lineage: u64,
    },
    /// A tenant and all its data were removed.
    TenantDeleted {
        /// The tenant.
        tenant: TenantName,
        /// The incarnation removed.
        lineage: u64,
    },
    /// Entities were written by the change stamped `stamp`.
    Entities {
        /// The tenant.
        tenant: TenantName,
        /// The change's stamp; fetch its rows with [`PgStore::entities_in_batch`].
        stamp: u64,
    },
    /// An entity was deleted by the change stamped `stamp`.
    EntityDeleted {
        /// The tenant.
        tenant: TenantName,
        /// The change's stamp.
        stamp: u64,
        /// The entity.
        id: EntityId,
    },
    /// Interactions were recorded by the change stamped `stamp`.
    Interactions {
        /// The tenant.
        tenant: TenantName,
        /// The change's stamp; fetch its rows with [`PgStore::interactions_in_batch`].
        stamp: u64,
    },
    /// Notices may have been missed: reload everything.
    Resync,
}

/// Parses a notice. The origin is only for people reading notices: a server hears its own
/// changes too, and applying a stamp twice changes nothing.
pub(crate) fn parse(payload: &str) -> Result<Change> {
    let mut parts = payload.splitn(4, ' ');
    let (Some(_origin), Some(kind), Some(tenant), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt(format!("a change notice `{payload}`")));
    };
    let tenant = TenantName::parse(tenant).map_err(corrupt)?;
    let number = |text: &str| text.parse::<u64>().map_err(corrupt);
    let change = match kind {
        "tenant_created" => Change::TenantCreated {
            tenant,
            lineage: number(rest)?,
        },
        "tenant_deleted" => Change::TenantDeleted {
            tenant,
            lineage: number(rest)?,
        },
        "entities" => Change::Entities {
            tenant,
            stamp: number(rest)?,
        },
        "interactions" => Change::Interactions {
            tenant,
            stamp: number(rest)?,
        },
        "entity_deleted" => {
            let (stamp, id) = rest
                .split_once(' ')
                .ok_or_else(|| corrupt(format!("a change notice `{payload}`")))?;
            Change::EntityDeleted {
                tenant,
                stamp: number(stamp)?,
                id: EntityId::parse(id).map_err(corrupt)?,
            }
        }
        other => return Err(corrupt(format!("a change notice of kind `{other}`"))),
    };
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let t = TenantName::parse("shop").unwrap();
        let n = notice("me", ChangeKind::Entities, &t, "") + "42";
        assert_eq!(
            parse(&n).unwrap(),
            Change::Entities {
                tenant: t.clone(),
                stamp: 42
            }
        );
        let d = notice("me", ChangeKind::EntityDeleted, &t, "") + "7 an id with spaces";
        assert_eq!(
            parse(&d).unwrap(),
            Change::EntityDeleted {
                tenant: t.clone(),
                stamp: 7,
                id: EntityId::parse("an id with spaces").unwrap()
            }
        );
        let c = notice("me", ChangeKind::TenantCreated, &t, "99");
        assert_eq!(
            parse(&c).unwrap(),
            Change::TenantCreated {
                tenant: t.clone(),
                lineage: 99
            }
        );
        let i = notice("me", ChangeKind::Interactions, &t, "3");
        assert_eq!(
            parse(&i).unwrap(),
            Change::Interactions {
                tenant: t,
                stamp: 3
            }
        );
        assert!(parse("garbage").is_err());
        assert!(parse("me entities shop notanumber").is_err());
        assert!(parse("me entity_deleted shop 5").is_err());
        assert_ne!(new_origin(), new_origin());
    }
}
