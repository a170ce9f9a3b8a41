"""The ``conveyor`` command."""

from conveyor.cli.app import main

__all__ = ["main"]
