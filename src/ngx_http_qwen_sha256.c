
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * SHA-256 as FIPS 180-4 defines it (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3
 * and 6.2), written from the standard.  Words are read and written big-
 * endian byte by byte, so that neither the host's byte order nor the
 * input's alignment matters; compilers turn these into single loads and
 * byte swaps.
 */


#include <string.h>

#include "ngx_http_qwen_sha256.h"


#define qwen_rotr(x, n)  (((x) >> (n)) | ((x) << (32 - (n))))

/* the six logical functions of section 4.1.2 */
#define qwen_ch(x, y, z)   (((x) & (y)) ^ (~(x) & (z)))
#define qwen_maj(x, y, z)  (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define qwen_bsig0(x)  (qwen_rotr(x, 2) ^ qwen_rotr(x, 13) ^ qwen_rotr(x, 22))
#define qwen_bsig1(x)  (qwen_rotr(x, 6) ^ qwen_rotr(x, 11) ^ qwen_rotr(x, 25))
#define qwen_ssig0(x)  (qwen_rotr(x, 7) ^ qwen_rotr(x, 18) ^ ((x) >> 3))
#define qwen_ssig1(x)  (qwen_rotr(x, 17) ^ qwen_rotr(x, 19) ^ ((x) >> 10))


/*
 * Section 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes.
 */
static const uint32_t  qwen_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};


static void qwen_sha256_blocks(uint32_t h[8], const unsigned char *p,
    size_t n);
static void qwen_sha256_wipe(void *p, size_t n);
static int qwen_hex_value(unsigned c);


void
qwen_sha256_init(qwen_sha256_t *c)
{
    /*
     * Section 5.3.3: the first 32 bits of the fractional parts of the
     * square roots of the first 8 primes.
     */
    c->h[0] = 0x6a09e667;
    c->h[1] = 0xbb67ae85;
    c->h[2] = 0x3c6ef372;
    c->h[3] = 0xa54ff53a;
    c->h[4] = 0x510e527f;
    c->h[5] = 0x9b05688c;
    c->h[6] = 0x1f83d9ab;
    c->h[7] = 0x5be0cd19;

    c->len = 0;
    c->used = 0;
}


void
qwen_sha256_update(qwen_sha256_t *c, const void *data, size_t len)
{
    size_t                n;
    const unsigned char  *p;

    /* memcpy() with a NULL pointer is undefined even for 0 bytes */
    if (len == 0) {
        return;
    }

    p = data;
    c->len += len;

    if (c->used) {
        n = QWEN_SHA256_BLOCK_LEN - c->used;

        if (len < n) {
            memcpy(c->buf + c->used, p, len);
            c->used += len;
            return;
        }

        memcpy(c->buf + c->used, p, n);
        qwen_sha256_blocks(c->h, c->buf, 1);

        p += n;
        len -= n;
        c->used = 0;
    }

    /* whole blocks are hashed where they are, not copied */

    n = len / QWEN_SHA256_BLOCK_LEN;

    if (n) {
        qwen_sha256_blocks(c->h, p, n);
        p += n * QWEN_SHA256_BLOCK_LEN;
        len -= n * QWEN_SHA256_BLOCK_LEN;
    }

    if (len) {
        memcpy(c->buf, p, len);
        c->used = len;
    }
}


void
qwen_sha256_final(qwen_sha256_t *c, unsigned char digest[32])
{
    int       i;
    uint64_t  bits;

    /*
     * Section 5.1.1: a 1 bit, zeros up to 448 bits modulo 512, and the
     * message length in bits as a 64-bit big-endian number; when the
     * length does not fit after the 1 bit, the padding takes a block of
     * its own.  The length is modulo 2^64 bits, which only a message of
     * 2 EiB or more would reach.
     */

    bits = c->len << 3;

    c->buf[c->used++] = 0x80;

    if (c->used > QWEN_SHA256_BLOCK_LEN - 8) {
        memset(c->buf + c->used, 0, QWEN_SHA256_BLOCK_LEN - c->used);
        qwen_sha256_blocks(c->h, c->buf, 1);
        c->used = 0;
    }

    memset(c->buf + c->used, 0, QWEN_SHA256_BLOCK_LEN - 8 - c->used);

    for (i = 0; i < 8; i++) {
        c->buf[QWEN_SHA256_BLOCK_LEN - 1 - i] =
                                             (unsigned char) (bits >> (8 * i));
    }

    qwen_sha256_blocks(c->h, c->buf, 1);

    for (i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char) (c->h[i] >> 24);
        digest[4 * i + 1] = (unsigned char) (c->h[i] >> 16);
        digest[4 * i + 2] = (unsigned char) (c->h[i] >> 8);
        digest[4 * i + 3] = (unsigned char) c->h[i];
    }

    /* the buffer holds the end of a client's key */
    qwen_sha256_wipe(c, sizeof(qwen_sha256_t));
}


void
qwen_sha256(const void *data, size_t len, unsigned char digest[32])
{
    qwen_sha256_t  c;

    qwen_sha256_init(&c);
    qwen_sha256_update(&c, data, len);
    qwen_sha256_final(&c, digest);
}


int
qwen_ct_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t    i;
    unsigned  d;

    /*
     * No early exit: every byte is looked at whatever the others are, so
     * the time does not tell how long a guessed prefix is.
     */

    d = 0;

    for (i = 0; i < n; i++) {
        d |= a[i] ^ b[i];
    }

    /* d is 0..255: d - 1 wraps to all ones only when d is 0 */
    return (int) (((d - 1) >> 8) & 1);
}


void
qwen_sha256_hex(const unsigned char digest[32], unsigned char out[64])
{
    int                         i;
    static const unsigned char  hex[] = "0123456789abcdef";

    for (i = 0; i < QWEN_SHA256_DIGEST_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0x0f];
    }
}


int
qwen_sha256_from_hex(const unsigned char *hex, size_t len,
    unsigned char digest[32])
{
    int            i, hi, lo;
    unsigned char  d[QWEN_SHA256_DIGEST_LEN];

    if (len != QWEN_SHA256_HEX_LEN) {
        return -1;
    }

    /* decoded aside, so that a bad digit leaves digest as it was */

    for (i = 0; i < QWEN_SHA256_DIGEST_LEN; i++) {
        hi = qwen_hex_value(hex[2 * i]);
        lo = qwen_hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        d[i] = (unsigned char) (hi << 4 | lo);
    }

    memcpy(digest, d, QWEN_SHA256_DIGEST_LEN);

    return 0;
}


/* section 6.2.2: the hash computation, for n 64-byte blocks at p */

static void
qwen_sha256_blocks(uint32_t h[8], const unsigned char *p, size_t n)
{
    int       t;
    uint32_t  w[64], a, b, c, d, e, f, g, k, t1, t2;

    while (n--) {

        for (t = 0; t < 16; t++) {
            w[t] = (uint32_t) p[4 * t] << 24
                   | (uint32_t) p[4 * t + 1] << 16
                   | (uint32_t) p[4 * t + 2] << 8
                   | (uint32_t) p[4 * t + 3];
        }

        for (t = 16; t < 64; t++) {
            w[t] = qwen_ssig1(w[t - 2]) + w[t - 7]
                   + qwen_ssig0(w[t - 15]) + w[t - 16];
        }

        a = h[0];
        b = h[1];
        c = h[2];
        d = h[3];
        e = h[4];
        f = h[5];
        g = h[6];
        k = h[7];

        /* k is the standard's h, which names the hash value here */

        for (t = 0; t < 64; t++) {
            t1 = k + qwen_bsig1(e) + qwen_ch(e, f, g) + qwen_sha256_k[t]
                 + w[t];
            t2 = qwen_bsig0(a) + qwen_maj(a, b, c);
            k = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }

        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += k;

        p += QWEN_SHA256_BLOCK_LEN;
    }
}


/*
 * memset() of memory that is about to go out of use may be dropped by the
 * compiler as a dead store; stores through a volatile pointer may not.
 */

static void
qwen_sha256_wipe(void *p, size_t n)
{
    volatile unsigned char  *v;

    v = p;

    while (n--) {
        *v++ = 0;
    }
}


static int
qwen_hex_value(unsigned c)
{
    if (c >= '0' && c <= '9') {
        return (int) (c - '0');
    }

    c |= 0x20;    /* 'A'..'F' to 'a'..'f'; other bytes stay non-hex */

    if (c >= 'a' && c <= 'f') {
        return (int) (c - 'a' + 10);
    }

    return -1;
}
