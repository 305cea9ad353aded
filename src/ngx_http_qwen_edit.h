
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The edits the gateway makes to a request body, and the splice that makes
 * them.  The plan says which bytes of the body change: the "model" value,
 * and for a stream "stream_options" (so that the answer carries its
 * usage).  The splice walks the body in whatever pieces it is held and
 * hands on the pieces of the new body, each pointing into the old body or
 * into an edit's text: nothing is copied or allocated.
 *
 * This file is plain C with no nginx dependency so that the fuzzers in
 * fuzz/ and the unit tests in t/unit/ drive the code nginx runs.
 */


#ifndef _NGX_HTTP_QWEN_EDIT_H_INCLUDED_
#define _NGX_HTTP_QWEN_EDIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_http_qwen_json.h"


#define QWEN_EDIT_MAX  2


/* the bytes [start, end) of the body become text[0 .. len) */
typedef struct {
    int64_t                start;
    int64_t                end;
    const unsigned char   *text;
    size_t                 len;
} qwen_edit_t;


typedef struct {
    qwen_edit_t            edits[QWEN_EDIT_MAX];  /* sorted, disjoint */
    unsigned               n;
    unsigned               client_usage:1;    /* the client asked for usage */
    unsigned               usage_injected:1;  /* the plan asks for it */
} qwen_edit_plan_t;


/*
 * The plan for a body the scanner found valid, with a root object and one
 * string "model" (what ngx_http_qwen_check_body() lets through).
 *
 * model is the new "model" value, JSON-escaped, quotes included, or NULL
 * when the model keeps its bytes (see qwen_edit_model_kept()); it must
 * live as long as the plan is used.  stream: the request is a stream;
 * inject_usage: ask a stream for its usage when the client did not.
 */
void qwen_edit_plan(qwen_edit_plan_t *plan, const qwen_json_scan_t *scan,
    const unsigned char *model, size_t model_len, int stream,
    int inject_usage);

/*
 * Whether a "model" whose new name is name[0 .. len) keeps its bytes: the
 * name is the one the body has, written there without escapes.
 */
int qwen_edit_model_kept(const qwen_json_scan_t *scan,
    const unsigned char *name, size_t len);


/*
 * Called with each piece of the new body, in order; p points into the
 * piece of the old body being walked or into an edit's text, len is never
 * 0.  Returns 0, or -1 to stop the splice.
 */
typedef int (*qwen_splice_emit_pt)(void *data, const unsigned char *p,
    size_t len);


typedef struct {
    const qwen_edit_t     *edits;
    unsigned               n;
    unsigned               next;          /* the next edit to make */
    unsigned               emitted:1;     /* its text went out already */
    int64_t                offset;        /* of the next piece in the body */
    int64_t                out;           /* bytes emitted so far */
    qwen_splice_emit_pt    emit;
    void                  *data;
} qwen_splice_t;


void qwen_splice_init(qwen_splice_t *sp, const qwen_edit_plan_t *plan,
    qwen_splice_emit_pt emit, void *data);

/*
 * Feeds the next piece of the old body (len may be 0); the pieces of the
 * new body it covers are emitted before it returns.  Returns 0, or -1 if
 * emit() did.
 */
int qwen_splice(qwen_splice_t *sp, const unsigned char *p, size_t len);

/*
 * The end of the old body.  Returns 0 when every edit was made (sp->out is
 * then the new body's length), -1 if emit() failed or an edit lies beyond
 * the body's end.
 */
int qwen_splice_finish(qwen_splice_t *sp);


#endif /* _NGX_HTTP_QWEN_EDIT_H_INCLUDED_ */
