
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The incremental response-body scanner: an SSE line parser that hands
 * the data of each event to a JSON scanner, or the JSON scanner alone.
 *
 * The JSON scanner validates the grammar (RFC 8259; strings are not
 * checked for valid UTF-8) without a full stack: the depth is a counter,
 * and one bit per level, up to QWEN_USAGE_MAX_DEPTH, says whether that
 * level is an object or an array.  Deeper than that, only strings and
 * brackets are followed until the depth comes back.  Only three levels
 * matter for the results, the root object, its "usage" object and the
 * details objects in that, so "track" says how many of the levels now
 * open are on that path, and key_class[d] what the member of level d
 * being read is; member names are decoded (escapes too) only there.
 *
 * Almost every byte is either in a string, which a fast path skips eight
 * bytes at a time, or in an SSE line that is not data, which memchr()
 * skips.
 */


#include <string.h>

#include "ngx_http_qwen_usage.h"
#include "ngx_http_qwen_json_text.h"


/* the SSE line parser's states */
enum {
    L_START = 0,       /* at the start of a line */
    L_FIELD,           /* in a field name that so far is a prefix of "data" */
    L_DATA_SPACE,      /* after "data:": an optional space */
    L_DATA,            /* in a data line's value */
    L_SKIP,            /* in any other line */
    L_CR,              /* after the '\r' that ended a line */
    L_BLANK_CR         /* after the '\r' that ended a blank line */
};


/* the JSON scanner's states */
enum {
    J_VALUE = 0,       /* a value must come */
    J_ARRAY_FIRST,     /* after '[': a value or ']' */
    J_OBJECT_FIRST,    /* after '{': a name or '}' */
    J_OBJECT_NAME,     /* after ',' in an object: a name */
    J_COLON,           /* after a name */
    J_AFTER,           /* after a value: ',' or a closing bracket */
    J_END,             /* after the root value: white space only */
    J_STRING,
    J_ESCAPE,
    J_UNICODE,
    J_NUMBER,
    J_LITERAL,
    J_DEEP,            /* deeper than the stack: brackets and strings */
    J_ERROR            /* not valid JSON: the rest is ignored */
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


/* what the member being read at a level of the usage path is */
enum {
    K_NONE = 0,
    K_MODEL,           /* level 1: "model" */
    K_USAGE,           /* level 1: "usage" */
    K_CHOICES,         /* level 1: "choices" */
    K_PROMPT,          /* from here to K_REASONING, in doc[] order */
    K_COMPLETION,
    K_TOTAL,
    K_CACHED,          /* level 3, in "prompt_tokens_details" */
    K_REASONING,       /* level 3, in "completion_tokens_details" */
    K_PDETAILS,        /* level 2: "prompt_tokens_details" */
    K_CDETAILS         /* level 2: "completion_tokens_details" */
};


/* what the top-level "choices" of the document was */
enum {
    C_NONE = 0,
    C_EMPTY,           /* "[]" (every time, if it repeats) */
    C_OTHER
};


/* which string is being decoded */
enum {
    CAP_NONE = 0,
    CAP_KEY,
    CAP_MODEL
};


#define QWEN_USAGE_DONE   6                  /* strlen("[DONE]") */
#define QWEN_USAGE_NOT    7                  /* not "[DONE]" */
#define QWEN_USAGE_DEEP   ((uint32_t) 0x7fffffff)


static void qwen_usage_event_end(qwen_usage_scan_t *s);
static void qwen_usage_data_line(qwen_usage_scan_t *s);
static void qwen_usage_payload(qwen_usage_scan_t *s, const unsigned char *p,
    const unsigned char *last);
static void qwen_usage_doc_start(qwen_usage_scan_t *s);
static int qwen_usage_doc_end(qwen_usage_scan_t *s);
static void qwen_usage_commit(qwen_usage_scan_t *s);
static void qwen_usage_json(qwen_usage_scan_t *s, const unsigned char *p,
    const unsigned char *last);
static void qwen_usage_begin_value(qwen_usage_scan_t *s, unsigned char c);
static void qwen_usage_begin_name(qwen_usage_scan_t *s);
static void qwen_usage_close(qwen_usage_scan_t *s);
static void qwen_usage_value_end(qwen_usage_scan_t *s);
static void qwen_usage_string_end(qwen_usage_scan_t *s);
static void qwen_usage_name_end(qwen_usage_scan_t *s);
static void qwen_usage_number_end(qwen_usage_scan_t *s);
static void qwen_usage_capture(qwen_usage_scan_t *s, const unsigned char *b,
    size_t n);
static void qwen_usage_capture_raw(qwen_usage_scan_t *s,
    const unsigned char *b, size_t n);
static void qwen_usage_capture_cp(qwen_usage_scan_t *s, uint32_t cp);
static size_t qwen_usage_utf8_cut(const unsigned char *p, size_t len);


void
qwen_usage_scan_init(qwen_usage_scan_t *s, int sse)
{
    memset(s, 0, sizeof(qwen_usage_scan_t));

    s->sse = sse ? 1 : 0;
    s->line = L_START;

    qwen_usage_doc_start(s);
}


size_t
qwen_usage_scan(qwen_usage_scan_t *s, const unsigned char *p, size_t len)
{
    unsigned char         c;
    const unsigned char  *start, *last, *eol, *cr;

    s->event_ended = 0;
    s->event_usage_only = 0;
    s->event_done = 0;

    if (!s->sse) {
        qwen_usage_json(s, p, p + len);
        return len;
    }

    start = p;
    last = p + len;

    while (p < last) {

        switch (s->line) {

        case L_START:

            c = *p;

            if (c == '\n' || c == '\r') {
                p++;

                if (!s->block) {
                    /* a stray blank line ends nothing */

                    if (c == '\r') {
                        s->line = L_CR;
                    }

                    break;
                }

                if (c == '\r') {
                    /* the event ends after a '\n' that may follow */
                    s->line = L_BLANK_CR;
                    break;
                }

                qwen_usage_event_end(s);
                return p - start;
            }

            s->block = 1;
            s->field = 0;
            s->line = L_FIELD;

            /* fall through */

        case L_FIELD:

            while (p < last && s->field < 4) {
                if (*p != (unsigned char) "data"[s->field]) {
                    break;
                }

                s->field++;
                p++;
            }

            if (p == last) {
                break;
            }

            c = *p;

            if (s->field < 4) {
                s->line = L_SKIP;

            } else if (c == ':') {
                p++;
                qwen_usage_data_line(s);
                s->line = L_DATA_SPACE;

            } else if (c == '\n' || c == '\r') {
                /* "data" alone: a data line with an empty value */
                qwen_usage_data_line(s);
                s->line = L_DATA;

            } else {
                s->line = L_SKIP;
            }

            break;

        case L_DATA_SPACE:

            if (*p == ' ') {
                p++;
            }

            s->line = L_DATA;
            break;

        case L_DATA:
        case L_SKIP:

            eol = memchr(p, '\n', last - p);

            if (eol == NULL) {
                eol = last;
            }

            cr = memchr(p, '\r', eol - p);

            if (cr != NULL) {
                eol = cr;
            }

            if (s->line == L_DATA && eol != p) {
                qwen_usage_payload(s, p, eol);
            }

            p = eol;

            if (p == last) {
                break;
            }

            s->line = (*p++ == '\r') ? L_CR : L_START;
            break;

        case L_CR:

            if (*p == '\n') {
                p++;
            }

            s->line = L_START;
            break;

        default: /* L_BLANK_CR */

            if (*p == '\n') {
                p++;
            }

            qwen_usage_event_end(s);
            return p - start;
        }
    }

    return len;
}


int
qwen_usage_scan_maybe_usage_only(const qwen_usage_scan_t *s)
{
    if (!s->sse) {
        return 0;
    }

    if (!s->data_lines) {
        return 1;
    }

    if (s->state == J_ERROR || s->doc_choices == C_OTHER) {
        return 0;
    }

    if (s->state == J_END) {
        return s->doc_usage && s->doc_choices == C_EMPTY;
    }

    return 1;
}


int
qwen_usage_scan_finish(qwen_usage_scan_t *s)
{
    s->event_ended = 0;
    s->event_usage_only = 0;
    s->event_done = 0;

    if (!s->sse) {
        if (qwen_usage_doc_end(s)) {
            qwen_usage_commit(s);
            s->complete = 1;
        }

        return s->complete;
    }

    if (s->block) {
        qwen_usage_event_end(s);
    }

    return s->done_seen;
}


static void
qwen_usage_event_end(qwen_usage_scan_t *s)
{
    s->event_ended = 1;

    if (s->data_lines) {
        s->events++;

        if (s->done_pos == QWEN_USAGE_DONE) {
            s->event_done = 1;
            s->done_seen = 1;
        }

        if (qwen_usage_doc_end(s)) {
            qwen_usage_commit(s);
            s->event_usage_only = (s->doc_usage
                                   && s->doc_choices == C_EMPTY);
        }
    }

    s->line = L_START;
    s->block = 0;
    s->data_lines = 0;
    s->done_pos = 0;
}


/* a data line begins: its value continues the event's data */

static void
qwen_usage_data_line(qwen_usage_scan_t *s)
{
    static const unsigned char  lf = '\n';

    if (s->data_lines == 0) {
        s->data_lines = 1;
        s->done_pos = 0;
        qwen_usage_doc_start(s);
        return;
    }

    /* the values of an event's data lines are joined with "\n" */

    qwen_usage_payload(s, &lf, &lf + 1);
}


static void
qwen_usage_payload(qwen_usage_scan_t *s, const unsigned char *p,
    const unsigned char *last)
{
    const unsigned char  *q;

    /* whether the data starts with "[DONE]" */

    for (q = p; s->done_pos < QWEN_USAGE_DONE && q < last; q++) {
        if (*q != (unsigned char) "[DONE]"[s->done_pos]) {
            s->done_pos = QWEN_USAGE_NOT;
            break;
        }

        s->done_pos++;
    }

    qwen_usage_json(s, p, last);
}


static void
qwen_usage_doc_start(qwen_usage_scan_t *s)
{
    s->state = J_VALUE;
    s->depth = 0;
    s->stack = 0;
    s->track = 0;
    s->capture = CAP_NONE;
    s->in_key = 0;
    s->high = 0;

    memset(s->key_class, K_NONE, sizeof(s->key_class));

    s->doc_usage = 0;
    s->doc_model = 0;
    s->doc_mover = 0;
    s->doc_mlen = 0;
    s->doc_choices = C_NONE;
    s->doc_fields = 0;
    memset(s->doc, 0, sizeof(s->doc));
}


/* the document's input ended: whether it was one complete JSON value */

static int
qwen_usage_doc_end(qwen_usage_scan_t *s)
{
    if (s->state == J_NUMBER && s->depth == 0
        && (s->sub == N_ZERO || s->sub == N_INT || s->sub == N_FRAC
            || s->sub == N_EXP_DIGITS))
    {
        qwen_usage_number_end(s);
    }

    return s->state == J_END;
}


static void
qwen_usage_commit(qwen_usage_scan_t *s)
{
    if (s->doc_usage) {
        s->has_usage = 1;
        s->usage_fields = s->doc_fields;
        s->prompt_tokens = s->doc[K_PROMPT - K_PROMPT];
        s->completion_tokens = s->doc[K_COMPLETION - K_PROMPT];
        s->total_tokens = s->doc[K_TOTAL - K_PROMPT];
        s->cached_tokens = s->doc[K_CACHED - K_PROMPT];
        s->reasoning_tokens = s->doc[K_REASONING - K_PROMPT];
    }

    if (s->doc_model && !s->has_model) {
        s->has_model = 1;
        s->model_len = s->doc_mlen;
        s->model_overflow = s->doc_mover;
    }
}


static void
qwen_usage_json(qwen_usage_scan_t *s, const unsigned char *p,
    const unsigned char *last)
{
    unsigned              digit, object;
    unsigned char         c;
    const unsigned char  *run;

    while (p < last) {

        if (s->state == J_STRING) {

            /* the fast path: skip or copy a run of plain string bytes */

            run = p;
            p = qwen_json_string_run(p, last);

            if (s->capture && p != run) {
                qwen_usage_capture(s, run, p - run);
            }

            if (p == last) {
                return;
            }
        }

        c = *p;

        switch (s->state) {

        case J_VALUE:
        case J_ARRAY_FIRST:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (s->state == J_ARRAY_FIRST) {

                if (s->depth == 2 && s->key_class[1] == K_CHOICES) {
                    /* the first byte in the top-level "choices" array */
                    s->doc_choices = (c == ']' && s->doc_choices != C_OTHER)
                                     ? C_EMPTY : C_OTHER;
                }

                if (c == ']') {
                    qwen_usage_close(s);
                    break;
                }
            }

            qwen_usage_begin_value(s, c);

            if (s->state == J_ERROR) {
                return;
            }

            break;

        case J_OBJECT_FIRST:
        case J_OBJECT_NAME:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (c == '"') {
                qwen_usage_begin_name(s);
                break;
            }

            if (c == '}' && s->state == J_OBJECT_FIRST) {
                qwen_usage_close(s);
                break;
            }

            s->state = J_ERROR;
            return;

        case J_COLON:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            if (c != ':') {
                s->state = J_ERROR;
                return;
            }

            s->state = J_VALUE;
            break;

        case J_AFTER:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            object = (s->stack >> (s->depth - 1)) & 1;

            if (c == ',') {
                s->state = object ? J_OBJECT_NAME : J_VALUE;
                break;
            }

            if (c == (object ? '}' : ']')) {
                qwen_usage_close(s);
                break;
            }

            s->state = J_ERROR;
            return;

        case J_END:

            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                break;
            }

            s->state = J_ERROR;
            return;

        case J_STRING:

            /* the fast path stopped at '"', '\\' or a control character */

            if (c == '"') {
                qwen_usage_string_end(s);
                break;
            }

            if (c == '\\') {
                s->state = J_ESCAPE;
                break;
            }

            s->state = J_ERROR;
            return;

        case J_ESCAPE:

            if (c == 'u') {
                s->state = J_UNICODE;
                s->hex = 0;
                s->cp = 0;
                p++;
                continue;
            }

            if (qwen_json_simple_escape(c) < 0) {
                s->state = J_ERROR;
                return;
            }

            if (s->capture) {
                c = (unsigned char) qwen_json_simple_escape(c);
                qwen_usage_capture(s, &c, 1);
            }

            s->state = J_STRING;
            break;

        case J_UNICODE:

            if (qwen_json_hex(c) < 0) {
                s->state = J_ERROR;
                return;
            }

            s->cp = (s->cp << 4) | (uint32_t) qwen_json_hex(c);

            if (++s->hex == 4) {
                if (s->capture) {
                    qwen_usage_capture_cp(s, s->cp);
                }

                s->state = J_STRING;
            }

            break;

        case J_NUMBER:

            if (!s->num_ok
                && (s->sub == N_INT || s->sub == N_FRAC
                    || s->sub == N_EXP_DIGITS))
            {
                /* the digits of a number that is not a count */

                while ((unsigned) (c - '0') <= 9) {
                    if (++p == last) {
                        return;
                    }

                    c = *p;
                }
            }

            digit = (unsigned) (c - '0');

            switch (s->sub) {

            case N_MINUS:
                if (digit > 9) {
                    s->state = J_ERROR;
                    return;
                }

                s->sub = (c == '0') ? N_ZERO : N_INT;
                break;

            case N_ZERO:
            case N_INT:
                if (digit <= 9 && s->sub == N_INT) {
                    if (s->num_ok) {
                        s->num = s->num * 10 + digit;

                        if (s->num > QWEN_USAGE_MAX_COUNT) {
                            s->num_ok = 0;
                        }
                    }

                    break;
                }

                if (c == '.') {
                    s->sub = N_DOT;
                    break;
                }

                if (c == 'e' || c == 'E') {
                    s->sub = N_EXP;
                    s->num_ok = 0;
                    break;
                }

                /* the number ended just before c: look at c again */

                qwen_usage_number_end(s);
                continue;

            case N_DOT:
            case N_FRAC:
                if (digit <= 9) {
                    if (digit != 0) {
                        s->num_ok = 0;
                    }

                    s->sub = N_FRAC;
                    break;
                }

                if (s->sub == N_DOT) {
                    s->state = J_ERROR;
                    return;
                }

                if (c == 'e' || c == 'E') {
                    s->sub = N_EXP;
                    s->num_ok = 0;
                    break;
                }

                qwen_usage_number_end(s);
                continue;

            case N_EXP:
                if (c == '+' || c == '-') {
                    s->sub = N_EXP_SIGN;
                    break;
                }

                /* fall through */

            case N_EXP_SIGN:
                if (digit > 9) {
                    s->state = J_ERROR;
                    return;
                }

                s->sub = N_EXP_DIGITS;
                break;

            default: /* N_EXP_DIGITS */
                if (digit <= 9) {
                    break;
                }

                qwen_usage_number_end(s);
                continue;
            }

            break;

        case J_LITERAL:

            if (c != (unsigned char) *s->literal) {
                s->state = J_ERROR;
                return;
            }

            if (*++s->literal == '\0') {
                qwen_usage_value_end(s);
            }

            break;

        case J_DEEP:

            switch (c) {

            case '"':
                s->capture = CAP_NONE;
                s->in_key = 0;
                s->state = J_STRING;
                break;

            case '{':
            case '[':
                if (s->depth == QWEN_USAGE_DEEP) {
                    s->state = J_ERROR;
                    return;
                }

                s->depth++;
                break;

            case '}':
            case ']':
                if (--s->depth == QWEN_USAGE_MAX_DEPTH) {
                    qwen_usage_value_end(s);
                }

                break;
            }

            break;

        default: /* J_ERROR */
            return;
        }

        p++;
    }
}


/* c starts a value in the container at s->depth (0: the root) */

static void
qwen_usage_begin_value(qwen_usage_scan_t *s, unsigned char c)
{
    unsigned  k;
    uint32_t  d;

    d = s->depth;
    k = (d >= 1 && d <= 3) ? s->key_class[d] : K_NONE;

    if (k == K_CHOICES && c != '[') {
        s->doc_choices = C_OTHER;
    }

    switch (c) {

    case '{':
    case '[':

        if (d == QWEN_USAGE_MAX_DEPTH) {
            s->depth++;
            s->state = J_DEEP;
            return;
        }

        s->depth = ++d;

        if (c == '{') {
            s->stack |= (uint64_t) 1 << (d - 1);
            s->state = J_OBJECT_FIRST;

            /* the root, its "usage", or a details object in that */

            if (d == 1
                || (d == 2 && k == K_USAGE)
                || (d == 3 && (k == K_PDETAILS || k == K_CDETAILS)))
            {
                s->track = d;

                if (d == 2) {
                    /* a later "usage" replaces an earlier one */
                    s->doc_fields = 0;
                    memset(s->doc, 0, sizeof(s->doc));
                }
            }

        } else {
            s->stack &= ~((uint64_t) 1 << (d - 1));
            s->state = J_ARRAY_FIRST;
        }

        if (d <= 3) {
            s->key_class[d] = K_NONE;
        }

        return;

    case '"':
        s->in_key = 0;
        s->high = 0;

        if (k == K_MODEL && !s->has_model) {
            s->capture = CAP_MODEL;
            s->clen = 0;
            s->cover = 0;

        } else {
            s->capture = CAP_NONE;
        }

        s->state = J_STRING;
        return;

    case 't':
        s->literal = "rue";
        s->state = J_LITERAL;
        return;

    case 'f':
        s->literal = "alse";
        s->state = J_LITERAL;
        return;

    case 'n':
        s->literal = "ull";
        s->state = J_LITERAL;
        return;
    }

    if (c != '-' && (c < '0' || c > '9')) {
        s->state = J_ERROR;
        return;
    }

    if (k >= K_PROMPT && k <= K_REASONING) {
        s->num_field = (int) (k - K_PROMPT);
        s->num_ok = (c != '-');
        s->num = (c == '-') ? 0 : (uint64_t) (c - '0');

    } else {
        s->num_field = -1;
        s->num_ok = 0;
    }

    s->sub = (c == '-') ? N_MINUS : (c == '0') ? N_ZERO : N_INT;
    s->state = J_NUMBER;
}


static void
qwen_usage_begin_name(qwen_usage_scan_t *s)
{
    s->in_key = 1;
    s->high = 0;

    /* names are decoded only on the usage path */

    if (s->depth <= 3 && s->track >= s->depth) {
        s->capture = CAP_KEY;
        s->clen = 0;
        s->cover = 0;

    } else {
        s->capture = CAP_NONE;
    }

    s->state = J_STRING;
}


/* the container at s->depth closes */

static void
qwen_usage_close(qwen_usage_scan_t *s)
{
    uint32_t  d;

    d = s->depth;

    if (s->track >= d) {
        if (d == 2) {
            s->doc_usage = 1;
        }

        s->track = d - 1;
    }

    s->depth = d - 1;

    qwen_usage_value_end(s);
}


/* a value ended; s->depth is that of its container */

static void
qwen_usage_value_end(qwen_usage_scan_t *s)
{
    if (s->depth == 0) {
        s->state = J_END;

    } else if (s->depth > QWEN_USAGE_MAX_DEPTH) {
        s->state = J_DEEP;

    } else {
        s->state = J_AFTER;
    }
}


static void
qwen_usage_string_end(qwen_usage_scan_t *s)
{
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    if (s->capture && s->high) {
        qwen_usage_capture_raw(s, u, qwen_json_unpaired(&s->high, u));
    }

    if (s->in_key) {
        s->in_key = 0;
        qwen_usage_name_end(s);
        s->capture = CAP_NONE;
        s->state = J_COLON;
        return;
    }

    if (s->capture == CAP_MODEL) {
        s->doc_model = 1;
        s->doc_mover = s->cover;
        s->doc_mlen = s->cover ? qwen_usage_utf8_cut(s->model, s->clen)
                               : s->clen;
    }

    s->capture = CAP_NONE;

    qwen_usage_value_end(s);
}


static void
qwen_usage_name_end(qwen_usage_scan_t *s)
{
    size_t          n;
    unsigned        k;
    unsigned char  *key;

    if (s->capture != CAP_KEY) {
        return;
    }

    k = K_NONE;
    n = s->clen;
    key = s->key;

    if (s->cover) {
        goto done;
    }

    switch (s->depth) {

    case 1:
        if (n == 5 && memcmp(key, "model", 5) == 0) {
            k = K_MODEL;

        } else if (n == 5 && memcmp(key, "usage", 5) == 0) {
            k = K_USAGE;

        } else if (n == 7 && memcmp(key, "choices", 7) == 0) {
            k = K_CHOICES;
        }

        break;

    case 2:
        if (n == 13 && memcmp(key, "prompt_tokens", 13) == 0) {
            k = K_PROMPT;

        } else if (n == 17 && memcmp(key, "completion_tokens", 17) == 0) {
            k = K_COMPLETION;

        } else if (n == 12 && memcmp(key, "total_tokens", 12) == 0) {
            k = K_TOTAL;

        } else if (n == 21 && memcmp(key, "prompt_tokens_details", 21) == 0)
        {
            k = K_PDETAILS;

        } else if (n == 25
                   && memcmp(key, "completion_tokens_details", 25) == 0)
        {
            k = K_CDETAILS;
        }

        break;

    default: /* 3 */
        if (s->key_class[2] == K_PDETAILS) {
            if (n == 13 && memcmp(key, "cached_tokens", 13) == 0) {
                k = K_CACHED;
            }

        } else if (n == 16 && memcmp(key, "reasoning_tokens", 16) == 0) {
            k = K_REASONING;
        }

        break;
    }

done:

    s->key_class[s->depth] = (unsigned char) k;
}


static void
qwen_usage_number_end(qwen_usage_scan_t *s)
{
    if (s->num_ok) {
        s->doc[s->num_field] = s->num;
        s->doc_fields |= 1u << s->num_field;
    }

    qwen_usage_value_end(s);
}


/* appends n bytes to the string being decoded, as far as they fit */

static void
qwen_usage_capture(qwen_usage_scan_t *s, const unsigned char *b, size_t n)
{
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    /* a high surrogate that no low one follows */
    qwen_usage_capture_raw(s, u, qwen_json_unpaired(&s->high, u));
    qwen_usage_capture_raw(s, b, n);
}


static void
qwen_usage_capture_raw(qwen_usage_scan_t *s, const unsigned char *b,
    size_t n)
{
    size_t          cap;
    unsigned char  *buf;

    if (s->capture == CAP_KEY) {
        buf = s->key;
        cap = QWEN_USAGE_KEY_MAX;

    } else {
        buf = s->model;
        cap = QWEN_USAGE_MODEL_MAX;
    }

    if (n > cap - s->clen) {
        /* fill the buffer: nothing fits after it, it stays a prefix */
        n = cap - s->clen;
        s->cover = 1;
    }

    memcpy(buf + s->clen, b, n);
    s->clen += n;
}


/* appends a \u escape's code point as UTF-8, pairing surrogates */

static void
qwen_usage_capture_cp(qwen_usage_scan_t *s, uint32_t cp)
{
    size_t         n;
    unsigned char  u[QWEN_JSON_UNICODE_MAX];

    n = qwen_json_unicode(&s->high, cp, u);

    qwen_usage_capture_raw(s, u, n);
}


/* the length of p without a UTF-8 character that the end cuts in two */

static size_t
qwen_usage_utf8_cut(const unsigned char *p, size_t len)
{
    size_t  i, need;

    i = len;

    while (i > 0 && len - i < 3 && (p[i - 1] & 0xc0) == 0x80) {
        i--;
    }

    if (i == 0) {
        return len;
    }

    i--;

    need = (p[i] >= 0xf0) ? 4 : (p[i] >= 0xe0) ? 3 : (p[i] >= 0xc0) ? 2 : 1;

    return (len - i < need) ? i : len;
}


size_t
qwen_usage_scan_skim(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len)
{
    const unsigned char  *last, *q, *end, *u;

    s->event_ended = 0;
    s->event_usage_only = 0;
    s->event_done = 0;

    if (!s->sse || s->line != L_START || s->block || !s->has_model
        || len < 8 || memcmp(p, "data:", 5) != 0)
    {
        return 0;
    }

    last = p + len;
    q = p + 5;

    if (*q == ' ') {
        q++;
    }

    if (*q != '{') {
        return 0;
    }

    /*
     * A few long memchr() runs rather than a look at every byte: the
     * blank line that ends the event (events with a '\r' take the long
     * way), no \u escape that could spell a name, and every "usage" a
     * member whose value is null, found by its rare letter 'g'.
     */

    end = NULL;

    for (u = q; u < last; u++) {
        u = memchr(u, '\n', last - u);

        if (u == NULL) {
            return 0;
        }

        if (u + 1 < last && u[1] == '\n') {
            end = u + 2;
            break;
        }
    }

    if (end == NULL) {
        return 0;
    }

    /* a lone '\r' ends a line too: such events take the long way */

    if (memchr(q, '\r', end - q) != NULL) {
        return 0;
    }

    for (u = q; u < end; u += 2) {
        u = memchr(u, '\\', end - u);

        if (u == NULL) {
            break;
        }

        if (u + 1 < end && u[1] == 'u') {
            return 0;
        }
    }

    for (u = q + 4; u < end; u++) {
        u = memchr(u, 'g', end - u);

        if (u == NULL) {
            break;
        }

        /* "usa" 'g' "e\"" */

        if (end - u < 3 || u[1] != 'e' || u[2] != '"' || u[-1] != 'a'
            || u[-2] != 's' || u[-3] != 'u' || u[-4] != '"')
        {
            continue;
        }

        u += 3;

        while (u < end && (*u == ' ' || *u == '\t')) {
            u++;
        }

        if (u == end || *u != ':') {
            return 0;
        }

        u++;

        while (u < end && (*u == ' ' || *u == '\t')) {
            u++;
        }

        if (end - u < 4
            || u[0] != 'n' || u[1] != 'u' || u[2] != 'l' || u[3] != 'l')
        {
            return 0;
        }

        u += 3;
    }

    s->events++;
    s->event_ended = 1;

    return end - p;
}
