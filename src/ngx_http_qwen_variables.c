
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

    { ngx_string("qwen_stream"), NULL,
      ngx_http_qwen_variable_stream, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_qwen_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_qwen_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void
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


static ngx_int_t
ngx_http_qwen_variable_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || !ctx->body_done) {
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
