
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


/* the outcome of an attempt: why the gateway moved on, or that it did not */
typedef enum {
    NGX_HTTP_QWEN_OUT_OK = 0,        /* answered, 2xx or 3xx */
    NGX_HTTP_QWEN_OUT_CLIENT_ERROR,  /* answered, a 4xx that is the answer */
    NGX_HTTP_QWEN_OUT_ERROR,         /* nginx's own 502: connect, send, read */
    NGX_HTTP_QWEN_OUT_TIMEOUT,       /* nginx's own 504 */
    NGX_HTTP_QWEN_OUT_FIRST_BYTE,    /* the first-byte budget ran out */
    NGX_HTTP_QWEN_OUT_HTTP_500,
    NGX_HTTP_QWEN_OUT_HTTP_502,
    NGX_HTTP_QWEN_OUT_HTTP_503,
    NGX_HTTP_QWEN_OUT_HTTP_504,
    NGX_HTTP_QWEN_OUT_HTTP_429,
    NGX_HTTP_QWEN_OUT_MODEL_NOT_FOUND,
    NGX_HTTP_QWEN_OUT_AUTH,
    NGX_HTTP_QWEN_OUT_ARREARS,
    NGX_HTTP_QWEN_OUT_MODERATION,
    NGX_HTTP_QWEN_OUT_CUT,           /* broke after the client got bytes */
    NGX_HTTP_QWEN_OUTCOMES
} ngx_http_qwen_outcome_e;


typedef struct ngx_http_qwen_region_s  ngx_http_qwen_region_t;


/*
 * A deployment: a model at one provider/region, under the id it has
 * there, with its own prices.  Its health is slot "health" of the health
 * table (ngx_http_qwen_health.c).
 */
typedef struct {
    ngx_str_t                     name;          /* "region/model-id" */
    ngx_str_t                     region_name;
    ngx_http_qwen_region_t       *region;        /* set at init */
    ngx_str_t                     model;         /* upstream model id */
    ngx_http_qwen_price_t        *prices;        /* NULL: the model's */
    ngx_uint_t                    nprices;
    ngx_uint_t                    weight;        /* 0: strict order */
    ngx_uint_t                    health;
} ngx_http_qwen_deployment_t;


/* a model of the catalogue */
typedef struct {
    ngx_str_t                     id;            /* upstream model id */
    ngx_str_t                     provider;
    ngx_array_t                  *regions;       /* of ngx_str_t, or NULL */
    ngx_uint_t                    context;       /* tokens, 0: unknown */
    ngx_http_qwen_price_t        *prices;        /* tiers, ascending */
    ngx_uint_t                    nprices;
    ngx_array_t                  *deployments;   /* written chain, or NULL */
    ngx_array_t                  *implicit;      /* one per region, init */
    ngx_msec_t                    first_byte_timeout; /* UNSET: location's */
} ngx_http_qwen_model_t;


/* a pattern rule: a regular expression and its replacement */
typedef struct {
    ngx_regex_t                  *regex;
    ngx_str_t                     source;        /* for log lines */
    ngx_str_t                     replacement;   /* with $1..$9 */
    ngx_uint_t                    captures;
    ngx_str_t                     provider;
} ngx_http_qwen_pattern_t;


/* a region, or any provider (an endpoint with the key bound to it) */
struct ngx_http_qwen_region_s {
    ngx_str_t                     name;
    ngx_str_t                     url;           /* for proxy_pass */
    ngx_str_t                     host;          /* Host and TLS SNI */
    ngx_str_t                     path;          /* $qwen_upstream_path */
    ngx_array_t                  *headers;       /* ngx_keyval_t, or NULL */
    ngx_http_qwen_deployment_t    other;         /* the region itself */
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
    uint64_t                      cache_hits;    /* answered by proxy_cache */
    uint64_t                      cache_tokens;  /* their input + output */
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
typedef struct ngx_http_qwen_health_s  ngx_http_qwen_health_t;
typedef struct ngx_http_qwen_limits_s  ngx_http_qwen_limits_t;


/* client keys (ngx_http_qwen_keys.c) and their limits (..._limits.c) */

#define NGX_HTTP_QWEN_SUBJECT_KEY    0
#define NGX_HTTP_QWEN_SUBJECT_TEAM   1
#define NGX_HTTP_QWEN_SUBJECT_MODEL  2

#define NGX_HTTP_QWEN_PERIOD_DAY     1
#define NGX_HTTP_QWEN_PERIOD_WEEK    2
#define NGX_HTTP_QWEN_PERIOD_MONTH   3
#define NGX_HTTP_QWEN_PERIOD_DAYS    4

/* why a keyed request was refused */
typedef enum {
    NGX_HTTP_QWEN_REFUSED_RPM = 0,
    NGX_HTTP_QWEN_REFUSED_TPM,
    NGX_HTTP_QWEN_REFUSED_CONCURRENCY,
    NGX_HTTP_QWEN_REFUSED_BUDGET,
    NGX_HTTP_QWEN_REFUSED_MODEL,
    NGX_HTTP_QWEN_REFUSED_REASONS
} ngx_http_qwen_refused_e;

#define NGX_HTTP_QWEN_NONE_REFUSED  ((ngx_uint_t) -1)


/* a key, a team or a model, with what it may use; 0: no limit */
typedef struct {
    ngx_str_t                     id;            /* the alias, logs show it */
    ngx_uint_t                    kind;
    ngx_uint_t                    rpm;
    ngx_uint_t                    tpm;
    ngx_uint_t                    concurrency;
    uint64_t                      budget_nano;   /* USD * 10^9, 0: none */
    ngx_uint_t                    period;
    ngx_uint_t                    period_days;
    ngx_uint_t                    soft_pct;      /* warn at, 0: never */
    ngx_uint_t                    slot;          /* in the shared table */
} ngx_http_qwen_subject_t;


typedef struct {
    ngx_http_qwen_subject_t       subject;
    u_char                        digest[32];    /* sha256 of the key */
    ngx_str_t                     owner;
    ngx_http_qwen_subject_t      *team;          /* NULL: none */
    ngx_array_t                  *models;        /* of ngx_str_t, NULL: any */
    ngx_array_t                  *regions;       /* of ngx_str_t, NULL: any */
    time_t                        expires;       /* 0: never */
    ngx_flag_t                    disabled;
} ngx_http_qwen_key_t;


typedef struct {
    ngx_array_t                   keys;          /* ngx_http_qwen_key_t */
    ngx_array_t                   teams;         /* ngx_http_qwen_subject_t */
    ngx_array_t                   models;        /* ngx_http_qwen_subject_t */
    ngx_http_qwen_key_t         **table;         /* by digest, open address */
    ngx_uint_t                    table_mask;
    ngx_str_t                     file;
    ngx_str_t                     state_file;
} ngx_http_qwen_keys_t;


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

    ngx_array_t                   deployments;   /* all, of deployment * */
    ngx_http_qwen_health_t       *health;

    ngx_http_qwen_keys_t         *keys;          /* qwen_keys_file, or NULL */
    ngx_str_t                     state_file;    /* qwen_keys_state_file */
    ngx_http_qwen_limits_t       *limits;

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

    /* failover (ngx_http_qwen_failover.c) */
    ngx_flag_t                    failover;
    ngx_uint_t                    failover_on;   /* bits of outcomes */
    ngx_uint_t                    failover_tries;
    ngx_msec_t                    failover_timeout;
    ngx_msec_t                    first_byte_timeout;
    ngx_msec_t                    retry_after_max;
    ngx_msec_t                    retry_wait_min;
    ngx_msec_t                    retry_wait_max;
    ngx_msec_t                    cooldown_transient;
    ngx_msec_t                    cooldown_auth;
    ngx_msec_t                    cooldown_arrears;

    ngx_flag_t                    keys;          /* qwen_keys */
    ngx_flag_t                    key_info;      /* qwen_key_info handler */
} ngx_http_qwen_loc_conf_t;


/* an OpenAI-style error to answer with */
typedef struct {
    ngx_uint_t                    status;
    const char                   *type;
    const char                   *code;          /* NULL: null */
    const char                   *param;         /* NULL: null */
    const char                   *allow;         /* methods, with 405 */
    time_t                        retry_after;   /* seconds, 0: none */
    ngx_str_t                     message;
} ngx_http_qwen_error_t;


#define NGX_HTTP_QWEN_MAX_CHAIN  16


/* the request's failover: its chain and what happened along it */
typedef struct {
    ngx_http_qwen_deployment_t   *chain[NGX_HTTP_QWEN_MAX_CHAIN];
    ngx_uint_t                    n;
    ngx_uint_t                    tried;         /* bits of chain[] */
    ngx_uint_t                    current;       /* index in chain[] */
    ngx_uint_t                    attempts;      /* started */
    ngx_uint_t                    retried;       /* 429 retry of current */
    ngx_msec_t                    started;       /* the first attempt */
    ngx_msec_t                    first_byte;    /* budget of attempts */
    ngx_event_t                   timer;         /* wait or first byte */
    ngx_str_t                     moves;         /* $qwen_failovers */
    size_t                        moves_cap;
    ngx_msec_t                    wait_until;    /* WAITING until then */
    ngx_uint_t                    forced;        /* chain[] to take next */
    ngx_str_t                     moderated;     /* provider that refused */
    ngx_list_t                   *headers_list;  /* the client's headers */
    ngx_list_part_t              *headers_part;  /* and where they ended */
    ngx_uint_t                    headers_nelts; /* before the provider's */
    ngx_msec_t                    back;          /* first one out back */

    /* an answer held back while the gateway decides */
    ngx_buf_t                    *held;          /* its first bytes */
    ngx_uint_t                    held_status;
    ngx_uint_t                    outcome;       /* of the last attempt */
    ngx_msec_t                    retry_after;   /* from the held answer */

    unsigned                      enabled:1;
    unsigned                      resuming:1;    /* the gateway's own entry */
    unsigned                      force:1;       /* take chain[forced] */
    unsigned                      first_byte_armed:1;
    unsigned                      holding:1;     /* header held back */
    unsigned                      own_error:1;   /* nginx's, not upstream's */
    unsigned                      fired:1;       /* first-byte timer fired */
    unsigned                      waiting_cooldown:1;
    unsigned                      passing:1;     /* release: let through */
    unsigned                      cut:1;         /* error event sent */
    unsigned                      keyless:1;     /* a deployment had no key */
    unsigned                      counted:1;     /* the answer's attempt */
    unsigned                      truncated:1;   /* held bytes dropped */
    unsigned                      error_page:1;  /* r->error_page before */
} ngx_http_qwen_failover_t;


/* per request; found again after internal redirects, see get_ctx() */
typedef struct {
    ngx_str_t                     requested_model;
    ngx_str_t                     model;         /* sent upstream */
    ngx_str_t                     provider;
    ngx_http_qwen_model_t        *entry;         /* NULL: not catalogued */
    ngx_http_qwen_region_t       *region;
    ngx_http_qwen_deployment_t   *deployment;    /* NULL before routing */
    ngx_http_qwen_price_t        *prices;        /* of the deployment */
    ngx_uint_t                    nprices;
    ngx_http_qwen_state_e         state;
    ngx_http_qwen_error_t         error;         /* with FAILED */
    ngx_uint_t                    method;        /* the client's, POST */
    ngx_str_t                     method_name;
    off_t                         body_limit;    /* when reading started */

    /* the body as read, and how to splice another model id into it */
    ngx_chain_t                  *body;          /* NULL: no failover */
    qwen_json_scan_t             *scan;
    ngx_str_t                     body_model;    /* the model in the body */

    ngx_http_qwen_failover_t     *failover;      /* NULL: off */

    /* the client's key (NULL: none asked) and what it was admitted with */
    ngx_http_qwen_key_t          *key;
    ngx_http_qwen_subject_t      *model_subject; /* system-wide limits */
    uint64_t                      reserved;      /* tokens, at admission */
    int64_t                       remaining_requests;  /* -1: no limit */
    int64_t                       remaining_tokens;
    time_t                        reset_in;      /* seconds to the window */
    uint64_t                      admit_minute;
    int64_t                       max_tokens;    /* -1: not in the body */
    unsigned                      admitted:1;
    unsigned                      limited:1;     /* the limits were asked */
    unsigned                      settled:1;

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
    unsigned                      cache_hit:1;   /* from nginx's cache */
} ngx_http_qwen_ctx_t;


extern ngx_module_t  ngx_http_qwen_module;


/* ngx_http_qwen_module.c */
ngx_http_qwen_ctx_t *ngx_http_qwen_get_ctx(ngx_http_request_t *r);
ngx_http_qwen_ctx_t *ngx_http_qwen_create_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_conf_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content);
ngx_int_t ngx_http_qwen_conf_read_json(ngx_conf_t *cf, ngx_str_t *file,
    size_t max, const char *what, ngx_str_t *json, void **root);

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
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_region_t **region,
    ngx_http_qwen_error_t *err);
ngx_http_qwen_region_t *ngx_http_qwen_region_find(
    ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *name);

/* ngx_http_qwen_request.c */
ngx_int_t ngx_http_qwen_precontent_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_fail(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_error_t *err);

/* ngx_http_qwen_failover.c */
char *ngx_http_qwen_failover_on(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_qwen_retry_wait(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_qwen_cooldown(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_qwen_failover_merge(ngx_http_qwen_loc_conf_t *conf,
    ngx_http_qwen_loc_conf_t *prev);
ngx_int_t ngx_http_qwen_deployments_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_route(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_error_t *err);
void ngx_http_qwen_route_headers_clear(ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_failover_header(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_failover_body(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t *in);
ngx_chain_t *ngx_http_qwen_failover_cut(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t *out);
void ngx_http_qwen_failover_log(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
const char *ngx_http_qwen_outcome_name(ngx_uint_t outcome);

/* ngx_http_qwen_keys.c */
char *ngx_http_qwen_keys_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_qwen_keys_state_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_qwen_key_info(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_qwen_keys_authenticate(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_error_t *err);
ngx_int_t ngx_http_qwen_keys_admit(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_error_t *err);
ngx_uint_t ngx_http_qwen_keys_region_allowed(ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_region_t *region);
ngx_int_t ngx_http_qwen_keys_headers(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_keys_add_variables(ngx_conf_t *cf);

/* ngx_http_qwen_limits.c */
ngx_int_t ngx_http_qwen_limits_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_limits_init_zone(ngx_http_qwen_limits_t *limits,
    ngx_slab_pool_t *shpool, void **shared, ngx_log_t *log);
ngx_int_t ngx_http_qwen_limits_admit(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_subject_t **subjects,
    ngx_uint_t n, uint64_t reserve, ngx_http_qwen_error_t *err);
void ngx_http_qwen_limits_settle(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
void ngx_http_qwen_limits_refused_key(ngx_http_qwen_limits_t *limits);
void ngx_http_qwen_limits_refused(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_subject_t *subj, ngx_uint_t reason);
ngx_int_t ngx_http_qwen_limits_usage(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_subject_t *s, uint64_t *rpm, uint64_t *tpm,
    uint64_t *active, uint64_t *spent, time_t *resets);
ngx_int_t ngx_http_qwen_limits_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_limits_t *limits, ngx_chain_t ***ll);
ngx_int_t ngx_http_qwen_limits_json(ngx_http_request_t *r,
    ngx_http_qwen_limits_t *limits, ngx_chain_t ***ll);
ngx_int_t ngx_http_qwen_limits_init_process(ngx_cycle_t *cycle);
void ngx_http_qwen_limits_exit_process(ngx_cycle_t *cycle);

/* ngx_http_qwen_health.c */
ngx_int_t ngx_http_qwen_health_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_health_init_zone(ngx_http_qwen_health_t *health,
    ngx_slab_pool_t *shpool, void **shared, ngx_log_t *log);
ngx_msec_t ngx_http_qwen_health_down(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *d, ngx_uint_t *reason);
void ngx_http_qwen_health_count(ngx_http_qwen_health_t *health,
    ngx_array_t *deployments, ngx_uint_t *total, ngx_uint_t *up);
void ngx_http_qwen_health_attempt(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *d, ngx_uint_t outcome, ngx_msec_t cooldown,
    ngx_uint_t count);
void ngx_http_qwen_health_move(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *from, ngx_http_qwen_deployment_t *to,
    ngx_uint_t outcome, ngx_log_t *log);
ngx_int_t ngx_http_qwen_health_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_health_t *health, ngx_chain_t ***ll);
ngx_int_t ngx_http_qwen_health_json(ngx_http_request_t *r,
    ngx_http_qwen_health_t *health, ngx_chain_t ***ll);

/* ngx_http_qwen_body.c */
ngx_int_t ngx_http_qwen_body_process(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, off_t limit, ngx_http_qwen_error_t *err);
void ngx_http_qwen_body_too_large(ngx_http_request_t *r, off_t size,
    off_t limit, ngx_http_qwen_error_t *err);
ngx_int_t ngx_http_qwen_body_retarget(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_str_t *model);

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
void ngx_http_qwen_credential_wipe(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_credential_check(ngx_conf_t *cf,
    ngx_http_qwen_loc_conf_t *qlcf);

/* ngx_http_qwen_error.c */
void ngx_http_qwen_error_set(ngx_http_qwen_error_t *err, ngx_uint_t status,
    const char *type, const char *code, const char *param, u_char *message,
    size_t len);
ngx_int_t ngx_http_qwen_send_error(ngx_http_request_t *r,
    ngx_http_qwen_error_t *err);
ngx_chain_t *ngx_http_qwen_error_prepare(ngx_http_request_t *r,
    ngx_http_qwen_error_t *err);
ngx_int_t ngx_http_qwen_error_model_not_found(ngx_http_request_t *r,
    ngx_http_qwen_error_t *err, ngx_str_t *name);
ngx_int_t ngx_http_qwen_read_only(ngx_http_request_t *r, const char *what);
ngx_int_t ngx_http_qwen_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_buf_t *b);

/* ngx_http_qwen_models.c */
ngx_int_t ngx_http_qwen_models_build(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf);
ngx_int_t ngx_http_qwen_models_handler(ngx_http_request_t *r);

/* ngx_http_qwen_filter.c */
ngx_int_t ngx_http_qwen_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_qwen_next_header(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_next_body(ngx_http_request_t *r, ngx_chain_t *in);

/* ngx_http_qwen_account.c */
void ngx_http_qwen_account(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx);
u_char *ngx_http_qwen_format_usd(u_char *p, uint64_t nano);

/* ngx_http_qwen_shm.c */
char *ngx_http_qwen_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_qwen_zone_set_health(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_health_t *health);
void ngx_http_qwen_zone_set_limits(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_limits_t *limits);
ngx_uint_t ngx_http_qwen_metrics_commit(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_metric_key_t *k, ngx_http_qwen_counters_t *add,
    ngx_log_t *log);
ngx_int_t ngx_http_qwen_metrics_snapshot(ngx_http_request_t *r,
    ngx_http_qwen_zone_t *zone, ngx_http_qwen_snapshot_t *snap);
void ngx_http_qwen_ttft_observe(ngx_http_qwen_counters_t *c,
    ngx_msec_int_t ms);
ngx_msec_t ngx_http_qwen_ttft_bound(ngx_uint_t i);

/* ngx_http_qwen_cache.c */
ngx_int_t ngx_http_qwen_cache_add_variables(ngx_conf_t *cf);

/* ngx_http_qwen_status.c */
char *ngx_http_qwen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_qwen_ready_probe(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_qwen_log_handler(ngx_http_request_t *r);

/* ngx_http_qwen_variables.c */
ngx_int_t ngx_http_qwen_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_qwen_add_variable_table(ngx_conf_t *cf,
    ngx_http_variable_t *vars);
void ngx_http_qwen_variable_set(ngx_http_variable_value_t *v, ngx_str_t *s);


#endif /* _NGX_HTTP_QWEN_MODULE_H_INCLUDED_ */
