
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Unit tests of SHA-256 (src/ngx_http_qwen_sha256.c): the FIPS 180-4 /
 * NIST test vectors, the lengths at the edges of the padding (checked
 * against sha256sum), a message fed split at every offset and one byte at
 * a time, qwen_ct_equal(), and the hex helpers.  Every piece fed is copied
 * into a heap buffer of its exact size, so that a sanitizer sees any read
 * past it.
 *
 *   cc -O1 -g -fsanitize=address,undefined -Isrc t/unit/sha256_test.c \
 *       src/ngx_http_qwen_sha256.c -o /tmp/sha256_test
 *
 * The last line printed is "N passed, M failed"; the exit status is 0 only
 * if nothing failed.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_qwen_sha256.h"


static unsigned  passed, failed;
static int       case_failed;


#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("FAIL line %d: %s: ", __LINE__, #cond);                   \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
            case_failed = 1;                                                 \
        }                                                                    \
    } while (0)


typedef struct {
    const char          *name;
    const char          *in;
    const char          *hex;        /* the digest, lower case */
} vcase_t;


/* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf") */

static const vcase_t  vcases[] = {

    { "empty", "",
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },

    { "abc", "abc",
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },

    { "448 bits",
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },

    { "896 bits",
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
      "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
};


#define MILLION_A_HEX                                                        \
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


/*
 * The n-byte pattern (i * 31 + 7) & 0xff, zero bytes and high bytes
 * included, with the digests sha256sum gives for it:
 *
 *   python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 31 + 7)
 *       & 0xff for i in range(N)))' | sha256sum
 *
 * 55 is the longest message whose padding fits in its block, 56 the
 * shortest that needs another; 63, 64 and 65 straddle a whole block, and
 * 119 .. 129 the same edges one block further.
 */

typedef struct {
    size_t               len;
    const char          *hex;
} pcase_t;


static const pcase_t  pcases[] = {
    { 55, "8aa994584139d128848eeebc4e815639ba5ab6e6e39574195a63ac4f14f7c43b" },
    { 56, "ad574708f75c044c9b85de64cb568ee7711ff4f36448c6242f053ba8f6cc2b63" },
    { 63, "280ed3e8ff1df845b2e7dfe6ac6cee817bef20e783cc65abc41b818b4d2fe076" },
    { 64, "c6ab9724ade5b6a7a1edfffb12f3aa9181351355af8fd08c919952ad211339dd" },
    { 65, "788367c73c7ddf4c53f65e68cc0d943e6227ab55b0e78ba63ace822b1c6301c0" },
    { 119,
          "3d610547d68216dedf7435a4fb6260353911f6b3fd3f18805ddb8be285d726fe" },
    { 120,
          "1f80156a804cb7862ad113e8200e9d74499723e7c7854d5f48776d3148e09656" },
    { 127,
          "192409cd280e14b743642ad1343fbd3e82d9305de72c078117745a679210cc3d" },
    { 128,
          "cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356" },
    { 129,
          "81e89a7b2911aaa7795f9e3d4910cb47d6cd2b00d83b8399481527261a1a7519" },
    { 200,
          "44cae5223d431caed4a9e32271d6abf17c3f2f4abac45fcdb48a99fcc6072a09" },
};


#define SPLIT_LEN  200          /* the message split at every offset */


static void
pattern(unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) ((i * 31 + 7) & 0xff);
    }
}


/* p[0 .. len) copied into a heap buffer of exactly len bytes */

static unsigned char *
dup(const unsigned char *p, size_t len)
{
    unsigned char  *q;

    q = malloc(len ? len : 1);

    if (q == NULL) {
        printf("out of memory\n");
        exit(2);
    }

    if (len) {
        memcpy(q, p, len);
    }

    return q;
}


static void
update_dup(qwen_sha256_t *c, const unsigned char *p, size_t len)
{
    unsigned char  *q;

    q = dup(p, len);
    qwen_sha256_update(c, q, len);
    free(q);
}


static void
to_hex(const unsigned char digest[32], char out[65])
{
    qwen_sha256_hex(digest, (unsigned char *) out);
    out[64] = '\0';
}


/* the digest of p[0 .. len), one shot and through a context, must be hex */

static void
check_digest(const char *name, const unsigned char *p, size_t len,
    const char *hex)
{
    char            got[65];
    unsigned char   d[32];
    qwen_sha256_t   c;
    unsigned char  *q;

    q = dup(p, len);

    qwen_sha256(q, len, d);
    to_hex(d, got);
    CHECK(strcmp(got, hex) == 0, "%s: one shot: %s, not %s", name, got, hex);

    qwen_sha256_init(&c);
    qwen_sha256_update(&c, q, len);
    qwen_sha256_final(&c, d);
    to_hex(d, got);
    CHECK(strcmp(got, hex) == 0, "%s: context: %s, not %s", name, got, hex);

    free(q);
}


static void
vector_case(const vcase_t *v)
{
    check_digest(v->name, (const unsigned char *) v->in, strlen(v->in),
                 v->hex);
}


/* one million 'a': one shot, and in pieces of 1000 and of 997 bytes */

static void
million_a(void)
{
    char            got[65];
    size_t          n, off;
    unsigned char   d[32];
    qwen_sha256_t   c;
    unsigned char  *a;

    a = malloc(1000000);

    if (a == NULL) {
        printf("out of memory\n");
        exit(2);
    }

    memset(a, 'a', 1000000);

    qwen_sha256(a, 1000000, d);
    to_hex(d, got);
    CHECK(strcmp(got, MILLION_A_HEX) == 0, "million a: one shot: %s", got);

    for (n = 1000; n >= 997; n -= 3) {
        qwen_sha256_init(&c);

        for (off = 0; off < 1000000; off += n) {
            qwen_sha256_update(&c, a + off,
                               1000000 - off < n ? 1000000 - off : n);
        }

        qwen_sha256_final(&c, d);
        to_hex(d, got);
        CHECK(strcmp(got, MILLION_A_HEX) == 0,
              "million a: pieces of %zu: %s", n, got);
    }

    free(a);
}


/* the padding edges: one shot, and split in two at every offset */

static void
padding_case(const pcase_t *pc)
{
    char            name[32], got[65];
    size_t          k;
    unsigned char   msg[SPLIT_LEN], d[32];
    qwen_sha256_t   c;

    pattern(msg, pc->len);

    snprintf(name, sizeof(name), "%zu bytes", pc->len);
    check_digest(name, msg, pc->len, pc->hex);

    for (k = 0; k <= pc->len; k++) {
        qwen_sha256_init(&c);
        update_dup(&c, msg, k);
        update_dup(&c, msg + k, pc->len - k);
        qwen_sha256_final(&c, d);
        to_hex(d, got);
        CHECK(strcmp(got, pc->hex) == 0, "%s split at %zu: %s", name, k, got);
    }
}


/*
 * SPLIT_LEN bytes: split in two at every offset, in three at every pair
 * of offsets, and one byte at a time, with empty updates between, must
 * all give the one-shot digest.
 */

static void
split_case(void)
{
    size_t          i, j, k;
    unsigned char   msg[SPLIT_LEN], want[32], d[32];
    qwen_sha256_t   c;

    pattern(msg, SPLIT_LEN);
    qwen_sha256(msg, SPLIT_LEN, want);

    for (i = 0; i <= SPLIT_LEN; i++) {
        qwen_sha256_init(&c);
        update_dup(&c, msg, i);
        update_dup(&c, msg + i, SPLIT_LEN - i);
        qwen_sha256_final(&c, d);
        CHECK(memcmp(d, want, 32) == 0, "split in two at %zu", i);
    }

    for (i = 0; i <= SPLIT_LEN; i++) {
        for (j = i; j <= SPLIT_LEN; j++) {
            qwen_sha256_init(&c);
            update_dup(&c, msg, i);
            update_dup(&c, msg + i, j - i);
            update_dup(&c, msg + j, SPLIT_LEN - j);
            qwen_sha256_final(&c, d);
            CHECK(memcmp(d, want, 32) == 0, "split in three at %zu, %zu",
                  i, j);
        }
    }

    qwen_sha256_init(&c);

    for (k = 0; k < SPLIT_LEN; k++) {
        update_dup(&c, msg + k, 1);
        qwen_sha256_update(&c, NULL, 0);
    }

    qwen_sha256_final(&c, d);
    CHECK(memcmp(d, want, 32) == 0, "one byte at a time");
}


/* final() wipes the context, and init() makes it usable again */

static void
wipe_case(void)
{
    size_t          i;
    char            got[65];
    unsigned char   d[32], *p;
    qwen_sha256_t   c;

    qwen_sha256_init(&c);
    qwen_sha256_update(&c, "a secret client key", 19);
    qwen_sha256_final(&c, d);

    p = (unsigned char *) &c;

    for (i = 0; i < sizeof(c); i++) {
        if (p[i] != 0) {
            break;
        }
    }

    CHECK(i == sizeof(c), "context not wiped: byte %zu is %02x", i, p[i]);

    qwen_sha256_init(&c);
    qwen_sha256_update(&c, "abc", 3);
    qwen_sha256_final(&c, d);
    to_hex(d, got);
    CHECK(strcmp(got, vcases[1].hex) == 0, "reused context: %s", got);
}


static void
ct_equal_case(void)
{
    size_t          i;
    unsigned        bit;
    unsigned char   a[32], b[32];

    pattern(a, 32);
    memcpy(b, a, 32);

    CHECK(qwen_ct_equal(a, b, 32) == 1, "equal");
    CHECK(qwen_ct_equal(a, a, 32) == 1, "same pointer");
    CHECK(qwen_ct_equal(a, b, 0) == 1, "empty");
    CHECK(qwen_ct_equal(NULL, NULL, 0) == 1, "empty, NULL");

    /* every single bit flipped, first byte to last */

    for (i = 0; i < 32; i++) {
        for (bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char) (1u << bit);
            CHECK(qwen_ct_equal(a, b, 32) == 0, "byte %zu bit %u", i, bit);
            CHECK(qwen_ct_equal(b, a, 32) == 0, "byte %zu bit %u, swapped",
                  i, bit);

            /* a difference past n does not count */
            CHECK(qwen_ct_equal(a, b, i) == 1, "byte %zu bit %u, n %zu",
                  i, bit, i);

            b[i] ^= (unsigned char) (1u << bit);
        }
    }

    memset(a, 0x00, 32);
    memset(b, 0xff, 32);
    CHECK(qwen_ct_equal(a, b, 32) == 0, "all bits differ");

    b[0] = 0x00;
    memset(b + 1, 0x00, 31);
    b[31] = 0x80;
    CHECK(qwen_ct_equal(a, b, 32) == 0, "high bit of the last byte");
}


/* what from_hex() must leave alone when it fails: 0x5a everywhere */

static int
untouched(const unsigned char e[32])
{
    size_t  i;

    for (i = 0; i < 32; i++) {
        if (e[i] != 0x5a) {
            return 0;
        }
    }

    return 1;
}


static void
hex_case(void)
{
    size_t          i, k;
    char            got[65];
    unsigned char   d[32], e[32], hex[64], upper[64], bad[64], *q;
    static const unsigned char  nonhex[] = {
        'g', 'G', 'z', 'x', '/', ':', '@', '`', '[', '{', ' ', '\0', '\n',
        '-', '+', 0x7f, 0x80, 0xc1, 0xff, 'a' - 1, 'f' + 1, 'A' - 1, 'F' + 1
    };

    /* round trips: digests, all zeros, all ones */

    for (k = 0; k < 3; k++) {
        if (k == 0) {
            qwen_sha256("abc", 3, d);

        } else {
            memset(d, k == 1 ? 0x00 : 0xff, 32);
        }

        qwen_sha256_hex(d, hex);

        for (i = 0; i < 64; i++) {
            CHECK((hex[i] >= '0' && hex[i] <= '9')
                  || (hex[i] >= 'a' && hex[i] <= 'f'),
                  "round trip %zu: byte %zu is %02x", k, i, hex[i]);
            upper[i] = (unsigned char) (hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
        }

        q = dup(hex, 64);
        memset(e, 0x5a, 32);
        CHECK(qwen_sha256_from_hex(q, 64, e) == 0, "round trip %zu", k);
        CHECK(memcmp(d, e, 32) == 0, "round trip %zu: digest", k);
        free(q);

        q = dup(upper, 64);
        memset(e, 0x5a, 32);
        CHECK(qwen_sha256_from_hex(q, 64, e) == 0, "upper case %zu", k);
        CHECK(memcmp(d, e, 32) == 0, "upper case %zu: digest", k);
        free(q);
    }

    /* a known digest, mixed case */

    CHECK(qwen_sha256_from_hex((const unsigned char *)
          "BA7816BF8f01cfea414140DE5DAE2223b00361a396177a9cb410ff61F20015aD",
          64, e) == 0, "mixed case");
    to_hex(e, got);
    CHECK(strcmp(got, vcases[1].hex) == 0, "mixed case: %s", got);

    /* wrong lengths; digest left as it was */

    qwen_sha256("abc", 3, d);
    qwen_sha256_hex(d, hex);

    for (i = 0; i < 64; i++) {
        q = dup(hex, i);
        memset(e, 0x5a, 32);
        CHECK(qwen_sha256_from_hex(q, i, e) == -1, "length %zu", i);
        CHECK(untouched(e), "length %zu: digest changed", i);
        free(q);
    }

    q = malloc(65);

    if (q == NULL) {
        printf("out of memory\n");
        exit(2);
    }

    memcpy(q, hex, 64);
    q[64] = '0';
    CHECK(qwen_sha256_from_hex(q, 65, e) == -1, "length 65");
    free(q);

    CHECK(qwen_sha256_from_hex(hex, 128, e) == -1, "length 128");

    /* every byte value, first and last: hex digits only are taken */

    for (k = 0; k < 256; k++) {
        for (i = 0; i < 64; i += 63) {
            memcpy(bad, hex, 64);
            bad[i] = (unsigned char) k;
            memset(e, 0x5a, 32);

            if (k != 0 && strchr("0123456789abcdefABCDEF", (int) k)) {
                CHECK(qwen_sha256_from_hex(bad, 64, e) == 0,
                      "byte %02zx at %zu", k, i);

            } else {
                CHECK(qwen_sha256_from_hex(bad, 64, e) == -1,
                      "byte %02zx at %zu", k, i);
                CHECK(untouched(e), "byte %02zx at %zu: digest changed",
                      k, i);
            }
        }
    }

    /* a non-hex byte at every position */

    for (i = 0; i < 64; i++) {
        for (k = 0; k < sizeof(nonhex); k++) {
            memcpy(bad, hex, 64);
            bad[i] = nonhex[k];

            q = dup(bad, 64);
            memset(e, 0x5a, 32);
            CHECK(qwen_sha256_from_hex(q, 64, e) == -1,
                  "byte %02x at %zu", nonhex[k], i);
            CHECK(untouched(e), "byte %02x at %zu: digest changed",
                  nonhex[k], i);
            free(q);
        }
    }
}


static void
run(void (*f)(void))
{
    case_failed = 0;
    f();

    if (case_failed) {
        failed++;

    } else {
        passed++;
    }
}


int
main(void)
{
    size_t  i;

    for (i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
        case_failed = 0;
        vector_case(&vcases[i]);

        if (case_failed) {
            failed++;

        } else {
            passed++;
        }
    }

    for (i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
        case_failed = 0;
        padding_case(&pcases[i]);

        if (case_failed) {
            failed++;

        } else {
            passed++;
        }
    }

    run(million_a);
    run(split_case);
    run(wipe_case);
    run(ct_equal_case);
    run(hex_case);

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
