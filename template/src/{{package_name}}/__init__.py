"""The service package; the app factory is ``main.create_app``."""
