"""Where applied batches go: the sink protocol (base.py) and its implementations (store, spool, memory)."""
