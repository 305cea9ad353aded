
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The request body: validated in one pass wherever nginx keeps it, the
 * model resolved, and a body handed to proxy_pass in which only the
 * "model" value (and, for a stream, "stream_options") changed.
 *
 * The new body is spliced, not re-serialised: buffers that point into the
 * client's body around the old value, and one small buffer with the new
 * value.  A body in memory is not copied at all; a body nginx wrote to a
 * temporary file is read into memory once (see ngx_http_qwen_body_in_memory
 * for why, and for the bound).
 */


#include "ngx_http_qwen_module.h"
#include "ngx_http_qwen_edit.h"


#define NGX_HTTP_QWEN_CLIENT_ERROR  "invalid_request_error"
#define NGX_HTTP_QWEN_FAILED  "The gateway failed to process the request."

#define ngx_http_qwen_reject(err, status, code, param, text)                 \
    ngx_http_qwen_error_set(err, status, NGX_HTTP_QWEN_CLIENT_ERROR, code,  \
                            param, (u_char *) text, sizeof(text) - 1)


/* where qwen_splice() puts the new body */
typedef struct {
    ngx_http_request_t        *request;
    ngx_chain_t              **last;
} ngx_http_qwen_splice_out_t;


static ngx_int_t ngx_http_qwen_check_body(ngx_http_request_t *r,
    qwen_json_scan_t *scan, ngx_http_qwen_error_t *err);
static ngx_int_t ngx_http_qwen_model_valid(ngx_http_request_t *r,
    ngx_str_t *name, const char *which, ngx_http_qwen_error_t *err);
static ngx_int_t ngx_http_qwen_rewrite_body(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, qwen_json_scan_t *scan, ngx_chain_t *body);
static ngx_chain_t *ngx_http_qwen_body_in_memory(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_qwen_body_set(ngx_http_request_t *r,
    ngx_chain_t *out, off_t len);
static int64_t ngx_http_qwen_body_max_tokens(ngx_chain_t *body,
    qwen_json_scan_t *scan);
static ngx_chain_t *ngx_http_qwen_body_splice(ngx_http_request_t *r,
    ngx_chain_t *in, qwen_edit_plan_t *plan, off_t *len);
static int ngx_http_qwen_splice_emit(void *data, const unsigned char *p,
    size_t len);
static ngx_int_t ngx_http_qwen_chain_add(ngx_http_request_t *r,
    ngx_chain_t ***ll, u_char *pos, u_char *last);


ngx_int_t
ngx_http_qwen_body_process(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    off_t limit, ngx_http_qwen_error_t *err)
{
    ngx_int_t                  rc;
    ngx_chain_t               *cl, *body;
    qwen_json_scan_t           scan;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: the body is empty");

        ngx_http_qwen_reject(err, NGX_HTTP_BAD_REQUEST, "invalid_json", NULL,
                             "The request body is empty.");
        return NGX_ERROR;
    }

    /*
     * A chunked body had no Content-Length to check before reading; once
     * read, nginx has set content_length_n to its size.
     */

    if (limit && r->headers_in.content_length_n > limit) {
        ngx_http_qwen_body_too_large(r, r->headers_in.content_length_n,
                                     limit, err);
        return NGX_ERROR;
    }

    body = ngx_http_qwen_body_in_memory(r, r->request_body->bufs);
    if (body == NULL) {
        goto server_error;
    }

    qwen_json_scan_init(&scan);

    for (cl = body; cl; cl = cl->next) {
        if (qwen_json_scan(&scan, cl->buf->pos, cl->buf->last - cl->buf->pos)
            != 0)
        {
            break;
        }
    }

    (void) qwen_json_scan_finish(&scan);

    if (ngx_http_qwen_check_body(r, &scan, err) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->requested_model.len = scan.model_len;
    ctx->requested_model.data = ngx_pnalloc(r->pool, scan.model_len);
    if (ctx->requested_model.data == NULL) {
        goto server_error;
    }

    ngx_memcpy(ctx->requested_model.data, scan.model, scan.model_len);

    if (ngx_http_qwen_model_valid(r, &ctx->requested_model, "requested",
                                  err)
        != NGX_OK)
    {
        ngx_str_null(&ctx->requested_model);
        return NGX_ERROR;
    }

    ctx->stream = (scan.fields[QWEN_FIELD_STREAM].type == QWEN_JSON_TRUE);

    /* the completion the client allows, for the keys' token reservation */
    ctx->max_tokens = ngx_http_qwen_body_max_tokens(body, &scan);

    rc = ngx_http_qwen_catalog_resolve(r, ctx, qlcf->unknown_model);

    if (rc == NGX_ERROR) {
        goto server_error;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: unknown model \"%V\"",
                      &ctx->requested_model);

        if (ngx_http_qwen_error_model_not_found(r, err,
                                                &ctx->requested_model)
            != NGX_OK)
        {
            goto server_error;
        }

        return NGX_ERROR;
    }

    if (ngx_http_qwen_model_valid(r, &ctx->model, "resolved", err)
        != NGX_OK)
    {
        ngx_str_null(&ctx->model);
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "qwen: transformed model \"%V\" to \"%V\" for provider %V",
                  &ctx->requested_model, &ctx->model, &ctx->provider);

    if (ngx_http_qwen_rewrite_body(r, ctx, &scan, body) != NGX_OK) {
        goto server_error;
    }

    if (qlcf->failover || (ctx->entry && ctx->entry->deployments)) {
        /* another deployment may want another model id in the body */
        ctx->scan = ngx_palloc(r->pool, sizeof(qwen_json_scan_t));
        if (ctx->scan == NULL) {
            goto server_error;
        }

        ngx_memcpy(ctx->scan, &scan, sizeof(qwen_json_scan_t));
        ctx->scan->cbuf = NULL;
    }

    return NGX_OK;

server_error:

    ngx_http_qwen_error_set(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", NULL, NULL,
                            (u_char *) NGX_HTTP_QWEN_FAILED,
                            sizeof(NGX_HTTP_QWEN_FAILED) - 1);

    return NGX_ERROR;
}


/*
 * max_completion_tokens, else max_tokens, when the body has one that is a
 * plain non-negative integer; -1 otherwise.  The number is read at the
 * offsets the scanner recorded, across the body's buffers.
 */

static int64_t
ngx_http_qwen_body_max_tokens(ngx_chain_t *body, qwen_json_scan_t *scan)
{
    u_char              num[24];
    off_t               offset, from, to;
    size_t              n;
    uint64_t            value;
    ngx_buf_t          *b;
    ngx_chain_t        *cl;
    qwen_json_field_t  *f;

    f = &scan->fields[QWEN_FIELD_MAX_COMPLETION_TOKENS];

    if (f->count == 0) {
        f = &scan->fields[QWEN_FIELD_MAX_TOKENS];
    }

    if (f->count != 1 || f->type != QWEN_JSON_NUMBER
        || f->end - f->start > 20)
    {
        return -1;
    }

    n = 0;
    offset = 0;

    for (cl = body; cl && offset < f->end; cl = cl->next) {
        b = cl->buf;

        from = ngx_max(f->start, offset);
        to = ngx_min(f->end, offset + (b->last - b->pos));

        if (from < to) {
            ngx_memcpy(num + n, b->pos + (from - offset), to - from);
            n += to - from;
        }

        offset += b->last - b->pos;
    }

    if (n != (size_t) (f->end - f->start)
        || qwen_json_uint(num, n, &value) != 0
        || value > NGX_MAX_INT32_VALUE)
    {
        return -1;
    }

    return (int64_t) value;
}


/*
 * The 413 of a body over the limit, naming the directive that set the
 * limit: qwen_max_body_size, or nginx's client_max_body_size when smaller.
 */

void
ngx_http_qwen_body_too_large(ngx_http_request_t *r, off_t size, off_t limit,
    ngx_http_qwen_error_t *err)
{
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "qwen: rejected request: body of %O bytes is larger than "
                  "%s %O", size,
                  (limit == qlcf->max_body_size) ? "qwen_max_body_size"
                                                 : "client_max_body_size",
                  limit);

    ngx_http_qwen_reject(err, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                         "request_too_large", NULL,
                         "The request body is too large.");
}


static ngx_int_t
ngx_http_qwen_check_body(ngx_http_request_t *r, qwen_json_scan_t *scan,
    ngx_http_qwen_error_t *err)
{
    u_char              *p, *buf;
    const char          *reason, *code, *param;
    qwen_json_field_t   *model;

    model = &scan->fields[QWEN_FIELD_MODEL];
    code = "invalid_request_body";
    param = NULL;

    if (scan->error) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: the body is not valid JSON: "
                      "%s at byte %O", scan->error,
                      (off_t) scan->error_offset);

        buf = ngx_pnalloc(r->pool, 128);
        if (buf == NULL) {
            ngx_http_qwen_reject(err, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "The request body is not valid JSON.");
            return NGX_ERROR;
        }

        p = ngx_snprintf(buf, 128,
                         "The request body is not valid JSON: %s at byte %O.",
                         scan->error, (off_t) scan->error_offset);

        ngx_http_qwen_error_set(err, NGX_HTTP_BAD_REQUEST,
                                NGX_HTTP_QWEN_CLIENT_ERROR, "invalid_json",
                                NULL, buf, p - buf);
        return NGX_ERROR;
    }

    if (scan->root_type != QWEN_JSON_OBJECT) {
        reason = "The request body must be a JSON object.";

    } else if (model->count == 0) {
        reason = "The request body has no \"model\".";
        code = "missing_model";
        param = "model";

    } else if (model->count > 1) {
        reason = "The request body has \"model\" more than once.";
        code = "duplicate_model";
        param = "model";

    } else if (model->type != QWEN_JSON_STRING) {
        reason = "The \"model\" member must be a string.";
        code = "invalid_model";
        param = "model";

    } else if (scan->model_overflow || scan->model_len == 0) {
        reason = "The \"model\" member must be a model name of 1 to 256 "
                 "bytes.";
        code = "invalid_model";
        param = "model";

    } else if (scan->fields[QWEN_FIELD_STREAM].count > 1) {
        reason = "The request body has \"stream\" more than once.";
        param = "stream";

    } else if (scan->fields[QWEN_FIELD_STREAM_OPTIONS].count > 1) {
        reason = "The request body has \"stream_options\" more than once.";
        param = "stream_options";

    } else if (scan->fields[QWEN_FIELD_INCLUDE_USAGE].count > 1) {
        /* which one an upstream reads is its own choice: refuse both */
        reason = "The request body has \"stream_options.include_usage\" "
                 "more than once.";
        param = "stream_options.include_usage";

    } else {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "qwen: rejected request: %s", reason);

    ngx_http_qwen_error_set(err, NGX_HTTP_BAD_REQUEST,
                            NGX_HTTP_QWEN_CLIENT_ERROR, code, param,
                            (u_char *) reason, ngx_strlen(reason));

    return NGX_ERROR;
}


/*
 * A model name goes into log lines, metrics and, as $qwen_model, maybe a
 * header: control characters (CR, LF, ...) would split them, so a name
 * with one is refused before it is used anywhere, and never printed.
 */

static ngx_int_t
ngx_http_qwen_model_valid(ngx_http_request_t *r, ngx_str_t *name,
    const char *which, ngx_http_qwen_error_t *err)
{
    size_t  i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] < 0x20 || name->data[i] == 0x7f) {
            break;
        }
    }

    if (i == name->len) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "qwen: rejected request: the %s model name has a control "
                  "character (0x%02xi) at byte %uz", which,
                  (ngx_int_t) name->data[i], i);

    ngx_http_qwen_reject(err, NGX_HTTP_BAD_REQUEST, "invalid_value", "model",
                         "The model name must not contain control "
                         "characters.");

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_qwen_rewrite_body(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    qwen_json_scan_t *scan, ngx_chain_t *body)
{
    off_t                      len;
    u_char                    *text, *last;
    size_t                     text_len;
    ngx_chain_t               *out;
    qwen_edit_plan_t           plan;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    text = NULL;
    text_len = 0;

    /*
     * A model that stays the same and was written without escapes keeps
     * its bytes.
     */

    if (!qwen_edit_model_kept(scan, ctx->model.data, ctx->model.len)) {
        text_len = qwen_json_escaped_len(ctx->model.data, ctx->model.len);
        text = ngx_pnalloc(r->pool, text_len);
        if (text == NULL) {
            return NGX_ERROR;
        }

        last = qwen_json_escape(text, ctx->model.data, ctx->model.len);
        text_len = last - text;
    }

    /* and for a stream, stream_options (see ngx_http_qwen_edit.c) */

    qwen_edit_plan(&plan, scan, text, text_len, ctx->stream,
                   qlcf->inject_usage);

    if (plan.client_usage) {
        ctx->client_usage = 1;
    }

    if (plan.usage_injected) {
        ctx->usage_injected = 1;
    }

    ctx->body_model = ctx->model;

    if (plan.n == 0) {
        /* the body stays as it is, even in its file */

        ctx->body = r->request_body->bufs;

        if (body != r->request_body->bufs) {
            for ( /* void */ ; body; body = body->next) {
                ngx_pfree(r->pool, body->buf->start);
            }
        }

        return NGX_OK;
    }

    out = ngx_http_qwen_body_splice(r, body, &plan, &len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    ctx->body = body;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen body rewritten, %O bytes from %O",
                   len, (off_t) scan->offset);

    return ngx_http_qwen_body_set(r, out, len);
}


/*
 * The body of another attempt, for a deployment whose model id is not
 * the one in the body now: spliced again from the client's body, which
 * is kept as read (a body still in its file is read into memory then,
 * once, as for the first rewrite).
 */

ngx_int_t
ngx_http_qwen_body_retarget(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_str_t *model)
{
    off_t                      len;
    u_char                    *text, *last;
    size_t                     text_len;
    ngx_chain_t               *cl, *body, *out;
    qwen_edit_plan_t           plan;
    ngx_http_qwen_loc_conf_t  *qlcf;

    if (ctx->body_model.len == model->len
        && ngx_strncmp(ctx->body_model.data, model->data, model->len) == 0)
    {
        return NGX_OK;
    }

    if (ctx->scan == NULL || ctx->body == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: the body cannot be rewritten for model \"%V\"",
                      model);
        return NGX_ERROR;
    }

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    body = ngx_http_qwen_body_in_memory(r, ctx->body);
    if (body == NULL) {
        return NGX_ERROR;
    }

    ctx->body = body;

    text = NULL;
    text_len = 0;

    if (!qwen_edit_model_kept(ctx->scan, model->data, model->len)) {
        text_len = qwen_json_escaped_len(model->data, model->len);
        text = ngx_pnalloc(r->pool, text_len);
        if (text == NULL) {
            return NGX_ERROR;
        }

        last = qwen_json_escape(text, model->data, model->len);
        text_len = last - text;
    }

    qwen_edit_plan(&plan, ctx->scan, text, text_len, ctx->stream,
                   qlcf->inject_usage);

    if (plan.n == 0) {
        /* the client's body as it came */
        len = 0;

        for (cl = body; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }

        out = body;

    } else {
        out = ngx_http_qwen_body_splice(r, body, &plan, &len);
        if (out == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->body_model = *model;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen body for model \"%V\", %O bytes", model, len);

    return ngx_http_qwen_body_set(r, out, len);
}


static ngx_int_t
ngx_http_qwen_body_set(ngx_http_request_t *r, ngx_chain_t *out, off_t len)
{
    ngx_table_elt_t  *h;

    r->request_body->bufs = out;
    r->headers_in.content_length_n = len;

    /* keep $content_length and the header in step with the new body */

    h = r->headers_in.content_length;

    if (h != NULL) {
        h->value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (h->value.data == NULL) {
            return NGX_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%O", len)
                       - h->value.data;
    }

    return NGX_OK;
}


/*
 * Returns the body as a chain of buffers in memory: the request's own
 * chain if it is all in memory, else a copy whose file parts were read.
 */

static ngx_chain_t *
ngx_http_qwen_body_in_memory(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t         size;
    u_char       *data;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_uint_t    buffers;
    ngx_chain_t  *cl, *out, **ll;

    buffers = 0;

    for (cl = in; cl; cl = cl->next) {
        buffers++;

        if (!ngx_buf_in_memory(cl->buf) && ngx_buf_size(cl->buf)) {
            break;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen body in %ui buffers", buffers);

    if (cl == NULL) {
        return in;
    }

    out = NULL;
    ll = &out;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            data = b->pos;
            size = b->last - b->pos;

        } else {
            size = b->file_last - b->file_pos;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "qwen body reads %O bytes from \"%V\"",
                           size, &b->file->name);

            data = ngx_palloc(r->pool, size ? size : 1);
            if (data == NULL) {
                return NULL;
            }

            n = ngx_read_file(b->file, data, size, b->file_pos);

            if (n != size) {
                if (n != NGX_ERROR) {
                    ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                                  ngx_read_file_n " read only %z of %O "
                                  "from \"%V\"", n, size, &b->file->name);
                }

                return NULL;
            }
        }

        if (size == 0) {
            continue;
        }

        if (ngx_http_qwen_chain_add(r, &ll, data, data + size) != NGX_OK) {
            return NULL;
        }
    }

    return out ? out : in;
}


/*
 * Builds a new chain from "in" with the plan's edits made: every buffer
 * is a piece qwen_splice() emits, pointing into "in" or into an edit's
 * text.  Every buffer starts at its "start", as ngx_http_upstream_reinit()
 * rewinds request buffers to "start" before sending them to the next
 * upstream server.
 */

static ngx_chain_t *
ngx_http_qwen_body_splice(ngx_http_request_t *r, ngx_chain_t *in,
    qwen_edit_plan_t *plan, off_t *len)
{
    ngx_chain_t                 *cl, *out;
    qwen_splice_t                sp;
    ngx_http_qwen_splice_out_t   so;

    out = NULL;
    so.request = r;
    so.last = &out;

    qwen_splice_init(&sp, plan, ngx_http_qwen_splice_emit, &so);

    for (cl = in; cl; cl = cl->next) {
        if (qwen_splice(&sp, cl->buf->pos, cl->buf->last - cl->buf->pos)
            != 0)
        {
            return NULL;
        }
    }

    if (qwen_splice_finish(&sp) != 0 || out == NULL) {
        return NULL;
    }

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->last_buf = 1;
    cl->buf->last_in_chain = 1;

    *len = sp.out;

    return out;
}


static int
ngx_http_qwen_splice_emit(void *data, const unsigned char *p, size_t len)
{
    ngx_http_qwen_splice_out_t  *so = data;

    if (ngx_http_qwen_chain_add(so->request, &so->last, (u_char *) p,
                                (u_char *) p + len)
        != NGX_OK)
    {
        return -1;
    }

    return 0;
}


static ngx_int_t
ngx_http_qwen_chain_add(ngx_http_request_t *r, ngx_chain_t ***ll,
    u_char *pos, u_char *last)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->start = pos;
    b->pos = pos;
    b->last = last;
    b->end = last;
    b->memory = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}
