"""python -m speech2lip.core.cli"""
import sys

from . import main

sys.exit(main())
