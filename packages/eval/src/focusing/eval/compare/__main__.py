"""`python -m focusing.eval.compare --child JOB.json`: the child process that trains one job
of a comparison (runner.py), so that its memory is measured from a clean start."""

import sys

from focusing.eval.compare.runner import child_main

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
