
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The module: its directives, the configuration of each level, the
 * registration of the handlers, and the per-request context.
 */


#include "ngx_http_qwen_module.h"

#include <cjson/cJSON.h>


static void *ngx_http_qwen_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_qwen_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_qwen_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_qwen_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_qwen_models_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_qwen_gateway(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_qwen_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_qwen_postconfiguration(ngx_conf_t *cf);
static void ngx_http_qwen_ctx_cleanup(void *data);


static ngx_conf_enum_t  ngx_http_qwen_unknown_model_policies[] = {
    { ngx_string("reject"), NGX_HTTP_QWEN_UNKNOWN_REJECT },
    { ngx_string("pass"), NGX_HTTP_QWEN_UNKNOWN_PASS },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_qwen_tries_bounds = {
    ngx_conf_check_num_bounds, 1, NGX_HTTP_QWEN_MAX_CHAIN * 2
};


static ngx_command_t  ngx_http_qwen_commands[] = {

    { ngx_string("qwen_gateway"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_qwen_gateway,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, gateway),
      NULL },

    { ngx_string("qwen_models"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_models_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_models_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_models_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_model_pattern"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_qwen_model_pattern,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_model_prefixes"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_model_prefixes,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_inject_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, inject_usage),
      NULL },

    { ngx_string("qwen_unknown_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, unknown_model),
      &ngx_http_qwen_unknown_model_policies },

    { ngx_string("qwen_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("qwen_metrics_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_qwen_metrics_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_ready"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_ready_probe,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_qwen_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_region"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_qwen_region,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_pass_client_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_pass_client_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_qwen_region,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_keys_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_keys_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_keys_state_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_keys_state_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, keys),
      NULL },

    { ngx_string("qwen_key_info"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_key_info,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_failover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, failover),
      NULL },

    { ngx_string("qwen_failover_on"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_failover_on,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_failover_tries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, failover_tries),
      &ngx_http_qwen_tries_bounds },

    { ngx_string("qwen_failover_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, failover_timeout),
      NULL },

    { ngx_string("qwen_first_byte_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, first_byte_timeout),
      NULL },

    { ngx_string("qwen_retry_after_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, retry_after_max),
      NULL },

    { ngx_string("qwen_retry_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_qwen_retry_wait,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_cooldown"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_cooldown,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_default_region"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, region),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_qwen_module_ctx = {
    ngx_http_qwen_preconfiguration,        /* preconfiguration */
    ngx_http_qwen_postconfiguration,       /* postconfiguration */

    ngx_http_qwen_create_main_conf,        /* create main configuration */
    ngx_http_qwen_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_qwen_create_loc_conf,         /* create location configuration */
    ngx_http_qwen_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_qwen_module = {
    NGX_MODULE_V1,
    &ngx_http_qwen_module_ctx,             /* module context */
    ngx_http_qwen_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_qwen_limits_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_qwen_limits_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_qwen_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qmcf->prefixes = NULL;
     *     qmcf->file_prefixes = NULL;
     *     qmcf->models_file = { 0, NULL };
     *     qmcf->models_json = { 0, NULL };
     */

    if (ngx_array_init(&qmcf->models, cf->pool, 64,
                       sizeof(ngx_http_qwen_model_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&qmcf->patterns, cf->pool, 4,
                       sizeof(ngx_http_qwen_pattern_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&qmcf->regions, cf->pool, 4,
                       sizeof(ngx_http_qwen_region_t))
        != NGX_OK)
    {
        return NULL;
    }

    qmcf->names_keys = ngx_pcalloc(cf->temp_pool,
                                   sizeof(ngx_hash_keys_arrays_t));
    if (qmcf->names_keys == NULL) {
        return NULL;
    }

    qmcf->names_keys->pool = cf->pool;
    qmcf->names_keys->temp_pool = cf->temp_pool;

    if (ngx_hash_keys_array_init(qmcf->names_keys, NGX_HASH_SMALL) != NGX_OK)
    {
        return NULL;
    }

    return qmcf;
}


static char *
ngx_http_qwen_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    if (ngx_http_qwen_catalog_init(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_regions_init(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_deployments_init(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_limits_init(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_models_build(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_credential_init(cf, qmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_qwen_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_loc_conf_t));
    if (qlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qlcf->models = 0;
     */

    qlcf->gateway = NGX_CONF_UNSET;
    qlcf->inject_usage = NGX_CONF_UNSET;
    qlcf->status = NGX_CONF_UNSET_UINT;
    qlcf->unknown_model = NGX_CONF_UNSET_UINT;
    qlcf->max_body_size = NGX_CONF_UNSET;
    qlcf->region = NGX_CONF_UNSET_PTR;
    qlcf->pass_headers = NGX_CONF_UNSET_PTR;

    qlcf->failover = NGX_CONF_UNSET;
    qlcf->failover_on = NGX_CONF_UNSET_UINT;
    qlcf->failover_tries = NGX_CONF_UNSET_UINT;
    qlcf->failover_timeout = NGX_CONF_UNSET_MSEC;
    qlcf->first_byte_timeout = NGX_CONF_UNSET_MSEC;
    qlcf->retry_after_max = NGX_CONF_UNSET_MSEC;
    qlcf->retry_wait_min = NGX_CONF_UNSET_MSEC;
    qlcf->retry_wait_max = NGX_CONF_UNSET_MSEC;
    qlcf->cooldown_transient = NGX_CONF_UNSET_MSEC;
    qlcf->cooldown_auth = NGX_CONF_UNSET_MSEC;
    qlcf->cooldown_arrears = NGX_CONF_UNSET_MSEC;

    qlcf->keys = NGX_CONF_UNSET;

    return qlcf;
}


static char *
ngx_http_qwen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_qwen_loc_conf_t *prev = parent;
    ngx_http_qwen_loc_conf_t *conf = child;

    ngx_http_qwen_main_conf_t  *qmcf;

    ngx_conf_merge_value(conf->gateway, prev->gateway, 0);
    ngx_conf_merge_value(conf->inject_usage, prev->inject_usage, 1);
    ngx_conf_merge_uint_value(conf->unknown_model, prev->unknown_model,
                              NGX_HTTP_QWEN_UNKNOWN_REJECT);
    ngx_conf_merge_off_value(conf->max_body_size, prev->max_body_size,
                             16 * 1024 * 1024);
    ngx_conf_merge_ptr_value(conf->region, prev->region, NULL);
    ngx_conf_merge_ptr_value(conf->pass_headers, prev->pass_headers, NULL);

    ngx_http_qwen_failover_merge(conf, prev);

    ngx_conf_merge_value(conf->keys, prev->keys, 0);

    if (conf->gateway && conf->keys) {
        qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

        if (qmcf->keys == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"qwen_keys on\" in the location of "
                          "\"qwen_gateway\" in %s:%ui needs a "
                          "\"qwen_keys_file\" in the http block",
                          conf->gateway_file, conf->gateway_line);
            return NGX_CONF_ERROR;
        }
    }

    if (conf->key_info) {
        qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

        if (qmcf->keys == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"qwen_key_info\" needs a "
                               "\"qwen_keys_file\" in the http block");
            return NGX_CONF_ERROR;
        }
    }

    if (conf->gateway_file == NULL) {
        conf->gateway_file = prev->gateway_file;
        conf->gateway_line = prev->gateway_line;
    }

    /*
     * The proxy module, a static module, has merged every location before
     * this module merges any: its proxy_set_header list is final here.
     */

    if (conf->gateway && ngx_http_qwen_credential_check(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->status != NGX_CONF_UNSET_UINT) {
        qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

        if (qmcf->zone == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"qwen_status\" needs a "
                               "\"qwen_metrics_zone\" in the http block");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* qwen_gateway on | off; remembers where, for the checks at merge time */

static char *
ngx_http_qwen_gateway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK) {
        qlcf->gateway_file = cf->conf_file->file.name.data;
        qlcf->gateway_line = cf->conf_file->line;
    }

    return rv;
}


static char *
ngx_http_qwen_models_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (qlcf->models) {
        return "is duplicate";
    }

    qlcf->models = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_qwen_models_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_qwen_add_variables(cf) != NGX_OK
        || ngx_http_qwen_keys_add_variables(cf) != NGX_OK
        || ngx_http_qwen_cache_add_variables(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_qwen_credential_add_variables(cf);
}


static ngx_int_t
ngx_http_qwen_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h, *first;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * After the access phase, as mirror and try_files: nginx's access
     * modules decide first, on the client's own request.  Registered after
     * nginx's own modules, the handler runs first in its phase, so mirror
     * copies the rewritten body.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_qwen_precontent_handler;

    /*
     * The log handler settles usage and cost; it goes first in the log
     * phase, so that access_log, whose handler is already there, can write
     * the $qwen_* figures.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    first = cmcf->phases[NGX_HTTP_LOG_PHASE].handlers.elts;
    ngx_memmove(&first[1], &first[0],
                (cmcf->phases[NGX_HTTP_LOG_PHASE].handlers.nelts - 1)
                * sizeof(ngx_http_handler_pt));
    first[0] = ngx_http_qwen_log_handler;

    return ngx_http_qwen_filter_init(cf);
}


/*
 * An internal redirect (error_page, named locations for failover) clears
 * every module's context, but the gateway's figures must survive it: the
 * body has been rewritten once and the access log of the final location
 * still wants $qwen_* variables.  So the context is also hung on the
 * request pool as a cleanup entry, where it is found again.
 */

ngx_http_qwen_ctx_t *
ngx_http_qwen_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    if (ctx != NULL) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_qwen_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_qwen_module);
            return ctx;
        }
    }

    return NULL;
}


ngx_http_qwen_ctx_t *
ngx_http_qwen_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_qwen_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_qwen_ctx_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_qwen_module);

    return ctx;
}


static void
ngx_http_qwen_ctx_cleanup(void *data)
{
    /* only a marker: the context lives in the request pool */
}


/*
 * Reads a whole file named in the configuration into cf->pool, at most
 * "max" bytes, NUL-terminated; errors are logged against the directive.
 */

ngx_int_t
ngx_http_qwen_conf_read_file(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    ngx_str_t *content)
{
    ssize_t           n;
    u_char           *data;
    ngx_int_t         rc;
    ngx_file_t        f;
    ngx_file_info_t   fi;

    ngx_memzero(&f, sizeof(ngx_file_t));
    f.name = *name;
    f.log = cf->log;

    f.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (f.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name->data);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(f.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name->data);
        goto done;
    }

    if ((size_t) ngx_file_size(&fi) > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is larger than %uz bytes",
                           name->data, max);
        goto done;
    }

    data = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (data == NULL) {
        goto done;
    }

    n = ngx_read_file(&f, data, ngx_file_size(&fi), 0);
    if (n == NGX_ERROR) {
        goto done;
    }

    data[n] = '\0';
    content->data = data;
    content->len = n;
    rc = NGX_OK;

done:

    if (ngx_close_file(f.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", name->data);
    }

    return rc;
}


/*
 * Reads and parses a JSON file named in the configuration ("what" names
 * it in messages).  A file that is not JSON is reported with the line the
 * parser stopped at.  The text stays in "json" for the caller, who may
 * have to wipe it (a keys file holds secrets), whatever the result.
 */

ngx_int_t
ngx_http_qwen_conf_read_json(ngx_conf_t *cf, ngx_str_t *file, size_t max,
    const char *what, ngx_str_t *json, void **root)
{
    u_char      *p;
    ngx_uint_t   line;
    const char  *at;

    if (ngx_http_qwen_conf_read_file(cf, file, max, json) != NGX_OK) {
        ngx_str_null(json);
        return NGX_ERROR;
    }

    *root = cJSON_ParseWithLength((const char *) json->data, json->len);

    if (*root != NULL) {
        return NGX_OK;
    }

    at = cJSON_GetErrorPtr();
    line = 1;

    if (at != NULL && at >= (const char *) json->data
        && at <= (const char *) json->data + json->len)
    {
        for (p = json->data; p < (u_char *) at; p++) {
            if (*p == '\n') {
                line++;
            }
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "%s \"%V\" is not valid JSON near line %ui",
                       what, file, line);

    return NGX_ERROR;
}
