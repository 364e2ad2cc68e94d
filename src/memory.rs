//! The allocator settings that keep a run's peak small: at 30,000 snapshots
//! ebsnap stays under 30 MB resident (`examples/bench/run.sh --memory`
//! measures it).
//!
//! glibc only: elsewhere (musl, macOS) these are no-ops and the allocator's
//! own defaults apply.

/// Two glibc malloc tunables. Call before any thread starts.
/// - One arena: glibc gives each thread that allocates an arena of its own,
///   and memory freed in one is not reused by another. ebsnap waits on the
///   network, not on locks, so one arena costs nothing (about 5 MiB less).
/// - A fixed mmap threshold: every block of 128 KiB or more (the snapshot
///   lists, EC2's response pages) is mapped on its own, so freeing or
///   shrinking it gives the memory back at once. By default glibc raises
///   the threshold after the first such block is freed, and later ones land
///   in the heap, where a freed block stays resident.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Gives the heap's free pages back to the system. Discovery calls it after
/// each page of snapshots: EC2's parsed page leaves holes (about 1 MiB)
/// between the small strings ebsnap keeps, and without this the heap grows
/// by most of a page each time.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
