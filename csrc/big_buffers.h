/* Large zeroed buffers of the batched replay (replay.pxi), in huge pages
 * where the system gives them on request (Linux's transparent huge pages in
 * "madvise" mode): a model's shared values and a batch's rows run to
 * megabytes, and touching fresh 4 KiB pages one fault at a time is a
 * measurable part of making a Replay and of its first step.  Elsewhere, and
 * for small buffers, plain calloc(); either is released with free(). */
#ifndef AUTOGRAD_BIG_BUFFERS_H
#define AUTOGRAD_BIG_BUFFERS_H

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define BIG_BUFFER_HUGE ((size_t)2 << 20)        /* a huge page */
#define BIG_BUFFER_MIN ((size_t)1 << 20)         /* from here on, rounded up to huge pages */

static void *big_calloc(size_t count, size_t size)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size != 0 && count <= ((size_t)-1 - BIG_BUFFER_HUGE) / size
            && count * size >= BIG_BUFFER_MIN) {
        size_t bytes = (count * size + BIG_BUFFER_HUGE - 1) & ~(BIG_BUFFER_HUGE - 1);
        void *p = NULL;
        if (posix_memalign(&p, BIG_BUFFER_HUGE, bytes) == 0) {
            madvise(p, bytes, MADV_HUGEPAGE);   /* advice only: it may be ignored */
            memset(p, 0, bytes);
            return p;
        }
    }
#endif
    return calloc(count, size);
}

#endif
