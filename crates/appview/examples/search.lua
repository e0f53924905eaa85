-- wrk script for bench_server: searchServices by a random capability for a random viewer
-- (uniform over the synthetic operators), one fixed seed per thread. Pass the server's
-- `--nodes` after `--` when it is not the default 1,000,000 (e.g. `-- 100000`), so viewers
-- are operators of the world rather than strangers with no path.
local counter = 0
local nodes = 1000000
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(42 + (seed or 0))
  nodes = tonumber(args[1]) or nodes
end
function request()
  local cap = string.format("cap%02d.send", math.random(0, 99))
  local viewer = "did:plc:x" .. math.random(0, nodes - 1)
  return wrk.format("GET", "/xrpc/dev.guildhall.searchServices?capability=" .. cap .. "&viewer=" .. viewer .. "&limit=25")
end
