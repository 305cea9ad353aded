
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The incremental request-body scanner: a JSON validator (RFC 8259
 * grammar; strings are not checked for valid UTF-8) driven byte by byte
 * across any number of pieces, with a fast path through string contents,
 * which is where almost all of a chat request's bytes are.
 */


#include <string.h>

#include "ngx_http_qwen_json.h"
#include "ngx_http_qwen_json_text.h"


enum {
    S_VALUE = 0,       /* a value must come */
    S_ARRAY_FIRST,     /* after '[': a value or ']' */
    S_OBJECT_FIRST,    /* after '{': a name or '}' */
    S_OBJECT_NAME,     /* after ',' in an object: a name */
    S_COLON,           /* after a name */
    S_AFTER,           /* after a value: ',' or a closing bracket */
    S_END,             /* after the root value: white space only */
    S_STRING,
    S_ESCAPE,
    S_UNICODE,
    S_NUMBER,
    S_LITERAL
};


enum {
    N_MINUS = 0,       /* "-": a digit must come */
    N_ZERO,            /* a leading "0" */
    N_INT,
    N_DOT,             /* ".": a digit must come */
    N_FRAC,
    N_EXP,             /* "e": a sign or a digit must come */
    N_EXP_SIGN,        /* "e+": a digit must come */
    N_EXP_DIGITS
};


static int qwen_json_fail(qwen_json_scan_t *s, const char *error);
static int qwen_json_begin_value(qwen_json_scan_t *s, unsigned char c);
static void qwen_json_value_end(qwen_json_scan_t *s, int64_t end);
static void qwen_json_string_end(qwen_json_scan_t *s, int64_t end);
static void qwen_json_name_end(qwen_json_scan_t *s);
static void qwen_json_capture_byte(qwen_json_scan_t *s, unsigned char c);
static void qwen_json_capture_run(qwen_json_scan_t *s,
    const unsigned char *b, size_t n);
static void qwen_json_capture_cp(qwen_json_scan_t *s, uint32_t cp);
static void qwen_json_capture_bytes(qwen_json_scan_t *s,
    const unsigned char *u, size_t n);
static int qwen_json_number(qwen_json_scan_t *s, unsigned char c);


void
qwen_json_scan_init(qwen_json_scan_t *s)
{
    memset(s, 0, sizeof(qwen_json_scan_t));

    s->state = S_VALUE;
    s->member[0] = -1;
    s->member[1] = -1;
    s->member[2] = -1;
    s->root_end = -1;
}


int
qwen_json_scan(qwen_json_scan_t *s, const unsigned char *p, size_t len)
{
    unsigned char         c;
    const unsigned char  *last, *run;

    if (s->error) {
        return -1;
    }

    last = p + len;

    while (p < last) {

        if (s->state == S_STRING) {

            /* the fast path: skip or copy a run of plain string bytes */

            run = p;
            p = qwen_json_string_run(p, last);

            s->offset += p - run;

            if (s->capture && run != p) {
                qwen_json_capture_run(s, run, p - run);
            }

            if (p == last) {
                break;
            }
        }

        c = *p;

        switch (s->state) {

        case S_VALUE:
        case S_ARRAY_FIRST:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (s->state == S_ARRAY_FIRST && c == ']') {
                s->depth--;
                qwen_json_value_end(s, s->offset + 1);
                break;
            }

            if (qwen_json_begin_value(s, c) != 0) {
                return -1;
            }

            break;

        case S_OBJECT_FIRST:
        case S_OBJECT_NAME:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (s->state == S_OBJECT_FIRST && c == '}') {
                if (s->depth == 1) {
                    s->root_end = s->offset;
                }

                s->depth--;
                qwen_json_value_end(s, s->offset + 1);
                break;
            }

            if (c != '"') {
                return qwen_json_fail(s, "expected a member name");
            }

            s->in_key = 1;
            s->high = 0;
            s->clen = 0;
            s->capture_overflow = 0;

            /* names are decoded where a watched member may be */

            s->capture = (s->depth == 1
                          || (s->depth == 2
                              && s->member[1] == QWEN_FIELD_STREAM_OPTIONS));

            if (s->capture) {
                s->cbuf = s->key;
                s->ccap = QWEN_JSON_KEY_MAX;
            }

            s->state = S_STRING;
            break;

        case S_COLON:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (c != ':') {
                return qwen_json_fail(s, "expected ':'");
            }

            s->state = S_VALUE;
            break;

        case S_AFTER:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (c == ',') {
                s->state = (s->stack[s->depth - 1] == '{') ? S_OBJECT_NAME
                                                            : S_VALUE;
                break;
            }

            if (c == '}' || c == ']') {
                if (s->stack[s->depth - 1] != (c == '}' ? '{' : '[')) {
                    return qwen_json_fail(s, "mismatched bracket");
                }

                if (s->depth == 1) {
                    s->root_end = s->offset;
                }

                s->depth--;
                qwen_json_value_end(s, s->offset + 1);
                break;
            }

            return qwen_json_fail(s, (s->stack[s->depth - 1] == '{')
                                     ? "expected ',' or '}'"
                                     : "expected ',' or ']'");

        case S_END:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            return qwen_json_fail(s, "unexpected data after the JSON value");

        case S_STRING:

            /* the fast path stopped at '"', '\\' or a control character */

            if (c == '"') {
                qwen_json_string_end(s, s->offset + 1);
                break;
            }

            if (c == '\\') {
                s->state = S_ESCAPE;
                break;
            }

            return qwen_json_fail(s, "control character in a string");

        case S_ESCAPE:

            if (c == 'u') {
                s->state = S_UNICODE;
                s->hex = 0;
                s->cp = 0;
                break;
            }

            if (qwen_json_simple_escape(c) < 0) {
                return qwen_json_fail(s, "invalid escape in a string");
            }

            if (s->capture) {
                qwen_json_capture_byte(s, (unsigned char)
                                          qwen_json_simple_escape(c));
            }

            s->state = S_STRING;
            break;

        case S_UNICODE:

            if (qwen_json_hex(c) < 0) {
                return qwen_json_fail(s, "invalid \\u escape in a string");
            }

            s->cp = (s->cp << 4) | (uint32_t) qwen_json_hex(c);

            if (++s->hex == 4) {
                if (s->capture) {
                    qwen_json_capture_cp(s, s->cp);
                }

                s->state = S_STRING;
            }

            break;

        case S_NUMBER:

            if (qwen_json_number(s, c) == 0) {
                break;
            }

            if (s->error) {
                return -1;
            }

            /* the number ended just before c: look at c again */

            continue;

        case S_LITERAL:

            if (c != (unsigned char) *s->literal) {
                return qwen_json_fail(s, "invalid literal");
            }

            if (*++s->literal == '\0') {
                qwen_json_value_end(s, s->offset + 1);
            }

            break;
        }

        p++;
        s->offset++;
    }

    return 0;
}


int
qwen_json_scan_finish(qwen_json_scan_t *s)
{
    if (s->error) {
        return -1;
    }

    if (s->state == S_NUMBER && s->depth == 0
        && (s->sub == N_ZERO || s->sub == N_INT || s->sub == N_FRAC
            || s->sub == N_EXP_DIGITS))
    {
        qwen_json_value_end(s, s->offset);
    }

    if (s->state != S_END) {
        return qwen_json_fail(s, s->offset == 0 ? "empty input"
                                                : "unexpected end of input");
    }

    return 0;
}


static int
qwen_json_fail(qwen_json_scan_t *s, const char *error)
{
    s->error = error;
    s->error_offset = s->offset;

    return -1;
}


static int
qwen_json_begin_value(qwen_json_scan_t *s, unsigned char c)
{
    int                 m;
    unsigned            type;
    qwen_json_field_t  *f;

    switch (c) {
    case '{':
        type = QWEN_JSON_OBJECT;
        break;
    case '[':
        type = QWEN_JSON_ARRAY;
        break;
    case '"':
        type = QWEN_JSON_STRING;
        break;
    case 't':
        type = QWEN_JSON_TRUE;
        break;
    case 'f':
        type = QWEN_JSON_FALSE;
        break;
    case 'n':
        type = QWEN_JSON_NULL;
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            type = QWEN_JSON_NUMBER;
            break;
        }

        return qwen_json_fail(s, "unexpected character");
    }

    m = -1;

    if (s->depth == 0) {
        s->root_type = type;

    } else if (s->depth <= 2) {
        m = s->member[s->depth];
    }

    if (m >= 0) {
        f = &s->fields[m];
        f->start = s->offset;
        f->end = -1;
        f->type = type;
    }

    switch (type) {

    case QWEN_JSON_OBJECT:
    case QWEN_JSON_ARRAY:

        if (s->depth == QWEN_JSON_MAX_DEPTH) {
            return qwen_json_fail(s, "nesting too deep");
        }

        s->stack[s->depth++] = c;

        /* members of this container start unwatched */

        if (s->depth <= 2) {
            s->member[s->depth] = -1;
        }

        s->state = (type == QWEN_JSON_OBJECT) ? S_OBJECT_FIRST
                                              : S_ARRAY_FIRST;
        break;

    case QWEN_JSON_STRING:
        s->in_key = 0;
        s->high = 0;
        s->clen = 0;
        s->capture_overflow = 0;
        s->capture = (m == QWEN_FIELD_MODEL && s->depth == 1);

        if (s->capture) {
            s->cbuf = s->model;
            s->ccap = QWEN_JSON_MODEL_MAX;
        }

        s->state = S_STRING;
        break;

    case QWEN_JSON_NUMBER:
        s->sub = (c == '-') ? N_MINUS : (c == '0') ? N_ZERO : N_INT;
        s->state = S_NUMBER;
        break;

    default:
        s->literal = (type == QWEN_JSON_TRUE) ? "rue"
                     : (type == QWEN_JSON_FALSE) ? "alse" : "ull";
        s->state = S_LITERAL;
        break;
    }

    return 0;
}


/* a value ended at "end"; s->depth is that of its container */

static void
qwen_json_value_end(qwen_json_scan_t *s, int64_t end)
{
    int  m;

    if (s->depth == 0) {
        s->state = S_END;
        return;
    }

    if (s->depth <= 2) {
        m = s->member[s->depth];

        if (m >= 0) {
            s->fields[m].end = end;
        }
    }

    s->state = S_AFTER;
}


static void
qwen_json_string_end(qwen_json_scan_t *s, int64_t end)
{
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    if (s->capture && s->high) {
        qwen_json_capture_bytes(s, u, qwen_json_unpaired(&s->high, u));
    }

    if (s->in_key) {
        s->in_key = 0;
        qwen_json_name_end(s);
        s->capture = 0;
        s->state = S_COLON;
        return;
    }

    if (s->capture) {
        s->model_len = s->clen;
        s->model_overflow = s->capture_overflow;
        s->capture = 0;
    }

    qwen_json_value_end(s, end);
}


static void
qwen_json_name_end(qwen_json_scan_t *s)
{
    int     m;
    size_t  n;

    if (s->depth == 1) {
        s->root_members++;

    } else if (s->depth == 2 && s->member[1] == QWEN_FIELD_STREAM_OPTIONS
               && s->stack[1] == '{')
    {
        s->stream_options_members++;
    }

    if (s->depth > 2) {
        return;
    }

    m = -1;
    n = s->clen;

    if (s->capture && !s->capture_overflow) {

        if (s->depth == 1) {

            /* by length first: one memcmp() at most per root name */

            switch (n) {
            case 5:
                if (memcmp(s->key, "model", 5) == 0) {
                    m = QWEN_FIELD_MODEL;
                }
                break;
            case 6:
                if (memcmp(s->key, "stream", 6) == 0) {
                    m = QWEN_FIELD_STREAM;
                }
                break;
            case 10:
                if (memcmp(s->key, "max_tokens", 10) == 0) {
                    m = QWEN_FIELD_MAX_TOKENS;
                }
                break;
            case 14:
                if (memcmp(s->key, "stream_options", 14) == 0) {
                    m = QWEN_FIELD_STREAM_OPTIONS;
                }
                break;
            case 21:
                if (memcmp(s->key, "max_completion_tokens", 21) == 0) {
                    m = QWEN_FIELD_MAX_COMPLETION_TOKENS;
                }
                break;
            }

        } else if (n == 13 && memcmp(s->key, "include_usage", 13) == 0) {
            m = QWEN_FIELD_INCLUDE_USAGE;
        }
    }

    s->member[s->depth] = m;

    if (m >= 0) {
        s->fields[m].count++;
    }
}


static void
qwen_json_capture_byte(qwen_json_scan_t *s, unsigned char c)
{
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    if (s->high) {
        qwen_json_capture_bytes(s, u, qwen_json_unpaired(&s->high, u));
    }

    qwen_json_capture_bytes(s, &c, 1);
}


/* plain string bytes: what qwen_json_capture_byte() does with each */

static void
qwen_json_capture_run(qwen_json_scan_t *s, const unsigned char *b, size_t n)
{
    size_t         room;
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    if (s->high) {
        qwen_json_capture_bytes(s, u, qwen_json_unpaired(&s->high, u));
    }

    room = (s->clen < s->ccap) ? s->ccap - s->clen : 0;

    if (n > room) {
        /* the bytes that fit, as one at a time would have put them */
        n = room;
        s->capture_overflow = 1;
    }

    memcpy(s->cbuf + s->clen, b, n);
    s->clen += n;
}


static void
qwen_json_capture_cp(qwen_json_scan_t *s, uint32_t cp)
{
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    qwen_json_capture_bytes(s, u, qwen_json_unicode(&s->high, cp, u));
}


/* whole characters only: a name or model that does not fit is cut off */

static void
qwen_json_capture_bytes(qwen_json_scan_t *s, const unsigned char *u,
    size_t n)
{
    if (s->clen + n <= s->ccap) {
        memcpy(s->cbuf + s->clen, u, n);
        s->clen += n;

    } else {
        s->capture_overflow = 1;
    }
}


/* returns 0 if c belongs to the number, -1 if the number ended before c */

static int
qwen_json_number(qwen_json_scan_t *s, unsigned char c)
{
    int  digit;

    digit = (c >= '0' && c <= '9');

    switch (s->sub) {

    case N_MINUS:
        if (digit) {
            s->sub = (c == '0') ? N_ZERO : N_INT;
            return 0;
        }
        break;

    case N_ZERO:
    case N_INT:
        if (digit && s->sub == N_INT) {
            return 0;
        }

        if (c == '.') {
            s->sub = N_DOT;
            return 0;
        }

        if (c == 'e' || c == 'E') {
            s->sub = N_EXP;
            return 0;
        }

        goto done;

    case N_DOT:
        if (digit) {
            s->sub = N_FRAC;
            return 0;
        }
        break;

    case N_FRAC:
        if (digit) {
            return 0;
        }

        if (c == 'e' || c == 'E') {
            s->sub = N_EXP;
            return 0;
        }

        goto done;

    case N_EXP:
        if (c == '+' || c == '-') {
            s->sub = N_EXP_SIGN;
            return 0;
        }

        /* fall through */

    case N_EXP_SIGN:
        if (digit) {
            s->sub = N_EXP_DIGITS;
            return 0;
        }
        break;

    case N_EXP_DIGITS:
        if (digit) {
            return 0;
        }

        goto done;
    }

    qwen_json_fail(s, "invalid number");
    return -1;

done:

    qwen_json_value_end(s, s->offset);

    return -1;
}


int
qwen_json_uint(const unsigned char *p, size_t len, uint64_t *value)
{
    size_t    i;
    uint64_t  v;

    /* 19 digits: at most 9999999999999999999, below 2^64 */

    if (len == 0 || len > 19 || (p[0] == '0' && len > 1)) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        v = v * 10 + (uint64_t) (p[i] - '0');
    }

    *value = v;

    return 0;
}


size_t
qwen_json_escaped_len(const unsigned char *s, size_t len)
{
    size_t  n;

    n = 2;

    while (len--) {
        if (*s == '"' || *s == '\\') {
            n += 2;

        } else if (*s < 0x20) {
            n += 6;

        } else {
            n++;
        }

        s++;
    }

    return n;
}


unsigned char *
qwen_json_escape(unsigned char *dst, const unsigned char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";

    *dst++ = '"';

    while (len--) {
        if (*s == '"' || *s == '\\') {
            *dst++ = '\\';
            *dst++ = *s;

        } else if (*s < 0x20) {
            *dst++ = '\\';
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hex[*s >> 4];
            *dst++ = hex[*s & 0xf];

        } else {
            *dst++ = *s;
        }

        s++;
    }

    *dst++ = '"';

    return dst;
}
