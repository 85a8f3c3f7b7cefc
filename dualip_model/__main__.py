"""``python -m dualip_model``: the command line (see dualip_model.cli)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
