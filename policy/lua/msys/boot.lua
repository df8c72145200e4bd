-- msys.boot: the script Momentum's sample configuration loads first
--   scriptlet "scriptlet" { script "boot" { source = "msys.boot" } }
--
-- In Momentum it wires "enhanced control channel features" (Lua console commands). ecmta's
-- console commands are built in, so this module only makes the msys library and its
-- extended objects available to every later script (require("msys.core") and friends) and
-- registers a module named "boot" whose init() succeeds, so the stanza loads as documented.
-- It implements no validation callout and costs nothing per message.

require("msys.core")
require("msys.extended.message")
require("msys.extended.vctx")
require("msys.extended.ac")

local boot = {}

function boot:init()
  return true
end

msys.registerModule("boot", boot)
