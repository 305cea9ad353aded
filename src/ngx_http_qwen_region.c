
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Regions: an upstream endpoint with the API key bound to it.  DashScope
 * keys are region-locked, so a key is never looked up apart from its
 * region, and it reaches the upstream only in the request the proxy
 * module builds for a request routed to that very region
 * (ngx_http_qwen_credential.c).  Keys are read when the
 * configuration is loaded and are never printed, by any log line or
 * variable.
 */


#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_NOT_AVAILABLE                                          \
    "The model is not available in any region this gateway serves."
#define NGX_HTTP_QWEN_MISCONFIGURED  "The gateway is misconfigured."


static ngx_int_t ngx_http_qwen_region_key_file(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *key);
static ngx_int_t ngx_http_qwen_key_valid(ngx_str_t *key);
static ngx_int_t ngx_http_qwen_header_sendable(ngx_str_t *name,
    ngx_str_t *value);


/*
 * qwen_region name url=scheme://host-or-upstream[:port] [host=name]
 *             [key_env=VAR]... [key_file=path] [key=secret]
 *             [provider=p] [without_key=region] [auth_header=name]
 *             [path=/prefix] [header=Name:value]...;
 *
 * (also spelt qwen_provider: a region is a provider of DashScope's)
 *
 * The key sources are tried in the order written; the first that yields
 * a key wins.
 */

char *
ngx_http_qwen_region(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    char                    *env;
    u_char                  *p, *last, *colon;
    ngx_keyval_t            *kv;
    ngx_str_t               *value, key, file, v, header, scheme;
    ngx_int_t                kind;
    ngx_uint_t               i, sources;
    ngx_http_qwen_region_t  *rg;

    value = cf->args->elts;

    if (ngx_http_qwen_region_find(qmcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "region \"%V\" is defined already", &value[1]);
        return NGX_CONF_ERROR;
    }

    rg = ngx_array_push(&qmcf->regions);
    if (rg == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rg, sizeof(ngx_http_qwen_region_t));

    rg->name = value[1];
    ngx_str_set(&rg->provider, "alibaba-cloud");
    rg->conf_file = cf->conf_file->file.name;
    rg->conf_line = cf->conf_file->line;

    ngx_str_null(&key);
    ngx_str_set(&header, "authorization");
    sources = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            rg->url.data = value[i].data + 4;
            rg->url.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "host=", 5) == 0) {
            rg->host.data = value[i].data + 5;
            rg->host.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "provider=", 9) == 0) {
            rg->provider.data = value[i].data + 9;
            rg->provider.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "path=", 5) == 0) {
            rg->path.data = value[i].data + 5;
            rg->path.len = value[i].len - 5;

            if (rg->path.len == 0 || rg->path.data[0] != '/'
                || rg->path.data[rg->path.len - 1] == '/')
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "region \"%V\": \"path=\" takes a path "
                                   "that starts with \"/\" and does not end "
                                   "with one, as \"/compatible-mode\"",
                                   &rg->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            p = value[i].data + 7;
            last = value[i].data + value[i].len;
            colon = ngx_strlchr(p, last, ':');

            if (colon == NULL || colon == p) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "region \"%V\": \"header=\" takes "
                                   "\"Name:value\"", &rg->name);
                return NGX_CONF_ERROR;
            }

            if (rg->headers == NULL) {
                rg->headers = ngx_array_create(cf->pool, 2,
                                               sizeof(ngx_keyval_t));
                if (rg->headers == NULL) {
                    return NGX_CONF_ERROR;
                }
            }

            kv = ngx_array_push(rg->headers);
            if (kv == NULL) {
                return NGX_CONF_ERROR;
            }

            kv->key.data = p;
            kv->key.len = colon - p;
            kv->value.data = colon + 1;
            kv->value.len = last - colon - 1;

            while (kv->value.len && kv->value.data[0] == ' ') {
                kv->value.data++;
                kv->value.len--;
            }

            if (ngx_http_qwen_header_sendable(&kv->key, &kv->value)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "region \"%V\": header \"%V\" cannot be "
                                   "sent: a name of letters, digits and "
                                   "\"-\", a value without control "
                                   "characters, and not a credential header",
                                   &rg->name, &kv->key);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "without_key=", 12) == 0) {
            rg->without_key.data = value[i].data + 12;
            rg->without_key.len = value[i].len - 12;
            continue;
        }

        if (ngx_strncmp(value[i].data, "auth_header=", 12) == 0) {
            header.data = value[i].data + 12;
            header.len = value[i].len - 12;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key_env=", 8) == 0) {
            sources++;

            if (value[i].len == 8) {
                goto invalid;
            }

            if (key.len == 0) {
                env = getenv((char *) value[i].data + 8);

                if (env != NULL) {
                    key.data = (u_char *) env;
                    key.len = ngx_strlen(env);
                }
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key_file=", 9) == 0) {
            sources++;

            file.data = value[i].data + 9;
            file.len = value[i].len - 9;

            if (file.len == 0) {
                goto invalid;
            }

            if (key.len == 0
                && ngx_http_qwen_region_key_file(cf, &file, &key) != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            sources++;

            if (key.len == 0) {
                key.data = value[i].data + 4;
                key.len = value[i].len - 4;
            }

            continue;
        }

        goto invalid;
    }

    if (rg->url.len > 7
        && ngx_strncasecmp(rg->url.data, (u_char *) "http://", 7) == 0)
    {
        p = rg->url.data + 7;

    } else if (rg->url.len > 8
               && ngx_strncasecmp(rg->url.data, (u_char *) "https://", 8)
                  == 0)
    {
        p = rg->url.data + 8;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "region \"%V\" needs \"url=http://...\" or "
                           "\"url=https://...\"", &rg->name);
        return NGX_CONF_ERROR;
    }

    last = rg->url.data + rg->url.len;

    if (p == last || ngx_strlchr(p, last, '/') != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "region \"%V\": \"url=\" takes a scheme and a "
                           "host or upstream name, without a path: the path "
                           "belongs to proxy_pass", &rg->name);
        return NGX_CONF_ERROR;
    }

    if (rg->host.len == 0) {
        rg->host.data = p;
        rg->host.len = last - p;
    }

    if (sources == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "region \"%V\" needs a key: \"key_env=\", "
                           "\"key_file=\" or \"key=\"", &rg->name);
        return NGX_CONF_ERROR;
    }

    kind = ngx_http_qwen_credential_kind(&header, &scheme);

    if (kind < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "region \"%V\": \"auth_header=%V\" is none of "
                           "\"authorization\", \"api-key\", \"x-api-key\"",
                           &rg->name, &header);
        return NGX_CONF_ERROR;
    }

    rg->credential_kind = kind;

    if (key.len) {
        if (ngx_http_qwen_key_valid(&key) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the key of region \"%V\" has characters "
                               "that cannot go in a header", &rg->name);
            return NGX_CONF_ERROR;
        }

        v.len = scheme.len + key.len;
        v.data = ngx_pnalloc(cf->pool, v.len);
        if (v.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(ngx_cpymem(v.data, scheme.data, scheme.len),
                   key.data, key.len);

        rg->credential = v;
    }

    return NGX_CONF_OK;

invalid:

    /* the parameter may hold a key: name only what comes before '=' */

    p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
    v.data = value[i].data;
    v.len = p ? (size_t) (p - v.data) : value[i].len;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "region \"%V\": invalid parameter \"%V\"",
                       &rg->name, &v);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_qwen_region_key_file(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *key)
{
    u_char     *p, *last;
    ngx_str_t   name, content;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_qwen_conf_read_file(cf, &name, 4096, &content) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the key is the file's first line, without surrounding blanks */

    p = content.data;
    last = content.data + content.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    key->data = p;

    while (p < last && *p != '\n' && *p != '\r') {
        p++;
    }

    while (p > key->data && (p[-1] == ' ' || p[-1] == '\t')) {
        p--;
    }

    key->len = p - key->data;

    return NGX_OK;
}


/*
 * An extra header of a provider: a token name that is not one the
 * gateway itself controls, and a value that cannot split the request.
 */

static ngx_int_t
ngx_http_qwen_header_sendable(ngx_str_t *name, ngx_str_t *value)
{
    size_t  i;

    static const char  *reserved[] = {
        "authorization", "api-key", "x-api-key", "host", "content-length",
        "transfer-encoding", "connection", NULL
    };

    for (i = 0; i < name->len; i++) {
        if (!((name->data[i] >= 'a' && name->data[i] <= 'z')
              || (name->data[i] >= 'A' && name->data[i] <= 'Z')
              || (name->data[i] >= '0' && name->data[i] <= '9')
              || name->data[i] == '-' || name->data[i] == '_'))
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; reserved[i]; i++) {
        if (name->len == ngx_strlen(reserved[i])
            && ngx_strncasecmp(name->data, (u_char *) reserved[i], name->len)
               == 0)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < value->len; i++) {
        if (value->data[i] < 0x20 || value->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_key_valid(ngx_str_t *key)
{
    size_t  i;

    for (i = 0; i < key->len; i++) {
        if (key->data[i] <= 0x20 || key->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_qwen_regions_init(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_uint_t               i;
    ngx_http_qwen_region_t  *rg, *target;

    rg = qmcf->regions.elts;

    for (i = 0; i < qmcf->regions.nelts; i++) {
        rg[i].target = &rg[i];

        if (rg[i].without_key.len == 0) {
            continue;
        }

        target = ngx_http_qwen_region_find(qmcf, &rg[i].without_key);

        if (target == NULL || target == &rg[i]) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "region \"%V\": \"without_key=%V\" names no other "
                          "region in %V:%ui", &rg[i].name,
                          &rg[i].without_key, &rg[i].conf_file,
                          rg[i].conf_line);
            return NGX_ERROR;
        }

        if (rg[i].credential.len == 0) {
            ngx_log_error(NGX_LOG_NOTICE, cf->log, 0,
                          "qwen: region \"%V\" has no key, its requests go "
                          "to region \"%V\"", &rg[i].name, &target->name);
            rg[i].target = target;
        }
    }

    return NGX_OK;
}


ngx_http_qwen_region_t *
ngx_http_qwen_region_find(ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *name)
{
    ngx_uint_t               i;
    ngx_http_qwen_region_t  *rg;

    rg = qmcf->regions.elts;

    for (i = 0; i < qmcf->regions.nelts; i++) {
        if (rg[i].name.len == name->len
            && ngx_strncmp(rg[i].name.data, name->data, name->len) == 0)
        {
            return &rg[i];
        }
    }

    return NULL;
}


/*
 * Picks the first region of the request: qwen_default_region (the first region
 * defined when it is not set), unless the model's catalogue entry pins
 * the model to regions that do not include it, in which case the first
 * of the model's regions that is defined here.
 */

ngx_int_t
ngx_http_qwen_region_select(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_region_t **region, ngx_http_qwen_error_t *err)
{
    ngx_str_t                   name, *pinned;
    ngx_uint_t                  i;
    ngx_http_qwen_region_t     *rg, *found;
    ngx_http_qwen_loc_conf_t   *qlcf;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (qmcf->regions.nelts == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: no region is configured (qwen_region)");
        goto server_error;
    }

    rg = qmcf->regions.elts;
    found = &rg[0];

    if (qlcf->region) {
        if (ngx_http_complex_value(r, qlcf->region, &name) != NGX_OK) {
            return NGX_ERROR;
        }

        found = ngx_http_qwen_region_find(qmcf, &name);

        if (found == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "qwen: qwen_default_region gave \"%V\", which is "
                          "no region", &name);
            goto server_error;
        }
    }

    if (ctx->entry && ctx->entry->regions) {
        pinned = ctx->entry->regions->elts;

        for (i = 0; i < ctx->entry->regions->nelts; i++) {
            if (pinned[i].len == found->name.len
                && ngx_strncmp(pinned[i].data, found->name.data,
                               found->name.len) == 0)
            {
                break;
            }
        }

        if (i == ctx->entry->regions->nelts) {
            found = NULL;

            for (i = 0; i < ctx->entry->regions->nelts; i++) {
                found = ngx_http_qwen_region_find(qmcf, &pinned[i]);
                if (found) {
                    break;
                }
            }

            if (found == NULL) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "qwen: model \"%V\" is offered in no "
                              "configured region", &ctx->model);

                ngx_http_qwen_error_set(err, NGX_HTTP_BAD_REQUEST,
                    "invalid_request_error", "model_not_available", "model",
                    (u_char *) NGX_HTTP_QWEN_NOT_AVAILABLE,
                    sizeof(NGX_HTTP_QWEN_NOT_AVAILABLE) - 1);
                return NGX_DECLINED;
            }
        }
    }

    /* the key, and where a keyless region sends its requests: at routing */

    *region = found;

    return NGX_OK;

server_error:

    ngx_http_qwen_error_set(err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "server_error", "gateway_misconfigured", NULL,
                            (u_char *) NGX_HTTP_QWEN_MISCONFIGURED,
                            sizeof(NGX_HTTP_QWEN_MISCONFIGURED) - 1);

    return NGX_DECLINED;
}
