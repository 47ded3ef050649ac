"""insitu's Python API for the people who use a gateway: `from insitu.client import Client`.

Nothing here imports the gateway's own packages (`gateway`, `sandbox`, `audit`, `policies`): the
client speaks HTTP to a gateway, like any other client (a test checks).
"""
