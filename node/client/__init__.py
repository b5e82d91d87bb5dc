"""Client side of the network: store and fetch data through any node."""
