import sys

from tools.county.cli import main

sys.exit(main())
