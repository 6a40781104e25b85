import sys

from smae.cli import main

sys.exit(main())
