
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * How much a client key may use (docs/keys.md): requests and tokens per
 * minute, concurrent requests and spend per period, for the key, its
 * team and the model (system-wide), counted in the qwen_metrics_zone so
 * that every worker sees the same numbers.
 *
 * Every key, team and model of the keys file has a slot at a fixed index:
 * the table is sized when the configuration is loaded and never evicts,
 * so a full zone can never reset a budget (a reload whose table does not
 * fit is refused instead).  A request takes the zone's lock twice: once
 * to be admitted (all its subjects at once: each must have room), once in
 * the log phase to settle (real tokens for the reserved ones, the cost).
 *
 * Windows: one-minute windows, the previous one weighted by how much of
 * it still overlaps the last 60 seconds (docs/keys.md gives the bound).
 *
 * Spend and the counters survive a reload (the table is kept, or copied
 * by name) and a restart (a state file, written atomically by worker 0
 * every few seconds and when it exits, read when the zone is created).
 */


#include "ngx_http_qwen_module.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_QWEN_SLOT_NAME     72
#define NGX_HTTP_QWEN_SAVE_EVERY    5000


typedef struct {
    uint64_t                      minute;        /* of the current window */
    uint64_t                      req_cur;
    uint64_t                      req_prev;
    uint64_t                      tok_cur;
    uint64_t                      tok_prev;
    uint64_t                      active;
    time_t                        period_start;
    uint64_t                      spent_nano;
    time_t                        soft_warned;   /* period warned for */
    uint64_t                      requests;
    uint64_t                      input;
    uint64_t                      output;
    uint64_t                      cost_nano;
    uint64_t                      refused[NGX_HTTP_QWEN_REFUSED_REASONS];
    size_t                        name_len;
    u_char                        name[NGX_HTTP_QWEN_SLOT_NAME];
} ngx_http_qwen_limit_slot_t;


typedef struct {
    ngx_uint_t                    nslots;
    ngx_atomic_t                  dirty;         /* changed since saved */
    uint64_t                      unauthorized;  /* no key, a bad key */
    ngx_http_qwen_limit_slot_t    slots[1];
} ngx_http_qwen_limit_table_t;


struct ngx_http_qwen_limits_s {
    ngx_http_qwen_limit_table_t  *table;
    ngx_slab_pool_t              *shpool;        /* NULL: not yet shared */
    ngx_http_qwen_subject_t     **subjects;      /* by slot */
    ngx_uint_t                    nsubjects;
    ngx_str_t                     state_file;
    ngx_event_t                   save;
    void                        **shared;        /* the zone's current */
};


static const char  *ngx_http_qwen_refused_names[] = {
    "rpm", "tpm", "concurrency", "budget", "model"
};

static const char  *ngx_http_qwen_subject_prefix = "ktm";


static size_t ngx_http_qwen_limits_size(ngx_uint_t n);
static void ngx_http_qwen_limits_fill(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_limit_table_t *t);
static ngx_http_qwen_limit_slot_t *ngx_http_qwen_limits_by_name(
    ngx_http_qwen_limit_table_t *t, u_char *name, size_t len);
static void ngx_http_qwen_limits_roll(ngx_http_qwen_limit_slot_t *s,
    uint64_t minute);
static time_t ngx_http_qwen_period_start(ngx_http_qwen_subject_t *subj,
    ngx_http_qwen_limit_slot_t *s, time_t now, time_t *next);
static void ngx_http_qwen_limits_restore(ngx_http_qwen_limits_t *limits,
    ngx_log_t *log);
static ngx_int_t ngx_http_qwen_limits_save(ngx_http_qwen_limits_t *limits,
    ngx_log_t *log);
static void ngx_http_qwen_limits_save_handler(ngx_event_t *ev);
static u_char *ngx_http_qwen_limits_label(u_char *p, ngx_str_t *s);
static u_char *ngx_http_qwen_limits_labels(u_char *p,
    ngx_http_qwen_subject_t *subj);
static uint64_t ngx_http_qwen_limits_spent(ngx_http_qwen_subject_t *subj,
    ngx_http_qwen_limit_slot_t *s);


ngx_int_t
ngx_http_qwen_limits_init(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_uint_t                i, n;
    ngx_http_qwen_key_t      *k;
    ngx_http_qwen_keys_t     *keys;
    ngx_http_qwen_limits_t   *limits;
    ngx_http_qwen_subject_t  *s;

    keys = qmcf->keys;

    if (keys == NULL) {
        return NGX_OK;
    }

    if (qmcf->zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"qwen_keys_file\" needs a \"qwen_metrics_zone\": "
                      "the keys' limits and budgets are counted there");
        return NGX_ERROR;
    }

    limits = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_limits_t));
    if (limits == NULL) {
        return NGX_ERROR;
    }

    n = keys->keys.nelts + keys->teams.nelts + keys->models.nelts;

    limits->subjects = ngx_palloc(cf->pool,
                                  (n ? n : 1) * sizeof(void *));
    if (limits->subjects == NULL) {
        return NGX_ERROR;
    }

    k = keys->keys.elts;

    for (i = 0; i < keys->keys.nelts; i++) {
        k[i].subject.slot = limits->nsubjects;
        limits->subjects[limits->nsubjects++] = &k[i].subject;
    }

    s = keys->teams.elts;

    for (i = 0; i < keys->teams.nelts; i++) {
        s[i].slot = limits->nsubjects;
        limits->subjects[limits->nsubjects++] = &s[i];
    }

    s = keys->models.elts;

    for (i = 0; i < keys->models.nelts; i++) {
        s[i].slot = limits->nsubjects;
        limits->subjects[limits->nsubjects++] = &s[i];
    }

    /* a table in configuration memory until the zone takes it */

    limits->table = ngx_pcalloc(cf->pool, ngx_http_qwen_limits_size(n));
    if (limits->table == NULL) {
        return NGX_ERROR;
    }

    ngx_http_qwen_limits_fill(limits, limits->table);

    limits->state_file = qmcf->state_file;

    qmcf->limits = limits;
    ngx_http_qwen_zone_set_limits(qmcf->zone, limits);

    return NGX_OK;
}


static size_t
ngx_http_qwen_limits_size(ngx_uint_t n)
{
    return offsetof(ngx_http_qwen_limit_table_t, slots)
           + (n ? n : 1) * sizeof(ngx_http_qwen_limit_slot_t);
}


/* names: "k:" key alias, "t:" team, "m:" model */

static void
ngx_http_qwen_limits_fill(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_limit_table_t *t)
{
    ngx_uint_t                   i;
    ngx_http_qwen_subject_t     *s;
    ngx_http_qwen_limit_slot_t  *slot;

    t->nslots = limits->nsubjects;

    for (i = 0; i < limits->nsubjects; i++) {
        s = limits->subjects[i];
        slot = &t->slots[i];

        slot->name[0] = ngx_http_qwen_subject_prefix[s->kind];
        slot->name[1] = ':';
        slot->name_len = 2 + ngx_min(s->id.len, NGX_HTTP_QWEN_SLOT_NAME - 2);
        ngx_memcpy(slot->name + 2, s->id.data, slot->name_len - 2);
    }
}


static ngx_http_qwen_limit_slot_t *
ngx_http_qwen_limits_by_name(ngx_http_qwen_limit_table_t *t, u_char *name,
    size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < t->nslots; i++) {
        if (t->slots[i].name_len == len
            && ngx_memcmp(t->slots[i].name, name, len) == 0)
        {
            return &t->slots[i];
        }
    }

    return NULL;
}


/*
 * The zone is set up (by the master): the table moves into it.  After a
 * reload, "shared" holds the previous table: it is kept when its names are
 * the same, else a new one takes over what is known by name.  A table that
 * does not fit fails the start or the reload: a budget is never dropped.
 */

ngx_int_t
ngx_http_qwen_limits_init_zone(ngx_http_qwen_limits_t *limits,
    ngx_slab_pool_t *shpool, void **shared, ngx_log_t *log)
{
    ngx_uint_t                    i, same;
    ngx_http_qwen_limit_slot_t   *o;
    ngx_http_qwen_limit_table_t  *t, *old;

    if (limits == NULL) {
        return NGX_OK;
    }

    old = *shared;

    if (old && old->nslots == limits->table->nslots) {
        same = 1;

        for (i = 0; i < old->nslots; i++) {
            if (old->slots[i].name_len != limits->table->slots[i].name_len
                || ngx_memcmp(old->slots[i].name,
                              limits->table->slots[i].name,
                              old->slots[i].name_len) != 0)
            {
                same = 0;
                break;
            }
        }

        if (same) {
            limits->table = old;
            limits->shpool = shpool;
            limits->shared = shared;
            return NGX_OK;
        }
    }

    t = ngx_slab_calloc(shpool, ngx_http_qwen_limits_size(limits->nsubjects));

    if (t == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "qwen: no room in the qwen_metrics_zone for the "
                      "counters of %ui keys, teams and models (%uz bytes): "
                      "make the zone larger; nothing is evicted to make room",
                      limits->nsubjects,
                      ngx_http_qwen_limits_size(limits->nsubjects));
        return NGX_ERROR;
    }

    ngx_http_qwen_limits_fill(limits, t);

    if (old) {
        t->unauthorized = old->unauthorized;

        for (i = 0; i < t->nslots; i++) {
            o = ngx_http_qwen_limits_by_name(old, t->slots[i].name,
                                             t->slots[i].name_len);
            if (o) {
                ngx_memcpy(&t->slots[i], o,
                           offsetof(ngx_http_qwen_limit_slot_t, name_len));

                /*
                 * requests in flight settle into the old table, which
                 * their workers keep: their concurrency is not carried
                 */
                t->slots[i].active = 0;
            }
        }

        /* the old table stays: the previous workers may still count */
    }

    *shared = t;
    t->dirty = 1;
    limits->table = t;
    limits->shpool = shpool;
    limits->shared = shared;

    if (old == NULL) {
        ngx_http_qwen_limits_restore(limits, log);
    }

    return NGX_OK;
}


static void
ngx_http_qwen_limits_roll(ngx_http_qwen_limit_slot_t *s, uint64_t minute)
{
    if (s->minute == minute) {
        return;
    }

    if (s->minute + 1 == minute) {
        s->req_prev = s->req_cur;
        s->tok_prev = s->tok_cur;

    } else {
        s->req_prev = 0;
        s->tok_prev = 0;
    }

    s->req_cur = 0;
    s->tok_cur = 0;
    s->minute = minute;
}


/* the start of the budget's current period, and of the next one */

static time_t
ngx_http_qwen_period_start(ngx_http_qwen_subject_t *subj,
    ngx_http_qwen_limit_slot_t *s, time_t now, time_t *next)
{
    time_t     start, days;
    ngx_tm_t   tm;
    ngx_int_t  y, m;

    switch (subj->period) {

    case NGX_HTTP_QWEN_PERIOD_DAY:
        start = now - now % 86400;
        *next = start + 86400;
        return start;

    case NGX_HTTP_QWEN_PERIOD_WEEK:
        /* 1970-01-01 was a Thursday: weeks start on Mondays */
        days = now / 86400;
        start = (days - (days + 3) % 7) * 86400;
        *next = start + 7 * 86400;
        return start;

    case NGX_HTTP_QWEN_PERIOD_MONTH:
        ngx_gmtime(now, &tm);
        y = tm.ngx_tm_year;
        m = tm.ngx_tm_mon;            /* 1..12 */
        start = now - now % 86400 - (time_t) (tm.ngx_tm_mday - 1) * 86400;

        /* the next month's first day */
        days = (m == 2) ? ((y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
                           ? 29 : 28)
               : (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31;
        *next = start + days * 86400;
        return start;

    default: /* NGX_HTTP_QWEN_PERIOD_DAYS: windows from the first spend */
        days = (time_t) subj->period_days * 86400;

        if (s->period_start == 0 || now < s->period_start) {
            start = now;

        } else {
            start = s->period_start
                    + (now - s->period_start) / days * days;
        }

        *next = start + days;
        return start;
    }
}


/*
 * Admission: under one lock, every subject (key, team, model) must have
 * room for one more request, its reserved tokens, one more concurrent
 * request, and budget left; then all of them take it.
 */

ngx_int_t
ngx_http_qwen_limits_admit(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_subject_t **subjects, ngx_uint_t n, uint64_t reserve,
    ngx_http_qwen_error_t *err)
{
    u_char                      *msg;
    time_t                       now, start, next, retry;
    uint64_t                     minute, sec, est_req, est_tok;
    ngx_uint_t                   i, reason, refused;
    ngx_http_qwen_limits_t      *limits;
    ngx_http_qwen_subject_t     *subj;
    ngx_http_qwen_main_conf_t   *qmcf;
    ngx_http_qwen_limit_slot_t  *s;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    limits = qmcf->limits;

    now = ngx_time();
    minute = (uint64_t) now / 60;
    sec = (uint64_t) now % 60;

    refused = NGX_HTTP_QWEN_NONE_REFUSED;
    reason = 0;
    retry = 0;
    subj = NULL;
    est_req = 0;
    est_tok = 0;

    ngx_shmtx_lock(&limits->shpool->mutex);

    for (i = 0; i < n; i++) {
        subj = subjects[i];
        s = &limits->table->slots[subj->slot];

        ngx_http_qwen_limits_roll(s, minute);

        est_req = s->req_prev * (60 - sec) / 60 + s->req_cur;
        est_tok = s->tok_prev * (60 - sec) / 60 + s->tok_cur;

        if (subj->rpm && est_req + 1 > subj->rpm) {
            reason = NGX_HTTP_QWEN_REFUSED_RPM;
            retry = 60 - sec;

        } else if (subj->tpm && est_tok + reserve > subj->tpm) {
            reason = NGX_HTTP_QWEN_REFUSED_TPM;
            retry = 60 - sec;

        } else if (subj->concurrency && s->active + 1 > subj->concurrency) {
            reason = NGX_HTTP_QWEN_REFUSED_CONCURRENCY;
            retry = 1;

        } else if (subj->budget_nano) {
            start = ngx_http_qwen_period_start(subj, s, now, &next);

            if (start != s->period_start) {
                s->period_start = start;
                s->spent_nano = 0;
            }

            if (s->spent_nano >= subj->budget_nano) {
                reason = NGX_HTTP_QWEN_REFUSED_BUDGET;
                retry = next - now;
            }
        }

        if (retry) {
            refused = i;
            s->refused[reason]++;

            if (i > 0) {
                /* the key is told why too */
                limits->table->slots[subjects[0]->slot].refused[reason]++;
            }

            break;
        }
    }

    if (refused == NGX_HTTP_QWEN_NONE_REFUSED) {
        for (i = 0; i < n; i++) {
            s = &limits->table->slots[subjects[i]->slot];

            s->req_cur++;
            s->tok_cur += reserve;
            s->active++;
        }

        limits->table->dirty = 1;
    }

    /* what the key has left, for its x-ratelimit-* headers */

    s = &limits->table->slots[subjects[0]->slot];
    est_req = s->req_prev * (60 - sec) / 60 + s->req_cur;
    est_tok = s->tok_prev * (60 - sec) / 60 + s->tok_cur;

    ngx_shmtx_unlock(&limits->shpool->mutex);

    ctx->remaining_requests = (int64_t) subjects[0]->rpm - (int64_t) est_req;
    ctx->remaining_tokens = (int64_t) subjects[0]->tpm - (int64_t) est_tok;
    ctx->reset_in = 60 - sec;
    ctx->limited = 1;

    if (refused == NGX_HTTP_QWEN_NONE_REFUSED) {
        ctx->admitted = 1;
        ctx->reserved = reserve;
        ctx->admit_minute = minute;
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "qwen: rejected request of key \"%V\": the %s limit of "
                  "%s \"%V\" is reached",
                  &ctx->key->subject.id, ngx_http_qwen_refused_names[reason],
                  subj->kind == NGX_HTTP_QWEN_SUBJECT_KEY ? "key"
                  : subj->kind == NGX_HTTP_QWEN_SUBJECT_TEAM ? "team"
                  : "model",
                  &subj->id);

    msg = ngx_pnalloc(r->pool, 256 + subj->id.len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    if (reason == NGX_HTTP_QWEN_REFUSED_BUDGET) {
        err->status = 0;
        ngx_http_qwen_error_set(err, NGX_HTTP_TOO_MANY_REQUESTS,
                                "insufficient_quota", "insufficient_quota",
                                NULL, msg,
                                ngx_sprintf(msg, "The budget of %s \"%V\" "
                                            "for this period is spent; it "
                                            "resets at %T (seconds since "
                                            "1970, UTC).",
                                            subj->kind
                                            == NGX_HTTP_QWEN_SUBJECT_KEY
                                            ? "key" : "team",
                                            &subj->id, now + retry)
                                - msg);

    } else if (reason == NGX_HTTP_QWEN_REFUSED_TPM && reserve > subj->tpm) {
        ngx_http_qwen_error_set(err, NGX_HTTP_TOO_MANY_REQUESTS,
                                "tokens", "rate_limit_exceeded", NULL, msg,
                                ngx_sprintf(msg, "Request too large: it may "
                                            "use %uL tokens, more than the "
                                            "limit of %ui tokens per "
                                            "minute.", reserve, subj->tpm)
                                - msg);

    } else {
        ngx_http_qwen_error_set(err, NGX_HTTP_TOO_MANY_REQUESTS,
                                reason == NGX_HTTP_QWEN_REFUSED_TPM
                                ? "tokens" : "requests",
                                "rate_limit_exceeded", NULL, msg,
                                ngx_sprintf(msg, "Rate limit reached: %s of "
                                            "%s \"%V\". Please try again "
                                            "in %Ts.",
                                            reason == NGX_HTTP_QWEN_REFUSED_RPM
                                            ? "requests per minute"
                                            : reason
                                              == NGX_HTTP_QWEN_REFUSED_TPM
                                              ? "tokens per minute"
                                              : "concurrent requests",
                                            subj->kind
                                            == NGX_HTTP_QWEN_SUBJECT_KEY
                                            ? "key"
                                            : subj->kind
                                              == NGX_HTTP_QWEN_SUBJECT_TEAM
                                              ? "team" : "model",
                                            &subj->id, retry)
                                - msg);
    }

    /* a request that can never fit is not to be retried */
    err->retry_after = (reason == NGX_HTTP_QWEN_REFUSED_TPM
                        && reserve > subj->tpm) ? 0 : retry;

    return NGX_DECLINED;
}


/*
 * The log phase of an admitted request: the tokens it really used take
 * the place of those reserved (in the window it was admitted in, if that
 * is still one of the two counted), the cost is spent, the concurrent
 * request ends.  A request that failed used nothing: its reservation goes.
 */

void
ngx_http_qwen_limits_settle(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    time_t                       now, start, next;
    uint64_t                     used, minute, *window;
    ngx_uint_t                   i, n, warn;
    ngx_http_qwen_limits_t      *limits;
    ngx_http_qwen_subject_t     *subjects[3], *subj;
    ngx_http_qwen_main_conf_t   *qmcf;
    ngx_http_qwen_limit_slot_t  *s;

    if (!ctx->admitted || ctx->settled) {
        return;
    }

    ctx->settled = 1;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    limits = qmcf->limits;

    n = 0;
    subjects[n++] = &ctx->key->subject;

    if (ctx->key->team) {
        subjects[n++] = ctx->key->team;
    }

    if (ctx->model_subject) {
        subjects[n++] = ctx->model_subject;
    }

    /* an answer from nginx's cache used no upstream tokens */
    used = ctx->cache_hit ? 0 : ctx->tokens.prompt + ctx->tokens.completion;

    if (used == 0 && !ctx->cache_hit && ctx->deployment
        && r->headers_out.status >= 200 && r->headers_out.status < 300)
    {
        /*
         * An answer that reported no usage (a stream cut before its usage
         * chunk, usage not asked for): the reservation stands, so that no
         * answer escapes the tokens-per-minute limit unseen.
         */
        used = ctx->reserved;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: the answer to key \"%V\" reported no usage: "
                      "its %uL reserved tokens are counted",
                      &ctx->key->subject.id, used);
    }

    now = ngx_time();
    minute = (uint64_t) now / 60;

    ngx_shmtx_lock(&limits->shpool->mutex);

    for (i = 0; i < n; i++) {
        subj = subjects[i];
        s = &limits->table->slots[subj->slot];

        ngx_http_qwen_limits_roll(s, minute);

        window = (ctx->admit_minute == minute) ? &s->tok_cur
                 : (ctx->admit_minute + 1 == minute) ? &s->tok_prev : NULL;

        if (window) {
            *window = (*window >= ctx->reserved)
                      ? *window - ctx->reserved + used : used;
        }

        if (s->active) {
            s->active--;
        }

        s->requests++;
        if (!ctx->cache_hit) {
            s->input += ctx->tokens.prompt;
            s->output += ctx->tokens.completion;
            s->cost_nano += ctx->cost_nano;
        }

        warn = 0;

        if (subj->budget_nano) {
            start = ngx_http_qwen_period_start(subj, s, now, &next);

            if (start != s->period_start) {
                s->period_start = start;
                s->spent_nano = 0;
            }

            s->spent_nano += ctx->cost_nano;

            if (subj->soft_pct && s->soft_warned != s->period_start
                && s->spent_nano * 100 >= subj->budget_nano * subj->soft_pct)
            {
                s->soft_warned = s->period_start;
                warn = 1;
            }
        }

        if (warn) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "qwen: %s \"%V\" has spent %ui%% of its budget "
                          "for the period",
                          subj->kind == NGX_HTTP_QWEN_SUBJECT_KEY ? "key"
                                                                  : "team",
                          &subj->id, subj->soft_pct);
        }
    }

    limits->table->dirty = 1;

    ngx_shmtx_unlock(&limits->shpool->mutex);
}


/* a refusal decided elsewhere (a model the key may not use) */

void
ngx_http_qwen_limits_refused(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_subject_t *subj, ngx_uint_t reason)
{
    if (limits == NULL || limits->shpool == NULL
        || reason >= NGX_HTTP_QWEN_REFUSED_REASONS)
    {
        return;
    }

    (void) ngx_atomic_fetch_add((ngx_atomic_t *)
                     &limits->table->slots[subj->slot].refused[reason], 1);
}


void
ngx_http_qwen_limits_refused_key(ngx_http_qwen_limits_t *limits)
{
    if (limits && limits->shpool) {
        (void) ngx_atomic_fetch_add((ngx_atomic_t *)
                                    &limits->table->unauthorized, 1);
    }
}


/* what a subject uses now (the key information endpoint, $qwen_budget_*) */

ngx_int_t
ngx_http_qwen_limits_usage(ngx_http_qwen_limits_t *limits,
    ngx_http_qwen_subject_t *subj, uint64_t *rpm, uint64_t *tpm,
    uint64_t *active, uint64_t *spent, time_t *resets)
{
    time_t                       now, start;
    uint64_t                     minute, sec;
    ngx_http_qwen_limit_slot_t  *s;

    if (limits == NULL || limits->shpool == NULL) {
        return NGX_DECLINED;
    }

    now = ngx_time();
    minute = (uint64_t) now / 60;
    sec = (uint64_t) now % 60;

    ngx_shmtx_lock(&limits->shpool->mutex);

    s = &limits->table->slots[subj->slot];

    ngx_http_qwen_limits_roll(s, minute);

    *rpm = s->req_prev * (60 - sec) / 60 + s->req_cur;
    *tpm = s->tok_prev * (60 - sec) / 60 + s->tok_cur;
    *active = s->active;
    *spent = 0;
    *resets = 0;

    if (subj->budget_nano) {
        start = ngx_http_qwen_period_start(subj, s, now, resets);
        *spent = (start == s->period_start) ? s->spent_nano : 0;
    }

    ngx_shmtx_unlock(&limits->shpool->mutex);

    return NGX_OK;
}


/* ---------------------------------------------------------- persistence */


/*
 * Worker 0 saves the spend every few seconds when something changed, and
 * when it exits (a reload, a stop); the master reads the file when it
 * creates the zone.  A crash loses at most the last interval.
 */

ngx_int_t
ngx_http_qwen_limits_init_process(ngx_cycle_t *cycle)
{
    ngx_http_qwen_limits_t     *limits;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_qwen_module);

    /* worker 0 only: not the others, not a cache manager or loader */

    if (qmcf == NULL || qmcf->limits == NULL || ngx_worker != 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE)
        || qmcf->limits->state_file.len == 0)
    {
        return NGX_OK;
    }

    limits = qmcf->limits;

    limits->save.handler = ngx_http_qwen_limits_save_handler;
    limits->save.data = limits;
    limits->save.log = cycle->log;
    limits->save.cancelable = 1;

    ngx_add_timer(&limits->save, NGX_HTTP_QWEN_SAVE_EVERY);

    return NGX_OK;
}


void
ngx_http_qwen_limits_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_qwen_module);

    if (qmcf == NULL || qmcf->limits == NULL || ngx_worker != 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE)
        || qmcf->limits->state_file.len == 0 || qmcf->limits->shpool == NULL)
    {
        return;
    }

    if (*qmcf->limits->shared != qmcf->limits->table) {
        /* a reload gave the zone another table: its workers save it */
        return;
    }

    (void) ngx_http_qwen_limits_save(qmcf->limits, cycle->log);
}


static void
ngx_http_qwen_limits_save_handler(ngx_event_t *ev)
{
    ngx_http_qwen_limits_t  *limits = ev->data;

    if (limits->table->dirty) {
        limits->table->dirty = 0;
        (void) ngx_http_qwen_limits_save(limits, ev->log);
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_QWEN_SAVE_EVERY);
    }
}


/* {"version":1,"saved":T,"subjects":[{"name":"k:app","period_start":T,...}]} */

static ngx_int_t
ngx_http_qwen_limits_save(ngx_http_qwen_limits_t *limits, ngx_log_t *log)
{
    u_char                       *buf, *p, *tmp;
    size_t                        size;
    ngx_fd_t                      fd;
    ngx_uint_t                    i;
    ngx_str_t                     name;
    ngx_http_qwen_limit_slot_t   *s;
    ngx_http_qwen_limit_table_t  *t;

    t = limits->table;

    size = 64 + t->nslots * (256 + 2 * NGX_HTTP_QWEN_SLOT_NAME);

    buf = ngx_alloc(size + limits->state_file.len + 8, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "{\"version\":1,\"saved\":%T,\"subjects\":[",
                    ngx_time());

    ngx_shmtx_lock(&limits->shpool->mutex);

    for (i = 0; i < t->nslots; i++) {
        s = &t->slots[i];
        name.data = s->name;
        name.len = s->name_len;

        p = ngx_sprintf(p, "%s{\"name\":\"", i ? "," : "");
        p = ngx_http_qwen_limits_label(p, &name);
        p = ngx_sprintf(p, "\",\"period_start\":%T,\"spent_nano\":%uL,"
                        "\"soft_warned\":%T,\"requests\":%uL,\"input\":%uL,"
                        "\"output\":%uL,\"cost_nano\":%uL}",
                        s->period_start, s->spent_nano, s->soft_warned,
                        s->requests, s->input, s->output, s->cost_nano);
    }

    ngx_shmtx_unlock(&limits->shpool->mutex);

    p = ngx_cpymem(p, "]}\n", 3);

    /* written beside it, then renamed over it: never half a file */

    tmp = p + 1;
    ngx_sprintf(tmp, "%V.tmp%Z", &limits->state_file);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "qwen: the keys' state file \"%s\" cannot be written",
                      tmp);
        ngx_free(buf);
        return NGX_ERROR;
    }

    if (ngx_write_fd(fd, buf, p - buf) != p - buf || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "qwen: writing the keys' state file \"%s\" failed",
                      tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        ngx_free(buf);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, limits->state_file.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "qwen: renaming \"%s\" to \"%V\" failed",
                      tmp, &limits->state_file);
        (void) ngx_delete_file(tmp);
        ngx_free(buf);
        return NGX_ERROR;
    }

    ngx_free(buf);

    return NGX_OK;
}


/* the master, creating the zone: spend from the last run, if any */

static void
ngx_http_qwen_limits_restore(ngx_http_qwen_limits_t *limits, ngx_log_t *log)
{
    cJSON                       *root, *list, *item, *v;
    u_char                      *data;
    ssize_t                      n;
    ngx_fd_t                     fd;
    ngx_uint_t                   restored;
    ngx_file_info_t              fi;
    ngx_http_qwen_limit_slot_t  *s;
    ngx_file_t                   f;

    if (limits->state_file.len == 0) {
        return;
    }

    fd = ngx_open_file(limits->state_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_NOTICE, log, ngx_errno,
                      "qwen: no keys' state file \"%V\" yet: counting "
                      "from zero", &limits->state_file);
        return;
    }

    data = NULL;
    root = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 64 * 1024 * 1024)
    {
        goto corrupt;
    }

    data = ngx_alloc(ngx_file_size(&fi) + 1, log);
    if (data == NULL) {
        goto done;
    }

    ngx_memzero(&f, sizeof(ngx_file_t));
    f.fd = fd;
    f.name = limits->state_file;
    f.log = log;

    n = ngx_read_file(&f, data, ngx_file_size(&fi), 0);

    if (n != (ssize_t) ngx_file_size(&fi)) {
        goto corrupt;
    }

    root = cJSON_ParseWithLength((const char *) data, n);
    list = root ? cJSON_GetObjectItemCaseSensitive(root, "subjects") : NULL;

    v = root ? cJSON_GetObjectItemCaseSensitive(root, "version") : NULL;

    if (!cJSON_IsArray(list) || !cJSON_IsNumber(v) || v->valueint != 1) {
        goto corrupt;
    }

    restored = 0;

    cJSON_ArrayForEach(item, list) {
        v = cJSON_GetObjectItemCaseSensitive(item, "name");

        if (!cJSON_IsString(v)) {
            goto corrupt;
        }

        s = ngx_http_qwen_limits_by_name(limits->table,
                                         (u_char *) v->valuestring,
                                         ngx_strlen(v->valuestring));
        if (s == NULL) {
            /* a key no longer in the file */
            continue;
        }

#define ngx_http_qwen_restore_num(field, type)                               \
        v = cJSON_GetObjectItemCaseSensitive(item, #field);                  \
        if (!cJSON_IsNumber(v) || v->valuedouble < 0) {                      \
            goto corrupt;                                                    \
        }                                                                    \
        s->field = (type) v->valuedouble;

        ngx_http_qwen_restore_num(period_start, time_t);
        ngx_http_qwen_restore_num(spent_nano, uint64_t);
        ngx_http_qwen_restore_num(soft_warned, time_t);
        ngx_http_qwen_restore_num(requests, uint64_t);
        ngx_http_qwen_restore_num(input, uint64_t);
        ngx_http_qwen_restore_num(output, uint64_t);
        ngx_http_qwen_restore_num(cost_nano, uint64_t);

#undef ngx_http_qwen_restore_num

        restored++;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "qwen: spend of %ui keys, teams and models restored from "
                  "\"%V\"", restored, &limits->state_file);

    goto done;

corrupt:

    /* nothing half-restored: every slot starts from zero */

    for (restored = 0; restored < limits->table->nslots; restored++) {
        s = &limits->table->slots[restored];
        ngx_memzero(s, offsetof(ngx_http_qwen_limit_slot_t, name_len));
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "qwen: the keys' state file \"%V\" is not one this module "
                  "wrote (corrupt or truncated): it is ignored, spend counts "
                  "from zero", &limits->state_file);

done:

    if (root) {
        cJSON_Delete(root);
    }

    if (data) {
        ngx_free(data);
    }

    (void) ngx_close_file(fd);
}


/* ---------------------------------------------------------- the status */


ngx_int_t
ngx_http_qwen_limits_prometheus(ngx_http_request_t *r,
    ngx_http_qwen_limits_t *limits, ngx_chain_t ***ll)
{
    u_char                       *p;
    size_t                        len;
    uint64_t                      unauthorized;
    ngx_buf_t                    *b;
    ngx_uint_t                    i, k, n, family;
    ngx_chain_t                  *cl;
    ngx_http_qwen_subject_t      *subj;
    ngx_http_qwen_limit_slot_t   *copy;
    ngx_http_qwen_limit_table_t  *t;

    static const char  *families[] = {
        "qwen_key_requests_total", "qwen_key_tokens_total",
        "qwen_key_cost_usd_total", "qwen_key_refusals_total",
        "qwen_key_budget_spent_usd"
    };

    static const char  *help[] = {
        "# HELP qwen_key_requests_total Requests settled, by key, team or "
        "model of the keys file.\n"
        "# TYPE qwen_key_requests_total counter\n",
        "# HELP qwen_key_tokens_total Tokens used.\n"
        "# TYPE qwen_key_tokens_total counter\n",
        "# HELP qwen_key_cost_usd_total Cost at the answering deployment's "
        "prices.\n"
        "# TYPE qwen_key_cost_usd_total counter\n",
        "# HELP qwen_key_refusals_total Requests refused by a limit or a "
        "budget, by reason.\n"
        "# TYPE qwen_key_refusals_total counter\n",
        "# HELP qwen_key_budget_spent_usd Spend in the current budget "
        "period.\n"
        "# TYPE qwen_key_budget_spent_usd gauge\n"
    };

    if (limits == NULL || limits->shpool == NULL) {
        return NGX_OK;
    }

    t = limits->table;
    n = ngx_min(t->nslots, limits->nsubjects);

    /* one consistent copy, then each family's samples together */

    copy = ngx_palloc(r->pool, (n ? n : 1) * sizeof(ngx_http_qwen_limit_slot_t));
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&limits->shpool->mutex);
    ngx_memcpy(copy, t->slots, n * sizeof(ngx_http_qwen_limit_slot_t));
    unauthorized = t->unauthorized;
    ngx_shmtx_unlock(&limits->shpool->mutex);

    len = 2048 + n * (6 + NGX_HTTP_QWEN_REFUSED_REASONS)
                 * (96 + 4 * NGX_HTTP_QWEN_SLOT_NAME + NGX_INT64_LEN);

    b = ngx_create_temp_buf(r->pool, len);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(b->last,
                    "# HELP qwen_unauthorized_requests_total Requests "
                    "without a key or with an unknown, disabled or expired "
                    "one.\n"
                    "# TYPE qwen_unauthorized_requests_total counter\n"
                    "qwen_unauthorized_requests_total %uL\n", unauthorized);

    for (family = 0; family < 5; family++) {
        p = ngx_cpymem(p, help[family], ngx_strlen(help[family]));

        for (i = 0; i < n; i++) {
            subj = limits->subjects[i];

            if (family == 4 && subj->budget_nano == 0) {
                continue;
            }

            for (k = 0; k < NGX_HTTP_QWEN_REFUSED_REASONS; k++) {

                if (family == 1 && k > 1) {
                    break;
                }

                if (family != 1 && family != 3 && k > 0) {
                    break;
                }

                if (family == 3 && copy[i].refused[k] == 0) {
                    continue;
                }

                p = ngx_sprintf(p, "%s", families[family]);
                p = ngx_http_qwen_limits_labels(p, subj);

                switch (family) {

                case 0:
                    p = ngx_sprintf(p, "} %uL\n", copy[i].requests);
                    break;

                case 1:
                    p = ngx_sprintf(p, ",type=\"%s\"} %uL\n",
                                    k ? "output" : "input",
                                    k ? copy[i].output : copy[i].input);
                    break;

                case 2:
                    p = ngx_sprintf(p, "} ");
                    p = ngx_http_qwen_format_usd(p, copy[i].cost_nano);
                    *p++ = '\n';
                    break;

                case 3:
                    p = ngx_sprintf(p, ",reason=\"%s\"} %uL\n",
                                    ngx_http_qwen_refused_names[k],
                                    copy[i].refused[k]);
                    break;

                default:
                    p = ngx_sprintf(p, "} ");
                    p = ngx_http_qwen_format_usd(p,
                                    ngx_http_qwen_limits_spent(subj,
                                                               &copy[i]));
                    *p++ = '\n';
                }
            }
        }
    }

    b->last = p;

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* {key="..",team=".." or {team=".." or {model="..", without the "}" */

static u_char *
ngx_http_qwen_limits_labels(u_char *p, ngx_http_qwen_subject_t *subj)
{
    ngx_http_qwen_key_t  *key;

    p = ngx_sprintf(p, "{%s=\"",
                    subj->kind == NGX_HTTP_QWEN_SUBJECT_KEY ? "key"
                    : subj->kind == NGX_HTTP_QWEN_SUBJECT_TEAM ? "team"
                    : "model");
    p = ngx_http_qwen_limits_label(p, &subj->id);
    *p++ = '"';

    if (subj->kind == NGX_HTTP_QWEN_SUBJECT_KEY) {
        key = (ngx_http_qwen_key_t *) subj;

        p = ngx_sprintf(p, ",team=\"");

        if (key->team) {
            p = ngx_http_qwen_limits_label(p, &key->team->id);
        }

        *p++ = '"';
    }

    return p;
}


/* ,"keys":[{"id":..,"kind":..,"requests":..,...}] */

ngx_int_t
ngx_http_qwen_limits_json(ngx_http_request_t *r,
    ngx_http_qwen_limits_t *limits, ngx_chain_t ***ll)
{
    u_char                       *p;
    size_t                        len;
    ngx_buf_t                    *b;
    ngx_uint_t                    i, k, first;
    ngx_chain_t                  *cl;
    ngx_http_qwen_subject_t      *subj;
    ngx_http_qwen_limit_slot_t    copy;
    ngx_http_qwen_limit_table_t  *t;

    if (limits == NULL || limits->shpool == NULL) {
        return NGX_OK;
    }

    t = limits->table;

    len = 256 + t->nslots * (512 + 6 * NGX_HTTP_QWEN_SLOT_NAME
                             + NGX_HTTP_QWEN_REFUSED_REASONS * 48);

    b = ngx_create_temp_buf(r->pool, len);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(b->last, ",\"unauthorized\":%uA,\"keys\":[",
                    *(ngx_atomic_t *) &t->unauthorized);

    for (i = 0; i < t->nslots && i < limits->nsubjects; i++) {
        subj = limits->subjects[i];

        ngx_shmtx_lock(&limits->shpool->mutex);
        copy = t->slots[i];
        ngx_shmtx_unlock(&limits->shpool->mutex);

        p = ngx_sprintf(p, "%s{\"kind\":\"%s\",\"id\":\"", i ? "," : "",
                        subj->kind == NGX_HTTP_QWEN_SUBJECT_KEY ? "key"
                        : subj->kind == NGX_HTTP_QWEN_SUBJECT_TEAM ? "team"
                        : "model");
        p = ngx_http_qwen_limits_label(p, &subj->id);
        p = ngx_sprintf(p, "\",\"requests\":%uL,\"input\":%uL,"
                        "\"output\":%uL,\"cost\":", copy.requests,
                        copy.input, copy.output);
        p = ngx_http_qwen_format_usd(p, copy.cost_nano);
        p = ngx_sprintf(p, ",\"active\":%uL,\"spent\":", copy.active);
        p = ngx_http_qwen_format_usd(p,
                                     ngx_http_qwen_limits_spent(subj, &copy));
        p = ngx_sprintf(p, ",\"refused\":{");

        first = 1;

        for (k = 0; k < NGX_HTTP_QWEN_REFUSED_REASONS; k++) {
            if (copy.refused[k]) {
                p = ngx_sprintf(p, "%s\"%s\":%uL", first ? "" : ",",
                                ngx_http_qwen_refused_names[k],
                                copy.refused[k]);
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


/* the spend of the current period: a past period's is no longer spent */

static uint64_t
ngx_http_qwen_limits_spent(ngx_http_qwen_subject_t *subj,
    ngx_http_qwen_limit_slot_t *s)
{
    time_t  now, next;

    if (subj->budget_nano == 0) {
        return 0;
    }

    now = ngx_time();

    return (ngx_http_qwen_period_start(subj, s, now, &next) == s->period_start)
           ? s->spent_nano : 0;
}


/* ids are checked at load: no quotes, backslashes or control characters */

static u_char *
ngx_http_qwen_limits_label(u_char *p, ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '"' || s->data[i] == '\\' || s->data[i] < 0x20) {
            continue;
        }

        *p++ = s->data[i];
    }

    return p;
}
