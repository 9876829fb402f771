-- wrk script: every request picks a random known user (and item) from the id files named by
-- BENCH_USERS / BENCH_ITEMS; BENCH_MODE is `predict` or `recommend`.
local ids = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "ids.lua")
local users, items = ids.users, ids.items
local mode = os.getenv("BENCH_MODE")
-- Each wrk thread has its own Lua state; seed them apart.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)

request = function()
  local u = users[math.random(#users)]
  if mode == "predict" then
    return wrk.format("GET", "/v1/predict?user=" .. u .. "&item=" .. items[math.random(#items)])
  end
  return wrk.format("GET", "/v1/users/" .. u .. "/recommendations?n=10")
end
