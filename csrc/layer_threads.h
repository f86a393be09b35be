/* Running a layer kernel's part over [0, count) on several threads
 * (included by layer_kernels.h, which defines lk_part and lk_layer).
 *
 * A pool of worker threads, started on first use and kept: a call hands
 * each worker it uses a job (a contiguous range, whose bounds are multiples
 * of 4, the kernels' block) and runs the first range itself, then waits for
 * the others.  No sum is split, so the bits do not depend on the number of
 * threads.  The workers run only the kernels, on the memory the job names
 * (a Replay's own buffers, which cannot move or be freed meanwhile), never
 * Python code, and touch no Python object: they hold no thread state.
 *
 * - Threads are started with CPython's PyThread_start_new_thread and wait on
 *   PyThread locks (no GIL needed), so the module needs no newer C library
 *   than the interpreter (pthread_create would tie a Linux wheel to glibc
 *   2.34).  A worker says a job is done with an atomic flag, its last access.
 * - One call at a time uses the pool (lk_pool_lock, taken without waiting):
 *   a call made while another Python thread's call holds it runs on its own
 *   thread alone (the same bits).
 * - After fork() the child has no workers: layer_threads_after_fork(), run
 *   by os.register_at_fork in the child, forgets them (and a pool lock a
 *   parent's thread held) so the child starts its own.
 * - If a thread cannot be started, its range runs on the calling thread.
 * - GCC and clang only (the atomics), not on Windows: elsewhere every call
 *   runs on the calling thread.
 */
#ifndef AUTOGRAD_LAYER_THREADS_H
#define AUTOGRAD_LAYER_THREADS_H

#if defined(__GNUC__) && !defined(_WIN32)
#include <sched.h>
#define LK_THREADS 1
#else
#define LK_THREADS 0
#endif

/* below this many multiply-adds per thread a call runs on fewer threads:
 * handing a job to a waiting worker and waiting for it costs some
 * microseconds on a VM, about the time of 10^6 multiply-adds in the AVX-512 build
 * (measured: bench_scaling.py) */
#define LK_MIN_WORK_PER_THREAD 1000000.0
static double lk_min_work_per_thread = LK_MIN_WORK_PER_THREAD;    /* tests lower it */

/* the multiply-adds a thread must get for a call to use it (value > 0 sets
 * it first); returns the setting in use */
static double layer_kernels_min_work(double value)
{
    if (value > 0)
        lk_min_work_per_thread = value;
    return lk_min_work_per_thread;
}

typedef struct {
    lk_part part;
    const lk_layer *L;
    Py_ssize_t lo, hi;
    int done;                   /* set (atomically) by the worker, last */
} lk_job;

#define LK_MAX_THREADS 64

#if LK_THREADS
typedef struct {
    PyThread_type_lock go;      /* held while the worker waits; released to hand it `job` */
    lk_job *job;
} lk_worker;

static lk_worker *lk_workers[LK_MAX_THREADS];   /* [1, lk_nworkers): started */
static int lk_nworkers = 1;                     /* slot 0 is the calling thread */
static PyThread_type_lock lk_pool_lock = NULL;

static void lk_worker_main(void *arg)
{
    lk_worker *w = (lk_worker *)arg;
    for (;;) {
        lk_job *job;
        PyThread_acquire_lock(w->go, WAIT_LOCK);    /* until a caller hands over a job */
        job = w->job;
        job->part(job->L, job->lo, job->hi);
        __atomic_store_n(&job->done, 1, __ATOMIC_RELEASE);     /* job is not touched after */
    }
}

/* start workers up to `want` (slot numbers); returns how many slots have one */
static int lk_start_workers(int want)
{
    while (lk_nworkers < want) {
        lk_worker *w = (lk_worker *)PyMem_RawMalloc(sizeof(lk_worker));
        if (w == NULL)
            break;
        w->go = PyThread_allocate_lock();
        if (w->go == NULL) {
            PyMem_RawFree(w);
            break;
        }
        PyThread_acquire_lock(w->go, WAIT_LOCK);    /* held: the worker will wait on it */
        w->job = NULL;
        if (PyThread_start_new_thread(lk_worker_main, w) == PYTHREAD_INVALID_THREAD_ID) {
            PyThread_free_lock(w->go);
            PyMem_RawFree(w);
            break;
        }
        lk_workers[lk_nworkers++] = w;
    }
    return lk_nworkers;
}
#endif

/* made at import (with the GIL), before any call can run without it */
static int layer_threads_init(void)
{
#if LK_THREADS
    if (lk_pool_lock == NULL)
        lk_pool_lock = PyThread_allocate_lock();
#endif
    return 0;
}

/* in a child process after fork(): the parent's workers do not exist here */
static void layer_threads_after_fork(void)
{
#if LK_THREADS
    lk_nworkers = 1;                    /* their records are left behind: a few bytes */
    lk_pool_lock = PyThread_allocate_lock();
#endif
}

/* part(L, lo, hi) over contiguous ranges of [0, count) whose bounds are
 * multiples of 4, one range per thread; the calling thread takes the first.
 * Returns the number of threads used. */
static int lk_run(lk_part part, const lk_layer *L, Py_ssize_t count, double work, int threads)
{
    Py_ssize_t blocks = (count + 3) / 4, per, lo;
    int used = 1, t;
    if (threads > LK_MAX_THREADS)
        threads = LK_MAX_THREADS;
    if (threads > blocks)
        threads = (int)blocks;
    if (threads > 1 && work / threads < lk_min_work_per_thread)
        threads = (int)(work / lk_min_work_per_thread);
#if LK_THREADS
    if (threads > 1 && (lk_pool_lock == NULL || !PyThread_acquire_lock(lk_pool_lock, NOWAIT_LOCK)))
        threads = 1;                    /* the pool is another call's: this one runs alone */
#endif
    if (threads <= 1 || !LK_THREADS) {
        part(L, 0, count);
        return 1;
    }
#if LK_THREADS
    {
        lk_job jobs[LK_MAX_THREADS];
        int ready = lk_start_workers(threads);  /* slots 1..ready-1 have a worker */
        per = (blocks + threads - 1) / threads;
        for (t = 0, lo = 0; t < threads; t++) {
            Py_ssize_t hi = (lo + per * 4 < count) ? lo + per * 4 : count;
            jobs[t].part = part;
            jobs[t].L = L;
            jobs[t].lo = lo;
            jobs[t].hi = hi;
            jobs[t].done = 0;
            lo = hi;
        }
        for (t = 1; t < threads && t < ready; t++)
            if (jobs[t].lo < jobs[t].hi) {
                lk_workers[t]->job = &jobs[t];
                PyThread_release_lock(lk_workers[t]->go);      /* the job is handed over */
            }
        part(L, jobs[0].lo, jobs[0].hi);
        for (t = 1; t < threads; t++) {
            if (jobs[t].lo >= jobs[t].hi)
                continue;
            if (t < ready) {
                while (!__atomic_load_n(&jobs[t].done, __ATOMIC_ACQUIRE))
                    sched_yield();
                used++;
            } else {
                part(L, jobs[t].lo, jobs[t].hi);                /* no worker for it */
            }
        }
        PyThread_release_lock(lk_pool_lock);
    }
#endif
    return used;
}

#endif
