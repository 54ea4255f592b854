"""Train a policy with an evolution strategy: the same code as ``es-toolkit train``.

With no options it trains CartPole-v1 with OpenES and a linear policy until solved.
Example: python scripts/train.py --env Pendulum-v1 --strategy pgpe --policy mlp
"""

import sys

from es_toolkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
