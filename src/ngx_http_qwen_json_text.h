
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * What both JSON scanners (the request's and the answer's) need to decode
 * the strings they keep: simple escapes, and \u escapes as UTF-8 with
 * surrogates paired.  Plain C, inline.
 */


#ifndef _NGX_HTTP_QWEN_JSON_TEXT_H_INCLUDED_
#define _NGX_HTTP_QWEN_JSON_TEXT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if (defined __SSE2__)
#include <emmintrin.h>
#endif


/* the most bytes qwen_json_unicode() writes */
#define QWEN_JSON_UNICODE_MAX  7


/* the byte a simple escape stands for ("\n" -> '\n'), or -1 */

static inline int
qwen_json_simple_escape(unsigned char c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}


/* the value of a hexadecimal digit, or -1 */

static inline int
qwen_json_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static inline size_t
qwen_json_utf8(uint32_t cp, unsigned char *u)
{
    if (cp < 0x80) {
        u[0] = (unsigned char) cp;
        return 1;
    }

    if (cp < 0x800) {
        u[0] = (unsigned char) (0xc0 | (cp >> 6));
        u[1] = (unsigned char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        u[0] = (unsigned char) (0xe0 | (cp >> 12));
        u[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char) (0x80 | (cp & 0x3f));
        return 3;
    }

    u[0] = (unsigned char) (0xf0 | (cp >> 18));
    u[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
    u[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
    u[3] = (unsigned char) (0x80 | (cp & 0x3f));
    return 4;
}


/*
 * The bytes a \u escape adds to a decoded string: *high keeps a high
 * surrogate until its low one comes; an unpaired surrogate becomes U+FFFD.
 * Writes at most QWEN_JSON_UNICODE_MAX bytes to u; returns how many.
 */

static inline size_t
qwen_json_unicode(uint32_t *high, uint32_t cp, unsigned char *u)
{
    size_t  n;

    n = 0;

    if (*high) {
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            cp = 0x10000 + ((*high - 0xd800) << 10) + (cp - 0xdc00);
            *high = 0;
            return qwen_json_utf8(cp, u);
        }

        *high = 0;
        n = qwen_json_utf8(0xfffd, u);
    }

    if (cp >= 0xd800 && cp <= 0xdbff) {
        *high = cp;
        return n;
    }

    if (cp >= 0xdc00 && cp <= 0xdfff) {
        cp = 0xfffd;
    }

    return n + qwen_json_utf8(cp, u + n);
}


/* a high surrogate still waiting when a plain byte or the string's end
 * comes: U+FFFD; returns the bytes written to u (at most 3) */

static inline size_t
qwen_json_unpaired(uint32_t *high, unsigned char *u)
{
    if (*high == 0) {
        return 0;
    }

    *high = 0;

    return qwen_json_utf8(0xfffd, u);
}


/*
 * The end of a run of plain string bytes at p: the first '"', '\\' or
 * control byte, or last.  Long prompts and base64 images are megabytes of
 * plain string bytes: with SSE2 (every x86-64), 16 bytes a compare and 64
 * a branch in long runs; elsewhere eight bytes at a time, 32 a branch.
 */

#if (defined __SSE2__)

#define qwen_json_stops16(p, quote, bs, ctl)                                \
    _mm_or_si128(                                                           \
        _mm_or_si128(                                                       \
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *) (p)), quote),  \
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *) (p)), bs)),    \
        /* a byte up to 0x1f */                                             \
        _mm_cmpeq_epi8(                                                     \
            _mm_max_epu8(_mm_loadu_si128((const __m128i *) (p)), ctl), ctl))


static inline const unsigned char *
qwen_json_string_run(const unsigned char *p, const unsigned char *last)
{
    unsigned  m;
    __m128i   quote, bs, ctl;

    quote = _mm_set1_epi8('"');
    bs = _mm_set1_epi8('\\');
    ctl = _mm_set1_epi8(0x1f);

    /* most strings are short: their end is in the first 16 bytes */

    if (last - p >= 16) {
        m = (unsigned) _mm_movemask_epi8(qwen_json_stops16(p, quote, bs, ctl));

        if (m) {
            return p + __builtin_ctz(m);
        }

        p += 16;
    }

    while (last - p >= 64
           && _mm_movemask_epi8(
                  _mm_or_si128(
                      _mm_or_si128(qwen_json_stops16(p, quote, bs, ctl),
                                   qwen_json_stops16(p + 16, quote, bs, ctl)),
                      _mm_or_si128(qwen_json_stops16(p + 32, quote, bs, ctl),
                                   qwen_json_stops16(p + 48, quote, bs, ctl))))
              == 0)
    {
        p += 64;
    }

    while (last - p >= 16) {
        m = (unsigned) _mm_movemask_epi8(qwen_json_stops16(p, quote, bs, ctl));

        if (m) {
            return p + __builtin_ctz(m);
        }

        p += 16;
    }

    while (p < last && *p != '"' && *p != '\\' && *p >= 0x20) {
        p++;
    }

    return p;
}

#else

static inline uint64_t
qwen_json_stops8(const unsigned char *p)
{
    uint64_t  w, q, b;

    static const uint64_t  ones = 0x0101010101010101ULL;

    memcpy(&w, p, 8);

    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');

    /* exact as a yes/no: a borrow can only add a false "yes" */

    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w))
           & (ones * 0x80);
}


static inline const unsigned char *
qwen_json_string_run(const unsigned char *p, const unsigned char *last)
{
    /* 32 bytes a branch in long runs, then 8 */

    while (last - p >= 32
           && !(qwen_json_stops8(p) | qwen_json_stops8(p + 8)
                | qwen_json_stops8(p + 16) | qwen_json_stops8(p + 24)))
    {
        p += 32;
    }

    while (last - p >= 8 && !qwen_json_stops8(p)) {
        p += 8;
    }

    while (p < last && *p != '"' && *p != '\\' && *p >= 0x20) {
        p++;
    }

    return p;
}

#endif


#endif /* _NGX_HTTP_QWEN_JSON_TEXT_H_INCLUDED_ */
