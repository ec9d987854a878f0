"""Importing this module is the failure the tests look for: it records the import in $SKOL_CANARY_FILE."""

import os
from pathlib import Path

Path(os.environ.get("SKOL_CANARY_FILE", "/nonexistent/skol-canary")).write_text("imported")


class EvilStage:
    pass
