"""The run handle used inside training processes.

Nothing here imports the agent, SQLite or HTTP code: importing ``rankwise`` must
stay fast. The wire protocol (``client.wire``) and the settings/paths modules are
shared with the agent, which imports them from here.
"""
