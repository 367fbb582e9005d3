//! The ingest watermark: the latest minute of any log line committed so far, over all domains.
//! Stored as one line of text in the API time format at [`keys::WATERMARK`]; it only moves forward.

use super::{Precondition, Store, StoreError, keys};
use crate::time::{ApiTime, Minute};

/// Reads the watermark; `None` for a store that has never been written.
pub async fn read(store: &dyn Store) -> Result<Option<Minute>, StoreError> {
    match store.get(keys::WATERMARK).await? {
        None => Ok(None),
        Some(b) => parse(&b).map(Some),
    }
}

fn parse(b: &[u8]) -> Result<Minute, StoreError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| ApiTime::parse(s.trim()))
        .map(ApiTime::minute)
        .ok_or_else(|| StoreError::Corrupt {
            key: keys::WATERMARK.to_owned(),
            reason: "not a yyyy-MM-ddTHH:mm:ssZ time".to_owned(),
        })
}

/// Moves the watermark to `to` unless it is already there or later. Safe under concurrent
/// writers: a compare-and-swap loop.
pub async fn advance(store: &dyn Store, to: Minute) -> Result<Minute, StoreError> {
    loop {
        let current = store.get_versioned(keys::WATERMARK).await?;
        let when = match &current {
            Some(v) => {
                let at = parse(&v.bytes)?;
                if at >= to {
                    return Ok(at);
                }
                Precondition::Matches(v.version.clone())
            }
            None => Precondition::Absent,
        };
        match store
            .put(keys::WATERMARK, format!("{to}\n").into_bytes(), when)
            .await
        {
            Ok(_) => return Ok(to),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn the_watermark_only_moves_forward() {
        let s = MemoryStore::new();
        assert_eq!(read(&s).await.unwrap(), None);
        advance(&s, Minute(100)).await.unwrap();
        advance(&s, Minute(50)).await.unwrap();
        assert_eq!(read(&s).await.unwrap(), Some(Minute(100)));
        advance(&s, Minute(101)).await.unwrap();
        assert_eq!(read(&s).await.unwrap(), Some(Minute(101)));
    }
}
