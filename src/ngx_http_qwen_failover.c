
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Failover: a request moves along its model's chain of deployments when
 * one fails, on nginx's own machinery (docs/failover.md).
 *
 * Each attempt is an ordinary run of proxy_pass in the same location.
 * The gateway holds an answer's header back while it may still move on
 * (a status that can be a trigger); when the answer has come it decides,
 * from the status and the error's code (never its text):
 *
 *   - the answer goes to the client: header and held bytes are sent on;
 *   - or another attempt: the answer is swallowed, the request is kept
 *     alive (one more reference), and when the upstream module has
 *     finished with it, a posted event or a timer (a 429's Retry-After)
 *     restarts the request's phases at the gateway's handler, which
 *     routes it to the next deployment: its region, its key (the
 *     credential gate of ngx_http_qwen_credential.c applies to every
 *     attempt), its model id spliced into the client's body.
 *
 * Nothing is held once an answer's header went to the client: a stream
 * that breaks after that ends with an OpenAI-style error event.
 *
 * Health (cooldowns, counters) is ngx_http_qwen_health.c's.
 */


#include "ngx_http_qwen_module.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_QWEN_HELD_MAX  65536
#define NGX_HTTP_QWEN_NONE      ((ngx_uint_t) -1)

#define NGX_HTTP_QWEN_FAILOVER_DEFAULT                                       \
    ((1 << NGX_HTTP_QWEN_OUT_ERROR) | (1 << NGX_HTTP_QWEN_OUT_TIMEOUT)       \
     | (1 << NGX_HTTP_QWEN_OUT_FIRST_BYTE) | (1 << NGX_HTTP_QWEN_OUT_HTTP_500) \
     | (1 << NGX_HTTP_QWEN_OUT_HTTP_502) | (1 << NGX_HTTP_QWEN_OUT_HTTP_503) \
     | (1 << NGX_HTTP_QWEN_OUT_HTTP_504) | (1 << NGX_HTTP_QWEN_OUT_HTTP_429) \
     | (1 << NGX_HTTP_QWEN_OUT_MODEL_NOT_FOUND)                              \
     | (1 << NGX_HTTP_QWEN_OUT_AUTH) | (1 << NGX_HTTP_QWEN_OUT_ARREARS))

#define NGX_HTTP_QWEN_CUT_EVENT                                              \
    "data: {\"error\":{\"message\":\"The upstream connection was lost "      \
    "before the answer was complete.\",\"type\":\"server_error\","           \
    "\"param\":null,\"code\":\"stream_interrupted\"}}\n\n"


static const char  *ngx_http_qwen_outcome_names[] = {
    "ok", "client_error", "error", "timeout", "first_byte", "http_500",
    "http_502", "http_503", "http_504", "http_429", "model_not_found",
    "auth", "arrears", "moderation", "cut"
};


static ngx_int_t ngx_http_qwen_chain_build(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo,
    ngx_http_qwen_error_t *err);
static void ngx_http_qwen_chain_spread(ngx_http_qwen_failover_t *fo);
static ngx_int_t ngx_http_qwen_chain_region_first(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo);
static ngx_uint_t ngx_http_qwen_next(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo, ngx_uint_t *soonest, ngx_msec_t *wait);
static ngx_int_t ngx_http_qwen_attempt(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo, ngx_uint_t i,
    ngx_http_qwen_error_t *err);
static ngx_int_t ngx_http_qwen_provider_headers(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo, ngx_http_qwen_region_t *region);
static ngx_msec_t ngx_http_qwen_budget_left(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo);
static ngx_int_t ngx_http_qwen_decide(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo);
static ngx_uint_t ngx_http_qwen_classify(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo);
static ngx_msec_t ngx_http_qwen_cooldown_of(ngx_http_qwen_loc_conf_t *qlcf,
    ngx_http_qwen_deployment_t *d, ngx_uint_t outcome,
    ngx_msec_t retry_after);
static ngx_msec_t ngx_http_qwen_retry_after(ngx_http_request_t *r);
static void ngx_http_qwen_move_note(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo, ngx_http_qwen_deployment_t *d,
    ngx_uint_t outcome);
static ngx_int_t ngx_http_qwen_schedule(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo,
    ngx_msec_t delay);
static ngx_int_t ngx_http_qwen_release(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo,
    ngx_chain_t *rest);
static void ngx_http_qwen_failover_timer(ngx_event_t *ev);
static void ngx_http_qwen_first_byte_expired(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo);
static void ngx_http_qwen_resume(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_failover_t *fo);
static void ngx_http_qwen_waiting_reading(ngx_http_request_t *r);
static void ngx_http_qwen_reset_headers_out(ngx_http_request_t *r);
static void ngx_http_qwen_failover_cleanup(void *data);
static ngx_int_t ngx_http_qwen_phase_index(ngx_http_request_t *r);


const char *
ngx_http_qwen_outcome_name(ngx_uint_t outcome)
{
    return (outcome < NGX_HTTP_QWEN_OUTCOMES)
           ? ngx_http_qwen_outcome_names[outcome] : "unknown";
}


/* qwen_failover_on trigger ... | off; */

char *
ngx_http_qwen_failover_on(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, k, mask;

    if (qlcf->failover_on != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mask = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 3 && ngx_strncmp(value[i].data, "off", 3) == 0) {
            if (cf->args->nelts != 2) {
                return "takes \"off\" alone";
            }

            continue;
        }

        for (k = NGX_HTTP_QWEN_OUT_ERROR; k < NGX_HTTP_QWEN_OUT_CUT; k++) {
            if (value[i].len == ngx_strlen(ngx_http_qwen_outcome_names[k])
                && ngx_strncmp(value[i].data, ngx_http_qwen_outcome_names[k],
                               value[i].len)
                   == 0)
            {
                break;
            }
        }

        if (k == NGX_HTTP_QWEN_OUT_CUT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid trigger \"%V\": one of error, "
                               "timeout, first_byte, http_500, http_502, "
                               "http_503, http_504, http_429, "
                               "model_not_found, auth, arrears, moderation, "
                               "or off", &value[i]);
            return NGX_CONF_ERROR;
        }

        mask |= (1 << k);
    }

    qlcf->failover_on = mask;

    return NGX_CONF_OK;
}


/* qwen_retry_wait min max; */

char *
ngx_http_qwen_retry_wait(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   min, max;

    if (qlcf->retry_wait_min != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    min = ngx_parse_time(&value[1], 0);
    max = ngx_parse_time(&value[2], 0);

    if (min == (ngx_msec_t) NGX_ERROR || max == (ngx_msec_t) NGX_ERROR
        || max < min)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"qwen_retry_wait\" takes two times, the "
                           "shortest first: \"%V %V\"", &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    qlcf->retry_wait_min = min;
    qlcf->retry_wait_max = max;

    return NGX_CONF_OK;
}


/* qwen_cooldown [transient=time] [auth=time] [arrears=time]; */

char *
ngx_http_qwen_cooldown(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    u_char      *eq;
    ngx_str_t   *value, v;
    ngx_msec_t  *slot, t;
    ngx_uint_t   i;

    if (qlcf->cooldown_transient != NGX_CONF_UNSET_MSEC
        || qlcf->cooldown_auth != NGX_CONF_UNSET_MSEC
        || qlcf->cooldown_arrears != NGX_CONF_UNSET_MSEC)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL) {
            goto invalid;
        }

        v.data = value[i].data;
        v.len = eq - v.data;

        if (v.len == 9 && ngx_strncmp(v.data, "transient", 9) == 0) {
            slot = &qlcf->cooldown_transient;

        } else if (v.len == 4 && ngx_strncmp(v.data, "auth", 4) == 0) {
            slot = &qlcf->cooldown_auth;

        } else if (v.len == 7 && ngx_strncmp(v.data, "arrears", 7) == 0) {
            slot = &qlcf->cooldown_arrears;

        } else {
            goto invalid;
        }

        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        t = ngx_parse_time(&v, 0);
        if (t == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        *slot = t;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": \"transient=\", \"auth=\" "
                       "or \"arrears=\" with a time", &value[i]);

    return NGX_CONF_ERROR;
}


void
ngx_http_qwen_failover_merge(ngx_http_qwen_loc_conf_t *conf,
    ngx_http_qwen_loc_conf_t *prev)
{
    ngx_conf_merge_value(conf->failover, prev->failover, 0);
    ngx_conf_merge_uint_value(conf->failover_on, prev->failover_on,
                              NGX_HTTP_QWEN_FAILOVER_DEFAULT);
    ngx_conf_merge_uint_value(conf->failover_tries, prev->failover_tries, 4);
    ngx_conf_merge_msec_value(conf->failover_timeout, prev->failover_timeout,
                              60000);
    ngx_conf_merge_msec_value(conf->first_byte_timeout,
                              prev->first_byte_timeout, 0);
    ngx_conf_merge_msec_value(conf->retry_after_max, prev->retry_after_max,
                              10000);

    if (conf->retry_wait_min == NGX_CONF_UNSET_MSEC) {
        conf->retry_wait_min = prev->retry_wait_min;
        conf->retry_wait_max = prev->retry_wait_max;
    }

    ngx_conf_merge_msec_value(conf->retry_wait_min, prev->retry_wait_min,
                              3000);
    ngx_conf_merge_msec_value(conf->retry_wait_max, prev->retry_wait_max,
                              10000);

    if (conf->cooldown_transient == NGX_CONF_UNSET_MSEC
        && conf->cooldown_auth == NGX_CONF_UNSET_MSEC
        && conf->cooldown_arrears == NGX_CONF_UNSET_MSEC)
    {
        conf->cooldown_transient = prev->cooldown_transient;
        conf->cooldown_auth = prev->cooldown_auth;
        conf->cooldown_arrears = prev->cooldown_arrears;
    }

    ngx_conf_merge_msec_value(conf->cooldown_transient,
                              prev->cooldown_transient, 5000);
    ngx_conf_merge_msec_value(conf->cooldown_auth, prev->cooldown_auth,
                              300000);
    ngx_conf_merge_msec_value(conf->cooldown_arrears, prev->cooldown_arrears,
                              1800000);
}


/*
 * After the catalogue and the regions: every deployment gets its region
 * and a name, and its slot in the health table.  A model without a
 * written chain but pinned to regions has one implicit deployment per
 * region; any other model goes to the region itself, a deployment named
 * after the region that sends the model as resolved.
 */

ngx_int_t
ngx_http_qwen_deployments_init(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf)
{
    u_char                       *p;
    ngx_str_t                    *pinned;
    ngx_uint_t                    i, j, k, n, h;
    ngx_http_qwen_model_t       **models, *m;
    ngx_http_qwen_region_t       *rg, *region;
    ngx_http_qwen_deployment_t   *d, **dp;

    if (ngx_array_init(&qmcf->deployments, cf->pool, 32,
                       sizeof(ngx_http_qwen_deployment_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rg = qmcf->regions.elts;

    for (i = 0; i < qmcf->regions.nelts; i++) {
        d = &rg[i].other;

        d->region = &rg[i];
        d->region_name = rg[i].name;
        d->name = rg[i].name;
        ngx_str_null(&d->model);
    }

    models = qmcf->models.elts;

    for (i = 0; i < qmcf->models.nelts; i++) {
        m = models[i];

        if (m->deployments == NULL && m->regions) {
            /* one per region the model is pinned to, in that order */

            pinned = m->regions->elts;
            n = m->regions->nelts;

            m->implicit = ngx_array_create(cf->pool, n,
                                           sizeof(ngx_http_qwen_deployment_t));
            if (m->implicit == NULL) {
                return NGX_ERROR;
            }

            for (j = 0; j < n; j++) {
                region = ngx_http_qwen_region_find(qmcf, &pinned[j]);

                if (region == NULL) {
                    continue;
                }

                d = ngx_array_push(m->implicit);
                if (d == NULL) {
                    return NGX_ERROR;
                }

                ngx_memzero(d, sizeof(ngx_http_qwen_deployment_t));
                d->region = region;
                d->region_name = region->name;
                d->model = m->id;
            }
        }

        for (k = 0; k < 2; k++) {
            if (k == 0 && m->deployments == NULL) {
                continue;
            }

            if (k == 1 && m->implicit == NULL) {
                continue;
            }

            d = (k == 0) ? m->deployments->elts : m->implicit->elts;
            n = (k == 0) ? m->deployments->nelts : m->implicit->nelts;

            for (j = 0; j < n; j++) {

                if (d[j].region == NULL) {
                    d[j].region = ngx_http_qwen_region_find(qmcf,
                                                        &d[j].region_name);
                    if (d[j].region == NULL) {
                        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                                      "model \"%V\": deployment %ui names "
                                      "region \"%V\", which no qwen_region "
                                      "defines", &m->id, j + 1,
                                      &d[j].region_name);
                        return NGX_ERROR;
                    }
                }

                if (d[j].model.len == 0) {
                    d[j].model = m->id;
                }

                d[j].name.len = d[j].region_name.len + 1 + d[j].model.len;
                d[j].name.data = ngx_pnalloc(cf->pool, d[j].name.len);
                if (d[j].name.data == NULL) {
                    return NGX_ERROR;
                }

                p = ngx_cpymem(d[j].name.data, d[j].region_name.data,
                               d[j].region_name.len);
                *p++ = '/';
                ngx_memcpy(p, d[j].model.data, d[j].model.len);

                for (h = 0; h < j; h++) {
                    if (d[h].name.len == d[j].name.len
                        && ngx_strncmp(d[h].name.data, d[j].name.data,
                                       d[j].name.len) == 0)
                    {
                        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                                      "model \"%V\": deployment \"%V\" is "
                                      "in its chain twice", &m->id,
                                      &d[j].name);
                        return NGX_ERROR;
                    }
                }

                /* the same deployment in two chains: one health */

                dp = qmcf->deployments.elts;

                for (h = 0; h < qmcf->deployments.nelts; h++) {
                    if (dp[h]->name.len == d[j].name.len
                        && ngx_strncmp(dp[h]->name.data, d[j].name.data,
                                       d[j].name.len) == 0)
                    {
                        break;
                    }
                }

                if (h < qmcf->deployments.nelts) {
                    d[j].health = dp[h]->health;
                    continue;
                }

                dp = ngx_array_push(&qmcf->deployments);
                if (dp == NULL) {
                    return NGX_ERROR;
                }

                d[j].health = qmcf->deployments.nelts - 1;
                *dp = &d[j];
            }
        }
    }

    for (i = 0; i < qmcf->regions.nelts; i++) {
        dp = ngx_array_push(&qmcf->deployments);
        if (dp == NULL) {
            return NGX_ERROR;
        }

        rg[i].other.health = qmcf->deployments.nelts - 1;
        *dp = &rg[i].other;
    }

    if (ngx_http_qwen_health_init(cf, qmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (qmcf->zone) {
        ngx_http_qwen_zone_set_health(qmcf->zone, qmcf->health);
    }

    return NGX_OK;
}


/*
 * Routes the request to a deployment: the first of its chain on the
 * first entry, the next one when the gateway restarts the request after
 * a failed attempt.  NGX_OK: routed; NGX_DECLINED: refused with "err";
 * NGX_DONE: the request waits (a timer) and comes back here.
 */

ngx_int_t
ngx_http_qwen_route(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_error_t *err)
{
    ngx_int_t                  rc;
    ngx_uint_t                 i, soonest;
    ngx_msec_t                 wait;
    ngx_pool_cleanup_t        *cln;
    ngx_http_qwen_failover_t  *fo;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);
    fo = ctx->failover;

    if (fo == NULL) {
        fo = ngx_pcalloc(r->pool, sizeof(ngx_http_qwen_failover_t));
        if (fo == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_qwen_failover_cleanup;
        cln->data = fo;

        fo->timer.handler = ngx_http_qwen_failover_timer;
        fo->timer.data = r;
        fo->timer.log = r->connection->log;

        fo->started = ngx_current_msec;
        fo->error_page = r->error_page;

        ctx->failover = fo;
    }

    if (!fo->resuming) {
        /*
         * The first entry, or one an internal redirect made (error_page,
         * a named location): the chain of this location.
         */

        fo->enabled = qlcf->failover;
        fo->tried = 0;
        fo->force = 0;

        fo->first_byte = qlcf->first_byte_timeout;

        if (ctx->entry
            && ctx->entry->first_byte_timeout != NGX_CONF_UNSET_MSEC)
        {
            fo->first_byte = ctx->entry->first_byte_timeout;
        }

        rc = ngx_http_qwen_chain_build(r, ctx, fo, err);
        if (rc != NGX_OK) {
            return rc;
        }

        if (fo->enabled) {
            /* the upstream module would close a body file after a header */
            r->preserve_body = 1;
        }
    }

    fo->resuming = 0;
    fo->holding = 0;
    fo->passing = 0;
    fo->own_error = 0;
    fo->fired = 0;

    if (fo->force) {
        fo->force = 0;
        return ngx_http_qwen_attempt(r, ctx, fo, fo->forced, err);
    }

    if (!fo->enabled) {
        /* without failover, the one deployment, whatever its health */
        return ngx_http_qwen_attempt(r, ctx, fo, 0, err);
    }

    fo->keyless = 0;

    i = ngx_http_qwen_next(r, fo, &soonest, &wait);

    if (i != NGX_HTTP_QWEN_NONE) {
        return ngx_http_qwen_attempt(r, ctx, fo, i, err);
    }

    if (fo->keyless && fo->back == 0) {
        /* nothing is out: what is left has no key; the error says so */
        for (i = 0; i < fo->n; i++) {
            if (!(fo->tried & ((ngx_uint_t) 1 << i))
                && fo->chain[i]->region->target->credential.len == 0)
            {
                return ngx_http_qwen_attempt(r, ctx, fo, i, err);
            }
        }
    }

    /* every deployment cools down: wait for the first back, if soon */

    if (soonest != NGX_HTTP_QWEN_NONE && wait <= qlcf->retry_after_max
        && wait < ngx_http_qwen_budget_left(r, fo))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: every deployment of model \"%V\" cools down; "
                      "waiting %M ms for \"%V\"", &ctx->requested_model, wait,
                      &fo->chain[soonest]->name);

        fo->force = 1;
        fo->forced = soonest;
        fo->wait_until = ngx_current_msec + wait;
        ctx->state = NGX_HTTP_QWEN_WAITING;

        /* the handler returns NGX_DONE: the request stays with the timer */
        ngx_post_event(&fo->timer, &ngx_posted_events);

        return NGX_DONE;
    }

    if (soonest != NGX_HTTP_QWEN_NONE) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: every deployment of model \"%V\" is out "
                      "(\"%V\" is back in %M ms): request refused",
                      &ctx->requested_model, &fo->chain[soonest]->name, wait);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: every deployment of model \"%V\" is out "
                      "(a refused key, arrears, a missing model): request "
                      "refused", &ctx->requested_model);

        /* the first of them back */
        wait = fo->back;
    }

    ngx_http_qwen_error_set(err, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                            "all_deployments_cooling_down", NULL,
                            (u_char *) "Every upstream of the model is "
                            "unavailable for now; retry later.",
                            sizeof("Every upstream of the model is "
                                   "unavailable for now; retry later.") - 1);

    err->retry_after = (wait + 999) / 1000;

    return NGX_DECLINED;
}


/*
 * The chain: the model's written deployments (with weights spread), or
 * the region qwen_default_region picks followed by the model's other
 * pinned regions; outside the catalogue, the region's "other".  Without
 * failover, only the first.
 */

static ngx_int_t
ngx_http_qwen_chain_build(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo, ngx_http_qwen_error_t *err)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i, n;
    ngx_http_qwen_region_t      *first;
    ngx_http_qwen_deployment_t  *d;

    fo->n = 0;

    if (ctx->entry && ctx->entry->deployments) {
        d = ctx->entry->deployments->elts;
        n = ngx_min(ctx->entry->deployments->nelts, NGX_HTTP_QWEN_MAX_CHAIN);

        for (i = 0; i < n; i++) {
            fo->chain[fo->n++] = &d[i];
        }

        ngx_http_qwen_chain_spread(fo);

        if (ngx_http_qwen_chain_region_first(r, fo) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        rc = ngx_http_qwen_region_select(r, ctx, &first, err);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ctx->entry == NULL || ctx->entry->implicit == NULL) {
            fo->chain[fo->n++] = &first->other;

        } else {
            d = ctx->entry->implicit->elts;
            n = ctx->entry->implicit->nelts;

            for (i = 0; i < n; i++) {
                if (d[i].region == first) {
                    fo->chain[fo->n++] = &d[i];
                    break;
                }
            }

            if (fo->n == 0) {
                /* not reached: region_select() picks one of them */
                fo->chain[fo->n++] = &first->other;
            }

            for (i = 0; i < n; i++) {
                if (d[i].region != first
                    && fo->n < NGX_HTTP_QWEN_MAX_CHAIN)
                {
                    fo->chain[fo->n++] = &d[i];
                }
            }
        }
    }

    if (ctx->key && ctx->key->regions) {
        /* the key's regions only: the others are as if not written */

        n = 0;

        for (i = 0; i < fo->n; i++) {
            if (ngx_http_qwen_keys_region_allowed(ctx,
                                                  fo->chain[i]->region))
            {
                fo->chain[n++] = fo->chain[i];
            }
        }

        fo->n = n;

        if (n == 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "qwen: rejected request: key \"%V\" may use no "
                          "region of model \"%V\"", &ctx->key->subject.id,
                          &ctx->requested_model);

            ngx_http_qwen_limits_refused(
                ((ngx_http_qwen_main_conf_t *)
                 ngx_http_get_module_main_conf(r, ngx_http_qwen_module))
                ->limits,
                &ctx->key->subject, NGX_HTTP_QWEN_REFUSED_MODEL);

            if (ngx_http_qwen_error_model_not_found(r, err,
                                                    &ctx->requested_model)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            return NGX_DECLINED;
        }
    }

    if (!fo->enabled) {
        fo->n = 1;
    }

    return NGX_OK;
}


/*
 * A location's qwen_default_region, where it is set, puts the chain's
 * deployments in that region first (in their order), so that an
 * error_page into a named location with another region starts there.
 */

static ngx_int_t
ngx_http_qwen_chain_region_first(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo)
{
    ngx_str_t                    name;
    ngx_uint_t                   i, k;
    ngx_http_qwen_loc_conf_t    *qlcf;
    ngx_http_qwen_deployment_t  *first[NGX_HTTP_QWEN_MAX_CHAIN];
    ngx_http_qwen_deployment_t  *rest[NGX_HTTP_QWEN_MAX_CHAIN];
    ngx_uint_t                   nfirst, nrest;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (qlcf->region == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, qlcf->region, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    nfirst = 0;
    nrest = 0;

    for (i = 0; i < fo->n; i++) {
        if (fo->chain[i]->region_name.len == name.len
            && ngx_strncmp(fo->chain[i]->region_name.data, name.data,
                           name.len) == 0)
        {
            first[nfirst++] = fo->chain[i];

        } else {
            rest[nrest++] = fo->chain[i];
        }
    }

    k = 0;

    for (i = 0; i < nfirst; i++) {
        fo->chain[k++] = first[i];
    }

    for (i = 0; i < nrest; i++) {
        fo->chain[k++] = rest[i];
    }

    return NGX_OK;
}


/*
 * Deployments written with a weight next to each other are equals: the
 * first attempt goes to one of them at random, in proportion to the
 * weights; the others of the run follow in the order written.
 */

static void
ngx_http_qwen_chain_spread(ngx_http_qwen_failover_t *fo)
{
    ngx_uint_t                   i, j, k, total, pick;
    ngx_http_qwen_deployment_t  *d;

    for (i = 0; i < fo->n; i = j) {
        total = 0;

        for (j = i; j < fo->n && fo->chain[j]->weight; j++) {
            total += fo->chain[j]->weight;
        }

        if (j - i < 2) {
            j = (j == i) ? i + 1 : j;
            continue;
        }

        pick = (ngx_uint_t) ngx_random() % total;

        for (k = i; k < j; k++) {
            if (pick < fo->chain[k]->weight) {
                break;
            }

            pick -= fo->chain[k]->weight;
        }

        /* the one picked goes first of its run */

        d = fo->chain[k];

        for ( /* void */ ; k > i; k--) {
            fo->chain[k] = fo->chain[k - 1];
        }

        fo->chain[i] = d;
    }
}


/*
 * The deployment to try next, of those not tried yet: the first that is
 * up; else the first that cools down after a transient failure (an
 * error, a timeout, a 5xx: tried anyway, since nothing better is left,
 * and the outage may be over); else NONE, with the one back soonest of
 * those a 429 cooled down (a backoff the upstream asked for, which the
 * request may wait out) and how long that is.  Deployments out for a
 * broken key, arrears or a missing model are not tried.
 */

static ngx_uint_t
ngx_http_qwen_next(ngx_http_request_t *r, ngx_http_qwen_failover_t *fo,
    ngx_uint_t *soonest, ngx_msec_t *wait)
{
    ngx_uint_t                   i, reason, probe;
    ngx_msec_t                   down;
    ngx_http_qwen_region_t      *region;
    ngx_http_qwen_main_conf_t   *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    *soonest = NGX_HTTP_QWEN_NONE;
    *wait = 0;
    probe = NGX_HTTP_QWEN_NONE;
    fo->back = 0;

    for (i = 0; i < fo->n; i++) {

        if (fo->tried & ((ngx_uint_t) 1 << i)) {
            continue;
        }

        region = fo->chain[i]->region;

        if (region->target->credential.len == 0) {
            /* no key here (key_env= unset): as if it were not written */
            fo->keyless = 1;
            continue;
        }

        if (fo->moderated.len
            && region->provider.len == fo->moderated.len
            && ngx_strncmp(region->provider.data, fo->moderated.data,
                           fo->moderated.len) == 0)
        {
            /* the same vendor would refuse the same content again */
            continue;
        }

        down = ngx_http_qwen_health_down(qmcf->health, fo->chain[i],
                                         &reason);

        if (down == 0) {
            return i;
        }

        if (fo->back == 0 || down < fo->back) {
            fo->back = down;
        }

        switch (reason) {

        case NGX_HTTP_QWEN_OUT_HTTP_429:
            if (*soonest == NGX_HTTP_QWEN_NONE || down < *wait) {
                *soonest = i;
                *wait = down;
            }

            break;

        case NGX_HTTP_QWEN_OUT_AUTH:
        case NGX_HTTP_QWEN_OUT_ARREARS:
        case NGX_HTTP_QWEN_OUT_MODEL_NOT_FOUND:
            break;

        default:
            if (probe == NGX_HTTP_QWEN_NONE) {
                probe = i;
            }
        }
    }

    return probe;
}


/* sets the request up for an attempt at chain[i] */

static ngx_int_t
ngx_http_qwen_attempt(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo, ngx_uint_t i, ngx_http_qwen_error_t *err)
{
    ngx_http_qwen_region_t      *region;
    ngx_http_qwen_deployment_t  *d;

    d = fo->chain[i];
    region = d->region->target;

    if (region->credential.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: region \"%V\" has no API key", &region->name);

        ngx_http_qwen_error_set(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "server_error", "no_upstream_key", NULL,
                                (u_char *) "The gateway has no API key for "
                                "the upstream region.",
                                sizeof("The gateway has no API key for the "
                                       "upstream region.") - 1);
        return NGX_DECLINED;
    }

    fo->tried |= ((ngx_uint_t) 1 << i);
    fo->current = i;
    fo->attempts++;
    fo->counted = 0;
    fo->truncated = 0;
    fo->outcome = NGX_HTTP_QWEN_OUT_OK;

    ctx->deployment = d;
    ctx->region = region;

    if (d->model.len) {
        ctx->model = d->model;
    }

    if (ctx->entry && ctx->entry->deployments) {
        ctx->provider = d->region->provider;
    }

    if (d->prices) {
        ctx->prices = d->prices;
        ctx->nprices = d->nprices;

    } else if (ctx->entry) {
        ctx->prices = ctx->entry->prices;
        ctx->nprices = ctx->entry->nprices;
    }

    if (ngx_http_qwen_body_retarget(r, ctx, &ctx->model) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_qwen_provider_headers(r, fo, region) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fo->first_byte) {
        fo->first_byte_armed = 1;
        ngx_add_timer(&fo->timer, fo->first_byte);
    }

    if (fo->enabled) {
        /*
         * nginx's own answers to an upstream failure (its 502 and 504)
         * come to the header filter, not to an error_page, while the
         * chain may go on; the location's error_page is restored when
         * the gateway gives up.
         */
        r->error_page = 1;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen attempt %ui at \"%V\" (chain %ui)",
                   fo->attempts, &d->name, i);

    return NGX_OK;
}


/*
 * A provider's extra headers go into the request's header list, after
 * the client's (which are shaped by then); the next attempt cuts them
 * off again first (ngx_http_qwen_route_headers_clear()).  They are
 * configuration, never secrets.
 */

static ngx_int_t
ngx_http_qwen_provider_headers(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo, ngx_http_qwen_region_t *region)
{
    ngx_uint_t        i;
    ngx_keyval_t     *kv;
    ngx_table_elt_t  *h;

    if (region->headers == NULL) {
        return NGX_OK;
    }

    fo->headers_list = &r->headers_in.headers;
    fo->headers_part = r->headers_in.headers.last;
    fo->headers_nelts = fo->headers_part->nelts;

    kv = region->headers->elts;

    for (i = 0; i < region->headers->nelts; i++) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key = kv[i].key;
        h->value = kv[i].value;
        h->lowcase_key = ngx_pnalloc(r->pool, kv[i].key.len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, kv[i].key.data, kv[i].key.len);
        h->hash = ngx_hash_key(h->lowcase_key, kv[i].key.len);
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    return NGX_OK;
}


void
ngx_http_qwen_route_headers_clear(ngx_http_qwen_ctx_t *ctx)
{
    ngx_http_qwen_failover_t  *fo;

    fo = ctx->failover;

    if (fo == NULL || fo->headers_part == NULL) {
        return;
    }

    fo->headers_part->nelts = fo->headers_nelts;
    fo->headers_part->next = NULL;
    fo->headers_list->last = fo->headers_part;
    fo->headers_part = NULL;
}


static ngx_msec_t
ngx_http_qwen_budget_left(ngx_http_request_t *r, ngx_http_qwen_failover_t *fo)
{
    ngx_msec_int_t             left;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (qlcf->failover_timeout == 0) {
        return NGX_MAX_INT32_VALUE;
    }

    left = (ngx_msec_int_t) (fo->started + qlcf->failover_timeout
                             - ngx_current_msec);

    return left > 0 ? (ngx_msec_t) left : 0;
}


/*
 * The header filter's part: an answer that may be a trigger is held back
 * (NGX_OK) until its body has come; anything else goes on (NGX_DECLINED).
 */

ngx_int_t
ngx_http_qwen_failover_header(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    ngx_uint_t                  status, own;
    ngx_http_upstream_t        *u;
    ngx_http_qwen_failover_t   *fo;
    ngx_http_qwen_main_conf_t  *qmcf;

    fo = ctx->failover;

    if (fo->first_byte_armed) {
        fo->first_byte_armed = 0;

        if (fo->timer.timer_set) {
            ngx_del_timer(&fo->timer);
        }
    }

    if (ctx->state != NGX_HTTP_QWEN_READY || ctx->deployment == NULL) {
        return NGX_DECLINED;
    }

    u = r->upstream;
    status = r->headers_out.status;

    /* nginx's own answer for the upstream: it has finished with it */
    own = (u == NULL || u->cleanup == NULL);

    if (fo->enabled
        && (own
            || status == NGX_HTTP_BAD_REQUEST
            || status == NGX_HTTP_UNAUTHORIZED
            || status == 402
            || status == NGX_HTTP_FORBIDDEN
            || status == NGX_HTTP_NOT_FOUND
            || status == NGX_HTTP_TOO_MANY_REQUESTS
            || status >= NGX_HTTP_INTERNAL_SERVER_ERROR))
    {
        fo->holding = 1;
        fo->own_error = own;
        fo->held_status = status;
        fo->held = NULL;
        fo->retry_after = own ? 0 : ngx_http_qwen_retry_after(r);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "qwen holds answer %ui (own %ui)", status, own);

        return NGX_OK;
    }

    /* the answer: no more failover for this request */

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    if (status < NGX_HTTP_BAD_REQUEST) {
        fo->outcome = NGX_HTTP_QWEN_OUT_OK;

    } else {
        /* without failover: counted by its status (the body is not read) */
        fo->own_error = own;
        fo->held_status = status;
        fo->held = NULL;
        fo->outcome = ngx_http_qwen_classify(r, fo);
    }

    /* counted at the log phase (ngx_http_qwen_failover_log()): a cut
     * stream changes the outcome; a success puts a deployment back now */

    if (fo->outcome == NGX_HTTP_QWEN_OUT_OK) {
        ngx_http_qwen_health_attempt(qmcf->health, ctx->deployment,
                                     fo->outcome, 0, 0);
    }

    fo->passing = 1;
    r->error_page = fo->error_page;

    return NGX_DECLINED;
}


/*
 * The body filter's part while an answer is held: its first bytes are
 * kept (to read the error's code, and to send on if it is the answer),
 * the rest is consumed; at its end the gateway decides.
 */

ngx_int_t
ngx_http_qwen_failover_body(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                     n;
    ngx_buf_t                 *b;
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    ngx_http_qwen_failover_t  *fo;

    fo = ctx->failover;
    last = 0;

    if (fo->held == NULL) {
        fo->held = ngx_create_temp_buf(r->pool, 4096);
        if (fo->held == NULL) {
            return NGX_ERROR;
        }
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            n = b->last - b->pos;

            if ((size_t) (fo->held->end - fo->held->last) < n
                && fo->held->end - fo->held->start < NGX_HTTP_QWEN_HELD_MAX)
            {
                /* grow, up to the bound: what does not fit is dropped */
                size_t   size;
                u_char  *p;

                size = ngx_min(NGX_HTTP_QWEN_HELD_MAX,
                               (size_t) (fo->held->last - fo->held->pos)
                               + n + 4096);
                p = ngx_pnalloc(r->pool, size);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                n = fo->held->last - fo->held->pos;
                ngx_memcpy(p, fo->held->pos, n);
                fo->held->start = p;
                fo->held->pos = p;
                fo->held->last = p + n;
                fo->held->end = p + size;

                n = b->last - b->pos;
            }

            if (n > (size_t) (fo->held->end - fo->held->last)) {
                n = fo->held->end - fo->held->last;
                fo->truncated = 1;
            }

            fo->held->last = ngx_cpymem(fo->held->last, b->pos, n);

            b->pos = b->last;
        }

        if (b->in_file && !ngx_buf_in_memory(b)) {
            /* bytes the header filter did not ask into memory: not kept */
            if (b->file_last > b->file_pos) {
                fo->truncated = 1;
            }

            b->file_pos = b->file_last;
        }

        if (b->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    return ngx_http_qwen_decide(r, ctx, fo);
}


/* the held answer has come whole: move on, or let it go to the client */

static ngx_int_t
ngx_http_qwen_decide(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo)
{
    ngx_uint_t                   outcome, next, soonest;
    ngx_msec_t                   wait, cooldown, left;
    ngx_http_qwen_deployment_t  *d;
    ngx_http_qwen_loc_conf_t    *qlcf;
    ngx_http_qwen_main_conf_t   *qmcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);
    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    d = ctx->deployment;
    wait = 0;
    outcome = ngx_http_qwen_classify(r, fo);
    fo->outcome = outcome;

    fo->counted = 1;

    if (outcome == NGX_HTTP_QWEN_OUT_CLIENT_ERROR
        || outcome == NGX_HTTP_QWEN_OUT_OK)
    {
        ngx_http_qwen_health_attempt(qmcf->health, d, outcome, 0, 1);
        return ngx_http_qwen_release(r, ctx, fo, NULL);
    }

    cooldown = ngx_http_qwen_cooldown_of(qlcf, d, outcome, fo->retry_after);

    if (!(qlcf->failover_on & (1 << outcome))) {
        /* not a trigger here: the answer, and no verdict on the upstream */
        ngx_http_qwen_health_attempt(qmcf->health, d, outcome, 0, 1);
        return ngx_http_qwen_release(r, ctx, fo, NULL);
    }

    if (outcome == NGX_HTTP_QWEN_OUT_HTTP_429 && !fo->retried) {
        /* the first throttle: others wait it out too, this one retries */
        wait = fo->retry_after;

        if (wait == 0) {
            wait = qlcf->retry_wait_min;

            if (qlcf->retry_wait_max > qlcf->retry_wait_min) {
                wait += (ngx_msec_t) ngx_random()
                        % (qlcf->retry_wait_max - qlcf->retry_wait_min + 1);
            }
        }

        wait = ngx_min(wait, qlcf->retry_after_max);

        /* others respect the whole Retry-After; this request retries */
        if (cooldown) {
            cooldown = ngx_max(wait, fo->retry_after);
        }
    }

    ngx_http_qwen_health_attempt(qmcf->health, d, outcome, cooldown, 1);

    if (outcome == NGX_HTTP_QWEN_OUT_AUTH) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: deployment \"%V\" refused the gateway's key "
                      "(%ui): it is out for %M ms", &d->name,
                      fo->held_status, cooldown);
    }

    left = ngx_http_qwen_budget_left(r, fo);

    if (fo->attempts >= qlcf->failover_tries || left == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: failover of model \"%V\" stops at \"%V\": %s "
                      "(attempt %ui of %ui, %M ms left)", &ctx->requested_model,
                      &d->name, ngx_http_qwen_outcome_name(outcome),
                      fo->attempts, qlcf->failover_tries, left);

        ngx_http_qwen_move_note(r, fo, d, outcome);
        ngx_http_qwen_health_move(qmcf->health, d, NULL, outcome,
                                  r->connection->log);
        return ngx_http_qwen_release(r, ctx, fo, NULL);
    }

    if (outcome == NGX_HTTP_QWEN_OUT_HTTP_429 && !fo->retried
        && wait < left)
    {
        cooldown = wait;
        fo->retried = 1;
        fo->force = 1;
        fo->forced = fo->current;
        fo->tried &= ~((ngx_uint_t) 1 << fo->current);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: deployment \"%V\" throttled the request (429): "
                      "retrying it in %M ms (attempt %ui of %ui)", &d->name,
                      cooldown, fo->attempts, qlcf->failover_tries);

        ngx_http_qwen_move_note(r, fo, d, outcome);
        ngx_http_qwen_health_move(qmcf->health, d, d, outcome,
                                  r->connection->log);

        return ngx_http_qwen_schedule(r, ctx, fo, cooldown);
    }

    if (outcome == NGX_HTTP_QWEN_OUT_MODERATION) {
        /* opted in: only another vendor may be asked */
        fo->moderated = d->region->provider;
    }

    next = ngx_http_qwen_next(r, fo, &soonest, &wait);

    if (next == NGX_HTTP_QWEN_NONE && soonest != NGX_HTTP_QWEN_NONE
        && wait <= qlcf->retry_after_max && wait < left)
    {
        next = soonest;
        fo->force = 1;
        fo->forced = soonest;

    } else {
        wait = 0;
    }

    if (next == NGX_HTTP_QWEN_NONE) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: failover of model \"%V\" stops at \"%V\": %s; "
                      "no other deployment is left", &ctx->requested_model,
                      &d->name,
                      ngx_http_qwen_outcome_name(outcome));

        ngx_http_qwen_move_note(r, fo, d, outcome);
        ngx_http_qwen_health_move(qmcf->health, d, NULL, outcome,
                                  r->connection->log);
        return ngx_http_qwen_release(r, ctx, fo, NULL);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "qwen: failover from \"%V\" to \"%V\": %s (attempt %ui of "
                  "%ui)", &d->name, &fo->chain[next]->name,
                  ngx_http_qwen_outcome_name(outcome), fo->attempts,
                  qlcf->failover_tries);

    ngx_http_qwen_move_note(r, fo, d, outcome);
    ngx_http_qwen_health_move(qmcf->health, d, fo->chain[next], outcome,
                              r->connection->log);

    fo->retried = 0;

    return ngx_http_qwen_schedule(r, ctx, fo, wait);
}


/*
 * What the held answer means, from its status and, in the body, the
 * error's code ({"error":{"code":..}} or DashScope's {"code":..}).
 */

static ngx_uint_t
ngx_http_qwen_classify(ngx_http_request_t *r, ngx_http_qwen_failover_t *fo)
{
    cJSON       *root, *e, *c;
    ngx_str_t    code;
    ngx_uint_t   status, outcome;

    status = fo->held_status;

    if (fo->own_error) {
        if (fo->fired) {
            return NGX_HTTP_QWEN_OUT_FIRST_BYTE;
        }

        return (status == NGX_HTTP_GATEWAY_TIME_OUT)
               ? NGX_HTTP_QWEN_OUT_TIMEOUT : NGX_HTTP_QWEN_OUT_ERROR;
    }

    ngx_str_null(&code);
    root = NULL;

    if (fo->held && fo->held->last > fo->held->pos
        && (status == NGX_HTTP_BAD_REQUEST || status == NGX_HTTP_NOT_FOUND
            || status == NGX_HTTP_TOO_MANY_REQUESTS))
    {
        root = cJSON_ParseWithLength((const char *) fo->held->pos,
                                     fo->held->last - fo->held->pos);
        c = NULL;

        if (root) {
            e = cJSON_GetObjectItemCaseSensitive(root, "error");
            c = cJSON_IsObject(e)
                ? cJSON_GetObjectItemCaseSensitive(e, "code") : NULL;

            if (!cJSON_IsString(c)) {
                c = cJSON_GetObjectItemCaseSensitive(root, "code");
            }
        }

        if (cJSON_IsString(c)) {
            code.data = (u_char *) c->valuestring;
            code.len = ngx_strlen(c->valuestring);
        }
    }

#define ngx_http_qwen_code_is(s)                                             \
    (code.len == sizeof(s) - 1                                               \
     && ngx_strncasecmp(code.data, (u_char *) s, sizeof(s) - 1) == 0)

    switch (status) {

    case NGX_HTTP_BAD_REQUEST:
        if (ngx_http_qwen_code_is("Arrearage")) {
            outcome = NGX_HTTP_QWEN_OUT_ARREARS;

        } else if (ngx_http_qwen_code_is("DataInspectionFailed")
                   || ngx_http_qwen_code_is("data_inspection_failed"))
        {
            outcome = NGX_HTTP_QWEN_OUT_MODERATION;

        } else {
            outcome = NGX_HTTP_QWEN_OUT_CLIENT_ERROR;
        }

        break;

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
        outcome = NGX_HTTP_QWEN_OUT_AUTH;
        break;

    case 402:
        outcome = NGX_HTTP_QWEN_OUT_ARREARS;
        break;

    case NGX_HTTP_NOT_FOUND:
        outcome = ngx_http_qwen_code_is("model_not_found")
                  ? NGX_HTTP_QWEN_OUT_MODEL_NOT_FOUND
                  : NGX_HTTP_QWEN_OUT_CLIENT_ERROR;
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        /* out of quota is not a throttle: waiting does not help */
        outcome = ngx_http_qwen_code_is("insufficient_quota")
                  ? NGX_HTTP_QWEN_OUT_ARREARS : NGX_HTTP_QWEN_OUT_HTTP_429;
        break;

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        outcome = NGX_HTTP_QWEN_OUT_HTTP_500;
        break;

    case NGX_HTTP_BAD_GATEWAY:
        outcome = NGX_HTTP_QWEN_OUT_HTTP_502;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        outcome = NGX_HTTP_QWEN_OUT_HTTP_503;
        break;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        outcome = NGX_HTTP_QWEN_OUT_HTTP_504;
        break;

    default:
        outcome = NGX_HTTP_QWEN_OUT_CLIENT_ERROR;
    }

#undef ngx_http_qwen_code_is

    if (root) {
        cJSON_Delete(root);
    }

    return outcome;
}


static ngx_msec_t
ngx_http_qwen_cooldown_of(ngx_http_qwen_loc_conf_t *qlcf,
    ngx_http_qwen_deployment_t *d, ngx_uint_t outcome, ngx_msec_t retry_after)
{
    if (d->model.len == 0
        && outcome != NGX_HTTP_QWEN_OUT_ERROR
        && outcome != NGX_HTTP_QWEN_OUT_TIMEOUT
        && outcome != NGX_HTTP_QWEN_OUT_AUTH
        && outcome != NGX_HTTP_QWEN_OUT_ARREARS)
    {
        /*
         * A region itself, shared by every model without a chain: only
         * what concerns the whole region (it cannot be reached, its key is
         * refused) takes it out; one model's 429, 5xx or absence must not
         * take it out for the others (a client could otherwise do it by
         * asking for a model that does not exist).
         */
        return 0;
    }

    switch (outcome) {

    case NGX_HTTP_QWEN_OUT_AUTH:
        return qlcf->cooldown_auth;

    case NGX_HTTP_QWEN_OUT_ARREARS:
        return qlcf->cooldown_arrears;

    case NGX_HTTP_QWEN_OUT_MODERATION:
        /* the content, not the deployment */
        return 0;

    case NGX_HTTP_QWEN_OUT_HTTP_429:
        return retry_after ? retry_after : qlcf->cooldown_transient;

    default:
        return qlcf->cooldown_transient;
    }
}


/* the upstream's Retry-After: seconds, or an HTTP date; 0: none */

static ngx_msec_t
ngx_http_qwen_retry_after(ngx_http_request_t *r)
{
    time_t            t;
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Retry-After") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Retry-After",
                               sizeof("Retry-After") - 1) != 0)
        {
            continue;
        }

        n = ngx_atoi(h[i].value.data, h[i].value.len);

        if (n != NGX_ERROR) {
            return (n > 86400) ? 86400000 : (ngx_msec_t) n * 1000;
        }

        t = ngx_parse_http_time(h[i].value.data, h[i].value.len);

        if (t != NGX_ERROR) {
            t -= ngx_time();
            return (t <= 0) ? 1 : (t > 86400) ? 86400000 : (ngx_msec_t) t * 1000;
        }

        return 0;
    }
}


/* $qwen_failovers: "deployment:reason" for each move, space-separated */

static void
ngx_http_qwen_move_note(ngx_http_request_t *r, ngx_http_qwen_failover_t *fo,
    ngx_http_qwen_deployment_t *d, ngx_uint_t outcome)
{
    size_t       len, size;
    u_char      *p;
    const char  *name;

    name = ngx_http_qwen_outcome_name(outcome);
    len = d->name.len + 1 + ngx_strlen(name) + 1;

    if (fo->moves.len + len > fo->moves_cap) {
        size = ngx_max(2 * fo->moves_cap, fo->moves.len + len + 64);
        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            return;
        }

        if (fo->moves.len) {
            ngx_memcpy(p, fo->moves.data, fo->moves.len);
        }

        fo->moves.data = p;
        fo->moves_cap = size;
    }

    p = fo->moves.data + fo->moves.len;

    if (fo->moves.len) {
        *p++ = ' ';
    }

    p = ngx_cpymem(p, d->name.data, d->name.len);
    *p++ = ':';
    p = ngx_cpymem(p, name, ngx_strlen(name));

    fo->moves.len = p - fo->moves.data;
}


/*
 * Another attempt comes: the held answer is dropped and the request is
 * kept alive while the upstream module finishes with this one (the
 * reference it gives back is ours).  A posted event runs after that, in
 * this same cycle; it starts the wait, or the attempt at once.
 */

static ngx_int_t
ngx_http_qwen_schedule(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo, ngx_msec_t delay)
{
    fo->holding = 0;
    fo->held = NULL;
    fo->wait_until = ngx_current_msec + delay;

    ctx->state = NGX_HTTP_QWEN_WAITING;

    r->main->count++;

    ngx_post_event(&fo->timer, &ngx_posted_events);

    return NGX_OK;
}


/*
 * The held answer is the answer: its header and bytes go on to the
 * client.  When it was nginx's own page for an upstream failure, the
 * client gets an OpenAI-style error with the same status instead.
 */

static ngx_int_t
ngx_http_qwen_release(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo, ngx_chain_t *rest)
{
    ngx_int_t               rc;
    ngx_chain_t            *out, *cl;
    ngx_http_qwen_error_t   err;

    fo->holding = 0;
    fo->passing = 1;

    r->error_page = fo->error_page;

    ngx_http_qwen_credential_seal(r, ctx);

    if (fo->own_error) {
        ngx_http_qwen_reset_headers_out(r);
    }

    if (ctx->key && ngx_http_qwen_keys_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fo->own_error) {
        if (fo->held_status == NGX_HTTP_GATEWAY_TIME_OUT) {
            ngx_http_qwen_error_set(&err, NGX_HTTP_GATEWAY_TIME_OUT,
                                    "server_error", "upstream_timeout", NULL,
                                    (u_char *) "The upstream did not answer "
                                    "in time.",
                                    sizeof("The upstream did not answer in "
                                           "time.") - 1);

        } else {
            ngx_http_qwen_error_set(&err, NGX_HTTP_BAD_GATEWAY,
                                    "server_error", "upstream_unavailable",
                                    NULL,
                                    (u_char *) "The upstream could not be "
                                    "reached.",
                                    sizeof("The upstream could not be "
                                           "reached.") - 1);
        }

        out = ngx_http_qwen_error_prepare(r, &err);
        if (out == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_http_qwen_next_header(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_qwen_next_body(r, out);
    }

    if (fo->truncated) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: the upstream's error answer is longer than "
                      "%uz bytes: the client gets its first %uz",
                      (size_t) NGX_HTTP_QWEN_HELD_MAX,
                      (size_t) NGX_HTTP_QWEN_HELD_MAX);

        ngx_http_clear_content_length(r);
    }

    rc = ngx_http_qwen_next_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out = ngx_alloc_chain_link(r->pool);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (fo->held == NULL) {
        fo->held = ngx_calloc_buf(r->pool);
        if (fo->held == NULL) {
            return NGX_ERROR;
        }
    }

    fo->held->memory = (fo->held->last > fo->held->pos);
    fo->held->last_buf = (rest == NULL);
    fo->held->last_in_chain = 1;

    out->buf = fo->held;
    out->next = rest;

    for (cl = rest; cl; cl = cl->next) {
        if (cl->next == NULL) {
            fo->held->last_buf = 0;
        }
    }

    return ngx_http_qwen_next_body(r, out);
}


/*
 * Posted after a decision to move on (and for a wait on the first
 * entry), or the timer of a wait or of the first-byte budget.
 */

static void
ngx_http_qwen_failover_timer(ngx_event_t *ev)
{
    ngx_msec_int_t             left;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_qwen_failover_t  *fo;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ctx = ngx_http_qwen_get_ctx(r);

    if (ctx == NULL || ctx->failover == NULL) {
        return;
    }

    fo = ctx->failover;

    if (ctx->state != NGX_HTTP_QWEN_WAITING) {
        if (fo->first_byte_armed && ev->timedout) {
            fo->first_byte_armed = 0;
            ev->timedout = 0;
            ngx_http_qwen_first_byte_expired(r, fo);
        }

        ngx_http_run_posted_requests(c);
        return;
    }

    ev->timedout = 0;

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    left = (ngx_msec_int_t) (fo->wait_until - ngx_current_msec);

    if (left > 0) {
        /* a wait: the worker serves others; a client that leaves ends it */
        r->read_event_handler = ngx_http_qwen_waiting_reading;
        r->write_event_handler = ngx_http_request_empty_handler;

        ngx_add_timer(ev, (ngx_msec_t) left);
        return;
    }

    ngx_http_qwen_resume(r, ctx, fo);

    ngx_http_run_posted_requests(c);
}


/*
 * No header from the upstream within the first-byte budget: the attempt
 * ends as nginx ends one that timed out (its read timeout), through the
 * upstream module's own handler, so that proxy_next_upstream and the
 * upstream's accounting see a timeout; its 504 comes to the header
 * filter, which reads it as "first_byte".
 */

static void
ngx_http_qwen_first_byte_expired(ngx_http_request_t *r,
    ngx_http_qwen_failover_t *fo)
{
    ngx_connection_t     *pc;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL || u->cleanup == NULL || u->peer.connection == NULL
        || u->header_sent)
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "qwen: no answer from \"%V\" within the first-byte "
                  "budget of %M ms", &fo->chain[fo->current]->name,
                  fo->first_byte);

    fo->fired = 1;

    pc = u->peer.connection;
    pc->read->timedout = 1;
    pc->read->handler(pc->read);
}


/*
 * The next attempt: the request's phases run again from the gateway's
 * handler, in the same location, as they did after the body was read;
 * its state says READY, its context tells the route to go on.
 */

static void
ngx_http_qwen_resume(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_failover_t *fo)
{
    ngx_int_t  index;

    index = ngx_http_qwen_phase_index(r);

    if (index == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (r->upstream && r->upstream->cleanup) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: the upstream is still running at a retry");
    }

    ngx_http_qwen_reset_headers_out(r);

    r->err_status = 0;
    r->done = 0;
    r->request_complete = 0;
    r->header_only = 0;

    ctx->state = NGX_HTTP_QWEN_READY;
    ctx->usage = NULL;
    ctx->first_byte = 0;
    ctx->body_scanned = 0;

    fo->resuming = 1;
    fo->own_error = 0;
    fo->fired = 0;
    fo->passing = 0;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;
    r->phase_handler = index;

    ngx_http_core_run_phases(r);
}


/* while waiting: a client that closes its connection ends the request */

static void
ngx_http_qwen_waiting_reading(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = r->connection;
    rev = c->read;

#if (NGX_HTTP_V2)
    if (r->stream) {
        if (c->error) {
            goto closed;
        }

        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup
        && !rev->pending_eof && rev->available == 0)
    {
        /* nothing to read and no end seen */
        return;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == 0) {
        err = 0;
        goto closed;
    }

    if (n == -1) {
        err = ngx_socket_errno;

        if (err != NGX_EAGAIN) {
            goto closed;
        }
    }

    /* pipelined bytes: they wait for their turn */

    if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    return;

closed:

    c->error = 1;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "qwen: the client closed the connection while the "
                  "request waited for its next attempt");

    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


/* the answer's header as nothing had set it */

static void
ngx_http_qwen_reset_headers_out(ngx_http_request_t *r)
{
    ngx_memzero(&r->headers_out, sizeof(ngx_http_headers_out_t));

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_out.trailers, r->pool, 4,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        /* a later push fails the request */
        return;
    }

    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
}


/*
 * A stream that breaks after its header went to the client: the upstream
 * module has ended the attempt (its cleanup is gone) and sends a flush
 * instead of the last buffer.  An OpenAI-style error event goes out
 * before the connection closes, so that SDKs raise an error instead of
 * returning a short answer.  "in" is what came, "out" what goes on.
 */

ngx_chain_t *
ngx_http_qwen_failover_cut(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t *out)
{
    ngx_buf_t                  *b;
    ngx_uint_t                  flush;
    ngx_chain_t                *cl;
    ngx_http_upstream_t        *u;
    ngx_http_qwen_failover_t   *fo;
    ngx_http_qwen_loc_conf_t   *qlcf;
    ngx_http_qwen_main_conf_t  *qmcf;

    fo = ctx->failover;
    u = r->upstream;

    if (fo == NULL || fo->cut || !ctx->sse || in == NULL || u == NULL
        || u->cleanup != NULL || (ctx->usage && ctx->usage->done_seen))
    {
        return out;
    }

    /*
     * Only the upstream module's flush after an error is a chain without
     * data, with a flush and no last buffer, once the upstream is done:
     * after a normal end, nginx's copy filter may still bring buffered
     * parts of the answer from a temporary file, with data.
     */

    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf || ngx_buf_size(cl->buf)) {
            return out;
        }

        if (cl->buf->flush) {
            flush = 1;
        }
    }

    if (!flush) {
        return out;
    }

    fo->cut = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "qwen: the stream from \"%V\" broke after the client got "
                  "part of it: an error event ends it",
                  ctx->deployment ? &ctx->deployment->name : &ctx->model);

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    fo->outcome = NGX_HTTP_QWEN_OUT_CUT;

    if (fo->enabled && ctx->deployment) {
        ngx_http_qwen_health_attempt(qmcf->health, ctx->deployment,
                                     NGX_HTTP_QWEN_OUT_CUT,
                                     ngx_http_qwen_cooldown_of(qlcf,
                                         ctx->deployment,
                                         NGX_HTTP_QWEN_OUT_CUT, 0),
                                     0);
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return out;
    }

    b->pos = (u_char *) NGX_HTTP_QWEN_CUT_EVENT;
    b->last = b->pos + sizeof(NGX_HTTP_QWEN_CUT_EVENT) - 1;
    b->memory = 1;
    b->flush = 1;

    cl->buf = b;
    cl->next = out;

    return cl;
}


/*
 * The log phase: the attempt whose answer went to the client is counted
 * under its outcome (a stream cut after the header counts as "cut").
 */

void
ngx_http_qwen_failover_log(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    ngx_http_qwen_failover_t   *fo;
    ngx_http_qwen_main_conf_t  *qmcf;

    fo = ctx->failover;

    if (fo == NULL || !fo->passing || fo->counted || ctx->deployment == NULL)
    {
        return;
    }

    fo->counted = 1;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    ngx_http_qwen_health_attempt(qmcf->health, ctx->deployment, fo->outcome,
                                 0, 1);
}


static void
ngx_http_qwen_failover_cleanup(void *data)
{
    ngx_http_qwen_failover_t  *fo = data;

    if (fo->timer.timer_set) {
        ngx_del_timer(&fo->timer);
    }

    if (fo->timer.posted) {
        ngx_delete_posted_event(&fo->timer);
    }
}


/* where the phase engine runs the gateway's handler */

static ngx_int_t
ngx_http_qwen_phase_index(ngx_http_request_t *r)
{
    ngx_uint_t                  i;
    ngx_http_phase_handler_t   *ph;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_int_t   index = NGX_ERROR;
    static void       *engine;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    ph = cmcf->phase_engine.handlers;

    if (engine == ph && index != NGX_ERROR) {
        return index;
    }

    for (i = 0; ph[i].checker; i++) {
        if (ph[i].handler == ngx_http_qwen_precontent_handler) {
            engine = ph;
            index = i;
            return index;
        }
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "qwen: the gateway's handler is not in the phase engine");

    return NGX_ERROR;
}
