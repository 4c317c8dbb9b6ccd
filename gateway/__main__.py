"""``python -m gateway``: see gateway.cli."""

from gateway.cli import main

# Guarded: worker processes are spawned and re-import this module as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
