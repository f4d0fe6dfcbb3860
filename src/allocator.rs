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
//! (`mi_is_in_heap_region`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Whether new blocks come from mimalloc; it goes from `false` to `true` once, never back.
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// Makes every block allocated from now on a mimalloc block, in every thread. Only the binary's
/// allocator ([`RunAllocator`]) reads it: in a program with another global allocator (the test
/// harness) it changes nothing.
pub fn prefer_mimalloc() {
    MIMALLOC.store(true, Ordering::Relaxed);
}

/// The binary's global allocator (see the module docs).
pub struct RunAllocator;

/// Whether `block` was made by mimalloc. No block is before the switch.
fn made_by_mimalloc(block: *mut u8) -> bool {
    // SAFETY: mimalloc only looks the address up in its map of the regions it manages.
    MIMALLOC.load(Ordering::Relaxed)
        && unsafe { libmimalloc_sys::mi_is_in_heap_region(block as *const c_void) }
}

// SAFETY: each call goes to one of two allocators that uphold `GlobalAlloc`'s contract, and a
// block is always freed or resized by the allocator that made it.
unsafe impl GlobalAlloc for RunAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match MIMALLOC.load(Ordering::Relaxed) {
            true => MiMalloc.alloc(layout),
            false => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match MIMALLOC.load(Ordering::Relaxed) {
            true => MiMalloc.alloc_zeroed(layout),
            false => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match made_by_mimalloc(block) {
            true => MiMalloc.dealloc(block, layout),
            false => System.dealloc(block, layout),
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match made_by_mimalloc(block) {
            true => MiMalloc.realloc(block, layout, new_size),
            false => System.realloc(block, layout, new_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks made before the switch are freed and grown by glibc after it, blocks made after
    /// it by mimalloc, each keeping its bytes. (The test harness has its own global allocator,
    /// so the calls are made here by hand.)
    #[test]
    fn each_block_goes_back_to_the_allocator_that_made_it() {
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: each block is written within its size and freed once, by its layout.
        unsafe {
            let early = RunAllocator.alloc(layout);
            early.write_bytes(7, 100);
            assert!(!made_by_mimalloc(early));
            prefer_mimalloc();
            let late = RunAllocator.alloc_zeroed(layout);
            assert!(made_by_mimalloc(late));
            assert!(!made_by_mimalloc(early));
            let early = RunAllocator.realloc(early, layout, 1 << 20);
            assert!(!made_by_mimalloc(early));
            assert_eq!(std::slice::from_raw_parts(early, 100), [7; 100]);
            let late = RunAllocator.realloc(late, layout, 1 << 20);
            assert!(made_by_mimalloc(late));
            assert_eq!(std::slice::from_raw_parts(late, 100), [0; 100]);
            let grown = Layout::from_size_align(1 << 20, 8).unwrap();
            RunAllocator.dealloc(early, grown);
            RunAllocator.dealloc(late, grown);
            // A block larger than mimalloc's segments is a segment of its own, its own too.
            let huge = Layout::from_size_align(64 << 20, 64).unwrap();
            let block = RunAllocator.alloc(huge);
            assert!(made_by_mimalloc(block));
            RunAllocator.dealloc(block, huge);
        }
    }
}
