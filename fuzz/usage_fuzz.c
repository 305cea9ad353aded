
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * libFuzzer target for the response usage scanner
 * (src/ngx_http_qwen_usage.c).  See fuzz/README.md.
 *
 * Input layout:
 *
 *   byte 0   bit 0: 1 for an SSE body, 0 for a JSON one;
 *            bits 1-4: how many cuts split the body (0 to 15);
 *            bits 5-7 with the length: the seed of the cut positions
 *   rest     the response body
 *
 * The body is scanned whole, in pieces cut where byte 0 says, one byte
 * at a time, and with qwen_usage_scan_skim() tried first at every
 * position as the nginx filter does (whole and in the same pieces); all
 * must give the same results.  An independent reading of the stream
 * (SSE framing, [DONE], and with a reference JSON validator and cJSON,
 * usage_only and the model) must agree too where it can be trusted.
 *
 * Every invariant that fails calls __builtin_trap() after printing which
 * one.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ngx_http_qwen_usage.h"

#define FUZZ_NAME  "usage_fuzz"
#include "fuzz_common.h"


/* event flags as recorded */
#define EV_USAGE_ONLY   1
#define EV_DONE         2
#define EV_AT_FINISH    4


typedef struct {
    uint64_t            prompt;
    uint64_t            completion;
    uint64_t            total;
    uint64_t            cached;
    uint64_t            reasoning;
    uint64_t            events;
    unsigned            fields;
    int                 has_usage;
    int                 has_model;
    int                 model_overflow;
    int                 done_seen;
    int                 complete;
    int                 finish;
    size_t              model_len;
    unsigned char       model[QWEN_USAGE_MODEL_MAX];

    size_t              nev;
    unsigned char      *ev_flags;      /* len + 2 of them */
    size_t             *ev_off;        /* offset just past each event */
} result_t;


static void
result_init(result_t *r, size_t len)
{
    memset(r, 0, sizeof(result_t));

    r->ev_flags = malloc(len + 2);
    r->ev_off = malloc((len + 2) * sizeof(size_t));
    CHECK(r->ev_flags != NULL && r->ev_off != NULL);
}


static void
result_free(result_t *r)
{
    free(r->ev_flags);
    free(r->ev_off);
}


static void
record_event(result_t *r, const qwen_usage_scan_t *s, size_t off,
    int at_finish, size_t len)
{
    /* an event has at least its blank line, or ends the body */
    CHECK(r->nev < len + 2);

    r->ev_flags[r->nev] = (s->event_usage_only ? EV_USAGE_ONLY : 0)
                          | (s->event_done ? EV_DONE : 0)
                          | (at_finish ? EV_AT_FINISH : 0);
    r->ev_off[r->nev] = off;
    r->nev++;
}


/*
 * Scans in[0..len) cut at cuts[0..ncuts) (ascending), each piece in a
 * heap buffer of its exact size; with skim, tries qwen_usage_scan_skim()
 * first at every position, as ngx_http_qwen_scan_buf() does.
 */

static void
run(const unsigned char *in, size_t len, int sse, const size_t *cuts,
    size_t ncuts, int skim, result_t *r)
{
    int                 maybe_zero, zero_calls;
    size_t              i, from, to, n, k, pos;
    unsigned char      *buf, *q;
    qwen_usage_scan_t   s;

    result_init(r, len);

    qwen_usage_scan_init(&s, sse);

    pos = 0;
    maybe_zero = 0;

    for (i = 0; i <= ncuts; i++) {
        from = (i == 0) ? 0 : cuts[i - 1];
        to = (i == ncuts) ? len : cuts[i];
        n = to - from;

        buf = malloc(n ? n : 1);
        CHECK(buf != NULL);
        memcpy(buf, in + from, n);
        q = buf;

        /* an empty call takes nothing and ends nothing */
        CHECK(qwen_usage_scan(&s, q, 0) == 0 && !s.event_ended);
        CHECK(qwen_usage_scan_skim(&s, q, 0) == 0 && !s.event_ended);

        zero_calls = 0;

        while (n) {
            k = skim ? qwen_usage_scan_skim(&s, q, n) : 0;

            if (k) {
                /* skim takes whole events only */
                CHECK(s.event_ended && k <= n);
                CHECK(!s.event_usage_only && !s.event_done);
                CHECK(maybe_zero == 0);

            } else {
                k = qwen_usage_scan(&s, q, n);
            }

            CHECK(k <= n);
            CHECK(sse || (k == n && !s.event_ended));

            /* a call may take nothing once (a lone "\r" ended a blank line
             * in the previous piece), not twice in a row */
            zero_calls = (k == 0) ? zero_calls + 1 : 0;
            CHECK(zero_calls < 2);

            q += k;
            n -= k;
            pos += k;

            if (s.event_ended) {
                /* maybe_usage_only() said 0 for a usage-only event */
                CHECK(!(s.event_usage_only && maybe_zero));

                record_event(r, &s, pos, 0, len);
                maybe_zero = 0;
                continue;
            }

            /* a call stops early only at the end of an event */
            CHECK(n == 0);

            if (!qwen_usage_scan_maybe_usage_only(&s)) {
                maybe_zero = 1;
            }
        }

        free(buf);
    }

    r->finish = qwen_usage_scan_finish(&s);

    if (s.event_ended) {
        CHECK(sse);
        CHECK(!(s.event_usage_only && maybe_zero));
        record_event(r, &s, pos, 1, len);
    }

    CHECK(pos == len);
    CHECK(s.model_len <= QWEN_USAGE_MODEL_MAX);
    CHECK(s.has_model || s.model_len == 0);
    CHECK(s.has_usage || s.usage_fields == 0);
    CHECK(sse || r->nev == 0);
    CHECK(!sse || s.complete == 0);
    CHECK(r->finish == (sse ? (int) s.done_seen : (int) s.complete));

    r->prompt = s.prompt_tokens;
    r->completion = s.completion_tokens;
    r->total = s.total_tokens;
    r->cached = s.cached_tokens;
    r->reasoning = s.reasoning_tokens;
    r->events = s.events;
    r->fields = s.usage_fields;
    r->has_usage = s.has_usage;
    r->has_model = s.has_model;
    r->model_overflow = s.model_overflow;
    r->done_seen = s.done_seen;
    r->complete = s.complete;
    r->model_len = s.model_len;
    memcpy(r->model, s.model, s.model_len);

    /* counts are at most 2^53 */
    CHECK(r->prompt <= QWEN_USAGE_MAX_COUNT
          && r->completion <= QWEN_USAGE_MAX_COUNT
          && r->total <= QWEN_USAGE_MAX_COUNT
          && r->cached <= QWEN_USAGE_MAX_COUNT
          && r->reasoning <= QWEN_USAGE_MAX_COUNT);
}


static void
same_results(const result_t *a, const result_t *b)
{
    CHECK(a->prompt == b->prompt);
    CHECK(a->completion == b->completion);
    CHECK(a->total == b->total);
    CHECK(a->cached == b->cached);
    CHECK(a->reasoning == b->reasoning);
    CHECK(a->events == b->events);
    CHECK(a->fields == b->fields);
    CHECK(a->has_usage == b->has_usage);
    CHECK(a->has_model == b->has_model);
    CHECK(a->model_overflow == b->model_overflow);
    CHECK(a->done_seen == b->done_seen);
    CHECK(a->complete == b->complete);
    CHECK(a->finish == b->finish);
    CHECK(a->model_len == b->model_len);
    CHECK(memcmp(a->model, b->model, a->model_len) == 0);

    CHECK(a->nev == b->nev);
    CHECK(memcmp(a->ev_flags, b->ev_flags, a->nev) == 0);
    CHECK(memcmp(a->ev_off, b->ev_off, a->nev * sizeof(size_t)) == 0);
}


/* ------------------------------------------------------------------ */
/* the reference: strict RFC 8259 (as in request_fuzz.c), nesting at   */
/* most QWEN_USAGE_MAX_DEPTH, where the scanner stops checking all     */
/* ------------------------------------------------------------------ */


typedef struct {
    const unsigned char  *p;
    size_t                len;
    size_t                pos;
    int                   failed;
    int                   too_deep;
    int                   lone_surrogate;
    int                   nul_escape;
} ref_t;


static int
ref_fail(ref_t *r)
{
    r->failed = 1;
    return -1;
}


static void
ref_ws(ref_t *r)
{
    while (r->pos < r->len
           && (r->p[r->pos] == ' ' || r->p[r->pos] == '\t'
               || r->p[r->pos] == '\n' || r->p[r->pos] == '\r'))
    {
        r->pos++;
    }
}


static int
ref_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
        return (c | 0x20) - 'a' + 10;
    }

    return -1;
}


static int
ref_string(ref_t *r)
{
    int            h, i, high;
    unsigned       cp;
    unsigned char  c;

    r->pos++;
    high = 0;

    for ( ;; ) {
        if (r->pos == r->len) {
            return ref_fail(r);
        }

        c = r->p[r->pos++];

        if (c == '"') {
            r->lone_surrogate |= high;
            return 0;
        }

        if (c < 0x20) {
            return ref_fail(r);
        }

        if (c != '\\') {
            r->lone_surrogate |= high;
            high = 0;
            continue;
        }

        if (r->pos == r->len) {
            return ref_fail(r);
        }

        c = r->p[r->pos++];

        if (c != 'u') {
            if (c == '\0' || strchr("\"\\/bfnrt", c) == NULL) {
                return ref_fail(r);
            }

            r->lone_surrogate |= high;
            high = 0;
            continue;
        }

        cp = 0;

        for (i = 0; i < 4; i++) {
            if (r->pos == r->len || (h = ref_hex(r->p[r->pos])) < 0) {
                return ref_fail(r);
            }

            cp = (cp << 4) | (unsigned) h;
            r->pos++;
        }

        if (cp == 0) {
            r->nul_escape = 1;
        }

        if (high) {
            high = 0;

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                continue;
            }

            r->lone_surrogate = 1;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            high = 1;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            r->lone_surrogate = 1;
        }
    }
}


static int
ref_digits(ref_t *r)
{
    if (r->pos == r->len || r->p[r->pos] < '0' || r->p[r->pos] > '9') {
        return ref_fail(r);
    }

    while (r->pos < r->len && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        r->pos++;
    }

    return 0;
}


static int
ref_value(ref_t *r, unsigned depth)
{
    const char     *lit;
    unsigned char   c, close;

    ref_ws(r);

    if (r->pos == r->len) {
        return ref_fail(r);
    }

    c = r->p[r->pos];

    switch (c) {

    case '{':
    case '[':

        if (depth == QWEN_USAGE_MAX_DEPTH) {
            r->too_deep = 1;
            return ref_fail(r);
        }

        close = (c == '{') ? '}' : ']';
        r->pos++;
        ref_ws(r);

        if (r->pos < r->len && r->p[r->pos] == close) {
            r->pos++;
            return 0;
        }

        for ( ;; ) {
            if (c == '{') {
                ref_ws(r);

                if (r->pos == r->len || r->p[r->pos] != '"'
                    || ref_string(r) != 0)
                {
                    return ref_fail(r);
                }

                ref_ws(r);

                if (r->pos == r->len || r->p[r->pos] != ':') {
                    return ref_fail(r);
                }

                r->pos++;
            }

            if (ref_value(r, depth + 1) != 0) {
                return -1;
            }

            ref_ws(r);

            if (r->pos == r->len) {
                return ref_fail(r);
            }

            c = (close == '}') ? '{' : '[';

            if (r->p[r->pos] == ',') {
                r->pos++;
                continue;
            }

            if (r->p[r->pos] == close) {
                r->pos++;
                return 0;
            }

            return ref_fail(r);
        }

    case '"':
        return ref_string(r);

    case 't':
    case 'f':
    case 'n':
        lit = (c == 't') ? "true" : (c == 'f') ? "false" : "null";

        for ( /* void */ ; *lit; lit++) {
            if (r->pos == r->len || r->p[r->pos] != (unsigned char) *lit) {
                return ref_fail(r);
            }

            r->pos++;
        }

        return 0;

    default:
        if (c != '-' && (c < '0' || c > '9')) {
            return ref_fail(r);
        }

        if (c == '-') {
            r->pos++;
        }

        if (r->pos < r->len && r->p[r->pos] == '0') {
            r->pos++;

        } else if (ref_digits(r) != 0) {
            return -1;
        }

        if (r->pos < r->len && r->p[r->pos] == '.') {
            r->pos++;

            if (ref_digits(r) != 0) {
                return -1;
            }
        }

        if (r->pos < r->len && (r->p[r->pos] | 0x20) == 'e') {
            r->pos++;

            if (r->pos < r->len
                && (r->p[r->pos] == '+' || r->p[r->pos] == '-'))
            {
                r->pos++;
            }

            if (ref_digits(r) != 0) {
                return -1;
            }
        }

        return 0;
    }
}


/* 1 valid, 0 invalid, -1 cannot tell (nested deeper than the scanner
 * checks) */

static int
ref_validate(ref_t *r, const unsigned char *p, size_t len)
{
    memset(r, 0, sizeof(ref_t));
    r->p = p;
    r->len = len;

    if (ref_value(r, 0) == 0) {
        ref_ws(r);

        if (r->pos != len) {
            r->failed = 1;
        }
    }

    if (r->too_deep) {
        return -1;
    }

    return !r->failed;
}


/* ------------------------------------------------------------------ */
/* an independent reading of the body                                  */
/* ------------------------------------------------------------------ */


typedef struct {
    int                 known;        /* the document-level expectations
                                         below can be trusted */
    int                 has_usage;
    int                 has_model;
    size_t              model_len;    /* the model's full decoded length */
    unsigned char      *model;        /* malloc()ed, model_len bytes */
} expect_t;


/*
 * What a document (a JSON body, or an event's data) must give: whether
 * it is complete, usage_only, has a usage object, a model string.
 * Returns -1 if that cannot be told: nested deeper than the scanner
 * checks, or names or strings cJSON cannot be trusted with (\u0000
 * makes names collide, it rejects lone surrogates).
 */

static int
ref_doc(const unsigned char *p, size_t len, int *valid, int *usage_only,
    expect_t *e, int model_wanted)
{
    int           ok, n_choices, empty_choices, usage_obj;
    char         *buf;
    cJSON        *j;
    const cJSON  *c, *model;
    ref_t         ref;

    ok = ref_validate(&ref, p, len);

    if (ok < 0) {
        return -1;
    }

    *valid = ok;
    *usage_only = 0;

    if (!ok) {
        return 0;
    }

    if (ref.nul_escape || ref.lone_surrogate) {
        return -1;
    }

    buf = malloc(len + 1);
    CHECK(buf != NULL);
    memcpy(buf, p, len);
    buf[len] = '\0';
    j = cJSON_ParseWithLength(buf, len);
    free(buf);

    /* what the reference takes, cJSON takes */
    CHECK(j != NULL);

    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return 0;
    }

    n_choices = 0;
    empty_choices = 0;
    usage_obj = 0;
    model = NULL;

    for (c = j->child; c; c = c->next) {
        if (strcmp(c->string, "choices") == 0) {
            n_choices++;
            empty_choices += (cJSON_IsArray(c) && c->child == NULL);

        } else if (strcmp(c->string, "usage") == 0) {
            usage_obj |= cJSON_IsObject(c);

        } else if (strcmp(c->string, "model") == 0 && cJSON_IsString(c)) {
            model = c;
        }
    }

    *usage_only = (n_choices > 0 && n_choices == empty_choices && usage_obj);

    e->has_usage |= usage_obj;

    if (model && model_wanted && !e->has_model) {
        e->has_model = 1;
        e->model_len = strlen(model->valuestring);
        e->model = malloc(e->model_len + 1);
        CHECK(e->model != NULL);
        memcpy(e->model, model->valuestring, e->model_len);
    }

    cJSON_Delete(j);

    return 0;
}


static int
utf8_valid(const unsigned char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;
            continue;
        }

        n = (p[i] >= 0xc2 && p[i] <= 0xdf) ? 2
            : (p[i] >= 0xe0 && p[i] <= 0xef) ? 3
            : (p[i] >= 0xf0 && p[i] <= 0xf4) ? 4 : 0;

        if (n == 0 || i + n > len) {
            return 0;
        }

        cp = p[i] & (0x7f >> n);

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
            || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        {
            return 0;
        }
    }

    return 1;
}


static void
check_model(const result_t *r, const expect_t *e)
{
    size_t  k;

    CHECK(r->has_model == e->has_model);

    if (!e->has_model) {
        return;
    }

    if (e->model_len <= QWEN_USAGE_MODEL_MAX) {
        CHECK(!r->model_overflow);
        CHECK(r->model_len == e->model_len);
        CHECK(memcmp(r->model, e->model, e->model_len) == 0);

    } else {
        /* a prefix, cut before a character that does not fit whole */
        CHECK(r->model_overflow);
        CHECK(r->model_len <= QWEN_USAGE_MODEL_MAX
              && r->model_len + 3 >= QWEN_USAGE_MODEL_MAX);
        CHECK(memcmp(r->model, e->model, r->model_len) == 0);

        if (utf8_valid(e->model, e->model_len)) {
            /* the longest prefix of whole characters that fits */
            for (k = QWEN_USAGE_MODEL_MAX; (e->model[k] & 0xc0) == 0x80; k--)
            {
                /* void */
            }

            CHECK(r->model_len == k);
        }
    }
}


/* JSON mode: the body is one document */

static void
check_json_ref(const unsigned char *body, size_t len, const result_t *r)
{
    int       valid, usage_only;
    expect_t  e;

    memset(&e, 0, sizeof(expect_t));

    if (ref_doc(body, len, &valid, &usage_only, &e, 1) == 0) {
        CHECK(r->complete == valid);
        CHECK(r->has_usage == e.has_usage);
        check_model(r, &e);
    }

    free(e.model);
}


/*
 * SSE mode: lines end with "\r\n", "\n" or "\r"; a blank line ends a
 * block that has lines; "data:" lines (one space after the colon is not
 * data, and "data" alone is an empty one) are joined with "\n"; the end
 * of the body ends an open block.  A block with data is an event.
 */

static void
check_sse_ref(const unsigned char *body, size_t len, const result_t *r,
    int check_offsets)
{
    int             block, lines, valid, usage_only, known, unknown_before;
    size_t          pos, ls, le, dlen, nev, events;
    unsigned char  *data, flags;
    const unsigned char  *v;
    size_t          vlen;
    expect_t        e;

    data = malloc(len + 1);
    CHECK(data != NULL);

    memset(&e, 0, sizeof(expect_t));
    e.known = 1;

    pos = 0;
    block = 0;
    lines = 0;
    dlen = 0;
    nev = 0;
    events = 0;
    unknown_before = 0;

    for ( ;; ) {
        int  at_eof = (pos == len);

        if (!at_eof) {
            ls = pos;

            while (pos < len && body[pos] != '\r' && body[pos] != '\n') {
                pos++;
            }

            le = pos;

            if (pos == len) {
                /* a last line the body cut: "data" alone is not yet a
                 * data line (more of its name may follow) */
                if (le - ls == 4 && memcmp(body + ls, "data", 4) == 0) {
                    block = 1;
                    continue;
                }

            } else if (body[pos] == '\r') {
                pos++;

                if (pos < len && body[pos] == '\n') {
                    pos++;
                }

            } else {
                pos++;
            }

            if (le > ls) {
                block = 1;

                if (le - ls >= 4 && memcmp(body + ls, "data", 4) == 0
                    && (le - ls == 4 || body[ls + 4] == ':'))
                {
                    v = body + ls + 5;
                    vlen = (le - ls > 4) ? le - ls - 5 : 0;

                    if (vlen && *v == ' ') {
                        v++;
                        vlen--;
                    }

                    if (lines++) {
                        data[dlen++] = '\n';
                    }

                    memcpy(data + dlen, v, vlen);
                    dlen += vlen;
                }

                continue;
            }

            if (!block) {
                /* a stray blank line */
                continue;
            }
        }

        if (at_eof && !block) {
            break;
        }

        /* the block ends */

        flags = at_eof ? EV_AT_FINISH : 0;
        known = 0;

        if (!at_eof && pos == len && body[len - 1] == '\r') {
            /* a lone "\r" ends the blank line only when the byte after
             * it is seen: at the end of the body, finish() ends it */
            flags = EV_AT_FINISH;
        }

        if (lines) {
            events++;

            if (dlen >= 6 && memcmp(data, "[DONE]", 6) == 0) {
                flags |= EV_DONE;
            }

            known = ref_doc(data, dlen, &valid, &usage_only, &e,
                            !unknown_before);

            if (known < 0) {
                /* from here on the model and usage cannot be told */
                e.known = 0;
                unknown_before = 1;

            } else if (usage_only) {
                flags |= EV_USAGE_ONLY;
            }
        }

        CHECK(nev < r->nev);

        if (known >= 0) {
            CHECK(r->ev_flags[nev] == flags);

        } else {
            CHECK((r->ev_flags[nev] & ~EV_USAGE_ONLY) == flags);
        }

        if (check_offsets) {
            CHECK(r->ev_off[nev] == (at_eof ? len : pos));
        }

        nev++;

        block = 0;
        lines = 0;
        dlen = 0;

        if (at_eof) {
            break;
        }
    }

    CHECK(r->nev == nev);
    CHECK(r->events == events);

    if (e.known) {
        CHECK(r->has_usage == e.has_usage);
        check_model(r, &e);
    }

    free(e.model);
    free(data);
}


/* ------------------------------------------------------------------ */


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   sse;
    size_t                len, ncuts, i, cuts[16], *every;
    uint64_t              seed;
    unsigned char         b0;
    result_t              whole, split, bytes, skim, skim_split;
    const unsigned char  *body;

    b0 = size ? data[0] : 0;
    body = data + (size ? 1 : 0);
    len = size - (size ? 1 : 0);

    sse = b0 & 1;
    ncuts = (b0 >> 1) & 15;
    seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t) (b0 >> 5) << 32) ^ len;

    for (i = 0; i < ncuts; i++) {
        cuts[i] = (size_t) (rnd(&seed) % (len + 1));
    }

    qsort(cuts, ncuts, sizeof(size_t), cmp_size);

    every = malloc((len ? len : 1) * sizeof(size_t));
    CHECK(every != NULL);

    for (i = 1; i < len; i++) {
        every[i - 1] = i;
    }

    stage = "scan whole";
    run(body, len, sse, NULL, 0, 0, &whole);

    stage = "scan in pieces";
    run(body, len, sse, cuts, ncuts, 0, &split);
    same_results(&whole, &split);

    stage = "scan a byte at a time";
    run(body, len, sse, every, len ? len - 1 : 0, 0, &bytes);
    same_results(&whole, &bytes);

    stage = "skim then scan, whole";
    run(body, len, sse, NULL, 0, 1, &skim);
    same_results(&whole, &skim);

    stage = "skim then scan, in pieces";
    run(body, len, sse, cuts, ncuts, 1, &skim_split);
    same_results(&whole, &skim_split);

    /* the independent reading */

    stage = "the reference reading";

    if (sse) {
        check_sse_ref(body, len, &whole, 1);

    } else {
        check_json_ref(body, len, &whole);
    }

    result_free(&whole);
    result_free(&split);
    result_free(&bytes);
    result_free(&skim);
    result_free(&skim_split);
    free(every);

    return 0;
}
