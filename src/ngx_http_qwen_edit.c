
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The edit plan of a request body and the splice that makes it; see
 * ngx_http_qwen_edit.h.  Plain C, no nginx.
 */


#include <string.h>

#include "ngx_http_qwen_edit.h"


static int qwen_edit_usage(qwen_edit_plan_t *plan,
    const qwen_json_scan_t *scan, int inject_usage, qwen_edit_t *edit);


#define qwen_edit_text(e, s)                                                  \
    (e)->text = (const unsigned char *) (s); (e)->len = sizeof(s) - 1


void
qwen_edit_plan(qwen_edit_plan_t *plan, const qwen_json_scan_t *scan,
    const unsigned char *model, size_t model_len, int stream,
    int inject_usage)
{
    qwen_edit_t               tmp;
    const qwen_json_field_t  *m;

    plan->n = 0;
    plan->client_usage = 0;
    plan->usage_injected = 0;

    if (model != NULL) {
        m = &scan->fields[QWEN_FIELD_MODEL];

        plan->edits[0].start = m->start;
        plan->edits[0].end = m->end;
        plan->edits[0].text = model;
        plan->edits[0].len = model_len;
        plan->n = 1;
    }

    if (stream
        && qwen_edit_usage(plan, scan, inject_usage, &plan->edits[plan->n]))
    {
        plan->usage_injected = 1;
        plan->n++;
    }

    /*
     * The model's value and stream_options (or what is inside it) are
     * different members of the root: the edits never overlap.
     */

    if (plan->n == 2 && plan->edits[1].start < plan->edits[0].start) {
        tmp = plan->edits[0];
        plan->edits[0] = plan->edits[1];
        plan->edits[1] = tmp;
    }
}


/*
 * A stream is asked for its usage ("stream_options":{"include_usage":true})
 * when the client did not ask for it, so that every stream can be counted;
 * the filter then removes the usage-only chunk this produces, and the
 * client sees the stream it asked for.  Only stream_options changes.
 * Returns 1 with an edit to make, or 0.
 */

static int
qwen_edit_usage(qwen_edit_plan_t *plan, const qwen_json_scan_t *scan,
    int inject_usage, qwen_edit_t *edit)
{
    const qwen_json_field_t  *so, *iu;

    so = &scan->fields[QWEN_FIELD_STREAM_OPTIONS];
    iu = &scan->fields[QWEN_FIELD_INCLUDE_USAGE];

    if (so->count && so->type == QWEN_JSON_OBJECT && iu->count == 1
        && iu->type == QWEN_JSON_TRUE)
    {
        plan->client_usage = 1;
        return 0;
    }

    if (!inject_usage) {
        return 0;
    }

    if (so->count > 1 || iu->count > 1) {
        /* which one an upstream reads is its own choice: not ours to edit
         * (ngx_http_qwen_check_body() refuses such a body before) */
        return 0;
    }

    if (so->count == 0) {
        /* before the root object's closing brace */
        edit->start = scan->root_end;
        edit->end = scan->root_end;
        qwen_edit_text(edit, ",\"stream_options\":{\"include_usage\":true}");

        if (scan->root_members == 0) {
            edit->text++;
            edit->len--;
        }

    } else if (so->type == QWEN_JSON_NULL) {
        edit->start = so->start;
        edit->end = so->end;
        qwen_edit_text(edit, "{\"include_usage\":true}");

    } else if (so->type != QWEN_JSON_OBJECT) {
        /* not ours to fix: the upstream will answer it */
        return 0;

    } else if (iu->count == 0) {
        /* right after the opening brace */
        edit->start = so->start + 1;
        edit->end = so->start + 1;

        if (scan->stream_options_members) {
            qwen_edit_text(edit, "\"include_usage\":true,");

        } else {
            qwen_edit_text(edit, "\"include_usage\":true");
        }

    } else {
        /* "include_usage": false, null or anything else */
        edit->start = iu->start;
        edit->end = iu->end;
        qwen_edit_text(edit, "true");
    }

    return 1;
}


int
qwen_edit_model_kept(const qwen_json_scan_t *scan, const unsigned char *name,
    size_t len)
{
    const qwen_json_field_t  *m;

    m = &scan->fields[QWEN_FIELD_MODEL];

    /* an escape is always longer than what it stands for */

    return len == scan->model_len
           && !scan->model_overflow
           && (len == 0 || memcmp(name, scan->model, len) == 0)
           && m->end - m->start == (int64_t) len + 2;
}


void
qwen_splice_init(qwen_splice_t *sp, const qwen_edit_plan_t *plan,
    qwen_splice_emit_pt emit, void *data)
{
    sp->edits = plan->edits;
    sp->n = plan->n;
    sp->next = 0;
    sp->emitted = 0;
    sp->offset = 0;
    sp->out = 0;
    sp->emit = emit;
    sp->data = data;
}


/*
 * The body's bytes up to the next edit go out as one piece, then the
 * edit's text, then the bytes it replaces are skipped; an edit may begin
 * in one piece of the body and end in another.  The work is per piece and
 * per edit, never per byte.
 */

int
qwen_splice(qwen_splice_t *sp, const unsigned char *p, size_t len)
{
    int64_t             at, end, stop;
    const qwen_edit_t  *e;

    at = sp->offset;
    end = at + (int64_t) len;

    for ( ;; ) {
        e = (sp->next < sp->n) ? &sp->edits[sp->next] : NULL;

        stop = (e != NULL && e->start < end) ? e->start : end;

        if (stop > at) {
            if (sp->emit(sp->data, p + (at - sp->offset), (size_t) (stop - at))
                != 0)
            {
                return -1;
            }

            sp->out += stop - at;
            at = stop;
        }

        if (e == NULL || at < e->start) {
            break;
        }

        /* in the edit */

        if (!sp->emitted) {
            if (e->len) {
                if (sp->emit(sp->data, e->text, e->len) != 0) {
                    return -1;
                }

                sp->out += (int64_t) e->len;
            }

            sp->emitted = 1;
        }

        if (e->end > end) {
            /* what it replaces goes on in the next piece */
            break;
        }

        if (e->end > at) {
            at = e->end;
        }

        sp->next++;
        sp->emitted = 0;
    }

    sp->offset = end;

    return 0;
}


int
qwen_splice_finish(qwen_splice_t *sp)
{
    /* an insertion at the very end of an empty body */

    if (qwen_splice(sp, NULL, 0) != 0) {
        return -1;
    }

    return (sp->next == sp->n) ? 0 : -1;
}
