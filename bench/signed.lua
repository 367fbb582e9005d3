-- wrk: sends each thread's pre-signed requests (bench/signed_requests.py) once each, in order.
--   wrk -t2 -c32 -d8s -s bench/signed.lua http://HOST -- PREFIX
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  paths = {}
  for line in io.lines(args[1] .. "." .. id) do
    paths[#paths + 1] = line
  end
  i = 0
end

function request()
  -- Past the end, a replayed nonce gets a 400, which wrk reports as non-2xx: make enough.
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
