-- wrk script: every connection walks the three read endpoints in turn.
local paths = { "/api/v1/users", "/api/v1/hour", "/api/v1/tags" }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
