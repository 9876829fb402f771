-- wrk script of the soak benchmark: a fixed mix of 60% single predictions and 30% top-10
-- suggestions for random known ids, and 10% feedback from users never seen before (64-byte ids,
-- unique across threads and windows through BENCH_RUN). Each connection waits BENCH_DELAY_MS
-- between requests, so the offered load stays fixed instead of following the server's speed.
local ids = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "ids.lua")
local users, items = ids.users, ids.items
local run = os.getenv("BENCH_RUN")
local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
local threads = {}
-- Globals, so setup() can set `thread_id` and done() can read `counter` of each thread.
thread_id = 0
counter = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(thread_id * 7919 + tonumber(run))
end

function delay()
  return pause
end

local feedback_headers = { ["Content-Type"] = "application/json" }

request = function()
  local r = math.random(100)
  if r <= 60 then
    return wrk.format("GET", "/v1/predict?user=" .. users[math.random(#users)] .. "&item=" ..
      items[math.random(#items)])
  elseif r <= 90 then
    return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/recommendations?n=10")
  end
  counter = counter + 1
  local user = string.format("soak-run%06d-thread%03d-%041d", tonumber(run), thread_id, counter)
  local body = string.format('{"user":"%s","item":"%s","rating":%d,"suggested":%s}', user,
    items[math.random(#items)], math.random(5), math.random(2) == 1 and "true" or "false")
  return wrk.format("POST", "/v1/feedback", feedback_headers, body)
end

function done(summary, latency, requests)
  local feedback = 0
  for _, thread in ipairs(threads) do
    feedback = feedback + (thread:get("counter") or 0)
  end
  io.write(string.format("feedback_users %d\n", feedback))
end
