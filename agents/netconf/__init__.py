"""NETCONF (RFC 6241) over SSH (RFC 6242) with notifications (RFC 5277) for one agent.

framing.py  sans-IO codec (end-of-message and chunked)   subtree.py  RFC 6241 §6 filters
edit.py     edit-config operations on a copy              errors.py   <rpc-error> values
session.py  hello and rpc handling, no I/O                rpcs.py     one handler per operation
state.py    what the sessions of one agent share          server.py   asyncssh listener, publish()
xpath.py    :xpath filters (libyang)                      monitoring.py  RFC 6022 /netconf-state
confirmed.py  RFC 6241 §8.4 confirmed commit, its timer and rollback
ietf-netconf-monitoring.yang  RFC 6022's module, for XPath over /netconf-state and get-schema
testing.py  an agent on a thread for tests

The datastore behind it is `agents.datastore.Datastore`.
"""
