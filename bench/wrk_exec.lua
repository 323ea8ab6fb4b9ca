-- wrk script for bench/api_bench.py's throughput phase: REST exec of `true`, spread round robin over the
-- capsules' exec URLs, with the API key. Arguments (after `--`): API key, then capsule ids.
-- An error is anything but a 200 whose body says "exit_code":0, or a socket error or timeout (wrk's own
-- counters). done() prints one JSON line: counts, rate and latency percentiles in microseconds.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local headers = { ["X-API-Key"] = args[1], ["Content-Type"] = "application/json" }
  requests = {}
  for i = 2, #args do
    requests[#requests + 1] = wrk.format("POST", "/v1/capsules/" .. args[i] .. "/exec", headers, '{"cmd":"true"}')
  end
  sent, failed, sample = 0, 0, ""
end

function request()
  sent = sent + 1
  return requests[sent % #requests + 1]
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"exit_code":0', 1, true) then
    failed = failed + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body, 1, 200)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local failed, samples = 0, {}
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failed")
    local sample = thread:get("sample")
    if sample ~= "" then
      samples[#samples + 1] = quote(sample)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"failed_responses":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"samples":[%s]}\n',
    summary.requests, summary.duration, failed, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(samples, ",")))
end
