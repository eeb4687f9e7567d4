"""The SDN controller: devices, topology, paths, admission and intents over NETCONF.

Python API: `controller.api.Controller`; command line: `qkdsdn controller`; see docs/controller.md.
"""
