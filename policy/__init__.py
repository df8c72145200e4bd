"""The Lua policy engine (Momentum's scriptlet module): see policy/engine.py.

Public API for the session driver:

    from ecmta.policy import PolicyEngine, ValidationContext, AcceptConstruct, PhaseResult
    engine = PolicyEngine.from_config(cfg)          # scriptlet "scriptlet" { script ... }
    result = engine.run("validate_ehlo", vctx, ac, arg="client.example")
"""

from ecmta.policy.context import (CONTINUE, AcceptConstruct, Disposition, PhaseResult,
                                  PolicyUsageError, ValidationContext)
from ecmta.policy.engine import PolicyEngine
from ecmta.policy.msys import VALIDATE_AGAIN, VALIDATE_CONT, VALIDATE_DONE
from ecmta.policy.runtime import ScriptletError, ScriptOptions

__all__ = ["CONTINUE", "AcceptConstruct", "Disposition", "PhaseResult", "PolicyEngine",
           "PolicyUsageError", "ScriptOptions", "ScriptletError", "VALIDATE_AGAIN",
           "VALIDATE_CONT", "VALIDATE_DONE", "ValidationContext"]
