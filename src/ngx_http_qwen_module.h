
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The types every part of the module shares: the configuration of each
 * level and the per-request context.  Each concern lives in its own .c
 * file with its functions declared here, grouped by file.
 */


#ifndef _NGX_HTTP_QWEN_MODULE_H_INCLUDED_
#define _NGX_HTTP_QWEN_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_qwen_json.h"
#include "ngx_http_qwen_usage.h"


#define NGX_HTTP_QWEN_UNKNOWN_REJECT  0
#define NGX_HTTP_QWEN_UNKNOWN_PASS    1


#define NGX_HTTP_QWEN_TTFT_BUCKETS    8

/* authorization, api-key, x-api-key: see ngx_http_qwen_credential.c */
#define NGX_HTTP_QWEN_CREDENTIAL_KINDS  3


/* one price tier; money is integer micro-USD per 1M tokens */
typedef struct {
    uint64_t                      up_to;         /* prompt tokens, 0: any */
    int64_t                       input;
    int64_t                       output;
    int64_t                       cached_input;  /* -1: as input */
    int64_t                       thinking_output; /* -1: as output */
} ngx_http_qwen_price_t;


/* a model of the catalogue */
typedef struct {
    ngx_str_t                     id;            /* upstream model id */
    ngx_str_t                     provider;
    ngx_array_t                  *regions;       /* of ngx_str_t, or NULL */
    ngx_uint_t                    context;       /* tokens, 0: unknown */
    ngx_http_qwen_price_t        *prices;        /* tiers, ascending */
    ngx_uint_t                    nprices;
} ngx_http_qwen_model_t;


/* a pattern rule: a regular expression and its replacement */
typedef struct {
    ngx_regex_t                  *regex;
    ngx_str_t                     source;        /* for log lines */
    ngx_str_t                     replacement;   /* with $1..$9 */
    ngx_uint_t                    captures;
    ngx_str_t                     provider;
} ngx_http_qwen_pattern_t;


/* a region (an endpoint with the key bound to it) */
typedef struct ngx_http_qwen_region_s  ngx_http_qwen_region_t;

struct ngx_http_qwen_region_s {
    ngx_str_t                     name;
    ngx_str_t                     url;           /* for proxy_pass */
    ngx_str_t                     host;          /* Host and TLS SNI */
    ngx_str_t                     provider;
    ngx_str_t                     credential;    /* "Bearer <key>", or "" */
    ngx_uint_t                    credential_kind; /* the header it goes in */
    ngx_str_t                     without_key;   /* region when keyless */
    ngx_http_qwen_region_t       *target;        /* where requests go */
    ngx_str_t                     conf_file;     /* for later messages */
    ngx_uint_t                    conf_line;
};


/* the counters of the shared zone, and what one request adds to them */
typedef struct {
    uint64_t                      requests;
    uint64_t                      incomplete;
    uint64_t                      unpriced;
    uint64_t                      input;
    uint64_t                      output;
    uint64_t                      cached;
    uint64_t                      reasoning;
    uint64_t                      cost_nano;     /* US dollars * 10^9 */
    uint64_t                      ttft_count;
    uint64_t                      ttft_sum_msec;
    uint64_t                      ttft_buckets[NGX_HTTP_QWEN_TTFT_BUCKETS];
} ngx_http_qwen_counters_t;


typedef struct {
    ngx_str_t                     model;
    ngx_str_t                     provider;
    u_char                        status;        /* the class: 2 for 2xx */
} ngx_http_qwen_metric_key_t;


typedef struct {
    ngx_http_qwen_metric_key_t    key;
    ngx_http_qwen_counters_t      counters;
} ngx_http_qwen_metric_row_t;


typedef struct {
    ngx_http_qwen_metric_row_t   *rows;
    ngx_uint_t                    nrows;
    time_t                        created;
    uint64_t                      evicted;
} ngx_http_qwen_snapshot_t;


typedef struct ngx_http_qwen_zone_s  ngx_http_qwen_zone_t;


typedef struct {
    /* the catalogue */
    ngx_array_t                   models;        /* ngx_http_qwen_model_t * */
    ngx_hash_keys_arrays_t       *names_keys;    /* while configuring */
    ngx_hash_t                    names;         /* name -> model */
    ngx_array_t                  *prefixes;      /* of ngx_str_t */
    ngx_array_t                  *file_prefixes; /* from a catalogue file */
    ngx_array_t                   patterns;      /* ngx_http_qwen_pattern_t */
    ngx_str_t                     models_file;
    ngx_str_t                     models_json;   /* GET /v1/models answer */

    ngx_array_t                   regions;       /* ngx_http_qwen_region_t */

    ngx_http_qwen_zone_t         *zone;          /* qwen_metrics_zone */

    ngx_int_t                     credential_index[NGX_HTTP_QWEN_CREDENTIAL_KINDS];
} ngx_http_qwen_main_conf_t;


/* the state of a gateway request; see docs/design.md for the picture */
typedef enum {
    NGX_HTTP_QWEN_NEW = 0,        /* no body work yet */
    NGX_HTTP_QWEN_READING,        /* the body is being read */
    NGX_HTTP_QWEN_READY,          /* body checked and rewritten: routable */
    NGX_HTTP_QWEN_WAITING,        /* a timer runs (retry, limit): later */
    NGX_HTTP_QWEN_FAILED          /* answered with ctx->error */
} ngx_http_qwen_state_e;


typedef struct {
    ngx_flag_t                    gateway;
    ngx_flag_t                    models;        /* the /v1/models handler */
    ngx_flag_t                    inject_usage;
    ngx_uint_t                    status;        /* qwen_status format */
    ngx_uint_t                    unknown_model;
    off_t                         max_body_size;
    ngx_http_complex_value_t     *region;        /* qwen_default_region */
    ngx_array_t                  *pass_headers;  /* of ngx_str_t, or NULL */
    u_char                       *gateway_file;  /* where qwen_gateway is */
    ngx_uint_t                    gateway_line;
} ngx_http_qwen_loc_conf_t;


/* an OpenAI-style error to answer with */
typedef struct {
    ngx_uint_t                    status;
    const char                   *type;
    const char                   *code;          /* NULL: null */
    const char                   *param;         /* NULL: null */
    const char                   *allow;         /* methods, with 405 */
    ngx_str_t                     message;
} ngx_http_qwen_error_t;


/* per request; found again after internal redirects, see get_ctx() */
typedef struct {
    ngx_str_t                     requested_model;
    ngx_str_t                     model;         /* sent upstream */
    ngx_str_t                     provider;
    ngx_http_qwen_model_t        *entry;         /* NULL: not catalogued */
    ngx_http_qwen_region_t       *region;
    ngx_http_qwen_state_e         state;
    ngx_http_qwen_error_t         error;         /* with FAILED */
    ngx_uint_t                    method;        /* the client's, POST */
    ngx_str_t                     method_name;
    off_t                         body_limit;    /* when reading started */

    /* the answer, as the filters see it */
    qwen_usage_scan_t            *usage;         /* NULL: not read */
    u_char                       *hold;          /* an event not ended */
    size_t                        hold_len;
    size_t                        hold_cap;
    ngx_chain_t                  *hold_cl;       /* the hold's buffer */
    ngx_chain_t                  *free_hold;     /* sent holds, reusable */
    ngx_chain_t                  *free;
    ngx_chain_t                  *busy;
    u_char                       *skimmed;       /* see the filter */
    ngx_msec_int_t                ttft_msec;

    /* settled by ngx_http_qwen_account() */
    struct {
        uint64_t                  prompt;
        uint64_t                  completion;
        uint64_t                  total;
        uint64_t                  cached;
        uint64_t                  reasoning;
    }                             tokens;
    uint64_t                      cost_nano;

    unsigned                      stream:1;
    unsigned                      sealed:1;      /* no more credentials */
    unsigned                      client_usage:1;  /* asked for usage */
    unsigned                      usage_injected:1;
    unsigned                      sse:1;
    unsigned                      strip:1;       /* remove the usage event */
    unsigned                      stripped:1;
    unsigned                      hold_pass:1;
    unsigned                      pinned:1;      /* a slice went on */
    unsigned                      body_scanned:1;
    unsigned                      first_byte:1;
    unsigned                      accounted:1;
    unsigned                      incomplete:1;
    unsigned                      unpriced:1;
} ngx_http_qwen_ctx_t;


extern ngx_module_t  ngx_http_qwen_module;


/* ngx_http_qwen_module.c */
ngx_http_qwen_ctx_t *ngx_http_qwen_get_ctx(ngx_http_request_t *r);
ngx_http_qwen_ctx_t *ngx_http_qwen_create_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_conf_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content);

/* ngx_http_qwen_catalog.c */
char *ngx_http_qwen_models_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_qwen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_qwen_model_pattern(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_qwen_model_prefixes(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_qwen_catalog_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_catalog_resolve(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t unknown_policy);

/* ngx_http_qwen_region.c */
char *ngx_http_qwen_region(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_qwen_regions_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_region_select(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_error_t *err);

/* ngx_http_qwen_request.c */
ngx_int_t ngx_http_qwen_precontent_handler(ngx_http_request_t *r);

/* ngx_http_qwen_body.c */
ngx_int_t ngx_http_qwen_body_process(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, off_t limit, ngx_http_qwen_error_t *err);
void ngx_http_qwen_body_too_large(ngx_http_request_t *r, off_t size,
    off_t limit, ngx_http_qwen_error_t *err);

/* ngx_http_qwen_headers.c */
char *ngx_http_qwen_pass_client_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_qwen_headers_shape(ngx_http_request_t *r);

/* ngx_http_qwen_credential.c */
ngx_int_t ngx_http_qwen_credential_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_qwen_credential_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_credential_kind(ngx_str_t *header,
    ngx_str_t *scheme);
void ngx_http_qwen_credential_seal(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_credential_check(ngx_conf_t *cf,
    ngx_http_qwen_loc_conf_t *qlcf);

/* ngx_http_qwen_error.c */
void ngx_http_qwen_error_set(ngx_http_qwen_error_t *err, ngx_uint_t status,
    const char *type, const char *code, const char *param, u_char *message,
    size_t len);
ngx_int_t ngx_http_qwen_send_error(ngx_http_request_t *r,
    ngx_http_qwen_error_t *err);
ngx_int_t ngx_http_qwen_read_only(ngx_http_request_t *r, const char *what);

/* ngx_http_qwen_models.c */
ngx_int_t ngx_http_qwen_models_build(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_models_handler(ngx_http_request_t *r);

/* ngx_http_qwen_filter.c */
ngx_int_t ngx_http_qwen_filter_init(ngx_conf_t *cf);

/* ngx_http_qwen_account.c */
void ngx_http_qwen_account(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx);
u_char *ngx_http_qwen_format_usd(u_char *p, uint64_t nano);

/* ngx_http_qwen_shm.c */
char *ngx_http_qwen_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_uint_t ngx_http_qwen_metrics_commit(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_metric_key_t *k, ngx_http_qwen_counters_t *add,
    ngx_log_t *log);
ngx_int_t ngx_http_qwen_metrics_snapshot(ngx_http_request_t *r,
    ngx_http_qwen_zone_t *zone, ngx_http_qwen_snapshot_t *snap);
void ngx_http_qwen_ttft_observe(ngx_http_qwen_counters_t *c,
    ngx_msec_int_t ms);
ngx_msec_t ngx_http_qwen_ttft_bound(ngx_uint_t i);

/* ngx_http_qwen_status.c */
char *ngx_http_qwen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_qwen_log_handler(ngx_http_request_t *r);

/* ngx_http_qwen_variables.c */
ngx_int_t ngx_http_qwen_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_QWEN_MODULE_H_INCLUDED_ */
