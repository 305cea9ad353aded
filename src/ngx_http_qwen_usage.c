
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
 *
 * Streams take faster paths, with the same results.  An event whole in
 * the piece, one data line with a JSON object or "[DONE]" (the shape of
 * every chat.completion.chunk), is read in place by qwen_usage_fast(),
 * not byte by byte through the state machines.  An event that the end
 * of a piece cuts is kept in the carry, up to QWEN_USAGE_CARRY_MAX bytes,
 * until its end comes, and then read whole the same way.  And
 * qwen_usage_scan_skim() only counts an ordinary chunk whose every
 * "usage" is null once the model is known, since nothing in it can
 * change the results.
 */


#include <string.h>

#if (defined __SSE2__)
#include <emmintrin.h>
#endif

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

/* qwen_usage_fast(): the event may be whole once more bytes come */
#define QWEN_USAGE_SHORT  ((size_t) -1)

/* p starts with "data:" */
#define qwen_usage_data_field(p)                                            \
    ((p)[0] == 'd' && (p)[1] == 'a' && (p)[2] == 't' && (p)[3] == 'a'       \
     && (p)[4] == ':')


/* n bytes at a and at b are the same (short ones: no call) */

static inline int
qwen_usage_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    while (n--) {
        if (*a++ != *b++) {
            return 0;
        }
    }

    return 1;
}


#define qwen_usage_is(name, n, lit)                                         \
    ((n) == sizeof(lit) - 1                                                 \
     && qwen_usage_eq(name, (const unsigned char *) lit, n))


static size_t qwen_usage_carry(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len);
static size_t qwen_usage_sse(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len);
static size_t qwen_usage_fast(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len, int json);
static unsigned qwen_usage_fast_name(const unsigned char *name, size_t n,
    uint32_t depth, unsigned parent);
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
    /* the carry is not cleared: carry_len says what of it counts */
    memset(s, 0, offsetof(qwen_usage_scan_t, carry));

    s->sse = sse ? 1 : 0;
    s->line = L_START;

    qwen_usage_doc_start(s);
}


size_t
qwen_usage_scan(qwen_usage_scan_t *s, const unsigned char *p, size_t len)
{
    size_t  n;

    s->event_ended = 0;
    s->event_usage_only = 0;
    s->event_done = 0;

    if (!s->sse) {

        /* a whole document in one piece, the usual small answer */

        if (s->state == J_VALUE && s->depth == 0 && len
            && qwen_usage_fast(s, p, len, 1) == len)
        {
            return len;
        }

        qwen_usage_json(s, p, p + len);
        return len;
    }

    if (len == 0) {
        return 0;
    }

    if (s->carry_len) {
        return qwen_usage_carry(s, p, len);
    }

    if (s->line == L_START && !s->block) {

        if (len <= QWEN_USAGE_CARRY_MAX && len >= 5 && qwen_usage_data_field(p)
            && memchr(p, '\n', len) == NULL && memchr(p, '\r', len) == NULL)
        {
            /*
             * The event goes on in the next piece: its start is kept, to
             * be read with the rest (no line ends in it, so nothing ends
             * before the rest comes).
             */

            memcpy(s->carry, p, len);
            s->carry_len = len;
            s->block = 1;

            return len;
        }

        n = qwen_usage_fast(s, p, len, 0);

        if (n != 0 && n != QWEN_USAGE_SHORT) {
            return n;
        }
    }

    return qwen_usage_sse(s, p, len);
}


/*
 * The rest of an event whose start is in the carry.  When its end comes
 * soon enough, the whole event is read from the carry, by the fast path
 * if it can, else byte by byte; otherwise the carry is read byte by byte
 * and the scan goes on byte by byte.
 */

static size_t
qwen_usage_carry(qwen_usage_scan_t *s, const unsigned char *p, size_t len)
{
    size_t                n, m;
    const unsigned char  *eol;

    eol = memchr(p, '\n', len);

    if (eol == NULL) {
        if (s->carry_len + len <= QWEN_USAGE_CARRY_MAX
            && memchr(p, '\r', len) == NULL)
        {
            memcpy(s->carry + s->carry_len, p, len);
            s->carry_len += len;
            return len;
        }

        goto flush;
    }

    /* the carry has no line end: this one ends the data line */

    n = (size_t) (eol - p) + 2;

    if (n > len || eol[1] != '\n' || s->carry_len + n > QWEN_USAGE_CARRY_MAX
        || memchr(p, '\r', eol - p) != NULL)
    {
        goto flush;
    }

    memcpy(s->carry + s->carry_len, p, n);

    m = s->carry_len + n;
    s->carry_len = 0;
    s->block = 0;

    if (qwen_usage_scan_skim(s, s->carry, m) != m
        && qwen_usage_fast(s, s->carry, m, 0) != m)
    {
        /* the event ends with the carry: this reads it to its end */
        (void) qwen_usage_sse(s, s->carry, m);
    }

    return n;

flush:

    m = s->carry_len;
    s->carry_len = 0;
    s->block = 0;

    /* no line ends in the carry: this reads all of it and ends nothing */
    (void) qwen_usage_sse(s, s->carry, m);

    return qwen_usage_sse(s, p, len);
}


/* the SSE line parser, byte by byte */

static size_t
qwen_usage_sse(qwen_usage_scan_t *s, const unsigned char *p, size_t len)
{
    unsigned char         c;
    const unsigned char  *start, *last, *eol, *cr;

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
    size_t  n;

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

    if (s->carry_len) {
        /* the body ends in the middle of an event: read what came of it */
        n = s->carry_len;
        s->carry_len = 0;
        s->block = 0;
        (void) qwen_usage_sse(s, s->carry, n);
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


/*
 * The skim's test of an event's data, from q (its '{', past "data:") on:
 * where the event ends (just past the first "\n\n"), or NULL if it does
 * not end before last or is not for the skim: a '\r' in it (a lone '\r'
 * ends a line too), a \u escape (it could spell a name), or a "usage"
 * member whose value is not null.  "usage" is found by its rare letter 'g'.
 */

#define qwen_usage_skim_usage(u, q, last)                                   \
    /* u is at a 'g': "usa" 'g' "e\"" with a value that is not null */     \
    (u - q >= 4 && u[-1] == 'a' && u[-2] == 's' && u[-3] == 'u'            \
     && u[-4] == '"' && last - u >= 3 && u[1] == 'e' && u[2] == '"'        \
     && !qwen_usage_skim_null(u + 3, last))


static int
qwen_usage_skim_null(const unsigned char *u, const unsigned char *last)
{
    while (u < last && (*u == ' ' || *u == '\t')) {
        u++;
    }

    if (u == last || *u != ':') {
        return 0;
    }

    u++;

    while (u < last && (*u == ' ' || *u == '\t')) {
        u++;
    }

    return last - u >= 4
           && u[0] == 'n' && u[1] == 'u' && u[2] == 'l' && u[3] == 'l';
}


#if (defined __SSE2__)

/*
 * One pass, 64 bytes a branch, for the four bytes that matter: '\n',
 * '\r', '\\' and 'g'; a chunk has only a few of them.
 */

/* '\n' and '\r' are found with the bytes 0x08 to 0x0f, as (b | 7) == 0x0f */

#define qwen_usage_skim_mask16(p)                                           \
    ((uint64_t) (unsigned) _mm_movemask_epi8(                               \
        _mm_or_si128(                                                       \
            _mm_cmpeq_epi8(                                                 \
                _mm_or_si128(_mm_loadu_si128((const __m128i *) (p)), low),  \
                ctl),                                                       \
            _mm_or_si128(                                                   \
                _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *) (p)), bs), \
                _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *) (p)), g)))))

static const unsigned char *
qwen_usage_skim_end(const unsigned char *q, const unsigned char *last)
{
    uint64_t              mask;
    const unsigned char  *b, *u, *escaped;
    __m128i               low, ctl, bs, g;

    low = _mm_set1_epi8(0x07);
    ctl = _mm_set1_epi8(0x0f);
    bs = _mm_set1_epi8('\\');
    g = _mm_set1_epi8('g');

    /* the byte after a backslash is escaped: not a backslash of its own */
    escaped = NULL;

    for (b = q; b < last; b += 64) {

        if (last - b >= 64) {
            mask = qwen_usage_skim_mask16(b)
                   | qwen_usage_skim_mask16(b + 16) << 16
                   | qwen_usage_skim_mask16(b + 32) << 32
                   | qwen_usage_skim_mask16(b + 48) << 48;

        } else {
            mask = 0;

            for (u = b; last - u >= 16; u += 16) {
                mask |= qwen_usage_skim_mask16(u) << (u - b);
            }

            for ( /* void */ ; u < last; u++) {
                if (*u == '\n' || *u == '\r' || *u == '\\' || *u == 'g') {
                    mask |= (uint64_t) 1 << (u - b);
                }
            }
        }

        while (mask) {
            u = b + __builtin_ctzll(mask);
            mask &= mask - 1;

            switch (*u) {

            case '\n':
                if (u + 1 == last) {
                    return NULL;
                }

                if (u[1] == '\n') {
                    return u + 2;
                }

                break;

            case '\r':
                return NULL;

            case '\\':
                if (u == escaped) {
                    break;
                }

                if (u + 1 == last || u[1] == 'u') {
                    return NULL;
                }

                escaped = u + 1;
                break;

            case 'g':
                if (qwen_usage_skim_usage(u, q, last)) {
                    return NULL;
                }

                break;

            default: /* a tab, or another byte from 0x08 to 0x0f */
                break;
            }
        }
    }

    return NULL;
}

#else

/* a few long memchr() runs rather than a look at every byte */

static const unsigned char *
qwen_usage_skim_end(const unsigned char *q, const unsigned char *last)
{
    const unsigned char  *end, *u;

    end = NULL;

    for (u = q; u < last; u++) {
        u = memchr(u, '\n', last - u);

        if (u == NULL) {
            return NULL;
        }

        if (u + 1 < last && u[1] == '\n') {
            end = u + 2;
            break;
        }
    }

    if (end == NULL || memchr(q, '\r', end - q) != NULL) {
        return NULL;
    }

    for (u = q; u < end; u += 2) {
        u = memchr(u, '\\', end - u);

        if (u == NULL) {
            break;
        }

        if (u + 1 < end && u[1] == 'u') {
            return NULL;
        }
    }

    for (u = q; u < end; u++) {
        u = memchr(u, 'g', end - u);

        if (u == NULL) {
            break;
        }

        if (qwen_usage_skim_usage(u, q, end)) {
            return NULL;
        }
    }

    return end;
}

#endif


size_t
qwen_usage_scan_skim(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len)
{
    const unsigned char  *last, *q, *end;

    s->event_ended = 0;
    s->event_usage_only = 0;
    s->event_done = 0;

    if (!s->sse || s->line != L_START || s->block || !s->has_model
        || len < 8 || !qwen_usage_data_field(p))
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

    end = qwen_usage_skim_end(q, last);

    if (end == NULL) {
        return 0;
    }

    s->events++;
    s->event_ended = 1;

    return end - p;
}


/*
 * The fast path of qwen_usage_scan(), at the start of an event: an event
 * whole in p..p+len, made of one data line that holds "[DONE]" or a JSON
 * object, then the blank line, with no '\r' (the common shape of a
 * chat.completion.chunk stream).  The line is read in place, not byte by
 * byte through the state machines, to the same results, and its length
 * is returned with event_ended set.
 *
 * Anything else is left to the byte-wise scanner: 0 is returned and
 * nothing is changed, as with invalid JSON, escapes in a member name on
 * the usage path or in the model, a model longer than model[], nesting
 * deeper than 64, another line in the event.  QWEN_USAGE_SHORT says that
 * the bytes end before the event does while nothing seen so far sends it
 * to the byte-wise scanner.
 */

#define qwen_usage_fast_ws(q, last)                                         \
    while (q < last                                                         \
           && (*q == ' ' || *q == '\t'                                      \
               || (json && (*q == '\n' || *q == '\r'))))                    \
    {                                                                       \
        q++;                                                                \
    }                                                                       \
                                                                            \
    if (q == last) {                                                        \
        return QWEN_USAGE_SHORT;                                            \
    }

static size_t
qwen_usage_fast(qwen_usage_scan_t *s, const unsigned char *p, size_t len,
    int json)
{
    int                   esc;
    size_t                n, model_len;
    uint32_t              d, track;
    unsigned              k, c, choices, fields, usage, num_ok;
    uint64_t              stack, num, doc[5];
    unsigned char         cls[4];
    const unsigned char  *q, *last, *str, *model, *lit;

    last = p + len;

    if (json) {
        /* a whole document: white space, then the root object */

        q = p;
        qwen_usage_fast_ws(q, last);

        if (*q != '{') {
            return 0;
        }

        goto object;
    }

    if (len < 7 || !qwen_usage_data_field(p)) {
        return 0;
    }

    q = p + 5;

    if (*q == ' ') {
        q++;
    }

    if (*q == '[') {

        /* "[DONE]", and whatever follows it on the line */

        n = (size_t) (last - q);

        if (n < 6) {
            return qwen_usage_eq(q, (const unsigned char *) "[DONE]", n)
                   ? QWEN_USAGE_SHORT : 0;
        }

        if (!qwen_usage_eq(q, (const unsigned char *) "[DONE]", 6)) {
            return 0;
        }

        str = memchr(q + 6, '\n', last - q - 6);

        if (str == NULL) {
            return QWEN_USAGE_SHORT;
        }

        if (memchr(q + 6, '\r', str - q - 6) != NULL) {
            return 0;
        }

        if (str + 1 == last) {
            return QWEN_USAGE_SHORT;
        }

        if (str[1] != '\n') {
            return 0;
        }

        /* not JSON: no results but the event and [DONE] */

        s->events++;
        s->done_seen = 1;
        s->event_done = 1;
        s->event_ended = 1;

        return (size_t) (str + 2 - p);
    }

    if (*q != '{') {
        return 0;
    }

object:

    d = 0;
    track = 0;
    stack = 0;
    choices = C_NONE;
    fields = 0;
    usage = 0;
    model = NULL;
    model_len = 0;
    memset(doc, 0, sizeof(doc));
    memset(cls, K_NONE, sizeof(cls));

value:

    /* q is at the first byte of a value in the container at depth d */

    c = *q;
    k = (d >= 1 && d <= 3) ? cls[d] : K_NONE;

    if (k == K_CHOICES && c != '[') {
        choices = C_OTHER;
    }

    switch (c) {

    case '{':
    case '[':

        if (d == QWEN_USAGE_MAX_DEPTH) {
            return 0;
        }

        d++;

        if (c == '{') {
            stack |= (uint64_t) 1 << (d - 1);

            if (d == 1
                || (d == 2 && k == K_USAGE)
                || (d == 3 && (k == K_PDETAILS || k == K_CDETAILS)))
            {
                track = d;

                if (d == 2) {
                    /* a later "usage" replaces an earlier one */
                    fields = 0;
                    memset(doc, 0, sizeof(doc));
                }
            }

        } else {
            stack &= ~((uint64_t) 1 << (d - 1));
        }

        if (d <= 3) {
            cls[d] = K_NONE;
        }

        q++;
        qwen_usage_fast_ws(q, last);

        if (c == '{') {
            if (*q == '}') {
                goto close;
            }

            goto name;
        }

        if (k == K_CHOICES) {
            choices = (*q == ']' && choices != C_OTHER) ? C_EMPTY : C_OTHER;
        }

        if (*q == ']') {
            goto close;
        }

        goto value;

    case '"':

        str = ++q;
        esc = 0;

        for ( ;; ) {
            q = qwen_json_string_run(q, last);

            if (q == last) {
                return QWEN_USAGE_SHORT;
            }

            if (*q == '"') {
                break;
            }

            if (*q != '\\') {
                /* a control byte: not JSON, or the line ends */
                return 0;
            }

            esc = 1;

            if (last - q < 2) {
                return QWEN_USAGE_SHORT;
            }

            if (q[1] == 'u') {
                if (last - q < 6) {
                    return QWEN_USAGE_SHORT;
                }

                if (qwen_json_hex(q[2]) < 0 || qwen_json_hex(q[3]) < 0
                    || qwen_json_hex(q[4]) < 0 || qwen_json_hex(q[5]) < 0)
                {
                    return 0;
                }

                q += 6;
                continue;
            }

            if (qwen_json_simple_escape(q[1]) < 0) {
                return 0;
            }

            q += 2;
        }

        if (k == K_MODEL && !s->has_model) {
            if (esc || (size_t) (q - str) > QWEN_USAGE_MODEL_MAX) {
                return 0;
            }

            model = str;
            model_len = (size_t) (q - str);
        }

        q++;
        goto after;

    case 't':
        lit = (const unsigned char *) "true";
        n = 4;
        goto literal;

    case 'f':
        lit = (const unsigned char *) "false";
        n = 5;
        goto literal;

    case 'n':
        lit = (const unsigned char *) "null";
        n = 4;

    literal:

        if ((size_t) (last - q) < n) {
            return QWEN_USAGE_SHORT;
        }

        if (!qwen_usage_eq(q, lit, n)) {
            return 0;
        }

        q += n;
        goto after;
    }

    /* a number */

    num_ok = (k >= K_PROMPT && k <= K_REASONING);
    num = 0;

    if (c == '-') {
        num_ok = 0;

        if (++q == last) {
            return QWEN_USAGE_SHORT;
        }
    }

    if ((unsigned) (*q - '0') > 9) {
        return 0;
    }

    if (*q == '0') {
        q++;

    } else {
        do {
            if (num_ok) {
                num = num * 10 + (unsigned) (*q - '0');

                if (num > QWEN_USAGE_MAX_COUNT) {
                    num_ok = 0;
                }
            }

            q++;

        } while (q < last && (unsigned) (*q - '0') <= 9);
    }

    if (q == last) {
        return QWEN_USAGE_SHORT;
    }

    if (*q == '.') {
        if (++q == last) {
            return QWEN_USAGE_SHORT;
        }

        if ((unsigned) (*q - '0') > 9) {
            return 0;
        }

        do {
            if (*q != '0') {
                num_ok = 0;
            }

            q++;

        } while (q < last && (unsigned) (*q - '0') <= 9);

        if (q == last) {
            return QWEN_USAGE_SHORT;
        }
    }

    if (*q == 'e' || *q == 'E') {
        num_ok = 0;

        if (++q == last) {
            return QWEN_USAGE_SHORT;
        }

        if (*q == '+' || *q == '-') {
            if (++q == last) {
                return QWEN_USAGE_SHORT;
            }
        }

        if ((unsigned) (*q - '0') > 9) {
            return 0;
        }

        do {
            q++;
        } while (q < last && (unsigned) (*q - '0') <= 9);

        if (q == last) {
            return QWEN_USAGE_SHORT;
        }
    }

    if (num_ok) {
        doc[k - K_PROMPT] = num;
        fields |= 1u << (k - K_PROMPT);
    }

after:

    /* a value ended just before q */

    if (d == 0) {
        goto end;
    }

    qwen_usage_fast_ws(q, last);

    if (*q == ',') {
        q++;
        qwen_usage_fast_ws(q, last);

        if ((stack >> (d - 1)) & 1) {
            goto name;
        }

        goto value;
    }

    if (*q != (((stack >> (d - 1)) & 1) ? '}' : ']')) {
        return 0;
    }

close:

    /* q is at the bracket that closes the container at depth d */

    if (track >= d) {
        if (d == 2) {
            usage = 1;
        }

        track = d - 1;
    }

    d--;
    q++;
    goto after;

name:

    /* q is at a member name in the object at depth d */

    if (*q != '"') {
        return 0;
    }

    str = ++q;
    esc = 0;

    for ( ;; ) {
        q = qwen_json_string_run(q, last);

        if (q == last) {
            return QWEN_USAGE_SHORT;
        }

        if (*q == '"') {
            break;
        }

        if (*q != '\\') {
            return 0;
        }

        /* any valid escape: the name is not on the usage path, see below */

        esc = 1;

        if (last - q < 2) {
            return QWEN_USAGE_SHORT;
        }

        if (q[1] == 'u') {
            if (last - q < 6) {
                return QWEN_USAGE_SHORT;
            }

            if (qwen_json_hex(q[2]) < 0 || qwen_json_hex(q[3]) < 0
                || qwen_json_hex(q[4]) < 0 || qwen_json_hex(q[5]) < 0)
            {
                return 0;
            }

            q += 6;
            continue;
        }

        if (qwen_json_simple_escape(q[1]) < 0) {
            return 0;
        }

        q += 2;
    }

    if (d <= 3 && track >= d) {
        /* names on the usage path are compared decoded: not here */

        if (esc) {
            return 0;
        }

        cls[d] = (unsigned char) qwen_usage_fast_name(str, (size_t) (q - str),
                                                      d, cls[2]);
    }

    q++;
    qwen_usage_fast_ws(q, last);

    if (*q != ':') {
        return 0;
    }

    q++;
    qwen_usage_fast_ws(q, last);

    goto value;

end:

    if (json) {
        /* nothing but white space may follow, to the end of the piece */

        while (q < last
               && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        {
            q++;
        }

        if (q != last) {
            return 0;
        }

        /* the document's results, taken at qwen_usage_scan_finish() */

        s->doc_usage = usage;
        s->doc_fields = fields;
        memcpy(s->doc, doc, sizeof(doc));

        if (model && !s->has_model) {
            memcpy(s->model, model, model_len);
            s->doc_model = 1;
            s->doc_mlen = model_len;
            s->doc_mover = 0;
        }

        s->doc_choices = choices;
        s->depth = 0;
        s->state = J_END;

        return len;
    }

    /* after the object: white space, the line end, the blank line */

    qwen_usage_fast_ws(q, last);

    if (*q != '\n') {
        return 0;
    }

    if (q + 1 == last) {
        return QWEN_USAGE_SHORT;
    }

    if (q[1] != '\n') {
        return 0;
    }

    /* the event is read: its results, as qwen_usage_event_end() takes them */

    s->events++;

    if (usage) {
        s->has_usage = 1;
        s->usage_fields = fields;
        s->prompt_tokens = doc[K_PROMPT - K_PROMPT];
        s->completion_tokens = doc[K_COMPLETION - K_PROMPT];
        s->total_tokens = doc[K_TOTAL - K_PROMPT];
        s->cached_tokens = doc[K_CACHED - K_PROMPT];
        s->reasoning_tokens = doc[K_REASONING - K_PROMPT];
    }

    if (model && !s->has_model) {
        memcpy(s->model, model, model_len);
        s->has_model = 1;
        s->model_len = model_len;
        s->model_overflow = 0;
    }

    s->event_usage_only = (usage && choices == C_EMPTY);
    s->event_ended = 1;

    return (size_t) (q + 2 - p);
}


/* what a member name on the usage path is, as qwen_usage_name_end() says */


static unsigned
qwen_usage_fast_name(const unsigned char *name, size_t n, uint32_t depth,
    unsigned parent)
{
    switch (depth) {

    case 1:
        if (qwen_usage_is(name, n, "model")) {
            return K_MODEL;
        }

        if (qwen_usage_is(name, n, "usage")) {
            return K_USAGE;
        }

        if (qwen_usage_is(name, n, "choices")) {
            return K_CHOICES;
        }

        return K_NONE;

    case 2:
        if (qwen_usage_is(name, n, "prompt_tokens")) {
            return K_PROMPT;
        }

        if (qwen_usage_is(name, n, "completion_tokens")) {
            return K_COMPLETION;
        }

        if (qwen_usage_is(name, n, "total_tokens")) {
            return K_TOTAL;
        }

        if (qwen_usage_is(name, n, "prompt_tokens_details")) {
            return K_PDETAILS;
        }

        if (qwen_usage_is(name, n, "completion_tokens_details")) {
            return K_CDETAILS;
        }

        return K_NONE;

    default: /* 3 */
        if (parent == K_PDETAILS) {
            return (qwen_usage_is(name, n, "cached_tokens"))
                   ? K_CACHED : K_NONE;
        }

        return (qwen_usage_is(name, n, "reasoning_tokens"))
               ? K_REASONING : K_NONE;
    }
}
