"""`validate_config [-c configfile]`: check a configuration (executable.validate_config).

Prints "Configuration valid" and exits 0, or prints each problem as "file:line: message"
on stderr and exits 1 (the page prints nothing on an invalid config; the errors go to
stderr so scripts that only read stdout see the documented behaviour). A missing file
prints "No configuration found" and exits 1. Without -c the embedded default
configuration is checked. Validation is as strict as the daemon's (nothing unbuilt).
"""

from __future__ import annotations

import argparse
import os
import sys

from ecmta.config import ConfigError, load_config, load_default_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="validate_config", description="Check the validity of the configuration files")
    p.add_argument("-c", dest="config", metavar="configfile", help="configuration file (default: the embedded default)")
    args = p.parse_args(argv)
    if args.config is not None and not os.path.isfile(args.config):
        print("No configuration found")
        return 1
    try:
        if args.config is None:
            load_default_config()
        else:
            load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print("Configuration valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
