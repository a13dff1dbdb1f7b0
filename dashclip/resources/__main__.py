import sys

from dashclip.resources import main

sys.exit(main())
