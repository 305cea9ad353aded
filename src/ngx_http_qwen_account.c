
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * What a request used and cost, settled once when it ends: tokens from
 * the usage the filter read, the price from the catalogue, whether the
 * answer was complete.  The variables ask for it (the access log may run
 * before this module's log handler) and the log handler commits it to the
 * shared counters.
 *
 * Money is integer nano-dollars: prices are micro-dollars per 1M tokens,
 * so a token costs price / 1000 nano-dollars, which keeps every price of
 * up to three decimals exact and never rounds a small request to zero.
 */


#include "ngx_http_qwen_module.h"


/* tokens beyond this are counted, but priced as this many */
#define NGX_HTTP_QWEN_MAX_PRICED_TOKENS  1000000000


static void ngx_http_qwen_price(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_http_qwen_price_t *ngx_http_qwen_tier(
    ngx_http_qwen_price_t *prices, ngx_uint_t n, uint64_t prompt);


void
ngx_http_qwen_account(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qwen_usage_scan_t  *us;

    if (ctx->accounted) {
        return;
    }

    ctx->accounted = 1;

    us = ctx->usage;

    if (us == NULL) {
        return;
    }

    if (!ctx->body_scanned && !ctx->sse) {
        (void) qwen_usage_scan_finish(us);
    }

    if (us->has_usage) {
        ctx->tokens.prompt = us->prompt_tokens;
        ctx->tokens.completion = us->completion_tokens;
        ctx->tokens.total = us->total_tokens;
        ctx->tokens.cached = us->cached_tokens;
        ctx->tokens.reasoning = us->reasoning_tokens;

        if (ctx->tokens.total == 0) {
            ctx->tokens.total = ctx->tokens.prompt + ctx->tokens.completion;
        }

        if (!ctx->cache_hit) {
            ngx_http_qwen_price(r, ctx);
        }

        /* a cached answer cost nothing upstream: cost_nano stays 0 */
    }

    ctx->incomplete = ctx->sse ? !us->done_seen : !us->complete;

    if (ctx->incomplete) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: incomplete answer from model \"%V\" (%s): "
                      "%ui events, %s",
                      &ctx->model,
                      r->connection->error ? "the client went away"
                                           : "the upstream stopped",
                      (ngx_uint_t) us->events,
                      us->has_usage ? "usage counted as seen"
                                    : "no usage seen");
    }
}


static void
ngx_http_qwen_price(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    int64_t                 input_price, output_price, cached_price;
    uint64_t                prompt, cached, completion, sum;
    ngx_http_qwen_price_t  *tier;

    if (ctx->prices == NULL || ctx->nprices == 0) {
        /* no deployment's prices, nor the catalogue entry's */
        ctx->unpriced = 1;
        return;
    }

    prompt = ngx_min(ctx->tokens.prompt, NGX_HTTP_QWEN_MAX_PRICED_TOKENS);
    completion = ngx_min(ctx->tokens.completion,
                         NGX_HTTP_QWEN_MAX_PRICED_TOKENS);
    cached = ngx_min(ctx->tokens.cached, prompt);

    /* the whole request is billed at the tier of its input size */
    tier = ngx_http_qwen_tier(ctx->prices, ctx->nprices, ctx->tokens.prompt);

    input_price = tier->input;
    cached_price = tier->cached_input >= 0 ? tier->cached_input : input_price;

    /* a request that reasoned was in thinking mode: all its output is */
    output_price = (ctx->tokens.reasoning && tier->thinking_output >= 0)
                   ? tier->thinking_output : tier->output;

    sum = (prompt - cached) * (uint64_t) input_price
          + cached * (uint64_t) cached_price
          + completion * (uint64_t) output_price;

    ctx->cost_nano = sum / 1000;

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen cost %uL nano-USD: %uL input (%uL cached), "
                   "%uL output at tier up to %uL, thinking %d",
                   ctx->cost_nano, prompt, cached, completion, tier->up_to,
                   output_price != tier->output);
}


static ngx_http_qwen_price_t *
ngx_http_qwen_tier(ngx_http_qwen_price_t *prices, ngx_uint_t n,
    uint64_t prompt)
{
    ngx_uint_t  i;

    for (i = 0; i < n - 1; i++) {
        if (prompt <= prices[i].up_to) {
            break;
        }
    }

    /* past the last tier's bound: the last tier */

    return &prices[i];
}


/* "0.000123456": nano-dollars as decimal dollars */

u_char *
ngx_http_qwen_format_usd(u_char *p, uint64_t nano)
{
    return ngx_sprintf(p, "%uL.%09uL", nano / 1000000000,
                       nano % 1000000000);
}
