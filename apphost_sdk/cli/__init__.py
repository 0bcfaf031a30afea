"""The ``apphost`` command line."""
