//! The change notices' wire format: one line, `origin kind tenant rest`, on one channel. The
//! PostgreSQL backend sends them in the transactions of its writes; the feed parses them.

use std::time::{SystemTime, UNIX_EPOCH};

use reco_engine::{ChangeId, EntityId, Lineage, Stamp, TenantName};

use crate::error::Result;
use crate::rows::{self, corrupt};

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
    Model,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::TenantCreated => "tenant_created",
            ChangeKind::TenantDeleted => "tenant_deleted",
            ChangeKind::Entities => "entities",
            ChangeKind::EntityDeleted => "entity_deleted",
            ChangeKind::Interactions => "interactions",
            ChangeKind::Model => "model",
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
        lineage: Lineage,
    },
    /// A tenant and all its data were removed.
    TenantDeleted {
        /// The tenant.
        tenant: TenantName,
        /// The incarnation removed.
        lineage: Lineage,
    },
    /// Entities were written by `change`.
    Entities {
        /// The tenant.
        tenant: TenantName,
        /// The change; fetch its rows with [`crate::PgStore::entities_in_batch`].
        change: ChangeId,
    },
    /// An entity was deleted by `change`.
    EntityDeleted {
        /// The tenant.
        tenant: TenantName,
        /// The change.
        change: ChangeId,
        /// The entity.
        id: EntityId,
    },
    /// Interactions were recorded by `change`.
    Interactions {
        /// The tenant.
        tenant: TenantName,
        /// The change; fetch its rows with [`crate::PgStore::interactions_in_batch`].
        change: ChangeId,
    },
    /// A collaborative model was kept: version `version` of the tenant's incarnation `lineage`.
    Model {
        /// The tenant.
        tenant: TenantName,
        /// The incarnation it was trained for.
        lineage: Lineage,
        /// Its version; fetch it with [`crate::Store::load_model`].
        version: u64,
    },
    /// Notices may have been missed: reload everything.
    Resync,
}

/// Parses a notice. The origin is only for people reading notices: a server hears its own
/// changes too, and applying a change twice changes nothing. A change names its incarnation
/// (`lineage stamp`), and a lineage travels as the database keeps it, a signed `bigint`.
pub(crate) fn parse(payload: &str) -> Result<Change> {
    let bad = || corrupt(format!("a change notice `{payload}`"));
    let mut parts = payload.splitn(4, ' ');
    let (Some(_origin), Some(kind), Some(tenant), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let tenant = TenantName::parse(tenant).map_err(corrupt)?;
    let lineage = |text: &str| text.parse::<i64>().map(rows::lineage_of).map_err(corrupt);
    fn split_change(text: &str) -> Option<(&str, &str, Option<&str>)> {
        let mut fields = text.splitn(3, ' ');
        Some((fields.next()?, fields.next()?, fields.next()))
    }
    let change = |text| -> Result<(ChangeId, Option<&str>)> {
        let (l, s, rest) = split_change(text).ok_or_else(bad)?;
        let stamp = Stamp::new(s.parse::<u64>().map_err(corrupt)?);
        Ok((ChangeId::new(lineage(l)?, stamp), rest))
    };
    let parsed = match kind {
        "tenant_created" => Change::TenantCreated {
            tenant,
            lineage: lineage(rest)?,
        },
        "tenant_deleted" => Change::TenantDeleted {
            tenant,
            lineage: lineage(rest)?,
        },
        "entities" => Change::Entities {
            tenant,
            change: change(rest)?.0,
        },
        "interactions" => Change::Interactions {
            tenant,
            change: change(rest)?.0,
        },
        "model" => {
            let (l, v, _) = split_change(rest).ok_or_else(bad)?;
            Change::Model {
                tenant,
                lineage: lineage(l)?,
                version: v.parse::<u64>().map_err(corrupt)?,
            }
        }
        "entity_deleted" => {
            let (change, id) = change(rest)?;
            Change::EntityDeleted {
                tenant,
                change,
                id: EntityId::parse(id.ok_or_else(bad)?).map_err(corrupt)?,
            }
        }
        other => return Err(corrupt(format!("a change notice of kind `{other}`"))),
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let t = TenantName::parse("shop").unwrap();
        let change =
            |lineage: u64, stamp: u64| ChangeId::new(Lineage::new(lineage), Stamp::new(stamp));
        let n = notice("me", ChangeKind::Entities, &t, "") + "5 42";
        assert_eq!(
            parse(&n).unwrap(),
            Change::Entities {
                tenant: t.clone(),
                change: change(5, 42)
            }
        );
        let d = notice("me", ChangeKind::EntityDeleted, &t, "") + "5 7 an id with spaces";
        assert_eq!(
            parse(&d).unwrap(),
            Change::EntityDeleted {
                tenant: t.clone(),
                change: change(5, 7),
                id: EntityId::parse("an id with spaces").unwrap()
            }
        );
        // Lineages are random bigints: a negative one is its 64 bits.
        let c = notice("me", ChangeKind::TenantCreated, &t, "-1");
        assert_eq!(
            parse(&c).unwrap(),
            Change::TenantCreated {
                tenant: t.clone(),
                lineage: Lineage::new(u64::MAX)
            }
        );
        let i = notice("me", ChangeKind::Interactions, &t, "99 3");
        assert_eq!(
            parse(&i).unwrap(),
            Change::Interactions {
                tenant: t.clone(),
                change: change(99, 3)
            }
        );
        let m = notice("me", ChangeKind::Model, &t, "7 4");
        assert_eq!(
            parse(&m).unwrap(),
            Change::Model {
                tenant: t.clone(),
                lineage: Lineage::new(7),
                version: 4
            }
        );
        assert!(parse("garbage").is_err());
        assert!(parse(&(notice("me", ChangeKind::Entities, &t, "") + "42")).is_err());
        assert!(parse(&(notice("me", ChangeKind::EntityDeleted, &t, "") + "5 7")).is_err());
    }
}
