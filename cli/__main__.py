"""`python -m cli ...`: `coupons ...` from this Python, installed or not."""

import sys

from cli.main import main

sys.exit(main())
