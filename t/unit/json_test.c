
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Unit tests of the request-body scanner (src/ngx_http_qwen_json.c): the
 * watched root members "max_tokens" and "max_completion_tokens" (offsets,
 * type, count), alone and next to the older ones, with every body scanned
 * whole, split in two at every offset (empty pieces at either end
 * included) and one byte at a time, all of which must agree; and
 * qwen_json_uint(), which reads such a number.  Every piece is copied into
 * a heap buffer of its exact size, so that a sanitizer sees any read past
 * it.
 *
 *   cc -O1 -g -fsanitize=address,undefined -Isrc t/unit/json_test.c \
 *       src/ngx_http_qwen_json.c -o /tmp/json_test
 *
 * The last line printed is "N passed, M failed"; the exit status is 0 only
 * if nothing failed.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_qwen_json.h"


static unsigned  passed, failed;


#define CHECK(name, cond)                                                    \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            printf("FAIL: %s: %s (line %d)\n", name, #cond, __LINE__);       \
        }                                                                    \
    } while (0)


/*
 * A body and what the scanner must find in it.  For each of the two new
 * members: how many times it appeared, the type of the last one, and the
 * bytes body[start..end) of the last one (NULL when count is 0).  "other"
 * is the sum of the counts of the four older fields, -1 not to check it.
 */

typedef struct {
    const char          *name;
    const char          *in;
    int                  valid;

    unsigned             mt_count;
    unsigned             mt_type;
    const char          *mt;

    unsigned             mct_count;
    unsigned             mct_type;
    const char          *mct;

    int                  other;
    int                  root_members;   /* -1: do not check */
} tcase_t;


#define NUM  QWEN_JSON_NUMBER
#define NONE QWEN_JSON_NONE


static const tcase_t  cases[] = {

    /* at the root */

    { "max_tokens",
      "{\"model\":\"m\",\"max_tokens\":256,\"messages\":[]}", 1,
      1, NUM, "256", 0, NONE, NULL, 1, 3 },

    { "max_completion_tokens",
      "{\"model\":\"m\",\"messages\":[],\"max_completion_tokens\":1024}", 1,
      0, NONE, NULL, 1, NUM, "1024", 1, 3 },

    { "both, first and last",
      "{\"max_tokens\":7,\"model\":\"m\",\"max_completion_tokens\":8}", 1,
      1, NUM, "7", 1, NUM, "8", 1, 3 },

    { "alone, zero",
      "{\"max_tokens\":0}", 1,
      1, NUM, "0", 0, NONE, NULL, 0, 1 },

    { "white space around",
      " {\n  \"max_tokens\" :\t256 ,\r\n  \"max_completion_tokens\": 12\n}\n",
      1, 1, NUM, "256", 1, NUM, "12", 0, 2 },

    { "with every older field",
      "{\"model\":\"qwen-plus\",\"stream\":true,\"max_tokens\":100,"
      "\"stream_options\":{\"include_usage\":true},"
      "\"max_completion_tokens\":200,\"messages\":[{\"role\":\"user\","
      "\"content\":\"hi\"}]}", 1,
      1, NUM, "100", 1, NUM, "200", 4, 6 },

    { "after a long string",
      "{\"messages\":[{\"role\":\"user\",\"content\":\"0123456789abcdef"
      "0123456789abcdef0123456789abcdef\\n\\\"q\\\" \\u00e9\"}],"
      "\"max_tokens\":4096}", 1,
      1, NUM, "4096", 0, NONE, NULL, 0, 2 },

    { "19 digits",
      "{\"max_tokens\":9999999999999999999}", 1,
      1, NUM, "9999999999999999999", 0, NONE, NULL, 0, 1 },

    /* any type is recorded; the caller reads only numbers */

    { "fraction",
      "{\"max_tokens\":100.0}", 1,
      1, NUM, "100.0", 0, NONE, NULL, 0, 1 },

    { "exponent",
      "{\"max_completion_tokens\":1e3}", 1,
      0, NONE, NULL, 1, NUM, "1e3", 0, 1 },

    { "negative",
      "{\"max_tokens\":-1}", 1,
      1, NUM, "-1", 0, NONE, NULL, 0, 1 },

    { "string",
      "{\"max_tokens\":\"256\"}", 1,
      1, QWEN_JSON_STRING, "\"256\"", 0, NONE, NULL, 0, 1 },

    { "null",
      "{\"max_tokens\":null,\"max_completion_tokens\":true}", 1,
      1, QWEN_JSON_NULL, "null", 1, QWEN_JSON_TRUE, "true", 0, 2 },

    { "false",
      "{\"max_completion_tokens\":false}", 1,
      0, NONE, NULL, 1, QWEN_JSON_FALSE, "false", 0, 1 },

    { "object and array",
      "{\"max_tokens\":{\"max_tokens\":1},"
      "\"max_completion_tokens\":[1,[2],{\"max_tokens\":3}]}", 1,
      1, QWEN_JSON_OBJECT, "{\"max_tokens\":1}",
      1, QWEN_JSON_ARRAY, "[1,[2],{\"max_tokens\":3}]", 0, 2 },

    /* nested: not counted */

    { "inside messages",
      "{\"messages\":[{\"role\":\"user\",\"max_tokens\":5,"
      "\"max_completion_tokens\":6}],\"model\":\"m\"}", 1,
      0, NONE, NULL, 0, NONE, NULL, 1, 2 },

    { "inside stream_options",
      "{\"stream_options\":{\"max_tokens\":5,\"include_usage\":true,"
      "\"max_completion_tokens\":6}}", 1,
      0, NONE, NULL, 0, NONE, NULL, 2, 1 },

    { "inside another object",
      "{\"extra_body\":{\"max_tokens\":5},\"tools\":[{\"function\":"
      "{\"max_completion_tokens\":6}}]}", 1,
      0, NONE, NULL, 0, NONE, NULL, 0, 2 },

    { "nested, then at the root",
      "{\"messages\":[{\"max_tokens\":5}],\"max_tokens\":50,"
      "\"stream_options\":{\"max_completion_tokens\":6},"
      "\"max_completion_tokens\":60}", 1,
      1, NUM, "50", 1, NUM, "60", 1, 4 },

    { "as a string value, not a name",
      "{\"model\":\"max_tokens\",\"messages\":[\"max_tokens\"]}", 1,
      0, NONE, NULL, 0, NONE, NULL, 1, 2 },

    { "root array",
      "[{\"max_tokens\":1},{\"max_completion_tokens\":2}]", 1,
      0, NONE, NULL, 0, NONE, NULL, 0, 0 },

    /* duplicates: counted, the last one's span kept */

    { "max_tokens twice",
      "{\"max_tokens\":1,\"model\":\"m\",\"max_tokens\":22}", 1,
      2, NUM, "22", 0, NONE, NULL, 1, 3 },

    { "max_completion_tokens twice, types differ",
      "{\"max_completion_tokens\":\"x\",\"max_completion_tokens\":333}", 1,
      0, NONE, NULL, 2, NUM, "333", 0, 2 },

    { "escaped and plain: two",
      "{\"max_tokens\":1,\"max\\u005ftokens\":2}", 1,
      2, NUM, "2", 0, NONE, NULL, 0, 2 },

    /* names spelt with escapes count */

    { "escaped underscore",
      "{\"max\\u005ftokens\":64}", 1,
      1, NUM, "64", 0, NONE, NULL, 0, 1 },

    { "escaped first letter, upper-case hex",
      "{\"\\u006Dax_completion_tokens\":65}", 1,
      0, NONE, NULL, 1, NUM, "65", 0, 1 },

    { "every letter escaped",
      "{\"\\u006d\\u0061\\u0078\\u005f\\u0074\\u006f\\u006b\\u0065\\u006e"
      "\\u0073\":66}", 1,
      1, NUM, "66", 0, NONE, NULL, 0, 1 },

    { "escaped slash is not in the name",
      "{\"max\\/tokens\":1}", 1,
      0, NONE, NULL, 0, NONE, NULL, 0, 1 },

    /* near misses */

    { "near misses",
      "{\"max_token\":1,\"max_tokens_\":2,\"Max_tokens\":3,\"max tokens\":4,"
      "\"max_tokens \":5,\" max_tokens\":6,\"max_completion_token\":7,"
      "\"max_completion_tokenss\":8,\"max_tokens\\u0000\":9,"
      "\"completion_tokens\":10,\"max_completion\":11}", 1,
      0, NONE, NULL, 0, NONE, NULL, 0, 11 },

    { "a long name that starts like one",
      "{\"max_completion_tokens_and_then_some_more_bytes\":1,"
      "\"max_tokensmax_tokensmax_tokensmax_tokens\":2}", 1,
      0, NONE, NULL, 0, NONE, NULL, 0, 2 },

    { "a long name, then the real one",
      "{\"max_completion_tokens_and_then_some_more_bytes\":1,"
      "\"max_completion_tokens\":3}", 1,
      0, NONE, NULL, 1, NUM, "3", 0, 2 },

    /* invalid bodies: the same error however split */

    { "leading zero",
      "{\"max_tokens\":0256}", 0,
      1, NUM, NULL, 0, NONE, NULL, 0, -1 },

    { "truncated number",
      "{\"max_tokens\":256", 0,
      1, NUM, NULL, 0, NONE, NULL, 0, -1 },

    { "fraction without digits",
      "{\"max_completion_tokens\":1.}", 0,
      0, NONE, NULL, 1, NUM, NULL, 0, -1 },

    { "plus sign",
      "{\"max_tokens\":+1}", 0,
      1, NONE, NULL, 0, NONE, NULL, 0, -1 },
};


/* the results every way of feeding must give alike */

static int
same(const qwen_json_scan_t *a, const qwen_json_scan_t *b)
{
    int  i;

    if ((a->error == NULL) != (b->error == NULL)) {
        return 0;
    }

    if (a->error
        && (strcmp(a->error, b->error) != 0
            || a->error_offset != b->error_offset))
    {
        return 0;
    }

    for (i = 0; i < QWEN_FIELD_N; i++) {
        if (a->fields[i].start != b->fields[i].start
            || a->fields[i].end != b->fields[i].end
            || a->fields[i].type != b->fields[i].type
            || a->fields[i].count != b->fields[i].count)
        {
            return 0;
        }
    }

    return a->root_type == b->root_type
           && a->root_end == b->root_end
           && a->root_members == b->root_members
           && a->stream_options_members == b->stream_options_members
           && a->model_len == b->model_len
           && a->model_overflow == b->model_overflow
           && memcmp(a->model, b->model, a->model_len) == 0;
}


/* feeds one piece from a heap buffer of its exact size */

static void
feed(qwen_json_scan_t *s, const unsigned char *p, size_t len)
{
    unsigned char  *b;

    b = malloc(len ? len : 1);

    if (b == NULL) {
        perror("malloc");
        exit(2);
    }

    memcpy(b, p, len);
    (void) qwen_json_scan(s, b, len);
    free(b);
}


static void
scan_split(qwen_json_scan_t *s, const unsigned char *in, size_t len,
    size_t at)
{
    qwen_json_scan_init(s);
    feed(s, in, at);
    feed(s, in + at, len - at);
    (void) qwen_json_scan_finish(s);
}


static void
scan_bytes(qwen_json_scan_t *s, const unsigned char *in, size_t len)
{
    size_t  i;

    qwen_json_scan_init(s);

    for (i = 0; i < len; i++) {
        feed(s, in + i, 1);
    }

    (void) qwen_json_scan_finish(s);
}


static void
check_field(const char *name, const unsigned char *in, size_t len,
    const qwen_json_field_t *f, unsigned count, unsigned type,
    const char *text)
{
    CHECK(name, f->count == count);

    if (count == 0) {
        CHECK(name, f->start == 0 && f->end == 0
                    && f->type == QWEN_JSON_NONE);
        return;
    }

    if (type != QWEN_JSON_NONE) {
        CHECK(name, f->type == type);
    }

    if (text == NULL) {
        return;
    }

    CHECK(name, f->start > 0 && f->start < f->end
                && (size_t) f->end <= len);

    if (f->start > 0 && f->start < f->end && (size_t) f->end <= len) {
        CHECK(name, (size_t) (f->end - f->start) == strlen(text)
                    && memcmp(in + f->start, text, strlen(text)) == 0);
    }
}


static void
run_case(const char *name, const unsigned char *in, size_t len,
    const tcase_t *t)
{
    int                       other, rc;
    size_t                    at;
    char                      what[256];
    unsigned                  bad;
    qwen_json_scan_t          whole, piece;
    const qwen_json_field_t  *f;

    /* whole */

    qwen_json_scan_init(&whole);
    feed(&whole, in, len);
    rc = qwen_json_scan_finish(&whole);

    snprintf(what, sizeof(what), "%s: valid", name);
    CHECK(what, (rc == 0) == (t->valid != 0));

    if (rc != 0 && t->valid) {
        printf("  %s: %s at %lld\n", name, whole.error,
               (long long) whole.error_offset);
    }

    snprintf(what, sizeof(what), "%s: max_tokens", name);
    check_field(what, in, len, &whole.fields[QWEN_FIELD_MAX_TOKENS],
                t->mt_count, t->mt_type, t->mt);

    snprintf(what, sizeof(what), "%s: max_completion_tokens", name);
    check_field(what, in, len,
                &whole.fields[QWEN_FIELD_MAX_COMPLETION_TOKENS],
                t->mct_count, t->mct_type, t->mct);

    if (t->valid) {
        other = (int) (whole.fields[QWEN_FIELD_MODEL].count
                       + whole.fields[QWEN_FIELD_STREAM].count
                       + whole.fields[QWEN_FIELD_STREAM_OPTIONS].count
                       + whole.fields[QWEN_FIELD_INCLUDE_USAGE].count);

        snprintf(what, sizeof(what), "%s: the older fields", name);
        CHECK(what, other == t->other);

        if (t->root_members >= 0) {
            snprintf(what, sizeof(what), "%s: root_members", name);
            CHECK(what, whole.root_members == (unsigned) t->root_members);
        }

        /* a valid body's fields are closed and inside the root */

        for (f = whole.fields; f < whole.fields + QWEN_FIELD_N; f++) {
            if (f->count) {
                snprintf(what, sizeof(what), "%s: field %d in the root",
                         name, (int) (f - whole.fields));
                CHECK(what, f->start < f->end && f->end <= whole.root_end);
            }
        }
    }

    /* split in two at every offset: one line per case, not per offset */

    bad = 0;

    for (at = 0; at <= len; at++) {
        scan_split(&piece, in, len, at);

        if (!same(&whole, &piece)) {
            if (bad++ == 0) {
                printf("  %s: split at %zu differs\n", name, at);
            }
        }
    }

    snprintf(what, sizeof(what), "%s: every split in two", name);
    CHECK(what, bad == 0);

    scan_bytes(&piece, in, len);

    snprintf(what, sizeof(what), "%s: a byte at a time", name);
    CHECK(what, same(&whole, &piece));
}


/* a body too long to write out: a long content, escapes and all */

static void
long_body(void)
{
    size_t          i, n, len;
    unsigned char  *b;
    tcase_t         t;

    static const char  head[] = "{\"model\":\"m\",\"messages\":[{\"role\":"
                                "\"user\",\"content\":\"";
    static const char  tail[] = "\"}],\"max_\\u0074okens\":123456,"
                                "\"stream\":false,"
                                "\"max_completion_tokens\":  42 }";

    n = 3000;
    b = malloc(sizeof(head) + n + sizeof(tail));

    if (b == NULL) {
        perror("malloc");
        exit(2);
    }

    len = 0;
    memcpy(b, head, sizeof(head) - 1);
    len += sizeof(head) - 1;

    for (i = 0; i < n; i++) {
        /* now and then an escape, so that the fast path stops */
        if (i % 97 == 96) {
            b[len++] = '\\';
            b[len++] = 'n';
            i++;

        } else {
            b[len++] = (unsigned char) ('a' + i % 26);
        }
    }

    memcpy(b + len, tail, sizeof(tail) - 1);
    len += sizeof(tail) - 1;

    memset(&t, 0, sizeof(t));
    t.valid = 1;
    t.mt_count = 1;
    t.mt_type = QWEN_JSON_NUMBER;
    t.mt = "123456";
    t.mct_count = 1;
    t.mct_type = QWEN_JSON_NUMBER;
    t.mct = "42";
    t.other = 2;
    t.root_members = 5;

    run_case("long body", b, len, &t);

    free(b);
}


/* qwen_json_uint() */

typedef struct {
    const char          *in;
    int                  rc;
    uint64_t             value;
} ucase_t;


static const ucase_t  ucases[] = {
    { "0", 0, 0 },
    { "1", 0, 1 },
    { "9", 0, 9 },
    { "10", 0, 10 },
    { "256", 0, 256 },
    { "4096", 0, 4096 },
    { "2147483648", 0, 2147483648ULL },
    { "4294967296", 0, 4294967296ULL },
    { "1000000000000000000", 0, 1000000000000000000ULL },
    { "9999999999999999999", 0, 9999999999999999999ULL },

    /* 20 digits and more: too long, even when they would fit */
    { "10000000000000000000", -1, 0 },
    { "18446744073709551615", -1, 0 },
    { "18446744073709551616", -1, 0 },
    { "99999999999999999999", -1, 0 },
    { "123456789012345678901234567890", -1, 0 },

    /* not a non-negative integer */
    { "", -1, 0 },
    { "-1", -1, 0 },
    { "-0", -1, 0 },
    { "+1", -1, 0 },
    { "1.5", -1, 0 },
    { "100.0", -1, 0 },
    { "0.0", -1, 0 },
    { "1e3", -1, 0 },
    { "1E3", -1, 0 },
    { "1e+3", -1, 0 },
    { "0e0", -1, 0 },
    { "00", -1, 0 },
    { "01", -1, 0 },
    { " 1", -1, 0 },
    { "1 ", -1, 0 },
    { "0x10", -1, 0 },
    { "1a", -1, 0 },
    { "\"1\"", -1, 0 },
    { "null", -1, 0 },
    { "true", -1, 0 },
    { "1/", -1, 0 },
    { "1:", -1, 0 },
};


static void
test_uint(void)
{
    int             rc;
    char            what[128];
    size_t          i, len;
    uint64_t        v;
    unsigned char  *b;

    static const unsigned char  more[] = "256xyz";

    for (i = 0; i < sizeof(ucases) / sizeof(ucases[0]); i++) {
        len = strlen(ucases[i].in);

        /* exactly len bytes, so that a read past them is seen */
        b = malloc(len ? len : 1);

        if (b == NULL) {
            perror("malloc");
            exit(2);
        }

        memcpy(b, ucases[i].in, len);

        v = 0x5555;
        rc = qwen_json_uint(b, len, &v);

        snprintf(what, sizeof(what), "qwen_json_uint(\"%s\")", ucases[i].in);
        CHECK(what, rc == ucases[i].rc);

        if (ucases[i].rc == 0) {
            CHECK(what, v == ucases[i].value);

        } else {
            /* untouched on failure */
            CHECK(what, v == 0x5555);
        }

        free(b);
    }

    /* only len bytes are read */

    v = 0;
    CHECK("qwen_json_uint: only len bytes",
          qwen_json_uint(more, 3, &v) == 0 && v == 256);
    CHECK("qwen_json_uint: len 1", qwen_json_uint(more, 1, &v) == 0 && v == 2);
    CHECK("qwen_json_uint: len 0", qwen_json_uint(more, 0, &v) == -1);
    CHECK("qwen_json_uint: a letter within len",
          qwen_json_uint(more, 4, &v) == -1);
}


/* what the gateway will do: read the number by the offsets */

static void
test_read(void)
{
    size_t             i;
    uint64_t           v;
    qwen_json_scan_t   s;
    const qwen_json_field_t  *f;

    static const struct {
        const char  *in;
        int          rc;        /* of qwen_json_uint(), or 1: no field */
        uint64_t     value;
    } r[] = {
        { "{\"model\":\"m\",\"max_tokens\":256}", 0, 256 },
        { "{\"max_tokens\": 0 }", 0, 0 },
        { "{\"max_tokens\":9999999999999999999}", 0, 9999999999999999999ULL },
        { "{\"max_tokens\":18446744073709551615}", -1, 0 },
        { "{\"max_tokens\":100.0}", -1, 0 },
        { "{\"max_tokens\":1e3}", -1, 0 },
        { "{\"max_tokens\":-1}", -1, 0 },
        { "{\"max_tokens\":\"256\"}", -1, 0 },
        { "{\"messages\":[{\"max_tokens\":256}]}", 1, 0 },
    };

    for (i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        qwen_json_scan_init(&s);
        feed(&s, (const unsigned char *) r[i].in, strlen(r[i].in));
        CHECK(r[i].in, qwen_json_scan_finish(&s) == 0);

        f = &s.fields[QWEN_FIELD_MAX_TOKENS];

        if (r[i].rc == 1) {
            CHECK(r[i].in, f->count == 0);
            continue;
        }

        CHECK(r[i].in, f->count == 1);

        if (f->count != 1) {
            continue;
        }

        v = 0;

        /* as the caller must: only a number token is read */
        if (f->type != QWEN_JSON_NUMBER) {
            CHECK(r[i].in, r[i].rc == -1);
            continue;
        }

        CHECK(r[i].in, qwen_json_uint((const unsigned char *) r[i].in
                                      + f->start,
                                      (size_t) (f->end - f->start), &v)
                       == r[i].rc);

        if (r[i].rc == 0) {
            CHECK(r[i].in, v == r[i].value);
        }
    }
}


int
main(void)
{
    size_t  i;

    /* the enum: the older indexes did not move */

    CHECK("enum", QWEN_FIELD_MODEL == 0 && QWEN_FIELD_STREAM == 1
                  && QWEN_FIELD_STREAM_OPTIONS == 2
                  && QWEN_FIELD_INCLUDE_USAGE == 3
                  && QWEN_FIELD_MAX_TOKENS == 4
                  && QWEN_FIELD_MAX_COMPLETION_TOKENS == 5
                  && QWEN_FIELD_N == 6);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_case(cases[i].name, (const unsigned char *) cases[i].in,
                 strlen(cases[i].in), &cases[i]);
    }

    long_body();
    test_uint();
    test_read();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
