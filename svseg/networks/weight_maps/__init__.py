"""The authors' checkpoints -> svseg's networks: one mapping module per network.

Each module (``svanet``, ``msa2net``, ``afma``, ``sa2net``, ``msga``) defines ``to_svseg(net, state_dict) ->
dict``: the authors' parameter and buffer names (and, where the layouts differ, shapes) turned into the
``state_dict`` of the svseg network ``net``. :func:`svseg.networks.load_authors_weights` picks the module by
the network's class. The mappings were written from reading the authors' code; the fidelity tests
(``tests/fidelity/``) check them against the authors' models, output for output.
"""
