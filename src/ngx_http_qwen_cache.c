
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * What nginx's own proxy_cache needs to cache answers (docs/cache.md):
 *
 *   $qwen_cache_key      what decides the answer: the endpoint, the
 *                        deployment (provider, region, upstream model id)
 *                        and the body as it goes upstream, rewritten; a
 *                        SHA-256 in hex, computed only when read
 *   $qwen_cache_bypass   "1" when the lookup must be skipped: a stream,
 *                        a request not routed, or a client that asked for
 *                        a fresh answer (Cache-Control: no-cache,
 *                        no-store, max-age=0; Pragma: no-cache)
 *   $qwen_cache_no_store "1" when the answer must not be stored: a stream,
 *                        a request not routed, Cache-Control: no-store
 *
 * The cache itself is nginx's (proxy_cache_path, proxy_cache,
 * proxy_cache_methods POST); a hit is seen by the header filter as
 * r->cached and accounted at no cost (ngx_http_qwen_account.c).
 */


#include "ngx_http_qwen_module.h"
#include "ngx_http_qwen_sha256.h"


/* bumped when what goes into the key changes: old entries then miss */
#define NGX_HTTP_QWEN_CACHE_KEY_VERSION  "qwen-cache-1"

#define NGX_HTTP_QWEN_CACHE_NO_CACHE     0x01
#define NGX_HTTP_QWEN_CACHE_NO_STORE     0x02


static ngx_int_t ngx_http_qwen_variable_cache_key(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_cache_skip(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_cache_hash_body(ngx_http_request_t *r,
    qwen_sha256_t *sha);
static ngx_uint_t ngx_http_qwen_cache_client(ngx_http_request_t *r);
static ngx_uint_t ngx_http_qwen_cache_directives(ngx_str_t *value);
static ngx_uint_t ngx_http_qwen_cache_token(u_char *p, u_char *last,
    const char *token, size_t len);


static ngx_http_variable_t  ngx_http_qwen_cache_vars[] = {

    { ngx_string("qwen_cache_key"), NULL,
      ngx_http_qwen_variable_cache_key, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_cache_bypass"), NULL,
      ngx_http_qwen_variable_cache_skip,
      NGX_HTTP_QWEN_CACHE_NO_CACHE|NGX_HTTP_QWEN_CACHE_NO_STORE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_cache_no_store"), NULL,
      ngx_http_qwen_variable_cache_skip, NGX_HTTP_QWEN_CACHE_NO_STORE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_qwen_cache_add_variables(ngx_conf_t *cf)
{
    return ngx_http_qwen_add_variable_table(cf, ngx_http_qwen_cache_vars);
}


/*
 * The key: the version, the URI, the deployment (its name holds the region
 * and the model id there), the provider, the model sent upstream, and the
 * body as sent.  NOCACHEABLE: each failover attempt has its own.  Not
 * found for a request the gateway did not route; $qwen_cache_bypass and
 * $qwen_cache_no_store are "1" then, so that nothing is looked up or
 * stored under an empty key.
 */

static ngx_int_t
ngx_http_qwen_variable_cache_key(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                digest[QWEN_SHA256_DIGEST_LEN];
    u_char               *p;
    ngx_str_t            *deployment;
    qwen_sha256_t         sha;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->state != NGX_HTTP_QWEN_READY
        || ctx->region == NULL)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    deployment = ctx->deployment ? &ctx->deployment->name
                                 : &ctx->region->name;

    qwen_sha256_init(&sha);

    /* each part ends with a NUL, which none of them holds */
    qwen_sha256_update(&sha, NGX_HTTP_QWEN_CACHE_KEY_VERSION,
                       sizeof(NGX_HTTP_QWEN_CACHE_KEY_VERSION));
    qwen_sha256_update(&sha, r->main->uri.data, r->main->uri.len);
    qwen_sha256_update(&sha, "", 1);
    qwen_sha256_update(&sha, deployment->data, deployment->len);
    qwen_sha256_update(&sha, "", 1);
    qwen_sha256_update(&sha, ctx->provider.data, ctx->provider.len);
    qwen_sha256_update(&sha, "", 1);
    qwen_sha256_update(&sha, ctx->model.data, ctx->model.len);
    qwen_sha256_update(&sha, "", 1);

    if (ngx_http_qwen_cache_hash_body(r->main, &sha) != NGX_OK) {
        return NGX_ERROR;
    }

    qwen_sha256_final(&sha, digest);

    p = ngx_pnalloc(r->pool, QWEN_SHA256_HEX_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    qwen_sha256_hex(digest, p);

    v->data = p;
    v->len = QWEN_SHA256_HEX_LEN;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * The body as it goes upstream: the gateway's rewritten buffers, in memory
 * or in nginx's temporary file (read here in blocks: at most
 * qwen_max_body_size, once per attempt that reads the key).
 */

static ngx_int_t
ngx_http_qwen_cache_hash_body(ngx_http_request_t *r, qwen_sha256_t *sha)
{
    off_t         pos;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;
    u_char        block[8192];

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            qwen_sha256_update(sha, b->pos, b->last - b->pos);
            continue;
        }

        if (!b->in_file || b->file == NULL) {
            continue;
        }

        for (pos = b->file_pos; pos < b->file_last; pos += n) {
            size = (size_t) ngx_min(b->file_last - pos,
                                    (off_t) sizeof(block));

            n = ngx_read_file(b->file, block, size, pos);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (n == 0) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "qwen: the request body's temporary file "
                              "\"%V\" ended early", &b->file->name);
                return NGX_ERROR;
            }

            qwen_sha256_update(sha, block, n);
        }
    }

    return NGX_OK;
}


/* "1" when the lookup (bypass) or the storing (no_store) is skipped */

static ngx_int_t
ngx_http_qwen_variable_cache_skip(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t            skip;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    if (ctx == NULL || ctx->state != NGX_HTTP_QWEN_READY
        || ctx->region == NULL || ctx->stream)
    {
        /* nothing the gateway routed, or an answer that streams */
        skip = 1;

    } else {
        skip = (ngx_http_qwen_cache_client(r->main) & data) != 0;
    }

    v->data = (u_char *) (skip ? "1" : "");
    v->len = skip ? 1 : 0;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * What the client's Cache-Control and Pragma headers ask for.  Walked in
 * the header list itself, so that every Cache-Control line counts, in
 * every nginx version (how nginx keeps repeated headers changed in 1.23).
 */

static ngx_uint_t
ngx_http_qwen_cache_client(ngx_http_request_t *r)
{
    ngx_uint_t        i, flags;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    flags = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Cache-Control") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1) == 0)
        {
            flags |= ngx_http_qwen_cache_directives(&h[i].value);

        } else if (h[i].key.len == sizeof("Pragma") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Pragma",
                                      sizeof("Pragma") - 1) == 0
                   && ngx_http_qwen_cache_token(h[i].value.data,
                                                h[i].value.data
                                                + h[i].value.len,
                                                "no-cache", 8))
        {
            flags |= NGX_HTTP_QWEN_CACHE_NO_CACHE;
        }
    }

    return flags;
}


static ngx_uint_t
ngx_http_qwen_cache_directives(ngx_str_t *value)
{
    u_char      *p, *last;
    ngx_uint_t   flags;

    p = value->data;
    last = p + value->len;
    flags = 0;

    if (ngx_http_qwen_cache_token(p, last, "no-cache", 8)
        || ngx_http_qwen_cache_token(p, last, "max-age=0", 9))
    {
        flags |= NGX_HTTP_QWEN_CACHE_NO_CACHE;
    }

    if (ngx_http_qwen_cache_token(p, last, "no-store", 8)) {
        flags |= NGX_HTTP_QWEN_CACHE_NO_STORE;
    }

    return flags;
}


/*
 * Whether a comma-separated list holds the directive, whole and in any
 * case: "no-cache" and "No-Cache, max-age=5" do, "x-no-cache" does not.
 * A directive with an argument (no-cache="Set-Cookie") counts as the
 * directive; a token with its value ("max-age=0") must match whole.
 */

static ngx_uint_t
ngx_http_qwen_cache_token(u_char *p, u_char *last, const char *token,
    size_t len)
{
    u_char  *start, *end;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) < len
            || ngx_strncasecmp(start, (u_char *) token, len) != 0)
        {
            continue;
        }

        if (start + len == end
            || (start[len] == '=' && ngx_strlchr((u_char *) token,
                                                 (u_char *) token + len, '=')
                                     == NULL))
        {
            return 1;
        }
    }

    return 0;
}
