"""``python -m diffrecon`` is the same as the ``diffrecon`` command."""
import sys

from diffrecon.cli import main

sys.exit(main())
