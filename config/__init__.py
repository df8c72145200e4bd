"""The ecelerity.conf language: parsing, validation, fallback, generations, writeback.

Public API (docs/design.md §3.2):

    from ecmta.config import load_config, load_default_config, ConfigError, Config, ConfigManager, EvalContext
    cfg = load_config(path)                  # parse + include + validate; raises ConfigError
    cfg.get(scope_path, option)              # `config get`: that scope only
    cfg.eval(option, EvalContext(...))       # `config eval`: fallback + default
    cfg.defining_scope(option, ctx)          # which scope's setting applies (throttle sharing)
    cfg.scopes("ThreadPool")                 # every stanza of a kind

Submodules: lexer, parser (syntax), values (typing), validate (registry rules), loader
(files and includes), model (the immutable tree), fallback (lookups), manager (live
generations, transactions), writeback (saving console changes), xmldump (ec_dump_config).
"""

from ecmta.config.model import (Config, ConfigError, ConfigIssue, EvalContext, Rate, Resolved,
                                Scope, Value)
from ecmta.config.loader import (default_config_path, default_config_text, load_config,
                                 load_config_text, load_default_config)
from ecmta.config.manager import ConfigManager, ReloadResult, Transaction

__all__ = ["Config", "ConfigError", "ConfigIssue", "EvalContext", "Rate", "Resolved", "Scope", "Value",
           "default_config_path", "default_config_text", "load_config", "load_config_text",
           "load_default_config", "ConfigManager", "ReloadResult", "Transaction"]
