//! A run's segments, one per day, written while their cells are encoded: each cell goes to the
//! store as soon as it and every cell before it in (day, domain) order are encoded, and each
//! segment's head (its index: where each cell lies) last, once every length is known. On the
//! local store the disk writes the cells while later ones are still being encoded (see
//! `srctraffic::store::direct`); other stores gather them and write the object at the end.

use crate::commit::CommitError;
use crate::ledger::SegmentRef;
use srctraffic::bucket::RunId;
use srctraffic::segment::{self, Cell};
use srctraffic::store::{Piece, Store, StoreError};
use srctraffic::{Day, DomainName};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pieces a day's writer may have waiting: enough to keep the disk busy, few enough that a
/// slow store holds the encoding back rather than letting memory grow.
const WAITING: usize = 8;
/// Cells handed over at once: the store's writer wakes once for these, not once a cell.
const BATCH: usize = 32;

/// The segments of a run being written.
pub struct Segments {
    days: Vec<DayWriter>,
    /// The day the next cell belongs to.
    at: usize,
}

/// One day's segment being written.
struct DayWriter {
    day: Day,
    /// Every domain the plan promised, in order, and the lengths of the cells given so far.
    domains: Vec<DomainName>,
    sizes: Vec<usize>,
    /// Cells not handed over yet.
    batch: Vec<Vec<u8>>,
    key: String,
    tx: Option<mpsc::Sender<Piece>>,
    task: JoinHandle<Result<(), StoreError>>,
}

/// The segment writers stopped: [`Segments::stopped`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl Segments {
    /// Starts one writer per day of `plan` (every (day, domain) to come, in that order) on the
    /// runtime `rt`, for run `run`.
    pub fn start(
        store: &Arc<dyn Store>,
        rt: &tokio::runtime::Handle,
        run: RunId,
        plan: &[(Day, &DomainName)],
    ) -> Segments {
        let days = plan
            .chunk_by(|a, b| a.0 == b.0)
            .map(|cells| {
                let day = cells[0].0;
                let domains: Vec<DomainName> = cells.iter().map(|(_, d)| (*d).clone()).collect();
                let head_len = segment::head_len(&domains);
                let key = reference(day, domains.len()).key(run);
                let (tx, rx) = mpsc::channel(WAITING);
                let (store, to) = (Arc::clone(store), key.clone());
                let task = rt.spawn(async move { store.put_streamed(&to, head_len, rx).await });
                DayWriter {
                    day,
                    sizes: Vec::with_capacity(domains.len()),
                    batch: Vec::with_capacity(BATCH),
                    domains,
                    key,
                    tx: Some(tx),
                    task,
                }
            })
            .collect();
        Segments { days, at: 0 }
    }

    /// How many segments (days) are being written.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Whether there are none (the run counted nothing).
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Hands over the next cell in plan order, waiting while the store is behind. Call it from
    /// outside the runtime (it blocks).
    pub fn push(&mut self, cell: Cell) -> Result<(), Stopped> {
        while let Some(w) = self.days.get(self.at)
            && w.sizes.len() == w.domains.len()
        {
            self.at += 1;
        }
        let w = self.days.get_mut(self.at).ok_or(Stopped)?;
        // A cell out of plan would make the index lie: refuse it (the writers then stop).
        if (w.day, &w.domains[w.sizes.len()]) != (cell.day, &cell.domain) {
            return Err(Stopped);
        }
        w.sizes.push(cell.body.len());
        w.batch.push(cell.body);
        if w.batch.len() < BATCH && w.sizes.len() < w.domains.len() {
            return Ok(());
        }
        let tx = w.tx.as_ref().ok_or(Stopped)?;
        let batch = std::mem::replace(&mut w.batch, Vec::with_capacity(BATCH));
        tx.blocking_send(Piece::Parts(batch)).map_err(|_| Stopped)
    }

    /// Sends each segment's head, once every planned cell has come, and waits for each to be
    /// written; the segments, for the run's record.
    pub async fn finish(mut self) -> Result<Vec<SegmentRef>, CommitError> {
        if self.days.iter().any(|w| w.sizes.len() != w.domains.len()) {
            return Err(self.stopped().await);
        }
        let mut refs = Vec::with_capacity(self.days.len());
        for w in &mut self.days {
            let cells: Vec<(&DomainName, usize)> =
                w.domains.iter().zip(w.sizes.iter().copied()).collect();
            let head = segment::head(w.day, &cells);
            if let Some(tx) = w.tx.take() {
                // A writer that already stopped says why below.
                let _ = tx.send(Piece::Head(head)).await;
            }
            refs.push(reference(w.day, w.domains.len()));
        }
        for w in self.days {
            outcome(&w.key, w.task.await)?;
        }
        Ok(refs)
    }

    /// Gives the segments up (nothing of them becomes visible) and says why the writers
    /// stopped: the first store error, if one did.
    pub async fn stopped(self) -> CommitError {
        let mut first = None;
        for mut w in self.days {
            w.tx = None;
            if let Err(e) = outcome(&w.key, w.task.await) {
                first.get_or_insert(e);
            }
        }
        first.unwrap_or_else(|| {
            CommitError::Store(StoreError::Unavailable(
                "a segment's cells did not come in the planned order".into(),
            ))
        })
    }
}

fn reference(day: Day, cells: usize) -> SegmentRef {
    SegmentRef {
        day: day.to_string(),
        cells: cells as u64,
    }
}

fn outcome(
    key: &str,
    joined: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), CommitError> {
    match joined {
        Ok(r) => Ok(r?),
        Err(e) => Err(CommitError::Store(StoreError::Unavailable(format!(
            "writing {key} failed: {e}"
        )))),
    }
}

/// Writes a run's cells, sorted by day then domain, as its segments at once: for callers that
/// hold every cell already.
pub async fn write_all(
    store: &Arc<dyn Store>,
    run: RunId,
    cells: Vec<Cell>,
) -> Result<Vec<SegmentRef>, CommitError> {
    let mut refs = Vec::new();
    let mut writes = Vec::new();
    let mut cells = cells.into_iter().peekable();
    while let Some(first) = cells.next() {
        let day = first.day;
        let mut day_cells = vec![first];
        while let Some(c) = cells.next_if(|c| c.day == day) {
            day_cells.push(c);
        }
        let sizes: Vec<(&DomainName, usize)> = day_cells
            .iter()
            .map(|c| (&c.domain, c.body.len()))
            .collect();
        let head = segment::head(day, &sizes);
        let head_len = head.len();
        let r = reference(day, day_cells.len());
        let parts = day_cells.into_iter().map(|c| c.body).collect();
        // Room for both pieces: the write reads them once it is awaited below.
        let (tx, rx) = mpsc::channel(2);
        for piece in [Piece::Parts(parts), Piece::Head(head)] {
            tx.try_send(piece).map_err(|_| {
                CommitError::Store(StoreError::Unavailable("segment channel refused".into()))
            })?;
        }
        let key = r.key(run);
        writes.push(async move { store.put_streamed(&key, head_len, rx).await });
        refs.push(r);
    }
    for r in futures_util::future::join_all(writes).await {
        r?;
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use srctraffic::bucket::DayBucket;
    use srctraffic::store::MemoryStore;

    fn cell(domain: &str, day: i32, bytes: u64) -> Cell {
        let mut b = DayBucket::new(DomainName::parse(domain).unwrap(), Day(day));
        b.minutes[3] = bytes;
        Cell::of(&b)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn cells_streamed_make_the_same_segments_as_cells_written_at_once() {
        let rt = runtime();
        let cells = vec![
            cell("a.com", 1, 5),
            cell("b.com", 1, 6),
            cell("a.com", 2, 7),
        ];
        let plan: Vec<(Day, &DomainName)> = cells.iter().map(|c| (c.day, &c.domain)).collect();
        let (streamed, at_once): (Arc<dyn Store>, Arc<dyn Store>) =
            (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let run = RunId([7; 16]);
        let mut segments = Segments::start(&streamed, rt.handle(), run, &plan);
        for c in cells.clone() {
            segments.push(c).unwrap();
        }
        let refs = rt.block_on(segments.finish()).unwrap();
        assert_eq!(refs, rt.block_on(write_all(&at_once, run, cells)).unwrap());
        for r in &refs {
            let key = r.key(run);
            let got = rt.block_on(streamed.get(&key)).unwrap().unwrap();
            assert_eq!(Some(got), rt.block_on(at_once.get(&key)).unwrap());
        }
    }

    #[test]
    fn a_cell_out_of_plan_or_missing_writes_nothing() {
        let rt = runtime();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (a, b) = (cell("a.com", 1, 5), cell("b.com", 1, 6));
        let plan = [(a.day, &a.domain), (b.day, &b.domain)];
        let mut segments = Segments::start(&store, rt.handle(), RunId([1; 16]), &plan);
        assert_eq!(segments.push(b.clone()), Err(Stopped));
        rt.block_on(segments.stopped());
        let mut segments = Segments::start(&store, rt.handle(), RunId([1; 16]), &plan);
        segments.push(a).unwrap();
        assert!(rt.block_on(segments.finish()).is_err());
        assert!(rt.block_on(store.list("")).unwrap().is_empty());
    }
}
