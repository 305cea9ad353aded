
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * What both fuzz targets share: the failed-check report, a deterministic
 * random sequence for cut points, and sorting them.  FUZZ_NAME is the
 * target's name, for the report.
 */


#ifndef _FUZZ_COMMON_H_INCLUDED_
#define _FUZZ_COMMON_H_INCLUDED_


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* what is being checked, for the message of a failed check */
static const char  *stage = "";


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, FUZZ_NAME ": %s: failed at line %d: %s\n",       \
                    stage, __LINE__, #cond);                                 \
            __builtin_trap();                                                \
        }                                                                    \
    } while (0)


/* xorshift64*: the same sequence for the same input, on every platform */

static inline uint64_t
rnd(uint64_t *state)
{
    uint64_t  x;

    x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;

    return x * 0x2545f4914f6cdd1dULL;
}


static inline int
cmp_size(const void *a, const void *b)
{
    size_t  x = *(const size_t *) a, y = *(const size_t *) b;

    return (x > y) - (x < y);
}


#endif /* _FUZZ_COMMON_H_INCLUDED_ */
