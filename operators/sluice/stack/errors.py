"""The one error the local stack raises: its message names what failed and what to do."""

from sluice.errors import SluiceError


class StackError(SluiceError, RuntimeError):
    """The local stack cannot do what was asked; the message says why and the fix."""
