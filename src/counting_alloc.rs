//! How much memory the process holds in big blocks, so that a script whose
//! string or list grows without end stops with an error instead of taking
//! the machine's memory.
//!
//! Rhai's own size limits cannot do this cheaply: with any of them set it
//! walks a whole value after each change to it (see `engine::new_engine`).
//! Counting only blocks of `BIG_BLOCK` bytes or more keeps the many small
//! allocations of ordinary work free of any bookkeeping; a runaway string or
//! list is one big block that keeps growing.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Blocks from this size up are counted.
const BIG_BLOCK: usize = 64 * 1024;

static BIG_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes held in blocks of 64 KiB or more (0 unless the binary installed
/// [`Counting`] as its allocator).
pub(crate) fn big_bytes() -> usize {
    BIG_BYTES.load(Relaxed)
}

/// A global allocator that counts the big blocks of the one it wraps.
pub struct Counting<A>(pub A);

fn counted(size: usize, add: bool) {
    if size >= BIG_BLOCK {
        if add {
            BIG_BYTES.fetch_add(size, Relaxed)
        } else {
            BIG_BYTES.fetch_sub(size, Relaxed)
        };
    }
}

// SAFETY: every call is passed on unchanged to the wrapped allocator; the
// counting touches nothing but an atomic.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = self.0.alloc(layout);
        if !block.is_null() {
            counted(layout.size(), true);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = self.0.alloc_zeroed(layout);
        if !block.is_null() {
            counted(layout.size(), true);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        self.0.dealloc(block, layout);
        counted(layout.size(), false);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = self.0.realloc(block, layout, new_size);
        if !moved.is_null() {
            counted(layout.size(), false);
            counted(new_size, true);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_big_blocks_through_alloc_realloc_and_dealloc() {
        let counting = Counting(System);
        let before = big_bytes();
        let small = Layout::from_size_align(100, 8).unwrap();
        let big = Layout::from_size_align(BIG_BLOCK, 8).unwrap();
        // SAFETY: each block is freed once, with the layout it has by then.
        unsafe {
            let tiny = counting.alloc(small);
            assert_eq!(big_bytes(), before, "small blocks are not counted");
            let grown = counting.realloc(tiny, small, 3 * BIG_BLOCK);
            assert_eq!(big_bytes(), before + 3 * BIG_BLOCK);
            let shrunk = counting.realloc(grown, Layout::from_size_align(3 * BIG_BLOCK, 8).unwrap(), 10);
            assert_eq!(big_bytes(), before);
            counting.dealloc(shrunk, Layout::from_size_align(10, 8).unwrap());
            let block = counting.alloc_zeroed(big);
            assert_eq!(big_bytes(), before + BIG_BLOCK);
            counting.dealloc(block, big);
        }
        assert_eq!(big_bytes(), before);
    }
}
