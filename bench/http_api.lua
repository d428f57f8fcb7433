-- wrk script of bench/http_api.py: what each connection sends, and the figures it reports.
--
--   wrk -t2 -c16 -d8s -s bench/http_api.lua URL -- MODE [ARGS...]
--
-- MODE get PATHS_FILE              GET a path drawn at random from the file (one per line)
-- MODE post-json PATH BODY COOKIE  POST the same JSON body each time, signed in
-- MODE post-each PATH IDS COOKIES POST {"ticketId": id} with a different id each time:
--                                  thread k reads IDS.k (one id per line) and goes
--                                  through it in order, so no id is ever sent twice
--                                  (past its end it starts again, and those repeats
--                                  are 400s that the report counts); each request is
--                                  signed in as the next of COOKIES.k's sessions (one
--                                  per line, in turn)
--
-- Every request is formatted once in init(), so the generator spends its time on I/O.
-- done() prints one line "WRK_JSON {...}": requests, errors (status = HTTP >= 400),
-- and latency percentiles in microseconds. No response() function is defined: wrk then
-- skips parsing headers and bodies in Lua, which would cost it CPU the servers need.

local next_id = 0

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
end

local requests = {}
local index = 0

local function read_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if line ~= "" then
         table.insert(lines, line)
      end
   end
   if #lines == 0 then
      error("no lines in " .. path)
   end
   return lines
end

local function json_headers(cookie)
   return {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json",
      ["Cookie"] = "session=" .. cookie,
   }
end

function init(args)
   local mode = args[1]
   if mode == "get" then
      for _, path in ipairs(read_lines(args[2])) do
         table.insert(requests, wrk.format("GET", path, {["Accept"] = "application/json"}))
      end
      math.randomseed(os.time() + (tid or 0) * 7919)
   elseif mode == "post-json" then
      table.insert(requests, wrk.format("POST", args[2], json_headers(args[4]), args[3]))
   elseif mode == "post-each" then
      local cookies = read_lines(args[4] .. "." .. tid)
      for i, id in ipairs(read_lines(args[3] .. "." .. tid)) do
         local body = '{"ticketId": "' .. id .. '"}'
         local headers = json_headers(cookies[(i - 1) % #cookies + 1])
         table.insert(requests, wrk.format("POST", args[2], headers, body))
      end
   else
      error("unknown mode " .. tostring(mode))
   end
   random_order = (mode == "get")
end

function request()
   if random_order then
      return requests[math.random(#requests)]
   end
   index = index + 1
   if index > #requests then
      index = 1
   end
   return requests[index]
end

function done(summary, latency, reqs)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean
   ))
end
