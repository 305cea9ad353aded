
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * An incremental JSON validator that also remembers where a few top-level
 * members of a request body live.  It is fed the body piece by piece, in
 * whatever pieces nginx holds it, and never copies or re-serialises it:
 * the request path splices the body by byte offsets instead.
 *
 * This file is plain C with no nginx dependency so that the fuzzers in
 * fuzz/ can link it alone.
 */


#ifndef _NGX_HTTP_QWEN_JSON_H_INCLUDED_
#define _NGX_HTTP_QWEN_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define QWEN_JSON_MAX_DEPTH      128
#define QWEN_JSON_MODEL_MAX      256
#define QWEN_JSON_KEY_MAX        32


/* the type of a value, as seen by its first byte */
enum {
    QWEN_JSON_NONE = 0,
    QWEN_JSON_OBJECT,
    QWEN_JSON_ARRAY,
    QWEN_JSON_STRING,
    QWEN_JSON_NUMBER,
    QWEN_JSON_TRUE,
    QWEN_JSON_FALSE,
    QWEN_JSON_NULL
};


/* the members the gateway cares about */
enum {
    QWEN_FIELD_MODEL = 0,          /* "model" in the root object */
    QWEN_FIELD_STREAM,             /* "stream" in the root object */
    QWEN_FIELD_STREAM_OPTIONS,     /* "stream_options" in the root object */
    QWEN_FIELD_INCLUDE_USAGE,      /* "include_usage" in "stream_options" */
    QWEN_FIELD_MAX_TOKENS,         /* "max_tokens" in the root object */
    QWEN_FIELD_MAX_COMPLETION_TOKENS,  /* "max_completion_tokens" there */
    QWEN_FIELD_N
};


typedef struct {
    int64_t             start;     /* offset of the value's first byte */
    int64_t             end;       /* offset just past its last byte */
    unsigned            type;      /* QWEN_JSON_* */
    unsigned            count;     /* times the member appeared */
} qwen_json_field_t;


typedef struct {
    /* parser state */
    unsigned            state;
    unsigned            sub;           /* number or literal sub-state */
    unsigned            depth;
    unsigned            hex;           /* \uXXXX digits seen */
    uint32_t            cp;            /* \uXXXX code point being read */
    uint32_t            high;          /* pending high surrogate */
    const char         *literal;       /* rest of "true"/"false"/"null" */
    unsigned char       stack[QWEN_JSON_MAX_DEPTH];

    int64_t             offset;        /* offset of the next byte */

    /* which watched member the value being parsed belongs to */
    int                 member[3];     /* per depth 1 and 2, -1 if none */
    unsigned            in_key:1;
    unsigned            capture:1;     /* decoding the current string */
    unsigned            capture_overflow:1;

    unsigned char      *cbuf;          /* where the string is decoded */
    size_t              clen;
    size_t              ccap;

    unsigned char       key[QWEN_JSON_KEY_MAX];
    unsigned char       model[QWEN_JSON_MODEL_MAX];

    /* results */
    unsigned            root_type;
    int64_t             root_end;      /* offset of the root's closing '}' */
    unsigned            root_members;
    unsigned            stream_options_members;
    size_t              model_len;
    unsigned            model_overflow:1;
    qwen_json_field_t   fields[QWEN_FIELD_N];

    const char         *error;         /* NULL while the input is valid */
    int64_t             error_offset;
} qwen_json_scan_t;


void qwen_json_scan_init(qwen_json_scan_t *s);

/* feed the next piece; returns 0, or -1 once the input is invalid */
int qwen_json_scan(qwen_json_scan_t *s, const unsigned char *p, size_t len);

/* end of input; returns 0 if a complete JSON value was seen, else -1 */
int qwen_json_scan_finish(qwen_json_scan_t *s);

/*
 * A number token (a field's bytes from start to end) that is a
 * non-negative integer of at most 19 digits, so that it fits: returns 0
 * and sets *value, else -1 (a sign, a fraction, an exponent, a leading
 * zero, anything but digits, too many digits, or no digits at all).
 */
int qwen_json_uint(const unsigned char *p, size_t len, uint64_t *value);

/*
 * Writes s as a JSON string literal, quotes included, into dst, which
 * must hold qwen_json_escaped_len(s, len) bytes; returns the end.
 */
size_t qwen_json_escaped_len(const unsigned char *s, size_t len);
unsigned char *qwen_json_escape(unsigned char *dst, const unsigned char *s,
    size_t len);


#endif /* _NGX_HTTP_QWEN_JSON_H_INCLUDED_ */
