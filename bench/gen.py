#!/usr/bin/python3
# Writes the benchmark's request bodies and the mock's canned answers.
import json, os, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def chat(size, stream=False, usage=False):
    filler = "x" * max(0, size - 120)
    d = {"model": "qwen/qwen-plus",
         "messages": [{"role": "user", "content": filler}]}
    if stream:
        d["stream"] = True
    if usage:
        d["stream_options"] = {"include_usage": True}
    return json.dumps(d, separators=(",", ":"))

for name, size in (("1k", 1024), ("256k", 256 * 1024), ("10m", 10 * 1024 * 1024)):
    open(os.path.join(out, "req-%s.json" % name), "w").write(chat(size))
# a stream whose client does not ask for usage (the gateway asks upstream
# and hides the usage chunk), and one whose client asks for it
open(os.path.join(out, "req-stream.json"), "w").write(chat(1024, True))
open(os.path.join(out, "req-stream-usage.json"), "w").write(
    chat(1024, True, True))

answer = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
          "model": "qwen-plus",
          "choices": [{"index": 0, "message": {"role": "assistant",
                       "content": "A short canned answer for the benchmark."},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 300, "completion_tokens": 9,
                    "total_tokens": 309,
                    "prompt_tokens_details": {"cached_tokens": 0}}}
open(os.path.join(out, "answer.json"), "w").write(json.dumps(answer))

def chunk(delta, finish=None, usage=None, choices=True):
    c = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
         "created": 1, "model": "qwen-plus",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                    if choices else [],
         "usage": usage}
    return "data: " + json.dumps(c, separators=(",", ":")) + "\n\n"

# 50 content events, as DashScope sends them ("usage": null in each); the
# usage-only chunk only when the request asked for it (include_usage)
events = [chunk({"role": "assistant", "content": ""})]
events += [chunk({"content": "tok%d " % i}) for i in range(48)]
events += [chunk({}, "stop")]
usage = chunk(None, usage={"prompt_tokens": 300, "completion_tokens": 48,
                           "total_tokens": 348}, choices=False)
done = "data: [DONE]\n\n"
open(os.path.join(out, "answer.sse"), "w").write("".join(events) + done)
open(os.path.join(out, "answer-usage.sse"), "w").write(
    "".join(events) + usage + done)
print(len(events), "events")
