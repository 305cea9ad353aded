
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The response filters: they read token usage from the answer as it
 * streams past (a JSON body or server-sent events), note the time of the
 * first byte, and pass every buffer on at once.
 *
 * Buffers go on untouched, except in one case: when the gateway added
 * "include_usage" to a stream the client did not ask usage of, the
 * usage-only chunk this produces is removed.  Then the output is made of
 * slices of the input buffers (no copy) around that event; only an event
 * that spans input buffers is copied, into the "hold", until its end shows
 * whether it goes on (an SSE client acts on an event only once its blank
 * line has come, so holding its bytes delays nothing it could see).
 *
 * Backpressure follows nginx's sub filter: an input buffer is marked
 * consumed only when the last output made from it has been sent (that
 * output buffer's shadow), so a client that reads slowly makes the
 * upstream wait instead of making this worker's memory grow.
 */


#include "ngx_http_qwen_module.h"


/* an event longer than this is passed on without waiting for its end */
#define NGX_HTTP_QWEN_HOLD_MAX  (64 * 1024)

/* the first room of a hold */
#define NGX_HTTP_QWEN_HOLD_MIN  512

/* output buffers allocated at once */
#define NGX_HTTP_QWEN_OUT_BUFS  4


static ngx_int_t ngx_http_qwen_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_qwen_scan_buf(ngx_http_qwen_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_qwen_strip(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_http_qwen_strip_buf(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_buf_t *ib, ngx_chain_t ***ll);
static ngx_int_t ngx_http_qwen_out_buf(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t ***ll, ngx_buf_t **buf);
static ngx_int_t ngx_http_qwen_slice(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t ***ll, u_char *from, u_char *to);
static ngx_int_t ngx_http_qwen_hold_add(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t ***ll, u_char *p, u_char *last);
static void ngx_http_qwen_hold_emit(ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t ***ll);
static ngx_int_t ngx_http_qwen_hold_grow(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, size_t size);
static void ngx_http_qwen_update_busy(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t *out);
static u_char *ngx_http_qwen_skim_run(qwen_usage_scan_t *us, u_char *p,
    u_char *last);
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

    /* nginx's proxy_cache answered (a hit, or stale): no upstream call */
    ctx->cache_hit = r->cached;

    if (ctx->failover && !ctx->failover->passing) {
        /* an answer that may make the gateway move on waits */
        if (ngx_http_qwen_failover_header(r, ctx) == NGX_OK) {
            ngx_http_qwen_credential_wipe(r);
            return NGX_OK;
        }
    }

    /* no upstream request is built after this: the key is put away */
    ngx_http_qwen_credential_seal(r, ctx);

    if (ctx->key && ngx_http_qwen_keys_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

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

    /*
     * The scanner reads bytes in memory: nginx's copy filter, which runs
     * before this one, brings buffers of a temporary file into memory
     * (with aio or threads where configured), never this module.
     */
    r->filter_need_in_memory = 1;

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

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->failover && ctx->failover->holding) {
        return ngx_http_qwen_failover_body(r, ctx, in);
    }

    if (ctx->usage == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->strip) {
        if (in == NULL && ctx->busy == NULL) {
            return ngx_http_next_body_filter(r, in);
        }

        if (in && !ctx->first_byte) {
            ngx_http_qwen_first_byte(r, ctx);
        }

        out = NULL;

        if (in && ngx_http_qwen_strip(r, ctx, in, &out) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->sse) {
            out = ngx_http_qwen_failover_cut(r, ctx, in, out);
        }

        rc = ngx_http_next_body_filter(r, out);

        ngx_http_qwen_update_busy(r, ctx, out);

        return rc;
    }

    if (in == NULL || ctx->body_scanned) {
        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->first_byte) {
        ngx_http_qwen_first_byte(r, ctx);
    }

    for (cl = in; cl; cl = cl->next) {
        ngx_http_qwen_scan_buf(ctx, cl->buf);

        if (cl->buf->last_buf) {
            ctx->body_scanned = 1;
            (void) qwen_usage_scan_finish(ctx->usage);
        }
    }

    if (ctx->sse) {
        in = ngx_http_qwen_failover_cut(r, ctx, in, in);
    }

    return ngx_http_next_body_filter(r, in);
}


/* for the failover, which sends a held answer on itself */

ngx_int_t
ngx_http_qwen_next_header(ngx_http_request_t *r)
{
    return ngx_http_next_header_filter(r);
}


ngx_int_t
ngx_http_qwen_next_body(ngx_http_request_t *r, ngx_chain_t *in)
{
    return ngx_http_next_body_filter(r, in);
}


/* reads the buffer, leaving it as it is */

static void
ngx_http_qwen_scan_buf(ngx_http_qwen_ctx_t *ctx, ngx_buf_t *b)
{
    size_t   n;
    u_char  *p, *last;

    if (!ngx_buf_in_memory(b)) {
        /* r->filter_need_in_memory: only empty buffers get here */
        return;
    }

    p = b->pos;
    last = b->last;

    while (p < last) {
        n = qwen_usage_scan_skim(ctx->usage, p, last - p);

        if (n == 0) {
            n = qwen_usage_scan(ctx->usage, p, last - p);
        }

        p += n;
    }
}


static ngx_int_t
ngx_http_qwen_strip(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    u_char       *p;
    ngx_buf_t    *ib;
    ngx_chain_t  *cl, **ll;

    ll = out;

    for ( /* void */ ; in; in = in->next) {
        ib = in->buf;
        ctx->skimmed = NULL;

        /*
         * A buffer of ordinary chunks only, with nothing held before it,
         * goes on as it is: the common case, no new buffer at all.
         */

        if (ctx->hold_len == 0 && !ctx->hold_pass && !ib->last_buf
            && ngx_buf_in_memory(ib) && ib->pos != ib->last)
        {
            p = ngx_http_qwen_skim_run(ctx->usage, ib->pos, ib->last);

            if (p == ib->last) {
                cl = ngx_alloc_chain_link(r->pool);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                cl->buf = ib;
                *ll = cl;
                ll = &cl->next;
                continue;
            }

            ctx->skimmed = p;
        }

        if (ngx_http_qwen_strip_buf(r, ctx, ib, &ll) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *ll = NULL;

    return NGX_OK;
}


/*
 * The output for one input buffer.  [from, p) is the slice of it that
 * goes on when a decision is taken; ctx->skimmed, if set, is where the
 * ordinary events at its start, already counted, end.
 */

static ngx_int_t
ngx_http_qwen_strip_buf(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_buf_t *ib, ngx_chain_t ***ll)
{
    u_char             *p, *last, *from;
    size_t              n;
    ngx_int_t           rc;
    ngx_buf_t          *b;
    ngx_chain_t       **first;
    qwen_usage_scan_t  *us;

    if (!ngx_buf_in_memory(ib) && ngx_buf_size(ib)) {
        /* r->filter_need_in_memory makes this impossible */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: an answer buffer is not in memory");
        return NGX_ERROR;
    }

    us = ctx->usage;
    first = *ll;
    ctx->pinned = 0;

    from = ib->pos;
    p = ctx->skimmed ? ctx->skimmed : ib->pos;
    last = ib->last;

    while (p < last) {

        /* (the skim stopped at ctx->skimmed: no need to try it again) */

        if (!ctx->hold_pass && p != ctx->skimmed) {
            n = qwen_usage_scan_skim(us, p, last - p);

            if (n) {
                if (ctx->hold_len) {
                    /* blank lines before it were held: they go on first */
                    ngx_http_qwen_hold_emit(ctx, ll);
                }

                p += n;
                continue;
            }
        }

        n = qwen_usage_scan(us, p, last - p);

        if (ctx->hold_pass) {
            /* an event too long to hold goes on as it comes */
            p += n;
            ctx->hold_pass = !us->event_ended;
            continue;
        }

        if (!us->event_ended) {
            /* the event goes on past this buffer: its bytes are held */

            if (ngx_http_qwen_slice(r, ctx, ll, from, p) != NGX_OK) {
                return NGX_ERROR;
            }

            rc = ngx_http_qwen_hold_add(r, ctx, ll, p, p + n);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            /* NGX_DECLINED: too long to hold, the bytes go on in a slice */
            from = (rc == NGX_OK) ? p + n : p;
            p += n;
            continue;
        }

        /* an event ends at p + n */

        if (ctx->hold_len) {
            /* it began in an earlier buffer */

            rc = ngx_http_qwen_hold_add(r, ctx, ll, p, p + n);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_DECLINED) {
                /* its start went on already: so does its end */
                from = p;

            } else if (us->event_usage_only) {
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "qwen removed the usage-only event, "
                               "%uz bytes", ctx->hold_len);
                ctx->stripped = 1;
                ctx->hold_len = 0;
                from = p + n;

            } else {
                ngx_http_qwen_hold_emit(ctx, ll);
                from = p + n;
            }

            ctx->hold_pass = 0;
            p += n;
            continue;
        }

        if (us->event_usage_only) {
            /* the event is [p, p + n), in this buffer */

            if (ngx_http_qwen_slice(r, ctx, ll, from, p) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "qwen removed the usage-only event, %uz bytes",
                           n);
            ctx->stripped = 1;
            from = p + n;
        }

        p += n;
    }

    if (ngx_http_qwen_slice(r, ctx, ll, from, last) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ib->last_buf) {
        ctx->body_scanned = 1;
        (void) qwen_usage_scan_finish(us);

        /* an event the stream ended in the middle of goes on */
        if (ctx->hold_len) {
            ngx_http_qwen_hold_emit(ctx, ll);
        }
    }

    if (!ctx->pinned) {
        /* nothing of it goes on uncopied: it is consumed now */
        ib->pos = ib->last;
    }

    if (*ll == first && !ctx->pinned && !ib->last_buf && !ib->last_in_chain
        && !ib->flush)
    {
        return NGX_OK;
    }

    /*
     * The last buffer made from this input carries its flags and, when
     * slices of it go on, the input itself as its shadow.
     */

    if (*ll == first) {
        if (ngx_http_qwen_out_buf(r, ctx, ll, &b) != NGX_OK) {
            return NGX_ERROR;
        }

        b->sync = 1;

    } else {
        b = ((ngx_chain_t *) ((u_char *) *ll - offsetof(ngx_chain_t, next)))
            ->buf;
    }

    b->last_buf = ib->last_buf;
    b->last_in_chain = ib->last_in_chain;
    b->flush = ib->flush;
    b->recycled = ib->recycled;

    if (ctx->pinned) {
        b->shadow = ib;
    }

    return NGX_OK;
}


/* a buffer of this module's, from the free list if one is there */

static ngx_int_t
ngx_http_qwen_out_buf(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t ***ll, ngx_buf_t **buf)
{
    ngx_buf_t    *b;
    ngx_uint_t    i;
    ngx_chain_t  *cl;

    if (ctx->free == NULL) {
        /* a few at once: one allocation instead of two for each */

        cl = ngx_palloc(r->pool, NGX_HTTP_QWEN_OUT_BUFS
                                 * (sizeof(ngx_chain_t) + sizeof(ngx_buf_t)));
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = (ngx_buf_t *) (cl + NGX_HTTP_QWEN_OUT_BUFS);

        for (i = 0; i < NGX_HTTP_QWEN_OUT_BUFS; i++) {
            cl[i].buf = &b[i];
            cl[i].next = ctx->free;
            ctx->free = &cl[i];
        }
    }

    cl = ctx->free;
    ctx->free = cl->next;
    cl->next = NULL;

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));
    b->tag = (ngx_buf_tag_t) &ngx_http_qwen_module;

    **ll = cl;
    *ll = &cl->next;
    *buf = b;

    return NGX_OK;
}


/* [from, to) of the input buffer goes on, uncopied */

static ngx_int_t
ngx_http_qwen_slice(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t ***ll, u_char *from, u_char *to)
{
    ngx_buf_t  *b;

    if (from == to) {
        return NGX_OK;
    }

    if (ngx_http_qwen_out_buf(r, ctx, ll, &b) != NGX_OK) {
        return NGX_ERROR;
    }

    b->start = from;
    b->pos = from;
    b->last = to;
    b->end = to;
    b->memory = 1;

    ctx->pinned = 1;

    return NGX_OK;
}


/*
 * Appends [p, last) to the hold.  An event that would grow past
 * NGX_HTTP_QWEN_HOLD_MAX cannot be the small usage-only chunk: what is
 * held goes on, and NGX_DECLINED tells the caller to pass the bytes on
 * as they are, to the event's end.
 */

static ngx_int_t
ngx_http_qwen_hold_add(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t ***ll, u_char *p, u_char *last)
{
    size_t  n;

    n = last - p;

    if (ctx->hold_len + n > NGX_HTTP_QWEN_HOLD_MAX) {
        if (ctx->hold_len) {
            ngx_http_qwen_hold_emit(ctx, ll);
        }

        ctx->hold_pass = 1;
        return NGX_DECLINED;
    }

    if (ctx->hold_len + n > ctx->hold_cap
        && ngx_http_qwen_hold_grow(r, ctx, ctx->hold_len + n) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->hold + ctx->hold_len, p, n);
    ctx->hold_len += n;

    return NGX_OK;
}


/* the held bytes go on in their own buffer; the next hold is another */

static void
ngx_http_qwen_hold_emit(ngx_http_qwen_ctx_t *ctx, ngx_chain_t ***ll)
{
    ngx_chain_t  *cl;

    cl = ctx->hold_cl;
    cl->buf->pos = ctx->hold;
    cl->buf->last = ctx->hold + ctx->hold_len;

    **ll = cl;
    *ll = &cl->next;

    ctx->hold_cl = NULL;
    ctx->hold = NULL;
    ctx->hold_len = 0;
    ctx->hold_cap = 0;
}


/*
 * A hold of at least "size" bytes: the one in use grown, or a sent one
 * reused.  Events are a few hundred bytes: the room starts at 512 (from
 * the request's pool, not malloc()) and doubles.
 */

static ngx_int_t
ngx_http_qwen_hold_grow(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    size_t size)
{
    u_char       *hold;
    size_t        cap;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ctx->hold_cl == NULL && ctx->free_hold) {
        cl = ctx->free_hold;
        ctx->free_hold = cl->next;
        cl->next = NULL;

        ctx->hold_cl = cl;
        ctx->hold = cl->buf->start;
        ctx->hold_cap = cl->buf->end - cl->buf->start;

        if (ctx->hold_cap >= size) {
            return NGX_OK;
        }
    }

    if (ctx->hold_cl == NULL) {
        /* a new hold: its link, its buffer and its first room at once */

        cl = ngx_palloc(r->pool, sizeof(ngx_chain_t) + sizeof(ngx_buf_t)
                                 + NGX_HTTP_QWEN_HOLD_MIN);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = (ngx_buf_t *) (cl + 1);
        ngx_memzero(b, sizeof(ngx_buf_t));

        hold = (u_char *) (b + 1);

        b->tag = (ngx_buf_tag_t) &ngx_http_qwen_module;
        b->temporary = 1;
        b->start = hold;
        b->pos = hold;
        b->last = hold;
        b->end = hold + NGX_HTTP_QWEN_HOLD_MIN;

        cl->buf = b;
        cl->next = NULL;
        ctx->hold_cl = cl;
        ctx->hold = hold;
        ctx->hold_cap = NGX_HTTP_QWEN_HOLD_MIN;

        if (size <= NGX_HTTP_QWEN_HOLD_MIN) {
            return NGX_OK;
        }
    }

    cap = ngx_max(ctx->hold_cap * 2, NGX_HTTP_QWEN_HOLD_MIN);

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

    b = ctx->hold_cl->buf;
    b->start = hold;
    b->pos = hold;
    b->last = hold;
    b->end = hold + cap;

    ctx->hold = hold;
    ctx->hold_cap = cap;

    return NGX_OK;
}


/*
 * After the next filters ran: this module's buffers they have sent are
 * free again (a hold's for the next hold), and the input buffer each one
 * shadows is consumed, so its owner (the upstream) may read into it.
 */

static void
ngx_http_qwen_update_busy(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, **ll;

    for (ll = &ctx->busy; *ll; ll = &(*ll)->next) { /* void */ }

    *ll = out;

    while (ctx->busy) {
        cl = ctx->busy;
        b = cl->buf;

        if (ngx_buf_size(b) != 0) {
            break;
        }

        ctx->busy = cl->next;

        if (b->tag != (ngx_buf_tag_t) &ngx_http_qwen_module) {
            /* an input buffer that went on as it was */
            ngx_free_chain(r->pool, cl);
            continue;
        }

        if (b->shadow) {
            b->shadow->pos = b->shadow->last;
            b->shadow = NULL;
        }

        if (b->temporary) {
            b->pos = b->start;
            b->last = b->start;
            b->last_buf = 0;
            b->last_in_chain = 0;
            b->flush = 0;
            b->recycled = 0;
            b->sync = 0;
            cl->next = ctx->free_hold;
            ctx->free_hold = cl;
            continue;
        }

        cl->next = ctx->free;
        ctx->free = cl;
    }
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
