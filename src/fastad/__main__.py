"""`python -m fastad`: the demo (the notes' worked example and a Rosenbrock timing, see
fastad.demo), or `python -m fastad trace EXPRESSION --at NAME=VALUE ...` (see fastad.cli)."""
import sys

from fastad.cli import main

if __name__ == "__main__":
    sys.exit(main())
