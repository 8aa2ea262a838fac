"""python -m quicknets: the same as the `quicknets` command."""

import sys

from quicknets.cli import main

sys.exit(main())
