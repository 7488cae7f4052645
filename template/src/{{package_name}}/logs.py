"""Logging: one JSON object a line on stdout, or a plain format for people."""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

# Attributes every LogRecord has; anything else on a record was passed in
# `extra=` (or set by a filter) and belongs in the JSON line. uvicorn adds
# `color_message`, its message with terminal colours: noise in JSON.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)),
) | {"message", "asctime", "taskName", "color_message"}


_HANDLER_NAME = "service"


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a single line of JSON."""
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: Literal["json", "console"]) -> logging.Handler:
    """Send every logger, uvicorn's included, to one stdout handler, and return it."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"),
        )
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: others (a test runner's capture) stay.
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
