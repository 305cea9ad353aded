
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * GET /v1/models, answered from the catalogue in OpenAI's list format.
 * The answer is built once, at configuration time.
 */


#include "ngx_http_qwen_module.h"


ngx_int_t
ngx_http_qwen_models_build(ngx_conf_t *cf, ngx_http_qwen_main_conf_t *qmcf)
{
    size_t                  len;
    u_char                 *p;
    ngx_uint_t              i;
    ngx_http_qwen_model_t **model;

    model = qmcf->models.elts;

    len = sizeof("{\"object\":\"list\",\"data\":[]}\n") - 1;

    for (i = 0; i < qmcf->models.nelts; i++) {
        len += sizeof("{\"id\":,\"object\":\"model\",\"created\":0,"
                      "\"owned_by\":},") - 1
               + qwen_json_escaped_len(model[i]->id.data, model[i]->id.len)
               + qwen_json_escaped_len(model[i]->provider.data,
                                       model[i]->provider.len);
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    qmcf->models_json.data = p;

    p = ngx_cpymem(p, "{\"object\":\"list\",\"data\":[",
                   sizeof("{\"object\":\"list\",\"data\":[") - 1);

    for (i = 0; i < qmcf->models.nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, "{\"id\":", sizeof("{\"id\":") - 1);
        p = qwen_json_escape(p, model[i]->id.data, model[i]->id.len);
        p = ngx_cpymem(p, ",\"object\":\"model\",\"created\":0,\"owned_by\":",
                       sizeof(",\"object\":\"model\",\"created\":0,"
                              "\"owned_by\":") - 1);
        p = qwen_json_escape(p, model[i]->provider.data,
                             model[i]->provider.len);
        *p++ = '}';
    }

    p = ngx_cpymem(p, "]}\n", 3);

    qmcf->models_json.len = p - qmcf->models_json.data;

    return NGX_OK;
}


ngx_int_t
ngx_http_qwen_models_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_http_qwen_main_conf_t  *qmcf;

    rc = ngx_http_qwen_read_only(r, "model list");
    if (rc != NGX_DECLINED) {
        return rc;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_qwen_module);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the answer made at configuration time, read only */
    b->pos = qmcf->models_json.data;
    b->last = qmcf->models_json.data + qmcf->models_json.len;
    b->memory = 1;

    return ngx_http_qwen_send_json(r, NGX_HTTP_OK, b);
}
