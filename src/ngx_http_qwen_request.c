
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The request path: a PRECONTENT phase handler driven by the request's
 * state (docs/design.md has the picture).
 *
 * It runs after the access phase, so nginx's own access modules
 * (auth_basic, auth_request, allow/deny, limit_req, access_by_lua) see
 * the client's request as it came and a client they refuse costs no body
 * read.  It reads the body, has it checked and rewritten
 * (ngx_http_qwen_body.c), picks the region, and declines, so that the
 * other PRECONTENT handlers (mirror) and then proxy_pass run.
 *
 *   NEW --read--> READING --body read--> READY --route--> (declined)
 *                    |                     |
 *                    +--failed------------>+--refused--> FAILED (answered)
 *
 * Every entry into the handler is answered from the state, including the
 * entries error_page and named locations make: the context survives
 * internal redirects (ngx_http_qwen_get_ctx()).
 */


#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_CLIENT_ERROR  "invalid_request_error"

#define ngx_http_qwen_reject(err, status, code, param, text)                 \
    ngx_http_qwen_error_set(err, status, NGX_HTTP_QWEN_CLIENT_ERROR, code,  \
                            param, (u_char *) text, sizeof(text) - 1)


static ngx_int_t ngx_http_qwen_start(ngx_http_request_t *r,
    ngx_http_qwen_loc_conf_t *qlcf);
static void ngx_http_qwen_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_read_failed(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ready(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static off_t ngx_http_qwen_body_limit(ngx_http_request_t *r,
    ngx_http_qwen_loc_conf_t *qlcf);
static off_t ngx_http_qwen_declared_length(ngx_http_request_t *r);


ngx_int_t
ngx_http_qwen_precontent_handler(ngx_http_request_t *r)
{
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (!qlcf->gateway || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_qwen_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_qwen_start(r, qlcf);
    }

    switch (ctx->state) {

    case NGX_HTTP_QWEN_READING:
        /*
         * Here again before the body handler ran: the body read failed
         * (413 for a chunked body over the limit, 400, 500) and an
         * error_page sent the request to this gateway location.
         */
        return ngx_http_qwen_read_failed(r, ctx);

    case NGX_HTTP_QWEN_READY:
        return ngx_http_qwen_ready(r, ctx);

    case NGX_HTTP_QWEN_WAITING:
        /* the failover's timer brings it back; nothing to do before */
        return NGX_DONE;

    case NGX_HTTP_QWEN_FAILED:
        /* answered already; an error_page chain brought it back */
        if (r->header_sent) {
            return NGX_ERROR;
        }

        return ngx_http_qwen_fail(r, ctx, &ctx->error);

    default: /* NGX_HTTP_QWEN_NEW: not reached */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: request in unexpected state %d",
                      (int) ctx->state);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* the first entry: checks what can be checked before reading the body */

static ngx_int_t
ngx_http_qwen_start(ngx_http_request_t *r, ngx_http_qwen_loc_conf_t *qlcf)
{
    off_t                   limit;
    ngx_int_t               rc;
    ngx_http_qwen_ctx_t    *ctx;
    ngx_http_qwen_error_t   err;

    ctx = ngx_http_qwen_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->method = r->method;
    ctx->method_name = r->method_name;

    if (!(r->method & NGX_HTTP_POST)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: method %V is not POST",
                      &r->method_name);

        ngx_http_qwen_reject(&err, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                             NULL, "Only POST is allowed here.");
        err.allow = "POST";

        return ngx_http_qwen_fail(r, ctx, &err);
    }

    if (qlcf->keys
        && ngx_http_qwen_keys_authenticate(r, ctx, &err) != NGX_OK)
    {
        /* no body work for a client without a valid key */
        return ngx_http_qwen_fail(r, ctx, &err);
    }

    limit = ngx_http_qwen_body_limit(r, qlcf);

    if (limit && ngx_http_qwen_declared_length(r) > limit) {
        ngx_http_qwen_body_too_large(r, ngx_http_qwen_declared_length(r),
                                     limit, &err);
        return ngx_http_qwen_fail(r, ctx, &err);
    }

    if (r->discard_body
        || (r->request_body && (r->reading_body || r->request_body->rest)))
    {
        /*
         * Another location began to read or to throw away the body and
         * failed; an error_page sent the request here.
         */
        ctx->state = NGX_HTTP_QWEN_READING;
        return ngx_http_qwen_read_failed(r, ctx);
    }

    ctx->state = NGX_HTTP_QWEN_READING;
    ctx->body_limit = limit;

    rc = ngx_http_read_client_request_body(r, ngx_http_qwen_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* nginx answers it, through error_page if there is one */
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_qwen_body_handler(ngx_http_request_t *r)
{
    ngx_http_qwen_ctx_t    *ctx;
    ngx_http_qwen_error_t   err;

    ctx = ngx_http_qwen_get_ctx(r);

    if (ctx == NULL || ctx->state != NGX_HTTP_QWEN_READING) {
        /* the request went on without the body (an error answered) */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: request body arrived after the request was "
                      "answered");
        return;
    }

    if (ngx_http_qwen_body_process(r, ctx, ctx->body_limit, &err)
        != NGX_OK)
    {
        /* answers and finalizes the request, for the body read's count */
        (void) ngx_http_qwen_fail(r, ctx, &err);
        return;
    }

    if (ctx->key) {
        err.status = 0;

        if (ngx_http_qwen_keys_admit(r, ctx, &err) != NGX_OK) {
            /* the model is not the key's, or a limit has no room */
            (void) ngx_http_qwen_fail(r, ctx, &err);
            return;
        }
    }

    ctx->state = NGX_HTTP_QWEN_READY;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The body could not be read.  nginx keeps the reason only until an
 * error_page without "=" hands it on (r->err_status); otherwise it is
 * inferred from what the read left behind.
 */

static ngx_int_t
ngx_http_qwen_read_failed(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    off_t                     received, limit;
    ngx_uint_t                status;
    ngx_http_request_body_t  *rb;
    ngx_http_qwen_error_t     err;

    /* no more reading for this body: nothing will consume it */
    r->read_event_handler = ngx_http_block_reading;

    rb = r->request_body;
    status = r->err_status;
    limit = ctx->body_limit ? ctx->body_limit
                            : ngx_http_qwen_body_limit(r,
                                  ngx_http_get_module_loc_conf(r,
                                                      ngx_http_qwen_module));
    received = ngx_http_qwen_declared_length(r);

    if (rb && rb->chunked) {
        received = r->headers_in.content_length_n + rb->chunked->size;
    }

    if (status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        || (status < NGX_HTTP_BAD_REQUEST && limit && received > limit))
    {
        ngx_http_qwen_body_too_large(r, received, limit, &err);

    } else if (status == NGX_HTTP_REQUEST_TIME_OUT
               || r->connection->timedout)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: the body did not arrive "
                      "in time");
        ngx_http_qwen_reject(&err, NGX_HTTP_REQUEST_TIME_OUT,
                             "request_timeout", NULL,
                             "The request body did not arrive in time.");

    } else if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: the request body could not be read (%ui)",
                      status);
        ngx_http_qwen_error_set(&err, status, "server_error", NULL, NULL,
                                (u_char *) "The gateway could not read the "
                                "request body.",
                                sizeof("The gateway could not read the "
                                       "request body.") - 1);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: the body could not be read "
                      "(%ui)", status);
        ngx_http_qwen_reject(&err, NGX_HTTP_BAD_REQUEST,
                             "invalid_request_body", NULL,
                             "The request body could not be read.");
    }

    return ngx_http_qwen_fail(r, ctx, &err);
}


/*
 * The body is ready: right after it was read, or again in the location
 * an internal redirect (error_page, a named location) led to, which may
 * pick another region.
 */

static ngx_int_t
ngx_http_qwen_ready(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_http_qwen_error_t  err;

    if (r->method != ctx->method) {
        /*
         * A URI-form error_page ("error_page 502 /fallback;") turns the
         * request into a GET; the body is a POST's.
         */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: %V request restored to %V after a redirect",
                      &r->method_name, &ctx->method_name);

        r->method = ctx->method;
        r->method_name = ctx->method_name;
    }

    err.status = 0;

    /*
     * The client's headers are shaped before the route adds those of the
     * provider (ngx_http_qwen_route() first takes away those it added for
     * a previous attempt), so that shaping never sees the gateway's own.
     */

    ngx_http_qwen_route_headers_clear(ctx);

    if (ngx_http_qwen_headers_shape(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_qwen_route(r, ctx, &err);

    if (rc == NGX_DONE) {
        /* waits for a deployment to come back: a timer resumes it */
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return ngx_http_qwen_fail(r, ctx, &err);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen region \"%V\", upstream \"%V\"",
                   &ctx->region->name, &ctx->region->url);

    return NGX_DECLINED;
}


/*
 * Answers with the error and ends the request from within the phase;
 * NGX_DONE tells the phase engine that the request is taken care of.
 * An error without a body is a plain 500.
 */

ngx_int_t
ngx_http_qwen_fail(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_error_t *err)
{
    if (err->status == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (err != &ctx->error) {
        ctx->error = *err;
    }

    ctx->state = NGX_HTTP_QWEN_FAILED;

    ngx_http_finalize_request(r, ngx_http_qwen_send_error(r, err));

    return NGX_DONE;
}


/*
 * The largest body taken: qwen_max_body_size, and nginx's own
 * client_max_body_size when that is smaller (nginx checks it first for a
 * Content-Length, with an HTML page; a body that reaches the gateway any
 * other way is held to it here, with JSON).  0: no limit.
 */

static off_t
ngx_http_qwen_body_limit(ngx_http_request_t *r,
    ngx_http_qwen_loc_conf_t *qlcf)
{
    off_t                      limit;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    limit = qlcf->max_body_size;

    if (clcf->client_max_body_size
        && (limit == 0 || clcf->client_max_body_size < limit))
    {
        limit = clcf->client_max_body_size;
    }

    return limit;
}


/*
 * The length the client declared.  Not content_length_n: nginx lowers it
 * as it throws a refused body away (a 413 at FIND_CONFIG, before an
 * error_page brings the request here).
 */

static off_t
ngx_http_qwen_declared_length(ngx_http_request_t *r)
{
    off_t  n;

    if (r->headers_in.content_length == NULL) {
        return r->headers_in.content_length_n;
    }

    n = ngx_atoof(r->headers_in.content_length->value.data,
                  r->headers_in.content_length->value.len);

    return (n == NGX_ERROR) ? r->headers_in.content_length_n : n;
}
