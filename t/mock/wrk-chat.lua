-- wrk script: small non-stream chat POST against the DashScope mock.
--   wrk -t2 -c50 -d10s -s t/mock/wrk-chat.lua http://127.0.0.1:8081/compatible-mode/v1/chat/completions
-- Set WRK_STREAM=1 for a streaming request, WRK_KEY for another key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_KEY") or "sk-mock")
if os.getenv("WRK_STREAM") == "1" then
  wrk.body = '{"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}'
else
  wrk.body = '{"model":"qwen-plus","messages":[{"role":"user","content":"Hello"}]}'
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
