"""``python -m rnnlm.server [flags]``: the same as ``rnnlm serve``."""

import sys

from rnnlm.server.app import main

sys.exit(main())
