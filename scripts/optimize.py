"""Minimize a black-box test objective: the same code as ``es-toolkit optimize``.

Example: python scripts/optimize.py --objective rastrigin --dim 10 --strategy open_es
"""

import sys

from es_toolkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["optimize", *sys.argv[1:]]))
