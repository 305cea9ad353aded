
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * libFuzzer target for the request-body scanner (src/ngx_http_qwen_json.c)
 * and the body edits the gateway makes with its offsets: the plan and the
 * splice of src/ngx_http_qwen_edit.c, the code nginx runs.  See
 * fuzz/README.md.
 *
 * Input layout:
 *
 *   byte 0   low 4 bits: how many cuts split the body (0 to 15);
 *            high 4 bits: length of the new model name, 3 per step (0-42),
 *            or 15: the name the body has
 *   byte 1   seed of the cut positions and of where the name is taken;
 *            high bit set: inject_usage off
 *   rest     the request body
 *
 * Every invariant that fails calls __builtin_trap() after printing which
 * one.  -DFUZZ_REPORT prints the inputs cJSON takes and the scanner does
 * not, and why (see fuzz/README.md).
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ngx_http_qwen_json.h"
#include "ngx_http_qwen_edit.h"

#define FUZZ_NAME  "request_fuzz"
#include "fuzz_common.h"


/* ------------------------------------------------------------------ */
/* scanning, whole or in pieces                                        */
/* ------------------------------------------------------------------ */


/* scans body[0..len) cut at cuts[0..ncuts) (ascending); each piece is
 * copied to a heap buffer of its exact size so ASan sees any overread */

static void
scan_pieces(qwen_json_scan_t *s, const unsigned char *body, size_t len,
    const size_t *cuts, size_t ncuts)
{
    int             rc, failed;
    size_t          i, from, to;
    unsigned char  *buf;

    qwen_json_scan_init(s);
    failed = 0;

    for (i = 0; i <= ncuts; i++) {
        from = (i == 0) ? 0 : cuts[i - 1];
        to = (i == ncuts) ? len : cuts[i];

        buf = malloc(to - from ? to - from : 1);
        CHECK(buf != NULL);
        memcpy(buf, body + from, to - from);

        rc = qwen_json_scan(s, buf, to - from);

        /* once it failed, it keeps failing; a failure sets error */
        CHECK(rc == 0 || rc == -1);
        CHECK(!failed || rc == -1);
        CHECK((rc == -1) == (s->error != NULL));
        failed = (rc == -1);

        free(buf);
    }

    rc = qwen_json_scan_finish(s);
    CHECK((rc == 0) == (s->error == NULL));
}


static void
scan_bytes(qwen_json_scan_t *s, const unsigned char *body, size_t len)
{
    size_t          i;
    unsigned char  *one;

    one = malloc(1);
    CHECK(one != NULL);

    qwen_json_scan_init(s);

    for (i = 0; i < len; i++) {
        one[0] = body[i];

        if (qwen_json_scan(s, one, 1) != 0) {
            break;
        }

        /* an empty piece changes nothing */
        CHECK(qwen_json_scan(s, one, 0) == 0);
    }

    free(one);

    (void) qwen_json_scan_finish(s);
}


static void
same_results(const qwen_json_scan_t *a, const qwen_json_scan_t *b)
{
    int  i;

    CHECK((a->error == NULL) == (b->error == NULL));

    if (a->error) {
        CHECK(strcmp(a->error, b->error) == 0);
        CHECK(a->error_offset == b->error_offset);
    }

    CHECK(a->root_type == b->root_type);
    CHECK(a->root_end == b->root_end);
    CHECK(a->root_members == b->root_members);
    CHECK(a->stream_options_members == b->stream_options_members);
    CHECK(a->model_len == b->model_len);
    CHECK(a->model_overflow == b->model_overflow);
    CHECK(a->model_len <= QWEN_JSON_MODEL_MAX);
    CHECK(memcmp(a->model, b->model, a->model_len) == 0);

    for (i = 0; i < QWEN_FIELD_N; i++) {
        CHECK(a->fields[i].start == b->fields[i].start);
        CHECK(a->fields[i].end == b->fields[i].end);
        CHECK(a->fields[i].type == b->fields[i].type);
        CHECK(a->fields[i].count == b->fields[i].count);
    }
}


/* ------------------------------------------------------------------ */
/* an independent strict RFC 8259 validator, the reference             */
/* ------------------------------------------------------------------ */

/*
 * It accepts exactly what the scanner must accept: RFC 8259 JSON, no
 * UTF-8 check, lone surrogate escapes allowed, nesting up to 128.  It
 * reports the offset of the first byte after which the input can no
 * longer be the start of a valid document (the length if it ends too
 * soon), which is where the scanner must report its error, and why, in
 * terms of what cJSON would think of it.
 */

enum {
    R_OK = 0,
    R_OTHER,           /* cJSON rejects it too */
    R_CTRL_STRING,     /* a raw control character in a string */
    R_CTRL_WS,         /* a control character between tokens */
    R_NUMBER,          /* a number RFC 8259 does not allow, strtod does */
    R_BOM,             /* a UTF-8 byte order mark first */
    R_HEX,             /* a non-hex digit in a \u escape */
    R_DEPTH            /* nesting deeper than QWEN_JSON_MAX_DEPTH */
};


#ifdef FUZZ_REPORT
static const char  *ref_reasons[] = {
    "ok", "other", "control character in a string",
    "control character between tokens", "number form", "byte order mark",
    "non-hex digit in \\u", "nesting"
};
#endif


typedef struct {
    const unsigned char  *p;
    size_t                len;
    size_t                pos;
    size_t                err;
    int                   reason;
    size_t                number_end;   /* just past the last number */
    unsigned              max_depth;
    unsigned              lone_surrogate:1;
    unsigned              nul_escape:1;     /* a \u0000 somewhere */
} ref_t;


static int
ref_fail(ref_t *r, size_t at, int reason)
{
    unsigned char  c;

    if (r->reason == R_OK) {
        if (at < r->len && reason == R_OTHER) {
            c = r->p[at];

            if (at == r->number_end && r->number_end != 0
                && ((c >= '0' && c <= '9') || c == '.' || c == 'e'
                    || c == 'E' || c == '+' || c == '-'))
            {
                /* strtod would have taken it as part of the number */
                reason = R_NUMBER;
            }
        }

        if (at == 0 && r->len >= 3 && memcmp(r->p, "\xef\xbb\xbf", 3) == 0) {
            reason = R_BOM;
        }

        r->reason = reason;
        r->err = at;
    }

    return -1;
}


/* a failure where white space may come: cJSON skips any byte <= 0x20 */

static int
ref_fail_ws(ref_t *r)
{
    if (r->pos < r->len && r->p[r->pos] < 0x20) {
        return ref_fail(r, r->pos, R_CTRL_WS);
    }

    return ref_fail(r, r->pos, R_OTHER);
}


static void
ref_ws(ref_t *r)
{
    unsigned char  c;

    while (r->pos < r->len) {
        c = r->p[r->pos];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }

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

    r->pos++;     /* '"' */
    high = 0;     /* the previous token was a high surrogate escape */

    for ( ;; ) {
        if (r->pos == r->len) {
            return ref_fail(r, r->len, R_OTHER);
        }

        c = r->p[r->pos];

        if (c == '"') {
            r->pos++;

            if (high) {
                r->lone_surrogate = 1;
            }

            return 0;
        }

        if (c < 0x20) {
            return ref_fail(r, r->pos, R_CTRL_STRING);
        }

        if (c != '\\') {
            if (high) {
                r->lone_surrogate = 1;
                high = 0;
            }

            r->pos++;
            continue;
        }

        r->pos++;

        if (r->pos == r->len) {
            return ref_fail(r, r->len, R_OTHER);
        }

        c = r->p[r->pos];

        if (c != 'u') {
            if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
                return ref_fail(r, r->pos, R_OTHER);
            }

            if (high) {
                r->lone_surrogate = 1;
                high = 0;
            }

            r->pos++;
            continue;
        }

        r->pos++;
        cp = 0;

        for (i = 0; i < 4; i++) {
            if (r->pos == r->len) {
                return ref_fail(r, r->len, R_OTHER);
            }

            h = ref_hex(r->p[r->pos]);

            if (h < 0) {
                return ref_fail(r, r->pos, R_HEX);
            }

            cp = (cp << 4) | (unsigned) h;
            r->pos++;
        }

        if (cp == 0) {
            r->nul_escape = 1;
        }

        if (high) {
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                high = 0;
                continue;
            }

            r->lone_surrogate = 1;
            high = 0;
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
    if (r->pos == r->len) {
        return ref_fail(r, r->len, R_NUMBER);
    }

    if (r->p[r->pos] < '0' || r->p[r->pos] > '9') {
        return ref_fail(r, r->pos, R_NUMBER);
    }

    while (r->pos < r->len && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        r->pos++;
    }

    return 0;
}


static int
ref_number(ref_t *r)
{
    if (r->p[r->pos] == '-') {
        r->pos++;
    }

    if (r->pos == r->len) {
        return ref_fail(r, r->len, R_OTHER);
    }

    if (r->p[r->pos] == '0') {
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

    if (r->pos < r->len && (r->p[r->pos] == 'e' || r->p[r->pos] == 'E')) {
        r->pos++;

        if (r->pos < r->len && (r->p[r->pos] == '+' || r->p[r->pos] == '-'))
        {
            r->pos++;
        }

        if (ref_digits(r) != 0) {
            return -1;
        }
    }

    r->number_end = r->pos;

    return 0;
}


static int
ref_value(ref_t *r, unsigned depth)
{
    const char     *lit;
    unsigned char   c, close;

    ref_ws(r);

    if (r->pos == r->len) {
        return ref_fail(r, r->len, R_OTHER);
    }

    c = r->p[r->pos];

    switch (c) {

    case '{':
    case '[':

        if (depth == QWEN_JSON_MAX_DEPTH) {
            return ref_fail(r, r->pos, R_DEPTH);
        }

        if (depth + 1 > r->max_depth) {
            r->max_depth = depth + 1;
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

                if (r->pos == r->len) {
                    return ref_fail(r, r->len, R_OTHER);
                }

                if (r->p[r->pos] != '"') {
                    return ref_fail_ws(r);
                }

                if (ref_string(r) != 0) {
                    return -1;
                }

                ref_ws(r);

                if (r->pos == r->len) {
                    return ref_fail(r, r->len, R_OTHER);
                }

                if (r->p[r->pos] != ':') {
                    return ref_fail_ws(r);
                }

                r->pos++;
            }

            if (ref_value(r, depth + 1) != 0) {
                return -1;
            }

            ref_ws(r);

            if (r->pos == r->len) {
                return ref_fail(r, r->len, R_OTHER);
            }

            if (r->p[r->pos] == ',') {
                r->pos++;
                continue;
            }

            if (r->p[r->pos] == close) {
                r->pos++;
                return 0;
            }

            return ref_fail_ws(r);
        }

    case '"':
        return ref_string(r);

    case 't':
    case 'f':
    case 'n':
        lit = (c == 't') ? "true" : (c == 'f') ? "false" : "null";

        for ( /* void */ ; *lit; lit++) {
            if (r->pos == r->len) {
                return ref_fail(r, r->len, R_OTHER);
            }

            if (r->p[r->pos] != (unsigned char) *lit) {
                return ref_fail(r, r->pos, R_OTHER);
            }

            r->pos++;
        }

        return 0;

    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return ref_number(r);
        }

        return ref_fail_ws(r);
    }
}


static void
ref_validate(ref_t *r, const unsigned char *p, size_t len)
{
    memset(r, 0, sizeof(ref_t));
    r->p = p;
    r->len = len;

    if (ref_value(r, 0) != 0) {
        return;
    }

    ref_ws(r);

    if (r->pos != r->len) {
        /* cJSON is not asked to skip control characters here */
        (void) ref_fail(r, r->pos, R_OTHER);
    }
}


/*
 * The model string as the scanner must decode it: escapes undone, \u
 * escapes as UTF-8, a surrogate pair as one character, an unpaired
 * surrogate as U+FFFD.  Returns the full length; writes at most cap bytes.
 */

static void
put_cp(unsigned char *out, size_t cap, size_t *n, unsigned cp)
{
    size_t         k, i;
    unsigned char  u[4];

    if (cp < 0x80) {
        u[0] = (unsigned char) cp;
        k = 1;

    } else if (cp < 0x800) {
        u[0] = (unsigned char) (0xc0 | (cp >> 6));
        u[1] = (unsigned char) (0x80 | (cp & 0x3f));
        k = 2;

    } else if (cp < 0x10000) {
        u[0] = (unsigned char) (0xe0 | (cp >> 12));
        u[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char) (0x80 | (cp & 0x3f));
        k = 3;

    } else {
        u[0] = (unsigned char) (0xf0 | (cp >> 18));
        u[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char) (0x80 | (cp & 0x3f));
        k = 4;
    }

    for (i = 0; i < k; i++, (*n)++) {
        if (*n < cap) {
            out[*n] = u[i];
        }
    }
}


static size_t
ref_decode(const unsigned char *p, size_t len, unsigned char *out,
    size_t cap)
{
    size_t    i, n;
    unsigned  cp, high;

    n = 0;
    high = 0;

    for (i = 0; i < len; /* void */ ) {
        if (p[i] != '\\') {
            if (high) {
                put_cp(out, cap, &n, 0xfffd);
                high = 0;
            }

            if (n < cap) {
                out[n] = p[i];
            }

            n++;
            i++;
            continue;
        }

        if (p[i + 1] != 'u') {
            if (high) {
                put_cp(out, cap, &n, 0xfffd);
                high = 0;
            }

            switch (p[i + 1]) {
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            default: cp = p[i + 1]; break;
            }

            if (n < cap) {
                out[n] = (unsigned char) cp;
            }

            n++;
            i += 2;
            continue;
        }

        cp = (unsigned) (ref_hex(p[i + 2]) << 12 | ref_hex(p[i + 3]) << 8
                         | ref_hex(p[i + 4]) << 4 | ref_hex(p[i + 5]));
        i += 6;

        if (high) {
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                put_cp(out, cap, &n,
                       0x10000 + ((high - 0xd800) << 10) + (cp - 0xdc00));
                high = 0;
                continue;
            }

            put_cp(out, cap, &n, 0xfffd);
            high = 0;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            high = cp;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            put_cp(out, cap, &n, 0xfffd);

        } else {
            put_cp(out, cap, &n, cp);
        }
    }

    if (high) {
        put_cp(out, cap, &n, 0xfffd);
    }

    return n;
}


/* ------------------------------------------------------------------ */
/* cJSON helpers                                                       */
/* ------------------------------------------------------------------ */


/* parses p[0..len) as one document with nothing but JSON white space
 * after it */

static cJSON *
cjson_parse(const unsigned char *p, size_t len)
{
    char        *buf;
    cJSON       *j;
    const char  *end;

    buf = malloc(len + 1);
    CHECK(buf != NULL);
    memcpy(buf, p, len);
    buf[len] = '\0';

    end = NULL;
    j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);

    if (j != NULL) {
        CHECK(end >= buf && end <= buf + len);

        for ( /* void */ ; end < buf + len; end++) {
            if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
                cJSON_Delete(j);
                j = NULL;
                break;
            }
        }
    }

    free(buf);

    return j;
}


/* deep equality that keeps member order and duplicates (cJSON_Compare
 * looks members up by name, which duplicate names defeat) */

static int
same_tree(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xff) != (b->type & 0xff)) {
        return 0;
    }

    if ((a->string == NULL) != (b->string == NULL)
        || (a->string && strcmp(a->string, b->string) != 0))
    {
        return 0;
    }

    switch (a->type & 0xff) {

    case cJSON_Number:
        return memcmp(&a->valuedouble, &b->valuedouble, sizeof(double)) == 0;

    case cJSON_String:
        return strcmp(a->valuestring, b->valuestring) == 0;

    case cJSON_Array:
    case cJSON_Object:
        for (a = a->child, b = b->child; a && b; a = a->next, b = b->next) {
            if (!same_tree(a, b)) {
                return 0;
            }
        }

        return a == NULL && b == NULL;

    default:
        return 1;
    }
}


static unsigned
cjson_type(const cJSON *j)
{
    switch (j->type & 0xff) {
    case cJSON_Object: return QWEN_JSON_OBJECT;
    case cJSON_Array:  return QWEN_JSON_ARRAY;
    case cJSON_String: return QWEN_JSON_STRING;
    case cJSON_Number: return QWEN_JSON_NUMBER;
    case cJSON_True:   return QWEN_JSON_TRUE;
    case cJSON_False:  return QWEN_JSON_FALSE;
    case cJSON_NULL:   return QWEN_JSON_NULL;
    }

    return 99;
}


/* members of o named name: how many, and the last */

static unsigned
members(const cJSON *o, const char *name, const cJSON **last)
{
    unsigned      n;
    const cJSON  *c;

    n = 0;

    for (c = o->child; c; c = c->next) {
        if (strcmp(c->string, name) == 0) {
            n++;
            if (last) {
                *last = c;
            }
        }
    }

    return n;
}


static unsigned
children(const cJSON *o)
{
    unsigned      n;
    const cJSON  *c;

    n = 0;

    for (c = o->child; c; c = c->next) {
        n++;
    }

    return n;
}


/* the value a watched member's byte span holds is the member's value */

static void
check_span(const unsigned char *body, const qwen_json_field_t *f,
    const cJSON *member)
{
    cJSON        *v;
    const char   *keep;

    v = cjson_parse(body + f->start, (size_t) (f->end - f->start));
    CHECK(v != NULL);

    keep = member->string;
    ((cJSON *) member)->string = NULL;
    CHECK(same_tree(v, member));
    ((cJSON *) member)->string = (char *) keep;

    cJSON_Delete(v);
}


/* ------------------------------------------------------------------ */
/* the gateway's splice: the plan and the walker of                    */
/* src/ngx_http_qwen_edit.c, checked against the input's tree          */
/* ------------------------------------------------------------------ */


/* what the gateway must do about include_usage, read off cJSON's tree */

enum {
    U_NONE = 0,
    U_ADD,             /* ,"stream_options":{...} before the root's '}' */
    U_NULL,            /* null stream_options becomes {...} */
    U_FIRST,           /* "include_usage":true first in stream_options */
    U_REPLACE          /* the include_usage value becomes true */
};


/*
 * The pieces qwen_splice() emits, collected.  Each must be an edit's whole
 * text or lie in the piece of the body being fed, and they must come in
 * order: the body's bytes up to an edit, the edit's text, the body's bytes
 * from the edit's end on.
 */

typedef struct {
    unsigned char           *out;
    size_t                   len;
    size_t                   cap;
    const qwen_edit_plan_t  *plan;
    const unsigned char     *piece;      /* the piece being fed */
    size_t                   piece_len;
    int64_t                  piece_at;   /* its offset in the body */
    int64_t                  body_end;   /* the body is out up to here */
    unsigned                 made;       /* edits whose text is out */
} collect_t;


static int
collect(void *data, const unsigned char *p, size_t n)
{
    int64_t             at;
    uintptr_t           u, b;
    collect_t          *c;
    const qwen_edit_t  *e;

    c = data;

    CHECK(n > 0);
    CHECK(c->len + n <= c->cap);

    e = (c->made < c->plan->n) ? &c->plan->edits[c->made] : NULL;

    if (e != NULL && p == e->text) {
        /* the next edit's text, whole, where the edit starts */
        CHECK(n == e->len);
        CHECK(c->body_end == e->start);
        c->body_end = e->end;
        c->made++;

    } else {
        /* the body's bytes, in the piece being fed, before the next edit */
        u = (uintptr_t) p;
        b = (uintptr_t) c->piece;

        CHECK(c->piece != NULL && u >= b && u - b < c->piece_len
              && n <= c->piece_len - (u - b));

        at = c->piece_at + (int64_t) (u - b);
        CHECK(at == c->body_end);
        CHECK(e == NULL || at + (int64_t) n <= e->start);
        c->body_end = at + (int64_t) n;
    }

    memcpy(c->out + c->len, p, n);
    c->len += n;

    return 0;
}


/*
 * Splices body[0 .. len) cut at cuts[0 .. ncuts) (ascending, so maybe
 * empty pieces), or with bytes one byte at a time with an empty piece
 * after each, into c->out; every piece is in a heap buffer of its exact
 * size, so ASan sees a read past it.
 */

static void
splice_pieces(const qwen_edit_plan_t *plan, const unsigned char *body,
    size_t len, const size_t *cuts, size_t ncuts, int bytes, collect_t *c)
{
    size_t          i, n, from, to;
    qwen_splice_t   sp;
    unsigned char  *buf;

    c->len = 0;
    c->plan = plan;
    c->piece = NULL;
    c->piece_len = 0;
    c->piece_at = 0;
    c->body_end = 0;
    c->made = 0;

    qwen_splice_init(&sp, plan, collect, c);

    n = bytes ? len : ncuts + 1;

    for (i = 0; i < n; i++) {
        if (bytes) {
            from = i;
            to = i + 1;

        } else {
            from = (i == 0) ? 0 : cuts[i - 1];
            to = (i == ncuts) ? len : cuts[i];
        }

        buf = malloc(to - from ? to - from : 1);
        CHECK(buf != NULL);
        memcpy(buf, body + from, to - from);

        c->piece = buf;
        c->piece_len = to - from;
        c->piece_at = (int64_t) from;

        CHECK(qwen_splice(&sp, buf, to - from) == 0);

        if (bytes) {
            c->piece = buf + 1;
            c->piece_len = 0;
            c->piece_at = (int64_t) to;

            CHECK(qwen_splice(&sp, buf + 1, 0) == 0);
        }

        c->piece = NULL;
        free(buf);
    }

    CHECK(qwen_splice_finish(&sp) == 0);

    /* every edit made, the whole body out, the length told right */
    CHECK(c->made == plan->n);
    CHECK(c->body_end == (int64_t) len);
    CHECK(c->len == c->cap);
    CHECK(sp.out == (int64_t) c->len);
}


static void
check_splice(const unsigned char *body, size_t len, const qwen_json_scan_t *s,
    const ref_t *ref, cJSON *in, const unsigned char *name, size_t nlen,
    int inject, const size_t *cuts, size_t ncuts)
{
    int                 kept, stream, usage, client, models;
    size_t              olen, i, elen;
    char               *cname;
    cJSON              *out, *v;
    unsigned            so_n, iu_n;
    collect_t           c, c2;
    const cJSON        *so, *iu, *last;
    unsigned char      *esc;
    qwen_edit_plan_t    plan;
    qwen_json_scan_t    os;
    const qwen_edit_t        *e;
    const qwen_json_field_t  *model;

    model = &s->fields[QWEN_FIELD_MODEL];

    /*
     * The new name, escaped.  The model keeps its bytes exactly when they
     * are that and it has no escapes (a name with a quote, a backslash or
     * a control byte is written again, even the same way).
     */

    elen = qwen_json_escaped_len(name, nlen);
    esc = malloc(elen);
    CHECK(esc != NULL);
    CHECK((size_t) (qwen_json_escape(esc, name, nlen) - esc) == elen);

    kept = qwen_edit_model_kept(s, name, nlen);

    CHECK(kept == (elen == nlen + 2
                   && (size_t) (model->end - model->start) == elen
                   && memcmp(body + model->start, esc, elen) == 0));

    stream = (s->fields[QWEN_FIELD_STREAM].type == QWEN_JSON_TRUE);

    qwen_edit_plan(&plan, s, kept ? NULL : esc, kept ? 0 : elen, stream,
                   inject);

    /* the plan: sorted edits inside the body that do not overlap, one of
     * them the model's unless it is kept */

    CHECK(plan.n <= QWEN_EDIT_MAX);
    CHECK(plan.n == (unsigned) !kept + plan.usage_injected);
    CHECK(!(plan.client_usage && plan.usage_injected));
    CHECK(stream || (!plan.client_usage && !plan.usage_injected));
    CHECK(inject || !plan.usage_injected);

    olen = len;
    models = 0;

    for (i = 0; i < plan.n; i++) {
        e = &plan.edits[i];

        CHECK(e->start >= 0 && e->start <= e->end
              && (size_t) e->end <= len);
        CHECK(e->len > 0 && e->text != NULL);
        CHECK(i == 0 || plan.edits[i - 1].end <= e->start);

        if (e->text == esc) {
            CHECK(e->start == model->start && e->end == model->end
                  && e->len == elen);
            models++;
        }

        olen += e->len - (size_t) (e->end - e->start);
    }

    CHECK(models == !kept);

    /* the splice, whole, in the pieces of (a) and a byte at a time: the
     * same bytes every way */

    c.cap = olen;
    c.out = malloc(olen ? olen : 1);
    CHECK(c.out != NULL);

    c2.cap = olen;
    c2.out = malloc(olen ? olen : 1);
    CHECK(c2.out != NULL);

    splice_pieces(&plan, body, len, NULL, 0, 0, &c);

    splice_pieces(&plan, body, len, cuts, ncuts, 0, &c2);
    CHECK(memcmp(c.out, c2.out, olen) == 0);

    splice_pieces(&plan, body, len, NULL, 0, 1, &c2);
    CHECK(memcmp(c.out, c2.out, olen) == 0);

    free(c2.out);

    if (plan.n == 0) {
        CHECK(olen == len && memcmp(c.out, body, len) == 0);
    }

    /* the scanner on the output: valid, the new model where it was put */

    scan_pieces(&os, c.out, olen, NULL, 0);

    CHECK(os.error == NULL);
    CHECK(os.root_type == QWEN_JSON_OBJECT);
    CHECK(os.fields[QWEN_FIELD_MODEL].count == 1);
    CHECK(os.fields[QWEN_FIELD_MODEL].type == QWEN_JSON_STRING);
    CHECK((size_t) (os.fields[QWEN_FIELD_MODEL].end
                    - os.fields[QWEN_FIELD_MODEL].start) == elen);
    CHECK(memcmp(c.out + os.fields[QWEN_FIELD_MODEL].start, esc, elen) == 0);
    CHECK(os.model_overflow == (nlen > QWEN_JSON_MODEL_MAX));

    if (nlen <= QWEN_JSON_MODEL_MAX) {
        CHECK(os.model_len == nlen && memcmp(os.model, name, nlen) == 0);
    }

    CHECK(os.fields[QWEN_FIELD_STREAM].type
          == s->fields[QWEN_FIELD_STREAM].type);

    if (plan.usage_injected) {
        /* the gateway would not edit it again */
        CHECK(os.fields[QWEN_FIELD_STREAM_OPTIONS].count == 1);
        CHECK(os.fields[QWEN_FIELD_STREAM_OPTIONS].type == QWEN_JSON_OBJECT);
        CHECK(os.fields[QWEN_FIELD_INCLUDE_USAGE].count == 1);
        CHECK(os.fields[QWEN_FIELD_INCLUDE_USAGE].type == QWEN_JSON_TRUE);
    }

    /*
     * cJSON on the output, where it can be trusted with the input: the
     * input parsed, and no \u0000 makes two names look the same to it.
     */

    if (in != NULL && !ref->nul_escape) {

        /*
         * What the plan must say about include_usage, from the tree: the
         * client asked for usage with one "stream_options" object holding
         * one "include_usage": true; otherwise, with inject_usage, the
         * gateway asks for it, unless stream_options is neither absent,
         * null nor an object, or a member it would edit repeats.
         */

        last = NULL;
        (void) members(in, "stream", &last);
        CHECK(stream == (last != NULL && cJSON_IsTrue(last)));

        so = NULL;
        so_n = members(in, "stream_options", &so);
        iu = NULL;
        iu_n = (so_n == 1 && cJSON_IsObject(so))
               ? members(so, "include_usage", &iu) : 0;

        usage = U_NONE;
        client = 0;

        if (!stream || so_n > 1) {
            /* none */

        } else if (so_n == 1 && cJSON_IsObject(so) && iu_n == 1
                   && cJSON_IsTrue(iu))
        {
            client = 1;

        } else if (!inject || iu_n > 1) {
            /* none */

        } else if (so_n == 0) {
            usage = U_ADD;

        } else if (cJSON_IsNull(so)) {
            usage = U_NULL;

        } else if (cJSON_IsObject(so)) {
            usage = (iu_n == 0) ? U_FIRST : U_REPLACE;
        }

        CHECK(plan.usage_injected == (usage != U_NONE));

        if (so_n <= 1) {
            CHECK(plan.client_usage == client);
        }

        out = cjson_parse(c.out, olen);
        CHECK(out != NULL);

        /* "model" is the new name (cJSON strings end at a NUL) */

        v = cJSON_GetObjectItemCaseSensitive(out, "model");
        CHECK(cJSON_IsString(v));
        i = strnlen((const char *) name, nlen);
        CHECK(strlen(v->valuestring) == i);
        CHECK(memcmp(v->valuestring, name, i) == 0);

        if (usage != U_NONE) {
            v = cJSON_GetObjectItemCaseSensitive(out, "stream_options");
            CHECK(cJSON_IsObject(v));
            CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v,
                                                          "include_usage")));
        }

        /* everything else as it was: the input with the same edits made
         * on its tree, compared member by member, in order */

        cname = malloc(nlen + 1);
        CHECK(cname != NULL);
        memcpy(cname, name, nlen);
        cname[nlen] = '\0';

        CHECK(cJSON_ReplaceItemInObjectCaseSensitive(in, "model",
                                              cJSON_CreateString(cname)));
        free(cname);

        switch (usage) {

        case U_ADD:
            v = cJSON_CreateObject();
            cJSON_AddTrueToObject(v, "include_usage");
            cJSON_AddItemToObject(in, "stream_options", v);
            break;

        case U_NULL:
            v = cJSON_CreateObject();
            cJSON_AddTrueToObject(v, "include_usage");
            CHECK(cJSON_ReplaceItemInObjectCaseSensitive(in,
                                                     "stream_options", v));
            break;

        case U_FIRST:
            v = cJSON_CreateTrue();
            v->string = strdup("include_usage");
            CHECK(cJSON_InsertItemInArray((cJSON *) so, 0, v));
            break;

        case U_REPLACE:
            CHECK(cJSON_ReplaceItemInObjectCaseSensitive((cJSON *) so,
                                                       "include_usage",
                                                       cJSON_CreateTrue()));
            break;
        }

        CHECK(same_tree(in, out));

        cJSON_Delete(out);
    }

    free(c.out);
    free(esc);
}


/* ------------------------------------------------------------------ */


static const char *const  field_names[QWEN_FIELD_N] = {
    "model", "stream", "stream_options", "include_usage", "max_tokens",
    "max_completion_tokens"
};


static void
check_fields(const unsigned char *body, size_t len, const qwen_json_scan_t *s)
{
    int                       i;
    size_t                    k, first;
    unsigned                  n;
    unsigned char             c, z;
    const qwen_json_field_t  *f;

    if (s->error) {
        CHECK(s->error_offset >= 0 && (size_t) s->error_offset <= len);

        for (i = 0; i < QWEN_FIELD_N; i++) {
            f = &s->fields[i];

            if (f->count) {
                CHECK(f->start >= 0 && f->start <= s->error_offset);
                /* -1: its value is open; 0: not begun (a key alone) */
                CHECK(f->end == -1
                      || (f->end == 0 && f->start == 0)
                      || (f->end > f->start && f->end <= s->error_offset + 1));
            }
        }

        return;
    }

    /* the root's type is that of its first byte */

    for (first = 0; first < len && strchr(" \t\n\r", body[first]) != NULL
                    && body[first] != '\0'; first++) { /* void */ }

    CHECK(first < len);

    c = body[first];
    CHECK(s->root_type == (c == '{' ? QWEN_JSON_OBJECT
                           : c == '[' ? QWEN_JSON_ARRAY
                           : c == '"' ? QWEN_JSON_STRING
                           : c == 't' ? QWEN_JSON_TRUE
                           : c == 'f' ? QWEN_JSON_FALSE
                           : c == 'n' ? QWEN_JSON_NULL
                           : QWEN_JSON_NUMBER));

    if (s->root_type == QWEN_JSON_OBJECT) {
        /* root_end is the root's '}', and only white space follows */
        CHECK(s->root_end > (int64_t) first && (size_t) s->root_end < len);
        CHECK(body[s->root_end] == '}');

        for (k = (size_t) s->root_end + 1; k < len; k++) {
            CHECK(body[k] == ' ' || body[k] == '\t' || body[k] == '\n'
                  || body[k] == '\r');
        }

    } else {
        /* no members, then (an array's root_end is not used: see README) */
        CHECK(s->root_members == 0);

        for (i = 0; i < QWEN_FIELD_N; i++) {
            CHECK(s->fields[i].count == 0);
        }
    }

    for (i = 0; i < QWEN_FIELD_N; i++) {
        f = &s->fields[i];

        if (f->count == 0) {
            CHECK(f->start == 0 && f->end == 0 && f->type == QWEN_JSON_NONE);
            continue;
        }

        CHECK(f->start > (int64_t) first && f->start < f->end
              && (size_t) f->end <= len);

        c = body[f->start];
        z = body[f->end - 1];

        switch (f->type) {
        case QWEN_JSON_OBJECT:
            CHECK(c == '{' && z == '}');
            break;
        case QWEN_JSON_ARRAY:
            CHECK(c == '[' && z == ']');
            break;
        case QWEN_JSON_STRING:
            CHECK(c == '"' && z == '"' && f->end - f->start >= 2);
            break;
        case QWEN_JSON_TRUE:
            CHECK(f->end - f->start == 4
                  && memcmp(body + f->start, "true", 4) == 0);
            break;
        case QWEN_JSON_FALSE:
            CHECK(f->end - f->start == 5
                  && memcmp(body + f->start, "false", 5) == 0);
            break;
        case QWEN_JSON_NULL:
            CHECK(f->end - f->start == 4
                  && memcmp(body + f->start, "null", 4) == 0);
            break;
        case QWEN_JSON_NUMBER:
            CHECK(c == '-' || (c >= '0' && c <= '9'));
            CHECK(z >= '0' && z <= '9');
            break;
        default:
            CHECK(0);
        }

        /* watched members are in the root object (include_usage in its
         * stream_options), so before its end */
        CHECK(f->end <= s->root_end);
    }

    /* the model span starts with '"' when it is a string */

    f = &s->fields[QWEN_FIELD_MODEL];

    if (f->count && f->type == QWEN_JSON_STRING) {
        CHECK(body[f->start] == '"');
    }

    if (s->fields[QWEN_FIELD_INCLUDE_USAGE].count) {
        CHECK(s->fields[QWEN_FIELD_STREAM_OPTIONS].count);
        CHECK(s->stream_options_members
              >= s->fields[QWEN_FIELD_INCLUDE_USAGE].count);
    }

    n = 0;

    for (i = 0; i < QWEN_FIELD_N; i++) {
        if (i != QWEN_FIELD_INCLUDE_USAGE) {
            n += s->fields[i].count;
        }
    }

    CHECK(s->root_members >= n);
}


/*
 * qwen_json_uint() on a number member's span: it takes exactly the
 * tokens of 1 to 19 digits without a leading zero, and gives the value
 * cJSON gives (exactly, below 2^53).
 */

static void
check_uint(const unsigned char *body, const qwen_json_field_t *f,
    const cJSON *j, const char *name)
{
    int           rc, digits;
    size_t        k, n;
    uint64_t      v;
    const cJSON  *last;

    if (f->count == 0 || f->type != QWEN_JSON_NUMBER) {
        return;
    }

    n = (size_t) (f->end - f->start);
    digits = (n >= 1 && n <= 19 && (body[f->start] != '0' || n == 1));

    for (k = 0; k < n; k++) {
        if (body[f->start + k] < '0' || body[f->start + k] > '9') {
            digits = 0;
        }
    }

    v = 0;
    rc = qwen_json_uint(body + f->start, n, &v);

    CHECK((rc == 0) == digits);

    last = NULL;
    members(j, name, &last);
    CHECK(last != NULL && cJSON_IsNumber(last));

    if (rc == 0 && v < (1ULL << 53)) {
        CHECK((double) v == last->valuedouble);
    }
}


/* the fields as cJSON sees them, when it can be trusted with names */

static void
check_fields_cjson(const unsigned char *body, const qwen_json_scan_t *s,
    const cJSON *j)
{
    int           i;
    unsigned      n, iu_n, so_members;
    const cJSON  *last, *c, *iu_last;

    CHECK(s->root_type == cjson_type(j));

    if (!cJSON_IsObject(j)) {
        return;
    }

    CHECK(s->root_members == children(j));

    /* the root's members (include_usage is stream_options', below) */

    for (i = 0; i < QWEN_FIELD_N; i++) {
        if (i == QWEN_FIELD_INCLUDE_USAGE) {
            continue;
        }

        last = NULL;
        n = members(j, field_names[i], &last);

        CHECK(s->fields[i].count == n);

        if (n) {
            CHECK(s->fields[i].type == cjson_type(last));
            check_span(body, &s->fields[i], last);
        }
    }

    /* the token counts as the gateway reads them */

    for (i = QWEN_FIELD_MAX_TOKENS; i <= QWEN_FIELD_MAX_COMPLETION_TOKENS;
         i++)
    {
        check_uint(body, &s->fields[i], j, field_names[i]);
    }

    /* include_usage: every object "stream_options" counts */

    iu_n = 0;
    iu_last = NULL;
    so_members = 0;

    for (c = j->child; c; c = c->next) {
        if (strcmp(c->string, "stream_options") == 0 && cJSON_IsObject(c)) {
            iu_n += members(c, "include_usage", &iu_last);
            so_members += children(c);
        }
    }

    CHECK(s->fields[QWEN_FIELD_INCLUDE_USAGE].count == iu_n);
    CHECK(s->stream_options_members == so_members);

    if (iu_n) {
        CHECK(s->fields[QWEN_FIELD_INCLUDE_USAGE].type == cjson_type(iu_last));
        check_span(body, &s->fields[QWEN_FIELD_INCLUDE_USAGE], iu_last);
    }

    /* the decoded model is cJSON's (lone surrogates are not: cJSON
     * rejects them, and the input would not be here) */

    last = NULL;

    if (members(j, "model", &last) && cJSON_IsString(last)
        && !s->model_overflow)
    {
        CHECK(strlen(last->valuestring) == s->model_len);
        CHECK(memcmp(last->valuestring, s->model, s->model_len) == 0);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  cj_ok;
    size_t               len, ncuts, i, nlen, at, rlen;
    cJSON               *j;
    uint64_t             seed;
    unsigned char        b0, b1, dec[QWEN_JSON_MODEL_MAX];
    const unsigned char *body, *name;
    qwen_json_scan_t     whole, split, bytes;
    ref_t                ref;
    size_t               cuts[16];
    const qwen_json_field_t  *model;

    b0 = size > 0 ? data[0] : 0;
    b1 = size > 1 ? data[1] : 0;
    body = data + (size > 2 ? 2 : size);
    len = size - (size_t) (body - data);

    /* (a) the same results whole, in pieces, and a byte at a time */

    stage = "(a) scan whole";
    scan_pieces(&whole, body, len, NULL, 0);

    seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t) b1 << 8 | b0) ^ len;
    ncuts = b0 & 15;

    for (i = 0; i < ncuts; i++) {
        cuts[i] = (size_t) (rnd(&seed) % (len + 1));
    }

    qsort(cuts, ncuts, sizeof(size_t), cmp_size);

    stage = "(a) scan in pieces";
    scan_pieces(&split, body, len, cuts, ncuts);
    same_results(&whole, &split);

    stage = "(a) scan a byte at a time";
    scan_bytes(&bytes, body, len);
    same_results(&whole, &bytes);

    /* the reference validator: valid alike, failing at the same byte */

    stage = "the reference validator";
    ref_validate(&ref, body, len);

    CHECK((whole.error == NULL) == (ref.reason == R_OK));

    if (whole.error) {
        CHECK((size_t) whole.error_offset == ref.err);
        CHECK((strcmp(whole.error, "nesting too deep") == 0)
              == (ref.reason == R_DEPTH));
    }

    /* (d) offsets */

    stage = "(d) offsets";
    check_fields(body, len, &whole);

    /* the decoded model */

    stage = "the decoded model";
    model = &whole.fields[QWEN_FIELD_MODEL];

    if (whole.error == NULL && model->type == QWEN_JSON_STRING) {
        rlen = ref_decode(body + model->start + 1,
                          (size_t) (model->end - model->start - 2),
                          dec, sizeof(dec));

        CHECK(whole.model_overflow == (rlen > QWEN_JSON_MODEL_MAX));

        if (!whole.model_overflow) {
            CHECK(whole.model_len == rlen);
            CHECK(memcmp(whole.model, dec, rlen) == 0);
        }
    }

    /* (b) cJSON agrees, except where it is known not to */

    stage = "(b) cJSON";
    j = cjson_parse(body, len);
    cj_ok = (j != NULL);

    if (whole.error == NULL) {
        /* cJSON rejects unpaired surrogate escapes, nothing else */
        CHECK(cj_ok == !ref.lone_surrogate);

    } else if (cj_ok) {
        /* cJSON is more lenient: it must be one of its known leniencies
         * that made the scanner (and the reference) say no */

#ifdef FUZZ_REPORT
        fprintf(stderr, "cJSON takes what the scanner does not: %s "
                "(reference: %s) at byte %lld\n", whole.error,
                ref_reasons[ref.reason], (long long) whole.error_offset);
#endif

        CHECK(ref.reason == R_CTRL_STRING || ref.reason == R_CTRL_WS
              || ref.reason == R_NUMBER || ref.reason == R_BOM
              || ref.reason == R_HEX || ref.reason == R_DEPTH);
    }

    if (whole.error == NULL && j != NULL && !ref.nul_escape) {
        stage = "(d) fields as cJSON sees them";
        check_fields_cjson(body, &whole, j);
    }

    /* (c) the splice */

    if (whole.error == NULL && whole.root_type == QWEN_JSON_OBJECT
        && model->count == 1 && model->type == QWEN_JSON_STRING)
    {
        if ((b0 >> 4) == 15 && !whole.model_overflow) {
            /* the model's own name: kept if written without escapes */
            name = whole.model;
            nlen = whole.model_len;

        } else {
            at = len ? (size_t) (((unsigned) b1 * 131u + b0) % (len + 1))
                     : 0;
            nlen = (size_t) (b0 >> 4) * 3;

            if (nlen > len - at) {
                nlen = len - at;
            }

            name = body + at;
        }

        stage = "(c) the splice";
        check_splice(body, len, &whole, &ref, j, name, nlen,
                     !(b1 & 0x80), cuts, ncuts);
    }

    cJSON_Delete(j);

    return 0;
}
