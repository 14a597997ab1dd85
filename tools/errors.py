"""Errors a user can fix. The CLI prints their one-line message and exits with status 2."""


class OptopassError(Exception):
    """Base class of every error caused by user input (config, data, model path)."""


class ConfigError(OptopassError, ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class DataError(OptopassError, ValueError):
    """A data file or folder is missing or malformed."""


class ModelLoadError(OptopassError):
    """A model name or path cannot be loaded."""


class CaptureError(OptopassError):
    """A model cannot be captured as an fx graph."""


class OutputError(OptopassError):
    """An output path cannot be written (for example, it is an existing file)."""
