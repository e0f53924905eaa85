-- wrk script for bench_server: searchServices by a random capability for a random viewer
-- (uniform over the 1M synthetic operators), one fixed seed per thread.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(42 + (seed or 0))
end
function request()
  local cap = string.format("cap%02d.send", math.random(0, 99))
  local viewer = "did:plc:x" .. math.random(0, 999999)
  return wrk.format("GET", "/xrpc/dev.guildhall.searchServices?capability=" .. cap .. "&viewer=" .. viewer .. "&limit=25")
end
