"""TA-NAS Studio core library: task-aware neural architecture search, one stage per module.

data -> tasks -> networks -> training -> zoo (the learned tasks), with store (the workspace) underneath.
"""
__version__ = "0.1.0"
