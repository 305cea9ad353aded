
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The response filters: they read token usage from the answer as it
 * streams past (a JSON body or server-sent events), note the time of the
 * first byte, and pass every buffer on at once.
 *
 * Buffers go on untouched, except in one case: when the gateway added
 * "include_usage" to a stream the client did not ask usage of, the
 * usage-only chunk this produces is removed.  Then each buffer's bytes are
 * copied out minus that event, and the bytes of an event not yet ended
 * are held (an SSE client acts on an event only once its blank line has
 * come, so holding them delays nothing it could see).
 */


#include "ngx_http_qwen_module.h"


/* an event longer than this is passed on without waiting for its end */
#define NGX_HTTP_QWEN_HOLD_MAX  (64 * 1024)


static ngx_int_t ngx_http_qwen_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_qwen_scan_buf(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_qwen_strip(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_qwen_strip_bytes(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, u_char *p, u_char *last, ngx_buf_t *out);
static u_char *ngx_http_qwen_skim_run(qwen_usage_scan_t *us, u_char *p,
    u_char *last);
static ngx_int_t ngx_http_qwen_hold_grow(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, size_t size);
static ngx_int_t ngx_http_qwen_buf_bytes(ngx_http_request_t *r,
    ngx_buf_t *b, u_char **pos, u_char **last);
static void ngx_http_qwen_first_byte(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_qwen_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_qwen_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_qwen_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_header_filter(ngx_http_request_t *r)
{
    ngx_str_t            *type;
    ngx_uint_t            sse;
    ngx_http_qwen_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_qwen_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    /* no upstream request is built after this: the key is put away */
    ngx_http_qwen_credential_seal(r, ctx);

    if (ctx->state != NGX_HTTP_QWEN_READY || ctx->usage != NULL
        || r->header_only)
    {
        return ngx_http_next_header_filter(r);
    }

    type = &r->headers_out.content_type;

    if (type->len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        sse = 1;

    } else if (type->len >= sizeof("application/json") - 1
               && ngx_strncasecmp(type->data, (u_char *) "application/json",
                                  sizeof("application/json") - 1) == 0)
    {
        sse = 0;

    } else {
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len
        && ngx_strcasecmp(r->headers_out.content_encoding->value.data,
                          (u_char *) "identity") != 0)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: usage of model \"%V\" not read: the upstream "
                      "answered with Content-Encoding \"%V\"",
                      &ctx->model,
                      &r->headers_out.content_encoding->value);
        return ngx_http_next_header_filter(r);
    }

    ctx->usage = ngx_palloc(r->pool, sizeof(qwen_usage_scan_t));
    if (ctx->usage == NULL) {
        return NGX_ERROR;
    }

    qwen_usage_scan_init(ctx->usage, sse);

    ctx->sse = sse;
    ctx->strip = (sse && ctx->usage_injected);

    if (ctx->strip) {
        /* the body changes length */
        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_qwen_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t             rc;
    ngx_chain_t          *cl, *out;
    ngx_http_qwen_ctx_t  *ctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    if (ctx == NULL || ctx->usage == NULL || ctx->body_scanned) {
        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->first_byte) {
        ngx_http_qwen_first_byte(r, ctx);
    }

    if (ctx->strip) {
        out = NULL;

        if (ngx_http_qwen_strip(r, ctx, in, &out) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_next_body_filter(r, out);

        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                                (ngx_buf_tag_t) &ngx_http_qwen_module);
        return rc;
    }

    for (cl = in; cl; cl = cl->next) {
        if (ngx_http_qwen_scan_buf(r, ctx, cl->buf) != NGX_OK) {
            return NGX_ERROR;
        }

        if (cl->buf->last_buf) {
            ctx->body_scanned = 1;
            (void) qwen_usage_scan_finish(ctx->usage);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/* reads the buffer, leaving it as it is */

static ngx_int_t
ngx_http_qwen_scan_buf(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_buf_t *b)
{
    size_t   n;
    u_char  *p, *last, *data;

    if (ngx_http_qwen_buf_bytes(r, b, &p, &last) != NGX_OK) {
        return NGX_ERROR;
    }

    data = p;

    while (p < last) {
        n = qwen_usage_scan_skim(ctx->usage, p, last - p);

        if (n == 0) {
            n = qwen_usage_scan(ctx->usage, p, last - p);
        }

        p += n;
    }

    if (data && data != b->pos) {
        /* read from a file for the scan only: give the memory back */
        ngx_pfree(r->pool, data);
    }

    return NGX_OK;
}


/*
 * Copies "in" into new buffers without the usage-only event.  The input
 * buffers are marked as sent, so the upstream can reuse them at once.
 */

static ngx_int_t
ngx_http_qwen_strip(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    size_t        size;
    u_char       *p, *last, *start, *end, *skimmed;
    ngx_buf_t    *b, *ib;
    ngx_chain_t  *cl, **ll;

    ll = out;

    for ( /* void */ ; in; in = in->next) {
        ib = in->buf;

        if (ngx_http_qwen_buf_bytes(r, ib, &p, &last) != NGX_OK) {
            return NGX_ERROR;
        }

        /*
         * A buffer of ordinary chunks only goes on as it is, uncopied;
         * otherwise the chunks skimmed before the first that is not one
         * are copied first.
         */

        skimmed = p;

        if (ctx->hold_len == 0 && ngx_buf_in_memory(ib) && !ib->last_buf) {
            skimmed = ngx_http_qwen_skim_run(ctx->usage, p, last);

            if (skimmed == last) {
                cl = ngx_alloc_chain_link(r->pool);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                cl->buf = ib;
                *ll = cl;
                ll = &cl->next;
                continue;
            }
        }

        size = (last - p) + ctx->hold_len;

        cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;

        /* a buffer from the free list keeps its memory, not its flags */

        start = b->start;
        end = b->end;
        ngx_memzero(b, sizeof(ngx_buf_t));

        if (start == NULL || (size_t) (end - start) < size) {
            start = ngx_palloc(r->pool, ngx_max(size, 4096));
            if (start == NULL) {
                return NGX_ERROR;
            }

            end = start + ngx_max(size, 4096);
        }

        b->start = start;
        b->end = end;
        b->pos = start;
        b->last = start;
        b->temporary = 1;
        b->tag = (ngx_buf_tag_t) &ngx_http_qwen_module;
        b->flush = ib->flush;
        b->last_buf = ib->last_buf;
        b->last_in_chain = ib->last_in_chain;

        if (skimmed != p) {
            b->last = ngx_cpymem(b->last, p, skimmed - p);
        }

        if (ngx_http_qwen_strip_bytes(r, ctx, skimmed, last, b) != NGX_OK) {
            return NGX_ERROR;
        }

        if (p && !ngx_buf_in_memory(ib)) {
            /* bytes read from a file, copied now: give the memory back */
            ngx_pfree(r->pool, p);
        }

        /* the input is consumed */

        if (ngx_buf_in_memory(ib)) {
            ib->pos = ib->last;
        }

        if (ib->in_file) {
            ib->file_pos = ib->file_last;
        }

        if (ib->last_buf) {
            ctx->body_scanned = 1;
            (void) qwen_usage_scan_finish(ctx->usage);

            /* an event the stream ended in the middle of */
            b->last = ngx_cpymem(b->last, ctx->hold, ctx->hold_len);
            ctx->hold_len = 0;
        }

        if (b->last == b->pos && !b->last_buf && !b->flush
            && !b->last_in_chain)
        {
            /* nothing to send yet: give the buffer back */
            cl->next = ctx->free;
            ctx->free = cl;
            continue;
        }

        if (b->last == b->pos) {
            b->temporary = 0;
            b->sync = 1;
        }

        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_strip_bytes(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    u_char *p, u_char *last, ngx_buf_t *out)
{
    size_t              n;
    qwen_usage_scan_t  *us;

    us = ctx->usage;

    while (p < last) {

        /* an ordinary chunk, whole: it goes on as it is */

        n = qwen_usage_scan_skim(us, p, last - p);

        if (n) {
            if (ctx->hold_len) {
                /* blank lines that came before it */
                out->last = ngx_cpymem(out->last, ctx->hold, ctx->hold_len);
                ctx->hold_len = 0;
            }

            out->last = ngx_cpymem(out->last, p, n);
            p += n;
            continue;
        }

        n = qwen_usage_scan(us, p, last - p);

        if (ctx->hold_pass) {
            /* an event too long to hold goes on as it comes */
            out->last = ngx_cpymem(out->last, p, n);

        } else if (ctx->hold_len + n > NGX_HTTP_QWEN_HOLD_MAX) {
            out->last = ngx_cpymem(out->last, ctx->hold, ctx->hold_len);
            out->last = ngx_cpymem(out->last, p, n);
            ctx->hold_len = 0;
            ctx->hold_pass = 1;

        } else {
            if (ctx->hold_len + n > ctx->hold_cap
                && ngx_http_qwen_hold_grow(r, ctx, ctx->hold_len + n)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_memcpy(ctx->hold + ctx->hold_len, p, n);
            ctx->hold_len += n;
        }

        p += n;

        if (!us->event_ended) {
            continue;
        }

        if (us->event_usage_only && !ctx->hold_pass) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "qwen removed the usage-only event, %uz bytes",
                           ctx->hold_len);
            ctx->stripped = 1;

        } else {
            out->last = ngx_cpymem(out->last, ctx->hold, ctx->hold_len);
        }

        ctx->hold_len = 0;
        ctx->hold_pass = 0;
    }

    return NGX_OK;
}


/*
 * Takes the whole ordinary events at p, as many as follow one another;
 * returns where they end.
 */

static u_char *
ngx_http_qwen_skim_run(qwen_usage_scan_t *us, u_char *p, u_char *last)
{
    size_t  n;

    while (p < last) {
        n = qwen_usage_scan_skim(us, p, last - p);

        if (n == 0) {
            break;
        }

        p += n;
    }

    return p;
}


/* events are a few hundred bytes: the room grows from 4k as needed */

static ngx_int_t
ngx_http_qwen_hold_grow(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    size_t size)
{
    u_char  *hold;
    size_t   cap;

    cap = ngx_max(ctx->hold_cap * 2, 4096);

    while (cap < size) {
        cap *= 2;
    }

    cap = ngx_min(cap, NGX_HTTP_QWEN_HOLD_MAX);

    hold = ngx_palloc(r->pool, cap);
    if (hold == NULL) {
        return NGX_ERROR;
    }

    if (ctx->hold_len) {
        ngx_memcpy(hold, ctx->hold, ctx->hold_len);
    }

    if (ctx->hold) {
        ngx_pfree(r->pool, ctx->hold);
    }

    ctx->hold = hold;
    ctx->hold_cap = cap;

    return NGX_OK;
}


/*
 * The bytes of a buffer, in memory; a buffer in a file (a long answer that
 * proxy buffering wrote to a temporary file) is read.
 */

static ngx_int_t
ngx_http_qwen_buf_bytes(ngx_http_request_t *r, ngx_buf_t *b, u_char **pos,
    u_char **last)
{
    off_t     size;
    u_char   *data;
    ssize_t   n;

    if (ngx_buf_in_memory(b)) {
        *pos = b->pos;
        *last = b->last;
        return NGX_OK;
    }

    if (!b->in_file || b->file_last == b->file_pos) {
        *pos = NULL;
        *last = NULL;
        return NGX_OK;
    }

    size = b->file_last - b->file_pos;

    data = ngx_palloc(r->pool, size);
    if (data == NULL) {
        return NGX_ERROR;
    }

    n = ngx_read_file(b->file, data, size, b->file_pos);

    if (n != size) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: could not read %O bytes of the answer from "
                      "\"%V\"", size, &b->file->name);
        return NGX_ERROR;
    }

    *pos = data;
    *last = data + size;

    return NGX_OK;
}


static void
ngx_http_qwen_first_byte(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    ctx->first_byte = 1;
    ctx->ttft_msec = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                                       + (tp->msec - r->start_msec));

    if (ctx->ttft_msec < 0) {
        ctx->ttft_msec = 0;
    }
}
