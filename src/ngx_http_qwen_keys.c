
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * Client keys: who may call the gateway, for which models and regions
 * (docs/keys.md).  The keys file (JSON) is read when the configuration is
 * loaded, again at every reload; a key written in clear is hashed at once
 * and only its SHA-256 is kept.  A request's key is looked up by the
 * SHA-256 of what the client sent, compared in constant time; the client
 * key itself is never logged, kept, sent upstream or shown in a variable
 * ($qwen_key is the key's alias).
 *
 * How much a key may use (requests and tokens per minute, concurrency,
 * budgets) is ngx_http_qwen_limits.c's.
 */


#include "ngx_http_qwen_module.h"
#include "ngx_http_qwen_sha256.h"

#include <cjson/cJSON.h>


#define NGX_HTTP_QWEN_KEY_MAX_LEN     512
#define NGX_HTTP_QWEN_DEFAULT_RESERVE 4096

#define NGX_HTTP_QWEN_MISSING_KEY                                            \
    "You didn't provide an API key. Send it in the Authorization header "   \
    "(Authorization: Bearer YOUR_KEY)."
#define NGX_HTTP_QWEN_INVALID_KEY                                            \
    "Incorrect API key provided."


static void ngx_http_qwen_keys_wipe(cJSON *root);
static char *ngx_http_qwen_keys_load(ngx_conf_t *cf,
    ngx_http_qwen_keys_t *keys, cJSON *root, ngx_str_t *file);
static char *ngx_http_qwen_keys_subject(ngx_conf_t *cf, cJSON *item,
    ngx_http_qwen_subject_t *s, ngx_uint_t kind);
static char *ngx_http_qwen_keys_key(ngx_conf_t *cf,
    ngx_http_qwen_keys_t *keys, cJSON *item, ngx_http_qwen_key_t *k);
static char *ngx_http_qwen_keys_strings(ngx_conf_t *cf, cJSON *v,
    ngx_array_t **out);
static char *ngx_http_qwen_keys_str(ngx_conf_t *cf, cJSON *v, ngx_str_t *s);
static char *ngx_http_qwen_keys_time(cJSON *v, time_t *t);
static ngx_int_t ngx_http_qwen_keys_table(ngx_conf_t *cf,
    ngx_http_qwen_keys_t *keys);
static ngx_http_qwen_key_t *ngx_http_qwen_keys_find(ngx_http_qwen_keys_t *keys,
    ngx_str_t *presented);
static ngx_int_t ngx_http_qwen_keys_presented(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_uint_t ngx_http_qwen_glob(ngx_str_t *pattern, ngx_str_t *name);
static ngx_uint_t ngx_http_qwen_keys_model_allowed(ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_key_info_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_variable_key(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_variable_budget(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_qwen_add_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);


static ngx_http_variable_t  ngx_http_qwen_key_vars[] = {

    { ngx_string("qwen_key"), NULL, ngx_http_qwen_variable_key, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_key_team"), NULL, ngx_http_qwen_variable_key, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_key_owner"), NULL, ngx_http_qwen_variable_key, 2,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_budget_remaining"), NULL,
      ngx_http_qwen_variable_budget, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* qwen_keys_file path; */

char *
ngx_http_qwen_keys_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    char                  *rv;
    cJSON                 *root;
    ngx_str_t             *value, file, json;
    ngx_http_qwen_keys_t  *keys;

    if (qmcf->keys) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    keys = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_keys_t));
    if (keys == NULL) {
        return NGX_CONF_ERROR;
    }

    keys->file = file;

    if (ngx_array_init(&keys->keys, cf->pool, 16,
                       sizeof(ngx_http_qwen_key_t)) != NGX_OK
        || ngx_array_init(&keys->teams, cf->pool, 4,
                          sizeof(ngx_http_qwen_subject_t)) != NGX_OK
        || ngx_array_init(&keys->models, cf->pool, 4,
                          sizeof(ngx_http_qwen_subject_t)) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_conf_read_json(cf, &file, 16 * 1024 * 1024,
                                     "keys file", &json, (void **) &root)
        != NGX_OK)
    {
        /* the file may hold keys in clear */
        if (json.data) {
            ngx_explicit_memzero(json.data, json.len);
        }

        return NGX_CONF_ERROR;
    }

    rv = ngx_http_qwen_keys_load(cf, keys, root, &file);

    ngx_http_qwen_keys_wipe(root);
    cJSON_Delete(root);

    /* the file may hold keys in clear: only their hashes are kept */
    ngx_explicit_memzero(json.data, json.len);
    ngx_pfree(cf->pool, json.data);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_qwen_keys_table(cf, keys) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    qmcf->keys = keys;

    return NGX_CONF_OK;
}


/* every "key" string of the parsed file, before cJSON frees it */

static void
ngx_http_qwen_keys_wipe(cJSON *root)
{
    cJSON  *item, *v;

    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "keys")) {
        v = cJSON_GetObjectItemCaseSensitive(item, "key");

        if (cJSON_IsString(v) && v->valuestring) {
            ngx_explicit_memzero(v->valuestring, ngx_strlen(v->valuestring));
        }
    }
}


/* qwen_keys_state_file path; where spend survives a restart */

char *
ngx_http_qwen_keys_state_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    ngx_str_t  *value;

    if (qmcf->state_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    qmcf->state_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &qmcf->state_file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* NUL-terminated: it is opened and renamed to */
    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_keys_load(ngx_conf_t *cf, ngx_http_qwen_keys_t *keys,
    cJSON *root, ngx_str_t *file)
{
    char                     *rv;
    cJSON                    *list, *item;
    ngx_uint_t                i, j;
    const char               *what;
    ngx_http_qwen_key_t      *k, *ks;
    ngx_http_qwen_subject_t  *s, *ss;

    if (!cJSON_IsObject(root)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "keys file \"%V\" must be a JSON object", file);
        return NGX_CONF_ERROR;
    }

    /* teams first: keys name them */

    what = "teams";
    list = cJSON_GetObjectItemCaseSensitive(root, "teams");
    i = 0;

    if (list != NULL && !cJSON_IsArray(list)) {
        rv = "must be an array";
        goto failed_list;
    }

    cJSON_ArrayForEach(item, list) {
        s = ngx_array_push(&keys->teams);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        rv = ngx_http_qwen_keys_subject(cf, item, s,
                                        NGX_HTTP_QWEN_SUBJECT_TEAM);
        if (rv != NGX_CONF_OK) {
            goto failed;
        }

        ss = keys->teams.elts;

        for (j = 0; j < i; j++) {
            if (ss[j].id.len == s->id.len
                && ngx_strncmp(ss[j].id.data, s->id.data, s->id.len) == 0)
            {
                rv = "a team of this \"id\" is defined already";
                goto failed;
            }
        }

        i++;
    }

    what = "models";
    list = cJSON_GetObjectItemCaseSensitive(root, "models");
    i = 0;

    if (list != NULL && !cJSON_IsArray(list)) {
        rv = "must be an array";
        goto failed_list;
    }

    cJSON_ArrayForEach(item, list) {
        s = ngx_array_push(&keys->models);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        rv = ngx_http_qwen_keys_subject(cf, item, s,
                                        NGX_HTTP_QWEN_SUBJECT_MODEL);
        if (rv != NGX_CONF_OK) {
            goto failed;
        }

        ss = keys->models.elts;

        for (j = 0; j < i; j++) {
            if (ss[j].id.len == s->id.len
                && ngx_strncasecmp(ss[j].id.data, s->id.data, s->id.len) == 0)
            {
                rv = "limits for this \"model\" are written already";
                goto failed;
            }
        }

        i++;
    }

    what = "keys";
    list = cJSON_GetObjectItemCaseSensitive(root, "keys");
    i = 0;

    if (!cJSON_IsArray(list)) {
        rv = "must be an array of keys";
        goto failed_list;
    }

    cJSON_ArrayForEach(item, list) {
        k = ngx_array_push(&keys->keys);
        if (k == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(k, sizeof(ngx_http_qwen_key_t));

        rv = ngx_http_qwen_keys_key(cf, keys, item, k);
        if (rv != NGX_CONF_OK) {
            goto failed;
        }

        ks = keys->keys.elts;

        for (j = 0; j < i; j++) {
            if (ks[j].subject.id.len == k->subject.id.len
                && ngx_strncmp(ks[j].subject.id.data, k->subject.id.data,
                               k->subject.id.len) == 0)
            {
                rv = "a key of this \"id\" is defined already";
                goto failed;
            }

            if (qwen_ct_equal(ks[j].digest, k->digest, 32)) {
                rv = "the same key is written twice";
                goto failed;
            }
        }

        i++;
    }

    return NGX_CONF_OK;

failed_list:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "keys file \"%V\": \"%s\" %s", file, what, rv);
    return NGX_CONF_ERROR;

failed:

    /* the entry's index, never its key */
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "keys file \"%V\": %s[%ui]: %s", file, what, i, rv);
    return NGX_CONF_ERROR;
}


/* "id", "limits": {"rpm", "tpm", "concurrency"}, "budget": {...} */

static char *
ngx_http_qwen_keys_subject(ngx_conf_t *cf, cJSON *item,
    ngx_http_qwen_subject_t *s, ngx_uint_t kind)
{
    char        *rv;
    cJSON       *v, *limits, *budget;
    double       usd;
    ngx_str_t    period;
    ngx_uint_t   i;

    static const char  *names[] = { "rpm", "tpm", "concurrency" };

    if (!cJSON_IsObject(item)) {
        return "must be an object";
    }

    ngx_memzero(s, sizeof(ngx_http_qwen_subject_t));
    s->kind = kind;

    v = cJSON_GetObjectItemCaseSensitive(item,
                               kind == NGX_HTTP_QWEN_SUBJECT_MODEL ? "model"
                                                                   : "id");
    rv = ngx_http_qwen_keys_str(cf, v, &s->id);
    if (rv != NGX_CONF_OK || s->id.len == 0 || s->id.len > 64) {
        return kind == NGX_HTTP_QWEN_SUBJECT_MODEL
               ? "needs \"model\", a model id"
               : "needs \"id\", a name of 1 to 64 characters";
    }

    for (i = 0; i < s->id.len; i++) {
        if (s->id.data[i] <= 0x20 || s->id.data[i] == 0x7f
            || s->id.data[i] == '"' || s->id.data[i] == '\\')
        {
            return "an \"id\" may not hold blanks, quotes, backslashes or "
                   "control characters";
        }
    }

    limits = cJSON_GetObjectItemCaseSensitive(item, "limits");

    if (limits != NULL) {
        if (!cJSON_IsObject(limits)) {
            return "\"limits\" must be an object";
        }

        for (i = 0; i < 3; i++) {
            v = cJSON_GetObjectItemCaseSensitive(limits, names[i]);

            if (v == NULL) {
                continue;
            }

            if (!cJSON_IsNumber(v) || v->valuedouble < 1
                || v->valuedouble > 1e12
                || v->valuedouble != (double) (uint64_t) v->valuedouble)
            {
                return "a limit must be a whole number from 1 up";
            }

            (&s->rpm)[i] = (ngx_uint_t) v->valuedouble;
        }
    }

    budget = cJSON_GetObjectItemCaseSensitive(item, "budget");

    if (budget == NULL) {
        return NGX_CONF_OK;
    }

    if (kind == NGX_HTTP_QWEN_SUBJECT_MODEL) {
        return "a model has limits, not a budget";
    }

    if (!cJSON_IsObject(budget)) {
        return "\"budget\" must be an object";
    }

    v = cJSON_GetObjectItemCaseSensitive(budget, "usd");

    if (!cJSON_IsNumber(v) || v->valuedouble <= 0 || v->valuedouble > 1e9) {
        return "\"budget\" needs \"usd\", a positive amount";
    }

    usd = v->valuedouble;
    s->budget_nano = (uint64_t) (usd * 1e9 + 0.5);

    v = cJSON_GetObjectItemCaseSensitive(budget, "period");

    if (cJSON_IsNumber(v)) {
        if (v->valuedouble < 1 || v->valuedouble > 3650
            || v->valuedouble != (double) (ngx_uint_t) v->valuedouble)
        {
            return "a \"period\" of days must be a whole number from 1 "
                   "to 3650";
        }

        s->period = NGX_HTTP_QWEN_PERIOD_DAYS;
        s->period_days = (ngx_uint_t) v->valuedouble;

    } else {
        rv = ngx_http_qwen_keys_str(cf, v, &period);
        if (rv != NGX_CONF_OK) {
            return "\"budget\" needs \"period\": \"day\", \"week\", "
                   "\"month\" or a number of days";
        }

        if (period.len == 3 && ngx_strncmp(period.data, "day", 3) == 0) {
            s->period = NGX_HTTP_QWEN_PERIOD_DAY;

        } else if (period.len == 4
                   && ngx_strncmp(period.data, "week", 4) == 0)
        {
            s->period = NGX_HTTP_QWEN_PERIOD_WEEK;

        } else if (period.len == 5
                   && ngx_strncmp(period.data, "month", 5) == 0)
        {
            s->period = NGX_HTTP_QWEN_PERIOD_MONTH;

        } else {
            return "\"budget\" needs \"period\": \"day\", \"week\", "
                   "\"month\" or a number of days";
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(budget, "soft");

    if (v != NULL) {
        if (!cJSON_IsNumber(v) || v->valuedouble <= 0 || v->valuedouble >= 1)
        {
            return "\"soft\" must be a fraction of the budget, as 0.8";
        }

        s->soft_pct = (ngx_uint_t) (v->valuedouble * 100 + 0.5);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_keys_key(ngx_conf_t *cf, ngx_http_qwen_keys_t *keys,
    cJSON *item, ngx_http_qwen_key_t *k)
{
    char                     *rv;
    cJSON                    *v;
    size_t                    len;
    ngx_str_t                 key, team;
    ngx_uint_t                i;
    ngx_http_qwen_subject_t  *teams;

    rv = ngx_http_qwen_keys_subject(cf, item, &k->subject,
                                    NGX_HTTP_QWEN_SUBJECT_KEY);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "key");

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return "needs \"key\": the key, or \"sha256:\" and its SHA-256 in hex";
    }

    len = ngx_strlen(v->valuestring);

    if (len > 7
        && ngx_strncasecmp((u_char *) v->valuestring, (u_char *) "sha256:", 7)
           == 0)
    {
        if (qwen_sha256_from_hex((u_char *) v->valuestring + 7, len - 7,
                                 k->digest)
            != 0)
        {
            return "\"sha256:\" must be followed by 64 hex digits";
        }

    } else {
        key.data = (u_char *) v->valuestring;
        key.len = len;

        if (key.len < 8 || key.len > NGX_HTTP_QWEN_KEY_MAX_LEN) {
            return "a key must be 8 to 512 characters long";
        }

        for (i = 0; i < key.len; i++) {
            if (key.data[i] <= 0x20 || key.data[i] >= 0x7f) {
                return "a key may hold only visible ASCII characters";
            }
        }

        qwen_sha256(key.data, key.len, k->digest);

        /* the clear key goes no further than this */
        ngx_explicit_memzero(v->valuestring, len);
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "owner");

    if (v != NULL) {
        rv = ngx_http_qwen_keys_str(cf, v, &k->owner);
        if (rv != NGX_CONF_OK) {
            return "\"owner\" must be a string";
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "team");

    if (v != NULL) {
        rv = ngx_http_qwen_keys_str(cf, v, &team);
        if (rv != NGX_CONF_OK) {
            return "\"team\" must be a team's \"id\"";
        }

        teams = keys->teams.elts;

        for (i = 0; i < keys->teams.nelts; i++) {
            if (teams[i].id.len == team.len
                && ngx_strncmp(teams[i].id.data, team.data, team.len) == 0)
            {
                k->team = &teams[i];
                break;
            }
        }

        if (k->team == NULL) {
            return "\"team\" names no team of \"teams\"";
        }
    }

    rv = ngx_http_qwen_keys_strings(cf,
                      cJSON_GetObjectItemCaseSensitive(item, "models"),
                      &k->models);
    if (rv != NGX_CONF_OK) {
        return "\"models\" must be an array of model names or patterns";
    }

    rv = ngx_http_qwen_keys_strings(cf,
                      cJSON_GetObjectItemCaseSensitive(item, "regions"),
                      &k->regions);
    if (rv != NGX_CONF_OK) {
        return "\"regions\" must be an array of region names";
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "expires");

    if (v != NULL) {
        rv = ngx_http_qwen_keys_time(v, &k->expires);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "disabled");

    if (v != NULL) {
        if (!cJSON_IsBool(v)) {
            return "\"disabled\" must be true or false";
        }

        k->disabled = cJSON_IsTrue(v);
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "labels");

    if (v != NULL && !cJSON_IsObject(v)) {
        return "\"labels\" must be an object";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_keys_strings(ngx_conf_t *cf, cJSON *v, ngx_array_t **out)
{
    cJSON      *item;
    ngx_str_t  *s;

    *out = NULL;

    if (v == NULL) {
        return NGX_CONF_OK;
    }

    if (!cJSON_IsArray(v)) {
        return NGX_CONF_ERROR;
    }

    *out = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
    if (*out == NULL) {
        return NGX_CONF_ERROR;
    }

    cJSON_ArrayForEach(item, v) {
        s = ngx_array_push(*out);
        if (s == NULL
            || ngx_http_qwen_keys_str(cf, item, s) != NGX_CONF_OK
            || s->len == 0)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_keys_str(ngx_conf_t *cf, cJSON *v, ngx_str_t *s)
{
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return NGX_CONF_ERROR;
    }

    s->len = ngx_strlen(v->valuestring);
    s->data = ngx_pnalloc(cf->pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(s->data, v->valuestring, s->len + 1);

    return NGX_CONF_OK;
}


/* "expires": seconds since the epoch, "YYYY-MM-DD" or "...THH:MM:SSZ" */

static char *
ngx_http_qwen_keys_time(cJSON *v, time_t *t)
{
    u_char     *p;
    size_t      len;
    ngx_int_t   y, m, d, hh, mm, ss;
    int64_t     days;

    if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e11) {
        *t = (time_t) v->valuedouble;
        return NGX_CONF_OK;
    }

    if (!cJSON_IsString(v)) {
        goto invalid;
    }

    p = (u_char *) v->valuestring;
    len = ngx_strlen(v->valuestring);

    if (len != 10 && len != 20) {
        goto invalid;
    }

    y = ngx_atoi(p, 4);
    m = ngx_atoi(p + 5, 2);
    d = ngx_atoi(p + 8, 2);
    hh = 0;
    mm = 0;
    ss = 0;

    if (p[4] != '-' || p[7] != '-') {
        goto invalid;
    }

    if (len == 20) {
        if (p[10] != 'T' || p[13] != ':' || p[16] != ':' || p[19] != 'Z') {
            goto invalid;
        }

        hh = ngx_atoi(p + 11, 2);
        mm = ngx_atoi(p + 14, 2);
        ss = ngx_atoi(p + 17, 2);
    }

    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31 || hh < 0 || hh > 23
        || mm < 0 || mm > 59 || ss < 0 || ss > 60)
    {
        goto invalid;
    }

    /* days from the civil date (the proleptic Gregorian calendar) */

    y -= (m <= 2);
    days = (int64_t) 365 * y + y / 4 - y / 100 + y / 400
           + (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1 - 719468;

    *t = (time_t) (days * 86400 + hh * 3600 + mm * 60 + ss);

    return NGX_CONF_OK;

invalid:

    return "\"expires\" must be seconds since 1970 or a UTC date, "
           "\"2027-01-31\" or \"2027-01-31T00:00:00Z\"";
}


/* the keys by the first bytes of their digests, open addressing */

static ngx_int_t
ngx_http_qwen_keys_table(ngx_conf_t *cf, ngx_http_qwen_keys_t *keys)
{
    uint32_t              h;
    ngx_uint_t            i, size;
    ngx_http_qwen_key_t  *k;

    for (size = 16; size < 2 * keys->keys.nelts; size <<= 1) {
        /* void */
    }

    keys->table = ngx_pcalloc(cf->pool, size * sizeof(ngx_http_qwen_key_t *));
    if (keys->table == NULL) {
        return NGX_ERROR;
    }

    keys->table_mask = size - 1;
    k = keys->keys.elts;

    for (i = 0; i < keys->keys.nelts; i++) {
        ngx_memcpy(&h, k[i].digest, sizeof(uint32_t));

        while (keys->table[h & keys->table_mask]) {
            h++;
        }

        keys->table[h & keys->table_mask] = &k[i];
    }

    return NGX_OK;
}


static ngx_http_qwen_key_t *
ngx_http_qwen_keys_find(ngx_http_qwen_keys_t *keys, ngx_str_t *presented)
{
    u_char                digest[32];
    uint32_t              h;
    ngx_http_qwen_key_t  *k, *found;

    qwen_sha256(presented->data, presented->len, digest);

    ngx_memcpy(&h, digest, sizeof(uint32_t));

    found = NULL;

    /* a digest, not the key, decides where to look; compared in full */

    for ( ;; ) {
        k = keys->table[h & keys->table_mask];

        if (k == NULL) {
            break;
        }

        if (qwen_ct_equal(k->digest, digest, 32)) {
            found = k;
            break;
        }

        h++;
    }

    ngx_explicit_memzero(digest, sizeof(digest));

    return found;
}


/* the key the client sent: Authorization: Bearer, x-api-key, api-key */

static ngx_int_t
ngx_http_qwen_keys_presented(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->headers_in.authorization) {
        h = r->headers_in.authorization;

        if (h->value.len > 7
            && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ", 7) == 0)
        {
            key->data = h->value.data + 7;
            key->len = h->value.len - 7;

            while (key->len && key->data[0] == ' ') {
                key->data++;
                key->len--;
            }

            return key->len ? NGX_OK : NGX_DECLINED;
        }
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((h[i].key.len == sizeof("x-api-key") - 1
             && ngx_strncasecmp(h[i].key.data, (u_char *) "x-api-key",
                                sizeof("x-api-key") - 1) == 0)
            || (h[i].key.len == sizeof("api-key") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "api-key",
                                   sizeof("api-key") - 1) == 0))
        {
            if (h[i].value.len == 0) {
                continue;
            }

            *key = h[i].value;
            return NGX_OK;
        }
    }
}


/*
 * The first check of a keyed request, right after nginx's access modules
 * and before the body is read: a request without a valid key costs no
 * body work.
 */

ngx_int_t
ngx_http_qwen_keys_authenticate(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_http_qwen_error_t *err)
{
    ngx_str_t                   presented;
    ngx_http_qwen_key_t        *k;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    if (qmcf->keys == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen: \"qwen_keys on\" without a qwen_keys_file");
        goto invalid;
    }

    if (ngx_http_qwen_keys_presented(r, &presented) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: no API key");

        ngx_http_qwen_limits_refused_key(qmcf->limits);

        ngx_http_qwen_error_set(err, NGX_HTTP_UNAUTHORIZED,
                                "invalid_request_error", "missing_api_key",
                                NULL, (u_char *) NGX_HTTP_QWEN_MISSING_KEY,
                                sizeof(NGX_HTTP_QWEN_MISSING_KEY) - 1);
        return NGX_DECLINED;
    }

    if (presented.len > NGX_HTTP_QWEN_KEY_MAX_LEN) {
        k = NULL;

    } else {
        k = ngx_http_qwen_keys_find(qmcf->keys, &presented);
    }

    if (k == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: unknown API key");
        goto invalid;
    }

    if (k->disabled) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: key \"%V\" is disabled",
                      &k->subject.id);
        goto invalid;
    }

    if (k->expires && ngx_time() >= k->expires) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: key \"%V\" has expired",
                      &k->subject.id);
        goto invalid;
    }

    ctx->key = k;

    return NGX_OK;

invalid:

    ngx_http_qwen_limits_refused_key(qmcf->limits);

    ngx_http_qwen_error_set(err, NGX_HTTP_UNAUTHORIZED,
                            "invalid_request_error", "invalid_api_key", NULL,
                            (u_char *) NGX_HTTP_QWEN_INVALID_KEY,
                            sizeof(NGX_HTTP_QWEN_INVALID_KEY) - 1);
    return NGX_DECLINED;
}


/*
 * After the body: the model must be one the key may use (else the same
 * 404 an unknown model gets), and the key, its team and the model's
 * system-wide limits must have room for one more request and its tokens.
 */

ngx_int_t
ngx_http_qwen_keys_admit(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_error_t *err)
{
    uint64_t                    reserve, completion;
    ngx_uint_t                  i, n;
    ngx_http_qwen_subject_t    *subjects[3], *ms;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    if (!ngx_http_qwen_keys_model_allowed(ctx)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: rejected request: key \"%V\" may not use "
                      "model \"%V\"", &ctx->key->subject.id,
                      &ctx->requested_model);

        ngx_http_qwen_limits_refused(qmcf->limits, &ctx->key->subject,
                                     NGX_HTTP_QWEN_REFUSED_MODEL);

        if (ngx_http_qwen_error_model_not_found(r, err,
                                                &ctx->requested_model)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    n = 0;
    subjects[n++] = &ctx->key->subject;

    if (ctx->key->team) {
        subjects[n++] = ctx->key->team;
    }

    ms = qmcf->keys->models.elts;

    for (i = 0; i < qmcf->keys->models.nelts; i++) {
        if ((ctx->entry && ms[i].id.len == ctx->entry->id.len
             && ngx_strncasecmp(ms[i].id.data, ctx->entry->id.data,
                                ms[i].id.len) == 0)
            || (ms[i].id.len == ctx->model.len
                && ngx_strncasecmp(ms[i].id.data, ctx->model.data,
                                   ms[i].id.len) == 0))
        {
            ctx->model_subject = &ms[i];
            subjects[n++] = &ms[i];
            break;
        }
    }

    /*
     * The tokens a request may use, reserved before it is sent: its
     * prompt (a byte of JSON counts as a quarter token, as the mock and
     * DashScope's own estimate for English do) and the completion it
     * allows (max_tokens / max_completion_tokens, else 4096).
     */

    completion = (ctx->max_tokens >= 0) ? (uint64_t) ctx->max_tokens
                                        : NGX_HTTP_QWEN_DEFAULT_RESERVE;

    reserve = (uint64_t) (ngx_max(r->headers_in.content_length_n, 0) + 3) / 4
              + completion;

    return ngx_http_qwen_limits_admit(r, ctx, subjects, n, reserve, err);
}


static ngx_uint_t
ngx_http_qwen_keys_model_allowed(ngx_http_qwen_ctx_t *ctx)
{
    ngx_str_t   *m;
    ngx_uint_t   i;

    if (ctx->key->models == NULL) {
        return 1;
    }

    m = ctx->key->models->elts;

    for (i = 0; i < ctx->key->models->nelts; i++) {
        if (ngx_http_qwen_glob(&m[i], &ctx->requested_model)
            || (ctx->entry && ngx_http_qwen_glob(&m[i], &ctx->entry->id))
            || ngx_http_qwen_glob(&m[i], &ctx->model))
        {
            return 1;
        }
    }

    return 0;
}


/* a key's "regions" name regions (qwen_region) or providers (provider=) */

ngx_uint_t
ngx_http_qwen_keys_region_allowed(ngx_http_qwen_ctx_t *ctx,
    ngx_http_qwen_region_t *region)
{
    ngx_str_t   *rg;
    ngx_uint_t   i;

    if (ctx->key == NULL || ctx->key->regions == NULL) {
        return 1;
    }

    rg = ctx->key->regions->elts;

    for (i = 0; i < ctx->key->regions->nelts; i++) {
        if ((rg[i].len == region->name.len
             && ngx_strncmp(rg[i].data, region->name.data, rg[i].len) == 0)
            || (rg[i].len == region->provider.len
                && ngx_strncmp(rg[i].data, region->provider.data, rg[i].len)
                   == 0))
        {
            return 1;
        }
    }

    return 0;
}


/* a name against a pattern where '*' stands for any run; no case */

static ngx_uint_t
ngx_http_qwen_glob(ngx_str_t *pattern, ngx_str_t *name)
{
    u_char  *p, *pe, *n, *ne, *star_p, *star_n;

    p = pattern->data;
    pe = p + pattern->len;
    n = name->data;
    ne = n + name->len;
    star_p = NULL;
    star_n = NULL;

    while (n < ne) {
        if (p < pe && *p == '*') {
            star_p = ++p;
            star_n = n;
            continue;
        }

        if (p < pe && ngx_tolower(*p) == ngx_tolower(*n)) {
            p++;
            n++;
            continue;
        }

        if (star_p == NULL) {
            return 0;
        }

        p = star_p;
        n = ++star_n;
    }

    while (p < pe && *p == '*') {
        p++;
    }

    return p == pe;
}


/*
 * OpenAI's rate-limit headers on every answer of a keyed request, from
 * the key's own limits as they stood at admission.
 */

ngx_int_t
ngx_http_qwen_keys_headers(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    u_char                   *p;
    ngx_http_qwen_subject_t  *s;

    if (!ctx->limited) {
        /* refused before the limits were asked (a body error, a model) */
        return NGX_OK;
    }

    s = &ctx->key->subject;

    if (s->rpm) {
        p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 8);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_qwen_add_header(r, "x-ratelimit-limit-requests", p,
                                     ngx_sprintf(p, "%ui", s->rpm) - p)
            != NGX_OK
            || ngx_http_qwen_add_header(r, "x-ratelimit-remaining-requests",
                   p + NGX_INT64_LEN,
                   ngx_sprintf(p + NGX_INT64_LEN, "%L",
                               ngx_max(ctx->remaining_requests, 0))
                   - (p + NGX_INT64_LEN))
               != NGX_OK
            || ngx_http_qwen_add_header(r, "x-ratelimit-reset-requests",
                   p + 2 * NGX_INT64_LEN,
                   ngx_sprintf(p + 2 * NGX_INT64_LEN, "%Ts", ctx->reset_in)
                   - (p + 2 * NGX_INT64_LEN))
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (s->tpm) {
        p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 8);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_qwen_add_header(r, "x-ratelimit-limit-tokens", p,
                                     ngx_sprintf(p, "%ui", s->tpm) - p)
            != NGX_OK
            || ngx_http_qwen_add_header(r, "x-ratelimit-remaining-tokens",
                   p + NGX_INT64_LEN,
                   ngx_sprintf(p + NGX_INT64_LEN, "%L",
                               ngx_max(ctx->remaining_tokens, 0))
                   - (p + NGX_INT64_LEN))
               != NGX_OK
            || ngx_http_qwen_add_header(r, "x-ratelimit-reset-tokens",
                   p + 2 * NGX_INT64_LEN,
                   ngx_sprintf(p + 2 * NGX_INT64_LEN, "%Ts", ctx->reset_in)
                   - (p + 2 * NGX_INT64_LEN))
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/* qwen_key_info; a client reads its own key's limits, usage and budget */

char *
ngx_http_qwen_key_info(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (qlcf->key_info) {
        return "is duplicate";
    }

    qlcf->key_info = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_qwen_key_info_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_key_info_handler(ngx_http_request_t *r)
{
    size_t                      len;
    u_char                     *p;
    uint64_t                    rpm, tpm, active, spent;
    time_t                      resets;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_http_qwen_ctx_t         ctx;
    ngx_http_qwen_key_t        *k;
    ngx_http_qwen_error_t       err;
    ngx_http_qwen_subject_t    *s;
    ngx_http_qwen_main_conf_t  *qmcf;

    rc = ngx_http_qwen_read_only(r, "key information");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    ngx_memzero(&ctx, sizeof(ngx_http_qwen_ctx_t));

    if (ngx_http_qwen_keys_authenticate(r, &ctx, &err) != NGX_OK) {
        return ngx_http_qwen_send_error(r, &err);
    }

    k = ctx.key;
    s = &k->subject;

    rpm = tpm = active = spent = 0;
    resets = 0;

    (void) ngx_http_qwen_limits_usage(qmcf->limits, s, &rpm, &tpm, &active,
                                      &spent, &resets);

    len = 512 + 6 * (s->id.len + k->owner.len)
          + (k->team ? k->team->id.len : 0) + 8 * NGX_INT64_LEN;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last, "{\"id\":\"%V\",\"owner\":", &s->id);

    if (k->owner.len) {
        /* qwen_json_escape() writes the quotes too */
        p = qwen_json_escape(p, k->owner.data, k->owner.len);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    if (k->team) {
        p = ngx_sprintf(p, ",\"team\":\"%V\"", &k->team->id);
    } else {
        p = ngx_sprintf(p, ",\"team\":null");
    }

    p = ngx_sprintf(p, ",\"limits\":{\"rpm\":%ui,\"tpm\":%ui,"
                    "\"concurrency\":%ui}", s->rpm, s->tpm, s->concurrency);

    p = ngx_sprintf(p, ",\"usage\":{\"requests_per_minute\":%uL,"
                    "\"tokens_per_minute\":%uL,\"concurrent\":%uL}",
                    rpm, tpm, active);

    if (s->budget_nano) {
        p = ngx_sprintf(p, ",\"budget\":{\"usd\":");
        p = ngx_http_qwen_format_usd(p, s->budget_nano);
        p = ngx_sprintf(p, ",\"spent\":");
        p = ngx_http_qwen_format_usd(p, spent);
        p = ngx_sprintf(p, ",\"remaining\":");
        p = ngx_http_qwen_format_usd(p, spent < s->budget_nano
                                        ? s->budget_nano - spent : 0);
        p = ngx_sprintf(p, ",\"resets_at\":%T}", resets);

    } else {
        p = ngx_sprintf(p, ",\"budget\":null");
    }

    if (k->expires) {
        p = ngx_sprintf(p, ",\"expires_at\":%T", k->expires);
    } else {
        p = ngx_sprintf(p, ",\"expires_at\":null");
    }

    p = ngx_cpymem(p, "}\n", 2);

    b->last = p;

    return ngx_http_qwen_send_json(r, NGX_HTTP_OK, b);
}


ngx_int_t
ngx_http_qwen_keys_add_variables(ngx_conf_t *cf)
{
    return ngx_http_qwen_add_variable_table(cf, ngx_http_qwen_key_vars);
}


/* $qwen_key (the alias), $qwen_key_team, $qwen_key_owner */

static ngx_int_t
ngx_http_qwen_variable_key(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t            *s;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_qwen_get_ctx(r->main);

    v->not_found = 1;

    if (ctx == NULL || ctx->key == NULL) {
        return NGX_OK;
    }

    if (data == 0) {
        s = &ctx->key->subject.id;

    } else if (data == 1) {
        if (ctx->key->team == NULL) {
            return NGX_OK;
        }

        s = &ctx->key->team->id;

    } else {
        s = &ctx->key->owner;
    }

    ngx_http_qwen_variable_set(v, s);

    return NGX_OK;
}


/* $qwen_budget_remaining: USD left in the key's period, after settling */

static ngx_int_t
ngx_http_qwen_variable_budget(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    uint64_t                    rpm, tpm, active, spent;
    time_t                      resets;
    ngx_http_qwen_ctx_t        *ctx;
    ngx_http_qwen_subject_t    *s;
    ngx_http_qwen_main_conf_t  *qmcf;

    ctx = ngx_http_qwen_get_ctx(r->main);

    v->not_found = 1;

    if (ctx == NULL || ctx->key == NULL || ctx->key->subject.budget_nano == 0)
    {
        return NGX_OK;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);
    s = &ctx->key->subject;

    if (ngx_http_qwen_limits_usage(qmcf->limits, s, &rpm, &tpm, &active,
                                   &spent, &resets)
        != NGX_OK)
    {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 12);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_http_qwen_format_usd(p, spent < s->budget_nano
                                         ? s->budget_nano - spent : 0)
             - p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
