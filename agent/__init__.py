"""The node agent: ingest, step state, group windows, store, views.

Imported only by the agent process itself and, lazily, by ``rankwise.Api`` and
the command line. Training processes never import it.
"""
