"""``python -m agent``: the node agent (what ``rankwise agent`` runs)."""

import sys

from agent.daemon import main

sys.exit(main())
