
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The shared counters (qwen_metrics_zone): one entry per upstream model,
 * provider and status class, in a slab pool with a red-black tree and an
 * LRU queue, as nginx's limit_req zones keep theirs.  A request commits
 * once, in the log phase, holding the lock only to find its entry and add
 * to it.  The zone outlives reloads of the configuration.
 */


#include "ngx_http_qwen_module.h"


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
    ngx_queue_t                   queue;         /* most recent first */
    ngx_uint_t                    entries;
    size_t                        key_bytes;
    uint64_t                      evicted;
    time_t                        created;
    void                         *health;        /* ngx_http_qwen_health.c */
    void                         *limits;        /* ngx_http_qwen_limits.c */
} ngx_http_qwen_shm_t;


/* an entry, laid over ngx_rbtree_node_t from its "color" on */
typedef struct {
    u_char                        color;
    u_char                        status;        /* the status class */
    u_short                       model_len;
    u_short                       provider_len;
    ngx_queue_t                   queue;
    ngx_http_qwen_counters_t      counters;
    u_char                        key[1];        /* model, then provider */
} ngx_http_qwen_entry_t;


struct ngx_http_qwen_zone_s {
    ngx_http_qwen_shm_t          *sh;
    ngx_slab_pool_t              *shpool;
    ngx_str_t                     name;
    ngx_http_qwen_health_t       *health;        /* moves into the zone */
    ngx_http_qwen_limits_t       *limits;        /* so do the keys' limits */
};


static ngx_int_t ngx_http_qwen_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_qwen_zone_init_parts(ngx_http_qwen_zone_t *zone,
    ngx_log_t *log);
static void ngx_http_qwen_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_qwen_entry_cmp(ngx_http_qwen_entry_t *e,
    ngx_http_qwen_metric_key_t *k);
static ngx_http_qwen_entry_t *ngx_http_qwen_entry_get(
    ngx_http_qwen_zone_t *zone, ngx_http_qwen_metric_key_t *k,
    uint32_t hash, ngx_log_t *log);


static ngx_msec_t  ngx_http_qwen_ttft_bounds[NGX_HTTP_QWEN_TTFT_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000
};


/* qwen_metrics_zone name size; */

char *
ngx_http_qwen_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    ssize_t                size;
    ngx_str_t             *value;
    ngx_shm_zone_t        *shm_zone;
    ngx_http_qwen_zone_t  *zone;

    if (qmcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: it takes a size of "
                           "at least %uzk", &value[1], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_qwen_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &value[1]);
        return NGX_CONF_ERROR;
    }

    zone->name = value[1];

    shm_zone->init = ngx_http_qwen_zone_init;
    shm_zone->data = zone;

    qmcf->zone = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_qwen_zone_t  *ozone = data;

    size_t                 len;
    ngx_http_qwen_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload: keep the counters */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;

        return ngx_http_qwen_zone_init_parts(zone, shm_zone->shm.log);
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;

        return ngx_http_qwen_zone_init_parts(zone, shm_zone->shm.log);
    }

    zone->sh = ngx_slab_alloc(zone->shpool, sizeof(ngx_http_qwen_shm_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_qwen_rbtree_insert);
    ngx_queue_init(&zone->sh->queue);

    zone->sh->entries = 0;
    zone->sh->key_bytes = 0;
    zone->sh->evicted = 0;
    zone->sh->created = ngx_time();
    zone->sh->health = NULL;
    zone->sh->limits = NULL;

    len = sizeof(" in qwen_metrics_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in qwen_metrics_zone \"%V\"%Z",
                &shm_zone->shm.name);

    zone->shpool->log_nomem = 0;

    return ngx_http_qwen_zone_init_parts(zone, shm_zone->shm.log);
}


/* what else lives in the zone: the deployments' health, the keys' limits */

static ngx_int_t
ngx_http_qwen_zone_init_parts(ngx_http_qwen_zone_t *zone, ngx_log_t *log)
{
    if (ngx_http_qwen_health_init_zone(zone->health, zone->shpool,
                                       &zone->sh->health, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_qwen_limits_init_zone(zone->limits, zone->shpool,
                                          &zone->sh->limits, log);
}


void
ngx_http_qwen_zone_set_limits(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_limits_t *limits)
{
    zone->limits = limits;
}


void
ngx_http_qwen_zone_set_health(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_health_t *health)
{
    zone->health = health;
}


static void
ngx_http_qwen_rbtree_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_qwen_entry_t       *e, *et;
    ngx_http_qwen_metric_key_t   k;

    e = (ngx_http_qwen_entry_t *) &node->color;

    k.model.data = e->key;
    k.model.len = e->model_len;
    k.provider.data = e->key + e->model_len;
    k.provider.len = e->provider_len;
    k.status = e->status;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            et = (ngx_http_qwen_entry_t *) &temp->color;
            p = (ngx_http_qwen_entry_cmp(et, &k) > 0) ? &temp->left
                                                      : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* <0, 0, >0 as the entry sorts before, with or after the key */

static ngx_int_t
ngx_http_qwen_entry_cmp(ngx_http_qwen_entry_t *e,
    ngx_http_qwen_metric_key_t *k)
{
    ngx_int_t  rc;

    if (e->status != k->status) {
        return (ngx_int_t) e->status - (ngx_int_t) k->status;
    }

    rc = ngx_memn2cmp(e->key, k->model.data, e->model_len, k->model.len);
    if (rc != 0) {
        return rc;
    }

    return ngx_memn2cmp(e->key + e->model_len, k->provider.data,
                        e->provider_len, k->provider.len);
}


/*
 * The tree's key of an entry: a multiplicative hash (ngx_hash()), with no
 * table to bring into the cache for every request as CRC32 has; entries
 * of equal hashes are told apart by ngx_http_qwen_entry_cmp().  It is the
 * same in every worker and across reloads of one binary, which is all the
 * zone needs.
 */

static uint32_t
ngx_http_qwen_key_hash(ngx_http_qwen_metric_key_t *k)
{
    size_t      i;
    ngx_uint_t  key;

    key = k->status;

    for (i = 0; i < k->model.len; i++) {
        key = ngx_hash(key, k->model.data[i]);
    }

    key = ngx_hash(key, '\0');

    for (i = 0; i < k->provider.len; i++) {
        key = ngx_hash(key, k->provider.data[i]);
    }

    return (uint32_t) ((uint64_t) key ^ ((uint64_t) key >> 32));
}


/*
 * Adds a request's figures; returns 1 when it is the first unpriced request
 * of its entry, so that the caller says so in the log once.
 */

ngx_uint_t
ngx_http_qwen_metrics_commit(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_metric_key_t *k, ngx_http_qwen_counters_t *add,
    ngx_log_t *log)
{
    uint32_t                   hash;
    ngx_uint_t                 i, first_unpriced;
    ngx_http_qwen_entry_t     *e;
    ngx_http_qwen_counters_t  *c;

    hash = ngx_http_qwen_key_hash(k);

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_http_qwen_entry_get(zone, k, hash, log);

    if (e == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "qwen: metrics zone \"%V\" is too small even for one "
                      "entry; model \"%V\" is not counted",
                      &zone->name, &k->model);
        return 0;
    }

    c = &e->counters;

    first_unpriced = (add->unpriced && c->unpriced == 0);

    c->requests += add->requests;
    c->incomplete += add->incomplete;
    c->unpriced += add->unpriced;
    c->input += add->input;
    c->output += add->output;
    c->cached += add->cached;
    c->reasoning += add->reasoning;
    c->cost_nano += add->cost_nano;
    c->cache_hits += add->cache_hits;
    c->cache_tokens += add->cache_tokens;
    c->ttft_count += add->ttft_count;
    c->ttft_sum_msec += add->ttft_sum_msec;

    for (i = 0; i < NGX_HTTP_QWEN_TTFT_BUCKETS; i++) {
        c->ttft_buckets[i] += add->ttft_buckets[i];
    }

    ngx_queue_remove(&e->queue);
    ngx_queue_insert_head(&zone->sh->queue, &e->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return first_unpriced;
}


/* finds or makes the entry, evicting the least recently used if full */

static ngx_http_qwen_entry_t *
ngx_http_qwen_entry_get(ngx_http_qwen_zone_t *zone,
    ngx_http_qwen_metric_key_t *k, uint32_t hash, ngx_log_t *log)
{
    size_t                  size;
    ngx_int_t               rc;
    ngx_queue_t            *q;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_http_qwen_entry_t  *e;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        e = (ngx_http_qwen_entry_t *) &node->color;

        rc = ngx_http_qwen_entry_cmp(e, k);

        if (rc == 0) {
            return e;
        }

        node = (rc > 0) ? node->left : node->right;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_qwen_entry_t, key)
           + k->model.len + k->provider.len;

    node = ngx_slab_alloc_locked(zone->shpool, size);

    while (node == NULL) {

        if (ngx_queue_empty(&zone->sh->queue)) {
            return NULL;
        }

        q = ngx_queue_last(&zone->sh->queue);
        e = ngx_queue_data(q, ngx_http_qwen_entry_t, queue);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "qwen: metrics zone \"%V\" is full: dropped the "
                      "counters of model \"%*s\" (%uL requests) to count "
                      "model \"%V\"; make the zone larger",
                      &zone->name, (size_t) e->model_len, e->key,
                      e->counters.requests, &k->model);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&zone->sh->rbtree,
                          (ngx_rbtree_node_t *)
                          ((u_char *) e - offsetof(ngx_rbtree_node_t, color)));
        zone->sh->entries--;
        zone->sh->key_bytes -= e->model_len + e->provider_len;
        zone->sh->evicted++;

        ngx_slab_free_locked(zone->shpool,
                             (u_char *) e - offsetof(ngx_rbtree_node_t, color));

        node = ngx_slab_alloc_locked(zone->shpool, size);
    }

    node->key = hash;

    e = (ngx_http_qwen_entry_t *) &node->color;

    e->status = k->status;
    e->model_len = (u_short) k->model.len;
    e->provider_len = (u_short) k->provider.len;
    ngx_memzero(&e->counters, sizeof(ngx_http_qwen_counters_t));
    ngx_memcpy(e->key, k->model.data, k->model.len);
    ngx_memcpy(e->key + k->model.len, k->provider.data, k->provider.len);

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->queue, &e->queue);

    zone->sh->entries++;
    zone->sh->key_bytes += k->model.len + k->provider.len;

    return e;
}


/*
 * Copies every entry out of the zone into r->pool, so that the lock is
 * held only for the copy, never while formatting.
 */

ngx_int_t
ngx_http_qwen_metrics_snapshot(ngx_http_request_t *r,
    ngx_http_qwen_zone_t *zone, ngx_http_qwen_snapshot_t *snap)
{
    size_t                       n, bytes;
    u_char                      *p;
    ngx_queue_t                 *q;
    ngx_http_qwen_entry_t       *e;
    ngx_http_qwen_metric_row_t  *row;

    /* room for what the zone holds now, and some that may come meanwhile */

    ngx_shmtx_lock(&zone->shpool->mutex);
    n = zone->sh->entries + 16;
    bytes = zone->sh->key_bytes + 16 * 512;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    snap->rows = ngx_palloc(r->pool, n * sizeof(ngx_http_qwen_metric_row_t));
    p = ngx_pnalloc(r->pool, bytes);

    if (snap->rows == NULL || p == NULL) {
        return NGX_ERROR;
    }

    snap->nrows = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    snap->created = zone->sh->created;
    snap->evicted = zone->sh->evicted;

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue) && snap->nrows < n;
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_qwen_entry_t, queue);

        if ((size_t) (e->model_len + e->provider_len) > bytes) {
            break;
        }

        row = &snap->rows[snap->nrows++];

        row->key.status = e->status;
        row->key.model.data = p;
        row->key.model.len = e->model_len;
        p = ngx_cpymem(p, e->key, e->model_len);
        row->key.provider.data = p;
        row->key.provider.len = e->provider_len;
        p = ngx_cpymem(p, e->key + e->model_len, e->provider_len);
        bytes -= e->model_len + e->provider_len;

        row->counters = e->counters;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* the time-to-first-byte histogram bucket of a duration */

void
ngx_http_qwen_ttft_observe(ngx_http_qwen_counters_t *c, ngx_msec_int_t ms)
{
    ngx_uint_t  i;

    if (ms < 0) {
        ms = 0;
    }

    c->ttft_count = 1;
    c->ttft_sum_msec = ms;

    for (i = 0; i < NGX_HTTP_QWEN_TTFT_BUCKETS; i++) {
        if ((ngx_msec_t) ms <= ngx_http_qwen_ttft_bounds[i]) {
            c->ttft_buckets[i] = 1;
            return;
        }
    }
}


ngx_msec_t
ngx_http_qwen_ttft_bound(ngx_uint_t i)
{
    return ngx_http_qwen_ttft_bounds[i];
}
