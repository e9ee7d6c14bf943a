//! A small persistent thread pool tuned for many tiny parallel jobs.
//!
//! A job is `nchunks` independent chunks of one borrowed closure (no
//! allocation per dispatch). The chunks are split into one contiguous range
//! per thread, which each thread walks front to back (so a thread streams
//! through contiguous weights, which the prefetchers like); a thread done
//! with its range steals chunks from the back of the others'. So a worker
//! that is slow to wake (parked, or descheduled on a busy machine) does not
//! hold the caller up: the caller simply runs that worker's chunks too.
//! Workers spin briefly for the next job, then park on a condvar.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// Spin iterations (`pause` is ~25-30 ns on Zen 4) a worker waits for the
/// next job before parking: ~100 µs, more than the gap between a decode
/// step's matmuls, little CPU wasted when idle.
const SPIN_LIMIT: u32 = 4_000;
/// Spin iterations the caller waits for workers before yielding its CPU
/// (~10 µs): on an oversubscribed machine the worker it waits for may need
/// this very core.
const WAIT_SPIN: u32 = 400;

/// Requested thread count (0 = default); read when the pool is created.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// Threads used per job (0 = default), clamped to the pool size.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the number of threads matmuls use (the calling thread counts as
/// one). Before the first matmul this sizes the pool; afterwards it only
/// changes how many threads a call uses, within `1..=` the pool's size (the
/// pool does not grow).
pub fn set_threads(n: usize) {
    let n = n.max(1);
    REQUESTED.store(n, Ordering::Relaxed);
    ACTIVE.store(n, Ordering::Relaxed);
}

/// Threads a matmul uses: `set_threads`' value, or by default the number of
/// CPUs this process may use (`std::thread::available_parallelism`; physical
/// cores are not distinguished from SMT siblings), clamped to the pool size.
pub fn threads() -> usize {
    let want = match ACTIVE.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    };
    match POOL.get() {
        Some(p) => want.min(p.size),
        None => want,
    }
}

/// Read once: `available_parallelism` reads cgroup files on every call,
/// which would cost more than a small matmul.
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

type Job = dyn Fn(usize) + Sync;

/// A chunk range `lo..hi` packed as `lo | hi << 32`, alone on its cache line.
#[repr(align(64))]
struct Range(AtomicU64);

impl Range {
    fn set(&self, lo: usize, hi: usize) {
        self.0
            .store(lo as u64 | (hi as u64) << 32, Ordering::Relaxed);
    }
    /// Takes the first chunk (owner) or the last one (thief).
    fn take(&self, front: bool) -> Option<usize> {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = (cur & 0xFFFF_FFFF, cur >> 32);
            if lo >= hi {
                return None;
            }
            let (next, got) = if front {
                (cur + 1, lo)
            } else {
                (cur - (1 << 32), hi - 1)
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(got as usize),
                Err(actual) => cur = actual,
            }
        }
    }
}

struct Shared {
    /// Bumped once per job; workers wake on a change.
    generation: AtomicUsize,
    /// The generation of the job still open for joining, 0 when closed.
    open: AtomicUsize,
    /// Workers inside the current job.
    active: AtomicUsize,
    /// Per-thread chunk ranges, `lo | hi << 32`; slot 0 is the caller's.
    ranges: Box<[Range]>,
    /// Threads (ranges) of the current job.
    used: AtomicUsize,
    /// Workers allowed to join the current job.
    limit: AtomicUsize,
    /// The current job; valid while it is open or `active > 0`.
    job: UnsafeCell<Option<*const Job>>,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the dispatcher, under `Pool::dispatch`,
// while the previous job is closed and no worker is active in it; workers
// read it only after joining an open job (SeqCst `active`/`open` handshake,
// see `Pool::run`), so reads never race with writes.
unsafe impl Sync for Shared {}

pub(crate) struct Pool {
    shared: &'static Shared,
    /// Threads including the caller.
    size: usize,
    dispatch: Mutex<()>,
}

pub(crate) fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let size = match REQUESTED.load(Ordering::Relaxed) {
            0 => default_threads(),
            n => n,
        };
        Pool::new(size)
    })
}

impl Pool {
    fn new(size: usize) -> Pool {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            generation: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            ranges: (0..size.max(1)).map(|_| Range(AtomicU64::new(0))).collect(),
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        }));
        let mut started = 1;
        for idx in 1..size {
            let spawned = std::thread::Builder::new()
                .name(format!("cortex-kernels-{idx}"))
                .spawn(move || worker(shared));
            if spawned.is_err() {
                break;
            }
            started += 1;
        }
        Pool {
            shared,
            size: started,
            dispatch: Mutex::new(()),
        }
    }

    /// Runs `f(chunk)` for every chunk in `0..nchunks`, on the calling thread
    /// and up to `threads - 1` of the pool's workers, and returns when all
    /// are done. With one
    /// thread, or when another caller is using the pool, everything runs on
    /// the calling thread.
    pub(crate) fn run(&self, nchunks: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
        // (Chunk ranges are packed in 32 bits; real jobs have far fewer.)
        if nchunks <= 1 || self.size <= 1 || threads <= 1 || nchunks >= 1 << 31 {
            (0..nchunks).for_each(f);
            return;
        }
        let Ok(_guard) = self.dispatch.try_lock() else {
            (0..nchunks).for_each(f);
            return;
        };
        let sh = self.shared;
        // SAFETY: lifetime erasure. Workers dereference the pointer only
        // after joining the open job, and we return (or unwind) only after
        // closing the job and seeing no worker active in it, so `f`
        // outlives every use.
        let job: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(f) };
        // SAFETY: no worker reads `job`: the previous job is closed and had
        // no active workers when its `run` returned; we hold `dispatch`.
        unsafe { *sh.job.get() = Some(job) };
        let used = threads.min(self.size);
        sh.used.store(used, Ordering::Relaxed);
        for (t, r) in sh.ranges.iter().enumerate() {
            if t < used {
                r.set(t * nchunks / used, (t + 1) * nchunks / used);
            } else {
                r.set(0, 0);
            }
        }
        sh.limit.store(used - 1, Ordering::Relaxed);
        let generation = sh.generation.load(Ordering::Relaxed).wrapping_add(1).max(1);
        sh.open.store(generation, Ordering::SeqCst);
        sh.generation.store(generation, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = sh.sleep_lock.lock();
            sh.wake.notify_all();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            claim_and_run(sh, 0, used, f)
        }));
        // Close the job: a worker that has not joined yet will see it closed.
        sh.open.store(0, Ordering::SeqCst);
        let mut spins = 0u32;
        while sh.active.load(Ordering::SeqCst) != 0 {
            spins = spins.saturating_add(1);
            if spins < WAIT_SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let worker_panicked = sh.panicked.swap(false, Ordering::Relaxed);
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if worker_panicked {
            panic!("a cortex-kernels worker panicked");
        }
    }
}

/// Runs the chunks of range `slot`, then steals from the other ranges.
fn claim_and_run(sh: &Shared, slot: usize, used: usize, f: &(dyn Fn(usize) + Sync)) {
    while let Some(c) = sh.ranges[slot].take(true) {
        f(c);
    }
    for k in 1..used {
        let victim = &sh.ranges[(slot + k) % used];
        while let Some(c) = victim.take(false) {
            f(c);
        }
    }
}

fn worker(sh: &'static Shared) {
    let mut seen = 0usize;
    loop {
        // Wait for a new generation: spin, then park on the condvar.
        let mut spins = 0u32;
        let generation = loop {
            let g = sh.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
                continue;
            }
            let guard = sh.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleepers.fetch_add(1, Ordering::SeqCst);
            let guard = if sh.generation.load(Ordering::SeqCst) == seen {
                sh.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            };
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            spins = 0;
        };
        seen = generation;
        // Join, then check the job is still open (the dispatcher closes it
        // before waiting for `active` to drain: SeqCst orders the two).
        let rank = sh.active.fetch_add(1, Ordering::SeqCst);
        if sh.open.load(Ordering::SeqCst) == generation && rank < sh.limit.load(Ordering::Relaxed) {
            // SAFETY: the job is open and we are counted in `active`, so the
            // dispatcher is still inside `run` and the closure alive.
            let job = unsafe { *sh.job.get() };
            if let Some(job) = job {
                // SAFETY: as above.
                let f = unsafe { &*job };
                let used = sh.used.load(Ordering::Relaxed);
                // Slots may collide if a stale worker skewed `rank`: the
                // CAS-based ranges stay correct, only less balanced.
                let slot = (rank + 1).min(used - 1);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    claim_and_run(sh, slot, used, f)
                }))
                .is_err()
                {
                    sh.panicked.store(true, Ordering::Relaxed);
                }
            }
        }
        sh.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk runs exactly once, for many jobs, chunk counts and
    /// concurrent callers (which fall back to running inline).
    #[test]
    fn every_chunk_runs_exactly_once() {
        let p = Pool::new(3);
        std::thread::scope(|s| {
            for caller in 0..3 {
                let p = &p;
                s.spawn(move || {
                    for job in 0..400usize {
                        let n = (job * 7 + caller) % 37;
                        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                        p.run(n, 1 + job % 3, &|c| {
                            hits[c].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(
                            hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                            "job {job}"
                        );
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_chunk_propagates_and_the_pool_survives() {
        let p = Pool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.run(8, 2, &|c| assert!(c != 5, "boom"));
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        p.run(8, 2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 8);
    }
}
