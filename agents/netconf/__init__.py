"""NETCONF (RFC 6241) over SSH (RFC 6242) with notifications (RFC 5277): a front end only.

Modules, lowest first (each imports only modules above it in this list; no cycle, see
tests/unit/test_netconf_layers.py):
framing.py    sans-IO codec (end-of-message and chunked)
subtree.py    RFC 6241 §6 subtree filters
errors.py     <rpc-error> values; from_datastore(): the datastore's errors as <rpc-error>s
monitoring.py RFC 6022 counters and /netconf-state (reads the agent as `MonitoredAgent`)
xpath.py      :xpath filters (libyang)
subscription.py  an RFC 5277 subscription and its filter
confirmed.py  RFC 6241 §8.4 confirmed commit, its timer and rollback
state.py      what the sessions of one agent share (sessions seen as `SessionHandle`)
rpcs.py       one handler per operation, dispatch
session.py    hello and rpc handling, no I/O
server.py     asyncssh listener, publish()
ietf-netconf-monitoring.yang  RFC 6022's module, for XPath over /netconf-state and get-schema
testing.py    an agent on a thread for tests

The datastore behind it is `agents.datastore` (it knows nothing of NETCONF).
"""
