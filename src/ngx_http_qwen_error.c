
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * OpenAI-style error answers:
 * {"error":{"message":"...","type":"...","param":null,"code":"..."}}
 */


#include "ngx_http_qwen_module.h"


static u_char *ngx_http_qwen_error_field(u_char *p, const char *name,
    const char *value);


void
ngx_http_qwen_error_set(ngx_http_qwen_error_t *err, ngx_uint_t status,
    const char *type, const char *code, const char *param, u_char *message,
    size_t len)
{
    err->status = status;
    err->type = type;
    err->code = code;
    err->param = param;
    err->allow = NULL;
    err->retry_after = 0;
    err->message.data = message;
    err->message.len = len;
}


ngx_int_t
ngx_http_qwen_send_error(ngx_http_request_t *r, ngx_http_qwen_error_t *err)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out = ngx_http_qwen_error_prepare(r, err);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * Sets the answer's status and headers for the error and returns its
 * body; the failover, which answers from inside the body filter, sends
 * them on itself.
 */

ngx_chain_t *
ngx_http_qwen_error_prepare(ngx_http_request_t *r, ngx_http_qwen_error_t *err)
{
    size_t            len;
    u_char           *p;
    ngx_buf_t        *b;
    ngx_chain_t      *out;
    ngx_table_elt_t  *h;

    len = sizeof("{\"error\":{,,,}}\n") - 1
          + sizeof("\"message\":") - 1
          + qwen_json_escaped_len(err->message.data, err->message.len)
          + sizeof("\"type\":") - 1 + ngx_strlen(err->type) + 2
          + sizeof("\"param\":") - 1
          + (err->param ? ngx_strlen(err->param) + 2 : 4)
          + sizeof("\"code\":") - 1
          + (err->code ? ngx_strlen(err->code) + 2 : 4);

    b = ngx_create_temp_buf(r->pool, len);
    out = ngx_alloc_chain_link(r->pool);

    if (b == NULL || out == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, "{\"error\":{\"message\":",
                   sizeof("{\"error\":{\"message\":") - 1);
    p = qwen_json_escape(p, err->message.data, err->message.len);
    *p++ = ',';
    p = ngx_http_qwen_error_field(p, "type", err->type);
    *p++ = ',';
    p = ngx_http_qwen_error_field(p, "param", err->param);
    *p++ = ',';
    p = ngx_http_qwen_error_field(p, "code", err->code);
    p = ngx_cpymem(p, "}}\n", 3);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    r->headers_out.status = err->status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (err->allow) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NULL;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        h->value.data = (u_char *) err->allow;
        h->value.len = ngx_strlen(err->allow);
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    if (err->retry_after) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NULL;
        }

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NULL;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%T", err->retry_after) - p;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    return out;
}


/*
 * The 404 of a model the gateway does not serve to this client: the same
 * for a name it does not know and for one the client's key may not use,
 * so that the answer does not tell what exists.  The name is the
 * client's: the error body escapes it.
 */

ngx_int_t
ngx_http_qwen_error_model_not_found(ngx_http_request_t *r,
    ngx_http_qwen_error_t *err, ngx_str_t *name)
{
    size_t   len;
    u_char  *msg, *p;

    len = sizeof("The model `` does not exist or you do not have access "
                 "to it.") - 1 + name->len;

    msg = ngx_pnalloc(r->pool, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(msg, "The model `", sizeof("The model `") - 1);
    p = ngx_cpymem(p, name->data, name->len);
    ngx_memcpy(p, "` does not exist or you do not have access to it.",
               sizeof("` does not exist or you do not have access to it.")
               - 1);

    ngx_http_qwen_error_set(err, NGX_HTTP_NOT_FOUND, "invalid_request_error",
                            "model_not_found", "model", msg, len);

    return NGX_OK;
}


/* "name":"value" or "name":null; the values are ours, never escaped */

static u_char *
ngx_http_qwen_error_field(u_char *p, const char *name, const char *value)
{
    *p++ = '"';
    p = ngx_cpymem(p, name, ngx_strlen(name));
    *p++ = '"';
    *p++ = ':';

    if (value == NULL) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = ngx_cpymem(p, value, ngx_strlen(value));
    *p++ = '"';

    return p;
}


/*
 * A JSON answer of one buffer (the model list, a key's information, the
 * readiness probe): b->pos..b->last is the whole body.
 */

ngx_int_t
ngx_http_qwen_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The read-only handlers (the model list, the status): GET and HEAD only;
 * anything else gets 405 with Allow.  Returns NGX_DECLINED when the method
 * is fine, or what the handler returns.
 */

ngx_int_t
ngx_http_qwen_read_only(ngx_http_request_t *r, const char *what)
{
    ngx_int_t              rc;
    ngx_http_qwen_error_t  err;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: method %V on the %s",
                      &r->method_name, what);

        ngx_http_qwen_error_set(&err, NGX_HTTP_NOT_ALLOWED,
                                "invalid_request_error", "method_not_allowed",
                                NULL, (u_char *) "Only GET is allowed here.",
                                sizeof("Only GET is allowed here.") - 1);
        err.allow = "GET, HEAD";

        return ngx_http_qwen_send_error(r, &err);
    }

    rc = ngx_http_discard_request_body(r);

    return (rc == NGX_OK) ? NGX_DECLINED : rc;
}
