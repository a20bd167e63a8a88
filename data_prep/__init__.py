"""Command-line entry points that prepare data sets for svseg (thin wrappers over ``svseg.data``).

Run one with ``python -m data_prep.<dataset> --help`` (``demo``, ``synapse``, ``lits``, ``acdc``).
"""
