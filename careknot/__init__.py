"""The ``careknot`` command and its tools: the CLI, ``careknot up`` and the servers it finds or
starts, the benchmarks, rebuild, reports and timelines. Nothing imports this package."""

__version__ = "0.1.0"
