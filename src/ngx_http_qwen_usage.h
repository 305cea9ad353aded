
/*
 * Copyright (C) the ngx_http_qwen_module authors
 *
 * An incremental scanner of LLM response bodies that extracts the token
 * usage and the model name, either from one JSON document (a chat
 * completion or embeddings response) or from a server-sent event stream
 * of chat.completion.chunk objects.  It is fed the body in any number of
 * pieces, split anywhere, and the results do not depend on the split.
 * Memory is this structure only: nothing is allocated or kept per byte
 * (a stream's event cut by the end of a piece is kept in it, up to
 * QWEN_USAGE_CARRY_MAX bytes, to be read whole).
 *
 * This file is plain C with no nginx dependency so that the unit tests in
 * t/unit/ and the fuzzers can link it alone.
 *
 * What is taken, from the top-level "usage" object of a document only:
 * prompt_tokens, completion_tokens, total_tokens,
 * prompt_tokens_details.cached_tokens and
 * completion_tokens_details.reasoning_tokens.  A count is taken when it is
 * a JSON integer from 0 to 2^53, or such an integer written with a
 * fraction of zeros only ("12.0" is 12); a negative number, a non-zero
 * fraction, an exponent, a larger number or a value of another type is
 * ignored, as if the member were absent.  A later member of the same name
 * replaces an earlier one.  Other members, details objects that are null,
 * and "usage" keys anywhere but at the top level (or inside strings) are
 * ignored.  Member names are compared after their escapes are decoded.
 *
 * A document counts only if it is valid JSON, checked to a nesting depth
 * of QWEN_USAGE_MAX_DEPTH (deeper, only brackets and strings are followed)
 * with nothing but white space after its value.  JSON mode takes the
 * results of the body's document in qwen_usage_scan_finish().  SSE mode
 * takes them at the end of each event: the last usage object of the stream
 * replaces the earlier ones (whole: members it lacks become 0 and leave
 * usage_fields), "usage": null erases nothing, and the model is that of
 * the first event that has a "model" string.
 */


#ifndef _NGX_HTTP_QWEN_USAGE_H_INCLUDED_
#define _NGX_HTTP_QWEN_USAGE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define QWEN_USAGE_MODEL_MAX     256
#define QWEN_USAGE_KEY_MAX       32
#define QWEN_USAGE_MAX_DEPTH     64
#define QWEN_USAGE_MAX_COUNT     ((uint64_t) 1 << 53)
#define QWEN_USAGE_CARRY_MAX     1024


/* bits of usage_fields: the counts the last usage object carried */
#define QWEN_USAGE_PROMPT        0x01
#define QWEN_USAGE_COMPLETION    0x02
#define QWEN_USAGE_TOTAL         0x04
#define QWEN_USAGE_CACHED        0x08
#define QWEN_USAGE_REASONING     0x10


typedef struct {
    /* results, for the whole body */
    uint64_t            prompt_tokens;
    uint64_t            completion_tokens;
    uint64_t            total_tokens;
    uint64_t            cached_tokens;
    uint64_t            reasoning_tokens;
    uint64_t            events;          /* SSE events with data */
    size_t              model_len;
    unsigned            usage_fields;    /* QWEN_USAGE_* */
    unsigned            has_usage:1;     /* a usage object was taken */
    unsigned            has_model:1;     /* model[] holds a "model" */
    unsigned            model_overflow:1;   /* ... was cut: see below */
    unsigned            done_seen:1;     /* SSE: a [DONE] event came */
    unsigned            complete:1;      /* JSON: a valid document ended */

    /* the event the last qwen_usage_scan() call ended, SSE only */
    unsigned            event_ended:1;
    unsigned            event_usage_only:1;
    unsigned            event_done:1;

    /*
     * The model name, decoded, not NUL-terminated.  A longer one is cut
     * to at most QWEN_USAGE_MODEL_MAX bytes, before a UTF-8 character
     * that would not fit whole, and model_overflow is set.
     */
    unsigned char       model[QWEN_USAGE_MODEL_MAX];

    /* private: the scanner's state */
    unsigned            sse:1;
    unsigned            in_key:1;
    unsigned            num_ok:1;
    unsigned            cover:1;
    unsigned            doc_usage:1;
    unsigned            doc_model:1;
    unsigned            doc_mover:1;
    unsigned            line;
    unsigned            field;
    unsigned            block;
    unsigned            data_lines;
    unsigned            done_pos;
    unsigned            state;
    unsigned            sub;
    unsigned            capture;
    unsigned            track;
    unsigned            hex;
    unsigned            doc_choices;
    unsigned            doc_fields;
    int                 num_field;
    uint32_t            depth;
    uint32_t            cp;
    uint32_t            high;
    uint64_t            stack;
    uint64_t            num;
    uint64_t            doc[5];
    size_t              clen;
    size_t              doc_mlen;
    const char         *literal;
    unsigned char       key_class[4];
    unsigned char       key[QWEN_USAGE_KEY_MAX];

    /* the start of an event cut by the end of a piece (see the .c file) */
    size_t              carry_len;
    unsigned char       carry[QWEN_USAGE_CARRY_MAX];
} qwen_usage_scan_t;


/* sse: 1 for a text/event-stream body, 0 for one JSON document */
void qwen_usage_scan_init(qwen_usage_scan_t *s, int sse);

/*
 * Scans up to len bytes of the body and returns how many it consumed.
 *
 * JSON mode consumes everything.  SSE mode stops right after the end of
 * an event, that is after the line end of the blank line that ends it
 * ("\n", "\r\n", or a lone "\r"), and then sets event_ended, with
 * event_usage_only and event_done describing that event; otherwise it
 * consumes everything and event_ended is 0.  So the caller loops:
 *
 *     while (len) {
 *         n = qwen_usage_scan(s, p, len);
 *         p += n; len -= n;
 *         if (s->event_ended) { the event's last byte is p[-1] }
 *     }
 *
 * A blank line that ends with a lone "\r" as the last byte of a piece
 * ends its event only when the next byte is seen (a "\n" is then
 * consumed as part of it), so a call may return 0 with event_ended set;
 * the next call goes on.  An event is a block of lines ended by a blank
 * line; blocks without data (comments, "event:" alone) end too, with both
 * flags 0, but only events with data count in events.  Stray blank lines
 * between events end nothing: they belong to the next event's bytes.
 *
 * event_usage_only: the event's JSON is valid, has a top-level "choices"
 * that is an empty array (every "choices" member, if it repeats), and a
 * top-level "usage" object: the extra chunk include_usage produces.
 * event_done: the event's data starts with "[DONE]" (as the OpenAI SDKs
 * test it).
 */
size_t qwen_usage_scan(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len);

/*
 * In SSE mode, for the event being read (not yet ended): 0 once it is
 * certain that it will not be usage_only (its JSON is invalid, or has
 * a "choices" that is not an empty array, or it is not JSON at all), 1
 * while it still may be.  A caller that holds back the bytes of the
 * event in case it must drop it can pass them on as soon as this is 0;
 * "choices" usually comes in the first 150 bytes of a chunk.
 */
int qwen_usage_scan_maybe_usage_only(const qwen_usage_scan_t *s);

/*
 * The end of the body.  JSON mode: takes the document's results and
 * returns 1 (and sets complete) if it was complete and valid, else 0.
 * SSE mode: ends an event left open (one whose blank line was a lone
 * "\r", or that the body cut before its blank line: such an event counts
 * as if it had ended, setting event_ended, since what matters here is
 * what the upstream reported), and returns done_seen.
 */
int qwen_usage_scan_finish(qwen_usage_scan_t *s);


/*
 * A fast path for streams, whose ordinary chunks carry "usage": null.  At
 * the start of an event, if p..p+len begins with a whole event (ended by
 * "\n\n") whose data is a JSON object in which every "usage" member is
 * null and no \u escape could spell a member name, and the model is known
 * already, counts it as qwen_usage_scan() would and returns its length,
 * with event_ended set.  Otherwise returns 0 and changes nothing: the
 * caller scans the bytes as usual.  Results are the same either way.
 */
size_t qwen_usage_scan_skim(qwen_usage_scan_t *s, const unsigned char *p,
    size_t len);


#endif /* _NGX_HTTP_QWEN_USAGE_H_INCLUDED_ */
