
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * What of the client's headers reaches the upstream.  proxy_pass sends
 * the request's header list as it is; the gateway takes out of it, once
 * the request is routed:
 *
 *  - provider control headers (X-DashScope-*, OpenAI-Organization,
 *    OpenAI-Project): they would act under the operator's key (another
 *    workspace, another project), so a client may send one only when the
 *    operator lets it (qwen_pass_client_header);
 *  - credentials of other providers' kinds (api-key, x-api-key): a client
 *    key never goes upstream;
 *
 * and asks for an uncompressed answer, which the usage scanner can read.
 *
 * The client's Authorization is left where it is, for nginx's own modules
 * and $http_authorization: the gateway location's
 * "proxy_set_header Authorization $qwen_upstream_authorization;" replaces
 * it on the way upstream (ngx_http_qwen_credential.c).
 */


#include "ngx_http_qwen_module.h"


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 prefix;       /* name is a prefix */
} ngx_http_qwen_header_rule_t;


static ngx_http_qwen_header_rule_t  ngx_http_qwen_dropped[] = {
    { ngx_string("x-dashscope-"), 1 },
    { ngx_string("openai-organization"), 0 },
    { ngx_string("openai-project"), 0 },
    { ngx_string("api-key"), 0 },
    { ngx_string("x-api-key"), 0 },
    { ngx_null_string, 0 }
};


static ngx_uint_t ngx_http_qwen_header_dropped(ngx_table_elt_t *h,
    ngx_array_t *allowed, ngx_uint_t keys);
static ngx_uint_t ngx_http_qwen_name_matches(ngx_str_t *name,
    ngx_str_t *rule, ngx_uint_t prefix);
static ngx_int_t ngx_http_qwen_identity_encoding(ngx_http_request_t *r,
    ngx_table_elt_t *h);


/* qwen_pass_client_header name | prefix* ...; */

char *
ngx_http_qwen_pass_client_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i, j;

    if (qlcf->pass_headers != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    qlcf->pass_headers = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_str_t));
    if (qlcf->pass_headers == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        for (j = 0; j < value[i].len; j++) {
            if (value[i].data[j] <= 0x20 || value[i].data[j] == 0x7f
                || value[i].data[j] == ':'
                || (value[i].data[j] == '*' && j != value[i].len - 1))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid header name \"%V\": a name, or "
                                   "a prefix ending in \"*\"", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (value[i].len == 0 || (value[i].len == 1 && value[i].data[0] == '*'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(qlcf->pass_headers);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        name->len = value[i].len;
        name->data = ngx_pnalloc(cf->pool, name->len);
        if (name->data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(name->data, value[i].data, name->len);
    }

    return NGX_CONF_OK;
}


/*
 * Called when a request is routed: one pass over the client's headers
 * finds those to drop and asks for identity encoding; only when something
 * is dropped is the list rebuilt without it, rather than edited in place:
 * r->headers_in keeps pointers into the old list's elements, which stay
 * valid.
 */

ngx_int_t
ngx_http_qwen_headers_shape(ngx_http_request_t *r)
{
    ngx_uint_t                 i, drop;
    ngx_list_t                 list;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h, *copy;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    drop = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_qwen_header_dropped(&h[i], qlcf->pass_headers, qlcf->keys)) {
            drop++;

        } else if (ngx_http_qwen_identity_encoding(r, &h[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (drop == 0) {
        return NGX_OK;
    }

    if (ngx_list_init(&list, r->pool, 20, sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_qwen_header_dropped(&h[i], qlcf->pass_headers, qlcf->keys)) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "qwen: client header \"%V\" not passed upstream "
                          "(qwen_pass_client_header)", &h[i].key);
            continue;
        }

        copy = ngx_list_push(&list);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = h[i];
    }

    r->headers_in.headers = list;

    /* a list of one part: its "last" pointed at the local copy's part */

    if (list.last == &list.part) {
        r->headers_in.headers.last = &r->headers_in.headers.part;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_qwen_header_dropped(ngx_table_elt_t *h, ngx_array_t *allowed,
    ngx_uint_t keys)
{
    ngx_str_t                    *a;
    ngx_uint_t                    i, n;
    ngx_http_qwen_header_rule_t  *rule;

    for (rule = ngx_http_qwen_dropped; rule->name.len; rule++) {
        if (ngx_http_qwen_name_matches(&h->key, &rule->name, rule->prefix)) {
            break;
        }
    }

    if (rule->name.len == 0) {
        return 0;
    }

    if (keys
        && ((h->key.len == sizeof("api-key") - 1
             && ngx_strncasecmp(h->key.data, (u_char *) "api-key",
                                sizeof("api-key") - 1) == 0)
            || (h->key.len == sizeof("x-api-key") - 1
                && ngx_strncasecmp(h->key.data, (u_char *) "x-api-key",
                                   sizeof("x-api-key") - 1) == 0)))
    {
        /* with client keys these hold the client's key: never passed */
        return 1;
    }

    if (allowed == NULL || allowed == NGX_CONF_UNSET_PTR) {
        return 1;
    }

    a = allowed->elts;

    for (i = 0; i < allowed->nelts; i++) {
        n = a[i].len;

        if (a[i].data[n - 1] == '*') {
            a[i].len--;
            n = ngx_http_qwen_name_matches(&h->key, &a[i], 1);
            a[i].len++;

        } else {
            n = ngx_http_qwen_name_matches(&h->key, &a[i], 0);
        }

        if (n) {
            return 0;
        }
    }

    return 1;
}


/* rule is lower case */

static ngx_uint_t
ngx_http_qwen_name_matches(ngx_str_t *name, ngx_str_t *rule,
    ngx_uint_t prefix)
{
    if (name->len < rule->len || (!prefix && name->len != rule->len)) {
        return 0;
    }

    return ngx_strncasecmp(name->data, rule->data, rule->len) == 0;
}


/*
 * The gateway reads usage from the answer as it passes, so the upstream
 * is asked for it uncompressed; the client's own Accept-Encoding stays in
 * r->headers_in.accept_encoding for nginx's gzip filter, which may
 * compress the answer on its way out.
 */

static ngx_int_t
ngx_http_qwen_identity_encoding(ngx_http_request_t *r, ngx_table_elt_t *h)
{
    ngx_table_elt_t  *copy;

    if (h->key.len != sizeof("Accept-Encoding") - 1
        || ngx_strncasecmp(h->key.data, (u_char *) "Accept-Encoding",
                           sizeof("Accept-Encoding") - 1) != 0
        || (h->value.len == sizeof("identity") - 1
            && ngx_strncmp(h->value.data, "identity",
                           sizeof("identity") - 1) == 0))
    {
        return NGX_OK;
    }

#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    if (r->headers_in.accept_encoding == h) {
        copy = ngx_palloc(r->pool, sizeof(ngx_table_elt_t));
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = *h;
        r->headers_in.accept_encoding = copy;
    }
#else
    (void) copy;
#endif

    ngx_str_set(&h->value, "identity");

    return NGX_OK;
}
