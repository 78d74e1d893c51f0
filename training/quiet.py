"""Lightning's console output as a person wants it: each message once, no advertisements."""

from __future__ import annotations

import logging
import warnings


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_lightning() -> None:
    """Lightning's messages once, through the application's handlers (its own console handler
    repeats each of them), and without its advertisements; progress bars stay."""
    package = logging.getLogger("lightning")
    for handler in list(package.handlers):
        package.removeHandler(handler)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        emitter = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in emitter.filters):
            emitter.addFilter(_NoTips())
    # Lightning's own use of a torch API it has not caught up with: nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
