//! The binary's memory allocator: glibc's (the system's) until a run that builds resource tables
//! switches new blocks to mimalloc ([`prefer_mimalloc`]).
//!
//! Why: a `--resources all` run builds its rows' Arrow buffers on the worker threads and frees
//! them on the writer's threads once a row group is written. glibc takes the lock of the arena
//! that made a block to free it, and a worker holds its own arena's lock while it grows a large
//! buffer (the copy and the page faults of the new one included), so workers and writer waited
//! for each other: 170-280 ms of the workers' time in a 0.9 s run on 500 MB of Bundles went to
//! waiting for arena locks (sched_switch stacks, bench/RESULTS.md, the thirtieth round).
//! mimalloc frees another thread's blocks without a lock. The run took 0.94 of the time it took
//! with glibc, at a peak about 40 MB higher.
//!
//! Why not for every command: `export --bundles` holds its Bundles' texts up to its memory
//! budget, and under mimalloc its peak went from 303 to 400 MB for 500 MB of Bundles; the
//! built-in tables alone take the same time under either.
//!
//! A block is freed and resized by the allocator that made it: a block made before the switch
//! is glibc's whatever the switch, and mimalloc says which blocks are its own
//! (`mi_is_in_heap_region`) for blocks under [`GLIBC_FROM`]. Larger blocks always come from
//! glibc: mimalloc takes a block larger than its arenas (1 GiB) straight from the operating
//! system, at an address its map of its own regions does not cover, so it would not know it as
//! its own. A mimalloc block grown to that size moves to glibc.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Whether new blocks come from mimalloc; it goes from `false` to `true` once, never back.
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// The size from which blocks come from glibc whatever the switch (see the module docs): every
/// mimalloc block is smaller. glibc maps a block this large on its own (its mmap threshold is at
/// most 32 MB) and grows it by remapping its pages, not by copying them.
const GLIBC_FROM: usize = 64 << 20;

/// Makes every block allocated from now on a mimalloc block (below [`GLIBC_FROM`]), in every
/// thread. Only the binary's allocator ([`RunAllocator`]) reads it: in a program with another
/// global allocator (the test harness) it changes nothing.
pub fn prefer_mimalloc() {
    MIMALLOC.store(true, Ordering::Relaxed);
}

/// Ends the process with `code` at once when this run switched to mimalloc; returns otherwise.
///
/// Why: mimalloc, linked into the binary, sweeps its heaps when the process exits
/// (`mi_process_done`): it frees what they hold and hands the pages back to the system one
/// `madvise` call after another, 12 ms on the main thread at the very end of a `--resources
/// all` run on 500 MB of Bundles, for memory the kernel takes back with the process anyway.
/// `_exit` skips the C library's exit handlers, that sweep among them; standard output, the one
/// buffer left to write out (the report), is flushed first. Files are written and closed by
/// then: the command has returned.
pub fn exit_at_once_after_mimalloc(code: u8) {
    if !MIMALLOC.load(Ordering::Relaxed) {
        return;
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` ends the process; nothing after it runs, and nothing needs to.
    unsafe { libc::_exit(i32::from(code)) }
}

/// The binary's global allocator (see the module docs).
pub struct RunAllocator;

/// Whether a new block of `size` bytes comes from mimalloc.
fn from_mimalloc(size: usize) -> bool {
    size < GLIBC_FROM && MIMALLOC.load(Ordering::Relaxed)
}

/// Whether `block`, of `size` bytes, was made by mimalloc: none is before the switch, and none
/// has [`GLIBC_FROM`] bytes or more.
fn made_by_mimalloc(block: *mut u8, size: usize) -> bool {
    // SAFETY: mimalloc only looks the address up in its map of the regions it manages.
    from_mimalloc(size) && unsafe { libmimalloc_sys::mi_is_in_heap_region(block as *const c_void) }
}

// SAFETY: each call goes to one of two allocators that uphold `GlobalAlloc`'s contract, and a
// block is always freed or resized by the allocator that made it (a moved block is copied whole
// into its new one first).
unsafe impl GlobalAlloc for RunAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match from_mimalloc(layout.size()) {
            true => MiMalloc.alloc(layout),
            false => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match from_mimalloc(layout.size()) {
            true => MiMalloc.alloc_zeroed(layout),
            false => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match made_by_mimalloc(block, layout.size()) {
            true => MiMalloc.dealloc(block, layout),
            false => System.dealloc(block, layout),
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !made_by_mimalloc(block, layout.size()) {
            return System.realloc(block, layout, new_size);
        }
        if new_size < GLIBC_FROM {
            return MiMalloc.realloc(block, layout, new_size);
        }
        // A mimalloc block grown to glibc's share moves to a glibc block. `realloc`'s contract:
        // `new_size`, rounded up to the alignment, does not overflow.
        let moved = System.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(block, moved, layout.size());
            MiMalloc.dealloc(block, layout);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks made before the switch are freed and grown by glibc after it, blocks made after
    /// it by mimalloc, each keeping its bytes; blocks of [`GLIBC_FROM`] bytes or more are
    /// glibc's (mimalloc would not know one of 1 GiB or more as its own), and a mimalloc block
    /// grown that large moves to glibc with its bytes. (The test harness has its own global
    /// allocator, so the calls are made here by hand.)
    #[test]
    fn each_block_goes_back_to_the_allocator_that_made_it() {
        let small = Layout::from_size_align(100, 8).unwrap();
        let grown = Layout::from_size_align(1 << 20, 8).unwrap();
        let large = Layout::from_size_align(GLIBC_FROM, 8).unwrap();
        let mine = |block: *mut u8| unsafe { libmimalloc_sys::mi_is_in_heap_region(block as *const c_void) };
        // SAFETY: each block is written within its size and freed once, by its layout.
        unsafe {
            // A block made before the switch (by glibc, as the switch may have been made by
            // another test of this process already).
            let early = System.alloc(small);
            early.write_bytes(7, 100);
            prefer_mimalloc();
            let late = RunAllocator.alloc_zeroed(small);
            assert!(made_by_mimalloc(late, 100));
            assert!(!made_by_mimalloc(early, 100));
            let early = RunAllocator.realloc(early, small, 1 << 20);
            assert!(!mine(early));
            assert_eq!(std::slice::from_raw_parts(early, 100), [7; 100]);
            RunAllocator.dealloc(early, grown);
            let late = RunAllocator.realloc(late, small, 1 << 20);
            assert!(made_by_mimalloc(late, 1 << 20));
            assert_eq!(std::slice::from_raw_parts(late, 100), [0; 100]);
            // Grown to glibc's share: moved, its bytes kept, freed by glibc.
            late.write_bytes(9, 1 << 20);
            let moved = RunAllocator.realloc(late, grown, GLIBC_FROM);
            assert!(!moved.is_null() && !mine(moved));
            assert!(std::slice::from_raw_parts(moved, 1 << 20)
                .iter()
                .all(|&byte| byte == 9));
            RunAllocator.dealloc(moved, large);
            // 1.5 GiB, never touched: glibc's, where mimalloc's map would miss it.
            let huge = Layout::from_size_align(3 << 29, 64).unwrap();
            let block = RunAllocator.alloc(huge);
            assert!(!block.is_null() && !mine(block));
            RunAllocator.dealloc(block, huge);
            // Just under the share: a mimalloc block of its own segment, known as mimalloc's.
            let share = Layout::from_size_align(GLIBC_FROM - 1, 64).unwrap();
            let block = RunAllocator.alloc(share);
            assert!(made_by_mimalloc(block, GLIBC_FROM - 1));
            RunAllocator.dealloc(block, share);
        }
    }
}
