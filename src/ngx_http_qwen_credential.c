
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The upstream credential, applied at the upstream boundary only.
 *
 * A region's key never enters the request's headers, which every other
 * module, subrequest and variable can read.  It is produced by a variable
 * that the gateway location hands to the proxy module:
 *
 *     proxy_set_header Authorization $qwen_upstream_authorization;
 *
 * and the variable gives the key only while the proxy module builds the
 * upstream request of a routed gateway request, for the region chosen,
 * and only when that request goes to the region's own url.  Everywhere
 * else (add_header, log_format, subrequests, non-gateway locations, after
 * the answer's header) it is empty.  proxy_set_header also keeps the
 * client's own Authorization from the upstream: the proxy module sends a
 * header it sets instead of the client's, and none when the value is
 * empty.
 *
 * "nginx -t" fails when a gateway location lacks the line (checked in
 * ngx_http_qwen_credential_check(), against the proxy module's own
 * proxy_set_header list).
 *
 * A provider that takes its key in another header (api-key, x-api-key)
 * has its own variable; a key that changes at run time (a refreshed
 * token) only changes what ngx_http_qwen_credential_value() returns.
 */


#include "ngx_http_qwen_module.h"


typedef struct {
    ngx_str_t                  header;
    ngx_str_t                  variable;
    ngx_str_t                  scheme;       /* before the key */
} ngx_http_qwen_credential_kind_t;


static ngx_http_qwen_credential_kind_t  ngx_http_qwen_credential_kinds[] = {
    { ngx_string("Authorization"), ngx_string("qwen_upstream_authorization"),
      ngx_string("Bearer ") },
    { ngx_string("api-key"), ngx_string("qwen_upstream_api_key"),
      ngx_null_string },
    { ngx_string("x-api-key"), ngx_string("qwen_upstream_x_api_key"),
      ngx_null_string },
    { ngx_null_string, ngx_null_string, ngx_null_string }
};


static ngx_int_t ngx_http_qwen_variable_credential(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_credential_value(ngx_http_request_t *r,
    ngx_http_qwen_region_t *region, ngx_str_t *value);
static ngx_uint_t ngx_http_qwen_credential_bound(ngx_http_request_t *r,
    ngx_http_upstream_t *u, ngx_http_qwen_region_t *region);
static ngx_array_t *ngx_http_qwen_proxy_headers(ngx_conf_t *cf);
static ngx_uint_t ngx_http_qwen_header_uses(ngx_keyval_t *kv,
    ngx_http_qwen_credential_kind_t *kind);


ngx_int_t
ngx_http_qwen_credential_add_variables(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_variable_t              *var;
    ngx_http_qwen_credential_kind_t  *kind;

    kind = ngx_http_qwen_credential_kinds;

    for (i = 0; kind[i].header.len; i++) {
        var = ngx_http_add_variable(cf, &kind[i].variable,
                                    NGX_HTTP_VAR_NOCACHEABLE
                                    |NGX_HTTP_VAR_NOHASH);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_http_qwen_variable_credential;
        var->data = i;
    }

    return NGX_OK;
}


/* the variables' indexes, to wipe what a request's evaluation left */

ngx_int_t
ngx_http_qwen_credential_init(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_int_t   index;
    ngx_uint_t  i;

    for (i = 0; ngx_http_qwen_credential_kinds[i].header.len; i++) {
        index = ngx_http_get_variable_index(cf,
                                  &ngx_http_qwen_credential_kinds[i].variable);
        if (index == NGX_ERROR) {
            return NGX_ERROR;
        }

        qmcf->credential_index[i] = index;
    }

    return NGX_OK;
}


/* the kind a region's qwen_region "auth_header=" names, or -1 */

ngx_int_t
ngx_http_qwen_credential_kind(ngx_str_t *header, ngx_str_t *scheme)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_qwen_credential_kinds[i].header.len; i++) {
        if (header->len == ngx_http_qwen_credential_kinds[i].header.len
            && ngx_strncasecmp(header->data,
                               ngx_http_qwen_credential_kinds[i].header.data,
                               header->len)
               == 0)
        {
            *scheme = ngx_http_qwen_credential_kinds[i].scheme;
            return i;
        }
    }

    return -1;
}


static ngx_int_t
ngx_http_qwen_variable_credential(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                  value;
    ngx_http_upstream_t       *u;
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_qwen_region_t    *region;
    ngx_http_qwen_loc_conf_t  *qlcf;

    v->not_found = 1;

    if (r != r->main) {
        return NGX_OK;
    }

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);
    ctx = ngx_http_qwen_get_ctx(r);

    if (!qlcf->gateway || ctx == NULL || ctx->sealed
        || ctx->state != NGX_HTTP_QWEN_READY || ctx->region == NULL)
    {
        return NGX_OK;
    }

    /*
     * The proxy module builds the upstream request right after creating
     * the upstream: nothing of it has been connected, sent or set up to
     * be cleaned yet.  After that moment these are set for good.
     */

    u = r->upstream;

    if (u == NULL || u->state != NULL || u->cleanup != NULL
        || u->request_sent || u->peer.connection != NULL || r->header_sent)
    {
        return NGX_OK;
    }

    region = ctx->region;

    if (region->credential_kind != data) {
        return NGX_OK;
    }

    if (!ngx_http_qwen_credential_bound(r, u, region)) {
        return NGX_OK;
    }

    if (ngx_http_qwen_credential_value(r, region, &value) != NGX_OK
        || value.len == 0)
    {
        return NGX_OK;
    }

    v->len = value.len;
    v->data = value.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* the header value: fixed at configuration time for now */

static ngx_int_t
ngx_http_qwen_credential_value(ngx_http_request_t *r,
    ngx_http_qwen_region_t *region, ngx_str_t *value)
{
    *value = region->credential;
    return NGX_OK;
}


/*
 * The key goes only to the region's own url: the scheme and the host (an
 * upstream{} name or a host, with the port when the url has one) that the
 * proxy module is about to use must be the url's.
 */

static ngx_uint_t
ngx_http_qwen_credential_bound(ngx_http_request_t *r, ngx_http_upstream_t *u,
    ngx_http_qwen_region_t *region)
{
    u_char                        *p, *last, *colon;
    in_port_t                      port;
    ngx_str_t                      scheme, hostport, host, target;
    ngx_int_t                      n;
    ngx_http_upstream_srv_conf_t  *uscf;

    p = region->url.data;
    last = p + region->url.len;

    colon = ngx_strlchr(p, last, ':');   /* "http://" or "https://" */
    scheme.data = p;
    scheme.len = colon + 3 - p;

    hostport.data = colon + 3;
    hostport.len = last - hostport.data;

    host = hostport;
    port = 0;

    colon = ngx_strlchr(hostport.data, last, ':');

    if (colon && ngx_strlchr(hostport.data, last, ']') == NULL) {
        host.len = colon - hostport.data;
        n = ngx_atoi(colon + 1, last - colon - 1);
        port = (n > 0 && n < 65536) ? (in_port_t) n : 0;
    }

    if (u->schema.len != scheme.len
        || ngx_strncasecmp(u->schema.data, scheme.data, scheme.len) != 0)
    {
        target = u->schema;
        goto mismatch;
    }

    if (u->resolved) {
        target = u->resolved->host;

        if (target.len == hostport.len
            && ngx_strncasecmp(target.data, hostport.data, target.len) == 0)
        {
            return 1;
        }

        if (target.len == host.len
            && ngx_strncasecmp(target.data, host.data, host.len) == 0
            && (port == 0 || u->resolved->port == port))
        {
            return 1;
        }

        goto mismatch;
    }

    uscf = u->conf ? u->conf->upstream : NULL;

    if (uscf == NULL) {
        ngx_str_set(&target, "(none)");
        goto mismatch;
    }

    target = uscf->host;

    if (target.len == host.len
        && ngx_strncasecmp(target.data, host.data, host.len) == 0
        && (port == 0 || uscf->port == port))
    {
        return 1;
    }

mismatch:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "qwen: the upstream request goes to \"%V\", not to the "
                  "url of region \"%V\" (\"%V\"): its key is withheld",
                  &target, &region->name, &region->url);

    return 0;
}


/*
 * Once the answer's header goes out (or the log phase begins) no upstream
 * request is built any more: the variables are closed, and what an
 * evaluation left in the request's variable cache is wiped, so that a
 * log_format or add_header reading the cache finds nothing.
 */

void
ngx_http_qwen_credential_seal(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    ctx->sealed = 1;

    ngx_http_qwen_credential_wipe(r);
}


/*
 * Wipes what an evaluation left in the variable cache; the failover does
 * it for an answer it holds back, whose attempt is over but after which
 * another upstream request may be built.
 */

void
ngx_http_qwen_credential_wipe(ngx_http_request_t *r)
{
    ngx_uint_t                  i;
    ngx_http_variable_value_t  *v;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    for (i = 0; ngx_http_qwen_credential_kinds[i].header.len; i++) {
        v = &r->variables[qmcf->credential_index[i]];

        v->valid = 0;
        v->not_found = 0;
        v->len = 0;
        v->data = NULL;
    }
}


/*
 * nginx -t: a gateway location must hand each kind of key its regions use
 * to the proxy module with proxy_set_header, in the location or inherited.
 * The proxy module's list is found through its own directive table (the
 * offset of proxy_set_header's keyval slot), after it has merged.
 */

ngx_int_t
ngx_http_qwen_credential_check(ngx_conf_t *cf, ngx_http_qwen_loc_conf_t *qlcf)
{
    ngx_uint_t                        i, k, used;
    ngx_array_t                      *headers;
    ngx_keyval_t                     *kv;
    ngx_http_qwen_region_t           *rg;
    ngx_http_qwen_main_conf_t        *qmcf;
    ngx_http_qwen_credential_kind_t  *kind;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

    headers = ngx_http_qwen_proxy_headers(cf);

    if (headers == NGX_CONF_UNSET_PTR) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"qwen_gateway\" in %s:%ui needs nginx's proxy module "
                      "(proxy_pass)", qlcf->gateway_file, qlcf->gateway_line);
        return NGX_ERROR;
    }

    kind = ngx_http_qwen_credential_kinds;
    rg = qmcf->regions.elts;

    for (k = 0; kind[k].header.len; k++) {

        /* the Authorization line is always needed: it keeps the client's */
        used = (k == 0);

        for (i = 0; i < qmcf->regions.nelts; i++) {
            if (rg[i].credential_kind == k) {
                used = 1;
            }
        }

        if (!used) {
            continue;
        }

        kv = headers ? headers->elts : NULL;

        for (i = 0; headers && i < headers->nelts; i++) {
            if (ngx_http_qwen_header_uses(&kv[i], &kind[k])) {
                break;
            }
        }

        if (headers == NULL || i == headers->nelts) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"qwen_gateway\" in %s:%ui needs "
                          "\"proxy_set_header %V $%V;\" in its location "
                          "or above: the upstream key is applied there",
                          qlcf->gateway_file, qlcf->gateway_line,
                          &kind[k].header, &kind[k].variable);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The location's merged proxy_set_header list (ngx_keyval_t), NULL when
 * it has none, NGX_CONF_UNSET_PTR when there is no proxy module.
 */

static ngx_array_t *
ngx_http_qwen_proxy_headers(ngx_conf_t *cf)
{
    void           **loc_conf;
    ngx_uint_t       m;
    ngx_module_t    *module;
    ngx_command_t   *cmd;

    for (m = 0; cf->cycle->modules[m]; m++) {
        module = cf->cycle->modules[m];

        if (module->type == NGX_HTTP_MODULE
            && ngx_strcmp(module->name, "ngx_http_proxy_module") == 0)
        {
            break;
        }
    }

    if (cf->cycle->modules[m] == NULL || module->commands == NULL) {
        return NGX_CONF_UNSET_PTR;
    }

    for (cmd = module->commands; cmd->name.len; cmd++) {
        if (cmd->name.len == sizeof("proxy_set_header") - 1
            && ngx_strncmp(cmd->name.data, "proxy_set_header",
                           sizeof("proxy_set_header") - 1) == 0
            && cmd->set == ngx_conf_set_keyval_slot
            && cmd->conf == NGX_HTTP_LOC_CONF_OFFSET)
        {
            break;
        }
    }

    if (cmd->name.len == 0) {
        return NGX_CONF_UNSET_PTR;
    }

    loc_conf = ((ngx_http_conf_ctx_t *) cf->ctx)->loc_conf;

    return *(ngx_array_t **) ((u_char *) loc_conf[module->ctx_index]
                              + cmd->offset);
}


static ngx_uint_t
ngx_http_qwen_header_uses(ngx_keyval_t *kv,
    ngx_http_qwen_credential_kind_t *kind)
{
    u_char  *p, *last;

    if (kv->key.len != kind->header.len
        || ngx_strncasecmp(kv->key.data, kind->header.data, kv->key.len) != 0)
    {
        return 0;
    }

    /* the value is the variable alone, "$name" or "${name}" */

    p = kv->value.data;
    last = p + kv->value.len;

    if (last - p == (ssize_t) kind->variable.len + 1
        && p[0] == '$'
        && ngx_strncmp(p + 1, kind->variable.data, kind->variable.len) == 0)
    {
        return 1;
    }

    if (last - p == (ssize_t) kind->variable.len + 3
        && p[0] == '$' && p[1] == '{' && last[-1] == '}'
        && ngx_strncmp(p + 2, kind->variable.data, kind->variable.len) == 0)
    {
        return 1;
    }

    return 0;
}
