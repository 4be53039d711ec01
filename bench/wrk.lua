-- wrk script of the bench: `-- PATH...` makes every connection walk those paths in turn;
-- done() prints the run as one JSON line, which bench/wrk.py reads.
local paths = {}
local n = 0

function init(args)
  paths = args
  if #paths > 0 then
    request = function()
      n = n + 1
      return wrk.format(nil, paths[(n % #paths) + 1])
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout, e.status))
end
