-- Shared by the wrk scripts: the known user and item ids, one a line, from the files named by
-- BENCH_USERS and BENCH_ITEMS. Load it with dofile() from the script's own folder.
local function read_lines(path)
  local t = {}
  for line in io.lines(path) do t[#t + 1] = line end
  return t
end

return { users = read_lines(os.getenv("BENCH_USERS")), items = read_lines(os.getenv("BENCH_ITEMS")) }
