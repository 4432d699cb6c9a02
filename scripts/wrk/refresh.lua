-- POST /auth/refresh: each thread rotates its own sessions' refresh tokens
-- in turn (run with as many connections as threads: one session's
-- refreshes are serial). REFRESH_TOKENS holds one token a line; thread i of
-- n takes every n-th line.
local tokens = {}
for line in io.lines(os.getenv("REFRESH_TOKENS")) do tokens[#tokens + 1] = line end
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

function init(args)
  local n = tonumber(os.getenv("THREADS_FOR_REFRESH") or "8")
  mine = {}
  for i = id, #tokens, n do mine[#mine + 1] = tokens[i] end
  turn = 1
end

function request()
  return wrk.format("POST", "/auth/refresh", { ["content-type"] = "application/json" },
    '{"tenant_id":"' .. os.getenv("TENANT") .. '","refresh_token":"' .. mine[turn] .. '"}')
end

function response(status, headers, body)
  local fresh = body:match('"refresh_token":"([^"]+)"')
  if status ~= 200 or not fresh then
    error("refresh refused " .. status .. ": " .. body)
  end
  mine[turn] = fresh
  turn = turn % #mine + 1
end
