-- POST /auth/refresh, each thread rotating its own session's refresh token
-- (run with as many connections as threads: a session's refreshes are serial).
local tokens = {}
for line in io.lines(os.getenv("REFRESH_TOKENS")) do tokens[#tokens + 1] = line end
local next_thread = 1

function setup(thread)
  thread:set("token", tokens[next_thread])
  next_thread = next_thread + 1
end

function request()
  return wrk.format("POST", "/auth/refresh", { ["content-type"] = "application/json" },
    '{"tenant_id":"' .. os.getenv("TENANT") .. '","refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local fresh = body:match('"refresh_token":"([^"]+)"')
  if status ~= 200 or not fresh then
    error("refresh refused " .. status .. ": " .. body)
  end
  token = fresh
end
