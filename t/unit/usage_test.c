
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Unit tests of the response-body usage scanner (src/ngx_http_qwen_usage.c).
 * Every case is scanned whole, split in two at every byte offset, one byte
 * at a time, and in random pieces (fixed seed), and every way must give the
 * same results; then mutated copies of every case must give the same
 * results however they are split, too.  Every piece is copied into a heap
 * buffer of its exact size, so that a sanitizer sees any read past it.
 *
 *   cc -O1 -g -fsanitize=address,undefined -Isrc \
 *       t/unit/usage_test.c src/ngx_http_qwen_usage.c -o /tmp/usage_test
 *
 * The last line printed is "N passed, M failed"; the exit status is 0 only
 * if nothing failed.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "ngx_http_qwen_usage.h"


#define P   QWEN_USAGE_PROMPT
#define C   QWEN_USAGE_COMPLETION
#define T   QWEN_USAGE_TOTAL
#define K   QWEN_USAGE_CACHED
#define R   QWEN_USAGE_REASONING

#define MAX_EVENTS   512
#define NO_EVERY     1          /* too long to split at every offset */


typedef struct {
    const char         *name;
    int                 sse;
    const char         *in;
    size_t              len;            /* 0: strlen(in) */
    int                 flags;

    /* what must come out */
    int                 has_usage;
    uint64_t            prompt;
    uint64_t            completion;
    uint64_t            total;
    uint64_t            cached;
    uint64_t            reasoning;
    unsigned            fields;
    const char         *model;          /* NULL: none */
    size_t              model_len;      /* 0: strlen(model) */
    int                 model_overflow;
    uint64_t            events;
    const char         *evs;            /* see result_t.evs; NULL: "" */
    int                 finish;         /* qwen_usage_scan_finish() */
} tcase_t;


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

    /*
     * One character per ended event: '.' plain, 'U' usage_only, 'D' done,
     * 'X' both; in lower case (',' for '.') if qwen_usage_scan_finish()
     * ended it.  ev_off[] is the body offset just past each.
     */
    size_t              nev;
    char                evs[MAX_EVENTS + 1];
    size_t              ev_off[MAX_EVENTS];

    /* whether an event was usage_only after maybe_usage_only() said 0 */
    int                 maybe_wrong;
    const char         *bad;            /* a broken API contract */
} result_t;


static unsigned    passed, failed;
static uint64_t    rnd_state = 0x9e3779b97f4a7c15ULL;


static uint64_t
rnd(void)
{
    /* xorshift64*: the same sequence on every platform */

    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;

    return rnd_state * 0x2545f4914f6cdd1dULL;
}


static void
ok(int cond, const char *name, const char *what)
{
    if (cond) {
        passed++;
        return;
    }

    failed++;
    printf("FAIL: %s: %s\n", name, what);
}


static char
event_char(const qwen_usage_scan_t *s, int at_finish)
{
    char  c;

    c = s->event_usage_only ? (s->event_done ? 'X' : 'U')
                            : (s->event_done ? 'D' : '.');

    if (at_finish) {
        c = (c == '.') ? ',' : (char) (c - 'A' + 'a');
    }

    return c;
}


static void
record_event(result_t *r, const qwen_usage_scan_t *s, size_t off,
    int at_finish, int maybe_zero)
{
    if (s->event_usage_only && maybe_zero) {
        r->maybe_wrong = 1;
    }

    if (r->nev == MAX_EVENTS) {
        r->bad = "too many events for the test";
        return;
    }

    r->evs[r->nev] = event_char(s, at_finish);
    r->ev_off[r->nev] = off;
    r->nev++;
    r->evs[r->nev] = '\0';
}


/* scans in[0..len) cut at cuts[0..ncuts), which must be ascending */

/* scan with qwen_usage_scan_skim() first, as the nginx filter does */
static int            use_skim;
static unsigned long  skims;


static void
run(const unsigned char *in, size_t len, int sse, const size_t *cuts,
    size_t ncuts, result_t *r)
{
    size_t              i, from, to, n, k, pos;
    int                 maybe_zero;
    unsigned char      *buf, *q;
    qwen_usage_scan_t   s;

    memset(r, 0, sizeof(result_t));

    qwen_usage_scan_init(&s, sse);

    pos = 0;
    maybe_zero = 0;

    for (i = 0; i <= ncuts; i++) {
        from = (i == 0) ? 0 : cuts[i - 1];
        to = (i == ncuts) ? len : cuts[i];
        n = to - from;

        buf = malloc(n ? n : 1);
        if (buf == NULL) {
            r->bad = "out of memory";
            return;
        }

        memcpy(buf, in + from, n);
        q = buf;

        /* an empty call changes nothing */

        if (qwen_usage_scan(&s, q, 0) != 0 || s.event_ended) {
            r->bad = "an empty call consumed or ended something";
        }

        while (n) {
            k = use_skim ? qwen_usage_scan_skim(&s, q, n) : 0;

            if (k) {
                skims++;

                if (!s.event_ended || k > n) {
                    r->bad = "skim took bytes without ending an event";
                    break;
                }

            } else {
                k = qwen_usage_scan(&s, q, n);
            }

            if (k > n) {
                r->bad = "consumed more than it was given";
                break;
            }

            q += k;
            n -= k;
            pos += k;

            if (s.event_ended) {
                if (!sse) {
                    r->bad = "an event ended in JSON mode";
                }

                record_event(r, &s, pos, 0, maybe_zero);
                maybe_zero = 0;
                continue;
            }

            if (n != 0) {
                r->bad = "stopped before the end with no event ended";
                break;
            }

            if (!qwen_usage_scan_maybe_usage_only(&s)) {
                maybe_zero = 1;
            }
        }

        free(buf);
    }

    r->finish = qwen_usage_scan_finish(&s);

    if (s.event_ended) {
        record_event(r, &s, pos, 1, maybe_zero);
    }

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

    if (s.model_len > QWEN_USAGE_MODEL_MAX) {
        r->bad = "model_len out of range";

    } else {
        memcpy(r->model, s.model, s.model_len);
    }

    if (!s.has_model && (s.model_len || s.model_overflow)) {
        r->bad = "a model length without a model";
    }
}


static int
same(const result_t *a, const result_t *b)
{
    return a->prompt == b->prompt
           && a->completion == b->completion
           && a->total == b->total
           && a->cached == b->cached
           && a->reasoning == b->reasoning
           && a->events == b->events
           && a->fields == b->fields
           && a->has_usage == b->has_usage
           && a->has_model == b->has_model
           && a->model_overflow == b->model_overflow
           && a->done_seen == b->done_seen
           && a->complete == b->complete
           && a->finish == b->finish
           && a->model_len == b->model_len
           && memcmp(a->model, b->model, a->model_len) == 0
           && a->nev == b->nev
           && strcmp(a->evs, b->evs) == 0
           && memcmp(a->ev_off, b->ev_off, a->nev * sizeof(size_t)) == 0
           && a->maybe_wrong == b->maybe_wrong
           && a->bad == b->bad;
}


static void
show(const char *label, const result_t *r)
{
    size_t  i;

    printf("  %s: usage=%d P=%llu C=%llu T=%llu K=%llu R=%llu fields=%#x"
           " model=%d:\"%.*s\"%s events=%llu done=%d complete=%d"
           " finish=%d evs=\"%s\"",
           label, r->has_usage, (unsigned long long) r->prompt,
           (unsigned long long) r->completion,
           (unsigned long long) r->total, (unsigned long long) r->cached,
           (unsigned long long) r->reasoning, r->fields, r->has_model,
           (int) r->model_len, r->model, r->model_overflow ? "+" : "",
           (unsigned long long) r->events, r->done_seen, r->complete,
           r->finish, r->evs);

    for (i = 0; i < r->nev && i < 16; i++) {
        printf("%s%zu", i ? "," : " @", r->ev_off[i]);
    }

    printf("%s%s\n", r->bad ? " BAD: " : "", r->bad ? r->bad : "");
}


static int
cmp_size(const void *a, const void *b)
{
    size_t  x, y;

    x = *(const size_t *) a;
    y = *(const size_t *) b;

    return (x > y) - (x < y);
}


/* up to max random cuts; equal ones make empty pieces, which are fine */

static void
random_cuts(size_t len, size_t *cuts, size_t *ncuts, size_t max)
{
    size_t  i, n;

    if (max > len) {
        max = len;
    }

    n = (max == 0) ? 0 : (size_t) (rnd() % max) + 1;

    for (i = 0; i < n; i++) {
        cuts[i] = (size_t) (rnd() % (len + 1));
    }

    qsort(cuts, n, sizeof(size_t), cmp_size);

    *ncuts = n;
}


/*
 * Scans the input every way: whole into *whole, then (b) in two at every
 * offset (unless every is 0), (c) one byte at a time, (d) in nrandom
 * random sets of pieces.  Returns a mask of the ways that disagree with
 * the whole scan: 1 (b), 2 (c), 4 (d), and shows the first difference of
 * each unless quiet.
 */

static unsigned
split_every_way(const unsigned char *in, size_t len, int sse, int every,
    int nrandom, int quiet, result_t *whole)
{
    size_t     i, k, ncuts, *cuts;
    result_t   r;
    unsigned   bad;

    bad = 0;

    run(in, len, sse, NULL, 0, whole);

    cuts = malloc((len + 1) * sizeof(size_t));
    if (cuts == NULL) {
        return 7;
    }

    /* (b) in two at every offset, empty pieces at the ends included */

    for (k = 0; every && k <= len; k++) {
        cuts[0] = k;
        run(in, len, sse, cuts, 1, &r);

        if (!same(&r, whole)) {
            if (!quiet && !(bad & 1)) {
                printf("  split at %zu differs\n", k);
                show("whole", whole);
                show("split", &r);
            }

            bad |= 1;
        }
    }

    /* (c) one byte at a time */

    for (i = 0; i + 1 < len; i++) {
        cuts[i] = i + 1;
    }

    run(in, len, sse, cuts, len ? len - 1 : 0, &r);

    if (!same(&r, whole)) {
        if (!quiet) {
            show("whole", whole);
            show("bytes", &r);
        }

        bad |= 2;
    }

    /* (e) with the stream fast path: whole, at every offset, bytewise */

    use_skim = 1;

    run(in, len, sse, NULL, 0, &r);

    if (!same(&r, whole)) {
        if (!quiet) {
            show("whole", whole);
            show("skim", &r);
        }

        bad |= 8;
    }

    for (k = 0; every && k <= len && !(bad & 8); k++) {
        cuts[0] = k;
        run(in, len, sse, cuts, 1, &r);

        if (!same(&r, whole)) {
            if (!quiet) {
                printf("  skim, split at %zu differs\n", k);
                show("whole", whole);
                show("skim", &r);
            }

            bad |= 8;
        }
    }

    use_skim = 0;

    /* (d) random pieces: a few, then any number */

    for (i = 0; i < (size_t) nrandom; i++) {
        random_cuts(len, cuts, &ncuts, i < 3 ? 4 : 5000);
        run(in, len, sse, cuts, ncuts, &r);

        if (!same(&r, whole)) {
            if (!quiet && !(bad & 4)) {
                show("whole", whole);
                show("random", &r);
            }

            bad |= 4;
        }
    }

    free(cuts);

    return bad;
}


static void
check_case(const tcase_t *tc)
{
    int            good;
    char           e;
    size_t         len, i, mlen, off;
    result_t       r;
    unsigned       bad;
    const char    *evs;

    len = tc->len ? tc->len : strlen(tc->in);

    bad = split_every_way((const unsigned char *) tc->in, len, tc->sse,
                          !(tc->flags & NO_EVERY), 12, 0, &r);

    if (!(tc->flags & NO_EVERY)) {
        ok(!(bad & 1), tc->name, "split in two at every offset");
    }

    ok(!(bad & 2), tc->name, "one byte at a time");
    ok(!(bad & 4), tc->name, "random pieces");
    ok(!(bad & 8), tc->name, "with the stream fast path");

    /* (a) the results of the whole scan */

    evs = tc->evs ? tc->evs : "";
    mlen = tc->model ? (tc->model_len ? tc->model_len : strlen(tc->model))
                     : 0;

    good = (r.bad == NULL
            && r.has_usage == tc->has_usage
            && r.prompt == tc->prompt
            && r.completion == tc->completion
            && r.total == tc->total
            && r.cached == tc->cached
            && r.reasoning == tc->reasoning
            && r.fields == tc->fields
            && r.has_model == (tc->model != NULL)
            && r.model_len == mlen
            && (mlen == 0 || memcmp(r.model, tc->model, mlen) == 0)
            && r.model_overflow == tc->model_overflow
            && r.events == tc->events
            && strcmp(r.evs, evs) == 0
            && r.finish == tc->finish
            && r.maybe_wrong == 0
            && (tc->sse ? r.done_seen == tc->finish && r.complete == 0
                        : r.complete == tc->finish && r.done_seen == 0));

    /* an event that a scan call ended ends just after a line end */

    for (i = 0; good && i < r.nev; i++) {
        e = r.evs[i];
        off = r.ev_off[i];

        if (e == '.' || (e >= 'A' && e <= 'Z')) {
            good = (off > 0 && (tc->in[off - 1] == '\n'
                                || tc->in[off - 1] == '\r'));

        } else {
            good = (off == len);
        }
    }

    if (!good) {
        printf("  want: usage=%d P=%llu C=%llu T=%llu K=%llu R=%llu"
               " fields=%#x model=%d:\"%.*s\"%s events=%llu finish=%d"
               " evs=\"%s\"\n",
               tc->has_usage, (unsigned long long) tc->prompt,
               (unsigned long long) tc->completion,
               (unsigned long long) tc->total,
               (unsigned long long) tc->cached,
               (unsigned long long) tc->reasoning, tc->fields,
               tc->model != NULL, (int) mlen, tc->model ? tc->model : "",
               tc->model_overflow ? "+" : "",
               (unsigned long long) tc->events, tc->finish, evs);
        show("got", &r);
    }

    ok(good, tc->name, "results");
}


/*
 * Mutated copies (bytes replaced, deleted, repeated) must never break
 * the scanner's contract and must still not depend on the split.
 */

static void
check_mutations(const tcase_t *tc, int count)
{
    static const char   poke[] = "\"\\{}[]:,\n\r u09-.eE";
    int                 i, j, nmut, bad;
    size_t              len, n, at, span;
    result_t            r;
    unsigned char      *m;
    char                name[128];

    len = tc->len ? tc->len : strlen(tc->in);
    bad = 0;

    m = malloc(len + 16);
    if (m == NULL) {
        ok(0, tc->name, "out of memory");
        return;
    }

    for (i = 0; i < count; i++) {
        memcpy(m, tc->in, len);
        n = len;
        nmut = 1 + (int) (rnd() % 3);

        for (j = 0; j < nmut && n > 0; j++) {
            at = (size_t) (rnd() % n);
            span = 1 + (size_t) (rnd() % 8);

            switch (rnd() % 4) {

            case 0:
                m[at] = (unsigned char) poke[rnd() % (sizeof(poke) - 1)];
                break;

            case 1:
                m[at] = (unsigned char) rnd();
                break;

            case 2:
                /* delete */
                span = (span > n - at) ? n - at : span;
                memmove(m + at, m + at + span, n - at - span);
                n -= span;
                break;

            default:
                /* repeat */
                span = (span > n - at) ? n - at : span;
                span = (span > len + 16 - n) ? len + 16 - n : span;
                memmove(m + at + span, m + at, n - at);
                n += span;
                break;
            }
        }

        if (split_every_way(m, n, tc->sse, 0, 3, 1, &r) != 0
            || r.bad != NULL || r.maybe_wrong)
        {
            if (bad++ == 0) {
                printf("  %s, mutation %d (%zu bytes): %s\n", tc->name, i,
                       n, r.bad ? r.bad
                          : r.maybe_wrong ? "maybe_usage_only was wrong"
                          : "results depend on the split");
                fwrite(m, 1, n, stdout);
                printf("\n");
                split_every_way(m, n, tc->sse, 0, 3, 0, &r);
            }
        }
    }

    free(m);

    snprintf(name, sizeof(name), "%s: %d mutations", tc->name, count);
    ok(bad == 0, name, "contract kept, results the same however split");
}


/* SSE helpers for the cases */

#define CHUNK(model, choices, usage)                                         \
    "data: {\"id\":\"chatcmpl-7f3a\",\"object\":\"chat.completion.chunk\","  \
    "\"created\":1717000000,\"model\":\"" model "\",\"choices\":" choices     \
    ",\"usage\":" usage ",\"system_fingerprint\":null}\n\n"

#define DELTA(content)                                                       \
    "[{\"index\":0,\"delta\":{\"content\":\"" content "\"},"                 \
    "\"finish_reason\":null,\"logprobs\":null}]"

#define FIRST                                                                \
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"     \
    "\"finish_reason\":null,\"logprobs\":null}]"

#define STOP                                                                 \
    "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\","                 \
    "\"logprobs\":null}]"

#define USAGE_17_4                                                           \
    "{\"prompt_tokens\":17,\"completion_tokens\":4,\"total_tokens\":21,"     \
    "\"prompt_tokens_details\":{\"cached_tokens\":0}}"

#define DONE  "data: [DONE]\n\n"

#define NUL_CASE                                                             \
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\0\n\n"           \
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":6}}\n\n"


static const tcase_t  cases[] = {

    /* found by fuzz/usage_fuzz.c: skim took it for one event */
    { .name = "a lone CR ends a line: the [DONE] after it is seen",
      .sse = 1,
      .in = "data: {\"model\":\"m\"}\n\ndata: {}\n\rdata: [DONE]\n\n",
      .model = "m", .events = 3, .evs = "..D", .finish = 1 },

    { .name = "non-stream chat completion (mock)",
      .in = "{\"id\":\"chatcmpl-0b1c\",\"object\":\"chat.completion\","
            "\"created\":1717000000,\"model\":\"qwen-max\",\"choices\":[{"
            "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
            "\"Hello! How can I help you today? \\\"quoted\\\" \\u4f60\\u597d"
            "\"},\"finish_reason\":\"stop\",\"logprobs\":null}],\"usage\":"
            USAGE_17_4 ",\"system_fingerprint\":null}",
      .has_usage = 1, .prompt = 17, .completion = 4, .total = 21,
      .fields = P | C | T | K, .model = "qwen-max", .finish = 1 },

    { .name = "non-stream, pretty-printed, trailing newline",
      .in = "{\n  \"model\" : \"qwen-plus\" ,\n  \"choices\" : [ ] ,\n"
            "  \"usage\" : {\n    \"prompt_tokens\" : 3 ,\r\n"
            "    \"completion_tokens\" :\t5,\n    \"total_tokens\": 8\n  }\n"
            "}\n",
      .has_usage = 1, .prompt = 3, .completion = 5, .total = 8,
      .fields = P | C | T, .model = "qwen-plus", .finish = 1 },

    { .name = "embeddings",
      .in = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
            "\"index\":0,\"embedding\":[0.0123,-0.5,1e-3,2.5E+2,0,-0.0]},"
            "{\"object\":\"embedding\",\"index\":1,\"embedding\":[1,2]}],"
            "\"model\":\"text-embedding-v3\",\"usage\":{\"prompt_tokens\":2,"
            "\"total_tokens\":2},\"id\":\"8f0c1e2a\"}",
      .has_usage = 1, .prompt = 2, .total = 2, .fields = P | T,
      .model = "text-embedding-v3", .finish = 1 },

    { .name = "cached and reasoning tokens",
      .in = "{\"model\":\"qwq-plus\",\"choices\":[{\"message\":{\"content\":"
            "\"4\",\"reasoning_content\":\"2+2\"}}],\"usage\":{"
            "\"prompt_tokens\":3019,\"completion_tokens\":104,"
            "\"total_tokens\":3123,\"completion_tokens_details\":{"
            "\"reasoning_tokens\":80,\"text_tokens\":24},"
            "\"prompt_tokens_details\":{\"text_tokens\":971,"
            "\"cached_tokens\":2048,\"image_tokens\":0}}}",
      .has_usage = 1, .prompt = 3019, .completion = 104, .total = 3123,
      .cached = 2048, .reasoning = 80, .fields = P | C | T | K | R,
      .model = "qwq-plus", .finish = 1 },

    { .name = "completion_tokens_details null (Qwen-MT)",
      .in = "{\"model\":\"qwen-mt-turbo\",\"choices\":[{\"message\":{"
            "\"content\":\"Bonjour\"}}],\"usage\":{\"prompt_tokens\":40,"
            "\"completion_tokens\":12,\"total_tokens\":52,"
            "\"prompt_tokens_details\":null,"
            "\"completion_tokens_details\":null}}",
      .has_usage = 1, .prompt = 40, .completion = 12, .total = 52,
      .fields = P | C | T, .model = "qwen-mt-turbo", .finish = 1 },

    { .name = "details of the wrong kind, and counts in the wrong place",
      .in = "{\"usage\":{\"prompt_tokens_details\":{\"reasoning_tokens\":5,"
            "\"prompt_tokens\":6},\"completion_tokens_details\":{"
            "\"cached_tokens\":7,\"reasoning_tokens\":[8],"
            "\"x\":{\"reasoning_tokens\":9}},\"cached_tokens\":10,"
            "\"reasoning_tokens\":11,\"total_tokens\":{\"n\":12},"
            "\"completion_tokens\":[13],\"prompt_tokens\":14}}",
      .has_usage = 1, .prompt = 14, .fields = P, .finish = 1 },

    { .name = "usage nested elsewhere or in strings is ignored",
      .in = "{\"model\":\"qwen-plus\",\"note\":\"\\\"usage\\\":{\\\""
            "prompt_tokens\\\":333}\",\"choices\":[{\"index\":0,"
            "\"usage\":{\"prompt_tokens\":555},\"model\":\"wrong\","
            "\"message\":{\"role\":\"assistant\",\"content\":null,"
            "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
            "\"function\":{\"name\":\"report\",\"arguments\":"
            "\"{\\\"usage\\\":{\\\"prompt_tokens\\\":999}}\"}}]}}],"
            "\"metadata\":{\"usage\":{\"prompt_tokens\":444},"
            "\"model\":\"wrong\"},\"usage\":{\"prompt_tokens\":7,"
            "\"completion_tokens\":3,\"total_tokens\":10},"
            "\"x\":[{\"usage\":{\"prompt_tokens\":1}}]}",
      .has_usage = 1, .prompt = 7, .completion = 3, .total = 10,
      .fields = P | C | T, .model = "qwen-plus", .finish = 1 },

    { .name = "no top-level usage at all",
      .in = "{\"model\":\"qwen-plus\",\"choices\":[{\"usage\":{"
            "\"prompt_tokens\":5}}],\"data\":{\"usage\":{\"total_tokens\":"
            "1}},\"usage_\":{\"prompt_tokens\":2},\"Usage\":{"
            "\"prompt_tokens\":3}}",
      .model = "qwen-plus", .finish = 1 },

    { .name = "usage null, usage not an object",
      .in = "{\"usage\":null,\"x\":{\"usage\":{\"prompt_tokens\":1}},"
            "\"usage\":[{\"prompt_tokens\":2}],\"usage\":\"{}\","
            "\"usage\":5}",
      .finish = 1 },

    { .name = "escaped member names",
      .in = "{\"m\\u006fdel\":\"qwen\\u002dturbo\",\"\\u0075sage\":{"
            "\"prompt_t\\u006Fkens\":5,\"completion\\u005ftokens\":1,"
            "\"tot\\u0061l_tokens\":6,\"prompt_tokens_d\\u0065tails\":{"
            "\"cached\\u005Ftokens\":2},\"\\u0063ompletion_tokens_details\":"
            "{\"reasoning\\/tokens\":4,\"reasoning_tokens\\u0000\":5}},"
            "\"us\\u00e1ge\":{\"prompt_tokens\":9}}",
      .has_usage = 1, .prompt = 5, .completion = 1, .total = 6, .cached = 2,
      .fields = P | C | T | K, .model = "qwen-turbo", .finish = 1 },

    { .name = "long member names do not match",
      .in = "{\"usageusageusageusageusageusageusageusage\":{"
            "\"prompt_tokens\":1},\"prompt_tokens_prompt_tokens_prompt_tok"
            "ens\":2,\"usage\":{\"completion_tokens_details_and_more_and_mo"
            "re\":{\"reasoning_tokens\":3},\"total_tokens\":4}}",
      .has_usage = 1, .total = 4, .fields = T, .finish = 1 },

    { .name = "huge, negative and fractional counts",
      .in = "{\"usage\":{\"prompt_tokens\":9007199254740992,"
            "\"completion_tokens\":9007199254740993,"
            "\"total_tokens\":123456789012345678901234567890,"
            "\"prompt_tokens_details\":{\"cached_tokens\":-5},"
            "\"completion_tokens_details\":{\"reasoning_tokens\":12.000}}}",
      .has_usage = 1, .prompt = 9007199254740992ULL, .reasoning = 12,
      .fields = P | R, .finish = 1 },

    { .name = "counts that are not integers",
      .in = "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":1e2,"
            "\"total_tokens\":\"30\",\"prompt_tokens_details\":{"
            "\"cached_tokens\":-0},\"completion_tokens_details\":{"
            "\"reasoning_tokens\":true}}}",
      .has_usage = 1, .finish = 1 },

    { .name = "zero counts, a repeated member, a later usage",
      .in = "{\"usage\":{\"prompt_tokens\":100,\"total_tokens\":100,"
            "\"completion_tokens\":50},\"usage\":{\"prompt_tokens\":0,"
            "\"prompt_tokens\":8,\"completion_tokens\":0,"
            "\"completion_tokens\":2.5,\"total_tokens\":0.0}}",
      .has_usage = 1, .prompt = 8, .fields = P | C | T, .finish = 1 },

    { .name = "a repeated usage replaces the whole object",
      .in = "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
            "\"prompt_tokens_details\":{\"cached_tokens\":5},"
            "\"completion_tokens_details\":{\"reasoning_tokens\":6}},"
            "\"usage\":{\"prompt_tokens\":3,\"total_tokens\":4},"
            "\"usage\":null,\"usage\":[]}",
      .has_usage = 1, .prompt = 3, .total = 4, .fields = P | T,
      .finish = 1 },

    { .name = "model name with escapes",
      .in = "{\"model\":\"qwen\\u002dmax\\/v\\\"1\\\"\\t\\u00e9\\ud83d\\ude00"
            "\\ud83dx\\udc00\\\\\\ud83d\\uD83D\\uDE00\\ud83d\",\"usage\":{"
            "\"total_tokens\":1}}",
      .has_usage = 1, .total = 1, .fields = T,
      .model = "qwen-max/v\"1\"\t\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx"
               "\xef\xbf\xbd\\\xef\xbf\xbd\xf0\x9f\x98\x80\xef\xbf\xbd",
      .finish = 1 },

    { .name = "model not a string, then a string; the last one wins",
      .in = "{\"model\":null,\"model\":\"a\",\"model\":[\"b\"],"
            "\"model\":\"qwen-long\"}",
      .model = "qwen-long", .finish = 1 },

    { .name = "an empty model",
      .in = "{\"model\":\"\"}",
      .model = "", .finish = 1 },

    { .name = "truncated JSON",
      .in = "{\"model\":\"qwen-max\",\"choices\":[],\"usage\":{"
            "\"prompt_tokens\":17,\"completion_tokens\":4,\"total_tokens\":21"
            "}",
      .finish = 0 },

    { .name = "trailing data after the JSON",
      .in = "{\"model\":\"qwen-max\",\"usage\":{\"total_tokens\":21}} {}",
      .finish = 0 },

    { .name = "invalid JSON",
      .in = "{\"model\":\"qwen-max\",\"usage\":{\"total_tokens\":21,}}",
      .finish = 0 },

    { .name = "mismatched brackets",
      .in = "{\"model\":\"qwen-max\",\"choices\":[}],\"usage\":{"
            "\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "control character in a string",
      .in = "{\"model\":\"qwen\tmax\",\"usage\":{\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "missing colon",
      .in = "{\"model\"=\"qwen-max\",\"usage\":{\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "trailing comma in an array",
      .in = "{\"model\":\"qwen-max\",\"choices\":[1,],\"usage\":{"
            "\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "a value that is a closing bracket",
      .in = "{\"model\":\"qwen-max\",\"choices\":],\"usage\":{"
            "\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "a misspelt literal",
      .in = "{\"model\":\"qwen-max\",\"x\":trUe,\"usage\":{"
            "\"total_tokens\":21}}",
      .finish = 0 },

    { .name = "a number ending in a dot",
      .in = "{\"usage\":{\"total_tokens\":21.}}",
      .finish = 0 },

    { .name = "bad escape", .in = "{\"model\":\"\\x41\"}", .finish = 0 },

    { .name = "bad literal", .in = "{\"usage\":nul}", .finish = 0 },

    { .name = "leading zero", .in = "{\"usage\":{\"total_tokens\":012}}",
      .finish = 0 },

    { .name = "leading zero, not a count",
      .in = "{\"created\":-012,\"usage\":{\"total_tokens\":12}}",
      .finish = 0 },

    { .name = "numbers that are not counts",
      .in = "{\"created\":1717000000,\"a\":[0,-0,1.25,-3e+10,4E-2,0.5e1,"
            "123456789012345678901234567890.123e456],\"usage\":{"
            "\"total_tokens\":12}}",
      .has_usage = 1, .total = 12, .fields = T, .finish = 1 },

    { .name = "empty body", .in = "", .finish = 0 },

    { .name = "white space only", .in = " \n", .finish = 0 },

    { .name = "a root that is not an object",
      .in = "[{\"usage\":{\"prompt_tokens\":1},\"model\":\"m\"}]",
      .finish = 1 },

    { .name = "a number root", .in = "  12.5e3 ", .finish = 1 },

    { .name = "a number root at the end", .in = "-0", .finish = 1 },

    /* SSE */

    { .name = "SSE with include_usage (mock)", .sse = 1,
      .in = CHUNK("qwen-plus", FIRST, "null")
            CHUNK("qwen-plus", DELTA("Hello"), "null")
            CHUNK("qwen-plus", DELTA(" world"), "null")
            CHUNK("qwen-plus", STOP, "null")
            CHUNK("qwen-plus", "[]", USAGE_17_4)
            DONE,
      .has_usage = 1, .prompt = 17, .completion = 4, .total = 21,
      .fields = P | C | T | K, .model = "qwen-plus", .events = 6,
      .evs = "....UD", .finish = 1 },

    { .name = "SSE without usage", .sse = 1,
      .in = CHUNK("qwen-turbo", FIRST, "null")
            CHUNK("qwen-turbo", DELTA("Hi"), "null")
            CHUNK("qwen-turbo", STOP, "null")
            DONE,
      .model = "qwen-turbo", .events = 4, .evs = "...D", .finish = 1 },

    { .name = "SSE with CRLF line ends", .sse = 1,
      .in = "data: {\"model\":\"qwen-plus\",\"choices\":[{\"delta\":{"
            "\"content\":\"Hi\"}}],\"usage\":null}\r\n\r\n"
            "data: {\"model\":\"qwen-plus\",\"choices\":[],\"usage\":{"
            "\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}"
            "}\r\n\r\n"
            "data: [DONE]\r\n\r\n",
      .has_usage = 1, .prompt = 5, .completion = 1, .total = 6,
      .fields = P | C | T, .model = "qwen-plus", .events = 3,
      .evs = ".UD", .finish = 1 },

    { .name = "SSE with lone CR line ends", .sse = 1,
      .in = "data: {\"model\":\"m\",\"choices\":[{}]}\r\r"
            "data:{\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\r\r"
            "data: [DONE]\r\r",
      .has_usage = 1, .prompt = 5, .fields = P, .model = "m", .events = 3,
      .evs = ".Ud", .finish = 1 },

    { .name = "SSE with mixed line ends", .sse = 1,
      .in = "data: {\"model\":\"m\",\r\ndata: \"choices\":[{}]}\n\r\n"
            "data:{\"choices\":[],\r"
            "data:\"usage\":{\"prompt_tokens\":5}}\n\r"
            "\r\n\n\r"
            "data: [DONE]\n\r",
      .has_usage = 1, .prompt = 5, .fields = P, .model = "m", .events = 3,
      .evs = ".Ud", .finish = 1 },

    { .name = "SSE data: without the space", .sse = 1,
      .in = "data:{\"model\":\"qwen-max\",\"choices\":[{\"delta\":{}}],"
            "\"usage\":null}\n\n"
            "data:{\"choices\":[],\"usage\":" USAGE_17_4 "}\n\n"
            "data:[DONE]\n\n",
      .has_usage = 1, .prompt = 17, .completion = 4, .total = 21,
      .fields = P | C | T | K, .model = "qwen-max", .events = 3,
      .evs = ".UD", .finish = 1 },

    { .name = "SSE data: with two spaces keeps one", .sse = 1,
      .in = "data:  {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\n"
            "data:  [DONE]\n\n",
      .has_usage = 1, .prompt = 5, .fields = P, .events = 2, .evs = "U.",
      .finish = 0 },

    { .name = "SSE comments, event:, id:, retry: and other lines", .sse = 1,
      .in = ": connected\n\n"
            ":\n"
            "event: message\n"
            "id: 1\n"
            "retry: 3000\n"
            "data: {\"model\":\"qwen-plus\",\"choices\":[{}],\"usage\":null}"
            "\n\n"
            "event: ping\n\n"
            ": keep-alive\n"
            "Data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n"
            "data : {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}\n"
            "dat: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n"
            "database: {\"choices\":[],\"usage\":{\"prompt_tokens\":4}}\n"
            "event: usage\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n"
            ": between\n"
            "id\n"
            "\n"
            "data: [DONE]\n\n",
      .has_usage = 1, .prompt = 5, .fields = P, .model = "qwen-plus",
      .events = 3, .evs = "...UD", .finish = 1 },

    { .name = "SSE stray blank lines", .sse = 1,
      .in = "\n\r\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\n"
            "\n\n\n"
            "data: [DONE]\n\n\n",
      .has_usage = 1, .prompt = 5, .fields = P, .events = 2, .evs = "UD",
      .finish = 1 },

    { .name = "SSE thinking model: cached and reasoning tokens", .sse = 1,
      .in = "data: {\"model\":\"qwen3-235b-a22b\",\"choices\":[{\"delta\":{"
            "\"content\":null,\"reasoning_content\":\"Let me\"}}],"
            "\"usage\":null}\n\n"
            "data: {\"model\":\"qwen3-235b-a22b\",\"choices\":[{\"delta\":{"
            "\"content\":\"4\"}}],\"usage\":null}\n\n"
            "data: {\"model\":\"qwen3-235b-a22b\",\"choices\":[],\"usage\":{"
            "\"prompt_tokens\":3019,\"completion_tokens\":104,"
            "\"total_tokens\":3123,\"prompt_tokens_details\":{"
            "\"cached_tokens\":2048},\"completion_tokens_details\":{"
            "\"reasoning_tokens\":90}}}\n\n"
            "data: [DONE]\n\n",
      .has_usage = 1, .prompt = 3019, .completion = 104, .total = 3123,
      .cached = 2048, .reasoning = 90, .fields = P | C | T | K | R,
      .model = "qwen3-235b-a22b", .events = 4, .evs = "..UD", .finish = 1 },

    { .name = "SSE completion_tokens_details null", .sse = 1,
      .in = "data: {\"model\":\"qwen-mt-plus\",\"choices\":[],\"usage\":{"
            "\"prompt_tokens\":40,\"completion_tokens\":12,"
            "\"total_tokens\":52,\"completion_tokens_details\":null}}\n\n"
            DONE,
      .has_usage = 1, .prompt = 40, .completion = 12, .total = 52,
      .fields = P | C | T, .model = "qwen-mt-plus", .events = 2,
      .evs = "UD", .finish = 1 },

    { .name = "SSE usage nested or in strings is ignored", .sse = 1,
      .in = "data: {\"model\":\"m\",\"choices\":[],\"x\":{\"usage\":{"
            "\"prompt_tokens\":1}}}\n\n"
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{"
            "\"arguments\":\"{\\\"usage\\\":{\\\"prompt_tokens\\\":2}}\"}}]}"
            ",\"usage\":{\"prompt_tokens\":3}}],\"usage\":null}\n\n"
            "data: {\"choices\":[],\"s\":\"\\\"usage\\\":{}\",\"usage\":null}"
            "\n\n"
            DONE,
      .model = "m", .events = 4, .evs = "...D", .finish = 1 },

    { .name = "SSE usage_only needs both an empty choices and usage",
      .sse = 1,
      .in = "data: {\"choices\":[{}],\"usage\":{\"prompt_tokens\":1}}\n\n"
            "data: {\"usage\":{\"prompt_tokens\":2}}\n\n"
            "data: {\"choices\":[],\"usage\":null}\n\n"
            "data: {\"choices\":null,\"usage\":{\"prompt_tokens\":3}}\n\n"
            "data: {\"choices\":{},\"usage\":{\"prompt_tokens\":4}}\n\n"
            "data: {\"choices\":[],\"choices\":[1],\"usage\":{}}\n\n"
            "data: {\"choices\":[ \t ],\"usage\":{}}\n\n"
            "data: {\"usage\":{\"prompt_tokens\":6},\"choices\":[],"
            "\"choices\":[]}\n\n"
            "data: [{\"choices\":[],\"usage\":{\"prompt_tokens\":7}}]\n\n"
            "data: {\"choices\":[{}],\"choices\":[],\"usage\":{}}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8},"
            "\"choices\":[[]]}\n\n"
            "data: {\"choices\":[],\"choices\":null,\"usage\":{"
            "\"prompt_tokens\":9}}\n\n",
      .has_usage = 1, .prompt = 9, .fields = P, .events = 12,
      .evs = "......UU....", .finish = 0 },

    { .name = "SSE usage null does not erase, a later usage replaces",
      .sse = 1,
      .in = "data: {\"model\":\"first\",\"choices\":[{}],\"usage\":{"
            "\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,"
            "\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n"
            "data: {\"model\":\"second\",\"choices\":[{}],\"usage\":null}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
            "\"completion_tokens\":4,\"total_tokens\":7}}\n\n"
            "data: {\"choices\":[{}],\"usage\":null}\n\n"
            DONE,
      .has_usage = 1, .prompt = 3, .completion = 4, .total = 7,
      .fields = P | C | T, .model = "first", .events = 5, .evs = "..U.D",
      .finish = 1 },

    { .name = "SSE the first model that is valid is kept", .sse = 1,
      .in = "data: {\"choices\":[{}]}\n\n"
            "data: {\"model\":\"broken\",\"choices\":[{}],}\n\n"
            "data: {\"model\":\"qwen-vl-max\\u0021\",\"choices\":[{}]}\n\n"
            "data: {\"model\":\"other\",\"choices\":[{}]}\n\n",
      .model = "qwen-vl-max!", .events = 4, .evs = "....", .finish = 0 },

    { .name = "SSE truncated stream, no [DONE]", .sse = 1,
      .in = CHUNK("qwen-plus", FIRST, "null")
            CHUNK("qwen-plus", DELTA("Hel"), "null")
            "data: {\"id\":\"chatcmpl-7f3a\",\"object\":\"chat.completion.chu",
      .model = "qwen-plus", .events = 3, .evs = "..,", .finish = 0 },

    { .name = "SSE truncated after the usage chunk's line", .sse = 1,
      .in = CHUNK("qwen-plus", STOP, "null")
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
            "\"total_tokens\":9}}\n",
      .has_usage = 1, .prompt = 9, .total = 9, .fields = P | T,
      .model = "qwen-plus", .events = 2, .evs = ".u", .finish = 0 },

    { .name = "SSE truncated inside the usage chunk", .sse = 1,
      .in = CHUNK("qwen-plus", STOP, "null")
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
            "\"total_tokens\":9}",
      .model = "qwen-plus", .events = 2, .evs = ".,", .finish = 0 },

    { .name = "SSE [DONE] without its blank line", .sse = 1,
      .in = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\n"
            "data: [DONE]",
      .has_usage = 1, .prompt = 5, .fields = P, .events = 2, .evs = "Ud",
      .finish = 1 },

    { .name = "SSE invalid JSON in one event, a valid one next", .sse = 1,
      .in = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5},bad}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}} x\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}{}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"m\":\"x\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":6,"
            "\"total_tokens\":6}}\n\n"
            DONE,
      .has_usage = 1, .prompt = 6, .total = 6, .fields = P | T,
      .events = 7, .evs = ".....UD", .finish = 1 },

    { .name = "SSE event split over several data lines", .sse = 1,
      .in = "data: {\"model\":\n"
            "data: \"qwen-max\",\"choices\":[\n"
            "data:],\"usage\":\n"
            "data\n"
            "data: {\"prompt_tokens\":4,\"total_tokens\"\n"
            "data: :4}}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}, \"s\":\"a\n"
            "data: b\"}\n\n"
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,"
            "\"total_tokens\":1\n"
            "data: 2}}\n\n"
            "data: [DO\n"
            "data: NE]\n\n"
            "data: [DONE]\n"
            "data: {}\n\n",
      .has_usage = 1, .prompt = 4, .total = 4, .fields = P | T,
      .model = "qwen-max", .events = 5, .evs = "U...D", .finish = 1 },

    { .name = "SSE events that are not objects", .sse = 1,
      .in = "data: [1,2]\n\ndata: 5\n\ndata: \"usage\"\n\ndata: null\n\n"
            "data:\n\ndata\n\ndata: -\n\ndata: 12\n\n",
      .events = 8, .evs = "........", .finish = 0 },

    { .name = "SSE [DONE] variants", .sse = 1,
      .in = "data: [DONE] \n\n"
            "data: [DONE]x\n\n"
            "data: [DON\n\n"
            "data: [done]\n\n"
            "data: \n\n"
            "data: [DONE]\n\n",
      .events = 6, .evs = "DD...D", .finish = 1 },

    { .name = "SSE events after [DONE] still count", .sse = 1,
      .in = DONE
            "data: {\"model\":\"late\",\"choices\":[],\"usage\":{"
            "\"total_tokens\":3}}\n\n",
      .has_usage = 1, .total = 3, .fields = T, .model = "late", .events = 2,
      .evs = "DU", .finish = 1 },

    { .name = "SSE huge counts", .sse = 1,
      .in = "data: {\"choices\":[],\"usage\":{"
            "\"prompt_tokens\":18446744073709551616,"
            "\"completion_tokens\":9007199254740992,"
            "\"total_tokens\":99999999999999999999999999999999999999999999,"
            "\"prompt_tokens_details\":{\"cached_tokens\":1.0e0},"
            "\"completion_tokens_details\":{\"reasoning_tokens\":7.0}}}\n\n",
      .has_usage = 1, .completion = 9007199254740992ULL, .reasoning = 7,
      .fields = C | R, .events = 1, .evs = "U", .finish = 0 },

    { .name = "SSE empty body", .sse = 1, .in = "", .finish = 0 },

    { .name = "SSE comment only, unterminated", .sse = 1, .in = ": hi",
      .evs = ",", .finish = 0 },

    { .name = "SSE a blank line ending in CR at the very end", .sse = 1,
      .in = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\r",
      .has_usage = 1, .prompt = 5, .fields = P, .events = 1, .evs = "u",
      .finish = 0 },

    { .name = "SSE a NUL byte in a data line", .sse = 1,
      .in = NUL_CASE, .len = sizeof(NUL_CASE) - 1,
      .has_usage = 1, .prompt = 6, .fields = P, .events = 2, .evs = ".U",
      .finish = 0 },
};


/* cases built at run time */

static char *
build_deep(size_t depth, int with_strings)
{
    size_t   i, n;
    char    *b, *p;

    n = 2 * depth * 32 + 512;
    b = malloc(n);
    if (b == NULL) {
        return NULL;
    }

    p = b;
    p += sprintf(p, "{\"model\":\"deep\",\"choices\":[");

    for (i = 0; i < depth; i++) {
        if (with_strings && i % 3 == 0) {
            p += sprintf(p, "{\"a\\\"]}\":\"[{\\\\\",\"usage\":");

        } else {
            *p++ = (i % 2) ? '[' : '{';

            if (i % 2 == 0) {
                p += sprintf(p, "\"k\":");
            }
        }
    }

    p += sprintf(p, "{\"usage\":{\"prompt_tokens\":1}}");

    for (i = depth; i-- > 0; ) {
        if (with_strings && i % 3 == 0) {
            *p++ = '}';

        } else {
            *p++ = (i % 2) ? ']' : '}';
        }
    }

    p += sprintf(p, "],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,"
                    "\"total_tokens\":5}}");
    *p = '\0';

    return b;
}


static void
check_built(void)
{
    size_t    i, n;
    char     *b, *p, model[400];
    tcase_t   tc;

    /* nesting around and past the stack's depth */

    {
        static const size_t  depths[] = { 1, 61, 62, 63, 64, 65, 66, 200,
                                           2000 };

        for (i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
            b = build_deep(depths[i], (int) (i & 1));
            if (b == NULL) {
                ok(0, "deep", "out of memory");
                continue;
            }

            memset(&tc, 0, sizeof(tcase_t));
            snprintf(model, sizeof(model), "nested %zu deep%s", depths[i],
                     (i & 1) ? " with strings" : "");
            tc.name = model;
            tc.in = b;
            tc.has_usage = 1;
            tc.prompt = 2;
            tc.completion = 3;
            tc.total = 5;
            tc.fields = P | C | T;
            tc.model = "deep";
            tc.finish = 1;
            tc.flags = (depths[i] > 500) ? NO_EVERY : 0;

            check_case(&tc);
            free(b);
        }
    }

    /*
     * At level 64 (the last one the stack holds; the root is level 1)
     * an array holds a deeper object, then a number, then ends: with '}'
     * it is invalid.
     */

    for (i = 0; i < 2; i++) {
        b = malloc(512);
        if (b == NULL) {
            continue;
        }

        p = b;
        p += sprintf(p, "{\"usage\":{\"total_tokens\":1},\"x\":");
        memset(p, '[', 62);
        p += 62;
        p += sprintf(p, "[{\"y\":[\"]\"]},1%c", i ? '}' : ']');
        memset(p, ']', 62);
        p += 62;
        sprintf(p, "}");

        memset(&tc, 0, sizeof(tcase_t));
        tc.name = i ? "a mismatch at level 64, after deeper levels"
                    : "level 64 goes on after deeper levels";
        tc.in = b;
        tc.has_usage = !i;
        tc.total = !i;
        tc.fields = i ? 0 : T;
        tc.finish = !i;

        check_case(&tc);
        free(b);
    }

    /* a million levels: nothing overflows, and it is still valid */

    n = 1000000;
    b = malloc(2 * n + 128);

    if (b != NULL) {
        p = b;
        p += sprintf(p, "{\"choices\":");
        memset(p, '[', n);
        p += n;
        memset(p, ']', n);
        p += n;
        sprintf(p, ",\"usage\":{\"total_tokens\":5}}");

        memset(&tc, 0, sizeof(tcase_t));
        tc.name = "a million levels";
        tc.in = b;
        tc.has_usage = 1;
        tc.total = 5;
        tc.fields = T;
        tc.finish = 1;
        tc.flags = NO_EVERY;

        check_case(&tc);

        /* one bracket short: incomplete */

        b[11 + n] = ' ';
        tc.name = "a million levels, one left open";
        tc.has_usage = 0;
        tc.total = 0;
        tc.fields = 0;
        tc.finish = 0;

        check_case(&tc);

        /* a mismatch deep down is not seen, one near the top is */

        b[11 + n] = ']';
        b[11 + n + n - 2] = '}';
        tc.name = "a million levels, mismatch near the top";
        check_case(&tc);

        b[11 + n + n - 2] = ']';
        b[11 + n + 10] = '}';
        tc.name = "a million levels, mismatch deep down (not checked)";
        tc.has_usage = 1;
        tc.total = 5;
        tc.fields = T;
        tc.finish = 1;
        check_case(&tc);

        free(b);
    }

    /* model names of 255, 256, 257 and 300 bytes, in both modes */

    for (i = 0; i < 8; i++) {
        static const size_t  lens[] = { 255, 256, 257, 300 };
        static char          in[1024], want[400], esc[512];

        n = lens[i % 4];
        memset(want, 'q', n);
        want[n] = '\0';

        if (i < 4) {
            snprintf(in, sizeof(in), "{\"model\":\"%s\",\"usage\":{"
                     "\"total_tokens\":1}}", want);

        } else {
            /* an escape where the cut falls */
            want[250] = 'A';
            snprintf(esc, sizeof(esc), "%.250s\\u0041%s", want,
                     want + 251);
            snprintf(in, sizeof(in), "data: {\"model\":\"%s\",\"usage\":{"
                     "\"total_tokens\":1}}\n\n", esc);
        }

        memset(&tc, 0, sizeof(tcase_t));
        snprintf(model, sizeof(model), "a model of %zu bytes%s", n,
                 i < 4 ? "" : " (SSE)");
        tc.name = model;
        tc.in = in;
        tc.sse = (i >= 4);
        tc.has_usage = 1;
        tc.total = 1;
        tc.fields = T;
        tc.model = want;
        tc.model_len = (n > 256) ? 256 : n;
        tc.model_overflow = (n > 256);
        tc.finish = (i < 4);
        tc.events = (i >= 4);
        tc.evs = (i >= 4) ? "." : "";

        check_case(&tc);
    }

    /* a model cut where a character would not fit whole */

    for (i = 0; i < 3; i++) {
        static const char  *tail[] = { "\\u00e9x", "\xc3\xa9x",
                                       "\xf0\x9f\x98\x80" };
        static char         in[1024], want[400];

        n = (i == 2) ? 254 : 255;
        memset(want, 'q', n);
        want[n] = '\0';

        snprintf(in, sizeof(in), "{\"model\":\"%s%s\"}", want, tail[i]);

        memset(&tc, 0, sizeof(tcase_t));
        tc.name = (i == 0) ? "a model cut before an escaped character"
                  : (i == 1) ? "a model cut before a 2-byte character"
                  : "a model cut before a 4-byte character";
        tc.in = in;
        tc.model = want;
        tc.model_overflow = 1;
        tc.finish = 1;

        check_case(&tc);
    }

    /* a long stream: memory does not grow, the last usage wins */

    {
        size_t   cap;
        char    *s;

        cap = 300 * 256 + 1024;
        s = malloc(cap);

        if (s != NULL) {
            p = s;

            for (i = 0; i < 300; i++) {
                p += sprintf(p, "data: {\"model\":\"m%zu\",\"choices\":"
                             "[{\"delta\":{\"content\":\"w%zu\"}}],"
                             "\"usage\":{\"prompt_tokens\":%zu}}\n\n",
                             i, i, i);
            }

            p += sprintf(p, "%s", DONE);

            memset(&tc, 0, sizeof(tcase_t));
            tc.name = "a stream of 300 chunks with usage in each";
            tc.sse = 1;
            tc.in = s;
            tc.has_usage = 1;
            tc.prompt = 299;
            tc.fields = P;
            tc.model = "m0";
            tc.events = 301;
            tc.finish = 1;
            tc.flags = NO_EVERY;

            {
                static char  evs[302];

                memset(evs, '.', 300);
                evs[300] = 'D';
                evs[301] = '\0';
                tc.evs = evs;
            }

            check_case(&tc);
            free(s);
        }
    }
}


/*
 * The stream's fast paths (a whole event read in place, an event cut by
 * a piece's end kept in the carry) must read every JSON case as the
 * byte-wise scanner does: each one-line case is made an event, between a
 * chunk that gives the model and [DONE], and scanned every way (whole,
 * the fast path; one byte at a time, the byte-wise scanner).  Then events
 * around the carry's size.
 */

static void
check_fast(void)
{
    int            bad;
    char          *b, *p, name[128];
    size_t         i, j, len, n;
    result_t       r;
    const char    *in;

    static const char  *forms[] = { "data: %s\n\n", "data:%s\n\n",
                                    "data: %s \t\n\n" };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        in = cases[i].in;
        len = cases[i].len ? cases[i].len : strlen(in);

        if (cases[i].sse || memchr(in, '\n', len) || memchr(in, '\r', len)
            || memchr(in, '\0', len))
        {
            continue;
        }

        b = malloc(len + 256);
        if (b == NULL) {
            ok(0, cases[i].name, "out of memory");
            return;
        }

        for (j = 0; j < sizeof(forms) / sizeof(forms[0]); j++) {
            p = b;
            p += sprintf(p, "%s", j == 1 ? "" : "data: {\"model\":\"m\"}\n\n");
            p += sprintf(p, forms[j], in);
            p += sprintf(p, "%s", DONE);

            bad = (int) split_every_way((unsigned char *) b, (size_t) (p - b),
                                        1, 1, 4, 0, &r);

            snprintf(name, sizeof(name), "%s, as an event (%zu)",
                     cases[i].name, j);
            ok(!bad && r.bad == NULL, name,
               "the fast path reads it as the byte-wise scanner");
        }

        free(b);
    }

    /* events just under, at and over the carry's size, cut everywhere */

    for (n = QWEN_USAGE_CARRY_MAX - 100; n < QWEN_USAGE_CARRY_MAX + 60;
         n += 7)
    {
        b = malloc(4 * n + 512);
        if (b == NULL) {
            ok(0, "carry", "out of memory");
            return;
        }

        p = b;
        p += sprintf(p, "data: {\"model\":\"m\",\"choices\":[{\"delta\":"
                        "{\"content\":\"");
        memset(p, 'x', n);
        p += n;
        p += sprintf(p, "\"}}],\"usage\":null}\n\ndata: {\"choices\":[],"
                        "\"note\":\"");
        memset(p, 'y', n / 2);
        p += n / 2;
        p += sprintf(p, "\",\"usage\":{\"prompt_tokens\":%zu}}\n\n", n);
        p += sprintf(p, "%s", DONE);

        bad = (int) split_every_way((unsigned char *) b, (size_t) (p - b), 1,
                                    1, 4, 0, &r);

        snprintf(name, sizeof(name), "events of %zu bytes around the carry",
                 n);
        ok(!bad && r.bad == NULL && r.has_usage && r.prompt == n
           && r.events == 3 && strcmp(r.evs, ".UD") == 0, name,
           "the same however cut");

        free(b);
    }
}


/*
 * maybe_usage_only() lets an event through early when it cannot be
 * usage_only, and never for the usage chunk.
 */

static void
check_maybe(void)
{
    static const char   in[] =
        CHUNK("qwen-plus", FIRST, "null")
        CHUNK("qwen-plus", STOP, "null")
        CHUNK("qwen-plus", "[]", USAGE_17_4)
        ": comment\n\n"
        DONE
        "data: {\"choices\":[]}\n\n";

    size_t              i, n, ev, start, at[8];
    qwen_usage_scan_t   s;

    qwen_usage_scan_init(&s, 1);
    ok(qwen_usage_scan_maybe_usage_only(&s), "maybe_usage_only",
       "1 before anything");

    ev = 0;
    start = 0;

    for (i = 0; i < 8; i++) {
        at[i] = (size_t) -1;
    }

    for (i = 0; i < sizeof(in) - 1 && ev < 8; i++) {
        n = qwen_usage_scan(&s, (const unsigned char *) in + i, 1);

        if (n != 1) {
            ok(0, "maybe_usage_only", "a byte was not consumed");
            return;
        }

        if (s.event_ended) {
            ev++;
            start = i + 1;
            continue;
        }

        if (at[ev] == (size_t) -1 && !qwen_usage_scan_maybe_usage_only(&s))
        {
            at[ev] = i - start;
        }
    }

    ok(ev == 6, "maybe_usage_only", "six events");
    ok(at[0] < 200 && at[1] < 200, "maybe_usage_only",
       "0 within 200 bytes of an ordinary chunk's start");
    ok(at[2] == (size_t) -1, "maybe_usage_only",
       "never 0 for the usage chunk");
    ok(at[3] == (size_t) -1, "maybe_usage_only", "never 0 for a comment");
    ok(at[4] < 10, "maybe_usage_only", "0 early for [DONE]");
    ok(at[5] == strlen("data: {\"choices\":[]"), "maybe_usage_only",
       "0 once the JSON ends without usage");

    qwen_usage_scan_init(&s, 0);
    ok(!qwen_usage_scan_maybe_usage_only(&s), "maybe_usage_only",
       "0 in JSON mode");
}


/* the return values and the fields of one call */

static void
check_api(void)
{
    static const char   in[] =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\n"
        "data: [DONE]\n\n"
        ": tail\n";

    size_t              n, first;
    qwen_usage_scan_t   s;

    first = strlen("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}"
                   "\n\n");

    qwen_usage_scan_init(&s, 1);

    n = qwen_usage_scan(&s, (const unsigned char *) in, sizeof(in) - 1);
    ok(n == first && s.event_ended && s.event_usage_only && !s.event_done
       && s.has_usage && s.prompt_tokens == 5 && s.events == 1,
       "api", "stops after the usage event");

    n += qwen_usage_scan(&s, (const unsigned char *) in + n,
                         sizeof(in) - 1 - n);
    ok(n == first + 14 && s.event_ended && !s.event_usage_only
       && s.event_done && s.done_seen && s.events == 2,
       "api", "stops after [DONE]");

    n += qwen_usage_scan(&s, (const unsigned char *) in + n,
                         sizeof(in) - 1 - n);
    ok(n == sizeof(in) - 1 && !s.event_ended, "api",
       "consumes the rest");

    ok(qwen_usage_scan_finish(&s) == 1 && s.event_ended
       && !s.event_usage_only && !s.event_done && s.events == 2,
       "api", "finish ends the comment block");

    /* a lone CR: the event ends when the next byte comes */

    qwen_usage_scan_init(&s, 1);
    n = qwen_usage_scan(&s, (const unsigned char *) "data: 1\r\r", 9);
    ok(n == 9 && !s.event_ended, "api", "a blank line's CR waits");
    n = qwen_usage_scan(&s, (const unsigned char *) "data: 2\n\n", 9);
    ok(n == 0 && s.event_ended && s.events == 1, "api",
       "the next byte ends the event, unconsumed");
    n = qwen_usage_scan(&s, (const unsigned char *) "data: 2\n\n", 9);
    ok(n == 9 && s.event_ended && s.events == 2, "api",
       "then the next event");

    qwen_usage_scan_init(&s, 1);
    n = qwen_usage_scan(&s, (const unsigned char *) "data: 1\r\r", 9);
    n = qwen_usage_scan(&s, (const unsigned char *) "\ndata: 2\n\n", 10);
    ok(n == 1 && s.event_ended && s.events == 1, "api",
       "the LF after it is part of it");

    /* JSON mode consumes everything and ends no event */

    qwen_usage_scan_init(&s, 0);
    n = qwen_usage_scan(&s, (const unsigned char *) in, sizeof(in) - 1);
    ok(n == sizeof(in) - 1 && !s.event_ended && !s.has_usage, "api",
       "JSON mode consumes everything");
    ok(qwen_usage_scan_finish(&s) == 0 && !s.complete, "api",
       "and SSE is not JSON");

    /* JSON mode takes the results at finish */

    qwen_usage_scan_init(&s, 0);
    qwen_usage_scan(&s, (const unsigned char *) "{\"usage\":{"
                    "\"total_tokens\":3}}", 28);
    ok(!s.has_usage, "api", "JSON results wait for finish");
    ok(qwen_usage_scan_finish(&s) == 1 && s.complete && s.has_usage
       && s.total_tokens == 3, "api", "finish takes them");
    ok(qwen_usage_scan_finish(&s) == 1 && s.total_tokens == 3, "api",
       "finish twice is harmless");
}


int
main(void)
{
    size_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i]);
    }

    check_built();
    check_fast();
    check_maybe();
    check_api();

    /* the fast path must have been taken, or (e) proved nothing */
    ok(skims > 100, "skim", "the stream fast path was taken");

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_mutations(&cases[i], cases[i].len == 0
                                   && strlen(cases[i].in) > 600 ? 60 : 120);
    }

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
