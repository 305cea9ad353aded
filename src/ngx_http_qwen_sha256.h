
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * SHA-256 (FIPS 180-4), with a constant-time comparison and hex helpers,
 * for the client API keys: a key is hashed on every keyed request and
 * compared with the digests from the configuration, so that the worker
 * never needs to hold the keys themselves.
 *
 * This file is plain C with no nginx dependency so that the unit tests in
 * t/unit/ can link it alone.  Nothing is allocated: the context is all the
 * memory it uses, and qwen_sha256_final() wipes it.
 */


#ifndef _NGX_HTTP_QWEN_SHA256_H_INCLUDED_
#define _NGX_HTTP_QWEN_SHA256_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define QWEN_SHA256_DIGEST_LEN   32
#define QWEN_SHA256_HEX_LEN      64
#define QWEN_SHA256_BLOCK_LEN    64


typedef struct {
    uint32_t            h[8];          /* the intermediate hash value */
    uint64_t            len;           /* bytes hashed so far */
    size_t              used;          /* bytes waiting in buf */
    unsigned char       buf[QWEN_SHA256_BLOCK_LEN];
} qwen_sha256_t;


void qwen_sha256_init(qwen_sha256_t *c);
void qwen_sha256_update(qwen_sha256_t *c, const void *data, size_t len);

/* writes the digest and wipes the context: init it again to reuse it */
void qwen_sha256_final(qwen_sha256_t *c, unsigned char digest[32]);

/* the digest of one buffer: init, update, final */
void qwen_sha256(const void *data, size_t len, unsigned char digest[32]);

/*
 * Constant-time comparison of two n-byte strings: 1 when equal, else 0.
 * The time depends on n only, not on where the strings differ.
 */
int qwen_ct_equal(const unsigned char *a, const unsigned char *b, size_t n);

/* lower-case hex of a 32-byte digest into out[64] (no terminating NUL) */
void qwen_sha256_hex(const unsigned char digest[32], unsigned char out[64]);

/*
 * Parses 64 hex digits (either case) into digest: 0, or -1 if len is not
 * 64 or a byte is not a hex digit, and then digest is left as it was.
 */
int qwen_sha256_from_hex(const unsigned char *hex, size_t len,
    unsigned char digest[32]);


#endif /* _NGX_HTTP_QWEN_SHA256_H_INCLUDED_ */
