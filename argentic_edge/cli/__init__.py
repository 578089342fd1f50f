"""The ``argentic-edge`` command, one module per command family."""
