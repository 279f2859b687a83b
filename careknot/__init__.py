"""CareKnot Dispatch: the shared kernel (settings, contracts, storage, CLI)."""

__version__ = "0.1.0"
