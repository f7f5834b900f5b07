"""System metrics sampled by the agent, never in the training process (docs/system.md).

One concept per module: agent/system/proc.py (a rank's process tree), agent/system/host.py (the machine),
agent/system/gpu.py (GPUs through NVML, the module passed in), agent/system/attribution.py (which GPU is
a rank's), agent/system/sampler.py (the agent part that samples on an interval into the next commit),
agent/system/forward.py (a node agent's samples applied at the root).
"""
