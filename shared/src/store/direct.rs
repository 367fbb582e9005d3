//! Writing a large new file as its parts are made, around the page cache where the file system
//! allows it, with its head (which indexes the parts) written last.
//!
//! A run's segment (tens of MB) used to be joined into one buffer once every cell was encoded,
//! written through the page cache, then flushed. On a virtual machine each page touched for
//! the first time is a fault the host serves: joining 19 MB cost 13 ms, putting it in the page
//! cache 8 to 60 ms, and the flush 10 to 15 ms more, all after the encoding. Here the parts are
//! copied, as they come, into a few reused aligned buffers that a second thread hands to the
//! disk with `O_DIRECT`: the disk reads memory already touched, it works while the cells are
//! still being encoded, and the flush at the end is left with the file's size and extents.
//! Where `O_DIRECT` is refused (tmpfs, other systems) the same writes go through the page
//! cache and the flush does the rest.

use super::Piece;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::mpsc;

/// Bytes handed to the disk in one write.
const CHUNK: usize = 1 << 20;
/// What `O_DIRECT` needs buffers, offsets and lengths aligned to: a page covers every
/// logical block size in use.
const ALIGN: usize = 4096;
/// Buffers in flight besides those held for the head: one filling, one at the disk.
const BUFFERS: usize = 2;

/// Writes the new file `path` from `next`'s pieces: parts in order after `head_len` bytes,
/// then the head that fills them; makes it durable (data and size). An end before the head,
/// or a head of another length, is an error.
pub(crate) fn write_streamed(
    path: &Path,
    head_len: usize,
    next: impl FnMut() -> Option<Piece>,
) -> io::Result<()> {
    let f = open(path)?;
    let (full_tx, full_rx) = mpsc::sync_channel::<(Aligned, usize, u64)>(1);
    let (free_tx, free_rx) = mpsc::channel::<Aligned>();
    let total = std::thread::scope(|scope| {
        let disk = scope.spawn(|| -> io::Result<()> {
            for (mut buf, len, at) in full_rx {
                write_at(&f, &buf.bytes()[..len], at)?;
                // The filler may be gone already (it stops at the first failed hand-over).
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let filled = Filler::new(head_len, full_tx, free_rx).and_then(|f| f.run(next));
        let written = disk
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("disk writer panicked")));
        written.and(filled)
    })?;
    // The last chunk went out padded to ALIGN: cut the file back to its bytes.
    f.set_len(total)?;
    f.sync_data()
}

#[cfg(target_os = "linux")]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match direct {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => File::create(path),
        f => f,
    }
}

#[cfg(not(target_os = "linux"))]
fn open(path: &Path) -> io::Result<File> {
    File::create(path)
}

/// Writes at an offset; a file system that took `O_DIRECT` at open but refuses the write
/// gets this write and the rest through the page cache.
fn write_at(f: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    match f.write_all_at(bytes, at) {
        #[cfg(target_os = "linux")]
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            // SAFETY: plain flag calls on a descriptor `f` keeps open.
            let cleared = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == 0
            };
            if !cleared {
                return Err(e);
            }
            f.write_all_at(bytes, at)
        }
        r => r,
    }
}

/// [`CHUNK`] bytes aligned to [`ALIGN`], zeroed when made.
struct Aligned(NonNull<u8>);

// SAFETY: the buffer is owned memory, handed between threads whole.
unsafe impl Send for Aligned {}

impl Aligned {
    fn layout() -> Layout {
        // CHUNK is a multiple of ALIGN, which is a power of two.
        Layout::from_size_align(CHUNK, ALIGN).unwrap_or_else(|_| unreachable!())
    }

    fn new() -> io::Result<Aligned> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(Self::layout()) };
        NonNull::new(p)
            .map(Aligned)
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "no memory for a buffer"))
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: CHUNK bytes, allocated (and initialised) in `new`, owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), CHUNK) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0.as_ptr(), Self::layout()) }
    }
}

/// Copies the pieces into chunks and hands each full one to the disk thread with its offset;
/// chunks that hold any byte of the head stay until the head comes.
struct Filler {
    head_len: usize,
    full: mpsc::SyncSender<(Aligned, usize, u64)>,
    free: mpsc::Receiver<Aligned>,
    /// Buffers made so far, and the chunks kept for the head, with their offsets.
    made: usize,
    held: Vec<(Aligned, u64)>,
    /// The chunk being filled, its offset, and how much of it is filled.
    cur: Aligned,
    at: u64,
    used: usize,
}

fn gone() -> io::Error {
    io::Error::other("disk writer stopped")
}

impl Filler {
    fn new(
        head_len: usize,
        full: mpsc::SyncSender<(Aligned, usize, u64)>,
        free: mpsc::Receiver<Aligned>,
    ) -> io::Result<Filler> {
        Ok(Filler {
            head_len,
            full,
            free,
            made: 1,
            held: Vec::new(),
            cur: Aligned::new()?,
            at: 0,
            used: 0,
        })
    }

    /// Reads every piece, then writes the head and the chunks that wait for it; the file's
    /// length.
    fn run(mut self, mut next: impl FnMut() -> Option<Piece>) -> io::Result<u64> {
        let head_len = self.head_len;
        // The head's bytes are written over when it comes: what the buffer holds there now
        // does not matter.
        self.advance(head_len, None)?;
        loop {
            match next() {
                Some(Piece::Parts(parts)) => {
                    for p in parts {
                        self.advance(p.len(), Some(&p))?;
                    }
                }
                Some(Piece::Head(h)) if h.len() == head_len => return self.finish(&h),
                Some(Piece::Head(h)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("head of {} bytes, {head_len} promised", h.len()),
                    ));
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the pieces ended before the head",
                    ));
                }
            }
        }
    }

    /// Moves `n` bytes on, copying them from `bytes` if given.
    fn advance(&mut self, n: usize, bytes: Option<&[u8]>) -> io::Result<()> {
        let mut done = 0;
        while done < n {
            let k = (n - done).min(CHUNK - self.used);
            if let Some(b) = bytes {
                self.cur.bytes()[self.used..self.used + k].copy_from_slice(&b[done..done + k]);
            }
            self.used += k;
            done += k;
            if self.used == CHUNK {
                self.next_chunk()?;
            }
        }
        Ok(())
    }

    /// Sends the full chunk (or keeps it, if the head reaches into it) and takes another.
    fn next_chunk(&mut self) -> io::Result<()> {
        let at = self.at;
        let hold = at < self.head_len as u64;
        let fresh = match self.free.try_recv() {
            Ok(b) => b,
            // Held chunks are kept apart: BUFFERS stream besides them.
            Err(_) if hold || self.made - self.held.len() < BUFFERS => {
                self.made += 1;
                Aligned::new()?
            }
            Err(_) => self.free.recv().map_err(|_| gone())?,
        };
        let full = std::mem::replace(&mut self.cur, fresh);
        self.at += CHUNK as u64;
        self.used = 0;
        if hold {
            self.held.push((full, at));
            Ok(())
        } else {
            self.full.send((full, CHUNK, at)).map_err(|_| gone())
        }
    }

    /// Writes the head over the bytes kept for it, sends what was held and the last chunk
    /// (padded to [`ALIGN`]); the file's length.
    fn finish(mut self, head: &[u8]) -> io::Result<u64> {
        let total = self.at + self.used as u64;
        let mut rest = head;
        for (buf, _) in &mut self.held {
            let k = rest.len().min(CHUNK);
            buf.bytes()[..k].copy_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
        // Whatever of the head is left lies in the current chunk.
        self.cur.bytes()[..rest.len()].copy_from_slice(rest);
        for (buf, at) in self.held.drain(..) {
            self.full.send((buf, CHUNK, at)).map_err(|_| gone())?;
        }
        if self.used > 0 {
            let padded = self.used.next_multiple_of(ALIGN);
            self.cur.bytes()[self.used..padded].fill(0);
            self.full
                .send((self.cur, padded, self.at))
                .map_err(|_| gone())?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn a_file_is_its_head_then_its_parts_whatever_the_sizes() {
        let dir = tempfile::tempdir().unwrap();
        // (head, parts): empty, small, parts across chunk ends, a head longer than a chunk,
        // a head ending exactly at a chunk's end, ends that are not a multiple of ALIGN.
        let cases: Vec<(usize, Vec<usize>)> = vec![
            (0, vec![]),
            (24, vec![10, 0, 300]),
            (100, vec![CHUNK, CHUNK - 100]),
            (43_000, vec![24, CHUNK - 24 + 1, 0, 7, CHUNK + ALIGN + 3]),
            (CHUNK + 5, vec![3 * CHUNK + 1, 9]),
            (2 * CHUNK, vec![1]),
            (3, vec![2 * CHUNK - 3]),
        ];
        for (i, (head_len, sizes)) in cases.into_iter().enumerate() {
            let head = bytes_of(head_len, 1);
            let parts: Vec<Vec<u8>> = sizes.iter().map(|&n| bytes_of(n, n as u32)).collect();
            let mut pieces = parts
                .iter()
                .cloned()
                .map(|p| Piece::Parts(vec![p]))
                .chain([Piece::Head(head.clone())]);
            let path = dir.path().join(format!("f{i}"));
            write_streamed(&path, head_len, || pieces.next()).unwrap();
            let mut want = head;
            want.extend(parts.concat());
            assert!(
                std::fs::read(&path).unwrap() == want,
                "{head_len} {sizes:?}"
            );
        }
    }

    #[test]
    fn pieces_that_end_early_or_a_head_of_another_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut pieces = [Piece::Parts(vec![vec![1; 3 * CHUNK]])].into_iter();
        let e = write_streamed(&path, 10, || pieces.next()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut pieces = [Piece::Parts(vec![vec![1; 5]]), Piece::Head(vec![0; 9])].into_iter();
        let e = write_streamed(&path, 10, || pieces.next()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
