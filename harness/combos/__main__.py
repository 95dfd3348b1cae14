"""python3 -m harness.combos: see harness/combos/__init__.py."""

import sys

from harness.combos import main

sys.exit(main())
