import sys

from facevid2vid.cli import main

sys.exit(main())
