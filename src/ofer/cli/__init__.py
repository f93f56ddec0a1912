"""The ``ofer`` command line."""
