"""corral.adapters: what a program calls — the thread facade, the trio facade and the
``corral`` command."""
