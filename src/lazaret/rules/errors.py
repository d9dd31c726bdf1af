"""One error type for bad configuration, so the CLI can exit 2 with file, line and field."""

from __future__ import annotations

from typing import Optional


class ConfigError(Exception):
    """Bad rule, policy or command-line input. Its message names the file, line and field."""

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None,
                 field: Optional[str] = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.bare_message = message
        where = ""
        if path:
            where = str(path)
            if line:
                where += f":{line}"
            where += ": "
        if field:
            where += f"{field}: "
        super().__init__(where + message)
