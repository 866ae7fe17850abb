// threadpool.c: a persistent pool of worker threads for the kernels.
//
// ck_pool_run(n, fn, ctx) runs fn(ctx, i) for i in [0, n) on the caller and the workers and
// returns when all are done. Workers spin briefly on a generation counter after each job
// (decode issues hundreds of small jobs per token, and a condition-variable wake-up costs
// more than the job), then sleep on a condition variable.
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERATIONS 20000

static struct {
    int threads;                 // including the caller
    pthread_t *workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    // High 32 bits: job generation; low 32 bits: next task index. Claiming a task is a CAS on
    // both, so a worker that wakes late can never run a task of a job that has moved on.
    _Atomic uint64_t state;
    atomic_int done_tasks;       // tasks finished
    atomic_int task_count;
    ck_task_fn fn;
    void *ctx;
    atomic_int sleepers;
    pthread_mutex_t run_lock;    // one job at a time
} pool = {.threads = 1, .mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .run_lock = PTHREAD_MUTEX_INITIALIZER};

// Set while this thread runs a task: a kernel that splits itself over the pool runs inline
// when called from inside a task (the pool runs one job at a time).
static __thread int in_task;

static void run_tasks(uint32_t generation) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&pool.state, memory_order_acquire);
        if ((uint32_t)(v >> 32) != generation) return;
        uint32_t i = (uint32_t)v;
        if (i >= (uint32_t)atomic_load_explicit(&pool.task_count, memory_order_acquire)) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.state, &v, v + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        in_task = 1;
        pool.fn(pool.ctx, (int)i);
        in_task = 0;
        atomic_fetch_add_explicit(&pool.done_tasks, 1, memory_order_acq_rel);
    }
}

static uint32_t current_generation(void) { return (uint32_t)(atomic_load_explicit(&pool.state, memory_order_acquire) >> 32); }

static void *worker_main(void *arg) {
    (void)arg;
    uint32_t seen = current_generation();
    for (;;) {
        int spins = 0;
        while (current_generation() == seen) {
            if (++spins < SPIN_ITERATIONS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&pool.mutex);
            atomic_fetch_add(&pool.sleepers, 1);
            while (current_generation() == seen) pthread_cond_wait(&pool.wake, &pool.mutex);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mutex);
        }
        seen = current_generation();
        run_tasks(seen);
    }
    return NULL;
}

int ck_pool_init(int threads) {
    pthread_mutex_lock(&pool.run_lock);
    if (pool.workers == NULL) {
#if defined(__GLIBC__)
        // Keep large temporaries in the heap: the forward pass allocates and frees many
        // multi-megabyte buffers, and fresh mmap'd pages cost a fault and a zeroing each time.
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        // Heap memory is then never given back, so let threads share a few arenas: with one
        // arena per thread (glibc's default, up to 8 per core) every server thread that once
        // held a large request body would keep its own copy of that peak resident.
        mallopt(M_ARENA_MAX, 4);
#endif
        if (threads <= 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            threads = n > 0 ? (int)n : 1;
        }
        if (threads > 256) threads = 256;
        pool.threads = threads;
        if (threads > 1) {
            pool.workers = calloc((size_t)threads - 1, sizeof(pthread_t));
            for (int i = 0; i < threads - 1; i++) pthread_create(&pool.workers[i], NULL, worker_main, NULL);
        } else {
            pool.workers = calloc(1, sizeof(pthread_t));  // marks the pool as initialised
        }
    }
    int t = pool.threads;
    pthread_mutex_unlock(&pool.run_lock);
    return t;
}

int ck_pool_threads(void) { return pool.threads; }

void ck_pool_run(int tasks, ck_task_fn fn, void *ctx) {
    if (tasks <= 0) return;
    if (pool.threads <= 1 || tasks == 1 || in_task) {
        for (int i = 0; i < tasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&pool.run_lock);
    // Close the previous job before touching its fields: a worker still in run_tasks for it
    // (it finished the last task and reloads the state) must not read this job's task count
    // against the old, still current, generation and claim a task twice (seen as a flaky
    // logits test once many small jobs ran per step).
    uint32_t previous = current_generation();
    atomic_store_explicit(&pool.state, ((uint64_t)previous << 32) | 0xFFFFFFFFu, memory_order_release);
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.task_count, tasks, memory_order_release);
    atomic_store(&pool.done_tasks, 0);
    uint32_t generation = previous + 1;
    atomic_store_explicit(&pool.state, (uint64_t)generation << 32, memory_order_release);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mutex);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mutex);
    }
    run_tasks(generation);
    while (atomic_load_explicit(&pool.done_tasks, memory_order_acquire) < tasks) CPU_RELAX();
    pthread_mutex_unlock(&pool.run_lock);
}

static __thread float *scratch_p[CK_SCRATCH_SLOTS];
static __thread size_t scratch_n[CK_SCRATCH_SLOTS];

float *ck_thread_scratch(int slot, size_t n) {
    if (n > scratch_n[slot]) {
        free(scratch_p[slot]);
        scratch_p[slot] = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        scratch_n[slot] = scratch_p[slot] ? n : 0;
    }
    return scratch_p[slot];
}

int ck_release_free_heap(void) {
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

// MARK: - Stress check (tests): many tiny jobs of varying task counts back to back, the
// pattern that exposed a task claimed twice (or past its job's end) by a worker still looking
// at the previous job. Returns how many jobs did not run each of their tasks exactly once.
typedef struct {
    int tasks;
    atomic_int hits[8];
    atomic_int bad;
} stress_job;

static void stress_task(void *ctx, int i) {
    stress_job *j = (stress_job *)ctx;
    if (i < 0 || i >= j->tasks) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    for (volatile int k = 0; k < (i * 37) % 50; k++) {
    }
    atomic_fetch_add(&j->hits[i], 1);
}

long ck_pool_stress(long jobs) {
    static stress_job pair[2];
    long errors = 0;
    for (long n = 0; n < jobs; n++) {
        stress_job *j = &pair[n & 1];
        j->tasks = 2 + (int)(n % 3) * 2;
        for (int i = 0; i < 8; i++) atomic_store(&j->hits[i], 0);
        atomic_store(&j->bad, 0);
        ck_pool_run(j->tasks, stress_task, j);
        int ok = atomic_load(&j->bad) == 0;
        for (int i = 0; i < j->tasks; i++) ok &= atomic_load(&j->hits[i]) == 1;
        if (!ok) errors++;
    }
    return errors;
}
