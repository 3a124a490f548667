"""Error messages that name options without knowing the CLI.

The library names a run option in a message as ``{opt:name}``, ``name`` being the Python
parameter (``{opt:batch_size}``). ``str()`` of the error shows the parameter names (what a Python
caller passes); the CLI renders the same message with its flags (``--batch-size``) through
:meth:`OptionMessage.render`, with its own table of names. The library never spells a flag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["OptionMessage", "render", "template_of"]

_OPTION = re.compile(r"\{opt:(\w+)\}")


def render(template: str, names: Mapping[str, str] | None = None) -> str:
    """``template`` with each ``{opt:name}`` replaced by ``names[name]`` (default: ``name``)."""
    names = names or {}
    return _OPTION.sub(lambda m: names.get(m.group(1), m.group(1)), template)


class OptionMessage(Exception):  # noqa: N818 - a mixin, not an error of its own
    """Mixin for errors whose message names options as ``{opt:name}`` (see the module)."""

    def __init__(self, template: str, *args: object) -> None:
        self.template = str(template)
        super().__init__(render(self.template), *args)

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with options named by ``names`` (the CLI passes its flags)."""
        return render(self.template, names)


def template_of(exc: BaseException) -> str:
    """An error's message template: its own for an :class:`OptionMessage`, else its text."""
    return exc.template if isinstance(exc, OptionMessage) else str(exc)
