import sys

from conveyor.runner.main import main

sys.exit(main())
