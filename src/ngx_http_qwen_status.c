
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The totals: committed by each request in the log phase, served by
 * qwen_status as Prometheus text or JSON from a snapshot of the zone.
 */


#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_STATUS_PROMETHEUS  0
#define NGX_HTTP_QWEN_STATUS_JSON        1


typedef struct {
    ngx_http_qwen_metric_key_t   key;        /* status unused */
    ngx_http_qwen_counters_t     c;
    uint64_t                     by_status[6];
} ngx_http_qwen_model_total_t;


static ngx_int_t ngx_http_qwen_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_ready_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_status_end(ngx_http_request_t *r,
    ngx_chain_t ***ll);
static ngx_uint_t ngx_http_qwen_totals(ngx_http_request_t *r,
    ngx_http_qwen_snapshot_t *snap, ngx_http_qwen_model_total_t **totals);
static int ngx_libc_cdecl ngx_http_qwen_row_cmp(const void *one,
    const void *two);
static ngx_chain_t *ngx_http_qwen_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_model_total_t *t, ngx_uint_t n);
static ngx_chain_t *ngx_http_qwen_json(ngx_http_request_t *r,
    ngx_http_qwen_snapshot_t *snap, ngx_http_qwen_model_total_t *t,
    ngx_uint_t n);
static u_char *ngx_http_qwen_counter(u_char *p, const char *name,
    ngx_http_qwen_model_total_t *t, ngx_uint_t n, size_t field);
static u_char *ngx_http_qwen_labels(u_char *p,
    ngx_http_qwen_metric_key_t *k);
static u_char *ngx_http_qwen_label_value(u_char *p, ngx_str_t *v);
static u_char *ngx_http_qwen_seconds(u_char *p, uint64_t msec);
static u_char *ngx_http_qwen_bound(u_char *p, uint64_t msec);


static const char  *ngx_http_qwen_status_classes[] = {
    "other", "1xx", "2xx", "3xx", "4xx", "5xx"
};


/* qwen_status [prometheus | json]; */

char *
ngx_http_qwen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (qlcf->status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 1
        || ngx_strcmp(value[1].data, "prometheus") == 0)
    {
        qlcf->status = NGX_HTTP_QWEN_STATUS_PROMETHEUS;

    } else if (ngx_strcmp(value[1].data, "json") == 0) {
        qlcf->status = NGX_HTTP_QWEN_STATUS_JSON;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid format \"%V\", it must be \"prometheus\" "
                           "or \"json\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_qwen_status_handler;

    return NGX_CONF_OK;
}


/* qwen_ready; a readiness probe (Kubernetes readinessProbe, /readyz) */

char *
ngx_http_qwen_ready_probe(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_qwen_ready_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_qwen_ready_handler;

    return NGX_CONF_OK;
}


/*
 * Ready: this configuration routes somewhere (a catalogue or at least one
 * region; nginx would not have started with a catalogue it could not
 * load) and at least one deployment is not cooling down.  Liveness needs
 * nothing of the module: "return 200" is enough for /healthz.  Not ready
 * is 503, so that a load balancer or Kubernetes stops sending requests a
 * pod would only refuse with 503 all_deployments_cooling_down.
 */

static ngx_int_t
ngx_http_qwen_ready_handler(ngx_http_request_t *r)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  total, up, ready;
    const char                 *reason;
    ngx_http_qwen_main_conf_t  *qmcf;

    rc = ngx_http_qwen_read_only(r, "readiness probe");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    ngx_http_qwen_health_count(qmcf->health, &qmcf->deployments, &total,
                               &up);

    if (qmcf->regions.nelts == 0) {
        ready = 0;
        reason = "no region is configured";

    } else if (up == 0 && total > 0) {
        ready = 0;
        reason = "every deployment is cooling down";

    } else {
        ready = 1;
        reason = NULL;
    }

    b = ngx_create_temp_buf(r->pool, 256);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->pos, "{\"status\":\"%s\",\"models\":%ui,"
                    "\"regions\":%ui,\"deployments\":%ui,"
                    "\"deployments_up\":%ui",
                    ready ? "ready" : "not_ready", qmcf->models.nelts,
                    qmcf->regions.nelts, total, up);

    if (reason) {
        p = ngx_sprintf(p, ",\"reason\":\"%s\"", reason);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: not ready: %s", reason);
    }

    *p++ = '}';
    *p++ = '\n';
    b->last = p;

    return ngx_http_qwen_send_json(r, ready ? NGX_HTTP_OK
                                            : NGX_HTTP_SERVICE_UNAVAILABLE,
                                   b);
}


static ngx_int_t
ngx_http_qwen_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_uint_t                    n;
    ngx_chain_t                  *out, *cl, **ll;
    ngx_http_qwen_snapshot_t      snap;
    ngx_http_qwen_loc_conf_t     *qlcf;
    ngx_http_qwen_main_conf_t    *qmcf;
    ngx_http_qwen_model_total_t  *totals;

    rc = ngx_http_qwen_read_only(r, "status");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (ngx_http_qwen_metrics_snapshot(r, qmcf->zone, &snap) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_qwen_totals(r, &snap, &totals);

    if (qlcf->status == NGX_HTTP_QWEN_STATUS_JSON) {
        out = ngx_http_qwen_json(r, &snap, totals, n);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        out = ngx_http_qwen_prometheus(r, totals, n);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");
    }

    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the deployments' health follows (ngx_http_qwen_health.c) */

    ll = &out->next;

    if (qlcf->status == NGX_HTTP_QWEN_STATUS_JSON) {
        rc = ngx_http_qwen_health_json(r, qmcf->health, &ll);

        if (rc == NGX_OK) {
            rc = ngx_http_qwen_limits_json(r, qmcf->limits, &ll);
        }

        if (rc == NGX_OK) {
            rc = ngx_http_qwen_status_end(r, &ll);
        }

    } else {
        rc = ngx_http_qwen_health_prometheus(r, qmcf->health, &ll);

        if (rc == NGX_OK) {
            rc = ngx_http_qwen_limits_prometheus(r, qmcf->limits, &ll);
        }
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;

    for (cl = out; cl; cl = cl->next) {
        r->headers_out.content_length_n += cl->buf->last - cl->buf->pos;
        cl->buf->last_buf = 0;
        cl->buf->last_in_chain = 0;

        if (cl->next == NULL) {
            cl->buf->last_buf = (r == r->main);
            cl->buf->last_in_chain = 1;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/* the JSON object's end, after the parts other files add */

static ngx_int_t
ngx_http_qwen_status_end(ngx_http_request_t *r, ngx_chain_t ***ll)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *) "}\n";
    b->last = b->pos + 2;
    b->memory = 1;

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* the rows summed per model and provider, sorted */

static ngx_uint_t
ngx_http_qwen_totals(ngx_http_request_t *r, ngx_http_qwen_snapshot_t *snap,
    ngx_http_qwen_model_total_t **totals)
{
    ngx_uint_t                    i, j, n;
    ngx_http_qwen_metric_row_t   *row;
    ngx_http_qwen_model_total_t  *t;

    ngx_qsort(snap->rows, snap->nrows, sizeof(ngx_http_qwen_metric_row_t),
              ngx_http_qwen_row_cmp);

    t = ngx_pcalloc(r->pool, (snap->nrows + 1)
                             * sizeof(ngx_http_qwen_model_total_t));
    if (t == NULL) {
        *totals = NULL;
        return 0;
    }

    n = 0;

    for (i = 0; i < snap->nrows; i++) {
        row = &snap->rows[i];

        if (n == 0
            || ngx_memn2cmp(t[n - 1].key.model.data, row->key.model.data,
                            t[n - 1].key.model.len, row->key.model.len) != 0
            || ngx_memn2cmp(t[n - 1].key.provider.data,
                            row->key.provider.data,
                            t[n - 1].key.provider.len,
                            row->key.provider.len) != 0)
        {
            t[n].key = row->key;
            n++;
        }

        t[n - 1].c.requests += row->counters.requests;
        t[n - 1].c.incomplete += row->counters.incomplete;
        t[n - 1].c.unpriced += row->counters.unpriced;
        t[n - 1].c.input += row->counters.input;
        t[n - 1].c.output += row->counters.output;
        t[n - 1].c.cached += row->counters.cached;
        t[n - 1].c.reasoning += row->counters.reasoning;
        t[n - 1].c.cost_nano += row->counters.cost_nano;
        t[n - 1].c.cache_hits += row->counters.cache_hits;
        t[n - 1].c.cache_tokens += row->counters.cache_tokens;
        t[n - 1].c.ttft_count += row->counters.ttft_count;
        t[n - 1].c.ttft_sum_msec += row->counters.ttft_sum_msec;

        for (j = 0; j < NGX_HTTP_QWEN_TTFT_BUCKETS; j++) {
            t[n - 1].c.ttft_buckets[j] += row->counters.ttft_buckets[j];
        }

        t[n - 1].by_status[row->key.status < 6 ? row->key.status : 0]
            += row->counters.requests;
    }

    *totals = t;

    return n;
}


static int ngx_libc_cdecl
ngx_http_qwen_row_cmp(const void *one, const void *two)
{
    ngx_int_t                    rc;
    ngx_http_qwen_metric_row_t  *a, *b;

    a = (ngx_http_qwen_metric_row_t *) one;
    b = (ngx_http_qwen_metric_row_t *) two;

    rc = ngx_memn2cmp(a->key.model.data, b->key.model.data,
                      a->key.model.len, b->key.model.len);
    if (rc != 0) {
        return rc;
    }

    rc = ngx_memn2cmp(a->key.provider.data, b->key.provider.data,
                      a->key.provider.len, b->key.provider.len);
    if (rc != 0) {
        return rc;
    }

    return (int) a->key.status - (int) b->key.status;
}


/* copies a string literal, counted once */

#define ngx_http_qwen_cpylit(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


/* label values may need escaping: at most twice their length */

#define ngx_http_qwen_labels_len(t)                                         \
    (sizeof("{model=\"\",provider=\"\",status=\"other\"}") - 1             \
     + 2 * (t)->key.model.len + 2 * (t)->key.provider.len)

#define NGX_HTTP_QWEN_NUM_LEN  (NGX_INT64_LEN + 16)


static ngx_chain_t *
ngx_http_qwen_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_model_total_t *t, ngx_uint_t n)
{
    size_t        len;
    u_char       *p;
    uint64_t      cum;
    ngx_buf_t    *b;
    ngx_uint_t    i, j, s;
    ngx_chain_t  *out;

    static const char  *types[] = { "input", "output", "cached",
                                    "reasoning" };

    /* the HELP and TYPE lines (about 1.6 KB), then per model its lines:
     * requests by status, tokens by type, cost, incomplete, unpriced,
     * cache hits and their tokens, the histogram */
    len = 4096;

    for (i = 0; i < n; i++) {
        len += (6 + 4 + 3 + 2 + NGX_HTTP_QWEN_TTFT_BUCKETS + 3)
               * (sizeof("qwen_ttft_seconds_bucket") + sizeof(",le=\"+Inf\"")
                  + ngx_http_qwen_labels_len(&t[i]) + sizeof(",type=\"\"")
                  + 16 + NGX_HTTP_QWEN_NUM_LEN);
    }

    b = ngx_create_temp_buf(r->pool, len);
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        return NULL;
    }

    p = b->last;

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_requests_total Requests through the gateway, by "
        "upstream model, provider and status class.\n# TYPE "
        "qwen_requests_total counter\n");

    for (i = 0; i < n; i++) {
        for (s = 0; s < 6; s++) {
            if (t[i].by_status[s] == 0) {
                continue;
            }

            p = ngx_http_qwen_cpylit(p, "qwen_requests_total");
            p = ngx_http_qwen_labels(p, &t[i].key);
            p = ngx_sprintf(p, ",status=\"%s\"} %uL\n",
                            ngx_http_qwen_status_classes[s],
                            t[i].by_status[s]);
        }
    }

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_tokens_total Tokens, by type: input, output, cached (a "
        "part of input), reasoning (a part of output).\n# TYPE "
        "qwen_tokens_total counter\n");

    for (i = 0; i < n; i++) {
        uint64_t  v[4] = { t[i].c.input, t[i].c.output, t[i].c.cached,
                           t[i].c.reasoning };

        for (j = 0; j < 4; j++) {
            p = ngx_http_qwen_cpylit(p, "qwen_tokens_total");
            p = ngx_http_qwen_labels(p, &t[i].key);
            p = ngx_sprintf(p, ",type=\"%s\"} %uL\n", types[j], v[j]);
        }
    }

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_cost_usd_total Cost at catalogue list prices, in US "
        "dollars.\n# TYPE qwen_cost_usd_total counter\n");

    for (i = 0; i < n; i++) {
        p = ngx_http_qwen_cpylit(p, "qwen_cost_usd_total");
        p = ngx_http_qwen_labels(p, &t[i].key);
        p = ngx_http_qwen_cpylit(p, "} ");
        p = ngx_http_qwen_format_usd(p, t[i].c.cost_nano);
        *p++ = '\n';
    }

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_incomplete_total Answers cut before their end, by the "
        "upstream or the client.\n# TYPE qwen_incomplete_total counter\n");

    p = ngx_http_qwen_counter(p, "qwen_incomplete_total", t, n,
                              offsetof(ngx_http_qwen_counters_t, incomplete));

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_unpriced_requests_total Requests with usage whose model "
        "has no price in the catalogue.\n# TYPE qwen_unpriced_requests_total "
        "counter\n");

    p = ngx_http_qwen_counter(p, "qwen_unpriced_requests_total", t, n,
                              offsetof(ngx_http_qwen_counters_t, unpriced));

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_cache_hits_total Answers served from nginx's proxy_cache: "
        "no upstream call, priced at zero.\n# TYPE qwen_cache_hits_total "
        "counter\n");

    p = ngx_http_qwen_counter(p, "qwen_cache_hits_total", t, n,
                              offsetof(ngx_http_qwen_counters_t, cache_hits));

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_cache_hit_tokens_total Input and output tokens of the "
        "answers served from the cache (not in qwen_tokens_total).\n# TYPE "
        "qwen_cache_hit_tokens_total counter\n");

    p = ngx_http_qwen_counter(p, "qwen_cache_hit_tokens_total", t, n,
                              offsetof(ngx_http_qwen_counters_t,
                                       cache_tokens));

    p = ngx_http_qwen_cpylit(p,
        "# HELP qwen_ttft_seconds Time from the request to the first byte of "
        "the answer.\n# TYPE qwen_ttft_seconds histogram\n");

    for (i = 0; i < n; i++) {
        cum = 0;

        for (j = 0; j < NGX_HTTP_QWEN_TTFT_BUCKETS; j++) {
            cum += t[i].c.ttft_buckets[j];
            p = ngx_http_qwen_cpylit(p, "qwen_ttft_seconds_bucket");
            p = ngx_http_qwen_labels(p, &t[i].key);
            p = ngx_http_qwen_cpylit(p, ",le=\"");
            p = ngx_http_qwen_bound(p, ngx_http_qwen_ttft_bound(j));
            p = ngx_sprintf(p, "\"} %uL\n", cum);
        }

        p = ngx_http_qwen_cpylit(p, "qwen_ttft_seconds_bucket");
        p = ngx_http_qwen_labels(p, &t[i].key);
        p = ngx_sprintf(p, ",le=\"+Inf\"} %uL\n", t[i].c.ttft_count);

        p = ngx_http_qwen_cpylit(p, "qwen_ttft_seconds_sum");
        p = ngx_http_qwen_labels(p, &t[i].key);
        p = ngx_http_qwen_cpylit(p, "} ");
        p = ngx_http_qwen_seconds(p, t[i].c.ttft_sum_msec);
        *p++ = '\n';

        p = ngx_http_qwen_cpylit(p, "qwen_ttft_seconds_count");
        p = ngx_http_qwen_labels(p, &t[i].key);
        p = ngx_sprintf(p, "} %uL\n", t[i].c.ttft_count);
    }

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    return out;
}


/* one line per model of a plain counter: name{model,provider} value */

static u_char *
ngx_http_qwen_counter(u_char *p, const char *name,
    ngx_http_qwen_model_total_t *t, ngx_uint_t n, size_t field)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, name, ngx_strlen(name));
        p = ngx_http_qwen_labels(p, &t[i].key);
        p = ngx_sprintf(p, "} %uL\n",
                        *(uint64_t *) ((u_char *) &t[i].c + field));
    }

    return p;
}


/* {model="...",provider="..." without the closing brace */

static u_char *
ngx_http_qwen_labels(u_char *p, ngx_http_qwen_metric_key_t *k)
{
    p = ngx_http_qwen_cpylit(p, "{model=\"");
    p = ngx_http_qwen_label_value(p, &k->model);
    p = ngx_http_qwen_cpylit(p, "\",provider=\"");
    p = ngx_http_qwen_label_value(p, &k->provider);
    *p++ = '"';

    return p;
}


static u_char *
ngx_http_qwen_label_value(u_char *p, ngx_str_t *v)
{
    size_t  i;

    for (i = 0; i < v->len; i++) {
        switch (v->data[i]) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = v->data[i];
        }
    }

    return p;
}


static u_char *
ngx_http_qwen_seconds(u_char *p, uint64_t msec)
{
    return ngx_sprintf(p, "%uL.%03uL", msec / 1000, msec % 1000);
}


/* a bucket's bound as people write it: "0.1", "2.5", "30" */

static u_char *
ngx_http_qwen_bound(u_char *p, uint64_t msec)
{
    p = ngx_sprintf(p, "%uL", msec / 1000);

    msec %= 1000;

    if (msec) {
        *p++ = '.';
        *p++ = (u_char) ('0' + msec / 100);

        if (msec % 100) {
            *p++ = (u_char) ('0' + msec / 10 % 10);

            if (msec % 10) {
                *p++ = (u_char) ('0' + msec % 10);
            }
        }
    }

    return p;
}


static ngx_chain_t *
ngx_http_qwen_json(ngx_http_request_t *r, ngx_http_qwen_snapshot_t *snap,
    ngx_http_qwen_model_total_t *t, ngx_uint_t n)
{
    size_t        len;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_uint_t    i, j, s, first;
    ngx_chain_t  *out;

    len = 256;

    for (i = 0; i < n; i++) {
        len += 1024 + 6 * t[i].key.model.len + 6 * t[i].key.provider.len
               + NGX_HTTP_QWEN_TTFT_BUCKETS * 48;
    }

    b = ngx_create_temp_buf(r->pool, len);
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        return NULL;
    }

    p = ngx_sprintf(b->last, "{\"since\":%T,\"evicted\":%uL,\"models\":[",
                    snap->created, snap->evicted);

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_http_qwen_cpylit(p, "{\"model\":");
        p = qwen_json_escape(p, t[i].key.model.data, t[i].key.model.len);
        p = ngx_http_qwen_cpylit(p, ",\"provider\":");
        p = qwen_json_escape(p, t[i].key.provider.data,
                             t[i].key.provider.len);

        p = ngx_http_qwen_cpylit(p, ",\"requests\":{");
        first = 1;

        for (s = 0; s < 6; s++) {
            if (t[i].by_status[s] == 0) {
                continue;
            }

            p = ngx_sprintf(p, "%s\"%s\":%uL", first ? "" : ",",
                            ngx_http_qwen_status_classes[s],
                            t[i].by_status[s]);
            first = 0;
        }

        p = ngx_sprintf(p, "},\"tokens\":{\"input\":%uL,\"output\":%uL,"
                        "\"cached\":%uL,\"reasoning\":%uL},\"cost_usd\":",
                        t[i].c.input, t[i].c.output, t[i].c.cached,
                        t[i].c.reasoning);
        p = ngx_http_qwen_format_usd(p, t[i].c.cost_nano);

        p = ngx_sprintf(p, ",\"incomplete\":%uL,\"unpriced\":%uL,"
                        "\"cache\":{\"hits\":%uL,\"tokens\":%uL},"
                        "\"ttft\":{\"count\":%uL,\"sum_seconds\":",
                        t[i].c.incomplete, t[i].c.unpriced,
                        t[i].c.cache_hits, t[i].c.cache_tokens,
                        t[i].c.ttft_count);
        p = ngx_http_qwen_seconds(p, t[i].c.ttft_sum_msec);
        p = ngx_http_qwen_cpylit(p, ",\"buckets\":{");

        for (j = 0; j < NGX_HTTP_QWEN_TTFT_BUCKETS; j++) {
            p = ngx_sprintf(p, "%s\"", j ? "," : "");
            p = ngx_http_qwen_bound(p, ngx_http_qwen_ttft_bound(j));
            p = ngx_sprintf(p, "\":%uL", t[i].c.ttft_buckets[j]);
        }

        p = ngx_http_qwen_cpylit(p, "}}}");
    }

    p = ngx_http_qwen_cpylit(p, "]");

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    return out;
}


/*
 * The log phase: settles the request's usage and cost and adds them to
 * the zone.  Requests the gateway turned away before it knew the model
 * count under model "-".
 */

ngx_int_t
ngx_http_qwen_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                   status;
    ngx_http_qwen_ctx_t         *ctx;
    ngx_http_qwen_counters_t     add;
    ngx_http_qwen_main_conf_t   *qmcf;
    ngx_http_qwen_metric_key_t   key;

    ctx = ngx_http_qwen_get_ctx(r);

    if (ctx == NULL || r != r->main) {
        return NGX_OK;
    }

    ngx_http_qwen_credential_seal(r, ctx);

    ngx_http_qwen_failover_log(r, ctx);

    ngx_http_qwen_account(r, ctx);

    if (ctx->admitted) {
        ngx_http_qwen_limits_settle(r, ctx);
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    if (qmcf->zone == NULL) {
        if (ctx->unpriced) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "qwen: model \"%V\" has no price in the "
                          "catalogue: the request is counted as unpriced",
                          &ctx->model);
        }

        return NGX_OK;
    }

    ngx_memzero(&add, sizeof(ngx_http_qwen_counters_t));

    add.requests = 1;
    add.incomplete = ctx->incomplete;

    if (ctx->cache_hit) {
        /* no upstream tokens were used: counted apart, at no cost */
        add.cache_hits = 1;
        add.cache_tokens = ctx->tokens.prompt + ctx->tokens.completion;

    } else {
        add.unpriced = ctx->unpriced;
        add.input = ctx->tokens.prompt;
        add.output = ctx->tokens.completion;
        add.cached = ctx->tokens.cached;
        add.reasoning = ctx->tokens.reasoning;
        add.cost_nano = ctx->cost_nano;
    }

    if (ctx->first_byte) {
        ngx_http_qwen_ttft_observe(&add, ctx->ttft_msec);
    }

    if (ctx->entry) {
        /* labels come from the catalogue: a bounded set */
        key.model = ctx->entry->id;
        key.provider = ctx->provider;

    } else if (ctx->model.len) {
        /* a name the client chose (qwen_unknown_model pass, patterns) */
        ngx_str_set(&key.model, "other");
        key.provider = ctx->provider;

    } else {
        ngx_str_set(&key.model, "-");
        ngx_str_set(&key.provider, "-");
    }

    status = r->err_status ? r->err_status : r->headers_out.status;
    key.status = (status >= 100 && status < 600) ? status / 100 : 0;

    if (ngx_http_qwen_metrics_commit(qmcf->zone, &key, &add,
                                     r->connection->log))
    {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "qwen: model \"%V\" has no price in the catalogue: "
                      "its requests are counted as unpriced", &ctx->model);
    }

    return NGX_OK;
}
