"""``python -m attnconv_pl.study``: see :mod:`attnconv_pl.study.runner`."""

import sys

from attnconv_pl.study.runner import main

sys.exit(main())
