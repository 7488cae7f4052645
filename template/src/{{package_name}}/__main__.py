"""Serve the app with uvicorn on HOST:PORT when the package is run with ``python -m``."""

import sys

import uvicorn

from .main import create_app
from .settings import SettingsError, load_settings


def main() -> int:
    """Read the settings, then serve the app on ``HOST``:``PORT``."""
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    # log_config=None: uvicorn's loggers propagate to the root handler that
    # create_app installs, so its lines share the service's format.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
