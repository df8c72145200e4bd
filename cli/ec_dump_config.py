"""`ec_dump_config [-c configfile] [-e extdir] [-f outputfile]`: the configuration as XML
(executable.ec_dump_config).

Writes the XML of `ecmta.config.xmldump` to stdout or to -f. Without -c the embedded
default configuration is dumped. -e names a directory of external modules in Momentum;
ecmta has no loadable modules, so the directory must exist and is otherwise unused.
An invalid configuration prints every problem as "file:line: message" followed by
"Global configuration error." on stderr and exits 1; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from ecmta.config import ConfigError, load_config, load_default_config
from ecmta.config import xmldump


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ec_dump_config", description="Output the ecelerity.conf file as XML")
    p.add_argument("-c", dest="config", metavar="configfile", help="configuration file (default: the embedded default)")
    p.add_argument("-e", dest="extdir", metavar="extdir", help="external module directory")
    p.add_argument("-f", dest="output", metavar="outputfile", help="write the XML here instead of stdout")
    args = p.parse_args(argv)
    if args.extdir is not None and not os.path.isdir(args.extdir):
        print(f"ec_dump_config: module directory '{args.extdir}' does not exist", file=sys.stderr)
        return 1
    if args.config is not None and not os.path.isfile(args.config):
        print(f"ec_dump_config: configuration file '{args.config}' not found", file=sys.stderr)
        return 1
    try:
        cfg = load_default_config() if args.config is None else load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print("Global configuration error.", file=sys.stderr)
        return 1
    text = xmldump.dumps(cfg)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        print(f"ec_dump_config: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
