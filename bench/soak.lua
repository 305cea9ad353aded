-- wrk: a mix of requests for the soak, in a fixed rotation of 20:
-- 12 plain chat, 5 streams, 1 invalid JSON, 1 unknown model, 1 upstream 500.
local dir = os.getenv("BENCH_DATA")

local function body(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local b = f:read("*a")
  f:close()
  return b
end

local chat = body("req-1k.json")
local stream = body("req-stream.json")
local path = "/v1/chat/completions"
local base = { ["Content-Type"] = "application/json",
               ["Authorization"] = "Bearer sk-client" }

local function req(b, extra)
  local h = {}
  for k, v in pairs(base) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return wrk.format("POST", path, h, b)
end

-- built in init(): wrk.format() needs the host wrk sets up before it
local mix = {}

init = function(args)
  for i = 1, 12 do mix[#mix + 1] = req(chat) end
  for i = 1, 5 do mix[#mix + 1] = req(stream, { ["X-Bench-Stream"] = "1" }) end
  mix[#mix + 1] = req('{"model":"qwen-plus","messages":[')
  mix[#mix + 1] = req('{"model":"no-such-model","messages":[]}')
  mix[#mix + 1] = req(chat, { ["X-Bench-Error"] = "1" })
end

local n = 0
request = function()
  n = n + 1
  return mix[(n % #mix) + 1]
end
