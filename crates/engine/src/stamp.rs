//! Names of changes and snapshots. A host that orders its changes numbers each tenant's changes
//! 1, 2, 3, ... ([`Stamp`]) within one incarnation of the tenant ([`Lineage`]: a tenant deleted
//! and made again is another). A stamp means something only with its lineage, so a change is
//! named by both ([`ChangeId`]), and the engine applies a change only to the incarnation it was
//! made in. A [`Generation`] names one snapshot within one engine, for its cache's keys.

use std::fmt;

/// One incarnation of a tenant: a tenant deleted and made again gets another. The host chooses
/// it (storage draws it at random); [`Lineage::NONE`] is for hosts that have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lineage(u64);

impl Lineage {
    /// The lineage of tenants made by a host that names none.
    pub const NONE: Lineage = Lineage(0);

    /// The lineage the host calls `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The number the host calls it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A change's place in one incarnation's order of changes: 1 for the first; [`Stamp::ZERO`]
/// before any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Stamp(u64);

impl Stamp {
    /// Before any change.
    pub const ZERO: Stamp = Stamp(0);

    /// The `n`th change.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The change after this one.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One change of one incarnation of a tenant: what the host's storage says it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeId {
    /// The incarnation the change was made in.
    pub lineage: Lineage,
    /// Its place in that incarnation's order of changes.
    pub stamp: Stamp,
}

impl ChangeId {
    /// Change `stamp` of incarnation `lineage`.
    pub const fn new(lineage: Lineage, stamp: Stamp) -> Self {
        Self { lineage, stamp }
    }
}

/// One snapshot within one engine: unique over the engine's life, so a cache key that holds
/// it can never reach an answer about other data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Generation(pub(crate) u64);
