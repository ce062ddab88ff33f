"""`python -m fastad`: the worked example and a Rosenbrock timing (see fastad.demo)."""
import argparse

from fastad import demo


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastad",
        description="Run fastad's demo: the lecture notes' worked example (primal values, "
                    "tangents, adjoints, gradient), then a traced-and-replayed Rosenbrock "
                    "gradient timed against plain Python.")
    parser.add_argument("-n", type=int, default=10_000,
                        help="Rosenbrock dimension (default 10000)")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("-n must be at least 2")
    demo.main(args.n)


if __name__ == "__main__":
    main()
