//! The change feed: PostgreSQL LISTEN/NOTIFY tells every server sharing the database what the
//! others wrote, so each can apply it to its own engine.
//!
//! A notice is one line, `origin kind tenant rest`, sent in the same transaction as the write
//! it announces (so it arrives only if the write committed, and in commit order). It names the
//! write's stamp (its tenant's version after it, which counts the tenant's changes in commit
//! order) rather than carrying rows, which keeps it under NOTIFY's 8,000-byte limit whatever
//! the batch size; the receiver fetches the rows that carry the stamp. A server hears its own
//! changes too: the engine applies each stamp once, in order, so a repeat changes nothing. When
//! the listening connection drops, notices may have been missed, and the feed says
//! [`Change::Resync`].

use sqlx::postgres::PgListener;

use crate::error::{Result, StorageError};
use crate::notice::{CHANNEL, Change, parse};
use crate::postgres::PgStore;

/// Every server's changes, in commit order.
#[derive(Debug)]
pub struct ChangeFeed {
    listener: PgListener,
}

impl ChangeFeed {
    /// Starts listening. Changes committed after this returns are all delivered.
    pub async fn subscribe(store: &PgStore) -> Result<Self> {
        let mut listener = PgListener::connect_with(store.pool()).await?;
        listener.listen(CHANNEL).await?;
        Ok(Self { listener })
    }

    /// The next change. After a lost connection it reconnects and answers [`Change::Resync`],
    /// since notices sent meanwhile are gone.
    pub async fn next(&mut self) -> Result<Change> {
        match self.listener.try_recv().await {
            Ok(Some(notification)) => parse(notification.payload()),
            Ok(None) => Ok(Change::Resync),
            Err(e) => Err(StorageError::from(e)),
        }
    }
}
