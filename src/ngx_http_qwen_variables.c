
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The $qwen_* variables: what the gateway decided for the request, for
 * proxy_pass, proxy_set_header and log_format.  None of them can show a
 * key.  They are not cached, as an internal redirect may change the
 * region.
 */


#include "ngx_http_qwen_module.h"


static ngx_int_t ngx_http_qwen_variable_ctx_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_region_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_tokens(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_cost(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_ttft(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_response_model(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_incomplete(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_attempts(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_deployment(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_failovers(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_http_qwen_ctx_t *ngx_http_qwen_settled(ngx_http_request_t *r);


static ngx_http_variable_t  ngx_http_qwen_vars[] = {

    { ngx_string("qwen_requested_model"), NULL,
      ngx_http_qwen_variable_ctx_str,
      offsetof(ngx_http_qwen_ctx_t, requested_model),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_model"), NULL,
      ngx_http_qwen_variable_ctx_str,
      offsetof(ngx_http_qwen_ctx_t, model),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_provider"), NULL,
      ngx_http_qwen_variable_ctx_str,
      offsetof(ngx_http_qwen_ctx_t, provider),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_region"), NULL,
      ngx_http_qwen_variable_region_str,
      offsetof(ngx_http_qwen_region_t, name),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_upstream"), NULL,
      ngx_http_qwen_variable_region_str,
      offsetof(ngx_http_qwen_region_t, url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_upstream_host"), NULL,
      ngx_http_qwen_variable_region_str,
      offsetof(ngx_http_qwen_region_t, host),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_upstream_path"), NULL,
      ngx_http_qwen_variable_region_str,
      offsetof(ngx_http_qwen_region_t, path),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_attempt"), NULL,
      ngx_http_qwen_variable_attempts, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_attempts"), NULL,
      ngx_http_qwen_variable_attempts, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_deployment"), NULL,
      ngx_http_qwen_variable_deployment, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_failovers"), NULL,
      ngx_http_qwen_variable_failovers, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_stream"), NULL,
      ngx_http_qwen_variable_stream, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_prompt_tokens"), NULL,
      ngx_http_qwen_variable_tokens, QWEN_USAGE_PROMPT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_completion_tokens"), NULL,
      ngx_http_qwen_variable_tokens, QWEN_USAGE_COMPLETION,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_total_tokens"), NULL,
      ngx_http_qwen_variable_tokens, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_cached_tokens"), NULL,
      ngx_http_qwen_variable_tokens, QWEN_USAGE_CACHED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_reasoning_tokens"), NULL,
      ngx_http_qwen_variable_tokens, QWEN_USAGE_REASONING,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_cost"), NULL,
      ngx_http_qwen_variable_cost, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_ttft"), NULL,
      ngx_http_qwen_variable_ttft, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_response_model"), NULL,
      ngx_http_qwen_variable_response_model, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_incomplete"), NULL,
      ngx_http_qwen_variable_incomplete, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_qwen_add_variables(ngx_conf_t *cf)
{
    return ngx_http_qwen_add_variable_table(cf, ngx_http_qwen_vars);
}


/* a table of variables, ended by ngx_http_null_variable */

ngx_int_t
ngx_http_qwen_add_variable_table(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* a string of the configuration or the request; empty: not found */

void
ngx_http_qwen_variable_set(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    if (s->len == 0) {
        v->not_found = 1;
        return;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
}


static ngx_int_t
ngx_http_qwen_variable_ctx_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_qwen_variable_set(v, (ngx_str_t *) ((u_char *) ctx + data));

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_region_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->region == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_qwen_variable_set(v,
                           (ngx_str_t *) ((u_char *) ctx->region + data));

    return NGX_OK;
}


/* the number of the attempt (while it is built), of attempts (after) */

static ngx_int_t
ngx_http_qwen_variable_attempts(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->failover == NULL
        || ctx->failover->attempts == 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%ui", ctx->failover->attempts) - p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_deployment(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->deployment == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_qwen_variable_set(v, &ctx->deployment->name);

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_failovers(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->failover == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_qwen_variable_set(v, &ctx->failover->moves);

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->state != NGX_HTTP_QWEN_READY) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = 1;
    v->data = (u_char *) (ctx->stream ? "1" : "0");
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * The usage figures exist once the request is settled, at the start of
 * the log phase (ngx_http_qwen_log_handler() runs first there); before
 * that, as in add_header, they are empty.
 */

static ngx_http_qwen_ctx_t *
ngx_http_qwen_settled(ngx_http_request_t *r)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || !ctx->accounted || ctx->usage == NULL) {
        return NULL;
    }

    return ctx;
}


/*
 * "data" is the QWEN_USAGE_* bit of the count: a count the answer's usage
 * did not carry is empty, not 0; the total is always there (the sum of
 * input and output when the answer did not give it).
 */

static ngx_int_t
ngx_http_qwen_variable_tokens(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    uint64_t              n;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_settled(r);

    if (ctx == NULL || !ctx->usage->has_usage
        || (data && !(ctx->usage->usage_fields & data)))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case QWEN_USAGE_PROMPT:
        n = ctx->tokens.prompt;
        break;
    case QWEN_USAGE_COMPLETION:
        n = ctx->tokens.completion;
        break;
    case QWEN_USAGE_CACHED:
        n = ctx->tokens.cached;
        break;
    case QWEN_USAGE_REASONING:
        n = ctx->tokens.reasoning;
        break;
    default:
        n = ctx->tokens.total;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", n) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_cost(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_settled(r);

    if (ctx == NULL || !ctx->usage->has_usage || ctx->unpriced) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_http_qwen_format_usd(p, ctx->cost_nano) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_ttft(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || !ctx->first_byte) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%T.%03M", (time_t) ctx->ttft_msec / 1000,
                         ctx->ttft_msec % 1000)
             - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_response_model(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_settled(r);

    if (ctx == NULL || ctx->usage->model_len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->usage->model_len;
    v->data = ctx->usage->model;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_variable_incomplete(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_settled(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = 1;
    v->data = (u_char *) (ctx->incomplete ? "1" : "0");
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
