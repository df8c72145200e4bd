"""`python -m ecmta` runs the daemon, like `ecelerity`."""

from ecmta.cli.ecelerity import main

if __name__ == "__main__":
    raise SystemExit(main())
