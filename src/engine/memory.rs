//! Giving back what a pass freed.
//!
//! A pass over 10,000 accounts allocates tens of MB and frees nearly all of it. glibc's
//! malloc keeps freed memory for reuse unless it lies at the very top of its heap, so the
//! process kept the high-water mark of its largest pass: measured in `switchboard bench`
//! (five systems at 10,000 accounts each, `malloc_stats`), 150 MB held for 54 MB in use
//! between passes. `malloc_trim` returns the free pages. musl's allocator (the container
//! image) returns them by itself; elsewhere this does nothing.

/// Returns the memory the passes so far have freed to the system.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and only gives free pages of glibc's heaps
    // back to the kernel; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tunes glibc's malloc for a process that builds and drops lists of 10,000 records:
///
/// - arenas capped at two. glibc gives each thread that contends for the heap an arena of
///   its own, up to 8 per core, and each keeps its own free memory: with tokio's worker
///   and blocking threads, a pass's garbage was spread over many arenas that
///   `malloc_trim` and reuse reach less well;
/// - blocks of 256 KiB and more always mapped on their own, so freeing one gives it back.
///   glibc raises that threshold each time such a block is freed, up to 32 MiB, after
///   which a pass's large vectors and response bodies come from the heap and stay there
///   between passes. Measured in `switchboard bench` (five systems at 10,000 accounts):
///   peak RSS on a resync 150 -> 139 MiB.
///
/// Called once at start-up, before any thread.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets tunables of glibc's allocator; called before any other
    // thread exists, it races with nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
