"""``python -m dualip_model``: the command line (see dualip_model.cli)."""

import os
import sys

from .cli import EXIT_LOST_RANK, main

if __name__ == "__main__":
    code = main()
    if code == EXIT_LOST_RANK:  # a process group that lost a rank can abort the interpreter's teardown (gloo)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
