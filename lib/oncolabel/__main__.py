import sys

from oncolabel.cli import main

sys.exit(main())
