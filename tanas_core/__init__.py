"""TA-NAS Studio core library: task-aware neural architecture search, one subpackage per pipeline stage.

data -> networks -> training -> fisher -> distances -> search, on top of ``requests`` (one request per operation,
a leaf), ``registry`` (one registry per kind of thing) and ``workspace`` (the store and the run context); ``jobs``,
``app``, ``bench`` and ``cli`` sit above the method. docs/contributing.md lists the layers and how to add things.
"""
__version__ = "0.2.0"
