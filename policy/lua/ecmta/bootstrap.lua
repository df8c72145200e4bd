-- ecmta policy runtime bootstrap: loaded once into every Lua runtime before any script.
--
-- Called as a chunk with (api, opts): `api` is a table of Python functions (policy/objects.py,
-- policy/msys.py, bound to this runtime by policy/runtime.py); `opts` carries the msys.core
-- constants and the module search path. Returns the entry points the Python driver uses.
--
-- Owns, on the Lua side: the `msys` library, the proxies scripts see as `vctx`, `ac` and
-- `msg`, per-session `self`/_TLS tables, the callout trampoline, and Lua 5.1 compatibility.
--
-- Suspension protocol (the driver is policy/engine.py): a callout runs in a coroutine the
-- driver resumes. A suspending function (msys.sleep, msys.dnsLookup, msys.runInPool's
-- waiting form, msys.threadpool.stat) yields (REQ, kind, args...) to the driver, which does
-- the I/O cooperatively and resumes with (true, results...) or (false, error message). Lua
-- is never entered from inside a Python callback. The callout ends by
-- returning (DONE, ok, value, keep_state). Python functions called from here never switch
-- greenlets: anything that waits goes through a yield.

local api, opts = ...

-- Python exceptions reach Lua as userdata; scripts expect error strings (pcall's `err`,
-- string concatenation), with the script's file:line in front as for any Lua error.
do
  local raw_api, t_pcall, t_tostring, t_error = api, pcall, tostring, error
  local function lift(ok, ...)
    if ok then return ... end
    t_error(t_tostring((...)), 2)
  end
  api = {}
  for k, f in pairs(raw_api) do
    api[k] = function(...) return lift(t_pcall(f, ...)) end
  end
end

local REQ, DONE = 1, 0
local K_SLEEP, K_DNS, K_POOL, K_TP = 1, 2, 3, 4
local PY = {}                  -- key of the Python object inside a proxy table
local driver_co = nil          -- the coroutine of the callout running now, if any

local raw_setmetatable = setmetatable
local co_running, co_yield = coroutine.running, coroutine.yield
local pack, unpack = table.pack, table.unpack
local type, tostring, select, error, pairs, next = type, tostring, select, error, pairs, next

-- True when a yield from here reaches the driver: we are the callout's own coroutine (not a
-- pool thread running a closure, not a coroutine the script created itself).
local function suspendable()
  return driver_co ~= nil and co_running() == driver_co
end

-- Watchdog: a callout that runs longer than opts.max_callout_seconds without yielding
-- (an endless loop) gets a Lua error instead of wedging the scheduler for good.
local os_time = os.time
local max_slice = opts.max_callout_seconds
local slice_start = 0
local function watchdog()
  if os_time() - slice_start > max_slice then
    error("callout ran for more than " .. max_slice .. " seconds without yielding", 2)
  end
end

-- Suspend the callout: the driver resumes with (true, results...) or (false, message).
local function request(...)
  local r = pack(co_yield(REQ, ...))
  slice_start = os_time()
  if r[1] == false then error(r[2], 3) end
  return r
end

local function str(v)
  if v == nil then return nil end
  return tostring(v)
end

-- A Lua value list from a table given 0- or 1-based (Momentum's C arrays are 0-based).
local function flatten(x)
  if type(x) ~= "table" or getmetatable(x) ~= nil then return str(x) end
  local out, i = {}, (x[0] ~= nil) and 0 or 1
  while x[i] ~= nil do out[#out + 1] = tostring(x[i]); i = i + 1 end
  return unpack(out)
end

local function zero_based(...)
  local n, t = select("#", ...), {}
  for i = 1, n do t[i - 1] = (select(i, ...)) end
  return t
end

---------------------------------------------------------------------------------------------
-- Lua 5.1 and Momentum dialect compatibility (documented in policy/runtime.py)
---------------------------------------------------------------------------------------------
-- Momentum's operator metamethod names -> Lua 5.4's.
local MM_ALIAS = {__and = "__band", __or = "__bor", __xor = "__bxor", __not = "__bnot",
                  __intdiv = "__idiv"}
function setmetatable(t, mt)
  if type(mt) == "table" then
    for old, new in pairs(MM_ALIAS) do
      local f = rawget(mt, old)
      if f ~= nil and rawget(mt, new) == nil then rawset(mt, new, f) end
    end
  end
  return raw_setmetatable(t, mt)
end

-- Momentum's bitwise operators truncate non-integral operands; 5.4 raises instead. The
-- number metatable is consulted only when the native operation fails.
local function toint(x)
  local n = tonumber(x)
  if n == nil then error("attempt to perform bitwise operation on a " .. type(x) .. " value", 3) end
  local i = math.tointeger(n)
  if i then return i end
  n = (n >= 0) and math.floor(n) or math.ceil(n)
  return math.tointeger(n) or error("number has no integer representation", 3)
end
-- tostring() of an integral float prints like 5.1 ("5", not "5.0"); `..` cannot be hooked.
local fmt = string.format
local mtype = math.type
debug.setmetatable(0, {
  __band = function(a, b) return toint(a) & toint(b) end,
  __bor = function(a, b) return toint(a) | toint(b) end,
  __bxor = function(a, b) return toint(a) ~ toint(b) end,
  __shl = function(a, b) return toint(a) << toint(b) end,
  __shr = function(a, b) return toint(a) >> toint(b) end,
  __bnot = function(a) return ~toint(a) end,
  __tostring = function(n)
    if mtype(n) == "integer" then return fmt("%d", n) end
    return fmt("%.14g", n)
  end,
})

_G.unpack = rawget(_G, "unpack") or table.unpack
table.getn = table.getn or function(t) return #t end
table.setn = table.setn or function() error("table.setn is not available in Lua 5.4", 2) end
table.maxn = table.maxn or function(t)
  local m = 0
  for k in pairs(t) do if type(k) == "number" and k > m then m = k end end
  return m
end
table.foreach = table.foreach or function(t, f)
  for k, v in pairs(t) do local r = f(k, v); if r ~= nil then return r end end
end
table.foreachi = table.foreachi or function(t, f)
  for i = 1, #t do local r = f(i, t[i]); if r ~= nil then return r end end
end
string.gfind = string.gfind or string.gmatch
math.pow = math.pow or function(a, b) return a ^ b end
math.mod = math.mod or math.fmod
math.ldexp = math.ldexp or function(m, e) return m * 2.0 ^ e end
math.log10 = math.log10 or function(x) return math.log(x, 10) end
math.cosh = math.cosh or function(x) return (math.exp(x) + math.exp(-x)) / 2 end
math.sinh = math.sinh or function(x) return (math.exp(x) - math.exp(-x)) / 2 end
math.tanh = math.tanh or function(x) local a, b = math.exp(x), math.exp(-x) return (a - b) / (a + b) end
gcinfo = gcinfo or function() return math.floor(collectgarbage("count")) end
os.exit = function() error("os.exit is not allowed in policy scripts", 2) end

-- Source loaded at run time speaks the dialect too.
local raw_load = load
function load(chunk, name, mode, env)
  if type(chunk) == "string" then chunk = api.rewrite(chunk) end
  if env ~= nil then return raw_load(chunk, name, mode, env) end
  return raw_load(chunk, name, mode)
end
function loadstring(s, name) return load(s, name) end
local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local src = f:read("a"); f:close()
  return src
end
function loadfile(path, mode, env)
  local src, err = read_file(path)
  if not src then return nil, err end
  return load(src, "@" .. path, mode, env)
end
function dofile(path)
  local f = assert(loadfile(path))
  return f()
end

-- getfenv/setfenv through the _ENV upvalue (5.1 semantics for functions; a level number
-- means the function running at that level; level 0 = the global environment).
local function env_upvalue(f)
  local i = 1
  while true do
    local name = debug.getupvalue(f, i)
    if name == "_ENV" then return i elseif name == nil then return nil end
    i = i + 1
  end
end
local function fenv_target(f, fname)
  if type(f) == "number" then
    if f == 0 then return nil end
    local info = debug.getinfo(f + 1, "f")
    if not info then error(fname .. ": invalid level", 3) end
    return info.func
  end
  return f
end
function getfenv(f)
  f = fenv_target(f or 1, "getfenv")
  if f == nil then return _G end
  local i = env_upvalue(f)
  if not i then return _G end
  local _, v = debug.getupvalue(f, i)
  return v
end
function setfenv(f, env)
  local fn = fenv_target(f, "setfenv")
  if fn == nil then error("setfenv: cannot change the global environment in Lua 5.4", 2) end
  local i = env_upvalue(fn)
  if i then
    -- A private upvalue, so other functions of the chunk keep theirs (5.1 semantics).
    local holder = function() return env end
    debug.upvaluejoin(fn, i, holder, 1)
  end
  return fn
end

-- module(name, ...) of Lua 5.1: make the calling chunk's environment the module table.
function package.seeall(m)
  local mt = getmetatable(m) or {}
  mt.__index = _G
  raw_setmetatable(m, mt)
end
function module(name, ...)
  local m = package.loaded[name]
  if type(m) ~= "table" then
    m = _G
    for part in string.gmatch(name, "[^%.]+") do
      local t = rawget(m, part)
      if t == nil then t = {}; rawset(m, part, t) end
      m = t
    end
    package.loaded[name] = m
  end
  m._NAME = name; m._M = m; m._PACKAGE = string.match(name, "^(.*)%.[^%.]*$") or ""
  for i = 1, select("#", ...) do (select(i, ...))(m) end
  setfenv(2, m)
  return m
end

---------------------------------------------------------------------------------------------
-- print: to the paniclog as "<ts>:scriptlet: <text>" (the driver writes it on the hub)
---------------------------------------------------------------------------------------------
function print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  api.print(table.concat(parts, "\t"))
end

---------------------------------------------------------------------------------------------
-- msys
---------------------------------------------------------------------------------------------
msys = {}
msys.core = {}
for k, v in pairs(opts.constants) do msys.core[k] = v end

local ECS = {}
ECS.__index = ECS
ECS.__name = "msys.core:_ec_string"
ECS.__tostring = function(s) return rawget(s, 1) end
ECS.__len = function(s) return #rawget(s, 1) end
ECS.__concat = function(a, b) return tostring(a) .. tostring(b) end
ECS.__eq = function(a, b) return tostring(a) == tostring(b) end
function ECS:set(v) rawset(self, 1, tostring(v)); return #rawget(self, 1) end
function ECS:get() return rawget(self, 1) end
function msys.core.string_new(s) return raw_setmetatable({s and tostring(s) or ""}, ECS) end
function msys.core.get_now_ts() return os.time() end

function msys.expandMacro(s) return api.expand_macro(tostring(s)) end
function msys.asyncOk() return suspendable() end
function msys.type(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then return mt.__name end
  return type(v)
end

function msys.sleep(s)
  s = tonumber(s)
  if s == nil then error("msys.sleep: duration must be a number", 2) end
  if suspendable() then request(K_SLEEP, s) else api.block_sleep(s) end
end

-- (0, errmsg) | (1, value...) | (2, pref, value, pref, value...) -> Momentum's result shape
local function dns_result(kind, ...)
  if kind == 0 then return nil, (...) end
  local n, t = select("#", ...), {}
  if kind == 1 then
    for i = 1, n do t[i] = (select(i, ...)) end
  else
    for i = 1, n, 2 do t[#t + 1] = {(select(i, ...)), (select(i + 1, ...))} end
  end
  return t
end

local DNS_TYPES = {A = true, AAAA = true, TXT = true, MX = true, PTR = true, NS = true}
function msys.dnsLookup(name, rtype, options)
  if type(name) ~= "string" then error("msys.dnsLookup: name must be a string", 2) end
  local t = string.upper(tostring(rtype or "A"))
  if not DNS_TYPES[t] then
    error("msys.dnsLookup: invalid record type '" .. tostring(rtype) .. "'", 2)
  end
  local prio, server = false, nil
  if type(options) == "table" then
    prio = options.priority and true or false
    server = options.server and tostring(options.server) or nil
  end
  if suspendable() then
    local r = request(K_DNS, name, t, prio, server)
    return dns_result(unpack(r, 2, r.n))
  end
  return dns_result(api.dns_blocking(name, t, prio, server))
end

local function pack_pcall(fn) return pack(pcall(fn)) end

function msys.runInPool(pool, fn, third, fourth)
  if type(fn) ~= "function" then error("msys.runInPool: the closure must be a function", 2) end
  if pool == nil then error("msys.runInPool: a thread pool name or id is required", 2) end
  if third == true or type(third) == "function" then
    api.pool_async(pool, fn, type(third) == "function" and third or nil, fourth)
    return
  end
  if suspendable() then
    local r = request(K_POOL, pool, fn)[2]
    return unpack(r, 1, r.n)
  end
  -- Already in a pool thread (or a script's own coroutine): run the closure right here.
  return pcall(fn)
end

-- The pool registry lives on the hub: from a callout these ask the driver (which may wait
-- for the pool actors); from a pool thread they read the registry directly.
msys.threadpool = {}
function msys.threadpool.count()
  if suspendable() then return request(K_TP, "count")[2] end
  return api.threadpool_count()
end
function msys.threadpool.find(x)
  if suspendable() then return request(K_TP, "find", x)[2] end
  return api.threadpool_find(x)
end
function msys.threadpool.stat(x)
  if not suspendable() then
    error("msys.threadpool.stat is only safe to call from the scheduler thread", 2)
  end
  local r = request(K_TP, "stat", x)
  if r.n < 2 then return nil end
  local t = {}
  for i = 2, r.n, 2 do t[r[i]] = r[i + 1] end
  return t
end

msys.base64 = {}
function msys.base64.encode(s, fold, charset) return api.b64encode(tostring(s), fold and true or false, str(charset)) end
function msys.base64.decode(s, charset) return api.b64decode(tostring(s), str(charset)) end
msys.qp = {}
function msys.qp.encode(s, charset, dotstuff) return api.qpencode(tostring(s), str(charset), dotstuff and true or false) end
function msys.qp.decode(s, charset) return api.qpdecode(tostring(s), str(charset)) end

msys.pcre = {}
function msys.pcre.match(subject, pattern)
  -- api: nothing (no match) | false, errstr, errnum | true, ngroups, g0..gn, name, value, ...
  local r = pack(api.pcre_match(tostring(subject), tostring(pattern)))
  if r.n == 0 or r[1] == nil then return nil end
  if r[1] == false then return nil, r[2], r[3] end
  local ng = r[2]
  local t = {}
  for i = 0, ng do t[i] = r[3 + i] end
  for i = 4 + ng, r.n, 2 do t[r[i]] = r[i + 1] end
  return t
end
function msys.pcre.replace(subject, pattern, replacement)
  return api.pcre_replace(tostring(subject), tostring(pattern), tostring(replacement))
end
function msys.pcre.split(subject, pattern)
  return {api.pcre_split(tostring(subject), tostring(pattern))}
end

msys.dumper = {}
local function dump(v, indent, seen)
  local t = type(v)
  if t == "string" then return fmt("%q", v) end
  if t ~= "table" then return tostring(v) end
  if seen[v] then return '"<cycle>"' end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local pad = string.rep("  ", indent + 1)
  local out = {}
  for _, k in ipairs(keys) do
    local ks = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or ("[" .. dump(k, 0, {}) .. "]")
    out[#out + 1] = pad .. ks .. "=" .. dump(v[k], indent + 1, seen)
  end
  seen[v] = nil
  if #out == 0 then return "{}" end
  return "{\n" .. table.concat(out, ",\n") .. "\n" .. string.rep("  ", indent) .. "}"
end
function msys.dumper.Dumper(v) return "return " .. dump(v, 0, {}) end

-- msys.bounce (policy/msys_bounce.py): the Python side gets the message proxy's object.
msys.bounce = {}
function msys.bounce.classify(m)
  if type(m) ~= "table" or rawget(m, PY) == nil then
    error("msys.bounce.classify: the argument must be a message (msg)", 2)
  end
  return api.bounce_classify(rawget(m, PY))
end
function msys.bounce.classify_smtp_response(text, domain)
  return api.bounce_classify_smtp_response(str(text) or "", str(domain))
end

-- chunk_logger (loggers/chunk_logger.py): msys.beta.chunk_logger_int.log(text), also named
-- msys.ts.chunk_logger.log. The text is a string or a number (as luaL_checkstring takes it);
-- the Python side tells it to the module's writer and returns the error text, if any.
local function chunk_log(text)
  local t = type(text)
  if t ~= "string" and t ~= "number" then
    error("bad argument #1 to 'log' (string expected, got " .. (t == "nil" and "no value" or t) .. ")", 2)
  end
  local err = api.chunk_logger_log(tostring(text))
  if err ~= nil then error(err, 2) end
end
msys.beta = {chunk_logger_int = {log = chunk_log}}
msys.ts = {chunk_logger = {log = chunk_log}}

-- msys.audit_series (policy/audit_series.py): options may be a table or, when not one, the
-- key itself. A key that is a proxy (`ac`) goes to Python as its object, which uses its
-- peer's address; no key means the peer of the running session. The Python side returns
-- (nil, value) or (error text): errors are raised here, at the script's line.
local function as_result(err, value)
  if err ~= nil then error(err, 3) end
  return value
end
local function as_key(k)
  if type(k) == "table" and rawget(k, PY) ~= nil then return rawget(k, PY) end
  if k == nil or type(k) == "number" then return k end
  return tostring(k)
end
local function as_opts(o)
  if type(o) == "table" and rawget(o, PY) == nil then return o end
  return {key = o}
end
local function as_name(name, fn)
  if type(name) ~= "string" then
    error("bad argument #1 to '" .. fn .. "' (string expected, got " ..
          (name == nil and "no value" or type(name)) .. ")", 3)
  end
  return name
end
msys.audit_series = {}
function msys.audit_series.define(name, stype, interval, num_windows, options)
  name = as_name(name, "define")
  local o = type(options) == "table" and options or {}
  local v = as_result(api.audit_series_define(name, str(stype), interval, num_windows,
                                              o.serialize, o.persist, str(o.replicate)))
  return v      -- not a tail call: error level 3 must be the script
end
function msys.audit_series.add(name, options)
  name = as_name(name, "add")
  local o = as_opts(options)
  as_result(api.audit_series_add(name, as_key(o.key), o.count))
end
function msys.audit_series.count(name, options)
  name = as_name(name, "count")
  local o = as_opts(options)
  local v = as_result(api.audit_series_count(name, as_key(o.key), o.startv, o.endv))
  return v
end
function msys.audit_series.remove_item(name, key)
  name = as_name(name, "remove_item")
  as_result(api.audit_series_remove_item(name, as_key(key)))
end

-- Namespaces and functions of Momentum that ecmta does not provide yet: using them raises
-- a Lua error naming the function (never a silent no-op).
local function unavailable(path)
  return function() error(path .. " is not available in this version", 2) end
end
local function stub_namespace(path)
  return raw_setmetatable({}, {
    __index = function(t, k)
      if type(k) ~= "string" then return nil end
      return unavailable(path .. "." .. k)
    end,
    __name = path,
  })
end
for _, ns in ipairs(opts.unavailable_namespaces) do
  local t, path = msys, "msys"
  local parts = {}
  for part in string.gmatch(ns, "[^%.]+") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    path = path .. "." .. part
    if rawget(t, part) == nil then
      rawset(t, part, (i == #parts) and stub_namespace(path) or {})
    end
    t = rawget(t, part)
  end
end
for _, fname in ipairs(opts.unavailable_functions) do
  if msys[fname] == nil then msys[fname] = unavailable("msys." .. fname) end
end

---------------------------------------------------------------------------------------------
-- registerModule and require
---------------------------------------------------------------------------------------------
local MODULES = {}

function msys.registerModule(name, tbl)
  if type(name) ~= "string" then error("msys.registerModule: modname must be a string", 2) end
  if type(tbl) ~= "table" then error("msys.registerModule: the second argument must be a table", 2) end
  local fns = {}
  for k, v in pairs(tbl) do
    if type(k) == "string" and type(v) == "function" then fns[#fns + 1] = k end
  end
  if api.register_module(name, unpack(fns)) then MODULES[name] = tbl end
end

local function provide(name, value) package.preload[name] = function() return value end end
provide("msys", msys)
for _, name in ipairs(opts.provided_modules) do
  local t = msys
  for part in string.gmatch(name, "[^%.]+") do
    if part ~= "msys" and type(t) == "table" then t = rawget(t, part) end
  end
  provide(name, type(t) == "table" and t or msys)
end

package.path = opts.package_path
-- Lua modules found on the path speak the dialect too: replace the file searcher.
package.searchers[2] = function(name)
  local path, err = package.searchpath(name, package.path)
  if not path then return "\n\t" .. err end
  local src, rerr = read_file(path)
  if not src then error(fmt("error loading module '%s' from file '%s':\n\t%s", name, path, rerr), 0) end
  local chunk, cerr = load(src, "@" .. path)
  if not chunk then error(fmt("error loading module '%s' from file '%s':\n\t%s", name, path, cerr), 0) end
  return chunk, path
end

---------------------------------------------------------------------------------------------
-- Proxies: vctx, ac, msg
---------------------------------------------------------------------------------------------
local VCTX = {__name = "vctx"}
VCTX.__index = VCTX
function VCTX:get(t, k) return api.vctx_get(self[PY], t, str(k)) end
function VCTX:set(t, k, v) return api.vctx_set(self[PY], t, str(k), v) end
function VCTX:set_code(code, message) return api.vctx_set_code(self[PY], str(code), str(message)) end
function VCTX:disconnect(code, message) return api.vctx_disconnect(self[PY], str(code), str(message)) end
function VCTX:tarpit(secs) return api.vctx_tarpit(self[PY], tonumber(secs)) end
function VCTX:add_recipient(a) return api.vctx_add_recipient(self[PY], flatten(a)) end
function VCTX:remove_recipient(a) return api.vctx_remove_recipient(self[PY], flatten(a)) end
function VCTX:recipient_list(a)
  if a ~= nil then api.vctx_set_recipients(self[PY], flatten(a)) end
  return zero_based(api.vctx_recipient_list(self[PY]))
end

local AC = {__name = "accept_construct"}
AC.__index = AC
function AC:esmtp_capability_add(name) return api.ac_cap_add(self[PY], str(name)) end
function AC:esmtp_capability_remove(name) return api.ac_cap_remove(self[PY], str(name)) end
function AC:inbound_session_count(cidr, service) return api.ac_session_count(self[PY], str(cidr), str(service)) end

local MSG_METHODS = {}
local MSG_FIELDS = {id = true, conn_id = true, batch_id = true, priority = true}
local MSG = {__name = "ec_message"}
MSG.__index = function(t, k)
  local m = MSG_METHODS[k]
  if m ~= nil then return m end
  if MSG_FIELDS[k] then return api.msg_field(rawget(t, PY), k) end
  return nil
end
MSG.__newindex = function(t, k, v)
  if k == "priority" then return api.msg_set_priority(rawget(t, PY), v) end
  error("msg." .. tostring(k) .. " cannot be set", 2)
end
MSG.__tostring = function(t) return "ec_message: " .. api.msg_field(rawget(t, PY), "id") end
local M = MSG_METHODS
function M:header(name, value, mode)
  if value == nil then return {api.msg_header_get(self[PY], str(name))} end
  if type(value) == "table" then return api.msg_header_set(self[PY], str(name), str(mode), flatten(value)) end
  return api.msg_header_set(self[PY], str(name), str(mode), tostring(value))
end
function M:mailfrom(v) return api.msg_mailfrom(self[PY], str(v)) end
function M:rcptto(v) return api.msg_rcptto(self[PY], str(v)) end
function M:context_get(t, k) return api.msg_ctx_get(self[PY], t, str(k)) end
function M:context_set(t, k, v) return api.msg_ctx_set(self[PY], t, str(k), v) end
function M:context_exists(t, k) return api.msg_ctx_exists(self[PY], t, str(k)) end
function M:context_delete(t, k) return api.msg_ctx_delete(self[PY], t, str(k)) end
function M:context_exists_and_get(t, k) return api.msg_ctx_exists_and_get(self[PY], t, str(k)) end
function M:body(v) return api.msg_body(self[PY], str(v)) end
function M:raw(v) return api.msg_raw(self[PY], str(v)) end
function M:text(v, ctype, charset)
  if v ~= nil then return api.msg_text_set(self[PY], tostring(v), str(ctype), str(charset)) end
  local parts = {api.msg_text_get(self[PY])}
  if #parts <= 1 then return parts[1] end
  return parts
end
function M:discard(reason) return api.msg_discard(self[PY], str(reason)) end
function M:code(n, s) return api.msg_code(self[PY], str(n), str(s)) end
function M:routing_domain(v) return api.msg_routing_domain(self[PY], str(v)) end
function M:binding(v) return api.msg_binding(self[PY], str(v)) end
function M:binding_group(v) return api.msg_binding_group(self[PY], str(v)) end
function M:get_message_size() return api.msg_size(self[PY]) end
function M:listener_addr(flag) return api.msg_listener_addr(self[PY], str(flag)) end
function M:reception_peer(flag) return api.msg_reception_peer(self[PY], str(flag)) end
function M:get_envelope2(flags, lp, dom)
  local a, b = api.msg_envelope(self[PY], flags)
  if lp ~= nil then lp:set(a) end
  if dom ~= nil and b ~= nil then dom:set(b) end
  return a, b
end
for _, name in ipairs(opts.msg_unavailable) do
  if M[name] == nil then M[name] = unavailable("msg:" .. name) end
end

local function V(pv) if pv == nil then return nil end return raw_setmetatable({[PY] = pv}, VCTX) end
local function A(pa) if pa == nil then return nil end return raw_setmetatable({[PY] = pa}, AC) end
local function W(pm) if pm == nil then return nil end return raw_setmetatable({[PY] = pm}, MSG) end
msys.getClassMetaTable = function(name)
  if name == "vctx" or name == "validate_context" then return VCTX end
  if name == "ec_message" then return MSG end
  if name == "accept_construct" then return AC end
  return nil
end

---------------------------------------------------------------------------------------------
-- Callouts
---------------------------------------------------------------------------------------------
-- shape -> how a callout's arguments are laid out (implementing.policy.scriptlets 62.2.2)
local SHAPES = {
  [1] = function(fn, s, pv, pa, pm, arg) return fn(s, A(pa), V(pv)) end,             -- connect
  [2] = function(fn, s, pv, pa, pm, arg) return fn(s, arg, A(pa), V(pv)) end,        -- ehlo, mailfrom
  [3] = function(fn, s, pv, pa, pm, arg) return fn(s, W(pm), arg, A(pa), V(pv)) end, -- rcptto
  [4] = function(fn, s, pv, pa, pm, arg) return fn(s, arg, V(pv)) end,               -- rcptto_list(_final)
  [5] = function(fn, s, pv, pa, pm, arg) return fn(s, W(pm), A(pa), V(pv)) end,      -- data .. final
  [6] = function(fn, s, pv, pa, pm, arg) return fn(s, W(pm)) end,                    -- set_binding
  [7] = function(fn, s) return fn(s) end,                                            -- dealloc, init, deinit
}

local SESS = {}   -- sid -> {selfs = {modname -> self}, tls = {}}: sessions with state here

local function errmsg(e) return tostring(e) end

local function has_state(s)
  if next(s.tls) ~= nil then return true end
  for _, t in pairs(s.selfs) do if next(t) ~= nil then return true end end
  return false
end

-- The coroutine body of one callout. Returns DONE, ok, value-or-error, keep_session_state.
local function callout(name, phase, sid, shape, pv, pa, pm, arg)
  local mod = MODULES[name]
  local s = SESS[sid]
  if s == nil then s = {selfs = {}, tls = {}}; SESS[sid] = s end
  local self_t = s.selfs[name]
  if self_t == nil then
    self_t = raw_setmetatable({}, {__index = mod})
    s.selfs[name] = self_t
  end
  _TLS = s.tls
  driver_co = co_running()
  slice_start = os_time()
  debug.sethook(watchdog, "", 1000000)
  local ok, r = xpcall(SHAPES[shape], errmsg, mod[phase], self_t, pv, pa, pm, arg)
  driver_co = nil
  _TLS = nil
  local keep = has_state(s)
  if not keep then SESS[sid] = nil end
  return DONE, ok, r, keep
end

-- _OSTLS: one table per OS thread (Momentum's OS-thread-local storage).
local OSTLS = {}
_OSTLS = raw_setmetatable({}, {
  __index = function(_, k) local t = OSTLS[api.os_thread()]; return t and t[k] end,
  __newindex = function(_, k, v)
    local id = api.os_thread()
    local t = OSTLS[id]
    if t == nil then t = {}; OSTLS[id] = t end
    t[k] = v
  end,
})

local function load_script(src, chunkname)
  local chunk, err = raw_load(src, chunkname, "t")
  if not chunk then return false, err end
  local ok, e = xpcall(chunk, function(x) return tostring(x) end)
  return ok, e
end

-- init()/deinit(): returns ok, value (ok=false: value is the error message).
local function call_plain(name, fname)
  local mod = MODULES[name]
  local fn = mod and mod[fname]
  if type(fn) ~= "function" then return true, true end
  return xpcall(fn, errmsg, mod)
end

local function forget(sid) SESS[sid] = nil end

local function full_gc() collectgarbage() end

local function gc_setup(pause, stepmul)
  collectgarbage("incremental", pause, stepmul)
end

local function run_pool_job(fn, completion)
  local r = pack(pcall(fn))
  if completion ~= nil then
    local ok, e = pcall(completion)
    if not ok then r.completion_error = tostring(e) end
  end
  return r
end

python = nil   -- lupa's helper table: scripts get no door into Python

return {
  callout = callout, pack_pcall = pack_pcall, run_pool_job = run_pool_job,
  load_script = load_script, call_plain = call_plain, forget = forget, gc_setup = gc_setup,
  full_gc = full_gc,
  zero_based = zero_based,
}
