
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The health of deployments, shared by every worker: when a deployment
 * may be tried again (a cooldown after it failed), why it went out, how
 * its attempts ended, and the moves from one deployment to another.
 *
 * The set of deployments is known when the configuration is loaded, so
 * each has a slot at a fixed index: asking whether a deployment is up is
 * one read of an atomic word, without a lock.  The table lives in the
 * qwen_metrics_zone when there is one (so that all workers see the same
 * cooldowns, and a reload keeps them, matched by name), else in each
 * worker's memory.  Only the rare moves (failovers) take the zone's lock,
 * to find their counter.
 */


#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_HEALTH_NAME   128
#define NGX_HTTP_QWEN_EDGE_NONE     0xffff


typedef struct {
    ngx_atomic_t                  until;         /* ngx_current_msec; 0: up */
    ngx_atomic_t                  reason;        /* why it went out */
    ngx_atomic_t                  attempts[NGX_HTTP_QWEN_OUTCOMES];
    size_t                        name_len;
    u_char                        name[NGX_HTTP_QWEN_HEALTH_NAME];
} ngx_http_qwen_health_slot_t;


/* a move: from -> to (NGX_HTTP_QWEN_EDGE_NONE: the chain ended), why */
typedef struct {
    uint16_t                      from;
    uint16_t                      to;
    uint16_t                      reason;
    uint16_t                      used;
    ngx_atomic_t                  count;
} ngx_http_qwen_health_edge_t;


typedef struct {
    ngx_uint_t                    nslots;
    ngx_uint_t                    nedges;        /* capacity */
    ngx_http_qwen_health_edge_t  *edges;         /* after the slots */
    ngx_http_qwen_health_slot_t   slots[1];
} ngx_http_qwen_health_table_t;


struct ngx_http_qwen_health_s {
    ngx_http_qwen_health_table_t *table;
    ngx_slab_pool_t              *shpool;        /* NULL: worker memory */
    ngx_array_t                  *deployments;   /* of deployment * */
    ngx_uint_t                    overflow_logged;
};


static size_t ngx_http_qwen_health_size(ngx_uint_t nslots, ngx_uint_t nedges);
static void ngx_http_qwen_health_fill(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_t *health, ngx_uint_t nedges);
static void ngx_http_qwen_health_adopt(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_table_t *old);
static ngx_uint_t ngx_http_qwen_health_same(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_t *health);
static u_char *ngx_http_qwen_health_label(u_char *p, u_char *name,
    size_t len);


/* after the deployments are known: a table in worker memory for now */

ngx_int_t
ngx_http_qwen_health_init(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_uint_t               n, nedges;
    ngx_http_qwen_health_t  *health;

    health = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_health_t));
    if (health == NULL) {
        return NGX_ERROR;
    }

    health->deployments = &qmcf->deployments;

    n = qmcf->deployments.nelts;

    if (n >= NGX_HTTP_QWEN_EDGE_NONE) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "the catalogue has more than %ui deployments",
                      (ngx_uint_t) NGX_HTTP_QWEN_EDGE_NONE - 1);
        return NGX_ERROR;
    }

    nedges = 64 + 8 * n;

    health->table = ngx_pcalloc(cf->pool,
                                ngx_http_qwen_health_size(n, nedges));
    if (health->table == NULL) {
        return NGX_ERROR;
    }

    ngx_http_qwen_health_fill(health->table, health, nedges);

    qmcf->health = health;

    return NGX_OK;
}


/*
 * Called when the zone is set up (by the master, before any worker
 * starts): the table moves into the zone.  "shared" is the zone's slot
 * for it; after a reload it holds the table of the previous
 * configuration, which is kept when the deployments are the same and
 * else copied from by name.  The old table is not freed: workers of the
 * previous configuration may still be using it.
 */

ngx_int_t
ngx_http_qwen_health_init_zone(ngx_http_qwen_health_t *health,
    ngx_slab_pool_t *shpool, void **shared, ngx_log_t *log)
{
    size_t                         size;
    ngx_http_qwen_health_table_t  *t, *old;

    if (health == NULL) {
        return NGX_OK;
    }

    old = *shared;

    if (old && ngx_http_qwen_health_same(old, health)) {
        health->table = old;
        health->shpool = shpool;
        return NGX_OK;
    }

    size = ngx_http_qwen_health_size(health->table->nslots,
                                     health->table->nedges);

    t = ngx_slab_calloc(shpool, size);

    if (t == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "qwen: no room in the zone for the health of %ui "
                      "deployments: each worker keeps its own",
                      health->table->nslots);
        return NGX_OK;
    }

    ngx_http_qwen_health_fill(t, health, health->table->nedges);

    if (old) {
        ngx_http_qwen_health_adopt(t, old);
    }

    *shared = t;
    health->table = t;
    health->shpool = shpool;

    return NGX_OK;
}


static size_t
ngx_http_qwen_health_size(ngx_uint_t nslots, ngx_uint_t nedges)
{
    return offsetof(ngx_http_qwen_health_table_t, slots)
           + (nslots ? nslots : 1) * sizeof(ngx_http_qwen_health_slot_t)
           + nedges * sizeof(ngx_http_qwen_health_edge_t);
}


static void
ngx_http_qwen_health_fill(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_t *health, ngx_uint_t nedges)
{
    ngx_uint_t                    i;
    ngx_http_qwen_deployment_t  **d;

    d = health->deployments->elts;

    t->nslots = health->deployments->nelts;
    t->nedges = nedges;
    t->edges = (ngx_http_qwen_health_edge_t *)
                   ((u_char *) t->slots
                    + (t->nslots ? t->nslots : 1)
                      * sizeof(ngx_http_qwen_health_slot_t));

    for (i = 0; i < t->nslots; i++) {
        t->slots[i].name_len = ngx_min(d[i]->name.len,
                                       NGX_HTTP_QWEN_HEALTH_NAME);
        ngx_memcpy(t->slots[i].name, d[i]->name.data, t->slots[i].name_len);
    }
}


static ngx_uint_t
ngx_http_qwen_health_same(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_t *health)
{
    ngx_uint_t                    i;
    ngx_http_qwen_deployment_t  **d;

    d = health->deployments->elts;

    if (t->nslots != health->deployments->nelts
        || t->nedges != health->table->nedges)
    {
        return 0;
    }

    for (i = 0; i < t->nslots; i++) {
        if (t->slots[i].name_len != ngx_min(d[i]->name.len,
                                            NGX_HTTP_QWEN_HEALTH_NAME)
            || ngx_memcmp(t->slots[i].name, d[i]->name.data,
                          t->slots[i].name_len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/* a reload changed the deployments: what is known of the same names */

static void
ngx_http_qwen_health_adopt(ngx_http_qwen_health_table_t *t,
    ngx_http_qwen_health_table_t *old)
{
    ngx_uint_t                    i, j, k, e, map[1024];
    ngx_http_qwen_health_edge_t  *oe, *ne;

    for (j = 0; j < old->nslots && j < 1024; j++) {
        map[j] = NGX_HTTP_QWEN_EDGE_NONE;

        for (i = 0; i < t->nslots; i++) {
            if (t->slots[i].name_len == old->slots[j].name_len
                && ngx_memcmp(t->slots[i].name, old->slots[j].name,
                              t->slots[i].name_len) == 0)
            {
                t->slots[i].until = old->slots[j].until;
                t->slots[i].reason = old->slots[j].reason;

                for (k = 0; k < NGX_HTTP_QWEN_OUTCOMES; k++) {
                    t->slots[i].attempts[k] = old->slots[j].attempts[k];
                }

                map[j] = i;
                break;
            }
        }
    }

    e = 0;

    for (k = 0; k < old->nedges && e < t->nedges; k++) {
        oe = &old->edges[k];

        if (!oe->used || oe->from >= old->nslots || oe->from >= 1024
            || map[oe->from] == NGX_HTTP_QWEN_EDGE_NONE)
        {
            continue;
        }

        if (oe->to != NGX_HTTP_QWEN_EDGE_NONE
            && (oe->to >= old->nslots || oe->to >= 1024
                || map[oe->to] == NGX_HTTP_QWEN_EDGE_NONE))
        {
            continue;
        }

        ne = &t->edges[e++];
        ne->from = map[oe->from];
        ne->to = (oe->to == NGX_HTTP_QWEN_EDGE_NONE)
                 ? NGX_HTTP_QWEN_EDGE_NONE : map[oe->to];
        ne->reason = oe->reason;
        ne->count = oe->count;
        ne->used = 1;
    }
}


/*
 * 0 when the deployment may be tried, else the milliseconds it is out
 * and why (read without a lock: a reason of a moment before is fine)
 */

ngx_msec_t
ngx_http_qwen_health_down(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *d, ngx_uint_t *reason)
{
    ngx_msec_t                    until;
    ngx_msec_int_t                left;
    ngx_http_qwen_health_slot_t  *s;

    if (health == NULL || d->health >= health->table->nslots) {
        return 0;
    }

    s = &health->table->slots[d->health];

    until = s->until;
    *reason = s->reason;

    left = (ngx_msec_int_t) (until - ngx_current_msec);

    return (until && left > 0) ? (ngx_msec_t) left : 0;
}


/*
 * For the readiness probe: how many deployments there are and how many are
 * not cooling down.  Without a health table (no deployment was named)
 * every deployment counts as up.
 */

void
ngx_http_qwen_health_count(ngx_http_qwen_health_t *health,
    ngx_array_t *deployments, ngx_uint_t *total, ngx_uint_t *up)
{
    ngx_uint_t                    i, reason;
    ngx_http_qwen_deployment_t  **d;

    d = deployments->elts;
    *total = deployments->nelts;
    *up = 0;

    for (i = 0; i < deployments->nelts; i++) {
        if (ngx_http_qwen_health_down(health, d[i], &reason) == 0) {
            (*up)++;
        }
    }
}


/*
 * An attempt ended (counted under its outcome when "count"); a cooldown
 * (0: none) takes the deployment out; a success puts it back.
 */

void
ngx_http_qwen_health_attempt(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *d, ngx_uint_t outcome, ngx_msec_t cooldown,
    ngx_uint_t count)
{
    ngx_msec_t                    until;
    ngx_http_qwen_health_slot_t  *s;

    if (health == NULL || d == NULL || d->health >= health->table->nslots
        || outcome >= NGX_HTTP_QWEN_OUTCOMES)
    {
        return;
    }

    s = &health->table->slots[d->health];

    if (count) {
        (void) ngx_atomic_fetch_add(&s->attempts[outcome], 1);
    }

    if (cooldown) {
        /* 0 means "up": a cooldown never ends exactly there */
        until = ngx_current_msec + cooldown;
        s->until = until ? until : 1;
        s->reason = outcome;

    } else if (outcome == NGX_HTTP_QWEN_OUT_OK) {
        s->until = 0;
    }
}


/* counts a move; "to" NULL: the chain ended there */

void
ngx_http_qwen_health_move(ngx_http_qwen_health_t *health,
    ngx_http_qwen_deployment_t *from, ngx_http_qwen_deployment_t *to,
    ngx_uint_t outcome, ngx_log_t *log)
{
    ngx_uint_t                     i, h, tn;
    ngx_http_qwen_health_edge_t   *e;
    ngx_http_qwen_health_table_t  *t;

    if (health == NULL || from == NULL) {
        return;
    }

    t = health->table;
    tn = to ? to->health : NGX_HTTP_QWEN_EDGE_NONE;

    if (from->health >= t->nslots || t->nedges == 0) {
        return;
    }

    if (health->shpool) {
        ngx_shmtx_lock(&health->shpool->mutex);
    }

    h = (from->health * 31 + tn * 7 + outcome) % t->nedges;

    for (i = 0; i < t->nedges; i++) {
        e = &t->edges[(h + i) % t->nedges];

        if (!e->used) {
            e->used = 1;
            e->from = from->health;
            e->to = tn;
            e->reason = outcome;
            break;
        }

        if (e->from == from->health && e->to == tn && e->reason == outcome) {
            break;
        }
    }

    if (i < t->nedges) {
        e->count++;
    }

    if (health->shpool) {
        ngx_shmtx_unlock(&health->shpool->mutex);
    }

    if (i == t->nedges && !health->overflow_logged) {
        health->overflow_logged = 1;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "qwen: the table of failover counters is full; "
                      "new moves are not counted");
    }
}


ngx_int_t
ngx_http_qwen_health_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_health_t *health, ngx_chain_t ***ll)
{
    size_t                         len;
    u_char                        *p;
    ngx_buf_t                     *b;
    ngx_uint_t                     i, k;
    ngx_msec_t                     left;
    ngx_chain_t                   *cl;
    ngx_http_qwen_health_edge_t   *e;
    ngx_http_qwen_health_slot_t   *s;
    ngx_http_qwen_health_table_t  *t;

    if (health == NULL || health->table->nslots == 0) {
        return NGX_OK;
    }

    t = health->table;

    len = 1024 + t->nslots * (NGX_HTTP_QWEN_OUTCOMES + 2)
                 * (96 + 2 * NGX_HTTP_QWEN_HEALTH_NAME)
          + t->nedges * (128 + 4 * NGX_HTTP_QWEN_HEALTH_NAME);

    b = ngx_create_temp_buf(r->pool, len);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    p = b->last;

    p = ngx_sprintf(p, "# HELP qwen_attempts_total Upstream attempts by "
                       "deployment and how they ended.\n"
                       "# TYPE qwen_attempts_total counter\n");

    for (i = 0; i < t->nslots; i++) {
        s = &t->slots[i];

        for (k = 0; k < NGX_HTTP_QWEN_OUTCOMES; k++) {
            if (s->attempts[k] == 0) {
                continue;
            }

            p = ngx_sprintf(p, "qwen_attempts_total{deployment=\"");
            p = ngx_http_qwen_health_label(p, s->name, s->name_len);
            p = ngx_sprintf(p, "\",outcome=\"%s\"} %uA\n",
                            ngx_http_qwen_outcome_name(k), s->attempts[k]);
        }
    }

    p = ngx_sprintf(p, "# HELP qwen_failovers_total Moves from one "
                       "deployment to the next, and why.\n"
                       "# TYPE qwen_failovers_total counter\n");

    for (i = 0; i < t->nedges; i++) {
        e = &t->edges[i];

        if (!e->used || e->from >= t->nslots) {
            continue;
        }

        p = ngx_sprintf(p, "qwen_failovers_total{from=\"");
        p = ngx_http_qwen_health_label(p, t->slots[e->from].name,
                                       t->slots[e->from].name_len);
        p = ngx_sprintf(p, "\",to=\"");

        if (e->to < t->nslots) {
            p = ngx_http_qwen_health_label(p, t->slots[e->to].name,
                                           t->slots[e->to].name_len);
        } else {
            p = ngx_sprintf(p, "none");
        }

        p = ngx_sprintf(p, "\",reason=\"%s\"} %uA\n",
                        ngx_http_qwen_outcome_name(e->reason), e->count);
    }

    p = ngx_sprintf(p, "# HELP qwen_deployment_up 1 when the deployment "
                       "may be tried, 0 while it cools down.\n"
                       "# TYPE qwen_deployment_up gauge\n");

    for (i = 0; i < t->nslots; i++) {
        s = &t->slots[i];
        left = s->until ? (ngx_msec_int_t) (s->until - ngx_current_msec) : 0;

        p = ngx_sprintf(p, "qwen_deployment_up{deployment=\"");
        p = ngx_http_qwen_health_label(p, s->name, s->name_len);
        p = ngx_sprintf(p, "\"} %d\n", (ngx_msec_int_t) left > 0 ? 0 : 1);
    }

    p = ngx_sprintf(p, "# HELP qwen_deployment_cooldown_seconds Time "
                       "left before the deployment is tried again.\n"
                       "# TYPE qwen_deployment_cooldown_seconds gauge\n");

    for (i = 0; i < t->nslots; i++) {
        s = &t->slots[i];
        left = s->until ? (ngx_msec_int_t) (s->until - ngx_current_msec) : 0;

        if ((ngx_msec_int_t) left < 0) {
            left = 0;
        }

        p = ngx_sprintf(p, "qwen_deployment_cooldown_seconds{deployment=\"");
        p = ngx_http_qwen_health_label(p, s->name, s->name_len);
        p = ngx_sprintf(p, "\"} %M.%03M\n", left / 1000, left % 1000);
    }

    b->last = p;

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* ,"deployments":[{"name":..,"up":..,"cooldown_ms":..,"reason":..,...}] */

ngx_int_t
ngx_http_qwen_health_json(ngx_http_request_t *r,
    ngx_http_qwen_health_t *health, ngx_chain_t ***ll)
{
    size_t                         len;
    u_char                        *p;
    ngx_buf_t                     *b;
    ngx_uint_t                     i, k, first;
    ngx_msec_int_t                 left;
    ngx_chain_t                   *cl;
    ngx_http_qwen_health_slot_t   *s;
    ngx_http_qwen_health_table_t  *t;

    t = health ? health->table : NULL;

    len = 64 + (t ? t->nslots * (256 + 6 * NGX_HTTP_QWEN_HEALTH_NAME
                                 + NGX_HTTP_QWEN_OUTCOMES * 48)
                  : 0);

    b = ngx_create_temp_buf(r->pool, len);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(b->last, ",\"deployments\":[");

    for (i = 0; t && i < t->nslots; i++) {
        s = &t->slots[i];
        left = s->until ? (ngx_msec_int_t) (s->until - ngx_current_msec) : 0;

        if (left < 0) {
            left = 0;
        }

        p = ngx_sprintf(p, "%s{\"name\":\"", i ? "," : "");
        p = ngx_http_qwen_health_label(p, s->name, s->name_len);
        p = ngx_sprintf(p, "\",\"up\":%s,\"cooldown_ms\":%M,\"reason\":",
                        left ? "false" : "true", (ngx_msec_t) left);

        if (s->until) {
            p = ngx_sprintf(p, "\"%s\"",
                            ngx_http_qwen_outcome_name(s->reason));
        } else {
            p = ngx_sprintf(p, "null");
        }

        p = ngx_sprintf(p, ",\"attempts\":{");
        first = 1;

        for (k = 0; k < NGX_HTTP_QWEN_OUTCOMES; k++) {
            if (s->attempts[k]) {
                p = ngx_sprintf(p, "%s\"%s\":%uA", first ? "" : ",",
                                ngx_http_qwen_outcome_name(k),
                                s->attempts[k]);
                first = 0;
            }
        }

        p = ngx_sprintf(p, "}}");
    }

    p = ngx_sprintf(p, "]");

    b->last = p;

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/*
 * A deployment's name is the region's and the model id's, both from the
 * configuration; still escaped for a Prometheus label or a JSON string
 * (both escape '\' and '"' the same way), control characters dropped.
 */

static u_char *
ngx_http_qwen_health_label(u_char *p, u_char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (name[i] == '\\' || name[i] == '"') {
            *p++ = '\\';

        } else if (name[i] < 0x20 || name[i] == 0x7f) {
            continue;
        }

        *p++ = name[i];
    }

    return p;
}
