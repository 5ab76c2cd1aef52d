-- wrk script of ibex's benchmark: POST one JSON body with extra headers; at the end print one
-- line "WRKJSON {...}" (latencies in microseconds, wrk's own error counters).
--   BODY_FILE      path of the request body (required)
--   EXTRA_HEADERS  more request headers, "Name: value" separated by '|' or newlines

local path = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local fh = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = fh:read("*a")
fh:close()
wrk.headers["Content-Type"] = "application/json"

for item in string.gmatch(os.getenv("EXTRA_HEADERS") or "", "[^|\r\n]+") do
  local k, v = item:match("^%s*([^:]-)%s*:%s*(.-)%s*$")
  if k and k ~= "" then wrk.headers[k] = v end
end

function done(s, lat, _)
  local e = s.errors
  local p = function(q) return lat:percentile(q) end
  print(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}',
    s.requests, s.duration, s.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    lat.mean, p(50), p(90), p(99), p(99.9), lat.max))
end
