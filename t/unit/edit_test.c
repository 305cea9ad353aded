
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Unit tests of the body edits (src/ngx_http_qwen_edit.c): the edit plan
 * for every form of "stream_options", and the splice fed the body whole,
 * split in two at every offset, in three pieces at every pair of offsets
 * and one byte at a time.  Every piece is copied into a heap buffer of its
 * exact size, so that a sanitizer sees any read past it, and every emitted
 * piece must point into the piece being fed or be an edit's whole text.
 *
 *   cc -O1 -g -fsanitize=address,undefined -Isrc t/unit/edit_test.c \
 *       src/ngx_http_qwen_edit.c src/ngx_http_qwen_json.c -o /tmp/edit_test
 *
 * The last line printed is "N passed, M failed"; the exit status is 0 only
 * if nothing failed.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_qwen_edit.h"


#define OUT_MAX  4096


typedef struct {
    const char          *name;
    const char          *in;
    const char          *model;      /* the new name */
    int                  stream;
    int                  inject;

    /* what must come out */
    int                  kept;       /* qwen_edit_model_kept() */
    const char          *out;        /* the new body */
    int                  client_usage;
    int                  usage_injected;
} pcase_t;


static const pcase_t  pcases[] = {

    /* include_usage: every form of stream_options */

    { "stream_options absent",
      "{\"model\":\"qwen/qwen-max\",\"stream\":true,\"messages\":[]}",
      "qwen-max", 1, 1, 0,
      "{\"model\":\"qwen-max\",\"stream\":true,\"messages\":[],"
      "\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "stream_options null",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":null}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "stream_options without include_usage",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"chunk\":1}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true,\"chunk\":1}}", 0, 1 },

    { "stream_options empty",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":{}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "stream_options empty, with white space",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":{ \n}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true \n}}", 0, 1 },

    { "include_usage false",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":false,\"x\":1}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true,\"x\":1}}", 0, 1 },

    { "include_usage null",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"x\":1,\"include_usage\":null}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"x\":1,\"include_usage\":true}}", 0, 1 },

    { "include_usage something else",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":[0]}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "include_usage true",
      "{\"model\":\"a\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}",
      "qwen-plus", 1, 1, 0,
      "{\"model\":\"qwen-plus\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 1, 0 },

    { "include_usage true, nothing to change",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 1, 0 },

    { "include_usage true, inject_usage off",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}",
      "m", 1, 0, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}", 1, 0 },

    { "include_usage false, inject_usage off",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":false}}",
      "m", 1, 0, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":false}}", 0, 0 },

    { "stream_options absent, inject_usage off",
      "{\"model\":\"m\",\"stream\":true}",
      "n", 1, 0, 0,
      "{\"model\":\"n\",\"stream\":true}", 0, 0 },

    { "stream_options a string",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":\"yes\"}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":\"yes\"}", 0, 0 },

    { "stream_options an array",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":[{}]}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":[{}]}", 0, 0 },

    { "stream_options false",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":false}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":false}", 0, 0 },

    { "not a stream",
      "{\"model\":\"m\",\"stream\":false,\"stream_options\":null}",
      "m", 0, 1, 1,
      "{\"model\":\"m\",\"stream\":false,\"stream_options\":null}", 0, 0 },

    { "not a stream, include_usage true",
      "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}",
      "m", 0, 1, 1,
      "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}",
      0, 0 },

    { "root with no members",
      "{}",
      NULL, 1, 1, 0,
      "{\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "root with no members, white space",
      " { \t} ",
      NULL, 1, 1, 0,
      " { \t\"stream_options\":{\"include_usage\":true}} ", 0, 1 },

    { "white space before the root's brace",
      "{ \"model\" : \"a\" , \"stream\" : true }\n",
      "a", 1, 1, 1,
      "{ \"model\" : \"a\" , \"stream\" : true "
      ",\"stream_options\":{\"include_usage\":true}}\n", 0, 1 },

    { "stream_options in a message does not count",
      "{\"model\":\"m\",\"stream\":true,"
      "\"messages\":[{\"stream_options\":null}]}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"messages\":[{\"stream_options\":null}],"
      "\"stream_options\":{\"include_usage\":true}}", 0, 1 },

    { "keys written with escapes",
      "{\"mod\\u0065l\":\"m\",\"str\\u0065am\":true,"
      "\"stream_\\u006fptions\":{\"include\\u005fusage\":null}}",
      "qwen-max", 1, 1, 0,
      "{\"mod\\u0065l\":\"qwen-max\",\"str\\u0065am\":true,"
      "\"stream_\\u006fptions\":{\"include\\u005fusage\":true}}", 0, 1 },

    /* duplicates: ngx_http_qwen_check_body() refuses them first */

    { "include_usage twice",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}",
      0, 0 },

    { "stream_options twice",
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":null,\"stream_options\":null}",
      "m", 1, 1, 1,
      "{\"model\":\"m\",\"stream\":true,"
      "\"stream_options\":null,\"stream_options\":null}", 0, 0 },

    /* the model */

    { "stream_options before the model",
      "{\"stream\":true,\"stream_options\":null,\"model\":\"a\"}",
      "bb", 1, 1, 0,
      "{\"stream\":true,\"stream_options\":{\"include_usage\":true},"
      "\"model\":\"bb\"}", 0, 1 },

    { "model kept",
      "{\"model\":\"qwen-plus\",\"messages\":[]}",
      "qwen-plus", 0, 1, 1,
      "{\"model\":\"qwen-plus\",\"messages\":[]}", 0, 0 },

    { "model kept, non-ASCII",
      "{\"model\":\"\xe9\x80\x9a\xe4\xb9\x89\"}",
      "\xe9\x80\x9a\xe4\xb9\x89", 0, 1, 1,
      "{\"model\":\"\xe9\x80\x9a\xe4\xb9\x89\"}", 0, 0 },

    { "the same name written with escapes",
      "{\"model\":\"qwen\\u002dplus\"}",
      "qwen-plus", 0, 1, 0,
      "{\"model\":\"qwen-plus\"}", 0, 0 },

    { "the same name, escaped the same way",
      "{\"model\":\"a\\\"b\"}",
      "a\"b", 0, 1, 0,
      "{\"model\":\"a\\\"b\"}", 0, 0 },

    { "a name that is the old one's escapes",
      "{\"model\":\"a\\u0062\"}",
      "a\\u0062", 0, 1, 0,
      "{\"model\":\"a\\\\u0062\"}", 0, 0 },

    { "a name with bytes to escape",
      "{\"model\":\"m\"}",
      "q\"\\\x01\x1f/\x7f", 0, 1, 0,
      "{\"model\":\"q\\\"\\\\\\u0001\\u001f/\x7f\"}", 0, 0 },

    { "a longer name",
      "{\"messages\":[],\"model\":\"m\"}",
      "qwen3-235b-a22b-thinking-2507", 0, 1, 0,
      "{\"messages\":[],\"model\":\"qwen3-235b-a22b-thinking-2507\"}",
      0, 0 },
};


typedef struct {
    unsigned char            out[OUT_MAX];
    size_t                   len;
    const qwen_edit_plan_t  *plan;
    const unsigned char     *piece;
    size_t                   piece_len;
    unsigned                 calls;
    unsigned                 fail_at;     /* return -1 on this call */
    int                      bad;         /* a piece from nowhere */
} sink_t;


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


static int
sink(void *data, const unsigned char *p, size_t len)
{
    int        ok;
    unsigned   i;
    sink_t    *s;
    uintptr_t  u, b;

    s = data;
    s->calls++;

    if (s->fail_at && s->calls == s->fail_at) {
        return -1;
    }

    ok = 0;
    u = (uintptr_t) p;
    b = (uintptr_t) s->piece;

    if (s->piece != NULL && u >= b && u - b < s->piece_len
        && len <= s->piece_len - (u - b))
    {
        ok = 1;
    }

    for (i = 0; i < s->plan->n; i++) {
        if (p == s->plan->edits[i].text && len == s->plan->edits[i].len) {
            ok = 1;
        }
    }

    if (!ok || len == 0 || s->len + len > OUT_MAX) {
        s->bad = 1;
        return -1;
    }

    memcpy(s->out + s->len, p, len);
    s->len += len;

    return 0;
}


/* feeds body[0 .. len) cut at cuts[0 .. ncuts) (ascending), each piece in
 * a heap buffer of its exact size; returns qwen_splice_finish() or -1 */

static int
splice(const qwen_edit_plan_t *plan, const char *body, size_t len,
    const size_t *cuts, size_t ncuts, sink_t *s, qwen_splice_t *sp)
{
    int             rc;
    size_t          i, from, to;
    unsigned char  *buf;

    memset(s, 0, sizeof(sink_t));
    s->plan = plan;

    qwen_splice_init(sp, plan, sink, s);

    for (i = 0; i <= ncuts; i++) {
        from = (i == 0) ? 0 : cuts[i - 1];
        to = (i == ncuts) ? len : cuts[i];

        buf = malloc(to - from ? to - from : 1);
        if (buf == NULL) {
            return -1;
        }

        memcpy(buf, body + from, to - from);

        s->piece = buf;
        s->piece_len = to - from;

        rc = qwen_splice(sp, buf, to - from);

        s->piece = NULL;
        free(buf);

        if (rc != 0) {
            return -1;
        }
    }

    return qwen_splice_finish(sp);
}


/* the splice gives "expect" however the body is cut */

static void
splice_every_way(const char *name, const qwen_edit_plan_t *plan,
    const char *body, const char *expect)
{
    int            rc;
    size_t         len, elen, i, j, cuts[4096];
    sink_t        *s;
    qwen_splice_t  sp;

    len = strlen(body);
    elen = strlen(expect);

    s = malloc(sizeof(sink_t));
    if (s == NULL) {
        CHECK(0, "%s: out of memory", name);
        return;
    }

#define SAME(how, a, b)                                                      \
    CHECK(rc == 0 && !s->bad && s->len == elen                               \
          && memcmp(s->out, expect, elen) == 0                               \
          && sp.out == (int64_t) elen,                                       \
          "%s: %s %zu %zu: rc %d, bad %d, \"%.*s\"", name, how,              \
          (size_t) (a), (size_t) (b), rc, s->bad, (int) s->len, s->out)

    rc = splice(plan, body, len, NULL, 0, s, &sp);
    SAME("whole", 0, 0);

    /* in two at every offset, empty pieces at either end included */

    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        rc = splice(plan, body, len, cuts, 1, s, &sp);
        SAME("cut at", i, 0);
    }

    /* in three at every pair of offsets */

    for (i = 0; i <= len; i++) {
        for (j = i; j <= len; j++) {
            cuts[0] = i;
            cuts[1] = j;
            rc = splice(plan, body, len, cuts, 2, s, &sp);
            SAME("cut at", i, j);
        }
    }

    /* a byte at a time */

    if (len > 0 && len - 1 <= sizeof(cuts) / sizeof(cuts[0])) {
        for (i = 1; i < len; i++) {
            cuts[i - 1] = i;
        }

        rc = splice(plan, body, len, cuts, len - 1, s, &sp);
        SAME("bytes", len, 0);
    }

#undef SAME

    free(s);
}


static void
plan_case(const pcase_t *c)
{
    int                 kept;
    size_t              len, mlen, elen;
    unsigned            i;
    unsigned char      *esc;
    qwen_json_scan_t    scan;
    qwen_edit_plan_t    plan;

    len = strlen(c->in);

    qwen_json_scan_init(&scan);
    (void) qwen_json_scan(&scan, (const unsigned char *) c->in, len);

    CHECK(qwen_json_scan_finish(&scan) == 0, "%s: the body is valid JSON",
          c->name);

    esc = NULL;
    elen = 0;
    kept = 0;

    if (c->model != NULL) {
        mlen = strlen(c->model);
        kept = qwen_edit_model_kept(&scan, (const unsigned char *) c->model,
                                    mlen);

        if (!kept) {
            elen = qwen_json_escaped_len((const unsigned char *) c->model,
                                         mlen);
            esc = malloc(elen);
            if (esc == NULL) {
                CHECK(0, "%s: out of memory", c->name);
                return;
            }

            (void) qwen_json_escape(esc, (const unsigned char *) c->model,
                                    mlen);
        }
    }

    CHECK(kept == c->kept, "%s: kept %d", c->name, kept);

    qwen_edit_plan(&plan, &scan, esc, elen, c->stream, c->inject);

    CHECK(plan.client_usage == (unsigned) c->client_usage,
          "%s: client_usage %u", c->name, plan.client_usage);
    CHECK(plan.usage_injected == (unsigned) c->usage_injected,
          "%s: usage_injected %u", c->name, plan.usage_injected);
    CHECK(plan.n == (unsigned) (esc != NULL) + plan.usage_injected,
          "%s: %u edits", c->name, plan.n);

    for (i = 0; i < plan.n && i < QWEN_EDIT_MAX; i++) {
        CHECK(plan.edits[i].start >= 0
              && plan.edits[i].start <= plan.edits[i].end
              && plan.edits[i].end <= (int64_t) len
              && (i == 0 || plan.edits[i - 1].end <= plan.edits[i].start)
              && plan.edits[i].len > 0,
              "%s: edit %u: [%lld, %lld)", c->name, i,
              (long long) plan.edits[i].start,
              (long long) plan.edits[i].end);
    }

    splice_every_way(c->name, &plan, c->in, c->out);

    free(esc);
}


/* the walker alone, with edits a plan never makes too */

typedef struct {
    const char          *name;
    const char          *in;
    unsigned             n;
    struct {
        int64_t          start;
        int64_t          end;
        const char      *text;
    } e[QWEN_EDIT_MAX];
    const char          *out;        /* NULL: finish() must fail */
} scase_t;


static const scase_t  scases[] = {
    { "nothing", "0123456789", 0, { { 0, 0, NULL } }, "0123456789" },
    { "insert first", "0123456789", 1, { { 0, 0, "ab" } }, "ab0123456789" },
    { "insert last", "0123456789", 1, { { 10, 10, "ab" } },
      "0123456789ab" },
    { "replace all", "0123456789", 1, { { 0, 10, "x" } }, "x" },
    { "replace the first byte", "0123456789", 1, { { 0, 1, "xy" } },
      "xy123456789" },
    { "replace the last byte", "0123456789", 1, { { 9, 10, "xy" } },
      "012345678xy" },
    { "delete", "0123456789", 1, { { 2, 5, "" } }, "0156789" },
    { "delete all", "0123456789", 1, { { 0, 10, "" } }, "" },
    { "adjacent", "0123456789", 2, { { 2, 4, "A" }, { 4, 4, "B" } },
      "01AB456789" },
    { "adjacent replacements", "0123456789", 2,
      { { 2, 4, "A" }, { 4, 7, "B" } }, "01AB789" },
    { "two insertions at one offset", "0123456789", 2,
      { { 3, 3, "A" }, { 3, 3, "B" } }, "012AB3456789" },
    { "replace, then insert at the end", "0123456789", 2,
      { { 8, 10, "X" }, { 10, 10, "Y" } }, "01234567XY" },
    { "first and last", "0123456789", 2,
      { { 0, 0, "<" }, { 10, 10, ">" } }, "<0123456789>" },
    { "an empty body", "", 1, { { 0, 0, "ab" } }, "ab" },
    { "an empty body, nothing", "", 0, { { 0, 0, NULL } }, "" },
    { "an insertion past the end", "0123456789", 1, { { 11, 11, "x" } },
      NULL },
    { "a replacement past the end", "0123456789", 1, { { 8, 11, "x" } },
      NULL },
};


static void
splice_case(const scase_t *c)
{
    int               rc;
    size_t            len, cuts[1];
    sink_t           *s;
    unsigned          i;
    qwen_splice_t     sp;
    qwen_edit_plan_t  plan;

    memset(&plan, 0, sizeof(plan));
    plan.n = c->n;

    for (i = 0; i < c->n; i++) {
        plan.edits[i].start = c->e[i].start;
        plan.edits[i].end = c->e[i].end;
        plan.edits[i].text = (const unsigned char *) c->e[i].text;
        plan.edits[i].len = strlen(c->e[i].text);
    }

    if (c->out != NULL) {
        splice_every_way(c->name, &plan, c->in, c->out);
        return;
    }

    s = malloc(sizeof(sink_t));
    if (s == NULL) {
        CHECK(0, "%s: out of memory", c->name);
        return;
    }

    len = strlen(c->in);

    rc = splice(&plan, c->in, len, NULL, 0, s, &sp);
    CHECK(rc == -1 && !s->bad, "%s: whole: rc %d", c->name, rc);

    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        rc = splice(&plan, c->in, len, cuts, 1, s, &sp);
        CHECK(rc == -1 && !s->bad, "%s: cut at %u: rc %d", c->name, i, rc);
    }

    free(s);
}


/* emit() failing stops the splice at once, whichever piece it is */

static void
emit_fails(void)
{
    int               rc;
    sink_t           *s;
    unsigned          k, calls;
    qwen_splice_t     sp;
    qwen_edit_plan_t  plan;
    size_t            cuts[2] = { 3, 7 };

    static const size_t  from[] = { 0, 3, 7, 10 };

    static const char  body[] = "0123456789";

    s = malloc(sizeof(sink_t));
    if (s == NULL) {
        CHECK(0, "emit fails: out of memory");
        return;
    }

    memset(&plan, 0, sizeof(plan));
    plan.n = 2;
    plan.edits[0].start = 2;
    plan.edits[0].end = 5;
    plan.edits[0].text = (const unsigned char *) "A";
    plan.edits[0].len = 1;
    plan.edits[1].start = 10;
    plan.edits[1].end = 10;
    plan.edits[1].text = (const unsigned char *) "B";
    plan.edits[1].len = 1;

    /* 0..1, A, 5..6, 7..9, B: five calls */

    rc = splice(&plan, body, 10, cuts, 2, s, &sp);
    calls = s->calls;
    CHECK(rc == 0 && calls == 5 && s->len == 9
          && memcmp(s->out, "01A56789B", 9) == 0,
          "emit fails: without failing: rc %d, %u calls", rc, calls);

    for (k = 1; k <= calls; k++) {
        memset(s, 0, sizeof(sink_t));
        s->plan = &plan;
        s->fail_at = k;

        qwen_splice_init(&sp, &plan, sink, s);

        /* the pieces 0..2, 3..6, 7..9: rc is the one that failed */

        for (rc = 1; rc <= 3; rc++) {
            s->piece = (const unsigned char *) body + from[rc - 1];
            s->piece_len = from[rc] - from[rc - 1];

            if (qwen_splice(&sp, s->piece, s->piece_len) != 0) {
                break;
            }
        }

        if (rc == 4 && qwen_splice_finish(&sp) != 0) {
            rc = 5;
        }

        /* the calls: 1, 2 in the first piece; 3 in the second; 4, 5 in
         * the third (B goes out as soon as the body's end is reached) */

        CHECK(rc == (int) (k <= 2 ? 1 : k == 3 ? 2 : 3)
              && s->calls == k,
              "emit fails on call %u: stopped at %d after %u calls", k, rc,
              s->calls);
    }

    free(s);
}


int
main(void)
{
    size_t  i;

    for (i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
        case_failed = 0;
        plan_case(&pcases[i]);

        if (case_failed) {
            failed++;

        } else {
            passed++;
        }
    }

    for (i = 0; i < sizeof(scases) / sizeof(scases[0]); i++) {
        case_failed = 0;
        splice_case(&scases[i]);

        if (case_failed) {
            failed++;

        } else {
            passed++;
        }
    }

    case_failed = 0;
    emit_fails();

    if (case_failed) {
        failed++;

    } else {
        passed++;
    }

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
