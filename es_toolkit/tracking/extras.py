"""The optional packages a logger needs, imported when it is made."""

import importlib
from types import ModuleType

# The package each logger imports, and the extra that installs it.
EXTRA_OF = {"tensorboardX": "tensorboard", "wandb": "wandb"}


def import_extra(module: str, logger: str) -> ModuleType:
    """Imports ``module`` for the logger named ``logger``.

    Raises:
        ImportError: ``module`` is not installed; the message names the logger and the
            command that installs its extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the {logger} logger needs {module} ({error}): "
            f'pip install "es_toolkit[{EXTRA_OF[module]}]"'
        ) from None
