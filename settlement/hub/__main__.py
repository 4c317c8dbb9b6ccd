"""``python -m settlement.hub``: run the hub simulator (see ``--help``)."""

from settlement.hub.serve import main

raise SystemExit(main())
