import sys

from valuedyn.cli import main

sys.exit(main())
