"""``python -m agent``: the node agent (what ``rankwise agent`` runs); the command line is agent/main.py."""

import sys

from agent.main import main

sys.exit(main())
