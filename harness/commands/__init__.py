"""The command line: one module per subcommand (``harness sweep``, ``compare``, ...), thin; nothing of the
library imports it."""
