import sys

from atlas_bayes.cli import main

sys.exit(main())
