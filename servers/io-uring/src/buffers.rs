//! The provided-buffer ring: the receive memory one ring lends the kernel, shared by all of
//! its connections.
//!
//! A readiness server (the event loop) reads when the kernel says a socket has bytes, into
//! a buffer it chooses at that moment. A completion server must say where the bytes go
//! *before* they arrive, when it hands the kernel the receive. Giving every waiting receive
//! a buffer of its own would cost a buffer per idle connection: 10,000 idle clients, 10,000
//! buffers doing nothing. So the ring lends the kernel one pool of buffers instead, and
//! each receive says only "take one from pool 0". The kernel picks a buffer when bytes
//! really arrive, fills it, and names it in the completion (`IORING_CQE_F_BUFFER` and the
//! buffer's id). An idle connection holds no buffer at all.
//!
//! ```text
//!    ring memory (page-aligned, `entries` × 16 bytes)    buffers (`entries` × `size`)
//!   ┌────────┬────────┬────────┬─────┬────────┐        ┌────────┬────────┬─────┐
//!   │ addr   │ addr   │ addr   │ ... │        │        │ buf 0  │ buf 1  │ ... │
//!   │ len id │ len id │ len id │     │        │        │        │        │     │
//!   └────────┴────────┴────────┴─────┴────────┘        └────────┴────────┴─────┘
//!      ▲ head (the kernel takes from here)   ▲ tail (the ring gives back here; kept
//!                                              in entry 0's last two bytes)
//! ```
//!
//! **Who owns each buffer, when.** A buffer's id is in the ring between head and tail: the
//! kernel owns it and may write it at any moment. The kernel takes it (head moves on) and
//! names it in a receive's completion: from then on the thread owns it, reads the bytes
//! into the connection's own state (`protocol::Connection` keeps a copy), and gives it back
//! by writing its entry at the tail and moving the tail on (a release store, so the kernel
//! sees the entry before the tail). The thread gives every buffer back in the same round it
//! was handed over, so between rounds the kernel owns them all.
//!
//! **The memory story.** `entries × size` bytes per ring (1,024 × 4 KiB = 4 MiB by default),
//! whatever the number of connections: the pool's size bounds what a round can receive at
//! once, not what a connection costs. When every buffer is out, a receive completes with
//! `ENOBUFS` and is simply armed again in the next round (counted as `buffers_exhausted` in
//! `/stats`).
//!
//! **Why this memory is never freed under the kernel.** Registering the ring gives the
//! kernel both addresses to use until the ring is unregistered. If the server cannot be sure
//! the kernel is done (a ring thread that gave up on operations that never came back), the
//! memory is leaked on purpose: a few megabytes lost once beats the kernel writing into
//! memory the allocator has given to someone else.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group id receives name: each ring has one pool, so always 0.
pub const GROUP: u16 = 0;

/// One ring's pool of provided buffers. See the module documentation.
pub struct BufferRing {
    /// The entries the kernel reads (address, length, id of each buffer it may take).
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// The buffers themselves, one allocation of `count × size` bytes.
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    size: u32,
    /// Our copy of the tail: where the next given-back buffer goes.
    tail: u16,
    /// Registered with a ring and not (successfully) unregistered: the kernel may use the
    /// memory, so it must not be freed.
    lent: bool,
}

// SAFETY: the pointers are owned allocations, used by one thread at a time (the ring
// thread that made them); the type is only moved to that thread once.
unsafe impl Send for BufferRing {}

impl BufferRing {
    /// A pool of `count` buffers of `size` bytes, every one of them offered to the kernel
    /// (once registered). `count` must be a power of two, at most 32,768.
    pub fn new(count: u16, size: u32) -> io::Result<BufferRing> {
        if !count.is_power_of_two() || count > 32_768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a buffer ring needs a power of two of buffers (at most 32768), each of some bytes",
            ));
        }
        let page = page_size();
        let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        // The kernel wants the entries page-aligned (io_uring_register_buf_ring(3)).
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            page,
        )
        .map_err(bad)?;
        let memory_layout =
            Layout::from_size_align(usize::from(count) * size as usize, page).map_err(bad)?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1). Zeroed memory
        // costs nothing until touched: the pages of a buffer become resident only once the
        // kernel first writes into it.
        let (entries, memory) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout),
                alloc::alloc_zeroed(memory_layout),
            )
        };
        let (Some(entries), Some(memory)) = (NonNull::new(entries), NonNull::new(memory)) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut ring = BufferRing {
            entries: entries.cast(),
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
            lent: false,
        };
        // Every buffer starts in the kernel's hands (once the ring is registered).
        for id in 0..count {
            ring.give_back(id);
        }
        Ok(ring)
    }

    /// How many buffers, and the size of each.
    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Lends the pool to `ring` as buffer group [`GROUP`]. From now on the memory is the
    /// kernel's too, and dropping the pool leaks it instead of freeing it, until
    /// [`BufferRing::unregister`] takes it back.
    pub fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries stay allocated and in place until they are unregistered (or
        // forever: `Drop` leaks them while `lent`), which is what registering requires.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count,
                GROUP,
                0,
            )?;
        }
        self.lent = true;
        Ok(())
    }

    /// Takes the pool back from `ring`, so that dropping it frees it. To be called only
    /// once every receive of the ring has completed: the kernel stops picking buffers at
    /// once, but a receive that had picked one would still write into it.
    pub fn unregister(&mut self, ring: &IoUring) -> io::Result<()> {
        ring.submitter().unregister_buf_ring(GROUP)?;
        self.lent = false;
        Ok(())
    }

    /// The first `len` bytes of buffer `id`.
    ///
    /// # Safety
    ///
    /// The kernel must have handed buffer `id` over in a completion, with `len` bytes
    /// written, and it must not have been given back since: then the kernel does not
    /// touch it until [`BufferRing::give_back`].
    pub unsafe fn get(&self, id: u16, len: usize) -> &[u8] {
        let id = usize::from(id % self.count);
        let len = len.min(self.size as usize);
        // SAFETY: `id < count`, so the buffer lies inside the allocation; the caller
        // promises the kernel is done writing it and the bytes were written.
        unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(id * self.size as usize), len)
        }
    }

    /// Gives buffer `id` back to the kernel: writes its entry at the tail, then moves the
    /// tail on. The thread must not read the buffer afterwards.
    pub fn give_back(&mut self, id: u16) {
        let id = id % self.count;
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`, inside the entries' allocation. The kernel reads an entry
        // only between head and tail, and `slot` is the tail's, which it does not read until
        // the store below moves the tail past it; the kernel never writes the entries. The
        // setters write only the address, length and id fields, never the tail that shares
        // entry 0's last bytes, which only the atomic store below writes.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(slot);
            entry.set_addr(
                self.memory
                    .as_ptr()
                    .add(usize::from(id) * self.size as usize) as u64,
            );
            entry.set_len(self.size);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` points at the tail field inside entry 0, which is
        // allocated, two-byte aligned, and written by nobody but this thread.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        // Release: the kernel, which loads the tail with acquire, sees the entry written
        // above before it sees the new tail.
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        if self.lent {
            // The kernel may still write here: leak rather than free (see the module
            // documentation).
            tracing::warn!(
                "a provided-buffer ring was not given back by the kernel; its {} KiB are left allocated",
                (self.memory_layout.size() + self.entries_layout.size()) / 1024
            );
            return;
        }
        // SAFETY: allocated in `new` with exactly these layouts, and the kernel has no use
        // of them: never registered, or unregistered with no receive still holding a buffer.
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}

/// The memory page size.
fn page_size() -> usize {
    rustix::param::page_size().max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_needs_a_power_of_two_of_buffers() {
        assert!(BufferRing::new(3, 64).is_err());
        assert!(BufferRing::new(0, 64).is_err());
        assert!(BufferRing::new(4, 0).is_err());
        let pool = BufferRing::new(4, 64).expect("a pool");
        assert_eq!((pool.count(), pool.size()), (4, 64));
        // Every buffer was offered: the tail went round once.
        assert_eq!(pool.tail, 4);
    }

    #[test]
    fn the_kernel_fills_a_provided_buffer_and_names_it() {
        use io_uring::{cqueue, opcode, squeue, types};
        use std::io::Write;
        use std::os::fd::AsRawFd;

        let mut ring = IoUring::new(8).expect("a ring");
        let mut pool = BufferRing::new(2, 16).expect("a pool");
        pool.register(&ring).expect("registered");
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        a.write_all(b"hello").expect("write");
        let recv = opcode::Recv::new(types::Fd(b.as_raw_fd()), std::ptr::null_mut(), 16)
            .buf_group(GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(7);
        // SAFETY: the receive names no memory of ours; the pool outlives it (it completes
        // before the pool is unregistered below).
        unsafe { ring.submission().push(&recv) }.expect("room");
        ring.submit_and_wait(1).expect("submitted");
        let cqe = ring.completion().next().expect("a completion");
        assert_eq!(cqe.result(), 5);
        let id = cqueue::buffer_select(cqe.flags()).expect("a provided buffer");
        // SAFETY: the completion handed buffer `id` over with 5 bytes written.
        assert_eq!(unsafe { pool.get(id, 5) }, b"hello");
        pool.give_back(id);
        pool.unregister(&ring).expect("unregistered");
    }
}
