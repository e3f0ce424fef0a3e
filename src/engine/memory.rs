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
