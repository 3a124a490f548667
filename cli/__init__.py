"""The ``tfxai`` command-line application (installed as ``tfxai.cli``). Thin: parses options and
calls the library."""
