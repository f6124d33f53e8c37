"""``python -m aionet`` → the ``aionet`` command."""

import sys

from .cli import main

sys.exit(main())
