
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * The model catalogue: which names clients may send, which upstream model
 * each one becomes, where it lives and what it costs.  It is read once,
 * at configuration time, from a JSON file (with cJSON) and from inline
 * directives; requests only look names up in an nginx hash and, failing
 * that, try prefixes and patterns.
 */


#include <cjson/cJSON.h>

#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_MAX_CAPTURES  10


static ngx_str_t  ngx_http_qwen_default_provider = ngx_string("alibaba-cloud");

static ngx_str_t  ngx_http_qwen_default_prefixes[] = {
    ngx_string("qwen/"),
    ngx_string("alibaba-cloud/"),
};


static ngx_int_t ngx_http_qwen_catalog_add_name(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *name,
    ngx_http_qwen_model_t *model, const char *where);
static char *ngx_http_qwen_catalog_load(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *file, cJSON *root);
static char *ngx_http_qwen_catalog_load_model(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, cJSON *item, ngx_uint_t index);
static char *ngx_http_qwen_catalog_load_prices(ngx_conf_t *cf,
    ngx_http_qwen_model_t *model, cJSON *pricing);
static char *ngx_http_qwen_catalog_load_deployments(ngx_conf_t *cf,
    ngx_http_qwen_model_t *model, cJSON *list);
static char *ngx_http_qwen_json_time(cJSON *v, ngx_msec_t *msec);
static ngx_int_t ngx_http_qwen_deploy_add(ngx_conf_t *cf,
    ngx_http_qwen_model_t *model, ngx_str_t *region, ngx_str_t *id,
    ngx_uint_t weight);
static char *ngx_http_qwen_json_price(cJSON *item, const char *name,
    int64_t *value);
static char *ngx_http_qwen_json_str(ngx_conf_t *cf, cJSON *item,
    const char *name, ngx_str_t *value);
static char *ngx_http_qwen_pattern_add(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *regex,
    ngx_str_t *replacement, ngx_str_t *provider);
static ngx_int_t ngx_http_qwen_parse_price(ngx_str_t *value,
    int64_t *price);
static ngx_array_t *ngx_http_qwen_split_list(ngx_conf_t *cf, u_char *p,
    u_char *last);
static ngx_http_qwen_model_t *ngx_http_qwen_catalog_lookup(
    ngx_http_qwen_main_conf_t *qmcf, u_char *name, size_t len);
static ngx_int_t ngx_http_qwen_pattern_apply(ngx_http_request_t *r,
    ngx_http_qwen_pattern_t *pt, ngx_str_t *name, ngx_str_t *result);


/* qwen_models_file path; */

char *
ngx_http_qwen_models_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    char        *rv;
    cJSON       *root;
    ngx_str_t   *value, file, json;

    if (qmcf->models_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    qmcf->models_file = file;

    if (ngx_http_qwen_conf_read_json(cf, &file, 64 * 1024 * 1024,
                                     "model catalogue", &json,
                                     (void **) &root)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_qwen_catalog_load(cf, qmcf, &file, root);

    cJSON_Delete(root);
    ngx_pfree(cf->pool, json.data);

    return rv;
}


static char *
ngx_http_qwen_catalog_load(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf,
    ngx_str_t *file, cJSON *root)
{
    char        *rv;
    cJSON       *item, *models, *prefixes, *patterns;
    ngx_str_t   *s, regex, replacement, provider;
    ngx_uint_t   i;

    if (!cJSON_IsObject(root)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model catalogue \"%V\" must be a JSON object",
                           file);
        return NGX_CONF_ERROR;
    }

    models = cJSON_GetObjectItemCaseSensitive(root, "models");

    if (!cJSON_IsArray(models)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model catalogue \"%V\" has no \"models\" array",
                           file);
        return NGX_CONF_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, models) {
        rv = ngx_http_qwen_catalog_load_model(cf, qmcf, item, i++);
        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model catalogue \"%V\": models[%ui]: %s",
                               file, i - 1, rv);
            return NGX_CONF_ERROR;
        }
    }

    prefixes = cJSON_GetObjectItemCaseSensitive(root, "prefixes");

    if (prefixes != NULL) {
        if (!cJSON_IsArray(prefixes)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model catalogue \"%V\": \"prefixes\" must be "
                               "an array of strings", file);
            return NGX_CONF_ERROR;
        }

        qmcf->file_prefixes = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_str_t));
        if (qmcf->file_prefixes == NULL) {
            return NGX_CONF_ERROR;
        }

        cJSON_ArrayForEach(item, prefixes) {
            s = ngx_array_push(qmcf->file_prefixes);
            if (s == NULL) {
                return NGX_CONF_ERROR;
            }

            rv = ngx_http_qwen_json_str(cf, item, NULL, s);
            if (rv != NGX_CONF_OK || s->len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "model catalogue \"%V\": \"prefixes\" "
                                   "must hold non-empty strings", file);
                return NGX_CONF_ERROR;
            }
        }
    }

    patterns = cJSON_GetObjectItemCaseSensitive(root, "patterns");

    if (patterns != NULL) {
        if (!cJSON_IsArray(patterns)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model catalogue \"%V\": \"patterns\" must "
                               "be an array", file);
            return NGX_CONF_ERROR;
        }

        i = 0;

        cJSON_ArrayForEach(item, patterns) {
            ngx_str_null(&provider);

            rv = ngx_http_qwen_json_str(cf, item, "match", &regex);

            if (rv == NGX_CONF_OK) {
                rv = ngx_http_qwen_json_str(cf, item, "model", &replacement);
            }

            if (rv == NGX_CONF_OK
                && cJSON_GetObjectItemCaseSensitive(item, "provider"))
            {
                rv = ngx_http_qwen_json_str(cf, item, "provider", &provider);
            }

            if (rv != NGX_CONF_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "model catalogue \"%V\": patterns[%ui]: "
                                   "%s", file, i, rv);
                return NGX_CONF_ERROR;
            }

            rv = ngx_http_qwen_pattern_add(cf, qmcf, &regex, &replacement,
                                           &provider);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            i++;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_catalog_load_model(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, cJSON *item, ngx_uint_t index)
{
    char                   *rv;
    cJSON                  *v, *alias;
    ngx_str_t               name, *region;
    ngx_http_qwen_model_t  *model, **mp;

    if (!cJSON_IsObject(item)) {
        return "must be an object";
    }

    model = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_model_t));
    if (model == NULL) {
        return NGX_CONF_ERROR;
    }

    model->first_byte_timeout = NGX_CONF_UNSET_MSEC;

    rv = ngx_http_qwen_json_str(cf, item, "id", &model->id);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (model->id.len == 0) {
        return "\"id\" must not be empty";
    }

    model->provider = ngx_http_qwen_default_provider;

    if (cJSON_GetObjectItemCaseSensitive(item, "provider")) {
        rv = ngx_http_qwen_json_str(cf, item, "provider", &model->provider);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "context");

    if (v != NULL) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0
            || v->valuedouble > 1e12)
        {
            return "\"context\" must be a number of tokens";
        }

        model->context = (ngx_uint_t) v->valuedouble;
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "regions");

    if (v != NULL) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
            return "\"regions\" must be a non-empty array of region names";
        }

        model->regions = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (model->regions == NULL) {
            return NGX_CONF_ERROR;
        }

        cJSON_ArrayForEach(alias, v) {
            region = ngx_array_push(model->regions);
            if (region == NULL) {
                return NGX_CONF_ERROR;
            }

            rv = ngx_http_qwen_json_str(cf, alias, NULL, region);
            if (rv != NGX_CONF_OK) {
                return "\"regions\" must hold region names";
            }
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "pricing");

    if (v != NULL) {
        rv = ngx_http_qwen_catalog_load_prices(cf, model, v);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "first_byte_timeout");

    if (v != NULL) {
        rv = ngx_http_qwen_json_time(v, &model->first_byte_timeout);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "deployments");

    if (v != NULL) {
        rv = ngx_http_qwen_catalog_load_deployments(cf, model, v);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (ngx_http_qwen_catalog_add_name(cf, qmcf, &model->id, model,
                                       "the catalogue file")
        != NGX_OK)
    {
        return "the model is defined twice";
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "aliases");

    if (v != NULL) {
        if (!cJSON_IsArray(v)) {
            return "\"aliases\" must be an array of strings";
        }

        cJSON_ArrayForEach(alias, v) {
            rv = ngx_http_qwen_json_str(cf, alias, NULL, &name);
            if (rv != NGX_CONF_OK || name.len == 0) {
                return "\"aliases\" must hold non-empty strings";
            }

            if (ngx_http_qwen_catalog_add_name(cf, qmcf, &name, model,
                                               "the catalogue file")
                != NGX_OK)
            {
                return "an alias names a model defined already";
            }
        }
    }

    mp = ngx_array_push(&qmcf->models);
    if (mp == NULL) {
        return NGX_CONF_ERROR;
    }

    *mp = model;

    return NGX_CONF_OK;
}


/*
 * "deployments": [{"region": "singapore", "model": "qwen-plus",
 *                  "pricing": ..., "weight": 2}, ...]
 */

static char *
ngx_http_qwen_catalog_load_deployments(ngx_conf_t *cf,
    ngx_http_qwen_model_t *model, cJSON *list)
{
    char                        *rv;
    cJSON                       *item, *v;
    ngx_str_t                    region, id;
    ngx_uint_t                   weight;
    ngx_http_qwen_model_t        prices;
    ngx_http_qwen_deployment_t  *d;

    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        return "\"deployments\" must be a non-empty array";
    }

    if (cJSON_GetArraySize(list) > NGX_HTTP_QWEN_MAX_CHAIN) {
        return "\"deployments\" may hold at most 16 deployments";
    }

    cJSON_ArrayForEach(item, list) {

        if (!cJSON_IsObject(item)) {
            return "a deployment must be an object";
        }

        rv = ngx_http_qwen_json_str(cf, item, "region", &region);
        if (rv != NGX_CONF_OK || region.len == 0) {
            return "a deployment needs \"region\", a qwen_region name";
        }

        ngx_str_null(&id);

        if (cJSON_GetObjectItemCaseSensitive(item, "model")) {
            rv = ngx_http_qwen_json_str(cf, item, "model", &id);
            if (rv != NGX_CONF_OK || id.len == 0) {
                return "a deployment's \"model\" must be a model id";
            }
        }

        weight = 0;
        v = cJSON_GetObjectItemCaseSensitive(item, "weight");

        if (v != NULL) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 1
                || v->valuedouble > 1000
                || v->valuedouble != (double) (ngx_uint_t) v->valuedouble)
            {
                return "a deployment's \"weight\" must be a whole number "
                       "from 1 to 1000";
            }

            weight = (ngx_uint_t) v->valuedouble;
        }

        if (ngx_http_qwen_deploy_add(cf, model, &region, &id, weight)
            != NGX_OK)
        {
            return "a deployment's region or model id has a control "
                   "character or a blank, or the same deployment is written "
                   "twice, or there are more than 16";
        }

        d = model->deployments->elts;
        d = &d[model->deployments->nelts - 1];

        v = cJSON_GetObjectItemCaseSensitive(item, "pricing");

        if (v != NULL) {
            ngx_memzero(&prices, sizeof(ngx_http_qwen_model_t));

            rv = ngx_http_qwen_catalog_load_prices(cf, &prices, v);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            d->prices = prices.prices;
            d->nprices = prices.nprices;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_deploy_add(ngx_conf_t *cf, ngx_http_qwen_model_t *model,
    ngx_str_t *region, ngx_str_t *id, ngx_uint_t weight)
{
    size_t                       i;
    ngx_uint_t                   k;
    ngx_http_qwen_deployment_t  *d;

    for (i = 0; i < id->len; i++) {
        if (id->data[i] < 0x20 || id->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < region->len; i++) {
        if (region->data[i] <= 0x20 || region->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    if (model->deployments == NULL) {
        model->deployments = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_qwen_deployment_t));
        if (model->deployments == NULL) {
            return NGX_ERROR;
        }
    }

    if (model->deployments->nelts >= NGX_HTTP_QWEN_MAX_CHAIN) {
        return NGX_ERROR;
    }

    d = model->deployments->elts;

    for (k = 0; k < model->deployments->nelts; k++) {
        if (d[k].region_name.len == region->len
            && ngx_strncmp(d[k].region_name.data, region->data, region->len)
               == 0
            && ((d[k].model.len == id->len
                 && ngx_strncmp(d[k].model.data, id->data, id->len) == 0)))
        {
            /* the same deployment twice */
            return NGX_ERROR;
        }
    }

    d = ngx_array_push(model->deployments);
    if (d == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(d, sizeof(ngx_http_qwen_deployment_t));

    d->region_name = *region;
    d->model = *id;
    d->weight = weight;

    return NGX_OK;
}


/* a time: a number of seconds, or a string nginx reads ("500ms", "20s") */

static char *
ngx_http_qwen_json_time(cJSON *v, ngx_msec_t *msec)
{
    ngx_str_t   s;
    ngx_msec_t  t;

    if (cJSON_IsNumber(v) && v->valuedouble >= 0
        && v->valuedouble <= 86400)
    {
        *msec = (ngx_msec_t) (v->valuedouble * 1000);
        return NGX_CONF_OK;
    }

    if (cJSON_IsString(v)) {
        s.data = (u_char *) v->valuestring;
        s.len = ngx_strlen(v->valuestring);

        t = ngx_parse_time(&s, 0);

        if (t != (ngx_msec_t) NGX_ERROR) {
            *msec = t;
            return NGX_CONF_OK;
        }
    }

    return "\"first_byte_timeout\" must be a number of seconds or a time "
           "such as \"500ms\" or \"20s\"";
}


/* "pricing": one tier as an object, or an array of tiers */

static char *
ngx_http_qwen_catalog_load_prices(ngx_conf_t *cf,
    ngx_http_qwen_model_t *model, cJSON *pricing)
{
    char                   *rv;
    cJSON                  *tier, *v;
    ngx_uint_t              i, n;
    ngx_http_qwen_price_t  *pr;

    if (cJSON_IsObject(pricing)) {
        n = 1;

    } else if (cJSON_IsArray(pricing) && cJSON_GetArraySize(pricing) > 0) {
        n = cJSON_GetArraySize(pricing);

    } else {
        return "\"pricing\" must be an object or a non-empty array of tiers";
    }

    model->prices = ngx_pcalloc(cf->pool, n * sizeof(ngx_http_qwen_price_t));
    if (model->prices == NULL) {
        return NGX_CONF_ERROR;
    }

    model->nprices = n;

    for (i = 0; i < n; i++) {
        tier = (n == 1 && cJSON_IsObject(pricing))
               ? pricing : cJSON_GetArrayItem(pricing, i);
        pr = &model->prices[i];

        if (!cJSON_IsObject(tier)) {
            return "a price tier must be an object";
        }

        v = cJSON_GetObjectItemCaseSensitive(tier, "up_to");

        if (v != NULL) {
            if (!cJSON_IsNumber(v) || v->valuedouble < 1) {
                return "\"up_to\" must be a positive number of tokens";
            }

            pr->up_to = (uint64_t) v->valuedouble;

            if (i > 0 && pr->up_to <= model->prices[i - 1].up_to) {
                return "price tiers must be in ascending \"up_to\" order";
            }

        } else if (i != n - 1) {
            return "only the last price tier may omit \"up_to\"";
        }

        rv = ngx_http_qwen_json_price(tier, "input", &pr->input);
        if (rv == NGX_CONF_OK) {
            rv = ngx_http_qwen_json_price(tier, "output", &pr->output);
        }

        if (rv != NGX_CONF_OK) {
            return rv;
        }

        if (pr->input < 0 || pr->output < 0) {
            return "a price tier needs \"input\" and \"output\" prices";
        }

        rv = ngx_http_qwen_json_price(tier, "cached_input",
                                      &pr->cached_input);
        if (rv == NGX_CONF_OK) {
            rv = ngx_http_qwen_json_price(tier, "thinking_output",
                                          &pr->thinking_output);
        }

        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    return NGX_CONF_OK;
}


/* a price in USD per 1M tokens, kept as integer micro-USD; -1 if absent */

static char *
ngx_http_qwen_json_price(cJSON *item, const char *name, int64_t *value)
{
    cJSON  *v;

    *value = -1;

    v = cJSON_GetObjectItemCaseSensitive(item, name);

    if (v == NULL) {
        return NGX_CONF_OK;
    }

    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e6) {
        return "a price must be a number of USD per 1M tokens, "
               "from 0 to 1000000";
    }

    *value = (int64_t) (v->valuedouble * 1e6 + 0.5);

    return NGX_CONF_OK;
}


/* item[name], or item itself if name is NULL, as a string in cf->pool */

static char *
ngx_http_qwen_json_str(ngx_conf_t *cf, cJSON *item, const char *name,
    ngx_str_t *value)
{
    cJSON  *v;

    v = (name == NULL) ? item : cJSON_GetObjectItemCaseSensitive(item, name);

    if (!cJSON_IsString(v)) {
        return (name == NULL) ? "must be a string"
                              : "a required string member is missing";
    }

    /* NUL-terminated too: ngx_regex_compile() may want a C string */

    value->len = ngx_strlen(v->valuestring);
    value->data = ngx_pnalloc(cf->pool, value->len + 1);

    if (value->data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(value->data, v->valuestring, value->len + 1);

    return NGX_CONF_OK;
}


/*
 * qwen_model id [alias=name]... [provider=p] [regions=a,b] [context=n]
 *            [input=usd] [output=usd] [cached_input=usd]
 *            [thinking_output=usd] [deploy=region[:model-id]]...
 *            [first_byte_timeout=time];
 */

char *
ngx_http_qwen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    u_char                 *colon;
    int64_t                *price;
    ngx_int_t               n;
    ngx_str_t              *value, v, *aliases, id;
    ngx_uint_t              i, naliases;
    ngx_http_qwen_price_t  *pr;
    ngx_http_qwen_model_t  *model, **mp;

    value = cf->args->elts;

    model = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_model_t));
    pr = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_price_t));
    aliases = ngx_palloc(cf->temp_pool, cf->args->nelts * sizeof(ngx_str_t));

    if (model == NULL || pr == NULL || aliases == NULL) {
        return NGX_CONF_ERROR;
    }

    model->id = value[1];
    model->provider = ngx_http_qwen_default_provider;
    model->first_byte_timeout = NGX_CONF_UNSET_MSEC;

    pr->input = -1;
    pr->output = -1;
    pr->cached_input = -1;
    pr->thinking_output = -1;

    naliases = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "alias=", 6) == 0) {
            aliases[naliases].data = value[i].data + 6;
            aliases[naliases].len = value[i].len - 6;

            if (aliases[naliases].len == 0) {
                goto invalid;
            }

            naliases++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "provider=", 9) == 0) {
            model->provider.data = value[i].data + 9;
            model->provider.len = value[i].len - 9;

            if (model->provider.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "regions=", 8) == 0) {
            model->regions = ngx_http_qwen_split_list(cf, value[i].data + 8,
                                                 value[i].data + value[i].len);
            if (model->regions == NULL) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "deploy=", 7) == 0) {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;
            ngx_str_null(&id);

            colon = ngx_strlchr(v.data, v.data + v.len, ':');

            if (colon) {
                id.data = colon + 1;
                id.len = v.data + v.len - id.data;
                v.len = colon - v.data;

                if (id.len == 0) {
                    goto invalid;
                }
            }

            if (v.len == 0
                || ngx_http_qwen_deploy_add(cf, model, &v, &id, 0) != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "first_byte_timeout=", 19) == 0) {
            v.data = value[i].data + 19;
            v.len = value[i].len - 19;

            model->first_byte_timeout = ngx_parse_time(&v, 0);

            if (model->first_byte_timeout == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "context=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            model->context = n;
            continue;
        }

        price = NULL;

        if (ngx_strncmp(value[i].data, "input=", 6) == 0) {
            price = &pr->input;
            v.data = value[i].data + 6;

        } else if (ngx_strncmp(value[i].data, "output=", 7) == 0) {
            price = &pr->output;
            v.data = value[i].data + 7;

        } else if (ngx_strncmp(value[i].data, "cached_input=", 13) == 0) {
            price = &pr->cached_input;
            v.data = value[i].data + 13;

        } else if (ngx_strncmp(value[i].data, "thinking_output=", 16) == 0) {
            price = &pr->thinking_output;
            v.data = value[i].data + 16;
        }

        if (price == NULL) {
            goto invalid;
        }

        v.len = value[i].data + value[i].len - v.data;

        if (ngx_http_qwen_parse_price(&v, price) != NGX_OK) {
            goto invalid;
        }
    }

    if (pr->input >= 0 || pr->output >= 0) {
        if (pr->input < 0 || pr->output < 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model \"%V\" needs both \"input=\" and "
                               "\"output=\" prices, or neither", &model->id);
            return NGX_CONF_ERROR;
        }

        model->prices = pr;
        model->nprices = 1;

    } else if (pr->cached_input >= 0 || pr->thinking_output >= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model \"%V\" has extra prices but no \"input=\" "
                           "and \"output=\" prices", &model->id);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_catalog_add_name(cf, qmcf, &model->id, model,
                                       "qwen_model")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < naliases; i++) {
        if (ngx_http_qwen_catalog_add_name(cf, qmcf, &aliases[i], model,
                                           "qwen_model")
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    mp = ngx_array_push(&qmcf->models);
    if (mp == NULL) {
        return NGX_CONF_ERROR;
    }

    *mp = model;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* a decimal number of USD per 1M tokens to micro-USD, without floats */

static ngx_int_t
ngx_http_qwen_parse_price(ngx_str_t *value, int64_t *price)
{
    u_char     *p, *last;
    int64_t     units, scale;
    ngx_uint_t  digits, dot;

    p = value->data;
    last = p + value->len;

    units = 0;
    scale = 1000000;
    digits = 0;
    dot = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p == '.' && !dot) {
            dot = 1;
            continue;
        }

        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        if (dot) {
            if (scale == 1) {
                return NGX_ERROR;       /* more than 6 decimals */
            }

            scale /= 10;
            units += (*p - '0') * scale;

        } else {
            if (units > 1000000 * (int64_t) 1000000) {
                return NGX_ERROR;
            }

            units = units * 10 + (*p - '0') * (int64_t) 1000000;
        }

        digits++;
    }

    if (digits == 0) {
        return NGX_ERROR;
    }

    *price = units;

    return NGX_OK;
}


static ngx_array_t *
ngx_http_qwen_split_list(ngx_conf_t *cf, u_char *p, u_char *last)
{
    u_char       *comma;
    ngx_str_t    *s;
    ngx_array_t  *a;

    a = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
    if (a == NULL) {
        return NULL;
    }

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma == p) {
            return NULL;
        }

        s = ngx_array_push(a);
        if (s == NULL) {
            return NULL;
        }

        s->data = p;
        s->len = comma - p;

        p = comma + 1;
    }

    return a->nelts ? a : NULL;
}


/* qwen_model_pattern regex replacement [provider=p]; */

char *
ngx_http_qwen_model_pattern(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    ngx_str_t  *value, provider;

    value = cf->args->elts;

    ngx_str_null(&provider);

    if (cf->args->nelts == 4) {
        if (ngx_strncmp(value[3].data, "provider=", 9) != 0
            || value[3].len == 9)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[3]);
            return NGX_CONF_ERROR;
        }

        provider.data = value[3].data + 9;
        provider.len = value[3].len - 9;
    }

    return ngx_http_qwen_pattern_add(cf, qmcf, &value[1], &value[2],
                                     &provider);
}


static char *
ngx_http_qwen_pattern_add(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf,
    ngx_str_t *regex, ngx_str_t *replacement, ngx_str_t *provider)
{
    u_char                   *p, *last, errstr[NGX_MAX_CONF_ERRSTR];
    ngx_uint_t                n;
    ngx_regex_compile_t       rc;
    ngx_http_qwen_pattern_t  *pt;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = *regex;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "model pattern: %V",
                           &rc.err);
        return NGX_CONF_ERROR;
    }

    /* every $N in the replacement must name a capture the regex has */

    last = replacement->data + replacement->len;

    for (p = replacement->data; p < last; p++) {
        if (*p != '$') {
            continue;
        }

        if (p + 1 == last || p[1] < '0' || p[1] > '9') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model pattern \"%V\": \"$\" in the "
                               "replacement \"%V\" must be followed by a "
                               "capture number", regex, replacement);
            return NGX_CONF_ERROR;
        }

        n = p[1] - '0';

        if (n > (ngx_uint_t) rc.captures) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model pattern \"%V\" has no capture $%ui "
                               "used in \"%V\"", regex, n, replacement);
            return NGX_CONF_ERROR;
        }
    }

    if ((ngx_uint_t) rc.captures >= NGX_HTTP_QWEN_MAX_CAPTURES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model pattern \"%V\" has more than %d captures",
                           regex, NGX_HTTP_QWEN_MAX_CAPTURES - 1);
        return NGX_CONF_ERROR;
    }

    pt = ngx_array_push(&qmcf->patterns);
    if (pt == NULL) {
        return NGX_CONF_ERROR;
    }

    pt->regex = rc.regex;
    pt->source = *regex;
    pt->replacement = *replacement;
    pt->captures = rc.captures;
    pt->provider = provider->len ? *provider : ngx_http_qwen_default_provider;

    return NGX_CONF_OK;
}


/* qwen_model_prefixes prefix... | off; */

char *
ngx_http_qwen_model_prefixes(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    ngx_str_t   *value, *s;
    ngx_uint_t   i;

    if (qmcf->prefixes) {
        return "is duplicate";
    }

    value = cf->args->elts;

    qmcf->prefixes = ngx_array_create(cf->pool, cf->args->nelts,
                                      sizeof(ngx_str_t));
    if (qmcf->prefixes == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            return "takes non-empty prefixes";
        }

        s = ngx_array_push(qmcf->prefixes);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_catalog_add_name(ngx_conf_t *cf,
    ngx_http_qwen_main_conf_t *qmcf, ngx_str_t *name,
    ngx_http_qwen_model_t *model, const char *where)
{
    ngx_int_t   rc;
    ngx_str_t   key;

    /* ngx_hash_add_key() lower-cases the key in place */

    key.len = name->len;
    key.data = ngx_pstrdup(cf->pool, name);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_hash_add_key(qmcf->names_keys, &key, model,
                          0);

    if (rc == NGX_BUSY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "model name \"%V\" in %s is defined already",
                           name, where);
        return NGX_ERROR;
    }

    return (rc == NGX_OK) ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_http_qwen_catalog_init(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_uint_t      i;
    ngx_str_t      *s;
    ngx_hash_init_t hash;

    hash.hash = &qmcf->names;
    hash.key = ngx_hash_key_lc;
    hash.max_size = 4096;
    /* room for the longest name a request may carry */
    hash.bucket_size = ngx_align(QWEN_JSON_MODEL_MAX + 2 * sizeof(void *),
                                 ngx_cacheline_size);
    hash.name = "qwen_models_hash";
    hash.pool = cf->pool;
    hash.temp_pool = NULL;

    if (ngx_hash_init(&hash, qmcf->names_keys->keys.elts,
                      qmcf->names_keys->keys.nelts)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    qmcf->names_keys = NULL;

    /* the prefixes: the directive's, else the file's, else the defaults */

    if (qmcf->prefixes == NULL) {
        qmcf->prefixes = qmcf->file_prefixes;
    }

    if (qmcf->prefixes == NULL) {
        qmcf->prefixes = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (qmcf->prefixes == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < sizeof(ngx_http_qwen_default_prefixes)
                        / sizeof(ngx_str_t); i++)
        {
            s = ngx_array_push(qmcf->prefixes);
            if (s == NULL) {
                return NGX_ERROR;
            }

            *s = ngx_http_qwen_default_prefixes[i];
        }
    }

    return NGX_OK;
}


static ngx_http_qwen_model_t *
ngx_http_qwen_catalog_lookup(ngx_http_qwen_main_conf_t *qmcf, u_char *name,
    size_t len)
{
    u_char      lc[QWEN_JSON_MODEL_MAX];
    ngx_uint_t  key;

    if (len > QWEN_JSON_MODEL_MAX) {
        return NULL;
    }

    key = ngx_hash_strlow(lc, name, len);

    return ngx_hash_find(&qmcf->names, key, lc, len);
}


/*
 * Resolves ctx->requested_model, in this order: the exact name; the name
 * with a recognised organisation prefix removed; the patterns, on that
 * name; then the policy for unknown models.  Returns NGX_DECLINED when the
 * model is to be rejected.
 */

ngx_int_t
ngx_http_qwen_catalog_resolve(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t unknown_policy)
{
    ngx_int_t                   rc;
    ngx_str_t                   name, *prefix, result;
    ngx_uint_t                  i;
    ngx_http_qwen_model_t      *model;
    ngx_http_qwen_pattern_t    *pt;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    name = ctx->requested_model;

    model = ngx_http_qwen_catalog_lookup(qmcf, name.data, name.len);

    if (model == NULL) {
        prefix = qmcf->prefixes->elts;

        for (i = 0; i < qmcf->prefixes->nelts; i++) {
            if (name.len > prefix[i].len
                && ngx_strncasecmp(name.data, prefix[i].data, prefix[i].len)
                   == 0)
            {
                name.data += prefix[i].len;
                name.len -= prefix[i].len;

                model = ngx_http_qwen_catalog_lookup(qmcf, name.data,
                                                     name.len);
                break;
            }
        }
    }

    if (model != NULL) {
        ctx->entry = model;
        ctx->model = model->id;
        ctx->provider = model->provider;
        return NGX_OK;
    }

    pt = qmcf->patterns.elts;

    for (i = 0; i < qmcf->patterns.nelts; i++) {
        rc = ngx_http_qwen_pattern_apply(r, &pt[i], &name, &result);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            continue;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "qwen model pattern \"%V\" gave \"%V\"",
                       &pt[i].source, &result);

        model = ngx_http_qwen_catalog_lookup(qmcf, result.data, result.len);

        if (model != NULL) {
            ctx->entry = model;
            ctx->model = model->id;
            ctx->provider = model->provider;

        } else {
            ctx->model = result;
            ctx->provider = pt[i].provider;
        }

        return NGX_OK;
    }

    if (unknown_policy == NGX_HTTP_QWEN_UNKNOWN_PASS) {
        ctx->model = name;
        ctx->provider = ngx_http_qwen_default_provider;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_qwen_pattern_apply(ngx_http_request_t *r,
    ngx_http_qwen_pattern_t *pt, ngx_str_t *name, ngx_str_t *result)
{
    int         captures[NGX_HTTP_QWEN_MAX_CAPTURES * 3];
    size_t      len;
    u_char     *p, *s, *last;
    ngx_int_t   rc;
    ngx_uint_t  n;

    rc = ngx_regex_exec(pt->regex, name, captures,
                        NGX_HTTP_QWEN_MAX_CAPTURES * 3);

    if (rc == NGX_REGEX_NO_MATCHED) {
        return NGX_DECLINED;
    }

    if (rc < 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      ngx_regex_exec_n " failed: %i on \"%V\" using \"%V\"",
                      rc, name, &pt->source);
        return NGX_ERROR;
    }

    /* rc is the number of captures set, plus one; unset ones are empty */

    last = pt->replacement.data + pt->replacement.len;
    len = 0;

    for (p = pt->replacement.data; p < last; p++) {
        if (*p == '$') {
            n = *++p - '0';

            if ((ngx_int_t) n < rc && captures[2 * n] >= 0) {
                len += captures[2 * n + 1] - captures[2 * n];
            }

        } else {
            len++;
        }
    }

    s = ngx_pnalloc(r->pool, len);
    if (s == NULL) {
        return NGX_ERROR;
    }

    result->data = s;
    result->len = len;

    for (p = pt->replacement.data; p < last; p++) {
        if (*p == '$') {
            n = *++p - '0';

            if ((ngx_int_t) n < rc && captures[2 * n] >= 0) {
                s = ngx_cpymem(s, name->data + captures[2 * n],
                               captures[2 * n + 1] - captures[2 * n]);
            }

        } else {
            *s++ = *p;
        }
    }

    return NGX_OK;
}
