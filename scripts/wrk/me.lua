-- POST /graphql { me { … } } with the access token in TOKEN.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"query":"' .. (os.getenv("QUERY") or "{ me { id status roles } }") .. '"}'

function response(status, headers, body)
  if status ~= 200 or not body:find('"me":{') then
    error("unexpected answer " .. status .. ": " .. body)
  end
end
