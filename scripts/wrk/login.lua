-- POST /auth/login with the owner's password (Argon2id verification each time).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"tenant_id":"' .. os.getenv("TENANT") .. '","email":"bench@example.org","password":"a long bench passphrase"}'

function response(status, headers, body)
  if status ~= 200 then error("login refused " .. status .. ": " .. body) end
end
