-- POST /auth/login (Argon2id verification each time). With ACCOUNTS=n,
-- each thread takes user0..user(n-1)@example.org in turn (made by
-- scripts/bench-http.sh over SCIM); otherwise the owner's account.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local accounts = tonumber(os.getenv("ACCOUNTS") or "0")
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

function init(args)
  turn = id or 0
end

function request()
  local email = "bench@example.org"
  if accounts > 0 then
    email = "user" .. (turn % accounts) .. "@example.org"
    turn = turn + 7
  end
  return wrk.format(nil, nil, nil, '{"tenant_id":"' .. os.getenv("TENANT") .. '","email":"' .. email
    .. '","password":"a long bench passphrase"}')
end

function response(status, headers, body)
  if status ~= 200 then error("login refused " .. status .. ": " .. body) end
end
