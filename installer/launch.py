"""Entry script for the PyInstaller bundle: the same main as the `speech2lip-studio` command."""
import sys

from speech2lip.app.main import main

sys.exit(main())
