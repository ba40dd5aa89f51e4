"""The lab: benchmarks and their analysis (``python -m tanas_core bench ...``). Outside the method: no method
package imports it (``tests/test_structure.py``)."""
