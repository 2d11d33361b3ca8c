"""corral.transports: the wire codec and the servers that expose one kernel to the network.

It knows the kernel and never the adapters.
"""
