"""``python -m icu_unlearn.cli``: the ``icu-bench`` console script."""

import sys

from icu_unlearn.cli import main

sys.exit(main())
